//! The node's durable store: blocks, receipts, state and the state tree, in one redb file.
//!
//! Writing a block is one redb write transaction ([`Store::commit_block`]); redb makes it
//! atomic and durable, so after a crash the store holds exactly the blocks whose commit
//! returned. Reads go through [`Snapshot`]s, consistent views that never see half a block.
//!
//! The state tree is versioned by block height. Tree nodes of old versions are kept (no
//! pruning yet), which is what lets the API prove a key at any past height.

use crate::Changes;
use crate::overlay::{ReadError, StateRead, scan_bounds};
use crate::proof::StateProof;
use gridledger_types::{Block, Hash32, Receipt, codec};
use jmt::storage::{LeafNode, Node, NodeBatch, NodeKey, TreeReader};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, Version};
use redb::{Database, ReadOnlyTable, ReadableTable, ReadableTableMetadata, TableDefinition};
use sha2::Sha256;
use std::path::Path;
use std::sync::Arc;

/// Raw state: key → value. What execution reads and contracts scan.
const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
/// State tree nodes: borsh(NodeKey) → borsh(Node).
const TREE_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tree_nodes");
/// State tree values by version: key hash ++ version (big endian) → 0 (deleted) | 1 ++ value.
const TREE_VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tree_values");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
const BLOCK_BY_HASH: TableDefinition<&[u8], u64> = TableDefinition::new("block_by_hash");
/// Transaction hash → (height, index in block).
const TX_INDEX: TableDefinition<&[u8], (u64, u32)> = TableDefinition::new("tx_index");
/// Height → the proof that the block at that height is final (opaque here: consensus owns it).
const FINALITY: TableDefinition<u64, &[u8]> = TableDefinition::new("finality");
/// What the consensus engine must remember across a crash (its view, what it signed).
const CONSENSUS: TableDefinition<&str, &[u8]> = TableDefinition::new("consensus");
/// Consensus proposal digest → the finalized proposal (encoded), so a validator can hand any
/// finalized block to a peer that is catching up, long after it left memory.
const PROPOSALS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("proposals");
/// Height → the execution certificate over that block's header hash (opaque here): what makes
/// the header final to a client. Written after the block, once a quorum's votes arrive.
const EXECUTION: TableDefinition<u64, &[u8]> = TableDefinition::new("execution_certificates");

/// What consensus stores with a block it finalized.
pub struct Finalized<'a> {
    /// The block's finality proof (encoded).
    pub proof: &'a [u8],
    /// The proposal the block was executed from: its digest and its encoding.
    pub digest: [u8; 32],
    pub proposal: &'a [u8],
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("state tree: {0}")]
    Tree(String),
    #[error("block {got} does not follow the head {head:?}")]
    OutOfOrder { got: u64, head: Option<u64> },
    #[error("height {0} is not stored")]
    UnknownHeight(u64),
}

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> Self {
        ReadError(e.to_string())
    }
}

/// The new state root for a set of changes, and the tree nodes that make it up; computed
/// without writing, so a proposer can fill in a header before the block is committed.
pub struct PreparedRoot {
    pub root: Hash32,
    pub version: Version,
    batch: NodeBatch,
}

