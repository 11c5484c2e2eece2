//! `gridledger bench devices`: how many readings one node polls, signs and relays for 1,000
//! simulated devices, how fast the chain then checks and applies them, and how long a hot
//! swap takes from command to the new version's first reading.

use anyhow::{Context, Result};
use gridledger_node::Node;
use gridledger_node::genesis::{DevicesConfig, GenesisAccount, GenesisDevice, MarketClock};
use gridledger_node::testing::test_genesis;
use gridledger_types::Keypair;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const COLUMNS: [(&str, bool); 6] = [
    ("wind_turbine_w", false),
    ("pv_household_w", false),
    ("household_load_w", true),
    ("charging_pile_w", true),
    ("water_plant_w", true),
    ("battery_w", false),
];

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn run(
    json: bool,
    devices: usize,
    secs: f64,
    plugins_dir: &Path,
    profiles: &Path,
) -> Result<()> {
    let name = |i: usize| format!("meter-{i:04}");
    let mut accounts: Vec<GenesisAccount> = (0..devices)
        .map(|i| GenesisAccount {
            name: name(i),
            address: None,
            dev_seed: Some(format!("bench device {i}")),
            balance: 0,
            roles: vec![],
        })
        .collect();
    accounts.push(GenesisAccount {
        name: "gateway".into(),
        address: None,
        dev_seed: Some("bench gateway".into()),
        balance: 1_000_000_000_000,
        roles: vec![],
    });
    let mut genesis = test_genesis(accounts);
    genesis.genesis_time_ms = now_ms();
    genesis.market = Some(MarketClock {
        period_ms: 60_000,
        start_ms: None,
        sudo_contracts: Vec::new(),
        sudo_gas: 0,
        stats_contract: None,
    });
    genesis.devices = Some(DevicesConfig {
        reading_contract: None,
        time_tolerance_ms: 60_000,
        field_period_ms: None,
        registered: (0..devices)
            .map(|i| GenesisDevice {
                device: name(i),
                owner: "grid-company".into(),
                kind: "bench".into(),
                rated_power_w: 3_000_000,
            })
            .collect(),
    });
    let node = Node::in_memory(genesis.clone(), Path::new("."))?;

    let list: Vec<toml::Value> = (0..devices)
        .map(|i| {
            let (column, consumer) = COLUMNS[i % COLUMNS.len()];
            crate::plugins::sim_device(&name(i), column, 1, consumer).into()
        })
        .collect();
    let (dir, mut config) =
        crate::plugins::island_sim_config(profiles, genesis.genesis_time_ms, 60_000, list)?;
    // Read by test-driver, the version swapped in.
    config.insert("mode".into(), "steady".into());
    config.insert("power_w".into(), 1_000.into());
    let swap_to = std::fs::read(plugins_dir.join("test_driver.wasm")).with_context(|| {
        format!(
            "{}/test_driver.wasm (cargo run -p gridledger-build)",
            plugins_dir.display()
        )
    })?;
    let swap_back = std::fs::read(plugins_dir.join("island_sim.wasm"))?;
    let manifest = gridledger_devices::PluginManifest {
        id: "bench".into(),
        wasm: plugins_dir.join("island_sim.wasm"),
        version: None,
        code_hash: None,
        allowed_code_hashes: vec![
            gridledger_devices::PluginSet::code_hash(&swap_to).to_hex(),
            gridledger_devices::PluginSet::code_hash(&swap_back).to_hex(),
        ],
        // As fast as it goes: the next poll starts when the last one's readings are handed on.
        poll_ms: 1,
        memory_limit_bytes: 64 << 20,
        time_limit_ms: 5_000,
        connect: Vec::new(),
        read_dir: Some(dir),
        config,
        devices: (0..devices)
            .map(|i| gridledger_devices::DeviceBinding {
                name: name(i),
                dev_seed: Some(format!("bench device {i}")),
                key_file: None,
            })
            .collect(),
    };

    let rt = crate::runtime()?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let relay = Keypair::from_seed_phrase("bench gateway");
    let (relayed_per_sec, swap_ms, swap_in_task_ms, stage_ms, switch_ms) = rt.block_on(async {
        let plugins = crate::plugins::start(node.clone(), vec![manifest], relay, stop_rx)
            .await?
            .context("plugins")?;
        // The chain makes blocks meanwhile, as a node does: the gateway's waiting readings are
        // capped in bytes (the mempool's per-sender cap), so relaying is only as fast as
        // blocks take them. Warm up, then count what reaches the mempool.
        let producing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let producer = {
            let (node, producing) = (node.clone(), producing.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                while producing.load(Ordering::Relaxed) {
                    if node.mempool_len() == 0 {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    node.produce_block(now_ms())?;
                }
                Ok(())
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (c0, t0) = (plugins.relayed.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let rate =
            (plugins.relayed.load(Ordering::Relaxed) - c0) as f64 / t0.elapsed().as_secs_f64();
        // Blocks stop: what the plugin relays from here on waits for the apply phase below.
        producing.store(false, Ordering::Relaxed);
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("the block producer panicked"))??;
        // A swap, from the command (compiling the new component included) to its first reading.
        let t = Instant::now();
        let report = plugins
            .set
            .swap("bench", &swap_to)
            .await
            .map_err(anyhow::Error::msg)?;
        let swap_ms = t.elapsed().as_secs_f64() * 1000.0;
        // Back to the first version in two steps: stage (compile, start, health check, while
        // the running one serves), then switch, timed from the command to its first reading.
        let t = Instant::now();
        plugins
            .set
            .stage("bench", &swap_back)
            .await
            .map_err(anyhow::Error::msg)?;
        let stage_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        plugins
            .set
            .switch("bench")
            .await
            .map_err(anyhow::Error::msg)?;
        let switch_ms = t.elapsed().as_secs_f64() * 1000.0;
        let _ = stop.send(true);
        anyhow::Ok((rate, swap_ms, report.swap_ms, stage_ms, switch_ms))
    })?;

    // The chain's side: check and apply everything relayed, in blocks.
    let pending = node.mempool_len();
    let start = Instant::now();
    let mut applied: u64 = 0;
    while node.mempool_len() > 0 {
        let block = node.produce_block(now_ms())?;
        for r in &block.receipts {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.result) {
                applied += v["accepted"].as_u64().unwrap_or(0);
            }
        }
        if block.header.tx_count == 0 {
            break;
        }
    }
    let applied_per_sec = applied as f64 / start.elapsed().as_secs_f64();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("devices: {devices} simulated devices behind one plugin, {cpus} cpus");
    println!(
        "  polled, signed and relayed (blocks taking them): {relayed_per_sec:>7.0} readings/s"
    );
    println!(
        "  checked and applied by the chain:          {applied_per_sec:>10.0} readings/s ({applied} readings in {pending} transactions)"
    );
    println!(
        "  hot swap, command to first new reading:    {swap_ms:>10.1} ms (of which {swap_in_task_ms} ms after the new component was compiled)"
    );
    println!(
        "  staged switch, command to first reading:   {switch_ms:>10.1} ms (staging it took {stage_ms:.1} ms, the old version serving)"
    );
    if json {
        println!(
            "{}",
            serde_json::json!({
                "devices": devices,
                "readings_per_sec": relayed_per_sec.round(),
                "applied_readings_per_sec": applied_per_sec.round(),
                "swap_ms": (swap_ms * 10.0).round() / 10.0,
                "swap_after_compile_ms": swap_in_task_ms,
                "stage_ms": (stage_ms * 10.0).round() / 10.0,
                "switch_ms": (switch_ms * 10.0).round() / 10.0,
            })
        );
    }
    Ok(())
}
