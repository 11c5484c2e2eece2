//! What validators exchange: proposals, votes and certificates, and the bytes each vote signs.

use crate::crypto::VoteScheme;
use borsh::{BorshDeserialize, BorshSerialize};
use sha2::{Digest as _, Sha256};

/// A view (Simplex "iteration"): one leader, one chance to notarize a block.
pub type View = u64;
/// A validator's position in the genesis validator set.
pub type ValidatorIndex = u16;

/// The hash that identifies a proposal.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub const ZERO: Digest = Digest([0; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}

/// A leader's block: its place in the chain and an opaque payload (for the node: the block
/// time and the transactions).
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub view: View,
    /// 1 for the first block after genesis.
    pub height: u64,
    /// The digest of the parent proposal; [`Digest::ZERO`] for a child of genesis.
    pub parent: Digest,
    /// The view the parent was notarized in (0 for genesis).
    pub parent_view: View,
    pub payload: Vec<u8>,
}

const PROPOSAL_TAG: &[u8] = b"gridledger/consensus/proposal/v1";

impl Proposal {
    /// Commits to every field; the payload enters by its hash so a header can carry the digest's
    /// preimage without the payload.
    pub fn digest(&self) -> Digest {
        proposal_digest(
            self.view,
            self.height,
            &self.parent,
            self.parent_view,
            &Sha256::digest(&self.payload).into(),
        )
    }
}

/// The digest of a proposal from its fields and its payload's SHA-256 (what a light client has).
pub fn proposal_digest(
    view: View,
    height: u64,
    parent: &Digest,
    parent_view: View,
    payload_hash: &[u8; 32],
) -> Digest {
    let mut h = Sha256::new();
    h.update(PROPOSAL_TAG);
    h.update(view.to_be_bytes());
    h.update(height.to_be_bytes());
    h.update(parent.0);
    h.update(parent_view.to_be_bytes());
    h.update(payload_hash);
    Digest(h.finalize().into())
}

/// The three votes of Simplex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, BorshSerialize, BorshDeserialize)]
pub enum VoteKind {
    /// "This is the leader's first valid block of the view."
    Notarize,
    /// "This view timed out for me" (its digest is [`Digest::ZERO`]).
    Nullify,
    /// "I saw this view's block notarized and never nullified the view."
    Finalize,
    /// "Executing the finalized chain up to this height gave the header with this hash."
    /// Its `view` field carries the height (see [`crate::execution`]).
    Execute,
}

/// The bytes a vote signs: a tag naming the chain and the vote kind, the view and the digest.
/// The namespace (the chain id) keeps votes of one chain from counting on another.
pub fn signing_bytes(namespace: &[u8], kind: VoteKind, view: View, digest: &Digest) -> Vec<u8> {
    let tag: &[u8] = match kind {
        VoteKind::Notarize => b"gridledger/consensus/notarize/v1",
        VoteKind::Nullify => b"gridledger/consensus/nullify/v1",
        VoteKind::Finalize => b"gridledger/consensus/finalize/v1",
        VoteKind::Execute => b"gridledger/consensus/executed/v1",
    };
    let mut out = Vec::with_capacity(tag.len() + namespace.len() + 49);
    out.extend_from_slice(tag);
    out.push(namespace.len() as u8);
    out.extend_from_slice(namespace);
    out.extend_from_slice(&view.to_be_bytes());
    out.extend_from_slice(&digest.0);
    out
}

/// One validator's vote.
#[derive(Clone, PartialEq, Debug)]
pub struct Vote<S: VoteScheme> {
    pub kind: VoteKind,
    pub view: View,
    pub digest: Digest,
    pub signer: ValidatorIndex,
    pub signature: S::Signature,
}

/// A quorum of votes of one kind for one (view, digest), as one aggregated signature and a
/// bitmap of who signed.
#[derive(Clone, PartialEq, Debug)]
pub struct Certificate<S: VoteScheme> {
    pub kind: VoteKind,
    pub view: View,
    pub digest: Digest,
    /// Bit `i` (byte `i / 8`, bit `i % 8`) is set when validator `i` signed.
    pub signers: Vec<u8>,
    pub signature: S::Signature,
}

impl<S: VoteScheme> Certificate<S> {
    /// The indices whose bits are set.
    pub fn signer_indices(&self) -> Vec<ValidatorIndex> {
        let mut out = Vec::new();
        for (byte, bits) in self.signers.iter().enumerate() {
            for bit in 0..8 {
                if bits & (1 << bit) != 0 {
                    out.push((byte * 8 + bit) as ValidatorIndex);
                }
            }
        }
        out
    }
}

/// Builds a signer bitmap.
pub fn bitmap(indices: impl IntoIterator<Item = ValidatorIndex>, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n.div_ceil(8)];
    for i in indices {
        out[i as usize / 8] |= 1 << (i % 8);
    }
    out
}

/// What one validator sends another.
#[derive(Clone, PartialEq, Debug)]
pub enum Message<S: VoteScheme> {
    /// The leader's block with the leader's own notarize vote, which authenticates it.
    Propose {
        proposal: Proposal,
        signature: S::Signature,
    },
    Vote(Vote<S>),
    Certificate(Certificate<S>),
    /// "Send me the proposal with this digest" (a block notarized while I was away).
    Fetch(Digest),
    /// The answer to [`Message::Fetch`], checked against the digest asked for.
    Block(Proposal),
}
