//! `ember-recovery-bench`: how long a query takes on a local Ember cluster
//! when one of its executors is killed (SIGKILL) part-way through, next to
//! the same query undisturbed; the answer must not change.
//!
//! For each query, the undisturbed time `T` is the median of `--runs` runs;
//! then, for each fraction `f` of `--kill-at`, a fresh cluster runs the
//! query and executor 0 is killed `f × T` after it starts. Each record says
//! how long the query took, its ratio to `T`, and whether its answer's
//! digest matched the undisturbed one. Written as JSON (`--out`) and as a
//! Markdown table on standard output.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use ember::EmberContext;
use ember::local_cluster::{LocalCluster, LocalClusterOptions};
use ember_bench::{Suite, result_digest, summarize};
use serde::Serialize;

/// Measures recovery from a killed executor.
#[derive(Debug, Parser)]
#[command(name = "ember-recovery-bench", version)]
struct Args {
    /// Directory of the TPC-H Parquet tables; generated there when missing.
    #[arg(long)]
    data: PathBuf,
    /// Scale factor to generate the data at when --data lacks tables.
    #[arg(long, default_value_t = 10.0)]
    scale_factor: f64,
    /// TPC-H queries, comma-separated.
    #[arg(long, default_value = "18,21", value_delimiter = ',')]
    queries: Vec<usize>,
    /// When to kill an executor, as fractions of the undisturbed time.
    #[arg(long, default_value = "0.25,0.5,0.75", value_delimiter = ',')]
    kill_at: Vec<f64>,
    /// Executors in the cluster.
    #[arg(long, default_value_t = 2)]
    executors: usize,
    /// Cores per executor.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Undisturbed runs per query (the median is the reference time).
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Directory of `ember-scheduler` and `ember-executor` (default: this
    /// binary's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where to write the records.
    #[arg(long)]
    out: PathBuf,
    /// Directory to write each run's rows to (`q18-undisturbed.json`,
    /// `q18-killed-75-2.json` for the third fraction, ...), to see how a
    /// changed answer differs.
    #[arg(long)]
    answers: Option<PathBuf>,
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
struct RecoveryRecord {
    query: usize,
    /// `None` for the undisturbed reference; else the fraction of it after
    /// which an executor was killed.
    killed_at_fraction: Option<f64>,
    /// Seconds after the start that the executor was killed.
    killed_after: Option<f64>,
    /// Seconds the query took.
    seconds: Option<f64>,
    /// Its ratio to the undisturbed median.
    ratio: Option<f64>,
    /// Whether its answer is the undisturbed one.
    same_answer: Option<bool>,
    /// Rows it returned.
    rows: Option<usize>,
    /// Why it failed, if it did.
    error: Option<String>,
}

struct Cluster {
    cluster: LocalCluster,
    ctx: EmberContext,
    _state: tempfile::TempDir,
}

async fn start_cluster(args: &Args, bin_dir: &std::path::Path) -> Result<Cluster, String> {
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut options = LocalClusterOptions::new(bin_dir, args.executors, state.path());
    options.cores_per_executor = args.cores;
    options.log_filter = "warn".into();
    let cluster = LocalCluster::start(&options)
        .await
        .map_err(|e| e.to_string())?;
    let ctx = EmberContext::connect(&cluster.address().to_string())
        .await
        .map_err(|e| e.to_string())?;
    for statement in Suite::Tpch.create_table_statements(&args.data) {
        ctx.run_sql(&statement).await.map_err(|e| e.to_string())?;
    }
    Ok(Cluster {
        cluster,
        ctx,
        _state: state,
    })
}

/// What one run gave: seconds, digest, rows, and the rows as JSON.
type Timed = (f64, String, usize, String);

async fn timed(ctx: &EmberContext, sql: &str) -> Result<Timed, String> {
    let started = Instant::now();
    let batches = ctx.run_sql(sql).await.map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    let answer = ember_bench::result_answer(&batches).map_err(|e| e.to_string())?;
    Ok((
        seconds,
        result_digest(&batches).map_err(|e| e.to_string())?,
        rows,
        answer,
    ))
}

async fn run(args: Args) -> Result<(), String> {
    Suite::Tpch
        .generate(&args.data, args.scale_factor, 2)
        .map_err(|e| e.to_string())?;
    let bin_dir = ember_bench::bin_dir(args.bin_dir.as_deref())?;
    let mut records = Vec::new();
    for &query in &args.queries {
        let sql = ember::tpch::query_at_scale(query, args.scale_factor)
            .ok_or_else(|| format!("--queries: there is no TPC-H query {query}"))?;
        let reference = start_cluster(&args, &bin_dir).await?;
        let mut times = Vec::new();
        let mut digest = String::new();
        let mut rows = 0;
        for _ in 0..args.runs.max(1) {
            let (seconds, answer, count, json) = timed(&reference.ctx, &sql).await?;
            times.push(seconds);
            digest = answer;
            rows = count;
            if let Some(dir) = &args.answers {
                let _ = std::fs::write(dir.join(format!("q{query}-undisturbed.json")), json);
            }
        }
        drop(reference);
        let (median, _, _) = summarize(&times);
        let record = RecoveryRecord {
            query,
            killed_at_fraction: None,
            killed_after: None,
            seconds: Some(median),
            ratio: Some(1.0),
            same_answer: Some(true),
            rows: Some(rows),
            error: None,
        };
        eprintln!("{}", serde_json::to_string(&record).unwrap_or_default());
        records.push(record);
        for (attempt, &fraction) in args.kill_at.iter().enumerate() {
            let mut cluster = start_cluster(&args, &bin_dir).await?;
            let victim = cluster.cluster.executor_pids()[0];
            let delay = Duration::from_secs_f64(median * fraction);
            let ctx = cluster.ctx.clone();
            let query_sql = sql.clone();
            let started = Instant::now();
            let running = tokio::spawn(async move { timed(&ctx, &query_sql).await });
            tokio::time::sleep(delay).await;
            // SAFETY: kill(2) on a child process of this one.
            unsafe { libc::kill(victim as i32, libc::SIGKILL) };
            let killed_after = started.elapsed().as_secs_f64();
            let outcome = running.await.map_err(|e| e.to_string())?;
            let _ = cluster.cluster.exited_process();
            let record = match outcome {
                Ok((seconds, answer, rows, json)) => {
                    if let Some(dir) = &args.answers {
                        let name =
                            format!("q{query}-killed-{:.0}-{attempt}.json", fraction * 100.0);
                        let _ = std::fs::write(dir.join(name), json);
                    }
                    RecoveryRecord {
                        query,
                        killed_at_fraction: Some(fraction),
                        killed_after: Some(killed_after),
                        seconds: Some(seconds),
                        ratio: Some(seconds / median),
                        same_answer: Some(answer == digest),
                        rows: Some(rows),
                        error: None,
                    }
                }
                Err(e) => RecoveryRecord {
                    query,
                    killed_at_fraction: Some(fraction),
                    killed_after: Some(killed_after),
                    seconds: None,
                    ratio: None,
                    same_answer: None,
                    rows: None,
                    error: Some(e),
                },
            };
            eprintln!("{}", serde_json::to_string(&record).unwrap_or_default());
            records.push(record);
        }
    }
    let json = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, json).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "| query | executor killed at | after (s) | query took (s) | ratio to undisturbed | same answer |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for r in &records {
        let fmt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "—".into());
        println!(
            "| q{} | {} | {} | {} | {} | {} |",
            r.query,
            r.killed_at_fraction
                .map(|f| format!("{:.0}%", f * 100.0))
                .unwrap_or_else(|| "not killed".into()),
            fmt(r.killed_after),
            fmt(r.seconds),
            r.ratio
                .map(|v| format!("{v:.2}x"))
                .unwrap_or_else(|| "—".into()),
            match (&r.same_answer, &r.error) {
                (_, Some(e)) => format!("failed: {e}"),
                (Some(true), _) => "yes".into(),
                _ => "**no**".into(),
            }
        );
    }
    Ok(())
}

fn main() {
    ember_bench::run_main(run(Args::parse()));
}
