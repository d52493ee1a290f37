//! The GPU path's errors.

/// Why the GPU path could not run something. Callers fall back to the CPU on
/// every variant except where `ember.gpu = force` asks for a GPU.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No usable NVIDIA driver or device on this machine.
    #[error("no GPU: {0}")]
    NoDevice(String),
    /// NVRTC (the CUDA run-time compiler library) is not installed.
    #[error("NVRTC is not available: {0}")]
    NoCompiler(String),
    /// A kernel did not compile.
    #[error("kernel `{kernel}` does not compile: {log}")]
    Compile {
        /// The kernel's name.
        kernel: String,
        /// NVRTC's message.
        log: String,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// The device lacks the memory an operation needs.
    #[error("not enough GPU memory: {needed} bytes needed, {free} free")]
    OutOfMemory {
        /// Bytes the operation needs.
        needed: usize,
        /// Bytes free on the device.
        free: usize,
    },
    /// 64-bit integer arithmetic left its range.
    #[error("64-bit integer overflow")]
    Overflow,
    /// An expression, type or aggregate the GPU path does not handle.
    #[error("not supported on the GPU: {0}")]
    Unsupported(String),
}

impl From<cudarc::driver::DriverError> for GpuError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        GpuError::Driver(e.to_string())
    }
}
