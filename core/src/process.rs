//! Process plumbing shared by Ember's binaries: the async runtime and the
//! shutdown signals.

/// Builds the multi-threaded Tokio runtime every Ember binary runs on (one
/// worker per core, 32 MiB stacks for deeply nested plans).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 * 1024 * 1024)
        .build()
}

/// Resolves when the process is asked to stop: SIGTERM or SIGINT (Ctrl-C).
/// Returns the signal's name, for the log line that says why the process
/// stopped.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
