//! What validators order and what proves a block final.
//!
//! Consensus orders [`BlockPayload`]s (the leader's block time and transactions); every node
//! executes each finalized payload into the block at its height. The block's state records the
//! digest of the proposal it came from (key [`CONSENSUS_DIGEST_KEY`]), so the header's state
//! root commits to it, and the block is stored with a [`FinalityProof`]: a finalization
//! certificate (one aggregated BLS signature of a quorum) over that proposal or a descendant,
//! and the chain of proposal headers linking the two. A client holding the validator set checks
//! it offline with [`FinalityProof::verify`].

use borsh::{BorshDeserialize, BorshSerialize};
use gridledger_consensus::crypto::Bls;
use gridledger_consensus::types::proposal_digest;
use gridledger_consensus::{Certificate, Digest, Message, Proposal, ValidatorSet, View, VoteKind};
use gridledger_types::SignedTx;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// State key (under the meta prefix) holding the digest of the block's proposal.
pub const CONSENSUS_DIGEST_KEY: &str = "consensus_digest";

/// What a leader proposes.
#[derive(BorshSerialize, BorshDeserialize, Clone, Debug)]
pub struct BlockPayload {
    pub time_ms: u64,
    pub txs: Vec<SignedTx>,
}

impl BlockPayload {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh serialization into a Vec is infallible")
    }

    /// A payload that does not decode is executed as an empty block, identically everywhere.
    pub fn decode(bytes: &[u8]) -> Option<BlockPayload> {
        borsh::from_slice(bytes).ok()
    }
}

/// A proposal without its payload: enough to recompute its digest.
#[derive(BorshSerialize, BorshDeserialize, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ProposalHeader {
    pub view: View,
    pub height: u64,
    #[serde(with = "hex::serde")]
    pub parent: [u8; 32],
    pub parent_view: View,
    #[serde(with = "hex::serde")]
    pub payload_hash: [u8; 32],
}

impl ProposalHeader {
    pub fn of(p: &Proposal) -> ProposalHeader {
        ProposalHeader {
            view: p.view,
            height: p.height,
            parent: p.parent.0,
            parent_view: p.parent_view,
            payload_hash: Sha256::digest(&p.payload).into(),
        }
    }

    pub fn digest(&self) -> Digest {
        proposal_digest(
            self.view,
            self.height,
            &Digest(self.parent),
            self.parent_view,
            &self.payload_hash,
        )
    }
}

/// Why the block at a height is final.
#[derive(BorshSerialize, BorshDeserialize, Serialize, Deserialize, Clone, Debug)]
pub struct FinalityProof {
    /// The finalization certificate, in the consensus wire encoding.
    #[serde(with = "hex::serde")]
    pub certificate: Vec<u8>,
    /// `links[0]` is the certified proposal; each next one is the parent of the one before;
    /// the last is this block's.
    pub links: Vec<ProposalHeader>,
}

impl FinalityProof {
    pub fn new(certificate: &Certificate<Bls>, links: Vec<ProposalHeader>) -> FinalityProof {
        FinalityProof {
            certificate: gridledger_consensus::wire::encode::<Bls>(&Message::Certificate(
                certificate.clone(),
            )),
            links,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh serialization into a Vec is infallible")
    }

    pub fn decode(bytes: &[u8]) -> Option<FinalityProof> {
        borsh::from_slice(bytes).ok()
    }

    /// The proposal this block came from.
    /// The finalization certificate, decoded (`None` if it does not decode).
    pub fn certificate(&self) -> Option<Certificate<Bls>> {
        match gridledger_consensus::wire::decode::<Bls>(&self.certificate) {
            Ok(Message::Certificate(c)) => Some(c),
            _ => None,
        }
    }

    pub fn block_proposal(&self) -> Option<&ProposalHeader> {
        self.links.last()
    }

    /// Checks that `digest` (the block's proposal, as its state records it) at `height` is
    /// final under `validators`: a quorum's finalization certificate over the first link, and
    /// an unbroken chain of parents from it down to `digest`.
    pub fn verify(
        &self,
        validators: &ValidatorSet<Bls>,
        height: u64,
        digest: &Digest,
    ) -> Result<(), String> {
        let cert = match gridledger_consensus::wire::decode::<Bls>(&self.certificate) {
            Ok(Message::Certificate(c)) => c,
            _ => return Err("the finality certificate does not decode".into()),
        };
        if cert.kind != VoteKind::Finalize {
            return Err(format!("a {:?} certificate does not finalize", cert.kind));
        }
        validators
            .verify_certificate(&cert)
            .map_err(|e| format!("finality certificate: {e}"))?;
        let first = self.links.first().ok_or("the proof has no proposals")?;
        if first.digest() != cert.digest || first.view != cert.view {
            return Err("the certificate is not over the first proposal".into());
        }
        for pair in self.links.windows(2) {
            if pair[1].digest().0 != pair[0].parent || pair[1].height + 1 != pair[0].height {
                return Err("the proposals do not form a chain".into());
            }
        }
        let last = self.links.last().ok_or("the proof has no proposals")?;
        if last.height != height || last.digest() != *digest {
            return Err(format!(
                "the proof finalizes proposal {} at height {}, not this block's",
                last.digest().to_hex(),
                last.height
            ));
        }
        Ok(())
    }
}
