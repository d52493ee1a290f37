//! `GET /metrics` on the scheduler, after real queries on a real
//! two-executor cluster: every line parses as Prometheus' text format, and
//! the job counters, the latency histogram, the jobs by state and the
//! executors' gauges say what happened.

use std::collections::HashMap;

use ember::EmberContext;
use ember::tpch::query;
use ember_tests::{generate_tpch, http_get, start_cluster};

/// The samples of a Prometheus text exposition, by series (`name` or
/// `name{labels}`); panics on a line that is not a comment, a blank or a
/// sample.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a sample's value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "not a metric name: {line}"
        );
        samples.insert(series.to_string(), value);
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_serves_the_clusters_metrics_for_prometheus() {
    let data = tempfile::tempdir().unwrap();
    let generator = generate_tpch(data.path(), 0.01);
    let cluster = start_cluster(2).await;
    let address = cluster.address().to_string();
    let ctx = EmberContext::connect(&address).await.unwrap();
    for statement in generator.create_table_statements(data.path()) {
        ctx.run_sql(&statement).await.unwrap();
    }
    for n in [1, 6, 3] {
        ctx.run_sql(query(n).unwrap()).await.unwrap();
    }
    let (status, body) = tokio::task::spawn_blocking(move || http_get(&address, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let samples = samples(&body);
    let value = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
    };
    assert!(value("job_submitted_total") >= 3.0, "{body}");
    assert!(value("job_completed_total") >= 3.0, "{body}");
    assert_eq!(value("job_failed_total"), 0.0, "{body}");
    assert!(value("job_exec_time_seconds_count") >= 3.0, "{body}");
    assert!(value(r#"ember_jobs{status="completed"}"#) >= 3.0, "{body}");
    assert_eq!(value(r#"ember_jobs{status="running"}"#), 0.0, "{body}");
    assert_eq!(value("ember_executors"), 2.0, "{body}");
    assert!(value("process_resident_memory_bytes") > 0.0, "{body}");
    let per_executor = |name: &str| {
        samples
            .iter()
            .filter(|(series, _)| series.starts_with(&format!("{name}{{executor=")))
            .map(|(_, value)| *value)
            .collect::<Vec<f64>>()
    };
    let vcores = per_executor("ember_executor_vcores");
    assert_eq!(vcores.len(), 2, "{body}");
    assert!(vcores.iter().all(|cores| *cores >= 1.0), "{body}");
    let ages = per_executor("ember_executor_heartbeat_age_seconds");
    assert_eq!(ages.len(), 2, "{body}");
    assert!(ages.iter().all(|age| *age < 60.0), "{body}");

    // Each executor's own /metrics, on its health port: the tasks it ran
    // and the shuffle bytes it wrote add up to what the scheduler recorded.
    let (scheduler_tasks, scheduler_bytes) =
        crate::web_ui::scheduler_task_totals(&cluster.address().to_string());
    let (mut tasks, mut bytes) = (0.0, 0.0);
    for n in 0..2 {
        let log = std::fs::read_to_string(cluster.log_dir().join(format!("executor-{n}.log")))
            .expect("the executor's log");
        let port = log
            .split_whitespace()
            .skip_while(|word| *word != "health")
            .nth(1)
            .and_then(|port| port.trim_end_matches(',').parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no health port in executor-{n}.log:\n{log}"));
        let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/metrics");
        assert_eq!(status, 200, "{body}");
        let executor = self::samples(&body);
        let value = |series: &str| {
            *executor
                .get(series)
                .unwrap_or_else(|| panic!("no {series} on executor {n}:\n{body}"))
        };
        tasks += value(r#"ember_executor_tasks_total{outcome="succeeded"}"#);
        bytes += value("ember_executor_shuffle_write_bytes_total");
        assert_eq!(value("ember_executor_tasks_running"), 0.0, "{body}");
        assert!(value("ember_executor_task_seconds_count") >= 1.0, "{body}");
        assert!(value("ember_executor_memory_pool_bytes") > 0.0, "{body}");
        assert!(
            value(r#"ember_executor_disk_bytes{kind="shuffle"}"#) > 0.0,
            "{body}"
        );
        assert!(value("process_resident_memory_bytes") > 0.0, "{body}");
    }
    assert_eq!(tasks, scheduler_tasks as f64);
    assert_eq!(bytes, scheduler_bytes as f64);
}
