//! A scheduler under a stream of jobs keeps its memory flat: finished jobs
//! are dropped past `--finished-jobs`, and its resident set after a few
//! hundred jobs is within 10% of what it was after the warm-up.

use ember::EmberContext;
use ember_tests::{http_get, start_cluster_with_env};

/// The resident set of process `pid`, in bytes, from `/proc`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kib * 1024
}

/// A job with more than one stage (an aggregate over a repartition).
fn job() -> String {
    let values: Vec<String> = (1..=200).map(|k| format!("({k})")).collect();
    format!(
        "SELECT k % 7 AS g, count(*) AS n, sum(k) AS s FROM (VALUES {}) AS t(k) \
         GROUP BY k % 7 ORDER BY g",
        values.join(", ")
    )
}

async fn run_jobs(ctx: &EmberContext, count: usize) {
    let job = job();
    for _ in 0..count {
        let batches = ctx.run_sql(&job).await.expect("job runs");
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 7);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_memory_stays_flat_over_hundreds_of_jobs() {
    const KEEP: usize = 20;
    let cluster = start_cluster_with_env(
        2,
        vec![(
            "EMBER_SCHEDULER_FINISHED_JOBS".to_string(),
            KEEP.to_string(),
        )],
    )
    .await;
    let scheduler = cluster.address().to_string();
    let pid = cluster.scheduler_pid().expect("scheduler runs");
    let ctx = EmberContext::connect(&scheduler).await.expect("connects");

    run_jobs(&ctx, 100).await;
    let warm = rss_bytes(pid);
    run_jobs(&ctx, 300).await;
    // Retention runs every few seconds; let one pass see the last jobs.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let after = rss_bytes(pid);
    println!(
        "scheduler RSS: {:.1} MiB after 100 jobs, {:.1} MiB after 400",
        warm as f64 / 1048576.0,
        after as f64 / 1048576.0
    );

    let (status, body) = http_get(&scheduler, "/api/jobs");
    assert_eq!(status, 200, "{body}");
    let jobs: serde_json::Value = serde_json::from_str(&body).expect("jobs JSON");
    let listed = jobs.as_array().map(Vec::len).unwrap_or(0);
    assert!(
        listed <= KEEP,
        "at most {KEEP} finished jobs are kept, the scheduler lists {listed}"
    );
    assert!(
        after <= warm + warm / 10,
        "the scheduler's RSS grew from {warm} to {after} bytes over 300 jobs"
    );
}
