//! Talking to a cluster's scheduler before running anything on it: is it
//! there, is it a scheduler, does it have executors?
//!
//! Ballista's client would otherwise wait forever for a job that no executor
//! picks up, or fail deep inside a query with a transport error. These checks
//! turn both into one clear error, within a bounded time.

use std::time::{Duration, Instant};

use ember_auth::{ClientSecurity, SecurityOptions};

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

/// A scheduler and how this client reaches it: its address, the TLS and
/// token it presents, and the HTTP client of its REST API (built once, with
/// its connection pool, rather than for each check or poll).
#[derive(Debug, Clone)]
pub struct SchedulerConnection {
    address: SchedulerAddress,
    security: ClientSecurity,
    pub(crate) http: reqwest::Client,
}

impl SchedulerConnection {
    /// The scheduler at `address`, reached as `security` says.
    pub fn new(address: SchedulerAddress, security: ClientSecurity) -> Result<Self> {
        let http = security.http_client()?;
        Ok(Self {
            address,
            security,
            http,
        })
    }

    /// The scheduler at `address` (`host:port`, `https://host:port`, ...),
    /// reached with the token and TLS files that `options` names: TLS when
    /// the address is `https://` or `grpcs://`, or when a TLS file is given.
    pub fn from_options(address: &str, options: &SecurityOptions) -> Result<Self> {
        let parsed = SchedulerAddress::parse(address)?;
        let security = options.client(SchedulerAddress::requests_tls(address))?;
        Self::new(parsed, security)
    }

    /// The scheduler at `address`, reached without TLS or a token.
    pub fn plain(address: SchedulerAddress) -> Result<Self> {
        Self::new(address, ClientSecurity::default())
    }

    /// Its address.
    pub fn address(&self) -> &SchedulerAddress {
        &self.address
    }

    /// The TLS and token presented.
    pub fn security(&self) -> &ClientSecurity {
        &self.security
    }

    /// The URL of a path of the scheduler's REST API.
    pub(crate) fn rest_url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.security.scheme(), self.address)
    }
}

impl std::fmt::Display for SchedulerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.address.fmt(f)
    }
}

