//! Proofs that a key holds a value (or nothing) under a block's state root.
//!
//! The tree is keyed by `sha256(raw key)`; a proof carries the raw key, so a verifier
//! recomputes the hash itself rather than trusting one.

use gridledger_types::Hash32;
use jmt::proof::SparseMerkleProof;
use jmt::{KeyHash, RootHash};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A membership or non-membership proof for one key at one version (block height).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateProof {
    #[serde(with = "gridledger_types::hash::hex_bytes")]
    pub key: Vec<u8>,
    /// The value, or `None` when the proof shows the key absent.
    #[serde(with = "opt_hex")]
    pub value: Option<Vec<u8>>,
    /// The block height whose state root this proof is against.
    pub height: u64,
    /// The Jellyfish sparse Merkle proof (borsh-encoded `jmt::proof::SparseMerkleProof`).
    #[serde(with = "gridledger_types::hash::hex_bytes")]
    pub proof: Vec<u8>,
}

impl StateProof {
    /// Checks the proof against `state_root` (taken from a header the verifier trusts).
    pub fn verify(&self, state_root: &Hash32) -> Result<(), String> {
        let proof: SparseMerkleProof<Sha256> =
            borsh::from_slice(&self.proof).map_err(|e| format!("malformed proof: {e}"))?;
        proof
            .verify(
                RootHash(state_root.0),
                KeyHash::with::<Sha256>(&self.key),
                self.value.as_deref(),
            )
            .map_err(|e| format!("proof does not match the state root: {e}"))
    }
}

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| hex::decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
