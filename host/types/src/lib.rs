//! The chain's data model: what is signed, hashed and stored, and how it is encoded.
//!
//! Everything here is pure: no I/O, no clocks. The canonical encoding of every
//! consensus-relevant structure is [borsh](https://borsh.io) (deterministic, length-prefixed,
//! no optional padding), and every hash is SHA-256 under a domain tag so that bytes signed or
//! hashed for one purpose can never be replayed as another.

pub mod block;
pub mod codec;
pub mod device;
pub mod hash;
pub mod keys;
pub mod merkle;
pub mod schema;
pub mod tx;

pub use block::{Block, ErrorCode, Event, Header, Receipt, ReceiptError};
pub use codec::DecodeError;
pub use device::{DeviceRecord, MeterReading, SignedReading};
pub use hash::Hash32;
pub use keys::{Address, Keypair, Signature};
pub use tx::{GovAction, Payload, SignedTx, TxBody};
