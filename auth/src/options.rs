//! The security flags, declared once for every Ember process, and what they
//! resolve to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::client::{ClientSecurity, ClientTls};
use crate::{AuthError, ClusterToken};

/// Token and TLS settings of a scheduler, an executor or a client. Every
/// flag has an environment variable; the token itself is read from a file
/// or from `EMBER_TOKEN`, never from the command line, where `ps` would
/// show it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityOptions {
    /// File holding the cluster's token: servers refuse requests without
    /// it, clients present it. The token may instead be given in the
    /// EMBER_TOKEN environment variable.
    #[arg(long, env = "EMBER_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain this process presents: a scheduler or executor
    /// serves TLS with it (with --tls-key); a client presents it for mutual
    /// TLS.
    #[arg(long, env = "EMBER_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "EMBER_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that peers' certificates must chain to (default:
    /// the system's trusted roots). Given to a client, it turns TLS on.
    #[arg(long, env = "EMBER_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// Servers only: require every client to present a certificate signed by
    /// --tls-ca (mutual TLS).
    #[arg(long, env = "EMBER_TLS_CLIENT_AUTH")]
    pub tls_client_auth: bool,
    /// Check the certificates of the scheduler's and executors' gRPC and
    /// Flight ports against this name instead of the host connected to, so
    /// that one certificate serves executors whose host names are not known
    /// in advance (containers, pods). The REST API is still checked against
    /// the scheduler's host name.
    #[arg(long, env = "EMBER_TLS_SERVER_NAME", value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

/// What a server (scheduler or executor) requires of its peers.
#[derive(Clone, Default)]
pub struct ServerSecurity {
    /// The token every request must carry, when the cluster has one.
    pub token: Option<ClusterToken>,
    /// The TLS configuration of every port, when TLS is on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for ServerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSecurity")
            .field("token", &self.token)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ServerSecurity {
    /// Whether anything is checked (a token or TLS).
    pub fn is_secured(&self) -> bool {
        self.token.is_some() || self.tls.is_some()
    }
}

impl SecurityOptions {
    /// The settings the environment gives (`EMBER_TOKEN_FILE`,
    /// `EMBER_TLS_CA`, ...), as a Rust job that takes no flags sees them.
    pub fn from_env() -> Result<Self, AuthError> {
        /// The flags alone, parsed from an empty command line: clap reads
        /// each from its environment variable.
        #[derive(clap::Parser)]
        struct FromEnvironment {
            #[command(flatten)]
            options: SecurityOptions,
        }
        <FromEnvironment as clap::Parser>::try_parse_from(["ember"])
            .map(|parsed| parsed.options)
            .map_err(|e| AuthError::Tls(e.to_string().trim().to_string()))
    }

    /// The token, from `--token-file` or `EMBER_TOKEN` (not both).
    pub fn token(&self) -> Result<Option<ClusterToken>, AuthError> {
        let from_env = std::env::var(ClusterToken::ENV)
            .ok()
            .filter(|value| !value.is_empty());
        match (&self.token_file, from_env) {
            (Some(_), Some(_)) => Err(AuthError::TokenGivenTwice),
            (Some(path), None) => ClusterToken::from_file(path).map(Some),
            (None, Some(value)) => ClusterToken::parse(&value, ClusterToken::ENV).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// What a scheduler or executor requires of its peers: TLS when
    /// `--tls-cert` and `--tls-key` are given, client certificates too with
    /// `--tls-client-auth`.
    pub fn server(&self) -> Result<ServerSecurity, AuthError> {
        let token = self.token()?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (None, None) => {
                if self.tls_client_auth {
                    return Err(AuthError::Tls(
                        "--tls-client-auth needs --tls-cert and --tls-key".into(),
                    ));
                }
                None
            }
            (Some(cert), Some(key)) => Some(Arc::new(self.rustls_server(cert, key)?)),
            (Some(_), None) => return Err(AuthError::Tls("--tls-cert needs --tls-key".into())),
            (None, Some(_)) => return Err(AuthError::Tls("--tls-key needs --tls-cert".into())),
        };
        Ok(ServerSecurity { token, tls })
    }

    /// How a scheduler or executor reaches its peers: the cluster's token,
    /// and TLS exactly when it serves TLS itself (a cluster is secured as a
    /// whole), presenting its own certificate for mutual TLS.
    pub fn peer_client(&self, server: &ServerSecurity) -> Result<ClientSecurity, AuthError> {
        let tls = match server.tls {
            Some(_) => Some(self.client_tls()?),
            None => None,
        };
        Ok(ClientSecurity::new(server.token.clone(), tls))
    }

    /// How a client reaches a cluster: TLS when `tls_requested` (an
    /// `https://` address) or when any TLS file is given.
    pub fn client(&self, tls_requested: bool) -> Result<ClientSecurity, AuthError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(AuthError::Tls(
                "--tls-cert and --tls-key go together".into(),
            ));
        }
        let wants_tls = tls_requested || self.tls_ca.is_some() || self.tls_cert.is_some();
        let tls = if wants_tls {
            Some(self.client_tls()?)
        } else {
            None
        };
        Ok(ClientSecurity::new(self.token()?, tls))
    }

