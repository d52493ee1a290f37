//! The `ember` binary: parse, run, and turn the outcome into an exit code.
//! Everything else lives in the `ember` library (see `cli.rs`).

use std::process::ExitCode;

use clap::Parser;
use ember::cli::{Cli, run};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if let Err(e) = ember_core::process::prepare() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    ember_core::telemetry::init_tracing(&cli.log);
    ember_core::process::block_on_main("error: ", run(cli))
}
