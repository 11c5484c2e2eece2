//! The node's HTTP JSON API (axum). All routes are under `/v1`; errors are JSON
//! `{"error": message, "code": identifier}` with a 4xx status for the client's mistakes.

pub mod admin;
pub mod blocking;
pub mod live;
pub mod openapi;
pub mod plugins;
pub mod proofs;
pub mod statement;
pub mod web;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gridledger_node::{Node, NodeError, QueryError, TxStatus};
use gridledger_types::merkle::ListProof;
use gridledger_types::schema;
use gridledger_types::{Address, Block, Hash32, Receipt, SignedTx, hash::parse_hex32};
use proofs::{StateProofBundle, StateProofsBundle, TxProof};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.message, "code": self.code})),
        )
            .into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        tracing::error!("node error serving a request: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "node_error",
            e.to_string(),
        )
    }
}

impl From<gridledger_state::StoreError> for ApiError {
    fn from(e: gridledger_state::StoreError) -> Self {
        NodeError::from(e).into()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The `/v1` routes over a node.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/txs", post(submit_tx))
        .route("/v1/txs/{hash}", get(get_tx))
        .route("/v1/blocks/{id}", get(get_block))
        .route("/v1/accounts/{address}", get(get_account))
        .route("/v1/accounts/{address}/proof", get(account_proof))
        .route("/v1/contracts/{address}", get(get_contract))
        .route("/v1/contracts/{address}/query", post(query_contract))
        .route("/v1/labels/{label}", get(get_label))
        .route("/v1/devices", get(get_devices))
        .route("/v1/statements/{address}", get(statement::get_statement))
        .route("/v1/proposals", get(list_proposals))
        .route("/v1/proposals/{id}", get(get_proposal))
        .route("/v1/state/{key}/proof", get(state_proof))
        .route("/v1/state/proofs", get(state_proofs))
        .with_state(node)
}

/// Registered devices with their latest accepted readings.
async fn get_devices(State(node): State<Arc<Node>>) -> ApiResult<Json<Value>> {
    blocking::run(move || devices(&node)).await.map(Json)
}

fn devices(node: &Node) -> ApiResult<Value> {
    let devices: Vec<Value> = node
        .devices()?
        .into_iter()
        .map(|(id, d)| {
            json!({
                "device": id.to_hex(),
                "owner": d.owner.to_hex(),
                "kind": d.kind,
                "rated_power_w": d.rated_power_w,
                "revoked": d.revoked,
                "plugin": d.plugin.map(|h| h.to_hex()),
                "last_reading": d.last,
            })
        })
        .collect();
    Ok(json!({ "devices": devices }))
}

fn parse_address(s: &str) -> ApiResult<Address> {
    s.parse::<Address>()
        .map_err(|e| ApiError::bad("bad_address", format!("bad address {s:?}: {e}")))
}

fn parse_hash(s: &str) -> ApiResult<Hash32> {
    parse_hex32(s)
        .map(Hash32)
        .map_err(|e| ApiError::bad("bad_hash", format!("bad hash {s:?}: {e}")))
}

/// Figures kept up to date per block, answered on the async worker: no contract runs here,
/// and the one store read (the certified height) is a point lookup, so `/v1/status` stays
/// quick while the blocking jobs are all taken.
async fn status(State(node): State<Arc<Node>>) -> Json<Value> {
    let head = node.head();
    Json(json!({
        "chain_id": node.chain_id(),
        "role": node.role(),
        "height": head.height,
        "head_hash": head.hash().to_hex(),
        "time_ms": head.time_ms,
        "state_root": head.state_root.to_hex(),
        "mempool": node.mempool_len(),
        "genesis_hash": node.genesis_hash().to_hex(),
        "vm_config_hash": node.vm().config_hash().to_hex(),
        "gas_price_per_kgas": node.params().gas_price_per_kgas,
        "settled_periods": node.settled_periods(),
        // Every committed block's payload is final: validators commit only what consensus
        // finalized. A header is final to clients once a quorum certified its execution.
        "finalized_height": head.height,
        "certified_height": node.certified_height().unwrap_or(0),
        // false, or what differed: this node computed another header than a quorum certified.
        "diverged": node.diverged().map_or(json!(false), |why| json!(why)),
        "validators": node.validators().iter().enumerate().map(|(i, v)| json!({
            "index": i,
            "account": v.account,
            "address": v.address.to_hex(),
            "bls_public": hex::encode(v.bls.to_bytes()),
        })).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
struct SubmitBody {
    /// The signed transaction's canonical bytes, hex.
    tx: String,
}

/// Accepts `{"tx": "<hex>"}` or raw bytes (`application/octet-stream`).
async fn submit_tx(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = if is_json {
        let b: SubmitBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad("malformed", format!("body: {e}")))?;
        hex::decode(b.tx.trim_start_matches("0x"))
            .map_err(|e| ApiError::bad("malformed", format!("tx is not hex: {e}")))?
    } else {
        body.to_vec()
    };
    // Not among the blocking jobs: a submission's work is short (a signature check and a
    // point read), and submitting must not queue behind slow reads.
    let result = blocking::beside(move || node.submit(&bytes)).await?;
    match result {
        Ok(hash) => Ok((StatusCode::ACCEPTED, Json(json!({"hash": hash.to_hex()})))),
        // A full mempool is the node being busy, not the transaction being wrong: 503, so
        // clients know to retry.
        Err(r @ gridledger_node::Rejected::MempoolFull) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            r.code(),
            r.to_string(),
        )),
        // Likewise a sender with too many waiting: 429, retry once some are included.
        Err(
            r @ (gridledger_node::Rejected::TooManyPending { .. }
            | gridledger_node::Rejected::TooManyPendingBytes { .. }),
        ) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            r.code(),
            r.to_string(),
        )),
        Err(r) => Err(ApiError::bad(r.code(), r.to_string())),
    }
}

