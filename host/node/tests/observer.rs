//! Observers: four validators in one process on loopback QUIC, and nodes that follow them
//! without voting. An observer takes only what proves itself (a tampered block, proof or
//! certificate changes nothing), executes every block itself, says so when its result differs
//! from what the validators certified, catches up after a stop, syncs from genesis, and
//! forwards what is submitted to it.

use gridledger_node::genesis::{GenesisObserver, dev_observer_key, dev_validator_keys};
use gridledger_node::observer::{self, Answer, Follower, ObserverOptions, Refusal, Request};
use gridledger_node::testing::{TEST_CHAIN_ID, validators_genesis};
use gridledger_node::validator::{self, ValidatorKeys, ValidatorOptions, ValidatorStatus};
use gridledger_node::{Genesis, Node};
use gridledger_types::{Keypair, Payload, TxBody};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const N: usize = 4;
const WAIT: Duration = Duration::from_secs(60);
const OBSERVER: &str = "test observer";

fn seed(i: usize) -> String {
    format!("test validator {i}")
}

fn genesis() -> Genesis {
    let mut g = validators_genesis(N, seed);
    g.observers = vec![GenesisObserver {
        name: "observer".into(),
        network_key: hex::encode(dev_observer_key(OBSERVER).1),
    }];
    g
}

