//! The contract sandbox.
//!
//! Contracts are WebAssembly components of the world in `sdk/wit/contract.wit`, run by
//! wasmtime with settings chosen so that every validator computes the same result and the
//! same gas (see [`config`]). The door is narrow:
//!
//! - [`Vm::validate_code`] checks an upload (a component, not nested, importing nothing but
//!   the contract world, exporting all of it) and compiles it once;
//! - [`Vm::call`] runs one entry point of a deployed contract on a [`StateStack`], with all of
//!   its writes in a layer that is kept only if the call succeeds.
//!
//! A call's failure (out of gas, a trap, a contract error, garbage output) is a [`CallError`]
//! that ends up in a receipt. A failure of the node itself (a storage fault, a compiled
//! artifact that will not load) is a [`HostFault`]: never a transaction result.

pub mod code;
pub mod config;
mod host;
pub mod ledger;

pub use code::CodeError;
pub use config::{GasSchedule, Limits, VmConfig};
pub use host::{HostState, event_bytes};

use gridledger_state::StateStack;
use gridledger_types::{Address, ErrorCode, Event, Hash32};
use host::{EnvRecord, HostTrap, InfoRecord};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap};

/// Entry points of the contract world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Instantiate,
    Execute,
    Query,
    Migrate,
    Sudo,
}

impl Entry {
    pub fn export_name(self) -> &'static str {
        match self {
            Entry::Instantiate => "instantiate",
            Entry::Execute => "execute",
            Entry::Query => "query",
            Entry::Migrate => "migrate",
            Entry::Sudo => "sudo",
        }
    }
}

/// The block a call runs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEnv {
    pub height: u64,
    pub time_ms: u64,
    pub chain_id: String,
}

/// One call of a contract entry point.
#[derive(Clone, Debug)]
pub struct CallRequest<'a> {
    pub contract: Address,
    pub entry: Entry,
    /// The sender or calling contract; `None` for queries and sudo.
    pub caller: Option<Address>,
    /// Tokens the caller already moved to the contract for this call.
    pub funds: u64,
    pub msg: &'a [u8],
    pub gas_limit: u64,
}

/// Why a call failed; recorded in the receipt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("out of gas")]
    OutOfGas,
    #[error("contract trapped: {0}")]
    Trap(String),
    #[error("{0}")]
    Contract(String),
    #[error("contract returned an invalid result: {0}")]
    InvalidResult(String),
    #[error("{0}")]
    NotFound(String),
}

impl CallError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CallError::OutOfGas => ErrorCode::OutOfGas,
            CallError::Trap(_) => ErrorCode::Trap,
            CallError::Contract(_) => ErrorCode::ContractError,
            CallError::InvalidResult(_) => ErrorCode::InvalidResult,
            CallError::NotFound(_) => ErrorCode::NotFound,
        }
    }
}

/// A fault of the node, not of the transaction: the block cannot be executed here.
#[derive(Clone, Debug, thiserror::Error)]
#[error("host fault: {0}")]
pub struct HostFault(pub String);

impl From<gridledger_state::ReadError> for HostFault {
    fn from(e: gridledger_state::ReadError) -> Self {
        HostFault(e.to_string())
    }
}

/// What a call did.
#[derive(Clone, Debug)]
pub struct CallOutcome {
    /// The contract's answer (JSON bytes, possibly empty), or why it failed.
    pub result: Result<Vec<u8>, CallError>,
    pub gas_used: u64,
    /// Events of this call and the calls it made; empty if it failed.
    pub events: Vec<Event>,
}

/// What code declares about itself, read at store time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    pub name: String,
    pub version: u32,
}

/// The VM: an engine, the host functions, and compiled contracts. Cheap to clone.
#[derive(Clone)]
pub struct Vm {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    cache: code::CodeCache,
    /// Wall-clock limit of one call, nested calls included (queries only: see
    /// [`Vm::for_queries`]). Block execution has none: its results must not depend on time.
    deadline: Option<Duration>,
    config: VmConfig,
    config_hash: Hash32,
}

/// Instance slots in the pool of a VM from [`Vm::new`]: enough for a full call depth on
/// several threads at once.
pub const POOL_SLOTS: u32 = 64;
/// How often a query VM's epoch advances: the resolution of its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// When a query must stop, shared by the calls it makes (each runs in a store of its own,
/// with an epoch deadline set from this when it starts, and again when a call it made
/// returns, since that call may have moved it out). Moved out by at most the limit itself in
/// all, so a query that reaches into code after code never compiled here still ends.
#[derive(Clone, Debug)]
pub(crate) struct Deadline(Arc<parking_lot::Mutex<DeadlineState>>);

