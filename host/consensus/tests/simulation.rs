//! The engine under the seeded network simulator. `GRIDLEDGER_SIM_SEEDS` sets how many seeds
//! each randomized test runs (CI runs the default; `GRIDLEDGER_SIM_SEEDS=5000 cargo test
//! --release -p gridledger-consensus --test simulation` runs many more).

use gridledger_consensus::sim::{Attacks, Crash, Partition, Scenario, run};
use gridledger_consensus::{ValidatorIndex, View};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seeds(default: u64) -> u64 {
    std::env::var("GRIDLEDGER_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn all(n: usize) -> Vec<ValidatorIndex> {
    (0..n as ValidatorIndex).collect()
}

/// Views within which the chain must finalize again once the network is whole: a few
/// rotations of leaders, enough to pass crashed or byzantine leaders and resynchronize views.
const VIEWS_TO_RECOVER: View = 12;

#[test]
fn a_calm_network_finalizes_a_block_every_view() {
    let sc = Scenario::calm(4, 1);
    let out = run(&sc);
    out.check_agreement(&all(4)).unwrap();
    let heights: Vec<usize> = out.chains.iter().map(|c| c.len()).collect();
    // 5 s at 1–20 ms a hop and 3 hops a block: hundreds of blocks, and no view wasted.
    assert!(heights.iter().all(|&h| h > 100), "heights {heights:?}");
    let chain = &out.chains[0];
    let gaps: Vec<_> = chain
        .windows(2)
        .filter(|w| w[1].0 != w[0].0 + 1)
        .map(|w| (w[0].0, w[1].0))
        .collect();
    assert!(
        gaps.is_empty() && chain[0].0 == 1,
        "no view was skipped on a calm network: {gaps:?} first {:?} last {:?}",
        chain[0],
        chain.last(),
    );
    assert_eq!(out.misbehaviour, 0);
}

#[test]
fn runs_are_deterministic() {
    let mut sc = Scenario::calm(4, 7);
    sc.loss_per_mille = 50;
    sc.max_delay_ms = 80;
    let (a, b) = (run(&sc), run(&sc));
    assert_eq!(a.chains, b.chains);
    assert_eq!(a.messages_sent, b.messages_sent);
    sc.seed = 8;
    assert_ne!(run(&sc).chains, a.chains, "the seed matters");
}

#[test]
fn a_silent_leader_costs_its_views_only() {
    let mut sc = Scenario::calm(4, 3);
    sc.crashes.push(Crash {
        node: 2,
        at_ms: 0,
        restart_ms: None,
    });
    let out = run(&sc);
    let honest = [0, 1, 3];
    out.check_agreement(&honest).unwrap();
    let chain = &out.chains[0];
    assert!(chain.len() > 30, "height {}", chain.len());
    assert!(
        chain.iter().all(|(v, _)| v % 4 != 2),
        "no block from the dead leader's views"
    );
}

#[test]
fn two_of_four_down_stops_finality_without_forking_and_it_resumes() {
    let mut sc = Scenario::calm(4, 5);
    sc.duration_ms = 8_000;
    for node in [1, 2] {
        sc.crashes.push(Crash {
            node,
            at_ms: 1_000,
            restart_ms: if node == 1 { Some(4_000) } else { None },
        });
    }
    let out = run(&sc);
    out.check_agreement(&[0, 1, 3]).unwrap();
    for &i in &[0usize, 3] {
        let stalled = out.finalized_at[i]
            .iter()
            .filter(|(t, _)| (1_100..4_000).contains(t))
            .count();
        assert_eq!(
            stalled, 0,
            "validator {i} finalized with only two of four up"
        );
    }
    let after = out.views_to_finality_after_heal(&[0, 1, 3]);
    assert!(
        after.is_some_and(|v| v <= VIEWS_TO_RECOVER),
        "finality {after:?} views after validator 1 returned"
    );
}

/// Random networks with one fault at a time within `f`: a byzantine equivocator, or crashes
/// and restarts, plus delay, reordering, loss and healing partitions.
fn random_scenario(seed: u64) -> Scenario {
    let mut r = StdRng::seed_from_u64(seed);
    let n = if r.gen_bool(0.25) { 7 } else { 4 };
    let f = (n - 1) / 3;
    let mut sc = Scenario::calm(n, seed);
    sc.duration_ms = 60_000;
    sc.stop_when_recovered = true;
    sc.max_delay_ms = r.gen_range(5..120);
    sc.loss_per_mille = r.gen_range(0..100);
    sc.timeout_ms = 300;
    // A partition that heals by 3 s: up to half the validators cut off.
    let from = r.gen_range(0..1_500);
    let mut side: Vec<ValidatorIndex> = all(n);
    side.retain(|_| r.gen_bool(0.4));
    sc.partitions.push(Partition {
        from_ms: from,
        until_ms: from + r.gen_range(200..1_500),
        side,
    });
    if r.gen_bool(0.5) {
        sc.byzantine = Some(r.gen_range(0..n as ValidatorIndex));
        sc.attacks = Attacks {
            equivocate: r.gen_bool(0.7),
            future_time: r.gen_bool(0.3),
            invalid_payload: r.gen_bool(0.3),
            unsolicited_blocks: r.gen_bool(0.3),
            replay: r.gen_bool(0.3),
        };
    } else if r.gen_bool(0.5) {
        // Crashes strike between two actions of a batch, not only between batches.
        sc.crash_after_actions = Some(r.gen_range(0..6));
    }
    let crashes = if sc.byzantine.is_some() { 0 } else { f };
    for k in 0..crashes {
        let at = r.gen_range(0..2_500);
        sc.crashes.push(Crash {
            node: ((seed as usize + k) % n) as ValidatorIndex,
            at_ms: at,
            restart_ms: Some(at + r.gen_range(100..1_000)),
        });
    }
    sc
}

#[test]
fn random_networks_never_fork_and_recover_after_healing() {
    let mut noticed = 0;
    for seed in 0..seeds(150) {
        let sc = random_scenario(seed);
        let out = run(&sc);
        let honest: Vec<ValidatorIndex> = all(sc.n)
            .into_iter()
            .filter(|i| Some(*i) != sc.byzantine)
            .collect();
        if let Err(e) = out.check_agreement(&honest) {
            panic!("seed {seed}: {e}\n{sc:?}");
        }
        if let Err(e) = out.check_execution(&honest) {
            panic!("seed {seed}: {e}\n{sc:?}");
        }
        let after = out.views_to_finality_after_heal(&honest);
        assert!(
            after.is_some_and(|v| v <= VIEWS_TO_RECOVER),
            "seed {seed}: finality {after:?} views after healing (at view {})\n{sc:?}",
            out.view_at_heal
        );
        if sc.byzantine.is_some() {
            noticed += out.misbehaviour;
        }
    }
    assert!(
        noticed > 0,
        "the byzantine validator's equivocation went unnoticed"
    );
}

/// A byzantine validator that does everything at once — two blocks per view and votes for
/// both, conflicting votes for the rivals it sees, blocks from an hour ahead, payloads that do
/// not parse, blocks nobody asked for, and every message replayed twice — never splits the
/// honest validators, never gets a bad payload finalized, and costs only its own views.
#[test]
fn a_byzantine_validator_with_every_attack_never_forks_or_stalls() {
    let mut refused = 0;
    for seed in 0..seeds(40) {
        let mut r = StdRng::seed_from_u64(seed ^ 0xbad);
        let mut sc = Scenario::calm(4, seed);
        sc.duration_ms = 3_000;
        sc.max_delay_ms = r.gen_range(5..60);
        sc.loss_per_mille = r.gen_range(0..50);
        sc.byzantine = Some(r.gen_range(0..4));
        sc.attacks = Attacks::all();
        let out = run(&sc);
        let honest: Vec<ValidatorIndex> = all(4)
            .into_iter()
            .filter(|i| Some(*i) != sc.byzantine)
            .collect();
        out.check_agreement(&honest)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        out.check_execution(&honest)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for &i in &honest {
            let chain = &out.chains[i as usize];
            // 3 s with a quarter of the views lost to the attacker, delays up to 60 ms and
            // loss: still a steady chain, and one still growing at the end.
            assert!(
                chain.len() > 10,
                "seed {seed}: validator {i} finalized {}",
                chain.len()
            );
            let last = out.finalized_at[i as usize].last().map_or(0, |f| f.0);
            assert!(
                last > 2_000,
                "seed {seed}: validator {i} last finalized at {last} ms"
            );
            assert!(
                !out.certified[i as usize].is_empty(),
                "seed {seed}: validator {i} certified nothing"
            );
            // The byzantine leader's views never finalize one of its bad blocks: every
            // finalized block of its views would have to be a valid one, and it sends none.
            let leader_views = chain
                .iter()
                .filter(|(v, _)| (*v % 4) as ValidatorIndex == sc.byzantine.unwrap())
                .count();
            assert_eq!(leader_views, 0, "seed {seed}: a bad block was finalized");
        }
        refused += out.refused_payloads;
    }
    assert!(refused > 0, "no payload was ever refused");
}

/// A validator whose execution differs (from height 3) notices when the others' certificate
/// arrives, stops voting, and never stores a certificate over its own wrong headers; the
/// other three carry on finalizing and certifying.
#[test]
fn a_validator_that_executes_differently_stops_voting_and_the_rest_carry_on() {
    for seed in 0..seeds(10) {
        let mut sc = Scenario::calm(4, seed);
        sc.duration_ms = 3_000;
        sc.faulty_executor = Some(2);
        let out = run(&sc);
        let honest = [0, 1, 3];
        out.check_agreement(&all(4)).unwrap();
        out.check_execution(&honest).unwrap();
        let why = out.diverged[2].as_deref().expect("validator 2 noticed");
        // At height 3, or a later one whose certificate reached it first.
        let at: u64 = why
            .strip_prefix("at height ")
            .and_then(|r| r.split(' ').next())
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("{why}"));
        assert!(at >= 3, "{why}");
        assert!(out.certified[2].iter().all(|(h, _)| *h < 3));
        for i in honest.map(usize::from) {
            assert!(out.diverged[i].is_none());
            let top = out.certified[i].iter().map(|c| c.0).max().unwrap_or(0);
            // Without validator 2's votes and proposals (its views time out): fewer blocks.
            assert!(top > 20, "seed {seed}: validator {i} certified up to {top}");
        }
        let b0 = &out.headers[0];
        assert_ne!(out.headers[2][2], b0[2], "its header at 3 differs");
        assert_eq!(out.headers[2][1], b0[1], "and the one before does not");
    }
}

