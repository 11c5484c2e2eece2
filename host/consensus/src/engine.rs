//! Simplex consensus (Chan & Pass, "Simplex Consensus: A Simple and Fast Consensus Protocol",
//! TCC 2023) as a sans-IO state machine: [`Input`]s in, [`Action`]s out. No clock, no socket,
//! no disk: the driver delivers messages and timer expiries and carries out the actions in
//! order (a `Persist` before the sends that follow it). The same code runs under the seeded
//! network simulator ([`crate::sim`]) and behind QUIC.
//!
//! A view in brief: the leader proposes a block extending a notarized chain; validators
//! notarize the first valid proposal; `n - f` notarize votes make a notarization, on which
//! everyone moves to the next view and (unless it timed out) votes `finalize`; `n - f`
//! finalize votes finalize the block and its ancestors. A view whose timer fires gets
//! `nullify` votes instead; their certificate moves everyone on without a block. Finality takes
//! three network hops from the proposal.

use crate::crypto::VoteScheme;
use crate::execution;
use crate::safety::SafetyRecord;
use crate::types::{Certificate, Digest, Message, Proposal, ValidatorIndex, View, Vote, VoteKind};
use crate::validators::ValidatorSet;
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// The application's validity check of a proposal, run before this validator votes for it:
/// `Ok` or why not. It gets the proposal and its parent's block (`None` when the parent is
/// the finalized tip and no longer in memory, or genesis). It must be a function of its
/// inputs and the local clock: a proposal it refuses gets no vote and its view is nullified.
pub type PayloadCheck =
    Arc<dyn Fn(&Proposal, Option<&Proposal>) -> Result<(), String> + Send + Sync>;

/// A [`PayloadCheck`] that accepts every payload (the simulator's opaque payloads).
pub fn accept_any_payload() -> PayloadCheck {
    Arc::new(|_, _| Ok(()))
}

/// A validator's settings.
#[derive(Clone)]
pub struct Config<S: VoteScheme> {
    pub me: ValidatorIndex,
    pub secret: S::Secret,
    pub validators: ValidatorSet<S>,
    /// The first view timeout; it doubles with each view in a row that ends without a block.
    pub timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// Finalized blocks kept in memory to answer peers that fetch them, at most...
    pub keep_finalized: usize,
    /// ...and at most this many bytes of their payloads (always the last one).
    pub keep_finalized_bytes: usize,
    /// What the application requires of a payload before this validator votes for it.
    pub check: PayloadCheck,
}

/// The last finalized block, as the application committed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Tip {
    pub view: View,
    pub height: u64,
    pub digest: Digest,
}

impl Tip {
    pub const GENESIS: Tip = Tip {
        view: 0,
        height: 0,
        digest: Digest::ZERO,
    };
}

/// What the engine needs back after a crash: its view, what it signed, and the certificates
/// of the views after its finalized tip (wire-encoded). Without those, validators that all
/// restarted could never again vote for a block: a proposal must extend a notarized parent
/// across nullified views, and a view notarized before the restart, whose finalize votes
/// were already cast, can be neither re-notarized from memory nor nullified.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Durable {
    pub view: View,
    pub safety: SafetyRecord,
    pub certificates: Vec<Vec<u8>>,
    /// The latest finalization (wire-encoded). Its blocks may not be committed yet when the
    /// node stops (a crash between this write and the commit): on restart it is applied again.
    pub finality: Option<Vec<u8>>,
}

pub enum Input<S: VoteScheme> {
    /// A message from an authenticated peer.
    Message {
        from: ValidatorIndex,
        message: Message<S>,
    },
    /// The timer set for `view` fired.
    Timeout { view: View },
    /// The application committed the block at `height` into a header with this hash: vote
    /// for it (see [`crate::execution`]).
    Executed { height: u64, header: Digest },
}

