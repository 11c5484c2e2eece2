//! The web app in a real headless browser (Debian's chromium, driven by playwright-core)
//! against a real `gridledger devnet`: every page loads live without console errors, and on the
//! participant page bad input is refused by its field while a bid placed in the page reaches
//! the order book and, once cleared, the trades (`host/api/web/e2e/pages.mjs`), and the proofs
//! the pages save for a trade and a settlement pass `gridledger verify --genesis`. Plus the
//! machine-facing routes beside it: the live block stream, the metrics, the OpenAPI document.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Devnet, repo};

#[test]
fn pages_load_live_without_errors_and_the_machine_routes_answer() {
    let web = repo().join("host/api/web");
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "run `npm ci` in host/api/web (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start("island.toml", dir.path(), &[]);
    // Wait for the first settled period, so the market page has history to chart.
    net.wait_for("period ", Duration::from_secs(90));
    // The participant page trades as household-demo, with the key the devnet wrote for it.
    let demo_address = net
        .account("household-demo")
        .expect("the devnet lists household-demo");
    let demo_key = std::fs::read_to_string(dir.path().join("keys/household-demo.key")).unwrap();
    let url = net.url.clone();

    // The live stream: a `block` event with the fields the pages use, its height as its id.
    let first_event = |last_event_id: Option<u64>| {
        let mut request = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
            .get(format!("{url}/v1/events"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let mut events = request.send().unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while !seen.contains("\n\n") {
            let n = events.read(&mut buf).expect("the stream sends");
            assert!(n > 0, "the stream ended");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(seen.starts_with("event: block"), "{seen}");
        let field = |name: &str| {
            seen.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {seen}"))
                .to_string()
        };
        let block: serde_json::Value = serde_json::from_str(&field("data: ")).unwrap();
        assert_eq!(field("id: "), block["height"].to_string(), "{seen}");
        block
    };
    let block = first_event(None);
    for key in [
        "height",
        "hash",
        "finality_latency_ms",
        "gas_used",
        "tx_count",
    ] {
        assert!(!block[key].is_null(), "{key} in {block}");
    }
    // A client that reconnects with Last-Event-ID gets what it missed first.
    let height = block["height"].as_u64().unwrap();
    let resumed = first_event(Some(height - 3));
    assert_eq!(resumed["height"], height - 2, "{resumed}");

    // Metrics for operators, in Prometheus text format.
    let metrics = reqwest::blocking::get(format!("{url}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    for name in [
        "gridledger_block_height ",
        "gridledger_finality_latency_seconds_bucket",
        "gridledger_mempool_transactions ",
        "gridledger_block_gas_used_sum",
        "gridledger_plugin_polls_total{plugin=\"island-sim\"}",
        "gridledger_plugin_failures_total",
        "gridledger_peers_connected 4",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    let openapi: serde_json::Value = reqwest::blocking::get(format!("{url}/openapi.json"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/v1/events"].is_object());

    // Every page in headless Chromium: live content, no console errors, a screenshot each.
    let shots = repo().join("target/screenshots");
    let trade_proof = shots.join("trade-proof.json");
    let settlement_proof = shots.join("settlement-proof.json");
    for stale in [&trade_proof, &settlement_proof] {
        let _ = std::fs::remove_file(stale);
    }
    for stale in [
        "forged-value",
        "forged-header",
        "forged-certificate",
        "forged-slid-header",
    ] {
        let _ = std::fs::remove_file(shots.join(format!("{stale}.json")));
    }
    let out = Command::new("node")
        .arg(web.join("e2e/pages.mjs"))
        .arg(&url)
        .arg(&shots)
        .env("PARTICIPANT_KEY", demo_key.trim())
        .env("PARTICIPANT_ADDRESS", &demo_address)
        .current_dir(&web)
        .output()
        .expect("run node");
    net.stop();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("participant: ok"), "{log}");
    assert!(log.contains("supervision: csv export ok"), "{log}");
    assert!(log.contains("supervision: bundle check ok"), "{log}");
    for page in ["market", "grid", "chain", "supervision", "participant"] {
        assert!(shots.join(format!("{page}.png")).exists());
    }

    // The proofs the pages saved for a trade and a settlement check out offline, finality
    // included, and say what they prove; a tampered trade does not.
    let genesis = repo().join("genesis/island.toml");
    let verify = |file: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .arg("verify")
            .arg(file)
            .arg("--genesis")
            .arg(&genesis)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) = verify(&trade_proof);
    assert!(ok, "{said}");
    assert!(said.contains("market trades #"), "{said}");
    assert!(
        said.contains(&format!("\"buyer\":\"{demo_address}\"")),
        "{said}"
    );
    assert!(said.contains("final: a quorum"), "{said}");
    let (ok, said) = verify(&settlement_proof);
    assert!(ok, "{said}");
    assert!(
        said.contains("market summary of period") && said.contains("\"settled\":true"),
        "{said}"
    );
    assert!(said.contains("final: a quorum"), "{said}");
    let mut tampered: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trade_proof).unwrap()).unwrap();
    let value = tampered["proofs"][0]["value"].as_str().unwrap().to_string();
    // Any changed byte of the proven page breaks its Merkle path (this flips its last).
    let flipped = format!(
        "{}{}",
        &value[..value.len() - 2],
        if value.ends_with("01") { "00" } else { "01" }
    );
    tampered["proofs"][0]["value"] = serde_json::json!(flipped);
    std::fs::write(&trade_proof, tampered.to_string()).unwrap();
    let (ok, said) = verify(&trade_proof);
    assert!(
        !ok && said.contains("INVALID"),
        "a tampered trade must not verify: {said}"
    );
    // The forgeries the page refused (a changed value, a made-up header under the real
    // certificate, and that certificate renamed to the made-up header) fail offline too.
    for forged in [
        "forged-value",
        "forged-header",
        "forged-certificate",
        "forged-slid-header",
    ] {
        let (ok, said) = verify(&shots.join(format!("{forged}.json")));
        assert!(
            !ok && said.contains("INVALID"),
            "{forged} must not verify: {said}"
        );
    }
}
