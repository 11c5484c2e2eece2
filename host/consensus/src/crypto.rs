//! Vote signatures behind a small trait, and its BLS12-381 implementation.
//!
//! BLS (min-pk): public keys in G1 (48 bytes), signatures in G2 (96 bytes), messages hashed to
//! G2 (RFC 9380, `BLS12381G2_XMD:SHA-256_SSWU_RO_`) under our own domain tags. Signatures on
//! the same message aggregate by addition, so a quorum certificate is one signature plus a
//! bitmap of signers and verifies with one pairing check against the sum of their keys. That
//! sum is only safe against rogue keys because every key comes with a proof of possession
//! (a signature over the key itself, under a separate tag), checked when the set is loaded.
//! Wire points are decoded only with the checked decoders (on curve, in the subgroup).

use bls12_381::hash_to_curve::{ExpandMsgXmd, HashToCurve};
use bls12_381::{
    G1Affine, G1Projective, G2Affine, G2Prepared, G2Projective, Gt, Scalar, multi_miller_loop,
};
use sha2::{Digest, Sha512};

/// What consensus needs from a signature scheme.
pub trait VoteScheme: Clone + Send + Sync + 'static {
    type Secret: Clone + Send + Sync;
    type Public: Clone + PartialEq + Send + Sync + std::fmt::Debug;
    type Signature: Clone + PartialEq + Send + Sync + std::fmt::Debug;

    fn sign(secret: &Self::Secret, msg: &[u8]) -> Self::Signature;
    fn verify(public: &Self::Public, msg: &[u8], sig: &Self::Signature) -> bool;
    /// Combines signatures over the same message.
    fn aggregate(sigs: &[&Self::Signature]) -> Option<Self::Signature>;
    /// Checks an aggregate against the keys of its signers.
    fn verify_aggregate(publics: &[&Self::Public], msg: &[u8], sig: &Self::Signature) -> bool;
    /// Wire form of a signature.
    fn signature_to_bytes(sig: &Self::Signature) -> Vec<u8>;
    /// Decodes a signature from the wire, refusing anything malformed.
    fn signature_from_bytes(bytes: &[u8]) -> Option<Self::Signature>;
}

const SIG_DST: &[u8] = b"GRIDLEDGER-V1-VOTE_BLS12381G2_XMD:SHA-256_SSWU_RO_";
const POP_DST: &[u8] = b"GRIDLEDGER-V1-POP_BLS12381G2_XMD:SHA-256_SSWU_RO_";
const NETKEY_DST: &[u8] = b"GRIDLEDGER-V1-NETKEY_BLS12381G2_XMD:SHA-256_SSWU_RO_";

/// BLS12-381 signatures (the scheme validators use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bls;

#[derive(Clone)]
pub struct BlsSecret(Scalar);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlsPublic(G1Affine);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlsSignature(G2Affine);

fn hash_to_g2(msg: &[u8], dst: &[u8]) -> G2Affine {
    let p = <G2Projective as HashToCurve<ExpandMsgXmd<sha2_09::Sha256>>>::hash_to_curve(msg, dst);
    G2Affine::from(p)
}

fn pairing_check(public: &G1Affine, msg_point: &G2Affine, sig: &G2Affine) -> bool {
    // e(pk, H(m)) == e(g1, sig)  ⇔  e(pk, H(m)) · e(−g1, sig) == 1
    let h = G2Prepared::from(*msg_point);
    let s = G2Prepared::from(*sig);
    let neg_g1 = -G1Affine::generator();
    multi_miller_loop(&[(public, &h), (&neg_g1, &s)]).final_exponentiation() == Gt::identity()
}

impl BlsSecret {
    /// A key derived from seed bytes (dev keys and tests; real keys come from `generate`).
    pub fn from_seed(seed: &[u8]) -> BlsSecret {
        let wide: [u8; 64] =
            Sha512::digest([b"gridledger/bls-keygen/v1".as_slice(), seed].concat()).into();
        BlsSecret(Scalar::from_bytes_wide(&wide))
    }

