//! The device registry and meter readings, as the chain executes them.
//!
//! The grid company registers devices (key, owner, kind, rated power) and may revoke them.
//! A `Readings` transaction carries readings signed by device keys; each is checked on its own
//! and either accepted (the device's record moves on) or refused with a reason in the receipt,
//! changing nothing. Accepted readings are the only source of settlement: when a device's
//! readings move into a new period, the energy of the period before is reported to the
//! reading contract (the market) as that device.
//!
//! A device's sequence numbers must rise but may skip: a reading refused (too old by the time
//! its block came) or lost on its way costs only itself, not every later reading of the meter.
//!
//! Energy between two accepted readings that lie in different periods is split over the
//! periods by time ([`split_by_time`]), whether or not readings between them were skipped:
//! the period being closed gets its share, the new period starts from the share that falls in
//! it, and periods in a gap between them (no reading at all) are credited nothing. A gateway
//! that withholds readings therefore cannot bank energy and release it in the period where
//! its owner sold; what it can choose is only which readings the time shares are taken
//! between. Each report runs on a fixed budget
//! ([`REPORT_GAS`]) that the transaction must hold before any reading is applied, so a
//! relayer with a minimal gas limit cannot have readings accepted and their energy lost.

use crate::exec::{Done, Executor, Fail, OpError, chain_event};
use gridledger_state::{StateRead, StateStack};
use gridledger_types::device::{MAX_READINGS_PER_TX, PeriodStart};
use gridledger_types::schema::{self, Roles};
use gridledger_types::{
    Address, DeviceRecord, ErrorCode, Event, MeterReading, SignedReading, codec,
};
use gridledger_vm::{BlockEnv, Entry, HostFault};

/// Gas each energy report to the reading contract runs with; a readings transaction must
/// hold this much for every period its readings close, on top of its signature checks. The
/// market's report uses about 120,000 (its constant work: config, meter, period, one entry);
/// the readings test holds it under half of this. At 1,000,000 a batch of 80 readings held
/// 114 M of a block's gas to use 40 M, and a 1,000-meter community's readings did not fit
/// the blocks.
pub const REPORT_GAS: u64 = 400_000;

/// Most gas one reading in a batch can use: its lookup, its signature check and a possible
/// energy report ([`REPORT_GAS`]). What a relay holds per reading, and what a leader's
/// readings lane allows ([`crate::selection`]).
pub fn gas_per_reading(g: &gridledger_vm::GasSchedule) -> u64 {
    g.reading_lookup
        .saturating_add(g.reading_signature)
        .saturating_add(REPORT_GAS)
}

/// The rules readings meet, from genesis.
#[derive(Clone, Debug)]
pub struct ReadingRules {
    /// Label of the contract accepted energy is reported to.
    pub reading_contract: Option<String>,
    pub market_start_ms: u64,
    pub period_ms: u64,
    pub time_tolerance_ms: u64,
    /// Field time per market period (energy-bound scale), ms.
    pub field_period_ms: u64,
}

impl ReadingRules {
    /// The period a timestamp falls in, or `None` before the market starts.
    pub fn period_of(&self, time_ms: u64) -> Option<u64> {
        time_ms
            .checked_sub(self.market_start_ms)
            .map(|t| t / self.period_ms)
    }

    pub fn period_start(&self, period: u64) -> u64 {
        self.market_start_ms
            .saturating_add(period.saturating_mul(self.period_ms))
    }

    /// Most energy, Wh, a device of `rated_power_w` can move in `elapsed_ms` of chain time.
    pub fn energy_bound_wh(&self, rated_power_w: u64, elapsed_ms: u64) -> u64 {
        let field_ms = elapsed_ms as u128 * self.field_period_ms as u128 / self.period_ms as u128;
        // +1 Wh: counters are whole Wh, so a reading may round up by one.
        (rated_power_w as u128 * field_ms / 3_600_000 + 1).min(u64::MAX as u128) as u64
    }
}

