//! `gridledger node --config observer.toml` with `role = "observer"`: a node that follows the
//! validators without voting, checks every block and certificate itself, and serves the
//! public API and the web app (see `gridledger_node::observer`).

use crate::validators::{NodeConfig, Running, validator_index};
use anyhow::{Context, Result, bail};
use gridledger_node::observer::ObserverOptions;
use gridledger_node::{Genesis, Node};
use std::net::SocketAddr;
use tokio::sync::watch;

/// What an observer needs from its config and genesis: whom to ask, with which key.
pub fn options(cfg: &NodeConfig, genesis: &Genesis) -> Result<ObserverOptions> {
    let name = cfg.observer.as_deref().context(
        "an observer's config names it: observer = \"...\" (its genesis [[observers]] entry)",
    )?;
    let secret = cfg.observer_secret()?;
    let public = gridledger_types::Keypair::from_secret(secret).address().0;
    let listed = genesis
        .observer_keys()?
        .into_iter()
        .find(|(n, _)| n == name)
        .with_context(|| format!("genesis lists no observer named {name:?}"))?;
    if listed.1 != public {
        bail!(
            "observer {name}: this key is not the one genesis lists (print the entry for a key with `gridledger observer-keys`)"
        );
    }
    let mut validators = Vec::new();
    for p in &cfg.peers {
        validators.push((validator_index(genesis, &p.validator)?, p.addr));
    }
    if validators.is_empty() {
        bail!("an observer asks validators: list them as [[peers]] (validator, addr)");
    }
    Ok(ObserverOptions {
        validators,
        network_secret: secret,
        bind: SocketAddr::from(([0, 0, 0, 0], 0)),
    })
}

pub fn run(cfg: NodeConfig, genesis: Genesis) -> Result<()> {
    let opts = options(&cfg, &genesis)?;
    let name = cfg.observer.clone().unwrap_or_default();
    let node = Node::open(&cfg.data_dir, genesis, &cfg.contracts_dir)?;
    node.set_observing();
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
            "gridledger observer {name} of chain {} at height {}, following {} validators",
            node.chain_id(),
            node.head().height,
            opts.validators.len()
        );
        println!("web app and API: http://{}", listener.local_addr()?);
        let admin_addr = cfg.admin.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let admin = crate::doors::AdminDoor::bind(admin_addr, &cfg.data_dir).await?;
        println!("{}", admin.announce());
        let mut running = Running::start_observer(node.clone(), opts)?;
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
        let api =
            gridledger_api::web::app(node.clone(), plugins.clone(), Some(running.status.clone()));
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
                "the observer stopped by itself ({}); the node shuts down rather than serve an \
                 API over a chain it no longer follows",
                match &outcome {
                    Ok(()) => "without an error".to_string(),
                    Err(e) => format!("{e:#}"),
                }
            );
        }
        outcome?;
        println!("stopped at height {}", node.head().height);
        Ok(())
    })
}
