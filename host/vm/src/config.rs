//! The engine settings every validator must share, and the hash that pins them in genesis.

use gridledger_types::Hash32;
use serde::{Deserialize, Serialize};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OperatorCost, PoolingAllocationConfig};

/// The wasmtime release the fuel table and code generation were pinned against.
pub const WASMTIME_VERSION: &str = "48";

/// Gas charged outside of wasm instructions. One gas is one unit of wasmtime fuel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct GasSchedule {
    /// Every transaction: covers signature check and bookkeeping.
    pub tx_base: u64,
    /// Per byte of the encoded transaction.
    pub tx_per_byte: u64,
    /// Per byte of code stored (compilation and storage).
    pub store_code_per_byte: u64,
    /// Creating a wasm instance for a call (each call, including nested ones).
    pub instantiate: u64,
    /// Any host function call.
    pub host_call: u64,
    pub storage_read_per_byte: u64,
    pub storage_write_base: u64,
    pub storage_write_per_byte: u64,
    pub scan_per_entry: u64,
    pub event_per_byte: u64,
    pub transfer: u64,
    /// Checking one meter reading's signature (readings of unregistered devices, and replays,
    /// are refused before their signature is checked, and cost nothing here). Priced near
    /// the wasm it stands for: a check takes about as long as 5·10⁵ gas of contract code.
    pub reading_signature: u64,
    /// Looking up one reading's device and sequence, for every reading in a batch, junk
    /// included, paid before any is looked at.
    pub reading_lookup: u64,
}

impl Default for GasSchedule {
    fn default() -> Self {
        GasSchedule {
            tx_base: 10_000,
            tx_per_byte: 10,
            store_code_per_byte: 20,
            instantiate: 20_000,
            host_call: 100,
            storage_read_per_byte: 2,
            storage_write_base: 500,
            storage_write_per_byte: 20,
            scan_per_entry: 50,
            // Near a storage write: events are kept with the block, forever.
            event_per_byte: 20,
            transfer: 1_000,
            reading_signature: 300_000,
            reading_lookup: 100_000,
        }
    }
}

/// Limits on what one contract instance may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct Limits {
    /// Linear memory per instance.
    pub max_memory_bytes: usize,
    /// Native stack for wasm frames; deep recursion traps instead of crashing the node.
    pub max_stack_bytes: usize,
    pub max_table_elements: usize,
    /// Contract-to-contract call depth.
    pub max_call_depth: u32,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_result_bytes: usize,
    pub max_code_bytes: usize,
    /// Gas available to a query (queries are not part of a transaction).
    pub query_gas: u64,
    /// Most gas one transaction may ask for: what one sender can make every validator
    /// compute with one transaction. A higher gas limit is refused (`gas_limit_too_high`).
    pub max_tx_gas: u64,
    /// Most gas the transactions of one block may ask for, their gas limits summed: leaders
    /// stay under it and validators refuse a proposal over it.
    pub max_block_gas: u64,
    /// Most events one call may emit, the calls it makes included, and their bytes in all
    /// (kinds, keys and values): beyond either, the call traps.
    pub max_events_per_call: usize,
    pub max_event_bytes_per_call: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 16 << 20,
            max_stack_bytes: 512 << 10,
            max_table_elements: 10_000,
            max_call_depth: 8,
            max_key_bytes: 1024,
            max_value_bytes: 256 << 10,
            max_result_bytes: 1 << 20,
            max_code_bytes: 2 << 20,
            query_gas: 50_000_000,
            // 5e8 gas of wasm takes about 30 ms; a block of 1e9, executed on every validator,
            // stays well inside a consensus round even when an attacker fills it.
            max_tx_gas: 500_000_000,
            max_block_gas: 1_000_000_000,
            max_events_per_call: 4_096,
            max_event_bytes_per_call: 1 << 20,
        }
    }
}

/// Everything that decides a contract call's result and gas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmConfig {
    pub gas: GasSchedule,
    pub limits: Limits,
}

