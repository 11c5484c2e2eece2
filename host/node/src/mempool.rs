//! Admitted transactions waiting for a block, per sender in nonce order; and what the node
//! accepted and later let go, with why.

use gridledger_types::{Address, Hash32, SignedTx};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Transactions one sender may have waiting: one account cannot fill the pool.
pub const MAX_PENDING_PER_SENDER: usize = 64;
/// Room beyond the capacity kept for the device gateway's readings and regulators' votes, so
/// that a pool full of others' transactions still takes them; also how many of those one
/// sender may have waiting (the gateway relays every meter's readings).
pub const RESERVED: usize = 1_000;
/// Bytes one sender may have waiting (the reserved senders, the gateway's relay among them,
/// 8 times this): a few large transactions count as much as many small ones.
pub const MAX_PENDING_BYTES_PER_SENDER: usize = 1 << 20;
/// Bytes the whole pool holds at most: memory stays bounded whatever the transactions' size.
pub const MAX_POOL_BYTES: usize = 256 << 20;
/// Dropped transactions remembered (the oldest are forgotten first).
const DROPPED_KEPT: usize = 10_000;

/// Readings and votes: they have room kept for them ([`RESERVED`]) and are never evicted.
pub fn is_reserved(tx: &SignedTx) -> bool {
    matches!(
        tx.body.payload,
        gridledger_types::Payload::Readings { .. } | gridledger_types::Payload::Vote { .. }
    )
}

/// A waiting transaction with what the pool knows of it: its encoded length and its hash,
/// computed once at admission (a transaction is looked at by every proposal until it is
/// included, and hashing a large one each time cost validators more than checking it).
#[derive(Clone, Debug)]
pub struct Pending {
    pub tx: SignedTx,
    pub len: usize,
    pub hash: Hash32,
}

pub struct Mempool {
    by_sender: BTreeMap<Address, BTreeMap<u64, Pending>>,
    /// Senders in the order they first had a pending transaction: fair block filling.
    senders: VecDeque<Address>,
    hashes: HashSet<Hash32>,
    capacity: usize,
    /// Encoded bytes of everything waiting.
    bytes: usize,
}

impl Mempool {
    pub fn new(capacity: usize) -> Mempool {
        Mempool {
            by_sender: BTreeMap::new(),
            senders: VecDeque::new(),
            hashes: HashSet::new(),
            capacity,
            bytes: 0,
        }
    }

    /// Changes how many ordinary transactions the pool holds (tests, small nodes).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Full for ordinary transactions; `reserved` ones (readings, votes) have more room.
    pub fn is_full(&self, reserved: bool) -> bool {
        let room = if reserved {
            self.capacity + RESERVED
        } else {
            self.capacity
        };
        self.hashes.len() >= room || self.bytes >= MAX_POOL_BYTES
    }

    /// Encoded bytes `sender` has waiting.
    pub fn pending_bytes_of(&self, sender: &Address) -> usize {
        self.by_sender
            .get(sender)
            .map_or(0, |q| q.values().map(|p| p.len).sum())
    }

    /// How many transactions `sender` has waiting, and the sum of their gas limits.
    pub fn pending_of(&self, sender: &Address) -> (usize, u64) {
        self.by_sender.get(sender).map_or((0, 0), |q| {
            let gas = q
                .values()
                .map(|p| p.tx.body.gas_limit)
                .fold(0u64, u64::saturating_add);
            (q.len(), gas)
        })
    }

    pub fn contains(&self, hash: &Hash32) -> bool {
        self.hashes.contains(hash)
    }

    /// The nonce `sender`'s next transaction must carry, given its committed nonce: one past
    /// its last waiting transaction. Entries below the committed nonce are ignored: a block may
    /// have executed them a moment before they are pruned.
    pub fn next_nonce(&self, sender: &Address, committed: u64) -> u64 {
        self.by_sender
            .get(sender)
            .and_then(|m| m.range(committed..).next_back())
            .map_or(committed, |(n, _)| n + 1)
    }

    /// Adds an admitted transaction (the caller checked its nonce follows the pending ones).
    pub fn insert(&mut self, tx: SignedTx, encoded_len: usize) {
        let hash = tx.hash();
        self.insert_hashed(tx, encoded_len, hash);
    }

    /// [`Mempool::insert`], with the hash the caller computed (`hash` must be `tx.hash()`).
    pub fn insert_hashed(&mut self, tx: SignedTx, encoded_len: usize, hash: Hash32) {
        debug_assert_eq!(hash, tx.hash());
        let sender = tx.body.sender;
        self.hashes.insert(hash);
        let queue = self.by_sender.entry(sender).or_default();
        if queue.is_empty() {
            self.senders.push_back(sender);
        }
        let nonce = tx.body.nonce;
        let entry = Pending {
            tx,
            len: encoded_len,
            hash,
        };
        if let Some(old) = queue.insert(nonce, entry) {
            self.bytes -= old.len;
            if old.hash != hash {
                self.hashes.remove(&old.hash);
            }
        }
        self.bytes += encoded_len;
    }

