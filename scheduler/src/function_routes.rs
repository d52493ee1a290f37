//! WebAssembly function libraries over REST, for Ember's clients and
//! executors:
//!
//! - `PUT /api/ember/wasm/{sha256}` with the module's bytes: keeps the
//!   module, refused (400) when the bytes do not have that hash;
//! - `GET /api/ember/wasm/{sha256}`: the module's bytes (executors fetch a
//!   module the first time a plan needs it);
//! - `GET /api/ember/functions`: the declared libraries;
//! - `PUT /api/ember/functions/{name}` with a [`LibraryEntry`]: declares a
//!   library, once its module (already sent) compiles and has the
//!   function named;
//! - `DELETE /api/ember/functions/{name}`: drops it.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use ember_wasm::{LibraryCatalog, LibraryEntry, entry_library, is_sha256, module_store};

/// The largest module a client may send.
const MAX_MODULE_BYTES: usize = 256 << 20;

/// The routes, over the scheduler's declared libraries.
pub(crate) fn routes(catalog: LibraryCatalog) -> Router {
    Router::new()
        .route(
            "/api/ember/wasm/{sha256}",
            put(put_module)
                .get(get_module)
                .layer(DefaultBodyLimit::max(MAX_MODULE_BYTES)),
        )
        .route("/api/ember/functions", get(list))
        .route(
            "/api/ember/functions/{name}",
            put(declare).delete(drop_library),
        )
        .with_state(catalog)
}

fn refused(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    (status, format!("{reason}\n")).into_response()
}

async fn put_module(Path(sha256): Path<String>, body: Bytes) -> Response {
    if !is_sha256(&sha256) {
        return refused(
            StatusCode::BAD_REQUEST,
            "a module is sent under its SHA-256",
        );
    }
    let store = module_store();
    match tokio::task::spawn_blocking(move || store.put(&body, Some(&sha256))).await {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => refused(StatusCode::BAD_REQUEST, e),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn get_module(Path(sha256): Path<String>) -> Response {
    let store = module_store();
    if !is_sha256(&sha256) || !store.holds(&sha256) {
        return refused(StatusCode::NOT_FOUND, format!("no module {sha256}"));
    }
    match store.get(&sha256) {
        Ok(bytes) => (
            [("content-type", "application/wasm")],
            Bytes::from(bytes.to_vec()),
        )
            .into_response(),
        Err(e) => refused(StatusCode::NOT_FOUND, e),
    }
}

async fn list(State(catalog): State<LibraryCatalog>) -> Response {
    Json(catalog.entries()).into_response()
}

async fn declare(
    State(catalog): State<LibraryCatalog>,
    Path(name): Path<String>,
    Json(entry): Json<LibraryEntry>,
) -> Response {
    if entry.descriptor.library != name {
        return refused(
            StatusCode::BAD_REQUEST,
            format!(
                "the library is called `{}`, not `{name}`",
                entry.descriptor.library
            ),
        );
    }
    // The module must be here, compile, and have what the entry names.
    let checked = entry.clone();
    match tokio::task::spawn_blocking(move || entry_library(&checked)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return refused(StatusCode::BAD_REQUEST, e),
        Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
    match catalog.put(entry) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn drop_library(State(catalog): State<LibraryCatalog>, Path(name): Path<String>) -> Response {
    match catalog.remove(&name) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => refused(
            StatusCode::NOT_FOUND,
            format!("no function library `{name}`"),
        ),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
