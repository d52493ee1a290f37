//! The shared catalog over REST, for Ember's own clients (Flight SQL
//! clients reach it through their sessions):
//!
//! - `GET /api/ember/catalog`: every table, as `{"schema", "table", "plan"}`
//!   (the scan encoded with Ember's logical codec, base64) and every schema;
//! - `PUT /api/ember/catalog/{schema}/{table}` with `{"plan": …}`: registers
//!   or replaces a table;
//! - `DELETE /api/ember/catalog/{schema}/{table}`: drops it;
//! - `PUT`/`DELETE /api/ember/catalog/{schema}`: creates or drops a schema.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use datafusion::catalog::CatalogProvider;
use ember_catalog::SharedCatalog;
use serde_json::{Value, json};

/// The catalog's routes.
pub(crate) fn routes(catalog: SharedCatalog) -> Router {
    Router::new()
        .route("/api/ember/catalog", get(list))
        .route(
            "/api/ember/catalog/{schema}",
            put(create_schema).delete(drop_schema),
        )
        .route(
            "/api/ember/catalog/{schema}/{table}",
            put(put_table).delete(drop_table),
        )
        .with_state(catalog)
}

fn refused(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    (status, format!("{reason}\n")).into_response()
}

async fn list(State(catalog): State<SharedCatalog>) -> Response {
    let tables: Vec<Value> = catalog
        .encoded_tables()
        .into_iter()
        .map(|(schema, table, plan)| {
            json!({ "schema": schema, "table": table, "plan": STANDARD.encode(plan) })
        })
        .collect();
    Json(json!({ "schemas": catalog.schema_names(), "tables": tables })).into_response()
}

async fn put_table(
    State(catalog): State<SharedCatalog>,
    Path((schema, table)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let Some(plan) = body["plan"].as_str() else {
        return refused(StatusCode::BAD_REQUEST, "the body needs a \"plan\"");
    };
    let Ok(plan) = STANDARD.decode(plan) else {
        return refused(StatusCode::BAD_REQUEST, "the plan is not base64");
    };
    match catalog.put_encoded(&schema, &table, plan) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(
            StatusCode::BAD_REQUEST,
            format!("cannot register {schema}.{table}: {e}"),
        ),
    }
}

async fn drop_table(
    State(catalog): State<SharedCatalog>,
    Path((schema, table)): Path<(String, String)>,
) -> Response {
    let Some(provider) = catalog.schema(&schema) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match provider.deregister_table(&table) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn create_schema(
    State(catalog): State<SharedCatalog>,
    Path(schema): Path<String>,
) -> Response {
    match catalog.create_schema(&schema) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn drop_schema(State(catalog): State<SharedCatalog>, Path(schema): Path<String>) -> Response {
    match catalog.deregister_schema(&schema, true) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
