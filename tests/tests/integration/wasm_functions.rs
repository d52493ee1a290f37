//! WebAssembly function libraries, built from real guest sources and
//! loaded at run time: embedded and on a real two-executor cluster that was
//! never rebuilt for them, each answer compared with the same computation
//! done by DataFusion's own expressions or Ember's native functions.

use datafusion::arrow::util::pretty::pretty_format_batches;
use ember::EmberContext;
use ember::dataset::{col, lit};
use ember_tests::{binary, guest_module, start_cluster, start_cluster_with};

async fn table(ctx: &EmberContext, sql: &str) -> String {
    let frame = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batches = ctx
        .collect(frame)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&batches).unwrap().to_string()
}

async fn failure(ctx: &EmberContext, sql: &str) -> String {
    match ctx.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(frame) => match ctx.collect(frame).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{sql} should have failed"),
        },
    }
}

const VALUES: &str = "(VALUES \
    (1, 2.5, 'ab1c', DATE '2024-02-28', CAST(12.34 AS DECIMAL(15,2)), true, 1), \
    (NULL, -4.0, '', DATE '2024-12-31', CAST(-0.01 AS DECIMAL(15,2)), false, 2), \
    (7, NULL, ' 42 ', NULL, NULL, NULL, 2), \
    (-3, 0.0, NULL, DATE '1970-01-01', CAST(0 AS DECIMAL(15,2)), true, 3), \
    (12, 8.25, 'tree', DATE '2000-01-01', CAST(99.99 AS DECIMAL(15,2)), false, 3)) \
    AS t(i, f, s, d, m, b, g)";

