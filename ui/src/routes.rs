//! The UI's routes: the page and its files, the sign-in that sets the
//! token cookie, and the JSON the page reads.
//!
//! - `GET /` and `GET /ui` redirect to `GET /ui/`, the page;
//! - `GET /ui/app.js`, `GET /ui/style.css`: its script and style sheet;
//! - `POST /ui/login` (form field `token`): checks the cluster's token and
//!   sets the cookie that carries it;
//! - `GET /api/ember/ui/jobs`: live jobs, then the history's;
//! - `GET /api/ember/ui/job/{id}`: a job with its stages, live or from the
//!   history;
//! - `POST /api/ember/ui/job/{id}/cancel` (with the header
//!   `x-requested-by: ember-ui`, which no cross-site form can send);
//! - `GET /api/ember/ui/executors`, `GET /api/ember/ui/storage`.
//!
//! The page, its files and the sign-in are [`OPEN_PATHS`]: they carry no
//! data. Everything else sits behind the cluster's token.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ember_auth::ClusterToken;
use serde::Deserialize;

use crate::view::CancelOutcome;
use crate::{ClusterView, JobHistory, ViewError, assets};

/// The page's path.
pub const PAGE_PATH: &str = "/ui/";

/// The paths served without the token: the page and its files, which hold
/// no data, and the sign-in.
pub const OPEN_PATHS: &[&str] = &[
    "/",
    "/ui",
    "/ui/",
    "/ui/app.js",
    "/ui/style.css",
    "/ui/login",
];

/// The header a cancellation must carry, and its value.
const REQUESTED_BY: (&str, &str) = ("x-requested-by", "ember-ui");

/// The policy the page is served with: its own files only, nothing framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// What the UI's routes answer from.
#[derive(Clone)]
pub struct UiState {
    view: Arc<dyn ClusterView>,
    history: Option<Arc<JobHistory>>,
    token: Option<ClusterToken>,
    secure_cookie: bool,
}

impl UiState {
    /// The UI over `view`, with no history and no token.
    pub fn new(view: Arc<dyn ClusterView>) -> Self {
        Self {
            view,
            history: None,
            token: None,
            secure_cookie: false,
        }
    }

    /// Also shows the finished jobs of `history`.
    pub fn with_history(mut self, history: Arc<JobHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// Signs in with `token` (the cluster's, when it has one); `secure`
    /// (the port speaks TLS) marks the cookie for HTTPS only.
    pub fn with_token(mut self, token: Option<ClusterToken>, secure: bool) -> Self {
        self.token = token;
        self.secure_cookie = secure;
        self
    }
}

/// The UI's routes.
pub fn routes(state: UiState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to(PAGE_PATH) }))
        .route("/ui", get(|| async { Redirect::to(PAGE_PATH) }))
        .route(PAGE_PATH, get(page))
        .route("/ui/app.js", get(script))
        .route("/ui/style.css", get(style))
        .route("/ui/login", post(login))
        .route("/api/ember/ui/jobs", get(jobs))
        .route("/api/ember/ui/job/{id}", get(job))
        .route("/api/ember/ui/job/{id}/cancel", post(cancel))
        .route("/api/ember/ui/executors", get(executors))
        .route("/api/ember/ui/storage", get(storage))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    let mut response = Html(assets::INDEX_HTML).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", assets::APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", assets::STYLE_CSS)
}

/// The sign-in form.
#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<UiState>, Form(form): Form<LoginForm>) -> Response {
    let Some(required) = &state.token else {
        // Nothing to sign in to.
        return StatusCode::NO_CONTENT.into_response();
    };
    let token = form.token.trim();
    if !required.matches(token) {
        tracing::warn!("refused a web UI sign-in: wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            "the token is not this Ember cluster's token\n",
        )
            .into_response();
    }
    let secure = if state.secure_cookie { "; Secure" } else { "" };
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
        ember_auth::TOKEN_COOKIE,
        ember_auth::token_cookie_value(token)
    );
    match HeaderValue::from_str(&cookie) {
        Ok(cookie) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response(),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            "the token cannot be carried in a cookie\n",
        )
            .into_response(),
    }
}

