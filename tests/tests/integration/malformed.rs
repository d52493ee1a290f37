//! Bad input never crashes: a generated corpus of more than a hundred
//! malformed inputs (SQL, CSV, Parquet, NDJSON, settings, S3 options; see
//! `ember_tests::malformed`), each run through the `ember` CLI embedded and
//! on a real 2-executor cluster. Each gives one error line naming its
//! culprit and exit status 1; no process panics, aborts or prints a
//! backtrace; the cluster still answers afterwards.

use std::path::Path;

use datafusion::prelude::SessionContext;
use ember_tests::malformed::{MalformedInput, corpus};
use ember_tests::{assert_cluster_answers, run_ember_in, start_cluster};

/// Signs of a crash in any process's output.
const CRASH_SIGNS: [&str; 5] = [
    "panicked",
    "backtrace",
    "has overflowed its stack",
    "Aborted",
    "SIGSEGV",
];

/// A valid Parquet file of 1000 rows (`a BIGINT`, `b VARCHAR`), written by
/// DataFusion, whose corruptions the corpus reads.
async fn good_parquet(dir: &Path) -> Vec<u8> {
    let path = dir.join("good.parquet");
    let ctx = SessionContext::new();
    ctx.sql(&format!(
        "COPY (SELECT value AS a, CAST(value AS VARCHAR) AS b FROM generate_series(1, 1000)) \
         TO '{}' STORED AS PARQUET",
        path.display()
    ))
    .await
    .expect("COPY plans")
    .collect()
    .await
    .expect("COPY runs");
    std::fs::read(&path).expect("good.parquet")
}

/// What is wrong with how `ember` handled `case`, if anything.
fn misbehaviour(case: &MalformedInput, code: i32, stdout: &str, stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let problem = if code != 1 {
        format!("exit status {code}")
    } else if lines.len() != 1 {
        format!("{} lines on stderr", lines.len())
    } else if !lines[0].starts_with("error: ") {
        "the line does not start with `error: `".to_string()
    } else if let Some(sign) = CRASH_SIGNS
        .iter()
        .find(|s| stderr.contains(*s) || stdout.contains(*s))
    {
        format!("a crash (`{sign}`)")
    } else if let Some(culprit) = case.culprit.as_deref().filter(|c| !lines[0].contains(c)) {
        format!("the line does not name `{culprit}`")
    } else {
        return None;
    };
    Some(format!(
        "{} [{}]: {problem}; stderr: {}",
        case.name,
        case.kind,
        stderr.trim().chars().take(400).collect::<String>()
    ))
}

/// Runs every case, with `extra` arguments before the statements, and
/// returns the misbehaviours.
fn run_corpus(dir: &Path, cases: &[MalformedInput], extra: &[&str]) -> Vec<String> {
    cases
        .iter()
        .filter_map(|case| {
            let mut args: Vec<&str> = vec!["sql"];
            args.extend_from_slice(extra);
            for statement in &case.statements {
                args.extend(["-c", statement.as_str()]);
            }
            let (code, stdout, stderr) = run_ember_in(dir, &args, None);
            misbehaviour(case, code, &stdout, &stderr)
        })
        .collect()
}

async fn corpus_in(dir: &Path) -> Vec<MalformedInput> {
    let parquet = good_parquet(dir).await;
    let cases = corpus(dir, &parquet).expect("corpus written");
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    for kind in ["sql", "csv", "parquet", "ndjson", "setting", "s3"] {
        assert!(cases.iter().any(|c| c.kind == kind), "no {kind} case");
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_input_is_one_clear_error_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = corpus_in(dir.path()).await;
    let failures = run_corpus(dir.path(), &cases, &[]);
    assert!(
        failures.is_empty(),
        "{} of {} malformed inputs misbehave embedded:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_input_is_one_clear_error_on_a_cluster_which_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = corpus_in(dir.path()).await;
    let mut cluster = start_cluster(2).await;
    let address = cluster.address().to_string();
    let failures = run_corpus(dir.path(), &cases, &["--scheduler", &address]);
    assert!(
        failures.is_empty(),
        "{} of {} malformed inputs misbehave on a cluster:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        cluster.exited_process(),
        None,
        "a process of the cluster died"
    );
    assert_cluster_answers(&address);
    for entry in std::fs::read_dir(cluster.log_dir()).expect("log dir") {
        let path = entry.expect("log entry").path();
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(sign) = CRASH_SIGNS.iter().find(|s| log.contains(*s)) {
            panic!("{} shows a crash (`{sign}`):\n{log}", path.display());
        }
    }
}
