//! `gridledger bench cluster`: four validators on loopback (one process, each with its own
//! store on disk and QUIC endpoint) finalizing signed transfers; and the cost of checking a
//! quorum certificate of 4 and of 100 BLS signers.

use crate::validators::Running;
use anyhow::{Context, Result, bail};
use gridledger_consensus::crypto::{Bls, BlsSecret, VoteScheme};
use gridledger_consensus::{Digest, ValidatorSet, VoteKind};
use gridledger_node::genesis::{GenesisAccount, dev_validator_keys, validator_entry};
use gridledger_node::testing::{TEST_CHAIN_ID, test_genesis};
use gridledger_node::validator::{ValidatorKeys, ValidatorOptions};
use gridledger_node::{Node, Rejected};
use gridledger_types::{Keypair, Payload, SignedTx, TxBody};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const VALIDATORS: usize = 4;
const SENDERS: usize = 500;

fn seed(i: usize) -> String {
    format!("bench validator {i}")
}

/// Microseconds to verify a certificate of `n` signers (one aggregate check).
fn qc_verify_us(n: usize) -> Result<f64> {
    let keys: Vec<BlsSecret> = (0..n)
        .map(|i| BlsSecret::from_seed(format!("qc {i}").as_bytes()))
        .collect();
    let set = ValidatorSet::<Bls>::new(keys.iter().map(|k| k.public()).collect(), "bench");
    let digest = Digest([7; 32]);
    let msg = set.vote_bytes(VoteKind::Finalize, 1, &digest);
    let quorum: BTreeMap<u16, _> = (0..set.quorum())
        .map(|i| (i as u16, Bls::sign(&keys[i], &msg)))
        .collect();
    let cert = set
        .try_certify(VoteKind::Finalize, 1, &digest, &quorum)
        .map_err(|bad| anyhow::anyhow!("votes {bad:?} did not verify"))?;
    let rounds = 30;
    let start = Instant::now();
    for _ in 0..rounds {
        set.verify_certificate(&cert)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / rounds as f64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run(json: bool, txs: usize, block_ms: u64) -> Result<()> {
    let qc4 = qc_verify_us(4)?;
    let qc100 = qc_verify_us(100)?;
    println!("verify a quorum certificate of 4 validators:   {qc4:.0} µs");
    println!("verify a quorum certificate of 100 validators: {qc100:.0} µs");

    let senders: Vec<Keypair> = (0..SENDERS)
        .map(|i| Keypair::from_seed_phrase(&format!("bench sender {i}")))
        .collect();
    let mut accounts: Vec<GenesisAccount> = (0..VALIDATORS)
        .map(|i| GenesisAccount {
            name: format!("v{i}"),
            address: None,
            dev_seed: Some(seed(i)),
            balance: 0,
            roles: vec!["validator".into()],
        })
        .collect();
    accounts.extend((0..SENDERS).map(|i| GenesisAccount {
        name: format!("s{i}"),
        address: None,
        dev_seed: Some(format!("bench sender {i}")),
        balance: 1_000_000_000,
        roles: vec![],
    }));
    let mut genesis = test_genesis(accounts);
    genesis.validators = (0..VALIDATORS)
        .map(|i| {
            let (bls, net) = dev_validator_keys(&seed(i));
            validator_entry(&format!("v{i}"), &bls, &net)
        })
        .collect();

    // Signed before the clock starts: the figure is the chain's, not the client's.
    let recipient = Keypair::from_seed_phrase("bench recipient").address();
    let signed: Vec<SignedTx> = (0..txs)
        .map(|k| {
            let key = &senders[k % SENDERS];
            TxBody {
                chain_id: TEST_CHAIN_ID.into(),
                sender: key.address(),
                nonce: (k / SENDERS) as u64,
                gas_limit: 100_000,
                payload: Payload::Transfer {
                    to: recipient,
                    amount: 1,
                },
            }
            .sign(key)
        })
        .collect();

    let dir = std::env::temp_dir().join(format!("gridledger-bench-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let nodes = (0..VALIDATORS)
        .map(|i| Node::open(&dir.join(format!("v{i}")), genesis.clone(), Path::new(".")))
        .collect::<Result<Vec<_>, _>>()?;
    let addrs = (0..VALIDATORS)
        .map(|_| {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .context("picking a QUIC port")
        })
        .collect::<Result<Vec<_>>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let peers: Vec<(u16, std::net::SocketAddr)> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u16, *a))
            .collect();
        let running: Vec<Running> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let (bls, network) = dev_validator_keys(&seed(i));
                Running::start(
                    n.clone(),
                    ValidatorKeys { bls, network },
                    ValidatorOptions {
                        listen: addrs[i],
                        peers: peers.clone(),
                        block_interval_ms: block_ms,
                    },
                )
            })
            .collect();
        let outcome = drive(&nodes, &signed).await;
        for r in running {
            r.stop().await?;
        }
        outcome
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (elapsed, mut latencies) = result?;
    latencies.sort_by(|a, b| a.total_cmp(b));
    let tps = txs as f64 / elapsed;
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "{txs} transfers finalized by {VALIDATORS} validators in {elapsed:.2} s: {tps:.0} tx/s; submit→final p50 {p50:.0} ms, p99 {p99:.0} ms"
    );
    if json {
        println!(
            "{}",
            serde_json::json!({
                "finalized_tx_per_sec": tps,
                "p50_ms": p50,
                "p99_ms": p99,
                "qc_verify_4_us": qc4,
                "qc_verify_100_us": qc100,
                "txs": txs,
                "validators": VALIDATORS,
                "block_ms": block_ms,
            })
        );
    }
    Ok(())
}

/// Submits every transaction (round robin over the validators, waiting for room when a
/// mempool is full) and waits until node 0 has committed them all. Returns the elapsed
/// seconds and each transaction's submit-to-commit latency in ms.
async fn drive(nodes: &[Arc<Node>], txs: &[SignedTx]) -> Result<(f64, Vec<f64>)> {
    let mut blocks = nodes[0].subscribe();
    let mut submitted: HashMap<gridledger_types::Hash32, Instant> = HashMap::new();
    let mut latencies = Vec::with_capacity(txs.len());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(300);
    let mut next = 0;
    while latencies.len() < txs.len() {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} transactions finalized in 300 s",
                latencies.len(),
                txs.len()
            );
        }
        // Submit until the mempools push back.
        while next < txs.len() {
            let tx = &txs[next];
            match nodes[next % nodes.len()].submit(&tx.encode()) {
                Ok(h) => {
                    submitted.insert(h, Instant::now());
                    next += 1;
                }
                Err(Rejected::MempoolFull) => break,
                Err(e) => bail!("transaction {next} refused: {e}"),
            }
            if next % 500 == 0 {
                tokio::task::yield_now().await;
            }
        }
        match tokio::time::timeout(Duration::from_secs(30), blocks.recv()).await {
            Ok(Ok(b)) => {
                let now = Instant::now();
                for h in &b.tx_hashes {
                    if let Some(t) = submitted.remove(h) {
                        latencies.push((now - t).as_secs_f64() * 1e3);
                    }
                }
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                bail!("the benchmark fell {n} blocks behind the chain")
            }
            _ => bail!("no block for 30 s"),
        }
    }
    Ok((start.elapsed().as_secs_f64(), latencies))
}