/// Why one reading was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Unregistered,
    Revoked,
    Signature(String),
    /// Not after the device's last accepted reading: a replay, or readings out of order.
    Sequence {
        got: u64,
        last: u64,
    },
    CounterBackwards,
    TimeBackwards,
    TimeOutOfTolerance {
        timestamp_ms: u64,
        block_ms: u64,
    },
    /// For a period the block's time has not reached.
    AheadOfBlock {
        period: u64,
        block_period: Option<u64>,
    },
    WrongPeriod {
        got: u64,
        want: Option<u64>,
    },
    Implausible {
        claimed_wh: u64,
        bound_wh: u64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unregistered => write!(f, "device is not registered"),
            Refusal::Revoked => write!(f, "device is revoked"),
            Refusal::Signature(e) => write!(f, "bad signature: {e}"),
            Refusal::Sequence { got, last } => {
                write!(
                    f,
                    "sequence {got} is not after the last accepted one ({last})"
                )
            }
            Refusal::CounterBackwards => write!(f, "an energy counter went backwards"),
            Refusal::TimeBackwards => write!(f, "timestamp is not after the previous reading's"),
            Refusal::TimeOutOfTolerance {
                timestamp_ms,
                block_ms,
            } => write!(
                f,
                "timestamp {timestamp_ms} strays too far from block time {block_ms}"
            ),
            Refusal::AheadOfBlock {
                period,
                block_period,
            } => match block_period {
                Some(b) => write!(
                    f,
                    "reading for period {period} is ahead of the block's period {b}"
                ),
                None => write!(
                    f,
                    "reading for period {period} is ahead of the block, which is before the market began"
                ),
            },
            Refusal::WrongPeriod { got, want } => match want {
                Some(w) => write!(f, "reading says period {got} but was taken in period {w}"),
                None => write!(
                    f,
                    "reading for period {got} was taken before the market began"
                ),
            },
            Refusal::Implausible {
                claimed_wh,
                bound_wh,
            } => write!(
                f,
                "{claimed_wh} Wh is more than the device's rated power allows ({bound_wh} Wh)"
            ),
        }
    }
}

/// The registry's state for one device.
pub(crate) fn device(state: &dyn StateRead, id: &Address) -> Result<Option<DeviceRecord>, Fail> {
    match state.get(&schema::device_key(id))? {
        Some(b) => codec::decode("device record", &b)
            .map(Some)
            .map_err(|e| Fail::Host(HostFault(e.to_string()))),
        None => Ok(None),
    }
}

/// Registered devices, in registration order.
pub(crate) fn device_list(state: &dyn StateRead) -> Result<Vec<Address>, Fail> {
    match state.get(&schema::meta_key(schema::META_DEVICES))? {
        Some(b) => {
            codec::decode("device list", &b).map_err(|e| Fail::Host(HostFault(e.to_string())))
        }
        None => Ok(Vec::new()),
    }
}

fn save(state: &mut StateStack, id: &Address, rec: &DeviceRecord) {
    state.set(schema::device_key(id), codec::encode(rec));
}

fn op(code: ErrorCode, msg: impl Into<String>) -> Fail {
    Fail::Op(OpError(code, msg.into(), 0))
}

/// Checks one reading against its device's record, given the answer of its signature check.
fn check_reading(
    rules: &ReadingRules,
    block_ms: u64,
    record: Option<&DeviceRecord>,
    signed: &SignedReading,
    signature: Result<(), String>,
) -> Result<(), Refusal> {
    let r = &signed.reading;
    let rec = record.ok_or(Refusal::Unregistered)?;
    if rec.revoked {
        return Err(Refusal::Revoked);
    }
    // Sequence and freshness before the signature: a replayed, junk or stale reading is
    // refused for what it is, and its signature was never checked (see `worth_checking`).
    // Numbers may skip (a reading refused or lost on its way costs only itself); they may not
    // go back.
    if let Some(last) = &rec.last
        && r.seq <= last.seq
    {
        return Err(Refusal::Sequence {
            got: r.seq,
            last: last.seq,
        });
    }
    if r.timestamp_ms.abs_diff(block_ms) > rules.time_tolerance_ms {
        return Err(Refusal::TimeOutOfTolerance {
            timestamp_ms: r.timestamp_ms,
            block_ms,
        });
    }
    // A reading of a period the chain's clock has not reached would have its energy counted
    // in the block's period at the next crossing.
    let block_period = rules.period_of(block_ms);
    if block_period.is_none_or(|b| r.period > b) {
        return Err(Refusal::AheadOfBlock {
            period: r.period,
            block_period,
        });
    }
    signature.map_err(Refusal::Signature)?;
    let taken_in = rules.period_of(r.timestamp_ms);
    if taken_in != Some(r.period) {
        return Err(Refusal::WrongPeriod {
            got: r.period,
            want: taken_in,
        });
    }
    if let Some(last) = &rec.last {
        if r.timestamp_ms <= last.timestamp_ms {
            return Err(Refusal::TimeBackwards);
        }
        if r.export_wh < last.export_wh || r.import_wh < last.import_wh {
            return Err(Refusal::CounterBackwards);
        }
        let claimed_wh =
            (r.export_wh - last.export_wh).saturating_add(r.import_wh - last.import_wh);
        let bound_wh = rules.energy_bound_wh(rec.rated_power_w, r.timestamp_ms - last.timestamp_ms);
        if claimed_wh > bound_wh {
            return Err(Refusal::Implausible {
                claimed_wh,
                bound_wh,
            });
        }
    }
    Ok(())
}

