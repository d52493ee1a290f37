//! Logging set-up shared by Ember's binaries, and the text of their
//! Prometheus metrics.

use tracing_subscriber::EnvFilter;

/// Log targets whose trace level prints session settings, key and value.
const SETTINGS_LOGGING_TARGETS: &[&str] = &[
    "ballista_core::extension",
    "ballista_core::object_store",
    "ballista_scheduler::scheduler_server::grpc",
];

/// Log targets whose debug level prints statements' text, and so the
/// secrets of a `SET s3.secret_access_key = '…'`.
const STATEMENT_LOGGING_TARGETS: &[&str] = &["sqlparser"];

/// Installs a `tracing` subscriber writing to standard error.
///
/// `RUST_LOG` wins over `default_filter` when it is set. Calling it twice is
/// harmless (the second call does nothing).
///
/// Whatever the filter, the libraries' trace logs that print session
/// settings are capped at `debug`, and the SQL parser's at `info`: settings
/// and statements may hold S3 credentials.
pub fn init_tracing(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let filter = SETTINGS_LOGGING_TARGETS
        .iter()
        .filter_map(|target| format!("{target}=debug").parse().ok())
        .fold(filter, |filter, directive| filter.add_directive(directive));
    let filter = STATEMENT_LOGGING_TARGETS
        .iter()
        .filter_map(|target| format!("{target}=info").parse().ok())
        .fold(filter, |filter, directive| filter.add_directive(directive));
    // Colours only for a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(ansi)
        .try_init();
}

/// The process's Prometheus metrics (its default registry) in the text
/// exposition format, with that format's content type; the reason when
/// they cannot be encoded.
pub fn prometheus_text() -> std::result::Result<(String, Vec<u8>), String> {
    use prometheus::Encoder as _;
    let encoder = prometheus::TextEncoder::new();
    let mut text = Vec::new();
    encoder
        .encode(&prometheus::gather(), &mut text)
        .map_err(|e| format!("cannot encode the metrics: {e}"))?;
    Ok((encoder.format_type().to_string(), text))
}
