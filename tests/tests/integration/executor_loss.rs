//! An executor is lost mid-job: the job still completes, with the answer
//! single-process DataFusion gives.
//!
//! The query is a self-join of TPC-H lineitem (SF 0.1): two shuffle stages
//! feed a join stage that runs for seconds. One executor is lost once the
//! job has a completed stage, so shuffle output the join needs is lost with
//! it; the scheduler must notice and recompute it from lineage on the
//! executor left. Two ways to lose it:
//!
//! * killed (SIGKILL): fetches from it are refused at once, and the failed
//!   fetch makes the scheduler rerun the map stage; the scheduler's probe
//!   finds its port closed and removes it within seconds;
//! * hung (SIGSTOP, as a frozen machine or a network partition): fetches
//!   stall and only the heartbeat timeout tells the scheduler. This is the
//!   case Ballista's adaptive planner cannot recover from (see
//!   `ember_core::apply_cluster_defaults`).

use std::time::{Duration, Instant};

use ember::EmberContext;
use ember::tpch::TpchGenerator;
use ember_tests::{compare, http_get, start_cluster_with_env};

const SELF_JOIN: &str = "SELECT l1.l_returnflag, count(*) AS pairs, \
    sum(l1.l_quantity * l2.l_quantity) AS q \
    FROM lineitem l1 JOIN lineitem l2 ON l1.l_partkey = l2.l_partkey \
    GROUP BY l1.l_returnflag ORDER BY l1.l_returnflag";

/// Whether the scheduler lists a running job with at least one completed
/// stage.
fn running_job_with_completed_stage(scheduler: &str) -> bool {
    let (status, body) = http_get(scheduler, "/api/jobs");
    if status != 200 {
        return false;
    }
    let jobs: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    jobs.as_array()
        .into_iter()
        .flatten()
        .any(|job| job["status"] == "Running" && job["completed_stages"].as_u64().unwrap_or(0) >= 1)
}

/// How the test loses its executor.
#[derive(Debug, Clone, Copy)]
enum Loss {
    Killed,
    Hung,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_survives_an_executor_killed_mid_job() {
    query_survives_losing_an_executor(Loss::Killed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_survives_an_executor_that_hangs_mid_job() {
    query_survives_losing_an_executor(Loss::Hung).await;
}

async fn query_survives_losing_an_executor(loss: Loss) {
    let data = tempfile::tempdir().unwrap();
    let generator = TpchGenerator {
        scale_factor: 0.1,
        parts: 2,
        ..TpchGenerator::default()
    };
    let lineitem = generator
        .write_table("lineitem", data.path())
        .expect("lineitem generates");
    let create = format!(
        "CREATE EXTERNAL TABLE lineitem STORED AS PARQUET LOCATION '{}/'",
        lineitem.display()
    );

    let reference = datafusion::prelude::SessionContext::new();
    reference.sql(&create).await.expect("reference DDL");
    let expected = reference
        .sql(SELF_JOIN)
        .await
        .unwrap()
        .collect()
        .await
        .expect("reference runs");

    // A silent executor is declared lost 10 s after its last heartbeat (the
    // scheduler sweeps every 15 s); live ones beat every second, so that a
    // machine busy with other tests does not make the survivor look lost
    // too (a live executor wrongly declared lost can stall the job).
    let mut cluster = start_cluster_with_env(
        2,
        [
            ("EMBER_SCHEDULER_EXECUTOR_TIMEOUT_SECS", "10"),
            ("EMBER_EXECUTOR_HEARTBEAT_SECS", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    )
    .await;
    let scheduler = cluster.address().to_string();
    let ctx = EmberContext::connect(&scheduler).await.expect("connects");
    ctx.run_sql(&create).await.expect("table registers");

    let query = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.run_sql(SELF_JOIN).await }
    });

    let deadline = Instant::now() + Duration::from_secs(120);
    while !running_job_with_completed_stage(&scheduler) {
        assert!(
            !query.is_finished(),
            "the query ended before any stage completed: nothing was killed mid-job"
        );
        assert!(Instant::now() < deadline, "no job made progress in 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = cluster.executor_pids()[0];
    let signal = match loss {
        Loss::Killed => libc::SIGKILL,
        Loss::Hung => libc::SIGSTOP,
    };
    // SAFETY: plain kill(2) on a child process of this test.
    let sent = unsafe { libc::kill(victim as i32, signal) };
    assert_eq!(sent, 0, "{loss:?}: signal to executor {victim}");
    let lost_at = Instant::now();

    // Without recovery the job hangs: bound the wait so the test fails.
    let outcome = tokio::time::timeout(Duration::from_secs(180), query).await;
    if matches!(loss, Loss::Hung) {
        // SAFETY: as above; the stopped process is killed when the cluster
        // is dropped, and a stopped process cannot handle SIGTERM.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    }
    if outcome.is_err() {
        // Show what the scheduler saw before failing.
        let log = std::fs::read_to_string(cluster.log_dir().join("scheduler.stderr.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let (_, jobs) = http_get(&scheduler, "/api/jobs");
        eprintln!(
            "jobs: {jobs}\nscheduler log (last 60 lines):\n{}",
            lines[lines.len().saturating_sub(60)..].join("\n")
        );
    }
    let actual = outcome
        .expect("the job finished within 180 s of losing an executor")
        .expect("the query task did not panic")
        .expect("the query succeeded after losing an executor");
    println!(
        "{loss:?}: finished {:.1}s after the executor was lost",
        lost_at.elapsed().as_secs_f64()
    );
    let rows = compare(&expected, &actual, true).expect("same answer as DataFusion");
    assert_eq!(rows, 3, "one row per l_returnflag");
    if matches!(loss, Loss::Killed) {
        assert!(
            cluster.exited_process().is_some(),
            "the killed executor is reported as exited"
        );
        // Noticed by the scheduler's probe of its Flight port, within
        // seconds, not by the heartbeat timeout.
        let log = std::fs::read_to_string(cluster.log_dir().join("scheduler.stderr.log"))
            .unwrap_or_default();
        assert!(
            log.contains("executor lost: removing it"),
            "the probe removed the killed executor; scheduler log:\n{log}"
        );
    }
}
