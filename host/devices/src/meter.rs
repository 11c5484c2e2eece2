//! The node's side of each device: its signing key, cumulative counters and sequence number.
//!
//! A plugin only says what it measured. The meter here checks that it makes sense (a device
//! the plugin may report for, power within the rating, counters that do not run backwards or
//! faster than the rating allows), advances the counters and signs the reading. Because all
//! of this lives in the host, replacing a plugin cannot reset a counter or reach a key.

use crate::runtime::Sample;
use gridledger_types::{Address, Hash32, Keypair, MeterReading, SignedReading};

/// How the chain dates and bounds readings (from genesis).
#[derive(Clone, Debug)]
pub struct ChainClock {
    pub chain_id: String,
    pub market_start_ms: u64,
    pub period_ms: u64,
    /// Field time one period stands for: energy accrues `field_period_ms / period_ms` times
    /// faster than wall time (1 outside demos).
    pub field_period_ms: u64,
}

impl ChainClock {
    pub fn period_of(&self, t_ms: u64) -> Option<u64> {
        t_ms.checked_sub(self.market_start_ms)
            .map(|d| d / self.period_ms)
    }

    /// Field milliseconds in `elapsed_ms` of wall time.
    fn field_ms(&self, elapsed_ms: u64) -> u128 {
        elapsed_ms as u128 * self.field_period_ms as u128 / self.period_ms as u128
    }
}

/// Where a device's readings stand (what the chain last accepted, or the node last signed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeterPosition {
    pub next_seq: u64,
    pub export_wh: u64,
    pub import_wh: u64,
    pub last_timestamp_ms: u64,
}

/// One device, as the node keeps it.
pub struct Meter {
    pub name: String,
    key: Keypair,
    pub rated_power_w: u64,
    pub position: MeterPosition,
    /// Energy below one Wh not yet on the counters, W·ms.
    export_rest: u128,
    import_rest: u128,
}

const WMS_PER_WH: u128 = 3_600_000;

impl Meter {
    /// A meter continuing from `position` (read from the chain when the node starts).
    pub fn new(name: &str, key: Keypair, rated_power_w: u64, position: MeterPosition) -> Meter {
        Meter {
            name: name.to_string(),
            key,
            rated_power_w,
            position,
            export_rest: 0,
            import_rest: 0,
        }
    }

    pub fn device(&self) -> Address {
        self.key.address()
    }

    /// Turns a sample into the next signed reading, or says why the sample is nonsense. A
    /// refused sample changes nothing.
    pub fn read(
        &mut self,
        clock: &ChainClock,
        sample: &Sample,
        now_ms: u64,
        plugin: Hash32,
    ) -> Result<SignedReading, String> {
        let (reading, export_rest, import_rest) = self.next(clock, sample, now_ms, plugin)?;
        self.position = MeterPosition {
            next_seq: reading.seq + 1,
            export_wh: reading.export_wh,
            import_wh: reading.import_wh,
            last_timestamp_ms: reading.timestamp_ms,
        };
        self.export_rest = export_rest;
        self.import_rest = import_rest;
        Ok(reading.sign(&clock.chain_id, &self.key))
    }

    /// Checks a sample without taking it (a new plugin's health check).
    pub fn check(&self, clock: &ChainClock, sample: &Sample, now_ms: u64) -> Result<(), String> {
        self.next(clock, sample, now_ms, Hash32::ZERO).map(|_| ())
    }

