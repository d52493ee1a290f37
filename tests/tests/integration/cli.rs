//! The real `ember` binary: `-c`, `-f`, every `--format`, the shell on piped
//! input, and every error case with its exit code and one-line message.

use std::time::{Duration, Instant};

use ember_tests::{binary, run_ember, run_ember_with_env};

/// Asserts a failed run: exit code 1, nothing on stdout from the failing
/// statement, and exactly one line on stderr, with no panic or backtrace.
fn assert_one_line_error(code: i32, stderr: &str, expected_start: &str) {
    assert_eq!(code, 1, "exit code; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr}");
    assert!(
        lines[0].starts_with(expected_start),
        "stderr `{}` should start with `{expected_start}`",
        lines[0]
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn a_statement_nested_too_deeply_is_refused_and_one_within_the_limit_runs() {
    let sum = |terms: usize| format!("select {} as total", vec!["1"; terms].join(" + "));
    // 20,000 terms used to overflow the stack and abort the process.
    let (code, _, stderr) = run_ember(&["sql", "-c", &sum(20_000)], None);
    assert_one_line_error(
        code,
        &stderr,
        "error: the statement nests expressions more than 1000 deep",
    );
    // 1,000 terms nest exactly as deep as the default limit allows.
    let (code, stdout, stderr) = run_ember(&["sql", "--format", "csv", "-c", &sum(1000)], None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "total\n1000\n");
}

#[test]
fn the_spark_dialect_divides_integers_into_fractions_and_sorts_nulls_first() {
    let queries = "SELECT 7 / 2 AS q; \
        SELECT x FROM (VALUES (2), (NULL), (1)) AS t(x) ORDER BY x; \
        SELECT x FROM (VALUES (2), (NULL), (1)) AS t(x) ORDER BY x DESC;";
    let (code, stdout, stderr) = run_ember(&["sql", "--format", "csv", "-c", queries], None);
    assert_eq!(code, 0, "{stderr}");
    // CSV writes a lone NULL as `""`.
    assert_eq!(stdout, "q\n3\nx\n1\n2\n\"\"\nx\n\"\"\n2\n1\n");
    let spark = format!("SET ember.dialect = 'spark'; {queries}");
    let (code, stdout, stderr) = run_ember(&["sql", "--format", "csv", "-c", &spark], None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "q\n3.5\nx\n\"\"\n1\n2\nx\n2\n1\n\"\"\n");
    let (code, _, stderr) = run_ember(
        &["sql", "-c", "SET ember.dialect = 'spark'; SELECT 1 / 0"],
        None,
    );
    assert_one_line_error(code, &stderr, "error: ");
    assert!(stderr.contains("Divide by zero"), "{stderr}");
}

#[test]
fn command_prints_a_table() {
    let (code, stdout, stderr) = run_ember(&["sql", "-c", "select 1 as one, 'a' as letter"], None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "+-----+--------+\n| one | letter |\n+-----+--------+\n| 1   | a      |\n+-----+--------+\n"
    );
    assert_eq!(stderr, "");
}

#[test]
fn every_output_format() {
    let sql = "select * from (values (1, 'x'), (2, null)) as t(n, s) order by n";
    let cases = [
        ("csv", "n,s\n1,x\n2,\n"),
        ("json", "[{\"n\":1,\"s\":\"x\"},{\"n\":2}]\n"),
        ("ndjson", "{\"n\":1,\"s\":\"x\"}\n{\"n\":2}\n"),
        (
            "table",
            "+---+---+\n| n | s |\n+---+---+\n| 1 | x |\n| 2 |   |\n+---+---+\n",
        ),
    ];
    for (format, expected) in cases {
        let (code, stdout, stderr) = run_ember(&["sql", "--format", format, "-c", sql], None);
        assert_eq!(code, 0, "{format}: {stderr}");
        assert_eq!(stdout, expected, "{format}");
    }
}

#[test]
fn file_runs_every_statement_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "name,age\nada,36\nalan,41\ngrace,85\n").unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!(
            "-- a comment; with a semicolon\nCREATE EXTERNAL TABLE people STORED AS CSV LOCATION '{}'\n  OPTIONS ('format.has_header' 'true');\n\nSELECT name FROM people WHERE age > 40 ORDER BY name;\nSELECT count(*) AS n FROM people;\n",
            csv.display()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run_ember(
        &["sql", "--format", "csv", "-f", script.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "name\nalan\ngrace\nn\n3\n");
}

#[test]
fn shell_reads_piped_statements_and_commands() {
    let input = "\\?\ncreate table t as values (1), (2), (3);\n\\d\n\\d t\nselect\n  sum(column1) as total\nfrom t;\n\\q\nselect 'not reached';\n";
    let (code, stdout, stderr) = run_ember(&["sql", "--format", "csv"], Some(input));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\\d NAME"), "help printed: {stdout}");
    assert!(
        stdout.contains("catalog,schema,table\ndatafusion,public,t\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("column,type,nullable\ncolumn1,Int64,false\n"),
        "{stdout}"
    );
    assert!(stdout.contains("total\n6\n"), "{stdout}");
    assert!(!stdout.contains("not reached"), "{stdout}");
}

#[test]
fn shell_reports_errors_and_keeps_going() {
    let input = "select * from nowhere;\nselect 2 as two;\n\\bogus\n";
    let (code, stdout, stderr) = run_ember(&["sql", "--format", "csv"], Some(input));
    assert_eq!(stdout, "two\n2\n");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "error: table 'datafusion.public.nowhere' not found",
            "error: unknown command `\\bogus` (\\? lists the commands)",
            "error: 2 of the statements read from standard input failed",
        ]
    );
    // Piped input that failed exits non-zero, so scripts notice.
    assert_eq!(code, 1);
}

#[test]
fn malformed_sql_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bad.sql");
    std::fs::write(&script, "select 1;\n\nselect a\n  form t;\n").unwrap();
    let path = script.to_str().unwrap();
    let (code, stdout, stderr) = run_ember(&["sql", "-f", path], None);
    assert_one_line_error(
        code,
        &stderr,
        &format!("error: syntax error at {path}:4:8: "),
    );
    // The statement before the bad one ran.
    assert!(stdout.contains("| 1        |"), "{stdout}");
}

