//! The chain's durable store and its authenticated state.
//!
//! - [`overlay`]: reads through stacked write layers, so a failed call or transaction can be
//!   discarded without touching anything below it.
//! - [`store`]: the embedded ACID store (redb). One write transaction per block holds the
//!   block, its receipts, the state changes and the new Merkle tree nodes, so a crash leaves
//!   the last committed block whole.
//! - [`proof`]: the state root is a Jellyfish Merkle tree (`jmt`) over hashed keys, updated
//!   incrementally per block; it proves a key present with its value, or absent.

pub mod overlay;
pub mod proof;
pub mod store;

pub use overlay::{Changes, Scan, ScanError, StateRead, StateStack};
pub use overlay::{EmptyState, ReadError};
pub use proof::StateProof;
pub use store::{Finalized, PreparedRoot, Snapshot, StateView, Store, StoreError};
