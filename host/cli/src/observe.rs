//! `gridledger node --config observer.toml` with `role = "observer"`: a node that follows the
//! validators without voting, checks every block and certificate itself, and serves the
//! public API and the web app (see `gridledger_node::observer`).

use crate::validators::{NodeConfig, Running, validator_index};
use anyhow::{Context, Result, bail};
use gridledger_node::observer::ObserverOptions;
use gridledger_node::{Genesis, Node};
use std::net::SocketAddr;

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
    let rt = crate::runtime()?;
    let banner = format!(
        "gridledger observer {name} of chain {} at height {}, following {} validators",
        node.chain_id(),
        node.head().height,
        opts.validators.len()
    );
    rt.block_on(crate::validators::serve_node(
        cfg,
        node.clone(),
        banner,
        "observer",
        move || Running::start_observer(node, opts),
    ))
}
