//! Portable libraries: functions whose definition travels inside plans.
//!
//! A library built with [`FunctionLibrary::portable`] carries a
//! descriptor (for a WebAssembly library: the module's hash and the limits
//! it runs under). Ember's codecs write the descriptor beside each call of
//! one of its functions; a process that decodes the plan and does not hold
//! the library asks its [`LibraryLoader`] (installed at start-up, for
//! example by `ember-wasm`) to rebuild it from the descriptor.

use std::sync::{Arc, OnceLock, RwLock};

use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

use super::FunctionLibrary;
use super::udf::{NamedReduce, NamedScalar};

/// What marks a function's encoded definition as a portable library's.
const PORTABLE_MARKER: &[u8] = b"ember.portable.v1\0";

/// Rebuilds portable libraries from their descriptors in this process.
pub trait LibraryLoader: Send + Sync {
    /// The library `descriptor` describes (loaded once and kept, as the
    /// loader sees fit).
    fn load(&self, descriptor: &[u8]) -> Result<FunctionLibrary>;
}

fn loader() -> &'static RwLock<Option<Arc<dyn LibraryLoader>>> {
    static LOADER: OnceLock<RwLock<Option<Arc<dyn LibraryLoader>>>> = OnceLock::new();
    LOADER.get_or_init(RwLock::default)
}

/// Makes `loader` the one this process rebuilds portable libraries with.
pub fn install_library_loader(loader_impl: Arc<dyn LibraryLoader>) {
    if let Ok(mut slot) = loader().write() {
        *slot = Some(loader_impl);
    }
}

/// The library `descriptor` describes, from this process's loader.
pub fn load_portable_library(descriptor: &[u8]) -> Result<FunctionLibrary> {
    let installed = loader().read().ok().and_then(|l| l.clone());
    match installed {
        Some(loader) => loader.load(descriptor),
        None => Err(DataFusionError::Plan(
            "this process cannot load a function library that travels with the plan \
             (no loader installed)"
                .to_string(),
        )),
    }
}

fn encode(descriptor: Option<&[u8]>, buf: &mut Vec<u8>) -> bool {
    match descriptor {
        Some(descriptor) => {
            buf.extend_from_slice(PORTABLE_MARKER);
            buf.extend_from_slice(descriptor);
            true
        }
        None => false,
    }
}

/// Writes `udf`'s portable definition to `buf`, if it has one (whether it
/// did).
pub fn encode_portable_udf(udf: &ScalarUDF, buf: &mut Vec<u8>) -> bool {
    encode(
        udf.inner()
            .downcast_ref::<NamedScalar>()
            .and_then(NamedScalar::descriptor),
        buf,
    )
}

/// Writes `udaf`'s portable definition to `buf`, if it has one (whether it
/// did).
pub fn encode_portable_udaf(udaf: &AggregateUDF, buf: &mut Vec<u8>) -> bool {
    encode(
        udaf.inner()
            .downcast_ref::<NamedReduce>()
            .and_then(NamedReduce::descriptor),
        buf,
    )
}

fn library_of(name: &str, buf: &[u8]) -> Option<Result<FunctionLibrary>> {
    let descriptor = buf.strip_prefix(PORTABLE_MARKER)?;
    Some(load_portable_library(descriptor).map_err(|e| {
        DataFusionError::Plan(format!("cannot load the library of function `{name}`: {e}"))
    }))
}

fn not_in_library(name: &str, library: &FunctionLibrary) -> DataFusionError {
    DataFusionError::Plan(format!(
        "function library `{}` has no function `{name}`",
        library.name()
    ))
}

/// The function `name` of the portable library `buf` describes, or `None`
/// when `buf` is not a portable definition.
pub fn decode_portable_udf(name: &str, buf: &[u8]) -> Option<Result<Arc<ScalarUDF>>> {
    library_of(name, buf).map(|library| {
        let library = library?;
        library
            .scalar_function(name)
            .cloned()
            .ok_or_else(|| not_in_library(name, &library))
    })
}

/// The reduce function `name` of the portable library `buf` describes, or
/// `None` when `buf` is not a portable definition.
pub fn decode_portable_udaf(name: &str, buf: &[u8]) -> Option<Result<Arc<AggregateUDF>>> {
    library_of(name, buf).map(|library| {
        let library = library?;
        library
            .aggregate_function(name)
            .cloned()
            .ok_or_else(|| not_in_library(name, &library))
    })
}
