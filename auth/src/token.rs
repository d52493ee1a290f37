//! The cluster's shared secret.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AuthError;

/// Fewest characters a token may have.
const MIN_TOKEN_CHARS: usize = 16;
/// Most characters a token may have (it travels in a header).
const MAX_TOKEN_CHARS: usize = 4096;

/// A cluster's token: every request to a secured cluster carries it, and
/// every server compares what it is given with it.
///
/// Its `Debug` form hides the value and it has no `Display`, so it cannot
/// end up in a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterToken {
    value: String,
}

impl ClusterToken {
    /// The environment variable a token may be given in.
    pub const ENV: &'static str = "EMBER_TOKEN";

    /// A fresh random token (256 random bits, as 64 hexadecimal digits).
    pub fn generate() -> Self {
        let value = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self { value }
    }

    /// Checks `text` as a token: surrounding white space is dropped; what
    /// remains must be 16 to 4096 printable ASCII characters without spaces
    /// (it travels in HTTP headers). `origin` names where it came from, for
    /// the error.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthError> {
        let value = text.trim();
        let invalid = |reason| AuthError::InvalidToken {
            origin: origin.to_string(),
            reason,
        };
        if value.is_empty() {
            return Err(invalid("it is empty"));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "it must be printable ASCII without spaces (it travels in HTTP headers)",
            ));
        }
        if value.len() < MIN_TOKEN_CHARS {
            return Err(invalid("it is shorter than 16 characters"));
        }
        if value.len() > MAX_TOKEN_CHARS {
            return Err(invalid("it is longer than 4096 characters"));
        }
        Ok(Self {
            value: value.to_string(),
        })
    }

    /// Reads a token from the file at `path` (see [`ClusterToken::parse`]).
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::TokenFile {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Whether `presented` is this token. The comparison takes the same
    /// time whatever the two have in common, so timing tells an attacker
    /// nothing about the token.
    pub fn matches(&self, presented: &str) -> bool {
        let expected = Sha256::digest(self.value.as_bytes());
        let given = Sha256::digest(presented.as_bytes());
        expected.ct_eq(&given).into()
    }

    /// The secret itself, to put on the wire or in a file; never log it.
    pub fn secret(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterToken(****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_long_distinct_and_valid() {
        let a = ClusterToken::generate();
        let b = ClusterToken::generate();
        assert_eq!(a.secret().len(), 64);
        assert_ne!(a, b);
        assert_eq!(ClusterToken::parse(a.secret(), "test").unwrap(), a);
    }

    #[test]
    fn matches_only_the_same_token() {
        let token = ClusterToken::parse("  s3cret-token-0123456789\n", "test").unwrap();
        assert!(token.matches("s3cret-token-0123456789"));
        assert!(!token.matches("s3cret-token-012345678"));
        assert!(!token.matches(""));
    }

    #[test]
    fn unusable_tokens_say_why_and_where_from() {
        let err = |text: &str| {
            ClusterToken::parse(text, "/etc/ember/token")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(" \n"),
            "the token in /etc/ember/token is unusable: it is empty"
        );
        assert!(err("short").ends_with("it is shorter than 16 characters"));
        assert!(err("has a space in the middle").contains("printable ASCII"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let token = ClusterToken::parse("visible-if-leaked-123", "test").unwrap();
        assert_eq!(format!("{token:?}"), "ClusterToken(****)");
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let err = ClusterToken::from_file(Path::new("/nonexistent/token"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read the token file /nonexistent/token: "),
            "{err}"
        );
    }
}
