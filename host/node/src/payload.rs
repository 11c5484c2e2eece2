//! What a validator requires of a leader's payload before it votes for it.
//!
//! Consensus is only as good as what honest validators refuse to sign: a payload that breaks
//! any rule here gets no notarize vote (the engine nullifies its view at once), so a finalized
//! block was checked by at least `f + 1` honest validators and execution never has to clamp
//! or repair anything.
//!
//! The rules: the payload decodes; its time is after its parent's and at most the allowed
//! clock drift ahead of this validator's clock (arithmetic that cannot overflow); it holds at
//! most [`MAX_BLOCK_TXS`] transactions, each at most [`MAX_TX_BYTES`] encoded, and at most
//! [`MAX_PAYLOAD_BYTES`] in all; their gas limits sum to at most the VM's `max_block_gas`, each
//! at most `max_tx_gas`; and every transaction's signature is valid (those this node already
//! verified on admission are not checked again).

use crate::finality::BlockPayload;
use crate::{MAX_BLOCK_TXS, Node};
use gridledger_consensus::{Digest, Proposal};
use gridledger_types::tx::MAX_TX_BYTES;

/// Encoded bytes of a payload's transactions, in all: well under the consensus message cap
/// ([`gridledger_consensus::wire::MAX_MESSAGE_BYTES`]), which also carries the proposal.
pub const MAX_PAYLOAD_BYTES: usize = MAX_TX_BYTES;
/// Most meter readings one block's transactions carry: each costs every validator a state
/// read (and, if it is worth one, a signature check), so their number per block is bounded.
pub const MAX_BLOCK_READINGS: usize = 4_000;

/// How many meter readings a transaction carries.
pub fn readings_in(tx: &gridledger_types::SignedTx) -> usize {
    match &tx.body.payload {
        gridledger_types::Payload::Readings { readings } => readings.len(),
        _ => 0,
    }
}

/// How far ahead of a validator's clock a proposal's time may be, unless genesis says.
pub const DEFAULT_MAX_CLOCK_DRIFT_MS: u64 = 2_000;

/// Checks `proposal` (whose parent block is `parent`, when the engine has it in memory)
/// against the rules, at local time `now_ms`.
pub fn check(
    node: &Node,
    proposal: &Proposal,
    parent: Option<&Proposal>,
    now_ms: u64,
) -> Result<(), String> {
    let payload = BlockPayload::decode(&proposal.payload).ok_or("the payload does not decode")?;
    let parent_time = parent_time(node, proposal, parent)?;
    if payload.time_ms <= parent_time {
        return Err(format!(
            "block time {} is not after its parent's {parent_time}",
            payload.time_ms
        ));
    }
    let drift = node.genesis().max_clock_drift_ms();
    if payload.time_ms > now_ms.saturating_add(drift) {
        return Err(format!(
            "block time {} is {} ms ahead of this validator's clock (at most {drift} allowed)",
            payload.time_ms,
            payload.time_ms - now_ms
        ));
    }
    if payload.txs.len() > MAX_BLOCK_TXS {
        return Err(format!(
            "{} transactions, at most {MAX_BLOCK_TXS} allowed",
            payload.txs.len()
        ));
    }
    let limits = &node.vm().config().limits;
    let mut gas = 0u64;
    for tx in &payload.txs {
        if tx.body.gas_limit > limits.max_tx_gas {
            return Err(format!(
                "transaction {} asks for {} gas, at most {} allowed",
                tx.hash().to_hex(),
                tx.body.gas_limit,
                limits.max_tx_gas
            ));
        }
        gas = gas.saturating_add(tx.body.gas_limit);
    }
    if gas > limits.max_block_gas {
        return Err(format!(
            "transactions asking for {gas} gas, at most {} allowed in a block",
            limits.max_block_gas
        ));
    }
    let readings: usize = payload.txs.iter().map(readings_in).sum();
    if readings > MAX_BLOCK_READINGS {
        return Err(format!(
            "{readings} meter readings, at most {MAX_BLOCK_READINGS} allowed in a block"
        ));
    }
    let mut total = 0usize;
    for tx in &payload.txs {
        let len = tx.encode().len();
        if len > MAX_TX_BYTES {
            return Err(format!(
                "transaction {} is {len} bytes, at most {MAX_TX_BYTES} allowed",
                tx.hash().to_hex()
            ));
        }
        total += len;
    }
    if total > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "transactions of {total} bytes, at most {MAX_PAYLOAD_BYTES} allowed"
        ));
    }
    let unseen: Vec<_> = payload
        .txs
        .iter()
        .filter(|t| !node.admitted(&t.hash()))
        .collect();
    for (tx, check) in unseen.iter().zip(node.executor().check_signatures(&unseen)) {
        check.map_err(|e| format!("transaction {}: {e}", tx.hash().to_hex()))?;
    }
    Ok(())
}

