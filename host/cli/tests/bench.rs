//! The benchmark commands keep their promise to tools: one JSON object on the last line,
//! with the named figures.

use std::path::Path;
use std::process::Command;

/// The JSON object on the last line of a benchmark that succeeded.
fn last_json(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

#[test]
fn bench_devices_prints_its_figures_as_json() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args([
            "bench",
            "devices",
            "--json",
            "--devices",
            "30",
            "--seconds",
            "0.5",
        ])
        .arg("--plugins-dir")
        .arg(repo.join("target/device-plugins"))
        .arg("--profiles")
        .arg(repo.join("genesis/profiles/island_profiles.csv"))
        .output()
        .unwrap();
    let last = last_json(&out);
    for key in [
        "readings_per_sec",
        "applied_readings_per_sec",
        "swap_ms",
        "switch_ms",
    ] {
        assert!(last[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {last}");
    }
    assert_eq!(last["devices"], 30);
}

#[test]
fn bench_cluster_prints_its_figures_as_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args([
            "bench",
            "cluster",
            "--json",
            "--txs",
            "300",
            "--rate",
            "200",
            "--seconds",
            "1",
        ])
        .output()
        .unwrap();
    let last = last_json(&out);
    for key in [
        "finalized_tx_per_sec",
        "p50_ms",
        "p99_ms",
        "qc_verify_4_us",
        "qc_verify_100_us",
        "execute_only_tx_per_sec",
        "round_ms",
    ] {
        assert!(last[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {last}");
    }
    assert!(last["p50_ms"].as_f64() <= last["p99_ms"].as_f64(), "{last}");
    assert_eq!(last["paced_txs"], 200);
}
