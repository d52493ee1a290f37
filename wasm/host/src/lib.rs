//! `ember-wasm`: WebAssembly function libraries for Ember.
//!
//! A library is a WebAssembly module built with the guest SDK `ember-udf`
//! (`wasm/guest`): its manifest declares scalar, table-producing (`flat`),
//! reduce and partition functions, and its calls take and return batches
//! of rows in a columnar layout ([`wire`]). This crate loads such a module
//! ([`ModuleStore::load`]) as an Ember [`FunctionLibrary`], runs it with
//! wasmtime (compiled once per process, instances pooled, every call
//! bounded in time and memory: [`Limits`]), and rebuilds it in another
//! process from the descriptor that travels inside plans
//! ([`install_module_store`] makes a process able to), fetching the module
//! by hash where the process was never given it ([`ModuleFetcher`]).
//!
//! A module runs sandboxed: it may import nothing (no files, network,
//! clock or randomness), its memory is capped, and a call that runs too
//! long is interrupted; each of those fails the query with one line naming
//! the function and the limit.

pub mod catalog;
pub mod error;
pub mod guest;
mod library;
pub mod manifest;
mod runtime;
mod store;
pub mod wire;

pub use catalog::{LibraryCatalog, LibraryEntry};
pub use error::{Result, WasmError};
pub use library::{LibraryDescriptor, function_library};
pub use runtime::{CompiledModule, Limits};
pub use store::{
    ModuleFetcher, ModuleStore, install_module_store, is_sha256, module_store, sha256_hex,
};

use ember_core::functions::FunctionLibrary;

/// Loads `bytes` as the library `name` under `limits` into this process's
/// [`module_store`] and registers it (see
/// [`ember_core::functions::register_library`]): sessions built from now
/// on resolve its functions, and plans that call them carry the module's
/// hash to the processes that run them.
pub fn register_wasm_library(name: &str, bytes: &[u8], limits: Limits) -> Result<FunctionLibrary> {
    let library = module_store().load(name, bytes, limits)?;
    ember_core::functions::register_library(library.clone());
    Ok(library)
}

/// The library `entry` declares, from this process's [`module_store`]
/// (which fetches the module where it can): all of the module's functions,
/// or only the one `entry.only` names.
pub fn entry_library(entry: &LibraryEntry) -> Result<FunctionLibrary> {
    let library = module_store().library(&entry.descriptor)?;
    match &entry.only {
        None => Ok(library),
        Some(function) => library
            .only(function)
            .ok_or_else(|| WasmError::NotALibrary {
                module: format!("sha256:{}", &entry.descriptor.sha256),
                reason: format!("it has no function `{function}`"),
            }),
    }
}
