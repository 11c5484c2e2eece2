//! Four validators in one process, each with its own store and QUIC endpoint on loopback:
//! transactions submitted to one are finalized by all, blocks carry proofs of finality, and a
//! validator that stops and restarts catches up to the same state.

use gridledger_consensus::Digest;
use gridledger_node::genesis::dev_validator_keys;
use gridledger_node::testing::{TEST_CHAIN_ID, validators_genesis};
use gridledger_node::validator::{self, ValidatorKeys, ValidatorOptions, ValidatorStatus};
use gridledger_node::{Genesis, Node};
use gridledger_types::{Keypair, Payload, TxBody, schema};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const N: usize = 4;
const WAIT: Duration = Duration::from_secs(60);

fn seed(i: usize) -> String {
    format!("test validator {i}")
}

fn genesis() -> Genesis {
    validators_genesis(N, seed)
}

struct Running {
    node: Arc<Node>,
    status: Arc<ValidatorStatus>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start(i: usize, dir: &Path, addrs: &[SocketAddr]) -> Running {
    let node = Node::open(&dir.join(format!("v{i}")), genesis(), Path::new(".")).unwrap();
    let (bls, network) = dev_validator_keys(&seed(i));
    let (stop, rx) = watch::channel(false);
    let status = Arc::new(ValidatorStatus::default());
    let task = tokio::spawn(validator::run(
        node.clone(),
        ValidatorKeys { bls, network },
        ValidatorOptions {
            listen: addrs[i].into(),
            peers: addrs
                .iter()
                .enumerate()
                .map(|(j, a)| (j as u16, *a))
                .collect(),
            block_interval_ms: 50,
        },
        status.clone(),
        rx,
    ));
    Running {
        node,
        status,
        stop,
        task,
    }
}

async fn stop(r: Running) {
    let _ = r.stop.send(true);
    r.task.await.unwrap().unwrap();
}

/// Waits until `node` has committed `height`.
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

fn block_hash(node: &Node, height: u64) -> gridledger_types::Hash32 {
    node.snapshot()
        .unwrap()
        .block(height)
        .unwrap()
        .unwrap()
        .header
        .hash()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_finalize_and_a_restarted_one_catches_up() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let addrs = gridledger_net::free_loopback_addrs(N).unwrap();
    let mut running: Vec<Option<Running>> =
        (0..N).map(|i| Some(start(i, dir.path(), &addrs))).collect();
    let node = |r: &Vec<Option<Running>>, i: usize| r[i].as_ref().unwrap().node.clone();

    // A transfer submitted to validator 0 is executed by all four.
    let alice = Keypair::from_seed_phrase(&seed(0));
    let bob = Keypair::from_seed_phrase("bob");
    let tx = TxBody {
        chain_id: TEST_CHAIN_ID.into(),
        sender: alice.address(),
        nonce: 0,
        gas_limit: 100_000,
        payload: Payload::Transfer {
            to: bob.address(),
            amount: 777,
        },
    }
    .sign(&alice);
    node(&running, 0).submit(&tx.encode()).unwrap();
    let mut blocks = node(&running, 3).subscribe();
    let included = tokio::time::timeout(WAIT, async {
        loop {
            let b = blocks.recv().await.unwrap();
            if b.tx_hashes.contains(&tx.hash()) {
                return b.header.height;
            }
        }
    })
    .await
    .expect("the transfer is finalized");
    for i in 0..N {
        let r = running[i].as_ref().unwrap();
        if r.task.is_finished() {
            let r = running[i].take().unwrap();
            panic!("validator {i} ended: {:?}", r.task.await);
        }
        reach(&node(&running, i), included).await;
        assert_eq!(
            node(&running, i).account(&bob.address()).unwrap().0.balance,
            777
        );
        assert_eq!(
            block_hash(&node(&running, i), included),
            block_hash(&node(&running, 0), included)
        );
    }

    // The block's header is certified by a quorum after executing it.
    let cert = certified(&node(&running, 1), included).await;
    assert_certifies(&node(&running, 1), included, &cert);

    // Each block's finality proof verifies against the validator set, for the proposal digest
    // its state records, and fails for another digest.
    let n0 = node(&running, 0);
    let set = validator::validator_set(&n0);
    let proof = n0.finality(included).unwrap().expect("a proof is stored");
    let key = schema::meta_key(gridledger_node::finality::CONSENSUS_DIGEST_KEY);
    let recorded = n0.snapshot().unwrap().prove(&key, included).unwrap();
    let digest = Digest(recorded.value.clone().unwrap().try_into().unwrap());
    proof.verify(&set, included, &digest).unwrap();
    assert!(proof.verify(&set, included, &Digest([1; 32])).is_err());
    assert!(proof.verify(&set, included + 1, &digest).is_err());

    // Validator 2 stops; three of four keep finalizing.
    let stopped = running[2].take().unwrap();
    let stopped_at = stopped.node.head().height;
    stop(stopped).await;
    let target = node(&running, 0).head().height + 5;
    reach(&node(&running, 0), target).await;

    // It restarts from its data directory and catches up to the same blocks.
    running[2] = Some(start(2, dir.path(), &addrs));
    let back = node(&running, 2);
    assert!(back.head().height >= stopped_at);
    reach(&back, target).await;
    assert_eq!(
        block_hash(&back, target),
        block_hash(&node(&running, 0), target)
    );
    assert_eq!(
        back.snapshot()
            .unwrap()
            .block(target)
            .unwrap()
            .unwrap()
            .header
            .state_root,
        node(&running, 1)
            .snapshot()
            .unwrap()
            .block(target)
            .unwrap()
            .unwrap()
            .header
            .state_root,
    );
    for r in running.into_iter().flatten() {
        stop(r).await;
    }
}

/// A validator that fell behind catches up even when its peers restarted since: they hand it
/// the blocks it lacks from their stores, not from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_validator_catches_up_after_its_peers_restart() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let addrs = gridledger_net::free_loopback_addrs(N).unwrap();
    let mut running: Vec<Running> = (0..N).map(|i| start(i, dir.path(), &addrs)).collect();
    reach(&running[0].node, 3).await;

