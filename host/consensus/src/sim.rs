//! A deterministic network simulator for the engine: every run is a function of its
//! [`Scenario`] (seed included). Messages get random delays (so they reorder), may be lost, are
//! cut by partitions that later heal; validators crash (losing everything but what they
//! persisted and their committed chain) and restart; one validator may be byzantine and
//! equivocate. The [`Outcome`] says what each validator finalized, so tests can check that no
//! two honest validators ever disagree and that the chain moves again once the network heals.
//!
//! Signatures are [`SimScheme`]'s (cheap and forgeable): the simulator tests the protocol,
//! not the cryptography.

use crate::crypto::{SimScheme, VoteScheme};
use crate::engine::{Action, Config, Durable, Engine, Input, Tip};
use crate::types::{Digest, Message, Proposal, ValidatorIndex, View, Vote, VoteKind};
use crate::validators::ValidatorSet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// A window in which messages between `side` and the rest are lost.
#[derive(Clone, Debug)]
pub struct Partition {
    pub from_ms: u64,
    pub until_ms: u64,
    pub side: Vec<ValidatorIndex>,
}

/// A validator that stops at `at_ms` (as if killed) and, if `restart_ms` is set, starts again
/// from its persisted state then.
#[derive(Clone, Debug)]
pub struct Crash {
    pub node: ValidatorIndex,
    pub at_ms: u64,
    pub restart_ms: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub n: usize,
    pub seed: u64,
    pub duration_ms: u64,
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Chance, in thousandths, that a message is lost.
    pub loss_per_mille: u32,
    pub partitions: Vec<Partition>,
    pub crashes: Vec<Crash>,
    /// A validator that proposes two blocks when it leads and double-votes.
    pub byzantine: Option<ValidatorIndex>,
    pub timeout_ms: u64,
    /// End the run as soon as every honest validator that is up finalized a block proposed
    /// after the heal (`duration_ms` is then only a cap).
    pub stop_when_recovered: bool,
}

impl Scenario {
    /// `n` validators on a calm network.
    pub fn calm(n: usize, seed: u64) -> Scenario {
        Scenario {
            n,
            seed,
            duration_ms: 5_000,
            min_delay_ms: 1,
            max_delay_ms: 20,
            loss_per_mille: 0,
            partitions: Vec::new(),
            crashes: Vec::new(),
            byzantine: None,
            timeout_ms: 200,
            stop_when_recovered: false,
        }
    }

    /// When the last partition heals and the last crashed validator that restarts is back
    /// (one that never restarts is a permanent fault, not a disturbance that heals).
    pub fn healed_at_ms(&self) -> u64 {
        let p = self.partitions.iter().map(|p| p.until_ms);
        let c = self.crashes.iter().filter_map(|c| c.restart_ms);
        p.chain(c).max().unwrap_or(0)
    }

    fn honest(&self, i: ValidatorIndex) -> bool {
        self.byzantine != Some(i)
    }
}

/// What happened in a run.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per validator, the finalized chain: (view, digest) by height (index 0 is height 1).
    pub chains: Vec<Vec<(View, Digest)>>,
    /// Per validator, (simulated time, view) of each block it finalized.
    pub finalized_at: Vec<Vec<(u64, View)>>,
    /// The highest view any honest running validator was in when the network healed.
    pub view_at_heal: View,
    /// Reports of finality conflicts (must stay empty).
    pub conflicts: Vec<String>,
    /// Other misbehaviour the engines noticed (equivocation, bad signatures).
    pub misbehaviour: usize,
    pub messages_sent: u64,
    /// Per validator, its view at the end (`None` if it was down).
    pub final_views: Vec<Option<View>>,
}

