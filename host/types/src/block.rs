//! Blocks, headers and receipts.

use crate::codec;
use crate::hash::{Hash32, domain, hex_bytes};
use crate::keys::Address;
use crate::tx::SignedTx;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// What a block commits to. Its hash is the block's identity.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Header {
    pub chain_id: String,
    pub height: u64,
    pub parent_hash: Hash32,
    /// Milliseconds since the Unix epoch, as proposed; never earlier than the parent's.
    pub time_ms: u64,
    pub proposer: Address,
    /// Root of the transaction list (see [`crate::merkle`]) and its length.
    pub tx_root: Hash32,
    pub tx_count: u32,
    /// Root of the state after executing this block.
    pub state_root: Hash32,
    /// Root of the receipt list and its length (equal to `tx_count` plus system calls).
    pub receipts_root: Hash32,
    pub receipt_count: u32,
}

impl Header {
    pub fn hash(&self) -> Hash32 {
        Hash32::tagged(domain::BLOCK_HASH, &[&codec::encode(self)])
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block {
    pub header: Header,
    pub txs: Vec<SignedTx>,
}

/// Why a transaction failed. Stable identifiers: clients and conformance vectors match on them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The transaction ran out of gas.
    OutOfGas,
    /// The sender lacks the tokens the operation needs.
    InsufficientFunds,
    /// The sender lacks the role or admin right the operation needs.
    Unauthorized,
    /// A code hash, contract or account does not exist.
    NotFound,
    /// The operation's arguments are invalid (bad component, zero amount, overflow, ...).
    InvalidInput,
    /// The contract returned an error.
    ContractError,
    /// The contract trapped (unreachable, stack overflow, memory limit, bad memory access).
    Trap,
    /// The contract returned something that is not a valid result.
    InvalidResult,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ReceiptError {
    pub code: ErrorCode,
    pub message: String,
}

/// Something that happened, for clients to watch. Attributes keep their emission order.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Event {
    /// The contract that emitted it; `None` for the chain's own events.
    pub contract: Option<Address>,
    pub kind: String,
    pub attributes: Vec<(String, String)>,
}

/// The outcome of one transaction (or one system call the chain made by itself).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    /// The transaction's hash; for a system call, a hash naming the call.
    pub tx_hash: Hash32,
    pub gas_used: u64,
    /// Fee charged, in micro-tokens.
    pub fee: u64,
    /// `None` on success.
    pub error: Option<ReceiptError>,
    /// Events, only those of a successful transaction (a failed one's are discarded).
    pub events: Vec<Event>,
    /// Data returned: a code hash, a contract address, or a contract's response bytes.
    #[serde(with = "hex_bytes")]
    pub result: Vec<u8>,
}

impl Receipt {
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
}
