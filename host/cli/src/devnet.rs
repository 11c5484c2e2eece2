//! `gridledger devnet`: the genesis validators (in one process, each with its own store, QUIC
//! endpoint on loopback and tokio runtime) finalizing blocks by consensus, the first one's API on loopback,
//! and the island's simulated participants trading. A genesis without validators runs one node
//! that makes a block on a timer.

use crate::sim::Simulation;
use anyhow::{Context, Result};
use clap::Args;
use gridledger_node::{CommittedBlock, Genesis, Node};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Args)]
pub struct DevnetArgs {
    /// Where the chain, compiled contracts and dev keys live. Resumed if it holds a chain.
    #[arg(long)]
    data_dir: PathBuf,
    /// API port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8480)]
    port: u16,
    /// Admin listener port on 127.0.0.1 (plugin swaps; 0 picks a free one). Its bearer token
    /// is in `DATA_DIR/admin.token`.
    #[arg(long, default_value_t = 8481)]
    admin_port: u16,
    /// The island microgrid by default; `genesis/devnet.toml` is a bare chain.
    #[arg(long, default_value = "genesis/island.toml")]
    genesis: PathBuf,
    /// Do not run the simulated participants even if genesis describes them.
    #[arg(long)]
    no_simulation: bool,
    /// Where the genesis contracts' components are (built by `cargo run -p gridledger-build`).
    #[arg(long, default_value = "target/contracts")]
    contracts_dir: PathBuf,
    /// Override the genesis block interval.
    #[arg(long)]
    block_ms: Option<u64>,
    /// Where the device plugin components are (built by `cargo run -p gridledger-build`).
    #[arg(long, default_value = "target/device-plugins")]
    plugins_dir: PathBuf,
}

/// Starts the island's device plugin (unless the simulation is off).
async fn start_plugins(
    args: &DevnetArgs,
    genesis: &Genesis,
    node: &Arc<Node>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Arc<gridledger_devices::PluginSet>>> {
    if args.no_simulation {
        return Ok(None);
    }
    let Some(manifest) =
        crate::plugins::island_manifest(genesis, &args.genesis, &args.plugins_dir)?
    else {
        return Ok(None);
    };
    let keys: std::collections::BTreeMap<String, gridledger_types::Keypair> =
        genesis.dev_keys().into_iter().collect();
    let relay = keys
        .get("device-gateway")
        .or_else(|| keys.get("grid-company"))
        .context("the devnet relays readings from account device-gateway (or grid-company)")?
        .clone();
    let meters = manifest.devices.len();
    let plugins = crate::plugins::start(node.clone(), vec![manifest], relay, stop)
        .await?
        .context("plugins")?;
    println!("plugins: island-sim reads {meters} meters; swap with `gridledger plugin swap`");
    Ok(Some(plugins.set))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn run(args: DevnetArgs) -> Result<()> {
    let genesis = Genesis::load(&args.genesis)?;
    if !genesis.validators.is_empty() {
        return run_validators(args, genesis);
    }
    let interval =
        Duration::from_millis(args.block_ms.unwrap_or(genesis.block_interval_ms).max(10));
    let keys: Vec<_> = genesis.dev_keys();
    let node = Node::open(&args.data_dir, genesis.clone(), &args.contracts_dir)?;
    let sim = if args.no_simulation {
        None
    } else {
        Simulation::from_genesis(node.clone(), &genesis, &args.genesis)?
    };
    let key_dir = args.data_dir.join("keys");
    write_keys(&genesis, &key_dir)?;

    let rt = crate::runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
        let addr = listener.local_addr()?;
        let head = node.head();
        println!(
            "gridledger devnet: chain {} at height {}, data in {}",
            node.chain_id(),
            head.height,
            args.data_dir.display()
        );
        for (name, key) in &keys {
            println!(
                "  account {name:<16} {}  key {}",
                key.address(),
                key_dir.join(format!("{name}.key")).display()
            );
        }
        println!("web app and API: http://{addr}");
        let admin =
            crate::doors::AdminDoor::bind(([127, 0, 0, 1], args.admin_port).into(), &args.data_dir)
                .await?;
        println!("{}", admin.announce());
        std::io::stdout().flush()?;

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let sim = sim.map(|s| Arc::new(Mutex::new(s)));
        let producer = tokio::spawn(produce(node.clone(), interval, stop_rx.clone(), sim));
        let plugins = start_plugins(&args, &genesis, &node, stop_rx).await?;
        let api = gridledger_api::web::app(node.clone(), plugins.clone(), None);
        crate::doors::serve(listener, api, admin, plugins, shutdown_signal()).await?;
        let _ = stop_tx.send(true);
        producer.await??;
        println!("stopped at height {}", node.head().height);
        Ok(())
    })
}

