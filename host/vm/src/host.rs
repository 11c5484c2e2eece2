//! The host side of the contract world: what `gridledger:contract/host` does, and its gas.

use crate::{BlockEnv, CallError, CallRequest, Entry, Vm, ledger};
use gridledger_state::{StateRead, StateStack};
use gridledger_types::{Address, Event, schema};
use wasmtime::component::{ComponentType, Lift, Linker, Lower};
use wasmtime::{StoreContextMut, StoreLimits};

/// Most entries one `storage-scan` returns.
const MAX_SCAN_ENTRIES: u32 = 1024;
/// Most entries one `storage-scan` may step over (live, overwritten or deleted) to find them.
const MAX_SCAN_VISITS: u64 = 100_000;

/// The per-call data a wasmtime `Store` carries.
pub struct HostState {
    pub(crate) vm: Vm,
    pub(crate) block: BlockEnv,
    /// The chain state, lent to the store for the duration of the call.
    pub(crate) state: StateStack,
    pub(crate) contract: Address,
    pub(crate) read_only: bool,
    pub(crate) depth: u32,
    pub(crate) events: Vec<Event>,
    /// The bytes of `events` (see [`event_bytes`]).
    pub(crate) event_bytes: usize,
    pub(crate) limits: StoreLimits,
    /// Set when the host itself failed (storage fault); the call's result is then void.
    pub(crate) fault: Option<String>,
    /// When the outermost call must stop (queries only); nested calls share it.
    pub(crate) until: Option<crate::Deadline>,
}

/// Why a host function stopped the guest.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostTrap {
    #[error("out of gas")]
    OutOfGas,
    #[error("{0}")]
    Refused(String),
    #[error("host fault: {0}")]
    Fault(String),
}

/// `record env` of the WIT world.
#[derive(ComponentType, Lower, Clone, Debug)]
#[component(record)]
pub(crate) struct EnvRecord {
    pub height: u64,
    #[component(name = "time-ms")]
    pub time_ms: u64,
    #[component(name = "chain-id")]
    pub chain_id: String,
    pub contract: Vec<u8>,
    pub caller: Vec<u8>,
    pub funds: u64,
}

/// `record contract-info`.
#[derive(ComponentType, Lift, Clone, Debug)]
#[component(record)]
pub(crate) struct InfoRecord {
    pub name: String,
    pub version: u32,
}

/// `record attribute`.
#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
pub(crate) struct AttributeRecord {
    pub key: String,
    pub value: String,
}

type Ctx<'a> = StoreContextMut<'a, HostState>;

/// Storage entries as (full key, value) pairs.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One scan page of the calling contract's storage, paid before it is done (both
/// `storage-scan` forms): the entries with their full keys, and how many leading key bytes are
/// the contract's own namespace (to strip before the contract sees them).
fn scan(
    store: &mut Ctx<'_>,
    prefix: &[u8],
    start_after: Option<Vec<u8>>,
    limit: u32,
    descending: bool,
) -> wasmtime::Result<(Entries, usize)> {
    let gas = store.data().vm.config().gas.clone();
    let limit = limit.min(MAX_SCAN_ENTRIES);
    charge(store, gas.host_call)?;
    check_key(store, prefix)?;
    if let Some(a) = &start_after {
        check_key(store, a)?;
    }
    let full_prefix = storage_key(store, prefix);
    let strip = full_prefix.len() - prefix.len();
    let full_after = start_after.map(|a| storage_key(store, &a));
    // Paid before it is done: the scan may visit only as many entries (pending writes and
    // deletions included) as the gas left pays for, and at most MAX_SCAN_VISITS.
    let affordable = store.get_fuel()? / gas.scan_per_entry.max(1);
    let scan = match store.data().state.scan_metered(
        &full_prefix,
        full_after.as_deref(),
        limit as usize,
        descending,
        affordable.min(MAX_SCAN_VISITS),
    ) {
        Ok(scan) => scan,
        Err(gridledger_state::ScanError::OverBudget(_)) if affordable <= MAX_SCAN_VISITS => {
            store.set_fuel(0)?;
            return Err(HostTrap::OutOfGas.into());
        }
        Err(gridledger_state::ScanError::OverBudget(n)) => {
            return Err(HostTrap::Refused(format!(
                "a scan may step over at most {n} entries (pending deletions included); page with start_after"
            ))
            .into());
        }
        Err(gridledger_state::ScanError::Read(e)) => return Err(fault(store, e)),
    };
    charge(store, gas.scan_per_entry * scan.visited)?;
    let bytes: usize = scan.entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    charge(store, gas.storage_read_per_byte * bytes as u64)?;
    Ok((scan.entries, strip))
}

