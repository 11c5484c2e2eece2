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
}
