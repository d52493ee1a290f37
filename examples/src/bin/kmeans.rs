//! K-means: the iterative job where `cache()` pays off.
//!
//! Points (`id,x,y`, integer coordinates around `k` centres) are generated
//! as raw CSV files, as sensors would log them: coordinates padded with
//! spaces, some rows logged twice, some unreadable. Cleaning them (parsing
//! the text, dropping unreadable rows and duplicates) is the dataset's
//! lineage. Lloyd's algorithm then clusters the points: each iteration is one
//! action that assigns every point to its nearest centroid and sums the
//! clusters. The job runs the iterations twice, first on the plain dataset
//! (every iteration reads and cleans the CSV again), then on `cache()` (the
//! first action keeps the clean points on the executors, the others read
//! them), and prints both times.
//!
//! ```text
//! kmeans [--master URL] [--points N] [--k K] [--iterations I] [--files F] [--data DIR]
//! ```
//!
//! Without `--data`, the points are generated into a temporary directory;
//! with it, into DIR (kept), which a cluster's executors must be able to
//! read.

use std::io::Write;
use std::time::Instant;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::functions::expr_fn::least;
use datafusion::logical_expr::{Expr, cast, when};
use ember::dataset::{Dataset, col, count, lit, sum};
use ember_examples::{JobArgs, run_job};

const USAGE: &str =
    "usage: kmeans [--master URL] [--points N] [--k K] [--iterations I] [--files F] [--data DIR]";

/// A cluster's sums, as one iteration's action returns them.
#[derive(serde::Deserialize)]
struct ClusterSums {
    cluster: i64,
    sx: i64,
    sy: i64,
    n: i64,
}

/// A point, as read for the initial centroids.
#[derive(serde::Deserialize)]
struct Point {
    x: i64,
    y: i64,
}

/// The next value of a 64-bit linear congruential generator.
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

