//! The client side: TLS and the token on every channel a process opens.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::EndpointOverrideFn;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::{AUTHORIZATION, AuthError, ClusterToken, USER_AGENT_TOKEN_PREFIX};

/// How long a TLS client waits for a connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Keep-alive settings of rebuilt endpoints, as Ballista's own.
const TCP_KEEPALIVE: Duration = Duration::from_secs(3600);
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(300);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A client's TLS settings: whom it trusts, and what it presents.
#[derive(Clone)]
pub struct ClientTls {
    /// PEM CA certificates servers must chain to; `None`: the system's
    /// trusted roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate and key this client presents (mutual TLS).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name gRPC and Flight servers' certificates are checked against;
    /// `None`: the host connected to.
    pub server_name: Option<String>,
}

/// What a process presents to the servers it connects to: the cluster's
/// token, and TLS. Plain ([`ClientSecurity::default`]) when the cluster is
/// not secured.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    token: Option<ClusterToken>,
    tls: Option<ClientTls>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("token", &self.token)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ClientSecurity {
    /// Presents `token` (when given) and speaks TLS (when given).
    pub fn new(token: Option<ClusterToken>, tls: Option<ClientTls>) -> Self {
        Self { token, tls }
    }

    /// The token presented, if any.
    pub fn token(&self) -> Option<&ClusterToken> {
        self.token.as_ref()
    }

    /// The TLS settings, when TLS is on.
    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// Whether a token or TLS is used.
    pub fn is_secured(&self) -> bool {
        self.token.is_some() || self.tls.is_some()
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// tonic's TLS configuration, when TLS is on.
    fn tonic_tls(&self) -> Option<ClientTlsConfig> {
        let tls = self.tls.as_ref()?;
        let mut config = ClientTlsConfig::new();
        config = match &tls.ca_pem {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &tls.server_name {
            config = config.domain_name(name.clone());
        }
        Some(config)
    }

    /// An endpoint for `authority` (`host:port`), with TLS when it is on:
    /// for channels Ember opens itself, which present the token with
    /// [`ClientSecurity::interceptor`].
    pub fn endpoint(&self, authority: &str) -> Result<Endpoint, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(format!("{}://{authority}", self.scheme()))?;
        match self.tonic_tls() {
            Some(tls) => endpoint.tls_config(tls),
            None => Ok(endpoint),
        }
    }

    /// Dresses an endpoint that Ballista built for one of its own channels
    /// (a client's or executor's scheduler connection, a shuffle or result
    /// fetch from an executor, the scheduler's Flight proxy): with TLS on,
    /// an `http://` endpoint is rebuilt as `https://` with the cluster's
    /// trust roots; with a token, the token rides in the user agent
    /// (`ember-token/…`), the only part of those requests the endpoint
    /// decides. Servers accept it there as they accept `authorization`.
    pub fn configure_ballista_endpoint(
        &self,
        endpoint: Endpoint,
    ) -> Result<Endpoint, tonic::transport::Error> {
        let mut endpoint = endpoint;
        if let Some(tls) = self.tonic_tls() {
            let uri = endpoint.uri().clone();
            if uri.scheme_str() != Some("https") {
                let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
                endpoint = Endpoint::from_shared(format!("https://{authority}"))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .tcp_keepalive(Some(TCP_KEEPALIVE))
                    .http2_keep_alive_interval(HTTP2_KEEPALIVE_INTERVAL)
                    .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT)
                    .keep_alive_while_idle(true);
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        if let Some(token) = &self.token {
            endpoint =
                endpoint.user_agent(format!("{USER_AGENT_TOKEN_PREFIX}{}", token.secret()))?;
        }
        Ok(endpoint)
    }

    /// [`ClientSecurity::configure_ballista_endpoint`] as the hook Ballista
    /// takes (`override_create_grpc_client_endpoint` on the scheduler and
    /// executors, `with_ballista_override_create_grpc_client_endpoint` on a
    /// client session).
    pub fn endpoint_override(&self) -> EndpointOverrideFn {
        let security = self.clone();
        Arc::new(move |endpoint| {
            security
                .configure_ballista_endpoint(endpoint)
                .map_err(|e| Box::new(e) as Box<dyn StdError + Send + Sync>)
        })
    }

    /// The gRPC metadata Ballista's client adds to its scheduler requests
    /// (`with_ballista_grpc_metadata`): the token as `authorization`.
    pub fn grpc_metadata(&self) -> HashMap<String, String> {
        self.token
            .iter()
            .map(|token| {
                (
                    AUTHORIZATION.to_string(),
                    format!("Bearer {}", token.secret()),
                )
            })
            .collect()
    }

    /// Says in words why a connection of this client failed when the cause
    /// is TLS or the token ([`describe_connection_error`]); a TLS
    /// connection closed at once without a word is, in practice, a server
    /// that requires a client certificate this client did not present.
    pub fn describe_failure(&self, error: &(dyn StdError + 'static)) -> Option<String> {
        if let Some(tls) = &self.tls
            && !has_rustls_error(error)
            && chain_mentions(error, CLOSED_AT_ONCE)
        {
            return Some(match tls.identity {
                None => "the server closed the TLS connection at once (if it requires a client \
                         certificate, give --tls-cert and --tls-key)"
                    .into(),
                Some(_) => REFUSED_CERTIFICATE.into(),
            });
        }
        describe_connection_error(error)
    }

    /// An interceptor that adds the token to every request of a tonic
    /// client Ember builds itself.
    pub fn interceptor(&self) -> BearerInterceptor {
        let header = self.token.as_ref().and_then(|token| {
            let mut value: AsciiMetadataValue =
                MetadataValue::try_from(format!("Bearer {}", token.secret())).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        BearerInterceptor { header }
    }

    /// An HTTP client for a scheduler's REST API: TLS with the cluster's
    /// trust roots, and the token in `authorization` on every request.
    pub fn http_client(&self) -> Result<reqwest::Client, AuthError> {
        let mut builder = reqwest::Client::builder();
        if let Some(tls) = &self.tls {
            crate::install_crypto_provider();
            builder = builder.use_rustls_tls();
            if let Some(pem) = &tls.ca_pem {
                builder = builder.tls_built_in_root_certs(false);
                for certificate in reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| AuthError::Tls(format!("the CA certificate: {e}")))?
                {
                    builder = builder.add_root_certificate(certificate);
                }
            }
            if let Some((cert, key)) = &tls.identity {
                let identity = reqwest::Identity::from_pem(&[cert.as_slice(), key].concat())
                    .map_err(|e| AuthError::Tls(format!("the client certificate: {e}")))?;
                builder = builder.identity(identity);
            }
        }
        if let Some(token) = &self.token {
            let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.secret()))
                .map_err(|_| AuthError::Tls("the token cannot be sent in a header".into()))?;
            value.set_sensitive(true);
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        builder
            .build()
            .map_err(|e| AuthError::Tls(format!("cannot build an HTTP client: {e}")))
    }
}

/// Adds `authorization: Bearer <token>` to every request (nothing without a
/// token).
#[derive(Clone, Default)]
pub struct BearerInterceptor {
    header: Option<AsciiMetadataValue>,
}

impl std::fmt::Debug for BearerInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerInterceptor")
            .field("token", &self.header.as_ref().map(|_| "****"))
            .finish()
    }
}

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert(AUTHORIZATION, header.clone());
        }
        Ok(request)
    }
}

