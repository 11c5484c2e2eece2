//! The attack suite: real validators on loopback (four, each on its own runtime, in one
//! process) under honest load while an attacker floods queries, mempools and junk readings and
//! sends max-gas loops, through `gridledger bench cluster --attack`: each attack alone on a
//! fresh cluster, then all at once. After each: every honest
//! transfer was finalized (the bench fails otherwise), finality kept advancing, the validators
//! agree on the state root at a common height, the process is alive and exits cleanly, and
//! the attacker paid for what it used.

mod support;

use std::process::Command;
use support::{BIN, repo};

/// One cluster at a time: the tests of this file run in parallel threads otherwise, and five
/// clusters of four validators on two cores measure the machine, not the attacks.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the honest load and the attacks named (comma-separated) on a fresh cluster; checks
/// what must hold after any attack and returns the bench's JSON line.
fn attacked_by(attacks: &str) -> serde_json::Value {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(BIN)
        .args([
            "bench",
            "cluster",
            "--attack",
            "--attacks",
            attacks,
            "--json",
            "--txs",
            "2000",
            "--rate",
            "300",
            "--seconds",
            "3",
        ])
        .arg("--contracts-dir")
        .arg(repo().join("target/contracts"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{attacks}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON last line");
    let num = |k: &str| last[k].as_f64().unwrap_or_else(|| panic!("{k} in {last}"));
    // Every honest transfer was finalized (the bench fails otherwise), the validators agree
    // on the state at a common height, and finality never stalled (a debug build on a shared
    // 2-core machine, so the bound is loose).
    assert_eq!(last["attack_roots_agree"], true, "{attacks}: {last}");
    assert!(num("attack_common_height") >= 5.0, "{attacks}: {last}");
    assert!(
        num("attack_finalized_tx_per_sec") > 0.0,
        "{attacks}: {last}"
    );
    assert!(
        num("attack_max_block_gap_ms") < 15_000.0,
        "{attacks}: {last}"
    );
    last
}

fn num(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn a_query_flood_is_answered_or_refused_busy_and_consensus_goes_on() {
    let v = attacked_by("queries");
    assert!(
        num(&v, "attacker_queries_answered") + num(&v, "attacker_queries_refused") > 0.0,
        "{v}"
    );
}

#[test]
fn a_mempool_flood_is_turned_away_and_what_got_in_was_paid_for() {
    let v = attacked_by("mempool");
    assert!(num(&v, "attacker_txs_turned_away") > 0.0, "{v}");
    assert!(num(&v, "attacker_paid") > 0.0, "{v}");
}

#[test]
fn junk_readings_are_paid_for_and_change_nothing_else() {
    let v = attacked_by("readings");
    assert!(num(&v, "attacker_txs_admitted") > 0.0, "{v}");
    assert!(num(&v, "attacker_paid") > 0.0, "{v}");
}

#[test]
fn max_gas_loops_are_paid_for_and_do_not_stall_finality() {
    let v = attacked_by("calls");
    assert!(num(&v, "attacker_txs_admitted") > 0.0, "{v}");
    assert!(num(&v, "attacker_paid") > 0.0, "{v}");
}

#[test]
fn validators_keep_finalizing_and_agreeing_under_every_attack_at_once() {
    let v = attacked_by("queries,mempool,readings,calls");
    assert!(num(&v, "attacker_txs_admitted") > 0.0, "{v}");
    assert!(num(&v, "attacker_paid") > 0.0, "{v}");
    assert!(num(&v, "attacker_txs_turned_away") > 0.0, "{v}");
}
