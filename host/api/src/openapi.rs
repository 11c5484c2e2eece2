//! The OpenAPI 3.1 document of the node's HTTP API, served at `/openapi.json`. The web app uses
//! nothing that is not in it (a test checks every path the app fetches).

use serde_json::{Value, json};

fn param(name: &str, what: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": what, "schema": {"type": "string"}})
}

fn height_param() -> Value {
    json!({"name": "height", "in": "query", "required": false, "description": "Prove at this height (default: the head)", "schema": {"type": "integer", "minimum": 0}})
}

fn ok(description: &str) -> Value {
    json!({
        "200": {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}},
        "default": {"$ref": "#/components/responses/Error"}
    })
}

fn get(summary: &str, params: Vec<Value>, answer: &str) -> Value {
    json!({"get": {"summary": summary, "parameters": params, "responses": ok(answer)}})
}

pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "gridledger node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A gridledger node: the chain, the market contracts, devices and plugins. Amounts: tokens in micro-tokens, energy in Wh, power in W, prices in micro-tokens per kWh. Errors are JSON {error, code}."
        },
        "paths": {
            "/v1/status": get("Chain status: height, finalized height, head, state root, mempool size, validators, settled periods", vec![], "Status"),
            "/v1/txs": {"post": {
                "summary": "Submit a signed transaction",
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": {"type": "object", "required": ["tx"], "properties": {"tx": {"type": "string", "description": "hex of borsh(SignedTx)"}}}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }},
                "responses": {
                    "202": {"description": "Admitted: {hash}", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "503": {"description": "busy: the mempool is full", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "default": {"$ref": "#/components/responses/Error"}
                }
            }},
            "/v1/txs/{hash}": get("A transaction: pending, or included with its receipt and proof bundle", vec![param("hash", "transaction hash, hex")], "Transaction"),
            "/v1/blocks/{id}": get("A block: header, transaction hashes, receipts", vec![param("id", "height, block hash, or latest")], "Block"),
            "/v1/accounts/{address}": get("Balance, nonce and roles of an account", vec![param("address", "account address, hex")], "Account"),
            "/v1/accounts/{address}/proof": get("State proof of an account", vec![param("address", "account address, hex"), height_param()], "Proof bundle"),
            "/v1/state/{key}/proof": get("State proof of any key", vec![param("key", "state key, hex"), height_param()], "Proof bundle"),
            "/v1/state/proofs": {"get": {
                "summary": "State proofs of several keys into one header, with its finality certificate: a bundle for `gridledger verify`",
                "description": "A contract's storage key is 04 ‖ contract address ‖ its own key. The SDK encodes a map key as the namespace's bytes (0x00 escaped as 00 ff) ended by 00 00, then each key part: integers big-endian, addresses as their 32 bytes. The market keeps a period's trades in pages of 32 under namespace `trp`, key (period u64, page u64): the trade at position index of the `trades` query is item index mod 32 of page index / 32 (the value is a postcard list of trades); a period's summary under `per` (period); a participant's meter reading under `rd` (period, participant). Values are postcard-encoded.",
                "parameters": [
                    {"name": "keys", "in": "query", "required": true, "description": "1 to 64 state keys, hex, separated by commas", "schema": {"type": "string"}},
                    height_param()
                ],
                "responses": ok("Proof bundle: header, proofs (key, value, height, proof), finality")
            }},
            "/v1/contracts/{address}": get("A contract: code hash, name, version, admin, label, balance", vec![param("address", "contract address, hex")], "Contract"),
            "/v1/contracts/{address}/query": {"post": {
                "summary": "Ask a contract a question (no transaction). The market answers config, stats, period, orders, trades, parties, points, escrow, price, meter, debt, grid, statement; pricing answers params, price, subsidy, fees, fee_history.",
                "parameters": [param("address", "contract address, hex")],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}, "example": {"period": {"period": 12}}}}},
                "responses": ok("The contract's JSON answer")
            }},
            "/v1/labels/{label}": get("Address of a genesis contract by label", vec![param("label", "e.g. market, pricing")], "Address"),
            "/v1/directory": get("Names genesis gives accounts (with roles) and contracts", vec![], "Directory"),
            "/v1/proposals": get("The latest 200 governance proposals, newest first: action, votes, status, enactment", vec![], "Proposals"),
            "/v1/proposals/{id}": get("A governance proposal: action, votes, status", vec![param("id", "proposal number")], "Proposal"),
            "/v1/statements/{address}": {"get": {
                "summary": "A participant's market statement for one UTC day of chain time (the periods that start that day, once settled): energy sold and bought, average prices, wheeling, transaction and congestion fees, subsidy, penalties, grid energy, points, net, and each period's lines",
                "parameters": [param("address", "account address, hex"), {"name": "day", "in": "query", "required": true, "description": "YYYY-MM-DD", "schema": {"type": "string"}}],
                "responses": ok("The statement")
            }},
            "/v1/devices": get("Registered devices: owner, kind, rated power, revoked, plugin code hash, latest accepted reading", vec![], "Devices"),
            "/v1/plugins": get("This node's device plugins: state, model, version, code hash, polls, failures, restarts, readings, swap history (404 if it runs none). Swaps are on the admin listener, not here", vec![], "Plugins"),
            "/v1/events": {"get": {
                "summary": "Server-sent events: one `block` event per committed block (height, hash, time_ms, proposer, tx_count, receipt_count, gas_used, finality_latency_ms, event kinds, and the view and signer indices of the certificate that finalized it), with the height as the event id. Reconnecting with Last-Event-ID replays the events missed (up to the last 512).",
                "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics: block height, finality latency, mempool size, gas per block, plugin polls and failures, peers connected",
                "responses": {"200": {"description": "OpenMetrics text", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}}
            }},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}}
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "required": ["error", "code"], "properties": {
                    "error": {"type": "string", "description": "what was wrong"},
                    "code": {"type": "string", "description": "stable identifier: malformed, bad_signature, wrong_chain_id, nonce_replayed, nonce_gap, gas_limit_too_low, insufficient_fee_balance, busy, device_sender, not_found, contract_error, ..."}
                }}
            },
            "responses": {
                "Error": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    /// Every path the web app fetches is documented.
    #[test]
    fn the_app_uses_only_documented_paths() {
        let doc = super::document();
        let paths = doc["paths"].as_object().unwrap();
        // A used path matches a documented one segment by segment, and every query parameter
        // it sends is documented for that path.
        let matches = |used: &str| {
            let (path, query) = used.split_once('?').unwrap_or((used, ""));
            paths.iter().any(|(p, item)| {
                let (a, b): (Vec<&str>, Vec<&str>) =
                    (p.split('/').collect(), path.split('/').collect());
                let documented = |name: &str| {
                    item.as_object().unwrap().values().any(|op| {
                        op["parameters"].as_array().is_some_and(|ps| {
                            ps.iter().any(|q| q["in"] == "query" && q["name"] == name)
                        })
                    })
                };
                a.len() == b.len()
                    && a.iter()
                        .zip(&b)
                        .all(|(x, y)| x == y || x.starts_with('{') || y.starts_with("${"))
                    && query
                        .split('&')
                        .filter(|q| !q.is_empty())
                        .all(|q| documented(q.split('=').next().unwrap()))
            })
        };
        let app = include_str!("../web/app.js");
        let mut used = Vec::new();
        for part in app
            .split(['"', '`'])
            .filter(|s| s.starts_with("/v1/") || *s == "/metrics")
        {
            used.push(part.to_string());
        }
        assert!(used.len() >= 6, "{used:?}");
        for u in used {
            assert!(
                matches(&u),
                "the app uses {u}, which /openapi.json does not document"
            );
        }
    }
}
