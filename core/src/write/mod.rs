//! Distributed, atomic writes: `COPY ... TO` and `INSERT INTO` a listing
//! table, to local directories or S3, written by every task in parallel and
//! committed only when the whole job has succeeded.
//!
//! * [`planner`]: [`EmberQueryPlanner`] rewrites DataFusion's single-task
//!   file writes into the operators below;
//! * [`exec`]: [`StagedWriteExec`] (one per task) and [`WriteCommitExec`]
//!   (once per job);
//! * [`staging`]: the `_temporary/<write_id>/` layout, the commit's moves
//!   and the removal of a failed write's files ([`StagingArea`]);
//! * [`abandoned_writes`]: the store the tasks write through, which undoes
//!   a write whose task was dropped half-way ([`AbandonedWriteUndo`]) and
//!   lets a stopped task's clean-up wait for the writes under way
//!   ([`TaskWriteGate`]);
//! * [`codec`]: how both operators travel to the executors.

pub mod abandoned_writes;
pub mod codec;
pub mod exec;
pub mod planner;
pub mod staging;

pub use abandoned_writes::{AbandonedWriteUndo, TaskWriteGate};
pub use codec::{StagedWriteCodec, WriteCommitCodec};
pub use exec::{SinkSpec, StagedWriteExec, WriteCommitExec};
pub use planner::{EmberQueryPlanner, distribute_writes};
pub use staging::{STAGING_DIR, SUCCESS_MARKER, StagingArea};
