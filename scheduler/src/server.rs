//! The scheduler's one port: gRPC for clients and executors (and the Flight
//! proxy when enabled), Ballista's REST API, and the health probes.
//!
//! On a secured cluster the port serves TLS ([`ember_auth::TlsIncoming`])
//! and every route but `/healthz` and `/readyz` requires the cluster's token
//! ([`ember_auth::RequireTokenLayer`]).
//!
//! Ballista's own server serves the same routes, but its REST API returns a
//! job's session settings verbatim from `/api/job/{id}/config`, and those
//! carry the S3 credentials a client set with `SET s3.…` or table
//! `OPTIONS`. Executors need them, so they cannot be dropped from the job;
//! instead this router passes every REST response through
//! [`redact_job_config`], which masks secret values before they leave the
//! process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use ballista_core::extension::BallistaConfigGrpcEndpoint;
use ballista_core::flight_proxy_service::BallistaFlightProxyService;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_scheduler::api::get_routes;
use ballista_scheduler::cluster::JobState;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use ember_auth::{RequireTokenLayer, TlsIncoming};
use ember_flight_sql::{HANDSHAKE_PATH, SESSION_TTL};
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;

use crate::Security;
use crate::long_poll::LongPollScheduler;
use crate::plan_depth::PlanDepthGuard;
use crate::stale_outputs::StaleOutputGuard;

/// The scheduler as Ballista builds it with Ember's codecs.
pub(crate) type EmberSchedulerServer = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// What a redacted setting's value is replaced with.
pub(crate) const REDACTED: &str = "****";

/// The largest job configuration the REST API will redact and return.
const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;

/// The routes left open on a cluster with a token: the probes that
/// orchestrators call without credentials. They tell only whether the
/// scheduler runs and has its executors.
pub(crate) const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

/// What the scheduler's routes serve from.
pub(crate) struct SchedulerParts {
    /// Ballista's scheduler.
    pub(crate) scheduler: EmberSchedulerServer,
    /// The job state Ember's own job routes read.
    pub(crate) jobs: Arc<dyn JobState>,
    /// Woken when work is available, for held polls.
    pub(crate) work_available: Arc<tokio::sync::Notify>,
    /// The check that fails jobs whose recovery would count rows twice.
    pub(crate) guard: StaleOutputGuard,
    /// The limit on submitted plans' depth.
    pub(crate) plans: PlanDepthGuard,
    /// Whether Arrow Flight SQL is served (`--flight-sql`).
    pub(crate) flight_sql: bool,
    /// The catalog every session shares.
    pub(crate) catalog: ember_catalog::SharedCatalog,
    /// The WebAssembly libraries declared on the cluster.
    pub(crate) functions: ember_wasm::LibraryCatalog,
    /// The cluster as the web UI sees it.
    pub(crate) view: Arc<crate::ui_view::SchedulerClusterView>,
    /// Finished jobs kept for the web UI.
    pub(crate) history: Option<Arc<ember_ui::JobHistory>>,
}

/// The scheduler's routes: everything (gRPC, REST and health, for its main
/// port), and the health probes alone (for `--health-port`).
pub(crate) struct SchedulerRoutes {
    /// gRPC, REST and health, with the token required of all but health.
    pub(crate) all: Router,
    /// `/healthz` and `/readyz`.
    pub(crate) health: Router,
}

/// Builds the routes that serve gRPC, REST and health on one port,
/// requiring `security`'s token of every route but the probes.
pub(crate) fn router(parts: SchedulerParts, security: &Security) -> SchedulerRoutes {
    let SchedulerParts {
        scheduler,
        jobs,
        work_available,
        guard,
        plans,
        flight_sql,
        catalog,
        functions,
        view,
        history,
    } = parts;
    let config = scheduler.state.config.clone();
    let max_decoding = config.grpc_server_max_decoding_message_size as usize;
    let max_encoding = config.grpc_server_max_encoding_message_size as usize;

    let mut grpc = RoutesBuilder::default();
    grpc.add_service(
        SchedulerGrpcServer::new(LongPollScheduler::new(
            scheduler.clone(),
            work_available,
            guard,
            plans,
        ))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(max_encoding),
    );
    if flight_sql || config.enable_embedded_flight_proxy {
        // Fetches from executors present the cluster's TLS and token.
        let peer = security.peer.is_secured().then(|| {
            Arc::new(BallistaConfigGrpcEndpoint::new(
                security.peer.endpoint_override(),
            ))
        });
        let proxy =
            BallistaFlightProxyService::new(max_decoding, max_encoding, config.use_tls, peer);
        if flight_sql {
            // Flight SQL and the proxy are one Flight service: the frontend
            // redeems the proxy's tickets too.
            grpc.add_service(ember_flight_sql::flight_sql_service(
                scheduler.clone(),
                jobs.clone(),
                proxy,
                security.server.token.clone(),
                max_decoding,
                max_encoding,
            ));
        } else {
            grpc.add_service(
                FlightServiceServer::new(proxy)
                    .max_decoding_message_size(max_decoding)
                    .max_encoding_message_size(max_encoding),
            );
        }
    }
    let grpc = grpc.routes().into_axum_router();

    crate::cache::install_block_directory(&scheduler);
    let scheduler = Arc::new(scheduler);
    let rest = get_routes(scheduler.clone()).layer(axum::middleware::from_fn(redact_job_config));
    let health = Router::new()
        .route(OPEN_PATHS[0], get(|| async { "ok" }))
        .route(OPEN_PATHS[1], get(readyz))
        .with_state(scheduler.clone());
    let guarded = rest
        .merge(grpc)
        .merge(crate::cache::routes())
        .merge(crate::job_metrics::routes(jobs))
        .merge(crate::metrics::routes(scheduler))
        .merge(crate::catalog_routes::routes(catalog))
        .merge(crate::function_routes::routes(functions))
        .merge(ui_routes(view, history, security));
    let guarded = match &security.server.token {
        Some(token) => {
            let layer = RequireTokenLayer::new(token.clone(), "scheduler", OPEN_PATHS)
                .opening(ember_ui::OPEN_PATHS);
            // Flight SQL clients trade the token for a session token at
            // the handshake, and present that afterwards.
            let layer = if flight_sql {
                layer.admitting_issued_tokens(HANDSHAKE_PATH, SESSION_TTL)
            } else {
                layer
            };
            guarded.layer(layer)
        }
        None => guarded,
    };
    SchedulerRoutes {
        all: guarded.merge(health.clone()),
        health,
    }
}

