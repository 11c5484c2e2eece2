//! The operator's door: routes that change what a node does (today: device plugin swaps), on
//! a listener of their own (a free loopback port by default), apart from the public API.
//!
//! Every request must carry `Authorization: Bearer TOKEN`, the token a node keeps in
//! `DATA_DIR/admin.token` (created 0600 on first start). A browser cannot be made to send it:
//! a page the operator visits does not know the token, and a request from a page (any
//! `Origin` but this listener's own) or through a rebound DNS name (a `Host` that is not this
//! listener's address or `localhost`) is refused before the token is even looked at.

use crate::ApiError;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gridledger_devices::PluginSet;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

/// The token file's name in a node's data directory.
pub const TOKEN_FILE: &str = "admin.token";
/// Largest component a swap may upload.
pub const MAX_COMPONENT_BYTES: usize = 16 << 20;

/// The secret an operator's requests carry.
#[derive(Clone)]
pub struct AdminToken {
    secret: String,
    path: PathBuf,
}

impl AdminToken {
    /// Reads the token at `path`, or creates one (32 random bytes, hex, mode 0600). A token
    /// file others can read is refused.
    pub fn load_or_create(path: &FsPath) -> Result<AdminToken, gridledger_keyfile::KeyFileError> {
        let secret =
            gridledger_keyfile::read_or_create(path, || hex::encode(rand::random::<[u8; 32]>()))?;
        Ok(AdminToken {
            secret: secret.trim().to_string(),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &FsPath {
        &self.path
    }

    /// The token itself (for the CLI's requests and for tests).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Compares in time independent of where the first difference is.
    fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.secret.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

struct Door {
    token: AdminToken,
    addr: SocketAddr,
}

/// The admin listener's router: `GET /v1/plugins`, `POST /v1/plugins/{target}/swap` (body:
/// the new component), `POST /v1/plugins/{target}/stage` (body: the new component; started
/// and health-checked beside the running one) and `POST /v1/plugins/{target}/switch` (puts
/// the staged one in place), for a listener bound at `addr`.
pub fn app(plugins: Option<Arc<PluginSet>>, token: AdminToken, addr: SocketAddr) -> Router {
    let door = Arc::new(Door { token, addr });
    let mut router = Router::new();
    if let Some(set) = plugins {
        router = router.merge(
            Router::new()
                .route("/v1/plugins", get(statuses))
                .route("/v1/plugins/{target}/swap", post(swap))
                .route("/v1/plugins/{target}/stage", post(stage))
                .route("/v1/plugins/{target}/switch", post(switch))
                .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
                .with_state(set),
        );
    }
    router
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such admin route")
        })
        // One operator at a time is plenty; a flood waits here, not in the plugin runtime.
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(4))
        // Outside the limit: a refused request never holds one of the operator's places.
        .layer(middleware::from_fn_with_state(door, guard))
}

/// How long a refused request's body is read before the refusal is sent anyway.
const REFUSED_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Refused uploads read at once; beyond, a refusal is answered without reading.
const REFUSED_BODY_READERS: usize = 2;
static REFUSED_READERS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(REFUSED_BODY_READERS);

/// Host, then Origin, then the token.
async fn guard(State(door): State<Arc<Door>>, req: Request, next: Next) -> Response {
    if let Err(e) = check(&door, req.headers()) {
        discard_body(req).await;
        return e.into_response();
    }
    next.run(req).await
}

/// Reads and drops what a refused client is still sending, without keeping it: closing on a
/// half-read upload resets the connection, and the client saw a broken connection instead of
/// the refusal (found as a flaky `IncompleteMessage` in the devnet test's token checks). At
/// most [`MAX_COMPONENT_BYTES`], for [`REFUSED_BODY_WAIT`], [`REFUSED_BODY_READERS`] at once,
/// and never for a client that waits for `100 Continue` (it has sent nothing yet): a
/// refused client cannot hold the listener, its memory or the operator's places (found by
/// review of the first version, which buffered 16 MiB for 5 s inside the listener's
/// concurrency limit).
async fn discard_body(req: Request) {
    if req.headers().contains_key(header::EXPECT) {
        return;
    }
    let Ok(_reader) = REFUSED_READERS.try_acquire() else {
        return;
    };
    let mut frames = req.into_body().into_data_stream();
    let _ = tokio::time::timeout(REFUSED_BODY_WAIT, async {
        let mut read = 0usize;
        while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut frames).await {
            read += chunk.len();
            if read > MAX_COMPONENT_BYTES {
                break;
            }
        }
    })
    .await;
}

fn check(door: &Door, headers: &HeaderMap) -> Result<(), ApiError> {
    let forbidden = |code, why: String| Err(ApiError::new(StatusCode::FORBIDDEN, code, why));
    let port = door.addr.port();
    let own_hosts = [
        door.addr.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ];
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !own_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return forbidden(
            "bad_host",
            format!("Host {host:?} is not this admin listener ({})", door.addr),
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let own = own_hosts
            .iter()
            .any(|h| origin.eq_ignore_ascii_case(&format!("http://{h}")));
        if !own {
            return forbidden(
                "foreign_origin",
                format!("requests from web pages ({origin}) may not reach the admin listener"),
            );
        }
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if !door.token.matches(presented.trim()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "admin requests need Authorization: Bearer TOKEN (the token is in {})",
                door.token.path().display()
            ),
        ));
    }
    Ok(())
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

async fn stage(
    State(set): State<Arc<PluginSet>>,
    Path(target): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    known(&set, &target)?;
    set.stage(&target, &body)
        .await
        .map(|r| Json(json!(r)))
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "swap_refused", e))
}

async fn switch(
    State(set): State<Arc<PluginSet>>,
    Path(target): Path<String>,
) -> Result<Json<Value>, ApiError> {
    known(&set, &target)?;
    set.switch(&target)
        .await
        .map(|r| Json(json!(r)))
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "swap_refused", e))
}

fn known(set: &PluginSet, target: &str) -> Result<(), ApiError> {
    match set.find(target) {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no plugin or device named {target:?}"),
        )),
    }
}