/// `storage-scan-packed`'s layout: per entry a u32 LE key length, the key (without its first
/// `strip` bytes), a u32 LE value length, the value. Keys and values are far below 4 GiB (the
/// state's own limits), so the lengths fit.
fn pack_entries(entries: &[(Vec<u8>, Vec<u8>)], strip: usize) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|(k, v)| 8 + k.len() - strip + v.len())
        .sum();
    let mut out = Vec::with_capacity(size);
    for (k, v) in entries {
        let key = &k[strip..];
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// Takes `gas` from the call's fuel, or stops it.
fn charge(store: &mut Ctx<'_>, gas: u64) -> wasmtime::Result<()> {
    let fuel = store.get_fuel()?;
    if fuel < gas {
        store.set_fuel(0)?;
        return Err(HostTrap::OutOfGas.into());
    }
    store.set_fuel(fuel - gas)?;
    Ok(())
}

fn fault(store: &mut Ctx<'_>, e: impl std::fmt::Display) -> wasmtime::Error {
    let msg = e.to_string();
    store.data_mut().fault = Some(msg.clone());
    HostTrap::Fault(msg).into()
}

/// An event's size as its limits count it: its kind and its attributes' keys and values.
pub fn event_bytes(e: &Event) -> usize {
    e.kind.len()
        + e.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// Whether `count` more events of `bytes` fit this call's limits.
fn within_event_limits(store: &Ctx<'_>, count: usize, bytes: usize) -> wasmtime::Result<()> {
    let limits = &store.data().vm.config().limits;
    let d = store.data();
    if d.events.len() + count > limits.max_events_per_call
        || d.event_bytes + bytes > limits.max_event_bytes_per_call
    {
        return Err(HostTrap::Refused(format!(
            "a call may emit at most {} events of {} bytes in all",
            limits.max_events_per_call, limits.max_event_bytes_per_call
        ))
        .into());
    }
    Ok(())
}

fn writable(store: &Ctx<'_>, what: &str) -> wasmtime::Result<()> {
    if store.data().read_only {
        return Err(HostTrap::Refused(format!("{what} is not allowed in a query")).into());
    }
    Ok(())
}

fn check_key(store: &Ctx<'_>, key: &[u8]) -> wasmtime::Result<()> {
    let max = store.data().vm.config().limits.max_key_bytes;
    if key.len() > max {
        return Err(
            HostTrap::Refused(format!("storage key of {} bytes exceeds {max}", key.len())).into(),
        );
    }
    Ok(())
}

fn storage_key(store: &Ctx<'_>, key: &[u8]) -> Vec<u8> {
    let mut k = schema::contract_store_prefix(&store.data().contract);
    k.extend_from_slice(key);
    k
}

fn address(bytes: &[u8]) -> wasmtime::Result<Address> {
    <[u8; 32]>::try_from(bytes).map(Address).map_err(|_| {
        HostTrap::Refused(format!("an address is 32 bytes, got {}", bytes.len())).into()
    })
}

/// Registers the host interface in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    // The types interface only declares types; an empty instance satisfies its import.
    linker.instance("gridledger:contract/types@0.1.0")?;
    let mut host = linker.instance("gridledger:contract/host@0.1.0")?;

    host.func_wrap("storage-get", |mut store: Ctx<'_>, (key,): (Vec<u8>,)| {
        let gas = store.data().vm.config().gas.clone();
        charge(
            &mut store,
            gas.host_call + gas.storage_read_per_byte * key.len() as u64,
        )?;
        check_key(&store, &key)?;
        let full = storage_key(&store, &key);
        let value = match store.data().state.get(&full) {
            Ok(v) => v,
            Err(e) => return Err(fault(&mut store, e)),
        };
        if let Some(v) = &value {
            charge(&mut store, gas.storage_read_per_byte * v.len() as u64)?;
        }
        Ok((value,))
    })?;

    host.func_wrap(
        "storage-set",
        |mut store: Ctx<'_>, (key, value): (Vec<u8>, Vec<u8>)| {
            writable(&store, "storage-set")?;
            let gas = store.data().vm.config().gas.clone();
            let bytes = (key.len() + value.len()) as u64;
            charge(
                &mut store,
                gas.host_call + gas.storage_write_base + gas.storage_write_per_byte * bytes,
            )?;
            check_key(&store, &key)?;
            let max = store.data().vm.config().limits.max_value_bytes;
            if value.len() > max {
                return Err(HostTrap::Refused(format!(
                    "storage value of {} bytes exceeds {max}",
                    value.len()
                ))
                .into());
            }
            let full = storage_key(&store, &key);
            store.data_mut().state.set(full, value);
            Ok(())
        },
    )?;

    host.func_wrap(
        "storage-remove",
        |mut store: Ctx<'_>, (key,): (Vec<u8>,)| {
            writable(&store, "storage-remove")?;
            let gas = store.data().vm.config().gas.clone();
            charge(
                &mut store,
                gas.host_call
                    + gas.storage_write_base
                    + gas.storage_write_per_byte * key.len() as u64,
            )?;
            check_key(&store, &key)?;
            let full = storage_key(&store, &key);
            store.data_mut().state.remove(full);
            Ok(())
        },
    )?;

    host.func_wrap(
        "storage-scan",
        |mut store: Ctx<'_>,
         (prefix, start_after, limit, descending): (Vec<u8>, Option<Vec<u8>>, u32, bool)| {
            let (entries, strip) = scan(&mut store, &prefix, start_after, limit, descending)?;
            let out: Vec<(Vec<u8>, Vec<u8>)> = entries
                .into_iter()
                .map(|(k, v)| (k[strip..].to_vec(), v))
                .collect();
            Ok((out,))
        },
    )?;

    host.func_wrap(
        "storage-scan-packed",
        |mut store: Ctx<'_>,
         (prefix, start_after, limit, descending): (Vec<u8>, Option<Vec<u8>>, u32, bool)| {
            let (entries, strip) = scan(&mut store, &prefix, start_after, limit, descending)?;
            Ok((pack_entries(&entries, strip),))
        },
    )?;

    host.func_wrap(
        "emit",
        |mut store: Ctx<'_>, (kind, attributes): (String, Vec<AttributeRecord>)| {
            writable(&store, "emit")?;
            let gas = store.data().vm.config().gas.clone();
            let bytes = kind.len()
                + attributes
                    .iter()
                    .map(|a| a.key.len() + a.value.len())
                    .sum::<usize>();
            charge(
                &mut store,
                gas.host_call + gas.event_per_byte * bytes as u64,
            )?;
            within_event_limits(&store, 1, bytes)?;
            let contract = store.data().contract;
            let data = store.data_mut();
            data.event_bytes += bytes;
            data.events.push(Event {
                contract: Some(contract),
                kind,
                attributes: attributes.into_iter().map(|a| (a.key, a.value)).collect(),
            });
            Ok(())
        },
    )?;

    host.func_wrap("balance", |mut store: Ctx<'_>, (account,): (Vec<u8>,)| {
        let gas = store.data().vm.config().gas.host_call;
        charge(&mut store, gas)?;
        let who = address(&account)?;
        match ledger::account(&store.data().state, &who) {
            Ok(a) => Ok((a.balance,)),
            Err(e) => Err(fault(&mut store, e)),
        }
    })?;

    host.func_wrap(
        "transfer",
        |mut store: Ctx<'_>, (to, amount): (Vec<u8>, u64)| {
            writable(&store, "transfer")?;
            let gas = store.data().vm.config().gas.clone();
            charge(&mut store, gas.host_call + gas.transfer)?;
            let to = address(&to)?;
            let from = store.data().contract;
            match ledger::move_tokens(&mut store.data_mut().state, &from, &to, amount) {
                Ok(()) => Ok((Ok(()),)),
                Err(ledger::TransferError::Read(e)) => Err(fault(&mut store, e)),
                Err(e) => Ok((Err(e.to_string()),)),
            }
        },
    )?;

    host.func_wrap(
        "query-contract",
        |mut store: Ctx<'_>, (contract, msg): (Vec<u8>, Vec<u8>)| {
            let gas = store.data().vm.config().gas.host_call;
            charge(&mut store, gas)?;
            let target = address(&contract)?;
            nested_call(&mut store, target, Entry::Query, msg, 0).map(|r| (r,))
        },
    )?;

    host.func_wrap(
        "call-contract",
        |mut store: Ctx<'_>, (contract, msg, funds): (Vec<u8>, Vec<u8>, u64)| {
            writable(&store, "call-contract")?;
            let gas = store.data().vm.config().gas.clone();
            charge(
                &mut store,
                gas.host_call + if funds > 0 { gas.transfer } else { 0 },
            )?;
            let target = address(&contract)?;
            nested_call(&mut store, target, Entry::Execute, msg, funds).map(|r| (r,))
        },
    )?;

    Ok(())
}