impl Outcome {
    /// No two validators in `honest` finalized different blocks at the same height.
    pub fn check_agreement(&self, honest: &[ValidatorIndex]) -> Result<(), String> {
        if let Some(c) = self.conflicts.first() {
            return Err(c.clone());
        }
        for &a in honest {
            for &b in honest {
                let (ca, cb) = (&self.chains[a as usize], &self.chains[b as usize]);
                if let Some(h) = (0..ca.len().min(cb.len())).find(|&h| ca[h] != cb[h]) {
                    return Err(format!(
                        "validators {a} and {b} finalized different blocks at height {}: {:?} vs {:?}",
                        h + 1,
                        ca[h],
                        cb[h]
                    ));
                }
            }
        }
        Ok(())
    }

    /// The fewest views after the heal within which every validator in `honest` finalized a
    /// block proposed after the heal; `None` if one never did.
    pub fn views_to_finality_after_heal(&self, honest: &[ValidatorIndex]) -> Option<View> {
        let first_common = honest
            .iter()
            .map(|&i| {
                self.chains[i as usize]
                    .iter()
                    .find(|(v, _)| *v > self.view_at_heal)
                    .map(|(v, _)| *v)
            })
            .collect::<Option<Vec<View>>>()?;
        first_common
            .into_iter()
            .max()
            .map(|v| v - self.view_at_heal)
    }
}

enum Event {
    Deliver {
        to: ValidatorIndex,
        from: ValidatorIndex,
        message: Message<SimScheme>,
    },
    Timer {
        node: ValidatorIndex,
        generation: u64,
        view: View,
    },
    Crash(ValidatorIndex),
    Restart(ValidatorIndex),
}

struct Queued {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// What survives a crash: the persisted engine state and the committed chain.
#[derive(Default)]
struct Disk {
    durable: Option<Durable>,
    chain: Vec<(View, Digest)>,
    /// Blocks voted for or finalized: what the node driver answers a `Fetch` with from disk.
    blocks: std::collections::HashMap<Digest, Proposal>,
}

struct Sim<'a> {
    sc: &'a Scenario,
    rng: StdRng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    engines: Vec<Option<Engine<SimScheme>>>,
    disks: Vec<Disk>,
    timer_generation: Vec<u64>,
    out: Outcome,
    validators: ValidatorSet<SimScheme>,
}

/// Runs a scenario to its end.
pub fn run(sc: &Scenario) -> Outcome {
    let validators = ValidatorSet::new((0..sc.n as u64).collect(), "sim");
    let mut sim = Sim {
        sc,
        rng: StdRng::seed_from_u64(sc.seed),
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        engines: (0..sc.n).map(|_| None).collect(),
        disks: (0..sc.n).map(|_| Disk::default()).collect(),
        timer_generation: vec![0; sc.n],
        out: Outcome {
            chains: vec![Vec::new(); sc.n],
            finalized_at: vec![Vec::new(); sc.n],
            ..Outcome::default()
        },
        validators,
    };
    for c in &sc.crashes {
        sim.schedule(c.at_ms, Event::Crash(c.node));
        if let Some(r) = c.restart_ms {
            sim.schedule(r, Event::Restart(c.node));
        }
    }
    for i in 0..sc.n as ValidatorIndex {
        sim.boot(i);
    }
    let heal = sc.healed_at_ms();
    let mut heal_recorded = heal == 0;
    while let Some(Reverse(q)) = sim.queue.pop() {
        if q.at > sc.duration_ms {
            break;
        }
        if !heal_recorded && q.at >= heal {
            sim.record_heal();
            heal_recorded = true;
        }
        sim.now = q.at;
        sim.dispatch(q.event);
        if heal_recorded && sc.stop_when_recovered && sim.recovered() {
            break;
        }
    }
    if !heal_recorded {
        sim.record_heal();
    }
    for i in 0..sc.n {
        sim.out.chains[i] = sim.disks[i].chain.clone();
        sim.out
            .final_views
            .push(sim.engines[i].as_ref().map(|e| e.view()));
    }
    sim.out
}