    fn next(
        &self,
        clock: &ChainClock,
        sample: &Sample,
        now_ms: u64,
        plugin: Hash32,
    ) -> Result<(MeterReading, u128, u128), String> {
        let p = &self.position;
        if sample.power_w.unsigned_abs() > self.rated_power_w {
            return Err(format!(
                "{} W is beyond the device's rating of {} W",
                sample.power_w, self.rated_power_w
            ));
        }
        let period = clock
            .period_of(now_ms)
            .ok_or("the market has not started")?;
        if now_ms <= p.last_timestamp_ms {
            return Err("the clock has not moved since the last reading".into());
        }
        // The first reading only sets the counters' starting point.
        let elapsed = if p.next_seq == 0 {
            0
        } else {
            now_ms - p.last_timestamp_ms
        };
        let field_ms = clock.field_ms(elapsed);
        let (mut export_rest, mut import_rest) = (self.export_rest, self.import_rest);
        let export_wh;
        let import_wh;
        match (sample.export_wh, sample.import_wh) {
            (Some(e), Some(i)) => {
                if e < p.export_wh || i < p.import_wh {
                    return Err("the meter's counters went backwards".into());
                }
                (export_wh, import_wh) = (e, i);
            }
            (None, None) => {
                let power = sample.power_w.unsigned_abs() as u128 * field_ms;
                if sample.power_w >= 0 {
                    export_rest += power;
                } else {
                    import_rest += power;
                }
                export_wh = p.export_wh + (export_rest / WMS_PER_WH) as u64;
                import_wh = p.import_wh + (import_rest / WMS_PER_WH) as u64;
                export_rest %= WMS_PER_WH;
                import_rest %= WMS_PER_WH;
            }
            _ => return Err("give both counters or neither".into()),
        }
        if p.next_seq > 0 {
            let moved = (export_wh - p.export_wh) as u128 + (import_wh - p.import_wh) as u128;
            let bound = self.rated_power_w as u128 * field_ms / WMS_PER_WH + 1;
            if moved > bound {
                return Err(format!(
                    "counters moved {moved} Wh in {elapsed} ms; the rating allows {bound} Wh"
                ));
            }
        }
        let reading = MeterReading {
            device: self.device(),
            period,
            export_wh,
            import_wh,
            power_w: sample.power_w,
            timestamp_ms: now_ms,
            seq: p.next_seq,
            plugin,
        };
        Ok((reading, export_rest, import_rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_000_000;

    fn clock() -> ChainClock {
        ChainClock {
            chain_id: "c".into(),
            market_start_ms: 0,
            period_ms: 5_000,
            field_period_ms: 900_000,
        }
    }

    fn sample(power_w: i64) -> Sample {
        Sample {
            device: "m".into(),
            power_w,
            export_wh: None,
            import_wh: None,
        }
    }

    #[test]
    fn power_is_integrated_in_field_time_without_losing_fractions() {
        let mut m = Meter::new(
            "m",
            Keypair::from_seed_phrase("m"),
            10_000,
            Default::default(),
        );
        let c = clock();
        let first = m.read(&c, &sample(1_000), T, Hash32::ZERO).unwrap();
        assert_eq!((first.reading.seq, first.reading.export_wh), (0, 0));
        // 1 kW for 100 ms of wall time = 18 s of field time = 5 Wh, in ten steps of 0.5 Wh.
        for i in 1..=10 {
            m.read(&c, &sample(1_000), T + 10 * i, Hash32::ZERO)
                .unwrap();
        }
        assert_eq!(m.position.export_wh, 5);
        assert_eq!(m.position.next_seq, 11);
        m.read(&c, &sample(-2_000), T + 110, Hash32::ZERO).unwrap();
        assert_eq!((m.position.export_wh, m.position.import_wh), (5, 1));
        first.verify("c").unwrap();
    }

    #[test]
    fn nonsense_samples_change_nothing() {
        let mut m = Meter::new(
            "m",
            Keypair::from_seed_phrase("m"),
            10_000,
            Default::default(),
        );
        let c = clock();
        let counters = |e, i| Sample {
            export_wh: Some(e),
            import_wh: Some(i),
            ..sample(0)
        };
        m.read(&c, &counters(100, 7), T, Hash32::ZERO).unwrap();
        let before = m.position.clone();
        for (bad, why) in [
            (sample(10_001), "beyond the device's rating"),
            (counters(99, 7), "went backwards"),
            // 10 kW × 1 s wall = 180 s field = 500 Wh, + 1.
            (counters(602, 7), "the rating allows 501 Wh"),
            (
                Sample {
                    export_wh: Some(1),
                    ..sample(0)
                },
                "both counters",
            ),
        ] {
            let e = m.read(&c, &bad, T + 1_000, Hash32::ZERO).unwrap_err();
            assert!(e.contains(why), "{e}");
            assert_eq!(m.position, before);
        }
        assert!(
            m.read(&c, &counters(101, 7), T, Hash32::ZERO)
                .unwrap_err()
                .contains("clock")
        );
        m.read(&c, &counters(601, 7), T + 1_000, Hash32::ZERO)
            .unwrap();
        assert_eq!(m.position.next_seq, 2);
    }
}
