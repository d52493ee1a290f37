//! S3 end to end, against a real S3-compatible server on 127.0.0.1
//! (`s3s-fs`, with signatures checked): TPC-H read from S3, distributed and
//! atomic writes to S3, retries of transient errors, and the errors users see.

use std::path::Path;

use datafusion::prelude::SessionContext;
use ember::EmberContext;
use ember::tpch::{DataFormat, TpchGenerator, query};
use ember_tests::s3_server::{ACCESS_KEY_ID, S3Request, S3TestServer, SECRET_ACCESS_KEY};
use ember_tests::{
    compare, http_get, is_ordered, reference_context, rows, run_ember, start_cluster_with_env,
};

/// TPC-H SF 0.01 as Parquet and CSV under `dir`, two files per table.
fn generate(dir: &Path) -> (TpchGenerator, TpchGenerator) {
    let parquet = TpchGenerator {
        scale_factor: 0.01,
        parts: 2,
        format: DataFormat::Parquet,
    };
    parquet.write_all(&dir.join("parquet")).unwrap();
    let csv = TpchGenerator {
        format: DataFormat::Csv,
        ..parquet.clone()
    };
    csv.write_all(&dir.join("csv")).unwrap();
    (parquet, csv)
}

/// A server with bucket `tpch` holding `parquet/` and `csv/`, and an empty
/// bucket `out`.
async fn server_with_tpch(dir: &Path) -> (S3TestServer, TpchGenerator, TpchGenerator) {
    let (parquet, csv) = generate(dir);
    let server = S3TestServer::start().expect("S3 server starts");
    server.create_bucket("tpch").unwrap();
    server.create_bucket("out").unwrap();
    server
        .upload_dir("tpch", "parquet", &dir.join("parquet"))
        .await;
    server.upload_dir("tpch", "csv", &dir.join("csv")).await;
    (server, parquet, csv)
}

/// A context (embedded without `scheduler`) whose session points at
/// `server`, with the TPC-H Parquet tables on S3 registered when `tables`
/// is given.
async fn s3_context(
    scheduler: Option<String>,
    server: &S3TestServer,
    tables: Option<&TpchGenerator>,
) -> EmberContext {
    let ctx = EmberContext::new(scheduler.as_deref()).await.unwrap();
    point_at(&ctx, server);
    if let Some(generator) = tables {
        for statement in generator.create_table_statements_at("s3://tpch/parquet") {
            ctx.run_sql(&statement).await.unwrap();
        }
    }
    ctx
}

fn point_at(ctx: &EmberContext, server: &S3TestServer) {
    for (key, value) in server.session_settings() {
        ctx.set_option(&key, &value).unwrap();
    }
}