/// Writes `points` points around `k` centres into `files` CSV files; point
/// `i` belongs to centre `i % k`, so ids `0..k` start one centroid each.
fn generate(dir: &std::path::Path, points: usize, k: usize, files: usize) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut state = 42u64;
    let per_file = points.div_ceil(files.max(1));
    for file in 0..files.max(1) {
        let path = dir.join(format!("points-{file}.csv"));
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
        let mut text = String::from("id,x,y\n");
        for id in file * per_file..((file + 1) * per_file).min(points) {
            let centre = id % k;
            let (cx, cy) = ((centre % 4) as i64 * 1000, (centre / 4) as i64 * 1000);
            let dx = (next(&mut state) % 601) as i64 - 300;
            let dy = (next(&mut state) % 601) as i64 - 300;
            let line = format!("{id}, {} ,  {}\n", cx + dx, cy + dy);
            match next(&mut state) % 100 {
                // Logged twice.
                0 => {
                    text.push_str(&line);
                    text.push_str(&line);
                }
                // A reading that failed (ids 0..k are the seeds: keep them).
                1 if id >= k => text.push_str(&format!("{id}, n/a , {}\n", cy + dy)),
                _ => text.push_str(&line),
            }
        }
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// `(x - cx)² + (y - cy)²` as a DOUBLE expression.
fn distance(cx: f64, cy: f64) -> Expr {
    let dx = cast(col("x"), DataType::Float64) - lit(cx);
    let dy = cast(col("y"), DataType::Float64) - lit(cy);
    dx.clone() * dx + dy.clone() * dy
}

/// `points` with a `cluster` column: the index of the nearest centroid (the
/// lowest index on a tie). Each distance is computed once, as a column.
fn assign(points: &Dataset, centroids: &[(f64, f64)]) -> ember::Result<Dataset> {
    let mut with = points.clone();
    let names: Vec<String> = (0..centroids.len()).map(|j| format!("d{j}")).collect();
    for (name, &(x, y)) in names.iter().zip(centroids) {
        with = with.with_column(name, distance(x, y))?;
    }
    with = with.with_column(
        "nearest",
        least(names.iter().map(|n| col(n.as_str())).collect()),
    )?;
    let mut case = when(col("d0").eq(col("nearest")), lit(0i64));
    for (j, name) in names.iter().enumerate().skip(1) {
        case = case.when(col(name.as_str()).eq(col("nearest")), lit(j as i64));
    }
    let cluster = case.otherwise(lit(centroids.len() as i64 - 1))?;
    with.with_column("cluster", cluster)
}

/// Runs `iterations` of Lloyd's algorithm from the first `k` points.
async fn cluster(
    points: &Dataset,
    k: usize,
    iterations: usize,
) -> Result<Vec<(f64, f64, i64)>, String> {
    let err = |e: ember::ClientError| e.to_string();
    let mut first: Vec<(i64, Point)> = Vec::new();
    #[derive(serde::Deserialize)]
    struct Seed {
        id: i64,
        x: i64,
        y: i64,
    }
    for seed in points
        .filter(col("id").lt(lit(k as i64)))
        .map_err(err)?
        .collect_as::<Seed>()
        .await
        .map_err(err)?
    {
        first.push((
            seed.id,
            Point {
                x: seed.x,
                y: seed.y,
            },
        ));
    }
    first.sort_by_key(|(id, _)| *id);
    if first.len() != k {
        return Err(format!(
            "expected {k} seed points (ids 0..{k}), found {}",
            first.len()
        ));
    }
    let mut centroids: Vec<(f64, f64, i64)> = first
        .iter()
        .map(|(_, p)| (p.x as f64, p.y as f64, 0))
        .collect();
    for _ in 0..iterations {
        let at: Vec<(f64, f64)> = centroids.iter().map(|&(x, y, _)| (x, y)).collect();
        let sums = assign(points, &at)
            .and_then(|d| {
                d.group_by(vec![col("cluster")]).agg(vec![
                    sum(col("x")).alias("sx"),
                    sum(col("y")).alias("sy"),
                    count(lit(1)).alias("n"),
                ])
            })
            .map_err(err)?
            .collect_as::<ClusterSums>()
            .await
            .map_err(err)?;
        for c in &mut centroids {
            c.2 = 0;
        }
        for s in sums {
            let c = &mut centroids[s.cluster as usize];
            *c = (s.sx as f64 / s.n as f64, s.sy as f64 / s.n as f64, s.n);
        }
    }
    Ok(centroids)
}

async fn kmeans(args: JobArgs) -> Result<(), String> {
    let number = |name: &str, default: usize| -> Result<usize, String> {
        let value = args.option(name).map_or(Ok(default), |v| {
            v.parse().map_err(|e| format!("--{name}: {e}"))
        })?;
        if value == 0 {
            return Err(format!("--{name} must be at least 1"));
        }
        Ok(value)
    };
    let points = number("points", 2_000_000)?;
    let k = number("k", 8)?;
    let iterations = number("iterations", 10)?;
    let files = number("files", 8)?;
    if k > points {
        return Err(format!("--k {k} is more than --points {points}"));
    }
    let temp;
    let dir = match args.option("data") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            temp = tempfile_dir()?;
            temp.clone()
        }
    };
    generate(&dir, points, k, files)?;
    let ctx = args.context().await.map_err(|e| e.to_string())?;
    let dir_text = dir.to_string_lossy().to_string();
    let text = Schema::new(
        ["id", "x", "y"]
            .map(|name| Field::new(name, DataType::Utf8, true))
            .to_vec(),
    );
    let raw = ctx
        .read_csv_with_schema(&dir_text, &text)
        .await
        .map_err(|e| e.to_string())?;
    // Cleaning: parse the text, drop unreadable readings and duplicates.
    let number = |column: &str| -> Result<Expr, String> {
        let parsed = ctx
            .call("parse_double", vec![col(column)])
            .map_err(|e| e.to_string())?;
        Ok(cast(parsed, DataType::Int64))
    };
    let parsed = raw
        .select(vec![
            number("id")?.alias("id"),
            number("x")?.alias("x"),
            number("y")?.alias("y"),
        ])
        .and_then(|d| d.filter(col("x").is_not_null().and(col("y").is_not_null())))
        .and_then(|d| d.distinct())
        .map_err(|e| e.to_string())?;

    let started = Instant::now();
    let plain = cluster(&parsed, k, iterations).await?;
    let without = started.elapsed();

    let cached = parsed.cache().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let with_cache = cluster(&cached, k, iterations).await?;
    let with = started.elapsed();
    let storage = cached.storage().await.map_err(|e| e.to_string())?;
    cached.unpersist().await.map_err(|e| e.to_string())?;

    if plain != with_cache {
        return Err("the cached run found other centroids than the plain run".to_string());
    }
    for (j, (x, y, n)) in with_cache.iter().enumerate() {
        println!("centroid {j}: {x:.3} {y:.3} ({n} points)");
    }
    println!(
        "cache: {} partitions held ({} rows), computed {} times, read {} times",
        storage.blocks.len(),
        storage.rows(),
        storage.partitions_computed,
        storage.partitions_read_local + storage.partitions_sent,
    );
    println!(
        "time without cache: {:.3} s for {iterations} iterations",
        without.as_secs_f64()
    );
    println!(
        "time with cache: {:.3} s for {iterations} iterations ({:.1}x)",
        with.as_secs_f64(),
        without.as_secs_f64() / with.as_secs_f64().max(1e-9)
    );
    if args.option("data").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// A fresh directory under the system's temp dir.
fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("ember-kmeans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn main() {
    run_job(USAGE, kmeans);
}
