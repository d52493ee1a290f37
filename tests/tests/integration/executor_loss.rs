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
//!
//! A third test kills an executor while a stage that reads shuffled data
//! is part done: Ballista rolls the stage back and runs all of its
//! partitions again, while the stage after it already holds what the
//! finished tasks handed on, and would read those rows twice. The
//! scheduler fails the job for resubmission instead, and the client
//! submits it again.

use std::time::{Duration, Instant};

use ember::EmberContext;
use ember::tpch::TpchGenerator;
use ember_tests::{TestCluster, compare, http_get, start_cluster_with, start_cluster_with_env};

const SELF_JOIN: &str = "SELECT l1.l_returnflag, count(*) AS pairs, \
    sum(l1.l_quantity * l2.l_quantity) AS q \
    FROM lineitem l1 JOIN lineitem l2 ON l1.l_partkey = l2.l_partkey \
    GROUP BY l1.l_returnflag ORDER BY l1.l_returnflag";

/// Writes TPC-H lineitem at `scale_factor` in `parts` files under `dir`;
/// returns the statement that registers it and `sql`'s answer from
/// single-process DataFusion.
async fn lineitem_and_reference(
    dir: &std::path::Path,
    scale_factor: f64,
    parts: usize,
    sql: &str,
) -> (String, Vec<datafusion::arrow::record_batch::RecordBatch>) {
    let generator = TpchGenerator {
        scale_factor,
        parts,
        ..TpchGenerator::default()
    };
    let lineitem = generator
        .write_table("lineitem", dir)
        .expect("lineitem generates");
    let create = format!(
        "CREATE EXTERNAL TABLE lineitem STORED AS PARQUET LOCATION '{}/'",
        lineitem.display()
    );
    let reference = datafusion::prelude::SessionContext::new();
    reference.sql(&create).await.expect("reference DDL");
    let expected = reference
        .sql(sql)
        .await
        .unwrap()
        .collect()
        .await
        .expect("reference runs");
    (create, expected)
}

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
    let (create, expected) = lineitem_and_reference(data.path(), 0.1, 2, SELF_JOIN).await;

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

/// [`SELF_JOIN`] with 64 groups, so that every one of the final
/// aggregation's eight partitions has rows: rows read twice show.
const SELF_JOIN_64_GROUPS: &str = "SELECT l1.l_suppkey % 64 AS bucket, count(*) AS pairs, \
    sum(l1.l_quantity * l2.l_quantity) AS q \
    FROM lineitem l1 JOIN lineitem l2 ON l1.l_partkey = l2.l_partkey \
    GROUP BY bucket ORDER BY bucket";

/// A running stage that reads shuffled input, has finished a task and is
/// running another, if the scheduler lists one: its job and stage ids, and
/// how many of its tasks the scheduler has recorded as finished.
fn shuffle_reading_stage_part_done(scheduler: &str) -> Option<(String, String, usize)> {
    let (status, body) = http_get(scheduler, "/api/jobs");
    if status != 200 {
        return None;
    }
    let jobs: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let running: Vec<String> = jobs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|job| job["status"] == "Running")
        .filter_map(|job| job["job_id"].as_str().map(str::to_owned))
        .collect();
    running.into_iter().find_map(|job_id| {
        let (status, body) = http_get(scheduler, &format!("/api/job/{job_id}/stages"));
        if status != 200 {
            return None;
        }
        let stages: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        stages["stages"].as_array()?.iter().find_map(|stage| {
            let tasks = stage["tasks"].as_array().cloned().unwrap_or_default();
            let count = |state: &str| tasks.iter().filter(|task| task["status"] == state).count();
            let part_done = stage["stage_status"] == "Running"
                && stage["stage_plan"]
                    .as_str()
                    .is_some_and(|plan| plan.contains("ShuffleReaderExec"))
                && count("Successful") >= 1
                && count("Running") >= 1;
            let stage_id = stage["stage_id"].as_str()?.to_owned();
            part_done.then(|| (job_id.clone(), stage_id, count("Successful")))
        })
    })
}

/// How many tasks of `job`'s `stage` executor `n`'s log shows finished.
fn tasks_finished_by(cluster: &TestCluster, n: usize, job: &str, stage: &str) -> usize {
    let finished = format!("Finished task : [TID {job}/{stage}.");
    ["log", "stderr.log"]
        .iter()
        .filter_map(|suffix| {
            std::fs::read_to_string(cluster.log_dir().join(format!("executor-{n}.{suffix}"))).ok()
        })
        .map(|log| log.matches(&finished).count())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_rolled_back_part_done_is_not_counted_twice() {
    let data = tempfile::tempdir().unwrap();
    // One row group per file: eight files make every scan partition, and so
    // every task of the stages above, produce rows.
    let (create, expected) =
        lineitem_and_reference(data.path(), 0.05, 8, SELF_JOIN_64_GROUPS).await;

    // One slot per executor and eight partitions per stage: stages run as
    // eight tasks, one at a time on each executor.
    let mut cluster = start_cluster_with(2, |options| {
        options.cores_per_executor = 1;
        options.env = vec![("EMBER_EXECUTOR_HEARTBEAT_SECS".into(), "1".into())];
    })
    .await;
    let scheduler = cluster.address().to_string();
    let ctx = EmberContext::connect(&scheduler).await.expect("connects");
    ctx.run_sql("SET datafusion.execution.target_partitions = 8")
        .await
        .expect("setting applies");
    ctx.run_sql(&create).await.expect("table registers");

    let query = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.run_sql(SELF_JOIN_64_GROUPS).await }
    });
    // Catch a stage that reads shuffled data part done, once the scheduler
    // has recorded every task of it that finished (an executor reports a
    // finished task with its next poll), and kill the executor other than
    // one that finished a task of it: the survivor's finished output is
    // what the next stage must not read twice.
    let deadline = Instant::now() + Duration::from_secs(120);
    let survivor = loop {
        assert!(
            !query.is_finished(),
            "the query ended before a stage was caught part done"
        );
        assert!(
            Instant::now() < deadline,
            "no stage was caught part done in 120 s"
        );
        if let Some((job, stage, recorded)) = shuffle_reading_stage_part_done(&scheduler) {
            let finished = [0, 1].map(|n| tasks_finished_by(&cluster, n, &job, &stage));
            if recorded >= finished[0] + finished[1]
                && let Some(n) = (0..2).find(|&n| finished[n] > 0)
            {
                break n;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let victim = cluster.executor_pids()[1 - survivor];
    // SAFETY: plain kill(2) on a child process of this test.
    let sent = unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    assert_eq!(sent, 0, "SIGKILL to executor {victim}");
    let killed_at = Instant::now();

    let actual = tokio::time::timeout(Duration::from_secs(180), query)
        .await
        .expect("the query finished within 180 s of the kill")
        .expect("the query task did not panic")
        .expect("the query succeeded after losing an executor");
    println!(
        "finished {:.1}s after the executor was killed",
        killed_at.elapsed().as_secs_f64()
    );
    compare(&expected, &actual, true).expect("same answer as DataFusion");
    let log =
        std::fs::read_to_string(cluster.log_dir().join("scheduler.stderr.log")).unwrap_or_default();
    assert!(
        log.contains("failing the job so that the client submits it again"),
        "the scheduler failed the job for resubmission; scheduler log:\n{log}"
    );
    assert!(
        cluster.exited_process().is_some(),
        "the executor was killed"
    );
}
