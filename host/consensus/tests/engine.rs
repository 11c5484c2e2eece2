//! The engine driven by hand: the safety record survives a restart, and bad certificates,
//! votes with bad signatures and relayed votes are refused.

use gridledger_consensus::crypto::{SimScheme, VoteScheme};
use gridledger_consensus::engine::accept_any_payload;
use gridledger_consensus::types::bitmap;
use gridledger_consensus::{
    Action, Certificate, Config, Digest, Durable, Engine, Input, Message, PayloadCheck, Proposal,
    Tip, ValidatorSet, Vote, VoteKind,
};
use std::sync::Arc;

fn set() -> ValidatorSet<SimScheme> {
    ValidatorSet::new((0..4).collect(), "test")
}

fn engine(me: u16, durable: Option<Durable>) -> Engine<SimScheme> {
    engine_checking(me, durable, accept_any_payload())
}

fn engine_checking(me: u16, durable: Option<Durable>, check: PayloadCheck) -> Engine<SimScheme> {
    Engine::new(
        Config {
            me,
            secret: me as u64,
            validators: set(),
            timeout_ms: 100,
            max_timeout_ms: 1_000,
            keep_finalized: 16,
            keep_finalized_bytes: usize::MAX,
            check,
        },
        Tip::GENESIS,
        durable,
    )
}

fn vote(kind: VoteKind, view: u64, digest: Digest, signer: u16) -> Message<SimScheme> {
    Message::Vote(Vote {
        kind,
        view,
        digest,
        signer,
        signature: SimScheme::sign(&(signer as u64), &set().vote_bytes(kind, view, &digest)),
    })
}

fn nullify_votes(actions: &[Action<SimScheme>]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Broadcast(Message::Vote(v)) if v.kind == VoteKind::Nullify))
        .count()
}

/// View 1 is led by validator 1; a block from it on genesis, signed.
fn proposal(tag: &str) -> Message<SimScheme> {
    let proposal = Proposal {
        view: 1,
        height: 1,
        parent: Digest::ZERO,
        parent_view: 0,
        payload: tag.as_bytes().to_vec(),
    };
    let signature = SimScheme::sign(
        &1,
        &set().vote_bytes(VoteKind::Notarize, 1, &proposal.digest()),
    );
    Message::Propose {
        proposal,
        signature,
    }
}

fn notarize_votes(actions: &[Action<SimScheme>]) -> Vec<Digest> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast(Message::Vote(v)) if v.kind == VoteKind::Notarize => Some(v.digest),
            _ => None,
        })
        .collect()
}

fn last_durable(actions: &[Action<SimScheme>]) -> Option<Durable> {
    actions.iter().rev().find_map(|a| match a {
        Action::Persist(d) => Some(d.clone()),
        _ => None,
    })
}

#[test]
fn a_restarted_validator_never_votes_against_itself() {
    let mut e = engine(2, None);
    let mut durable = last_durable(&e.start());
    let actions = e.handle(Input::Message {
        from: 1,
        message: proposal("A"),
    });
    let voted = notarize_votes(&actions);
    assert_eq!(voted.len(), 1, "votes for the leader's block");
    // The record reaches disk before the vote leaves.
    let persist_at = actions
        .iter()
        .position(|a| matches!(a, Action::Persist(d) if d.safety.notarized.contains_key(&1)));
    let vote_at = actions
        .iter()
        .position(|a| matches!(a, Action::Broadcast(Message::Vote(_))));
    assert!(persist_at < vote_at, "{persist_at:?} before {vote_at:?}");
    durable = last_durable(&actions).or(durable);

    // Crash; restart from what was persisted; the equivocating leader now shows block B.
    let mut e = engine(2, durable);
    e.start();
    let actions = e.handle(Input::Message {
        from: 1,
        message: proposal("B"),
    });
    assert!(
        notarize_votes(&actions).is_empty(),
        "no second block in view 1"
    );
    // Without the record it would have voted: the record is what stops it.
    let mut fresh = engine(2, None);
    fresh.start();
    let actions = fresh.handle(Input::Message {
        from: 1,
        message: proposal("B"),
    });
    assert_eq!(notarize_votes(&actions).len(), 1);
}

#[test]
fn proposals_from_non_leaders_and_relayed_votes_are_refused() {
    let mut e = engine(2, None);
    e.start();
    // Validator 3 is not view 1's leader.
    let actions = e.handle(Input::Message {
        from: 3,
        message: proposal("A"),
    });
    assert!(notarize_votes(&actions).is_empty());
    // Validator 3 relays a vote signed as validator 0.
    let d = Digest([9; 32]);
    let vote = Vote {
        kind: VoteKind::Notarize,
        view: 1,
        digest: d,
        signer: 0,
        signature: SimScheme::sign(&0, &set().vote_bytes(VoteKind::Notarize, 1, &d)),
    };
    let actions = e.handle(Input::Message {
        from: 3,
        message: Message::Vote(vote),
    });
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Misbehaviour(m) if m.contains("relayed")))
    );
}

