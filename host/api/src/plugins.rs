//! The public view of a node's device plugins: their health. Swapping one is the operator's
//! business, on the admin listener ([`crate::admin`]).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use gridledger_devices::PluginSet;
use serde_json::{Value, json};
use std::sync::Arc;

/// `GET /v1/plugins`: the status of each plugin (read-only).
pub fn router(set: Arc<PluginSet>) -> Router {
    Router::new()
        .route("/v1/plugins", get(statuses))
        .with_state(set)
}

async fn statuses(State(set): State<Arc<PluginSet>>) -> Json<Value> {
    Json(json!({ "plugins": set.statuses() }))
}
