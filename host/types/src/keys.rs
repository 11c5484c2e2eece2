//! Accounts are ed25519 public keys.

use crate::hash::{Hash32, domain, parse_hex32};
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
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

/// Checks `sig` over `msg` by the key `signer`. Strict verification: rejects small-order
/// keys and non-canonical signatures, so a signature has exactly one valid encoding.
pub fn verify(signer: &Address, msg: &[u8], sig: &Signature) -> Result<(), String> {
    let key = VerifyingKey::from_bytes(&signer.0)
        .map_err(|_| "sender is not a valid ed25519 public key".to_string())?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    key.verify_strict(msg, &sig)
        .map_err(|_| "signature does not verify".to_string())
}

/// Public keys already decompressed, by address, for checking many signatures by the same
/// senders: decompressing a key is a field square root, about a sixth of a signature check.
/// Bounded: it starts over when full.
#[derive(Default)]
pub struct KeyCache {
    keys: std::sync::Mutex<std::collections::HashMap<Address, VerifyingKey>>,
}

/// Keys a [`KeyCache`] holds before it starts over.
const KEY_CACHE_ENTRIES: usize = 65_536;

impl KeyCache {
    /// [`verify`], with the signer's key decompressed at most once while it stays cached.
    pub fn verify(&self, signer: &Address, msg: &[u8], sig: &Signature) -> Result<(), String> {
        let cached = self.keys.lock().ok().and_then(|k| k.get(signer).copied());
        let key = match cached {
            Some(k) => k,
            None => {
                let k = VerifyingKey::from_bytes(&signer.0)
                    .map_err(|_| "sender is not a valid ed25519 public key".to_string())?;
                if let Ok(mut keys) = self.keys.lock() {
                    if keys.len() >= KEY_CACHE_ENTRIES {
                        keys.clear();
                    }
                    keys.insert(*signer, k);
                }
                k
            }
        };
        key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .map_err(|_| "signature does not verify".to_string())
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
