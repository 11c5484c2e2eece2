//! Run contracts natively against an in-memory chain, for fast unit and multi-contract tests.
//!
//! ```ignore
//! let mut chain = MockChain::new();
//! let alice = MockChain::addr("alice");
//! let counter = chain.instantiate::<Counter>(alice, &5u64, 0).unwrap();
//! chain.execute(counter, alice, &ExecuteMsg::Increment { by: 2 }, 0).unwrap();
//! let n: u64 = chain.query(counter, &QueryMsg::Count).unwrap();
//! ```
//!
//! The harness mirrors the chain's rules that contracts can observe: a failed call leaves no
//! writes, no transfers and no events behind (including those of contracts it called); queries
//! cannot write; funds sent with a call are moved before it runs. It does not meter gas: use
//! the node's VM tests for that.

use crate::Contract;
use crate::contract::{Entry, dispatch};
use crate::types::{Address, Env, Event};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::collections::BTreeMap;

type Handler = fn(Entry, Env, &[u8]) -> Result<Vec<u8>, String>;

#[derive(Default)]
struct World {
    storage: BTreeMap<Address, BTreeMap<Vec<u8>, Vec<u8>>>,
    balances: BTreeMap<Address, u64>,
    handlers: BTreeMap<Address, Handler>,
    events: Vec<(Address, Event)>,
    height: u64,
    time_ms: u64,
    created: u64,
    /// What each write inside the current top-level call replaced, newest last: a failed call
    /// undoes back to where it started (cheap, where copying the world per call was not).
    journal: Vec<Undo>,
}

enum Undo {
    Storage(Address, Vec<u8>, Option<Vec<u8>>),
    Balance(Address, Option<u64>),
}

impl World {
    fn set_balance(&mut self, account: Address, amount: u64) {
        let old = self.balances.insert(account, amount);
        self.journal.push(Undo::Balance(account, old));
    }

    fn undo_to(&mut self, mark: usize) {
        while self.journal.len() > mark {
            match self.journal.pop() {
                Some(Undo::Storage(c, key, old)) => {
                    let s = self.storage.entry(c).or_default();
                    match old {
                        Some(v) => s.insert(key, v),
                        None => s.remove(&key),
                    };
                }
                Some(Undo::Balance(a, old)) => {
                    match old {
                        Some(v) => self.balances.insert(a, v),
                        None => self.balances.remove(&a),
                    };
                }
                None => break,
            }
        }
    }
}

struct Frame {
    contract: Address,
    read_only: bool,
    env: Env,
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(World::default());
    static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Chain id contracts see in the harness.
pub const CHAIN_ID: &str = "mock-chain";

/// The in-memory chain. One per test (it lives in a thread local, and tests run one per thread).
pub struct MockChain {
    _private: (),
}

impl Default for MockChain {
    fn default() -> Self {
        Self::new()
    }
}

impl MockChain {
    /// A fresh chain at height 1, time 1_700_000_000_000 ms.
    pub fn new() -> MockChain {
        WORLD.with(|w| {
            *w.borrow_mut() = World {
                height: 1,
                time_ms: 1_700_000_000_000,
                ..World::default()
            }
        });
        STACK.with(|s| s.borrow_mut().clear());
        MockChain { _private: () }
    }

    /// A deterministic address for a name, for readable tests.
    pub fn addr(name: &str) -> Address {
        let mut a = [0u8; 32];
        for (i, b) in name.bytes().enumerate().take(31) {
            a[i + 1] = b;
        }
        a[0] = 0xa0;
        Address(a)
    }

    pub fn set_balance(&mut self, account: Address, amount: u64) {
        WORLD.with(|w| w.borrow_mut().balances.insert(account, amount));
    }

    pub fn balance(&self, account: Address) -> u64 {
        WORLD.with(|w| w.borrow().balances.get(&account).copied().unwrap_or(0))
    }

    /// Moves to a later block.
    pub fn set_block(&mut self, height: u64, time_ms: u64) {
        WORLD.with(|w| {
            let mut w = w.borrow_mut();
            w.height = height;
            w.time_ms = time_ms;
        });
    }

    pub fn height(&self) -> u64 {
        WORLD.with(|w| w.borrow().height)
    }

    pub fn time_ms(&self) -> u64 {
        WORLD.with(|w| w.borrow().time_ms)
    }

    /// Events emitted by the last top-level call.
    pub fn events(&self) -> Vec<(Address, Event)> {
        WORLD.with(|w| w.borrow().events.clone())
    }

    /// Raw storage of a contract, for assertions about layout.
    pub fn storage(&self, contract: Address) -> BTreeMap<Vec<u8>, Vec<u8>> {
        WORLD.with(|w| {
            w.borrow()
                .storage
                .get(&contract)
                .cloned()
                .unwrap_or_default()
        })
    }