/// How the errors of a connection closed under a client read (hyper, h2,
/// the I/O layer): after a TLS 1.3 handshake, a server that refuses the
/// client's certificate closes the connection, and the client may see only
/// that (hyper's client pool says "connection was not ready" when the
/// connection closes before its first request could be sent).
const CLOSED_AT_ONCE: &[&str] = &[
    "connection closed",
    "connection was not ready",
    "channel closed",
    "connection reset",
    "broken pipe",
    "unexpected end of file",
];

/// What a client is told when the server refuses its certificate (or its
/// lack of one).
const REFUSED_CERTIFICATE: &str = "the server refused this client's certificate (it requires one \
                                   signed by the cluster's CA: give --tls-cert and --tls-key)";

/// The TLS alerts of a server that refuses a client's certificate, as
/// rustls names them.
const REFUSED_CERTIFICATE_ALERTS: &[&str] = &[
    "CertificateRequired",
    "BadCertificate",
    "UnknownCA",
    "CertificateUnknown",
    "CertificateExpired",
];

/// Says in words why a connection failed when the cause is TLS or the
/// token: an untrusted, expired or misnamed certificate, a server that does
/// not speak TLS, a refused client certificate, a refused token. `None` for
/// other failures (a refused connection, a timeout), which callers describe
/// themselves.
pub fn describe_connection_error(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    let mut closed_early = false;
    while let Some(e) = current {
        if let Some(tls) = rustls_error(e) {
            return Some(describe_tls(tls));
        }
        if let Some(status) = e.downcast_ref::<tonic::Status>()
            && status.code() == tonic::Code::Unauthenticated
        {
            return Some(format!("refused: {}", status.message()));
        }
        let text = e.to_string();
        // HTTP/2 keeps only the words of an I/O error that arrives after the
        // handshake, such as the alert of a server refusing the client's
        // certificate (TLS 1.3 checks it after the client's first request).
        if REFUSED_CERTIFICATE_ALERTS
            .iter()
            .any(|alert| text.contains(&format!("received fatal alert: {alert}")))
        {
            return Some(REFUSED_CERTIFICATE.to_string());
        }
        if text.contains("connection closed before message completed")
            || text.contains("connection reset")
            || text.contains("unexpected end of file")
            || text.contains("frame with invalid size")
            || text.contains("broken pipe")
            // A plain HTTP client reading a TLS alert as its answer.
            || text.contains("invalid HTTP version parsed")
        {
            closed_early = true;
        }
        current = e.source();
    }
    closed_early.then(|| {
        "the server answered in TLS or closed the connection at once (if it serves TLS, \
         connect with https:// or --tls-ca)"
            .to_string()
    })
}

