//! One authenticated request to the scheduler before the executor
//! registers: a wrong token, a TLS mismatch or an untrusted certificate
//! stops the executor at once with the reason, where Ballista's
//! registration would only retry and time out.

use std::time::{Duration, Instant};

use ember_auth::ClientSecurity;

use crate::ExecutorError;

/// A cheap route of the scheduler's REST API that requires the token.
const PROBE_PATH: &str = "/api/version";

/// Asks the scheduler at `host:port` for [`PROBE_PATH`] as `security`
/// dictates, for at most `timeout` while it cannot be reached. Returns at
/// once with [`ExecutorError::Refused`] when the scheduler refuses the
/// token or the TLS handshake fails; returns `Ok` when it answers, and also
/// when it never could be reached (Ballista's registration then reports
/// that in its own words). Does nothing on an unsecured cluster.
pub(crate) async fn check_scheduler(
    security: &ClientSecurity,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), ExecutorError> {
    if !security.is_secured() {
        return Ok(());
    }
    let scheduler = format!("{host}:{port}");
    let client = security.http_client()?;
    let url = format!("{}://{scheduler}{PROBE_PATH}", security.scheme());
    let started = Instant::now();
    loop {
        let refused = |reason: String| ExecutorError::Refused {
            scheduler: scheduler.clone(),
            reason,
        };
        match client
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(response) if response.status() == reqwest::StatusCode::UNAUTHORIZED => {
                return Err(refused(
                    "it requires another token (check --token-file or EMBER_TOKEN)".into(),
                ));
            }
            Ok(_) => return Ok(()),
            Err(error) => {
                if let Some(reason) = security.describe_failure(&error) {
                    return Err(refused(reason));
                }
                if started.elapsed() >= timeout {
                    return Ok(());
                }
                tracing::debug!(%error, "the scheduler is not reachable yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
