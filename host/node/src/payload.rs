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
//! [`MAX_PAYLOAD_BYTES`] in all; and every transaction's signature is valid (those this node
//! already verified on admission are not checked again).

use crate::finality::BlockPayload;
use crate::{MAX_BLOCK_TXS, Node};
use gridledger_consensus::{Digest, Proposal};
use gridledger_types::tx::MAX_TX_BYTES;

/// Encoded bytes of a payload's transactions, in all: well under the consensus message cap
/// ([`gridledger_consensus::wire::MAX_MESSAGE_BYTES`]), which also carries the proposal.
pub const MAX_PAYLOAD_BYTES: usize = 6 << 20;

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
