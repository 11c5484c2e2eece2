//! `gridledger bench cluster`: four validators on loopback (one process, each with its own
//! store on disk and QUIC endpoint) finalizing signed transfers; and the cost of checking a
//! quorum certificate of 4 and of 100 BLS signers. The baseline, measured in the same run:
//! one node checking, executing and committing the same transfers alone, on one thread.
//! With `--attack`, the same honest load runs again on a fresh cluster while an attacker
//! floods it ([`crate::bench_attack`]), and both results are printed.

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

/// CPU time this process has used (user + system), from `/proc/self/stat` (Linux only).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What one run measures.
pub struct Load {
    /// Transfers submitted all at once (the throughput phase).
    pub burst: usize,
    /// Transfers per second offered in the latency phase, and for how long.
    pub rate: usize,
    pub seconds: f64,
    pub block_ms: u64,
    /// Run the load a second time, under these attacks.
    pub attack: Option<crate::bench_attack::Kinds>,
    /// Where `misbehave.wasm` is (for the attack).
    pub contracts_dir: std::path::PathBuf,
}

pub fn run(json: bool, load: Load) -> Result<()> {
    let Load {
        burst,
        rate,
        seconds,
        block_ms,
        attack,
        contracts_dir,
    } = load;
    let paced = (rate as f64 * seconds) as usize;
    let txs = burst + paced;
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
    let contracts = if attack.is_some() {
        let (attackers, misbehave) = crate::bench_attack::genesis_parts();
        accounts.extend(attackers);
        Some((misbehave, contracts_dir))
    } else {
        None
    };
    let mut genesis = test_genesis(accounts);
    let contracts_dir = match contracts {
        Some((misbehave, dir)) => {
            genesis.contracts.push(misbehave);
            // Junk readings need a chain that takes readings (none registered).
            genesis.market = Some(gridledger_node::genesis::MarketClock {
                period_ms: 3_600_000,
                start_ms: None,
                sudo_contracts: Vec::new(),
                sudo_gas: 1_000_000,
                stats_contract: None,
            });
            genesis.devices = Some(gridledger_node::genesis::DevicesConfig {
                reading_contract: None,
                time_tolerance_ms: 5_000,
                field_period_ms: None,
                registered: Vec::new(),
            });
            dir
        }
        None => std::path::PathBuf::from("."),
    };
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
    let execute_only =
        execute_only_tx_per_sec(&dir.join("alone"), &genesis, &contracts_dir, &signed)?;
    println!("baseline: one node checking, executing and committing alone: {execute_only:.0} tx/s");
    let cluster = |name: &str, attacked: Option<crate::bench_attack::Kinds>| {
        run_cluster(
            &dir.join(name),
            &genesis,
            &contracts_dir,
            &signed,
            burst,
            rate,
            block_ms,
            attacked,
        )
    };
    let calm = cluster("calm", None);
    let attacked = match (&calm, attack) {
        (Ok(_), Some(kinds)) => Some(cluster("attacked", Some(kinds))),
        _ => None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    let calm = calm?;
    let attacked = attacked.transpose()?;
    let (saturated, steady) = (&calm.saturated, &calm.steady);
    let tps = saturated.finalized_per_sec;
    let round_ms = steady.round_ms;
    println!(
        "throughput: {burst} transfers submitted at once, finalized in {:.2} s: {tps:.0} tx/s (submit→final p50 {:.0} ms, p99 {:.0} ms: the backlog draining)",
        saturated.elapsed, saturated.p50_ms, saturated.p99_ms
    );
    println!(
        "latency: {paced} transfers offered at {rate} tx/s: {:.0} tx/s finalized, submit→final p50 {:.0} ms, p99 {:.0} ms",
        steady.finalized_per_sec, steady.p50_ms, steady.p99_ms
    );
    println!(
        "proposal→final (mean, node 0): {round_ms:.0} ms; p99/round {:.1} (aim ≤ 3); cluster/baseline {:.2} (aim ≥ 0.35)",
        steady.p99_ms / round_ms.max(1.0),
        tps / execute_only.max(1.0)
    );
    if let Some(a) = &attacked {
        let r = a.attack.as_ref();
        println!(
            "under attack: throughput {:.0} tx/s ({:.2} of calm, aim ≥ 0.5), latency p99 {:.0} ms (aim < 2000) at {rate} tx/s offered; longest gap between blocks {:.0} ms; state roots agree at height {}: {}",
            a.saturated.finalized_per_sec,
            a.saturated.finalized_per_sec / tps.max(1.0),
            a.steady.p99_ms,
            a.max_gap_ms,
            a.common_height,
            a.roots_agree
        );
        if let Some(r) = r {
            println!(
                "the attacker: {} transactions admitted, {} turned away, {} queries answered, {} refused busy; it paid {} micro-tokens",
                r.txs_admitted,
                r.txs_turned_away,
                r.queries_answered,
                r.queries_refused,
                a.attacker_paid
            );
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "finalized_tx_per_sec": tps,
                "p50_ms": steady.p50_ms,
                "p99_ms": steady.p99_ms,
                "latency_offered_tx_per_sec": rate,
                "latency_finalized_tx_per_sec": steady.finalized_per_sec,
                "saturated_p50_ms": saturated.p50_ms,
                "saturated_p99_ms": saturated.p99_ms,
                "execute_only_tx_per_sec": execute_only,
                "round_ms": round_ms,
                "qc_verify_4_us": qc4,
                "qc_verify_100_us": qc100,
                "burst_txs": burst,
                "paced_txs": paced,
                "validators": VALIDATORS,
                "block_ms": block_ms,
                "max_block_gap_ms": calm.max_gap_ms,
                "attack_finalized_tx_per_sec": attacked.as_ref().map(|a| a.saturated.finalized_per_sec),
                "attack_p99_ms": attacked.as_ref().map(|a| a.steady.p99_ms),
                "attack_max_block_gap_ms": attacked.as_ref().map(|a| a.max_gap_ms),
                "attack_roots_agree": attacked.as_ref().map(|a| a.roots_agree),
                "attack_common_height": attacked.as_ref().map(|a| a.common_height),
                "attacker_paid": attacked.as_ref().map(|a| a.attacker_paid),
                "attacker_txs_admitted": attacked.as_ref().and_then(|a| a.attack.as_ref()).map(|r| r.txs_admitted),
                "attacker_queries_refused": attacked.as_ref().and_then(|a| a.attack.as_ref()).map(|r| r.queries_refused),
                "attacker_queries_answered": attacked.as_ref().and_then(|a| a.attack.as_ref()).map(|r| r.queries_answered),
                "attacker_txs_turned_away": attacked.as_ref().and_then(|a| a.attack.as_ref()).map(|r| r.txs_turned_away),
            })
        );
    }
    Ok(())
}