#[test]
fn malformed_command_names_the_column() {
    let (code, _, stderr) = run_ember(&["sql", "-c", "select * frm t"], None);
    assert_one_line_error(code, &stderr, "error: syntax error at -c:1:");
}

#[test]
fn unknown_table() {
    let (code, _, stderr) = run_ember(&["sql", "-c", "select * from missing_table"], None);
    assert_one_line_error(
        code,
        &stderr,
        "error: table 'datafusion.public.missing_table' not found",
    );
}

#[test]
fn unknown_column() {
    let (code, _, stderr) = run_ember(
        &["sql", "-c", "select nope from (values (1)) as t(a)"],
        None,
    );
    assert_one_line_error(code, &stderr, "error: No field named nope.");
}

#[test]
fn missing_data_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.parquet");
    let sql = format!(
        "create external table t stored as parquet location '{}'",
        missing.display()
    );
    let (code, _, stderr) = run_ember(&["sql", "-c", &sql], None);
    assert_one_line_error(code, &stderr, "error: ");
    assert!(stderr.contains("absent.parquet"), "{stderr}");
}

#[test]
fn missing_script_file() {
    let (code, _, stderr) = run_ember(&["sql", "-f", "/nonexistent/ember/script.sql"], None);
    assert_one_line_error(
        code,
        &stderr,
        "error: cannot read /nonexistent/ember/script.sql: ",
    );
}

