//! Talking to a cluster's scheduler before running anything on it: is it
//! there, is it a scheduler, does it have executors?
//!
//! Ballista's client would otherwise wait forever for a job that no executor
//! picks up, or fail deep inside a query with a transport error. These checks
//! turn both into one clear error, within a bounded time.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ember_core::cache::{CacheStorage, CachedBlock};
use serde_json::Value;
use tokio::net::TcpStream;

pub use ember_core::SchedulerAddress;

use crate::error::{ClientError, Result};

/// One executor as the scheduler reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorInfo {
    /// The executor's id.
    pub id: String,
    /// Host it advertises.
    pub host: String,
    /// Its Arrow Flight port.
    pub port: u16,
}

/// Checks that the scheduler at `addr` is reachable within `connect_timeout`.
pub async fn check_reachable(addr: &SchedulerAddress, connect_timeout: Duration) -> Result<()> {
    let target = (addr.host.as_str(), addr.port);
    match tokio::time::timeout(connect_timeout, TcpStream::connect(target)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ClientError::SchedulerUnreachable {
            addr: addr.to_string(),
            reason: describe_io(&e),
        }),
        Err(_) => Err(ClientError::SchedulerUnreachable {
            addr: addr.to_string(),
            reason: format!("no answer within {}s", connect_timeout.as_secs()),
        }),
    }
}

fn describe_io(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is ember-scheduler running there?)".to_string()
        }
        _ => err.to_string(),
    }
}

/// The HTTP client for schedulers' REST APIs, built once per process and
/// shared (with its connection pool) by every check, rather than rebuilt for
/// each query or poll.
fn rest_client() -> Result<&'static reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| ClientError::Process(format!("cannot build an HTTP client: {e}")))?;
    Ok(CLIENT.get_or_init(|| client))
}

/// GETs `path` from the scheduler's REST API and returns the JSON list it
/// answers with. Failing to connect is [`ClientError::SchedulerUnreachable`];
/// any other answer is [`ClientError::NotAScheduler`].
async fn get_json_list(
    addr: &SchedulerAddress,
    path: &str,
    timeout: Duration,
) -> Result<Vec<Value>> {
    match rest_json(addr, reqwest::Method::GET, path, timeout).await? {
        Value::Array(list) => Ok(list),
        _ => Err(ClientError::NotAScheduler {
            addr: addr.to_string(),
            reason: format!("GET {path} returned no JSON list"),
        }),
    }
}

/// Lists the executors registered with the scheduler, through its REST API.
pub async fn list_executors(
    addr: &SchedulerAddress,
    timeout: Duration,
) -> Result<Vec<ExecutorInfo>> {
    Ok(get_json_list(addr, "/api/executors", timeout)
        .await?
        .iter()
        .map(|e| ExecutorInfo {
            id: e["id"].as_str().unwrap_or_default().to_string(),
            host: e["host"].as_str().unwrap_or_default().to_string(),
            port: e["port"].as_u64().unwrap_or_default() as u16,
        })
        .collect())
}

