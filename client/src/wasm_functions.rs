//! WebAssembly function libraries in a session: `CREATE FUNCTION …
//! LANGUAGE wasm`, `DROP FUNCTION`, and [`EmberContext::register_wasm_library`].
//!
//! A library is loaded (and checked) in the client first. On a cluster its
//! module then goes to the scheduler once, by hash, and the library is
//! declared there, so that every client sees it and it outlives the
//! scheduler when it keeps a state directory; executors fetch the module
//! by hash the first time a task needs it. Plans carry only the hash.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use datafusion::dataframe::DataFrame;
use datafusion::execution::object_store::ObjectStoreUrl;
use ember_core::functions::FunctionLibrary;
use ember_wasm::{LibraryDescriptor, LibraryEntry, Limits, entry_library, module_store};
use object_store::ObjectStoreExt;

use crate::cluster::SchedulerConnection;
use crate::context::EmberContext;
use crate::error::{ClientError, Result};

/// Where a WebAssembly module comes from.
#[derive(Debug, Clone)]
pub enum WasmModule {
    /// A local path, or a URL of an object store the session reaches
    /// (`s3://bucket/lib.wasm`).
    Location(String),
    /// The module's bytes.
    Bytes(Vec<u8>),
}

impl From<&str> for WasmModule {
    fn from(location: &str) -> Self {
        WasmModule::Location(location.to_string())
    }
}

impl From<String> for WasmModule {
    fn from(location: String) -> Self {
        WasmModule::Location(location)
    }
}

impl From<&std::path::Path> for WasmModule {
    fn from(path: &std::path::Path) -> Self {
        WasmModule::Location(path.to_string_lossy().into_owned())
    }
}

impl From<Vec<u8>> for WasmModule {
    fn from(bytes: Vec<u8>) -> Self {
        WasmModule::Bytes(bytes)
    }
}

impl From<&[u8]> for WasmModule {
    fn from(bytes: &[u8]) -> Self {
        WasmModule::Bytes(bytes.to_vec())
    }
}

/// Ember's statements about functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionStatement {
    /// `CREATE [OR REPLACE] FUNCTION [LIBRARY] name LANGUAGE wasm AS
    /// 'location'`.
    Create {
        /// The function's (or library's) name.
        name: String,
        /// `FUNCTION LIBRARY`: every function of the module.
        library: bool,
        /// Where the module is.
        location: String,
        /// `OR REPLACE`.
        or_replace: bool,
    },
    /// `DROP FUNCTION [LIBRARY] [IF EXISTS] name`.
    Drop {
        /// The function's (or library's) name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
}

fn syntax(message: &str) -> ClientError {
    ClientError::Syntax {
        message: message.to_string(),
        position: None,
    }
}

fn is_identifier(word: &str) -> bool {
    !word.is_empty()
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !word.starts_with(|c: char| c.is_ascii_digit())
}

/// Ember's function statement `sql` is, if it is one: `None` for any other
/// statement (including `CREATE FUNCTION` in another language, which
/// DataFusion answers).
pub fn parse_function_statement(sql: &str) -> Option<Result<FunctionStatement>> {
    let text = sql.trim().trim_end_matches(';').trim();
    let (head, quoted) = match text.find('\'') {
        Some(at) => (&text[..at], Some(&text[at..])),
        None => (text, None),
    };
    let words: Vec<String> = head
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["drop", "function", rest @ ..] => Some(parse_drop(rest, quoted)),
        ["create", rest @ ..] => {
            let (or_replace, rest) = match rest {
                ["or", "replace", rest @ ..] => (true, rest),
                _ => (false, rest),
            };
            let ["function", rest @ ..] = rest else {
                return None;
            };
            if !words.windows(2).any(|w| w == ["language", "wasm"]) {
                return None;
            }
            Some(parse_create(rest, or_replace, quoted))
        }
        _ => None,
    }
}