/// The power goes out on every validator at once, in the middle of a batch of actions (after
/// k of them: between persisting the raised floor and committing, between a commit and its
/// vote, …): from what is on disk, they all finalize and certify again.
#[test]
fn a_power_cut_between_any_two_actions_recovers() {
    for seed in 0..seeds(40) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xc0ffee);
        let mut sc = Scenario::calm(4, seed);
        sc.duration_ms = 6_000;
        sc.max_delay_ms = rng.gen_range(5..40);
        sc.crash_after_actions = Some((seed % 8) as usize);
        let cut = rng.gen_range(1_000..2_000);
        for node in 0..4 {
            sc.crashes.push(Crash {
                node,
                at_ms: cut,
                restart_ms: Some(cut + 200 + rng.gen_range(0..400)),
            });
        }
        let out = run(&sc);
        out.check_agreement(&all(4)).unwrap();
        out.check_execution(&all(4)).unwrap();
        let after = out.views_to_finality_after_heal(&all(4));
        assert!(
            after.is_some_and(|v| v <= VIEWS_TO_RECOVER),
            "seed {seed}: finality {after:?} views after the restart"
        );
        let certified_after = out.certified[0]
            .iter()
            .any(|(h, _)| *h as usize >= out.chains[0].len().saturating_sub(20));
        assert!(certified_after, "seed {seed}: certificates resumed");
    }
}

