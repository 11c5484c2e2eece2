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
        if let Some(k) = &mut cfg.keys
            && k.is_relative()
        {
            *k = base.join(&*k);
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

/// A validator running on the current runtime.
pub struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
    pub fn start(node: Arc<Node>, keys: ValidatorKeys, opts: ValidatorOptions) -> Running {
        let (stop, rx) = watch::channel(false);
        let status = Arc::new(ValidatorStatus::default());
        let task = tokio::spawn(validator::run(node, keys, opts, status, rx));
        Running { stop, task }
    }

    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
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
        println!("API: http://{}", listener.local_addr()?);
        let running = Running::start(
            node.clone(),
            keys,
            ValidatorOptions {
                listen: cfg.listen,
                peers,
                block_interval_ms: interval,
            },
        );
        axum::serve(listener, gridledger_api::router(node.clone()))
            .with_graceful_shutdown(crate::devnet::shutdown_signal())
            .await?;
        running.stop().await?;
        println!("stopped at height {}", node.head().height);
        Ok(())
    })
}
