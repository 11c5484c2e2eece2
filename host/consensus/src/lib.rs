//! Simplex BFT consensus for gridledger's permissioned validators, as a sans-IO state machine.
//!
//! - [`engine`]: the protocol (messages and timer events in, actions out).
//! - [`execution`]: execution certificates: a quorum's votes over each executed header.
//! - [`safety`]: what a validator may sign: the rules that keep the chain from forking.
//! - [`validators`]: the validator set, quorums, and certificate checks.
//! - [`crypto`]: vote signatures behind [`crypto::VoteScheme`]; BLS12-381 for validators.
//! - [`types`]: proposals, votes, certificates, and the bytes a vote signs.
//! - [`sim`]: a seeded network simulator that drives engines through delay, loss, partitions,
//!   crashes and a byzantine validator, and checks agreement.

pub mod crypto;
pub mod engine;
pub mod execution;
pub mod safety;
pub mod sim;
pub mod types;
pub mod validators;
pub mod wire;

pub use engine::{Action, Config, Durable, Engine, Input, PayloadCheck, Tip};
pub use types::{Certificate, Digest, Message, Proposal, ValidatorIndex, View, Vote, VoteKind};
pub use validators::{CertError, ValidatorSet};