/// The web UI's page and JSON routes.
fn ui_routes(
    view: Arc<crate::ui_view::SchedulerClusterView>,
    history: Option<Arc<ember_ui::JobHistory>>,
    security: &Security,
) -> Router {
    let mut state = ember_ui::UiState::new(view)
        .with_token(security.server.token.clone(), security.server.tls.is_some());
    if let Some(history) = history {
        state = state.with_history(history);
    }
    ember_ui::routes(state)
}

/// Serves [`router`] on `listener`, with TLS when `security` has it, and
/// the health probes alone in plain HTTP on `health_listener` when given,
/// until serving fails.
pub(crate) async fn serve(
    listener: TcpListener,
    health_listener: Option<TcpListener>,
    parts: SchedulerParts,
    security: Security,
) -> std::io::Result<()> {
    let routes = router(parts, &security);
    let main = serve_main(listener, routes.all, security);
    match health_listener {
        Some(health) => {
            tokio::select! {
                result = main => result,
                result = axum::serve(health, routes.health) => result,
            }
        }
        None => main.await,
    }
}

/// Serves `app` on the scheduler's main port.
async fn serve_main(listener: TcpListener, app: Router, security: Security) -> std::io::Result<()> {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    match security.server.tls.clone() {
        Some(tls) => {
            // The TLS listener sets TCP_NODELAY on what it accepts.
            let listener = TlsIncoming::new(listener, tls, "scheduler")?.tap_io(|_| {});
            axum::serve(listener, app).await
        }
        None => {
            // Small answers go out at once: with Nagle's algorithm on, an
            // answer written after a wait (a held poll, a job status pushed
            // to a client) waited for the peer's delayed acknowledgement,
            // some 40 ms, at every stage of every query.
            let listener = listener.tap_io(|connection| {
                if let Err(error) = connection.set_nodelay(true) {
                    tracing::debug!(%error, "could not set TCP_NODELAY on a scheduler connection");
                }
            });
            axum::serve(listener, app).await
        }
    }
}

/// Ready once the executors the configuration asks for have registered.
async fn readyz(State(scheduler): State<Arc<EmberSchedulerServer>>) -> Response {
    if scheduler.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let required = scheduler.state.config.min_ready_executors;
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: fewer than {required} executors registered\n"),
        )
            .into_response()
    }
}

/// Whether `path` is `/api/job/{id}/config`.
fn is_job_config_path(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(segments.as_slice(), ["api", "job", id, "config"] if !id.is_empty())
}

/// Masks secret values in the settings a job's configuration returns; any
/// other response passes through. A configuration that cannot be read as
/// settings is withheld rather than passed on unredacted.
async fn redact_job_config(request: Request, next: Next) -> Response {
    let is_config = is_job_config_path(request.uri().path());
    let response = next.run(request).await;
    if !is_config || !response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let redacted = match axum::body::to_bytes(body, MAX_CONFIG_BYTES).await {
        Ok(bytes) => redact_settings_json(&bytes),
        Err(e) => Err(e.to_string()),
    };
    match redacted {
        Ok(json) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(json))
        }
        Err(reason) => {
            tracing::warn!(
                reason,
                "withholding a job configuration that could not be redacted"
            );
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Parses a JSON object of settings and masks the values of secret keys;
/// the keys come back sorted.
fn redact_settings_json(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut settings: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    for (key, value) in settings.iter_mut() {
        // An empty value is shown as it is: it tells that nothing was sent.
        let is_empty = value.as_str().is_some_and(str::is_empty) || value.is_null();
        if ember_core::is_secret_setting(key) && !is_empty {
            *value = serde_json::Value::String(REDACTED.to_string());
        }
    }
    serde_json::to_vec(&settings).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_job_config_paths() {
        assert!(is_job_config_path("/api/job/abc123/config"));
        assert!(is_job_config_path("/api/job/abc123/config/"));
        assert!(!is_job_config_path("/api/job/abc123"));
        assert!(!is_job_config_path("/api/job//config"));
        assert!(!is_job_config_path("/api/jobs"));
        assert!(!is_job_config_path("/api/job/abc/stages"));
    }

    #[test]
    fn masks_secret_values_and_keeps_the_rest() {
        let json = br#"{
            "s3.secret_access_key": "top",
            "s3.bucket.data.session_token": "tok",
            "s3.access_key_id": "AKID",
            "s3.session_token": "",
            "datafusion.execution.batch_size": "8192"
        }"#;
        let out: BTreeMap<String, String> =
            serde_json::from_slice(&redact_settings_json(json).unwrap()).unwrap();
        assert_eq!(out["s3.secret_access_key"], REDACTED);
        assert_eq!(out["s3.bucket.data.session_token"], REDACTED);
        assert_eq!(out["s3.access_key_id"], "AKID");
        // Nothing sent: shown as nothing.
        assert_eq!(out["s3.session_token"], "");
        assert_eq!(out["datafusion.execution.batch_size"], "8192");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(redact_settings_json(b"not json").is_err());
    }
}
