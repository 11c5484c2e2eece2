//! Accounts are ed25519 public keys.

use crate::hash::{Hash32, domain, parse_hex32};
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An account address: the 32-byte ed25519 public key of a user, or for a contract a hash
/// of its creator and creation nonce (no key exists for it, so nobody can sign as it).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub [u8; 32]);

impl Address {
    /// The address a contract instantiated by `creator` with nonce `nonce` receives.
    pub fn contract(creator: &Address, nonce: u64) -> Address {
        Address(Hash32::tagged(domain::CONTRACT_ADDR, &[&creator.0, &nonce.to_be_bytes()]).0)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The address governance acts as. No key exists for it: only enacted proposals do.
    pub fn governance() -> Address {
        Address(Hash32::tagged(b"gridledger/governance/v1", &[]).0)
    }

    pub fn from_slice(b: &[u8]) -> Option<Address> {
        <[u8; 32]>::try_from(b).ok().map(Address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_hex())
    }
}

impl FromStr for Address {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s).map(Address)
    }
}

impl TryFrom<&[u8]> for Address {
    type Error = String;
    fn try_from(b: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(b)
            .map(Address)
            .map_err(|_| format!("an address is 32 bytes, got {}", b.len()))
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as Deserialize>::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        let b = hex::decode(&s).map_err(serde::de::Error::custom)?;
        let a: [u8; 64] = b
            .try_into()
            .map_err(|_| serde::de::Error::custom("a signature is 64 bytes"))?;
        Ok(Signature(a))
    }
}

// The signature rule. Signatures are checked by ZIP 215 (the cofactored equation, as
// `ed25519-zebra` implements it) because under it checking a batch at once accepts exactly
// what checking each signature alone accepts: a validator that admitted a transaction in a
// batch and one that checks it alone in a block must agree, or their states part. Signatures
// made by any standard Ed25519 signer pass. On top of ZIP 215 a small-order public key is
// refused, since anyone can make a signature that passes for it; and `s` must be canonical, so
// a third party cannot re-encode someone's signature (and with it the transaction hash).

const BAD_KEY: &str = "sender is not a valid ed25519 public key";
const BAD_SIGNATURE: &str = "signature does not verify";

/// The key `signer` stands for, if it may sign: a curve point outside the small-order subgroup.
fn signing_key_of(signer: &Address) -> Result<ed25519_zebra::VerificationKey, String> {
    let small_order = curve25519_dalek::edwards::CompressedEdwardsY(signer.0)
        .decompress()
        .is_none_or(|point| point.is_small_order());
    if small_order {
        return Err(BAD_KEY.into());
    }
    ed25519_zebra::VerificationKey::try_from(signer.0).map_err(|_| BAD_KEY.to_string())
}

fn zip215_signature(sig: &Signature) -> ed25519_zebra::Signature {
    ed25519_zebra::Signature::from_bytes(&sig.0)
}

/// Checks `sig` over `msg` by the key `signer` (the rule above).
pub fn verify(signer: &Address, msg: &[u8], sig: &Signature) -> Result<(), String> {
    signing_key_of(signer)?
        .verify(&zip215_signature(sig), msg)
        .map_err(|_| BAD_SIGNATURE.to_string())
}

/// Public keys already decompressed, by address, for checking many signatures by the same
/// senders: decompressing a key is a field square root, about a sixth of a signature check.
/// Bounded: it starts over when full.
#[derive(Default)]
pub struct KeyCache {
    keys: std::sync::Mutex<std::collections::HashMap<Address, ed25519_zebra::VerificationKey>>,
}

/// Keys a [`KeyCache`] holds before it starts over.
const KEY_CACHE_ENTRIES: usize = 65_536;

impl KeyCache {
    fn key(&self, signer: &Address) -> Result<ed25519_zebra::VerificationKey, String> {
        if let Some(k) = self.keys.lock().ok().and_then(|k| k.get(signer).copied()) {
            return Ok(k);
        }
        let k = signing_key_of(signer)?;
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= KEY_CACHE_ENTRIES {
                keys.clear();
            }
            keys.insert(*signer, k);
        }
        Ok(k)
    }

    /// [`verify`], with the signer's key decompressed at most once while it stays cached.
    pub fn verify(&self, signer: &Address, msg: &[u8], sig: &Signature) -> Result<(), String> {
        self.key(signer)?
            .verify(&zip215_signature(sig), msg)
            .map_err(|_| BAD_SIGNATURE.to_string())
    }

    /// Checks `(signer, message, signature)` triples together, giving for each the answer
    /// [`KeyCache::verify`] would. One multiscalar multiplication checks the whole batch
    /// (about half the work of checking each alone); only if it fails is each checked alone,
    /// to find which failed.
    pub fn verify_batch(&self, items: &[(&Address, &[u8], &Signature)]) -> Vec<Result<(), String>> {
        let mut answers = Vec::with_capacity(items.len());
        let mut batch = ed25519_zebra::batch::Verifier::new();
        let mut queued = Vec::with_capacity(items.len());
        for (i, (signer, msg, sig)) in items.iter().enumerate() {
            match self.key(signer) {
                Ok(_) => {
                    let item = ed25519_zebra::batch::Item::from((
                        ed25519_zebra::VerificationKeyBytes::from(signer.0),
                        zip215_signature(sig),
                        *msg,
                    ));
                    batch.queue(item.clone());
                    queued.push((i, item));
                    answers.push(Ok(()));
                }
                Err(e) => answers.push(Err(e)),
            }
        }
        if !queued.is_empty() && batch.verify(rand::thread_rng()).is_err() {
            for (i, item) in queued {
                answers[i] = item.verify_single().map_err(|_| BAD_SIGNATURE.to_string());
            }
        }
        answers
    }
}

