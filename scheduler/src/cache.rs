//! The scheduler's side of cached datasets: it plans them, so it is the
//! process that asks executors which partitions they hold, and it answers
//! clients' storage and unpersist requests on its REST API:
//!
//! - `GET /api/ember/cache/{id}`: where the cache's partitions are held;
//! - `DELETE /api/ember/cache/{id}`: frees them on every executor.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ember_core::cache::{
    CacheStorage, ExecutorBlockDirectory, block_directory, set_block_directory, valid_cache_id,
};
use serde_json::json;

use crate::server::EmberSchedulerServer;

/// Makes the executors of `scheduler` this process's block directory.
pub(crate) fn install_block_directory(scheduler: &EmberSchedulerServer) {
    let executors = scheduler.state.executor_manager.clone();
    let directory = ExecutorBlockDirectory::new(Arc::new(move || {
        let executors = executors.clone();
        Box::pin(async move {
            match executors.get_executors_state().await {
                Ok(states) => states
                    .into_iter()
                    .map(|(metadata, _, _)| format!("{}:{}", metadata.host, metadata.port))
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list executors for cached partitions");
                    Vec::new()
                }
            }
        })
    }));
    if !set_block_directory(Arc::new(directory)) {
        tracing::debug!("a block directory was installed already");
    }
}

/// The cache routes.
pub(crate) fn routes() -> Router {
    Router::new().route("/api/ember/cache/{id}", get(storage).delete(unpersist))
}

/// A cache's storage as JSON.
pub(crate) fn storage_json(cache_id: &str, storage: &CacheStorage) -> serde_json::Value {
    let blocks: Vec<_> = storage
        .blocks
        .iter()
        .map(|b| {
            json!({
                "partition": b.partition,
                "partitions": b.partitions,
                "endpoint": b.endpoint,
                "rows": b.rows,
                "bytes": b.bytes,
                "medium": b.medium,
            })
        })
        .collect();
    json!({
        "cache_id": cache_id,
        "complete_partitions": storage.complete_partitions(),
        "blocks": blocks,
        "partitions_computed": storage.partitions_computed,
        "partitions_read_local": storage.partitions_read_local,
        "partitions_sent": storage.partitions_sent,
    })
}

fn not_a_cache_id(id: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("`{id}` is not a cache id\n"),
    )
        .into_response()
}

async fn storage(Path(id): Path<String>) -> Response {
    if !valid_cache_id(&id) {
        return not_a_cache_id(&id);
    }
    let directory = block_directory();
    match directory.storage(&id).await {
        Ok(storage) => axum::Json(storage_json(&id, &storage)).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn unpersist(Path(id): Path<String>) -> Response {
    if !valid_cache_id(&id) {
        return not_a_cache_id(&id);
    }
    let directory = block_directory();
    match directory.drop_cache(&id).await {
        Ok(freed) => axum::Json(json!({ "cache_id": id, "freed": freed })).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