    fn client_tls(&self) -> Result<ClientTls, AuthError> {
        let ca_pem = match &self.tls_ca {
            Some(path) => {
                let pem = read_pem(path, "CA certificate")?;
                certificates(&pem, path, "CA certificate")?;
                Some(pem)
            }
            None => None,
        };
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let cert_pem = read_pem(cert, "certificate")?;
                let key_pem = read_pem(key, "private key")?;
                certificates(&cert_pem, cert, "certificate")?;
                private_key(&key_pem, key)?;
                Some((cert_pem, key_pem))
            }
            _ => None,
        };
        Ok(ClientTls {
            ca_pem,
            identity,
            server_name: self.tls_server_name.clone(),
        })
    }

    fn rustls_server(&self, cert: &Path, key: &Path) -> Result<rustls::ServerConfig, AuthError> {
        crate::install_crypto_provider();
        let chain = certificates(&read_pem(cert, "certificate")?, cert, "certificate")?;
        let key_der = private_key(&read_pem(key, "private key")?, key)?;
        let builder = rustls::ServerConfig::builder();
        let builder = if self.tls_client_auth {
            let ca = self.tls_ca.as_ref().ok_or_else(|| {
                AuthError::Tls("--tls-client-auth needs --tls-ca, the clients' CA".into())
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates(&read_pem(ca, "CA certificate")?, ca, "CA certificate")?
            {
                roots.add(certificate).map_err(|e| AuthError::Pem {
                    what: "CA certificate",
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| AuthError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(chain, key_der).map_err(|e| {
            AuthError::Tls(format!("{} and {}: {e}", cert.display(), key.display()))
        })?;
        // gRPC needs HTTP/2; the REST API also answers HTTP/1.1.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The bytes of a PEM file.
fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|e| AuthError::Pem {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The certificates in `pem`; at least one.
fn certificates(
    pem: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, AuthError> {
    let error = |reason: String| AuthError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if chain.is_empty() {
        return Err(error("no PEM certificate in it".into()));
    }
    Ok(chain)
}

/// The private key in `pem`.
fn private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, AuthError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| AuthError::Pem {
        what: "private key",
        path: path.to_path_buf(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no PEM private key in it".into(),
            other => other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertificateAuthority;

    fn files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca = CertificateAuthority::generate("test CA").unwrap();
        let issued = ca.issue(&["localhost".into()]).unwrap();
        let paths = (
            dir.join("ca.pem"),
            dir.join("cert.pem"),
            dir.join("key.pem"),
        );
        std::fs::write(&paths.0, ca.certificate_pem()).unwrap();
        std::fs::write(&paths.1, &issued.certificate_pem).unwrap();
        std::fs::write(&paths.2, &issued.private_key_pem).unwrap();
        paths
    }

    #[test]
    fn plain_options_secure_nothing() {
        let server = SecurityOptions::default().server().unwrap();
        assert!(!server.is_secured());
    }

    #[test]
    fn cert_and_key_turn_tls_on_with_h2() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = files(dir.path());
        let options = SecurityOptions {
            tls_cert: Some(cert),
            tls_key: Some(key),
            tls_ca: Some(ca),
            tls_client_auth: true,
            ..Default::default()
        };
        let server = options.server().unwrap();
        let tls = server.tls.as_ref().expect("TLS on");
        assert_eq!(tls.alpn_protocols[0], b"h2");
        assert!(options.peer_client(&server).unwrap().tls().is_some());
    }

    #[test]
    fn half_given_tls_flags_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, key) = files(dir.path());
        let only_cert = SecurityOptions {
            tls_cert: Some(cert),
            ..Default::default()
        };
        assert_eq!(
            only_cert.server().unwrap_err().to_string(),
            "TLS: --tls-cert needs --tls-key"
        );
        let client_auth_without_ca = SecurityOptions {
            tls_cert: only_cert.tls_cert.clone(),
            tls_key: Some(key),
            tls_client_auth: true,
            ..Default::default()
        };
        assert!(
            client_auth_without_ca
                .server()
                .unwrap_err()
                .to_string()
                .contains("--tls-client-auth needs --tls-ca")
        );
    }

    #[test]
    fn a_file_without_a_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, key) = files(dir.path());
        let options = SecurityOptions {
            // The key where the certificate belongs.
            tls_cert: Some(key.clone()),
            tls_key: Some(cert),
            ..Default::default()
        };
        let err = options.server().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot read the certificate from {}",
                key.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn a_ca_file_turns_client_tls_on() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _, _) = files(dir.path());
        let options = SecurityOptions {
            tls_ca: Some(ca),
            ..Default::default()
        };
        assert!(options.client(false).unwrap().tls().is_some());
        assert!(
            SecurityOptions::default()
                .client(true)
                .unwrap()
                .tls()
                .is_some()
        );
        assert!(
            SecurityOptions::default()
                .client(false)
                .unwrap()
                .tls()
                .is_none()
        );
    }
}
