//! `ember-fuzz`: runs generated queries on Ember embedded, on a local
//! cluster and on DuckDB, writes a report, and exits with status 1 when any
//! answer differs.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ember_fuzz::{FuzzOptions, duckdb};

/// Differential SQL fuzzing of Ember against DuckDB over TPC-H.
#[derive(Debug, Parser)]
#[command(name = "ember-fuzz")]
struct Args {
    /// How many queries to run.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    /// The generator's seed: the same seed, the same queries.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// TPC-H scale factor of the data.
    #[arg(long, default_value_t = 0.002)]
    scale_factor: f64,
    /// Where the data is, or is generated [default: a directory under the
    /// system's temporary directory, by scale factor].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Executors of the local cluster.
    #[arg(long, default_value_t = 2)]
    executors: usize,
    /// Cores for each engine.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Directory of `ember-scheduler` and `ember-executor` [default: this
    /// binary's].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The Python that has DuckDB [default: $EMBER_DUCKDB_PYTHON, else the
    /// benchmark venv's].
    #[arg(long)]
    python: Option<PathBuf>,
    /// Seconds one query may take on one engine.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Where to write the Markdown report.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The machine, for the report.
    #[arg(long, default_value = "unnamed")]
    machine: String,
}

async fn fuzz(args: Args) -> Result<(), String> {
    let data = args.data.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ember-fuzz-tpch-sf{}", args.scale_factor))
    });
    let options = FuzzOptions {
        seed: args.seed,
        queries: args.queries,
        scale_factor: args.scale_factor,
        data,
        executors: args.executors,
        threads: args.threads,
        bin_dir: ember_bench::bin_dir(args.bin_dir.as_deref())?,
        python: args.python.unwrap_or_else(duckdb::default_python),
        timeout: Duration::from_secs(args.timeout),
    };
    let started = std::time::Instant::now();
    let report = ember_fuzz::run(&options, |done, report| {
        if done.is_multiple_of(100) {
            eprintln!(
                "ember-fuzz: {done} queries, {} agreed, {} differed",
                report.agreed(),
                report.differences.len()
            );
            // A long run's report so far, should it be stopped.
            if let Some(path) = &args.out {
                let mut so_far = report.clone();
                so_far.elapsed = started.elapsed();
                if let Err(e) = std::fs::write(path, so_far.to_markdown(&args.machine)) {
                    eprintln!("ember-fuzz: cannot write {}: {e}", path.display());
                }
            }
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    let markdown = report.to_markdown(&args.machine);
    match &args.out {
        Some(path) => std::fs::write(path, &markdown)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => print!("{markdown}"),
    }
    if report.differences.is_empty() {
        eprintln!(
            "ember-fuzz: {} queries, {} agreed, {} rejected by every engine, no differences",
            report.queries(),
            report.agreed(),
            report.rejected.len()
        );
        Ok(())
    } else {
        Err(format!(
            "{} of {} queries differ",
            report.differences.len(),
            report.queries()
        ))
    }
}

fn main() {
    ember_bench::run_main(fuzz(Args::parse()));
}
