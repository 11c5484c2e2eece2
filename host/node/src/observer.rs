//! Observers: nodes that follow the chain without voting (the paper's boundary node for the
//! grid company, a regulator's own copy, anyone's).
//!
//! An observer holds a network key genesis admits (`[[observers]]`) and no vote key. It asks
//! the validators, in turn, over the same QUIC transport
//! ([`gridledger_net::requests`]), for the finalized blocks after its head and the execution
//! certificates after its last certified height, and trusts none of them:
//!
//! - a block is taken only if it is the next height, extends this node's tip, and carries a
//!   finalization proof a quorum of the genesis validators signed ([`Follower::accept_block`]);
//!   the observer then executes it itself;
//! - an execution certificate is taken only if a quorum signed it; if it certifies another
//!   header than the one this node computed, the node records the divergence, says so in
//!   `/v1/status`, and follows no further ([`Follower::accept_certificate`]). Proofs it serves
//!   are final only up to the heights whose certificates matched its own headers.
//!
//! A validator that answers garbage or withholds blocks costs the observer one question: it
//! asks the next validator the next time. Transactions submitted to an observer's API are
//! admitted to its mempool (so they are checked) and forwarded to every validator.

use crate::Node;
use crate::finality::FinalityProof;
use crate::validator::validator_set;
use anyhow::{Context, Result};
use borsh::{BorshDeserialize, BorshSerialize};
use gridledger_consensus::crypto::Bls;
use gridledger_consensus::{Message, Proposal, ValidatorSet, VoteKind};
use gridledger_net::Peer;
use gridledger_net::requests::{Handler, Requester};
use sha2::{Digest as _, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Blocks in one answer, at most.
pub const MAX_BLOCKS_PER_ANSWER: usize = 64;
/// Execution certificates in one answer, at most.
pub const MAX_CERTIFICATES_PER_ANSWER: usize = 256;
/// About the most bytes of blocks in one answer (one block may exceed it alone).
pub const ANSWER_BYTES: usize = 4 << 20;
/// Links in a finality proof an observer takes, at most (one certificate finalizing this many
/// blocks at once is already a long stall); longer ones are refused, not stored.
pub const MAX_PROOF_LINKS: usize = 4096;
/// What an observer reads of an answer: the blocks' bytes and one more block.
const MAX_ANSWER_BYTES: usize = ANSWER_BYTES + gridledger_consensus::wire::MAX_MESSAGE_BYTES;
/// How long a question may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an observer that is up to date asks again.
const POLL: Duration = Duration::from_millis(100);
/// Submitted transactions forwarded in one question.
const FORWARD_BATCH_TXS: usize = 512;
const FORWARD_BATCH_BYTES: usize = 1 << 20;
/// How often what still waits in the observer's mempool is forwarded again.
const FORWARD_AGAIN: Duration = Duration::from_secs(2);
/// Batches waiting for one validator.
const FORWARD_QUEUE: usize = 64;

/// What an observer asks a validator.
#[derive(BorshSerialize, BorshDeserialize, Debug)]
pub enum Request {
    /// Finalized blocks from height `from` on, and execution certificates from height
    /// `certificates_from` on.
    Blocks { from: u64, certificates_from: u64 },
    /// Transactions submitted to the observer, for the validator's mempool.
    Submit(Vec<Vec<u8>>),
}

/// A finalized block as validators store it: the proposal and why it is final.
#[derive(BorshSerialize, BorshDeserialize, Clone, Debug)]
pub struct FinalizedBlock {
    pub proposal: Proposal,
    pub proof: FinalityProof,
}

/// A validator's answer.
#[derive(BorshSerialize, BorshDeserialize, Debug)]
pub enum Answer {
    Blocks {
        blocks: Vec<FinalizedBlock>,
        /// Wire-encoded execution certificates, by height.
        certificates: Vec<(u64, Vec<u8>)>,
    },
    Submitted {
        accepted: u32,
    },
    Refused(String),
}

/// The validator's side: what answers observers' questions (reads of its store, on the
/// blocking pool). Forwarded transactions are admitted one batch at a time (a second batch
/// meanwhile is answered busy); a batch too large, a request that does not decode or a
/// transaction with a bad signature (an honest observer checked them all) ends the
/// observer's connection.
pub fn handler(node: Arc<Node>) -> Handler {
    let admitting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Arc::new(move |from, request| {
        let request = borsh::from_slice::<Request>(&request)
            .map_err(|e| format!("a request that does not decode: {e}"))?;
        let answer = match request {
            Request::Blocks {
                from,
                certificates_from,
            } => match finalized_since(&node, from, certificates_from) {
                Ok((blocks, certificates)) => Answer::Blocks {
                    blocks,
                    certificates,
                },
                Err(e) => Answer::Refused(format!("reading the store: {e}")),
            },
            Request::Submit(batch) => {
                if batch.len() > FORWARD_BATCH_TXS {
                    return Err(format!("a batch of {} transactions", batch.len()));
                }
                if admitting.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    Answer::Refused("busy".into())
                } else {
                    let answers = node.submit_relayed_batch(&batch);
                    admitting.store(false, std::sync::atomic::Ordering::Release);
                    if answers
                        .iter()
                        .any(|a| matches!(a, Err(crate::exec::Rejected::BadSignature(_))))
                    {
                        return Err("it forwarded a transaction with a bad signature".into());
                    }
                    Answer::Submitted {
                        accepted: answers.iter().filter(|r| r.is_ok()).count() as u32,
                    }
                }
            }
        };
        if let Answer::Refused(why) = &answer {
            tracing::debug!("observer {from}: refused: {why}");
        }
        Ok(borsh::to_vec(&answer).unwrap_or_default())
    })
}