    /// Creates an instance of `C`.
    pub fn instantiate<C: Contract>(
        &mut self,
        sender: Address,
        msg: &impl Serialize,
        funds: u64,
    ) -> Result<Address, String> {
        let contract = WORLD.with(|w| {
            let mut w = w.borrow_mut();
            w.created += 1;
            let mut a = [0u8; 32];
            a[0] = 0xc0;
            a[24..].copy_from_slice(&w.created.to_be_bytes());
            let addr = Address(a);
            w.handlers.insert(addr, dispatch::<C> as Handler);
            addr
        });
        let msg = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        match self.top_level(contract, Entry::Instantiate, Some(sender), &msg, funds) {
            Ok(_) => Ok(contract),
            Err(e) => {
                WORLD.with(|w| w.borrow_mut().handlers.remove(&contract));
                Err(e)
            }
        }
    }

    /// Executes a contract as `sender`, sending `funds`. Returns the raw answer.
    pub fn execute(
        &mut self,
        contract: Address,
        sender: Address,
        msg: &impl Serialize,
        funds: u64,
    ) -> Result<Vec<u8>, String> {
        let msg = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        self.top_level(contract, Entry::Execute, Some(sender), &msg, funds)
    }

    /// Executes raw message bytes (to test malformed input).
    pub fn execute_raw(
        &mut self,
        contract: Address,
        sender: Address,
        msg: &[u8],
    ) -> Result<Vec<u8>, String> {
        self.top_level(contract, Entry::Execute, Some(sender), msg, 0)
    }

    /// Calls the contract's sudo entry point, as the chain would.
    pub fn sudo(&mut self, contract: Address, msg: &impl Serialize) -> Result<Vec<u8>, String> {
        let msg = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        self.top_level(contract, Entry::Sudo, None, &msg, 0)
    }

    /// Moves an instance to the code of `C` and runs its migrate entry point.
    pub fn migrate<C: Contract>(
        &mut self,
        contract: Address,
        msg: &impl Serialize,
    ) -> Result<Vec<u8>, String> {
        let old = WORLD.with(|w| {
            w.borrow_mut()
                .handlers
                .insert(contract, dispatch::<C> as Handler)
        });
        let msg = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        let out = self.top_level(contract, Entry::Migrate, None, &msg, 0);
        if out.is_err() {
            WORLD.with(|w| match old {
                Some(h) => w.borrow_mut().handlers.insert(contract, h),
                None => w.borrow_mut().handlers.remove(&contract),
            });
        }
        out
    }

    /// Asks a contract a question and decodes the JSON answer.
    pub fn query<R: DeserializeOwned>(
        &self,
        contract: Address,
        msg: &impl Serialize,
    ) -> Result<R, String> {
        let msg = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        let out = invoke(contract, Entry::Query, None, &msg, 0, true)?;
        serde_json::from_slice(&out).map_err(|e| format!("answer does not decode: {e}"))
    }

    fn top_level(
        &mut self,
        contract: Address,
        entry: Entry,
        caller: Option<Address>,
        msg: &[u8],
        funds: u64,
    ) -> Result<Vec<u8>, String> {
        WORLD.with(|w| {
            let mut w = w.borrow_mut();
            w.events.clear();
            w.journal.clear();
        });
        invoke(contract, entry, caller, msg, funds, false)
    }
}

/// Runs one call with all-or-nothing semantics.
fn invoke(
    contract: Address,
    entry: Entry,
    caller: Option<Address>,
    msg: &[u8],
    funds: u64,
    read_only: bool,
) -> Result<Vec<u8>, String> {
    // Where to undo back to if this call fails (queries cannot write: nothing to undo).
    let mark = WORLD.with(|w| {
        let w = w.borrow();
        (w.journal.len(), w.events.len())
    });
    let handler = WORLD
        .with(|w| w.borrow().handlers.get(&contract).copied())
        .ok_or_else(|| format!("no contract at {contract}"))?;
    if funds > 0 {
        let from = caller.ok_or("funds need a sender")?;
        move_tokens(from, contract, funds)?;
    }
    let env = WORLD.with(|w| {
        let w = w.borrow();
        Env {
            height: w.height,
            time_ms: w.time_ms,
            chain_id: CHAIN_ID.to_string(),
            contract,
            caller,
            funds,
        }
    });
    STACK.with(|s| {
        s.borrow_mut().push(Frame {
            contract,
            read_only,
            env: env.clone(),
        })
    });
    let out = handler(entry, env, msg);
    STACK.with(|s| s.borrow_mut().pop());
    if out.is_err() && !read_only {
        WORLD.with(|w| {
            let mut w = w.borrow_mut();
            w.undo_to(mark.0);
            w.events.truncate(mark.1);
        });
    }
    out
}

fn move_tokens(from: Address, to: Address, amount: u64) -> Result<(), String> {
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        let have = w.balances.get(&from).copied().unwrap_or(0);
        if have < amount {
            return Err(format!(
                "insufficient funds: {from} has {have}, needs {amount}"
            ));
        }
        w.set_balance(from, have - amount);
        let to_has = w.balances.get(&to).copied().unwrap_or(0);
        w.set_balance(to, to_has + amount);
        Ok(())
    })
}