fn parse_drop(rest: &[&str], quoted: Option<&str>) -> Result<FunctionStatement> {
    const USAGE: &str = "expected DROP FUNCTION [LIBRARY] [IF EXISTS] name";
    if quoted.is_some() {
        return Err(syntax(USAGE));
    }
    let rest = match rest {
        ["library", rest @ ..] => rest,
        _ => rest,
    };
    let (if_exists, rest) = match rest {
        ["if", "exists", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    match rest {
        [name] if is_identifier(name) => Ok(FunctionStatement::Drop {
            name: name.to_string(),
            if_exists,
        }),
        _ => Err(syntax(USAGE)),
    }
}

fn parse_create(
    rest: &[&str],
    or_replace: bool,
    quoted: Option<&str>,
) -> Result<FunctionStatement> {
    const USAGE: &str =
        "expected CREATE [OR REPLACE] FUNCTION [LIBRARY] name LANGUAGE wasm AS 'module location'";
    let (library, rest) = match rest {
        ["library", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let name = match rest {
        [name, "language", "wasm", "as"] if is_identifier(name) => name,
        _ => return Err(syntax(USAGE)),
    };
    let location = quoted
        .and_then(|q| q.strip_prefix('\''))
        .and_then(|q| q.strip_suffix('\''))
        .filter(|l| !l.is_empty() && !l.contains('\''))
        .ok_or_else(|| syntax(USAGE))?;
    Ok(FunctionStatement::Create {
        name: name.to_string(),
        library,
        location: location.to_string(),
        or_replace,
    })
}

/// The WebAssembly libraries a session holds, by name.
#[derive(Debug, Default)]
pub(crate) struct SessionLibraries {
    held: Mutex<HashMap<String, LibraryEntry>>,
}

impl SessionLibraries {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, LibraryEntry>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn wasm_error(error: ember_wasm::WasmError) -> ClientError {
    ClientError::Process(error.to_string())
}

impl EmberContext {
    /// Loads the WebAssembly library `module` (built with `ember-udf`) as
    /// `name`: its functions are callable from this session's SQL and
    /// datasets at once, under the session's `ember.wasm_*` limits. On a
    /// cluster the module is sent to the scheduler (once, by hash) and the
    /// library declared there for every client; the cluster needs no
    /// rebuild. Returns the names of its functions.
    pub async fn register_wasm_library(
        &self,
        name: &str,
        module: impl Into<WasmModule>,
    ) -> Result<Vec<String>> {
        self.create_wasm_library(name, module.into(), None, true)
            .await
    }

    /// Removes the WebAssembly library (or function) `name` from this
    /// session, and from the cluster's declared libraries; whether there
    /// was one.
    pub async fn deregister_wasm_library(&self, name: &str) -> Result<bool> {
        let held = self.libraries().held().remove(name);
        if let Some(entry) = &held {
            self.forget_library(entry);
        }
        let declared = match self.scheduler() {
            Some(scheduler) => delete_declared(scheduler, name).await?,
            None => false,
        };
        Ok(held.is_some() || declared)
    }

    /// Runs one of Ember's function statements.
    pub(crate) async fn run_function_statement(
        &self,
        statement: FunctionStatement,
    ) -> Result<DataFrame> {
        match statement {
            FunctionStatement::Create {
                name,
                library,
                location,
                or_replace,
            } => {
                let only = (!library).then(|| name.clone());
                self.create_wasm_library(&name, WasmModule::Location(location), only, or_replace)
                    .await?;
            }
            FunctionStatement::Drop { name, if_exists } => {
                if !self.deregister_wasm_library(&name).await? && !if_exists {
                    return Err(ClientError::Process(format!(
                        "no WebAssembly function or library `{name}` to drop (DROP FUNCTION \
                         IF EXISTS ignores that)"
                    )));
                }
            }
        }
        self.session()
            .read_empty()
            .map_err(ClientError::from_datafusion)
    }

    async fn create_wasm_library(
        &self,
        name: &str,
        module: WasmModule,
        only: Option<String>,
        or_replace: bool,
    ) -> Result<Vec<String>> {
        if !or_replace && self.libraries().held().contains_key(name) {
            return Err(ClientError::Process(format!(
                "function `{name}` exists already: CREATE OR REPLACE FUNCTION replaces it"
            )));
        }
        let bytes = match module {
            WasmModule::Bytes(bytes) => bytes,
            WasmModule::Location(location) => self.read_module(&location).await?,
        };
        let settings = self.settings();
        let limits = Limits {
            memory_mib: settings.wasm_memory_limit_mib,
            time_ms: settings.wasm_time_limit_ms,
        };
        let store = module_store();
        let sha256 = store.put(&bytes, None).map_err(wasm_error)?;
        let entry = LibraryEntry {
            descriptor: LibraryDescriptor {
                library: name.to_string(),
                sha256: sha256.clone(),
                memory_mib: limits.memory_mib,
                time_ms: limits.time_ms,
            },
            only,
        };
        // Checked here before the cluster hears of it.
        let library = entry_library(&entry).map_err(wasm_error)?;
        if let Some(scheduler) = self.scheduler() {
            send_module(scheduler, &sha256, bytes).await?;
            declare(scheduler, &entry).await?;
        }
        let names = library.names().iter().map(|n| n.to_string()).collect();
        self.hold_library(entry, library);
        Ok(names)
    }

    /// Reads a module from a local path or an object store URL.
    async fn read_module(&self, location: &str) -> Result<Vec<u8>> {
        let unreadable = |reason: String| {
            ClientError::Process(format!(
                "cannot read the WebAssembly module {location}: {reason}"
            ))
        };
        let Ok(url) = url::Url::parse(location).map_err(|_| ()).and_then(|url| {
            if url.scheme().len() > 1 {
                Ok(url)
            } else {
                Err(())
            }
        }) else {
            return std::fs::read(location).map_err(|e| unreadable(e.to_string()));
        };
        let store_url = ObjectStoreUrl::parse(format!("{}://{}", url.scheme(), url.authority()))
            .map_err(|e| unreadable(e.to_string()))?;
        let store = self
            .session()
            .runtime_env()
            .object_store(&store_url)
            .map_err(|e| unreadable(e.to_string()))?;
        let path = object_store::path::Path::from_url_path(url.path())
            .map_err(|e| unreadable(e.to_string()))?;
        let object = store
            .get(&path)
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        let bytes = object
            .bytes()
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        Ok(bytes.to_vec())
    }

    /// Makes `library` callable in this session.
    fn hold_library(&self, entry: LibraryEntry, library: FunctionLibrary) {
        if let Some(previous) = self.libraries().held().remove(&entry.descriptor.library) {
            self.forget_library(&previous);
        }
        for function in library.scalar_functions() {
            self.session().register_udf(function.as_ref().clone());
        }
        for function in library.aggregate_functions() {
            self.session().register_udaf(function.as_ref().clone());
        }
        // Partition functions are found by name in the process's libraries.
        ember_core::functions::register_library(library);
        self.libraries()
            .held()
            .insert(entry.descriptor.library.clone(), entry);
    }

    /// Removes a held library's functions from this session.
    fn forget_library(&self, entry: &LibraryEntry) {
        if let Ok(library) = entry_library(entry) {
            for name in library.names() {
                self.session().deregister_udf(name);
                self.session().deregister_udaf(name);
            }
        }
        ember_core::functions::deregister_library(&entry.descriptor.library);
        // Natively registered functions of the same names come back.
        ember_core::functions::register_into(self.session());
    }

    /// On a cluster: takes up the libraries other clients declared, and
    /// lets go of those they dropped.
    pub(crate) async fn pull_declared_libraries(&self) -> Result<()> {
        let Some(scheduler) = self.scheduler() else {
            return Ok(());
        };
        let declared = list_declared(scheduler).await?;
        let names: std::collections::HashSet<_> = declared
            .iter()
            .map(|e| e.descriptor.library.clone())
            .collect();
        let gone: Vec<LibraryEntry> = self
            .libraries()
            .held()
            .values()
            .filter(|e| !names.contains(&e.descriptor.library))
            .cloned()
            .collect();
        for entry in gone {
            self.libraries().held().remove(&entry.descriptor.library);
            self.forget_library(&entry);
        }
        for entry in declared {
            if self.libraries().held().get(&entry.descriptor.library) == Some(&entry) {
                continue;
            }
            let store = module_store();
            if !store.holds(&entry.descriptor.sha256) {
                let bytes = fetch_module(scheduler, &entry.descriptor.sha256).await?;
                store
                    .put(&bytes, Some(&entry.descriptor.sha256))
                    .map_err(wasm_error)?;
            }
            match entry_library(&entry) {
                Ok(library) => self.hold_library(entry, library),
                Err(e) => tracing::warn!(
                    library = %entry.descriptor.library,
                    "cannot load a function library the cluster declares: {e}"
                ),
            }
        }
        Ok(())
    }
}

fn rest_failure(scheduler: &SchedulerConnection, e: reqwest::Error) -> ClientError {
    ClientError::SchedulerUnreachable {
        addr: scheduler.address().to_string(),
        reason: e.to_string(),
    }
}

async fn refused(
    scheduler: &SchedulerConnection,
    what: &str,
    response: reqwest::Response,
) -> ClientError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let reason = text.trim().lines().next().unwrap_or("").to_string();
    ClientError::Process(format!(
        "the scheduler at {} refused {what} ({status}): {reason}",
        scheduler.address()
    ))
}

async fn send_module(scheduler: &SchedulerConnection, sha256: &str, bytes: Vec<u8>) -> Result<()> {
    let response = scheduler
        .http
        .put(scheduler.rest_url(&format!("/api/ember/wasm/{sha256}")))
        .timeout(Duration::from_secs(120))
        .body(bytes)
        .send()
        .await
        .map_err(|e| rest_failure(scheduler, e))?;
    if response.status().is_success() {
        return Ok(());
    }
    Err(refused(scheduler, "the WebAssembly module", response).await)
}

async fn fetch_module(scheduler: &SchedulerConnection, sha256: &str) -> Result<Vec<u8>> {
    let response = scheduler
        .http
        .get(scheduler.rest_url(&format!("/api/ember/wasm/{sha256}")))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .map_err(|e| rest_failure(scheduler, e))?;
    if !response.status().is_success() {
        return Err(refused(scheduler, "to send a WebAssembly module", response).await);
    }
    Ok(response
        .bytes()
        .await
        .map_err(|e| rest_failure(scheduler, e))?
        .to_vec())
}

async fn declare(scheduler: &SchedulerConnection, entry: &LibraryEntry) -> Result<()> {
    let response = scheduler
        .http
        .put(scheduler.rest_url(&format!(
            "/api/ember/functions/{}",
            entry.descriptor.library
        )))
        .timeout(Duration::from_secs(120))
        .json(entry)
        .send()
        .await
        .map_err(|e| rest_failure(scheduler, e))?;
    if response.status().is_success() {
        return Ok(());
    }
    Err(refused(scheduler, "the function library", response).await)
}

async fn list_declared(scheduler: &SchedulerConnection) -> Result<Vec<LibraryEntry>> {
    let response = scheduler
        .http
        .get(scheduler.rest_url("/api/ember/functions"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| rest_failure(scheduler, e))?;
    if !response.status().is_success() {
        return Err(refused(scheduler, "to list its function libraries", response).await);
    }
    response
        .json()
        .await
        .map_err(|e| rest_failure(scheduler, e))
}

async fn delete_declared(scheduler: &SchedulerConnection, name: &str) -> Result<bool> {
    let response = scheduler
        .http
        .delete(scheduler.rest_url(&format!("/api/ember/functions/{name}")))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| rest_failure(scheduler, e))?;
    match response.status() {
        status if status.is_success() => Ok(true),
        reqwest::StatusCode::NOT_FOUND => Ok(false),
        _ => Err(refused(scheduler, "to drop the function library", response).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Option<std::result::Result<FunctionStatement, String>> {
        parse_function_statement(sql).map(|r| r.map_err(|e| e.to_string()))
    }

    #[test]
    fn function_statements_are_recognised() {
        assert_eq!(
            parsed("create or replace function LIBRARY trips language WASM as 's3://b/t.wasm';"),
            Some(Ok(FunctionStatement::Create {
                name: "trips".into(),
                library: true,
                location: "s3://b/t.wasm".into(),
                or_replace: true
            }))
        );
        assert_eq!(
            parsed("CREATE FUNCTION fare_band LANGUAGE wasm AS '/tmp/a b.wasm'"),
            Some(Ok(FunctionStatement::Create {
                name: "fare_band".into(),
                library: false,
                location: "/tmp/a b.wasm".into(),
                or_replace: false
            }))
        );
        assert_eq!(
            parsed("DROP FUNCTION IF EXISTS fare_band"),
            Some(Ok(FunctionStatement::Drop {
                name: "fare_band".into(),
                if_exists: true
            }))
        );
        assert_eq!(parsed("SELECT 'create function'"), None);
        assert_eq!(
            parsed("CREATE FUNCTION f(a INT) RETURNS INT LANGUAGE sql AS 'select 1'"),
            None
        );
    }

    #[test]
    fn malformed_function_statements_say_what_is_expected() {
        for sql in [
            "CREATE FUNCTION LANGUAGE wasm AS 'x.wasm'",
            "CREATE FUNCTION f LANGUAGE wasm AS x.wasm",
            "CREATE FUNCTION f-g LANGUAGE wasm AS 'x.wasm'",
            "DROP FUNCTION a b",
        ] {
            let error = parsed(sql).expect("recognised").unwrap_err();
            assert!(error.contains("expected"), "{sql}: {error}");
        }
    }
}
