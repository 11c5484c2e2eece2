//! Four `gridledger node` processes on loopback, the island genesis: they finalize blocks; one
//! killed with SIGKILL does not stop the others and catches up when it returns; with two killed
//! the chain stops without forking and resumes when one comes back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");
const N: usize = 4;
const WAIT: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `n` distinct free UDP ports on loopback: the sockets are held until all are picked, since
/// the kernel may hand a released port out again at once.
fn free_udp(n: usize) -> Vec<String> {
    let held: Vec<_> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect()
}

/// As [`free_udp`], for TCP.
fn free_tcp(n: usize) -> Vec<String> {
    let held: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect()
}

struct Validator {
    config: PathBuf,
    api: String,
    /// Its QUIC address (none for an observer).
    quic: Option<String>,
    child: Option<Child>,
}

impl Validator {
    fn start(&mut self) {
        // Each start's log beside its config (a restart's replaces the last one's).
        let log = self.config.with_extension("log");
        let mut child = Command::new(BIN)
            .args(["node", "--config"])
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("node log file"))
            .spawn()
            .expect("start node");
        // Wait for the API line, so the node has bound its ports; a node that exits first
        // fails the test with what it logged.
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let Some(Ok(line)) = lines.next() else {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = said.lines().rev().take(20).collect();
                panic!(
                    "node {} exited before printing its API:\n{}",
                    self.config.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            };
            if line.contains("API: http://") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    fn status(&self) -> Option<serde_json::Value> {
        reqwest::blocking::Client::new()
            .get(format!("http://{}/v1/status", self.api))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()?
            .json()
            .ok()
    }

    /// The node's status, asked again while it does not answer within a request's 2 s
    /// (bounded by `WAIT`): on two busy cores a node starting up or catching up was seen to
    /// take longer once, and these tests are about what it says, not how fast.
    fn status_within_wait(&self) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(s) = self.status() {
                return s;
            }
            assert!(
                start.elapsed() < WAIT,
                "{} did not answer /v1/status",
                self.api
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn height(&self) -> u64 {
        self.status()
            .and_then(|s| s["height"].as_u64())
            .unwrap_or(0)
    }

    fn block_hash(&self, height: u64) -> String {
        let b: serde_json::Value =
            reqwest::blocking::get(format!("http://{}/v1/blocks/{height}", self.api))
                .unwrap()
                .json()
                .unwrap();
        b["hash"].as_str().expect("block hash").to_string()
    }

    /// Polls until the node has committed `height` (bounded by `WAIT`).
    fn reach(&self, height: u64) {
        let start = Instant::now();
        while self.height() < height {
            assert!(
                start.elapsed() < WAIT,
                "{} did not reach height {height} (at {})",
                self.api,
                self.height()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Validator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn cluster(dir: &Path) -> Vec<Validator> {
    let quic = free_udp(N);
    let apis = free_tcp(N);
    (0..N)
        .zip(apis)
        .map(|(i, api)| {
            let peers = peers_toml(&quic, Some(i));
            let config = dir.join(format!("node-{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "genesis = \"{}\"\ncontracts_dir = \"{}\"\ndata_dir = \"{}\"\napi = \"{api}\"\nlisten = \"{}\"\nvalidator = \"validator-{}\"\ndev_seed = \"gridledger island validator-{}\"\nblock_interval_ms = 100\n{peers}",
                    repo().join("genesis/island.toml").display(),
                    repo().join("target/contracts").display(),
                    dir.join(format!("data-{i}")).display(),
                    quic[i],
                    i + 1,
                    i + 1,
                ),
            )
            .unwrap();
            Validator {
                config,
                api,
                quic: Some(quic[i].clone()),
                child: None,
            }
        })
        .collect()
}

/// `[[peers]]` entries for the validators at `quic` (validator-1 first), but `except`.
fn peers_toml(quic: &[String], except: Option<usize>) -> String {
    (0..quic.len())
        .filter(|j| Some(*j) != except)
        .map(|j| {
            format!(
                "[[peers]]\nvalidator = \"validator-{}\"\naddr = \"{}\"\n",
                j + 1,
                quic[j]
            )
        })
        .collect()
}

#[test]
fn validators_survive_a_kill_and_stop_safely_without_a_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = cluster(dir.path());
    for x in v.iter_mut() {
        x.start();
    }
    for x in &v {
        x.reach(3);
    }
    let status = v[0].status_within_wait();
    assert_eq!(status["validators"].as_array().unwrap().len(), 4);
    assert!(status["finalized_height"].as_u64().unwrap() >= 3);

    // One of four killed: the others go on.
    v[3].kill();
    let h = v[0].height() + 5;
    for x in &v[..3] {
        x.reach(h);
    }
    // It returns and catches up to the same blocks.
    v[3].start();
    v[3].reach(h);
    assert_eq!(v[3].block_hash(h), v[0].block_hash(h));

    // Two of four killed: no quorum, so nothing more is finalized...
    v[2].kill();
    v[3].kill();
    let stalled = v[0].height().max(v[1].height());
    std::thread::sleep(Duration::from_secs(3));
    let after = v[0].height().max(v[1].height());
    assert!(
        after <= stalled + 1,
        "finalized {stalled} → {after} with two of four validators down"
    );
    // ...and when one returns, finality resumes, on one chain.
    v[3].start();
    let h = after + 3;
    for x in [&v[0], &v[1], &v[3]] {
        x.reach(h);
    }
    let hash = v[0].block_hash(h);
    assert_eq!(v[1].block_hash(h), hash);
    assert_eq!(v[3].block_hash(h), hash);
}

/// An observer process's config: it asks the four validators.
fn observer_toml(dir: &Path, name: &str, validators: &[Validator]) -> Validator {
    // Not one of the validators' ports, which they may not have bound yet.
    let api = loop {
        let api = free_tcp(1).remove(0);
        if validators.iter().all(|v| v.api != api) {
            break api;
        }
    };
    let quic: Vec<String> = validators.iter().filter_map(|v| v.quic.clone()).collect();
    let peers = peers_toml(&quic, None);
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "role = \"observer\"\ngenesis = \"{}\"\ncontracts_dir = \"{}\"\ndata_dir = \"{}\"\napi = \"{api}\"\nobserver = \"grid-observer\"\ndev_seed = \"grid-observer\"\n{peers}",
            repo().join("genesis/island.toml").display(),
            repo().join("target/contracts").display(),
            dir.join(format!("data-{name}")).display(),
        ),
    )
    .unwrap();
    Validator {
        config,
        api,
        quic: None,
        child: None,
    }
}

fn state_root(node: &Validator, height: u64) -> String {
    let b: serde_json::Value =
        reqwest::blocking::get(format!("http://{}/v1/blocks/{height}", node.api))
            .unwrap()
            .json()
            .unwrap();
    let root = b["header"]["state_root"].to_string();
    assert_ne!(root, "null", "{b}");
    root
}

#[test]
fn an_observer_tracks_the_validators_survives_a_kill_and_a_new_one_syncs_from_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = cluster(dir.path());
    for x in v.iter_mut() {
        x.start();
    }
    let mut observer = observer_toml(dir.path(), "observer", &v);
    observer.start();
    observer.reach(5);
    let status = observer.status_within_wait();
    assert_eq!(status["role"], "observer");
    assert_eq!(v[0].status_within_wait()["role"], "validator");
    assert_eq!(status["diverged"], false);
    assert_eq!(state_root(&observer, 5), state_root(&v[0], 5));

    // SIGKILLed, it misses blocks; restarted on its store, it catches up.
    observer.kill();
    let h = v[0].height() + 20;
    v[0].reach(h);
    observer.start();
    observer.reach(h);
    assert_eq!(state_root(&observer, h), state_root(&v[0], h));

    // A new observer from an empty directory, once the chain is 200 blocks long, reaches the
    // same state root.
    v[0].reach(200);
    let mut fresh = observer_toml(dir.path(), "fresh", &v);
    fresh.start();
    fresh.reach(200);
    assert_eq!(state_root(&fresh, 200), state_root(&v[0], 200));
    assert_eq!(state_root(&observer, 200), state_root(&v[0], 200));
    let status = fresh.status_within_wait();
    assert!(
        status["certified_height"].as_u64().unwrap() >= 190,
        "{status}"
    );
}
