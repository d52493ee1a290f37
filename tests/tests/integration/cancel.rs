//! Ctrl-C during a write through the real `ember` binary: the statement
//! stops with one clear line, a cluster job is cancelled rather than left to
//! commit, and nothing is left at the destination, embedded and on a
//! cluster.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ember_tests::{binary, files_below, generate_tpch, http_get, start_cluster};

/// A write that takes many seconds: every lineitem row times 2,000.
const SLOW_COPY: &str = "COPY (SELECT a.l_orderkey, a.l_comment, b.l_linenumber \
     FROM lineitem a CROSS JOIN (SELECT l_linenumber FROM lineitem LIMIT 2000) b) \
     TO '{out}' STORED AS CSV";

/// Starts `ember sql` running the slow write to `out`, on `scheduler` or
/// embedded.
fn start_slow_write(data: &Path, out: &Path, scheduler: Option<&str>) -> Child {
    let create = format!(
        "CREATE EXTERNAL TABLE lineitem STORED AS PARQUET LOCATION '{}/lineitem/'",
        data.display()
    );
    let copy = SLOW_COPY.replace("{out}", &format!("{}/", out.display()));
    let mut command = Command::new(binary("ember"));
    command.arg("sql");
    if let Some(addr) = scheduler {
        command.args(["--scheduler", addr]);
    }
    command
        .args(["-c", &create, "-c", &copy])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ember starts")
}

/// Waits until a task has staged a file under `out`, then interrupts the
/// client as Ctrl-C would; returns its exit code and standard error.
fn interrupt_once_staging(mut client: Child, out: &Path) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    // Any file: a part file being uploaded has a temporary name.
    while files_below(&out.join("_temporary")).is_empty() {
        assert!(Instant::now() < deadline, "the write never staged a file");
        assert!(
            client.try_wait().unwrap().is_none(),
            "the write ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling a child we spawned and have not reaped.
    unsafe { libc::kill(client.id() as i32, libc::SIGINT) };
    let output = client.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn assert_cancelled(code: Option<i32>, stderr: &str) {
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: the statement was cancelled by SIGINT",
        "one line, naming the cause"
    );
}

#[test]
fn ctrl_c_during_an_embedded_write_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tpch");
    generate_tpch(&data, 0.01);
    let out = dir.path().join("out");
    let client = start_slow_write(&data, &out, None);
    let (code, stderr) = interrupt_once_staging(client, &out);
    assert_cancelled(code, &stderr);
    assert_eq!(files_below(&out), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_cluster_write_cancels_the_job_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tpch");
    generate_tpch(&data, 0.01);
    let out = dir.path().join("out");
    let cluster = start_cluster(2).await;
    let addr = cluster.address().to_string();
    let client = start_slow_write(&data, &out, Some(&addr));
    let staged = out.clone();
    let (code, stderr) =
        tokio::task::spawn_blocking(move || interrupt_once_staging(client, &staged))
            .await
            .unwrap();
    assert_cancelled(code, &stderr);

    // The job is over, not running on without its client.
    let (status, jobs) = http_get(&addr, "/api/jobs");
    assert_eq!(status, 200, "{jobs}");
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&jobs).unwrap();
    let [copy] = jobs.as_slice() else {
        panic!("one job, the write: {jobs:?}");
    };
    assert!(
        copy["job_name"].as_str().unwrap().starts_with("ember-"),
        "{copy}"
    );
    assert_eq!(copy["status"], "Failed", "{copy}");

    // Nothing at the destination, and nothing arrives later either.
    assert_eq!(files_below(&out), Vec::<String>::new());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(files_below(&out), Vec::<String>::new());
}
