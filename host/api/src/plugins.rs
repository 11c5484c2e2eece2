//! Operators' routes for the node's device plugins: their health, and hot swap.

use crate::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use gridledger_devices::PluginSet;
use serde_json::{Value, json};
use std::sync::Arc;

/// `/v1/plugins` (status of each plugin) and `/v1/plugins/{target}/swap` (body: the new
/// component; `target` is a plugin id or a device name).
pub fn router(set: Arc<PluginSet>) -> Router {
    Router::new()
        .route("/v1/plugins", get(statuses))
        .route("/v1/plugins/{target}/swap", post(swap))
        .with_state(set)
}

async fn statuses(State(set): State<Arc<PluginSet>>) -> Json<Value> {
    Json(json!({ "plugins": set.statuses() }))
}

async fn swap(
    State(set): State<Arc<PluginSet>>,
    Path(target): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if set.find(&target).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no plugin or device named {target:?}"),
        ));
    }
    match set.swap(&target, &body).await {
        Ok(report) => Ok(Json(json!(report))),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "swap_refused",
            e,
        )),
    }
}