/// Checks that the scheduler is reachable within `connect_timeout`.
pub async fn check_reachable(
    scheduler: &SchedulerConnection,
    connect_timeout: Duration,
) -> Result<()> {
    let addr = scheduler.address();
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

/// Asks the scheduler's REST API for its version, presenting this client's
/// token and TLS: a refused token or a failed TLS handshake is
/// [`ClientError::Insecure`], with the reason.
pub async fn check_access(addr: &SchedulerConnection, timeout: Duration) -> Result<()> {
    rest_json(addr, reqwest::Method::GET, "/api/version", timeout)
        .await
        .map(|_| ())
}

/// GETs `path` from the scheduler's REST API and returns the JSON list it
/// answers with. Failing to connect is [`ClientError::SchedulerUnreachable`];
/// any other answer is [`ClientError::NotAScheduler`].
async fn get_json_list(
    addr: &SchedulerConnection,
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
    addr: &SchedulerConnection,
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
    addr: &SchedulerConnection,
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
pub async fn list_jobs(addr: &SchedulerConnection, timeout: Duration) -> Result<Vec<JobInfo>> {
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
    addr: &SchedulerConnection,
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
            let response = addr
                .http
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

/// The innermost cause of `error`, in words: `error sending request` says
/// less than the refused connection or the TLS alert beneath it.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// Sends `method` to `path` on the scheduler's REST API and returns the JSON
/// it answers with. Failing to connect is
/// [`ClientError::SchedulerUnreachable`]; any other answer is
/// [`ClientError::NotAScheduler`].
async fn rest_json(
    addr: &SchedulerConnection,
    method: reqwest::Method,
    path: &str,
    timeout: Duration,
) -> Result<Value> {
    let response = addr
        .http
        .request(method.clone(), addr.rest_url(path))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| match addr.security.describe_failure(&e) {
            Some(reason) => ClientError::Insecure {
                addr: addr.to_string(),
                reason,
            },
            None => ClientError::SchedulerUnreachable {
                addr: addr.to_string(),
                reason: root_cause(&e),
            },
        })?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        let reason = match addr.security.token() {
            None => "it requires a token (--token-file or EMBER_TOKEN), and none was sent",
            Some(_) => "the token sent is not this cluster's token",
        };
        return Err(ClientError::Insecure {
            addr: addr.to_string(),
            reason: reason.to_string(),
        });
    }
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
    addr: &SchedulerConnection,
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

/// Every table of the scheduler's shared catalog, as (schema, table,
/// encoded scan).
pub async fn catalog_list(addr: &SchedulerConnection) -> Result<Vec<(String, String, Vec<u8>)>> {
    use base64::Engine as _;
    let body = rest_json(
        addr,
        reqwest::Method::GET,
        "/api/ember/catalog",
        Duration::from_secs(30),
    )
    .await?;
    let tables = body["tables"].as_array().cloned().unwrap_or_default();
    tables
        .iter()
        .map(|entry| {
            let text = |key: &str| entry[key].as_str().unwrap_or_default().to_string();
            let plan = base64::engine::general_purpose::STANDARD
                .decode(text("plan"))
                .map_err(|e| ClientError::NotAScheduler {
                    addr: addr.to_string(),
                    reason: format!(
                        "GET /api/ember/catalog returned a table that is not base64: {e}"
                    ),
                })?;
            Ok((text("schema"), text("table"), plan))
        })
        .collect()
}

/// Registers `schema/table` (with `plan`, its encoded scan) or creates
/// schema `path` (without) in the scheduler's shared catalog.
pub async fn catalog_put(
    addr: &SchedulerConnection,
    path: &str,
    plan: Option<&[u8]>,
) -> Result<()> {
    use base64::Engine as _;
    let body = plan.map(|plan| {
        serde_json::json!({ "plan": base64::engine::general_purpose::STANDARD.encode(plan) })
    });
    rest_send(
        addr,
        reqwest::Method::PUT,
        &format!("/api/ember/catalog/{path}"),
        body,
    )
    .await
}

/// Drops `schema/table`, or schema `path`, from the scheduler's catalog.
pub async fn catalog_delete(addr: &SchedulerConnection, path: &str) -> Result<()> {
    rest_send(
        addr,
        reqwest::Method::DELETE,
        &format!("/api/ember/catalog/{path}"),
        None,
    )
    .await
}

/// Sends `method` to `path` with an optional JSON body, and fails unless
/// the scheduler answers with success.
async fn rest_send(
    addr: &SchedulerConnection,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<()> {
    let mut request = addr
        .http
        .request(method.clone(), addr.rest_url(path))
        .timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| ClientError::SchedulerUnreachable {
            addr: addr.to_string(),
            reason: root_cause(&e),
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(ClientError::NotAScheduler {
        addr: addr.to_string(),
        reason: format!("{method} {path} returned {status}: {}", text.trim()),
    })
}

/// Where the cluster's executors hold a cached dataset's partitions.
pub async fn cache_storage(addr: &SchedulerConnection, cache_id: &str) -> Result<CacheStorage> {
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
pub async fn unpersist(addr: &SchedulerConnection, cache_id: &str) -> Result<usize> {
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

/// How far the job named `job_name` has got, from the scheduler's REST
/// API; `None` while the scheduler does not list it yet.
pub async fn job_progress(
    addr: &SchedulerConnection,
    job_name: &str,
) -> Result<Option<crate::progress::StatementProgress>> {
    let timeout = Duration::from_secs(5);
    let jobs = get_json_list(addr, "/api/jobs", timeout).await?;
    let Some(job) = jobs.iter().find(|job| job["job_name"] == job_name) else {
        return Ok(None);
    };
    let number = |value: &Value| value.as_u64().unwrap_or_default() as usize;
    let id = job["job_id"].as_str().unwrap_or_default();
    let stages = rest_json(
        addr,
        reqwest::Method::GET,
        &format!("/api/job/{id}/stages"),
        timeout,
    )
    .await?;
    let (mut tasks_done, mut tasks_running, mut rows) = (0, 0, 0);
    for stage in stages["stages"].as_array().into_iter().flatten() {
        rows += number(&stage["input_rows"]);
        for task in stage["tasks"].as_array().into_iter().flatten() {
            match task["status"].as_str() {
                Some("Successful") => tasks_done += 1,
                Some("Running") => tasks_running += 1,
                _ => {}
            }
        }
    }
    Ok(Some(crate::progress::StatementProgress::Cluster {
        stages_done: number(&job["completed_stages"]),
        stages: number(&job["num_stages"]),
        tasks_done,
        tasks_running,
        rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connection_names_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let addr = SchedulerConnection::plain(SchedulerAddress {
            host: "127.0.0.1".into(),
            port,
        })
        .unwrap();
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
