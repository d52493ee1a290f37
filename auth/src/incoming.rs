//! TLS connections for Ember's servers: accepted, handshaken off the accept
//! loop, and handed to an axum or tonic server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a peer has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const QUEUE: usize = 64;

/// The TLS connections accepted on a listener. Each handshake runs on its
/// own task, so a slow or silent peer holds up no one; a failed handshake
/// is logged with the peer and, in words, the reason (plain text spoken to
/// a TLS port, an untrusted or missing client certificate).
///
/// Serve it with `axum::serve` (it is an [`axum::serve::Listener`]) or with
/// tonic's `serve_with_incoming` ([`TlsIncoming::into_stream`]).
pub struct TlsIncoming {
    connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl TlsIncoming {
    /// Accepts on `listener` with `config`; `service` names the port in
    /// log lines (such as "scheduler" or "executor Flight").
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        service: &'static str,
    ) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, connections) = mpsc::channel(QUEUE);
        let acceptor = TlsAcceptor::from(config);
        let accept_loop = tokio::spawn(accept_loop(listener, acceptor, sender, service));
        Ok(Self {
            connections,
            local_addr,
            accept_loop,
        })
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> + Send + 'static
    {
        futures::stream::unfold(self, |mut incoming| async move {
            let (stream, _) = incoming.connections.recv().await?;
            Some((Ok(stream), incoming))
        })
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when this is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    service: &'static str,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!(service, %error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        if sender.is_closed() {
            return;
        }
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send((tls, peer)).await;
                }
                // A peer that connects and closes without a word is a port
                // probe (the scheduler's liveness probe, a client's
                // reachability check, a load balancer): not worth a warning.
                Ok(Err(error)) if is_silent_close(&error) => {
                    tracing::debug!(service, %peer, "a peer connected and closed at once");
                }
                Ok(Err(error)) => tracing::warn!(
                    service,
                    %peer,
                    "TLS handshake failed: {}",
                    describe_handshake_failure(&error)
                ),
                Err(_) => tracing::debug!(service, %peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Whether the peer closed the connection before sending anything TLS.
fn is_silent_close(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::UnexpectedEof
        && error
            .get_ref()
            .is_none_or(|inner| inner.downcast_ref::<rustls::Error>().is_none())
}

/// A server's view of a failed TLS handshake.
fn describe_handshake_failure(error: &std::io::Error) -> String {
    use rustls::{AlertDescription, Error, InvalidMessage};
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    else {
        return format!("{error} (the peer closed the connection)");
    };
    match tls {
        Error::InvalidMessage(InvalidMessage::InvalidContentType)
        | Error::InvalidMessage(InvalidMessage::MessageTooLarge) => {
            "the peer spoke plain text (or another protocol) to this TLS port".into()
        }
        Error::NoCertificatesPresented => {
            "the peer presented no client certificate, and this port requires one".into()
        }
        Error::InvalidCertificate(reason) => {
            format!("the peer's client certificate was refused ({reason:?})")
        }
        Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired,
        ) => "the peer does not trust this server's certificate".into(),
        other => other.to_string(),
    }
}