    /// When the pool is full: whose transaction makes room for one more from `newcomer`, which
    /// has `newcomer_pending` waiting. The sender with the most waiting (ties: the lowest
    /// address), if it has at least two more than the newcomer has (so after the swap it still
    /// has at least as many); its youngest transaction, the highest nonce (the only one whose
    /// removal leaves the rest applicable). Readings and votes are never evicted (their room is
    /// reserved). So a few senders flooding the pool give way to everyone else, down to a fair
    /// share, and no two senders evict each other in turn. (The gas price is fixed by genesis:
    /// there is no offered fee to rank by, and ranking by gas limits would let a sender outbid
    /// others for free, as fees are paid on gas used.) One pass over the senders.
    pub fn eviction_for(
        &self,
        newcomer: &Address,
        newcomer_pending: usize,
        is_reserved: impl Fn(&SignedTx) -> bool,
    ) -> Option<(Address, u64)> {
        self.by_sender
            .iter()
            .filter(|(s, q)| *s != newcomer && q.len() > newcomer_pending + 1)
            .filter_map(|(s, q)| {
                let (nonce, last) = q.last_key_value()?;
                (!is_reserved(&last.tx)).then_some((q.len(), std::cmp::Reverse(*s), *nonce))
            })
            .max()
            .map(|(_, std::cmp::Reverse(s), nonce)| (s, nonce))
    }

    /// Removes `sender`'s transaction `nonce` (one [`Mempool::eviction_for`] chose): its hash.
    pub fn evict(&mut self, sender: &Address, nonce: u64) -> Option<Hash32> {
        let queue = self.by_sender.get_mut(sender)?;
        let gone = queue.remove(&nonce)?;
        let hash = gone.hash;
        self.hashes.remove(&hash);
        self.bytes -= gone.len;
        if queue.is_empty() {
            self.by_sender.remove(sender);
            self.senders.retain(|s| s != sender);
        }
        Some(hash)
    }

    /// Bytes of everything waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Up to `max` transactions from the heads of the senders' queues that `admit` takes,
    /// one per sender in turn, each sender's in nonce order and only while its next one is
    /// admitted: a lane for one kind of transaction that does not wait behind every sender's
    /// others, as a window of [`Mempool::select`] would.
    pub fn select_heads(&self, admit: impl Fn(&Pending) -> bool, max: usize) -> Vec<Pending> {
        let mut runs: Vec<_> = self
            .senders
            .iter()
            .filter_map(|s| self.by_sender.get(s))
            .map(|q| q.values().take_while(|p| admit(p)))
            .collect();
        let mut out = Vec::new();
        // Each turn visits only the runs still going: a long run (the gateway's backlog) does
        // not make every turn walk every sender.
        while out.len() < max && !runs.is_empty() {
            runs.retain_mut(|run| {
                if out.len() >= max {
                    return true;
                }
                match run.next() {
                    Some(p) => {
                        out.push(p.clone());
                        true
                    }
                    None => false,
                }
            });
        }
        out
    }

