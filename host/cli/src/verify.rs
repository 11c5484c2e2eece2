//! `gridledger verify`: checks a proof bundle offline and says, in words, what it proves.
//!
//! Three kinds of bundle, told apart by their fields: a transaction with its receipt
//! (`tx_proof`), one state key (`proof`), and several state keys into one header (`proofs`,
//! what the web app downloads for a trade or a settlement). Keys inside the market contract's
//! storage are decoded into the market's own record types, so a user can compare what was
//! proven with what the page showed.

use anyhow::{Context, Result, bail};
use gridledger_api::proofs::{Finality, StateProofBundle, StateProofsBundle, TxProof};
use gridledger_sdk::Key;
use gridledger_state::StateProof;
use gridledger_types::{Header, schema};
use std::path::Path;

/// Verifies the bundle in `file`; prints what it proves, or fails with `INVALID: …`.
pub fn run(file: &Path, header_hash: Option<&str>, genesis: Option<&Path>) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let invalid = |e: String| anyhow::anyhow!("INVALID: {e}");
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let trusted = header_hash.map(crate::parse_hash).transpose()?;
    let finalized = if v.get("tx_proof").is_some() {
        let p: TxProof = serde_json::from_value(v)
            .map_err(|e| invalid(format!("not a transaction proof bundle: {e}")))?;
        p.verify(trusted.as_ref()).map_err(invalid)?;
        let finalized = check_finality(&p.header, p.finality.as_ref(), genesis)?;
        println!(
            "valid: transaction {} is #{} of block {} ({}), receipt {}",
            p.receipt.tx_hash.to_hex(),
            p.tx_proof.index,
            p.header.height,
            p.header.hash().to_hex(),
            if p.receipt.is_success() {
                "success"
            } else {
                "failed"
            }
        );
        finalized
    } else if v.get("proofs").is_some() {
        let p: StateProofsBundle = serde_json::from_value(v)
            .map_err(|e| invalid(format!("not a bundle of state proofs: {e}")))?;
        p.verify(trusted.as_ref()).map_err(invalid)?;
        let finalized = check_finality(&p.header, p.finality.as_ref(), genesis)?;
        println!(
            "valid: {} keys at height {} ({})",
            p.proofs.len(),
            p.header.height,
            p.header.hash().to_hex()
        );
        for proof in &p.proofs {
            println!("  {}", describe(proof));
        }
        finalized
    } else {
        let p: StateProofBundle = serde_json::from_value(v)
            .map_err(|e| invalid(format!("not a state proof bundle: {e}")))?;
        p.verify(trusted.as_ref()).map_err(invalid)?;
        let finalized = check_finality(&p.header, p.finality.as_ref(), genesis)?;
        match &p.proof.value {
            Some(val) => println!(
                "valid: key {} = {} at height {}",
                hex::encode(&p.proof.key),
                hex::encode(val),
                p.header.height
            ),
            None => println!(
                "valid: key {} is absent at height {}",
                hex::encode(&p.proof.key),
                p.header.height
            ),
        }
        finalized
    };
    if finalized {
        println!(
            "final: a quorum of the genesis validators signed this header's hash after executing the chain up to it"
        );
    } else if trusted.is_none() {
        println!(
            "note: checked against the bundle's own header; pass --genesis to check its finality certificate, or --header-hash to anchor it to a header you trust"
        );
    }
    Ok(())
}

/// Checks a bundle's finality against the validator set of `genesis`, if given.
fn check_finality(
    header: &Header,
    finality: Option<&Finality>,
    genesis: Option<&Path>,
) -> Result<bool> {
    let Some(path) = genesis else {
        return Ok(false);
    };
    let g = gridledger_node::Genesis::load(path)?;
    if g.chain_id != header.chain_id {
        bail!(
            "INVALID: the header is of chain {}, the genesis of {}",
            header.chain_id,
            g.chain_id
        );
    }
    let set = gridledger_consensus::ValidatorSet::<gridledger_consensus::crypto::Bls>::new(
        g.validator_set()?.iter().map(|v| v.bls).collect(),
        g.chain_id.as_bytes().to_vec(),
    );
    let f = finality.context(
        "INVALID: the bundle carries no execution certificate (its header is not certified yet, or never will be)",
    )?;
    f.verify(header, &set)
        .map_err(|e| anyhow::anyhow!("INVALID: {e}"))?;
    Ok(true)
}

/// One proven key in words: a market record decoded, anything else as hex.
pub fn describe(p: &StateProof) -> String {
    let raw = || match &p.value {
        Some(v) => format!("key {} = {}", hex::encode(&p.key), hex::encode(v)),
        None => format!("key {} is absent", hex::encode(&p.key)),
    };
    let Some((contract, mut key)) = contract_storage(&p.key) else {
        return raw();
    };
    let Some(namespace) = Vec::<u8>::decode_key(&mut key) else {
        return raw();
    };
    let record = match (namespace.as_slice(), &p.value) {
        (b"trp", v) => <(u64, u64)>::decode_key(&mut key).map(|(period, page)| {
            let first = page.saturating_mul(market::book::TRADE_PAGE);
            let held = v
                .as_deref()
                .and_then(|b| postcard::take_from_bytes::<Vec<market::Trade>>(b).ok())
                .map_or(0, |(t, _)| t.len() as u64);
            (
                format!(
                    "trades #{first}..#{} of period {period}",
                    (first + held).saturating_sub(1).max(first)
                ),
                decode::<Vec<market::Trade>>(v),
            )
        }),
        (b"per", v) => u64::decode_key(&mut key).map(|period| {
            (
                format!("summary of period {period}"),
                decode::<market::PeriodSummary>(v),
            )
        }),
        (b"rd", v) => {
            <(u64, gridledger_sdk::Address)>::decode_key(&mut key).map(|(period, who)| {
                (
                    format!("meter reading of {} in period {period}", who.to_hex()),
                    decode::<market::Reading>(v),
                )
            })
        }
        _ => None,
    };
    match record {
        // A market key must end where its parts end, and its value must decode.
        Some((what, Some(value))) if key.is_empty() => {
            format!(
                "market {what} (contract {}): {value}",
                hex::encode(contract)
            )
        }
        _ => raw(),
    }
}

/// Splits a contract-storage state key into the contract and the contract's own key.
fn contract_storage(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let prefix_len = schema::contract_store_prefix(&gridledger_types::Address([0; 32])).len();
    (key.len() > prefix_len && key[0] == schema::TAG_CONTRACT_STORE)
        .then(|| (&key[1..prefix_len], &key[prefix_len..]))
}

/// A market value as JSON, "absent" when the proof shows no value, `None` if it does not
/// decode as `T`.
fn decode<T: serde::de::DeserializeOwned + serde::Serialize>(
    v: &Option<Vec<u8>>,
) -> Option<String> {
    match v {
        None => Some("absent".into()),
        Some(bytes) => match postcard::take_from_bytes::<T>(bytes) {
            Ok((t, [])) => serde_json::to_string(&t).ok(),
            _ => None,
        },
    }
}
