//! The `ember-scheduler` binary: parses flags, then serves until SIGTERM or
//! Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use ember_scheduler::{BoundScheduler, SchedulerOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ember's scheduler: plans queries into stages and hands tasks to executors.
#[derive(Debug, Parser)]
#[command(name = "ember-scheduler", version = ember_core::EMBER_VERSION)]
struct Cli {
    #[command(flatten)]
    options: SchedulerOptions,
    /// Log filter (for example `info` or `ember=debug,ballista=info`); RUST_LOG wins.
    #[arg(long, env = "EMBER_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    if let Err(e) = ember_core::process::prepare() {
        eprintln!("ember-scheduler: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    ember_core::telemetry::init_tracing(&cli.log);
    ember_core::process::block_on_main("ember-scheduler: ", run(cli.options))
}

async fn run(options: SchedulerOptions) -> Result<(), ember_scheduler::SchedulerError> {
    let bound = BoundScheduler::bind(&options).await?;
    let addr = bound
        .local_addr()
        .map_err(|source| ember_scheduler::SchedulerError::Bind {
            addr: options.bind.clone(),
            source,
        })?;
    // Signal handlers first: once the line below is out, a SIGTERM must stop
    // the scheduler gracefully, not kill it.
    let shutdown = ember_core::process::shutdown_signal();
    // This line is the scheduler's contract with scripts and tests: they read
    // the address (and so an ephemeral port) from it.
    println!("ember-scheduler listening on {addr}");
    if let Some(health) = bound.health_addr() {
        tracing::info!(%health, "health probes also served in plain HTTP");
    }
    tracing::info!(%addr, version = ember_core::EMBER_VERSION, "ember-scheduler started");
    tokio::select! {
        result = bound.serve() => result,
        signal = shutdown => {
            tracing::info!(signal, "ember-scheduler shutting down");
            Ok(())
        }
    }
}
