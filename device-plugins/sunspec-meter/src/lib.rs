//! A SunSpec meter read over Modbus TCP, as a device plugin.
//!
//! The plugin finds the "SunS" marker at the configured base address, walks the model list
//! (SunSpec device information model discovery, done by the `sunspec` crate over
//! `tokio-modbus`), and reads the first meter model it finds: 201 (single phase), 202 (split
//! phase), 203 (three phase wye) or 204 (three phase delta). Power and the meter's own export
//! and import counters are scaled by their scale factors. Addresses, unit ids and base
//! registers come from the config, so any SunSpec meter works.
//!
//! Config: `{"meters": [{"device": "meter-1", "addr": "127.0.0.1:1502", "unit_id": 1,
//! "base_address": 40000}], "timeout_ms": 500}`. Power sign: SunSpec meters report real
//! power positive when it flows into the site; set `"export_positive": true` on a meter
//! whose positive power is export (the plugin reports export as positive).

use serde::Deserialize;
use std::cell::RefCell;
use std::time::Duration;
use sunspec::client::{AsyncClient, AsyncDevice, Config as ClientConfig};
use tokio::sync::Mutex;

wit_bindgen::generate!({
    path: "../../sdk/wit/device/device.wit",
    world: "device-plugin",
});

use exports::gridledger::device::driver::{Channel, Guest, Info, Sample};

type Conn = std::sync::Arc<Mutex<tokio_modbus::client::Context>>;

#[derive(Deserialize, Clone)]
struct Config {
    meters: Vec<MeterConfig>,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
}

fn default_timeout() -> u64 {
    500
}

#[derive(Deserialize, Clone)]
struct MeterConfig {
    device: String,
    addr: std::net::SocketAddr,
    #[serde(default = "default_unit")]
    unit_id: u8,
    #[serde(default = "default_base")]
    base_address: u16,
    #[serde(default)]
    export_positive: bool,
}

fn default_unit() -> u8 {
    1
}

fn default_base() -> u16 {
    40000
}

struct State {
    config: Config,
    rt: tokio::runtime::Runtime,
    /// One discovered device per meter, dropped when its connection fails.
    devices: Vec<Option<AsyncDevice<Conn>>>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// What one read of a meter gives: power (W, export positive) and counters (Wh).
struct Measured {
    power_w: i64,
    export_wh: u64,
    import_wh: u64,
}

fn scale(v: i64, sf: i16) -> i64 {
    if sf >= 0 {
        v.saturating_mul(10i64.saturating_pow(sf as u32))
    } else {
        v / 10i64.saturating_pow(sf.unsigned_abs() as u32)
    }
}

macro_rules! read_meter_model {
    ($device:expr, $model:ty) => {{
        let m: $model = $device
            .read_model()
            .await
            .map_err(|e| format!("reading model: {e}"))?;
        Measured {
            power_w: scale(m.w as i64, m.w_sf),
            export_wh: scale(m.tot_wh_exp as i64, m.tot_wh_sf).max(0) as u64,
            import_wh: scale(m.tot_wh_imp as i64, m.tot_wh_sf).max(0) as u64,
        }
    }};
}

async fn connect(m: &MeterConfig, timeout: Duration) -> Result<AsyncDevice<Conn>, String> {
    let ctx = tokio::time::timeout(timeout, tokio_modbus::client::tcp::connect(m.addr))
        .await
        .map_err(|_| format!("connecting to {} timed out", m.addr))?
        .map_err(|e| format!("connecting to {}: {e}", m.addr))?;
    let client = AsyncClient::new(
        ctx,
        ClientConfig {
            discovery_addresses: vec![m.base_address],
            read_timeout: Some(timeout),
            ..ClientConfig::default()
        },
    );
    client
        .device(m.unit_id)
        .await
        .map_err(|e| format!("SunSpec discovery at {} unit {}: {e}", m.addr, m.unit_id))
}

async fn read(device: &AsyncDevice<Conn>) -> Result<Measured, String> {
    let ids = device.models.supported_model_ids();
    let has = |id: u16| ids.contains(&id);
    Ok(if has(203) {
        read_meter_model!(device, sunspec::models::model203::Model203)
    } else if has(204) {
        read_meter_model!(device, sunspec::models::model204::Model204)
    } else if has(202) {
        read_meter_model!(device, sunspec::models::model202::Model202)
    } else if has(201) {
        read_meter_model!(device, sunspec::models::model201::Model201)
    } else {
        return Err("the device has no meter model (201-204)".into());
    })
}

struct Plugin;

impl Guest for Plugin {
    fn init(config: String) -> Result<Info, String> {
        let config: Config = serde_json::from_str(&config).map_err(|e| format!("config: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let devices = config.meters.iter().map(|_| None).collect();
        STATE.with(|s| {
            *s.borrow_mut() = Some(State {
                config,
                rt,
                devices,
            })
        });
        Ok(Info {
            model: "sunspec-meter".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            channels: vec![
                Channel {
                    name: "power".into(),
                    unit: "W".into(),
                },
                Channel {
                    name: "export".into(),
                    unit: "Wh".into(),
                },
                Channel {
                    name: "import".into(),
                    unit: "Wh".into(),
                },
            ],
        })
    }

    /// Reads every meter; a meter that cannot be read is left out (its connection is dropped
    /// and made again next poll). Fails only if no meter could be read.
    fn poll(_now_ms: u64) -> Result<Vec<Sample>, String> {
        STATE.with(|s| {
            let mut guard = s.borrow_mut();
            let state = guard.as_mut().ok_or("poll before init")?;
            let timeout = Duration::from_millis(state.config.timeout_ms);
            let mut samples = Vec::new();
            let mut errors = Vec::new();
            let State {
                config,
                rt,
                devices,
            } = state;
            for (m, slot) in config.meters.iter().zip(devices.iter_mut()) {
                let result = rt.block_on(async {
                    if slot.is_none() {
                        *slot = Some(connect(m, timeout).await?);
                    }
                    match slot.as_ref() {
                        Some(d) => read(d).await,
                        None => Err("not connected".to_string()),
                    }
                });
                match result {
                    Ok(x) => samples.push(Sample {
                        device: m.device.clone(),
                        power_w: if m.export_positive {
                            x.power_w
                        } else {
                            -x.power_w
                        },
                        export_wh: Some(x.export_wh),
                        import_wh: Some(x.import_wh),
                    }),
                    Err(e) => {
                        *slot = None;
                        errors.push(format!("{}: {e}", m.device));
                    }
                }
            }
            if samples.is_empty() && !errors.is_empty() {
                return Err(errors.join("; "));
            }
            Ok(samples)
        })
    }
}

// Only the component exports the driver: a native build (tests, clippy) has no use for the
// symbols, and the host linker cannot take their names.
#[cfg(target_arch = "wasm32")]
export!(Plugin);