/// A signing key with its address.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    pub fn generate() -> Keypair {
        Keypair {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// A deterministic key derived from a seed phrase. For devnets and tests only: anyone
    /// who knows the phrase holds the key.
    pub fn from_seed_phrase(phrase: &str) -> Keypair {
        let seed = Hash32::tagged(b"gridledger/dev-seed/v1", &[phrase.as_bytes()]);
        Keypair::from_secret(seed.0)
    }

    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    pub fn secret(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn address(&self) -> Address {
        Address(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.signing.sign(msg).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.address())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A "signature" valid under plain ZIP 215 for any message: the identity as key and as
    /// `R`, and `s = 0` (`8·0·B = 8·R + 8·k·A` holds for every `k`).
    fn forgery_by_small_order_key() -> (Address, Signature) {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity);
        (Address(identity), Signature(sig))
    }

    #[test]
    fn a_small_order_key_cannot_sign_though_plain_zip215_would_accept_it() {
        let (key, sig) = forgery_by_small_order_key();
        let plain = ed25519_zebra::VerificationKey::try_from(key.0).unwrap();
        assert!(
            plain.verify(&zip215_signature(&sig), b"pay me").is_ok(),
            "the forgery is real"
        );
        assert!(verify(&key, b"pay me", &sig).is_err());
        let cache = KeyCache::default();
        assert!(cache.verify(&key, b"pay me", &sig).is_err());
        let good = Keypair::from_seed_phrase("good");
        let good_sig = good.sign(b"fine");
        let answers = cache.verify_batch(&[
            (&good.address(), b"fine", &good_sig),
            (&key, b"pay me", &sig),
        ]);
        assert!(answers[0].is_ok());
        assert_eq!(answers[1], Err(BAD_KEY.to_string()));
    }

    #[test]
    fn a_signature_re_encoded_with_s_plus_l_is_refused() {
        // l, the order of the prime subgroup, little-endian.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let key = Keypair::from_seed_phrase("malleable");
        let sig = key.sign(b"msg");
        assert!(verify(&key.address(), b"msg", &sig).is_ok());
        let mut bumped = sig.0;
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = bumped[32 + i] as u16 + L[i] as u16 + carry;
            bumped[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        // s < l, so s + l < 2^253: no carry out, and the same s modulo l.
        assert_eq!(carry, 0);
        assert!(verify(&key.address(), b"msg", &Signature(bumped)).is_err());
    }

    #[derive(Debug, Clone, Copy)]
    enum Flaw {
        None,
        OtherMessage,
        FlippedR,
        FlippedS,
        OtherSigner,
        SmallOrderKey,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn a_batch_gives_each_signature_the_answer_it_gets_alone(
            flaws in proptest::collection::vec(
                prop_oneof![
                    6 => Just(Flaw::None),
                    1 => Just(Flaw::OtherMessage),
                    1 => Just(Flaw::FlippedR),
                    1 => Just(Flaw::FlippedS),
                    1 => Just(Flaw::OtherSigner),
                    1 => Just(Flaw::SmallOrderKey),
                ],
                1..24,
            ),
            signers in 1usize..5,
        ) {
            let keys: Vec<Keypair> =
                (0..signers).map(|i| Keypair::from_seed_phrase(&format!("k{i}"))).collect();
            let items: Vec<(Address, Vec<u8>, Signature)> = flaws
                .iter()
                .enumerate()
                .map(|(i, flaw)| {
                    let key = &keys[i % signers];
                    let msg = format!("message {i}").into_bytes();
                    let mut sig = key.sign(&msg);
                    let mut signer = key.address();
                    let mut signed = msg.clone();
                    match flaw {
                        Flaw::None => {}
                        Flaw::OtherMessage => signed.push(b'!'),
                        Flaw::FlippedR => sig.0[3] ^= 1,
                        Flaw::FlippedS => sig.0[40] ^= 1,
                        Flaw::OtherSigner => signer = Keypair::from_seed_phrase("other").address(),
                        Flaw::SmallOrderKey => (signer, sig) = forgery_by_small_order_key(),
                    }
                    (signer, signed, sig)
                })
                .collect();
            let cache = KeyCache::default();
            let refs: Vec<(&Address, &[u8], &Signature)> =
                items.iter().map(|(a, m, s)| (a, m.as_slice(), s)).collect();
            let batched = cache.verify_batch(&refs);
            for ((i, (a, m, s)), flaw) in items.iter().enumerate().zip(&flaws) {
                let alone = verify(a, m, s);
                prop_assert_eq!(&batched[i], &alone, "item {} ({:?})", i, flaw);
                prop_assert_eq!(alone.is_ok(), matches!(flaw, Flaw::None), "item {} ({:?})", i, flaw);
            }
        }
    }
}
