//! Merkle roots of the per-block lists (transactions, receipts) and their inclusion proofs.
//!
//! A complete binary Merkle tree (`merkle-cbt`) over leaf hashes. Two things the crate does
//! not do by itself are done here: leaves and inner nodes are hashed under different prefixes
//! (so an inner node can never be passed off as a leaf), and the leaf count is committed in
//! the header beside the root (a proof's tree position only means "leaf `i`" for a known count).

use crate::hash::Hash32;
use merkle_cbt::merkle_tree::{CBMT, Merge, MerkleProof};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

struct TaggedSha256;

impl Merge for TaggedSha256 {
    type Item = Hash32;
    fn merge(left: &Hash32, right: &Hash32) -> Hash32 {
        let mut h = Sha256::new();
        h.update([NODE_PREFIX]);
        h.update(left.0);
        h.update(right.0);
        Hash32(h.finalize().into())
    }
}

type Tree = CBMT<Hash32, TaggedSha256>;

/// The leaf hash of an item's canonical bytes.
pub fn leaf_hash(item: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(item);
    Hash32(h.finalize().into())
}

/// Root of a list of items given by their canonical bytes; all zeros for an empty list.
pub fn list_root<I: AsRef<[u8]>>(items: &[I]) -> Hash32 {
    let leaves: Vec<Hash32> = items.iter().map(|i| leaf_hash(i.as_ref())).collect();
    Tree::build_merkle_root(&leaves)
}

/// Proof that the item at `index` is in a list of `count` items with a given root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListProof {
    pub index: u32,
    pub count: u32,
    /// Sibling hashes from the leaf up, as `merkle-cbt` orders them.
    pub lemmas: Vec<Hash32>,
}

impl ListProof {
    /// Builds the proof for `items[index]`, or `None` if `index` is out of range.
    pub fn build<I: AsRef<[u8]>>(items: &[I], index: u32) -> Option<ListProof> {
        let leaves: Vec<Hash32> = items.iter().map(|i| leaf_hash(i.as_ref())).collect();
        let proof = Tree::build_merkle_proof(&leaves, &[index])?;
        Some(ListProof {
            index,
            count: u32::try_from(leaves.len()).ok()?,
            lemmas: proof.lemmas().to_vec(),
        })
    }

    /// Checks that `item` is element `self.index` of the `count`-long list under `root`.
    /// `count` and `root` must come from a trusted header.
    pub fn verify(&self, root: &Hash32, count: u32, item: &[u8]) -> Result<(), String> {
        if self.count != count {
            return Err(format!(
                "proof is for a list of {} items, the header commits to {count}",
                self.count
            ));
        }
        if self.index >= count {
            return Err(format!("index {} is outside a list of {count}", self.index));
        }
        // Position of leaf `index` in the array layout of a complete tree of `count` leaves.
        let position = count - 1 + self.index;
        let proof: MerkleProof<Hash32, TaggedSha256> =
            MerkleProof::new(vec![position], self.lemmas.clone());
        if proof.verify(root, &[leaf_hash(item)]) {
            Ok(())
        } else {
            Err("item is not in the list under this root".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("item-{i}").into_bytes()).collect()
    }

    #[test]
    fn empty_list_root_is_zero() {
        assert_eq!(list_root::<Vec<u8>>(&[]), Hash32::ZERO);
    }

    #[test]
    fn inner_node_is_not_a_leaf() {
        // With prefixes, the root of [a, b] differs from the leaf hash of (leaf(a) || leaf(b)).
        let it = items(2);
        let mut concat = leaf_hash(&it[0]).0.to_vec();
        concat.extend(leaf_hash(&it[1]).0);
        assert_ne!(list_root(&it), leaf_hash(&concat));
    }

    proptest! {
        #[test]
        fn every_item_proves_and_no_other_does(n in 1usize..40, pick in 0usize..40) {
            let it = items(n);
            let root = list_root(&it);
            let i = pick % n;
            let proof = ListProof::build(&it, i as u32).unwrap();
            prop_assert!(proof.verify(&root, n as u32, &it[i]).is_ok());
            // Wrong item, wrong count, wrong index: all refused.
            prop_assert!(proof.verify(&root, n as u32, b"forged").is_err());
            prop_assert!(proof.verify(&root, n as u32 + 1, &it[i]).is_err());
            if n > 1 {
                let mut moved = proof.clone();
                moved.index = ((i + 1) % n) as u32;
                prop_assert!(moved.verify(&root, n as u32, &it[i]).is_err());
            }
        }
    }
}