/// Whether a reading could be accepted, judged without its signature: a reading this refuses
/// is refused by [`check_reading`] before its signature matters.
fn worth_checking(
    rules: &ReadingRules,
    block_ms: u64,
    record: Option<&DeviceRecord>,
    signed: &SignedReading,
) -> bool {
    let r = &signed.reading;
    record.is_some_and(|rec| {
        !rec.revoked
            && rec.last.as_ref().is_none_or(|l| r.seq > l.seq)
            && r.timestamp_ms.abs_diff(block_ms) <= rules.time_tolerance_ms
            && rules.period_of(block_ms).is_some_and(|b| r.period <= b)
    })
}

impl Executor {
    /// Registers a device on chain and, when readings are reported to a contract (the
    /// market), with that contract too, in the same transaction: `{"register_device":
    /// {"device","participant","kind","rated_power_w"}}`, called by the sender (the market
    /// takes it from its admin only). If the contract refuses, nothing is registered. The
    /// market keeps one meter per participant: a device it answers it replaced
    /// (`{"replaced": ADDR}`) is revoked on chain in the same transaction. So the chain's live
    /// devices and the market's meters stay one list, as genesis starts them (`{devices}`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn register_device(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        sender: Address,
        device: Address,
        owner: Address,
        kind: &str,
        rated_power_w: u64,
        budget: u64,
    ) -> Result<Done, Fail> {
        self.require_role(state, &sender, Roles::GRID_COMPANY, "registering a device")?;
        register(state, device, owner, kind, rated_power_w)?;
        let mut events = vec![chain_event(
            "device_registered",
            &[
                ("device", device.to_hex()),
                ("owner", owner.to_hex()),
                ("kind", kind.to_string()),
                ("rated_power_w", rated_power_w.to_string()),
            ],
        )];
        let mut gas = 0;
        if let Some(contract) = self.reading_contract(state)? {
            let msg = serde_json::json!({"register_device": {
                "device": device.to_hex(),
                "participant": owner.to_hex(),
                "kind": kind,
                "rated_power_w": rated_power_w,
            }});
            let done = self.call(
                block,
                state,
                contract,
                Entry::Execute,
                Some(sender),
                0,
                msg.to_string().as_bytes(),
                budget,
            )?;
            gas = done.gas;
            events.extend(done.events);
            // The market keeps one meter per participant: the one this replaced is let go
            // on chain too, or its readings would be accepted and their energy refused.
            let replaced = serde_json::from_slice::<serde_json::Value>(&done.result)
                .ok()
                .and_then(|v| v["replaced"].as_str().map(str::to_owned))
                .and_then(|h| gridledger_types::hash::parse_hex32(&h).ok())
                .map(Address);
            if let Some(old) = replaced.filter(|old| *old != device)
                && let Some(mut rec) = self::device(state, &old)?
                && !rec.revoked
            {
                rec.revoked = true;
                save(state, &old, &rec);
                events.push(chain_event(
                    "device_revoked",
                    &[("device", old.to_hex()), ("replaced_by", device.to_hex())],
                ));
            }
        }
        Ok(Done {
            gas,
            result: Vec::new(),
            events,
        })
    }

    /// The contract accepted readings are reported to, if genesis names one and it exists.
    fn reading_contract(&self, state: &StateStack) -> Result<Option<Address>, Fail> {
        let Some(label) = self
            .params
            .readings
            .as_ref()
            .and_then(|r| r.reading_contract.as_ref())
        else {
            return Ok(None);
        };
        Ok(state
            .get(&crate::label_key(label))?
            .and_then(|b| Address::from_slice(&b)))
    }

    pub(crate) fn revoke_device(
        &self,
        state: &mut StateStack,
        sender: Address,
        device_id: Address,
    ) -> Result<Done, Fail> {
        self.require_role(state, &sender, Roles::GRID_COMPANY, "revoking a device")?;
        let mut rec = device(state, &device_id)?.ok_or_else(|| {
            op(
                ErrorCode::NotFound,
                format!("no device {}", device_id.to_hex()),
            )
        })?;
        if rec.revoked {
            return Err(op(ErrorCode::InvalidInput, "device is already revoked"));
        }
        rec.revoked = true;
        save(state, &device_id, &rec);
        Ok(Done {
            gas: 0,
            result: Vec::new(),
            events: vec![chain_event(
                "device_revoked",
                &[("device", device_id.to_hex())],
            )],
        })
    }

    /// Applies a batch of readings: accepted ones advance their devices, refused ones are
    /// listed. The transaction fails only if the batch is malformed or nothing was accepted.
    pub(crate) fn readings(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        readings: &[SignedReading],
        budget: u64,
    ) -> Result<Done, Fail> {
        let Some(rules) = &self.params.readings else {
            return Err(op(
                ErrorCode::InvalidInput,
                "this chain takes no meter readings",
            ));
        };
        if readings.is_empty() || readings.len() > MAX_READINGS_PER_TX {
            return Err(op(
                ErrorCode::InvalidInput,
                format!("a batch holds 1 to {MAX_READINGS_PER_TX} readings"),
            ));
        }
        let contract = self.reading_contract(state)?;
        // Every reading's lookup is paid before any is looked up.
        let sched = &self.vm.config().gas;
        let lookups = sched.reading_lookup.saturating_mul(readings.len() as u64);
        if lookups > budget {
            return Err(Fail::Op(OpError(
                ErrorCode::OutOfGas,
                format!(
                    "looking up {} readings needs {lookups} gas, the transaction has {budget}",
                    readings.len()
                ),
                budget,
            )));
        }
        // Registration, sequence and freshness first, from the records as they stand: only
        // fresh readings of a registered, unrevoked device that come after its last accepted
        // one are worth a signature check. Junk, replays and stale readings cost a state
        // read, not a check.
        let mut worth = Vec::with_capacity(readings.len());
        for r in readings {
            let record = device(state, &r.reading.device)?;
            worth.push(worth_checking(rules, block.time_ms, record.as_ref(), r));
        }
        let checked: Vec<&SignedReading> = readings
            .iter()
            .zip(&worth)
            .filter(|(_, w)| **w)
            .map(|(r, _)| r)
            .collect();
        // Each signature check is paid for before it is done, and every energy report the
        // batch may trigger is reserved: a batch that cannot pay for them changes nothing.
        let mut gas = sched
            .reading_signature
            .saturating_mul(checked.len() as u64)
            .saturating_add(lookups);
        let reports = if contract.is_some() {
            reports_needed(state, &checked)?
        } else {
            0
        };
        let needed = gas.saturating_add(REPORT_GAS.saturating_mul(reports));
        if needed > budget {
            return Err(Fail::Op(OpError(
                ErrorCode::OutOfGas,
                format!(
                    "checking {} reading signatures and reporting {reports} periods' energy needs {needed} gas, the transaction has {budget} left",
                    checked.len()
                ),
                budget,
            )));
        }
        // Those signatures at once (device keys stay decompressed in the cache).
        let signing: Vec<Vec<u8>> = checked
            .iter()
            .map(|r| r.reading.signing_bytes(&block.chain_id))
            .collect();
        let items: Vec<_> = checked
            .iter()
            .zip(&signing)
            .map(|(r, msg)| (&r.reading.device, msg.as_slice(), &r.signature))
            .collect();
        let mut verified = self.keys.verify_batch(&items).into_iter();
        let signatures: Vec<Result<(), String>> = worth
            .iter()
            .map(|w| match w {
                true => verified
                    .next()
                    .unwrap_or_else(|| Err("no signature check".into())),
                false => Err("not checked: the reading is refused before its signature".into()),
            })
            .collect();
        let mut events = Vec::new();
        let mut refused = Vec::new();
        for ((index, signed), signature) in readings.iter().enumerate().zip(signatures) {
            let id = signed.reading.device;
            let record = device(state, &id)?;
            if let Err(why) =
                check_reading(rules, block.time_ms, record.as_ref(), signed, signature)
            {
                refused.push(serde_json::json!({"index": index, "device": id.to_hex(), "reason": why.to_string()}));
                events.push(chain_event(
                    "reading_refused",
                    &[("device", id.to_hex()), ("reason", why.to_string())],
                ));
                continue;
            }
            let Some(mut rec) = record else { continue };
            let r = &signed.reading;
            if rec.plugin != Some(r.plugin) {
                events.push(chain_event(
                    "device_plugin",
                    &[("device", id.to_hex()), ("plugin", r.plugin.to_hex())],
                ));
                rec.plugin = Some(r.plugin);
            }
            // Report the open period's energy once readings have moved past it.
            match rec.open_period.clone() {
                None => rec.open_period = Some(period_start(r)),
                Some(open)
                    if r.period > open.period
                        && block.time_ms >= rules.period_start(open.period + 1) =>
                {
                    let last = rec.last.as_ref().unwrap_or(r);
                    let split = split_by_time(rules, last, r);
                    let closing = split.share(open.period);
                    let produced = last.export_wh.saturating_sub(open.export_wh) + closing.0;
                    let consumed = last.import_wh.saturating_sub(open.import_wh) + closing.1;
                    if let Some(c) = contract {
                        let used = self.report_energy(
                            block,
                            state,
                            c,
                            id,
                            open.period,
                            produced,
                            consumed,
                            REPORT_GAS.min(budget.saturating_sub(gas)),
                            &mut events,
                        )?;
                        gas = gas.saturating_add(used);
                    }
                    // The new period counts from where its own share of the step begins.
                    let own = split.share(r.period);
                    rec.open_period = Some(PeriodStart {
                        period: r.period,
                        export_wh: r.export_wh.saturating_sub(own.0),
                        import_wh: r.import_wh.saturating_sub(own.1),
                    });
                }
                Some(_) => {}
            }
            rec.last = Some(r.clone());
            save(state, &id, &rec);
        }
        let accepted = readings.len() - refused.len();
        if accepted == 0 {
            let first = refused[0]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            // The lookups and checks were done: they are paid for.
            return Err(Fail::Op(OpError(
                ErrorCode::InvalidInput,
                format!("no reading accepted; the first was refused: {first}"),
                gas,
            )));
        }
        events.push(chain_event(
            "readings",
            &[
                ("accepted", accepted.to_string()),
                ("refused", refused.len().to_string()),
            ],
        ));
        Ok(Done {
            gas,
            result: serde_json::json!({"accepted": accepted, "refused": refused})
                .to_string()
                .into_bytes(),
            events,
        })
    }

    /// Reports a period's energy to the reading contract as the device. A refusal there (the
    /// period already settled, the device unknown to the market) is recorded, not fatal.
    #[allow(clippy::too_many_arguments)]
    fn report_energy(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        contract: Address,
        device: Address,
        period: u64,
        produced_wh: u64,
        consumed_wh: u64,
        budget: u64,
        events: &mut Vec<Event>,
    ) -> Result<u64, Fail> {
        let msg = serde_json::json!({"reading": {"period": period, "produced_wh": produced_wh, "consumed_wh": consumed_wh}});
        state.push_layer();
        match self.call(
            block,
            state,
            contract,
            Entry::Execute,
            Some(device),
            0,
            msg.to_string().as_bytes(),
            budget,
        ) {
            Ok(done) => {
                state.commit_layer();
                events.extend(done.events);
                Ok(done.gas)
            }
            Err(Fail::Op(OpError(_, message, gas))) => {
                state.discard_layer();
                events.push(chain_event(
                    "reading_not_reported",
                    &[
                        ("device", device.to_hex()),
                        ("period", period.to_string()),
                        ("reason", message),
                    ],
                ));
                Ok(gas)
            }
            Err(host) => {
                state.discard_layer();
                Err(host)
            }
        }
    }
}

