//! The layout of the chain's key-value state: which key holds what.
//!
//! Shared by execution (which writes it), the VM (contract storage and balances) and the API
//! (which proves keys). Every key starts with a one-byte table tag so tables never overlap.

use crate::hash::Hash32;
use crate::keys::Address;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

pub const TAG_ACCOUNT: u8 = 0x01;
pub const TAG_CODE: u8 = 0x02;
pub const TAG_CONTRACT: u8 = 0x03;
pub const TAG_CONTRACT_STORE: u8 = 0x04;
pub const TAG_ROLES: u8 = 0x05;
pub const TAG_META: u8 = 0x06;
pub const TAG_DEVICE: u8 = 0x07;

/// Balance and next nonce of an account.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Account {
    pub balance: u64,
    pub nonce: u64,
}

/// A deployed contract.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ContractInfo {
    pub code_hash: Hash32,
    pub creator: Address,
    pub admin: Option<Address>,
    pub label: String,
    /// Name and version the code declared when it was stored.
    pub name: String,
    pub version: u32,
}

/// Stored code: the component bytes and what it declared about itself.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CodeEntry {
    pub name: String,
    pub version: u32,
    pub wasm: Vec<u8>,
}

/// Roles named in genesis. A bit set, so one account can hold several.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Roles(pub u8);

impl Roles {
    pub const GRID_COMPANY: u8 = 1;
    pub const REGULATOR: u8 = 2;
    pub const VALIDATOR: u8 = 4;
    pub const DEVICE: u8 = 8;

    pub fn has(self, role: u8) -> bool {
        self.0 & role != 0
    }

    /// Parses a role name as written in genesis files.
    pub fn bit(name: &str) -> Option<u8> {
        Some(match name {
            "grid_company" => Self::GRID_COMPANY,
            "regulator" => Self::REGULATOR,
            "validator" => Self::VALIDATOR,
            "device" => Self::DEVICE,
            _ => return None,
        })
    }

    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::GRID_COMPANY, "grid_company"),
            (Self::REGULATOR, "regulator"),
            (Self::VALIDATOR, "validator"),
            (Self::DEVICE, "device"),
        ]
        .into_iter()
        .filter(|(b, _)| self.has(*b))
        .map(|(_, n)| n)
        .collect()
    }
}

fn tagged(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![tag];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub fn account_key(a: &Address) -> Vec<u8> {
    tagged(TAG_ACCOUNT, &[&a.0])
}

pub fn code_key(h: &Hash32) -> Vec<u8> {
    tagged(TAG_CODE, &[&h.0])
}

pub fn contract_key(a: &Address) -> Vec<u8> {
    tagged(TAG_CONTRACT, &[&a.0])
}

/// Prefix of all of one contract's storage; the contract's own key follows it.
pub fn contract_store_prefix(a: &Address) -> Vec<u8> {
    tagged(TAG_CONTRACT_STORE, &[&a.0])
}

/// A registered device's [`crate::DeviceRecord`].
pub fn device_key(device: &Address) -> Vec<u8> {
    tagged(TAG_DEVICE, &[&device.0])
}

pub fn roles_key(a: &Address) -> Vec<u8> {
    tagged(TAG_ROLES, &[&a.0])
}

/// Chain-wide values: total supply, last height, genesis parameters.
pub fn meta_key(name: &str) -> Vec<u8> {
    tagged(TAG_META, &[name.as_bytes()])
}

pub const META_SUPPLY: &str = "total_supply";
pub const META_HEIGHT: &str = "height";
pub const META_PARAMS: &str = "params";
/// Registered devices, in registration order.
pub const META_DEVICES: &str = "devices";
