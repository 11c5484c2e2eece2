//! The [`Contract`] trait and the glue from raw entry points to typed handlers.

use crate::backend;
use crate::types::{Address, Env, Error, Event, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A contract: typed messages in, JSON answers out.
pub trait Contract {
    /// Name and version, reported by the component's `info` export; the chain records them
    /// when the code is stored and shows them for every instance.
    const NAME: &'static str;
    const VERSION: u32;

    type InstantiateMsg: DeserializeOwned;
    type ExecuteMsg: DeserializeOwned;
    type QueryMsg: DeserializeOwned;
    type MigrateMsg: DeserializeOwned;
    type SudoMsg: DeserializeOwned;

    fn instantiate(ctx: &mut Ctx, msg: Self::InstantiateMsg) -> Result<Response>;
    fn execute(ctx: &mut Ctx, msg: Self::ExecuteMsg) -> Result<Response>;
    /// Read-only. Storage writes, transfers and calls trap.
    fn query(ctx: &Ctx, msg: Self::QueryMsg) -> Result<Response>;

    /// Runs when the admin moves an instance to this code. Refuses by default.
    fn migrate(_ctx: &mut Ctx, _msg: Self::MigrateMsg) -> Result<Response> {
        Err(Error::new("this contract does not support migration"))
    }

    /// Runs when the chain itself calls in. Refuses by default.
    fn sudo(_ctx: &mut Ctx, _msg: Self::SudoMsg) -> Result<Response> {
        Err(Error::new("this contract has no sudo entry point"))
    }
}

/// A message type for entry points that take no arguments: accepts any JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NoMsg;

impl<'de> Deserialize<'de> for NoMsg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<NoMsg, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| NoMsg)
    }
}

/// Which entry point is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Instantiate,
    Execute,
    Query,
    Migrate,
    Sudo,
}

/// The answer of an entry point: JSON data for the caller (the receipt's result).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    pub data: Vec<u8>,
}

impl Response {
    pub fn new() -> Response {
        Response::default()
    }

    /// Answers with `value` encoded as JSON.
    pub fn json<T: Serialize>(value: &T) -> Result<Response> {
        Ok(Response {
            data: serde_json::to_vec(value)?,
        })
    }
}

/// The context of one call: its environment and what the contract may do to the world.
pub struct Ctx {
    env: Env,
}

impl Ctx {
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// The transaction sender or calling contract.
    pub fn caller(&self) -> Result<Address> {
        self.env
            .caller
            .ok_or_else(|| Error::new("this entry point needs a caller"))
    }

    /// This contract's address.
    pub fn address(&self) -> Address {
        self.env.contract
    }

    pub fn emit(&mut self, event: Event) {
        backend::emit(&event.kind, event.attributes);
    }

    pub fn balance(&self, account: &Address) -> u64 {
        backend::balance(&account.0)
    }

    /// Sends native tokens from this contract.
    pub fn transfer(&mut self, to: &Address, amount: u64) -> Result<()> {
        backend::transfer(&to.0, amount).map_err(Error::new)
    }

    /// Asks another contract a question.
    pub fn query_contract<Q: Serialize, R: DeserializeOwned>(
        &self,
        contract: &Address,
        msg: &Q,
    ) -> Result<R> {
        let bytes =
            backend::query_contract(&contract.0, &serde_json::to_vec(msg)?).map_err(Error::new)?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Executes another contract as this one, sending `funds` along. Returns its raw answer.
    pub fn call_contract<M: Serialize>(
        &mut self,
        contract: &Address,
        msg: &M,
        funds: u64,
    ) -> Result<Vec<u8>> {
        backend::call_contract(&contract.0, &serde_json::to_vec(msg)?, funds).map_err(Error::new)
    }
}

fn parse<T: DeserializeOwned>(msg: &[u8]) -> Result<T> {
    // An empty message means "no arguments": parse it as JSON null.
    if msg.is_empty() {
        return Ok(serde_json::from_slice(b"null")?);
    }
    Ok(serde_json::from_slice(msg)?)
}

/// Decodes a message, runs the matching handler and encodes its answer. Used by
/// [`crate::export_contract!`] and the native test harness.
pub fn dispatch<C: Contract>(
    entry: Entry,
    env: Env,
    msg: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    let mut ctx = Ctx { env };
    let out = match entry {
        Entry::Instantiate => parse(msg).and_then(|m| C::instantiate(&mut ctx, m)),
        Entry::Execute => parse(msg).and_then(|m| C::execute(&mut ctx, m)),
        Entry::Query => parse(msg).and_then(|m| C::query(&ctx, m)),
        Entry::Migrate => parse(msg).and_then(|m| C::migrate(&mut ctx, m)),
        Entry::Sudo => parse(msg).and_then(|m| C::sudo(&mut ctx, m)),
    };
    out.map(|r| r.data).map_err(|e| e.0)
}
