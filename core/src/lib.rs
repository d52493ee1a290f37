//! `ember-core`: everything that Ember's client, scheduler and executors must
//! agree on, built in one place.
//!
//! A query planned by the client is shipped to the scheduler, split into stages
//! and run by executors. Each of these processes decodes plans, resolves
//! functions and opens files on its own, so each must be configured the same
//! way. This crate owns that configuration:
//!
//! * [`config`]: the [`SessionConfig`](datafusion::prelude::SessionConfig)
//!   with Ballista's settings and Ember's `ember.*` extension ([`EmberConfig`]);
//! * [`session`]: the session state (functions, planners) and the function
//!   registry that executors resolve functions from;
//! * [`checked_arithmetic`]: integer and decimal arithmetic that fails on
//!   overflow instead of wrapping, planned and executed alike everywhere;
//! * [`dialect`]: Spark's semantics where a session asks for them;
//! * [`semi_join`]: Ember's optimizer rule that filters a table by an `IN`
//!   or `EXISTS` subquery before the joins above it;
//! * [`object_store`] and [`s3`]: the runtime environment and the
//!   object-store registry that maps `file://` and `s3://` locations to
//!   stores, configured from the `AWS_*` environment and `s3.*` settings;
//! * [`memory`]: where `ember-memory`'s adaptive joins go in a plan, as the
//!   `ember.adaptive_joins` setting says;
//! * [`write`]: distributed, atomic `COPY` and `INSERT` (staged part files
//!   per task, one commit per job);
//! * [`codec`]: the logical and physical extension codecs that wrap Ballista's,
//!   so Ember's own operators can travel between processes.
//!
//! The client, the scheduler and the executors call these functions; nothing is
//! configured three times.

pub mod address;
pub mod aggregated_join_sides;
pub mod broadcast_joins;
pub mod cache;
pub mod checked_arithmetic;
pub mod cluster_order;
pub mod codec;
pub mod common_subplans;
pub mod config;
pub mod conjunctions;
pub mod dialect;
pub mod distributed_joins;
pub mod error;
pub mod exchange_properties;
pub mod executor_status;
pub mod functions;
pub mod gpu;
pub mod grouping_sets;
pub mod join_order;
pub mod memory;
pub mod memory_table;
pub mod object_store;
pub mod one_step_aggregates;
pub mod operator;
pub mod process;
pub mod s3;
pub mod scalar_subquery;
pub mod scan_dynamic_filters;
pub mod scan_projection;
pub mod scheduling;
pub mod selectivity;
pub mod semi_join;
pub mod session;
pub mod settings_rewrite;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod write;

pub use address::SchedulerAddress;
pub use codec::{EmberLogicalCodec, EmberPhysicalCodec};
pub use config::{
    ADAPTIVE_PLANNER_SETTING, EmberConfig, apply_cluster_defaults, config_to_ship,
    distributed_session_config, is_secret_setting, session_config,
};
pub use error::{EmberError, Result};
pub use object_store::{EmberObjectStoreRegistry, runtime_env};
pub use scheduling::RESUBMIT_MARKER;
pub use session::{function_registry, session_state};

/// Ember's version, as reported by every binary.
pub const EMBER_VERSION: &str = env!("CARGO_PKG_VERSION");