/// The fuel cost of each wasm operator, written out here (not taken from wasmtime's default)
/// so that a wasmtime upgrade cannot silently change gas.
pub fn operator_costs() -> OperatorCost {
    let mut c = OperatorCost::new();
    // Calls and division cost more than simple arithmetic; memory.grow is charged per page.
    c.Call = 5;
    c.CallIndirect = 10;
    c.I32DivS = 4;
    c.I32DivU = 4;
    c.I32RemS = 4;
    c.I32RemU = 4;
    c.I64DivS = 4;
    c.I64DivU = 4;
    c.I64RemS = 4;
    c.I64RemU = 4;
    c.MemoryGrow = 100;
    c.variable.memory_grow_per_page = 200;
    c
}

/// Every engine flag that affects results, as text; hashed into [`VmConfig::hash`].
const ENGINE_FLAGS: &str = "cranelift;nan_canonicalization=1;consume_fuel=1;threads=0;\
shared_everything_threads=0;relaxed_simd=0;memory64=0;multi_memory=0;gc=0;\
exceptions=0;stack_switching=0;component_model_async=0;\
wide_arithmetic=0;custom_page_sizes=0;memory_init_cow=0;pooling=1";

impl VmConfig {
    /// The native stack a thread that runs contracts needs: every call of the deepest nesting
    /// (each runs in a store of its own, with its own wasm stack allowance) plus room for the
    /// host's frames between them. On a smaller thread, deep recursion inside deep nesting
    /// exhausts the thread's stack, which aborts the process instead of trapping.
    pub fn execution_stack_bytes(&self) -> usize {
        (self.limits.max_call_depth as usize + 1) * self.limits.max_stack_bytes + (4 << 20)
    }

    /// A hash of the wasmtime version, engine flags, operator costs, gas schedule and limits.
    /// Genesis records it; a node whose build or configuration gives another hash refuses to
    /// start, because it could compute different results or gas.
    pub fn hash(&self) -> Hash32 {
        let costs = serde_json::to_vec(&operator_costs()).unwrap_or_default();
        let gas = serde_json::to_vec(&self.gas).unwrap_or_default();
        let limits = serde_json::to_vec(&self.limits).unwrap_or_default();
        Hash32::tagged(
            b"gridledger/vm-config/v1",
            &[
                WASMTIME_VERSION.as_bytes(),
                ENGINE_FLAGS.as_bytes(),
                &costs,
                &gas,
                &limits,
            ],
        )
    }

    /// Builds the engine. Pooling keeps instance creation to a few microseconds. With
    /// `epochs`, wasm also checks the engine's epoch: the query engine only (a wall-clock
    /// deadline, see `Vm::for_queries`). Never on an execution engine: the checks change
    /// stack frames, so how deep recursion gets before it traps, and with it gas (a
    /// conformance vector caught this when every engine had them).
    pub fn engine(&self, pool_slots: u32, epochs: bool) -> wasmtime::Result<Engine> {
        let mut c = Config::new();
        c.epoch_interruption(epochs);
        // Threads, GC, exceptions and component-model async are not compiled into this
        // wasmtime build at all (see the workspace's feature list), so they cannot be on; the
        // rest are switched off explicitly.
        c.consume_fuel(true)
            .operator_cost(operator_costs())
            .cranelift_nan_canonicalization(true)
            .wasm_relaxed_simd(false)
            .wasm_memory64(false)
            .wasm_multi_memory(false)
            .wasm_gc(false)
            .wasm_stack_switching(false)
            .wasm_wide_arithmetic(false)
            .wasm_custom_page_sizes(false)
            .memory_init_cow(false)
            .max_wasm_stack(self.limits.max_stack_bytes);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(pool_slots)
            .total_core_instances(pool_slots * 4)
            .total_memories(pool_slots)
            .total_tables(pool_slots * 2)
            .max_memory_size(self.limits.max_memory_bytes)
            .table_elements(self.limits.max_table_elements)
            // Reset memory by zeroing rather than returning pages to the kernel: a contract
            // call touches its stack and heap every time, and page faults would dominate.
            .linear_memory_keep_resident(256 << 10)
            .table_keep_resident(64 << 10);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        Engine::new(&c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_changes_with_any_setting() {
        let base = VmConfig::default();
        let mut more_gas = base.clone();
        more_gas.gas.instantiate += 1;
        let mut more_mem = base.clone();
        more_mem.limits.max_memory_bytes *= 2;
        assert_eq!(base.hash(), VmConfig::default().hash());
        assert_ne!(base.hash(), more_gas.hash());
        assert_ne!(base.hash(), more_mem.hash());
    }
}
