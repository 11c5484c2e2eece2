//! The island's simulated devices, as a device plugin.
//!
//! Each device follows one column of the genesis profile CSV (average W per quarter hour,
//! generated with windpowerlib, pvlib and demandlib; see `genesis/profiles/`), scaled by its
//! number of units. The CSV is read from the plugin's granted directory (`/data`). One market
//! period of the devnet stands for one profile row (a quarter hour). A device with a `battery`
//! section is a store: its profile is what it is asked to do, and it does what its state of
//! charge and its charge and discharge limits allow (the state of charge follows from the day's
//! rows so far, so a restarted plugin finds it again). Like a real fleet, a device strays from
//! its profile (the forecast) by up to ±5 % each period, and its power flickers by ±1 % from
//! one poll to the next.

use serde::Deserialize;

wit_bindgen::generate!({
    path: "../../sdk/wit/device/device.wit",
    world: "device-plugin",
});

use exports::gridledger::device::driver::{Channel, Guest, Info, Sample};

#[derive(Deserialize)]
struct Config {
    /// Path of the profile CSV inside the granted directory.
    profile: String,
    market_start_ms: u64,
    period_ms: u64,
    devices: Vec<DeviceConfig>,
}

#[derive(Deserialize)]
struct DeviceConfig {
    name: String,
    /// Profile column (W per unit; a battery's is signed: positive discharges).
    column: String,
    units: u64,
    /// A load: its profile is power drawn from the grid.
    #[serde(default)]
    consumer: bool,
    battery: Option<Battery>,
}

/// A battery's limits. Its profile column is the requested power (positive discharges).
#[derive(Deserialize, Clone, Copy, Debug)]
struct Battery {
    capacity_wh: i64,
    /// State of charge at the start of each day (profile row 0).
    initial_wh: i64,
    max_charge_w: i64,
    max_discharge_w: i64,
}

impl Battery {
    /// What the battery can do of `want` W for a quarter hour with `soc_wh` stored.
    fn limit(&self, want: i64, soc_wh: i64) -> i64 {
        if want >= 0 {
            want.min(self.max_discharge_w).min(soc_wh * 4)
        } else {
            want.max(-self.max_charge_w)
                .max(-(self.capacity_wh - soc_wh) * 4)
        }
    }

    /// Power in row `row` of the day, after the rows before it moved the state of charge.
    fn power(&self, rows: &[i64], row: usize) -> (i64, i64) {
        let mut soc = self.initial_wh.clamp(0, self.capacity_wh);
        for want in &rows[..row] {
            soc = (soc - self.limit(*want, soc) / 4).clamp(0, self.capacity_wh);
        }
        (self.limit(rows[row], soc), soc)
    }
}

struct Device {
    name: String,
    /// W per profile row, signed: positive exports.
    rows: Vec<i64>,
    battery: Option<Battery>,
}

struct Sim {
    start_ms: u64,
    period_ms: u64,
    devices: Vec<Device>,
}

static SIM: std::sync::Mutex<Option<Sim>> = std::sync::Mutex::new(None);

fn load(config: &str) -> Result<Sim, String> {
    let c: Config = serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
    if c.period_ms == 0 {
        return Err("config: period_ms must be positive".into());
    }
    let text =
        std::fs::read_to_string(&c.profile).map_err(|e| format!("reading {}: {e}", c.profile))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty profile")?.split(',').collect();
    let rows: Vec<Vec<&str>> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').collect())
        .collect();
    if rows.is_empty() {
        return Err("profile has no rows".into());
    }
    let mut devices = Vec::new();
    for d in c.devices {
        let col = header
            .iter()
            .position(|h| *h == d.column)
            .ok_or_else(|| format!("{}: no column {}", d.name, d.column))?;
        let sign = if d.consumer { -1 } else { 1 };
        let values = rows
            .iter()
            .map(|r| {
                let w: i64 = r
                    .get(col)
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| format!("{}: bad value in column {}", d.name, d.column))?;
                Ok(sign * w * d.units as i64)
            })
            .collect::<Result<Vec<i64>, String>>()?;
        devices.push(Device {
            name: d.name,
            rows: values,
            battery: d.battery,
        });
    }
    Ok(Sim {
        start_ms: c.market_start_ms,
        period_ms: c.period_ms,
        devices,
    })
}

impl Sim {
    fn power(&self, d: &Device, now_ms: u64) -> i64 {
        let period = now_ms.saturating_sub(self.start_ms) / self.period_ms;
        let row = (period % d.rows.len() as u64) as usize;
        // Per mille: 950..=1050 for the period, then 990..=1010 for this poll.
        let drift = 950 + (fnv(&d.name, period) % 101) as i128;
        let flicker = 990 + (fnv(&d.name, now_ms) % 21) as i128;
        match &d.battery {
            // A store follows its request only as far as its state of charge allows.
            Some(b) => {
                let (power, soc) = b.power(&d.rows, row);
                let varied = (power as i128 * flicker / 1000) as i64;
                b.limit(varied, soc)
            }
            None => (d.rows[row] as i128 * drift / 1000 * flicker / 1000) as i64,
        }
    }
}

/// FNV-1a of a name and a number: cheap, deterministic variation.
fn fnv(name: &str, n: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain(n.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct Plugin;

impl Guest for Plugin {
    fn init(config: String) -> Result<Info, String> {
        let sim = load(&config)?;
        *SIM.lock().map_err(|_| "poisoned")? = Some(sim);
        Ok(Info {
            model: "island-sim".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            channels: vec![Channel {
                name: "power".into(),
                unit: "W".into(),
            }],
        })
    }

    fn poll(now_ms: u64) -> Result<Vec<Sample>, String> {
        let guard = SIM.lock().map_err(|_| "poisoned")?;
        let sim = guard.as_ref().ok_or("poll before init")?;
        Ok(sim
            .devices
            .iter()
            .map(|d| Sample {
                device: d.name.clone(),
                power_w: sim.power(d, now_ms),
                export_wh: None,
                import_wh: None,
            })
            .collect())
    }
}

// Only the component exports the driver: a native build (tests, clippy) has no use for the
// symbols, and the host linker cannot take their names.
#[cfg(target_arch = "wasm32")]
export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_battery_stays_within_its_charge_and_limits() {
        let b = Battery {
            capacity_wh: 1_000,
            initial_wh: 100,
            max_charge_w: 2_000,
            max_discharge_w: 3_000,
        };
        // Asked to charge 5 kW for 4 quarter hours, then discharge 5 kW for 4.
        let rows = [-5_000, -5_000, -5_000, -5_000, 5_000, 5_000, 5_000, 5_000];
        let mut soc_seen = Vec::new();
        for row in 0..rows.len() {
            let (p, soc) = b.power(&rows, row);
            assert!((0..=1_000).contains(&soc), "row {row}: soc {soc}");
            assert!((-2_000..=3_000).contains(&p), "row {row}: {p} W");
            soc_seen.push((p, soc));
        }
        // Charging is capped at 2 kW (500 Wh a quarter hour), then by the room left...
        assert_eq!(soc_seen[0], (-2_000, 100));
        assert_eq!(soc_seen[1], (-1_600, 600));
        assert_eq!(soc_seen[2], (0, 1_000), "full: no more charge");
        // ...discharging at 3 kW (750 Wh) until empty.
        assert_eq!(soc_seen[4], (3_000, 1_000));
        assert_eq!(soc_seen[5], (1_000, 250), "only what is left");
        assert_eq!(soc_seen[6], (0, 0));
    }
}
