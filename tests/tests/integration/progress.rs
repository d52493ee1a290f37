//! `ember sql`'s progress line, seen through a pseudo-terminal (util-linux's
//! `script` runs the CLI on one): it appears on standard error for a
//! statement that runs longer than a second, with the rows read embedded
//! and the stages and tasks on a cluster, and is cleared when the statement
//! ends; it never appears where standard error is not a terminal, nor with
//! `--no-progress`.

use std::path::Path;
use std::process::Command;

use ember_tests::{binary, generate_tpch, run_ember, start_cluster};

/// 60,000 x 25 x 25 combinations, none matching: seconds in a debug build.
const SLOW: &str = "SELECT count(*) AS n FROM lineitem a, nation b, nation c \
                    WHERE a.l_quantity + b.n_nationkey + c.n_nationkey < 0";

/// `text` quoted for a POSIX shell.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `ember` with `args`, the statements declaring TPC-H's tables in `data`
/// and then [`SLOW`].
fn slow_statement_args(data: &Path, args: &[&str]) -> Vec<String> {
    let generator = generate_tpch(data, 0.01);
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for statement in generator.create_table_statements(data) {
        all.extend(["-c".to_string(), statement]);
    }
    all.extend([
        "-c".to_string(),
        SLOW.to_string(),
        "--format".into(),
        "csv".into(),
    ]);
    all
}

/// Runs `ember` with `args` on a pseudo-terminal; returns its exit code
/// and everything it wrote to the terminal.
fn in_terminal(args: &[String]) -> (i32, String) {
    let command = std::iter::once(binary("ember").display().to_string())
        .chain(args.iter().cloned())
        .map(|arg| quoted(&arg))
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env_remove("EMBER_SCHEDULER")
        .env("TERM", "xterm")
        .output()
        .expect("util-linux's script runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn an_embedded_statement_shows_the_rows_it_has_read_on_a_terminal() {
    let data = tempfile::tempdir().unwrap();
    let args = slow_statement_args(data.path(), &["sql"]);
    let (code, terminal) = in_terminal(&args);
    assert_eq!(code, 0, "{terminal}");
    assert!(terminal.contains("rows read"), "{terminal}");
    assert!(terminal.contains("n\r\n0\r\n"), "{terminal}");

    let mut quiet = args.clone();
    quiet.insert(1, "--no-progress".into());
    let (code, terminal) = in_terminal(&quiet);
    assert_eq!(code, 0, "{terminal}");
    assert!(!terminal.contains("rows read"), "{terminal}");

    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run_ember(&args, None);
    assert_eq!((code, stdout.as_str()), (0, "n\n0\n"), "{stderr}");
    assert!(!stderr.contains("rows read"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_statement_shows_its_stages_and_tasks_on_a_terminal() {
    let cluster = start_cluster(2).await;
    let data = tempfile::tempdir().unwrap();
    let address = cluster.address().to_string();
    let args = slow_statement_args(data.path(), &["sql", "--scheduler", &address]);
    let (code, terminal) = tokio::task::spawn_blocking(move || in_terminal(&args))
        .await
        .unwrap();
    assert_eq!(code, 0, "{terminal}");
    assert!(
        terminal.contains("stages ") && terminal.contains(" running"),
        "{terminal}"
    );
    assert!(terminal.contains("n\r\n0\r\n"), "{terminal}");
}
