//! What a running task learns from a real scheduler about its job
//! (`ember_executor::job_watch`): failed jobs read as failed, and nothing
//! else does.

use ember::EmberContext;
use ember_executor::job_watch::JobStatusSource;
use ember_tests::{http_get, start_cluster};

/// The scheduler's jobs, as (id, status) pairs.
fn jobs(scheduler: &str) -> Vec<(String, String)> {
    let (status, body) = http_get(scheduler, "/api/jobs");
    assert_eq!(status, 200, "{body}");
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    jobs.iter()
        .map(|job| {
            (
                job["job_id"].as_str().unwrap().to_string(),
                job["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_failed_job_reads_as_failed() {
    let data = tempfile::tempdir().unwrap();
    let csv = data.path().join("numbers.csv");
    std::fs::write(&csv, "n\n1\n2\nthree\n").unwrap();
    let cluster = start_cluster(1).await;
    let scheduler = cluster.address().to_string();
    let ctx = EmberContext::connect(&scheduler).await.expect("connects");

    ctx.run_sql("SELECT 1 + 1")
        .await
        .expect("a plain query runs");
    ctx.run_sql(&format!(
        "CREATE EXTERNAL TABLE numbers (n BIGINT) STORED AS CSV LOCATION '{}' \
         OPTIONS ('format.has_header' 'true')",
        csv.display()
    ))
    .await
    .unwrap();
    let parse_error = ctx.run_sql("SELECT sum(n) FROM numbers").await;
    assert!(parse_error.is_err(), "'three' is not a BIGINT");

    let jobs = jobs(&scheduler);
    let failed: Vec<&str> = jobs
        .iter()
        .filter(|(_, s)| s == "Failed")
        .map(|(id, _)| id.as_str())
        .collect();
    let completed: Vec<&str> = jobs
        .iter()
        .filter(|(_, s)| s == "Completed")
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(failed.len(), 1, "{jobs:?}");
    assert!(!completed.is_empty(), "{jobs:?}");

    let address = ember_core::SchedulerAddress::parse(&scheduler).unwrap();
    let source = JobStatusSource::new(&address.host, address.port, &Default::default()).unwrap();
    assert!(source.has_failed(failed[0]).await, "{jobs:?}");
    for id in completed {
        assert!(!source.has_failed(id).await, "{id} completed");
    }
    assert!(!source.has_failed("no-such-job").await);

    // A scheduler that cannot be reached never stops a task.
    drop(cluster);
    let source = JobStatusSource::new(&address.host, address.port, &Default::default()).unwrap();
    assert!(!source.has_failed(failed[0]).await, "the scheduler is gone");
}
