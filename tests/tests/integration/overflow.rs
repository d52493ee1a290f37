//! Checked arithmetic through the real binaries: an overflow is one line
//! naming the expression and its type, embedded and on a 2-executor
//! cluster alike, `sum` over BIGINTs is exact where its result fits, and
//! Spark's decimal division runs in the executors as in the client.

use std::path::Path;

use ember_tests::{run_ember, start_cluster};

/// Two CSV files of BIGINTs whose sum fits although the sum of the positive
/// ones does not.
fn write_numbers(dir: &Path) -> String {
    let table = dir.join("numbers");
    std::fs::create_dir_all(&table).unwrap();
    std::fs::write(
        table.join("a.csv"),
        "g,x\n1,9223372036854775807\n2,9223372036854775807\n",
    )
    .unwrap();
    std::fs::write(table.join("b.csv"), "g,x\n1,-9223372036854775808\n2,-5\n").unwrap();
    format!(
        "CREATE EXTERNAL TABLE numbers (g INT, x BIGINT) STORED AS CSV LOCATION '{}/' \
         OPTIONS ('format.has_header' 'true');",
        table.display()
    )
}

/// Each statement, and the words its one-line error must hold.
const OVERFLOWS: &[(&str, &[&str])] = &[
    (
        "SELECT 9223372036854775807 + 1",
        &["`9223372036854775807 + 1`", "BIGINT"],
    ),
    ("SELECT CAST(2147483647 AS INT) + CAST(1 AS INT)", &["INT"]),
    (
        "SELECT d + 1 FROM (SELECT 9223372036854775807 AS d)",
        &["error: numeric overflow", "BIGINT"],
    ),
    ("SELECT x + 1 FROM numbers", &["`x + 1`", "BIGINT"]),
    ("SELECT -x FROM numbers", &["x", "BIGINT"]),
    (
        "SELECT sum(x) FROM numbers WHERE x > 0",
        &["sum(numbers.x)", "BIGINT"],
    ),
    (
        "SELECT x > 0 AS positive, sum(x) FROM numbers GROUP BY x > 0",
        &["BIGINT"],
    ),
    (
        "SELECT g, sum(x + 1) OVER (PARTITION BY g) FROM numbers",
        &["`x + 1`", "BIGINT"],
    ),
    (
        "SELECT g FROM numbers ORDER BY x * 2",
        &["`x * 2`", "BIGINT"],
    ),
];

/// Runs `sql` after the table's DDL through `ember sql`, on `scheduler` when
/// given, and returns the exit code, stdout and stderr.
async fn run(ddl: &str, sql: &str, scheduler: Option<&str>) -> (i32, String, String) {
    let script = format!("{ddl} {sql}");
    let scheduler = scheduler.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let mut args = vec!["sql", "--format", "csv", "-c", &script];
        if let Some(addr) = &scheduler {
            args.extend(["--scheduler", addr]);
        }
        run_ember(&args, None)
    })
    .await
    .unwrap()
}

async fn assert_answers(ddl: &str, scheduler: Option<&str>) {
    let mode = scheduler.unwrap_or("embedded");
    for (sql, words) in OVERFLOWS {
        let (code, stdout, stderr) = run(ddl, sql, scheduler).await;
        assert_eq!(code, 1, "{mode}: {sql}: {stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{mode}: {sql}: {stderr}");
        assert!(
            stderr.contains("numeric overflow"),
            "{mode}: {sql}: {stderr}"
        );
        for word in *words {
            assert!(stderr.contains(word), "{mode}: {sql}: `{word}` in {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{mode}: {sql}: {stderr}");
    }
    // Sums that fit are exact, whatever their partial sums were.
    let (code, stdout, stderr) = run(
        ddl,
        "SELECT sum(x) AS total FROM numbers; SELECT g, sum(x) AS s FROM numbers GROUP BY g ORDER BY g;",
        scheduler,
    )
    .await;
    assert_eq!(code, 0, "{mode}: {stderr}");
    assert_eq!(
        stdout, "total\n9223372036854775801\ng,s\n1,-1\n2,9223372036854775802\n",
        "{mode}"
    );
    // Turned off, arithmetic wraps around as DataFusion's does.
    let (code, stdout, stderr) = run(
        ddl,
        "SET ember.checked_arithmetic = false; SELECT x + 1 AS wrapped FROM numbers WHERE g = 1 AND x > 0;",
        scheduler,
    )
    .await;
    assert_eq!(code, 0, "{mode}: {stderr}");
    assert_eq!(stdout, "wrapped\n-9223372036854775808\n", "{mode}");
    // Spark's decimal division: its scale, rounded half away from zero, in
    // the executors as in the client.
    let (code, stdout, stderr) = run(
        ddl,
        "SET ember.dialect = 'spark'; SELECT g, CAST(g AS DECIMAL(10, 2)) / CAST(-3 AS DECIMAL(10, 2)) \
         AS q FROM numbers GROUP BY g ORDER BY g;",
        scheduler,
    )
    .await;
    assert_eq!(code, 0, "{mode}: {stderr}");
    assert_eq!(
        stdout, "g,q\n1,-0.3333333333333\n2,-0.6666666666667\n",
        "{mode}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_is_one_line_embedded_and_on_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let ddl = write_numbers(dir.path());
    assert_answers(&ddl, None).await;
    let cluster = start_cluster(2).await;
    let addr = cluster.address().to_string();
    assert_answers(&ddl, Some(&addr)).await;
}
