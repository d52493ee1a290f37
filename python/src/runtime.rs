//! The Tokio runtime the binding runs Ember's futures on, and the wait
//! that keeps Ctrl-C working while they run.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;

/// How often a wait looks for a pending signal (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// The process's runtime, started on first use.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("ember")
            .build()
            .unwrap_or_else(|e| panic!("cannot start Ember's Tokio runtime: {e}"))
    })
}

/// Runs `future` to its end without holding the GIL, looking for signals
/// every 100 ms. On Ctrl-C (or any signal whose handler raises),
/// `interrupt` is called, again at each look, until `future` ends (an
/// interrupted statement ends soon after, its cluster job cancelled); then
/// the handler's exception is raised.
pub(crate) fn wait<F>(py: Python<'_>, future: F, interrupt: impl Fn()) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let mut future = Box::pin(future);
    let mut raised: Option<PyErr> = None;
    loop {
        let step = py.detach(|| {
            runtime().block_on(async { tokio::time::timeout(SIGNAL_CHECK, &mut future).await })
        });
        match step {
            Ok(output) => {
                return match raised {
                    Some(error) => Err(error),
                    None => Ok(output),
                };
            }
            Err(_elapsed) => {
                if raised.is_none()
                    && let Err(error) = py.check_signals()
                {
                    raised = Some(error);
                }
                if raised.is_some() {
                    interrupt();
                }
            }
        }
    }
}

/// [`wait`] for a statement of `ctx`: Ctrl-C interrupts it
/// (`EmberContext::interrupt`, which also cancels its cluster job).
pub(crate) fn wait_statement<F>(
    py: Python<'_>,
    ctx: &ember::EmberContext,
    future: F,
) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let ctx = ctx.clone();
    wait(py, future, move || ctx.interrupt())
}