/// Produces a block every `interval` until told to stop. A node fault stops the node.
async fn produce(
    node: Arc<Node>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    sim: Option<Arc<Mutex<Simulation>>>,
) -> Result<()> {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        let n = node.clone();
        let sim = sim.clone();
        let result = tokio::task::spawn_blocking(move || {
            let block = n.produce_block(now_ms())?;
            if let Some(sim) = sim {
                let mut sim = sim.lock().unwrap_or_else(|p| p.into_inner());
                for period in settled_periods(&block) {
                    if let Some(line) = sim.describe(period) {
                        println!("{line}");
                    }
                }
                sim.on_block(block.header.time_ms);
            }
            Ok::<_, gridledger_node::NodeError>(())
        })
        .await?;
        if let Err(e) = result {
            eprintln!("block production stopped: {e}");
            return Err(e.into());
        }
    }
}

/// Periods the block's system calls settled.
pub(crate) fn settled_periods(block: &CommittedBlock) -> Vec<u64> {
    block
        .receipts
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| e.kind == "period_settled")
        .filter_map(|e| {
            e.attributes
                .iter()
                .find(|(k, _)| k == "period")
                .and_then(|(_, v)| v.parse().ok())
        })
        .collect()
}

fn write_keys(genesis: &Genesis, key_dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(key_dir)?;
    for (name, key) in genesis.dev_keys() {
        gridledger_keyfile::write(
            &key_dir.join(format!("{name}.key")),
            &hex::encode(key.secret()),
        )?;
    }
    Ok(())
}