/// The store. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(db)?;
        let store = Store { db: Arc::new(db) };
        store.create_tables()?;
        Ok(store)
    }

    /// A throwaway in-memory store, for tests and benchmarks.
    pub fn in_memory() -> Result<Store, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db)?;
        let store = Store { db: Arc::new(db) };
        store.create_tables()?;
        Ok(store)
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(db)?;
        w.open_table(STATE).map_err(db)?;
        w.open_table(TREE_NODES).map_err(db)?;
        w.open_table(TREE_VALUES).map_err(db)?;
        w.open_table(BLOCKS).map_err(db)?;
        w.open_table(RECEIPTS).map_err(db)?;
        w.open_table(BLOCK_BY_HASH).map_err(db)?;
        w.open_table(TX_INDEX).map_err(db)?;
        w.open_table(FINALITY).map_err(db)?;
        w.open_table(CONSENSUS).map_err(db)?;
        w.open_table(PROPOSALS).map_err(db)?;
        w.open_table(EXECUTION).map_err(db)?;
        w.commit().map_err(db)
    }

    /// Stores the execution certificate of the block at `height`.
    pub fn save_execution_certificate(&self, height: u64, cert: &[u8]) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(db)?;
        w.open_table(EXECUTION)
            .map_err(db)?
            .insert(height, cert)
            .map_err(db)?;
        w.commit().map_err(db)
    }

    /// Durably saves, in one write, what consensus must find after a crash: the engine's
    /// state (if it changed) and the proposals it is about to vote for, by digest.
    pub fn save_consensus(
        &self,
        state: Option<&[u8]>,
        proposals: &[([u8; 32], Vec<u8>)],
    ) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(db)?;
        if let Some(bytes) = state {
            w.open_table(CONSENSUS)
                .map_err(db)?
                .insert("engine", bytes)
                .map_err(db)?;
        }
        {
            let mut t = w.open_table(PROPOSALS).map_err(db)?;
            for (digest, bytes) in proposals {
                t.insert(digest.as_slice(), bytes.as_slice()).map_err(db)?;
            }
        }
        w.commit().map_err(db)
    }

    /// Records why this node's execution diverged from a quorum's (kept until the state is
    /// rebuilt).
    pub fn save_diverged(&self, why: &str) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(db)?;
        w.open_table(CONSENSUS)
            .map_err(db)?
            .insert("diverged", why.as_bytes())
            .map_err(db)?;
        w.commit().map_err(db)
    }

    pub fn diverged(&self) -> Result<Option<String>, StoreError> {
        let r = self.db.begin_read().map_err(db)?;
        let t = r.open_table(CONSENSUS).map_err(db)?;
        Ok(t.get("diverged")
            .map_err(db)?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    pub fn consensus_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.db.begin_read().map_err(db)?;
        let t = r.open_table(CONSENSUS).map_err(db)?;
        Ok(t.get("engine").map_err(db)?.map(|v| v.value().to_vec()))
    }

    /// A consistent read view of everything committed so far.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let r = self.db.begin_read().map_err(db)?;
        Ok(Snapshot {
            state: StateView(r.open_table(STATE).map_err(db)?),
            nodes: r.open_table(TREE_NODES).map_err(db)?,
            values: r.open_table(TREE_VALUES).map_err(db)?,
            blocks: r.open_table(BLOCKS).map_err(db)?,
            receipts: r.open_table(RECEIPTS).map_err(db)?,
            by_hash: r.open_table(BLOCK_BY_HASH).map_err(db)?,
            tx_index: r.open_table(TX_INDEX).map_err(db)?,
            finality: r.open_table(FINALITY).map_err(db)?,
            proposals: r.open_table(PROPOSALS).map_err(db)?,
            execution: r.open_table(EXECUTION).map_err(db)?,
        })
    }

    /// The committed state alone: cheaper to open than a whole [`Snapshot`], for checks that
    /// read a key or two (a sender's nonce and balance on admission).
    pub fn state_view(&self) -> Result<StateView, StoreError> {
        let r = self.db.begin_read().map_err(db)?;
        Ok(StateView(r.open_table(STATE).map_err(db)?))
    }

    /// Computes the state root after applying `changes` at `version` on top of the latest
    /// committed tree (version - 1, or empty for version 0). Writes nothing.
    pub fn prepare_root(
        &self,
        changes: &Changes,
        version: Version,
    ) -> Result<PreparedRoot, StoreError> {
        let snap = self.snapshot()?;
        let tree = JellyfishMerkleTree::<_, Sha256>::new(&snap);
        let updates = changes
            .iter()
            .map(|(k, v)| (KeyHash::with::<Sha256>(k), v.clone()));
        let (root, batch) = tree
            .put_value_set(updates, version)
            .map_err(|e| StoreError::Tree(e.to_string()))?;
        Ok(PreparedRoot {
            root: Hash32(root.0),
            version,
            batch: batch.node_batch,
        })
    }

    /// Writes a block, its receipts, its state changes and its tree nodes atomically.
    ///
    /// `prepared` must come from [`Store::prepare_root`] with the same `changes`, and the
    /// block must be the next height.
    pub fn commit_block(
        &self,
        block: &Block,
        receipts: &[Receipt],
        changes: &Changes,
        prepared: PreparedRoot,
    ) -> Result<(), StoreError> {
        self.commit_final_block(block, receipts, changes, prepared, None)
    }

    /// [`Store::commit_block`], with the proof of the block's finality and its proposal
    /// written in the same transaction.
    pub fn commit_final_block(
        &self,
        block: &Block,
        receipts: &[Receipt],
        changes: &Changes,
        prepared: PreparedRoot,
        finalized: Option<Finalized<'_>>,
    ) -> Result<(), StoreError> {
        let height = block.header.height;
        let head = self.snapshot()?.head_height()?;
        let expected = head.map_or(0, |h| h + 1);
        if height != expected || prepared.version != height {
            return Err(StoreError::OutOfOrder { got: height, head });
        }
        let w = self.db.begin_write().map_err(db)?;
        {
            let mut state = w.open_table(STATE).map_err(db)?;
            for (k, v) in changes {
                match v {
                    Some(v) => state.insert(k.as_slice(), v.as_slice()).map_err(db)?,
                    None => state.remove(k.as_slice()).map_err(db)?,
                };
            }
            let mut nodes = w.open_table(TREE_NODES).map_err(db)?;
            for (key, node) in prepared.batch.nodes() {
                nodes
                    .insert(
                        codec::encode(key).as_slice(),
                        codec::encode(node).as_slice(),
                    )
                    .map_err(db)?;
            }
            let mut values = w.open_table(TREE_VALUES).map_err(db)?;
            for ((version, key_hash), value) in prepared.batch.values() {
                let stored = match value {
                    Some(v) => [&[1u8][..], v].concat(),
                    None => vec![0u8],
                };
                values
                    .insert(value_key(*key_hash, *version).as_slice(), stored.as_slice())
                    .map_err(db)?;
            }
            let block_hash = block.header.hash();
            w.open_table(BLOCKS)
                .map_err(db)?
                .insert(height, codec::encode(block).as_slice())
                .map_err(db)?;
            w.open_table(RECEIPTS)
                .map_err(db)?
                .insert(height, codec::encode(&receipts.to_vec()).as_slice())
                .map_err(db)?;
            w.open_table(BLOCK_BY_HASH)
                .map_err(db)?
                .insert(block_hash.0.as_slice(), height)
                .map_err(db)?;
            if let Some(f) = finalized {
                w.open_table(FINALITY)
                    .map_err(db)?
                    .insert(height, f.proof)
                    .map_err(db)?;
                w.open_table(PROPOSALS)
                    .map_err(db)?
                    .insert(f.digest.as_slice(), f.proposal)
                    .map_err(db)?;
            }
            let mut tx_index = w.open_table(TX_INDEX).map_err(db)?;
            for (i, tx) in block.txs.iter().enumerate() {
                tx_index
                    .insert(tx.hash().0.as_slice(), (height, i as u32))
                    .map_err(db)?;
            }
        }
        w.commit().map_err(db)
    }
}

