//! Process plumbing shared by Ember's binaries: how a process is prepared
//! (thread stacks, memory pages), the async runtime and the shutdown
//! signals.

/// The stack of every thread an Ember process runs queries on: planning and
/// evaluating a deeply nested expression recurse a frame or more per level,
/// and a 1000-level chain (`ember.max_expression_depth`'s default) needs
/// more than the 2 MiB threads get by default.
pub const THREAD_STACK_BYTES: usize = 32 * 1024 * 1024;

/// Gives the threads this process will spawn without naming a stack size
/// [`THREAD_STACK_BYTES`] (unless `RUST_MIN_STACK` is set already): Ballista's
/// executor runs tasks on a runtime of its own, whose threads would
/// otherwise get 2 MiB and overflow on plans the client accepts. Call it
/// first thing in `main`, before any thread starts.
pub fn deepen_thread_stacks() {
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        // SAFETY: called at the start of `main`, while this is the only
        // thread, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("RUST_MIN_STACK", THREAD_STACK_BYTES.to_string()) };
    }
}

/// The environment variable that decides whether an Ember process lets the
/// kernel back its memory with transparent huge pages: `on`, or `off` (the
/// default) for 4 KiB pages. With huge pages the kernel zeroes 2 MiB on the
/// first touch of any byte of a page, each time the allocator reuses memory
/// it gave back; measured on TPC-H at SF 10, embedded, 22 queries took
/// 5.8% less time without them (see
/// [`ember_memory::allocator::disable_transparent_huge_pages`]).
pub const TRANSPARENT_HUGE_PAGES_ENV: &str = "EMBER_TRANSPARENT_HUGE_PAGES";

/// Prepares this process for running queries: deeper thread stacks
/// ([`deepen_thread_stacks`]) and memory paged as
/// [`TRANSPARENT_HUGE_PAGES_ENV`] asks. Call it first thing in `main`,
/// before any thread starts. Where the kernel refuses to turn huge pages
/// off, the process runs with the kernel's own policy.
///
/// # Errors
///
/// One line naming [`TRANSPARENT_HUGE_PAGES_ENV`] where it holds something
/// other than `on` or `off`.
pub fn prepare() -> Result<(), String> {
    deepen_thread_stacks();
    let huge_pages = match std::env::var(TRANSPARENT_HUGE_PAGES_ENV) {
        Err(std::env::VarError::NotPresent) => false,
        Ok(value) => crate::config::parse_flag(&value).ok_or_else(|| {
            format!("{TRANSPARENT_HUGE_PAGES_ENV} must be on or off, not `{value}`")
        })?,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!("{TRANSPARENT_HUGE_PAGES_ENV} must be on or off"));
        }
    };
    if !huge_pages {
        // Only how fast memory is paged in depends on it.
        let _ = ember_memory::allocator::disable_transparent_huge_pages();
    }
    Ok(())
}

/// Builds the multi-threaded Tokio runtime every Ember binary runs on (one
/// worker per core, [`THREAD_STACK_BYTES`] stacks for deeply nested plans).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
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
