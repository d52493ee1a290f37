//! Ember's cross-process integration tests, in one test binary (each test
//! still runs in its own process under nextest).

mod cancel;
mod cli;
mod cluster_processes;
mod dataset;
mod dataset_cache;
mod examples;
mod executor_loss;
mod flight_sql;
mod fuzz;
mod gpu_rewrite;
mod hostile_plans;
mod job_watch;
mod malformed;
mod memory;
mod metrics;
mod overflow;
mod progress;
mod python;
mod quickstart;
mod s3;
mod scheduler_soak;
mod security;
mod shared_catalog;
mod tpcds;
mod tpch;
mod wasm_functions;
mod web_ui;
