//! Write gridledger contracts in Rust.
//!
//! A contract is a type implementing [`Contract`], exported with [`export_contract!`]:
//!
//! ```ignore
//! use gridledger_sdk::prelude::*;
//!
//! const COUNT: Item<u64> = Item::new("count");
//!
//! pub struct Counter;
//! impl Contract for Counter {
//!     const NAME: &'static str = "counter";
//!     const VERSION: u32 = 1;
//!     type InstantiateMsg = u64;
//!     type ExecuteMsg = ExecuteMsg;
//!     type QueryMsg = QueryMsg;
//!     type MigrateMsg = NoMsg;
//!     type SudoMsg = NoMsg;
//!     fn instantiate(ctx: &mut Ctx, start: u64) -> Result<Response> { COUNT.save(&start)?; Ok(Response::new()) }
//!     // ...
//! }
//! export_contract!(Counter);
//! ```
//!
//! - Messages and answers are JSON ([`serde`] types).
//! - Storage is typed: [`Item`] holds one value, [`Map`] many, iterated in key order.
//! - [`Ctx`] gives the call's environment, events, token transfers and calls to other contracts.
//! - [`Fixed`] is deterministic fixed-point arithmetic (no floats in contracts).
//! - [`testing`] runs contracts natively, with an in-memory chain, for fast unit tests.
//!
//! Build a contract with `cargo component build --target wasm32-unknown-unknown --release`,
//! or with the project's `gridledger-build`.

mod backend;
mod contract;
mod fixed;
mod storage;
mod types;

pub mod testing;

#[doc(hidden)]
#[allow(clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "contract",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_contract_world",
        default_bindings_module: "gridledger_sdk::bindings",
    });
}

pub use contract::{Contract, Ctx, Entry, NoMsg, Response, dispatch};
pub use fixed::Fixed;
pub use storage::{Item, Key, Map, Order};
pub use types::{Address, Env, Error, Event, Result};

/// What most contracts need, in one import.
pub mod prelude {
    pub use crate::{
        Address, Contract, Ctx, Env, Error, Event, Fixed, Item, Key, Map, NoMsg, Order, Response,
        Result, ensure, export_contract, fail,
    };
    pub use serde::{Deserialize, Serialize};
}

/// Returns early with a contract error: `fail!("too late: period {} closed", p)`.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => { return Err($crate::Error::new(format!($($arg)*))) };
}

/// Returns a contract error unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => { if !($cond) { $crate::fail!($($arg)*); } };
}

/// Exports a [`Contract`] as the component's entry points. Compiles to nothing off wasm32, so
/// the same crate can be unit-tested natively with [`testing`], and nothing when the contract
/// crate's `library` feature is on, so one contract can depend on another's types (declare
/// `[features] library = []` in every contract crate).
#[macro_export]
macro_rules! export_contract {
    ($ty:ty) => {
        #[cfg(all(target_arch = "wasm32", not(feature = "library")))]
        const _: () = {
            use $crate::bindings::gridledger::contract::types as wit;
            struct GridledgerExport;
            impl $crate::bindings::Guest for GridledgerExport {
                fn info() -> wit::ContractInfo {
                    wit::ContractInfo {
                        name: <$ty as $crate::Contract>::NAME.to_string(),
                        version: <$ty as $crate::Contract>::VERSION,
                    }
                }
                fn instantiate(env: wit::Env, msg: Vec<u8>) -> Result<Vec<u8>, String> {
                    $crate::dispatch::<$ty>($crate::Entry::Instantiate, env.into(), &msg)
                }
                fn execute(env: wit::Env, msg: Vec<u8>) -> Result<Vec<u8>, String> {
                    $crate::dispatch::<$ty>($crate::Entry::Execute, env.into(), &msg)
                }
                fn query(env: wit::Env, msg: Vec<u8>) -> Result<Vec<u8>, String> {
                    $crate::dispatch::<$ty>($crate::Entry::Query, env.into(), &msg)
                }
                fn migrate(env: wit::Env, msg: Vec<u8>) -> Result<Vec<u8>, String> {
                    $crate::dispatch::<$ty>($crate::Entry::Migrate, env.into(), &msg)
                }
                fn sudo(env: wit::Env, msg: Vec<u8>) -> Result<Vec<u8>, String> {
                    $crate::dispatch::<$ty>($crate::Entry::Sudo, env.into(), &msg)
                }
            }
            $crate::bindings::__export_contract_world!(GridledgerExport with_types_in $crate::bindings);
        };
    };
}