struct Task {
    node: Arc<Node>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Task {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

fn peers(addrs: &[SocketAddr]) -> Vec<(u16, SocketAddr)> {
    addrs
        .iter()
        .enumerate()
        .map(|(j, a)| (j as u16, *a))
        .collect()
}

fn start_validator(i: usize, dir: &Path, addrs: &[SocketAddr]) -> Task {
    let node = Node::open(&dir.join(format!("v{i}")), genesis(), Path::new(".")).unwrap();
    let (bls, network) = dev_validator_keys(&seed(i));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(validator::run(
        node.clone(),
        ValidatorKeys { bls, network },
        ValidatorOptions {
            listen: addrs[i].into(),
            peers: peers(addrs),
            block_interval_ms: 50,
        },
        Arc::new(ValidatorStatus::default()),
        rx,
    ));
    Task { node, stop, task }
}

fn start_observer(dir: &Path, addrs: &[SocketAddr]) -> Task {
    let node = Node::open(dir, genesis(), Path::new(".")).unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(observer::run(
        node.clone(),
        ObserverOptions {
            validators: peers(addrs),
            network_secret: dev_observer_key(OBSERVER).0,
            bind: "127.0.0.1:0".parse().unwrap(),
        },
        Arc::new(ValidatorStatus::default()),
        rx,
    ));
    Task { node, stop, task }
}

async fn reach(node: &Node, height: u64) {
    let mut blocks = node.subscribe();
    tokio::time::timeout(WAIT, async {
        while node.head().height < height {
            let _ = blocks.recv().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("height {height} not reached (at {})", node.head().height));
}

/// Waits until `node` holds the execution certificate of `height` (it checks them as they come).
async fn certified(node: &Node, height: u64) {
    tokio::time::timeout(WAIT, async {
        while node.certified_height().unwrap() < height {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("height {height} not certified"));
}

fn header(node: &Node, height: u64) -> gridledger_types::Hash32 {
    node.snapshot()
        .unwrap()
        .block(height)
        .unwrap()
        .unwrap()
        .header
        .hash()
}

fn transfer(from: &Keypair, nonce: u64, to: &Keypair) -> Vec<u8> {
    TxBody {
        chain_id: TEST_CHAIN_ID.into(),
        sender: from.address(),
        nonce,
        gas_limit: 100_000,
        payload: Payload::Transfer {
            to: to.address(),
            amount: 7,
        },
    }
    .sign(from)
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_follows_checks_forwards_catches_up_and_syncs_from_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = gridledger_net::free_loopback_addrs(N).unwrap();
    let validators: Vec<Task> = (0..N)
        .map(|i| start_validator(i, dir.path(), &addrs))
        .collect();
    let watcher = start_observer(&dir.path().join("observer"), &addrs);

    // A transaction submitted to the observer reaches the validators and a block.
    let sender = Keypair::from_seed_phrase(&seed(0));
    let receiver = Keypair::from_seed_phrase("someone");
    let hash = watcher
        .node
        .submit(&transfer(&sender, 0, &receiver))
        .unwrap();
    let included = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(place) = validators[1]
                .node
                .snapshot()
                .unwrap()
                .tx_location(&hash)
                .unwrap()
            {
                return place;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the forwarded transaction is included");

    // The observer executes the same blocks to the same headers, and holds the validators'
    // certificates over them (each checked against its own header).
    let h = included.0 + 3;
    reach(&validators[0].node, h).await;
    reach(&watcher.node, h).await;
    certified(&watcher.node, h - 1).await;
    for height in 1..=h {
        assert_eq!(
            header(&watcher.node, height),
            header(&validators[0].node, height)
        );
    }
    assert!(watcher.node.diverged().is_none());
    assert_eq!(watcher.node.role(), "observer");
    assert_eq!(validators[0].node.role(), "validator");
    assert_eq!(
        watcher.node.snapshot().unwrap().tx_location(&hash).unwrap(),
        Some(included)
    );

    // Stopped, it falls behind; restarted on its store, it catches up.
    watcher.stop().await;
    let later = validators[0].node.head().height + 20;
    reach(&validators[0].node, later).await;
    let watcher = start_observer(&dir.path().join("observer"), &addrs);
    reach(&watcher.node, later).await;
    assert_eq!(
        header(&watcher.node, later),
        header(&validators[0].node, later)
    );

    // A new observer, from an empty directory, syncs from genesis to the same state.
    let fresh = start_observer(&dir.path().join("fresh"), &addrs);
    reach(&fresh.node, later).await;
    assert_eq!(
        header(&fresh.node, later),
        header(&validators[0].node, later)
    );
    certified(&fresh.node, later).await;

    fresh.stop().await;
    watcher.stop().await;
    for v in validators {
        v.stop().await;
    }
}

/// A validator's answer to an observer asking from height 1, decoded.
fn answer_from(node: &Arc<Node>) -> (Vec<observer::FinalizedBlock>, Vec<(u64, Vec<u8>)>) {
    let request = borsh::to_vec(&Request::Blocks {
        from: 1,
        certificates_from: 1,
    })
    .unwrap();
    let bytes = observer::handler(node.clone())(0x8000, request).unwrap();
    match borsh::from_slice::<Answer>(&bytes).unwrap() {
        Answer::Blocks {
            blocks,
            certificates,
        } => (blocks, certificates),
        other => panic!("{other:?}"),
    }
}

fn answer_bytes(
    blocks: Vec<observer::FinalizedBlock>,
    certificates: Vec<(u64, Vec<u8>)>,
) -> Vec<u8> {
    borsh::to_vec(&Answer::Blocks {
        blocks,
        certificates,
    })
    .unwrap()
}

/// The certificate with validator 0's signer bit flipped: it still decodes, and no longer
/// matches its aggregate signature.
fn other_signers(cert: &[u8]) -> Vec<u8> {
    use gridledger_consensus::{Message, crypto::Bls, wire};
    let Ok(Message::Certificate(mut c)) = wire::decode::<Bls>(cert) else {
        panic!("a certificate")
    };
    c.signers[0] ^= 1;
    wire::encode(&Message::Certificate(c))
}

fn refused(r: Result<usize, Refusal>) -> String {
    match r {
        Err(Refusal::Bad(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_refuses_tampered_blocks_and_certificates_and_reports_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = gridledger_net::free_loopback_addrs(N).unwrap();
    let validators: Vec<Task> = (0..N)
        .map(|i| start_validator(i, dir.path(), &addrs))
        .collect();
    reach(&validators[0].node, 6).await;
    certified(&validators[0].node, 5).await;
    let (blocks, certificates) = answer_from(&validators[0].node);
    assert!(blocks.len() >= 6 && certificates.len() >= 5);

    let node = Node::in_memory(genesis(), Path::new(".")).unwrap();
    let follower = Follower::new(node.clone());
    let untouched = node.head().hash();

    // A payload changed under a real proof: the proof is over another proposal.
    let mut b = blocks[0].clone();
    b.proposal.payload.push(0);
    let why = refused(follower.take(&answer_bytes(vec![b], vec![])));
    assert!(why.contains("height 1"), "{why}");
    // The proof's certificate with a flipped signature byte.
    let mut b = blocks[0].clone();
    let at = b.proof.certificate.len() - 5;
    b.proof.certificate[at] ^= 1;
    refused(follower.take(&answer_bytes(vec![b], vec![])));
    // A well-formed certificate whose signers are not the ones who signed: the aggregate
    // signature check refuses it.
    let mut b = blocks[0].clone();
    b.proof.certificate = other_signers(&b.proof.certificate);
    let why = refused(follower.take(&answer_bytes(vec![b], vec![])));
    assert!(why.contains("finality certificate"), "{why}");
    // The proof of another height; a block that skips one.
    let mut b = blocks[0].clone();
    b.proof = blocks[1].proof.clone();
    let why = refused(follower.take(&answer_bytes(vec![b], vec![])));
    assert!(why.contains("not this block's"), "{why}");
    let why = refused(follower.take(&answer_bytes(vec![blocks[1].clone()], vec![])));
    assert!(why.contains("head is 0"), "{why}");
    assert_eq!(
        node.head().hash(),
        untouched,
        "nothing refused changed the node"
    );

    // The real ones are taken; then certificates: a tampered one and a finalization
    // certificate offered as an execution certificate are refused, the real ones stored.
    let n = follower
        .take(&answer_bytes(blocks.clone(), vec![]))
        .unwrap();
    assert_eq!(n, blocks.len());
    assert_eq!(header(&node, 5), header(&validators[0].node, 5));
    let (h, c) = certificates[0].clone();
    let mut bad = c.clone();
    let at = bad.len() - 5;
    bad[at] ^= 1;
    refused(follower.take(&answer_bytes(vec![], vec![(h, bad)])));
    let why = refused(follower.take(&answer_bytes(vec![], vec![(h, other_signers(&c))])));
    assert!(
        why.contains(&format!("execution certificate of {h}")),
        "{why}"
    );
    refused(follower.take(&answer_bytes(
        vec![],
        vec![(1, blocks[0].proof.certificate.clone())],
    )));
    assert_eq!(node.certified_height().unwrap(), 0);
    follower
        .take(&answer_bytes(vec![], certificates.clone()))
        .unwrap();
    assert!(node.certified_height().unwrap() >= 5);

    // An observer that computes another result from height 3 on says so, and stores no
    // certificate over its own (wrong) headers from there: it calls nothing of it final.
    let wrong = Node::in_memory(genesis(), Path::new(".")).unwrap();
    wrong.inject_execution_fault_from(3);
    let follower = Follower::new(wrong.clone());
    follower.take(&answer_bytes(blocks, vec![])).unwrap();
    follower.take(&answer_bytes(vec![], certificates)).unwrap();
    let why = wrong.diverged().expect("the divergence is reported");
    assert!(why.contains("at height 3"), "{why}");
    assert_eq!(wrong.certified_height().unwrap(), 2);

    for v in validators {
        v.stop().await;
    }
}