/// One cluster's run of the load (and the attack, if asked).
struct ClusterRun {
    saturated: Phase,
    steady: Phase,
    /// Longest time between two of node 0's blocks while measuring.
    max_gap_ms: f64,
    /// A height every validator reached, and whether their state roots agree there.
    common_height: u64,
    roots_agree: bool,
    attack: Option<crate::bench_attack::AttackReport>,
    /// What the attacker accounts spent (fees).
    attacker_paid: u64,
}

#[allow(clippy::too_many_arguments)]
fn run_cluster(
    dir: &Path,
    genesis: &gridledger_node::Genesis,
    contracts_dir: &Path,
    signed: &[SignedTx],
    burst: usize,
    rate: usize,
    block_ms: u64,
    attacked: Option<crate::bench_attack::Kinds>,
) -> Result<ClusterRun> {
    let nodes = (0..VALIDATORS)
        .map(|i| Node::open(&dir.join(format!("v{i}")), genesis.clone(), contracts_dir))
        .collect::<Result<Vec<_>, _>>()?;
    // Bound now and handed to the validators, so no two can be given the same port.
    let sockets = gridledger_net::loopback_sockets(VALIDATORS).context("binding the QUIC ports")?;
    let addrs = sockets
        .iter()
        .map(|s| s.local_addr().context("a QUIC port"))
        .collect::<Result<Vec<_>>>()?;
    let ammo = match attacked {
        Some(kinds) => Some((
            crate::bench_attack::Ammunition::prepare(&nodes[0], 4_000)?,
            kinds,
        )),
        None => None,
    };
    let attacker_before = crate::bench_attack::balances(&nodes[0]);
    let rt = crate::runtime()?;
    rt.block_on(async {
        let peers: Vec<(u16, std::net::SocketAddr)> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u16, *a))
            .collect();
        // Each validator on a runtime of its own, as `gridledger node` runs it.
        let running: Vec<Running> = nodes
            .iter()
            .zip(sockets)
            .enumerate()
            .map(|(i, (n, socket))| {
                let (bls, network) = dev_validator_keys(&seed(i));
                Running::start_isolated(
                    n.clone(),
                    ValidatorKeys { bls, network },
                    ValidatorOptions {
                        listen: socket.into(),
                        peers: peers.clone(),
                        block_interval_ms: block_ms,
                    },
                )
            })
            .collect::<Result<_>>()?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let attacker = ammo.map(|(ammo, kinds)| {
            let (nodes, stop) = (nodes.clone(), stop.clone());
            std::thread::spawn(move || crate::bench_attack::run(nodes, ammo, kinds, stop))
        });
        let outcome = async {
            let saturated = drive(&nodes, &signed[..burst], None).await?;
            let steady = drive(&nodes, &signed[burst..], Some(rate)).await?;
            Ok::<_, anyhow::Error>((saturated, steady))
        }
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let report = match attacker {
            Some(t) => Some(
                tokio::task::spawn_blocking(move || t.join())
                    .await?
                    .map_err(|_| anyhow::anyhow!("the attacker's thread panicked"))?,
            ),
            None => None,
        };
        // Every validator reaches node 0's height (or 30 s pass); their roots must agree.
        let target = nodes[0].head().height;
        let deadline = Instant::now() + Duration::from_secs(30);
        while nodes.iter().any(|n| n.head().height < target) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let common = nodes.iter().map(|n| n.head().height).min().unwrap_or(0);
        let mut roots = Vec::new();
        for n in &nodes {
            let block = n.snapshot()?.block(common)?;
            roots.push(block.map(|b| b.header.state_root));
        }
        let roots_agree = roots.windows(2).all(|w| w[0] == w[1] && w[0].is_some());
        for r in running {
            r.stop().await?;
        }
        let (saturated, steady) = outcome?;
        let after = crate::bench_attack::balances(&nodes[0]);
        let attacker_paid = attacker_before
            .iter()
            .map(|(a, b)| b.saturating_sub(after.get(a).copied().unwrap_or(0)))
            .sum();
        Ok(ClusterRun {
            max_gap_ms: saturated.max_gap_ms.max(steady.max_gap_ms),
            saturated,
            steady,
            common_height: common,
            roots_agree,
            attack: report,
            attacker_paid,
        })
    })
}

