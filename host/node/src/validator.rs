//! A validator: the consensus engine driven by real time and the QUIC transport, finalized
//! proposals executed into blocks.
//!
//! This is the I/O shell around [`gridledger_consensus::Engine`]: it delivers peer messages and
//! timer expiries, carries out the engine's actions in order (persisting the engine's state
//! before any vote leaves), builds payloads from the mempool when it leads, passes locally
//! submitted transactions to the other validators, and commits each finalized block with its
//! proof.

use crate::Node;
use crate::finality::{BlockPayload, FinalityProof, ProposalHeader};
use anyhow::{Context, Result};
use gridledger_consensus::crypto::{Bls, BlsSecret};
use gridledger_consensus::{
    Action, Certificate, Config, Digest, Durable, Engine, Input, Message, PayloadCheck, Proposal,
    ValidatorSet, View,
};
use gridledger_net::{Decoder, NetConfig, Network, Peer};
use gridledger_types::Hash32;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// A validator's secrets.
pub struct ValidatorKeys {
    pub bls: BlsSecret,
    pub network: [u8; 32],
}

pub struct ValidatorOptions {
    /// The QUIC address, or a socket already bound to it (validators sharing a process).
    pub listen: gridledger_net::Listen,
    /// Where to reach the other validators, by index in the genesis set.
    pub peers: Vec<(u16, SocketAddr)>,
    /// Least time between a block and the next one's proposal.
    pub block_interval_ms: u64,
}

/// Live figures for the API and metrics.
#[derive(Default)]
pub struct ValidatorStatus {
    pub index: AtomicUsize,
    pub view: AtomicU64,
    pub peers: AtomicUsize,
}

/// The consensus set of a node's genesis.
pub fn validator_set(node: &Node) -> ValidatorSet<Bls> {
    ValidatorSet::new(
        node.validators().iter().map(|v| v.bls).collect(),
        node.chain_id().as_bytes().to_vec(),
    )
}

/// What validators send each other: consensus messages and transactions passed on.
enum NetMessage {
    Consensus(Box<Message<Bls>>),
    /// Transactions the sender admitted, in the order it admitted them.
    Transactions(Vec<Vec<u8>>),
}

const TAG_CONSENSUS: u8 = 0;
const TAG_TRANSACTIONS: u8 = 1;
/// Most transactions passed on in one message, and about the most bytes.
const GOSSIP_BATCH_TXS: usize = 512;
const GOSSIP_BATCH_BYTES: usize = 1 << 20;
/// Passed-on transactions waiting for admission; beyond this, more are dropped (with a
/// warning), since their senders still hold and can propose them.
const ADMISSION_QUEUE_TXS: usize = 50_000;
/// Transactions admitted per turn on the blocking pool.
const ADMISSION_BATCH: usize = 512;
/// Transactions in one proposal.
const MAX_PROPOSAL_TXS: usize = crate::MAX_BLOCK_TXS;

fn encode_consensus(m: &Message<Bls>) -> Arc<Vec<u8>> {
    let mut out = vec![TAG_CONSENSUS];
    out.extend(gridledger_consensus::wire::encode(m));
    Arc::new(out)
}

