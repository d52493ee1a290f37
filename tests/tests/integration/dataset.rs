//! The lazy `Dataset` API, embedded and on a real two-executor cluster:
//! every transformation and action against the same computation in plain
//! Rust over the same rows, `parallelize` on a remote cluster, and laziness
//! (no job reaches the scheduler before an action).

use std::collections::{BTreeMap, BTreeSet};

use ember::EmberContext;
use ember::dataset::{Dataset, JoinType, avg, col, count, lit, max, min, sum};
use ember_tests::{files_below, http_get, start_cluster};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Trip {
    id: i64,
    zone: i64,
    passengers: i64,
    fare: f64,
    note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Zone {
    zone: i64,
    name: String,
}

/// 1000 trips over zones 0..16; zones 3..20 have names, so every join type
/// has rows on each side without a partner.
fn trips() -> Vec<Trip> {
    let mut state = 11u64;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    (0..1000)
        .map(|id| Trip {
            id,
            zone: next(16) as i64,
            passengers: 1 + next(5) as i64,
            fare: (next(10_000) as f64) / 100.0,
            note: (id % 7 == 0).then(|| format!("note {id}")),
        })
        .collect()
}

fn zones() -> Vec<Zone> {
    (3..20)
        .map(|zone| Zone {
            zone,
            name: format!("zone-{zone}"),
        })
        .collect()
}

/// Trips per zone: a plan with one shuffle on a cluster.
fn per_zone_plan(data: &Dataset) -> Dataset {
    data.group_by(vec![col("zone")])
        .agg(vec![count(lit(1)).alias("trips")])
        .unwrap()
}

async fn ids(dataset: &Dataset) -> Vec<i64> {
    #[derive(Deserialize)]
    struct Id {
        id: i64,
    }
    let mut ids: Vec<i64> = dataset
        .select_columns(&["id"])
        .unwrap()
        .collect_as::<Id>()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// Every transformation and action on `ctx`, checked against plain Rust.
async fn exercise(ctx: &EmberContext, dir: &std::path::Path) {
    let rows = trips();
    let data = ctx.parallelize_rows(&rows, 4).unwrap();
    let names = ctx.parallelize_rows(&zones(), 2).unwrap();

    // parallelize + collect_as round trip, count, take, first.
    let mut back: Vec<Trip> = data.collect_as().await.unwrap();
    back.sort_by_key(|t| t.id);
    assert_eq!(back, rows);
    assert_eq!(data.count().await.unwrap(), 1000);
    let sorted = data.sort(vec![col("id").sort(true, false)]).unwrap();
    let first: Vec<Trip> =
        ember::dataset::batches_to_rows(&[sorted.first().await.unwrap().unwrap()]).unwrap();
    assert_eq!(first, vec![rows[0].clone()]);
    let taken: usize = sorted
        .take(7)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(taken, 7);

    // filter, with_column, rename, drop, select.
    #[derive(Debug, PartialEq, Deserialize)]
    struct Shaped {
        id: i64,
        people: i64,
        fare_per_person: f64,
    }
    let shaped = data
        .filter(col("fare").gt(lit(50.0)).and(col("zone").lt(lit(8))))
        .unwrap()
        .with_column("fare_per_person", col("fare") / col("passengers"))
        .unwrap()
        .rename("passengers", "people")
        .unwrap()
        .drop(&["note", "zone"])
        .unwrap()
        .select(vec![col("id"), col("people"), col("fare_per_person")])
        .unwrap()
        .sort(vec![col("id").sort(true, false)])
        .unwrap();
    let expected: Vec<Shaped> = rows
        .iter()
        .filter(|t| t.fare > 50.0 && t.zone < 8)
        .map(|t| Shaped {
            id: t.id,
            people: t.passengers,
            fare_per_person: t.fare / t.passengers as f64,
        })
        .collect();
    assert_eq!(shaped.collect_as::<Shaped>().await.unwrap(), expected);

    // group_by + agg.
    #[derive(Debug, PartialEq, Deserialize)]
    struct PerZone {
        zone: i64,
        trips: i64,
        people: i64,
        lo: f64,
        hi: f64,
        mean: f64,
    }
    let per_zone: Vec<PerZone> = data
        .group_by(vec![col("zone")])
        .agg(vec![
            count(lit(1)).alias("trips"),
            sum(col("passengers")).alias("people"),
            min(col("fare")).alias("lo"),
            max(col("fare")).alias("hi"),
            avg(col("passengers")).alias("mean"),
        ])
        .unwrap()
        .sort(vec![col("zone").sort(true, false)])
        .unwrap()
        .collect_as()
        .await
        .unwrap();
    let mut expected: BTreeMap<i64, (i64, i64, f64, f64)> = BTreeMap::new();
    for t in &rows {
        let e = expected.entry(t.zone).or_insert((0, 0, f64::MAX, f64::MIN));
        e.0 += 1;
        e.1 += t.passengers;
        e.2 = e.2.min(t.fare);
        e.3 = e.3.max(t.fare);
    }
    assert_eq!(per_zone.len(), expected.len());
    for (got, (zone, (trips, people, lo, hi))) in per_zone.iter().zip(&expected) {
        assert_eq!(
            (got.zone, got.trips, got.people, got.lo, got.hi),
            (*zone, *trips, *people, *lo, *hi)
        );
        assert!((got.mean - *people as f64 / *trips as f64).abs() < 1e-12);
    }

    // Joins of every type.
    let named: BTreeSet<i64> = zones().iter().map(|z| z.zone).collect();
    let matched = rows.iter().filter(|t| named.contains(&t.zone)).count();
    let used: BTreeSet<i64> = rows.iter().map(|t| t.zone).collect();
    let lonely_zones = named.iter().filter(|z| !used.contains(z)).count();
    for (how, expected_rows) in [
        (JoinType::Inner, matched),
        (JoinType::Left, rows.len()),
        (JoinType::Right, matched + lonely_zones),
        (JoinType::Full, rows.len() + lonely_zones),
        (JoinType::LeftSemi, matched),
        (JoinType::LeftAnti, rows.len() - matched),
    ] {
        let joined = data
            .join(&names.rename("zone", "z").unwrap(), how, &["zone"], &["z"])
            .unwrap();
        assert_eq!(joined.count().await.unwrap(), expected_rows, "{how:?}");
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Named {
        id: i64,
        name: String,
    }
    let inner: Vec<Named> = data
        .join(
            &names.rename("zone", "z").unwrap(),
            JoinType::Inner,
            &["zone"],
            &["z"],
        )
        .unwrap()
        .select_columns(&["id", "name"])
        .unwrap()
        .sort(vec![col("id").sort(true, false)])
        .unwrap()
        .collect_as()
        .await
        .unwrap();
    let expected: Vec<Named> = rows
        .iter()
        .filter(|t| named.contains(&t.zone))
        .map(|t| Named {
            id: t.id,
            name: format!("zone-{}", t.zone),
        })
        .collect();
    assert_eq!(inner, expected);

    // distinct, union, limit, sample, repartition.
    let zones_seen = data.select_columns(&["zone"]).unwrap().distinct().unwrap();
    assert_eq!(zones_seen.count().await.unwrap(), used.len());
    let twice = data.union(&data).unwrap();
    assert_eq!(twice.count().await.unwrap(), 2000);
    assert_eq!(twice.distinct().unwrap().count().await.unwrap(), 1000);
    assert_eq!(sorted.limit(10).unwrap().count().await.unwrap(), 10);
    assert_eq!(data.sample(0.0).unwrap().count().await.unwrap(), 0);
    assert_eq!(data.sample(1.0).unwrap().count().await.unwrap(), 1000);
    let half = data.sample(0.5).unwrap().count().await.unwrap();
    assert!(
        (350..=650).contains(&half),
        "sample(0.5) kept {half} of 1000"
    );
    assert!(data.sample(1.5).is_err());
    let spread = data.repartition(7).unwrap();
    assert_eq!(ids(&spread).await, (0..1000).collect::<Vec<_>>());
    let by_zone = data.repartition_by(vec![col("zone")], 5).unwrap();
    assert_eq!(ids(&by_zone).await, (0..1000).collect::<Vec<_>>());
    let plan = by_zone.explain().await.unwrap();
    assert!(
        plan.contains("logical_plan") && plan.contains("physical_plan"),
        "{plan}"
    );
    assert!(plan.contains("Hash("), "{plan}");
    let stages = per_zone_plan(&data).explain().await.unwrap();
    if matches!(ctx.mode(), ember::ExecutionMode::Cluster(_)) {
        // A grouped aggregate: a map stage shuffling by zone, a final one.
        assert!(stages.contains("distributed plan: 2 stages"), "{stages}");
        assert!(
            stages.contains("ShuffleWriterExec") && stages.contains("UnresolvedShuffleExec"),
            "{stages}"
        );
    } else {
        assert!(!stages.contains("distributed plan"), "{stages}");
    }

    // Writes, read back; a partitioned write's directories.
    for (format, path) in [
        ("parquet", "out-parquet/"),
        ("csv", "out-csv/"),
        ("json", "out-json/"),
    ] {
        let target = dir.join(path);
        let target = target.to_str().unwrap();
        let written = data.drop(&["note"]).unwrap();
        match format {
            "parquet" => written.write_parquet(target, &[]).await.unwrap(),
            "csv" => written.write_csv(target, &[]).await.unwrap(),
            _ => written.write_json(target, &[]).await.unwrap(),
        }
        let files = files_below(std::path::Path::new(target));
        assert!(
            files.contains(&"_SUCCESS".to_string()),
            "{format}: {files:?}"
        );
        let read = match format {
            "parquet" => ctx.read_parquet(target).await.unwrap(),
            "csv" => ctx.read_csv(target).await.unwrap(),
            _ => ctx.read_json(target).await.unwrap(),
        };
        assert_eq!(ids(&read).await, (0..1000).collect::<Vec<_>>(), "{format}");
        assert_eq!(read.count().await.unwrap(), 1000, "{format}");
    }
    let partitioned = dir.join("by_zone");
    data.write_parquet(partitioned.to_str().unwrap(), &["zone"])
        .await
        .unwrap();
    let files = files_below(&partitioned);
    for zone in &used {
        assert!(
            files
                .iter()
                .any(|f| f.starts_with(&format!("zone={zone}/"))),
            "{files:?}"
        );
    }

    // Named functions: map, flat_map, reduce_by_key, reduce.
    #[derive(Debug, PartialEq, Deserialize)]
    struct Clean {
        id: i64,
        clean: Option<String>,
    }
    let cleaned: Vec<Clean> = data
        .map("normalize_space", &["note"], "clean")
        .unwrap()
        .select_columns(&["id", "clean"])
        .unwrap()
        .sort(vec![col("id").sort(true, false)])
        .unwrap()
        .collect_as()
        .await
        .unwrap();
    let expected: Vec<Clean> = rows
        .iter()
        .map(|t| Clean {
            id: t.id,
            clean: t
                .note
                .as_ref()
                .map(|n| n.split_whitespace().collect::<Vec<_>>().join(" ")),
        })
        .collect();
    assert_eq!(cleaned, expected);
    let words = data.flat_map("words", "note", "word").unwrap();
    let expected_words: usize = rows
        .iter()
        .filter_map(|t| t.note.as_ref())
        .map(|n| n.split_whitespace().count())
        .sum();
    assert_eq!(words.count().await.unwrap(), expected_words);
    #[derive(Debug, PartialEq, Deserialize)]
    struct ZoneTotal {
        zone: i64,
        passengers: i64,
    }
    let totals: Vec<ZoneTotal> = data
        .reduce_by_key(&["zone"], "plus", "passengers")
        .unwrap()
        .sort(vec![col("zone").sort(true, false)])
        .unwrap()
        .collect_as()
        .await
        .unwrap();
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    for t in &rows {
        *expected.entry(t.zone).or_default() += t.passengers;
    }
    let expected: Vec<ZoneTotal> = expected
        .into_iter()
        .map(|(zone, passengers)| ZoneTotal { zone, passengers })
        .collect();
    assert_eq!(totals, expected);
    let total: Option<i64> = data.reduce("plus", "passengers").await.unwrap();
    assert_eq!(total, Some(rows.iter().map(|t| t.passengers).sum()));
    let longest: Option<String> = data.reduce("longest", "note").await.unwrap();
    let expected = rows
        .iter()
        .filter_map(|t| t.note.clone())
        .max_by(|a, b| a.len().cmp(&b.len()).then_with(|| b.cmp(a)));
    assert_eq!(longest, expected);
    let none: Option<i64> = data
        .filter(col("id").lt(lit(0)))
        .unwrap()
        .reduce("plus", "passengers")
        .await
        .unwrap();
    assert_eq!(none, None);
    let err = data.map("no_such_function", &["id"], "x").unwrap_err();
    assert!(
        err.to_string()
            .contains("no named function `no_such_function`"),
        "{err}"
    );

    // checkpoint, save_as_table, read_text.
    let checkpointed = data
        .filter(col("zone").eq(lit(5)))
        .unwrap()
        .checkpoint(dir.join("checkpoint/").to_str().unwrap())
        .await
        .unwrap();
    let expected: Vec<i64> = rows.iter().filter(|t| t.zone == 5).map(|t| t.id).collect();
    assert_eq!(ids(&checkpointed).await, expected);
    let plan = checkpointed.explain().await.unwrap();
    assert!(
        !plan.contains("MemoryExec") && !plan.contains("DataSourceExec: partitions=4"),
        "{plan}"
    );
    data.save_as_table("saved_trips", dir.join("saved/").to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        ids(&ctx.table("saved_trips").await.unwrap()).await,
        (0..1000).collect::<Vec<_>>()
    );
    assert!(data.save_as_table("bad name", "/tmp/x").await.is_err());
    let text_dir = dir.join("text");
    std::fs::create_dir_all(&text_dir).unwrap();
    std::fs::write(text_dir.join("a.txt"), "one two\nthree, four; \"five\"\n").unwrap();
    std::fs::write(text_dir.join("b.md"), "six\n").unwrap();
    let lines = ctx.read_text(text_dir.to_str().unwrap()).await.unwrap();
    assert_eq!(lines.count().await.unwrap(), 3);
    let words = lines.flat_map("words", "line", "word").unwrap();
    assert_eq!(words.count().await.unwrap(), 6);

    // A view, read back through SQL.
    data.create_view("trips").unwrap();
    let by_sql = ctx
        .query("SELECT id FROM trips WHERE passengers = 1")
        .await
        .unwrap();
    let expected: Vec<i64> = rows
        .iter()
        .filter(|t| t.passengers == 1)
        .map(|t| t.id)
        .collect();
    assert_eq!(ids(&by_sql).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_api_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = EmberContext::from_master("local").await.unwrap();
    assert_eq!(ctx.mode(), &ember::ExecutionMode::Embedded);
    exercise(&ctx, dir.path()).await;
}

fn job_count(scheduler: &str) -> usize {
    let (status, body) = http_get(scheduler, "/api/jobs");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Vec<serde_json::Value>>(&body)
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_api_on_a_two_executor_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(2).await;
    let scheduler = cluster.address().to_string();
    let ctx = EmberContext::from_master(&format!("df://{scheduler}"))
        .await
        .unwrap();
    assert!(matches!(ctx.mode(), ember::ExecutionMode::Cluster(_)));

    // Laziness: building a chain submits nothing; an action submits it.
    let before = job_count(&scheduler);
    let chain = ctx
        .parallelize_rows(&trips(), 3)
        .unwrap()
        .filter(col("zone").eq(lit(3)))
        .unwrap()
        .group_by(vec![col("passengers")])
        .agg(vec![count(lit(1)).alias("n")])
        .unwrap()
        .sort(vec![col("passengers").sort(true, false)])
        .unwrap();
    assert_eq!(
        job_count(&scheduler),
        before,
        "a transformation submitted a job"
    );
    let expected = trips().iter().filter(|t| t.zone == 3).count() as i64;
    #[derive(Deserialize)]
    struct N {
        n: i64,
    }
    let counted: Vec<N> = chain.collect_as().await.unwrap();
    assert_eq!(counted.iter().map(|r| r.n).sum::<i64>(), expected);
    assert_eq!(job_count(&scheduler), before + 1, "the action ran one job");

    exercise(&ctx, dir.path()).await;

    // A function the client holds but the executors do not: one clear
    // error naming it.
    ember_core::functions::register_library(
        ember_core::functions::FunctionLibrary::new("client-only")
            .scalar1("client_only", |x: i64| x + 1),
    );
    let ctx = EmberContext::from_master(&format!("df://{scheduler}"))
        .await
        .unwrap();
    let err = ctx
        .parallelize_rows(&trips(), 2)
        .unwrap()
        .map("client_only", &["id"], "y")
        .unwrap()
        .collect()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no function named `client_only`"), "{err}");
}