fn receipt_json(r: &Receipt) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    // Contract answers are JSON: show them as JSON, not hex, when they are.
    if let Ok(parsed) = serde_json::from_slice::<Value>(&r.result) {
        v["result_json"] = parsed;
    }
    v["success"] = Value::Bool(r.is_success());
    v
}

async fn get_tx(State(node): State<Arc<Node>>, Path(hash): Path<String>) -> ApiResult<Json<Value>> {
    let hash = parse_hash(&hash)?;
    blocking::run(move || tx_json(&node, hash)).await.map(Json)
}

fn tx_json(node: &Node, hash: Hash32) -> ApiResult<Value> {
    match node.tx_status(&hash)? {
        TxStatus::Pending => Ok(json!({"hash": hash.to_hex(), "status": "pending"})),
        TxStatus::Dropped(why) => {
            Ok(json!({"hash": hash.to_hex(), "status": "dropped", "reason": why}))
        }
        TxStatus::Unknown => Err(ApiError::not_found(format!(
            "no transaction {}",
            hash.to_hex()
        ))),
        TxStatus::Included {
            block,
            receipts,
            index,
        } => {
            let tx_bytes: Vec<Vec<u8>> = block.txs.iter().map(|t| t.encode()).collect();
            let receipt_bytes: Vec<Vec<u8>> = receipts.iter().map(|r| r.encode()).collect();
            let i = index as usize;
            let (Some(tx), Some(receipt)) = (block.txs.get(i), receipts.get(i)) else {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "node_error",
                    "index out of range",
                ));
            };
            let proof = TxProof {
                header: block.header.clone(),
                tx: tx_bytes[i].clone(),
                receipt: receipt.clone(),
                tx_proof: ListProof::build(&tx_bytes, index)
                    .ok_or_else(|| ApiError::bad("node_error", "proof"))?,
                receipt_proof: ListProof::build(&receipt_bytes, index)
                    .ok_or_else(|| ApiError::bad("node_error", "proof"))?,
                finality: finality(node, block.header.height)?,
            };
            Ok(json!({
                "hash": hash.to_hex(),
                "status": "included",
                "height": block.header.height,
                "index": index,
                "tx": tx,
                "receipt": receipt_json(receipt),
                "proof": proof,
            }))
        }
    }
}

fn block_json(block: &Block, receipts: &[Receipt]) -> Value {
    json!({
        "hash": block.header.hash().to_hex(),
        "header": block.header,
        "txs": block.txs.iter().map(|t| json!({"hash": t.hash().to_hex(), "sender": t.body.sender, "nonce": t.body.nonce, "payload": payload_kind(t)})).collect::<Vec<_>>(),
        "receipts": receipts.iter().map(receipt_json).collect::<Vec<_>>(),
    })
}

