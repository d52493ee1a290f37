//! Logging set-up shared by Ember's binaries.

use tracing_subscriber::EnvFilter;

/// Installs a `tracing` subscriber writing to standard error.
///
/// `RUST_LOG` wins over `default_filter` when it is set. Calling it twice is
/// harmless (the second call does nothing).
pub fn init_tracing(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}