fn decoder() -> Decoder<NetMessage> {
    Arc::new(|b: &[u8]| match b.split_first() {
        Some((&TAG_CONSENSUS, rest)) => gridledger_consensus::wire::decode::<Bls>(rest)
            .map(|m| NetMessage::Consensus(Box::new(m)))
            .map_err(|e| e.to_string()),
        Some((&TAG_TRANSACTIONS, rest)) => borsh::from_slice::<Vec<Vec<u8>>>(rest)
            .map(NetMessage::Transactions)
            .map_err(|e| format!("transaction batch: {e}")),
        _ => Err("unknown message tag".into()),
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs the validator until `stop` turns true. A node fault (storage, execution) ends it with
/// the error.
pub async fn run(
    node: Arc<Node>,
    keys: ValidatorKeys,
    opts: ValidatorOptions,
    status: Arc<ValidatorStatus>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let set = validator_set(&node);
    let public = keys.bls.public();
    let me = node
        .validators()
        .iter()
        .position(|v| v.bls == public)
        .context("this node's BLS key is not in the genesis validator set")? as u16;
    status.index.store(me as usize, Ordering::Relaxed);
    let peers = opts
        .peers
        .iter()
        .filter(|(i, _)| *i != me)
        .map(|&(i, addr)| {
            let v = node
                .validators()
                .get(i as usize)
                .with_context(|| format!("peer {i} is not in the validator set"))?;
            Ok(Peer {
                index: i,
                key: v.network_key,
                addr,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (inbound_tx, mut inbound) = mpsc::channel(4096);
    let listen_addr = opts.listen.addr()?;
    let net = Network::start(
        NetConfig {
            me,
            listen: opts.listen,
            secret: keys.network,
            peers,
            max_frame: gridledger_consensus::wire::MAX_MESSAGE_BYTES + 1,
            queue: 4096,
            observers: node
                .genesis()
                .observer_keys()?
                .into_iter()
                .map(|(_, k)| k)
                .collect(),
            serve: Some(crate::observer::handler(node.clone())),
        },
        decoder(),
        inbound_tx,
    )?;
    let durable = match node.consensus_state()? {
        Some(b) => Some(decode_durable(&b)?),
        None => None,
    };
    let timeout_ms = opts.block_interval_ms * 2 + 1_000;
    let checking = node.clone();
    let check: PayloadCheck =
        Arc::new(move |p, parent| crate::payload::check(&checking, p, parent, now_ms()));
    let engine = Engine::new(
        Config {
            me,
            secret: keys.bls,
            validators: set,
            timeout_ms,
            max_timeout_ms: timeout_ms * 8,
            keep_finalized: 10_000,
            keep_finalized_bytes: 256 << 20,
            check,
        },
        node.consensus_tip()?,
        durable,
    );
    let mut driver = Driver {
        node: node.clone(),
        net,
        engine,
        timer: None,
        propose: None,
        interval: Duration::from_millis(opts.block_interval_ms),
        status,
        fetch_budget: Default::default(),
        offences: Default::default(),
    };
    tracing::info!(
        "validator {me} of {} listening on {}",
        node.validators().len(),
        listen_addr
    );
    if let Some(why) = node.diverged() {
        tracing::error!(
            "validator {me} will not vote: its execution diverged before this start ({why}); rebuild its state from a good copy"
        );
        driver.engine.halt(why);
    }
    let mut start = driver.engine.start();
    // Vote again for what we executed since the last height we saw certified (a stop may
    // have come before the quorum's votes): a peer that has the certificate answers with it.
    let head = node.head().height;
    let from = (node.certified_height()? + 1)
        .max(head.saturating_sub(64))
        .max(1);
    for height in from..=head {
        if let Some(b) = node.snapshot()?.block(height)? {
            start.extend(driver.engine.handle(Input::Executed {
                height,
                header: Digest(b.header.hash().0),
            }));
        }
    }
    driver.apply(start)?;
    let mut gauge = tokio::time::interval(Duration::from_secs(1));
    let (admission, admitting) = spawn_admission(node.clone());
    let mut submitted = node.subscribe_submitted();
    let result = loop {
        let timer = driver.timer.map(|(_, at)| at);
        let propose = driver.propose.map(|(_, _, at)| at);
        tokio::select! {
            _ = stop.changed() => {
                tracing::debug!("validator {me}: told to stop");
                break Ok(());
            }
            Some((from, msg)) = inbound.recv() => match msg {
                NetMessage::Consensus(m) => {
                    // A block that left the engine's memory (or came before a restart) is
                    // answered from the store; one the engine holds, by the engine alone.
                    if let Message::Fetch(digest) = &*m
                        && driver.engine.block(digest).is_none()
                        && let Ok(Some(p)) = node.consensus_proposal(digest)
                    {
                        driver.send_block(from, p);
                    }
                    // Likewise an execution vote for a height whose certificate left memory:
                    // the voter (far behind, or restarted) gets it from the store.
                    if let Message::Vote(v) = &*m
                        && v.kind == gridledger_consensus::VoteKind::Execute
                        && v.view + gridledger_consensus::execution::KEEP_CERTIFIED / 2 <= node.head().height
                        && let Ok(Some(cert)) = node.execution_certificate(v.view)
                    {
                        let mut framed = vec![TAG_CONSENSUS];
                        framed.extend(cert);
                        driver.net.send(from, Arc::new(framed));
                    }
                    let actions = driver.engine.handle(Input::Message { from, message: *m });
                    if let Err(e) = driver.apply(actions) { break Err(e); }
                }
                // Checked off this loop: signatures must not hold up votes.
                NetMessage::Transactions(batch) => admission.push(batch),
            },
            tx = submitted.recv() => match tx {
                Ok(first) => {
                    // Pass on everything submitted so far in one message.
                    let mut batch = vec![first.to_vec()];
                    let mut bytes = first.len();
                    while batch.len() < GOSSIP_BATCH_TXS && bytes < GOSSIP_BATCH_BYTES {
                        match submitted.try_recv() {
                            Ok(next) => {
                                bytes += next.len();
                                batch.push(next.to_vec());
                            }
                            Err(_) => break,
                        }
                    }
                    let mut out = vec![TAG_TRANSACTIONS];
                    out.extend(borsh::to_vec(&batch).context("encoding a gossip batch")?);
                    driver.net.broadcast(Arc::new(out));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("{n} submitted transactions were not passed on (gossip lagged)");
                }
                Err(_) => {
                    tracing::debug!("validator {me}: the node closed its transaction feed");
                    break Ok(());
                }
            },
            _ = sleep_until(timer), if timer.is_some() => {
                if let Some((view, _)) = driver.timer.take() {
                    tracing::debug!("validator {me}: view {view} timed out");
                    let actions = driver.engine.handle(Input::Timeout { view });
                    if let Err(e) = driver.apply(actions) { break Err(e); }
                }
            },
            _ = sleep_until(propose), if propose.is_some() => {
                if let Some((view, parent, _)) = driver.propose.take()
                    && let Err(e) = driver.propose(view, parent) { break Err(e); }
            },
            // The peer count is refreshed on a clock too, not only when something happens.
            _ = gauge.tick() => {}
        }
        driver
            .status
            .peers
            .store(driver.net.connected_peers(), Ordering::Relaxed);
    };
    if let Err(e) = &result {
        tracing::error!("validator {me} stopped: {e:#}");
    }
    // Stop admitting (and wait for a batch in progress) so no task holds the node past this.
    admission.close();
    let _ = admitting.await;
    driver.net.shutdown().await;
    result
}

/// Transactions passed on by peers, admitted into the mempool by a task of their own on the
/// blocking pool (each costs a signature check), so that they never hold up consensus.
/// Peers' refusals are expected (duplicates, nonces already used) and not reported.
struct Admission {
    queue: parking_lot::Mutex<std::collections::VecDeque<Vec<u8>>>,
    ready: tokio::sync::Notify,
    dropped: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
}

impl Admission {
    fn push(&self, batch: Vec<Vec<u8>>) {
        let mut queue = self.queue.lock();
        let room = ADMISSION_QUEUE_TXS.saturating_sub(queue.len());
        if batch.len() > room {
            self.dropped
                .fetch_add((batch.len() - room) as u64, Ordering::Relaxed);
        }
        queue.extend(batch.into_iter().take(room));
        drop(queue);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.ready.notify_one();
    }

    fn take(&self) -> Vec<Vec<u8>> {
        let mut queue = self.queue.lock();
        let n = queue.len().min(ADMISSION_BATCH);
        queue.drain(..n).collect()
    }
}

fn spawn_admission(node: Arc<Node>) -> (Arc<Admission>, tokio::task::JoinHandle<()>) {
    let admission = Arc::new(Admission {
        queue: Default::default(),
        ready: tokio::sync::Notify::new(),
        dropped: AtomicU64::new(0),
        closed: Default::default(),
    });
    let queue = admission.clone();
    let task = tokio::spawn(async move {
        loop {
            queue.ready.notified().await;
            if queue.closed.load(Ordering::Relaxed) {
                return;
            }
            while !queue.closed.load(Ordering::Relaxed) {
                let batch = queue.take();
                if batch.is_empty() {
                    break;
                }
                let node = node.clone();
                let admitted = tokio::task::spawn_blocking(move || {
                    node.submit_relayed_batch(&batch);
                })
                .await;
                if admitted.is_err() {
                    tracing::error!("admitting passed-on transactions panicked");
                }
            }
            let dropped = queue.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(
                    "{dropped} passed-on transactions dropped: the admission queue was full"
                );
            }
        }
    });
    (admission, task)
}

/// The engine's saved state; from before certificates were saved too, its view and safety
/// record alone.
fn decode_durable(bytes: &[u8]) -> Result<Durable> {
    if let Ok(d) = borsh::from_slice::<Durable>(bytes) {
        return Ok(d);
    }
    // Before the latest finalization was saved too.
    type WithCertificates = (
        View,
        gridledger_consensus::safety::SafetyRecord,
        Vec<Vec<u8>>,
    );
    if let Ok((view, safety, certificates)) = borsh::from_slice::<WithCertificates>(bytes) {
        return Ok(Durable {
            view,
            safety,
            certificates,
            finality: None,
        });
    }
    let (view, safety) = borsh::from_slice(bytes).context("stored consensus state")?;
    Ok(Durable {
        view,
        safety,
        certificates: Vec::new(),
        finality: None,
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Driver {
    node: Arc<Node>,
    net: Network,
    engine: Engine<Bls>,
    timer: Option<(View, Instant)>,
    /// Our turn to lead: the view, the parent to extend, and when to propose.
    propose: Option<(View, Digest, Instant)>,
    interval: Duration,
    status: Arc<ValidatorStatus>,
    /// Bytes of fetched blocks each peer may still be sent (see [`FetchBudget`]).
    fetch_budget: std::collections::HashMap<u16, FetchBudget>,
    /// Offences (bad signatures) per peer so far: each disconnects it for longer.
    offences: std::collections::HashMap<u16, u32>,
}

/// The longest a peer is disconnected for one offence.
const OFFENCE_PAUSE_MAX: Duration = Duration::from_secs(60);

/// Bytes of blocks a peer may fetch per second, sustained; twice that in a burst. Beyond it,
/// fetches go unanswered (the peer asks again in a later view): 34-byte requests cannot make
/// a validator send out megabytes at will.
const FETCH_BYTES_PER_SEC: f64 = (32 << 20) as f64;

struct FetchBudget {
    bytes: f64,
    at: std::time::Instant,
}

impl FetchBudget {
    fn take(&mut self, len: usize, now: std::time::Instant) -> bool {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.bytes = (self.bytes + secs * FETCH_BYTES_PER_SEC).min(2.0 * FETCH_BYTES_PER_SEC);
        if self.bytes < len as f64 {
            return false;
        }
        self.bytes -= len as f64;
        true
    }
}

impl Driver {
    /// Sends a block a peer fetched, if its fetch budget holds it.
    fn send_block(&mut self, to: u16, block: Proposal) {
        let message = encode_consensus(&Message::Block(block));
        let now = std::time::Instant::now();
        let budget = self.fetch_budget.entry(to).or_insert(FetchBudget {
            bytes: 2.0 * FETCH_BYTES_PER_SEC,
            at: now,
        });
        if budget.take(message.len(), now) {
            self.net.send(to, message);
        } else {
            tracing::debug!("validator {to} fetches more than its budget; a block not sent");
        }
    }

    /// The block time of `parent`: from its payload if the engine holds it, else it is the
    /// finalized tip, which is our head.
    fn parent_time(&self, parent: &Digest) -> u64 {
        self.engine
            .block(parent)
            .and_then(|p| BlockPayload::decode(&p.payload))
            .map_or_else(|| self.node.head().time_ms, |p| p.time_ms)
    }

    fn propose(&mut self, view: View, parent: Digest) -> Result<()> {
        // Left out: what the blocks between the finalized tip and our parent already carry
        // (they execute first). Only blocks the engine accepted into that chain count, so a
        // peer cannot keep a transaction out by naming it in a block nobody asked for.
        let in_flight: HashSet<Hash32> = self
            .engine
            .pending_chain(&parent)
            .into_iter()
            .filter_map(|p| BlockPayload::decode(&p.payload))
            .flat_map(|p| p.txs.into_iter().map(|t| t.hash()))
            .collect();
        let txs = self.node.proposal_candidates(MAX_PROPOSAL_TXS, &in_flight);
        let payload = BlockPayload {
            time_ms: now_ms().max(self.parent_time(&parent).saturating_add(1)),
            txs,
        };
        let actions = self.engine.propose(view, parent, payload.encode());
        self.apply(actions)
    }

    /// Carries out the engine's actions, and then what the engine answers to their results
    /// (votes for the headers just committed, blocks found in our own store), until it has
    /// nothing more to say.
    fn apply(&mut self, actions: Vec<Action<Bls>>) -> Result<()> {
        let mut actions = actions;
        while !actions.is_empty() {
            actions = self.apply_batch(actions)?;
        }
        Ok(())
    }

    fn apply_batch(&mut self, actions: Vec<Action<Bls>>) -> Result<Vec<Action<Bls>>> {
        // Everything to persist in this batch, in one durable write before anything else is
        // carried out. Writing the last state early is safe: it only records more of what we
        // signed, before the messages carrying it leave.
        let state = actions.iter().rev().find_map(|a| match a {
            Action::Persist(d) => Some(d),
            _ => None,
        });
        let blocks: Vec<Proposal> = actions
            .iter()
            .filter_map(|a| match a {
                Action::PersistBlock(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        if state.is_some() || !blocks.is_empty() {
            let bytes = state
                .map(borsh::to_vec)
                .transpose()
                .context("encoding consensus state")?;
            let node = self.node.clone();
            tokio::task::block_in_place(|| node.save_consensus(bytes.as_deref(), &blocks))?;
        }
        let mut finalized: Vec<(Proposal, Certificate<Bls>)> = Vec::new();
        let mut found: Vec<Proposal> = Vec::new();
        for action in actions {
            match action {
                Action::Send {
                    to,
                    message: Message::Block(p),
                } => self.send_block(to, p),
                Action::Send { to, message } => {
                    self.net.send(to, encode_consensus(&message));
                }
                Action::Broadcast(message) => {
                    // A block we ask peers for may be in our own store (saved before a
                    // restart): then nobody else needs to have it.
                    if let Message::Fetch(digest) = &message
                        && let Some(p) = self.node.consensus_proposal(digest)?
                    {
                        found.push(p);
                    }
                    self.net.broadcast(encode_consensus(&message))
                }
                Action::SetTimer { view, after_ms } => {
                    self.timer = Some((view, Instant::now() + Duration::from_millis(after_ms)));
                    self.status.view.store(view, Ordering::Relaxed);
                }
                Action::Persist(_) | Action::PersistBlock(_) => {}
                Action::Propose { view, parent, .. } => {
                    // Pace blocks: no sooner than one interval after the block we extend
                    // (Simplex proposes on notarization, before the parent is committed).
                    let since = now_ms().saturating_sub(self.parent_time(&parent));
                    let wait = self.interval.saturating_sub(Duration::from_millis(since));
                    self.propose = Some((view, parent, Instant::now() + wait));
                }
                Action::Finalized {
                    proposal,
                    certificate,
                } => finalized.push((proposal, certificate)),
                Action::Misbehaviour(m) => tracing::warn!("consensus: {m}"),
                Action::Offence { from, what } => {
                    tracing::warn!("consensus: {what}");
                    // Disconnected for a while, longer each time: 1 s, doubling, at most 60 s.
                    let n = self.offences.entry(from).or_default();
                    *n = n.saturating_add(1);
                    let pause = Duration::from_secs(1 << (*n - 1).min(6)).min(OFFENCE_PAUSE_MAX);
                    self.net.penalize(from, pause);
                }
                Action::ExecutionCertified(cert) => {
                    let bytes =
                        gridledger_consensus::wire::encode(&Message::Certificate(cert.clone()));
                    let node = self.node.clone();
                    tokio::task::block_in_place(|| {
                        node.save_execution_certificate(cert.view, &bytes)
                    })?;
                }
                Action::Diverged(why) => self.node.set_diverged(why),
            }
        }
        let mut next = Vec::new();
        for block in self.commit(finalized)? {
            next.extend(self.engine.handle(Input::Executed {
                height: block.header.height,
                header: Digest(block.header.hash().0),
            }));
        }
        let me = self.status.index.load(Ordering::Relaxed) as u16;
        for p in found {
            next.extend(self.engine.handle(Input::Message {
                from: me,
                message: Message::Block(p),
            }));
        }
        Ok(next)
    }

    /// Commits finalized blocks in order. Blocks finalized by one certificate share it; each
    /// one's proof lists the proposals from the certified one down to it.
    fn commit(
        &mut self,
        finalized: Vec<(Proposal, Certificate<Bls>)>,
    ) -> Result<Vec<Arc<crate::CommittedBlock>>> {
        let mut committed = Vec::with_capacity(finalized.len());
        for (i, (p, cert)) in finalized.iter().enumerate() {
            let mut links: Vec<ProposalHeader> = finalized[i..]
                .iter()
                .filter(|(_, c)| c == cert)
                .map(|(q, _)| ProposalHeader::of(q))
                .collect();
            links.reverse();
            let proof = FinalityProof::new(cert, links);
            let leader = self.engine.validators().leader(p.view) as usize;
            let proposer = self.node.validators()[leader].address;
            let node = self.node.clone();
            committed.push(tokio::task::block_in_place(|| {
                node.commit_finalized(p, &proof, proposer)
            })?);
            tracing::debug!(
                "validator {}: finalized height {} (view {})",
                self.status.index.load(Ordering::Relaxed),
                p.height,
                p.view
            );
        }
        Ok(committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_fetching_more_than_its_budget_is_not_answered_until_it_refills() {
        let start = std::time::Instant::now();
        let mut b = FetchBudget {
            bytes: 2.0 * FETCH_BYTES_PER_SEC,
            at: start,
        };
        let block = 8 << 20;
        // Two seconds' worth of 8 MiB blocks in a burst, then nothing.
        let sent = (0..100).take_while(|_| b.take(block, start)).count();
        assert_eq!(sent, 8);
        assert!(!b.take(block, start));
        // A quarter of a second refills one block's worth.
        assert!(b.take(block, start + Duration::from_millis(250)));
        assert!(!b.take(block, start + Duration::from_millis(250)));
    }
}