fn view_error(error: ViewError) -> Response {
    tracing::warn!("web UI: {error}");
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response()
}

async fn jobs(State(state): State<UiState>) -> Response {
    let mut jobs = match state.view.jobs().await {
        Ok(jobs) => jobs,
        Err(e) => return view_error(e),
    };
    if let Some(history) = &state.history {
        let live: HashSet<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
        jobs.extend(
            history
                .summaries()
                .into_iter()
                .filter(|job| !live.contains(&job.job_id)),
        );
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.queued_at_ms));
    Json(jobs).into_response()
}

async fn job(State(state): State<UiState>, Path(id): Path<String>) -> Response {
    match state.view.job(&id).await {
        Ok(Some(job)) => Json(job).into_response(),
        Ok(None) => match state.history.as_ref().and_then(|h| h.get(&id)) {
            Some(job) => Json(job).into_response(),
            None => (StatusCode::NOT_FOUND, format!("no job {id}\n")).into_response(),
        },
        Err(e) => view_error(e),
    }
}

async fn cancel(
    State(state): State<UiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (name, value) = REQUESTED_BY;
    if headers.get(name).and_then(|v| v.to_str().ok()) != Some(value) {
        return (
            StatusCode::BAD_REQUEST,
            format!("a cancellation must carry the header {name}: {value}\n"),
        )
            .into_response();
    }
    match state.view.cancel(&id).await {
        Ok(outcome) => {
            let status = match outcome {
                CancelOutcome::Cancelled => StatusCode::ACCEPTED,
                CancelOutcome::AlreadyFinished => StatusCode::CONFLICT,
                CancelOutcome::NotFound => StatusCode::NOT_FOUND,
            };
            if outcome == CancelOutcome::Cancelled {
                tracing::info!(job = %id, "job cancelled from the web UI");
            }
            (status, Json(outcome)).into_response()
        }
        Err(e) => view_error(e),
    }
}

async fn executors(State(state): State<UiState>) -> Response {
    match state.view.executors().await {
        Ok(executors) => Json(executors).into_response(),
        Err(e) => view_error(e),
    }
}