    // Validator 3 stops; the others finalize 20 more blocks, then stop too.
    let lagging = running.pop().unwrap();
    let behind = lagging.node.head().height;
    stop(lagging).await;
    let target = running[0].node.head().height + 20;
    for r in &running {
        reach(&r.node, target).await;
    }
    for r in running {
        stop(r).await;
    }

    // All four start again. The blocks validator 3 lacks are in nobody's memory now.
    let running: Vec<Running> = (0..N).map(|i| start(i, dir.path(), &addrs)).collect();
    let late = running[3].node.clone();
    assert!(late.head().height <= behind + 1, "it starts behind");
    reach(&late, target + 5).await;
    reach(&running[0].node, target + 5).await;
    assert_eq!(
        block_hash(&late, target + 5),
        block_hash(&running[0].node, target + 5)
    );
    for r in running {
        stop(r).await;
    }
}

/// Waits until `node` holds an execution certificate for `height`.
async fn certified(node: &Node, height: u64) -> Vec<u8> {
    let mut blocks = node.subscribe();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(c) = node.execution_certificate(height).unwrap() {
                return c;
            }
            // Certificates come a moment after their block: wait for the next block, or
            // look again shortly if none comes.
            let _ = tokio::time::timeout(Duration::from_millis(500), blocks.recv()).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("height {height} never certified"))
}

