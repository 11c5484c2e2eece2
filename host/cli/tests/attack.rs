//! The attack suite: real validators on loopback (four, each on its own runtime, in one
//! process) under honest load while an attacker floods queries, mempools and junk readings and
//! sends max-gas loops, through `gridledger bench cluster --attack`. After it: every honest
//! transfer was finalized (the bench fails otherwise), finality kept advancing, the validators
//! agree on the state root at a common height, the process is alive and exits cleanly, and
//! the attacker paid for what it used.

mod support;

use std::process::Command;
use support::{BIN, repo};

#[test]
fn validators_keep_finalizing_and_agreeing_under_every_attack_at_once() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "cluster",
            "--attack",
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
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON last line");
    let num = |k: &str| last[k].as_f64().unwrap_or_else(|| panic!("{k} in {last}"));
    assert_eq!(last["attack_roots_agree"], true, "{last}");
    assert!(num("attack_common_height") >= 5.0, "{last}");
    assert!(num("attack_finalized_tx_per_sec") > 0.0, "{last}");
    // No stall: a debug build on a shared 2-core machine, so the bound is loose.
    assert!(num("attack_max_block_gap_ms") < 15_000.0, "{last}");
    // The attacker's transactions got in and were paid for; its flood was turned away.
    assert!(num("attacker_txs_admitted") > 0.0, "{last}");
    assert!(num("attacker_paid") > 0.0, "{last}");
    assert!(stdout.contains("turned away"), "{stdout}");
}
