//! The Flight handshake's credentials: the cluster's token as the password
//! of HTTP Basic credentials (any user name), or as a bearer token.
//!
//! A Flight SQL client sends them at the handshake and gets a session token
//! back, as the ADBC driver expects; the scheduler's token layer admits
//! those session tokens afterwards
//! ([`ember_auth::RequireTokenLayer::admitting_issued_tokens`]), as it
//! admits the cluster's token itself on every call.

use async_trait::async_trait;
use ballista_flight_sql::{Authenticator, Identity};
use ember_auth::ClusterToken;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// The path of the Flight handshake, where a Flight SQL client trades its
/// credentials for a session token.
pub const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// How long an unused Flight SQL session token stays valid at the token
/// layer: as long as Ballista's frontend keeps the session.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Accepts a Flight SQL handshake whose credentials carry the cluster's
/// token: HTTP Basic with the token as the password (the user name is
/// only logged), or a bearer token equal to it. Without a cluster token,
/// every handshake is accepted.
#[derive(Debug, Clone)]
pub(crate) struct TokenAuthenticator {
    token: Option<ClusterToken>,
}

impl TokenAuthenticator {
    /// Requires `token` when there is one.
    pub(crate) fn new(token: Option<ClusterToken>) -> Self {
        Self { token }
    }
}

#[async_trait]
impl Authenticator for TokenAuthenticator {
    async fn authenticate(&self, headers: &MetadataMap) -> Result<Identity, Status> {
        let Some(token) = &self.token else {
            return Ok(Identity::anonymous());
        };
        let authorization = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if let Some((user, password)) = ember_auth::basic_credentials(authorization) {
            if token.matches(&password) {
                return Ok(Identity::user(user));
            }
            return Err(Status::unauthenticated(
                "the password is not this Ember cluster's token",
            ));
        }
        match ember_auth::bearer_token(authorization) {
            Some(bearer) if token.matches(bearer) => Ok(Identity::anonymous()),
            _ => Err(Status::unauthenticated(
                "this Ember cluster requires its token as the password (HTTP Basic, any user name)",
            )),
        }
    }

    /// Calls without a session token are served in the frontend's shared
    /// session: the scheduler's token layer has admitted them already
    /// (they carried the cluster's token, which [`crate::EmberFlightSqlService`]
    /// takes off a bearer header), or the cluster has no token.
    fn allows_anonymous(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn headers(authorization: &str) -> MetadataMap {
        let mut headers = MetadataMap::new();
        headers.insert("authorization", authorization.parse().unwrap());
        headers
    }

    fn basic(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[tokio::test]
    async fn the_token_is_the_password_whatever_the_user() {
        let token = ClusterToken::parse("flight-sql-token-0123", "test").unwrap();
        let auth = TokenAuthenticator::new(Some(token));
        let identity = auth
            .authenticate(&headers(&basic("dashboard", "flight-sql-token-0123")))
            .await
            .unwrap();
        assert_eq!(identity, Identity::user("dashboard"));
        let refused = auth
            .authenticate(&headers(&basic("dashboard", "guess")))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(auth.authenticate(&MetadataMap::new()).await.is_err());
        assert!(
            auth.authenticate(&headers("Bearer flight-sql-token-0123"))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn without_a_cluster_token_everyone_is_admitted() {
        let auth = TokenAuthenticator::new(None);
        assert!(auth.allows_anonymous());
        assert!(auth.authenticate(&MetadataMap::new()).await.is_ok());
    }
}
