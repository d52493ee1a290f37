//! The executor's listening ports.
//!
//! Every port is bound while the executor is prepared, before it registers
//! anywhere: a port flag of `0` becomes a port the operating system picked,
//! and a port already in use is a start-up error naming its flag. The Arrow
//! Flight service then serves on the very socket that was bound, so no other
//! process can take its port in between (the other two sockets are handed
//! over to Ballista, which binds them again, just before it starts).

use std::net::TcpListener as StdTcpListener;

use crate::ExecutorError;

/// The ports an executor listens on, with `0`s replaced by the ports picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorPorts {
    /// Arrow Flight.
    pub flight: u16,
    /// Task gRPC.
    pub grpc: u16,
    /// Health probes.
    pub health: u16,
}

/// A bound listening socket for one of the executor's ports.
#[derive(Debug)]
pub(crate) struct ReservedPort {
    port: u16,
    listener: StdTcpListener,
}

impl ReservedPort {
    /// Binds `host:wanted` (`wanted` 0: a port the operating system picks);
    /// `flag` names the option the port came from, for the error.
    pub(crate) fn bind(host: &str, wanted: u16, flag: &'static str) -> Result<Self, ExecutorError> {
        let error = |source| ExecutorError::Listen {
            flag,
            address: format!("{host}:{wanted}"),
            source,
        };
        // `[::]` is how an IPv6 address is written beside a port; the socket
        // API wants it bare.
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let listener = StdTcpListener::bind((bare_host, wanted)).map_err(error)?;
        let port = listener.local_addr().map_err(error)?.port();
        Ok(Self { port, listener })
    }

    /// The port bound.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The listening socket, to serve on.
    pub(crate) fn into_listener(self) -> StdTcpListener {
        self.listener
    }
}

/// The three sockets of an executor, bound together so that their ports
/// differ.
#[derive(Debug)]
pub(crate) struct ReservedPorts {
    pub(crate) flight: ReservedPort,
    pub(crate) grpc: ReservedPort,
    pub(crate) health: ReservedPort,
}

impl ReservedPorts {
    /// Binds the Flight, gRPC and health ports on `host`.
    pub(crate) fn bind(
        host: &str,
        flight: u16,
        grpc: u16,
        health: u16,
    ) -> Result<Self, ExecutorError> {
        Ok(Self {
            flight: ReservedPort::bind(host, flight, "port")?,
            grpc: ReservedPort::bind(host, grpc, "grpc-port")?,
            health: ReservedPort::bind(host, health, "health-port")?,
        })
    }

    /// The port numbers.
    pub(crate) fn ports(&self) -> ExecutorPorts {
        ExecutorPorts {
            flight: self.flight.port(),
            grpc: self.grpc.port(),
            health: self.health.port(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_ports_become_distinct_bound_ports() {
        let reserved = ReservedPorts::bind("127.0.0.1", 0, 0, 0).unwrap();
        let ports = reserved.ports();
        assert_ne!(ports.flight, 0);
        assert_ne!(ports.flight, ports.grpc);
        assert_ne!(ports.grpc, ports.health);
        assert_ne!(ports.flight, ports.health);
        // Held: the same port cannot be bound again while reserved.
        assert!(StdTcpListener::bind(("127.0.0.1", ports.flight)).is_err());
    }

    #[test]
    fn a_port_in_use_names_its_flag_and_address() {
        let taken = StdTcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = ReservedPorts::bind("127.0.0.1", 0, 0, port)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "cannot listen on 127.0.0.1:{port} (--health-port): "
            )),
            "{err}"
        );
    }

    #[test]
    fn bracketed_ipv6_hosts_are_accepted() {
        if StdTcpListener::bind("[::1]:0").is_err() {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        }
        assert!(ReservedPort::bind("[::1]", 0, "port").is_ok());
    }
}