#[derive(Debug)]
struct DeadlineState {
    at: Instant,
    /// What it may still be moved out by.
    slack: Duration,
}

impl Deadline {
    fn after(d: Duration) -> Deadline {
        Deadline(Arc::new(parking_lot::Mutex::new(DeadlineState {
            at: Instant::now() + d,
            slack: d,
        })))
    }

    fn extend(&self, by: Duration) {
        let mut s = self.0.lock();
        let by = by.min(s.slack);
        s.at += by;
        s.slack -= by;
    }

    /// Epoch ticks to wait for: the next tick may come at once, so one more than the ticks
    /// in the time left, rounded up (the call then stops between the deadline and one tick
    /// after it). Zero once it passed: the call stops at its first check.
    pub(crate) fn ticks_left(&self) -> u64 {
        let left = self.0.lock().at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return 0;
        }
        left.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1
    }
}
/// Gas for running `info` at store time (not charged to anyone; it only bounds the call).
const INFO_GAS: u64 = 5_000_000;

impl Vm {
    /// A VM with `config`; compiled contracts are cached in `cache_dir` when given.
    pub fn new(config: VmConfig, cache_dir: Option<PathBuf>) -> wasmtime::Result<Vm> {
        Self::with_pool_slots(config, cache_dir, POOL_SLOTS)
    }

    /// A VM whose engine pools `slots` instances: the most calls (nested ones included) it
    /// runs at once. A call that finds the pool full fails with a [`HostFault`], never as the
    /// contract's fault: whether a slot is free depends on this node, not on the chain.
    pub fn with_pool_slots(
        config: VmConfig,
        cache_dir: Option<PathBuf>,
        slots: u32,
    ) -> wasmtime::Result<Vm> {
        Self::build(config, cache_dir, slots, None)
    }

