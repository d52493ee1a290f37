//! `ember-tpch-bench`: the 22 TPC-H queries on Ember embedded, a local Ember
//! cluster and single-process DataFusion; one JSON record per engine and
//! query (see `ember_bench::QueryRecord`).

use std::path::PathBuf;

use clap::Parser;
use ember_bench::{BenchEngine, EngineFlags, SettingFlags, Suite, measure, measure_alternating};

/// The allocator of Ember's own binaries, so that an embedded engine here
/// holds memory as `ember sql` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the TPC-H queries and writes their timings as JSON.
#[derive(Debug, Parser)]
#[command(name = "ember-tpch-bench", version)]
struct Args {
    /// Directory of the Parquet tables (one folder per table); generated
    /// there first when missing.
    #[arg(long)]
    data: PathBuf,
    /// Scale factor of the data: generated at it when --data lacks tables,
    /// and the one Q11's FRACTION is set for (0.0001 / SF).
    #[arg(long, default_value_t = 0.01)]
    scale_factor: f64,
    #[command(flatten)]
    engine: EngineFlags,
    /// Runs per query (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Queries to run, comma-separated (default: 1 to 22).
    #[arg(long, value_delimiter = ',')]
    queries: Vec<usize>,
    /// Fail unless every engine ran every query and all gave the same
    /// result digest (the CI smoke run).
    #[arg(long)]
    check: bool,
    /// Memory limit of Ember's engines, such as `256MiB`: of the embedded
    /// session, or of each executor (`--memory`); it joins their names
    /// (`ember-cluster-2@256MiB`). Default: each engine's own default.
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    #[command(flatten)]
    settings: SettingFlags,
}

async fn run(args: Args) -> Result<(), String> {
    let kinds = args.engine.kinds()?;
    let alternate = args.settings.alternate()?;
    let queries: Vec<usize> = if args.queries.is_empty() {
        (1..=22).collect()
    } else {
        args.queries.clone()
    };
    if let Some(bad) = queries.iter().find(|&&q| ember::tpch::query(q).is_none()) {
        return Err(format!("--queries: there is no TPC-H query {bad}"));
    }
    args.engine.create_answers_dir()?;
    Suite::Tpch
        .generate(&args.data, args.scale_factor, args.engine.threads.max(2))
        .map_err(|e| e.to_string())?;
    let bin_dir = ember_bench::bin_dir(args.engine.bin_dir.as_deref())?;
    let memory = match &args.memory {
        Some(text) => {
            let size: ember_memory::ByteSize =
                text.parse().map_err(|e| format!("--memory: {e}"))?;
            // As `ember sql --memory` does: freed memory goes back at once.
            ember_memory::allocator::return_freed_memory_promptly();
            Some((text.as_str(), size))
        }
        None => None,
    };
    let mut records = Vec::new();
    for kind in kinds {
        let engine = BenchEngine::start(
            kind,
            Suite::Tpch,
            &args.data,
            args.engine.threads,
            &bin_dir,
            memory,
        )
        .await
        .map_err(|e| format!("{}: {e}", kind.name()))?;
        args.settings.apply(&engine)?;
        for &query in &queries {
            let sql = ember::tpch::query_at_scale(query, args.scale_factor).unwrap_or_default();
            if let Some(alternate) = &alternate {
                for record in
                    measure_alternating(&engine, query, &[sql], args.runs, alternate).await?
                {
                    eprintln!("{}", serde_json::to_string(&record).unwrap_or_default());
                    records.push(record);
                }
                continue;
            }
            let record = measure(
                &engine,
                query,
                &[sql],
                args.runs,
                args.engine.answers.as_deref(),
            )
            .await;
            eprintln!("{}", serde_json::to_string(&record).unwrap_or_default());
            records.push(record);
        }
    }
    args.engine.write_records(&records)?;
    if args.check {
        ember_bench::check(&records, &queries)?;
    }
    Ok(())
}

fn main() {
    ember_bench::run_main(run(Args::parse()));
}