/// At most how many period-closing energy reports `readings` can trigger. A device's report
/// is made when an accepted reading's period is past its open one, which then moves up to it:
/// so at most one per distinct period above the recorded open one among the device's
/// readings (a device with none open yet: its first accepted reading opens one, without a
/// report). Counted over every reading worth checking, since which are accepted is not known
/// yet: refused ones only make the reports fewer.
fn reports_needed(state: &dyn StateRead, readings: &[&SignedReading]) -> Result<u64, Fail> {
    let mut periods: std::collections::HashMap<Address, std::collections::BTreeSet<u64>> =
        Default::default();
    for r in readings {
        periods
            .entry(r.reading.device)
            .or_default()
            .insert(r.reading.period);
    }
    let mut n = 0u64;
    for (id, ps) in &periods {
        let open = device(state, id)?.and_then(|rec| rec.open_period.map(|o| o.period));
        n += match open {
            Some(o) => ps.range(o.saturating_add(1)..).count() as u64,
            None => ps.len().saturating_sub(1) as u64,
        };
    }
    Ok(n)
}

/// The energy of one step between readings, by period.
pub struct Split {
    parts: Vec<(u64, u64, u64)>,
}

impl Split {
    /// (export Wh, import Wh) of the step that falls in `period`.
    pub fn share(&self, period: u64) -> (u64, u64) {
        self.parts
            .iter()
            .find(|(p, _, _)| *p == period)
            .map_or((0, 0), |(_, e, i)| (*e, *i))
    }
}

