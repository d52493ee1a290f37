//! The `ember-executor` binary: parses flags, registers with the scheduler
//! and runs tasks until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use ember_executor::{ExecutorOptions, PreparedExecutor};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ember's executor: runs query stages handed out by the scheduler.
#[derive(Debug, Parser)]
#[command(name = "ember-executor", version = ember_core::EMBER_VERSION)]
struct Cli {
    #[command(flatten)]
    options: ExecutorOptions,
    /// Log filter (for example `info` or `ember=debug`); RUST_LOG wins.
    #[arg(long, env = "EMBER_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    if let Err(e) = ember_core::process::prepare() {
        eprintln!("ember-executor: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    if cli.options.memory.is_some() {
        // A process given a memory budget keeps to it.
        ember_memory::allocator::return_freed_memory_promptly();
    }
    ember_core::telemetry::init_tracing(&cli.log);
    let prepared = match PreparedExecutor::prepare(&cli.options) {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("ember-executor: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The executor's contract with scripts and tests: its addresses.
    println!(
        "ember-executor listening on {}:{} (flight), grpc {}, health {}, work dir {}",
        prepared.config.bind_host,
        prepared.ports.flight,
        prepared.ports.grpc,
        prepared.ports.health,
        prepared.work_dir().display()
    );
    ember_core::process::block_on_main("ember-executor: ", prepared.run())
}
