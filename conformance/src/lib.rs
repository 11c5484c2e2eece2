//! Conformance vectors: inputs and the outputs this implementation produces from them, stored
//! as JSON under `conformance/vectors/`, so another implementation can check itself against
//! ours byte for byte.
//!
//! Suites:
//! - `tx_encoding.json`: transaction bodies → signing bytes, signed bytes, signature, hash;
//! - `block_hash.json`: headers → canonical encoding and block hash;
//! - `merkle.json`: lists → root, and a proof for every index;
//! - `vm_errors.json`: messages to the `misbehave` contract (its component is the fixture
//!   `misbehave.wasm`) → receipt error code, message fragment, gas used and fee;
//! - `market.json`: genesis + blocks of market transactions → receipts, events, balances and
//!   state root after each block (fixtures `pricing.wasm`, `market.wasm`; see [`market`]).
//!
//! [`generate`] writes the suites from this implementation; [`check`] recomputes them and
//! reports every difference.

pub mod market;

use anyhow::{Context, Result, bail};
use gridledger_node::testing::{TX_GAS, TestChain};
use gridledger_types::merkle::{ListProof, list_root};
use gridledger_types::{Address, Hash32, Header, Keypair, Payload, TxBody, codec};
use serde_json::{Value, json};
use std::path::Path;

/// One suite: a name and a function computing its vectors.
struct Suite {
    file: &'static str,
    compute: fn(&Path) -> Result<Value>,
}

const SUITES: &[Suite] = &[
    Suite {
        file: "tx_encoding.json",
        compute: tx_encoding,
    },
    Suite {
        file: "block_hash.json",
        compute: block_hash,
    },
    Suite {
        file: "merkle.json",
        compute: merkle,
    },
    Suite {
        file: "vm_errors.json",
        compute: vm_errors,
    },
    Suite {
        file: "market.json",
        compute: market_scenarios,
    },
];

/// Writes every suite into `dir`.
pub fn generate(dir: &Path) -> Result<()> {
    for s in SUITES {
        let v = (s.compute)(dir).with_context(|| s.file)?;
        std::fs::write(dir.join(s.file), serde_json::to_string_pretty(&v)? + "\n")?;
    }
    Ok(())
}

/// Recomputes every suite and compares with the files in `dir`. Returns the number of
/// vectors checked.
pub fn check(dir: &Path) -> Result<usize> {
    let mut failures = Vec::new();
    let mut count = 0;
    for s in SUITES {
        let path = dir.join(s.file);
        let stored: Value = serde_json::from_str(
            &std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?,
        )?;
        let ours = (s.compute)(dir).with_context(|| s.file)?;
        let (a, b) = (stored["vectors"].as_array(), ours["vectors"].as_array());
        let (Some(a), Some(b)) = (a, b) else {
            bail!("{}: no vectors", s.file)
        };
        if a.len() != b.len() {
            failures.push(format!(
                "{}: {} vectors stored, {} computed",
                s.file,
                a.len(),
                b.len()
            ));
        }
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            count += 1;
            if x != y {
                failures.push(format!(
                    "{} #{i} ({}):\n  stored:   {x}\n  computed: {y}",
                    s.file, x["description"]
                ));
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} conformance failure(s):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(count)
}

fn tx_encoding(_: &Path) -> Result<Value> {
    let alice = Keypair::from_seed_phrase("conformance alice");
    let bodies = vec![
        (
            "transfer",
            Payload::Transfer {
                to: Address([0x11; 32]),
                amount: 1_000,
            },
        ),
        (
            "store code",
            Payload::StoreCode {
                wasm: vec![0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0],
            },
        ),
        (
            "instantiate with admin and funds",
            Payload::Instantiate {
                code_hash: Hash32([0x22; 32]),
                msg: br#"{"start":1}"#.to_vec(),
                funds: 5,
                label: "counter".into(),
                admin: Some(Address([0x33; 32])),
            },
        ),
        (
            "execute",
            Payload::Execute {
                contract: Address([0x44; 32]),
                msg: br#"{"increment":{"by":2}}"#.to_vec(),
                funds: 0,
            },
        ),
        (
            "migrate",
            Payload::Migrate {
                contract: Address([0x44; 32]),
                code_hash: Hash32([0x55; 32]),
                msg: b"{}".to_vec(),
            },
        ),
        (
            "mint",
            Payload::Mint {
                to: Address([0x66; 32]),
                amount: u64::MAX,
            },
        ),
        (
            "burn",
            Payload::Burn {
                amount: 7,
                payout_ref: "bank-ref-ü".into(),
            },
        ),
    ];
    let vectors: Vec<Value> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, (description, payload))| {
            let body = TxBody {
                chain_id: "conformance".into(),
                sender: alice.address(),
                nonce: i as u64,
                gas_limit: 100_000 + i as u64,
                payload,
            };
            let tx = body.clone().sign(&alice);
            json!({
                "description": description,
                "signer_seed_phrase": "conformance alice",
                "body": body,
                "signing_bytes": hex::encode(body.signing_bytes()),
                "signature": hex::encode(tx.signature.0),
                "tx_bytes": hex::encode(tx.encode()),
                "tx_hash": tx.hash().to_hex(),
            })
        })
        .collect();
    Ok(json!({
        "about": "Signing bytes are the domain tag 'gridledger/tx/v1' followed by borsh(TxBody). tx_bytes is borsh(SignedTx). tx_hash is sha256('gridledger/txhash/v1' || tx_bytes). Keys derive from the seed phrase as sha256('gridledger/dev-seed/v1' || phrase) (dev only). ed25519 signatures are deterministic.",
        "vectors": vectors,
    }))
}