async fn storage(State(state): State<UiState>) -> Response {
    match state.view.storage().await {
        Ok(caches) => Json(caches).into_response(),
        Err(e) => view_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{ExecutorView, JobStatus, JobSummary, JobView};
    use crate::{CacheView, CancelOutcome};
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::Mutex;
    use std::time::Duration;
    use tower::ServiceExt;

    /// A cluster of one running job, which records cancellations.
    #[derive(Default)]
    struct OneJobCluster {
        cancelled: Mutex<Vec<String>>,
    }

    fn summary(job_id: &str, status: JobStatus, queued_at_ms: u64) -> JobSummary {
        JobSummary {
            job_id: job_id.to_string(),
            name: format!("ember-{job_id}"),
            status,
            sql: Some("SELECT 1".to_string()),
            queued_at_ms,
            started_at_ms: None,
            ended_at_ms: None,
            stages_total: 2,
            stages_done: 1,
            output_rows: 0,
            error: None,
            from_history: false,
        }
    }

    #[async_trait::async_trait]
    impl ClusterView for OneJobCluster {
        async fn jobs(&self) -> Result<Vec<JobSummary>, ViewError> {
            Ok(vec![summary("live", JobStatus::Running, 20)])
        }
        async fn job(&self, job_id: &str) -> Result<Option<JobView>, ViewError> {
            Ok((job_id == "live").then(|| JobView {
                summary: summary("live", JobStatus::Running, 20),
                stages: Vec::new(),
            }))
        }
        async fn cancel(&self, job_id: &str) -> Result<CancelOutcome, ViewError> {
            self.cancelled.lock().unwrap().push(job_id.to_string());
            Ok(if job_id == "live" {
                CancelOutcome::Cancelled
            } else {
                CancelOutcome::NotFound
            })
        }
        async fn executors(&self) -> Result<Vec<ExecutorView>, ViewError> {
            Err(ViewError::State("executor state unavailable".to_string()))
        }
        async fn storage(&self) -> Result<Vec<CacheView>, ViewError> {
            Ok(Vec::new())
        }
    }

    async fn send(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn serves_the_page_and_merges_live_jobs_with_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let history = Arc::new(JobHistory::open(dir.path(), Duration::from_secs(60)).unwrap());
        history
            .record(&JobView {
                summary: summary("old", JobStatus::Completed, 10),
                stages: Vec::new(),
            })
            .unwrap();
        // A live job's record is not listed twice.
        history
            .record(&JobView {
                summary: summary("live", JobStatus::Completed, 20),
                stages: Vec::new(),
            })
            .unwrap();
        let app = routes(UiState::new(Arc::new(OneJobCluster::default())).with_history(history));

        let (status, headers, body) = send(&app, get("/")).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/ui/");
        let (status, headers, body_html) = send(&app, get("/ui/")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body_html.contains("/ui/app.js"), "{body_html}");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("default-src 'self'")
        );
        drop(body);

        let (status, _, body) = send(&app, get("/api/ember/ui/jobs")).await;
        assert_eq!(status, StatusCode::OK);
        let jobs: Vec<JobSummary> = serde_json::from_str(&body).unwrap();
        let listed: Vec<_> = jobs
            .iter()
            .map(|j| (j.job_id.as_str(), j.from_history))
            .collect();
        assert_eq!(listed, [("live", false), ("old", true)]);

        let (status, _, body) = send(&app, get("/api/ember/ui/job/old")).await;
        assert_eq!(status, StatusCode::OK);
        let job: JobView = serde_json::from_str(&body).unwrap();
        assert_eq!(job.summary.status, JobStatus::Completed);
        let (status, _, _) = send(&app, get("/api/ember/ui/job/none")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (status, _, body) = send(&app, get("/api/ember/ui/executors")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body.trim(),
            "cannot read the scheduler's state: executor state unavailable"
        );
    }

    #[tokio::test]
    async fn cancelling_needs_the_ui_header() {
        let cluster = Arc::new(OneJobCluster::default());
        let app = routes(UiState::new(cluster.clone()));
        let plain = Request::post("/api/ember/ui/job/live/cancel")
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = send(&app, plain).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(cluster.cancelled.lock().unwrap().is_empty());

        let from_ui = |job: &str| {
            Request::post(format!("/api/ember/ui/job/{job}/cancel"))
                .header("x-requested-by", "ember-ui")
                .body(Body::empty())
                .unwrap()
        };
        let (status, _, body) = send(&app, from_ui("live")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body, "\"cancelled\"");
        let (status, _, _) = send(&app, from_ui("gone")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(*cluster.cancelled.lock().unwrap(), ["live", "gone"]);
    }

    #[tokio::test]
    async fn signing_in_sets_the_token_cookie_only_for_the_right_token() {
        let token = ClusterToken::parse("s3cr3t-token-of-this-cluster", "test").unwrap();
        let app =
            routes(UiState::new(Arc::new(OneJobCluster::default())).with_token(Some(token), true));
        let login = |token: &str| {
            Request::post("/ui/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={token}")))
                .unwrap()
        };
        let (status, headers, _) = send(&app, login("wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.get(header::SET_COOKIE).is_none());
        let (status, headers, _) = send(&app, login("s3cr3t-token-of-this-cluster")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let cookie = headers[header::SET_COOKIE].to_str().unwrap();
        let value = ember_auth::token_cookie_value("s3cr3t-token-of-this-cluster");
        assert_eq!(
            cookie,
            format!("ember_token={value}; Path=/; HttpOnly; SameSite=Strict; Secure")
        );
        assert_eq!(
            ember_auth::token_cookie(cookie).as_deref(),
            Some("s3cr3t-token-of-this-cluster")
        );
    }
}
