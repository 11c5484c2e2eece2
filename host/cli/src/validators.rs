//! Running validators: `gridledger node --config node.toml` (one validator, its API), and the
//! pieces the devnet shares with it.

use anyhow::{Context, Result, bail};
use gridledger_consensus::crypto::BlsSecret;
use gridledger_node::genesis::dev_validator_keys;
use gridledger_node::validator::{self, ValidatorKeys, ValidatorOptions, ValidatorStatus};
use gridledger_node::{Genesis, Node};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// `node.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub genesis: PathBuf,
    #[serde(default = "default_contracts")]
    pub contracts_dir: PathBuf,
    pub data_dir: PathBuf,
    /// HTTP API address (keep it on loopback unless a proxy guards it).
    pub api: SocketAddr,
    /// QUIC address other validators reach this one at.
    pub listen: SocketAddr,
    /// This validator's account name in genesis.
    pub validator: String,
    /// Secret keys file (TOML: `bls_secret`, `network_secret`, hex), as written by
    /// `gridledger validator-keys --out`.
    pub keys: Option<PathBuf>,
    /// Or derive dev keys from this phrase (the account's dev_seed; devnets only).
    pub dev_seed: Option<String>,
    /// The other validators.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Overrides the genesis block interval.
    pub block_interval_ms: Option<u64>,
    /// Device plugins this node runs (`[[plugins]]`, each with its grants and devices).
    #[serde(default)]
    pub plugins: Vec<gridledger_devices::PluginManifest>,
    /// The account relaying the plugins' readings: a key file (hex secret) ...
    pub relay_key: Option<PathBuf>,
    /// ... or a dev key from a phrase (devnets only).
    pub relay_dev_seed: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's account name in genesis.
    pub validator: String,
    pub addr: SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    bls_secret: String,
    network_secret: String,
}

fn default_contracts() -> PathBuf {
    "target/contracts".into()
}

fn hex32(what: &str, s: &str) -> Result<[u8; 32]> {
    hex::decode(s.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{what}: expected 32 bytes of hex"))
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg: NodeConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        // Paths in the file are relative to it.
        for p in [&mut cfg.genesis, &mut cfg.contracts_dir, &mut cfg.data_dir] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let relative = cfg.keys.iter_mut().chain(cfg.relay_key.iter_mut()).chain(
            cfg.plugins.iter_mut().flat_map(|p| {
                std::iter::once(&mut p.wasm)
                    .chain(p.read_dir.iter_mut())
                    .chain(p.devices.iter_mut().filter_map(|d| d.key_file.as_mut()))
            }),
        );
        for p in relative {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    fn keys(&self) -> Result<ValidatorKeys> {
        match (&self.keys, &self.dev_seed) {
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let k: KeysFile = toml::from_str(&text)?;
                let bls = BlsSecret::from_bytes(&hex32("bls_secret", &k.bls_secret)?)
                    .context("bls_secret is not a valid scalar")?;
                Ok(ValidatorKeys {
                    bls,
                    network: hex32("network_secret", &k.network_secret)?,
                })
            }
            (None, Some(seed)) => {
                let (bls, network) = dev_validator_keys(seed);
                Ok(ValidatorKeys { bls, network })
            }
            _ => bail!("give exactly one of keys, dev_seed"),
        }
    }

    fn relay(&self) -> Result<gridledger_types::Keypair> {
        match (&self.relay_key, &self.relay_dev_seed) {
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(gridledger_types::Keypair::from_secret(hex32(
                    "relay_key",
                    &text,
                )?))
            }
            (None, Some(seed)) => Ok(gridledger_types::Keypair::from_seed_phrase(seed)),
            _ => bail!("plugins need exactly one of relay_key, relay_dev_seed"),
        }
    }
}

/// Index of a validator account in the genesis set.
pub fn validator_index(genesis: &Genesis, account: &str) -> Result<u16> {
    genesis
        .validators
        .iter()
        .position(|v| v.account == account)
        .map(|i| i as u16)
        .with_context(|| format!("{account} is not a validator in genesis"))
}

/// A running validator: a task on the current runtime, or a thread with a runtime of its own.
pub struct Running {
    stop: watch::Sender<bool>,
    done: Done,
    pub status: Arc<ValidatorStatus>,
}

enum Done {
    Task(tokio::task::JoinHandle<Result<()>>),
    Thread(std::thread::JoinHandle<Result<()>>),
}

impl Running {
    /// Starts the validator as a task on the current runtime (a `gridledger node` process is
    /// one validator; the cluster benchmark lets four share the machine's cores this way).
    pub fn start(node: Arc<Node>, keys: ValidatorKeys, opts: ValidatorOptions) -> Running {
        let (stop, rx) = watch::channel(false);
        let status = Arc::new(ValidatorStatus::default());
        let task = tokio::spawn(validator::run(node, keys, opts, status.clone(), rx));
        Running {
            stop,
            done: Done::Task(task),
            status,
        }
    }