/// Runs another contract inside this call, on this call's state and remaining gas.
///
/// The callee's failure is an `Err` for the caller to handle; running out of gas or a host
/// fault stops the whole transaction.
fn nested_call(
    store: &mut Ctx<'_>,
    target: Address,
    entry: Entry,
    msg: Vec<u8>,
    funds: u64,
) -> wasmtime::Result<Result<Vec<u8>, String>> {
    let data = store.data();
    if data.depth + 1 >= data.vm.config().limits.max_call_depth {
        return Ok(Err(format!(
            "call depth limit of {} reached",
            data.vm.config().limits.max_call_depth
        )));
    }
    let vm = data.vm.clone();
    let block = data.block.clone();
    let caller = data.contract;
    let depth = data.depth + 1;
    let read_only = data.read_only || entry == Entry::Query;
    let until = data.until.clone();
    let fuel = store.get_fuel()?;
    let mut state = std::mem::take(&mut store.data_mut().state);
    // Funds move inside a layer, so a failed callee returns them.
    state.push_layer();
    let moved = if funds > 0 {
        ledger::move_tokens(&mut state, &caller, &target, funds)
    } else {
        Ok(())
    };
    let outcome = match moved {
        Ok(()) => {
            let req = CallRequest {
                contract: target,
                entry,
                caller: if entry == Entry::Query {
                    None
                } else {
                    Some(caller)
                },
                funds,
                msg: &msg,
                gas_limit: fuel,
            };
            vm.call_at_depth(&block, &mut state, req, depth, read_only, until.clone())
        }
        Err(e) => {
            state.discard_layer();
            store.data_mut().state = state;
            return match e {
                ledger::TransferError::Read(e) => Err(fault(store, e)),
                e => Ok(Err(e.to_string())),
            };
        }
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(host_fault) => {
            state.discard_layer();
            store.data_mut().state = state;
            return Err(fault(store, host_fault));
        }
    };
    if outcome.result.is_ok() {
        state.commit_layer();
    } else {
        state.discard_layer();
    }
    store.data_mut().state = state;
    store.set_fuel(fuel.saturating_sub(outcome.gas_used))?;
    // The callee may have moved the query's deadline out (its code had to be compiled).
    if let Some(d) = &until {
        store.set_epoch_deadline(d.ticks_left());
    }
    match outcome.result {
        Ok(data) => {
            // The callee's events count toward this call's limits too.
            let bytes: usize = outcome.events.iter().map(event_bytes).sum();
            within_event_limits(store, outcome.events.len(), bytes)?;
            let d = store.data_mut();
            d.event_bytes += bytes;
            d.events.extend(outcome.events);
            Ok(Ok(data))
        }
        Err(CallError::OutOfGas) => Err(HostTrap::OutOfGas.into()),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// The environment record for a call.
pub(crate) fn env_record(
    block: &BlockEnv,
    contract: &Address,
    caller: Option<&Address>,
    funds: u64,
) -> EnvRecord {
    EnvRecord {
        height: block.height,
        time_ms: block.time_ms,
        chain_id: block.chain_id.clone(),
        contract: contract.0.to_vec(),
        caller: caller.map(|c| c.0.to_vec()).unwrap_or_default(),
        funds,
    }
}

#[cfg(test)]
mod tests {
    use super::pack_entries;

    /// The packed layout the SDK decodes: lengths little-endian, the namespace stripped.
    #[test]
    fn packed_entries_are_length_prefixed_keys_and_values() {
        let entries = vec![
            (b"nsab".to_vec(), b"xyz".to_vec()),
            (b"ns".to_vec(), Vec::new()),
        ];
        let packed = pack_entries(&entries, 2);
        let want: Vec<u8> = [
            &2u32.to_le_bytes()[..],
            b"ab",
            &3u32.to_le_bytes(),
            b"xyz",
            &0u32.to_le_bytes(),
            &0u32.to_le_bytes(),
        ]
        .concat();
        assert_eq!(packed, want);
        assert!(pack_entries(&[], 2).is_empty());
    }
}
