//! Stage tasks that fail because a peer's connection broke are retried.
//!
//! A task reads its input stages' shuffle partitions from the executors that
//! wrote them. Ballista reports a peer it cannot reach as a fetch failure,
//! which makes the scheduler compute the lost partitions again elsewhere.
//! But when the peer dies after answering the request and before sending the
//! first block of data, the broken connection surfaces as an Arrow IPC error
//! carrying the gRPC status (`h2 protocol error: error reading a body from
//! connection`, `broken pipe`), which the scheduler takes for a bug in the
//! query and fails the whole job for.
//!
//! [`SupervisedStage`](crate::stage::SupervisedStage) reports such an error
//! as an I/O error instead ([`retryable_if_broken_connection`]), which the
//! scheduler retries. The retried task finds the
//! peer gone, gets a fetch failure this time, and the scheduler recomputes
//! what the peer held. An error of the query itself never reads like a broken
//! connection, so it still fails the job on the first try.

use ballista_core::error::BallistaError;
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// What the text of a gRPC status or an I/O error says when the connection
/// to a peer broke, in lower case.
const BROKEN_CONNECTION: [&str; 6] = [
    "h2 protocol error",
    "transport error",
    "broken pipe",
    "connection reset",
    "connection refused",
    "connection closed",
];

/// `error` as an I/O error, which the scheduler retries, when a broken
/// connection to a peer caused it; otherwise `error` itself.
pub fn retryable_if_broken_connection(error: DataFusionError) -> DataFusionError {
    match broken_connection(&error) {
        Some(cause) => DataFusionError::IoError(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            format!("the connection to a peer executor broke: {cause}"),
        )),
        None => error,
    }
}

/// The message of the broken connection that caused `error`, if one did;
/// `None` also when `error` is already a fetch failure, which the scheduler
/// handles itself.
pub fn broken_connection(error: &DataFusionError) -> Option<String> {
    match error {
        DataFusionError::ArrowError(arrow, _) => broken_connection_in_arrow(arrow),
        DataFusionError::IoError(io) => reads_as_broken(&io.to_string()),
        DataFusionError::Shared(inner) => broken_connection(inner),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            broken_connection(inner)
        }
        DataFusionError::Collection(errors) => errors.iter().find_map(broken_connection),
        DataFusionError::External(inner) => broken_connection_in_external(inner.as_ref()),
        _ => None,
    }
}

/// [`broken_connection`] for an error boxed by DataFusion or Arrow.
fn broken_connection_in_external(
    error: &(dyn std::error::Error + Send + Sync + 'static),
) -> Option<String> {
    if let Some(ballista) = error.downcast_ref::<BallistaError>() {
        broken_connection_in_ballista(ballista)
    } else if let Some(arrow) = error.downcast_ref::<ArrowError>() {
        broken_connection_in_arrow(arrow)
    } else if let Some(datafusion) = error.downcast_ref::<DataFusionError>() {
        broken_connection(datafusion)
    } else {
        None
    }
}

fn broken_connection_in_ballista(error: &BallistaError) -> Option<String> {
    match error {
        BallistaError::ArrowError(arrow) => broken_connection_in_arrow(arrow),
        BallistaError::DataFusionError(datafusion) => broken_connection(datafusion),
        BallistaError::GrpcError(status) => reads_as_broken(&status.to_string()),
        BallistaError::IoError(io) => reads_as_broken(&io.to_string()),
        // FetchFailed names the peer, and the scheduler recomputes its
        // partitions without a retry.
        _ => None,
    }
}

fn broken_connection_in_arrow(error: &ArrowError) -> Option<String> {
    match error {
        ArrowError::IpcError(message) => reads_as_broken(message),
        ArrowError::IoError(message, io) => {
            reads_as_broken(message).or_else(|| reads_as_broken(&io.to_string()))
        }
        ArrowError::ExternalError(inner) => broken_connection_in_external(inner.as_ref()),
        _ => None,
    }
}

fn reads_as_broken(message: &str) -> Option<String> {
    let lower = message.to_lowercase();
    BROKEN_CONNECTION
        .iter()
        .any(|words| lower.contains(words))
        .then(|| message.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The error a task of the executor-loss test failed with, as Ballista
    /// built it: the peer died between its answer and the first block.
    fn peer_died_before_its_first_block() -> DataFusionError {
        let status = "code: 'Unknown error', message: \"h2 protocol error: error reading a body \
                      from connection\", source: hyper::Error(Body, Error { kind: Io(Custom { \
                      kind: BrokenPipe, error: \"stream closed because of a broken pipe\" }) })";
        let ballista = BallistaError::ArrowError(Box::new(ArrowError::IpcError(status.into())));
        DataFusionError::Shared(Arc::new(DataFusionError::External(Box::new(ballista))))
    }

    #[test]
    fn a_peer_that_died_mid_transfer_is_a_broken_connection() {
        let cause = broken_connection(&peer_died_before_its_first_block()).unwrap();
        assert!(cause.contains("h2 protocol error"), "{cause}");
        let in_context = DataFusionError::Context(
            "build side".into(),
            Box::new(peer_died_before_its_first_block()),
        );
        assert!(broken_connection(&in_context).is_some());
    }

    #[test]
    fn errors_of_the_query_itself_are_not() {
        let corrupt = DataFusionError::ArrowError(
            Box::new(ArrowError::IpcError(
                "Not expecting a schema when messages are read".into(),
            )),
            None,
        );
        assert_eq!(broken_connection(&corrupt), None);
        assert_eq!(
            broken_connection(&DataFusionError::Execution("divide by zero".into())),
            None
        );
        let fetch_failed = BallistaError::FetchFailed(
            "executor-1".into(),
            1,
            0,
            "h2 protocol error: connection refused".into(),
        );
        assert_eq!(
            broken_connection(&DataFusionError::External(Box::new(fetch_failed))),
            None
        );
    }

    /// Ballista's own classification retries the error this module makes,
    /// and fails the job on the one it replaces.
    #[test]
    fn the_scheduler_retries_what_this_reports() {
        use ballista_core::serde::protobuf::FailedTask;
        let before = FailedTask::from(BallistaError::from(peer_died_before_its_first_block()));
        assert!(!before.retryable, "{}", before.error);
        let after = retryable_if_broken_connection(peer_died_before_its_first_block());
        let after = FailedTask::from(BallistaError::from(after));
        assert!(after.retryable, "{}", after.error);
        assert!(after.error.contains("h2 protocol error"), "{}", after.error);
        let query_error = DataFusionError::Execution("divide by zero".into());
        let kept = retryable_if_broken_connection(query_error);
        assert!(matches!(kept, DataFusionError::Execution(_)), "{kept}");
    }
}
