//! `ember-auth`: what every Ember process needs to keep a cluster private.
//!
//! A cluster may have a **token** (a shared secret, from a file or the
//! environment) and **TLS** (PEM certificates). This crate owns both sides
//! of them:
//!
//! - servers: [`RequireTokenLayer`] refuses any request that does not carry
//!   the token, with gRPC's `Unauthenticated` or HTTP's 401 and one log line
//!   naming the peer; [`TlsIncoming`] accepts TLS connections for a gRPC or
//!   HTTP server and logs each failed handshake with its reason;
//! - clients: [`ClientSecurity`] configures every outgoing channel (tonic
//!   endpoints, Ballista's session hooks, the REST client) to speak TLS and
//!   present the token;
//! - both: [`SecurityOptions`] declares the flags and environment variables
//!   once, for the scheduler, the executors and the `ember` CLI.
//!
//! It must not know about queries, plans or Ballista's scheduling: it only
//! guards and dresses connections.

mod certs;
mod client;
mod error;
mod guard;
mod incoming;
mod issued;
mod options;
mod token;

pub use certs::{CertificateAuthority, IssuedCertificate};
pub use client::{BearerInterceptor, ClientSecurity, ClientTls, describe_connection_error};
pub use error::AuthError;
pub use guard::{RequireToken, RequireTokenLayer};
pub use incoming::TlsIncoming;
pub use options::{SecurityOptions, ServerSecurity};
pub use token::ClusterToken;

/// The HTTP header (and gRPC metadata key) that carries the token, as
/// `Bearer <token>`.
pub const AUTHORIZATION: &str = "authorization";

/// The prefix of the user-agent word that carries the token on channels
/// whose requests Ember cannot add a header to (Ballista's own Flight and
/// scheduler clients offer only an endpoint hook); see
/// [`ClientSecurity::endpoint_override`].
pub const USER_AGENT_TOKEN_PREFIX: &str = "ember-token/";

/// The cookie that carries the cluster's token from a browser (the web
/// UI's sign-in sets it: `HttpOnly`, `SameSite=Strict`), base64url-encoded
/// since a token may hold characters a cookie cannot.
pub const TOKEN_COOKIE: &str = "ember_token";

/// The [`TOKEN_COOKIE`] value that carries `token`.
pub fn token_cookie_value(token: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
}

/// The token in the [`TOKEN_COOKIE`] among a `cookie` header's pairs; a
/// cookie that does not decode counts as a wrong token (empty).
pub fn token_cookie(cookie_header: &str) -> Option<String> {
    use base64::Engine as _;
    cookie_header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name.trim() == TOKEN_COOKIE).then(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .unwrap_or_default()
        })
    })
}

/// The token of an `authorization` header's bearer credentials
/// (`Bearer <token>`, the scheme in any case); `None` for any other header.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The user name and password of an `authorization` header's HTTP Basic
/// credentials (`Basic base64(user:password)`, with or without padding, as
/// clients differ); `None` for any other header.
pub fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let (scheme, encoded) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let encoded = encoded.trim();
    let decoded = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Installs rustls' ring crypto provider as the process default, once; the
/// TLS code of every library in the process then agrees on it.
pub fn install_crypto_provider() {
    // Fails only when a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

static PEER_SECURITY: std::sync::OnceLock<ClientSecurity> = std::sync::OnceLock::new();

/// Records how this process reaches its peers (a scheduler or executor sets
/// it once at start); channels opened deep inside a task or a background
/// job, such as fetches of cached partitions, use [`peer_security`].
/// Returns `false` when it was set already (the first setting stays).
pub fn set_peer_security(security: ClientSecurity) -> bool {
    PEER_SECURITY.set(security).is_ok()
}

/// How this process reaches its peers: what [`set_peer_security`] recorded,
/// or plain connections when nothing was.
pub fn peer_security() -> ClientSecurity {
    PEER_SECURITY.get().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_in_any_case_and_nothing_else_is() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(" bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
