//! `gridledger bench`: throughput figures printed with units, and as JSON for tools.

use anyhow::{Context, Result};
use clap::Subcommand;
use gridledger_state::StateStack;
use gridledger_types::schema::{self, CodeEntry, ContractInfo};
use gridledger_types::{Address, codec};
use gridledger_vm::{BlockEnv, CallRequest, Entry, Vm, VmConfig, code_hash};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Clearing periods of 1,000 and 10,000 orders and settling 1,000 trades, in the
    /// contracts, through the node (block production with the chain's own period calls).
    Market {
        /// Print one JSON object on the last line.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "target/contracts")]
        contracts_dir: PathBuf,
    },
    /// Four validators on loopback finalizing signed transfers: finalized transactions per
    /// second and submit-to-finality latency; the cost of checking a quorum certificate.
    Cluster {
        /// Print one JSON object on the last line.
        #[arg(long)]
        json: bool,
        /// Transfers submitted at once for the throughput figure.
        #[arg(long, default_value_t = 20_000)]
        txs: usize,
        /// Transfers per second offered for the latency figures (the aim's rate)...
        #[arg(long, default_value_t = 5_000)]
        rate: usize,
        /// ...for this many seconds.
        #[arg(long, default_value_t = 8.0)]
        seconds: f64,
        /// Least time between blocks.
        #[arg(long, default_value_t = 100)]
        block_ms: u64,
        /// Run the same load again on a fresh cluster while an attacker floods queries,
        /// mempools and junk readings and sends its costliest contract calls.
        #[arg(long)]
        attack: bool,
        /// Which attacks `--attack` runs: queries, mempool, readings, calls (comma-separated).
        #[arg(long, default_value = "all")]
        attacks: crate::bench_attack::Kinds,
        /// Where `misbehave.wasm` is (for `--attack`).
        #[arg(long, default_value = "target/contracts")]
        contracts_dir: PathBuf,
    },
    /// 1,000 simulated devices behind one plugin: readings polled, signed and relayed per
    /// second; readings the chain checks and applies per second; the time of a hot swap.
    Devices {
        /// Print one JSON object on the last line.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 1_000)]
        devices: usize,
        /// Seconds of polling to measure.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value = "target/device-plugins")]
        plugins_dir: PathBuf,
        #[arg(long, default_value = "genesis/profiles/island_profiles.csv")]
        profiles: PathBuf,
    },
    /// A bare component call against a realistic contract call, on the same engine.
    Vm {
        /// Print one JSON object on the last line.
        #[arg(long)]
        json: bool,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        #[arg(long, default_value = "target/contracts")]
        contracts_dir: PathBuf,
    },
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Vm {
            json,
            seconds,
            contracts_dir,
        } => bench_vm(json, seconds, &contracts_dir),
        BenchCmd::Market {
            json,
            contracts_dir,
        } => crate::bench_market::run(json, &contracts_dir),
        BenchCmd::Cluster {
            json,
            txs,
            rate,
            seconds,
            block_ms,
            attack,
            attacks,
            contracts_dir,
        } => crate::bench_cluster::run(
            json,
            crate::bench_cluster::Load {
                burst: txs,
                rate,
                seconds,
                block_ms,
                attack: attack.then_some(attacks),
                contracts_dir,
            },
        ),
        BenchCmd::Devices {
            json,
            devices,
            seconds,
            plugins_dir,
            profiles,
        } => crate::bench_devices::run(json, devices, seconds, &plugins_dir, &profiles),
    }
}

/// Runs `f` repeatedly for about `secs` (after a short warm-up) and returns calls per second.
fn rate(secs: f64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..200 {
        f()?;
    }
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..100 {
            f()?;
        }
        n += 100;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// A component exporting one function that does nothing.
const NOOP_COMPONENT: &str = r#"(component
  (core module $m (func (export "run")))
  (core instance $i (instantiate $m))
  (func (export "run") (canon lift (core func $i "run"))))"#;

fn bench_vm(json: bool, seconds: f64, contracts_dir: &std::path::Path) -> Result<()> {
    let vm = Vm::new(VmConfig::default(), None).map_err(|e| anyhow::anyhow!("{e:#}"))?;

    // (a) bare: instantiate a no-op component from a pre-linked InstancePre and call it.
    let engine = vm.engine().clone();
    let noop = Component::new(&engine, NOOP_COMPONENT).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let linker: Linker<()> = Linker::new(&engine);
    let pre = linker
        .instantiate_pre(&noop)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let bare = rate(seconds, || {
        let mut store = Store::new(&engine, ());
        store
            .set_fuel(1_000_000)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let f = instance
            .get_typed_func::<(), ()>(&mut store, "run")
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        f.call(&mut store, ())
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(())
    })?;

    // (b) realistic: the counter's `increment`, which decodes JSON, reads and writes storage
    // and emits an event, through the full VM path (gas, limits, overlay).
    let path = contracts_dir.join("counter.wasm");
    let wasm = std::fs::read(&path).with_context(|| {
        format!(
            "{} (build contracts: cargo run -p gridledger-build)",
            path.display()
        )
    })?;
    let info = vm
        .validate_code(&wasm)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = code_hash(&wasm);
    let mut state = StateStack::default();
    let contract = Address([0xc0; 32]);
    let caller = Address([0xa1; 32]);
    state.set(
        schema::code_key(&hash),
        codec::encode(&CodeEntry {
            name: info.name.clone(),
            version: info.version,
            wasm,
        }),
    );
    state.set(
        schema::contract_key(&contract),
        codec::encode(&ContractInfo {
            code_hash: hash,
            creator: caller,
            admin: None,
            label: "bench".into(),
            name: info.name,
            version: info.version,
        }),
    );
    let block = BlockEnv {
        height: 1,
        time_ms: 1,
        chain_id: "bench".into(),
    };
    let call = |state: &mut StateStack, entry, msg: &[u8]| -> Result<u64> {
        let out = vm
            .call(
                &block,
                state,
                CallRequest {
                    contract,
                    entry,
                    caller: Some(caller),
                    funds: 0,
                    msg,
                    gas_limit: 10_000_000,
                },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        out.result.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(out.gas_used)
    };
    call(&mut state, Entry::Instantiate, br#"{"start":0}"#)?;
    let gas_per_call = call(&mut state, Entry::Execute, br#"{"increment":{"by":1}}"#)?;
    let contract_rate = rate(seconds, || {
        call(&mut state, Entry::Execute, br#"{"increment":{"by":1}}"#).map(|_| ())
    })?;

    let ratio = contract_rate / bare;
    println!(
        "bare component instantiate+call: {bare:>10.0} calls/s ({:.2} µs/call)",
        1e6 / bare
    );
    println!(
        "counter increment (json, 3 storage ops, event): {contract_rate:>10.0} calls/s ({:.2} µs/call, {gas_per_call} gas)",
        1e6 / contract_rate
    );
    println!("ratio contract/bare: {ratio:.3}");
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bare_calls_per_sec": bare.round(),
                "contract_calls_per_sec": contract_rate.round(),
                "ratio": (ratio * 1000.0).round() / 1000.0,
                "contract_gas_per_call": gas_per_call,
            })
        );
    }
    Ok(())
}
