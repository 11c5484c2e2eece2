//! `gridledger node` at start: what it refuses, and that it does not outlive its validator.

mod support;

use std::process::Command;
use support::{BIN, repo};

fn node_toml(
    dir: &std::path::Path,
    genesis: &std::path::Path,
    listen: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "genesis = \"{}\"\ncontracts_dir = \"{}\"\ndata_dir = \"{}\"\napi = \"127.0.0.1:0\"\nlisten = \"{listen}\"\nvalidator = \"validator-1\"\n{extra}",
            genesis.display(),
            repo().join("target/contracts").display(),
            dir.join("data").display(),
        ),
    )
    .unwrap();
    path
}

/// Runs `gridledger node` to its end: each case here ends by itself within seconds; one
/// still running after 60 s is killed and fails the test.
fn run(config: &std::path::Path) -> (bool, String) {
    let child = Command::new(BIN)
        .args(["node", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("gridledger node was still running after 60 s");
        }
    };
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The validator cannot start (its QUIC port is taken): the process ends with the reason,
/// instead of serving an API over a validator that is not there.
#[test]
fn a_node_whose_validator_dies_exits_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let config = node_toml(
        dir.path(),
        &repo().join("genesis/island.toml"),
        &listen,
        "dev_seed = \"gridledger island validator-1\"\n",
    );
    let (ok, out) = run(&config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("web app and API: http://"),
        "it had started: {out}"
    );
    assert!(
        out.contains("the validator stopped by itself") && out.contains("dead validator"),
        "{out}"
    );
    drop(taken);
}

/// A genesis that is not a development chain refuses keys from public phrases, in its
/// accounts and in the node's config.
#[test]
fn dev_seeds_are_refused_on_a_chain_without_dev_true() {
    let dir = tempfile::tempdir().unwrap();
    let island = std::fs::read_to_string(repo().join("genesis/island.toml")).unwrap();
    assert!(island.contains("\ndev = true"));
    let real = dir.path().join("real.toml");
    std::fs::write(&real, island.replace("\ndev = true", "\ndev = false")).unwrap();
    let config = node_toml(
        dir.path(),
        &real,
        "127.0.0.1:0",
        "dev_seed = \"gridledger island validator-1\"\n",
    );
    let (ok, out) = run(&config);
    assert!(
        !ok && out.contains("dev_seed") && out.contains("dev = true"),
        "{out}"
    );
    assert!(
        !out.contains("web app and API"),
        "refused before serving: {out}"
    );
}
