//! Cached partitions over Arrow Flight: what an executor's Flight service
//! answers besides shuffle data, and the client side of it.
//!
//! - `do_get` with a ticket `ember.cache/<cache id>/<partition>/<partitions>`
//!   streams a held partition.
//! - `do_action` `ember.cache.report` (body: the cache id) answers one
//!   [`CacheReport`] of what the process holds.
//! - `do_action` `ember.cache.drop` (body: the cache id) frees the cache's
//!   partitions and answers how many were freed.

use std::pin::Pin;
use std::time::Duration;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightData, Ticket};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use ember_auth::BearerInterceptor;
use ember_proto::CacheReport;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::store::BlockStore;

/// The prefix of a cached partition's ticket.
const TICKET_PREFIX: &str = "ember.cache/";
/// The action that reports a cache's partitions.
pub const REPORT_ACTION: &str = "ember.cache.report";
/// The action that frees a cache's partitions.
pub const DROP_ACTION: &str = "ember.cache.drop";

/// How long a peer may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest Flight message a cache client accepts.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// A stream of Flight messages, as a Flight service returns it.
pub type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

/// The ticket that asks for a cached partition.
pub fn block_ticket(cache_id: &str, partition: usize, partitions: usize) -> Ticket {
    Ticket::new(format!(
        "{TICKET_PREFIX}{cache_id}/{partition}/{partitions}"
    ))
}

/// Parses a cached partition's ticket; `None` for any other ticket.
fn parse_ticket(ticket: &Ticket) -> Option<(String, usize, usize)> {
    let text = std::str::from_utf8(&ticket.ticket).ok()?;
    let rest = text.strip_prefix(TICKET_PREFIX)?;
    let mut parts = rest.split('/');
    let (id, partition, partitions) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((
        id.to_string(),
        partition.parse().ok()?,
        partitions.parse().ok()?,
    ))
}

/// Answers a `do_get` for a cached partition from `store`; `None` when the
/// ticket is not a cache ticket, so the caller serves it as before.
pub fn serve_block(
    store: &'static BlockStore,
    ticket: &Ticket,
) -> Option<Result<FlightDataStream, Status>> {
    let (cache_id, partition, partitions) = parse_ticket(ticket)?;
    Some(match store.read(&cache_id, partition, partitions) {
        Ok(Some(batches)) => {
            store.note_sent(&cache_id);
            let schema = batches.first().map(|b| b.schema());
            let mut encoder = FlightDataEncoderBuilder::new();
            if let Some(schema) = schema {
                encoder = encoder.with_schema(schema);
            }
            let stream = encoder
                .build(futures::stream::iter(batches.into_iter().map(Ok)))
                .map_err(|e| Status::internal(e.to_string()));
            Ok(Box::pin(stream) as FlightDataStream)
        }
        Ok(None) => Err(Status::not_found(format!(
            "partition {partition} of cache {cache_id} is not held here"
        ))),
        Err(e) => Err(Status::internal(e.to_string())),
    })
}

/// Answers a cache action from `store`; `None` for any other action.
pub fn answer_action(
    store: &'static BlockStore,
    action: &Action,
    endpoint: &str,
) -> Option<Result<arrow_flight::Result, Status>> {
    let cache_id = || {
        std::str::from_utf8(&action.body)
            .map(str::to_string)
            .map_err(|_| Status::invalid_argument("a cache id must be UTF-8"))
    };
    match action.r#type.as_str() {
        REPORT_ACTION => Some(cache_id().map(|id| arrow_flight::Result {
            body: store.report(&id, endpoint).encode_to_vec().into(),
        })),
        DROP_ACTION => Some(cache_id().map(|id| {
            let freed = store.drop_cache(&id);
            tracing::debug!(cache_id = %id, freed, "cache dropped");
            arrow_flight::Result {
                body: freed.to_string().into_bytes().into(),
            }
        })),
        _ => None,
    }
}

fn peer_error(endpoint: &str, what: &str, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::External(format!("cannot {what} at {endpoint}: {e}").into())
}

/// A Flight client of a peer, presenting this process's TLS settings and
/// token ([`ember_auth::peer_security`]).
type PeerFlightClient = FlightServiceClient<InterceptedService<Channel, BearerInterceptor>>;

async fn connect(endpoint: &str) -> Result<PeerFlightClient> {
    let security = ember_auth::peer_security();
    let channel = security
        .endpoint(endpoint)
        .map_err(|e| peer_error(endpoint, "connect", e))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|e| {
            let reason = security
                .describe_failure(&e)
                .unwrap_or_else(|| e.to_string());
            peer_error(endpoint, "connect", reason)
        })?;
    Ok(
        FlightServiceClient::with_interceptor(channel, security.interceptor())
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// Fetches a cached partition from the process serving Flight at `endpoint`.
pub async fn fetch_block(
    endpoint: &str,
    cache_id: &str,
    partition: usize,
    partitions: usize,
) -> Result<Vec<RecordBatch>> {
    let mut client = connect(endpoint).await?;
    let what = format!("fetch partition {partition} of cache {cache_id}");
    let response = client
        .do_get(block_ticket(cache_id, partition, partitions))
        .await
        .map_err(|e| peer_error(endpoint, &what, e.message()))?;
    let data = response.into_inner().map_err(FlightError::from);
    FlightRecordBatchStream::new_from_flight_data(data)
        .try_collect()
        .await
        .map_err(|e| peer_error(endpoint, &what, e))
}

pub(crate) async fn action(
    endpoint: &str,
    kind: &str,
    cache_id: &str,
) -> Result<Vec<arrow_flight::Result>> {
    let mut client = connect(endpoint).await?;
    let request = Action::new(kind, cache_id.as_bytes().to_vec());
    let response = client
        .do_action(request)
        .await
        .map_err(|e| peer_error(endpoint, kind, e.message()))?;
    response
        .into_inner()
        .try_collect()
        .await
        .map_err(|e| peer_error(endpoint, kind, e.message()))
}

/// Asks the process at `endpoint` what it holds of `cache_id`.
pub async fn fetch_report(endpoint: &str, cache_id: &str) -> Result<CacheReport> {
    let results = action(endpoint, REPORT_ACTION, cache_id).await?;
    let first = results
        .first()
        .ok_or_else(|| peer_error(endpoint, REPORT_ACTION, "empty answer"))?;
    CacheReport::decode(first.body.as_ref()).map_err(|e| peer_error(endpoint, REPORT_ACTION, e))
}

/// Asks the process at `endpoint` to free `cache_id`; returns how many
/// partitions it freed.
pub async fn request_drop(endpoint: &str, cache_id: &str) -> Result<usize> {
    let results = action(endpoint, DROP_ACTION, cache_id).await?;
    Ok(results
        .first()
        .and_then(|r| std::str::from_utf8(&r.body).ok()?.parse().ok())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_and_others_are_left_alone() {
        let ticket = block_ticket("c-1", 3, 8);
        assert_eq!(parse_ticket(&ticket), Some(("c-1".to_string(), 3, 8)));
        assert_eq!(parse_ticket(&Ticket::new("ember.cache/c/1")), None);
        assert_eq!(
            parse_ticket(&Ticket::new(vec![0x0a, 0x02, 0x08, 0x01])),
            None
        );
    }
}