    /// Starts the validator on a tokio runtime of its own (one worker and its blocking pool,
    /// on a thread of its own): several validators in one process, and the web API beside
    /// them, never wait behind each other's tasks, as they would not on separate machines.
    pub fn start_isolated(
        node: Arc<Node>,
        keys: ValidatorKeys,
        opts: ValidatorOptions,
    ) -> Result<Running> {
        let (stop, rx) = watch::channel(false);
        let status = Arc::new(ValidatorStatus::default());
        let name = format!("validator-{}", opts.listen.port());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name.clone())
            .thread_stack_size(crate::execution_stack())
            .enable_all()
            .build()
            .context("starting a validator's runtime")?;
        let s = status.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || rt.block_on(validator::run(node, keys, opts, s, rx)))
            .context("starting a validator's thread")?;
        Ok(Running {
            stop,
            done: Done::Thread(thread),
            status,
        })
    }

    /// Tells the validator to stop and waits until it has (its store and port released).
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        match self.done {
            Done::Task(task) => task.await?,
            Done::Thread(thread) => tokio::task::spawn_blocking(move || thread.join())
                .await?
                .map_err(|_| anyhow::anyhow!("the validator's thread panicked"))?,
        }
    }
}

pub fn run_node(config: &Path) -> Result<()> {
    let cfg = NodeConfig::load(config)?;
    let genesis = Genesis::load(&cfg.genesis)?;
    let me = validator_index(&genesis, &cfg.validator)?;
    let mut peers = Vec::new();
    for p in &cfg.peers {
        peers.push((validator_index(&genesis, &p.validator)?, p.addr));
    }
    let keys = cfg.keys()?;
    let interval = cfg.block_interval_ms.unwrap_or(genesis.block_interval_ms);
    let node = Node::open(&cfg.data_dir, genesis, &cfg.contracts_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(crate::execution_stack())
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.api)
            .await
            .with_context(|| format!("binding {}", cfg.api))?;
        println!(
            "gridledger validator {} ({me}) of chain {} at height {}; QUIC on {}",
            cfg.validator,
            node.chain_id(),
            node.head().height,
            cfg.listen
        );
        println!("web app and API: http://{}", listener.local_addr()?);
        let running = Running::start(
            node.clone(),
            keys,
            ValidatorOptions {
                listen: cfg.listen,
                peers,
                block_interval_ms: interval,
            },
        );
        let (plugins_stop, stop_rx) = watch::channel(false);
        let mut plugins = None;
        if !cfg.plugins.is_empty() {
            let relay = cfg.relay()?;
            let n = cfg.plugins.len();
            plugins = crate::plugins::start(node.clone(), cfg.plugins, relay, stop_rx)
                .await?
                .map(|p| p.set);
            println!("plugins: {n} running");
        }
        let api = gridledger_api::web::app(node.clone(), plugins, Some(running.status.clone()));
        axum::serve(listener, api)
            .with_graceful_shutdown(crate::devnet::shutdown_signal())
            .await?;
        let _ = plugins_stop.send(true);
        running.stop().await?;
        println!("stopped at height {}", node.head().height);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_manifests_in_node_toml_resolve_paths_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            r#"
genesis = "island.toml"
data_dir = "data"
api = "127.0.0.1:8480"
listen = "127.0.0.1:9000"
validator = "validator-1"
dev_seed = "v1"
relay_dev_seed = "gateway"

[[plugins]]
id = "pcc-meter"
wasm = "plugins/sunspec_meter.wasm"
connect = ["127.0.0.1:1502"]
time_limit_ms = 500
config = { meters = [{ device = "meter-pcc", addr = "127.0.0.1:1502" }] }

[[plugins.devices]]
name = "meter-pcc"
key_file = "keys/meter-pcc.key"
"#,
        )
        .unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        let p = &cfg.plugins[0];
        assert_eq!(p.wasm, dir.path().join("plugins/sunspec_meter.wasm"));
        assert_eq!(p.connect, vec!["127.0.0.1:1502".parse().unwrap()]);
        assert_eq!(
            p.devices[0].key_file.as_deref(),
            Some(dir.path().join("keys/meter-pcc.key").as_path())
        );
        assert_eq!(p.poll_ms, 1_000, "defaults apply");
        assert!(p.config_json().contains("meter-pcc"));
        assert!(cfg.relay().is_ok());

        // An unknown field in a manifest is an error, not silently ignored.
        std::fs::write(
            &path,
            "genesis = \"g\"\ndata_dir = \"d\"\napi = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\nvalidator = \"v\"\n[[plugins]]\nid = \"x\"\nwasm = \"x.wasm\"\ndevices = []\ninherit_network = true\n",
        )
        .unwrap();
        let e = format!("{:#}", NodeConfig::load(&path).err().unwrap());
        assert!(e.contains("inherit_network"), "{e}");
    }
}
