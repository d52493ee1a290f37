//! Errors in the security settings.

use std::path::PathBuf;

/// A token or TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token file could not be read.
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// A token was found but is not usable.
    #[error("the token in {origin} is unusable: {reason}")]
    InvalidToken {
        /// Where the token came from (a file, or `EMBER_TOKEN`).
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token was given twice.
    #[error("both --token-file and EMBER_TOKEN are set; give the token one way")]
    TokenGivenTwice,
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot read the {what} from {path}: {reason}")]
    Pem {
        /// What the file should hold (certificate, private key, CA).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
    /// The TLS flags do not fit together, or rustls refused them.
    #[error("TLS: {0}")]
    Tls(String),
    /// A certificate could not be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A generated file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why writing failed.
        source: std::io::Error,
    },
}
