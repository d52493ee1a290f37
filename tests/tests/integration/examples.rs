//! The example jobs under `examples/`, run as their binaries embedded and on
//! a real two-executor cluster, against the same computation in plain Rust.

use std::collections::HashMap;
use std::process::Command;

use ember_tests::{binary, start_cluster, start_cluster_with_env};

/// Text files with punctuation, case and apostrophes, in a directory.
pub(crate) fn corpus(dir: &std::path::Path) -> Vec<String> {
    let texts = [
        "It was the best of times, it was the worst of times;\nit was the age of wisdom.\n",
        "The cat's hat — THE CAT'S HAT!\n\nTimes change.\n",
        "wisdom, wisdom, wisdom\n",
    ];
    for (i, text) in texts.iter().enumerate() {
        std::fs::write(dir.join(format!("part-{i}.txt")), text).unwrap();
    }
    texts.iter().map(|t| t.to_string()).collect()
}

/// Word counts as the example defines words, sorted by count, then word.
pub(crate) fn expected_counts(texts: &[String], top: usize) -> Vec<String> {
    let mut counts: HashMap<String, i64> = HashMap::new();
    for text in texts {
        for word in text.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
            let word = word.trim_matches('\'').to_lowercase();
            if !word.is_empty() {
                *counts.entry(word).or_default() += 1;
            }
        }
    }
    let mut counts: Vec<(String, i64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
        .into_iter()
        .take(top)
        .map(|(w, c)| format!("{w}\t{c}"))
        .collect()
}