impl Sim<'_> {
    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn recovered(&self) -> bool {
        (0..self.sc.n).all(|i| {
            !self.sc.honest(i as ValidatorIndex)
                || self.engines[i].is_none()
                || self.disks[i]
                    .chain
                    .last()
                    .is_some_and(|(v, _)| *v > self.out.view_at_heal)
        })
    }

    fn record_heal(&mut self) {
        self.out.view_at_heal = (0..self.sc.n)
            .filter(|&i| self.sc.honest(i as ValidatorIndex))
            .filter_map(|i| self.engines[i].as_ref().map(|e| e.view()))
            .max()
            .unwrap_or(0);
    }

    fn boot(&mut self, i: ValidatorIndex) {
        let disk = &self.disks[i as usize];
        let tip = match disk.chain.last() {
            Some(&(view, digest)) => Tip {
                view,
                height: disk.chain.len() as u64,
                digest,
            },
            None => Tip::GENESIS,
        };
        let cfg = Config {
            me: i,
            secret: i as u64,
            validators: self.validators.clone(),
            timeout_ms: self.sc.timeout_ms,
            max_timeout_ms: self.sc.timeout_ms * 8,
            keep_finalized: 1_000,
        };
        let mut engine = Engine::new(cfg, tip, disk.durable.clone());
        let actions = engine.start();
        self.engines[i as usize] = Some(engine);
        self.apply(i, actions);
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Deliver { to, from, message } => {
                // Like the node driver: a block asked for is served from disk too.
                if let Message::Fetch(digest) = &message
                    && self.engines[to as usize].is_some()
                    && let Some(p) = self.disks[to as usize].blocks.get(digest).cloned()
                {
                    self.send(to, from, Message::Block(p));
                }
                if let Some(e) = self.engines[to as usize].as_mut() {
                    let actions = e.handle(Input::Message { from, message });
                    self.apply(to, actions);
                }
            }
            Event::Timer {
                node,
                generation,
                view,
            } => {
                if self.timer_generation[node as usize] != generation {
                    return;
                }
                if let Some(e) = self.engines[node as usize].as_mut() {
                    let actions = e.handle(Input::Timeout { view });
                    self.apply(node, actions);
                }
            }
            Event::Crash(i) => {
                self.engines[i as usize] = None;
                self.timer_generation[i as usize] += 1;
            }
            Event::Restart(i) => self.boot(i),
        }
    }

    fn connected(&self, a: ValidatorIndex, b: ValidatorIndex) -> bool {
        !self.sc.partitions.iter().any(|p| {
            self.now >= p.from_ms
                && self.now < p.until_ms
                && (p.side.contains(&a) != p.side.contains(&b))
        })
    }

    fn send(&mut self, from: ValidatorIndex, to: ValidatorIndex, message: Message<SimScheme>) {
        self.out.messages_sent += 1;
        if !self.connected(from, to) || self.rng.gen_range(0..1000) < self.sc.loss_per_mille {
            return;
        }
        let delay = self
            .rng
            .gen_range(self.sc.min_delay_ms..=self.sc.max_delay_ms);
        self.schedule(self.now + delay, Event::Deliver { to, from, message });
    }

    fn broadcast(&mut self, from: ValidatorIndex, message: &Message<SimScheme>) {
        for to in 0..self.sc.n as ValidatorIndex {
            if to != from {
                self.send(from, to, message.clone());
            }
        }
    }

    fn apply(&mut self, me: ValidatorIndex, actions: Vec<Action<SimScheme>>) {
        let mut work: VecDeque<Action<SimScheme>> = actions.into();
        while let Some(action) = work.pop_front() {
            match action {
                Action::Send { to, message } => self.send(me, to, message),
                Action::Broadcast(message) => {
                    if !self.sc.honest(me) {
                        self.equivocate_vote(me, &message);
                    }
                    self.broadcast(me, &message);
                }
                Action::SetTimer { view, after_ms } => {
                    self.timer_generation[me as usize] += 1;
                    let generation = self.timer_generation[me as usize];
                    self.schedule(
                        self.now + after_ms,
                        Event::Timer {
                            node: me,
                            generation,
                            view,
                        },
                    );
                }
                Action::Persist(d) => self.disks[me as usize].durable = Some(d),
                Action::PersistBlock(p) => {
                    self.disks[me as usize].blocks.insert(p.digest(), p);
                }
                Action::Propose { view, .. } => {
                    let payload = format!("block of view {view} by {me}").into_bytes();
                    if !self.sc.honest(me) {
                        self.equivocate_proposal(me, view);
                    }
                    if let Some(e) = self.engines[me as usize].as_mut() {
                        let more = e.propose(view, payload);
                        if self.sc.honest(me) {
                            work.extend(more);
                        } else {
                            // Its honest proposal is replaced by the two conflicting ones.
                            work.extend(more.into_iter().filter(|a| {
                                !matches!(a, Action::Broadcast(Message::Propose { .. }))
                            }));
                        }
                    }
                }
                Action::Finalized { proposal, .. } => {
                    let chain = &mut self.disks[me as usize].chain;
                    let parent = chain.last().map(|c| c.1).unwrap_or(Digest::ZERO);
                    if proposal.height != chain.len() as u64 + 1 || proposal.parent != parent {
                        self.out.conflicts.push(format!(
                            "validator {me} was handed height {} on parent {:?}, its chain is {} long",
                            proposal.height,
                            proposal.parent,
                            chain.len()
                        ));
                    }
                    chain.push((proposal.view, proposal.digest()));
                    self.disks[me as usize]
                        .blocks
                        .insert(proposal.digest(), proposal.clone());
                    self.out.finalized_at[me as usize].push((self.now, proposal.view));
                }
                Action::Misbehaviour(m) => {
                    if m.contains("conflicts") {
                        self.out.conflicts.push(format!("validator {me}: {m}"));
                    } else {
                        self.out.misbehaviour += 1;
                    }
                }
            }
        }
    }

    /// The byzantine leader: two blocks, one to each half of the validators.
    fn equivocate_proposal(&mut self, me: ValidatorIndex, view: View) {
        let Some(e) = self.engines[me as usize].as_ref() else {
            return;
        };
        let tip = e.tip();
        for (half, tag) in [(0, "A"), (1, "B")] {
            let proposal = Proposal {
                view,
                height: tip.height + 1,
                parent: tip.digest,
                parent_view: tip.view,
                payload: format!("equivocation {tag} in view {view}").into_bytes(),
            };
            let signature = SimScheme::sign(
                &(me as u64),
                &self
                    .validators
                    .vote_bytes(VoteKind::Notarize, view, &proposal.digest()),
            );
            for to in
                (0..self.sc.n as ValidatorIndex).filter(|t| *t != me && *t as usize % 2 == half)
            {
                self.send(
                    me,
                    to,
                    Message::Propose {
                        proposal: proposal.clone(),
                        signature: signature.clone(),
                    },
                );
            }
        }
    }

    /// The byzantine voter: every vote it casts is followed by a conflicting one.
    fn equivocate_vote(&mut self, me: ValidatorIndex, message: &Message<SimScheme>) {
        let Message::Vote(v) = message else {
            return;
        };
        let (kind, digest) = match v.kind {
            VoteKind::Notarize => (VoteKind::Notarize, Digest(self.rng.r#gen())),
            VoteKind::Nullify => (VoteKind::Finalize, Digest(self.rng.r#gen())),
            VoteKind::Finalize => (VoteKind::Nullify, Digest::ZERO),
        };
        let signature = SimScheme::sign(
            &(me as u64),
            &self.validators.vote_bytes(kind, v.view, &digest),
        );
        let vote = Vote {
            kind,
            view: v.view,
            digest,
            signer: me,
            signature,
        };
        self.broadcast(me, &Message::Vote(vote));
    }
}