#[test]
fn certificates_that_do_not_verify_change_nothing() {
    let mut e = engine(2, None);
    e.start();
    let d = Digest::ZERO;
    let msg = set().vote_bytes(VoteKind::Nullify, 1, &d);
    let good = SimScheme::aggregate(&[
        &SimScheme::sign(&0, &msg),
        &SimScheme::sign(&1, &msg),
        &SimScheme::sign(&3, &msg),
    ])
    .unwrap();
    let cert = |signers: Vec<u8>| Certificate::<SimScheme> {
        kind: VoteKind::Nullify,
        view: 1,
        digest: d,
        signers,
        signature: good.clone(),
    };
    for bad in [
        bitmap([0, 1], 4),    // too few
        bitmap([0, 1, 2], 4), // forged bitmap
    ] {
        let actions = e.handle(Input::Message {
            from: 3,
            message: Message::Certificate(cert(bad)),
        });
        // The sender is named as the offender: the driver may disconnect it.
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Offence { from: 3, what } if what.contains("does not verify"))),
            "{actions:?}"
        );
        assert_eq!(e.view(), 1, "no view change on a bad certificate");
    }
    e.handle(Input::Message {
        from: 3,
        message: Message::Certificate(cert(bitmap([0, 1, 3], 4))),
    });
    assert_eq!(e.view(), 2, "a good nullification moves the view on");
}

#[test]
fn a_vote_with_a_bad_signature_does_not_count() {
    let mut e = engine(2, None);
    e.start();
    // View 1 times out: validator 2 votes to nullify it.
    e.handle(Input::Timeout { view: 1 });
    let msg = set().vote_bytes(VoteKind::Nullify, 1, &Digest::ZERO);
    let vote = |signer: u16, key: u64| {
        Message::Vote(Vote {
            kind: VoteKind::Nullify,
            view: 1,
            digest: Digest::ZERO,
            signer,
            signature: SimScheme::sign(&key, &msg),
        })
    };
    e.handle(Input::Message {
        from: 0,
        message: vote(0, 0),
    });
    // Validator 3's vote carries a signature by another key: three votes are in, a quorum by
    // count, but the aggregate fails, the bad vote is found, and no certificate forms.
    let actions = e.handle(Input::Message {
        from: 3,
        message: vote(3, 1),
    });
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Offence { from: 3, what } if what.contains("Nullify vote") && what.contains("bad signature"))),
        "{actions:?}"
    );
    assert_eq!(e.view(), 1, "no nullification from a forged vote");
    // A good vote from the same validator still counts afterwards.
    e.handle(Input::Message {
        from: 3,
        message: vote(3, 3),
    });
    assert_eq!(e.view(), 2);
}

/// Each payload rule the application enforces: a proposal it refuses gets no notarize vote,
/// and the view is nullified at once (not after the timer); one it accepts gets the vote.
#[test]
fn a_proposal_the_application_refuses_gets_no_vote_and_its_view_is_nullified() {
    let check: PayloadCheck = Arc::new(|p, parent| {
        assert!(parent.is_none(), "genesis is the parent");
        match p.payload.as_slice() {
            b"good" => Ok(()),
            b"future" => Err("block time is 3600000 ms ahead of this validator's clock".into()),
            b"huge" => Err("2001 transactions, at most 2000 allowed".into()),
            _ => Err("the payload does not decode".into()),
        }
    });
    for bad in ["future", "huge", "garbage"] {
        let mut e = engine_checking(2, None, check.clone());
        e.start();
        let actions = e.handle(Input::Message {
            from: 1,
            message: proposal(bad),
        });
        assert!(notarize_votes(&actions).is_empty(), "{bad}: no vote");
        assert_eq!(nullify_votes(&actions), 1, "{bad}: nullified at once");
        assert!(
            actions.iter().any(
                |a| matches!(a, Action::Misbehaviour(m) if m.contains("refused the proposal"))
            ),
            "{bad}: reported"
        );
    }
    let mut e = engine_checking(2, None, check);
    e.start();
    let actions = e.handle(Input::Message {
        from: 1,
        message: proposal("good"),
    });
    assert_eq!(notarize_votes(&actions).len(), 1);
    assert_eq!(nullify_votes(&actions), 0);
}