fn word_count(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary("word-count"))
        .args(args)
        .env_remove("EMBER_MASTER")
        .output()
        .expect("word-count runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_runs_embedded_and_on_a_cluster_with_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let texts = corpus(dir.path());
    let path = dir.path().to_str().unwrap().to_string();
    let expected = expected_counts(&texts, 8);

    let (code, stdout, stderr) = word_count(&["--top", "8", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);

    let cluster = start_cluster(2).await;
    let master = format!("df://{}", cluster.address());
    let (code, stdout, stderr) = word_count(&["--master", &master, "--top", "8", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);

    // The same job with its functions from a WebAssembly library loaded at
    // run time, embedded and on the same (never rebuilt) cluster.
    let module = ember_tests::guest_module("word_count");
    let module = module.to_str().unwrap();
    for master in [None, Some(master.as_str())] {
        let mut args = vec!["--top", "8", "--functions", module, &path];
        if let Some(master) = master {
            args.extend(["--master", master]);
        }
        let (code, stdout, stderr) = word_count(&args);
        assert_eq!(code, 0, "{master:?}: {stderr}");
        assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "{master:?}");
    }

    // Bad input: one line naming the culprit, a non-zero exit.
    let missing = dir.path().join("missing");
    let (code, _, stderr) = word_count(&[missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("missing"),
        "{stderr}"
    );
    let (code, _, stderr) = word_count(&["--top"]);
    assert_eq!(code, 2, "{stderr}");
}

/// Raw trips as the ETL reads them: (trip_id, pickup_day, zone, fare), all
/// text, with malformed rows among them.
fn raw_trips() -> Vec<[String; 4]> {
    let days = ["2026-03-01", "2026-03-02", "2026-03-03"];
    (0..3000)
        .map(|i: usize| {
            let day = match i % 211 {
                5 => "2026-02-30".to_string(), // not a date
                _ => days[i % 3].to_string(),
            };
            let zone = match i % 97 {
                3 => "zone?".to_string(),        // not an integer
                _ => ((i * 7) % 12).to_string(), // zones 10 and 11 have no borough
            };
            let fare = match i % 89 {
                1 => "n/a".to_string(),   // not a number
                2 => "-4.50".to_string(), // negative
                _ => format!("{}.{:02}", 3 + (i * 13) % 60, (i * 7) % 100),
            };
            [i.to_string(), day, zone, fare]
        })
        .collect()
}

fn borough(zone: i64) -> &'static str {
    ["Bronx", "Brooklyn", "Manhattan", "Queens", "Staten Island"]
        .get((zone / 2) as usize)
        .copied()
        .unwrap_or("Unknown")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taxi_etl_sets_bad_rows_aside_and_writes_days_to_s3() {
    use std::collections::BTreeMap;

    use ember_tests::s3_server::S3TestServer;

    let dir = tempfile::tempdir().unwrap();
    let server = S3TestServer::start().expect("S3 server starts");
    server.create_bucket("lake").unwrap();
    let raw = raw_trips();
    let upload = dir.path().join("upload");
    std::fs::create_dir_all(upload.join("raw")).unwrap();
    for (part, rows) in raw.chunks(1000).enumerate() {
        let mut text = String::from("trip_id,pickup_day,zone,fare\n");
        for row in rows {
            text.push_str(&row.join(","));
            text.push('\n');
        }
        std::fs::write(upload.join(format!("raw/part-{part}.csv")), text).unwrap();
    }
    let mut zones = String::from("zone,borough\n");
    for zone in 0..10 {
        zones.push_str(&format!("{zone},{}\n", borough(zone)));
    }
    std::fs::create_dir_all(upload.join("ref")).unwrap();
    std::fs::write(upload.join("ref/zones.csv"), zones).unwrap();
    // The WebAssembly variant's functions, read from S3 by the job.
    std::fs::create_dir_all(upload.join("lib")).unwrap();
    std::fs::copy(
        ember_tests::guest_module("taxi_etl"),
        upload.join("lib/taxi_etl.wasm"),
    )
    .unwrap();
    server.upload_dir("lake", "", &upload).await;

    // The expected result, in plain Rust.
    let mut rejected = 0;
    let mut expected: BTreeMap<(String, String), (i64, f64)> = BTreeMap::new();
    for [_, day, zone, fare] in &raw {
        let fare = fare.parse::<f64>().ok().filter(|f| f.is_finite());
        let zone = zone.parse::<i64>().ok();
        let valid_day = day != "2026-02-30";
        match (fare, zone) {
            (Some(fare), Some(zone)) if fare >= 0.0 && valid_day => {
                let e = expected
                    .entry((day.clone(), borough(zone).to_string()))
                    .or_default();
                e.0 += 1;
                e.1 += fare;
            }
            _ => rejected += 1,
        }
    }
    assert!(rejected > 50, "the data has bad rows: {rejected}");

    let cluster = start_cluster_with_env(2, server.env()).await;
    let cluster_master = Some(format!("df://{}", cluster.address()));
    // Embedded and on the cluster, with the built-in functions and with
    // the WebAssembly library's.
    let runs = [
        (None, false),
        (cluster_master.clone(), false),
        (None, true),
        (cluster_master, true),
    ];
    for (run, (master, wasm)) in runs.iter().enumerate() {
        let prefix = format!("run-{run}");
        let mut args = vec![
            "--raw".to_string(),
            "s3://lake/raw/".to_string(),
            "--zones".to_string(),
            "s3://lake/ref/zones.csv".to_string(),
            "--output".to_string(),
            format!("s3://lake/{prefix}/by-day/"),
            "--rejects".to_string(),
            format!("s3://lake/{prefix}/rejects/"),
        ];
        if let Some(master) = master {
            args.extend(["--master".to_string(), master.clone()]);
        }
        if *wasm {
            args.extend([
                "--functions".to_string(),
                "s3://lake/lib/taxi_etl.wasm".to_string(),
            ]);
        }
        let output = Command::new(binary("taxi-etl"))
            .args(&args)
            .env_remove("EMBER_MASTER")
            .envs(server.env())
            .output()
            .expect("taxi-etl runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{master:?} (wasm: {wasm}): {stderr}"
        );
        assert!(stdout.contains("raw trips: 3000"), "{stdout}");
        assert!(
            stdout.contains(&format!("rejected: {rejected} ")),
            "{stdout}"
        );
        check_etl_output(
            &server.bucket_dir("lake").join(&prefix),
            &expected,
            rejected,
        )
        .await;
    }
}

/// The ETL's rejects and per-day output under `dir` against the expected
/// per (day, borough) trips and revenue.
async fn check_etl_output(
    dir: &std::path::Path,
    expected: &std::collections::BTreeMap<(String, String), (i64, f64)>,
    rejected: usize,
) {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};

    let bucket = dir;
    // Rejects: every bad row, with a reason.
    let ctx = datafusion::prelude::SessionContext::new();
    let text = |name: &str| {
        datafusion::arrow::datatypes::Field::new(
            name,
            datafusion::arrow::datatypes::DataType::Utf8,
            true,
        )
    };
    let rejects_schema = datafusion::arrow::datatypes::Schema::new(vec![
        text("trip_id"),
        text("pickup_day"),
        text("zone"),
        text("fare"),
        text("reason"),
    ]);
    let rejects: Vec<RecordBatch> = ctx
        .read_csv(
            bucket.join("rejects").to_str().unwrap(),
            datafusion::prelude::CsvReadOptions::new().schema(&rejects_schema),
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let rows: usize = rejects.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, rejected);
    let reasons: std::collections::BTreeSet<String> = rejects
        .iter()
        .flat_map(|b| {
            b.column(4)
                .as_string::<i32>()
                .iter()
                .map(|r| r.unwrap_or("NULL").to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let expected_reasons: std::collections::BTreeSet<String> = [
        "fare is not a number",
        "negative fare",
        "zone is not an integer",
        "pickup_day is not a date",
    ]
    .iter()
    .map(|r| r.to_string())
    .collect();
    assert_eq!(reasons, expected_reasons);

    // Output: one directory per day, per borough counts and revenue.
    for day in ["2026-03-01", "2026-03-02", "2026-03-03"] {
        let path = bucket.join("by-day").join(format!("day={day}"));
        let batches: Vec<RecordBatch> = ctx
            .read_parquet(path.to_str().unwrap(), Default::default())
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut actual: BTreeMap<String, (i64, f64)> = BTreeMap::new();
        for batch in &batches {
            let borough = batch.column_by_name("borough").unwrap();
            let borough = datafusion::arrow::compute::cast(
                borough,
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let trips = batch
                .column_by_name("trips")
                .unwrap()
                .as_primitive::<Int64Type>();
            let revenue = batch
                .column_by_name("revenue")
                .unwrap()
                .as_primitive::<Float64Type>();
            for i in 0..batch.num_rows() {
                actual.insert(
                    borough.as_string::<i32>().value(i).to_string(),
                    (trips.value(i), revenue.value(i)),
                );
            }
        }
        let wanted: BTreeMap<String, (i64, f64)> = expected
            .iter()
            .filter(|((d, _), _)| d == day)
            .map(|((_, b), v)| (b.clone(), *v))
            .collect();
        assert_eq!(
            actual.keys().collect::<Vec<_>>(),
            wanted.keys().collect::<Vec<_>>(),
            "{day}"
        );
        for (b, (trips, revenue)) in &wanted {
            let (t, r) = actual[b];
            assert_eq!(t, *trips, "{day} {b}");
            assert!(
                (r - revenue).abs() <= 1e-9 * revenue.abs(),
                "{day} {b}: {r} vs {revenue}"
            );
        }
    }
    assert!(ember_tests::files_below(&bucket.join("by-day")).contains(&"_SUCCESS".to_string()));
}

/// K-means in plain Rust over the raw points the job wrote: the same
/// cleaning (unreadable rows and duplicates dropped), the same seeds (ids
/// `0..k`), the same nearest-centroid rule (lowest index on a tie), integer
/// sums. Returns the centroid lines and the number of clean points.
fn reference_kmeans(dir: &std::path::Path, k: usize, iterations: usize) -> (Vec<String>, usize) {
    let mut clean = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().skip(1) {
            let v: Vec<Option<f64>> = line.split(',').map(|f| f.trim().parse().ok()).collect();
            if let [Some(id), Some(x), Some(y)] = v[..] {
                clean.insert((id as i64, x as i64, y as i64));
            }
        }
    }
    let points: Vec<(i64, i64, i64)> = clean.into_iter().collect();
    let mut centroids: Vec<(f64, f64, i64)> = points[..k]
        .iter()
        .map(|&(_, x, y)| (x as f64, y as f64, 0))
        .collect();
    for _ in 0..iterations {
        let mut sums = vec![(0i64, 0i64, 0i64); k];
        for &(_, x, y) in &points {
            let distance = |&(cx, cy, _): &(f64, f64, i64)| {
                let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                dx * dx + dy * dy
            };
            let mut best = 0;
            for j in 1..k {
                if distance(&centroids[j]) < distance(&centroids[best]) {
                    best = j;
                }
            }
            sums[best].0 += x;
            sums[best].1 += y;
            sums[best].2 += 1;
        }
        for (c, &(sx, sy, n)) in centroids.iter_mut().zip(&sums) {
            c.2 = n;
            if n > 0 {
                *c = (sx as f64 / n as f64, sy as f64 / n as f64, n);
            }
        }
    }
    let lines = centroids
        .iter()
        .enumerate()
        .map(|(j, (x, y, n))| format!("centroid {j}: {x:.3} {y:.3} ({n} points)"))
        .collect();
    (lines, points.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kmeans_caches_its_points_and_finds_the_reference_centroids() {
    let (points, k, iterations) = (20_000usize, 5usize, 3usize);
    let run = |master: Option<String>, data: &std::path::Path| {
        let mut command = Command::new(binary("kmeans"));
        if let Some(master) = master {
            command.args(["--master", &master]);
        }
        let output = command
            .args(["--points", &points.to_string(), "--k", &k.to_string()])
            .args(["--iterations", &iterations.to_string(), "--files", "4"])
            .arg("--data")
            .arg(data)
            .env_remove("EMBER_MASTER")
            .output()
            .expect("kmeans runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
        stdout
    };
    let check = |stdout: &str, data: &std::path::Path| {
        let lines: Vec<&str> = stdout.lines().collect();
        let (centroids, clean) = reference_kmeans(data, k, iterations);
        assert!(clean < points, "the data holds unreadable rows");
        assert_eq!(lines[..k], centroids, "{stdout}");
        // cache: P partitions held (N rows), computed P times, read P*I times
        let cache = lines
            .iter()
            .find(|l| l.starts_with("cache: "))
            .expect(stdout);
        let numbers: Vec<u64> = cache
            .split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .map(|w| w.parse().unwrap())
            .collect();
        let (held, rows, computed, read) = (numbers[0], numbers[1], numbers[2], numbers[3]);
        assert!(held > 0, "{cache}");
        assert_eq!(rows, clean as u64, "{cache}");
        assert_eq!(computed, held, "computed once: {cache}");
        assert_eq!(
            read,
            held * iterations as u64,
            "read by every iteration: {cache}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("time without cache: ")),
            "{stdout}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("time with cache: ")),
            "{stdout}"
        );
    };

    let dir = tempfile::tempdir().unwrap();
    let embedded = dir.path().join("embedded");
    check(&run(None, &embedded), &embedded);

    let cluster = start_cluster(2).await;
    let on_cluster = dir.path().join("cluster");
    check(
        &run(Some(format!("df://{}", cluster.address())), &on_cluster),
        &on_cluster,
    );
}
