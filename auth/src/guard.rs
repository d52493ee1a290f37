//! The server side of the token: a tower layer in front of every gRPC,
//! Flight and REST service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, Either, Ready, ready};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use tower::{Layer, Service};

use crate::issued::IssuedTokens;
use crate::{AUTHORIZATION, ClusterToken, USER_AGENT_TOKEN_PREFIX};

/// Refuses every request that does not carry the cluster's token, except
/// to the paths it is told to leave open (health probes).
///
/// A gRPC request is refused with status `Unauthenticated`, any other with
/// HTTP 401; either way one warning names the service, the peer and the
/// path, never what was presented.
#[derive(Clone)]
pub struct RequireTokenLayer {
    /// `None`: every request passes (a cluster without a token).
    token: Option<Arc<ClusterToken>>,
    /// Session tokens a handshake issued, admitted too.
    issued: Option<Arc<IssuedTokens>>,
    service: &'static str,
    open_paths: Vec<&'static str>,
}

impl RequireTokenLayer {
    /// Requires `token` on every request to `service` (a name for the log,
    /// such as "scheduler") except those to `open_paths`.
    pub fn new(
        token: ClusterToken,
        service: &'static str,
        open_paths: &'static [&'static str],
    ) -> Self {
        Self::optional(Some(token), service, open_paths)
    }

    /// Requires `token` when there is one; without, lets every request
    /// through (so that one server type serves secured and plain clusters).
    pub fn optional(
        token: Option<ClusterToken>,
        service: &'static str,
        open_paths: &'static [&'static str],
    ) -> Self {
        Self {
            token: token.map(Arc::new),
            issued: None,
            service,
            open_paths: open_paths.to_vec(),
        }
    }

    /// Also leaves `paths` open (a web UI's page and files, which carry no
    /// data).
    pub fn opening(mut self, paths: &[&'static str]) -> Self {
        self.open_paths.extend_from_slice(paths);
        self
    }

    /// Also admits the bearer tokens that requests to `handshake_path`
    /// (which needed the cluster's token themselves) were answered with in
    /// their `authorization` header, until they go unused for `ttl`: Arrow
    /// Flight SQL clients trade the cluster's token, sent as a Basic
    /// password, for a session token at the Flight handshake.
    pub fn admitting_issued_tokens(mut self, handshake_path: &'static str, ttl: Duration) -> Self {
        self.issued = Some(Arc::new(IssuedTokens::new(handshake_path, ttl)));
        self
    }
}

