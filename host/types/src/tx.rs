//! Transactions: what a sender signs, and the system operations the chain executes natively.

use crate::codec::{self, DecodeError};
use crate::hash::{Hash32, domain, hex_bytes};
use crate::keys::{self, Address, Keypair, Signature};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// The largest transaction the chain accepts, in encoded bytes (contract code included).
pub const MAX_TX_BYTES: usize = 4 * 1024 * 1024;

/// What a transaction asks the chain to do.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// Move tokens between accounts.
    Transfer { to: Address, amount: u64 },
    /// Store a contract component; its code hash is returned in the receipt.
    StoreCode {
        #[serde(with = "hex_bytes")]
        wasm: Vec<u8>,
    },
    /// Create a contract from stored code and run its `instantiate` entry point.
    Instantiate {
        code_hash: Hash32,
        #[serde(with = "hex_bytes")]
        msg: Vec<u8>,
        funds: u64,
        label: String,
        /// Who may migrate the contract; `None` makes it immutable.
        admin: Option<Address>,
    },
    /// Run a contract's `execute` entry point, optionally sending it tokens.
    Execute {
        contract: Address,
        #[serde(with = "hex_bytes")]
        msg: Vec<u8>,
        funds: u64,
    },
    /// Switch a contract to new code and run the new code's `migrate` (admin only).
    Migrate {
        contract: Address,
        code_hash: Hash32,
        #[serde(with = "hex_bytes")]
        msg: Vec<u8>,
    },
    /// Create tokens (grid company only): a user recharged with fiat.
    Mint { to: Address, amount: u64 },
    /// Destroy tokens from the sender's balance (grid company only), recording the payout
    /// reference of the bank transfer that redeems them.
    Burn { amount: u64, payout_ref: String },
    /// Propose a governance action (regulators only), to take effect at `enact_height`.
    Propose {
        action: GovAction,
        enact_height: u64,
    },
    /// Vote on an open proposal (regulators only, once each).
    Vote { proposal: u64, approve: bool },
    /// Register a metering device (grid company only). Its key then signs readings and
    /// nothing else: transactions sent by a device key are refused.
    RegisterDevice {
        device: Address,
        owner: Address,
        kind: String,
        rated_power_w: u64,
    },
    /// Revoke a device (grid company only): its readings are refused from then on.
    RevokeDevice { device: Address },
    /// Signed meter readings, relayed by any account (a node's device gateway). Each is
    /// checked on its own; the refused ones are listed in the receipt and change nothing.
    Readings {
        readings: Vec<crate::device::SignedReading>,
    },
}

/// What a governance proposal does when enacted. The chain performs it as the governance
/// address ([`Address::governance`]), which is the admin of the contracts it governs.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GovAction {
    /// Move a contract to stored code and run its `migrate`. The code must declare the same
    /// contract name and a higher version, unless `rollback` names code the contract ran before.
    Upgrade {
        contract: Address,
        code_hash: Hash32,
        #[serde(with = "hex_bytes")]
        msg: Vec<u8>,
        rollback: bool,
    },
    /// Execute a message on a contract as the governance address (e.g. new pricing parameters).
    Execute {
        contract: Address,
        #[serde(with = "hex_bytes")]
        msg: Vec<u8>,
    },
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TxBody {
    pub chain_id: String,
    pub sender: Address,
    pub nonce: u64,
    pub gas_limit: u64,
    pub payload: Payload,
}

impl TxBody {
    /// The exact bytes the sender signs: domain tag, then the canonical body (which holds the
    /// chain id), so a signature is valid for one purpose on one chain.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = domain::TX_SIGN.to_vec();
        out.extend(codec::encode(self));
        out
    }

    pub fn sign(self, key: &Keypair) -> SignedTx {
        let signature = key.sign(&self.signing_bytes());
        SignedTx {
            body: self,
            signature,
        }
    }
}

/// A transaction as it travels and is stored.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedTx {
    pub body: TxBody,
    pub signature: Signature,
}

impl SignedTx {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes wire bytes, refusing oversized, truncated or trailing input.
    pub fn decode(bytes: &[u8]) -> Result<SignedTx, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError {
                what: "transaction",
                reason: format!("{} bytes exceeds the limit of {MAX_TX_BYTES}", bytes.len()),
            });
        }
        codec::decode("transaction", bytes)
    }

    /// The transaction's identity: a hash of its full canonical encoding.
    pub fn hash(&self) -> Hash32 {
        Hash32::tagged(domain::TX_HASH, &[&self.encode()])
    }

    /// Checks the signature against the sender's key over the signing bytes.
    pub fn verify_signature(&self) -> Result<(), String> {
        keys::verify(
            &self.body.sender,
            &self.body.signing_bytes(),
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SignedTx {
        let k = Keypair::from_seed_phrase("alice");
        TxBody {
            chain_id: "test".into(),
            sender: k.address(),
            nonce: 7,
            gas_limit: 100_000,
            payload: Payload::Transfer {
                to: Address([9; 32]),
                amount: 5,
            },
        }
        .sign(&k)
    }

    #[test]
    fn roundtrip_and_verify() {
        let tx = sample();
        let back = SignedTx::decode(&tx.encode()).unwrap();
        assert_eq!(back, tx);
        back.verify_signature().unwrap();
    }

    #[test]
    fn tampered_fields_break_the_signature() {
        let mut tx = sample();
        tx.body.chain_id = "other".into();
        assert!(tx.verify_signature().is_err());
        let mut tx = sample();
        tx.body.nonce += 1;
        assert!(tx.verify_signature().is_err());
    }

    #[test]
    fn truncated_and_trailing_bytes_are_refused() {
        let bytes = sample().encode();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(SignedTx::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SignedTx::decode(&longer).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = SignedTx::decode(&bytes);
        }
    }
}
