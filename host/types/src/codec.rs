//! Canonical encoding: borsh, and decoding that refuses trailing bytes.

use borsh::{BorshDeserialize, BorshSerialize};

/// Bytes that are not the canonical encoding of the expected structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub reason: String,
}

/// The canonical bytes of `value`.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    // Writing to a Vec cannot fail.
    borsh::to_vec(value).expect("borsh serialization into a Vec is infallible")
}

/// Decodes `bytes` as a `T`, refusing truncated input and trailing bytes.
pub fn decode<T: BorshDeserialize>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    borsh::from_slice(bytes).map_err(|e| DecodeError {
        what,
        reason: e.to_string(),
    })
}