fn block_hash(_: &Path) -> Result<Value> {
    let headers = vec![
        (
            "genesis-like",
            Header {
                chain_id: "conformance".into(),
                height: 0,
                parent_hash: Hash32::ZERO,
                time_ms: 1_767_225_600_000,
                proposer: Address([1; 32]),
                tx_root: list_root::<Vec<u8>>(&[]),
                tx_count: 0,
                state_root: Hash32([2; 32]),
                receipts_root: list_root::<Vec<u8>>(&[]),
                receipt_count: 0,
            },
        ),
        (
            "with transactions",
            Header {
                chain_id: "conformance".into(),
                height: 42,
                parent_hash: Hash32([3; 32]),
                time_ms: 1_767_225_601_234,
                proposer: Address([4; 32]),
                tx_root: Hash32([5; 32]),
                tx_count: 3,
                state_root: Hash32([6; 32]),
                receipts_root: Hash32([7; 32]),
                receipt_count: 3,
            },
        ),
    ];
    let vectors: Vec<Value> = headers
        .into_iter()
        .map(|(d, h)| json!({"description": d, "header": h, "encoding": hex::encode(codec::encode(&h)), "hash": h.hash().to_hex()}))
        .collect();
    Ok(json!({
        "about": "Block hash = sha256('gridledger/header/v1' || borsh(Header)).",
        "vectors": vectors,
    }))
}

fn merkle(_: &Path) -> Result<Value> {
    let mut vectors = Vec::new();
    for n in [0usize, 1, 2, 3, 5, 8] {
        let items: Vec<Vec<u8>> = (0..n).map(|i| format!("item-{i}").into_bytes()).collect();
        let proofs: Vec<Value> = (0..n as u32)
            .map(|i| serde_json::to_value(ListProof::build(&items, i)).unwrap_or(Value::Null))
            .collect();
        vectors.push(json!({
            "description": format!("{n} items"),
            "items": items.iter().map(hex::encode).collect::<Vec<_>>(),
            "root": list_root(&items).to_hex(),
            "count": n,
            "proofs": proofs,
        }));
    }
    Ok(json!({
        "about": "Complete binary Merkle tree (merkle-cbt). Leaf = sha256(0x00 || item), node = sha256(0x01 || left || right); the empty list's root is 32 zero bytes. The header commits the count beside the root; a proof carries index, count and the lemmas in merkle-cbt order.",
        "vectors": vectors,
    }))
}

/// Market scenarios: inputs from the stored file when it exists (so another implementation's
/// file is checked as written), else from [`market::scenario_inputs`].
fn market_scenarios(dir: &Path) -> Result<Value> {
    let stored: Option<Value> = std::fs::read_to_string(dir.join("market.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let inputs: Vec<Value> = match stored.as_ref().and_then(|v| v["vectors"].as_array()) {
        Some(v) => v.clone(),
        None => market::scenario_inputs(),
    };
    let mut scenarios = Vec::new();
    for input in inputs {
        let steps = market::run(&input, dir)?;
        let mut scenario = input.clone();
        scenario["steps"] = Value::Array(steps);
        scenarios.push(scenario);
    }
    Ok(json!({
        "about": "Each vector is a scenario: a genesis (TOML; wasm files are the fixtures in this directory) and steps, each one block at time_ms with the listed transactions (execute calls by contract label, signers' next nonces, in order). expected holds the block's height, state root, receipts (transactions first, then the chain's own calls: period boundaries) and balances by name. 'governance' as an admin is the address sha256('gridledger/governance/v1').",
        "vectors": scenarios,
    }))
}

fn vm_errors(dir: &Path) -> Result<Value> {
    let wasm = std::fs::read(dir.join("misbehave.wasm")).context("fixture misbehave.wasm")?;
    let mut chain = TestChain::new();
    let user = chain.account("conformance", 1_000_000_000);
    let code = chain
        .store_code(&user, &wasm)
        .map_err(|r| anyhow::anyhow!("store: {:?}", r.error))?;
    let contract = chain
        .instantiate(&user, code, "null")
        .map_err(|r| anyhow::anyhow!("instantiate: {:?}", r.error))?;
    let cases = [
        ("writes then succeeds", r#"{"put":{"key":"a","value":"b"}}"#),
        ("infinite loop", r#"{"put_then_loop":{"key":"a"}}"#),
        ("unbounded recursion", r#"{"recurse":{}}"#),
        ("memory past the limit", r#"{"grow":{"mib":64}}"#),
        ("panic", r#"{"panic":{}}"#),
        ("non-JSON answer", r#"{"garbage":{}}"#),
        (
            "contract error after a write",
            r#"{"put_then_fail":{"key":"a"}}"#,
        ),
        ("malformed message", "[1,2"),
    ];
    let mut vectors = Vec::new();
    for (description, msg) in cases {
        let r = chain.execute(&user, contract, msg, 0);
        vectors.push(json!({
            "description": description,
            "msg": msg,
            "gas_limit": TX_GAS,
            "success": r.is_success(),
            "error_code": r.error.as_ref().map(|e| e.code),
            "error_message": r.error.as_ref().map(|e| e.message.clone()),
            "gas_used": r.gas_used,
            "fee": r.fee,
            "events": r.events.len(),
        }));
    }
    Ok(json!({
        "about": "Each message is executed, in order, against a fresh instance of misbehave.wasm (code stored and instantiated by the test harness's 'conformance' account, gas price 1 per 1000 gas). gas_used includes the intrinsic gas of the transaction bytes.",
        "vm_config_hash": gridledger_vm::VmConfig::default().hash().to_hex(),
        "vectors": vectors,
    }))
}
