//! Arrow Flight SQL on the scheduler (`--flight-sql`), driven by a client
//! Ember did not write: Python's ADBC Flight SQL driver from PyPI
//! (`tests/flight_sql/adbc_client.py`), over TLS with the cluster's token
//! as the handshake's password. All 22 TPC-H answers are compared with
//! single-process DataFusion; the tables the session created are listed
//! with `adbc_get_objects`; a table is read into pandas and Polars;
//! prepared statements bind parameters; a cancelled query's job is
//! cancelled; the token works as a bearer token too; a client without the
//! token, or with a wrong one (as password or bearer), is refused. The
//! arrow-flight crate's Flight SQL client checks the metadata calls ADBC
//! does not make (`GetSqlInfo`, `GetTableTypes`, `GetXdbcTypeInfo`), bound
//! parameters and `CancelFlightInfo`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetXdbcTypeInfo, SqlInfo};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightInfo,
};
use datafusion::arrow::array::{AsArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use futures::TryStreamExt;
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::record_batch::RecordBatch;
use ember::local_cluster::LocalClusterSecurity;
use ember::tpch::{TpchGenerator, query};
use ember_tests::{
    TestCluster, compare, generate_tpch, is_ordered, reference_context, repo_root, run_ember,
};
use serde_json::{Value, json};

/// The Python with the ADBC driver: `EMBER_ADBC_PYTHON`, else the
/// benchmark virtualenv.
fn adbc_python() -> PathBuf {
    ember_tests::bench_venv_python(
        "EMBER_ADBC_PYTHON",
        "adbc-driver-flightsql adbc-driver-manager pyarrow pandas polars",
    )
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

/// What single-process DataFusion answers to `sql`.
async fn answer_of(reference: &datafusion::prelude::SessionContext, sql: &str) -> Vec<RecordBatch> {
    reference.sql(sql).await.unwrap().collect().await.unwrap()
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
        let expected = answer_of(&reference, sql).await;
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
    let expected = answer_of(&reference, query(6).unwrap()).await;
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
    let expected = answer_of(&reference, sql).await;
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
    // An embedded session on the same file sees the cluster's tables, and
    // keeps what it declares there while no scheduler holds the file.
    let catalog = state.path().join("catalog.json").display().to_string();
    let embedded = |sql: &str| {
        run_ember(
            &["sql", "--catalog", &catalog, "--format", "csv", "-c", sql],
            None,
        )
    };
    let (code, stdout, stderr) = embedded("SELECT count(*) AS n FROM nation");
    assert_eq!((code, stdout.as_str()), (0, "n\n25\n"), "{stderr}");
    let big = "CREATE VIEW big_nations AS SELECT n_name FROM nation WHERE n_nationkey > 20";
    let (code, _, stderr) = embedded(big);
    assert_eq!(code, 0, "{stderr}");

    // New scheduler and executor processes, the same state directory.
    let cluster = start().await;
    // While the scheduler holds the file, an embedded session reads it
    // and cannot change it.
    let (code, stdout, stderr) = embedded("SELECT count(*) AS n FROM big_nations");
    assert_eq!((code, stdout.as_str()), (0, "n\n4\n"), "{stderr}");
    let (code, _, stderr) = embedded("CREATE VIEW elsewhere AS SELECT 1 AS one");
    assert_ne!(code, 0);
    assert!(stderr.contains("held by another process"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let mut read = plain(&cluster);
    read["queries"] = json!({
        "q1": query(1).unwrap(),
        "nations": "SELECT count(*) AS n FROM nation",
        "big": "SELECT count(*) AS n FROM big_nations",
    });
    let report = run_adbc(&read, &work.path().join("after"));
    assert!(report.get("refused").is_none(), "{report}");
    let reference = reference_context(&generator, data.path()).await;
    let expected = answer_of(&reference, query(1).unwrap()).await;
    let actual = read_arrow(&work.path().join("after/out/q1.arrow"));
    compare(&expected, &actual, true).unwrap();
    let nations = read_arrow(&work.path().join("after/out/nations.arrow"));
    let expected = answer_of(&reference, "SELECT count(*) AS n FROM nation").await;
    compare(&expected, &nations, false).unwrap();
    let big = read_arrow(&work.path().join("after/out/big.arrow"));
    let expected = answer_of(
        &reference,
        "SELECT count(*) AS n FROM nation WHERE n_nationkey > 20",
    )
    .await;
    compare(&expected, &big, false).unwrap();
    // The embedded session's declaration was not kept anywhere.
    assert!(
        !std::fs::read_to_string(state.path().join("catalog.json"))
            .unwrap()
            .contains("elsewhere")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_without_the_token_is_refused() {
    let cluster = flight_sql_cluster().await;
    let work = tempfile::tempdir().unwrap();
    for (password, bearer, expected) in [
        (None, None, "requires a token"),
        (Some("not-the-cluster-token-00"), None, "not this"),
        (None, Some("not-the-cluster-token-01"), "not this"),
    ] {
        let mut request = request(&cluster, password);
        request["bearer"] = json!(bearer);
        request["setup"] = json!(["SELECT 1"]);
        let name = password.or(bearer).unwrap_or("none");
        let report = run_adbc(&request, &work.path().join(name));
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

/// Reads `name`'s answer from the ADBC client's output in `dir`.
fn answer(dir: &Path, name: &str) -> Vec<RecordBatch> {
    read_arrow(&dir.join(format!("out/{name}.arrow")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_binds_parameters_with_the_token_as_a_bearer_token() {
    let data = tempfile::tempdir().unwrap();
    let generator = generate_tpch(data.path(), 0.01);
    let cluster = flight_sql_cluster().await;
    // The cluster's token as a fixed `authorization: Bearer` header, with
    // no handshake.
    let mut request = request(&cluster, None);
    request["bearer"] = json!(token(&cluster));
    request["setup"] = json!(generator.create_table_statements(data.path()));
    let q6 = "SELECT sum(l_extendedprice * l_discount) AS revenue FROM lineitem \
              WHERE l_shipdate >= ? AND l_shipdate < ? AND l_discount BETWEEN ? AND ? \
              AND l_quantity < ?";
    let by_region = "SELECT n_name FROM nation WHERE n_regionkey = $1 ORDER BY n_name";
    request["prepared"] = json!([
        {
            "name": "q6",
            "sql": q6,
            "parameters": [
                {"date": "1994-01-01"}, {"date": "1995-01-01"},
                {"decimal": "0.05"}, {"decimal": "0.07"}, 24
            ],
        },
        {"name": "region1", "sql": by_region, "parameters": [1]},
        {"name": "region3", "sql": by_region, "parameters": [3]},
        {
            "name": "quoted",
            "sql": "SELECT count(*) AS n FROM nation WHERE n_name = ? OR n_name = ?",
            "parameters": ["GERMANY", "O'HARA'); DROP TABLE nation; --"],
        },
    ]);
    let work = tempfile::tempdir().unwrap();
    let report = run_adbc(&request, work.path());
    assert!(report.get("refused").is_none(), "{report}");

    let reference = reference_context(&generator, data.path()).await;
    // Q6 with its parameters bound answers as TPC-H's Q6 does.
    let expected = answer_of(&reference, query(6).unwrap()).await;
    compare(&expected, &answer(work.path(), "q6"), false).unwrap();
    for region in [1, 3] {
        let expected = answer_of(&reference, &by_region.replace("$1", &region.to_string())).await;
        compare(
            &expected,
            &answer(work.path(), &format!("region{region}")),
            true,
        )
        .unwrap();
    }
    // The quote in a bound string is data, not SQL: one nation matches.
    let expected = answer_of(
        &reference,
        "SELECT count(*) AS n FROM nation WHERE n_name = 'GERMANY'",
    )
    .await;
    compare(&expected, &answer(work.path(), "quoted"), false).unwrap();
    // The server declares the parameters' types, as planned.
    let types = &report["parameter_types"];
    assert_eq!(types["q6"].as_array().unwrap().len(), 5, "{report}");
    assert_eq!(types["region1"], json!(["int64"]), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_the_adbc_client_cancels_stops_on_the_cluster() {
    let data = tempfile::tempdir().unwrap();
    let generator = generate_tpch(data.path(), 0.01);
    let cluster = flight_sql_cluster().await;
    let mut request = request(&cluster, Some(&token(&cluster)));
    request["setup"] = json!(generator.create_table_statements(data.path()));
    // 60,000 x 60,000 pairs: minutes, unless cancelled.
    let long = "SELECT count(*) AS pairs FROM lineitem a, lineitem b \
                WHERE a.l_orderkey + b.l_orderkey < 0";
    request["cancel"] = json!({ "sql": long, "after_seconds": 4 });
    let work = tempfile::tempdir().unwrap();
    let report = run_adbc(&request, work.path());
    let cancel = &report["cancel"];
    assert_eq!(
        cancel["finished"], true,
        "the cancelled query went on: {report}"
    );
    let error = cancel["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("cancel"), "{report}");
    assert!(cancel["seconds"].as_f64().unwrap() < 30.0, "{report}");

    // The job stops too, failed as cancelled rather than completed.
    let connection = ember::cluster::SchedulerConnection::from_options(
        &cluster.client_address(),
        cluster.client_security(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let job = loop {
        let jobs = ember::cluster::list_jobs(&connection, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let job = jobs
            .iter()
            .find(|job| job.name.contains("lineitem a"))
            .unwrap_or_else(|| panic!("the query's job is not among {jobs:?}"))
            .clone();
        if !job.is_unfinished() || started.elapsed().as_secs() > 30 {
            break job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(job.status, "Failed", "{job:?}");
}

/// The arrow-flight crate's Flight SQL client on the cluster's port, over
/// its TLS.
async fn arrow_flight_sql_client(cluster: &TestCluster) -> FlightSqlServiceClient<Channel> {
    let security = cluster.client_security();
    let ca = std::fs::read(security.tls_ca.as_ref().expect("TLS")).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{}", cluster.address()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

/// Every batch of every endpoint of `info`.
async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("an endpoint with a ticket");
        let stream = client.do_get(ticket).await.unwrap();
        batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    batches
}

fn text(batches: &[RecordBatch]) -> String {
    datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_arrow_flight_sql_client_gets_metadata_parameters_and_cancel_answers() {
    let cluster = flight_sql_cluster().await;
    let mut client = arrow_flight_sql_client(&cluster).await;
    let refused = client
        .handshake("dashboard", "not-the-cluster-token-02")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("not this Ember cluster's token"),
        "{refused}"
    );
    client
        .handshake("dashboard", &token(&cluster))
        .await
        .unwrap();

    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName])
        .await
        .unwrap();
    let server = fetch(&mut client, info).await;
    assert_eq!(server.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    let info = client.get_table_types().await.unwrap();
    let types = text(&fetch(&mut client, info).await);
    assert!(types.contains("TABLE") && types.contains("VIEW"), "{types}");
    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let xdbc = fetch(&mut client, info).await;
    assert!(xdbc.iter().map(RecordBatch::num_rows).sum::<usize>() > 5);
    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = text(&fetch(&mut client, info).await);
    assert!(schemas.contains("public"), "{schemas}");

    // A prepared statement with a parameter, bound twice.
    let sql = "SELECT v * 2 AS doubled FROM (VALUES (1), (2), (3)) t(v) WHERE v > ? ORDER BY v";
    let mut prepared = client.prepare(sql.to_string(), None).await.unwrap();
    let parameters = prepared.parameter_schema().unwrap().clone();
    assert_eq!(parameters.fields().len(), 1, "{parameters:?}");
    assert_eq!(parameters.field(0).data_type(), &DataType::Int64);
    for (bound, expected) in [(1_i64, "4, 6"), (2, "6")] {
        let values = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("0", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![bound]))],
        )
        .unwrap();
        prepared.set_parameters(values).unwrap();
        let info = prepared.execute().await.unwrap();
        let batches = fetch(&mut client, info).await;
        let doubled: Vec<String> = batches
            .iter()
            .flat_map(|batch| {
                let column = batch.column(0).as_primitive::<Int64Type>().clone();
                column
                    .values()
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(doubled.join(", "), expected);
    }
    prepared.close().await.unwrap();

    // A FlightInfo is answered once its query has finished: cancelling it
    // is answered "not cancellable".
    let info = client
        .execute("SELECT 1 AS one".into(), None)
        .await
        .unwrap();
    let request = CancelFlightInfoRequest { info: Some(info) };
    let mut results = client
        .do_action(Action {
            r#type: "CancelFlightInfo".into(),
            body: request.encode_to_vec().into(),
        })
        .await
        .unwrap();
    let answer = results.message().await.unwrap().expect("one result");
    let answer = CancelFlightInfoResult::decode(answer.body).unwrap();
    assert_eq!(answer.status(), CancelStatus::NotCancellable);
}
