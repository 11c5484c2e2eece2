//! Agreement on what executing the finalized chain produced.
//!
//! Consensus orders payloads; it does not see what executing them wrote. After a validator
//! commits the block at height `h` it signs an `Execute` vote over that block's header hash
//! (the header commits to the state, transaction and receipt roots and, through its parent
//! hash, to every header before it). `n - f` such votes for one hash make an *execution
//! certificate*: the only thing that makes a header final to a client. Any two quorums share
//! an honest validator, so no two different headers at one height can both be certified while
//! at most `f` validators are faulty.
//!
//! A validator whose own header differs from a certified one has diverged: it stops voting for
//! good (the engine refuses to sign anything more) and the driver reports it. Nothing it
//! computes from then on is ever certified, so nothing it serves is ever final.
//!
//! State is bounded: votes are tallied only for heights in a window around our own, the first
//! vote of each signer per height counts, a received certificate is verified once (one
//! aggregate check) and only inside the window, and certificates are kept in memory for a
//! window of recent heights (the driver stores them all).

use crate::crypto::VoteScheme;
use crate::types::{Certificate, Digest, ValidatorIndex, Vote, VoteKind};
use crate::validators::ValidatorSet;
use std::collections::{BTreeMap, HashMap};

/// Heights above our executed height whose votes and certificates we keep (peers ahead of us).
pub const WINDOW_AHEAD: u64 = 256;
/// Certified heights kept in memory to answer late voters.
pub const KEEP_CERTIFIED: u64 = 1_024;

/// What the tally asks its engine to do.
pub enum Outcome<S: VoteScheme> {
    /// Our header at this height is certified: store the certificate.
    Certified(Certificate<S>),
    /// A quorum certified another header at a height we executed: stop.
    Diverged(String),
    /// Send this certificate to a validator that voted after it formed.
    Reply(ValidatorIndex, Certificate<S>),
    /// We formed this certificate from votes: send it to everyone (a vote of theirs may have
    /// been lost on the way to others).
    Share(Certificate<S>),
    /// Some votes in a quorum did not verify (their signers are named).
    BadVotes(u64, Vec<ValidatorIndex>),
}

pub struct Tally<S: VoteScheme> {
    /// Our header hash per executed height not yet certified (and the latest certified one).
    ours: BTreeMap<u64, Digest>,
    executed: u64,
    votes: BTreeMap<u64, HashMap<Digest, BTreeMap<ValidatorIndex, S::Signature>>>,
    voted: HashMap<(u64, ValidatorIndex), Digest>,
    /// Certificates by height: ours once matched, or waiting for us to execute the height.
    certified: BTreeMap<u64, Certificate<S>>,
    diverged: Option<String>,
}

impl<S: VoteScheme> Default for Tally<S> {
    fn default() -> Self {
        Tally {
            ours: BTreeMap::new(),
            executed: 0,
            votes: BTreeMap::new(),
            voted: HashMap::new(),
            certified: BTreeMap::new(),
            diverged: None,
        }
    }
}

impl<S: VoteScheme> Tally<S> {
    pub fn diverged(&self) -> Option<&str> {
        self.diverged.as_deref()
    }

    /// Marks this validator diverged (known from before a restart).
    pub fn halt(&mut self, why: String) {
        self.diverged.get_or_insert(why);
    }

    pub fn executed_height(&self) -> u64 {
        self.executed
    }

    fn in_window(&self, height: u64) -> bool {
        height > self.executed.saturating_sub(KEEP_CERTIFIED)
            && height <= self.executed + WINDOW_AHEAD
    }

    /// We executed `height` into a header with hash `header`. The caller signs and sends our
    /// vote (through [`Tally::count`] too).
    pub fn executed(&mut self, height: u64, header: Digest) -> Vec<Outcome<S>> {
        self.executed = self.executed.max(height);
        self.ours.insert(height, header);
        let mut out = Vec::new();
        if let Some(cert) = self.certified.get(&height).cloned() {
            self.check(cert, &mut out);
        }
        self.prune();
        out
    }