impl<S> Layer<S> for RequireTokenLayer {
    type Service = RequireToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireToken {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RequireTokenLayer`] wraps around another.
#[derive(Clone)]
pub struct RequireToken<S> {
    inner: S,
    layer: RequireTokenLayer,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NoToken,
    WrongToken,
}

impl Refusal {
    fn message(self) -> &'static str {
        match self {
            Refusal::NoToken => {
                "this Ember cluster requires a token (--token-file or EMBER_TOKEN), and none was sent"
            }
            Refusal::WrongToken => "the token sent is not this Ember cluster's token",
        }
    }
}

/// The token a request presents: `authorization: Bearer …`, the password
/// of `authorization: Basic …` (any user name), the web UI's cookie
/// ([`crate::TOKEN_COOKIE`]), or the `ember-token/…` word of its user agent.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(token) = crate::bearer_token(value) {
            return Some(token.to_string());
        }
        let (scheme, _) = value.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("basic") {
            // Unreadable credentials count as a wrong token, not as none.
            let password = crate::basic_credentials(value)
                .map(|(_user, password)| password)
                .unwrap_or_default();
            return Some(password);
        }
        return None;
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(crate::token_cookie);
    if cookie.is_some() {
        return cookie;
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())?
        .split_whitespace()
        .find_map(|word| word.strip_prefix(USER_AGENT_TOKEN_PREFIX))
        .map(str::to_string)
}

/// The bearer token in a response's `authorization` header.
fn issued_token<R>(response: &Response<R>) -> Option<String> {
    let value = response.headers().get(AUTHORIZATION)?.to_str().ok()?;
    crate::bearer_token(value).map(str::to_string)
}

/// The peer's address, from whichever server put it in the request.
fn peer<B>(request: &Request<B>) -> String {
    let extensions = request.extensions();
    let address: Option<SocketAddr> = extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
        .or_else(|| {
            extensions
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
        })
        .or_else(|| {
            extensions
                    .get::<tonic::transport::server::TlsConnectInfo<
                        tonic::transport::server::TcpConnectInfo,
                    >>()
                    .and_then(|info| info.get_ref().remote_addr())
        });
    address.map_or_else(|| "an unknown peer".to_string(), |a| a.to_string())
}

fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The answer to a refused request.
fn refusal_response<B: Default>(grpc: bool, refusal: Refusal) -> Response<B> {
    let mut response = Response::new(B::default());
    if !grpc {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    let headers = response.headers_mut();
    if grpc {
        // A trailers-only gRPC answer: status in the headers.
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("16"));
        headers.insert("grpc-message", HeaderValue::from_static(refusal.message()));
    } else {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ember\""),
        );
    }
    response
}

/// What a guarded request's answer is: a refusal, the service's answer, or
/// the service's answer to a handshake, whose issued token is recorded.
type GuardFuture<S, R, E> =
    Either<Ready<Result<Response<R>, E>>, Either<S, BoxFuture<'static, Result<Response<R>, E>>>>;

impl<S, B, R> Service<Request<B>> for RequireToken<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = GuardFuture<S::Future, R, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let Some(required) = &self.layer.token else {
            return Either::Right(Either::Left(self.inner.call(request)));
        };
        if self.layer.open_paths.contains(&path) {
            return Either::Right(Either::Left(self.inner.call(request)));
        }
        let issued = self.layer.issued.as_ref();
        let refusal = match presented_token(request.headers()) {
            Some(token) if required.matches(&token) => {
                return match issued.filter(|issued| issued.handshake_path == path) {
                    Some(issued) => {
                        let issued = Arc::clone(issued);
                        let answer = self.inner.call(request);
                        Either::Right(Either::Right(Box::pin(async move {
                            let response = answer.await?;
                            if let Some(token) = issued_token(&response) {
                                issued.record(token);
                            }
                            Ok(response)
                        })))
                    }
                    None => Either::Right(Either::Left(self.inner.call(request))),
                };
            }
            Some(token) if issued.is_some_and(|issued| issued.admits(&token)) => {
                return Either::Right(Either::Left(self.inner.call(request)));
            }
            Some(_) => Refusal::WrongToken,
            None => Refusal::NoToken,
        };
        tracing::warn!(
            service = self.layer.service,
            peer = %peer(&request),
            path,
            "refused an unauthenticated request: {}",
            match refusal {
                Refusal::NoToken => "no token",
                Refusal::WrongToken => "wrong token",
            }
        );
        Either::Left(ready(Ok(refusal_response(is_grpc(&request), refusal))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::convert::Infallible;
    use tower::ServiceExt;

    const SECRET: &str = "the-cluster-token-0123";

    fn guarded() -> impl Service<Request<String>, Response = Response<String>, Error = Infallible> {
        let token = ClusterToken::parse(SECRET, "test").unwrap();
        RequireTokenLayer::new(token, "test", &["/healthz"]).layer(tower::service_fn(
            |_request: Request<String>| async { Ok::<_, Infallible>(Response::new("ok".into())) },
        ))
    }

    async fn answer(request: Request<String>) -> Response<String> {
        guarded().oneshot(request).await.unwrap()
    }

    fn request(path: &str, headers: &[(&str, &str)]) -> Request<String> {
        let mut builder = Request::builder().uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(String::new()).unwrap()
    }

    #[tokio::test]
    async fn the_right_token_passes_in_either_carrier() {
        let bearer = format!("Bearer {SECRET}");
        let response = answer(request("/api/jobs", &[("authorization", &bearer)])).await;
        assert_eq!(response.body(), "ok");
        let agent = format!("{USER_AGENT_TOKEN_PREFIX}{SECRET} tonic/0.14");
        let response = answer(request("/api/jobs", &[("user-agent", &agent)])).await;
        assert_eq!(response.body(), "ok");
        let cookie = format!(
            "theme=dark; {}={}",
            crate::TOKEN_COOKIE,
            crate::token_cookie_value(SECRET)
        );
        let response = answer(request("/api/jobs", &[("cookie", &cookie)])).await;
        assert_eq!(response.body(), "ok");
        let cookie = format!(
            "{}={}",
            crate::TOKEN_COOKIE,
            crate::token_cookie_value("not-it")
        );
        let response = answer(request("/api/jobs", &[("cookie", &cookie)])).await;
        assert_eq!(response.status(), 401);
    }

    #[tokio::test]
    async fn rest_requests_without_the_token_get_401() {
        let response = answer(request("/api/jobs", &[])).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.body(), "");
        let response = answer(request(
            "/api/jobs",
            &[("authorization", "Bearer not-the-token-at-all")],
        ))
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn grpc_requests_get_unauthenticated() {
        let response = answer(request(
            "/ballista.protobuf.SchedulerGrpc/PollWork",
            &[("content-type", "application/grpc")],
        ))
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16");
        let message = response.headers()["grpc-message"].to_str().unwrap();
        assert!(message.contains("requires a token"), "{message}");
    }

    #[tokio::test]
    async fn a_basic_password_is_a_token_and_a_handshake_issues_session_tokens() {
        let token = ClusterToken::parse(SECRET, "test").unwrap();
        let issuing = RequireTokenLayer::new(token, "test", &[])
            .admitting_issued_tokens("/handshake", Duration::from_secs(60))
            .layer(tower::service_fn(|request: Request<String>| async move {
                let mut response = Response::new("ok".to_string());
                if request.uri().path() == "/handshake" {
                    response
                        .headers_mut()
                        .insert(AUTHORIZATION, HeaderValue::from_static("Bearer session-7"));
                }
                Ok::<_, Infallible>(response)
            }));
        let basic = |user: &str, password: &str| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {encoded}")
        };
        let call = |path: &str, authorization: String| {
            let service = issuing.clone();
            let request = request(path, &[("authorization", &authorization)]);
            async move { service.oneshot(request).await.unwrap() }
        };
        // Not issued yet.
        let refused = call("/query", "Bearer session-7".into()).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let refused = call("/handshake", basic("alice", "not-the-token-at-all")).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let answered = call("/handshake", basic("alice", SECRET)).await;
        assert_eq!(answered.body(), "ok");
        // Issued by the handshake: admitted from now on.
        let admitted = call("/query", "Bearer session-7".into()).await;
        assert_eq!(admitted.body(), "ok");
    }

    #[tokio::test]
    async fn open_paths_need_no_token() {
        let response = answer(request("/healthz", &[])).await;
        assert_eq!(response.body(), "ok");
    }
}
