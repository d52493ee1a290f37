//! Arrow Flight SQL on the scheduler (`--flight-sql`), driven by a client
//! Ember did not write: Python's ADBC Flight SQL driver from PyPI
//! (`tests/flight_sql/adbc_client.py`), over TLS with the cluster's token
//! as the handshake's password. All 22 TPC-H answers are compared with
//! single-process DataFusion; the tables the session created are listed
//! with `adbc_get_objects`; a table is read into pandas and Polars; a
//! client without the token, or with a wrong one, is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::record_batch::RecordBatch;
use ember::local_cluster::LocalClusterSecurity;
use ember::tpch::{TpchGenerator, query};
use ember_tests::{TestCluster, compare, generate_tpch, is_ordered, reference_context, repo_root};
use serde_json::{Value, json};

/// The Python with the ADBC driver: `EMBER_ADBC_PYTHON`, else the
/// benchmark virtualenv that `scripts/test` fills (`bench/peers/setup-venv
/// adbc-driver-flightsql …`).
fn adbc_python() -> PathBuf {
    if let Some(python) = std::env::var_os("EMBER_ADBC_PYTHON") {
        return PathBuf::from(python);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    let python = Path::new(&home).join(".cache/ember/bench-venv/bin/python");
    assert!(
        python.exists(),
        "no Python with the ADBC driver at {}: run scripts/test, which installs it \
         (bench/peers/setup-venv adbc-driver-flightsql adbc-driver-manager pyarrow pandas polars)",
        python.display()
    );
    python
}

/// A two-executor cluster with a token and TLS, serving Flight SQL.
async fn flight_sql_cluster() -> TestCluster {
    ember_tests::start_cluster_with(2, |options| {
        options.security = LocalClusterSecurity {
            token: true,
            tls: true,
            client_auth: false,
        };
        // With the proxy too: Ember's own clients then fetch results
        // through the Flight SQL service, which redeems the proxy's tickets.
        options.scheduler_args = vec!["--flight-sql".into(), "--flight-proxy".into()];
    })
    .await
}

/// What the ADBC client is asked for, connecting to `cluster` as `user`
/// with `password`.
fn request(cluster: &TestCluster, password: Option<&str>) -> Value {
    let security = cluster.client_security();
    let ca = std::fs::read_to_string(security.tls_ca.as_ref().expect("TLS")).unwrap();
    json!({
        "uri": format!("grpc+tls://{}", cluster.address()),
        "user": "dashboard",
        "password": password,
        "tls_root_certs": ca,
    })
}

fn token(cluster: &TestCluster) -> String {
    let path = cluster.client_security().token_file.clone().expect("token");
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

/// Runs the ADBC client with `request`; returns its output directory and
/// report.
pub(crate) fn run_adbc(request: &Value, dir: &Path) -> Value {
    std::fs::create_dir_all(dir).unwrap();
    let request_file = dir.join("request.json");
    std::fs::write(&request_file, request.to_string()).unwrap();
    let out = dir.join("out");
    let script = repo_root().join("tests/flight_sql/adbc_client.py");
    let output = Command::new(adbc_python())
        .arg(script)
        .arg(&request_file)
        .arg(&out)
        .output()
        .expect("the ADBC client runs");
    assert!(
        output.status.success(),
        "the ADBC client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

fn read_arrow(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    FileReader::try_new(file, None)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_runs_tpch_lists_tables_and_reads_into_pandas_and_polars() {
    let data = tempfile::tempdir().unwrap();
    let generator: TpchGenerator = generate_tpch(data.path(), 0.01);
    let cluster = flight_sql_cluster().await;
    let token = token(&cluster);
    let mut request = request(&cluster, Some(&token));
    let queries: serde_json::Map<String, Value> = (1..=22)
        .map(|n| (format!("q{n}"), json!(query(n).expect("query text"))))
        .collect();
    request["setup"] = json!(generator.create_table_statements(data.path()));
    request["queries"] = Value::Object(queries);
    request["frames"] = json!({
        "sql": "SELECT n_name, n_nationkey FROM nation",
        "sum_column": "n_nationkey",
    });
    let work = tempfile::tempdir().unwrap();
    let report = run_adbc(&request, work.path());
    assert!(report.get("refused").is_none(), "{report}");

    let reference = reference_context(&generator, data.path()).await;
    let mut failures = Vec::new();
    for n in 1..=22 {
        let sql = query(n).unwrap();
        let expected = reference.sql(sql).await.unwrap().collect().await.unwrap();
        let actual = read_arrow(&work.path().join(format!("out/q{n}.arrow")));
        if let Err(diff) = compare(&expected, &actual, is_ordered(sql)) {
            failures.push(format!("q{n}: {diff}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let tables: Vec<String> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    for table in ["lineitem", "nation", "orders", "region"] {
        assert!(
            tables.iter().any(|t| t.ends_with(&format!(".{table}"))),
            "{table} in {tables:?}"
        );
    }
    // 25 nations, keys 0..=24.
    for frame in ["pandas", "polars"] {
        assert_eq!(report[frame]["rows"], 25, "{report}");
        assert_eq!(report[frame]["sum"], 300.0, "{report}");
    }

    // Another client, which declared nothing, sees the tables the first
    // one created (the cluster's shared catalog) and queries them.
    let mut dashboard = self::request(&cluster, Some(&token));
    dashboard["queries"] = json!({ "q6": query(6).unwrap() });
    let other = tempfile::tempdir().unwrap();
    let seen = run_adbc(&dashboard, other.path());
    assert_eq!(seen["tables"], report["tables"], "{seen}");
    let expected = reference
        .sql(query(6).unwrap())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let actual = read_arrow(&other.path().join("out/q6.arrow"));
    compare(&expected, &actual, false).unwrap();

    // Ember's own client on the same port.
    let ctx =
        ember::EmberContext::connect_with(&cluster.client_address(), cluster.client_security())
            .await
            .unwrap();
    for statement in generator.create_table_statements(data.path()) {
        ctx.run_sql(&statement).await.unwrap();
    }
    let sql = query(3).unwrap();
    let expected = reference.sql(sql).await.unwrap().collect().await.unwrap();
    let actual = ctx.run_sql(sql).await.unwrap();
    compare(&expected, &actual, is_ordered(sql)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_catalog_survives_a_scheduler_restart() {
    let data = tempfile::tempdir().unwrap();
    let generator = generate_tpch(data.path(), 0.01);
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();
    let start = || {
        ember_tests::start_cluster_with(1, |options| {
            options.scheduler_args = vec![
                "--flight-sql".into(),
                "--state-dir".into(),
                state_dir.clone(),
            ];
        })
    };
    let plain = |cluster: &TestCluster| json!({ "uri": format!("grpc://{}", cluster.address()) });
    let work = tempfile::tempdir().unwrap();
    {
        let cluster = start().await;
        let mut create = plain(&cluster);
        create["setup"] = json!(generator.create_table_statements(data.path()));
        let report = run_adbc(&create, &work.path().join("before"));
        assert!(report.get("refused").is_none(), "{report}");
    }
    assert!(state.path().join("catalog.json").is_file());
    // New scheduler and executor processes, the same state directory.
    let cluster = start().await;
    let mut read = plain(&cluster);
    read["queries"] =
        json!({ "q1": query(1).unwrap(), "nations": "SELECT count(*) AS n FROM nation" });
    let report = run_adbc(&read, &work.path().join("after"));
    assert!(report.get("refused").is_none(), "{report}");
    let reference = reference_context(&generator, data.path()).await;
    let expected = reference
        .sql(query(1).unwrap())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let actual = read_arrow(&work.path().join("after/out/q1.arrow"));
    compare(&expected, &actual, true).unwrap();
    let nations = read_arrow(&work.path().join("after/out/nations.arrow"));
    let expected = reference
        .sql("SELECT count(*) AS n FROM nation")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    compare(&expected, &nations, false).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_without_the_token_is_refused() {
    let cluster = flight_sql_cluster().await;
    let work = tempfile::tempdir().unwrap();
    for (password, expected) in [
        (None, "requires a token"),
        (Some("not-the-cluster-token-00"), "not this"),
    ] {
        let mut request = request(&cluster, password);
        request["setup"] = json!(["SELECT 1"]);
        let report = run_adbc(&request, &work.path().join(password.unwrap_or("none")));
        let refused = report["refused"]
            .as_str()
            .unwrap_or_else(|| panic!("a client without the right token was let in: {report}"));
        assert!(
            refused.contains("Unauthenticated") || refused.contains("UNAUTHENTICATED"),
            "{refused}"
        );
        assert!(refused.contains(expected), "{refused}");
    }
}
