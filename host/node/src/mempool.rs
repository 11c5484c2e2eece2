//! Admitted transactions waiting for a block, per sender in nonce order.

use gridledger_types::{Address, Hash32, SignedTx};
use std::collections::{BTreeMap, HashSet, VecDeque};

pub struct Mempool {
    by_sender: BTreeMap<Address, BTreeMap<u64, (SignedTx, usize)>>,
    /// Senders in the order they first had a pending transaction: fair block filling.
    senders: VecDeque<Address>,
    hashes: HashSet<Hash32>,
    capacity: usize,
}

impl Mempool {
    pub fn new(capacity: usize) -> Mempool {
        Mempool {
            by_sender: BTreeMap::new(),
            senders: VecDeque::new(),
            hashes: HashSet::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.hashes.len() >= self.capacity
    }

    pub fn contains(&self, hash: &Hash32) -> bool {
        self.hashes.contains(hash)
    }

    /// How many transactions of `sender` are waiting (their nonces are contiguous).
    pub fn pending_of(&self, sender: &Address) -> u64 {
        self.by_sender.get(sender).map_or(0, |m| m.len() as u64)
    }

    /// Adds an admitted transaction (the caller checked its nonce follows the pending ones).
    pub fn insert(&mut self, tx: SignedTx, encoded_len: usize) {
        let sender = tx.body.sender;
        self.hashes.insert(tx.hash());
        let queue = self.by_sender.entry(sender).or_default();
        if queue.is_empty() {
            self.senders.push_back(sender);
        }
        queue.insert(tx.body.nonce, (tx, encoded_len));
    }

    /// Up to `max` transactions, taking one per sender in turn, each sender's in nonce order.
    pub fn select(&self, max: usize) -> Vec<(SignedTx, usize)> {
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
                if let Some((tx, len)) = it.next() {
                    out.push((tx.clone(), *len));
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
    /// of theirs (one was refused, so the later nonces can never apply).
    pub fn prune_sender(&mut self, sender: &Address, next_nonce: u64, drop_rest: bool) {
        let Some(queue) = self.by_sender.get_mut(sender) else {
            return;
        };
        let keep = if drop_rest {
            BTreeMap::new()
        } else {
            queue.split_off(&next_nonce)
        };
        for (tx, _) in queue.values() {
            self.hashes.remove(&tx.hash());
        }
        *queue = keep;
        if queue.is_empty() {
            self.by_sender.remove(sender);
            self.senders.retain(|s| s != sender);
        }
    }
}
