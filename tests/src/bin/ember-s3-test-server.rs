//! `ember-s3-test-server`: the S3-compatible server of Ember's tests, as a
//! process, for benchmarks and manual runs. It serves a temporary directory
//! on 127.0.0.1 with the test credentials and prints its endpoint and the
//! `AWS_*` variables that point a process at it; Ctrl-C stops it.

use std::time::Duration;

use clap::Parser;
use ember_tests::s3_server::S3TestServer;

/// Serves an S3-compatible store on 127.0.0.1 for tests and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "ember-s3-test-server", version)]
struct Options {
    /// Buckets to create at start-up.
    #[arg(long = "bucket", default_value = "ember")]
    buckets: Vec<String>,
}

fn main() {
    let options = Options::parse();
    let server = match S3TestServer::start() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("ember-s3-test-server: cannot start: {e}");
            std::process::exit(1);
        }
    };
    for bucket in &options.buckets {
        if let Err(e) = server.create_bucket(bucket) {
            eprintln!("ember-s3-test-server: cannot create bucket {bucket}: {e}");
            std::process::exit(1);
        }
    }
    println!("ember-s3-test-server listening on {}", server.endpoint());
    for (key, value) in server.env() {
        println!("export {key}={value}");
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc_like(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `on_signal` on SIGINT or SIGTERM.
fn ctrlc_like(on_signal: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        });
        on_signal();
    });
    Ok(())
}