/// Every kind of function of the test library against the native answer.
async fn exercise(ctx: &EmberContext) {
    let module = guest_module("kinds");
    table(
        ctx,
        &format!(
            "CREATE FUNCTION LIBRARY kinds LANGUAGE wasm AS '{}'",
            module.display()
        ),
    )
    .await;
    // Scalar functions over every value type, NULLs included.
    assert_eq!(
        table(
            ctx,
            &format!(
                "SELECT add(i, 10) AS a, half(f) AS h, shrink(CAST(f AS REAL)) AS r, \
                 negate(b) AS n, twice(CAST(i AS INT)) AS w, shout(s) AS u, next_day(d) AS nd, \
                 add_cent(m) AS c, parse_int(s) AS p FROM {VALUES} ORDER BY g, i"
            )
        )
        .await,
        table(
            ctx,
            &format!(
                "SELECT CAST(i AS BIGINT) + 10 AS a, f / 2.0 AS h, \
                 CAST(f AS REAL) * CAST(0.5 AS REAL) AS r, NOT b AS n, CAST(i AS INT) * 2 AS w, \
                 upper(s) AS u, d + INTERVAL '1 day' AS nd, \
                 CAST(m + CAST(0.01 AS DECIMAL(15,2)) AS DECIMAL(15,2)) AS c, \
                 TRY_CAST(trim(s) AS BIGINT) AS p FROM {VALUES} ORDER BY g, i"
            )
        )
        .await
    );
    // Reduce functions, grouped (partial results merged across tasks).
    assert_eq!(
        table(
            ctx,
            &format!(
                "SELECT g, biggest(CAST(i AS BIGINT)) AS top, longest(s) AS l FROM {VALUES} \
                 GROUP BY g ORDER BY g"
            )
        )
        .await,
        table(
            ctx,
            &format!(
                "SELECT g, max(CAST(i AS BIGINT)) AS top, \
                 first_value(s ORDER BY length(s) DESC NULLS LAST, s ASC) AS l FROM {VALUES} \
                 GROUP BY g ORDER BY g"
            )
        )
        .await
    );
    // A table-producing function, through the Dataset API's flat_map.
    let letters = ctx
        .sql(&format!("SELECT g, s FROM {VALUES}"))
        .await
        .unwrap();
    let letters = ember::dataset::Dataset::from_frame(ctx, letters)
        .flat_map("letters", "s", "letter")
        .unwrap()
        .group_by(vec![col("letter")])
        .agg(vec![
            datafusion::functions_aggregate::count::count(lit(1)).alias("n"),
        ])
        .unwrap()
        .sort(vec![col("letter").sort(true, false)])
        .unwrap();
    let batches = letters.collect().await.unwrap();
    assert_eq!(
        pretty_format_batches(&batches).unwrap().to_string(),
        table(
            ctx,
            "SELECT letter, count(1) AS n FROM (VALUES ('a'), ('b'), ('c'), ('t'), ('r'), \
             ('e'), ('e')) AS t(letter) GROUP BY letter ORDER BY letter"
        )
        .await
    );
    // A partition function, over many rows in several partitions.
    let numbers = ctx
        .sql("SELECT unnest(range(1, 100001)) AS x")
        .await
        .unwrap();
    let totals = ember::dataset::Dataset::from_frame(ctx, numbers)
        .repartition(4)
        .unwrap()
        .map_partitions("totals")
        .unwrap()
        .group_by(vec![])
        .agg(vec![
            datafusion::functions_aggregate::sum::sum(col("rows")).alias("rows"),
            datafusion::functions_aggregate::sum::sum(col("total")).alias("total"),
        ])
        .unwrap();
    let batches = totals.collect().await.unwrap();
    assert_eq!(
        pretty_format_batches(&batches).unwrap().to_string(),
        table(
            ctx,
            "SELECT count(1) AS rows, sum(x) AS total FROM (SELECT unnest(range(1, 100001)) AS x)"
        )
        .await
    );
    // Dropped: the names no longer resolve.
    table(ctx, "DROP FUNCTION LIBRARY kinds").await;
    let error = failure(ctx, "SELECT add(1, 2)").await;
    assert!(error.contains("add"), "{error}");
    let error = failure(ctx, "DROP FUNCTION kinds").await;
    assert!(
        error.contains("no WebAssembly function or library `kinds`"),
        "{error}"
    );
    table(ctx, "DROP FUNCTION IF EXISTS kinds").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_functions_embedded_match_the_native_answers() {
    let ctx = EmberContext::embedded().unwrap();
    exercise(&ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_functions_on_a_cluster_never_rebuilt_for_them() {
    let cluster = start_cluster(2).await;
    let master = format!("df://{}", cluster.address());
    let ctx = EmberContext::connect(&master).await.unwrap();
    exercise(&ctx).await;

    // One function of a module; a second client sees it at once.
    let module = guest_module("taxi_etl");
    table(
        &ctx,
        &format!(
            "CREATE FUNCTION fare_band LANGUAGE wasm AS '{}'",
            module.display()
        ),
    )
    .await;
    let error = failure(
        &ctx,
        &format!(
            "CREATE FUNCTION fare_band LANGUAGE wasm AS '{}'",
            module.display()
        ),
    )
    .await;
    assert!(error.contains("CREATE OR REPLACE"), "{error}");
    let other = EmberContext::connect(&master).await.unwrap();
    let sql = "SELECT fare_band(column1) AS band, count(1) AS n FROM (VALUES (3.0), (12.5), \
               (40.0), (9.99), (NULL)) GROUP BY band ORDER BY band";
    let native = "SELECT CASE WHEN column1 < 10 THEN 'low' WHEN column1 < 30 THEN 'mid' \
                  WHEN column1 IS NOT NULL THEN 'high' END AS band, count(1) AS n FROM (VALUES \
                  (3.0), (12.5), (40.0), (9.99), (NULL)) GROUP BY band ORDER BY band";
    assert_eq!(table(&other, sql).await, table(&other, native).await);
    // Only the named function was taken from the module.
    let error = failure(&other, "SELECT parse_fare('1')").await;
    assert!(error.contains("parse_fare"), "{error}");
    // Dropped by one client: gone for the other.
    table(&ctx, "DROP FUNCTION fare_band").await;
    let error = failure(&other, sql).await;
    assert!(error.contains("fare_band"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_functions_fail_the_query_and_leave_the_executors_up() {
    let mut cluster = start_cluster(2).await;
    let master = format!("df://{}", cluster.address());
    let ctx = EmberContext::connect(&master).await.unwrap();
    ctx.set_option("ember.wasm_time_limit_ms", "300").unwrap();
    ctx.set_option("ember.wasm_memory_limit_mib", "64").unwrap();
    table(
        &ctx,
        &format!(
            "CREATE FUNCTION LIBRARY bad LANGUAGE wasm AS '{}'",
            guest_module("misbehaving").display()
        ),
    )
    .await;
    let rows = "(SELECT unnest(range(1, 6)) AS x)";
    for (sql, expected) in [
        (
            format!("SELECT explode(x) FROM {rows}"),
            "WebAssembly function `explode` failed: panicked at",
        ),
        (
            format!("SELECT spin(x) FROM {rows}"),
            "WebAssembly function `spin` ran past its time limit of 300 ms for one batch",
        ),
        (
            format!("SELECT hog(x) FROM {rows}"),
            "WebAssembly function `hog` asked for more than its memory limit of 64 MiB",
        ),
    ] {
        let error = failure(&ctx, &sql).await;
        assert!(error.contains(expected), "{sql}: {error}");
        assert_eq!(error.lines().count(), 1, "{error}");
    }
    assert_eq!(cluster.exited_process(), None, "an executor went down");
    // The cluster still answers, with the same library.
    assert_eq!(
        table(
            &ctx,
            &format!("SELECT sum(explode(x)) AS s FROM {rows} WHERE x <> 3")
        )
        .await,
        "+----+\n| s  |\n+----+\n| 12 |\n+----+"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_that_joins_later_fetches_the_module() {
    let mut cluster = start_cluster(1).await;
    let scheduler = cluster.address().to_string();
    let ctx = EmberContext::connect(&format!("df://{scheduler}"))
        .await
        .unwrap();
    table(
        &ctx,
        &format!(
            "CREATE FUNCTION LIBRARY kinds LANGUAGE wasm AS '{}'",
            guest_module("kinds").display()
        ),
    )
    .await;
    let sql = "SELECT sum(add(x, 1)) AS s FROM (SELECT unnest(range(1, 1001)) AS x)";
    let expected = "+--------+\n| s      |\n+--------+\n| 501500 |\n+--------+";
    assert_eq!(table(&ctx, sql).await, expected);

    // A new executor, then the first one stopped: the next query runs on
    // an executor that was not there when the library was created.
    let work = tempfile::tempdir().unwrap();
    let mut late = std::process::Command::new(binary("ember-executor"))
        .args(["--scheduler", &scheduler, "--bind", "127.0.0.1"])
        .args(["--port", "0", "--grpc-port", "0", "--health-port", "0"])
        .arg("--work-dir")
        .arg(work.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the late executor starts");
    let alive = |count: usize| {
        let (_, body) = ember_tests::http_get(&scheduler, "/api/executors");
        serde_json::from_str::<Vec<serde_json::Value>>(&body).map_or(0, |e| e.len()) == count
    };
    let waited = std::time::Instant::now();
    while !alive(2) && waited.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(alive(2), "the late executor registered");
    for pid in cluster.executor_pids() {
        // SAFETY: plain kill(2) on a child process of this test's cluster.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let waited = std::time::Instant::now();
    while !alive(1) && waited.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(alive(1), "the first executor left");
    assert_eq!(table(&ctx, sql).await, expected);
    let fetched = ember_tests::files_below(&work.path().join("wasm"));
    assert!(
        fetched.iter().any(|f| f.ends_with(".wasm")),
        "the late executor keeps the module it fetched: {fetched:?}"
    );
    let _ = late.kill();
    let _ = late.wait();
    let _ = cluster.exited_process();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_refuses_a_module_whose_hash_does_not_match() {
    let cluster = start_cluster(1).await;
    let bytes = std::fs::read(guest_module("kinds")).unwrap();
    let wrong = "0".repeat(64);
    let client = reqwest::Client::new();
    let response = client
        .put(format!(
            "http://{}/api/ember/wasm/{wrong}",
            cluster.address()
        ))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("module refused: its SHA-256 is"), "{text}");
    // Nor can a library be declared over a module it does not hold.
    let response = client
        .put(format!(
            "http://{}/api/ember/functions/x",
            cluster.address()
        ))
        .json(
            &serde_json::json!({"descriptor": {"library": "x", "sha256": wrong,
            "memory_mib": 64, "time_ms": 1000}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (status, _) = ember_tests::http_get(
        &cluster.address().to_string(),
        &format!("/api/ember/wasm/{wrong}"),
    );
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_libraries_outlive_a_scheduler_restart() {
    let state = tempfile::tempdir().unwrap();
    let scheduler_state = state.path().join("scheduler");
    let with_state = |options: &mut ember::local_cluster::LocalClusterOptions| {
        options.scheduler_args = vec![
            "--state-dir".to_string(),
            scheduler_state.to_string_lossy().into_owned(),
        ];
    };
    let sql = "SELECT shout('persisted') AS s";
    let expected = "+-----------+\n| s         |\n+-----------+\n| PERSISTED |\n+-----------+";
    {
        let cluster = start_cluster_with(1, with_state).await;
        let ctx = EmberContext::connect(&format!("df://{}", cluster.address()))
            .await
            .unwrap();
        table(
            &ctx,
            &format!(
                "CREATE FUNCTION LIBRARY kinds LANGUAGE wasm AS '{}'",
                guest_module("kinds").display()
            ),
        )
        .await;
        assert_eq!(table(&ctx, sql).await, expected);
    }
    let cluster = start_cluster_with(1, with_state).await;
    let ctx = EmberContext::connect(&format!("df://{}", cluster.address()))
        .await
        .unwrap();
    assert_eq!(table(&ctx, sql).await, expected);
}