type Since = (Vec<FinalizedBlock>, Vec<(u64, Vec<u8>)>);

fn finalized_since(node: &Node, from: u64, certificates_from: u64) -> Result<Since> {
    let head = node.head().height;
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    for height in from.max(1)..=head {
        if blocks.len() >= MAX_BLOCKS_PER_ANSWER || bytes >= ANSWER_BYTES {
            break;
        }
        let Some(proof) = node.finality(height)? else {
            break;
        };
        let Some(link) = proof.block_proposal() else {
            break;
        };
        let Some(proposal) = node.consensus_proposal(&link.digest())? else {
            break;
        };
        bytes += proposal.payload.len();
        blocks.push(FinalizedBlock { proposal, proof });
    }
    let mut certificates = Vec::new();
    for height in certificate_heights(certificates_from, head) {
        if let Some(c) = node.execution_certificate(height)? {
            certificates.push((height, c));
        }
    }
    Ok((blocks, certificates))
}

/// The heights whose execution certificates one answer carries: from `from` (at least 1) up
/// to the head, at most [`MAX_CERTIFICATES_PER_ANSWER`] of them, which is all the follower
/// takes. (One more, as an inclusive range once sent, and a follower more than that many
/// certificates behind was refused every answer and never caught up.)
fn certificate_heights(from: u64, head: u64) -> std::ops::RangeInclusive<u64> {
    let from = from.max(1);
    from..=head.min(from.saturating_add(MAX_CERTIFICATES_PER_ANSWER as u64 - 1))
}

/// Why a block or certificate from a peer was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// It does not prove itself: the peer sent something wrong (or stale); ask another.
    Bad(String),
    /// This node failed (its store, executing a proven block): stop.
    Fault(anyhow::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Bad(why) => write!(f, "refused: {why}"),
            Refusal::Fault(e) => write!(f, "node fault: {e:#}"),
        }
    }
}

/// Checks what validators send an observer, and commits what proves itself.
pub struct Follower {
    node: Arc<Node>,
    set: ValidatorSet<Bls>,
}

impl Follower {
    pub fn new(node: Arc<Node>) -> Follower {
        let set = validator_set(&node);
        Follower { node, set }
    }

