//! The host functions, as the rest of the SDK sees them.
//!
//! On wasm32 they are the component's imports; natively they go to the in-memory chain of
//! [`crate::testing`], so contracts can be unit-tested without a VM.

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::bindings::gridledger::contract::host;
    use crate::bindings::gridledger::contract::types::Attribute;

    pub fn storage_get(key: &[u8]) -> Option<Vec<u8>> {
        host::storage_get(key)
    }
    pub fn storage_set(key: &[u8], value: &[u8]) {
        host::storage_set(key, value)
    }
    pub fn storage_remove(key: &[u8]) {
        host::storage_remove(key)
    }
    pub fn storage_scan_packed(
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
        descending: bool,
    ) -> Vec<u8> {
        host::storage_scan_packed(prefix, start_after, limit, descending)
    }
    pub fn emit(kind: &str, attributes: Vec<(String, String)>) {
        // Moved, not copied: a period's clearing emits a thousand events of eight attributes.
        let attrs: Vec<Attribute> = attributes
            .into_iter()
            .map(|(key, value)| Attribute { key, value })
            .collect();
        host::emit(kind, &attrs)
    }
    pub fn balance(account: &[u8; 32]) -> u64 {
        host::balance(account)
    }
    pub fn transfer(to: &[u8; 32], amount: u64) -> Result<(), String> {
        host::transfer(to, amount)
    }
    pub fn query_contract(contract: &[u8; 32], msg: &[u8]) -> Result<Vec<u8>, String> {
        host::query_contract(contract, msg)
    }
    pub fn call_contract(contract: &[u8; 32], msg: &[u8], funds: u64) -> Result<Vec<u8>, String> {
        host::call_contract(contract, msg, funds)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub use crate::testing::backend::*;
}

pub(crate) use imp::*;