    /// Up to `max` transactions, taking one per sender in turn, each sender's in nonce order.
    pub fn select(&self, max: usize) -> Vec<Pending> {
        let mut iters: Vec<_> = self
            .senders
            .iter()
            .filter_map(|s| self.by_sender.get(s))
            .map(|q| q.values())
            .collect();
        let mut out = Vec::new();
        while out.len() < max {
            let mut any = false;
            for it in iters.iter_mut() {
                if out.len() >= max {
                    break;
                }
                if let Some(p) = it.next() {
                    out.push(p.clone());
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        out
    }

    /// Drops `sender`'s transactions below `next_nonce` (included) and, if `drop_rest`, all
    /// of theirs (one was refused, so the later nonces can never apply). Returns the hashes
    /// dropped.
    pub fn prune_sender(
        &mut self,
        sender: &Address,
        next_nonce: u64,
        drop_rest: bool,
    ) -> Vec<Hash32> {
        let Some(queue) = self.by_sender.get_mut(sender) else {
            return Vec::new();
        };
        let keep = if drop_rest {
            BTreeMap::new()
        } else {
            queue.split_off(&next_nonce)
        };
        let mut dropped = Vec::with_capacity(queue.len());
        for p in queue.values() {
            self.hashes.remove(&p.hash);
            self.bytes -= p.len;
            dropped.push(p.hash);
        }
        *queue = keep;
        if queue.is_empty() {
            self.by_sender.remove(sender);
            self.senders.retain(|s| s != sender);
        }
        dropped
    }
}

/// Transactions the node accepted and later let go without including them, with why: what
/// `GET /v1/txs/{hash}` answers instead of a bare "not found".
#[derive(Default)]
pub struct Dropped {
    why: HashMap<Hash32, String>,
    order: VecDeque<Hash32>,
}

impl Dropped {
    pub fn record(&mut self, hash: Hash32, why: String) {
        if self.why.insert(hash, why).is_none() {
            self.order.push_back(hash);
        }
        while self.order.len() > DROPPED_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.why.remove(&old);
            }
        }
    }

    pub fn why(&self, hash: &Hash32) -> Option<&str> {
        self.why.get(hash).map(String::as_str)
    }

    /// It came back (resubmitted and accepted again): no longer dropped.
    pub fn forget(&mut self, hash: &Hash32) {
        self.why.remove(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_types::{Keypair, Payload, TxBody};

    fn tx(key: &Keypair, nonce: u64) -> SignedTx {
        TxBody {
            chain_id: "c".into(),
            sender: key.address(),
            nonce,
            gas_limit: 1,
            payload: Payload::Transfer {
                to: key.address(),
                amount: 1,
            },
        }
        .sign(key)
    }

    #[test]
    fn next_nonce_ignores_entries_a_block_already_executed() {
        let k = Keypair::from_seed_phrase("m");
        let mut pool = Mempool::new(10);
        assert_eq!(pool.next_nonce(&k.address(), 3), 3);
        for n in 3..6 {
            pool.insert(tx(&k, n), 1);
        }
        assert_eq!(pool.next_nonce(&k.address(), 3), 6);
        // A block executed nonces 3..=5 and committed; the pool is pruned a moment later. In
        // between, the next nonce is still 6, not 6 + 3.
        assert_eq!(pool.next_nonce(&k.address(), 6), 6);
        assert_eq!(pool.next_nonce(&k.address(), 5), 6);
        pool.prune_sender(&k.address(), 6, false);
        assert!(pool.is_empty());
        assert_eq!(pool.next_nonce(&k.address(), 6), 6);
    }

    /// A full pool makes room by evicting the youngest transaction of whoever has the most
    /// waiting, down to a fair share; never a reading or vote, never the newcomer's own.
    #[test]
    fn eviction_takes_the_youngest_of_the_biggest_sender_down_to_a_fair_share() {
        let (a, b, c) = (
            Keypair::from_seed_phrase("a"),
            Keypair::from_seed_phrase("b"),
            Keypair::from_seed_phrase("c"),
        );
        let mut pool = Mempool::new(6);
        for n in 0..4 {
            pool.insert(tx(&a, n), 10);
        }
        pool.insert(tx(&b, 0), 10);
        pool.insert(tx(&b, 1), 10);
        assert!(pool.is_full(false));
        let never = |_: &SignedTx| false;
        // c has none waiting: a (4 waiting) gives up its nonce 3.
        assert_eq!(
            pool.eviction_for(&c.address(), 0, never),
            Some((a.address(), 3))
        );
        assert_eq!(pool.evict(&a.address(), 3), Some(tx(&a, 3).hash()));
        assert_eq!((pool.len(), pool.bytes()), (5, 50));
        assert!(!pool.contains(&tx(&a, 3).hash()));
        pool.insert(tx(&c, 0), 10);
        // Now a has 3, b 2, c 1: c's second would leave a with 2, c with 2: allowed once.
        assert_eq!(
            pool.eviction_for(&c.address(), 1, never),
            Some((a.address(), 2))
        );
        // b (2 waiting) may not take from a (3): b would have 3 and a 2, a swap, not fairer.
        assert_eq!(pool.eviction_for(&b.address(), 2, never), None);
        // The biggest sender never evicts for itself.
        assert_eq!(
            pool.eviction_for(&a.address(), 0, never),
            Some((b.address(), 1))
        );
        // Readings and votes are never evicted.
        let reserved_of_a = |t: &SignedTx| t.body.sender == a.address();
        assert_eq!(
            pool.eviction_for(&c.address(), 0, reserved_of_a),
            Some((b.address(), 1))
        );
        // An evicted nonce that is not there is nothing.
        assert_eq!(pool.evict(&a.address(), 3), None);
    }

    /// A full pool still has room for readings and votes (the caller says which), not for
    /// anything else; and dropped transactions are remembered with why, the oldest forgotten.
    #[test]
    fn reserved_room_and_the_dropped_log() {
        let k = Keypair::from_seed_phrase("m");
        let mut pool = Mempool::new(2);
        pool.insert(tx(&k, 0), 1);
        pool.insert(tx(&k, 1), 1);
        assert!(pool.is_full(false));
        assert!(!pool.is_full(true));
        assert_eq!(pool.pending_of(&k.address()), (2, 2));
        let gone = pool.prune_sender(&k.address(), 1, false);
        assert_eq!(gone, vec![tx(&k, 0).hash()]);

        let mut log = Dropped::default();
        for i in 0..DROPPED_KEPT as u64 + 1 {
            log.record(tx(&k, i).hash(), format!("reason {i}"));
        }
        assert_eq!(log.why(&tx(&k, 0).hash()), None, "the oldest is forgotten");
        assert_eq!(log.why(&tx(&k, 5).hash()), Some("reason 5"));
        log.forget(&tx(&k, 5).hash());
        assert_eq!(log.why(&tx(&k, 5).hash()), None);
    }
}