fn payload_kind(t: &SignedTx) -> &'static str {
    use gridledger_types::Payload::*;
    match t.body.payload {
        Transfer { .. } => "transfer",
        StoreCode { .. } => "store_code",
        Instantiate { .. } => "instantiate",
        Execute { .. } => "execute",
        Migrate { .. } => "migrate",
        Mint { .. } => "mint",
        Burn { .. } => "burn",
        Propose { .. } => "propose",
        Vote { .. } => "vote",
        RegisterDevice { .. } => "register_device",
        RevokeDevice { .. } => "revoke_device",
        Readings { .. } => "readings",
    }
}

/// `id` is a height, a block hash, or `latest`.
async fn get_block(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    blocking::run(move || block_by_id(&node, &id))
        .await
        .map(Json)
}

fn block_by_id(node: &Node, id: &str) -> ApiResult<Value> {
    let snap = node.snapshot()?;
    let height = if id == "latest" {
        node.head().height
    } else if let Ok(h) = id.parse::<u64>() {
        h
    } else {
        let hash = parse_hash(id)?;
        snap.height_of_block(&hash)?
            .ok_or_else(|| ApiError::not_found(format!("no block {id}")))?
    };
    let block = snap
        .block(height)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    let receipts = snap.receipts(height)?.unwrap_or_default();
    Ok(block_json(&block, &receipts))
}

async fn get_account(
    State(node): State<Arc<Node>>,
    Path(address): Path<String>,
) -> ApiResult<Json<Value>> {
    let who = parse_address(&address)?;
    let (acct, roles) = blocking::run(move || Ok(node.account(&who)?)).await?;
    Ok(Json(
        json!({"address": who, "balance": acct.balance, "nonce": acct.nonce, "roles": roles.names()}),
    ))
}

async fn get_contract(
    State(node): State<Arc<Node>>,
    Path(address): Path<String>,
) -> ApiResult<Json<Value>> {
    let who = parse_address(&address)?;
    blocking::run(move || {
        let snap = node.snapshot()?;
        let info = gridledger_vm::ledger::contract(&snap, &who)
            .map_err(|e| ApiError::from(NodeError::from(e)))?
            .ok_or_else(|| ApiError::not_found(format!("no contract at {address}")))?;
        let balance = gridledger_vm::ledger::account(&snap, &who)
            .map(|a| a.balance)
            .unwrap_or(0);
        Ok(json!({"address": who, "info": info, "balance": balance}))
    })
    .await
    .map(Json)
}

async fn get_label(
    State(node): State<Arc<Node>>,
    Path(label): Path<String>,
) -> ApiResult<Json<Value>> {
    blocking::run(move || {
        let addr = node
            .contract_by_label(&label)?
            .ok_or_else(|| ApiError::not_found(format!("no contract labelled {label}")))?;
        Ok(json!({"label": label, "address": addr}))
    })
    .await
    .map(Json)
}

/// The latest 200 proposals, newest first.
async fn list_proposals(State(node): State<Arc<Node>>) -> ApiResult<Json<Value>> {
    blocking::run(move || Ok(json!({ "proposals": node.proposals(200)? })))
        .await
        .map(Json)
}

async fn get_proposal(
    State(node): State<Arc<Node>>,
    Path(id): Path<u64>,
) -> ApiResult<Json<Value>> {
    blocking::run(move || {
        let p = node
            .proposal(id)?
            .ok_or_else(|| ApiError::not_found(format!("no proposal {id}")))?;
        Ok(serde_json::to_value(p).unwrap_or(Value::Null))
    })
    .await
    .map(Json)
}

