//! A deterministic network simulator for the engine: every run is a function of its
//! [`Scenario`] (seed included). Messages get random delays (so they reorder), may be lost, are
//! cut by partitions that later heal; validators crash (losing everything but what they
//! persisted and their committed chain) and restart; one validator may be byzantine and
//! attack (see [`Attacks`]). Finalized blocks are "executed" into a hash chain of headers and
//! each validator votes on its header, so execution certificates and divergence are exercised
//! too. The [`Outcome`] says what each validator finalized and certified, so tests can check
//! that no two honest validators ever disagree and that the chain moves again once the network
//! heals.
//!
//! Signatures are [`SimScheme`]'s (cheap and forgeable): the simulator tests the protocol,
//! not the cryptography.

use crate::crypto::{SimScheme, VoteScheme};
use crate::engine::{Action, Config, Durable, Engine, Input, PayloadCheck, Tip};
use crate::types::{Digest, Message, Proposal, ValidatorIndex, View, Vote, VoteKind};
use crate::validators::ValidatorSet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest as _, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How far ahead of a validator's clock a block time may be in the simulation.
pub const SIM_MAX_DRIFT_MS: u64 = 50;

/// What the byzantine validator does (any mix).
#[derive(Clone, Debug, Default)]
pub struct Attacks {
    /// Two blocks per view it leads (one to each half), a notarize vote for both, and every
    /// vote it casts followed by a conflicting one for a rival it saw.
    pub equivocate: bool,
    /// Its blocks carry a time far ahead of everyone's clock.
    pub future_time: bool,
    /// Its blocks carry a payload that does not parse.
    pub invalid_payload: bool,
    /// It sends blocks nobody asked for, for views far ahead.
    pub unsolicited_blocks: bool,
    /// It sends every message it receives back to everyone, twice.
    pub replay: bool,
}

impl Attacks {
    pub fn equivocate() -> Attacks {
        Attacks {
            equivocate: true,
            ..Attacks::default()
        }
    }

