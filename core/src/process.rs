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

/// Runs a binary's async `main` on [`runtime`] and turns its outcome into an
/// exit code: success, or failure after printing `{error_prefix}{error}` as
/// one line on standard error.
pub fn block_on_main<E: std::fmt::Display>(
    error_prefix: &str,
    main: impl std::future::Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    let outcome = match runtime() {
        Ok(runtime) => runtime.block_on(main).map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot start the async runtime: {e}")),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!(
                "{error_prefix}{}",
                message.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves when the process is asked to stop: SIGTERM or SIGINT (Ctrl-C).
/// Returns the signal's name, for the log line that says why the process
/// stopped.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a caller that announces it is ready (a "listening" line, a
/// "Press Ctrl-C" prompt) after calling it cannot be killed by a signal
/// that arrives before its first poll. Call it once and keep the future;
/// must be called inside a Tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = &'static str> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = interrupt.recv() => "SIGINT",
                },
                (Ok(mut term), Err(_)) => {
                    term.recv().await;
                    "SIGTERM"
                }
                (Err(_), Ok(mut interrupt)) => {
                    interrupt.recv().await;
                    "SIGINT"
                }
                (Err(_), Err(_)) => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
