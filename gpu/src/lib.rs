//! Ember's optional GPU path: operators on NVIDIA GPUs, written as CUDA C
//! kernels that NVRTC compiles at run time for the device at hand, loaded
//! through `cudarc` with dynamic loading, so every build compiles without
//! CUDA and every machine without a GPU runs the CPU path.
//!
//! * [`GpuDevice::detect`] finds a GPU as [`GpuMode`] (`ember.gpu`) allows,
//!   without ever panicking where no driver is installed.
//! * [`HostBatch`] coalesces Arrow arrays into one 64-bit buffer per column
//!   (plus validity bits); [`DeviceBatch`] is the same in device memory,
//!   which is what a GPU-cached table holds.
//! * [`FusedAggregate`] is filter + arithmetic + aggregates without GROUP
//!   BY in one pass, generated as one kernel from [`GpuExpr`] trees; its
//!   [`FusedAggregate::run_cpu`] is the reference with the same semantics.
//! * [`GroupedAggregate`] is the same with GROUP BY over integer, date and
//!   dictionary-coded string keys: a hash aggregation emitting one
//!   [`AggregateState`] per group and aggregate.

mod batch;
mod device;
mod error;
mod expr;
mod fused;
mod grouped;
mod mode;

pub use batch::{
    ColumnValues, DeviceBatch, DeviceColumn, DeviceValues, HostBatch, HostColumn, is_string,
};
pub use device::{GpuDevice, compile_ptx, driver_available, nvrtc_available};
pub use error::GpuError;
pub use expr::{ArithmeticOp, CompareOp, GpuExpr, GpuType};
pub use fused::{Aggregate, AggregateFunction, AggregateValue, FusedAggregate};
pub use grouped::{AggregateState, Group, GroupedAggregate};
pub use mode::GpuMode;

#[cfg(test)]
mod tests;
