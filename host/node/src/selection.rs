//! Which waiting transactions a leader proposes, in what order.
//!
//! The mempool hands them out one per sender in turn ([`Mempool::select`]), so a thousand
//! households' orders share a block fairly. Readings are taken first, up to half of the
//! block's gas ([`reserved_first_gas`]), from the heads of their senders' queues in turn: the
//! device gateway is one sender relaying every meter, and in turn with a thousand households
//! it got one batch into a block, too few for the readings to reach the chain while fresh
//! (found on the 1,000-household devnet). Only a batch whose gas limit its readings can use
//! goes first ([`Node::in_readings_lane`]). Everything taken keeps to the block's caps: bytes, readings, gas, half a block for
//! heavy transactions ([`heavy_tx_gas`]) and for big ones. Validators do not check the order:
//! it is the leader's policy, not a rule of the chain.
//!
//! [`Mempool::select`]: crate::mempool::Mempool::select

use crate::mempool::Pending;
use crate::{Node, heavy_tx_gas, payload};
use gridledger_types::{Address, Hash32, SignedTx};
use std::collections::HashSet;

/// The share of a block's gas that readings are taken for first: what the
/// device gateway needs for a 1,000-meter community's readings, leaving the other half to
/// everyone else.
pub const fn reserved_first_gas(max_block_gas: u64) -> u64 {
    max_block_gas / 2
}

/// Most readings of a batch taken first: the lane goes to senders in turn, a batch at a time,
/// so no one batch takes much of it (the relay sends 80). Found by review: readings of an
/// unregistered device cost only their lookup, so one batch of ~625 of them held the whole
/// lane for an eighth of its gas.
pub const LANE_MAX_READINGS: usize = 100;

/// What a block being filled holds so far, against its caps.
struct Fill {
    max: usize,
    max_gas: u64,
    out: Vec<SignedTx>,
    taken: HashSet<Hash32>,
    bytes: usize,
    gas: u64,
    heavy_gas: u64,
    big_bytes: usize,
    readings: usize,
}

impl Fill {
    fn full(&self) -> bool {
        self.out.len() >= self.max
    }

    /// Takes `p` if it fits every cap.
    fn take(&mut self, p: &Pending) -> bool {
        let (t, len) = (&p.tx, p.len);
        let (heavy_from, heavy_cap) = (heavy_tx_gas(self.max_gas), self.max_gas / 2);
        let (big_from, big_cap) = (64 << 10, payload::MAX_PAYLOAD_BYTES / 2);
        let g = t.body.gas_limit;
        let heavy = g > heavy_from;
        let big = len > big_from;
        let r = payload::readings_in(t);
        let fits = self.bytes + len <= payload::MAX_PAYLOAD_BYTES
            && self.readings + r <= payload::MAX_BLOCK_READINGS
            && self.gas.saturating_add(g) <= self.max_gas
            && (!heavy || self.heavy_gas.saturating_add(g) <= heavy_cap)
            && (!big || self.out.is_empty() || self.big_bytes + len <= big_cap);
        if !fits {
            return false;
        }
        self.bytes += len;
        self.gas += g;
        if heavy {
            self.heavy_gas += g;
        }
        if big {
            self.big_bytes += len;
        }
        self.readings += r;
        self.taken.insert(p.hash);
        self.out.push(t.clone());
        true
    }
}

impl Node {
    /// Whether `t` may be taken first: a readings transaction whose gas limit is no more than
    /// its readings can use (each one's lookup, signature check and a possible report, and
    /// its bytes). A lane that looked at the payload alone was half a block for anyone: an
    /// empty batch or a governance vote fails at once for a few thousand gas, whatever
    /// limit it held.
    pub(crate) fn in_readings_lane(&self, t: &SignedTx, len: usize) -> bool {
        let n = payload::readings_in(t);
        let g = &self.exec.vm.config().gas;
        let most = g
            .tx_base
            .saturating_add(g.tx_per_byte.saturating_mul(len as u64 + 64))
            .saturating_add(crate::devices::gas_per_reading(g).saturating_mul(n as u64));
        (1..=LANE_MAX_READINGS).contains(&n) && t.body.gas_limit <= most
    }

    /// Up to `max` waiting transactions for a proposal, in block order, leaving out those in
    /// `in_flight` (proposed in blocks not yet committed).
    pub fn proposal_candidates(&self, max: usize, in_flight: &HashSet<Hash32>) -> Vec<SignedTx> {
        let max_gas = self.exec.vm.config().limits.max_block_gas;
        let waiting = self.mempool.lock().select(max + in_flight.len());
        let mut fill = Fill {
            max,
            max_gas,
            out: Vec::new(),
            taken: HashSet::new(),
            bytes: 0,
            gas: 0,
            heavy_gas: 0,
            big_bytes: 0,
            readings: 0,
        };
        // First readings, from the heads of their senders' queues, one sender at a time;
        // a sender's transactions go in nonce order, so one behind another kind waits for
        // the turns below.
        let lane = reserved_first_gas(max_gas);
        let heads = self.mempool.lock().select_heads(
            |p| self.in_readings_lane(&p.tx, p.len) || in_flight.contains(&p.hash),
            max + in_flight.len(),
        );
        let mut stopped: HashSet<Address> = HashSet::new();
        for p in &heads {
            if fill.full() {
                break;
            }
            let sender = p.tx.body.sender;
            if in_flight.contains(&p.hash) || stopped.contains(&sender) {
                continue;
            }
            let within = fill.gas.saturating_add(p.tx.body.gas_limit) <= lane;
            if !within || !fill.take(p) {
                stopped.insert(sender);
            }
        }
        // Then everything else, one per sender in turn.
        let mut skipped: HashSet<Address> = HashSet::new();
        for p in &waiting {
            if fill.full() {
                break;
            }
            let sender = p.tx.body.sender;
            if in_flight.contains(&p.hash)
                || fill.taken.contains(&p.hash)
                || skipped.contains(&sender)
            {
                continue;
            }
            if !fill.take(p) {
                // Its later nonces cannot apply without it: they wait for another block.
                skipped.insert(sender);
            }
        }
        fill.out
    }
}
