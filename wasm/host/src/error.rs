//! What can go wrong loading or running a WebAssembly library.

use thiserror::Error;

/// An error of a WebAssembly library, naming the module or function.
#[derive(Debug, Error)]
pub enum WasmError {
    /// The bytes are not a WebAssembly module wasmtime accepts.
    #[error("module {module} is not a valid WebAssembly module: {reason}")]
    InvalidModule {
        /// The module (its hash, or where it came from).
        module: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// The module lacks an export of the boundary, or imports something
    /// the sandbox does not give.
    #[error("module {module} is not an Ember function library: {reason}")]
    NotALibrary {
        /// The module.
        module: String,
        /// What it lacks or asks for.
        reason: String,
    },
    /// A manifest line could not be read.
    #[error("module {module} declares a function Ember cannot read: `{line}`: {reason}")]
    Manifest {
        /// The module.
        module: String,
        /// The manifest line.
        line: String,
        /// Why.
        reason: String,
    },
    /// The bytes do not have the hash they were sent under.
    #[error("module refused: its SHA-256 is {actual}, not the {expected} it was sent as")]
    HashMismatch {
        /// The hash it was sent as.
        expected: String,
        /// The hash of the bytes.
        actual: String,
    },
    /// This process does not have the module and could not fetch it.
    #[error("WebAssembly module {hash} is not available here: {reason}")]
    Unavailable {
        /// The module's hash.
        hash: String,
        /// Why it could not be had.
        reason: String,
    },
    /// A function's call trapped (a panic, an out-of-bounds access, …).
    #[error("WebAssembly function `{function}` failed: {reason}")]
    Trapped {
        /// The function.
        function: String,
        /// The panic message or trap.
        reason: String,
    },
    /// A function worked on one batch for longer than allowed.
    #[error(
        "WebAssembly function `{function}` ran past its time limit of {limit_ms} ms for one batch \
         (ember.wasm_time_limit_ms)"
    )]
    TimeLimit {
        /// The function.
        function: String,
        /// The limit, in milliseconds.
        limit_ms: u64,
    },
    /// A function asked for more memory than allowed.
    #[error(
        "WebAssembly function `{function}` asked for more than its memory limit of {limit_mib} MiB \
         (ember.wasm_memory_limit_mib)"
    )]
    MemoryLimit {
        /// The function.
        function: String,
        /// The limit, in MiB.
        limit_mib: u64,
    },
    /// A function returned something that does not fit its declaration.
    #[error("WebAssembly function `{function}` returned a bad result: {reason}")]
    BadResult {
        /// The function.
        function: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value of this type cannot cross into a module.
    #[error("WebAssembly function `{function}` cannot take {what}")]
    Unsupported {
        /// The function.
        function: String,
        /// The type or column.
        what: String,
    },
    /// Reading or writing a module file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Results of this crate.
pub type Result<T, E = WasmError> = std::result::Result<T, E>;

impl From<WasmError> for datafusion::error::DataFusionError {
    fn from(error: WasmError) -> Self {
        datafusion::error::DataFusionError::Execution(error.to_string())
    }
}