/// The certificate stored for `height` is an execution certificate, signed by a quorum, over
/// this node's own header at that height.
fn assert_certifies(node: &Node, height: u64, cert: &[u8]) {
    let set = validator::validator_set(node);
    let Ok(gridledger_consensus::Message::Certificate(c)) =
        gridledger_consensus::wire::decode::<gridledger_consensus::crypto::Bls>(cert)
    else {
        panic!("not a certificate");
    };
    assert_eq!(c.kind, gridledger_consensus::VoteKind::Execute);
    assert_eq!(c.view, height);
    assert_eq!(c.digest.0, block_hash(node, height).0);
    set.verify_certificate(&c).unwrap();
}

/// One validator executes differently from some height on (as a bug or another build would):
/// when the others' certificate for that height arrives it stops voting and says so, never
/// stores a certificate over its own headers from there, and the other three keep finalizing
/// and certifying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_that_executes_differently_stops_voting_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = gridledger_net::free_loopback_addrs(N).unwrap();
    let running: Vec<Running> = (0..N).map(|i| start(i, dir.path(), &addrs)).collect();
    reach(&running[0].node, 2).await;
    let from = running[3].node.head().height + 2;
    running[3].node.inject_execution_fault_from(from);
    let target = from + 10;
    for r in &running[..3] {
        reach(&r.node, target).await;
    }
    let cert = certified(&running[0].node, target).await;
    assert_certifies(&running[0].node, target, &cert);
    // Validator 3 noticed, with the height where it differed.
    let bad = &running[3].node;
    let why = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(why) = bad.diverged() {
                return why;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("validator 3 reports its divergence");
    assert!(why.contains("certified"), "{why}");
    for h in from..=bad.head().height {
        assert!(
            bad.execution_certificate(h).unwrap().is_none(),
            "validator 3 calls its height {h} final"
        );
    }
    for r in &running[..3] {
        assert!(r.node.diverged().is_none());
    }
    // The three go on without it.
    let further = running[0].node.head().height + 5;
    for r in &running[..3] {
        reach(&r.node, further).await;
    }
    // It remembers across a restart: it starts diverged, and says so at once.
    let mut running = running;
    let bad = running.pop().unwrap();
    stop(bad).await;
    let back = start(3, dir.path(), &addrs);
    assert!(
        back.node.diverged().is_some(),
        "the divergence survives a restart"
    );
    running.push(back);
    for r in running {
        stop(r).await;
    }
}

/// A power cut on every validator in the middle of committing the same finalized block (after
/// the engine persisted the raised floor, before the block was written): restarted from their
/// stores, they finalize and certify again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_inside_commit_on_every_validator_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = gridledger_net::free_loopback_addrs(N).unwrap();
    let running: Vec<Running> = (0..N).map(|i| start(i, dir.path(), &addrs)).collect();
    reach(&running[0].node, 3).await;
    let cut = running.iter().map(|r| r.node.head().height).max().unwrap() + 2;
    for r in &running {
        r.node.inject_commit_failure_at(cut);
    }
    for r in running {
        let ended = tokio::time::timeout(WAIT, r.task)
            .await
            .expect("the cut came");
        let err = ended.unwrap().expect_err("the commit failed");
        assert!(format!("{err:#}").contains("injected failure"), "{err:#}");
        assert_eq!(r.node.head().height, cut - 1);
    }
    // Everything in memory is gone; only the stores remain.
    let running: Vec<Running> = (0..N).map(|i| start(i, dir.path(), &addrs)).collect();
    for r in &running {
        reach(&r.node, cut + 5).await;
    }
    let cert = certified(&running[1].node, cut + 5).await;
    assert_certifies(&running[1].node, cut + 5, &cert);
    assert_eq!(
        block_hash(&running[0].node, cut),
        block_hash(&running[3].node, cut)
    );
    for r in running {
        stop(r).await;
    }
}