fn value_key(key_hash: KeyHash, version: Version) -> Vec<u8> {
    let mut k = key_hash.0.to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// A consistent, read-only view of the store at one moment.
pub struct Snapshot {
    state: StateView,
    nodes: ReadOnlyTable<&'static [u8], &'static [u8]>,
    values: ReadOnlyTable<&'static [u8], &'static [u8]>,
    blocks: ReadOnlyTable<u64, &'static [u8]>,
    receipts: ReadOnlyTable<u64, &'static [u8]>,
    by_hash: ReadOnlyTable<&'static [u8], u64>,
    tx_index: ReadOnlyTable<&'static [u8], (u64, u32)>,
    finality: ReadOnlyTable<u64, &'static [u8]>,
    proposals: ReadOnlyTable<&'static [u8], &'static [u8]>,
    execution: ReadOnlyTable<u64, &'static [u8]>,
}

impl Snapshot {
    /// Height of the last committed block, `None` before genesis.
    pub fn head_height(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.blocks.last().map_err(db)?.map(|(k, _)| k.value()))
    }

    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        match self.blocks.get(height).map_err(db)? {
            Some(v) => codec::decode("block", v.value())
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }

    pub fn head_block(&self) -> Result<Option<Block>, StoreError> {
        match self.head_height()? {
            Some(h) => self.block(h),
            None => Ok(None),
        }
    }

    pub fn receipts(&self, height: u64) -> Result<Option<Vec<Receipt>>, StoreError> {
        match self.receipts.get(height).map_err(db)? {
            Some(v) => codec::decode("receipts", v.value())
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }

    pub fn height_of_block(&self, hash: &Hash32) -> Result<Option<u64>, StoreError> {
        Ok(self
            .by_hash
            .get(hash.0.as_slice())
            .map_err(db)?
            .map(|v| v.value()))
    }

    /// Where a transaction landed: (height, index in the block).
    pub fn tx_location(&self, hash: &Hash32) -> Result<Option<(u64, u32)>, StoreError> {
        Ok(self
            .tx_index
            .get(hash.0.as_slice())
            .map_err(db)?
            .map(|v| v.value()))
    }

    /// The finality proof stored with the block at `height`, if consensus produced it.
    pub fn finality(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .finality
            .get(height)
            .map_err(db)?
            .map(|v| v.value().to_vec()))
    }

    /// The execution certificate of the block at `height`, once a quorum certified it.
    pub fn execution_certificate(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .execution
            .get(height)
            .map_err(db)?
            .map(|v| v.value().to_vec()))
    }

    /// The highest height with an execution certificate, if any.
    pub fn last_certified_height(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.execution.last().map_err(db)?.map(|(k, _)| k.value()))
    }

    /// A finalized consensus proposal (encoded), by digest.
    pub fn proposal(&self, digest: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .proposals
            .get(digest.as_slice())
            .map_err(db)?
            .map(|v| v.value().to_vec()))
    }

    pub fn block_count(&self) -> Result<u64, StoreError> {
        self.blocks.len().map_err(db)
    }

    /// Proves the value of `key` (or its absence) at `height`.
    pub fn prove(&self, key: &[u8], height: u64) -> Result<StateProof, StoreError> {
        if self.blocks.get(height).map_err(db)?.is_none() {
            return Err(StoreError::UnknownHeight(height));
        }
        let tree = JellyfishMerkleTree::<_, Sha256>::new(self);
        let (value, proof) = tree
            .get_with_proof(KeyHash::with::<Sha256>(key), height)
            .map_err(|e| StoreError::Tree(e.to_string()))?;
        Ok(StateProof {
            key: key.to_vec(),
            value,
            height,
            proof: borsh::to_vec(&proof).map_err(|e| StoreError::Tree(e.to_string()))?,
        })
    }
}