/// A block nobody asked for is not kept, so it cannot become part of the chain a leader
/// builds on (and keep the transactions it names out of proposals).
#[test]
fn an_unsolicited_block_is_not_kept() {
    let mut e = engine(2, None);
    e.start();
    let junk = Proposal {
        view: 9,
        height: 1,
        parent: Digest::ZERO,
        parent_view: 0,
        payload: b"names someone else's transactions".to_vec(),
    };
    let digest = junk.digest();
    e.handle(Input::Message {
        from: 3,
        message: Message::Block(junk),
    });
    assert!(e.block(&digest).is_none());
    assert!(e.pending_chain(&digest).is_empty());
}

/// Execution certificates: our vote goes out when we executed a height; a quorum for our header
/// is stored; a quorum for another header at a height we executed stops all our voting.
#[test]
fn execution_votes_certify_our_header_and_a_different_one_stops_voting() {
    let ours = Digest([7; 32]);
    let theirs = Digest([8; 32]);
    let mut e = engine(2, None);
    e.start();
    let actions = e.handle(Input::Executed {
        height: 1,
        header: ours,
    });
    assert!(actions.iter().any(|a| matches!(a, Action::Broadcast(Message::Vote(v)) if v.kind == VoteKind::Execute && v.digest == ours && v.view == 1)));
    e.handle(Input::Message {
        from: 0,
        message: vote(VoteKind::Execute, 1, ours, 0),
    });
    let actions = e.handle(Input::Message {
        from: 1,
        message: vote(VoteKind::Execute, 1, ours, 1),
    });
    let certified: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::ExecutionCertified(c) => Some((c.view, c.digest)),
            _ => None,
        })
        .collect();
    assert_eq!(certified, vec![(1, ours)]);
    assert!(
        set()
            .verify_certificate(
                match actions
                    .iter()
                    .find(|a| matches!(a, Action::ExecutionCertified(_)))
                {
                    Some(Action::ExecutionCertified(c)) => c,
                    _ => unreachable!(),
                }
            )
            .is_ok()
    );
    // A late voter gets the certificate back.
    let actions = e.handle(Input::Message {
        from: 3,
        message: vote(VoteKind::Execute, 1, ours, 3),
    });
    assert!(actions.iter().any(|a| matches!(a, Action::Send { to: 3, message: Message::Certificate(c) } if c.kind == VoteKind::Execute)));

    // Height 2: the other three certify another header than ours.
    e.handle(Input::Executed {
        height: 2,
        header: ours,
    });
    for i in [0, 1] {
        e.handle(Input::Message {
            from: i,
            message: vote(VoteKind::Execute, 2, theirs, i),
        });
    }
    let actions = e.handle(Input::Message {
        from: 3,
        message: vote(VoteKind::Execute, 2, theirs, 3),
    });
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Diverged(m) if m.contains("height 2")))
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::ExecutionCertified(_)))
    );
    assert!(e.diverged().is_some());
    // From now on it signs nothing: not a proposal's vote, not a nullify, not an execution vote.
    let mut all = e.handle(Input::Message {
        from: 1,
        message: proposal("A"),
    });
    all.extend(e.handle(Input::Timeout { view: e.view() }));
    all.extend(e.handle(Input::Executed {
        height: 3,
        header: ours,
    }));
    assert!(
        !all.iter()
            .any(|a| matches!(a, Action::Broadcast(Message::Vote(_)))),
        "{all:?}"
    );
}

/// A finalization persisted before the stop, whose blocks were not committed yet, is applied
/// again on restart (from the blocks on disk): nothing is lost in that window.
#[test]
fn a_finalization_persisted_before_a_crash_is_applied_after_it() {
    let mut e = engine(2, None);
    e.start();
    let Message::Propose { proposal: p, .. } = proposal("A") else {
        unreachable!()
    };
    let digest = p.digest();
    let mut durable = None;
    let mut actions = e.handle(Input::Message {
        from: 1,
        message: proposal("A"),
    });
    for i in [0, 3] {
        actions.extend(e.handle(Input::Message {
            from: i,
            message: vote(VoteKind::Notarize, 1, digest, i),
        }));
    }
    for i in [0, 1] {
        actions.extend(e.handle(Input::Message {
            from: i,
            message: vote(VoteKind::Finalize, 1, digest, i),
        }));
    }
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Finalized { .. }))
    );
    durable = last_durable(&actions).or(durable);
    let durable = durable.unwrap();
    assert!(durable.finality.is_some(), "the finalization is on disk");
    // The crash came before the commit: the tip is still genesis. The engine asks for the
    // block (the driver finds it in its own store) and finalizes it again.
    let mut e = engine(2, Some(durable));
    let actions = e.start();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Broadcast(Message::Fetch(d)) if *d == digest))
    );
    let actions = e.handle(Input::Message {
        from: 2,
        message: Message::Block(p.clone()),
    });
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::Finalized { proposal, .. } if proposal.digest() == digest)
        ),
        "{actions:?}"
    );
}