    /// Takes a validator's answer: its blocks in order, then its certificates. Returns how
    /// many of them were new; the first that fails its checks ends the answer.
    pub fn take(&self, answer: &[u8]) -> Result<usize, Refusal> {
        let answer = borsh::from_slice::<Answer>(answer)
            .map_err(|e| Refusal::Bad(format!("an answer that does not decode: {e}")))?;
        let (blocks, certificates) = match answer {
            Answer::Blocks {
                blocks,
                certificates,
            } => (blocks, certificates),
            Answer::Refused(why) => return Err(Refusal::Bad(format!("it refused: {why}"))),
            Answer::Submitted { .. } => return Err(Refusal::Bad("an answer out of turn".into())),
        };
        if blocks.len() > MAX_BLOCKS_PER_ANSWER || certificates.len() > MAX_CERTIFICATES_PER_ANSWER
        {
            return Err(Refusal::Bad(format!(
                "an answer of {} blocks and {} certificates",
                blocks.len(),
                certificates.len()
            )));
        }
        let mut taken = 0;
        for b in &blocks {
            if self.node.diverged().is_some() {
                return Ok(taken);
            }
            self.accept_block(b)?;
            taken += 1;
        }
        // In height order, each at most once, and only what is new and executed here, before
        // any signature is checked: a flood of copies costs a lookup each.
        let mut certificates = certificates;
        certificates.sort_by_key(|(h, _)| *h);
        certificates.dedup_by_key(|(h, _)| *h);
        let head = self.node.head().height;
        for (height, c) in &certificates {
            if self.node.diverged().is_some() {
                break;
            }
            if *height > head {
                continue;
            }
            if self.accept_certificate(*height, c)? {
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// Commits `block` if it is the next one, extends this node's tip and a quorum of the
    /// genesis validators finalized it; executing it is this node's own work.
    pub fn accept_block(&self, block: &FinalizedBlock) -> Result<(), Refusal> {
        let head = self.node.head();
        let p = &block.proposal;
        if p.height != head.height + 1 {
            return Err(Refusal::Bad(format!(
                "a block at height {} while this node's head is {}",
                p.height, head.height
            )));
        }
        let tip = self
            .node
            .consensus_tip()
            .map_err(|e| Refusal::Fault(e.into()))?;
        if p.parent != tip.digest {
            return Err(Refusal::Bad(format!(
                "the block at height {} does not extend this node's tip",
                p.height
            )));
        }
        if block.proof.links.len() > MAX_PROOF_LINKS {
            return Err(Refusal::Bad(format!(
                "a finality proof of {} links",
                block.proof.links.len()
            )));
        }
        block
            .proof
            .verify(&self.set, p.height, &p.digest())
            .map_err(|e| Refusal::Bad(format!("height {}: {e}", p.height)))?;
        let leader = self.set.leader(p.view) as usize;
        let proposer = self
            .node
            .validators()
            .get(leader)
            .map(|v| v.address)
            .ok_or_else(|| Refusal::Bad("a leader outside the validator set".into()))?;
        self.node
            .commit_finalized(p, &block.proof, proposer)
            .map_err(|e| {
                Refusal::Fault(anyhow::Error::new(e).context("committing a proven block"))
            })?;
        Ok(())
    }

    /// Takes the execution certificate of `height` (wire-encoded) if a quorum signed it:
    /// stored when it covers this node's own header (true if it was new); the divergence
    /// recorded when it covers another.
    pub fn accept_certificate(&self, height: u64, bytes: &[u8]) -> Result<bool, Refusal> {
        // One already held is not looked at again (a lookup, not a signature check).
        let fault = |e: crate::NodeError| Refusal::Fault(e.into());
        if self
            .node
            .execution_certificate(height)
            .map_err(fault)?
            .is_some()
        {
            return Ok(false);
        }
        let cert = match gridledger_consensus::wire::decode::<Bls>(bytes) {
            Ok(Message::Certificate(c)) => c,
            _ => return Err(Refusal::Bad("a certificate that does not decode".into())),
        };
        if cert.kind != VoteKind::Execute || cert.view != height {
            return Err(Refusal::Bad(format!(
                "a {:?} certificate for {} given as the execution certificate of {height}",
                cert.kind, cert.view
            )));
        }
        self.set
            .verify_certificate(&cert)
            .map_err(|e| Refusal::Bad(format!("execution certificate of {height}: {e}")))?;
        let ours = self
            .node
            .snapshot()
            .map_err(fault)?
            .block(height)
            .map_err(|e| Refusal::Fault(e.into()))?
            .ok_or_else(|| Refusal::Bad(format!("a certificate for {height}, not executed here")))?
            .header
            .hash();
        if cert.digest.0 == ours.0 {
            self.node
                .save_execution_certificate(height, bytes)
                .map_err(fault)?;
            Ok(true)
        } else {
            self.node.set_diverged(format!(
                "at height {height} this node's header is {} but a quorum of validators certified {}",
                ours.to_hex(),
                cert.digest.to_hex()
            ));
            Ok(false)
        }
    }
}

/// How an observer reaches the validators.
pub struct ObserverOptions {
    /// Where to reach each validator, by index in the genesis set.
    pub validators: Vec<(u16, SocketAddr)>,
    /// This observer's network secret (its public key is listed in genesis).
    pub network_secret: [u8; 32],
    /// The local UDP address to ask from (port 0: any).
    pub bind: SocketAddr,
}

/// Follows the validators until `stop` turns true. A node fault ends it with the error.
pub async fn run(
    node: Arc<Node>,
    opts: ObserverOptions,
    status: Arc<crate::validator::ValidatorStatus>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    node.set_observing();
    let peers = opts
        .validators
        .iter()
        .map(|&(i, addr)| {
            let v = node
                .validators()
                .get(i as usize)
                .with_context(|| format!("validator {i} is not in the genesis set"))?;
            Ok(Peer {
                index: i,
                key: v.network_key,
                addr,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(!peers.is_empty(), "an observer needs validators to ask");
    // Following and forwarding on connections of their own: neither waits behind the other.
    let requester = Requester::new(opts.bind, &opts.network_secret, peers.clone())?;
    let forwarder = Arc::new(Requester::new(opts.bind, &opts.network_secret, peers)?);
    let forwarding = tokio::spawn(forward(node.clone(), forwarder.clone(), stop.clone()));
    let follower = Follower::new(node.clone());
    let mut asking = Rotation::new(requester.peers());
    // Certificates are asked for from the lowest executed height without one (a validator
    // that skipped some cannot leave a gap for good).
    let mut uncertified = first_uncertified(&node, 1)?;
    let result = loop {
        if *stop.borrow() {
            break Ok(());
        }
        let mut taken = 0;
        let now = tokio::time::Instant::now();
        if node.diverged().is_none()
            && let Some(to) = asking.next(now)
        {
            let request = Request::Blocks {
                from: node.head().height + 1,
                certificates_from: uncertified,
            };
            let request = borsh::to_vec(&request).context("encoding a request")?;
            let asked = tokio::select! {
                a = requester.ask(to, &request, MAX_ANSWER_BYTES, ASK_TIMEOUT) => a,
                _ = stop.changed() => continue,
            };
            match asked {
                Ok(answer) => match tokio::task::block_in_place(|| follower.take(&answer)) {
                    Ok(n) => {
                        taken = n;
                        asking.answered(to);
                    }
                    Err(Refusal::Bad(why)) => {
                        tracing::warn!("observer: validator {to} sent what it cannot prove: {why}");
                        asking.failed(to, now);
                    }
                    Err(Refusal::Fault(e)) => break Err(e),
                },
                Err(e) => {
                    tracing::debug!("observer: asking validator {to}: {e:#}");
                    asking.failed(to, now);
                }
            }
            uncertified = first_uncertified(&node, uncertified)?;
        }
        status
            .peers
            .store(requester.connected(), std::sync::atomic::Ordering::Relaxed);
        if taken == 0 {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    };
    if let Err(e) = &result {
        tracing::error!("observer stopped: {e:#}");
    }
    forwarding.abort();
    let _ = forwarding.await;
    requester.shutdown().await;
    forwarder.shutdown().await;
    result
}

/// The lowest height from `from` on that this node executed and holds no certificate for
/// (its head + 1 if none).
fn first_uncertified(node: &Node, from: u64) -> Result<u64> {
    let head = node.head().height;
    let mut h = from.max(1);
    while h <= head && node.execution_certificate(h)?.is_some() {
        h += 1;
    }
    Ok(h)
}

/// Which validator to ask next: each in turn, skipping for a while one that failed (more
/// after each failure in a row), so a dead or lying validator costs a question now and then,
/// not one in every round.
struct Rotation {
    order: Vec<u16>,
    turn: usize,
    /// Per validator: failures in a row, and when it may be asked again.
    benched: std::collections::HashMap<u16, (u32, tokio::time::Instant)>,
}

/// The first pause after a failure; it doubles with each failure in a row, up to the max.
const BENCH_FIRST: Duration = Duration::from_millis(500);
const BENCH_MAX: Duration = Duration::from_secs(30);

impl Rotation {
    fn new(order: Vec<u16>) -> Rotation {
        Rotation {
            order,
            turn: 0,
            benched: Default::default(),
        }
    }

    /// The next validator that may be asked now (none if all are benched).
    fn next(&mut self, now: tokio::time::Instant) -> Option<u16> {
        for _ in 0..self.order.len() {
            let to = self.order[self.turn % self.order.len()];
            self.turn = self.turn.wrapping_add(1);
            match self.benched.get(&to) {
                Some((_, until)) if *until > now => continue,
                _ => return Some(to),
            }
        }
        None
    }

    fn answered(&mut self, to: u16) {
        self.benched.remove(&to);
    }

    fn failed(&mut self, to: u16, now: tokio::time::Instant) {
        let failures = self.benched.get(&to).map_or(0, |(n, _)| *n) + 1;
        let pause = BENCH_FIRST
            .saturating_mul(1 << (failures - 1).min(16))
            .min(BENCH_MAX);
        self.benched.insert(to, (failures, now + pause));
    }
}

/// Forwards what is submitted to this node to every validator, in batches: a queue and a
/// task per validator, so one that is down delays no other (its full queue drops batches).
async fn forward(node: Arc<Node>, requester: Arc<Requester>, stop: watch::Receiver<bool>) {
    let mut submitted = node.subscribe_submitted();
    let mut queues = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for to in requester.peers() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Arc<Vec<u8>>>(FORWARD_QUEUE);
        queues.push((to, tx));
        let requester = requester.clone();
        tasks.spawn(async move {
            while let Some(request) = rx.recv().await {
                if let Err(e) = requester.ask(to, &request, 1 << 10, ASK_TIMEOUT).await {
                    tracing::warn!("observer: forwarding to validator {to}: {e:#}");
                }
            }
        });
    }
    let mut again = tokio::time::interval(FORWARD_AGAIN);
    again.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stop.borrow() {
            return;
        }
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        tokio::select! {
            next = submitted.recv() => match next {
                Ok(t) => {
                    bytes += t.len();
                    batch.push(t.to_vec());
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!("observer: {n} submitted transactions wait for the next round");
                    continue;
                }
                Err(_) => return,
            },
            // What is still waiting here (submitted before a validator came back, or lost on
            // the way) goes again; validators drop what they hold or have included cheaply.
            _ = again.tick() => {
                for t in node.waiting(FORWARD_BATCH_TXS) {
                    let t = t.encode();
                    if !batch.is_empty() && bytes + t.len() > FORWARD_BATCH_BYTES {
                        break;
                    }
                    bytes += t.len();
                    batch.push(t);
                }
            }
        }
        while batch.len() < FORWARD_BATCH_TXS && bytes < FORWARD_BATCH_BYTES {
            match submitted.try_recv() {
                Ok(t) => {
                    bytes += t.len();
                    batch.push(t.to_vec());
                }
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        // The same transaction may come from the feed and from the mempool at once.
        let mut seen = std::collections::HashSet::new();
        batch.retain(|t| seen.insert(Sha256::digest(t)));
        let Ok(request) = borsh::to_vec(&Request::Submit(batch)) else {
            continue;
        };
        let request = Arc::new(request);
        for (to, queue) in &queues {
            if queue.try_send(request.clone()).is_err() {
                tracing::warn!(
                    "observer: validator {to} is not keeping up; a batch not forwarded to it"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_carries_no_more_certificates_than_a_follower_takes() {
        for (from, head) in [(0, 1_000), (1, 1_000), (500, 10_000), (1, 256), (1, 257)] {
            let heights = certificate_heights(from, head);
            assert_eq!(*heights.start(), from.max(1));
            // As many as a follower takes when the head is far enough; up to the head
            // otherwise.
            let want = (head - from.max(1) + 1).min(MAX_CERTIFICATES_PER_ANSWER as u64);
            assert_eq!(heights.count() as u64, want, "{from}..{head}");
        }
        assert!(certificate_heights(10, 5).next().is_none());
    }

    #[test]
    fn a_failing_validator_is_asked_less_and_again_once_it_answers() {
        let now = tokio::time::Instant::now();
        let mut r = Rotation::new(vec![0, 1, 2, 3]);
        let first: Vec<u16> = (0..4).filter_map(|_| r.next(now)).collect();
        assert_eq!(first, vec![0, 1, 2, 3]);
        // Validator 1 fails: skipped until its pause is over, which grows with each failure.
        r.failed(1, now);
        let round: Vec<u16> = (0..3).filter_map(|_| r.next(now)).collect();
        assert_eq!(round, vec![0, 2, 3]);
        assert_eq!(r.next(now + BENCH_FIRST), Some(0));
        let later = now + BENCH_FIRST;
        assert_eq!(r.next(later), Some(1), "its pause is over");
        r.failed(1, later);
        assert!(
            (0..4)
                .filter_map(|_| r.next(later + BENCH_FIRST))
                .all(|v| v != 1)
        );
        r.answered(1);
        assert!((0..4).filter_map(|_| r.next(later)).any(|v| v == 1));
        // All benched: nobody to ask right now.
        for v in 0..4 {
            r.failed(v, later);
        }
        assert_eq!(r.next(later), None);
    }
}