/// The body is the query message (JSON); the answer is the contract's JSON answer.
async fn query_contract(
    State(node): State<Arc<Node>>,
    Path(address): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = parse_address(&address)?;
    let n = node.clone();
    // Not among the blocking jobs: queries have their own limit (the node's query pool), and
    // a flood of them must not take the places reads need.
    let out = blocking::beside(move || n.query(&who, &body)).await?;
    match out {
        Ok(bytes) => Ok((
            [("content-type", "application/json")],
            if bytes.is_empty() {
                b"null".to_vec()
            } else {
                bytes
            },
        )
            .into_response()),
        Err(QueryError::Call(e)) => {
            let status = if matches!(e, gridledger_vm::CallError::NotFound(_)) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            let code = match e.code() {
                gridledger_types::ErrorCode::OutOfGas => "out_of_gas",
                gridledger_types::ErrorCode::Trap => "trap",
                gridledger_types::ErrorCode::NotFound => "not_found",
                gridledger_types::ErrorCode::InvalidResult => "invalid_result",
                _ => "contract_error",
            };
            Err(ApiError::new(status, code, e.to_string()))
        }
        Err(QueryError::Busy(n)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{n} queries are running; retry shortly"),
        )),
        Err(QueryError::TimedOut(d)) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "query_timeout",
            format!("no answer within {d:?}; the node is busy or the query is slow"),
        )),
        Err(QueryError::Node(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct ProofParams {
    height: Option<u64>,
}

fn prove(node: &Node, key: &[u8], height: Option<u64>) -> ApiResult<StateProofBundle> {
    let StateProofsBundle {
        header,
        mut proofs,
        finality,
    } = prove_keys(node, &[key.to_vec()], height)?;
    Ok(StateProofBundle {
        header,
        proof: proofs.remove(0),
        finality,
    })
}

/// Proves `keys` into the header at `height` (default: the head).
fn prove_keys(node: &Node, keys: &[Vec<u8>], height: Option<u64>) -> ApiResult<StateProofsBundle> {
    let snap = node.snapshot()?;
    // By default, the latest header a quorum certified (so the bundle is final), or the head
    // on a chain without validators.
    let height = match height {
        Some(h) => h,
        None => match node.certified_height()? {
            0 => node.head().height,
            h => h,
        },
    };
    let header = snap
        .block(height)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?
        .header;
    let proofs = keys
        .iter()
        .map(|k| snap.prove(k, height))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StateProofsBundle {
        header,
        proofs,
        finality: finality(node, height)?,
    })
}

/// The finality part of a proof bundle: the execution certificate of the header, once a
/// quorum has certified it (`None` before). A node stores only certificates over its own
/// headers, so one whose execution diverged never calls what it computed final.
fn finality(node: &Node, height: u64) -> ApiResult<Option<proofs::Finality>> {
    Ok(node
        .execution_certificate(height)?
        .map(|certificate| proofs::Finality { certificate }))
}

/// Proof of a raw state key (hex) at a height (default: latest).
async fn state_proof(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    Query(p): Query<ProofParams>,
) -> ApiResult<Json<StateProofBundle>> {
    let key =
        hex::decode(&key).map_err(|e| ApiError::bad("bad_key", format!("key is not hex: {e}")))?;
    blocking::run(move || prove(&node, &key, p.height))
        .await
        .map(Json)
}

/// Most keys one `/v1/state/proofs` request may ask for.
const MAX_PROOF_KEYS: usize = 64;

#[derive(Deserialize)]
struct ProofsParams {
    /// State keys, hex, separated by commas.
    keys: String,
    height: Option<u64>,
}

/// Proofs of several raw state keys into one header: a record and what it depends on.
async fn state_proofs(
    State(node): State<Arc<Node>>,
    Query(p): Query<ProofsParams>,
) -> ApiResult<Json<StateProofsBundle>> {
    let keys = p
        .keys
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| {
            hex::decode(k)
                .map_err(|e| ApiError::bad("bad_key", format!("key {k:?} is not hex: {e}")))
        })
        .collect::<ApiResult<Vec<Vec<u8>>>>()?;
    if keys.is_empty() || keys.len() > MAX_PROOF_KEYS {
        return Err(ApiError::bad(
            "bad_key",
            format!("ask for 1 to {MAX_PROOF_KEYS} keys, not {}", keys.len()),
        ));
    }
    blocking::run(move || prove_keys(&node, &keys, p.height))
        .await
        .map(Json)
}

/// Proof of an account's balance and nonce.
async fn account_proof(
    State(node): State<Arc<Node>>,
    Path(address): Path<String>,
    Query(p): Query<ProofParams>,
) -> ApiResult<Json<StateProofBundle>> {
    let who = parse_address(&address)?;
    blocking::run(move || prove(&node, &schema::account_key(&who), p.height))
        .await
        .map(Json)
}