/// Waits until at least `count` executors are registered, polling the
/// scheduler, for at most `wait`.
pub async fn wait_for_executors(
    addr: &SchedulerAddress,
    count: usize,
    wait: Duration,
) -> Result<Vec<ExecutorInfo>> {
    let started = Instant::now();
    loop {
        let executors = list_executors(addr, Duration::from_secs(5)).await?;
        if executors.len() >= count.max(1) {
            return Ok(executors);
        }
        if started.elapsed() >= wait {
            return Err(ClientError::NoExecutors {
                addr: addr.to_string(),
                waited_secs: wait.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One job as the scheduler's REST API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The job's id.
    pub id: String,
    /// The name it was submitted with (`ballista.job.name`).
    pub name: String,
    /// `Queued`, `Running`, `Completed`, `Failed` or `Invalid`.
    pub status: String,
}

impl JobInfo {
    /// Whether the job may still run tasks.
    pub fn is_unfinished(&self) -> bool {
        matches!(self.status.as_str(), "Queued" | "Running")
    }
}

/// Lists the scheduler's jobs, through its REST API.
pub async fn list_jobs(addr: &SchedulerAddress, timeout: Duration) -> Result<Vec<JobInfo>> {
    Ok(get_json_list(addr, "/api/jobs", timeout)
        .await?
        .iter()
        .map(|j| JobInfo {
            id: j["job_id"].as_str().unwrap_or_default().to_string(),
            name: j["job_name"].as_str().unwrap_or_default().to_string(),
            status: j["status"].as_str().unwrap_or_default().to_string(),
        })
        .collect())
}

/// Cancels the scheduler's unfinished jobs named `job_name` and waits, for
/// at most `wait`, until none of them runs any more. Returns the jobs that
/// were cancelled.
///
/// A job whose submission was still on its way may appear a moment later,
/// so the name is looked for during the first second of `wait` too.
pub async fn cancel_jobs_named(
    addr: &SchedulerAddress,
    job_name: &str,
    wait: Duration,
) -> Result<Vec<String>> {
    let started = Instant::now();
    let mut cancelled: Vec<String> = Vec::new();
    loop {
        let named: Vec<JobInfo> = list_jobs(addr, Duration::from_secs(5))
            .await?
            .into_iter()
            .filter(|job| job.name == job_name)
            .collect();
        for job in named.iter().filter(|job| job.is_unfinished()) {
            if cancelled.contains(&job.id) {
                continue;
            }
            let response = rest_client()?
                .patch(addr.rest_url(&format!("/api/job/{}", job.id)))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            match response {
                Ok(_) => {
                    tracing::info!(job = %job.id, "cancelled the job");
                    cancelled.push(job.id.clone());
                }
                Err(e) => tracing::warn!(job = %job.id, "cannot cancel the job: {e}"),
            }
        }
        let running = named.iter().any(JobInfo::is_unfinished);
        let may_still_arrive = named.is_empty() && started.elapsed() < Duration::from_secs(1);
        if (!running && !may_still_arrive) || started.elapsed() >= wait {
            return Ok(cancelled);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `method` to `path` on the scheduler's REST API and returns the JSON
/// it answers with. Failing to connect is
/// [`ClientError::SchedulerUnreachable`]; any other answer is
/// [`ClientError::NotAScheduler`].
async fn rest_json(
    addr: &SchedulerAddress,
    method: reqwest::Method,
    path: &str,
    timeout: Duration,
) -> Result<Value> {
    let response = rest_client()?
        .request(method.clone(), addr.rest_url(path))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| ClientError::SchedulerUnreachable {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    let status = response.status();
    if !status.is_success() {
        // The first line of the answer, short: errors stay one line.
        let body = response.text().await.unwrap_or_default();
        let first: String = body
            .trim()
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let reason = if first.is_empty() {
            format!("{method} {path} returned {status}")
        } else {
            format!("{method} {path} returned {status}: {first}")
        };
        return Err(ClientError::NotAScheduler {
            addr: addr.to_string(),
            reason,
        });
    }
    response
        .json()
        .await
        .map_err(|e| ClientError::NotAScheduler {
            addr: addr.to_string(),
            reason: format!("{method} {path} returned no JSON: {e}"),
        })
}

/// What the job named `job_name` spilled to disk, summed over its stages'
/// operators; `None` when the scheduler lists no job of that name.
pub async fn job_spill(
    addr: &SchedulerAddress,
    job_name: &str,
) -> Result<Option<ember_memory::SpillTotals>> {
    let timeout = Duration::from_secs(5);
    let Some(job) = list_jobs(addr, timeout)
        .await?
        .into_iter()
        .find(|job| job.name == job_name)
    else {
        return Ok(None);
    };
    let path = format!("/api/ember/job/{}/spill", job.id);
    let body = rest_json(addr, reqwest::Method::GET, &path, timeout).await?;
    let number = |key: &str| body[key].as_u64().unwrap_or_default() as usize;
    Ok(Some(ember_memory::SpillTotals {
        files: number("spill_files"),
        bytes: number("spilled_bytes"),
        rows: number("spilled_rows"),
    }))
}

/// Where the cluster's executors hold a cached dataset's partitions.
pub async fn cache_storage(addr: &SchedulerAddress, cache_id: &str) -> Result<CacheStorage> {
    let path = format!("/api/ember/cache/{cache_id}");
    let body = rest_json(addr, reqwest::Method::GET, &path, Duration::from_secs(30)).await?;
    let number = |key: &str| body[key].as_u64().unwrap_or_default();
    let blocks = body["blocks"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .map(|b| CachedBlock {
                    partition: b["partition"].as_u64().unwrap_or_default() as u32,
                    partitions: b["partitions"].as_u64().unwrap_or_default() as u32,
                    endpoint: b["endpoint"].as_str().unwrap_or_default().to_string(),
                    rows: b["rows"].as_u64().unwrap_or_default(),
                    bytes: b["bytes"].as_u64().unwrap_or_default(),
                    medium: b["medium"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CacheStorage {
        blocks,
        partitions_computed: number("partitions_computed"),
        partitions_read_local: number("partitions_read_local"),
        partitions_sent: number("partitions_sent"),
    })
}

/// Frees a cached dataset's partitions on every executor; returns how many
/// were freed.
pub async fn unpersist(addr: &SchedulerAddress, cache_id: &str) -> Result<usize> {
    let path = format!("/api/ember/cache/{cache_id}");
    let body = rest_json(
        addr,
        reqwest::Method::DELETE,
        &path,
        Duration::from_secs(30),
    )
    .await?;
    Ok(body["freed"].as_u64().unwrap_or_default() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connection_names_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let addr = SchedulerAddress {
            host: "127.0.0.1".into(),
            port,
        };
        let err = check_reachable(&addr, Duration::from_secs(2))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("cannot reach the scheduler at 127.0.0.1:{port}")),
            "{err}"
        );
    }
}