#[test]
fn unreachable_scheduler_fails_fast_naming_the_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let addr = format!("127.0.0.1:{port}");
    let (code, _, stderr) = run_ember(&["sql", "--scheduler", &addr, "-c", "select 1"], None);
    assert_one_line_error(
        code,
        &stderr,
        &format!("error: cannot reach the scheduler at {addr}: connection refused"),
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn invalid_scheduler_address() {
    let (code, _, stderr) = run_ember(
        &["sql", "--scheduler", "host:notaport", "-c", "select 1"],
        None,
    );
    assert_one_line_error(
        code,
        &stderr,
        "error: invalid scheduler address `host:notaport`",
    );
}

/// `ember` pages its memory in 4 KiB pages (transparent huge pages off, as
/// `/proc` shows for the running process) unless
/// `EMBER_TRANSPARENT_HUGE_PAGES=on`, and names the variable when it holds
/// anything else.
#[test]
fn transparent_huge_pages_are_off_unless_asked_for() {
    let dir = std::env::temp_dir();
    let huge_pages = |value| [("EMBER_TRANSPARENT_HUGE_PAGES", value)];
    let (code, _, stderr) =
        run_ember_with_env(&dir, &["sql", "-c", "select 1"], None, &huge_pages("maybe"));
    assert_one_line_error(
        code,
        &stderr,
        "error: EMBER_TRANSPARENT_HUGE_PAGES must be on or off, not `maybe`",
    );
    for value in ["on", "off"] {
        let (code, stdout, stderr) = run_ember_with_env(
            &dir,
            &["sql", "--format", "csv", "-c", "select 1 as one"],
            None,
            &huge_pages(value),
        );
        assert_eq!(
            (code, stdout.as_str()),
            (0, "one\n1\n"),
            "{value}: {stderr}"
        );
    }
    if cfg!(target_os = "linux") {
        // The shell waits on its open standard input while /proc is read.
        let mut shell = std::process::Command::new(binary("ember"))
            .arg("sql")
            .env_remove("EMBER_TRANSPARENT_HUGE_PAGES")
            .env_remove("EMBER_SCHEDULER")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ember starts");
        let status = format!("/proc/{}/status", shell.id());
        let started = Instant::now();
        let enabled = loop {
            let text = std::fs::read_to_string(&status).unwrap_or_default();
            let enabled = text
                .lines()
                .find_map(|line| line.strip_prefix("THP_enabled:"))
                .map(|value| value.trim().to_string());
            if enabled.as_deref() == Some("0") || started.elapsed() > Duration::from_secs(10) {
                break enabled;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(shell.stdin.take());
        let _ = shell.wait();
        assert_eq!(enabled.as_deref(), Some("0"), "{status}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, stderr) = run_ember(&["sql", "--format", "xml", "-c", "select 1"], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("xml"), "{stderr}");
}

#[test]
fn gpu_force_without_a_gpu_is_one_clear_error_and_auto_runs_on_the_cpu() {
    let sql = "SELECT sum(x), count(*) FROM (VALUES (1), (2), (3)) AS t(x)";
    if ember_core::gpu::process_gpu().is_some() {
        println!("skipped: this machine has a GPU");
        return;
    }
    let (code, _, stderr) = run_ember(&["sql", "-c", "SET ember.gpu = 'force'", "-c", sql], None);
    assert_one_line_error(code, &stderr, "error: ");
    assert!(
        stderr.contains(
            "ember.gpu = force, but no GPU: the NVIDIA driver library (libcuda) was not found"
        ),
        "{stderr}"
    );
    let (code, stdout, stderr) = run_ember(
        &[
            "sql",
            "--format",
            "csv",
            "-c",
            "SET ember.gpu = 'auto'",
            "-c",
            sql,
        ],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.ends_with("6,3\n"), "{stdout}");
    let (code, _, stderr) = run_ember(&["sql", "-c", "SET ember.gpu = 'sometimes'"], None);
    assert_one_line_error(code, &stderr, "error: ");
    assert!(
        stderr.contains("invalid ember.gpu value `sometimes`: expected off, auto or force"),
        "{stderr}"
    );
}

#[test]
fn cache_table_on_gpu_adds_the_table_location_and_refuses_other_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    std::fs::write(&path, "x\n1\n2\n").unwrap();
    let create = format!(
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
        path.display()
    );
    let (code, stdout, stderr) = run_ember(
        &[
            "sql",
            "--format",
            "csv",
            "-c",
            &create,
            "-c",
            "CACHE TABLE t ON GPU",
            "-c",
            "SHOW ember.gpu_cache_tables",
            "-c",
            "SELECT sum(x) FROM t",
        ],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("ember.gpu_cache_tables,file://{}", path.display())),
        "{stdout}"
    );
    assert!(stdout.ends_with("3\n"), "{stdout}");
    let (code, _, stderr) = run_ember(
        &[
            "sql",
            "-c",
            "CREATE VIEW v AS SELECT 1 AS x",
            "-c",
            "CACHE TABLE v ON GPU",
        ],
        None,
    );
    assert_one_line_error(code, &stderr, "error: ");
    assert!(
        stderr.contains("CACHE TABLE v ON GPU: only tables of files can be cached on the GPU"),
        "{stderr}"
    );
}
