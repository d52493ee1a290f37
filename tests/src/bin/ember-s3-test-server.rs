//! `ember-s3-test-server`: the S3-compatible server of Ember's tests, as a
//! process, for benchmarks, manual runs and the compose cluster's
//! development store. By default it serves a temporary directory on an
//! ephemeral port of 127.0.0.1 with the test credentials and prints its
//! endpoint and the `AWS_*` variables that point a process at it; SIGINT or
//! SIGTERM stops it.
//!
//! It is a development store (no TLS, one set of credentials, objects as
//! plain files), not a production object store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ember_tests::s3_server::{ACCESS_KEY_ID, S3TestServer, S3TestServerOptions, SECRET_ACCESS_KEY};

/// Serves an S3-compatible development store for tests, benchmarks and the
/// compose cluster.
#[derive(Debug, Parser)]
#[command(name = "ember-s3-test-server", version)]
struct Options {
    /// Buckets to create at start-up (kept if they already exist).
    #[arg(long = "bucket", default_value = "ember")]
    buckets: Vec<String>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "EMBER_S3_BIND", default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Directory that holds the buckets (default: a temporary directory,
    /// removed on exit).
    #[arg(long, env = "EMBER_S3_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The access key id to accept.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = ACCESS_KEY_ID)]
    access_key_id: String,
    /// The secret access key to accept.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", default_value = SECRET_ACCESS_KEY, hide_default_value = true, hide_env_values = true)]
    secret_access_key: String,
}

fn main() {
    let options = Options::parse();
    let custom_secret = options.secret_access_key != SECRET_ACCESS_KEY;
    let server = match S3TestServer::start_with(S3TestServerOptions {
        bind: options.bind,
        data_dir: options.data_dir.clone(),
        access_key_id: options.access_key_id.clone(),
        secret_access_key: options.secret_access_key.clone(),
        // A long-running store must not grow a request log without bound.
        record_requests: false,
    }) {
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
        // A secret the caller chose stays out of the output.
        let value = if key == "AWS_SECRET_ACCESS_KEY" && custom_secret {
            "****".to_string()
        } else {
            value
        };
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