#[derive(Debug)]
pub enum Action<S: VoteScheme> {
    Send {
        to: ValidatorIndex,
        message: Message<S>,
    },
    Broadcast(Message<S>),
    /// Deliver `Timeout { view }` after this long (replaces any earlier timer).
    SetTimer {
        view: View,
        after_ms: u64,
    },
    /// Write this to disk before carrying out the actions after it.
    Persist(Durable),
    /// Store this block before carrying out the actions after it (we are about to vote for
    /// it): after a restart it is served to peers that fetch it, from disk.
    PersistBlock(Proposal),
    /// It is our turn to lead `view`: build a payload on `parent` and call
    /// [`Engine::propose`].
    Propose {
        view: View,
        height: u64,
        parent: Digest,
    },
    /// This block is final. Emitted once per height, in height order; `certificate` is the
    /// finalization of this block or of a descendant (which finalizes its ancestors).
    Finalized {
        proposal: Proposal,
        certificate: Certificate<S>,
    },
    /// Something a peer did that is worth an operator's eye (equivocation, a refused payload,
    /// a block that conflicts with finality).
    Misbehaviour(String),
    /// Validator `from` sent something whose signature does not verify: a vote, a proposal or
    /// a certificate. No honest validator does (they verify what they pass on), so the driver
    /// may disconnect it for a while; what it sent has been dropped.
    Offence {
        from: ValidatorIndex,
        what: String,
    },
    /// A quorum certified the header this validator executed at the certificate's height
    /// (its `view`): what makes that header final to clients. Store it.
    ExecutionCertified(Certificate<S>),
    /// A quorum certified another header than ours at a height we executed. This validator
    /// has stopped voting for good; the operator must find out why.
    Diverged(String),
}

/// Votes gathered for one view.
struct Round<S: VoteScheme> {
    /// The leader's proposal this validator accepted (or is waiting to vote for).
    proposal: Option<Digest>,
    notarize: HashMap<Digest, BTreeMap<ValidatorIndex, S::Signature>>,
    nullify: BTreeMap<ValidatorIndex, S::Signature>,
    finalize: HashMap<Digest, BTreeMap<ValidatorIndex, S::Signature>>,
    /// Who has voted, per kind: the first vote of each signer counts, later ones are ignored.
    voted: HashMap<(VoteKind, ValidatorIndex), Digest>,
    /// The application refused the proposal (we nullified the view instead).
    refused: bool,
    /// The leader was caught proposing twice: further proposals of this view are dropped
    /// unchecked (each check is a pairing a byzantine leader could make us pay again and again).
    equivocated: bool,
    /// Validators whose vote in this view had a bad signature: their later votes are checked
    /// one by one before they count, so a bad vote cannot make us check a whole quorum again.
    suspects: BTreeSet<ValidatorIndex>,
}

impl<S: VoteScheme> Default for Round<S> {
    fn default() -> Self {
        Round {
            proposal: None,
            notarize: HashMap::new(),
            nullify: BTreeMap::new(),
            finalize: HashMap::new(),
            voted: HashMap::new(),
            refused: false,
            equivocated: false,
            suspects: BTreeSet::new(),
        }
    }
}

/// Views ahead of ours we collect votes for; a peer cannot make us hold more.
const MAX_VIEWS_AHEAD: View = 256;

pub struct Engine<S: VoteScheme> {
    cfg: Config<S>,
    view: View,
    safety: SafetyRecord,
    tip: Tip,
    rounds: BTreeMap<View, Round<S>>,
    blocks: HashMap<Digest, Proposal>,
    /// Finalized blocks kept for peers, oldest first, with their payload sizes: at most
    /// `keep_finalized` of them and [`KEEP_FINALIZED_BYTES`] of payload (at least one).
    finalized_window: VecDeque<(Digest, usize)>,
    finalized_window_bytes: usize,
    notarizations: BTreeMap<View, Certificate<S>>,
    nullifications: BTreeMap<View, Certificate<S>>,
    /// The highest finalization not yet applied (its chain is still being fetched).
    pending_finality: Option<Certificate<S>>,
    /// The finalization our tip came with, repeated to peers that fell behind.
    last_finality: Option<Certificate<S>>,
    fetching: BTreeSet<Digest>,
    /// Views in a row that ended by nullification (the timeout backs off with it).
    failed_views: u32,
    /// Timeouts so far in the current view (each re-arms the timer, doubled).
    timeouts_in_view: u32,
    proposed: Option<View>,
    propose_requested: Option<View>,
    execution: execution::Tally<S>,
    out: Vec<Action<S>>,
}