    /// A vote from `vote.signer` (already checked to be the sender).
    pub fn count(&mut self, vote: Vote<S>, validators: &ValidatorSet<S>) -> Vec<Outcome<S>> {
        let mut out = Vec::new();
        let height = vote.view;
        if let Some(cert) = self.certified.get(&height) {
            // A validator executing behind us (or restarted): hand it what it needs.
            out.push(Outcome::Reply(vote.signer, cert.clone()));
            return out;
        }
        if !self.in_window(height) || height == 0 {
            return out;
        }
        if self.voted.contains_key(&(height, vote.signer)) {
            return out;
        }
        self.voted.insert((height, vote.signer), vote.digest);
        let tally = self
            .votes
            .entry(height)
            .or_default()
            .entry(vote.digest)
            .or_default();
        tally.insert(vote.signer, vote.signature);
        if tally.len() < validators.quorum() {
            return out;
        }
        let tally = tally.clone();
        match validators.try_certify(VoteKind::Execute, height, &vote.digest, &tally) {
            Ok(cert) => {
                out.push(Outcome::Share(cert.clone()));
                self.check(cert, &mut out);
            }
            Err(bad) => {
                for i in &bad {
                    self.voted.remove(&(height, *i));
                    if let Some(t) = self.votes.get_mut(&height) {
                        for votes in t.values_mut() {
                            votes.remove(i);
                        }
                    }
                }
                out.push(Outcome::BadVotes(height, bad));
            }
        }
        out
    }

    /// Our executed heights still waiting for a certificate, the latest `max` of them (their
    /// votes are sent again: one may have been lost).
    pub fn uncertified(&self, max: usize) -> Vec<(u64, Digest)> {
        self.ours
            .iter()
            .rev()
            .filter(|(h, _)| !self.certified.contains_key(h))
            .take(max)
            .map(|(h, d)| (*h, *d))
            .collect()
    }

    /// A certificate a peer sent; `Err` if it does not verify.
    pub fn receive(
        &mut self,
        cert: Certificate<S>,
        validators: &ValidatorSet<S>,
    ) -> Result<Vec<Outcome<S>>, String> {
        let height = cert.view;
        if self.certified.contains_key(&height) || !self.in_window(height) || height == 0 {
            return Ok(Vec::new());
        }
        validators
            .verify_certificate(&cert)
            .map_err(|e| format!("execution certificate for height {height}: {e}"))?;
        let mut out = Vec::new();
        self.check(cert, &mut out);
        Ok(out)
    }

    /// A certificate in hand: compare it with our header, if we have executed its height.
    fn check(&mut self, cert: Certificate<S>, out: &mut Vec<Outcome<S>>) {
        let height = cert.view;
        self.votes.remove(&height);
        self.voted.retain(|(h, _), _| *h != height);
        match self.ours.get(&height) {
            Some(ours) if *ours == cert.digest => out.push(Outcome::Certified(cert.clone())),
            Some(ours) if self.diverged.is_none() => {
                let why = format!(
                    "at height {height} this node's header is {} but a quorum of validators certified {}",
                    ours.to_hex(),
                    cert.digest.to_hex()
                );
                self.diverged = Some(why.clone());
                out.push(Outcome::Diverged(why));
            }
            _ => {}
        }
        self.certified.insert(height, cert);
    }

    fn prune(&mut self) {
        let keep_from = self.executed.saturating_sub(KEEP_CERTIFIED) + 1;
        self.certified = self.certified.split_off(&keep_from);
        self.votes = self.votes.split_off(&keep_from);
        self.voted.retain(|(h, _), _| *h >= keep_from);
        // Our hashes for certified heights are no longer needed, but the latest one is: it
        // answers late voters for that height.
        let certified = &self.certified;
        let executed = self.executed;
        self.ours
            .retain(|h, _| *h >= keep_from && (!certified.contains_key(h) || *h == executed));
    }
}
