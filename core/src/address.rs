//! The address of a scheduler, as clients and executors write it.

/// A scheduler's address, `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerAddress {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Schemes of an address that ask for TLS.
const TLS_SCHEMES: &[&str] = &["https://", "grpcs://"];
/// Schemes of an address that say nothing about TLS.
const PLAIN_SCHEMES: &[&str] = &["df://", "http://", "grpc://"];

/// The port a scheduler listens on when none is given.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// Why an address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scheduler address `{0}`: expected host:port (for example localhost:50050)")]
pub struct InvalidAddress(pub String);

impl SchedulerAddress {
    /// Parses `host:port`, `df://host:port`, `http://host:port`,
    /// `https://host:port` or `grpcs://host:port`; a missing port means
    /// [`DEFAULT_SCHEDULER_PORT`]. Whether the scheme asks for TLS is
    /// [`SchedulerAddress::requests_tls`].
    pub fn parse(input: &str) -> Result<Self, InvalidAddress> {
        let invalid = || InvalidAddress(input.to_string());
        let trimmed = input.trim();
        let rest = TLS_SCHEMES
            .iter()
            .chain(PLAIN_SCHEMES)
            .find_map(|scheme| trimmed.strip_prefix(scheme))
            .unwrap_or(trimmed)
            .trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(invalid());
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| invalid())?),
            None => (rest, DEFAULT_SCHEDULER_PORT),
        };
        if host.is_empty() || port == 0 {
            return Err(invalid());
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }

    /// Whether `input` names its scheduler with a TLS scheme (`https://`,
    /// `grpcs://`).
    pub fn requests_tls(input: &str) -> bool {
        let trimmed = input.trim();
        TLS_SCHEMES.iter().any(|scheme| trimmed.starts_with(scheme))
    }

    /// The URL Ballista's client expects (`df://host:port`).
    pub fn ballista_url(&self) -> String {
        format!("df://{}:{}", self.host, self.port)
    }
}

impl std::str::FromStr for SchedulerAddress {
    type Err = InvalidAddress;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl std::fmt::Display for SchedulerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        let a = SchedulerAddress::parse("df://example:7000").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("example", 7000));
        assert_eq!(SchedulerAddress::parse("localhost").unwrap().port, 50050);
        assert_eq!(
            SchedulerAddress::parse("http://10.0.0.1:1/").unwrap().port,
            1
        );
        let tls = "https://scheduler.example:7000";
        assert_eq!(
            SchedulerAddress::parse(tls).unwrap().host,
            "scheduler.example"
        );
        assert!(SchedulerAddress::requests_tls(tls));
        assert!(SchedulerAddress::requests_tls("grpcs://a:1"));
        assert!(!SchedulerAddress::requests_tls("df://a:1"));
        for bad in ["", ":80", "host:port", "host:0", "a/b:1"] {
            assert!(SchedulerAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_names_the_input() {
        assert_eq!(
            SchedulerAddress::parse("nowhere:x")
                .unwrap_err()
                .to_string(),
            "invalid scheduler address `nowhere:x`: expected host:port (for example localhost:50050)"
        );
    }
}