/// A byzantine validator tries to keep a transaction out of every block by naming it in a
/// `Block` nobody asked for, for a view far ahead (which used to put it "in flight" for good):
/// the honest leaders include it all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsolicited_block_naming_a_transaction_does_not_keep_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = gridledger_net::free_loopback_addrs(N).unwrap();
    let running: Vec<Running> = (0..3).map(|i| start(i, dir.path(), &addrs)).collect();
    // Validator 3 is the attacker: it speaks the transport with its own keys, nothing else.
    let node0 = running[0].node.clone();
    let (_, network) = dev_validator_keys(&seed(3));
    let (inbound, _drop_everything) = tokio::sync::mpsc::channel(4096);
    let attacker = gridledger_net::Network::start(
        gridledger_net::NetConfig {
            me: 3,
            listen: addrs[3].into(),
            secret: network,
            peers: (0..3)
                .map(|i| gridledger_net::Peer {
                    index: i as u16,
                    key: node0.validators()[i].network_key,
                    addr: addrs[i],
                })
                .collect(),
            max_frame: gridledger_consensus::wire::MAX_MESSAGE_BYTES + 1,
            queue: 64,
            observers: Vec::new(),
            serve: None,
        },
        Arc::new(|_: &[u8]| Ok(())),
        inbound,
    )
    .unwrap();
    reach(&node0, 2).await;

    let alice = Keypair::from_seed_phrase(&seed(1));
    let tx = TxBody {
        chain_id: TEST_CHAIN_ID.into(),
        sender: alice.address(),
        nonce: 0,
        gas_limit: 100_000,
        payload: Payload::Transfer {
            to: Keypair::from_seed_phrase("carol").address(),
            amount: 5,
        },
    }
    .sign(&alice);
    let junk = gridledger_consensus::Proposal {
        view: u64::MAX,
        height: 1,
        parent: Digest::ZERO,
        parent_view: 0,
        payload: gridledger_node::finality::BlockPayload {
            time_ms: 1,
            txs: vec![tx.clone()],
        }
        .encode(),
    };
    let mut framed = vec![0u8]; // the validators' tag for a consensus message
    framed.extend(gridledger_consensus::wire::encode::<
        gridledger_consensus::crypto::Bls,
    >(&gridledger_consensus::Message::Block(junk)));
    let framed = Arc::new(framed);
    attacker.broadcast(framed.clone());
    // Sent first, and again while the transaction waits: it must not matter.
    let mut blocks = node0.subscribe();
    node0.submit(&tx.encode()).unwrap();
    let included = tokio::time::timeout(WAIT, async {
        loop {
            attacker.broadcast(framed.clone());
            let b = blocks.recv().await.unwrap();
            if b.tx_hashes.contains(&tx.hash()) {
                return b.header.height;
            }
        }
    })
    .await
    .expect("the transaction is included despite the unsolicited block");
    assert!(included > 2);
    attacker.shutdown().await;
    for r in running {
        stop(r).await;
    }
}

/// Leaders wait the block interval from the block they extend, not from the last committed
/// one (Simplex proposes on notarization): consecutive block times are never closer than it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_at_least_the_interval_apart() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = gridledger_net::free_loopback_addrs(N).unwrap();
    let running: Vec<Running> = (0..N).map(|i| start(i, dir.path(), &addrs)).collect();
    reach(&running[0].node, 25).await;
    let snap = running[0].node.snapshot().unwrap();
    let times: Vec<u64> = (1..=25)
        .map(|h| snap.block(h).unwrap().unwrap().header.time_ms)
        .collect();
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 50 ms in these tests' genesis and options; 1 ms of rounding.
    assert!(gaps.iter().all(|&g| g >= 49), "gaps {gaps:?}");
    drop(snap);
    for r in running {
        stop(r).await;
    }
}

