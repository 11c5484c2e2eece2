//! Device plugins in a running node: started from their manifests, their signed readings
//! handed to the relay ([`crate::relay`]).

use anyhow::{Context, Result, bail};
use gridledger_devices::meter::{ChainClock, MeterPosition};
use gridledger_devices::supervisor::wall_clock;
use gridledger_devices::{DeviceBinding, PluginManifest, PluginSet, RegisteredDevice};
use gridledger_node::{Genesis, Node};
use gridledger_types::Keypair;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::sync::{mpsc, watch};

/// A node's running plugins and the count of readings its relay got into the mempool.
pub struct Plugins {
    pub set: Arc<PluginSet>,
    pub relayed: Arc<AtomicU64>,
}

/// Starts the plugins and the relay of their readings. `None` if there are no plugins.
pub async fn start(
    node: Arc<Node>,
    manifests: Vec<PluginManifest>,
    relay: Keypair,
    stop: watch::Receiver<bool>,
) -> Result<Option<Plugins>> {
    if manifests.is_empty() {
        return Ok(None);
    }
    let rules = node
        .reading_rules()
        .context("plugins report meter readings, but genesis has no [devices] section")?;
    let clock = ChainClock {
        chain_id: node.chain_id().to_string(),
        market_start_ms: rules.market_start_ms,
        period_ms: rules.period_ms,
        field_period_ms: rules.field_period_ms,
    };
    let (out, readings) = mpsc::channel(64);
    let chain = node.clone();
    let registered = move |id: &gridledger_types::Address| {
        let rec = chain.device(id).ok().flatten().filter(|r| !r.revoked)?;
        Some(RegisteredDevice {
            rated_power_w: rec.rated_power_w,
            position: rec
                .last
                .map_or_else(MeterPosition::default, |l| MeterPosition {
                    next_seq: l.seq.saturating_add(1),
                    export_wh: l.export_wh,
                    import_wh: l.import_wh,
                    last_timestamp_ms: l.timestamp_ms,
                }),
        })
    };
    let set = PluginSet::start(
        manifests,
        clock,
        wall_clock(),
        registered,
        out,
        stop.clone(),
    )
    .await?;
    let relayed = Arc::new(AtomicU64::new(0));
    tokio::spawn(crate::relay::run(
        node,
        relay,
        set.clone(),
        readings,
        relayed.clone(),
        stop,
    ));
    Ok(Some(Plugins { set, relayed }))
}

/// The devnet's plugin: `island-sim` reporting for every simulated participant's meter,
/// reading the genesis profiles from its granted directory.
pub fn island_manifest(
    genesis: &Genesis,
    genesis_path: &Path,
    plugins_dir: &Path,
) -> Result<Option<PluginManifest>> {
    let (Some(sim), Some(market), Some(_)) =
        (&genesis.simulation, &genesis.market, &genesis.devices)
    else {
        return Ok(None);
    };
    let profile = genesis_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&sim.profiles);
    let wasm = plugins_dir.join("island_sim.wasm");
    if !wasm.exists() {
        bail!(
            "{} is missing (build the plugins: cargo run -p gridledger-build)",
            wasm.display()
        );
    }
    let seed_of = |name: &str| {
        genesis
            .accounts
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.dev_seed.clone())
            .with_context(|| format!("meter {name} needs a dev_seed in the devnet"))
    };
    let mut devices = Vec::new();
    let mut bindings = Vec::new();
    for p in &sim.participants {
        let mut t = sim_device(&p.meter, &p.profile, p.units, !p.producer);
        if let Some(b) = &p.battery {
            let mut limits = toml::Table::new();
            limits.insert("capacity_wh".into(), (b.capacity_wh as i64).into());
            limits.insert("initial_wh".into(), (b.initial_wh as i64).into());
            limits.insert("max_charge_w".into(), (b.max_charge_w as i64).into());
            limits.insert("max_discharge_w".into(), (b.max_discharge_w as i64).into());
            t.insert("battery".into(), limits.into());
        }
        devices.push(toml::Value::Table(t));
        bindings.push(DeviceBinding {
            name: p.meter.clone(),
            dev_seed: Some(seed_of(&p.meter)?),
            key_file: None,
        });
    }
    // The devnet's operator allows swaps between the two drivers it ships (the simulation and
    // the test driver), nothing else.
    let mut allowed_code_hashes = Vec::new();
    for file in ["island_sim.wasm", "test_driver.wasm"] {
        let path = plugins_dir.join(file);
        if let Ok(bytes) = std::fs::read(&path) {
            allowed_code_hashes.push(gridledger_devices::PluginSet::code_hash(&bytes).to_hex());
        }
    }
    let (dir, config) = island_sim_config(
        &profile,
        market.start(genesis.genesis_time_ms),
        market.period_ms,
        devices,
    )?;
    Ok(Some(PluginManifest {
        id: "island-sim".into(),
        wasm,
        version: None,
        code_hash: None,
        allowed_code_hashes,
        poll_ms: poll_ms(bindings.len()),
        memory_limit_bytes: 32 << 20,
        time_limit_ms: 1_000,
        connect: Vec::new(),
        read_dir: Some(dir),
        config,
        devices: bindings,
    }))
}

