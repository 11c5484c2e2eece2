//! The wire encoding of [`Message`]: borsh, with signatures as bytes decoded by the scheme's
//! checked decoder. Decoding refuses trailing bytes, unknown tags and malformed points; the
//! transport frames messages and caps their size ([`MAX_MESSAGE_BYTES`]) before this runs.

use crate::crypto::VoteScheme;
use crate::types::{Certificate, Digest, Message, Proposal, ValidatorIndex, View, Vote, VoteKind};
use borsh::{BorshDeserialize, BorshSerialize};

/// The largest message a validator accepts: a full block of transactions and then some.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

#[derive(BorshSerialize, BorshDeserialize)]
enum Wire {
    Propose {
        proposal: Proposal,
        signature: Vec<u8>,
    },
    Vote {
        kind: VoteKind,
        view: View,
        digest: Digest,
        signer: ValidatorIndex,
        signature: Vec<u8>,
    },
    Certificate {
        kind: VoteKind,
        view: View,
        digest: Digest,
        signers: Vec<u8>,
        signature: Vec<u8>,
    },
    Fetch(Digest),
    Block(Proposal),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message is {0} bytes, the limit is {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("malformed signature")]
    BadSignatureEncoding,
}

pub fn encode<S: VoteScheme>(m: &Message<S>) -> Vec<u8> {
    let w = match m {
        Message::Propose {
            proposal,
            signature,
        } => Wire::Propose {
            proposal: proposal.clone(),
            signature: S::signature_to_bytes(signature),
        },
        Message::Vote(v) => Wire::Vote {
            kind: v.kind,
            view: v.view,
            digest: v.digest,
            signer: v.signer,
            signature: S::signature_to_bytes(&v.signature),
        },
        Message::Certificate(c) => Wire::Certificate {
            kind: c.kind,
            view: c.view,
            digest: c.digest,
            signers: c.signers.clone(),
            signature: S::signature_to_bytes(&c.signature),
        },
        Message::Fetch(d) => Wire::Fetch(*d),
        Message::Block(p) => Wire::Block(p.clone()),
    };
    borsh::to_vec(&w).expect("borsh serialization into a Vec is infallible")
}

pub fn decode<S: VoteScheme>(bytes: &[u8]) -> Result<Message<S>, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let w: Wire = borsh::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    let sig = |b: &[u8]| S::signature_from_bytes(b).ok_or(WireError::BadSignatureEncoding);
    Ok(match w {
        Wire::Propose {
            proposal,
            signature,
        } => Message::Propose {
            proposal,
            signature: sig(&signature)?,
        },
        Wire::Vote {
            kind,
            view,
            digest,
            signer,
            signature,
        } => Message::Vote(Vote {
            kind,
            view,
            digest,
            signer,
            signature: sig(&signature)?,
        }),
        Wire::Certificate {
            kind,
            view,
            digest,
            signers,
            signature,
        } => Message::Certificate(Certificate {
            kind,
            view,
            digest,
            signers,
            signature: sig(&signature)?,
        }),
        Wire::Fetch(d) => Message::Fetch(d),
        Wire::Block(p) => Message::Block(p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Bls, BlsSecret};

    #[test]
    fn round_trips_and_refuses_garbage() {
        let key = BlsSecret::from_seed(b"k");
        let d = Digest([3; 32]);
        let vote = Message::<Bls>::Vote(Vote {
            kind: VoteKind::Finalize,
            view: 9,
            digest: d,
            signer: 2,
            signature: Bls::sign(&key, b"x"),
        });
        let bytes = encode(&vote);
        assert_eq!(decode::<Bls>(&bytes), Ok(vote));
        assert!(matches!(
            decode::<Bls>(&bytes[..bytes.len() - 1]),
            Err(WireError::Malformed(_))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            decode::<Bls>(&trailing),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Bls>(&[0xff, 1, 2]),
            Err(WireError::Malformed(_))
        ));
        // A well-formed frame whose signature is not a curve point.
        let mut bad_point = bytes.clone();
        let at = bad_point.len() - 96;
        bad_point[at..].fill(0x13);
        assert_eq!(
            decode::<Bls>(&bad_point),
            Err(WireError::BadSignatureEncoding)
        );
        assert_eq!(
            decode::<Bls>(&vec![0; MAX_MESSAGE_BYTES + 1]),
            Err(WireError::TooLarge(MAX_MESSAGE_BYTES + 1))
        );
    }
}
