//! The attacker of `gridledger bench cluster --attack`: while the honest load runs, it floods
//! the validators with the costliest things an outsider can send them, each bounded in count
//! and time, and the bench measures what is left for honest users.
//!
//! - **Queries**: a contract query that computes until its gas runs out, 24 at a time across
//!   the validators (three times the query limit), for the whole phase.
//! - **Mempool**: transfers from funded attacker accounts, as fast as the mempools take them.
//! - **Junk readings**: batches of 400 readings from unregistered devices with garbage
//!   signatures.
//! - **Costly calls**: `misbehave`'s `put_then_loop` with the largest gas limit a transaction
//!   may have (`max_tx_gas`).
//!
//! Everything is signed before the phase starts: the figure is the chain's, not the client's.

use gridledger_node::Node;
use gridledger_node::genesis::{GenesisAccount, GenesisContract};
use gridledger_node::testing::TEST_CHAIN_ID;
use gridledger_types::{
    Address, Hash32, Keypair, MeterReading, Payload, SignedReading, SignedTx, TxBody,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Attacker accounts: 0–3 flood transfers, 4–5 junk readings, 6–7 costly calls.
pub const ATTACKERS: usize = 8;
const QUERIES_AT_ONCE: usize = 24;

fn key(i: usize) -> Keypair {
    Keypair::from_seed_phrase(&format!("bench attacker {i}"))
}

/// What genesis needs for the attack: funded attacker accounts and the misbehaving contract.
pub fn genesis_parts() -> (Vec<GenesisAccount>, GenesisContract) {
    let accounts = (0..ATTACKERS)
        .map(|i| GenesisAccount {
            name: format!("attacker-{i}"),
            address: None,
            dev_seed: Some(format!("bench attacker {i}")),
            balance: 1_000_000_000_000,
            roles: vec![],
        })
        .collect();
    let contract = GenesisContract {
        label: "misbehave".into(),
        wasm: "misbehave.wasm".into(),
        msg: "null".into(),
        funds: 0,
        creator: "attacker-0".into(),
        admin: None,
    };
    (accounts, contract)
}

pub fn attacker_addresses() -> Vec<Address> {
    (0..ATTACKERS).map(|i| key(i).address()).collect()
}

/// The attacker's transactions, per account, in nonce order.
pub struct Ammunition {
    queues: Vec<Vec<SignedTx>>,
}

impl Ammunition {
    pub fn prepare(node: &Node, per_account: usize) -> anyhow::Result<Ammunition> {
        let misbehave = node
            .contract_by_label("misbehave")?
            .ok_or_else(|| anyhow::anyhow!("no misbehave contract"))?;
        let max_tx_gas = node.vm().config().limits.max_tx_gas;
        let sink = Keypair::from_seed_phrase("bench attack sink").address();
        let queues = (0..ATTACKERS)
            .map(|i| {
                let k = key(i);
                (0..per_account)
                    .map(|nonce| {
                        let (payload, gas_limit) = match i {
                            0..=3 => (
                                Payload::Transfer {
                                    to: sink,
                                    amount: 1,
                                },
                                100_000,
                            ),
                            4 | 5 => (junk_readings(nonce as u64 * 1000 + i as u64), 10_000_000),
                            _ => (
                                Payload::Execute {
                                    contract: misbehave,
                                    msg: format!(r#"{{"put_then_loop":{{"key":"k{nonce}"}}}}"#)
                                        .into_bytes(),
                                    funds: 0,
                                },
                                max_tx_gas,
                            ),
                        };
                        TxBody {
                            chain_id: TEST_CHAIN_ID.into(),
                            sender: k.address(),
                            nonce: nonce as u64,
                            gas_limit,
                            payload,
                        }
                        .sign(&k)
                    })
                    .collect()
            })
            .collect();
        Ok(Ammunition { queues })
    }
}

fn junk_readings(salt: u64) -> Payload {
    let readings = (0..400u64)
        .map(|n| SignedReading {
            reading: MeterReading {
                device: Address(
                    Hash32::tagged(b"junk", &[&salt.to_be_bytes(), &n.to_be_bytes()]).0,
                ),
                period: 0,
                export_wh: n,
                import_wh: 0,
                power_w: 0,
                timestamp_ms: 0,
                seq: 0,
                plugin: Hash32([0; 32]),
            },
            signature: gridledger_types::Signature([7; 64]),
        })
        .collect();
    Payload::Readings { readings }
}

/// What the attacker got done.
#[derive(Default)]
pub struct AttackReport {
    pub txs_admitted: u64,
    pub txs_turned_away: u64,
    pub queries_answered: u64,
    pub queries_refused: u64,
}

/// Which attacks run (all by default; `--attacks queries,calls` to look at one at a time).
#[derive(Clone, Copy, Debug)]
pub struct Kinds {
    pub queries: bool,
    pub mempool: bool,
    pub readings: bool,
    pub calls: bool,
}

impl std::str::FromStr for Kinds {
    type Err = String;
    fn from_str(s: &str) -> Result<Kinds, String> {
        let mut k = Kinds {
            queries: false,
            mempool: false,
            readings: false,
            calls: false,
        };
        for part in s.split(',').map(str::trim) {
            match part {
                "all" => {
                    k = Kinds {
                        queries: true,
                        mempool: true,
                        readings: true,
                        calls: true,
                    }
                }
                "queries" => k.queries = true,
                "mempool" => k.mempool = true,
                "readings" => k.readings = true,
                "calls" => k.calls = true,
                other => {
                    return Err(format!(
                        "unknown attack {other:?} (queries, mempool, readings, calls, all)"
                    ));
                }
            }
        }
        Ok(k)
    }
}

impl Kinds {
    fn sends(&self, account: usize) -> bool {
        match account {
            0..=3 => self.mempool,
            4 | 5 => self.readings,
            _ => self.calls,
        }
    }
}

/// Runs the attack, on threads of its own (the attacker's machine is not the validators'),
/// until `stop` is set. Returns what it managed.
pub fn run(
    nodes: Vec<Arc<Node>>,
    ammo: Ammunition,
    kinds: Kinds,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> AttackReport {
    let answered = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    // Queries: QUERIES_AT_ONCE loops, each asking one validator after another.
    let mut query_tasks = Vec::new();
    for q in 0..if kinds.queries { QUERIES_AT_ONCE } else { 0 } {
        let (nodes, stop, answered, refused) = (
            nodes.clone(),
            stop.clone(),
            answered.clone(),
            refused.clone(),
        );
        query_tasks.push(std::thread::spawn(move || {
            let Ok(Some(misbehave)) = nodes[0].contract_by_label("misbehave") else {
                return;
            };
            let mut n = q;
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match nodes[n % nodes.len()].query(&misbehave, br#"{"spin":{}}"#) {
                    Err(gridledger_node::QueryError::Busy(_)) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        // A refused client comes back at once: no back-off on its side.
                    }
                    _ => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
            }
        }));
    }
    // Transactions: each account's next one, as fast as the mempools take them.
    let mut report = AttackReport::default();
    let mut next = [0usize; ATTACKERS];
    let mut round = 0usize;
    let deadline = Instant::now() + Duration::from_secs(600);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        for (i, queue) in ammo.queues.iter().enumerate() {
            if !kinds.sends(i) {
                continue;
            }
            // Up to 64 at a time per account (the per-sender cap), round robin over nodes.
            for _ in 0..64 {
                let Some(tx) = queue.get(next[i]) else { break };
                match nodes[(round + i) % nodes.len()].submit(&tx.encode()) {
                    Ok(_) => {
                        report.txs_admitted += 1;
                        next[i] += 1;
                    }
                    Err(_) => {
                        report.txs_turned_away += 1;
                        break;
                    }
                }
            }
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    for t in query_tasks {
        let _ = t.join();
    }
    report.queries_answered = answered.load(Ordering::Relaxed);
    report.queries_refused = refused.load(Ordering::Relaxed);
    report
}

/// Balances of the attacker accounts on `node`.
pub fn balances(node: &Node) -> BTreeMap<Address, u64> {
    attacker_addresses()
        .into_iter()
        .map(|a| (a, node.account(&a).map(|(acc, _)| acc.balance).unwrap_or(0)))
        .collect()
}