/// Most readings a second the devnet's meters send in all, on their regular polls: each
/// reading reserves 0.8 M gas of a block (its lookup, signature check and a possible energy
/// report), so 400 a second take at most a sixth of the blocks' gas (10⁹ every 500 ms),
/// leaving the rest to orders; a meter is still read more than once in a 5-second period up
/// to 2,000 meters. The poll just after each period starts adds at most one reading a meter
/// a period.
const MAX_READINGS_PER_SEC: usize = 400;

/// How often the devnet's plugin reads its `meters`: every second (live dashboards on the
/// island's dozen meters), less often for a community, so that all of them together stay
/// within [`MAX_READINGS_PER_SEC`]. At 1,000 meters polled every second, the readings alone
/// asked for more block space than the blocks had, arrived late and were refused.
pub fn poll_ms(meters: usize) -> u64 {
    (meters.div_ceil(MAX_READINGS_PER_SEC) as u64).max(1) * 1_000
}

/// One device in the `island-sim` plugin's config: a profile column times `units`.
pub fn sim_device(name: &str, column: &str, units: u64, consumer: bool) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("name".into(), name.into());
    t.insert("column".into(), column.into());
    t.insert("units".into(), (units as i64).into());
    t.insert("consumer".into(), consumer.into());
    t
}

/// The `island-sim` config for `devices`, reading `profile` from the directory it is granted
/// (returned beside the config).
pub fn island_sim_config(
    profile: &Path,
    market_start_ms: u64,
    period_ms: u64,
    devices: Vec<toml::Value>,
) -> Result<(std::path::PathBuf, toml::Table)> {
    let (Some(dir), Some(file)) = (profile.parent(), profile.file_name()) else {
        bail!("bad profile path {}", profile.display());
    };
    let mut config = toml::Table::new();
    config.insert(
        "profile".into(),
        format!("/data/{}", file.to_string_lossy()).into(),
    );
    config.insert("market_start_ms".into(), (market_start_ms as i64).into());
    config.insert("period_ms".into(), (period_ms as i64).into());
    config.insert("devices".into(), devices.into());
    Ok((dir.to_path_buf(), config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The island's meters are read every second; a community's less often, so that its
    /// readings and its orders fit in the blocks of a period together.
    #[test]
    fn a_communitys_meters_are_read_as_often_as_the_blocks_can_take() {
        assert_eq!(poll_ms(12), 1_000);
        assert_eq!(poll_ms(400), 1_000);
        assert_eq!(poll_ms(1_010), 3_000);
        let limits = gridledger_vm::VmConfig::default().limits;
        let (block_ms, per_reading) = (500, 800_000u64);
        let meters = 1_010u64;
        let readings_gas_per_block = meters * per_reading * block_ms / poll_ms(1_010);
        assert!(
            readings_gas_per_block <= limits.max_block_gas / 4,
            "readings take {readings_gas_per_block} gas a block"
        );
    }
}
