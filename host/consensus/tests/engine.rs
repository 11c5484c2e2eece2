//! The engine driven by hand: the safety record survives a restart, and bad certificates,
//! votes with bad signatures and relayed votes are refused.

use gridledger_consensus::crypto::{SimScheme, VoteScheme};
use gridledger_consensus::types::bitmap;
use gridledger_consensus::{
    Action, Certificate, Config, Digest, Durable, Engine, Input, Message, Proposal, Tip,
    ValidatorSet, Vote, VoteKind,
};

fn set() -> ValidatorSet<SimScheme> {
    ValidatorSet::new((0..4).collect(), "test")
}

fn engine(me: u16, durable: Option<Durable>) -> Engine<SimScheme> {
    Engine::new(
        Config {
            me,
            secret: me as u64,
            validators: set(),
            timeout_ms: 100,
            max_timeout_ms: 1_000,
            keep_finalized: 16,
        },
        Tip::GENESIS,
        durable,
    )
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
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Misbehaviour(m) if m.contains("refused")))
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
            .any(|a| matches!(a, Action::Misbehaviour(m) if m.contains("bad Nullify vote signatures") && m.contains("[3]"))),
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
