//! The plugin host against real plugin components (built by `gridledger-build` into
//! `target/device-plugins`): capabilities, bounds, restarts, hot swap and rollback.

use gridledger_devices::meter::{ChainClock, Meter, MeterPosition};
use gridledger_devices::supervisor::{PluginHandle, PluginTask, wall_clock};
use gridledger_devices::{DeviceBinding, PluginCode, PluginError, PluginManifest, PluginRuntime};
use gridledger_types::{Keypair, SignedReading};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const DEVICES: [(&str, &str, bool); 3] = [
    ("meter-wind-1", "wind_turbine_w", false),
    ("meter-village", "household_load_w", true),
    ("meter-battery", "battery_w", false),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn plugin_file(name: &str) -> Vec<u8> {
    let p = root()
        .join("target/device-plugins")
        .join(format!("{name}.wasm"));
    std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run cargo run -p gridledger-build)", p.display()))
}

fn device_key(name: &str) -> Keypair {
    Keypair::from_seed_phrase(&format!("plugins test {name}"))
}

/// A manifest both test plugins run under: island-sim reads the profile and ignores `mode`;
/// test-driver reads `mode` and ignores the profile.
fn manifest(mode: &str, extra: &[(&str, toml::Value)]) -> PluginManifest {
    let mut config = toml::Table::new();
    config.insert("mode".into(), mode.into());
    config.insert("power_w".into(), 1_000.into());
    config.insert("profile".into(), "/data/island_profiles.csv".into());
    config.insert("market_start_ms".into(), 0.into());
    config.insert("period_ms".into(), 5_000.into());
    let devices: Vec<toml::Value> = DEVICES
        .iter()
        .map(|(name, column, consumer)| {
            let mut t = toml::Table::new();
            t.insert("name".into(), (*name).into());
            t.insert("column".into(), (*column).into());
            t.insert("units".into(), 1.into());
            t.insert("consumer".into(), (*consumer).into());
            toml::Value::Table(t)
        })
        .collect();
    config.insert("devices".into(), devices.into());
    for (k, v) in extra {
        config.insert((*k).into(), v.clone());
    }
    PluginManifest {
        id: "island".into(),
        wasm: PathBuf::new(),
        version: None,
        code_hash: None,
        allowed_code_hashes: Vec::new(),
        poll_ms: 20,
        memory_limit_bytes: 16 << 20,
        time_limit_ms: 300,
        connect: Vec::new(),
        read_dir: Some(root().join("genesis/profiles")),
        config,
        devices: DEVICES
            .iter()
            .map(|(d, _, _)| DeviceBinding {
                name: d.to_string(),
                dev_seed: Some(format!("plugins test {d}")),
                key_file: None,
            })
            .collect(),
    }
}

fn clock() -> ChainClock {
    ChainClock {
        chain_id: "test".into(),
        market_start_ms: 0,
        period_ms: 5_000,
        field_period_ms: 5_000,
    }
}

fn meters() -> Vec<Meter> {
    DEVICES
        .iter()
        .map(|(d, _, _)| Meter::new(d, device_key(d), 5_000_000, MeterPosition::default()))
        .collect()
}

