//! Addresses, the call environment, events and errors.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A 32-byte account or contract address; hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; 32]);

impl Address {
    pub fn from_slice(b: &[u8]) -> Option<Address> {
        <[u8; 32]>::try_from(b).ok().map(Address)
    }

    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    pub fn parse(s: &str) -> Result<Address> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        if s.len() != 64 {
            return Err(Error::new(format!(
                "address must be 64 hex digits, got {}",
                s.len()
            )));
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hi = hex_val(chunk[0]);
            let lo = hex_val(chunk[1]);
            match (hi, lo) {
                (Some(h), Some(l)) => out[i] = h << 4 | l,
                _ => return Err(Error::new(format!("address is not hex: {s}"))),
            }
        }
        Ok(Address(out))
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_encode(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // On the stack: events format addresses by the thousand.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (pair, x) in hex.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[(x >> 4) as usize];
            pair[1] = DIGITS[(x & 15) as usize];
        }
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", &self.to_hex()[..12])
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Address, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Address::parse(&s).map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(d).map(Address)
        }
    }
}

/// Where and by whom a call is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Env {
    pub height: u64,
    pub time_ms: u64,
    pub chain_id: String,
    /// This contract.
    pub contract: Address,
    /// The transaction sender or calling contract; `None` for queries and sudo.
    pub caller: Option<Address>,
    /// Native tokens sent with the call, already credited to this contract.
    pub funds: u64,
}

impl From<crate::bindings::gridledger::contract::types::Env> for Env {
    fn from(e: crate::bindings::gridledger::contract::types::Env) -> Env {
        Env {
            height: e.height,
            time_ms: e.time_ms,
            chain_id: e.chain_id,
            contract: Address::from_slice(&e.contract).unwrap_or_default(),
            caller: Address::from_slice(&e.caller),
            funds: e.funds,
        }
    }
}

/// An event for the transaction's receipt: a kind and key/value attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: String,
    pub attributes: Vec<(String, String)>,
}

impl Event {
    pub fn new(kind: impl Into<String>) -> Event {
        Event {
            kind: kind.into(),
            attributes: Vec::with_capacity(8),
        }
    }

    pub fn attr(mut self, key: impl Into<String>, value: impl ToString) -> Event {
        self.attributes.push((key.into(), value.to_string()));
        self
    }
}

/// A contract error: the message ends up in the failed transaction's receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Error {
        Error(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error(format!("invalid message: {e}"))
    }
}

impl From<postcard::Error> for Error {
    fn from(e: postcard::Error) -> Error {
        Error(format!("storage encoding: {e}"))
    }
}

impl From<String> for Error {
    fn from(e: String) -> Error {
        Error(e)
    }
}

impl From<&str> for Error {
    fn from(e: &str) -> Error {
        Error(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// An address displays as its 64 hex digits, which parse back to it.
        #[test]
        fn an_address_displays_as_its_hex(bytes in any::<[u8; 32]>()) {
            let a = Address(bytes);
            let shown = a.to_string();
            prop_assert_eq!(&shown, &a.to_hex());
            prop_assert_eq!(Address::parse(&shown).unwrap(), a);
        }
    }
}
