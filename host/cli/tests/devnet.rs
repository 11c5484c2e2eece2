//! End to end: a real `gridledger devnet` process on loopback, driven by the real CLI.

mod support;

use std::time::Duration;
use support::{Devnet, cli, get, repo};

#[test]
fn devnet_serves_executes_proves_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chain");
    let net = Devnet::start("devnet.toml", &data, &["--block-ms", "50"]);
    let status = get(&format!("{}/v1/status", net.url));
    assert_eq!(status["chain_id"], "gridledger-devnet");
    assert!(status["height"].is_u64());

    let counter = get(&format!("{}/v1/labels/counter", net.url))["address"]
        .as_str()
        .unwrap()
        .to_string();
    let key = data.join("keys/household-1.key");
    let key = key.to_str().unwrap();
    let (ok, out, err) = cli(
        &net.url,
        &[
            "contract",
            "execute",
            "--key",
            key,
            &counter,
            r#"{"increment":{"by":4}}"#,
        ],
    );
    assert!(ok, "execute failed: {err}");
    let receipt: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(receipt["receipt"]["result_json"], 4);
    let (ok, out, _) = cli(
        &net.url,
        &["contract", "query", &counter, r#"{"count":{}}"#],
    );
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["count"],
        4
    );

    // A proof of the transaction verifies offline, anchored to the block's hash; a tampered
    // one does not.
    let hash = receipt["hash"].as_str().unwrap();
    let proof_file = dir.path().join("proof.json");
    let (ok, out, _) = cli(
        &net.url,
        &["tx", hash, "--proof-out", proof_file.to_str().unwrap()],
    );
    assert!(ok);
    let tx: serde_json::Value = serde_json::from_str(&out).unwrap();
    let block_hash = get(&format!("{}/v1/blocks/{}", net.url, tx["height"]))["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, err) = cli(
        &net.url,
        &[
            "verify",
            proof_file.to_str().unwrap(),
            "--header-hash",
            &block_hash,
        ],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("valid"));
    // Finality: the bundle's certificate checks out against the genesis validator set...
    let genesis = repo().join("genesis/devnet.toml");
    let (ok, out, err) = cli(
        &net.url,
        &[
            "verify",
            proof_file.to_str().unwrap(),
            "--genesis",
            genesis.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("final: a quorum"), "{out}{err}");
    // ...and not against another chain's validators, nor with a forged certificate.
    let island = repo().join("genesis/island.toml");
    let (ok, _, err) = cli(
        &net.url,
        &[
            "verify",
            proof_file.to_str().unwrap(),
            "--genesis",
            island.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("INVALID"), "{err}");
    let original = std::fs::read_to_string(&proof_file).unwrap();
    let mut forged: serde_json::Value = serde_json::from_str(&original).unwrap();
    let cert = forged["finality"]["certificate"]
        .as_str()
        .unwrap()
        .to_string();
    // Flip a byte of the aggregate signature (the certificate's last 96 bytes).
    let mut bytes = hex::decode(&cert).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    forged["finality"]["certificate"] = serde_json::json!(hex::encode(bytes));
    std::fs::write(&proof_file, forged.to_string()).unwrap();
    let (ok, _, err) = cli(
        &net.url,
        &[
            "verify",
            proof_file.to_str().unwrap(),
            "--genesis",
            genesis.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("INVALID: finality"), "{err}");
    // The forgery of a made-up header (any state root, so any balance or trade one likes)
    // under a real certificate: the certificate covers the real header's hash only.
    let mut forged: serde_json::Value = serde_json::from_str(&original).unwrap();
    forged["header"]["state_root"] = serde_json::json!("11".repeat(32));
    std::fs::write(&proof_file, forged.to_string()).unwrap();
    let (ok, _, err) = cli(
        &net.url,
        &[
            "verify",
            proof_file.to_str().unwrap(),
            "--genesis",
            genesis.to_str().unwrap(),
        ],
    );
    assert!(
        !ok && err.contains("INVALID: finality: the certificate is over header"),
        "{err}"
    );
    std::fs::write(&proof_file, original).unwrap();
    let mut bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proof_file).unwrap()).unwrap();
    bundle["receipt"]["gas_used"] = serde_json::json!(1);
    std::fs::write(&proof_file, bundle.to_string()).unwrap();
    let (ok, _, err) = cli(&net.url, &["verify", proof_file.to_str().unwrap()]);
    assert!(
        !ok && err.contains("INVALID"),
        "a tampered receipt must not verify: {err}"
    );

    // State proof of the account, present; of an unused address, absent.
    let addr = cli(&net.url, &["address", key]).1.trim().to_string();
    let sp = dir.path().join("state.json");
    assert!(
        cli(
            &net.url,
            &["prove-account", &addr, "--out", sp.to_str().unwrap()]
        )
        .0
    );
    let (ok, out, _) = cli(&net.url, &["verify", sp.to_str().unwrap()]);
    assert!(ok && out.contains(" = "), "{out}");
    let nobody = "ab".repeat(32);
    assert!(
        cli(
            &net.url,
            &["prove-account", &nobody, "--out", sp.to_str().unwrap()]
        )
        .0
    );
    let (ok, out, _) = cli(&net.url, &["verify", sp.to_str().unwrap()]);
    assert!(ok && out.contains("absent"), "{out}");

    // Several keys into one header: the account (present) and the unused address (absent);
    // a request for no keys, a non-hex key or too many keys is refused.
    let account_key = format!("01{addr}");
    let nobody_key = format!("01{nobody}");
    let bundle = reqwest::blocking::get(format!(
        "{}/v1/state/proofs?keys={account_key},{nobody_key}",
        net.url
    ))
    .unwrap()
    .text()
    .unwrap();
    std::fs::write(&sp, &bundle).unwrap();
    let (ok, out, err) = cli(&net.url, &["verify", sp.to_str().unwrap()]);
    assert!(ok && out.contains("valid: 2 keys"), "{out}{err}");
    assert!(
        out.contains(&format!("key {nobody_key} is absent")),
        "{out}"
    );
    let mut forged: serde_json::Value = serde_json::from_str(&bundle).unwrap();
    forged["proofs"][1]["value"] = serde_json::json!("00");
    std::fs::write(&sp, forged.to_string()).unwrap();
    let (ok, _, err) = cli(&net.url, &["verify", sp.to_str().unwrap()]);
    assert!(!ok && err.contains("INVALID: key"), "{err}");
    let too_many = vec![account_key.as_str(); 65].join(",");
    for keys in ["", "zz", too_many.as_str()] {
        let resp =
            reqwest::blocking::get(format!("{}/v1/state/proofs?keys={keys}", net.url)).unwrap();
        assert_eq!(resp.status(), 400, "keys={keys}");
        assert_eq!(resp.json::<serde_json::Value>().unwrap()["code"], "bad_key");
    }

    // Garbage through the API: a clear 400, and the node keeps going.
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/txs", net.url))
        .header("content-type", "application/octet-stream")
        .body(vec![1u8, 2, 3])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<serde_json::Value>().unwrap()["code"],
        "malformed"
    );
    let (ok, _, err) = cli(
        &net.url,
        &["contract", "execute", "--key", key, &"00".repeat(32), "{}"],
    );
    assert!(!ok && err.contains("no contract"), "{err}");
    let height = get(&format!("{}/v1/status", net.url))["height"]
        .as_u64()
        .unwrap();

    let tail = net.stop();
    assert!(tail.contains("stopped at height"), "{tail}");

    // Restart on the same directory: the same chain, resumed.
    let net = Devnet::start("devnet.toml", &data, &["--block-ms", "50"]);
    let status = get(&format!("{}/v1/status", net.url));
    assert!(status["height"].as_u64().unwrap() >= height);
    let (ok, out, _) = cli(
        &net.url,
        &["contract", "query", &counter, r#"{"count":{}}"#],
    );
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["count"],
        4
    );
    net.stop();
}