/// Whether a rustls error is anywhere in `error`'s chain.
fn has_rustls_error(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if rustls_error(e).is_some() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Whether any error of `error`'s chain says one of `words`.
fn chain_mentions(error: &(dyn StdError + 'static), words: &[&str]) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if words.iter().any(|word| text.contains(word)) {
            return true;
        }
        current = e.source();
    }
    false
}

/// The rustls error `e` is or wraps (tokio-rustls puts it in an I/O error,
/// whose `source` skips it).
fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = e;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // I/O errors may nest (hyper wraps tokio-rustls's).
        current = current.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// A client's view of a failed TLS handshake.
fn describe_tls(error: &rustls::Error) -> String {
    use rustls::{AlertDescription, CertificateError, Error, InvalidMessage};
    match error {
        Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => {
                "the server's certificate is not signed by a trusted CA (give the \
                 cluster's CA with --tls-ca)"
                    .into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the server's certificate does not name the host connected to".into()
            }
            other => format!("the server's certificate was refused: {other:?}"),
        },
        Error::InvalidMessage(InvalidMessage::InvalidContentType)
        | Error::InvalidMessage(InvalidMessage::MessageTooLarge)
        | Error::InvalidMessage(InvalidMessage::InvalidEmptyPayload) => {
            "the server does not speak TLS (connect without https:// and --tls-ca, or check \
             the port)"
                .into()
        }
        Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired,
        ) => REFUSED_CERTIFICATE.into(),
        other => format!("TLS failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn token() -> ClusterToken {
        ClusterToken::parse("0123456789abcdef-token", "test").unwrap()
    }

    #[test]
    fn the_interceptor_adds_the_bearer_token() {
        let security = ClientSecurity::new(Some(token()), None);
        let request = security
            .interceptor()
            .call(tonic::Request::new(()))
            .unwrap();
        assert_eq!(
            request.metadata().get(AUTHORIZATION).unwrap(),
            "Bearer 0123456789abcdef-token"
        );
        let plain = ClientSecurity::default()
            .interceptor()
            .call(tonic::Request::new(()))
            .unwrap();
        assert!(plain.metadata().get(AUTHORIZATION).is_none());
    }

    #[test]
    fn tls_rebuilds_ballista_endpoints_as_https() {
        crate::install_crypto_provider();
        let tls = ClientTls {
            ca_pem: Some(
                crate::CertificateAuthority::generate("ca")
                    .unwrap()
                    .certificate_pem()
                    .into_bytes(),
            ),
            identity: None,
            server_name: None,
        };
        let security = ClientSecurity::new(Some(token()), Some(tls));
        let endpoint = Endpoint::from_static("http://executor-1:50051");
        let dressed = security.configure_ballista_endpoint(endpoint).unwrap();
        assert_eq!(dressed.uri().to_string(), "https://executor-1:50051/");
        assert_eq!(security.scheme(), "https");
        assert_eq!(
            security.grpc_metadata()[AUTHORIZATION],
            "Bearer 0123456789abcdef-token"
        );
    }

    #[test]
    fn plain_security_leaves_endpoints_alone() {
        let endpoint = Endpoint::from_static("http://executor-1:50051");
        let dressed = ClientSecurity::default()
            .configure_ballista_endpoint(endpoint)
            .unwrap();
        assert_eq!(dressed.uri().to_string(), "http://executor-1:50051/");
        assert!(ClientSecurity::default().grpc_metadata().is_empty());
    }

    #[test]
    fn tls_errors_read_as_sentences() {
        let untrusted = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(
            describe_connection_error(&untrusted)
                .unwrap()
                .starts_with("the server's certificate is not signed by a trusted CA")
        );
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(
            describe_connection_error(&plain)
                .unwrap()
                .starts_with("the server does not speak TLS")
        );
        let nested = std::io::Error::other(untrusted);
        assert!(describe_connection_error(&nested).is_some());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(describe_connection_error(&refused), None);
    }
}
