//! The Ember client library.
//!
//! [`EmberContext`] plans SQL with Ember's shared configuration and runs it
//! embedded (in this process, the default) or on a cluster
//! ([`EmberContext::connect`]); Rust jobs use its lazy [`Dataset`] API
//! ([`dataset`]). The `ember` command-line tool is a thin layer
//! over this crate: statement running ([`runner`]), output formats
//! ([`format`]), the interactive shell ([`repl`]), a local cluster launcher
//! ([`local_cluster`]) and TPC-H sample data ([`tpch`]).
//!
//! ```no_run
//! # async fn demo() -> ember::Result<()> {
//! let ctx = ember::EmberContext::embedded()?;
//! let batches = ctx.run_sql("select 1 + 1 as two").await?;
//! assert_eq!(batches[0].num_rows(), 1);
//! # Ok(())
//! # }
//! ```

pub mod cli;
pub mod cluster;
pub mod context;
pub mod copy_options;
pub mod dataset;
pub mod empty_relation;
pub mod error;
pub mod format;
pub mod local_cluster;
pub mod progress;
pub mod repl;
pub mod resubmit;
pub mod runner;
pub mod s3_glob;
pub mod script;
mod settings_view;
mod shared_catalog;
pub mod statement;
pub mod statement_depth;
pub mod table_files;
pub mod tpcds;
pub mod tpch;
pub mod wasm_functions;
pub mod write;

pub use context::{EmberContext, ExecutionMode};
pub use dataset::{Dataset, GroupedDataset};
pub use error::{ClientError, Result};
pub use format::OutputFormat;
