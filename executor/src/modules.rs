//! Where the executor finds the WebAssembly modules its tasks' plans name:
//! its work dir (`wasm/`, by hash), else its scheduler, once per module.

use std::sync::Arc;
use std::time::Duration;

use ember_auth::ClientSecurity;
use ember_wasm::{ModuleFetcher, ModuleStore};

/// Fetches modules from the scheduler's `GET /api/ember/wasm/{sha256}`, with
/// the cluster's token and TLS.
struct SchedulerModules {
    base: String,
    security: ClientSecurity,
}

impl ModuleFetcher for SchedulerModules {
    fn fetch(&self, sha256: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}/api/ember/wasm/{sha256}", self.base);
        let client = self.security.http_client().map_err(|e| e.to_string())?;
        // Plans are decoded in synchronous code on the task's runtime: the
        // request runs on a thread of its own, and this one waits.
        let fetch = move || -> Result<Vec<u8>, String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let response = client
                    .get(&url)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                let status = response.status();
                if !status.is_success() {
                    let text = response.text().await.unwrap_or_default();
                    return Err(format!("GET {url} returned {status}: {}", text.trim()));
                }
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                Ok(bytes.to_vec())
            })
        };
        std::thread::scope(|scope| {
            scope
                .spawn(fetch)
                .join()
                .unwrap_or_else(|_| Err("the fetch stopped".to_string()))
        })
    }
}

/// Installs the executor's module store: modules kept in
/// `work_dir/wasm`, fetched from the scheduler at `host:port` as `security`
/// says.
pub(crate) fn install(
    work_dir: &std::path::Path,
    host: &str,
    port: u16,
    security: &ClientSecurity,
) -> Result<(), ember_wasm::WasmError> {
    let fetcher = SchedulerModules {
        base: format!("{}://{host}:{port}", security.scheme()),
        security: security.clone(),
    };
    let store = ModuleStore::in_dir(work_dir.join("wasm"))?.with_fetcher(Arc::new(fetcher));
    ember_wasm::install_module_store(Arc::new(store));
    Ok(())
}