impl StateRead for Snapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        self.state.get(key)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        descending: bool,
    ) -> Result<Vec<crate::overlay::Entry>, ReadError> {
        self.state.scan(prefix, start_after, limit, descending)
    }
}

/// A read-only view of the committed key-value state (no tree, no blocks).
pub struct StateView(ReadOnlyTable<&'static [u8], &'static [u8]>);

impl StateRead for StateView {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self.0.get(key).map_err(db)?.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        descending: bool,
    ) -> Result<Vec<crate::overlay::Entry>, ReadError> {
        let Some((lo, hi)) = scan_bounds(prefix, start_after, descending) else {
            return Ok(Vec::new());
        };
        let range = self
            .0
            .range::<&[u8]>((
                lo.as_ref().map(|v| v.as_slice()),
                hi.as_ref().map(|v| v.as_slice()),
            ))
            .map_err(db)?;
        let mut out = Vec::new();
        let mut push = |entry: Result<_, redb::StorageError>| -> Result<bool, ReadError> {
            let (k, v): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) = entry.map_err(db)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
            Ok(out.len() < limit)
        };
        if descending {
            for e in range.rev() {
                if !push(e)? {
                    break;
                }
            }
        } else {
            for e in range {
                if !push(e)? {
                    break;
                }
            }
        }
        Ok(out)
    }
}

impl TreeReader for Snapshot {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        match self.nodes.get(codec::encode(node_key).as_slice())? {
            Some(v) => Ok(Some(codec::decode("tree node", v.value())?)),
            None => Ok(None),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let lo = value_key(key_hash, 0);
        let hi = value_key(key_hash, max_version);
        let mut range = self.values.range::<&[u8]>(lo.as_slice()..=hi.as_slice())?;
        match range.next_back() {
            Some(entry) => {
                let (_, v) = entry?;
                let v = v.value();
                Ok(match v.first() {
                    Some(1) => Some(v[1..].to_vec()),
                    _ => None,
                })
            }
            None => Ok(None),
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only used when restoring a tree from a snapshot, which this node does not do.
        anyhow::bail!("state tree restore is not supported")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_types::{Address, Header};

    fn block(height: u64, root: Hash32) -> Block {
        Block {
            header: Header {
                chain_id: "test".into(),
                height,
                parent_hash: Hash32::ZERO,
                time_ms: 0,
                proposer: Address([0; 32]),
                tx_root: Hash32::ZERO,
                tx_count: 0,
                state_root: root,
                receipts_root: Hash32::ZERO,
                receipt_count: 0,
            },
            txs: vec![],
        }
    }

    fn apply(store: &Store, height: u64, changes: &[(&[u8], Option<&[u8]>)]) -> Hash32 {
        let changes: Changes = changes
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(|v| v.to_vec())))
            .collect();
        let prepared = store.prepare_root(&changes, height).unwrap();
        let root = prepared.root;
        store
            .commit_block(&block(height, root), &[], &changes, prepared)
            .unwrap();
        root
    }

