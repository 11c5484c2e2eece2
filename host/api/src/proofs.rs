//! Self-contained proof bundles: what the API hands out and what `gridledger verify` checks
//! offline, with nothing but the bundle and the genesis validator set (or a header hash the
//! verifier trusts).
//!
//! What a valid, final bundle proves: the record (a transaction and its receipt, or state
//! keys' values) is in the block whose header is in the bundle, by Merkle paths into that
//! header's roots; and a quorum (`n - f`) of the genesis validators signed that header's hash
//! after executing the chain up to it (an *execution certificate*, one aggregated BLS
//! signature). While at most `f` validators are faulty, no other header at that height can
//! carry such a certificate.

use gridledger_consensus::crypto::Bls;
use gridledger_consensus::{Message, ValidatorSet, VoteKind};
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
    /// Why the header is final (chains run by validators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finality: Option<Finality>,
}

/// Proof that a header is final: the execution certificate over its hash, in the consensus
/// wire encoding (kind `Execute`, `view` = the height, `digest` = the header hash, a signer
/// bitmap and one aggregated BLS signature).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finality {
    #[serde(with = "hex::serde")]
    pub certificate: Vec<u8>,
}

impl Finality {
    /// Checks that a quorum of `validators` signed exactly this header's hash at its height.
    pub fn verify(&self, header: &Header, validators: &ValidatorSet<Bls>) -> Result<(), String> {
        let cert = match gridledger_consensus::wire::decode::<Bls>(&self.certificate) {
            Ok(Message::Certificate(c)) => c,
            _ => return Err("finality: the certificate does not decode".into()),
        };
        if cert.kind != VoteKind::Execute {
            return Err(format!(
                "finality: a {:?} certificate does not certify a header",
                cert.kind
            ));
        }
        if cert.view != header.height || cert.digest.0 != header.hash().0 {
            return Err(format!(
                "finality: the certificate is over header {} at height {}, not this header ({} at height {})",
                cert.digest.to_hex(),
                cert.view,
                header.hash().to_hex(),
                header.height
            ));
        }
        validators
            .verify_certificate(&cert)
            .map_err(|e| format!("finality: {e}"))
    }
}

/// A state key's value (or absence), proven into a block header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateProofBundle {
    pub header: Header,
    pub proof: StateProof,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finality: Option<Finality>,
}

/// Several state keys (values or absences) proven into one block header: a market record
/// and what it depends on, say, a trade or a period's settlement with its meter reading.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateProofsBundle {
    pub header: Header,
    pub proofs: Vec<StateProof>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finality: Option<Finality>,
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
        tx.verify_signature()
            .map_err(|e| format!("the transaction's signature: {e}"))?;
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

impl StateProofsBundle {
    pub fn verify(&self, trusted: Option<&Hash32>) -> Result<(), String> {
        check_header(&self.header, trusted)?;
        if self.proofs.is_empty() {
            return Err("the bundle proves no key".into());
        }
        for p in &self.proofs {
            if p.height != self.header.height {
                return Err(format!(
                    "key {}: proof is for height {}, header is {}",
                    hex::encode(&p.key),
                    p.height,
                    self.header.height
                ));
            }
            p.verify(&self.header.state_root)
                .map_err(|e| format!("key {}: {e}", hex::encode(&p.key)))?;
        }
        Ok(())
    }
}
