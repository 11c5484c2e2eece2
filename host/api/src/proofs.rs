//! Self-contained proof bundles: what the API hands out and what `gridledger verify` checks
//! offline, with nothing but the bundle and (optionally) a header hash the verifier trusts.

use gridledger_state::StateProof;
use gridledger_types::merkle::ListProof;
use gridledger_types::{Hash32, Header, Receipt, SignedTx};
use serde::{Deserialize, Serialize};

/// A transaction and its receipt, proven into a block header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxProof {
    pub header: Header,
    /// The canonical transaction bytes (hex).
    #[serde(with = "gridledger_types::hash::hex_bytes")]
    pub tx: Vec<u8>,
    pub receipt: Receipt,
    pub tx_proof: ListProof,
    pub receipt_proof: ListProof,
}

/// A state key's value (or absence), proven into a block header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateProofBundle {
    pub header: Header,
    pub proof: StateProof,
}

fn check_header(header: &Header, trusted: Option<&Hash32>) -> Result<(), String> {
    match trusted {
        Some(h) if header.hash() != *h => Err(format!(
            "the bundle's header hashes to {}, not the trusted {}",
            header.hash().to_hex(),
            h.to_hex()
        )),
        _ => Ok(()),
    }
}

impl TxProof {
    /// Checks both inclusion proofs against the header, and the header against `trusted`.
    pub fn verify(&self, trusted: Option<&Hash32>) -> Result<(), String> {
        check_header(&self.header, trusted)?;
        let tx = SignedTx::decode(&self.tx).map_err(|e| e.to_string())?;
        if tx.hash() != self.receipt.tx_hash {
            return Err("the receipt belongs to another transaction".into());
        }
        self.tx_proof
            .verify(&self.header.tx_root, self.header.tx_count, &self.tx)
            .map_err(|e| format!("transaction: {e}"))?;
        if self.tx_proof.index != self.receipt_proof.index {
            return Err("transaction and receipt proofs are for different positions".into());
        }
        self.receipt_proof
            .verify(
                &self.header.receipts_root,
                self.header.receipt_count,
                &self.receipt.encode(),
            )
            .map_err(|e| format!("receipt: {e}"))
    }
}

impl StateProofBundle {
    pub fn verify(&self, trusted: Option<&Hash32>) -> Result<(), String> {
        check_header(&self.header, trusted)?;
        if self.proof.height != self.header.height {
            return Err(format!(
                "proof is for height {}, header is {}",
                self.proof.height, self.header.height
            ));
        }
        self.proof.verify(&self.header.state_root)
    }
}
