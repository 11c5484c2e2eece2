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
    /// `"validator"` (the default) or `"observer"`: follows the validators without voting.
    #[serde(default)]
    pub role: Role,
    pub genesis: PathBuf,
    #[serde(default = "default_contracts")]
    pub contracts_dir: PathBuf,
    pub data_dir: PathBuf,
    /// HTTP API address (keep it on loopback unless a proxy guards it).
    pub api: SocketAddr,
    /// The operator's listener (plugin swap): a free loopback port by default. Each request
    /// needs the bearer token in `DATA_DIR/admin.token`.
    pub admin: Option<SocketAddr>,
    /// QUIC address other validators reach this one at (validators).
    pub listen: Option<SocketAddr>,
    /// This validator's account name in genesis (validators).
    pub validator: Option<String>,
    /// This observer's name in genesis `[[observers]]` (observers).
    pub observer: Option<String>,
    /// Secret keys file (TOML, hex: `bls_secret` and `network_secret` for a validator, as
    /// `gridledger validator-keys --out` writes it; `network_secret` for an observer, as
    /// `gridledger observer-keys --out` does).
    pub keys: Option<PathBuf>,
    /// Or derive dev keys from this phrase (the account's dev_seed; devnets only).
    pub dev_seed: Option<String>,
    /// The other validators (for an observer: the validators it asks).
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

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Validator,
    Observer,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObserverKeysFile {
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

    /// Keys from public phrases are for development chains only.
    pub fn check_dev_seeds(&self, genesis: &Genesis) -> Result<()> {
        if genesis.dev {
            return Ok(());
        }
        let mut seeded: Vec<String> = Vec::new();
        if self.dev_seed.is_some() {
            seeded.push("dev_seed".into());
        }
        if self.relay_dev_seed.is_some() {
            seeded.push("relay_dev_seed".into());
        }
        for p in &self.plugins {
            for d in p.devices.iter().filter(|d| d.dev_seed.is_some()) {
                seeded.push(format!("plugin {} device {}: dev_seed", p.id, d.name));
            }
        }
        if seeded.is_empty() {
            Ok(())
        } else {
            bail!(
                "{}: a key derived from a public phrase is accepted only on a development chain \
                 (genesis has no `dev = true`); give key files instead (`gridledger keygen --out`, \
                 `gridledger validator-keys --out`)",
                seeded.join(", ")
            )
        }
    }

    fn keys(&self) -> Result<ValidatorKeys> {
        match (&self.keys, &self.dev_seed) {
            (Some(path), None) => {
                let text = gridledger_keyfile::read(path)?;
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

    /// An observer's network secret, from its key file or dev phrase.
    pub fn observer_secret(&self) -> Result<[u8; 32]> {
        match (&self.keys, &self.dev_seed) {
            (Some(path), None) => {
                let text = gridledger_keyfile::read(path)?;
                let k: ObserverKeysFile = toml::from_str(&text)?;
                hex32("network_secret", &k.network_secret)
            }
            (None, Some(seed)) => Ok(gridledger_node::genesis::dev_observer_key(seed).0),
            _ => bail!("give exactly one of keys, dev_seed"),
        }
    }

    pub fn relay(&self) -> Result<gridledger_types::Keypair> {
        match (&self.relay_key, &self.relay_dev_seed) {
            (Some(path), None) => {
                let text = gridledger_keyfile::read(path)?;
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

/// A running validator: a thread with a tokio runtime of its own.
pub struct Running {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<Result<()>>,
    /// Resolves when the validator has ended, for whatever reason (its sender is dropped
    /// then, even by a panic).
    exited: Option<tokio::sync::oneshot::Receiver<()>>,
    pub status: Arc<ValidatorStatus>,
}

impl Running {
    /// Starts the validator on a tokio runtime of its own (one worker and its blocking pool,
    /// on a thread of its own): several validators in one process, and the web API beside
    /// them, never wait behind each other's tasks, as they would not on separate machines.
    pub fn start_isolated(
        node: Arc<Node>,
        keys: ValidatorKeys,
        opts: ValidatorOptions,
    ) -> Result<Running> {
        let port = opts.listen.addr().map_or(0, |a| a.port());
        let name = format!("validator-{port}");
        Running::spawn(name, move |status, stop| {
            validator::run(node, keys, opts, status, stop)
        })
    }

    /// Starts an observer the same way, on a runtime of its own.
    pub fn start_observer(
        node: Arc<Node>,
        opts: gridledger_node::observer::ObserverOptions,
    ) -> Result<Running> {
        Running::spawn("observer".into(), move |status, stop| {
            gridledger_node::observer::run(node, opts, status, stop)
        })
    }

    fn spawn<F, Fut>(name: String, run: F) -> Result<Running>
    where
        F: FnOnce(Arc<ValidatorStatus>, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let (stop, rx) = watch::channel(false);
        let status = Arc::new(ValidatorStatus::default());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name.clone())
            .thread_stack_size(crate::execution_stack())
            .enable_all()
            .build()
            .context("starting a node's runtime")?;
        let s = status.clone();
        let (exited_tx, exited) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _exited = exited_tx;
                rt.block_on(run(s, rx))
            })
            .context("starting a node's thread")?;
        Ok(Running {
            stop,
            thread,
            exited: Some(exited),
            status,
        })
    }

    /// Waits until the validator ends by itself (a fault, a panic): what a process serving
    /// it should not outlive. Call once; later calls never resolve.
    pub async fn ended(&mut self) {
        match self.exited.take() {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending().await,
        }
    }

    /// Tells the validator to stop and waits until it has (its store and port released).
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the validator's thread panicked"))?
    }
}

pub fn run_node(config: &Path) -> Result<()> {
    let cfg = NodeConfig::load(config)?;
    let genesis = Genesis::load(&cfg.genesis)?;
    cfg.check_dev_seeds(&genesis)?;
    if cfg.role == Role::Observer {
        return crate::observe::run(cfg, genesis);
    }
    let name = cfg
        .validator
        .clone()
        .context("a validator's config names its account: validator = \"...\"")?;
    let listen = cfg
        .listen
        .context("a validator's config gives its QUIC address: listen = \"IP:PORT\"")?;
    let me = validator_index(&genesis, &name)?;
    let mut peers = Vec::new();
    for p in &cfg.peers {
        peers.push((validator_index(&genesis, &p.validator)?, p.addr));
    }
    let keys = cfg.keys()?;
    let interval = cfg.block_interval_ms.unwrap_or(genesis.block_interval_ms);
    let node = Node::open(&cfg.data_dir, genesis, &cfg.contracts_dir)?;
    let rt = crate::runtime()?;
    let banner = format!(
        "gridledger validator {name} ({me}) of chain {} at height {}; QUIC on {listen}",
        node.chain_id(),
        node.head().height,
    );
    rt.block_on(serve_node(
        cfg,
        node.clone(),
        banner,
        "validator",
        move || {
            // The validator on a runtime of its own: no HTTP request, however heavy, waits in
            // front of a vote.
            Running::start_isolated(
                node,
                keys,
                ValidatorOptions {
                    listen: listen.into(),
                    peers,
                    block_interval_ms: interval,
                },
            )
        },
    ))
}

/// Binds the public API and the admin door (printing `banner`, then both addresses), starts
/// the node's work (`start`: a validator or an observer, on a runtime of its own) and the
/// config's plugins, and serves until a signal, or until that work ends by itself: then the
/// process ends too, saying so, never an API up over a dead `what`.
pub async fn serve_node(
    cfg: NodeConfig,
    node: Arc<Node>,
    banner: String,
    what: &str,
    start: impl FnOnce() -> Result<Running>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.api)
        .await
        .with_context(|| format!("binding {}", cfg.api))?;
    println!("{banner}");
    println!("web app and API: http://{}", listener.local_addr()?);
    let admin_addr = cfg.admin.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let admin = crate::doors::AdminDoor::bind(admin_addr, &cfg.data_dir).await?;
    println!("{}", admin.announce());
    let mut running = start()?;
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
    let api = gridledger_api::web::app(node.clone(), plugins.clone(), Some(running.status.clone()));
    let until = async {
        tokio::select! {
            _ = crate::devnet::shutdown_signal() => None,
            _ = running.ended() => Some(()),
        }
    };
    let died = crate::doors::serve(listener, api, admin, plugins, until).await?;
    let _ = plugins_stop.send(true);
    let outcome = running.stop().await;
    if died.is_some() {
        bail!(
            "the {what} stopped by itself ({}); the node shuts down rather than serve an API \
             over a dead {what} (see the log above, fix, and start it again)",
            match &outcome {
                Ok(()) => "without an error".to_string(),
                Err(e) => format!("{e:#}"),
            }
        );
    }
    outcome?;
    println!("stopped at height {}", node.head().height);
    Ok(())
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

    #[test]
    fn dev_seeds_in_a_node_config_need_a_dev_genesis_and_open_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let island = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../genesis/island.toml");
        let mut genesis = Genesis::load(&island).unwrap();
        let path = dir.path().join("node.toml");
        let base = "genesis = \"g\"\ndata_dir = \"d\"\napi = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\nvalidator = \"validator-1\"\n";
        std::fs::write(&path, format!("{base}dev_seed = \"v1\"\n")).unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        assert!(
            cfg.check_dev_seeds(&genesis).is_ok(),
            "a dev chain takes them"
        );
        genesis.dev = false;
        let e = cfg.check_dev_seeds(&genesis).unwrap_err().to_string();
        assert!(e.contains("dev_seed") && e.contains("dev = true"), "{e}");

        // A keys file others can read is refused, saying how to fix it; 0600 is taken.
        use std::os::unix::fs::PermissionsExt;
        let keys = dir.path().join("keys.toml");
        let (bls, net) = dev_validator_keys("v1");
        std::fs::write(
            &keys,
            format!(
                "bls_secret = \"{}\"\nnetwork_secret = \"{}\"\n",
                hex::encode(bls.to_bytes()),
                hex::encode(net)
            ),
        )
        .unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, format!("{base}keys = \"keys.toml\"\n")).unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        assert!(cfg.check_dev_seeds(&genesis).is_ok());
        let e = format!("{:#}", cfg.keys().err().unwrap());
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(cfg.keys().unwrap().network, net);
    }
}
