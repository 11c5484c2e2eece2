//! The web app and everything around it: the pages (`/`), the directory of genesis names the
//! pages show, the OpenAPI document, the live block stream and the metrics, merged with the
//! JSON API into the router a node serves.

use crate::live::{self, Live};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use gridledger_devices::PluginSet;
use gridledger_node::Node;
use gridledger_node::validator::ValidatorStatus;
use serde_json::{Value, json};
use std::sync::Arc;

/// The app's files, built into the binary (no CDN: uPlot and the page's BLS check, bundled
/// from @noble/curves, are vendored, pinned by `web/package-lock.json`).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_str!("../web/app.css"),
    ),
    (
        "/vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/vendor/uPlot.iife.min.js"),
    ),
    (
        "/vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../web/vendor/uPlot.min.css"),
    ),
    (
        "/vendor/bls12-381.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/vendor/bls12-381.iife.min.js"),
    ),
];

/// Requests served at once; more wait their turn (and their timeout). Server-sent event
/// streams are not counted here: they have a cap of their own ([`live::MAX_EVENT_STREAMS`]).
pub const MAX_CONCURRENT_REQUESTS: usize = 256;
/// A request not answered by then gets `408`.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Everything a node serves over HTTP: the JSON API, the plugin routes if it runs plugins,
/// the web app, `/openapi.json`, `/v1/events` and `/metrics`. Call on a tokio runtime.
pub fn app(
    node: Arc<Node>,
    plugins: Option<Arc<PluginSet>>,
    validator: Option<Arc<ValidatorStatus>>,
) -> Router {
    let live = Live::start(node.clone(), plugins.clone(), validator);
    let mut router = crate::router(node.clone())
        .merge(
            Router::new()
                .route("/v1/directory", get(directory))
                .with_state(node),
        )
        .merge(
            Router::new()
                .route("/metrics", get(live::metrics))
                .with_state(live.clone()),
        )
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        );
    for (path, mime, body) in ASSETS {
        router = router.route(
            path,
            get(move || async move { ([(header::CONTENT_TYPE, *mime)], *body).into_response() }),
        );
    }
    if let Some(set) = plugins {
        router = router.merge(crate::plugins::router(set));
    }
    // Every request but the long-lived event streams: bounded in number and in time.
    let router = router
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ));
    router.merge(
        Router::new()
            .route("/v1/events", get(live::events))
            .with_state(live),
    )
}

/// `GET /v1/directory`: the names genesis gives accounts and contracts (public, as genesis is).
async fn directory(State(node): State<Arc<Node>>) -> Json<Value> {
    let g = node.genesis();
    let accounts: Vec<Value> = g
        .addresses()
        .into_iter()
        .map(|(name, address)| {
            let roles = g
                .accounts
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.roles.clone())
                .unwrap_or_default();
            json!({"name": name, "address": address.to_hex(), "roles": roles})
        })
        .collect();
    let contracts: Vec<Value> = g
        .contracts
        .iter()
        .filter_map(|c| {
            let addr = node.contract_by_label(&c.label).ok().flatten()?;
            Some(json!({"label": c.label, "address": addr.to_hex()}))
        })
        .collect();
    Json(json!({"accounts": accounts, "contracts": contracts}))
}