/// The validators of genesis and its first observer, in one process; the public API on
/// `--port` is the observer's (the first validator's, if genesis lists no observer).
fn run_validators(args: DevnetArgs, genesis: Genesis) -> Result<()> {
    use crate::validators::Running;
    use gridledger_node::validator::ValidatorOptions;
    let interval = args.block_ms.unwrap_or(genesis.block_interval_ms).max(10);
    let key_dir = args.data_dir.join("keys");
    write_keys(&genesis, &key_dir)?;
    let mut nodes = Vec::new();
    let mut keys = Vec::new();
    for v in &genesis.validators {
        let seed = genesis
            .accounts
            .iter()
            .find(|a| a.name == v.account)
            .and_then(|a| a.dev_seed.clone())
            .with_context(|| format!("devnet validator {} needs a dev_seed", v.account))?;
        let (bls, network) = gridledger_node::genesis::dev_validator_keys(&seed);
        keys.push(gridledger_node::validator::ValidatorKeys { bls, network });
        nodes.push(Node::open(
            &args.data_dir.join(&v.account),
            genesis.clone(),
            &args.contracts_dir,
        )?);
    }
    // Bound now and handed to the validators, so no two can be given the same port.
    let sockets =
        gridledger_net::loopback_sockets(nodes.len()).context("binding the QUIC ports")?;
    let addrs = sockets
        .iter()
        .map(|s| s.local_addr().context("a QUIC port"))
        .collect::<Result<Vec<_>>>()?;
    let sim = if args.no_simulation {
        None
    } else {
        Simulation::from_genesis(nodes[0].clone(), &genesis, &args.genesis)?
    };
    // The public side: the first observer genesis lists, with the dev key of its name.
    let observer = match genesis.observer_keys()?.into_iter().next() {
        Some((name, key)) => {
            let (secret, public) = gridledger_node::genesis::dev_observer_key(&name);
            if public != key {
                anyhow::bail!(
                    "devnet observer {name}: genesis must list the dev key of its name (`gridledger observer-keys --name {name} --dev-seed {name}`)"
                );
            }
            let node = Node::open(
                &args.data_dir.join(&name),
                genesis.clone(),
                &args.contracts_dir,
            )?;
            node.set_observing();
            Some((node, secret))
        }
        None => None,
    };
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
        let addr = listener.local_addr()?;
        let node = nodes[0].clone();
        println!(
            "gridledger devnet: chain {} at height {}, {} validators{} on loopback, data in {}",
            node.chain_id(),
            node.head().height,
            nodes.len(),
            if observer.is_some() {
                " and an observer"
            } else {
                ""
            },
            args.data_dir.display()
        );
        for (name, key) in genesis.dev_keys() {
            println!(
                "  account {name:<16} {}  key {}",
                key.address(),
                key_dir.join(format!("{name}.key")).display()
            );
        }
        let peers: Vec<(u16, std::net::SocketAddr)> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u16, *a))
            .collect();
        let mut running = Vec::new();
        for ((n, k), socket) in nodes.iter().zip(keys).zip(sockets) {
            running.push(Running::start_isolated(
                n.clone(),
                k,
                ValidatorOptions {
                    listen: socket.into(),
                    peers: peers.clone(),
                    block_interval_ms: interval,
                },
            )?);
        }
        // What the public sees: the observer (it checks what the validators finalize and
        // forwards what is submitted to it), and the meters' plugins on it, as the grid
        // company's boundary node.
        let (public, public_status, watching) = match observer {
            Some((o, secret)) => {
                let watching = Running::start_observer(
                    o.clone(),
                    gridledger_node::observer::ObserverOptions {
                        validators: peers.clone(),
                        network_secret: secret,
                        bind: ([127, 0, 0, 1], 0).into(),
                    },
                )?;
                (o, watching.status.clone(), Some(watching))
            }
            None => (node.clone(), running[0].status.clone(), None),
        };
        println!("web app and API: http://{addr}");
        let admin =
            crate::doors::AdminDoor::bind(([127, 0, 0, 1], args.admin_port).into(), &args.data_dir)
                .await?;
        println!("{}", admin.announce());
        std::io::stdout().flush()?;
        let sim_task = sim.map(|s| tokio::spawn(follow(node.clone(), s)));
        let (plugins_stop, stop_rx) = tokio::sync::watch::channel(false);
        let plugins = start_plugins(&args, &genesis, &public, stop_rx).await?;
        let api = gridledger_api::web::app(public.clone(), plugins.clone(), Some(public_status));
        let mut watching = watching;
        let until = async {
            match watching.as_mut() {
                // Never a public API over a chain the observer no longer follows.
                Some(w) => tokio::select! {
                    _ = shutdown_signal() => {}
                    _ = w.ended() => eprintln!("the observer stopped by itself (see the log); the devnet shuts down"),
                },
                None => shutdown_signal().await,
            }
        };
        crate::doors::serve(listener, api, admin, plugins, until).await?;
        let _ = plugins_stop.send(true);
        if let Some(t) = sim_task {
            t.abort();
        }
        if let Some(w) = watching {
            w.stop().await?;
        }
        for r in running {
            r.stop().await?;
        }
        println!("stopped at height {}", node.head().height);
        Ok(())
    })
}

/// Drives the simulated participants from the blocks `node` commits.
async fn follow(node: Arc<Node>, sim: Simulation) {
    let sim = Arc::new(Mutex::new(sim));
    let mut blocks = node.subscribe();
    loop {
        let block = match blocks.recv().await {
            Ok(b) => b,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        let sim = sim.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut sim = sim.lock().unwrap_or_else(|p| p.into_inner());
            for period in settled_periods(&block) {
                if let Some(line) = sim.describe(period) {
                    println!("{line}");
                }
            }
            sim.on_block(block.header.time_ms);
        })
        .await;
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