#[test]
fn more_faults_than_f_may_stall_but_never_fork() {
    // Safety holds under any network behaviour: two faults among four (a byzantine validator
    // and a partitioned one), long partitions, heavy loss.
    for seed in 0..seeds(60) {
        let mut r = StdRng::seed_from_u64(seed ^ 0xfeed);
        let mut sc = Scenario::calm(4, seed);
        sc.duration_ms = 4_000;
        sc.max_delay_ms = r.gen_range(5..300);
        sc.loss_per_mille = r.gen_range(0..300);
        sc.byzantine = Some(r.gen_range(0..4));
        for _ in 0..3 {
            let from = r.gen_range(0..3_000);
            sc.partitions.push(Partition {
                from_ms: from,
                until_ms: from + r.gen_range(100..2_000),
                side: vec![r.gen_range(0..4), r.gen_range(0..4)],
            });
        }
        let honest: Vec<ValidatorIndex> = all(4)
            .into_iter()
            .filter(|i| Some(*i) != sc.byzantine)
            .collect();
        if let Err(e) = run(&sc).check_agreement(&honest) {
            panic!("seed {seed}: {e}\n{sc:?}");
        }
    }
}

/// Every validator crashes at the same moment (a power cut on the island) and restarts: they
/// come back from disk alone, with no peer holding anything in memory, and finalize again.
/// Without the certificates persisted, a view notarized just before the cut (whose finalize
/// votes were already cast, so it can never be nullified) would stall them for good.
#[test]
fn all_validators_restarting_at_once_finalize_again() {
    for seed in 0..seeds(20) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sc = Scenario::calm(4, seed);
        sc.duration_ms = 6_000;
        sc.max_delay_ms = rng.gen_range(5..40);
        let cut = rng.gen_range(1_000..2_000);
        for node in 0..4 {
            sc.crashes.push(Crash {
                node,
                at_ms: cut,
                restart_ms: Some(cut + rng.gen_range(100..600)),
            });
        }
        let out = run(&sc);
        out.check_agreement(&all(4)).unwrap();
        let after = out.views_to_finality_after_heal(&all(4));
        assert!(
            after.is_some_and(|v| v <= VIEWS_TO_RECOVER),
            "seed {seed}: finality {after:?} views after the restart"
        );
    }
}