impl<S: VoteScheme> Engine<S> {
    /// A validator resuming from its last finalized block and what it had persisted (nothing
    /// on first start). Call [`Engine::start`] next.
    pub fn new(cfg: Config<S>, tip: Tip, durable: Option<Durable>) -> Engine<S> {
        let durable = durable.unwrap_or_default();
        let mut safety = durable.safety;
        safety.raise_floor(tip.view);
        let (mut notarizations, mut nullifications) = (BTreeMap::new(), BTreeMap::new());
        for bytes in &durable.certificates {
            // Our own disk, written after each was checked; one that no longer decodes is
            // dropped, and peers' certificates will do.
            if let Ok(Message::Certificate(c)) = crate::wire::decode::<S>(bytes)
                && c.view > tip.view
            {
                match c.kind {
                    VoteKind::Notarize => notarizations.insert(c.view, c),
                    VoteKind::Nullify => nullifications.insert(c.view, c),
                    VoteKind::Finalize | VoteKind::Execute => None,
                };
            }
        }
        // A finalization whose blocks were not all committed before the stop.
        let pending_finality =
            durable
                .finality
                .as_deref()
                .and_then(|b| match crate::wire::decode::<S>(b) {
                    Ok(Message::Certificate(c)) if c.kind == VoteKind::Finalize => Some(c),
                    _ => None,
                });
        let last_finality = pending_finality.clone();
        let pending_finality = pending_finality.filter(|c| c.view > tip.view);
        Engine {
            // Past every view a certificate on disk settled: the persisted view may predate the
            // last certificate (a crash between the two writes), and a validator that stays in
            // a view it can neither nullify (it voted to finalize) nor leave (it has that
            // view's notarization but would only move on receiving it) would stall with others.
            view: durable.view.max(tip.view + 1).max(
                notarizations
                    .keys()
                    .chain(nullifications.keys())
                    .max()
                    .map_or(0, |v| v + 1),
            ),
            cfg,
            safety,
            tip,
            rounds: BTreeMap::new(),
            blocks: HashMap::new(),
            finalized_window: VecDeque::new(),
            finalized_window_bytes: 0,
            notarizations,
            nullifications,
            pending_finality,
            last_finality,
            fetching: BTreeSet::new(),
            failed_views: 0,
            timeouts_in_view: 0,
            proposed: None,
            propose_requested: None,
            execution: execution::Tally::default(),
            out: Vec::new(),
        }
    }

    /// Why this validator stopped voting, if its execution diverged from a quorum's.
    pub fn diverged(&self) -> Option<&str> {
        self.execution.diverged()
    }

    /// Stops all signing for good: the node found, before this start, that its execution
    /// diverged (the record survives restarts until the operator rebuilds the node's state).
    pub fn halt(&mut self, why: String) {
        self.execution.halt(why);
    }

    /// A block in memory, by digest.
    pub fn block(&self, digest: &Digest) -> Option<&Proposal> {
        self.blocks.get(digest)
    }

