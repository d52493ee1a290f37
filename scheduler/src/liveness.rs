//! Noticing a lost executor within seconds instead of at its heartbeat
//! timeout.
//!
//! Ballista declares an executor dead when its heartbeat is older than the
//! executor timeout, so a killed executor's running tasks wait out that
//! timeout (a minute by default) before they run elsewhere. The
//! [`ExecutorProbe`] asks each registered executor's Arrow Flight port for a
//! TCP connection every interval. A live process accepts it even when it is
//! too busy to answer anything (the kernel completes the handshake), so a
//! refused or timed-out connection, several times in a row, means the
//! process or its host is gone. The probe then tells Ballista's scheduler
//! the executor stopped, through the same call an executor makes when it
//! shuts down: its tasks are reset and rerun elsewhere, and the shuffle
//! outputs it held are computed again where a later stage needs them.

use std::collections::HashMap;
use std::time::Duration;

use ballista_core::serde::protobuf::ExecutorStoppedParams;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use futures::future::join_all;
use tokio::net::TcpStream;

use crate::server::EmberSchedulerServer;

/// How often, and how patiently, executors are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Time between two probes of every executor.
    pub interval: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Failed probes in a row after which an executor is removed.
    pub failures_to_remove: u32,
}

/// Why one probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ProbeFailure {
    /// The connection was refused or reset: nothing listens there.
    Refused(String),
    /// No answer within the connect timeout.
    TimedOut,
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeFailure::Refused(reason) => write!(f, "connection failed: {reason}"),
            ProbeFailure::TimedOut => write!(f, "no answer"),
        }
    }
}

/// One executor as the probe sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProbeTarget {
    id: String,
    address: String,
}

/// Probes every registered executor and removes the ones that stay
/// unreachable; see the module documentation.
pub(crate) struct ExecutorProbe {
    scheduler: EmberSchedulerServer,
    settings: ProbeSettings,
    failures: HashMap<String, u32>,
}

impl ExecutorProbe {
    /// A probe of `scheduler`'s executors.
    pub(crate) fn new(scheduler: EmberSchedulerServer, settings: ProbeSettings) -> Self {
        Self {
            scheduler,
            settings,
            failures: HashMap::new(),
        }
    }

    /// Probes forever, one round per interval.
    pub(crate) async fn run(mut self) {
        let mut ticks = tokio::time::interval(self.settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.probe_round().await;
        }
    }

    async fn targets(&self) -> Vec<ProbeTarget> {
        match self
            .scheduler
            .state
            .executor_manager
            .get_executors_state()
            .await
        {
            Ok(executors) => executors
                .into_iter()
                .map(|(metadata, _, _)| ProbeTarget {
                    address: format!("{}:{}", metadata.host, metadata.port),
                    id: metadata.id,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list executors to probe");
                Vec::new()
            }
        }
    }

    async fn probe_round(&mut self) {
        let targets = self.targets().await;
        let timeout = self.settings.connect_timeout;
        let outcomes = join_all(targets.iter().map(|target| probe(&target.address, timeout))).await;
        let registered: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        self.failures
            .retain(|id, _| registered.contains(&id.as_str()));
        for (target, outcome) in targets.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    self.failures.remove(&target.id);
                }
                Err(failure) => {
                    let count = self.failures.entry(target.id.clone()).or_insert(0);
                    *count += 1;
                    if *count == self.settings.failures_to_remove {
                        self.remove(target, &failure).await;
                    } else {
                        tracing::debug!(
                            executor = %target.id,
                            address = %target.address,
                            failures = *count,
                            %failure,
                            "executor probe failed"
                        );
                    }
                }
            }
        }
    }

    async fn remove(&self, target: &ProbeTarget, failure: &ProbeFailure) {
        let reason = format!(
            "executor {} at {} unreachable for {} probes in a row ({failure})",
            target.id, target.address, self.settings.failures_to_remove
        );
        tracing::warn!(
            executor = %target.id,
            address = %target.address,
            %failure,
            "executor lost: removing it, its tasks will run elsewhere"
        );
        let request = tonic::Request::new(ExecutorStoppedParams {
            executor_id: target.id.clone(),
            reason,
        });
        if let Err(status) = self.scheduler.executor_stopped(request).await {
            tracing::error!(executor = %target.id, error = %status, "cannot remove a lost executor");
        }
    }
}

/// Opens (and drops) one TCP connection to `address`.
async fn probe(address: &str, timeout: Duration) -> Result<(), ProbeFailure> {
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(ProbeFailure::Refused(e.to_string())),
        Err(_) => Err(ProbeFailure::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probe_tells_a_listening_port_from_a_closed_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert_eq!(probe(&open, Duration::from_secs(1)).await, Ok(()));
        drop(listener);
        let closed = probe(&open, Duration::from_secs(1)).await;
        assert!(
            matches!(closed, Err(ProbeFailure::Refused(_))),
            "{closed:?}"
        );
    }
}
