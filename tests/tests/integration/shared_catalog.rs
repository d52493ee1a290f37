//! The scheduler's shared catalog seen from Ember's own clients: what one
//! cluster session declares (tables, views, schemas), another session, a
//! CLI process and an ADBC Flight SQL client see without declaring
//! anything; drops reach everyone; `ember.shared_catalog = false` keeps a
//! session's declarations to itself; declaring a shared name replaces it;
//! data the client holds (`CREATE TABLE … AS`) stays in the session, and so
//! do temporary declarations; a Dataset saved as a table is shared.

use datafusion::arrow::record_batch::RecordBatch;
use ember::EmberContext;
use ember::tpch::query;
use ember_tests::{
    compare, generate_tpch, is_ordered, reference_context, run_ember, start_cluster_with,
};

/// The one value of a one-row, one-column answer, as text.
fn single_value(batches: &[RecordBatch]) -> String {
    let text = datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string();
    let line = text.lines().nth(3).unwrap_or_default();
    line.trim_matches(|c| c == '|' || c == ' ').to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_the_tables_and_views_others_declared() {
    let data = tempfile::tempdir().unwrap();
    let generator = generate_tpch(data.path(), 0.01);
    let cluster = start_cluster_with(2, |options| {
        options.scheduler_args = vec!["--flight-sql".into()];
    })
    .await;
    let address = cluster.address().to_string();
    let reference = reference_context(&generator, data.path()).await;

    let author = EmberContext::connect(&address).await.unwrap();
    for statement in generator.create_table_statements(data.path()) {
        author.run_sql(&statement).await.unwrap();
    }
    let view =
        "CREATE VIEW big_orders AS SELECT o_orderkey FROM orders WHERE o_totalprice > 200000";
    author.run_sql(view).await.unwrap();
    reference.sql(view).await.unwrap();
    author.run_sql("CREATE SCHEMA reports").await.unwrap();
    author
        .run_sql("CREATE VIEW reports.nations AS SELECT n_name FROM nation")
        .await
        .unwrap();

    // Another session declares nothing and queries them.
    let reader = EmberContext::connect(&address).await.unwrap();
    let sql = query(3).unwrap();
    let expected = reference.sql(sql).await.unwrap().collect().await.unwrap();
    let actual = reader.run_sql(sql).await.unwrap();
    compare(&expected, &actual, is_ordered(sql)).unwrap();
    let count = "SELECT count(*) AS n FROM big_orders";
    let expected = reference.sql(count).await.unwrap().collect().await.unwrap();
    compare(&expected, &reader.run_sql(count).await.unwrap(), false).unwrap();
    let nations = reader
        .run_sql("SELECT count(*) AS n FROM reports.nations")
        .await
        .unwrap();
    assert_eq!(
        datafusion::arrow::util::pretty::pretty_format_batches(&nations)
            .unwrap()
            .to_string()
            .lines()
            .nth(3),
        Some("| 25 |")
    );

    // So does a CLI process.
    let (code, stdout, stderr) = run_ember(
        &[
            "sql",
            "--scheduler",
            &address,
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM region",
        ],
        None,
    );
    assert_eq!((code, stdout.as_str()), (0, "n\n5\n"), "{stderr}");

    // And a Flight SQL client (ADBC).
    let work = tempfile::tempdir().unwrap();
    let mut request = serde_json::json!({ "uri": format!("grpc://{address}") });
    request["queries"] = serde_json::json!({ "regions": "SELECT count(*) AS n FROM region" });
    let report = crate::flight_sql::run_adbc(&request, work.path());
    let tables = report["tables"].to_string();
    assert!(
        tables.contains("public.big_orders") && tables.contains("reports.nations"),
        "{report}"
    );

    // A drop reaches everyone.
    author.run_sql("DROP TABLE region").await.unwrap();
    let err = reader
        .run_sql("SELECT * FROM region")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("region"), "{err}");

    // A private session keeps its declarations.
    let private = EmberContext::connect(&address).await.unwrap();
    private
        .run_sql("SET ember.shared_catalog = false")
        .await
        .unwrap();
    private
        .run_sql("CREATE VIEW mine AS SELECT 1 AS one")
        .await
        .unwrap();
    assert!(private.run_sql("SELECT * FROM mine").await.is_ok());
    assert!(reader.run_sql("SELECT * FROM mine").await.is_err());
    author
        .run_sql("CREATE TABLE held AS VALUES (1), (2)")
        .await
        .unwrap();
    assert!(author.run_sql("SELECT * FROM held").await.is_ok());
    assert!(reader.run_sql("SELECT * FROM held").await.is_err());

    // Declaring again what this session declared is a duplicate, as in
    // any session.
    let err = author.run_sql(view).await.unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");

    // A temporary view stays in its session, where it shadows the shared
    // table of its name, whoever declared that; dropping it brings the
    // shared table back.
    let nations = "SELECT count(*) AS n FROM nation";
    for (session, other) in [(&author, &reader), (&reader, &author)] {
        session
            .run_sql("CREATE TEMPORARY VIEW nation AS SELECT 7 AS n")
            .await
            .unwrap();
        assert_eq!(
            single_value(&session.run_sql("SELECT n FROM nation").await.unwrap()),
            "7"
        );
        assert_eq!(single_value(&other.run_sql(nations).await.unwrap()), "25");
        session.run_sql("DROP VIEW nation").await.unwrap();
        assert_eq!(single_value(&session.run_sql(nations).await.unwrap()), "25");
    }
    author
        .run_sql("CREATE TEMPORARY VIEW scratch AS SELECT 1 AS one")
        .await
        .unwrap();
    assert!(reader.run_sql("SELECT * FROM scratch").await.is_err());

    // A Dataset saved as a table is in the shared catalog.
    let saved = data.path().join("saved_nations/");
    author
        .query("SELECT n_nationkey, n_name FROM nation")
        .await
        .unwrap()
        .save_as_table("saved_nations", saved.to_str().unwrap())
        .await
        .unwrap();
    let sum = "SELECT sum(n_nationkey) AS s FROM saved_nations";
    assert_eq!(single_value(&reader.run_sql(sum).await.unwrap()), "300");

    // Declaring a name another client declared replaces it, for everyone.
    reader
        .run_sql("CREATE VIEW big_orders AS SELECT 42 AS answer")
        .await
        .unwrap();
    let replaced = author.run_sql("SELECT * FROM big_orders").await.unwrap();
    assert_eq!(replaced[0].schema().field(0).name(), "answer");
}