/// Splits the energy counted between readings `from` and `to` over the periods their times
/// span, in proportion to the time each period holds (rounded down; between adjacent periods
/// the later one gets what rounding leaves). Only the first and last periods are listed: a
/// period in between had no reading and is credited nothing.
pub fn split_by_time(rules: &ReadingRules, from: &MeterReading, to: &MeterReading) -> Split {
    let export = to.export_wh.saturating_sub(from.export_wh);
    let import = to.import_wh.saturating_sub(from.import_wh);
    let (t1, t2) = (from.timestamp_ms, to.timestamp_ms.max(from.timestamp_ms));
    if from.period >= to.period || t2 == t1 {
        return Split {
            parts: vec![(to.period, export, import)],
        };
    }
    let span = (t2 - t1) as u128;
    let portion = |wh: u64, ms: u64| (wh as u128 * ms as u128 / span) as u64;
    // The first period's time: from the earlier reading to the period's end.
    let first_ms = rules.period_start(from.period + 1).clamp(t1, t2) - t1;
    // The last period's time: from its start to the later reading.
    let last_ms = t2 - rules.period_start(to.period).clamp(t1, t2);
    let first = (portion(export, first_ms), portion(import, first_ms));
    let last = if to.period == from.period + 1 {
        // No gap: the two shares are the whole step.
        (export - first.0, import - first.1)
    } else {
        (portion(export, last_ms), portion(import, last_ms))
    };
    Split {
        parts: vec![(from.period, first.0, first.1), (to.period, last.0, last.1)],
    }
}

