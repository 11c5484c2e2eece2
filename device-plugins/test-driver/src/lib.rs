//! A device plugin that misbehaves on request, for the plugin host's tests.
//!
//! `mode` in the config: `steady` (every device at `power_w`), `trap`, `loop` (spins
//! forever), `hog` (allocates until memory runs out), `block` (sleeps in a host call),
//! `connect` (opens a TCP connection to `addr`), `read` (reads the file `path`), `nonsense`
//! (absurd power), `fail_after` (steady for `polls` polls, then traps).

use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};

wit_bindgen::generate!({
    path: "../../sdk/wit/device/device.wit",
    world: "device-plugin",
});

use exports::gridledger::device::driver::{Guest, Info, Sample};

#[derive(Deserialize, Clone, Default)]
struct Config {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    power_w: i64,
    #[serde(default)]
    devices: Vec<Device>,
    #[serde(default)]
    addr: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    polls: u64,
}

#[derive(Deserialize, Clone, Default)]
struct Device {
    name: String,
}

static CONFIG: std::sync::Mutex<Option<Config>> = std::sync::Mutex::new(None);
static POLLS: AtomicU64 = AtomicU64::new(0);

struct Plugin;

fn steady(c: &Config, power_w: i64) -> Vec<Sample> {
    c.devices
        .iter()
        .map(|d| Sample {
            device: d.name.clone(),
            power_w,
            export_wh: None,
            import_wh: None,
        })
        .collect()
}

impl Guest for Plugin {
    fn init(config: String) -> Result<Info, String> {
        let c: Config = serde_json::from_str(&config).map_err(|e| format!("config: {e}"))?;
        *CONFIG.lock().map_err(|_| "poisoned")? = Some(c);
        Ok(Info {
            model: "test-driver".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            channels: Vec::new(),
        })
    }

    fn poll(_now_ms: u64) -> Result<Vec<Sample>, String> {
        let c = CONFIG
            .lock()
            .map_err(|_| "poisoned")?
            .clone()
            .ok_or("poll before init")?;
        let n = POLLS.fetch_add(1, Ordering::Relaxed);
        match c.mode.as_str() {
            "trap" => panic!("told to trap"),
            "loop" => {
                let mut x: u64 = n;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "hog" => {
                let mut held: Vec<Vec<u8>> = Vec::new();
                loop {
                    held.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&held);
                }
            }
            "block" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(Vec::new())
            }
            "connect" => match std::net::TcpStream::connect(c.addr.as_str()) {
                Ok(_) => Ok(steady(&c, c.power_w)),
                Err(e) => Err(format!("connect {}: {e}", c.addr)),
            },
            "read" => match std::fs::read(&c.path) {
                Ok(_) => Ok(steady(&c, c.power_w)),
                Err(e) => Err(format!("read {}: {e}", c.path)),
            },
            "nonsense" => Ok(steady(&c, i64::MAX / 2)),
            "fail_after" if n >= c.polls => panic!("failing after {} polls", c.polls),
            _ => Ok(steady(&c, c.power_w)),
        }
    }
}

// Only the component exports the driver: a native build (tests, clippy) has no use for the
// symbols, and the host linker cannot take their names.
#[cfg(target_arch = "wasm32")]
export!(Plugin);
