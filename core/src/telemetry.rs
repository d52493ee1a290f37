//! Logging set-up shared by Ember's binaries.

use tracing_subscriber::EnvFilter;

/// Log targets whose trace level prints session settings, key and value.
const SETTINGS_LOGGING_TARGETS: &[&str] = &[
    "ballista_core::extension",
    "ballista_core::object_store",
    "ballista_scheduler::scheduler_server::grpc",
];

/// Installs a `tracing` subscriber writing to standard error.
///
/// `RUST_LOG` wins over `default_filter` when it is set. Calling it twice is
/// harmless (the second call does nothing).
///
/// Whatever the filter, the libraries' trace logs that print session
/// settings are capped at `debug`: settings may hold S3 credentials.
pub fn init_tracing(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let filter = SETTINGS_LOGGING_TARGETS
        .iter()
        .filter_map(|target| format!("{target}=debug").parse().ok())
        .fold(filter, |filter, directive| filter.add_directive(directive));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}