    /// A VM for queries: like [`Vm::with_pool_slots`], and each call (with the calls it makes)
    /// also stops when `deadline` has passed, whatever gas it has left, so a query that is
    /// cheap in gas but slow (host work priced below its time on this machine) cannot hold a
    /// query thread for long. Epoch interruption: a ticker thread advances the engine's epoch
    /// every [`EPOCH_TICK`], and wasm checks it at function entries and loop heads.
    pub fn for_queries(
        config: VmConfig,
        cache_dir: Option<PathBuf>,
        slots: u32,
        deadline: Duration,
    ) -> wasmtime::Result<Vm> {
        let vm = Self::build(config, cache_dir, slots, Some(deadline))?;
        let engine = vm.inner.engine.weak();
        std::thread::Builder::new()
            .name("query-epochs".into())
            .spawn(move || {
                // Ends with the engine: the thread holds only a weak reference.
                while let Some(engine) = engine.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(vm)
    }

    fn build(
        config: VmConfig,
        cache_dir: Option<PathBuf>,
        slots: u32,
        deadline: Option<Duration>,
    ) -> wasmtime::Result<Vm> {
        let engine = config.engine(slots, deadline.is_some())?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker)?;
        let cache = code::CodeCache::new(&engine, cache_dir, 256);
        let config_hash = config.hash();
        Ok(Vm {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                deadline,
                config,
                config_hash,
            }),
        })
    }

    pub fn config(&self) -> &VmConfig {
        &self.inner.config
    }

    /// The wall-clock limit of each call, for a VM made by [`Vm::for_queries`].
    pub fn deadline(&self) -> Option<Duration> {
        self.inner.deadline
    }

    /// See [`VmConfig::hash`].
    pub fn config_hash(&self) -> Hash32 {
        self.inner.config_hash
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Checks uploaded code and compiles it (once per code hash). Returns what it declares.
    pub fn validate_code(&self, wasm: &[u8]) -> Result<CodeInfo, CodeError> {
        let inner = &self.inner;
        code::check_binary(wasm, inner.config.limits.max_code_bytes)?;
        let component = Component::new(&inner.engine, wasm)
            .map_err(|e| CodeError::Compile(format!("{e:#}")))?;
        code::check_imports(&inner.engine, &component)?;
        let pre = inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| CodeError::WrongWorld(format!("{e:#}")))?;
        let mut store = self.new_store(
            BlockEnv {
                height: 0,
                time_ms: 0,
                chain_id: String::new(),
            },
            StateStack::default(),
            Address([0; 32]),
            true,
            0,
            None,
        );
        let fail = |e: wasmtime::Error| CodeError::WrongWorld(format!("{e:#}"));
        store.set_fuel(INFO_GAS).map_err(fail)?;
        let instance = pre.instantiate(&mut store).map_err(fail)?;
        for entry in [
            Entry::Instantiate,
            Entry::Execute,
            Entry::Query,
            Entry::Migrate,
            Entry::Sudo,
        ] {
            instance
                .get_typed_func::<(EnvRecord, Vec<u8>), (Result<Vec<u8>, String>,)>(
                    &mut store,
                    entry.export_name(),
                )
                .map_err(|e| {
                    CodeError::WrongWorld(format!("export `{}`: {e:#}", entry.export_name()))
                })?;
        }
        let info = instance
            .get_typed_func::<(), (InfoRecord,)>(&mut store, "info")
            .map_err(|e| CodeError::WrongWorld(format!("export `info`: {e:#}")))?;
        let (info,) = info.call(&mut store, ()).map_err(fail)?;
        let hash = code_hash(wasm);
        if inner.cache.get(&hash).is_none() {
            inner.cache.save_artifact(&hash, &component);
            let _ = inner.cache.insert(&inner.linker, hash, &component);
        }
        Ok(CodeInfo {
            name: info.name,
            version: info.version,
        })
    }

    /// Runs a call. Its writes stay on `state` only if it succeeds.
    pub fn call(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        req: CallRequest<'_>,
    ) -> Result<CallOutcome, HostFault> {
        let read_only = req.entry == Entry::Query;
        // The deadline starts once the code is ready (see `call_at_depth`).
        self.call_at_depth(block, state, req, 0, read_only, None)
    }

    pub(crate) fn call_at_depth(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        req: CallRequest<'_>,
        depth: u32,
        read_only: bool,
        until: Option<Deadline>,
    ) -> Result<CallOutcome, HostFault> {
        let failed = |e: CallError, gas_used: u64| CallOutcome {
            result: Err(e),
            gas_used,
            events: Vec::new(),
        };
        let Some(info) = ledger::contract(state, &req.contract)? else {
            return Ok(failed(
                CallError::NotFound(format!("no contract at {}", req.contract.to_hex())),
                0,
            ));
        };
        let instantiate_gas = self.inner.config.gas.instantiate;
        if req.gas_limit < instantiate_gas {
            return Ok(failed(CallError::OutOfGas, req.gas_limit));
        }
        let preparing = Instant::now();
        let pre = self.prepared(state, &info.code_hash)?;
        // A query's deadline counts running, not compiling: the first query of a contract on
        // this engine compiles it (its artifacts are not the execution engine's), which can
        // take longer than a query may run. An outermost call's deadline starts here; a nested
        // call's moves out by the time its code took to get ready.
        let until = match until {
            Some(d) => {
                d.extend(preparing.elapsed());
                Some(d)
            }
            None => self.inner.deadline.map(Deadline::after),
        };

        state.push_layer();
        let lent = std::mem::take(state);
        let mut store = self.new_store(
            block.clone(),
            lent,
            req.contract,
            read_only,
            depth,
            until.clone(),
        );
        store
            .set_fuel(req.gas_limit - instantiate_gas)
            .map_err(|e| HostFault(format!("{e:#}")))?;
        let env = host::env_record(block, &req.contract, req.caller.as_ref(), req.funds);
        let instance = match pre.instantiate(&mut store) {
            Ok(i) => Ok(i),
            Err(e) if !contract_fault(&e) => {
                // The pool is full, or another resource of this node failed: not a result
                // the chain may record (another node would record something else).
                *state = store.into_data().state;
                state.discard_layer();
                return Err(HostFault(format!("instantiating a contract: {e:#}")));
            }
            Err(e) => Err(e),
        };
        let result = instance.and_then(|instance| {
            let func = instance
                .get_typed_func::<(EnvRecord, Vec<u8>), (Result<Vec<u8>, String>,)>(
                    &mut store,
                    req.entry.export_name(),
                )?;
            func.call(&mut store, (env, req.msg.to_vec())).map(|(r,)| r)
        });
        let remaining = store.get_fuel().unwrap_or(0);
        let gas_used = req.gas_limit - remaining;
        let data = store.into_data();
        *state = data.state;
        if let Some(f) = data.fault {
            state.discard_layer();
            return Err(HostFault(f));
        }
        let result = match result {
            Ok(Ok(bytes)) => self.check_result(bytes),
            Ok(Err(msg)) => Err(CallError::Contract(msg)),
            Err(e) => Err(classify(e)),
        };
        match result {
            Ok(bytes) => {
                state.commit_layer();
                Ok(CallOutcome {
                    result: Ok(bytes),
                    gas_used,
                    events: data.events,
                })
            }
            Err(e) => {
                state.discard_layer();
                Ok(failed(e, gas_used))
            }
        }
    }

    /// Answers must be JSON (or empty) and bounded: anything else is garbage.
    fn check_result(&self, bytes: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let max = self.inner.config.limits.max_result_bytes;
        if bytes.len() > max {
            return Err(CallError::InvalidResult(format!(
                "{} bytes exceeds the limit of {max}",
                bytes.len()
            )));
        }
        if !bytes.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
            return Err(CallError::InvalidResult("answer is not JSON".into()));
        }
        Ok(bytes)
    }

    fn new_store(
        &self,
        block: BlockEnv,
        state: StateStack,
        contract: Address,
        read_only: bool,
        depth: u32,
        until: Option<Deadline>,
    ) -> Store<HostState> {
        let limits = &self.inner.config.limits;
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.max_memory_bytes)
            .table_elements(limits.max_table_elements)
            .instances(16)
            .memories(4)
            .tables(8)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.inner.engine,
            HostState {
                vm: self.clone(),
                block,
                state,
                contract,
                read_only,
                depth,
                events: Vec::new(),
                event_bytes: 0,
                limits: store_limits,
                fault: None,
                until: until.clone(),
            },
        );
        store.limiter(|s| &mut s.limits);
        if self.inner.deadline.is_some() {
            // None given (code checks): never; wasmtime adds the current epoch, so not
            // u64::MAX.
            let ticks = until.as_ref().map_or(u64::MAX >> 1, Deadline::ticks_left);
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }
        store
    }

    /// The pre-linked component for `hash`: from memory, the disk cache, or compiled now.
    fn prepared(
        &self,
        state: &StateStack,
        hash: &Hash32,
    ) -> Result<Arc<wasmtime::component::InstancePre<HostState>>, HostFault> {
        let inner = &self.inner;
        if let Some(pre) = inner.cache.get(hash) {
            return Ok(pre);
        }
        let component = match inner.cache.load_artifact(&inner.engine, hash) {
            Some(c) => c,
            None => {
                let code = ledger::code(state, hash)?.ok_or_else(|| {
                    HostFault(format!(
                        "code {} of a deployed contract is missing",
                        hash.to_hex()
                    ))
                })?;
                let c = Component::new(&inner.engine, &code.wasm).map_err(|e| {
                    HostFault(format!(
                        "stored code {} does not compile: {e:#}",
                        hash.to_hex()
                    ))
                })?;
                inner.cache.save_artifact(hash, &c);
                c
            }
        };
        inner
            .cache
            .insert(&inner.linker, *hash, &component)
            .map_err(|e| HostFault(format!("linking code {}: {e:#}", hash.to_hex())))
    }
}

