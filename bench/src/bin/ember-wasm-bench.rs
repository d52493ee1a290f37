//! WebAssembly functions against the same Rust code as native named
//! functions, over TPC-H `lineitem`, embedded: arithmetic
//! (`disc_price`), string parsing (`comment_words`) and a reduce
//! (`max_key`). Each function's own cost per row is its query's time less
//! the time of the same query without the function (the scan and the
//! final aggregate).
//!
//! ```text
//! ember-wasm-bench --data DIR [--scale-factor 1] [--runs 3] [--threads 2]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use ember::EmberContext;
use ember_core::functions::{FunctionLibrary, register_library};

#[derive(Parser)]
#[command(about = "WebAssembly functions against native named functions over TPC-H lineitem")]
struct Args {
    /// Directory of the TPC-H Parquet tables; `lineitem` is generated
    /// there when missing.
    #[arg(long)]
    data: PathBuf,
    /// Scale factor of the data.
    #[arg(long, default_value_t = 1.0)]
    scale_factor: f64,
    /// Runs of each query (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Threads (target partitions).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// The native twins of `wasm/guest/examples/bench_functions.rs`.
fn native_library() -> FunctionLibrary {
    FunctionLibrary::new("bench_native")
        .scalar2("native_disc_price", |price: f64, discount: f64| {
            price * (1.0 - discount)
        })
        .scalar1("native_comment_words", |text: String| {
            text.split_whitespace().count() as i64
        })
        .reduce("native_max_key", |a: i64, b: i64| if b > a { b } else { a })
}

/// (function, baseline query, query with the function as `{f}`).
const CASES: [(&str, &str, &str); 3] = [
    (
        "disc_price",
        "SELECT sum(CAST(l_extendedprice AS DOUBLE) + CAST(l_discount AS DOUBLE)) AS answer \
         FROM lineitem",
        "SELECT sum({f}(CAST(l_extendedprice AS DOUBLE), CAST(l_discount AS DOUBLE))) AS answer \
         FROM lineitem",
    ),
    (
        "comment_words",
        "SELECT sum(length(l_comment)) AS answer FROM lineitem",
        "SELECT sum({f}(l_comment)) AS answer FROM lineitem",
    ),
    (
        "max_key",
        // Reads and tests every key; not max(), which Parquet statistics
        // answer without a scan.
        "SELECT count(*) AS answer FROM lineitem WHERE l_orderkey > 0",
        "SELECT {f}(l_orderkey) AS answer FROM lineitem",
    ),
];

async fn time(ctx: &EmberContext, sql: &str, runs: usize) -> Result<(f64, String), String> {
    let mut times = Vec::with_capacity(runs);
    let mut answer = String::new();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let frame = ctx.sql(sql).await.map_err(|e| format!("{sql}: {e}"))?;
        let batches = ctx
            .collect(frame)
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
        times.push(started.elapsed().as_secs_f64());
        answer = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .map_err(|e| e.to_string())?
            .to_string()
            .lines()
            .nth(3)
            .unwrap_or_default()
            .to_string();
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], answer))
}

async fn run(args: Args) -> Result<(), String> {
    let generator = ember::tpch::TpchGenerator {
        scale_factor: args.scale_factor,
        parts: args.threads.max(1),
        ..Default::default()
    };
    let table_dir = args.data.join("lineitem");
    if !table_dir.exists() {
        eprintln!(
            "generating lineitem at SF {} in {}",
            args.scale_factor,
            args.data.display()
        );
        generator
            .write_table("lineitem", &args.data)
            .map_err(|e| e.to_string())?;
    }
    let module_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let module = ember_wasm::guest::build_guest(
        &ember_wasm::guest::example_source("bench_functions"),
        module_dir.path(),
    )
    .map_err(|e| e.to_string())?;
    register_library(native_library());
    let ctx = EmberContext::embedded().map_err(|e| e.to_string())?;
    ctx.set_option(
        "datafusion.execution.target_partitions",
        &args.threads.to_string(),
    )
    .map_err(|e| e.to_string())?;
    ember_core::functions::register_into(ctx.session());
    ctx.register_wasm_library("bench", module.as_path())
        .await
        .map_err(|e| e.to_string())?;
    for statement in generator.create_table_statements(&args.data) {
        if statement.contains("lineitem") {
            let frame = ctx.sql(&statement).await.map_err(|e| e.to_string())?;
            ctx.collect(frame).await.map_err(|e| e.to_string())?;
        }
    }
    let rows = time(&ctx, "SELECT count(*) FROM lineitem", 1).await?.1;
    let rows: f64 = rows
        .trim_matches(|c: char| c == '|' || c.is_whitespace())
        .parse()
        .map_err(|_| format!("cannot read the row count from `{rows}`"))?;
    println!(
        "| function | rows | baseline (s) | native (s) | wasm (s) | wasm/native query | native ns/row | wasm ns/row | wasm/native per row | same answer |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut differ = Vec::new();
    for (function, baseline, with_function) in CASES {
        let (base, _) = time(&ctx, baseline, args.runs).await?;
        let native_sql = with_function.replace("{f}", &format!("native_{function}"));
        let wasm_sql = with_function.replace("{f}", function);
        let (native, native_answer) = time(&ctx, &native_sql, args.runs).await?;
        let (wasm, wasm_answer) = time(&ctx, &wasm_sql, args.runs).await?;
        let per_row = |t: f64| ((t - base).max(0.0) / rows) * 1e9;
        let (native_ns, wasm_ns) = (per_row(native), per_row(wasm));
        let per_row_ratio = match native_ns > 0.5 {
            true => format!("{:.2}x", wasm_ns / native_ns),
            false => "n/a (native within the baseline)".to_string(),
        };
        let same = if native_answer == wasm_answer {
            "yes"
        } else {
            "NO"
        };
        println!(
            "| {function} | {rows:.0} | {base:.3} | {native:.3} | {wasm:.3} | {:.2}x | \
             {native_ns:.1} | {wasm_ns:.1} | {per_row_ratio} | {same} |",
            wasm / native
        );
        if native_answer != wasm_answer {
            differ.push(format!(
                "{function}: native {native_answer}, wasm {wasm_answer}"
            ));
        }
    }
    match differ.is_empty() {
        true => Ok(()),
        false => Err(format!("answers differ: {}", differ.join("; "))),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