/// A fetched block is answered once (by the engine when it holds the block, else from the
/// store), not twice: a 34-byte request must not buy two copies of a block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_block_is_answered_once() {
    use gridledger_consensus::{Message, crypto::Bls};
    let dir = tempfile::tempdir().unwrap();
    let addrs = gridledger_net::free_loopback_addrs(N).unwrap();
    let running: Vec<Running> = (0..3).map(|i| start(i, dir.path(), &addrs)).collect();
    let node0 = running[0].node.clone();
    let (_, network) = dev_validator_keys(&seed(3));
    let (inbound, mut received) = tokio::sync::mpsc::channel(4096);
    // Validator 3 speaks the transport with its keys and keeps the blocks it is sent.
    let decode: gridledger_net::Decoder<Option<gridledger_consensus::Proposal>> =
        Arc::new(|b: &[u8]| {
            Ok(match b.split_first() {
                Some((0, rest)) => match gridledger_consensus::wire::decode::<Bls>(rest) {
                    Ok(Message::Block(p)) => Some(p),
                    _ => None,
                },
                _ => None,
            })
        });
    let asker = gridledger_net::Network::start(
        gridledger_net::NetConfig {
            me: 3,
            listen: addrs[3].into(),
            secret: network,
            peers: vec![gridledger_net::Peer {
                index: 0,
                key: node0.validators()[0].network_key,
                addr: addrs[0],
            }],
            max_frame: gridledger_consensus::wire::MAX_MESSAGE_BYTES + 1,
            queue: 64,
            observers: Vec::new(),
            serve: None,
        },
        decode,
        inbound,
    )
    .unwrap();
    reach(&node0, 4).await;
    let digest = |h: u64| {
        node0
            .finality(h)
            .unwrap()
            .unwrap()
            .block_proposal()
            .unwrap()
            .digest()
    };
    let (wanted, marker) = (digest(3), digest(2));
    let fetch = |d: Digest| {
        let mut framed = vec![0u8];
        framed.extend(gridledger_consensus::wire::encode::<Bls>(&Message::Fetch(
            d,
        )));
        Arc::new(framed)
    };
    // First the link: ask for the marker until one answer comes (sends before the connection
    // is up may be lost).
    tokio::time::timeout(WAIT, async {
        loop {
            asker.send(0, fetch(marker));
            if let Ok(Some((_, Some(p)))) =
                tokio::time::timeout(Duration::from_millis(500), received.recv()).await
                && p.digest() == marker
            {
                return;
            }
        }
    })
    .await
    .expect("validator 0 answers a fetch");
    // Then one request for a block in validator 0's memory and store, and the marker after
    // it. Its answers to one peer leave in order: every copy of the first comes before the
    // marker's answer (stray answers to the warm-up come before both).
    asker.send(0, fetch(wanted));
    asker.send(0, fetch(marker));
    let copies = tokio::time::timeout(WAIT, async {
        let mut copies = 0;
        loop {
            match received.recv().await.expect("open") {
                (_, Some(p)) if p.digest() == wanted => copies += 1,
                (_, Some(p)) if p.digest() == marker && copies > 0 => return copies,
                _ => {}
            }
        }
    })
    .await
    .expect("validator 0 answers the fetches");
    assert_eq!(copies, 1, "one request, one copy");
    asker.shutdown().await;
    for r in running {
        stop(r).await;
    }
}

/// The peers gauge tells the truth within the transport's idle timeout: a validator that goes
/// away is no longer counted, though nothing was sent to it (the connection's close is
/// noticed, not only a failed write), and it is counted again when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_gauge_follows_a_validator_leaving_and_returning() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = gridledger_net::free_loopback_addrs(N).unwrap();
    let mut running: Vec<Running> = (0..N).map(|i| start(i, dir.path(), &addrs)).collect();
    let peers = |r: &Running| r.status.peers.load(std::sync::atomic::Ordering::Relaxed);
    async fn until(what: &str, mut ok: impl FnMut() -> bool) {
        tokio::time::timeout(WAIT, async {
            while !ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}"));
    }
    until("all connected", || peers(&running[0]) == 3).await;
    stop(running.pop().unwrap()).await;
    until("the gone validator is no longer counted", || {
        peers(&running[0]) == 2
    })
    .await;
    running.push(start(3, dir.path(), &addrs));
    until("it is counted again", || peers(&running[0]) == 3).await;
    for r in running {
        stop(r).await;
    }
}