fn current() -> (Address, bool) {
    STACK.with(|s| {
        let s = s.borrow();
        match s.last() {
            Some(f) => (f.contract, f.read_only),
            None => panic!("gridledger-sdk: storage used outside a contract call (use MockChain)"),
        }
    })
}

fn writable() -> Address {
    let (c, read_only) = current();
    if read_only {
        panic!("gridledger-sdk: a query tried to write state");
    }
    c
}

/// The native implementation of the host functions.
#[doc(hidden)]
pub mod backend {
    use super::*;

    pub fn storage_get(key: &[u8]) -> Option<Vec<u8>> {
        let (c, _) = current();
        WORLD.with(|w| w.borrow().storage.get(&c).and_then(|s| s.get(key).cloned()))
    }

    pub fn storage_set(key: &[u8], value: &[u8]) {
        let c = writable();
        WORLD.with(|w| {
            let mut w = w.borrow_mut();
            let old = w
                .storage
                .entry(c)
                .or_default()
                .insert(key.to_vec(), value.to_vec());
            w.journal.push(Undo::Storage(c, key.to_vec(), old));
        });
    }

    pub fn storage_remove(key: &[u8]) {
        let c = writable();
        WORLD.with(|w| {
            let mut w = w.borrow_mut();
            if let Some(old) = w.storage.entry(c).or_default().remove(key) {
                w.journal.push(Undo::Storage(c, key.to_vec(), Some(old)));
            }
        });
    }

    pub fn storage_scan(
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
        descending: bool,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let (c, _) = current();
        WORLD.with(|w| {
            let w = w.borrow();
            let Some(s) = w.storage.get(&c) else {
                return Vec::new();
            };
            // Only the keys under the prefix: [prefix, the next prefix).
            let mut end = prefix.to_vec();
            while end.last() == Some(&0xff) {
                end.pop();
            }
            let upper = match end.last_mut() {
                Some(b) => {
                    *b += 1;
                    std::ops::Bound::Excluded(end.as_slice())
                }
                None => std::ops::Bound::Unbounded,
            };
            let matching = s
                .range::<[u8], _>((std::ops::Bound::Included(prefix), upper))
                .filter(|(k, _)| match start_after {
                    None => true,
                    Some(a) if descending => k.as_slice() < a,
                    Some(a) => k.as_slice() > a,
                });
            let v: Vec<_> = if descending {
                matching
                    .rev()
                    .take(limit as usize)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            } else {
                matching
                    .take(limit as usize)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            v
        })
    }

    /// `storage_scan`'s page in the host's packed layout (see the WIT's `storage-scan-packed`).
    pub fn storage_scan_packed(
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
        descending: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in storage_scan(prefix, start_after, limit, descending) {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&k);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(&v);
        }
        out
    }

    pub fn emit(kind: &str, attributes: Vec<(String, String)>) {
        let c = writable();
        WORLD.with(|w| {
            w.borrow_mut().events.push((
                c,
                Event {
                    kind: kind.to_string(),
                    attributes,
                },
            ))
        });
    }

    pub fn balance(account: &[u8; 32]) -> u64 {
        WORLD.with(|w| {
            w.borrow()
                .balances
                .get(&Address(*account))
                .copied()
                .unwrap_or(0)
        })
    }

    pub fn transfer(to: &[u8; 32], amount: u64) -> Result<(), String> {
        let c = writable();
        move_tokens(c, Address(*to), amount)
    }

    pub fn query_contract(contract: &[u8; 32], msg: &[u8]) -> Result<Vec<u8>, String> {
        invoke(Address(*contract), Entry::Query, None, msg, 0, true)
    }

    pub fn call_contract(contract: &[u8; 32], msg: &[u8], funds: u64) -> Result<Vec<u8>, String> {
        let c = writable();
        invoke(
            Address(*contract),
            Entry::Execute,
            Some(c),
            msg,
            funds,
            false,
        )
    }

    /// The environment of the innermost call (for the SDK's own use).
    pub fn env() -> Option<Env> {
        STACK.with(|s| s.borrow().last().map(|f| f.env.clone()))
    }
}