    pub fn generate() -> BlsSecret {
        let mut seed = [0u8; 64];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        BlsSecret::from_seed(&seed)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Decodes a secret scalar; `None` if not canonical.
    pub fn from_bytes(b: &[u8; 32]) -> Option<BlsSecret> {
        Option::from(Scalar::from_bytes(b)).map(BlsSecret)
    }

    pub fn public(&self) -> BlsPublic {
        BlsPublic(G1Affine::from(G1Affine::generator() * self.0))
    }

    /// The proof of possession: this key's signature over its own public key.
    pub fn proof_of_possession(&self) -> BlsSignature {
        BlsSignature(G2Affine::from(
            hash_to_g2(&self.public().to_bytes(), POP_DST) * self.0,
        ))
    }
}

impl BlsSecret {
    /// Binds a network (TLS) key to this validator key: genesis carries this signature, so
    /// the transport key of a validator is vouched for by its consensus key.
    pub fn sign_network_key(&self, network_key: &[u8; 32]) -> BlsSignature {
        BlsSignature(G2Affine::from(hash_to_g2(network_key, NETKEY_DST) * self.0))
    }
}

impl BlsPublic {
    pub fn verify_network_key(&self, network_key: &[u8; 32], sig: &BlsSignature) -> bool {
        pairing_check(&self.0, &hash_to_g2(network_key, NETKEY_DST), &sig.0)
    }

    pub fn to_bytes(&self) -> [u8; 48] {
        self.0.to_compressed()
    }

    /// Decodes with the checked decoder: refuses points off the curve or outside the subgroup,
    /// and the identity (it would let anyone "sign").
    pub fn from_bytes(b: &[u8; 48]) -> Option<BlsPublic> {
        let p: Option<G1Affine> = G1Affine::from_compressed(b).into();
        p.filter(|p| !bool::from(p.is_identity())).map(BlsPublic)
    }

    pub fn verify_possession(&self, pop: &BlsSignature) -> bool {
        pairing_check(&self.0, &hash_to_g2(&self.to_bytes(), POP_DST), &pop.0)
    }
}

impl BlsSignature {
    pub fn to_bytes(&self) -> [u8; 96] {
        self.0.to_compressed()
    }

    pub fn from_bytes(b: &[u8; 96]) -> Option<BlsSignature> {
        let p: Option<G2Affine> = G2Affine::from_compressed(b).into();
        p.map(BlsSignature)
    }
}

impl VoteScheme for Bls {
    type Secret = BlsSecret;
    type Public = BlsPublic;
    type Signature = BlsSignature;

    fn sign(secret: &BlsSecret, msg: &[u8]) -> BlsSignature {
        BlsSignature(G2Affine::from(hash_to_g2(msg, SIG_DST) * secret.0))
    }

    fn verify(public: &BlsPublic, msg: &[u8], sig: &BlsSignature) -> bool {
        pairing_check(&public.0, &hash_to_g2(msg, SIG_DST), &sig.0)
    }

    fn aggregate(sigs: &[&BlsSignature]) -> Option<BlsSignature> {
        if sigs.is_empty() {
            return None;
        }
        let sum = sigs
            .iter()
            .fold(G2Projective::identity(), |acc, s| acc + s.0);
        Some(BlsSignature(G2Affine::from(sum)))
    }

    fn verify_aggregate(publics: &[&BlsPublic], msg: &[u8], sig: &BlsSignature) -> bool {
        if publics.is_empty() {
            return false;
        }
        let sum = publics
            .iter()
            .fold(G1Projective::identity(), |acc, p| acc + p.0);
        pairing_check(&G1Affine::from(sum), &hash_to_g2(msg, SIG_DST), &sig.0)
    }

    fn signature_to_bytes(sig: &BlsSignature) -> Vec<u8> {
        sig.to_bytes().to_vec()
    }