#[test]
fn island_devnet_trades_clears_and_settles_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start("island.toml", dir.path(), &[]);
    // Orders go in during one 5 s period, clear at the next, settle two later.
    let line = net.wait_for("period ", Duration::from_secs(90));
    assert!(
        line.contains("traded") && line.contains("renewable") && line.contains("μ"),
        "{line}"
    );
    let url = net.url.clone();
    let status = get(&format!("{url}/v1/status"));
    assert!(status["settled_periods"].as_u64().unwrap() >= 1, "{status}");
    // The public API is the observer's: it follows the four validators and votes on nothing.
    assert_eq!(status["role"], "observer", "{status}");
    // Each of the four validators runs on a tokio runtime of its own (named after its port).
    let mut runtimes: Vec<String> = net
        .thread_names()
        .into_iter()
        .filter(|n| n.starts_with("validator-"))
        .collect();
    runtimes.sort();
    runtimes.dedup();
    assert_eq!(runtimes.len(), 4, "{runtimes:?}");
    assert!(net.thread_names().iter().any(|n| n == "observer"));
    // What was delivered came from the device plugin's signed readings: the simulation
    // reports no meter readings when genesis registers devices.
    let delivered: f64 = line
        .split("delivered ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("delivered kWh");
    assert!(delivered > 0.0, "{line}");
    let plugins = get(&format!("{url}/v1/plugins"));
    let sim = &plugins["plugins"][0];
    assert_eq!(sim["state"], "running", "{plugins}");
    assert!(sim["readings"].as_u64().unwrap() >= 9, "{plugins}");
    let sim_hash = sim["code_hash"].as_str().unwrap().to_string();
    let devices = get(&format!("{url}/v1/devices"));
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 9);
    assert!(
        devices.iter().all(|d| d["plugin"] == sim_hash.as_str()),
        "{devices:?}"
    );

    // The public API cannot swap a driver, however the request is dressed (the "simple"
    // cross-origin POST a web page can send included).
    let driver = repo().join("target/device-plugins/test_driver.wasm");
    let driver_bytes = std::fs::read(&driver).unwrap();
    let http = reqwest::blocking::Client::new();
    let public = http
        .post(format!("{url}/v1/plugins/meter-wind-1/swap"))
        .header("content-type", "text/plain")
        .body(driver_bytes.clone())
        .send()
        .unwrap();
    assert!(
        matches!(public.status().as_u16(), 404 | 405),
        "{}",
        public.status()
    );
    // The admin listener: no token, a wrong token, a foreign Origin, a rebound Host: refused.
    let admin = net.admin.clone();
    let token = std::fs::read_to_string(&net.admin_token).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&net.admin_token)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is the owner's only");
    }
    let swap_url = format!("{admin}/v1/plugins/meter-wind-1/swap");
    let attempt = |headers: &[(&str, &str)]| {
        let mut req = http.post(&swap_url).body(driver_bytes.clone());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().unwrap();
        (status, body["code"].as_str().unwrap_or("").to_string())
    };
    let bearer = format!("Bearer {}", token.trim());
    assert_eq!(attempt(&[]), (401, "unauthorized".into()));
    assert_eq!(
        attempt(&[("authorization", "Bearer 00")]),
        (401, "unauthorized".into())
    );
    assert_eq!(
        attempt(&[
            ("authorization", &bearer),
            ("origin", "http://evil.example")
        ]),
        (403, "foreign_origin".into())
    );
    assert_eq!(
        attempt(&[("authorization", &bearer), ("host", "rebound.example:80")]),
        (403, "bad_host".into())
    );
    let unchanged = get(&format!("{url}/v1/plugins"));
    assert_eq!(
        unchanged["plugins"][0]["code_hash"].as_str(),
        Some(sim_hash.as_str()),
        "refused requests changed nothing"
    );

    // Hot swap through the CLI, with the token: a component the manifest does not allow is
    // refused (before it is compiled) and the old plugin keeps running; an allowed one takes
    // over, and the chain records the new plugin's code hash with every device.
    let admin_cli = |args: &[&str]| {
        let out = std::process::Command::new(support::BIN)
            .args(args)
            .env("GRIDLEDGER_ADMIN", &admin)
            .env("GRIDLEDGER_ADMIN_TOKEN", &net.admin_token)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let not_allowed = repo().join("target/device-plugins/sunspec_meter.wasm");
    let (ok, _, err) = admin_cli(&[
        "plugin",
        "swap",
        "meter-wind-1",
        not_allowed.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("swap_refused") && err.contains("allowed_code_hashes"),
        "{err}"
    );
    let still = get(&format!("{url}/v1/plugins"));
    assert_eq!(
        still["plugins"][0]["code_hash"].as_str(),
        Some(sim_hash.as_str())
    );
    assert_eq!(still["plugins"][0]["state"], "running", "{still}");
    let (ok, out, err) = admin_cli(&["plugin", "swap", "meter-wind-1", driver.to_str().unwrap()]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let new_hash = report["to"].as_str().unwrap().to_string();
    assert_ne!(new_hash, sim_hash);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let devices = get(&format!("{url}/v1/devices"));
        if devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["plugin"] == new_hash.as_str())
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{devices}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out, _) = cli(&url, &["plugin", "status"]);
    assert!(
        ok && out.contains("\"swapped\"") && out.contains("test-driver"),
        "{out}"
    );
    net.stop();
}