/// Transactions per second one node checks (signatures in batches), executes and commits
/// alone, in blocks as large as validators make them: what the cluster is measured against.
fn execute_only_tx_per_sec(
    dir: &Path,
    genesis: &gridledger_node::Genesis,
    contracts_dir: &Path,
    txs: &[SignedTx],
) -> Result<f64> {
    let node = Node::open(dir, genesis.clone(), contracts_dir)?;
    let mut time_ms = genesis.genesis_time_ms;
    let start = Instant::now();
    let mut executed = 0;
    for block in txs.chunks(gridledger_node::MAX_BLOCK_TXS) {
        time_ms += 1;
        executed += node.execute_block(time_ms, block.to_vec())?.tx_hashes.len();
    }
    let elapsed = start.elapsed().as_secs_f64();
    if executed != txs.len() {
        bail!(
            "the baseline executed {executed} of {} transfers",
            txs.len()
        );
    }
    Ok(executed as f64 / elapsed)
}

/// What one phase measured.
struct Phase {
    elapsed: f64,
    finalized_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Mean time from a block's proposal (its time) to node 0 committing it.
    round_ms: f64,
    /// Longest time between two of node 0's blocks.
    max_gap_ms: f64,
}

/// Submits the transactions round robin over the validators, all at once (waiting for room
/// when a mempool is full) or at `rate` per second, and waits until node 0 has committed them
/// all. Latency is from a transaction's submission to node 0 committing its block.
async fn drive(nodes: &[Arc<Node>], txs: &[SignedTx], rate: Option<usize>) -> Result<Phase> {
    let mut blocks = nodes[0].subscribe();
    let mut submitted: HashMap<gridledger_types::Hash32, Instant> = HashMap::new();
    let mut latencies = Vec::with_capacity(txs.len());
    let mut block_sizes = Vec::new();
    let mut rounds = Vec::new();
    let mut max_gap = Duration::ZERO;
    let cpu_before = cpu_seconds();
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
        // Submit until the mempools push back, or up to what the rate allows by now.
        let due = match rate {
            Some(r) => ((start.elapsed().as_secs_f64() * r as f64) as usize + 1).min(txs.len()),
            None => txs.len(),
        };
        while next < due {
            let tx = &txs[next];
            match nodes[next % nodes.len()].submit(&tx.encode()) {
                Ok(h) => {
                    submitted.insert(h, Instant::now());
                    next += 1;
                }
                Err(
                    Rejected::MempoolFull
                    | Rejected::TooManyPending { .. }
                    | Rejected::TooManyPendingBytes { .. },
                ) => break,
                Err(e) => bail!("transaction {next} refused: {e}"),
            }
            if next % 500 == 0 {
                tokio::task::yield_now().await;
            }
        }
        // Paced: wake at least every 5 ms to submit what is due.
        let wait = if rate.is_some() && next < txs.len() {
            Duration::from_millis(5)
        } else {
            Duration::from_secs(30)
        };
        match tokio::time::timeout(wait, blocks.recv()).await {
            Ok(Ok(b)) => {
                let now = Instant::now();
                let since = block_sizes.last().map_or(Duration::ZERO, |(t, _)| *t);
                max_gap = max_gap.max((now - start).saturating_sub(since));
                block_sizes.push((now - start, b.tx_hashes.len()));
                let wall_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                rounds.push(wall_ms.saturating_sub(b.header.time_ms) as f64);
                for h in &b.tx_hashes {
                    if let Some(t) = submitted.remove(h) {
                        latencies.push((now - t).as_secs_f64() * 1e3);
                    }
                }
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                bail!("the benchmark fell {n} blocks behind the chain")
            }
            Ok(Err(_)) => bail!("node 0 stopped"),
            Err(_) if wait < Duration::from_secs(30) => {}
            Err(_) => bail!("no block for 30 s"),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    if let (Some(a), Some(b)) = (cpu_before, cpu_seconds()) {
        println!(
            "CPU: {:.2} cores busy on average while measuring",
            (b - a) / elapsed
        );
    }
    if !block_sizes.is_empty() {
        let n = block_sizes.len();
        println!(
            "{n} blocks, {:.0} transactions and {:.0} ms apart on average",
            txs.len() as f64 / n as f64,
            elapsed * 1e3 / n as f64
        );
    }
    Ok(Phase {
        elapsed,
        finalized_per_sec: txs.len() as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        round_ms: rounds.iter().sum::<f64>() / rounds.len().max(1) as f64,
        max_gap_ms: max_gap.as_secs_f64() * 1e3,
    })
}
