//! `ember-tpcds-bench`: the 99 TPC-DS queries on Ember embedded, a local
//! Ember cluster and single-process DataFusion; one JSON record per engine
//! and query (see `ember_bench::QueryRecord`). The query texts come from
//! `scripts/fetch-tpcds-queries` (see `ember::tpcds`).

use std::path::PathBuf;

use clap::Parser;
use ember_bench::{BenchEngine, EngineFlags, SettingFlags, Suite, measure, measure_alternating};

/// The allocator of Ember's own binaries, so that an embedded engine here
/// holds memory as `ember sql` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the TPC-DS queries and writes their timings as JSON.
#[derive(Debug, Parser)]
#[command(name = "ember-tpcds-bench", version)]
struct Args {
    /// Directory of the Parquet tables (one folder per table); generated
    /// there first when missing.
    #[arg(long)]
    data: PathBuf,
    /// Scale factor the data is generated at when --data lacks tables.
    #[arg(long, default_value_t = 1.0)]
    scale_factor: f64,
    /// Directory of the query texts (default: ~/.cache/ember/tpcds-queries,
    /// or $EMBER_TPCDS_QUERIES).
    #[arg(long)]
    query_dir: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineFlags,
    #[command(flatten)]
    settings: SettingFlags,
    /// Runs per query (the median is reported).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Queries to run, comma-separated (default: 1 to 99).
    #[arg(long, value_delimiter = ',')]
    queries: Vec<usize>,
}

async fn run(args: Args) -> Result<(), String> {
    let kinds = args.engine.kinds()?;
    let alternate = args.settings.alternate()?;
    let query_dir = args
        .query_dir
        .clone()
        .unwrap_or_else(ember::tpcds::default_query_dir);
    let numbers: Vec<usize> = if args.queries.is_empty() {
        (1..=99).collect()
    } else {
        args.queries.clone()
    };
    let queries = numbers
        .iter()
        .map(|&n| ember::tpcds::load_query(&query_dir, n).map_err(|e| format!("--queries: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    args.engine.create_answers_dir()?;
    Suite::Tpcds
        .generate(&args.data, args.scale_factor, args.engine.threads.max(2))
        .map_err(|e| e.to_string())?;
    let bin_dir = ember_bench::bin_dir(args.engine.bin_dir.as_deref())?;
    let mut records = Vec::new();
    for kind in kinds {
        let engine = BenchEngine::start(
            kind,
            Suite::Tpcds,
            &args.data,
            args.engine.threads,
            &bin_dir,
            None,
        )
        .await
        .map_err(|e| format!("{}: {e}", kind.name()))?;
        args.settings.apply(&engine)?;
        for query in &queries {
            if let Some(alternate) = &alternate {
                let statements = &query.statements;
                for record in
                    measure_alternating(&engine, query.number, statements, args.runs, alternate)
                        .await?
                {
                    eprintln!("{}", serde_json::to_string(&record).unwrap_or_default());
                    records.push(record);
                }
                continue;
            }
            let record = measure(
                &engine,
                query.number,
                &query.statements,
                args.runs,
                args.engine.answers.as_deref(),
            )
            .await;
            eprintln!("{}", serde_json::to_string(&record).unwrap_or_default());
            records.push(record);
        }
    }
    args.engine.write_records(&records)
}

fn main() {
    ember_bench::run_main(run(Args::parse()));
}
