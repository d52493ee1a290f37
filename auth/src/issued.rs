//! Session tokens a service issues at its handshake (Arrow Flight SQL's
//! Basic-then-Bearer flow), admitted by the token layer after the fact.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many issued tokens are kept before expired ones are swept.
const SWEEP_ABOVE: usize = 1024;

/// The bearer tokens a service answered a successful handshake with, each
/// admitted until it has gone unused for the time to live.
#[derive(Debug)]
pub(crate) struct IssuedTokens {
    /// The handshake's path, such as
    /// `/arrow.flight.protocol.FlightService/Handshake`.
    pub(crate) handshake_path: &'static str,
    ttl: Duration,
    tokens: Mutex<HashMap<String, Instant>>,
}

impl IssuedTokens {
    /// Tokens answered to requests to `handshake_path`, kept for `ttl`
    /// after their last use.
    pub(crate) fn new(handshake_path: &'static str, ttl: Duration) -> Self {
        Self {
            handshake_path,
            ttl,
            tokens: Mutex::default(),
        }
    }

    /// Whether `token` was issued and has not expired; using it keeps it
    /// alive.
    pub(crate) fn admits(&self, token: &str) -> bool {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get_mut(token) {
            Some(last_used) if last_used.elapsed() < self.ttl => {
                *last_used = Instant::now();
                true
            }
            Some(_) => {
                tokens.remove(token);
                false
            }
            None => false,
        }
    }

    /// Records a token the service just issued.
    pub(crate) fn record(&self, token: String) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= SWEEP_ABOVE {
            let ttl = self.ttl;
            tokens.retain(|_, last_used| last_used.elapsed() < ttl);
        }
        tokens.insert(token, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_recorded_tokens_until_they_expire() {
        let issued = IssuedTokens::new("/handshake", Duration::from_millis(50));
        assert!(!issued.admits("session-1"));
        issued.record("session-1".into());
        assert!(issued.admits("session-1"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!issued.admits("session-1"));
    }
}
