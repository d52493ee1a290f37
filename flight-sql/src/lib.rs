//! Arrow Flight SQL on an Ember scheduler (`ember-scheduler --flight-sql`),
//! for ADBC, JDBC and BI tools.
//!
//! Ballista's frontend (`ballista-flight-sql`) plans each statement in a
//! scheduler session (whose default catalog is the cluster's shared
//! catalog), runs it as a cluster job, and answers with one endpoint per
//! result partition, which clients fetch through the scheduler's Flight
//! proxy: results stream from the executors and are never held by the
//! scheduler. Around it, this crate adds:
//!
//! - [`EmberFlightSqlService`]: the cluster's token as the handshake's
//!   password or as a bearer token; prepared statements with bound
//!   parameters ([`parameters`]); `CancelFlightInfo` answered;
//! - [`ClusterQueryBackend`]: statements as jobs, cancelled when their
//!   client cancels or goes away before they finish.
//!
//! [`flight_sql_service`] builds the gRPC service the scheduler mounts.

mod auth;
mod backend;
pub mod parameters;
mod service;

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::flight_proxy_service::BallistaFlightProxyService;
use ballista_scheduler::cluster::JobState;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::logical_plan::AsLogicalPlan;
use datafusion_proto::physical_plan::AsExecutionPlan;
use ember_auth::ClusterToken;

pub use auth::{HANDSHAKE_PATH, SESSION_TTL};
pub use backend::ClusterQueryBackend;
pub use service::EmberFlightSqlService;

/// The Flight SQL service of `scheduler`, whose finished jobs `jobs`
/// holds: results fetched through `proxy`, clients admitted with `token`
/// when the cluster has one, messages limited to the scheduler's gRPC
/// sizes.
pub fn flight_sql_service<T: 'static + AsLogicalPlan, U: 'static + AsExecutionPlan>(
    scheduler: SchedulerServer<T, U>,
    jobs: Arc<dyn JobState>,
    proxy: BallistaFlightProxyService,
    token: Option<ClusterToken>,
    max_decoding: usize,
    max_encoding: usize,
) -> FlightServiceServer<EmberFlightSqlService<ClusterQueryBackend<T, U>>> {
    let backend = Arc::new(ClusterQueryBackend::new(scheduler, jobs));
    FlightServiceServer::new(EmberFlightSqlService::new(backend, proxy, token))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(max_encoding)
}