/// Runs the 22 queries over tables registered at `base` and compares each
/// with DataFusion over the local files.
async fn run_tpch_from(
    ctx: &EmberContext,
    generator: &TpchGenerator,
    base: &str,
    local: &Path,
    label: &str,
) {
    for statement in generator.create_table_statements_at(base) {
        ctx.run_sql(&format!("DROP TABLE IF EXISTS {}", table_name(&statement)))
            .await
            .unwrap();
        ctx.run_sql(&statement).await.expect("S3 tables register");
    }
    let reference = reference_context(generator, local).await;
    let mut failures = Vec::new();
    for n in 1..=22 {
        let sql = query(n).unwrap();
        let expected = reference.sql(sql).await.unwrap().collect().await.unwrap();
        match ctx.run_sql(sql).await {
            Ok(actual) => {
                if let Err(diff) = compare(&expected, &actual, is_ordered(sql)) {
                    failures.push(format!("q{n}: {diff}"));
                }
            }
            Err(e) => failures.push(format!("q{n}: failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{label}: {} queries differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{label}: 22 TPC-H queries over S3 match the local results");
}

fn table_name(create: &str) -> &str {
    create
        .trim_start_matches("CREATE EXTERNAL TABLE ")
        .split_whitespace()
        .next()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_from_s3_embedded_matches_local_files() {
    let data = tempfile::tempdir().unwrap();
    let (server, parquet, csv) = server_with_tpch(data.path()).await;
    let ctx = s3_context(None, &server, None).await;
    let local = data.path();
    run_tpch_from(
        &ctx,
        &parquet,
        "s3://tpch/parquet",
        &local.join("parquet"),
        "embedded parquet",
    )
    .await;
    run_tpch_from(
        &ctx,
        &csv,
        "s3://tpch/csv",
        &local.join("csv"),
        "embedded csv",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_from_s3_on_cluster_matches_local_files() {
    let data = tempfile::tempdir().unwrap();
    let (server, parquet, csv) = server_with_tpch(data.path()).await;
    // The processes reach S3 through their AWS_* environment; the client
    // through its session settings.
    let cluster = start_cluster_with_env(2, server.env()).await;
    let ctx = s3_context(Some(cluster.address().to_string()), &server, None).await;
    let local = data.path();
    run_tpch_from(
        &ctx,
        &parquet,
        "s3://tpch/parquet",
        &local.join("parquet"),
        "cluster parquet",
    )
    .await;
    run_tpch_from(
        &ctx,
        &csv,
        "s3://tpch/csv",
        &local.join("csv"),
        "cluster csv",
    )
    .await;
}

/// Writes lineitem to S3 partitioned by `l_returnflag` in `format`, reads it
/// back and compares with the source; returns the written files.
async fn partitioned_round_trip(
    ctx: &EmberContext,
    server: &S3TestServer,
    format: &str,
    extension: &str,
) -> Vec<String> {
    let destination = format!("s3://out/lineitem_{extension}/");
    let source = "SELECT l_orderkey, l_linenumber, l_quantity, l_shipdate, l_comment, l_returnflag FROM lineitem";
    let written = ctx
        .run_sql(&format!(
            "COPY ({source}) TO '{destination}' STORED AS {format} PARTITIONED BY (l_returnflag)"
        ))
        .await
        .unwrap_or_else(|e| panic!("{format} write: {e}"));
    let expected = ctx.run_sql(source).await.unwrap();
    let expected_rows: usize = expected.iter().map(|b| b.num_rows()).sum();
    assert_eq!(
        rows(&written),
        rows(
            &ctx.run_sql(&format!(
                "SELECT CAST({expected_rows} AS BIGINT UNSIGNED) AS count"
            ))
            .await
            .unwrap()
        ),
        "COPY reports the rows it wrote"
    );
    let table = format!("back_{extension}");
    let header = if format == "CSV" {
        " OPTIONS ('format.has_header' 'true')"
    } else {
        ""
    };
    ctx.run_sql(&format!(
        "CREATE EXTERNAL TABLE {table} (l_orderkey BIGINT, l_linenumber INT, l_quantity DECIMAL(15,2), \
         l_shipdate DATE, l_comment VARCHAR, l_returnflag VARCHAR) STORED AS {format} \
         PARTITIONED BY (l_returnflag) LOCATION '{destination}'{header}"
    ))
    .await
    .unwrap();
    let back = ctx
        .run_sql(&format!(
            "SELECT l_orderkey, l_linenumber, l_quantity, l_shipdate, l_comment, l_returnflag FROM {table}"
        ))
        .await
        .unwrap();
    compare(&expected, &back, false).unwrap_or_else(|d| panic!("{format} read back: {d}"));
    let files = server.list_files("out", &format!("lineitem_{extension}"));
    assert!(
        files.iter().all(|f| !f.contains("_temporary")),
        "the staging area is gone: {files:?}"
    );
    assert!(
        files.contains(&format!("lineitem_{extension}/_SUCCESS")),
        "{files:?}"
    );
    files
}

/// The distinct writers among part files: DataFusion names each file
/// `<writer id>_<n>.<ext>`, with one writer id per task.
fn writers(files: &[String]) -> std::collections::BTreeSet<String> {
    files
        .iter()
        .filter(|f| !f.ends_with("_SUCCESS"))
        .filter_map(|f| f.rsplit('/').next())
        .filter_map(|name| name.split('_').next())
        .map(str::to_string)
        .collect()
}

/// The jobs above ran with the S3 secret in their session settings: the
/// scheduler's REST API lists the setting but masks its value.
fn secrets_stay_out_of_the_rest_api(scheduler: &str) {
    let (status, jobs) = http_get(scheduler, "/api/jobs");
    assert_eq!(status, 200, "{jobs}");
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&jobs).unwrap();
    assert!(!jobs.is_empty(), "the writes ran as jobs");
    for job in &jobs {
        let id = job["job_id"].as_str().expect("job id");
        let (status, config) = http_get(scheduler, &format!("/api/job/{id}/config"));
        assert_eq!(status, 200, "{config}");
        let settings: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&config).unwrap();
        assert_eq!(
            settings.get("s3.secret_access_key").map(String::as_str),
            Some("****"),
            "job {id}"
        );
        assert_eq!(
            settings.get("s3.access_key_id").map(String::as_str),
            Some(ACCESS_KEY_ID),
            "job {id}"
        );
        for path in [format!("/api/job/{id}"), format!("/api/job/{id}/stages")] {
            let (_, body) = http_get(scheduler, &path);
            assert!(!body.contains(SECRET_ACCESS_KEY), "{path}: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_writes_on_cluster_are_parallel_and_read_back_equal() {
    let data = tempfile::tempdir().unwrap();
    let (server, parquet, _) = server_with_tpch(data.path()).await;
    // Only the session says where S3 is: the settings must travel.
    let cluster = start_cluster_with_env(2, Vec::new()).await;
    let ctx = s3_context(Some(cluster.address().to_string()), &server, Some(&parquet)).await;
    // One scan partition per lineitem file, so that two tasks write. By
    // default DataFusion splits the two files into byte ranges, and with one
    // row group per file the first range can hold both row groups' starts,
    // depending on the order the files' statistics arrive in.
    ctx.set_option("datafusion.optimizer.repartition_file_scans", "false")
        .unwrap();
    for (format, extension) in [("PARQUET", "parquet"), ("CSV", "csv"), ("JSON", "json")] {
        let files = partitioned_round_trip(&ctx, &server, format, extension).await;
        let writers = writers(&files);
        assert!(
            writers.len() >= 2,
            "{format}: several tasks write part files, got {writers:?} in {files:?}"
        );
        for flag in ["A", "N", "R"] {
            assert!(
                files
                    .iter()
                    .any(|f| f.starts_with(&format!("lineitem_{extension}/l_returnflag={flag}/"))),
                "{format}: partition {flag} in {files:?}"
            );
        }
    }
    secrets_stay_out_of_the_rest_api(&cluster.address().to_string());
    // A wrong secret set in the session reaches the cluster, which fails
    // with one clear line that does not quote it.
    ctx.set_option("s3.secret_access_key", "not-the-secret-either")
        .unwrap();
    let err = ctx
        .run_sql("SELECT count(*) FROM lineitem")
        .await
        .expect_err("wrong credentials fail")
        .to_string();
    assert!(err.contains("access denied to s3://tpch"), "{err}");
    assert!(err.contains(&server.endpoint()), "{err}");
    assert!(
        !err.contains("not-the-secret-either") && !err.contains('\n'),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_embedded_to_s3_and_local_directories_read_back_equal() {
    let data = tempfile::tempdir().unwrap();
    let (server, parquet, _) = server_with_tpch(data.path()).await;
    let ctx = s3_context(None, &server, Some(&parquet)).await;
    partitioned_round_trip(&ctx, &server, "PARQUET", "parquet").await;

    // A local directory, and INSERT INTO an external table on S3.
    let local = data.path().join("orders_out");
    let local_url = format!("{}/", local.display());
    ctx.run_sql(&format!(
        "COPY (SELECT * FROM orders) TO '{local_url}' STORED AS PARQUET"
    ))
    .await
    .unwrap();
    assert!(local.join("_SUCCESS").exists());
    assert!(!local.join("_temporary").exists());
    ctx.run_sql(&format!(
        "CREATE EXTERNAL TABLE orders_local STORED AS PARQUET LOCATION '{local_url}'"
    ))
    .await
    .unwrap();
    let expected = ctx.run_sql("SELECT * FROM orders").await.unwrap();
    let back = ctx.run_sql("SELECT * FROM orders_local").await.unwrap();
    compare(&expected, &back, false).unwrap();

    ctx.run_sql(
        "CREATE EXTERNAL TABLE nations_copy (n_nationkey INT, n_name VARCHAR) \
         STORED AS PARQUET LOCATION 's3://out/nations/'",
    )
    .await
    .unwrap();
    for _ in 0..2 {
        ctx.run_sql("INSERT INTO nations_copy SELECT n_nationkey, n_name FROM nation")
            .await
            .unwrap();
    }
    let counted = ctx
        .run_sql("SELECT count(*) AS n, count(DISTINCT n_nationkey) AS k FROM nations_copy")
        .await
        .unwrap();
    let expected = ctx
        .run_sql("SELECT CAST(50 AS BIGINT) AS n, CAST(25 AS BIGINT) AS k")
        .await
        .unwrap();
    compare(&expected, &counted, true).unwrap();

    // A file larger than the writer's 10 MiB buffer is uploaded in parts.
    server.clear_requests();
    ctx.run_sql(
        "COPY (SELECT l.*, k FROM lineitem l CROSS JOIN (VALUES (1), (2), (3)) v(k)) \
         TO 's3://out/big.csv' STORED AS CSV",
    )
    .await
    .unwrap();
    let requests = server.requests();
    let started = requests
        .iter()
        .filter(|r| r.method == "POST" && r.query.starts_with("uploads"))
        .count();
    let parts = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.query.contains("partNumber="))
        .count();
    assert!(
        started >= 1 && parts >= 2,
        "{started} multipart uploads, {parts} parts"
    );
    ctx.run_sql(
        "CREATE EXTERNAL TABLE big STORED AS CSV LOCATION 's3://out/big.csv' \
         OPTIONS ('format.has_header' 'true')",
    )
    .await
    .unwrap();
    let counted = ctx
        .run_sql("SELECT count(*) AS n, sum(k) AS k FROM big")
        .await
        .unwrap();
    let expected = ctx
        .run_sql("SELECT count(*) * 3 AS n, count(*) * 6 AS k FROM lineitem")
        .await
        .unwrap();
    compare(&expected, &counted, false).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_write_leaves_nothing_at_the_destination() {
    let data = tempfile::tempdir().unwrap();
    let (server, parquet, _) = server_with_tpch(data.path()).await;
    let cluster = start_cluster_with_env(2, server.env()).await;
    let ctx = s3_context(Some(cluster.address().to_string()), &server, Some(&parquet)).await;
    // Rows with high order keys fail to convert: the tasks that read them
    // fail, after others have staged their files.
    let err = ctx
        .run_sql(
            "COPY (SELECT l_orderkey, CAST(CASE WHEN l_orderkey > 59000 THEN 'bad' ELSE '1' END AS INT) AS v \
             FROM lineitem) TO 's3://out/failed/' STORED AS PARQUET",
        )
        .await
        .expect_err("the write fails");
    assert!(err.to_string().contains("bad"), "{err}");
    let left = server.list_files("out", "failed");
    assert!(left.is_empty(), "a failed write left {left:?}");

    // Embedded, to a local directory: the same.
    let embedded = s3_context(None, &server, Some(&parquet)).await;
    let local = data.path().join("failed_local");
    let err = embedded
        .run_sql(&format!(
            "COPY (SELECT l_orderkey, CAST(CASE WHEN l_orderkey > 59000 THEN 'bad' ELSE '1' END AS INT) AS v \
             FROM lineitem) TO '{}/' STORED AS CSV",
            local.display()
        ))
        .await
        .expect_err("the write fails");
    assert!(err.to_string().contains("bad"), "{err}");
    assert!(
        !local.exists(),
        "a failed local write left {} with the files {:?}",
        local.display(),
        ember_tests::files_below(&local)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_s3_errors_are_retried() {
    let data = tempfile::tempdir().unwrap();
    let (server, parquet, _) = server_with_tpch(data.path()).await;
    let ctx = s3_context(None, &server, Some(&parquet)).await;
    server.fail_next(3, "GET", "/tpch/parquet/nation/");
    server.fail_next(2, "PUT", "/out/retried/");
    let count = ctx.run_sql("SELECT count(*) FROM nation").await.unwrap();
    assert_eq!(
        rows(&count)[0][0],
        ember_tests::Cell::Text(Some("25".into()))
    );
    ctx.run_sql("COPY (SELECT * FROM nation) TO 's3://out/retried/' STORED AS PARQUET")
        .await
        .unwrap();
    assert_eq!(
        server.injected_failures(),
        5,
        "every injected failure was met"
    );
    let back = ctx
        .run_sql("CREATE EXTERNAL TABLE retried STORED AS PARQUET LOCATION 's3://out/retried/'")
        .await;
    assert!(back.is_ok());
    let n = ctx.run_sql("SELECT count(*) FROM retried").await.unwrap();
    assert_eq!(rows(&n)[0][0], ember_tests::Cell::Text(Some("25".into())));
}

/// Runs `ember sql` against the server and returns (code, stderr).
fn ember_sql_error(endpoint: &str, key: &str, secret: &str, sql: &str) -> (i32, String) {
    let (code, _out, err) = run_ember(
        &[
            "sql",
            "--s3-endpoint",
            endpoint,
            "--s3-access-key-id",
            key,
            "--s3-secret-access-key",
            secret,
            "--s3-region",
            "us-east-1",
            "-c",
            sql,
        ],
        None,
    );
    (code, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failures_give_one_clear_line() {
    use ember_tests::s3_server::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};
    let data = tempfile::tempdir().unwrap();
    let (server, _, _) = server_with_tpch(data.path()).await;
    let endpoint = server.endpoint();
    let create = "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://tpch/parquet/nation/'";

    // The right credentials work, from the command line.
    let (code, out, err) = run_ember(
        &[
            "sql",
            "--s3-endpoint",
            &endpoint,
            "--s3-region",
            "us-east-1",
            "--s3-access-key-id",
            ACCESS_KEY_ID,
            "--s3-secret-access-key",
            SECRET_ACCESS_KEY,
            "--format",
            "csv",
            "-c",
            &format!("{create}; SELECT count(*) AS n FROM t"),
        ],
        None,
    );
    assert_eq!((code, out.as_str()), (0, "n\n25\n"), "{err}");

    let cases = [
        (
            "wrong credentials",
            ember_sql_error(&endpoint, ACCESS_KEY_ID, "not-the-secret", create),
            vec!["access denied", "s3://tpch", endpoint.as_str()],
        ),
        (
            "unknown bucket",
            ember_sql_error(
                &endpoint,
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://no-such-bucket/x/'",
            ),
            vec!["no such bucket `no-such-bucket`", endpoint.as_str()],
        ),
        (
            "unreachable endpoint",
            ember_sql_error(
                "http://127.0.0.1:1",
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                create,
            ),
            vec!["cannot reach the S3 endpoint http://127.0.0.1:1", "tpch"],
        ),
    ];
    for (case, (code, stderr), expected) in cases {
        assert_eq!(code, 1, "{case}: exit code; stderr: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{case}: one line: {stderr}"
        );
        for fragment in expected {
            assert!(
                stderr.contains(fragment),
                "{case}: `{fragment}` in {stderr}"
            );
        }
        for secret in [SECRET_ACCESS_KEY, "not-the-secret"] {
            assert!(
                !stderr.contains(secret),
                "{case}: the secret leaked: {stderr}"
            );
        }
    }
}

/// The object GETs (not listings) whose path starts with `prefix`.
fn object_gets(server: &S3TestServer, prefix: &str) -> Vec<S3Request> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.starts_with(prefix))
        .collect()
}

/// Bytes of `path` in bucket `out` fetched by ranged GETs, leaving out
/// reads of the file's tail (the footer, read ahead in one request); panics
/// on a whole-object GET.
fn ranged_data_bytes(server: &S3TestServer, path: &str) -> u64 {
    let size = std::fs::metadata(server.bucket_dir("out").join(path))
        .unwrap()
        .len();
    object_gets(server, &format!("/out/{path}"))
        .iter()
        .filter(|r| r.range.is_none_or(|(_, last)| last + 1 < size))
        .map(|r| {
            r.range_len()
                .unwrap_or_else(|| panic!("a whole-object GET: {r:?}"))
        })
        .sum()
}

/// Runs `sql` (over `{t}`) on Ember with `{t}` = `table` and on DataFusion
/// over the local files with `{t}` = `lineitem`, and compares.
async fn same_answer(ctx: &EmberContext, reference: &SessionContext, sql: &str, table: &str) {
    let actual = ctx.run_sql(&sql.replace("{t}", table)).await.unwrap();
    let expected = reference
        .sql(&sql.replace("{t}", "lineitem"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    compare(&expected, &actual, false).unwrap_or_else(|d| panic!("{sql} on {table}: {d}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_s3_prune_partitions_and_row_groups_and_follow_globs() {
    let data = tempfile::tempdir().unwrap();
    let (server, parquet, _) = server_with_tpch(data.path()).await;
    let cluster = start_cluster_with_env(2, server.env()).await;
    let ctx = s3_context(Some(cluster.address().to_string()), &server, Some(&parquet)).await;
    let reference = reference_context(&parquet, &data.path().join("parquet")).await;

    // Hive partitions: a filter on the partition column reads that
    // partition's files only.
    ctx.run_sql(
        "COPY (SELECT l_orderkey, l_quantity, l_returnflag FROM lineitem) \
         TO 's3://out/hive/' STORED AS PARQUET PARTITIONED BY (l_returnflag)",
    )
    .await
    .unwrap();
    ctx.run_sql(
        "CREATE EXTERNAL TABLE hive (l_orderkey BIGINT, l_quantity DECIMAL(15,2), \
         l_returnflag VARCHAR) STORED AS PARQUET PARTITIONED BY (l_returnflag) \
         LOCATION 's3://out/hive/'",
    )
    .await
    .unwrap();
    server.clear_requests();
    let by_flag = "SELECT count(*) AS n, sum(l_quantity) AS q FROM {t} WHERE l_returnflag = 'A'";
    same_answer(&ctx, &reference, by_flag, "hive").await;
    let gets = object_gets(&server, "/out/hive/");
    assert!(!gets.is_empty(), "the partition was read");
    assert!(
        gets.iter()
            .all(|r| r.path.starts_with("/out/hive/l_returnflag=A/")),
        "only partition A is read: {gets:?}"
    );

    // Row groups: in a file sorted by l_orderkey with small row groups, a
    // selective filter fetches a fraction of what the same scan fetches
    // unfiltered, in ranged reads. The small row groups also show that the
    // COPY's format options reached the cluster's writer.
    ctx.run_sql(
        "COPY (SELECT l_orderkey, l_quantity, l_comment FROM lineitem ORDER BY l_orderkey) \
         TO 's3://out/sorted.parquet' STORED AS PARQUET \
         OPTIONS ('format.max_row_group_size' '4096')",
    )
    .await
    .unwrap();
    ctx.run_sql(
        "CREATE EXTERNAL TABLE sorted STORED AS PARQUET LOCATION 's3://out/sorted.parquet'",
    )
    .await
    .unwrap();
    let scan = "SELECT count(*) AS n, sum(l_quantity) AS q, max(l_comment) AS c FROM {t} WHERE ";
    server.clear_requests();
    same_answer(
        &ctx,
        &reference,
        &format!("{scan}l_orderkey >= 0"),
        "sorted",
    )
    .await;
    let unfiltered = ranged_data_bytes(&server, "sorted.parquet");
    server.clear_requests();
    same_answer(
        &ctx,
        &reference,
        &format!("{scan}l_orderkey < 500"),
        "sorted",
    )
    .await;
    let filtered = ranged_data_bytes(&server, "sorted.parquet");
    assert!(
        filtered > 0 && filtered * 4 < unfiltered,
        "row groups pruned: {filtered} bytes fetched filtered, {unfiltered} unfiltered"
    );

    // Globs pick files under a prefix: part-1 alone, on the cluster too.
    let local_part = data.path().join("parquet/lineitem/part-1.parquet");
    reference
        .sql(&format!(
            "CREATE EXTERNAL TABLE part_one STORED AS PARQUET LOCATION '{}'",
            local_part.display()
        ))
        .await
        .unwrap();
    ctx.run_sql(
        "CREATE EXTERNAL TABLE globbed STORED AS PARQUET \
         LOCATION 's3://tpch/parquet/lineitem/part-1*.parquet'",
    )
    .await
    .unwrap();
    let count = "SELECT count(*) AS n, sum(l_quantity) AS q FROM {t}";
    let expected = reference
        .sql(&count.replace("{t}", "part_one"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let actual = ctx.run_sql(&count.replace("{t}", "globbed")).await.unwrap();
    compare(&expected, &actual, false).unwrap_or_else(|d| panic!("glob: {d}"));
    let everything = ctx
        .run_sql(&count.replace("{t}", "lineitem"))
        .await
        .unwrap();
    assert!(
        compare(&everything, &actual, false).is_err(),
        "the glob leaves part-0 out"
    );
    let err = ctx
        .run_sql(
            "CREATE EXTERNAL TABLE nothing STORED AS PARQUET \
             LOCATION 's3://tpch/parquet/lineitem/*.csv'",
        )
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "no files match `s3://tpch/parquet/lineitem/*.csv`");
}