    #[test]
    fn proofs_verify_at_each_height_and_fail_on_wrong_values() {
        let store = Store::in_memory().unwrap();
        let r0 = apply(&store, 0, &[(b"a", Some(b"1")), (b"b", Some(b"2"))]);
        let r1 = apply(&store, 1, &[(b"a", Some(b"3")), (b"b", None)]);
        assert_ne!(r0, r1);
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.get(b"a").unwrap(), Some(b"3".to_vec()));
        assert_eq!(snap.get(b"b").unwrap(), None);

        let p = snap.prove(b"a", 1).unwrap();
        assert_eq!(p.value.as_deref(), Some(&b"3"[..]));
        p.verify(&r1).unwrap();
        assert!(
            p.verify(&r0).is_err(),
            "a proof must not verify against another root"
        );
        let mut forged = p.clone();
        forged.value = Some(b"999".to_vec());
        assert!(
            forged.verify(&r1).is_err(),
            "a changed value must not verify"
        );

        let old = snap.prove(b"b", 0).unwrap();
        assert_eq!(old.value.as_deref(), Some(&b"2"[..]));
        old.verify(&r0).unwrap();
        let absent = snap.prove(b"b", 1).unwrap();
        assert_eq!(absent.value, None);
        absent.verify(&r1).unwrap();
        let mut claims_present = absent.clone();
        claims_present.value = Some(b"2".to_vec());
        assert!(claims_present.verify(&r1).is_err());
    }

    #[test]
    fn root_is_independent_of_history_shape() {
        // Same final state reached in one block or two: the same root.
        let one = Store::in_memory().unwrap();
        apply(&one, 0, &[(b"m", Some(b"0"))]);
        let r_one = apply(&one, 1, &[(b"x", Some(b"1")), (b"y", Some(b"2"))]);
        let two = Store::in_memory().unwrap();
        apply(&two, 0, &[(b"m", Some(b"0")), (b"x", Some(b"1"))]);
        let r_two = apply(&two, 1, &[(b"y", Some(b"2"))]);
        assert_eq!(r_one, r_two);
    }

    #[test]
    fn blocks_must_come_in_order_and_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.redb");
        {
            let store = Store::open(&path).unwrap();
            apply(&store, 0, &[(b"k", Some(b"v"))]);
            let changes = Changes::new();
            let prepared = store.prepare_root(&changes, 5).unwrap();
            let err = store
                .commit_block(&block(5, prepared.root), &[], &changes, prepared)
                .unwrap_err();
            assert!(matches!(
                err,
                StoreError::OutOfOrder {
                    got: 5,
                    head: Some(0)
                }
            ));
        }
        let store = Store::open(&path).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.head_height().unwrap(), Some(0));
        assert_eq!(snap.get(b"k").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn snapshot_scan_matches_btreemap() {
        let store = Store::in_memory().unwrap();
        apply(
            &store,
            0,
            &[
                (b"p1", Some(b"a")),
                (b"p2", Some(b"b")),
                (b"p3", Some(b"c")),
                (b"q", Some(b"d")),
            ],
        );
        let snap = store.snapshot().unwrap();
        let model: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = [
            (&b"p1"[..], &b"a"[..]),
            (b"p2", b"b"),
            (b"p3", b"c"),
            (b"q", b"d"),
        ]
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
        for desc in [false, true] {
            for after in [None, Some(&b"p1"[..]), Some(&b"p3"[..]), Some(&b"z"[..])] {
                assert_eq!(
                    snap.scan(b"p", after, 2, desc).unwrap(),
                    model.scan(b"p", after, 2, desc).unwrap()
                );
            }
        }
    }
}