    pub fn all() -> Attacks {
        Attacks {
            equivocate: true,
            future_time: true,
            invalid_payload: true,
            unsolicited_blocks: true,
            replay: true,
        }
    }
}

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
    /// A validator that attacks (see `attacks`).
    pub byzantine: Option<ValidatorIndex>,
    pub attacks: Attacks,
    /// A validator whose execution gives other headers from height 3 on (a bug, a different
    /// build): it must notice and stop voting, and the others must carry on.
    pub faulty_executor: Option<ValidatorIndex>,
    /// A crash strikes in the middle of the crashed validator's next batch of actions, after
    /// this many (between a `Persist` and the sends, or a `Finalized` and its commit), instead
    /// of between batches.
    pub crash_after_actions: Option<usize>,
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
            attacks: Attacks::equivocate(),
            faulty_executor: None,
            crash_after_actions: None,
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
    /// Per validator, its executed headers by height (index 0 is height 1).
    pub headers: Vec<Vec<Digest>>,
    /// Per validator, the execution certificates it stored: (height, header).
    pub certified: Vec<Vec<(u64, Digest)>>,
    /// Per validator, why it stopped voting, if its execution diverged.
    pub diverged: Vec<Option<String>>,
    /// Proposals honest validators refused for their payload.
    pub refused_payloads: usize,
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

    /// Every certificate a validator in `honest` stored is over its own header, and no two
    /// certify different headers at one height.
    pub fn check_execution(&self, honest: &[ValidatorIndex]) -> Result<(), String> {
        let mut by_height: HashMap<u64, Digest> = HashMap::new();
        for &i in honest {
            for &(h, d) in &self.certified[i as usize] {
                let own = self.headers[i as usize].get(h as usize - 1);
                if own != Some(&d) {
                    return Err(format!(
                        "validator {i} stored a certificate for height {h} over {d:?}, its header is {own:?}"
                    ));
                }
                if let Some(other) = by_height.insert(h, d)
                    && other != d
                {
                    return Err(format!("two headers certified at height {h}"));
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
    headers: Vec<Digest>,
    certified: Vec<(u64, Digest)>,
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
    /// The simulated clock, shared with every validator's payload check.
    clock: Arc<AtomicU64>,
    /// Validators hit by a crash that strikes inside their next batch.
    dying: Vec<bool>,
    /// Proposals the byzantine validator saw, by view (the rivals it votes for).
    seen: HashMap<View, Vec<Digest>>,
}

/// A simulated payload: `"<time_ms>|<text>"`.
fn payload(time_ms: u64, text: &str) -> Vec<u8> {
    format!("{time_ms}|{text}").into_bytes()
}

fn payload_time(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    text.split_once('|')?.0.parse().ok()
}

/// The simulated application's rule: a payload parses, and its time is after its parent's and
/// at most [`SIM_MAX_DRIFT_MS`] ahead of the clock.
fn sim_check(clock: Arc<AtomicU64>) -> PayloadCheck {
    Arc::new(move |p, parent| {
        let t = payload_time(&p.payload).ok_or("the payload does not parse")?;
        let parent_t = parent.and_then(|q| payload_time(&q.payload)).unwrap_or(0);
        let now = clock.load(Ordering::Relaxed);
        if t <= parent_t {
            return Err(format!("time {t} is not after the parent's {parent_t}"));
        }
        if t > now.saturating_add(SIM_MAX_DRIFT_MS) {
            return Err(format!("time {t} is ahead of the clock {now}"));
        }
        Ok(())
    })
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
        clock: Arc::new(AtomicU64::new(0)),
        dying: vec![false; sc.n],
        seen: HashMap::new(),
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
        sim.clock.store(q.at, Ordering::Relaxed);
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
        sim.out.headers.push(sim.disks[i].headers.clone());
        sim.out.certified.push(sim.disks[i].certified.clone());
        sim.out.diverged.push(
            sim.engines[i]
                .as_ref()
                .and_then(|e| e.diverged().map(String::from)),
        );
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
        self.dying[i as usize] = false;
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
            keep_finalized_bytes: usize::MAX,
            check: sim_check(self.clock.clone()),
        };
        let mut engine = Engine::new(cfg, tip, disk.durable.clone());
        let mut actions = engine.start();
        // Like the node driver: vote again for the headers executed since the last certified.
        let certified = disk.certified.last().map_or(0, |c| c.0);
        for (i, header) in disk.headers.iter().enumerate().skip(certified as usize) {
            actions.extend(engine.handle(Input::Executed {
                height: i as u64 + 1,
                header: *header,
            }));
        }
        self.engines[i as usize] = Some(engine);
        self.apply(i, actions);
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Deliver { to, from, message } => {
                if self.sc.byzantine == Some(to) {
                    self.byzantine_receives(to, &message);
                }
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
            Event::Crash(i) if self.sc.crash_after_actions.is_some() => {
                self.dying[i as usize] = true;
            }
            Event::Crash(i) => self.crash(i),
            Event::Restart(i) => self.boot(i),
        }
    }

    fn crash(&mut self, i: ValidatorIndex) {
        self.engines[i as usize] = None;
        self.timer_generation[i as usize] += 1;
        self.dying[i as usize] = false;
    }

    /// What the byzantine validator does with what it receives: remember rival proposals,
    /// replay, and answer with blocks nobody asked for.
    fn byzantine_receives(&mut self, me: ValidatorIndex, message: &Message<SimScheme>) {
        if let Message::Propose { proposal, .. } = message {
            let seen = self.seen.entry(proposal.view).or_default();
            if !seen.contains(&proposal.digest()) {
                seen.push(proposal.digest());
            }
        }
        if self.sc.attacks.replay {
            self.broadcast(me, message);
            self.broadcast(me, message);
        }
        if self.sc.attacks.unsolicited_blocks
            && let Message::Propose { proposal, .. } = message
        {
            let junk = Proposal {
                view: proposal.view + 1 + self.rng.gen_range(0..1_000),
                height: proposal.height + 1,
                parent: proposal.digest(),
                parent_view: proposal.view,
                payload: payload(self.now, "unsolicited"),
            };
            self.broadcast(me, &Message::Block(junk));
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
        let mut done = 0usize;
        while let Some(action) = work.pop_front() {
            if self.dying[me as usize] && Some(done) == self.sc.crash_after_actions {
                // The power goes out here: the rest of the batch never happens.
                self.crash(me);
                return;
            }
            done += 1;
            if self.engines[me as usize].is_none() {
                return;
            }
            match action {
                Action::Send { to, message } => self.send(me, to, message),
                Action::Broadcast(message) => {
                    if !self.sc.honest(me) && self.sc.attacks.equivocate {
                        self.equivocate_vote(me, &message);
                    }
                    // Like the node driver: a block asked for may be on our own disk.
                    if let Message::Fetch(d) = &message
                        && let Some(p) = self.disks[me as usize].blocks.get(d).cloned()
                        && let Some(e) = self.engines[me as usize].as_mut()
                    {
                        work.extend(e.handle(Input::Message {
                            from: me,
                            message: Message::Block(p),
                        }));
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
                Action::Propose { view, parent, .. } => {
                    let parent_time = self.engines[me as usize]
                        .as_ref()
                        .and_then(|e| e.block(&parent))
                        .and_then(|p| payload_time(&p.payload))
                        .unwrap_or(0);
                    let time = self.now.max(parent_time + 1);
                    let honest = self.sc.honest(me);
                    let payload = if !honest && self.sc.attacks.invalid_payload && view % 2 == 0 {
                        b"not a payload".to_vec()
                    } else if !honest && self.sc.attacks.future_time {
                        payload(
                            self.now + 3_600_000,
                            &format!("view {view} from the future"),
                        )
                    } else {
                        payload(time, &format!("block of view {view} by {me}"))
                    };
                    if !honest && self.sc.attacks.equivocate {
                        self.equivocate_proposal(me, view, &payload);
                    }
                    if let Some(e) = self.engines[me as usize].as_mut() {
                        let more = e.propose(view, parent, payload);
                        if honest || !self.sc.attacks.equivocate {
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
                    let height = chain.len() as u64;
                    let disk = &mut self.disks[me as usize];
                    disk.blocks.insert(proposal.digest(), proposal.clone());
                    // Execution: a hash chain over the finalized digests (the faulty
                    // executor adds something of its own from height 3 on).
                    let mut h = Sha256::new();
                    h.update(disk.headers.last().map_or([0; 32], |d| d.0));
                    h.update(proposal.digest().0);
                    if self.sc.faulty_executor == Some(me) && height >= 3 {
                        h.update(b"a bug");
                    }
                    let header = Digest(h.finalize().into());
                    disk.headers.push(header);
                    self.out.finalized_at[me as usize].push((self.now, proposal.view));
                    if let Some(e) = self.engines[me as usize].as_mut() {
                        work.extend(e.handle(Input::Executed { height, header }));
                    }
                }
                Action::Offence { .. } => self.out.misbehaviour += 1,
                Action::Misbehaviour(m) => {
                    if m.contains("conflicts") {
                        self.out.conflicts.push(format!("validator {me}: {m}"));
                    } else if m.contains("refused the proposal") {
                        self.out.refused_payloads += 1;
                    } else {
                        self.out.misbehaviour += 1;
                    }
                }
                Action::ExecutionCertified(c) => {
                    self.disks[me as usize].certified.push((c.view, c.digest));
                }
                Action::Diverged(_) => {}
            }
        }
        // A batch shorter than the crash point: the power goes out after it.
        if self.dying[me as usize] {
            self.crash(me);
        }
    }

    /// The byzantine leader: two variants of its payload `base`, one to each half.
    fn equivocate_proposal(&mut self, me: ValidatorIndex, view: View, base: &[u8]) {
        let Some(e) = self.engines[me as usize].as_ref() else {
            return;
        };
        let tip = e.tip();
        let mut rivals = Vec::new();
        for (half, tag) in [(0, "A"), (1, "B")] {
            let proposal = Proposal {
                view,
                height: tip.height + 1,
                parent: tip.digest,
                parent_view: tip.view,
                payload: [base, format!(" equivocation {tag}").as_bytes()].concat(),
            };
            let signature = SimScheme::sign(
                &(me as u64),
                &self
                    .validators
                    .vote_bytes(VoteKind::Notarize, view, &proposal.digest()),
            );
            rivals.push(proposal.digest());
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
        // And a notarize vote for each rival, to everyone.
        for digest in rivals {
            let signature = SimScheme::sign(
                &(me as u64),
                &self
                    .validators
                    .vote_bytes(VoteKind::Notarize, view, &digest),
            );
            self.broadcast(
                me,
                &Message::Vote(Vote {
                    kind: VoteKind::Notarize,
                    view,
                    digest,
                    signer: me,
                    signature,
                }),
            );
        }
    }

    /// The byzantine voter: every vote it casts is followed by conflicting ones, for the rival
    /// proposals it saw in that view (or a made-up digest when it saw none), and a nullify
    /// beside each finalize and the other way round.
    fn equivocate_vote(&mut self, me: ValidatorIndex, message: &Message<SimScheme>) {
        let Message::Vote(v) = message else {
            return;
        };
        let rivals: Vec<Digest> = match self.seen.get(&v.view) {
            Some(seen) if seen.iter().any(|d| *d != v.digest) => {
                seen.iter().filter(|d| **d != v.digest).copied().collect()
            }
            _ => vec![Digest(self.rng.r#gen())],
        };
        let conflicting: Vec<(VoteKind, Digest)> = match v.kind {
            VoteKind::Notarize => rivals
                .into_iter()
                .map(|d| (VoteKind::Notarize, d))
                .collect(),
            VoteKind::Nullify => rivals
                .into_iter()
                .map(|d| (VoteKind::Finalize, d))
                .collect(),
            VoteKind::Finalize => vec![(VoteKind::Nullify, Digest::ZERO)],
            VoteKind::Execute => vec![(VoteKind::Execute, Digest(self.rng.r#gen()))],
        };
        for (kind, digest) in conflicting {
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
}