/// The time of the block a proposal extends.
fn parent_time(node: &Node, proposal: &Proposal, parent: Option<&Proposal>) -> Result<u64, String> {
    if let Some(p) = parent {
        return BlockPayload::decode(&p.payload)
            .map(|p| p.time_ms)
            .ok_or_else(|| "its parent's payload does not decode".into());
    }
    // Not in the engine's memory: the parent is the finalized tip (or genesis), which this
    // node has committed.
    let head = node.head();
    let tip = node
        .consensus_tip()
        .map_err(|e| format!("reading the finalized tip: {e}"))?;
    if proposal.parent == tip.digest || (proposal.parent == Digest::ZERO && head.height == 0) {
        Ok(head.time_ms)
    } else {
        Err("its parent is unknown here".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TEST_CHAIN_ID, test_genesis};
    use gridledger_types::{Address, Keypair, Payload, SignedTx, TxBody};
    use std::sync::Arc;

    fn node() -> Arc<Node> {
        Node::in_memory(test_genesis(Vec::new()), std::path::Path::new(".")).unwrap()
    }

    fn tx(key: &Keypair, nonce: u64, gas_limit: u64) -> SignedTx {
        TxBody {
            chain_id: TEST_CHAIN_ID.into(),
            sender: key.address(),
            nonce,
            gas_limit,
            payload: Payload::Transfer {
                to: Address([9; 32]),
                amount: 1,
            },
        }
        .sign(key)
    }

    fn proposal(payload: Vec<u8>) -> Proposal {
        Proposal {
            view: 1,
            height: 1,
            parent: Digest::ZERO,
            parent_view: 0,
            payload,
        }
    }

    fn block(time_ms: u64, txs: Vec<SignedTx>) -> Proposal {
        proposal(BlockPayload { time_ms, txs }.encode())
    }

    /// Each rule, broken alone, is refused with what was wrong; the same block within the
    /// rules passes.
    #[test]
    fn each_payload_rule_refuses_what_breaks_it() {
        let n = node();
        let key = Keypair::from_seed_phrase("payload tests");
        let genesis = n.head().time_ms;
        let now = genesis + 60_000;
        let limits = n.vm().config().limits.clone();
        let drift = n.genesis().max_clock_drift_ms();
        let refused = |p: Proposal, what: &str| {
            let why = check(&n, &p, None, now).expect_err(what);
            assert!(why.contains(what), "{why}");
        };
        check(&n, &block(now, vec![tx(&key, 0, 100_000)]), None, now).unwrap();
        check(&n, &block(now + drift, vec![]), None, now).unwrap();
        refused(proposal(b"not a payload".to_vec()), "does not decode");
        refused(block(genesis, vec![]), "not after its parent");
        refused(
            block(now + drift + 1, vec![]),
            "ahead of this validator's clock",
        );
        refused(block(u64::MAX, vec![]), "ahead of this validator's clock");
        let many = (0..MAX_BLOCK_TXS as u64 + 1)
            .map(|i| tx(&key, i, 100_000))
            .collect();
        refused(block(now, many), "transactions, at most");
        refused(
            block(now, vec![tx(&key, 0, limits.max_tx_gas + 1)]),
            "gas, at most",
        );
        let heavy = (0..limits.max_block_gas / limits.max_tx_gas + 1)
            .map(|i| tx(&key, i, limits.max_tx_gas))
            .collect();
        refused(block(now, heavy), "allowed in a block");
        let mut forged = tx(&key, 0, 100_000);
        forged.body.nonce = 7;
        refused(block(now, vec![forged]), "transaction");
    }
}
