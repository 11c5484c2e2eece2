//! The validator set: who votes, how many make a quorum, and certificate checks.

use crate::crypto::VoteScheme;
use crate::types::{Certificate, Digest, ValidatorIndex, View, VoteKind, signing_bytes};
use std::collections::BTreeMap;

/// The permissioned set: `n = 3f + 1` (or more) validators, in genesis order.
#[derive(Clone, Debug)]
pub struct ValidatorSet<S: VoteScheme> {
    publics: Vec<S::Public>,
    namespace: Vec<u8>,
}

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("certificate has {got} signers, a quorum is {need}")]
    TooFewSigners { got: usize, need: usize },
    #[error("certificate names validator {0}, the set has {1}")]
    UnknownSigner(usize, usize),
    #[error("certificate bitmap is {got} bytes, expected {want}")]
    BadBitmap { got: usize, want: usize },
    #[error("certificate signature does not verify against its signers")]
    BadSignature,
    #[error("a nullify certificate must carry the zero digest")]
    NullifyWithDigest,
}

impl<S: VoteScheme> ValidatorSet<S> {
    /// `namespace` is the chain id: votes sign it, so they never count on another chain.
    pub fn new(publics: Vec<S::Public>, namespace: impl Into<Vec<u8>>) -> ValidatorSet<S> {
        assert!(!publics.is_empty(), "a validator set needs validators");
        assert!(publics.len() <= ValidatorIndex::MAX as usize);
        ValidatorSet {
            publics,
            namespace: namespace.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.publics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.publics.is_empty()
    }

    /// Faults tolerated: `f = (n - 1) / 3`.
    pub fn max_faulty(&self) -> usize {
        (self.len() - 1) / 3
    }

    /// Votes that make a certificate: `n - f` (`2f + 1` when `n = 3f + 1`). Any two quorums
    /// share at least `f + 1` validators, so at least one honest one.
    pub fn quorum(&self) -> usize {
        self.len() - self.max_faulty()
    }

    pub fn public(&self, i: ValidatorIndex) -> Option<&S::Public> {
        self.publics.get(i as usize)
    }

    pub fn publics(&self) -> &[S::Public] {
        &self.publics
    }

    pub fn namespace(&self) -> &[u8] {
        &self.namespace
    }

    /// Leader of a view: round robin.
    pub fn leader(&self, view: View) -> ValidatorIndex {
        (view % self.len() as u64) as ValidatorIndex
    }

    pub fn vote_bytes(&self, kind: VoteKind, view: View, digest: &Digest) -> Vec<u8> {
        signing_bytes(&self.namespace, kind, view, digest)
    }

    /// Checks one vote signature.
    pub fn verify_vote(
        &self,
        signer: ValidatorIndex,
        kind: VoteKind,
        view: View,
        digest: &Digest,
        sig: &S::Signature,
    ) -> bool {
        self.public(signer)
            .is_some_and(|p| S::verify(p, &self.vote_bytes(kind, view, digest), sig))
    }

    /// Checks a certificate with one aggregate verification: a quorum of distinct known
    /// signers, and their combined signature over the vote bytes.
    pub fn verify_certificate(&self, cert: &Certificate<S>) -> Result<(), CertError> {
        if cert.kind == VoteKind::Nullify && cert.digest != Digest::ZERO {
            return Err(CertError::NullifyWithDigest);
        }
        let want = self.len().div_ceil(8);
        if cert.signers.len() != want {
            return Err(CertError::BadBitmap {
                got: cert.signers.len(),
                want,
            });
        }
        let signers = cert.signer_indices();
        if let Some(&bad) = signers.iter().find(|&&i| i as usize >= self.len()) {
            return Err(CertError::UnknownSigner(bad as usize, self.len()));
        }
        if signers.len() < self.quorum() {
            return Err(CertError::TooFewSigners {
                got: signers.len(),
                need: self.quorum(),
            });
        }
        let publics: Vec<&S::Public> = signers.iter().map(|&i| &self.publics[i as usize]).collect();
        let msg = self.vote_bytes(cert.kind, cert.view, &cert.digest);
        if S::verify_aggregate(&publics, &msg, &cert.signature) {
            Ok(())
        } else {
            Err(CertError::BadSignature)
        }
    }

    /// Aggregates a quorum of votes into a certificate, optimistically: the votes were not
    /// checked one by one on arrival, so the aggregate is checked once; only if it fails is
    /// each vote checked, and the bad ones are returned to be dropped.
    pub fn try_certify(
        &self,
        kind: VoteKind,
        view: View,
        digest: &Digest,
        votes: &BTreeMap<ValidatorIndex, S::Signature>,
    ) -> Result<Certificate<S>, Vec<ValidatorIndex>> {
        let sigs: Vec<&S::Signature> = votes.values().collect();
        let publics: Vec<&S::Public> = votes.keys().map(|&i| &self.publics[i as usize]).collect();
        let msg = self.vote_bytes(kind, view, digest);
        if let Some(signature) = S::aggregate(&sigs)
            && S::verify_aggregate(&publics, &msg, &signature)
        {
            return Ok(Certificate {
                kind,
                view,
                digest: *digest,
                signers: crate::types::bitmap(votes.keys().copied(), self.len()),
                signature,
            });
        }
        Err(votes
            .iter()
            .filter(|(i, s)| !S::verify(&self.publics[**i as usize], &msg, s))
            .map(|(i, _)| *i)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Bls, BlsSecret};
    use crate::types::bitmap;

    fn set() -> (Vec<BlsSecret>, ValidatorSet<Bls>) {
        let keys: Vec<BlsSecret> = (0..4u8).map(|i| BlsSecret::from_seed(&[i])).collect();
        let set = ValidatorSet::new(keys.iter().map(|k| k.public()).collect(), "test-chain");
        (keys, set)
    }

    fn votes(
        keys: &[BlsSecret],
        set: &ValidatorSet<Bls>,
        who: &[u16],
        digest: &Digest,
    ) -> BTreeMap<u16, crate::crypto::BlsSignature> {
        let msg = set.vote_bytes(VoteKind::Notarize, 3, digest);
        who.iter()
            .map(|&i| (i, Bls::sign(&keys[i as usize], &msg)))
            .collect()
    }

    #[test]
    fn quorum_sizes() {
        let (_, set) = set();
        assert_eq!((set.max_faulty(), set.quorum()), (1, 3));
        let seven = ValidatorSet::<crate::crypto::SimScheme>::new((0..7).collect(), "x");
        assert_eq!((seven.max_faulty(), seven.quorum()), (2, 5));
    }

    #[test]
    fn certificates_verify_and_forgeries_do_not() {
        let (keys, set) = set();
        let d = Digest([7; 32]);
        let cert = set
            .try_certify(
                VoteKind::Notarize,
                3,
                &d,
                &votes(&keys, &set, &[0, 2, 3], &d),
            )
            .expect("three good votes certify");
        assert_eq!(set.verify_certificate(&cert), Ok(()));

        let mut forged = cert.clone();
        forged.signers = bitmap([0, 1, 3], 4);
        assert_eq!(
            set.verify_certificate(&forged),
            Err(CertError::BadSignature),
            "a forged bitmap"
        );
        let mut other_view = cert.clone();
        other_view.view = 4;
        assert_eq!(
            set.verify_certificate(&other_view),
            Err(CertError::BadSignature)
        );
        let mut as_finalize = cert.clone();
        as_finalize.kind = VoteKind::Finalize;
        assert_eq!(
            set.verify_certificate(&as_finalize),
            Err(CertError::BadSignature),
            "a notarization is not a finalization"
        );
        let two = set
            .try_certify(VoteKind::Notarize, 3, &d, &votes(&keys, &set, &[0, 2], &d))
            .unwrap();
        assert_eq!(
            set.verify_certificate(&two),
            Err(CertError::TooFewSigners { got: 2, need: 3 })
        );
        let mut wide = cert.clone();
        wide.signers = vec![0b1111, 0];
        assert!(matches!(
            set.verify_certificate(&wide),
            Err(CertError::BadBitmap { .. })
        ));
        let mut unknown = cert;
        unknown.signers = vec![0b1100_0101];
        assert_eq!(
            set.verify_certificate(&unknown),
            Err(CertError::UnknownSigner(6, 4))
        );
    }

    #[test]
    fn a_bad_vote_is_found_when_the_aggregate_fails() {
        let (keys, set) = set();
        let d = Digest([1; 32]);
        let mut v = votes(&keys, &set, &[0, 1, 2], &d);
        // Validator 1's slot holds a signature over something else.
        v.insert(1, Bls::sign(&keys[1], b"not the vote"));
        assert_eq!(
            set.try_certify(VoteKind::Notarize, 3, &d, &v).err(),
            Some(vec![1])
        );
    }
}
