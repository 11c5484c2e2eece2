//! A small blocking client of the node's API.

use anyhow::{Context, Result, bail};
use gridledger_types::{Keypair, Payload, TxBody};
use serde_json::Value;
use std::time::{Duration, Instant};

pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
    /// Sent as `Authorization: Bearer ...` (the admin listener's token).
    bearer: Option<String>,
}

/// How long to wait for a submitted transaction to be included.
const INCLUSION_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::blocking::Client::new(),
            bearer: None,
        }
    }

    /// A client of a node's admin listener, with the token read from `token_file`.
    pub fn admin(base: &str, token_file: &std::path::Path) -> Result<Client> {
        let token = gridledger_keyfile::read(token_file).context("reading the admin token")?;
        let mut c = Client::new(base);
        c.bearer = Some(token.trim().to_string());
        Ok(c)
    }

    fn authorized(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.bearer {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    fn check(resp: reqwest::blocking::Response) -> Result<Value> {
        let status = resp.status();
        let body: Value = resp.json().context("the node's answer is not JSON")?;
        if !status.is_success() {
            bail!(
                "{} ({status}): {}",
                body["code"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or("")
            );
        }
        Ok(body)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let resp = self
            .authorized(self.http.get(format!("{}{path}", self.base)))
            .send()
            .with_context(|| format!("reaching {}", self.base))?;
        Self::check(resp)
    }

    /// `GET /v1/txs/{hash}`, asked again (for up to 30 s) while the transaction is included
    /// but its block's header is not certified yet. The last answer is returned either way.
    pub fn tx_once_certified(&self, hash: &str) -> Result<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let v = self.get(&format!("/v1/txs/{hash}"))?;
            let waiting = v["status"] == "included" && v["proof"]["finality"].is_null();
            if !waiting || std::time::Instant::now() >= deadline {
                if waiting {
                    eprintln!(
                        "note: the block's header is not certified yet; the bundle is not final"
                    );
                }
                return Ok(v);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    pub fn post_json(&self, path: &str, body: Vec<u8>) -> Result<Value> {
        self.post_bytes(path, body, "application/json")
    }

    pub fn post_bytes(&self, path: &str, body: Vec<u8>, content_type: &str) -> Result<Value> {
        let resp = self
            .authorized(self.http.post(format!("{}{path}", self.base)))
            .header("content-type", content_type)
            .body(body)
            .send()
            .with_context(|| format!("reaching {}", self.base))?;
        Self::check(resp)
    }

    /// Signs `payload` with the sender's next nonce, submits it and waits for its receipt.
    pub fn sign_submit_wait(
        &self,
        key: &Keypair,
        payload: Payload,
        gas: Option<u64>,
    ) -> Result<Value> {
        let status = self.get("/v1/status")?;
        let chain_id = status["chain_id"]
            .as_str()
            .context("status has no chain_id")?
            .to_string();
        let account = self.get(&format!("/v1/accounts/{}", key.address()))?;
        let nonce = account["nonce"].as_u64().context("account has no nonce")?;
        let gas_limit = gas.unwrap_or_else(|| default_gas(&payload));
        let tx = TxBody {
            chain_id,
            sender: key.address(),
            nonce,
            gas_limit,
            payload,
        }
        .sign(key);
        let body = serde_json::to_vec(&serde_json::json!({"tx": hex::encode(tx.encode())}))?;
        let hash = self.post_json("/v1/txs", body)?["hash"]
            .as_str()
            .context("no hash in answer")?
            .to_string();
        let deadline = Instant::now() + INCLUSION_TIMEOUT;
        loop {
            let v = self.get(&format!("/v1/txs/{hash}"))?;
            if v["status"] == "included" {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("transaction {hash} not included after {INCLUSION_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Enough gas for the payload's size plus 20M of execution.
pub fn default_gas(payload: &Payload) -> u64 {
    let g = gridledger_vm::GasSchedule::default();
    let size = match payload {
        Payload::StoreCode { wasm } => wasm.len() as u64 * (g.store_code_per_byte + g.tx_per_byte),
        _ => 0,
    };
    g.tx_base + 4096 * g.tx_per_byte + size + 20_000_000
}
