//! Protocol Buffers messages that Ember adds on top of Ballista's protocol.
//!
//! The schema lives in `proto/ember.proto`; the Rust types are generated at
//! build time: the envelope in which plan extension nodes travel between the
//! client, the scheduler and the executors (see `ember_core::codec`), the
//! payloads of Ember's own operators (a grouping-set expansion among them)
//! and tables, and the messages of the
//! cached-partition Flight actions (see `ember_core::cache`) and of the
//! executor status the web UI asks for (`ember_core::executor_status`).

#![allow(clippy::derive_partial_eq_without_eq)]

/// Version 1 of Ember's wire messages (`package ember.v1`).
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/ember.v1.rs"));
}

pub use v1::{
    CacheOperator, CacheReport, CachedBlock, CachedDataset, ExecutorStatus, ExpandGroupingSets,
    ExtensionOperator, GroupingSet, LogicalExtensionEnvelope, MapPartitions, MemoryTable,
    PhysicalExtensionEnvelope, StagedWrite, WriteCommit, logical_extension_envelope,
    physical_extension_envelope, staged_write,
};