    fn signature_from_bytes(bytes: &[u8]) -> Option<BlsSignature> {
        BlsSignature::from_bytes(bytes.try_into().ok()?)
    }
}

/// An insecure stand-in for fast simulations of thousands of views: a signature is a hash of
/// the signer's id and the message, so anyone could forge one. Simulations use it to test the
/// protocol, not the cryptography; [`Bls`] is what validators run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimScheme;

impl VoteScheme for SimScheme {
    type Secret = u64;
    type Public = u64;
    /// The signer ids and the message hash.
    type Signature = (Vec<u64>, [u8; 32]);

    fn sign(secret: &u64, msg: &[u8]) -> Self::Signature {
        (vec![*secret], sha2::Sha256::digest(msg).into())
    }

    fn verify(public: &u64, msg: &[u8], sig: &Self::Signature) -> bool {
        sig.0 == vec![*public] && sig.1 == <[u8; 32]>::from(sha2::Sha256::digest(msg))
    }

    fn aggregate(sigs: &[&Self::Signature]) -> Option<Self::Signature> {
        let first = sigs.first()?;
        if sigs.iter().any(|s| s.1 != first.1) {
            return None;
        }
        let mut ids: Vec<u64> = sigs.iter().flat_map(|s| s.0.clone()).collect();
        ids.sort();
        Some((ids, first.1))
    }

    fn verify_aggregate(publics: &[&u64], msg: &[u8], sig: &Self::Signature) -> bool {
        let mut ids: Vec<u64> = publics.iter().map(|p| **p).collect();
        ids.sort();
        !ids.is_empty() && sig.0 == ids && sig.1 == <[u8; 32]>::from(sha2::Sha256::digest(msg))
    }

    fn signature_to_bytes(sig: &Self::Signature) -> Vec<u8> {
        borsh::to_vec(sig).unwrap_or_default()
    }

    fn signature_from_bytes(bytes: &[u8]) -> Option<Self::Signature> {
        borsh::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bls_signs_aggregates_and_refuses_forgeries() {
        let keys: Vec<BlsSecret> = (0..4u8).map(|i| BlsSecret::from_seed(&[i])).collect();
        let pubs: Vec<BlsPublic> = keys.iter().map(|k| k.public()).collect();
        let msg = b"notarize view 7";
        let sigs: Vec<BlsSignature> = keys.iter().map(|k| Bls::sign(k, msg)).collect();
        assert!(Bls::verify(&pubs[0], msg, &sigs[0]));
        assert!(!Bls::verify(&pubs[1], msg, &sigs[0]), "wrong key");
        assert!(!Bls::verify(&pubs[0], b"other", &sigs[0]), "wrong message");
        let agg = Bls::aggregate(&[&sigs[0], &sigs[2], &sigs[3]]).unwrap();
        assert!(Bls::verify_aggregate(
            &[&pubs[0], &pubs[2], &pubs[3]],
            msg,
            &agg
        ));
        assert!(
            !Bls::verify_aggregate(&[&pubs[0], &pubs[1], &pubs[3]], msg, &agg),
            "a forged bitmap fails"
        );
        assert!(
            !Bls::verify_aggregate(&[&pubs[0], &pubs[2]], msg, &agg),
            "too few signers fails"
        );
        // Round trip through the wire encoding, and garbage refused.
        assert_eq!(BlsSignature::from_bytes(&agg.to_bytes()), Some(agg));
        assert_eq!(BlsPublic::from_bytes(&pubs[1].to_bytes()), Some(pubs[1]));
        assert!(BlsPublic::from_bytes(&[0xff; 48]).is_none());
        assert!(BlsSignature::from_bytes(&[0x13; 96]).is_none());
        assert!(
            BlsPublic::from_bytes(&G1Affine::identity().to_compressed()).is_none(),
            "identity key refused"
        );
    }

    #[test]
    fn proof_of_possession_binds_the_key() {
        let a = BlsSecret::from_seed(b"a");
        let b = BlsSecret::from_seed(b"b");
        assert!(a.public().verify_possession(&a.proof_of_possession()));
        assert!(!b.public().verify_possession(&a.proof_of_possession()));
        // A PoP is not a vote: the tags differ.
        assert!(!Bls::verify(
            &a.public(),
            &a.public().to_bytes(),
            &a.proof_of_possession()
        ));
    }
}