/// The code hash of component bytes.
pub fn code_hash(wasm: &[u8]) -> Hash32 {
    Hash32::tagged(gridledger_types::hash::domain::CODE, &[wasm])
}

/// Whether an instantiation error is the contract's doing (a trap in its start, fuel, or
/// memory it declares beyond the limits) rather than this node's (the instance pool full, an
/// allocation of the host failing).
fn contract_fault(e: &wasmtime::Error) -> bool {
    if e.downcast_ref::<HostTrap>().is_some() || e.downcast_ref::<Trap>().is_some() {
        return true;
    }
    let text = format!("{e:#}");
    text.contains("forcing a memory growth failure")
        || text.contains("memory minimum size")
        || text.contains("table minimum size")
}

/// Maps a wasmtime error from a guest call to the receipt's error.
fn classify(e: wasmtime::Error) -> CallError {
    if let Some(t) = e.downcast_ref::<HostTrap>() {
        return match t {
            HostTrap::OutOfGas => CallError::OutOfGas,
            other => CallError::Trap(other.to_string()),
        };
    }
    if let Some(t) = e.downcast_ref::<Trap>() {
        return match t {
            Trap::OutOfFuel => CallError::OutOfGas,
            Trap::Interrupt => {
                CallError::Trap("the query ran past its time limit on this node".into())
            }
            Trap::StackOverflow => CallError::Trap("stack overflow (recursion too deep)".into()),
            Trap::UnreachableCodeReached => {
                CallError::Trap("unreachable executed (the contract panicked)".into())
            }
            Trap::MemoryOutOfBounds => CallError::Trap("memory access out of bounds".into()),
            Trap::AllocationTooLarge => CallError::Trap("memory limit exceeded".into()),
            other => CallError::Trap(other.to_string()),
        };
    }
    let text = format!("{e:#}");
    if text.contains("forcing a memory growth failure") || text.contains("memory minimum size") {
        return CallError::Trap("memory limit exceeded".into());
    }
    if text.contains("invalid utf-8") || text.contains("out of bounds") || text.contains("realloc")
    {
        return CallError::InvalidResult(text);
    }
    CallError::Trap(text)
}