async fn poll_once(
    rt: &PluginRuntime,
    code: &PluginCode,
    m: &PluginManifest,
) -> Result<usize, PluginError> {
    let mut p = rt.start(code, m).await?;
    p.poll(1_000).await.map(|s| s.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_get_only_what_they_were_granted() {
    let rt = PluginRuntime::new().unwrap();
    let driver = rt.load(&plugin_file("test_driver")).unwrap();

    // Network: only the granted address, and nothing without a grant.
    let granted = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = |l: &std::net::TcpListener| toml::Value::from(l.local_addr().unwrap().to_string());
    let mut m = manifest("connect", &[("addr", addr(&granted))]);
    let denied = poll_once(&rt, &driver, &m).await.unwrap_err().to_string();
    assert!(denied.contains("connect"), "{denied}");
    m.connect = vec![granted.local_addr().unwrap()];
    assert_eq!(
        poll_once(&rt, &driver, &m).await.unwrap(),
        3,
        "a granted address connects"
    );
    let mut m = manifest("connect", &[("addr", addr(&other))]);
    m.connect = vec![granted.local_addr().unwrap()];
    assert!(
        poll_once(&rt, &driver, &m).await.is_err(),
        "an address beside the granted one is refused"
    );

    // Files: the granted directory, read-only; nothing outside it.
    let m = manifest("read", &[("path", "/data/island_profiles.csv".into())]);
    assert_eq!(poll_once(&rt, &driver, &m).await.unwrap(), 3);
    for path in [
        "/etc/passwd",
        "/data/../../Cargo.toml",
        "island_profiles.csv",
    ] {
        let m = manifest("read", &[("path", path.into())]);
        let e = poll_once(&rt, &driver, &m).await.unwrap_err().to_string();
        assert!(e.contains("read"), "{path}: {e}");
    }
    let mut m = manifest("read", &[("path", "/data/island_profiles.csv".into())]);
    m.read_dir = None;
    assert!(
        poll_once(&rt, &driver, &m).await.is_err(),
        "no directory without a grant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_looping_hungry_and_stuck_plugins_are_stopped() {
    let rt = PluginRuntime::new().unwrap();
    let driver = rt.load(&plugin_file("test_driver")).unwrap();
    for (mode, want) in [
        ("trap", "trapped"),
        ("loop", "trapped"),
        ("hog", "trapped"),
        ("block", "did not answer within 300 ms"),
    ] {
        let e = poll_once(&rt, &driver, &manifest(mode, &[]))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{mode}: {e}");
    }
    // The host is unharmed: a good plugin still runs.
    let sim = rt.load(&plugin_file("island_sim")).unwrap();
    assert_eq!(
        poll_once(&rt, &sim, &manifest("steady", &[]))
            .await
            .unwrap(),
        3
    );
    // Code that is not a device plugin is refused when loaded.
    assert!(rt.load(b"\0asm\x01\0\0\0").is_err());
    let contract = std::fs::read(root().join("target/contracts/counter.wasm")).unwrap();
    let e = rt
        .load(&contract)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("import") || e.contains("export"), "{e}");
}

struct Running {
    handle: PluginHandle,
    readings: mpsc::Receiver<Vec<SignedReading>>,
    stop: watch::Sender<bool>,
    seen: Vec<SignedReading>,
}

impl Running {
    fn start(code: PluginCode, manifest: PluginManifest, rt: Arc<PluginRuntime>) -> Running {
        let (out, readings) = mpsc::channel(64);
        let (stop, stop_rx) = watch::channel(false);
        let task = PluginTask {
            runtime: rt,
            manifest,
            code,
            meters: meters(),
            clock: clock(),
            now: wall_clock(),
            out,
        };
        Running {
            handle: task.spawn(stop_rx),
            readings,
            stop,
            seen: Vec::new(),
        }
    }

    /// Waits for `n` more readings.
    async fn take(&mut self, n: usize) {
        let want = self.seen.len() + n;
        while self.seen.len() < want {
            let batch = tokio::time::timeout(Duration::from_secs(30), self.readings.recv())
                .await
                .expect("readings keep coming")
                .expect("open");
            self.seen.extend(batch);
        }
    }

    /// Stops the task and checks every device's sequence: 0, 1, 2, … with no gap or
    /// repeat, each reading signed by its device.
    async fn finish(mut self) -> Vec<SignedReading> {
        let _ = self.stop.send(true);
        while let Some(b) = self.readings.recv().await {
            self.seen.extend(b);
        }
        let mut by_device: BTreeMap<_, Vec<u64>> = BTreeMap::new();
        for r in &self.seen {
            r.verify("test").unwrap();
            by_device
                .entry(r.reading.device)
                .or_default()
                .push(r.reading.seq);
        }
        assert_eq!(by_device.len(), 3);
        for seqs in by_device.values() {
            let want: Vec<u64> = (0..seqs.len() as u64).collect();
            assert_eq!(*seqs, want, "no reading lost or doubled");
        }
        self.seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_swap_under_polling_loses_and_doubles_nothing() {
    let rt = Arc::new(PluginRuntime::new().unwrap());
    let sim = rt.load(&plugin_file("island_sim")).unwrap();
    let driver = rt.load(&plugin_file("test_driver")).unwrap();
    let mut run = Running::start(sim.clone(), manifest("steady", &[]), rt.clone());
    run.take(30).await;
    let report = run.handle.swap(driver.clone()).await.expect("swap");
    assert_eq!(report.readings_in_first_poll, 3);
    assert_eq!(report.to, driver.hash.to_hex());
    run.take(30).await;
    let status = run.handle.status();
    assert_eq!(
        (status.model.as_str(), status.version.as_str()),
        ("test-driver", "0.2.0")
    );
    assert_eq!(
        status.swaps.last().map(|s| s.outcome.as_str()),
        Some("swapped")
    );
    let seen = run.finish().await;
    // Each reading names the plugin that took it: the old one, then from one point on, the
    // new one, with no return.
    let first_new = seen
        .iter()
        .position(|r| r.reading.plugin == driver.hash)
        .expect("readings from the new version");
    assert!(first_new >= 30);
    assert!(
        seen[..first_new]
            .iter()
            .all(|r| r.reading.plugin == sim.hash)
    );
    assert!(
        seen[first_new..]
            .iter()
            .all(|r| r.reading.plugin == driver.hash)
    );
}

/// Two steps: staging starts and health-checks the new version while the old one keeps
/// serving; the switch puts it in place at once. No reading is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_version_switches_in_without_losing_a_reading() {
    let rt = Arc::new(PluginRuntime::new().unwrap());
    let sim = rt.load(&plugin_file("island_sim")).unwrap();
    let driver = rt.load(&plugin_file("test_driver")).unwrap();
    let mut run = Running::start(sim.clone(), manifest("steady", &[]), rt.clone());
    // Nothing staged yet: a switch is refused and nothing changes.
    let e = run.handle.switch().await.unwrap_err();
    assert!(e.contains("nothing is staged"), "{e}");
    run.take(9).await;
    let staged = run.handle.stage(driver.clone()).await.expect("staged");
    assert_eq!(staged.staged, driver.hash.to_hex());
    // Staged, not running: the old version still reads.
    run.take(9).await;
    assert_eq!(run.handle.status().code_hash, sim.hash.to_hex());
    assert!(run.seen.iter().all(|r| r.reading.plugin == sim.hash));
    let report = run.handle.switch().await.expect("switched");
    assert_eq!(report.to, driver.hash.to_hex());
    assert_eq!(report.readings_in_first_poll, 3);
    assert_eq!(run.handle.status().code_hash, driver.hash.to_hex());
    // What was staged is used up.
    assert!(run.handle.switch().await.is_err());
    run.take(9).await;
    let seen = run.finish().await;
    assert!(seen.iter().any(|r| r.reading.plugin == driver.hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_new_version_is_refused_or_rolled_back() {
    let rt = Arc::new(PluginRuntime::new().unwrap());
    let sim = rt.load(&plugin_file("island_sim")).unwrap();
    let driver = rt.load(&plugin_file("test_driver")).unwrap();

    // Fails its health check: refused, and the running version never stops.
    let mut run = Running::start(sim.clone(), manifest("trap", &[]), rt.clone());
    run.take(6).await;
    let e = run.handle.swap(driver.clone()).await.unwrap_err();
    assert!(e.starts_with("refused"), "{e}");
    run.take(6).await;
    assert_eq!(run.handle.status().failures, 0);
    let seen = run.finish().await;
    assert!(seen.iter().all(|r| r.reading.plugin == sim.hash));

    // Passes its health check, fails its first poll: rolled back to the old version.
    let mut run = Running::start(
        sim.clone(),
        manifest("fail_after", &[("polls", 1.into())]),
        rt.clone(),
    );
    run.take(6).await;
    let e = run.handle.swap(driver.clone()).await.unwrap_err();
    assert!(e.starts_with("rolled back"), "{e}");
    run.take(12).await;
    let status = run.handle.status();
    assert_eq!(status.model, "island-sim");
    assert_eq!(status.code_hash, sim.hash.to_hex());
    assert!(
        status
            .swaps
            .last()
            .is_some_and(|s| s.outcome.starts_with("rolled back"))
    );
    let seen = run.finish().await;
    assert!(seen.iter().all(|r| r.reading.plugin == sim.hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_plugin_is_restarted_and_its_counters_carry_on() {
    let rt = Arc::new(PluginRuntime::new().unwrap());
    let driver = rt.load(&plugin_file("test_driver")).unwrap();
    // Steady for two polls, then traps; each restart is a fresh instance.
    let mut run = Running::start(
        driver.clone(),
        manifest("fail_after", &[("polls", 2.into())]),
        rt.clone(),
    );
    run.take(18).await;
    let status = run.handle.status();
    assert!(status.restarts >= 2, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("trapped"))
    );
    run.finish().await;

    // A plugin that reports nonsense: its samples are dropped and it is restarted.
    let run = Running::start(driver, manifest("nonsense", &[]), rt);
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        run.handle.wait_for(|s| s.restarts >= 2),
    )
    .await
    .expect("restarted");
    assert_eq!(status.readings, 0, "{status:?}");
    assert!(status.dropped_samples >= 6, "{status:?}");
    let _ = run.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_moves_a_devices_numbering_up_to_the_chains_and_never_back() {
    let rt = Arc::new(PluginRuntime::new().unwrap());
    let sim = rt.load(&plugin_file("island_sim")).unwrap();
    let mut run = Running::start(sim, manifest("steady", &[]), rt);
    run.take(9).await;
    let (device, other) = (run.handle.addresses[0], run.handle.addresses[1]);
    // The chain holds seq 1000 of one device (relayed from elsewhere) and seq 1 of another
    // (behind this node's numbering: that one must not go back).
    run.handle
        .resync(std::collections::HashMap::from([
            (device, 1_000),
            (other, 1),
        ]))
        .await
        .expect("resync");
    run.take(9).await;
    let _ = run.stop.send(true);
    while let Some(b) = run.readings.recv().await {
        run.seen.extend(b);
    }
    let mut by_device: BTreeMap<_, Vec<&SignedReading>> = BTreeMap::new();
    for r in &run.seen {
        r.verify("test").unwrap();
        by_device.entry(r.reading.device).or_default().push(r);
    }
    for (d, readings) in &by_device {
        let seqs: Vec<u64> = readings.iter().map(|r| r.reading.seq).collect();
        if *d == device {
            // 0, 1, …, k-1, then 1000, 1001, …: one jump, to the chain's next number.
            let k = seqs
                .windows(2)
                .position(|w| w[1] != w[0] + 1)
                .expect("a jump")
                + 1;
            assert!(k >= 2, "{seqs:?}");
            let want: Vec<u64> = (0..k as u64)
                .chain(1_000..(1_000 + (seqs.len() - k) as u64))
                .collect();
            assert_eq!(seqs, want);
        } else {
            let want: Vec<u64> = (0..seqs.len() as u64).collect();
            assert_eq!(seqs, want, "the other devices never go back");
        }
        // The counters carry on: what was read meanwhile still counts.
        assert!(
            readings
                .windows(2)
                .all(|w| w[1].reading.export_wh >= w[0].reading.export_wh
                    && w[1].reading.import_wh >= w[0].reading.import_wh)
        );
    }
}