    /// The blocks from `parent` back to (not including) the finalized tip: what a proposal
    /// on `parent` will be executed after. Empty if the chain is not all in memory.
    pub fn pending_chain(&self, parent: &Digest) -> Vec<&Proposal> {
        let mut out = Vec::new();
        let mut d = *parent;
        while d != self.tip.digest {
            match self.blocks.get(&d) {
                Some(p) if p.height > self.tip.height => {
                    out.push(p);
                    d = p.parent;
                }
                _ => return Vec::new(),
            }
        }
        out
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn tip(&self) -> Tip {
        self.tip
    }

    pub fn validators(&self) -> &ValidatorSet<S> {
        &self.cfg.validators
    }

    /// Enters the current view: arms its timer, and proposes if we lead it. Blocks named by
    /// certificates restored from disk are asked for (peers serve them from their stores).
    pub fn start(&mut self) -> Vec<Action<S>> {
        let missing: Vec<Digest> = self
            .notarizations
            .values()
            .map(|c| c.digest)
            .filter(|d| !self.blocks.contains_key(d))
            .collect();
        for d in missing {
            self.fetch(d);
        }
        self.advance_finality();
        self.enter_view(self.view);
        std::mem::take(&mut self.out)
    }

    pub fn handle(&mut self, input: Input<S>) -> Vec<Action<S>> {
        match input {
            Input::Message { from, message } => self.on_message(from, message),
            Input::Timeout { view } => self.on_timeout(view),
            Input::Executed { height, header } => self.on_executed(height, header),
        }
        std::mem::take(&mut self.out)
    }

    /// The driver's answer to [`Action::Propose`]: our block for `view`, built on `parent`
    /// (the one the action named). If a certificate that arrived since changed the parent, the
    /// payload (its time, what it leaves out) was built for the wrong one: nothing is proposed
    /// and a new `Propose` names the right parent.
    pub fn propose(&mut self, view: View, parent: Digest, payload: Vec<u8>) -> Vec<Action<S>> {
        if self.diverged().is_none()
            && view == self.view
            && self.proposed != Some(view)
            && self.leads(view)
            && let Some((now_parent, parent_view, height)) = self.parent_for(view)
        {
            if now_parent != parent {
                self.propose_requested = None;
                self.try_propose();
                return std::mem::take(&mut self.out);
            }
            let proposal = Proposal {
                view,
                height,
                parent,
                parent_view,
                payload,
            };
            let digest = proposal.digest();
            if self.safety.notarize(view, digest) {
                self.proposed = Some(view);
                let signature = self.sign(VoteKind::Notarize, view, &digest);
                self.out.push(Action::PersistBlock(proposal.clone()));
                self.persist();
                self.blocks.insert(digest, proposal.clone());
                self.round(view).proposal = Some(digest);
                self.out.push(Action::Broadcast(Message::Propose {
                    proposal,
                    signature: signature.clone(),
                }));
                self.count_vote(Vote {
                    kind: VoteKind::Notarize,
                    view,
                    digest,
                    signer: self.cfg.me,
                    signature,
                });
            }
        }
        std::mem::take(&mut self.out)
    }

    fn leads(&self, view: View) -> bool {
        self.cfg.validators.leader(view) == self.cfg.me
    }

    fn round(&mut self, view: View) -> &mut Round<S> {
        self.rounds.entry(view).or_default()
    }

    fn sign(&self, kind: VoteKind, view: View, digest: &Digest) -> S::Signature {
        S::sign(
            &self.cfg.secret,
            &self.cfg.validators.vote_bytes(kind, view, digest),
        )
    }

    fn persist(&mut self) {
        let certificates = self
            .notarizations
            .values()
            .chain(self.nullifications.values())
            .map(|c| crate::wire::encode::<S>(&Message::Certificate(c.clone())))
            .collect();
        let finality = self
            .pending_finality
            .as_ref()
            .or(self.last_finality.as_ref())
            .map(|c| crate::wire::encode::<S>(&Message::Certificate(c.clone())));
        self.out.push(Action::Persist(Durable {
            view: self.view,
            safety: self.safety.clone(),
            certificates,
            finality,
        }));
    }

    fn timeout_for_view(&self) -> u64 {
        let doublings = self.failed_views.saturating_add(self.timeouts_in_view);
        let factor = 1u64 << doublings.min(16);
        self.cfg
            .timeout_ms
            .saturating_mul(factor)
            .min(self.cfg.max_timeout_ms)
    }

    fn enter_view(&mut self, view: View) {
        self.view = view;
        self.timeouts_in_view = 0;
        self.persist();
        // Blocks still missing are asked for again once a view: a lost request or answer
        // must not leave us behind while views move on without timing out.
        for d in self.fetching.clone() {
            self.out.push(Action::Broadcast(Message::Fetch(d)));
        }
        self.out.push(Action::SetTimer {
            view,
            after_ms: self.timeout_for_view(),
        });
        self.try_propose();
        self.try_vote_proposal();
    }

    fn try_propose(&mut self) {
        let view = self.view;
        if !self.leads(view) || self.propose_requested == Some(view) {
            return;
        }
        if let Some((parent, _, height)) = self.parent_for(view) {
            self.propose_requested = Some(view);
            self.out.push(Action::Propose {
                view,
                height,
                parent,
            });
        }
    }

    /// The block a proposal in `view` must extend: the highest notarized view below it (or the
    /// finalized tip) with every view in between nullified. `None` if we cannot tell yet.
    fn parent_for(&self, view: View) -> Option<(Digest, View, u64)> {
        let mut v = view - 1;
        loop {
            if v == self.tip.view {
                return Some((self.tip.digest, v, self.tip.height + 1));
            }
            if v < self.tip.view {
                return None;
            }
            if let Some(cert) = self.notarizations.get(&v) {
                let parent = self.blocks.get(&cert.digest)?;
                return Some((cert.digest, v, parent.height + 1));
            }
            if !self.nullifications.contains_key(&v) {
                return None;
            }
            v -= 1;
        }
    }

    /// Whether `p` extends a valid parent for its view, as far as we know.
    fn extends_valid_parent(&self, p: &Proposal) -> bool {
        p.parent_view < p.view
            && self
                .parent_for(p.view)
                .is_some_and(|(d, v, h)| (d, v, h) == (p.parent, p.parent_view, p.height))
    }

    fn on_message(&mut self, from: ValidatorIndex, message: Message<S>) {
        if self.cfg.validators.public(from).is_none() {
            return;
        }
        match message {
            Message::Propose {
                proposal,
                signature,
            } => self.on_proposal(from, proposal, signature),
            Message::Vote(vote) => {
                // Votes travel from their signer only; a peer cannot speak for another.
                if vote.signer != from {
                    self.out.push(Action::Misbehaviour(format!(
                        "validator {from} relayed a vote signed as {}",
                        vote.signer
                    )));
                    return;
                }
                if vote.kind == VoteKind::Execute {
                    let outcomes = self.execution.count(vote, &self.cfg.validators);
                    self.on_execution(outcomes);
                } else {
                    self.count_vote(vote);
                }
            }
            Message::Certificate(cert) if cert.kind == VoteKind::Execute => {
                match self.execution.receive(cert, &self.cfg.validators) {
                    Ok(outcomes) => self.on_execution(outcomes),
                    Err(e) => self.out.push(Action::Offence {
                        from,
                        what: format!("validator {from} sent a bad {e}"),
                    }),
                }
            }
            Message::Certificate(cert) => self.on_certificate(cert, Some(from)),
            Message::Fetch(digest) => {
                if let Some(p) = self.blocks.get(&digest) {
                    self.out.push(Action::Send {
                        to: from,
                        message: Message::Block(p.clone()),
                    });
                }
            }
            Message::Block(p) => {
                let digest = p.digest();
                if self.fetching.remove(&digest) {
                    self.blocks.insert(digest, p);
                    self.on_new_block();
                }
            }
        }
    }

    fn on_proposal(&mut self, from: ValidatorIndex, p: Proposal, signature: S::Signature) {
        let view = p.view;
        if from != self.cfg.validators.leader(view)
            || view <= self.tip.view
            || view > self.view + MAX_VIEWS_AHEAD
        {
            return;
        }
        let digest = p.digest();
        // Seen already (a resend, or a replay by anyone): nothing to check again.
        if let Some(r) = self.rounds.get(&view)
            && (r.proposal == Some(digest) || (r.proposal.is_some() && r.equivocated))
        {
            return;
        }
        if !self
            .cfg
            .validators
            .verify_vote(from, VoteKind::Notarize, view, &digest, &signature)
        {
            self.out.push(Action::Offence {
                from,
                what: format!("leader {from} sent a proposal for view {view} with a bad signature"),
            });
            return;
        }
        let round = self.round(view);
        match round.proposal {
            Some(d) if d != digest => {
                // The second block is not kept: if a notarization names it, it is fetched.
                round.equivocated = true;
                self.out.push(Action::Misbehaviour(format!(
                    "leader {from} proposed two blocks in view {view}"
                )));
                return;
            }
            Some(_) => {}
            None => round.proposal = Some(digest),
        }
        // Keep it even if we do not vote for it: a notarization may name it.
        self.blocks.insert(digest, p);
        if self.fetching.remove(&digest) {
            self.on_new_block();
        }
        self.count_vote(Vote {
            kind: VoteKind::Notarize,
            view,
            digest,
            signer: from,
            signature,
        });
        self.try_vote_proposal();
    }

    /// A block we were waiting for arrived: it may complete a finalized chain, or be the parent
    /// our proposal or vote needs.
    fn on_new_block(&mut self) {
        self.advance_finality();
        self.try_propose();
        self.try_vote_proposal();
    }

    /// Notarizes the current view's proposal once its parent checks out.
    fn try_vote_proposal(&mut self) {
        let view = self.view;
        let Some(digest) = self.rounds.get(&view).and_then(|r| r.proposal) else {
            return;
        };
        if self.safety.notarized.get(&view) == Some(&digest)
            || !self.safety.may_notarize(view, &digest)
        {
            return;
        }
        let Some(p) = self.blocks.get(&digest) else {
            return;
        };
        if !self.extends_valid_parent(p) {
            // Maybe we only lack the parent's block: ask for it and retry when it comes.
            if let Some(cert) = self.notarizations.get(&p.parent_view)
                && cert.digest == p.parent
                && !self.blocks.contains_key(&p.parent)
            {
                self.fetch(p.parent);
            }
            return;
        }
        if self.rounds.get(&view).is_some_and(|r| r.refused) {
            return;
        }
        if let Err(why) = (self.cfg.check)(p, self.blocks.get(&p.parent)) {
            // No vote, and no waiting for the timer: the view is nullified now.
            self.round(view).refused = true;
            self.out.push(Action::Misbehaviour(format!(
                "refused the proposal of leader {} for view {view}: {why}",
                self.cfg.validators.leader(view)
            )));
            if self.safety.nullify(view) {
                self.cast(VoteKind::Nullify, view, Digest::ZERO);
            }
            return;
        }
        let p = p.clone();
        self.safety.notarize(view, digest);
        self.out.push(Action::PersistBlock(p));
        self.cast(VoteKind::Notarize, view, digest);
    }

    /// The application committed `height`: vote for its header, and see whether a quorum
    /// already certified it (or another).
    fn on_executed(&mut self, height: u64, header: Digest) {
        let outcomes = self.execution.executed(height, header);
        self.on_execution(outcomes);
        if self.diverged().is_none() {
            let signature = self.sign(VoteKind::Execute, height, &header);
            let vote = Vote {
                kind: VoteKind::Execute,
                view: height,
                digest: header,
                signer: self.cfg.me,
                signature,
            };
            self.out
                .push(Action::Broadcast(Message::Vote(vote.clone())));
            let outcomes = self.execution.count(vote, &self.cfg.validators);
            self.on_execution(outcomes);
        }
    }

    fn on_execution(&mut self, outcomes: Vec<execution::Outcome<S>>) {
        for o in outcomes {
            match o {
                execution::Outcome::Certified(cert) => {
                    self.out.push(Action::ExecutionCertified(cert));
                }
                execution::Outcome::Diverged(why) => {
                    self.out.push(Action::Diverged(why));
                }
                execution::Outcome::Reply(to, cert) if to != self.cfg.me => {
                    self.out.push(Action::Send {
                        to,
                        message: Message::Certificate(cert),
                    });
                }
                execution::Outcome::Reply(..) => {}
                execution::Outcome::Share(cert) => {
                    self.out.push(Action::Broadcast(Message::Certificate(cert)));
                }
                execution::Outcome::BadVotes(height, bad) => {
                    for from in bad {
                        self.out.push(Action::Offence {
                            from,
                            what: format!(
                                "validator {from} sent an execution vote for height {height} with a bad signature"
                            ),
                        });
                    }
                }
            }
        }
    }

    /// Signs a vote the safety record already allows, persists the record, sends the vote and
    /// counts it: the record is on disk before the vote leaves.
    fn cast(&mut self, kind: VoteKind, view: View, digest: Digest) {
        if self.diverged().is_some() {
            return;
        }
        let signature = self.sign(kind, view, &digest);
        self.persist();
        let vote = Vote {
            kind,
            view,
            digest,
            signer: self.cfg.me,
            signature,
        };
        self.out
            .push(Action::Broadcast(Message::Vote(vote.clone())));
        self.count_vote(vote);
    }

    fn count_vote(&mut self, vote: Vote<S>) {
        let view = vote.view;
        if view <= self.tip.view || view > self.view + MAX_VIEWS_AHEAD {
            return;
        }
        if (vote.kind == VoteKind::Nullify) != (vote.digest == Digest::ZERO) {
            return;
        }
        let already = self.has_certificate(vote.kind, view);
        let quorum = self.cfg.validators.quorum();
        if self
            .rounds
            .get(&view)
            .is_some_and(|r| r.suspects.contains(&vote.signer))
            && !self.cfg.validators.verify_vote(
                vote.signer,
                vote.kind,
                view,
                &vote.digest,
                &vote.signature,
            )
        {
            return;
        }
        let round = self.round(view);
        match round.voted.get(&(vote.kind, vote.signer)) {
            Some(d) if *d != vote.digest => {
                self.out.push(Action::Misbehaviour(format!(
                    "validator {} cast two {:?} votes in view {view}",
                    vote.signer, vote.kind
                )));
                return;
            }
            Some(_) => return,
            None => {}
        }
        round.voted.insert((vote.kind, vote.signer), vote.digest);
        let tally = match vote.kind {
            VoteKind::Notarize => round.notarize.entry(vote.digest).or_default(),
            VoteKind::Nullify => &mut round.nullify,
            VoteKind::Finalize => round.finalize.entry(vote.digest).or_default(),
            VoteKind::Execute => return,
        };
        tally.insert(vote.signer, vote.signature);
        if already || tally.len() < quorum {
            return;
        }
        let tally = tally.clone();
        match self
            .cfg
            .validators
            .try_certify(vote.kind, view, &vote.digest, &tally)
        {
            Ok(cert) => self.on_certificate(cert, None),
            Err(bad) => {
                let round = self.round(view);
                for i in &bad {
                    // The signer itself sent it (votes come only from their signer): drop the
                    // vote but let a good one from it count later, checked on arrival.
                    round.suspects.insert(*i);
                    round.voted.remove(&(vote.kind, *i));
                    for t in round
                        .notarize
                        .values_mut()
                        .chain(round.finalize.values_mut())
                        .chain(std::iter::once(&mut round.nullify))
                    {
                        t.remove(i);
                    }
                }
                for from in bad {
                    self.out.push(Action::Offence {
                        from,
                        what: format!(
                            "validator {from} sent a {:?} vote in view {view} with a bad signature",
                            vote.kind
                        ),
                    });
                }
            }
        }
    }

    /// Whether a certificate of this kind for `view` is already in hand (a finalization
    /// counts while it waits for its blocks).
    fn has_certificate(&self, kind: VoteKind, view: View) -> bool {
        match kind {
            VoteKind::Notarize => self.notarizations.contains_key(&view),
            VoteKind::Nullify => self.nullifications.contains_key(&view),
            VoteKind::Finalize => self
                .pending_finality
                .as_ref()
                .is_some_and(|c| c.view >= view),
            VoteKind::Execute => false,
        }
    }

    /// A certificate, formed here (`from` none) or received from `from` (checked first).
    fn on_certificate(&mut self, cert: Certificate<S>, from: Option<ValidatorIndex>) {
        let verify = from.is_some();
        let view = cert.view;
        // A notarization or nullification far ahead is not checked (a pairing) nor kept: a peer
        // could send any view. A finalization is: it is how a validator far behind catches up,
        // and only one higher than the one in hand is ever checked.
        if view <= self.tip.view
            || (verify && cert.kind != VoteKind::Finalize && view > self.view + MAX_VIEWS_AHEAD)
        {
            return;
        }
        let known = self.has_certificate(cert.kind, view);
        if known {
            return;
        }
        if let Some(from) = from
            && let Err(e) = self.cfg.validators.verify_certificate(&cert)
        {
            self.out.push(Action::Offence {
                from,
                what: format!(
                    "validator {from} sent a {:?} certificate for view {view} that does not verify: {e}",
                    cert.kind
                ),
            });
            return;
        }
        match cert.kind {
            VoteKind::Notarize => {
                let digest = cert.digest;
                self.notarizations.insert(view, cert.clone());
                self.persist();
                if !self.blocks.contains_key(&digest) {
                    self.fetch(digest);
                }
                if self.safety.finalize(view, digest) {
                    self.cast(VoteKind::Finalize, view, digest);
                }
                if view >= self.view {
                    self.failed_views = 0;
                    self.out.push(Action::Broadcast(Message::Certificate(cert)));
                    self.enter_view(view + 1);
                } else {
                    // It may be the parent a waiting proposal needs.
                    self.try_propose();
                    self.try_vote_proposal();
                }
            }
            VoteKind::Nullify => {
                self.nullifications.insert(view, cert.clone());
                self.persist();
                if view >= self.view {
                    self.failed_views += 1;
                    self.out.push(Action::Broadcast(Message::Certificate(cert)));
                    self.enter_view(view + 1);
                } else {
                    self.try_propose();
                    self.try_vote_proposal();
                }
            }
            VoteKind::Finalize => {
                if !verify {
                    self.out
                        .push(Action::Broadcast(Message::Certificate(cert.clone())));
                }
                self.pending_finality = Some(cert);
                self.advance_finality();
                if view >= self.view {
                    self.enter_view(view + 1);
                }
            }
            VoteKind::Execute => {}
        }
    }

    fn fetch(&mut self, digest: Digest) {
        if self.fetching.insert(digest) {
            self.out.push(Action::Broadcast(Message::Fetch(digest)));
        }
    }

    /// Applies the pending finalization once every block back to our tip is known.
    fn advance_finality(&mut self) {
        let Some(cert) = self.pending_finality.clone() else {
            return;
        };
        if cert.view <= self.tip.view {
            self.pending_finality = None;
            return;
        }
        let mut chain = Vec::new();
        let mut digest = cert.digest;
        loop {
            let Some(p) = self.blocks.get(&digest) else {
                self.fetch(digest);
                return;
            };
            if p.height <= self.tip.height + 1 {
                if p.height != self.tip.height + 1 || p.parent != self.tip.digest {
                    self.pending_finality = None;
                    self.out.push(Action::Misbehaviour(format!(
                        "a finalization for view {} conflicts with our finalized block at height {}; more than f validators are faulty",
                        cert.view, self.tip.height
                    )));
                    return;
                }
                chain.push(p.clone());
                break;
            }
            chain.push(p.clone());
            digest = p.parent;
        }
        self.pending_finality = None;
        self.last_finality = Some(cert.clone());
        for p in chain.into_iter().rev() {
            let digest = p.digest();
            self.tip = Tip {
                view: p.view,
                height: p.height,
                digest,
            };
            self.finalized_window.push_back((digest, p.payload.len()));
            self.finalized_window_bytes += p.payload.len();
            self.out.push(Action::Finalized {
                proposal: p,
                certificate: cert.clone(),
            });
        }
        self.prune();
        self.persist();
    }

    /// Drops what finality settled, keeping a window of finalized blocks for peers.
    fn prune(&mut self) {
        let floor = self.tip.view;
        self.safety.raise_floor(floor);
        self.rounds = self.rounds.split_off(&(floor + 1));
        self.notarizations = self.notarizations.split_off(&(floor + 1));
        self.nullifications = self.nullifications.split_off(&(floor + 1));
        while self.finalized_window.len() > 1
            && (self.finalized_window.len() > self.cfg.keep_finalized
                || self.finalized_window_bytes > self.cfg.keep_finalized_bytes)
        {
            if let Some((old, len)) = self.finalized_window.pop_front() {
                self.blocks.remove(&old);
                self.finalized_window_bytes -= len;
            }
        }
        let keep: BTreeSet<Digest> = self.finalized_window.iter().map(|(d, _)| *d).collect();
        self.blocks
            .retain(|d, p| p.view > floor || keep.contains(d));
    }

    fn on_timeout(&mut self, view: View) {
        if view != self.view {
            return;
        }
        // Also when re-arming after an earlier timeout (recording it again changes nothing):
        // votes and certificates may have been lost, so say again what we said and what moved
        // us here. Not if we voted to finalize this view.
        if self.safety.nullify(view) {
            self.cast(VoteKind::Nullify, view, Digest::ZERO);
        }
        // Our finalize votes for views not yet final, again: after every validator restarted
        // at once, the votes cast before the stop are gone from every memory but ours.
        if self.diverged().is_none() {
            let finalize: Vec<(View, Digest)> = self
                .safety
                .finalized
                .iter()
                .filter(|(v, _)| **v > self.tip.view)
                .map(|(v, d)| (*v, *d))
                .collect();
            // And our execution votes still short of a certificate (the latest few).
            let execute = self
                .execution
                .uncertified(16)
                .into_iter()
                .map(|(h, d)| (VoteKind::Execute, h, d));
            let finalize = finalize
                .into_iter()
                .map(|(v, d)| (VoteKind::Finalize, v, d));
            for (kind, v, d) in finalize.chain(execute).collect::<Vec<_>>() {
                let signature = self.sign(kind, v, &d);
                self.out.push(Action::Broadcast(Message::Vote(Vote {
                    kind,
                    view: v,
                    digest: d,
                    signer: self.cfg.me,
                    signature,
                })));
            }
        }
        // What a proposal in this view must extend: the highest notarization and the
        // nullifications after it. A peer that missed them (restarted, cut off) cannot vote
        // without them.
        let (from, notarized) = match self.notarizations.last_key_value() {
            Some((v, cert)) => (*v, Some(cert.clone())),
            None => (self.tip.view, None),
        };
        let chain = notarized
            .into_iter()
            .chain(self.nullifications.range(from..).map(|(_, c)| c.clone()));
        let certs: Vec<_> = chain
            .map(|c| Action::Broadcast(Message::Certificate(c)))
            .collect();
        self.out.extend(certs);
        if let Some(cert) = &self.last_finality {
            self.out
                .push(Action::Broadcast(Message::Certificate(cert.clone())));
        }
        for d in self.fetching.clone() {
            self.out.push(Action::Broadcast(Message::Fetch(d)));
        }
        // Our own vote may have completed a nullification and moved us on; if not, try again
        // later, waiting longer.
        if self.view == view {
            self.timeouts_in_view = self.timeouts_in_view.saturating_add(1);
            self.out.push(Action::SetTimer {
                view,
                after_ms: self.timeout_for_view(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SimScheme;

    #[test]
    fn finalized_blocks_kept_for_peers_are_bounded_in_bytes_as_well_as_in_count() {
        let mut e = Engine::<SimScheme>::new(
            Config {
                me: 0,
                secret: 0,
                validators: ValidatorSet::new((0..4).collect(), "test"),
                timeout_ms: 100,
                max_timeout_ms: 1_000,
                keep_finalized: 100,
                keep_finalized_bytes: 10_000,
                check: accept_any_payload(),
            },
            Tip::GENESIS,
            None,
        );
        fn finalize(e: &mut Engine<SimScheme>, h: u64, len: usize) -> Digest {
            let p = Proposal {
                view: h,
                height: h,
                parent: Digest::ZERO,
                parent_view: 0,
                payload: vec![0; len],
            };
            let d = p.digest();
            e.blocks.insert(d, p);
            e.finalized_window.push_back((d, len));
            e.finalized_window_bytes += len;
            e.tip = Tip {
                view: h,
                height: h,
                digest: d,
            };
            e.prune();
            d
        }
        let mut digests: Vec<Digest> = (1..=10).map(|h| finalize(&mut e, h, 3_000)).collect();
        // 10,000 bytes hold three of these payloads: the newest three stay, counted right.
        for (i, d) in digests.iter().enumerate() {
            assert_eq!(e.block(d).is_some(), i >= 7, "block {}", i + 1);
        }
        assert_eq!(e.finalized_window_bytes, 9_000);
        // A block larger than the bound alone is still kept: it is the one peers need next.
        digests.push(finalize(&mut e, 11, 50_000));
        assert!(e.block(&digests[10]).is_some());
        assert_eq!(e.finalized_window.len(), 1);
        assert_eq!(e.finalized_window_bytes, 50_000);
    }
}