fn period_start(r: &MeterReading) -> PeriodStart {
    PeriodStart {
        period: r.period,
        export_wh: r.export_wh,
        import_wh: r.import_wh,
    }
}

/// Adds a device to the registry (genesis and `RegisterDevice`).
pub(crate) fn register(
    state: &mut StateStack,
    device_id: Address,
    owner: Address,
    kind: &str,
    rated_power_w: u64,
) -> Result<(), Fail> {
    if rated_power_w == 0 {
        return Err(op(ErrorCode::InvalidInput, "rated power must be positive"));
    }
    if kind.is_empty() || kind.len() > 64 {
        return Err(op(ErrorCode::InvalidInput, "kind must be 1 to 64 bytes"));
    }
    if device(state, &device_id)?.is_some() {
        return Err(op(
            ErrorCode::InvalidInput,
            format!("device {} is already registered", device_id.to_hex()),
        ));
    }
    save(
        state,
        &device_id,
        &DeviceRecord {
            owner,
            kind: kind.to_string(),
            rated_power_w,
            revoked: false,
            plugin: None,
            last: None,
            open_period: None,
        },
    );
    let mut list = device_list(state)?;
    list.push(device_id);
    state.set(schema::meta_key(schema::META_DEVICES), codec::encode(&list));
    Ok(())
}
