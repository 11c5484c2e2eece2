//! Who is who in the market: each participant's meter (its kind and rating, registered by the
//! market admin, the grid company), and the forecasts owners of meters send for coming periods.
//!
//! Green is a device fact: an offer is renewable exactly when its seller's meter is of a kind
//! the market's config lists as renewable. Forecasts come only from those who can know:
//! renewable supply from the owners of renewable meters, load from the owners of load meters,
//! each at most the meter's rating over the period, and only before the period's gate closes.

use crate::{Config, start_of};
use gridledger_sdk::prelude::*;
use pricing::ForecastKind;

/// A participant's registered meter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
    pub participant: Address,
    /// The device kind, as the chain's device registry names it (`wind_turbine`, ...).
    pub kind: String,
    pub rated_power_w: u64,
}

/// The `meter` query's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterAnswer {
    pub device: Address,
    pub kind: String,
    pub rated_power_w: u64,
    pub renewable: bool,
}

/// A meter in the instantiate message or a `register_device` call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeterEntry {
    pub device: Address,
    pub participant: Address,
    pub kind: String,
    pub rated_power_w: u64,
}

/// Longest device kind name.
const MAX_KIND_BYTES: usize = 64;

/// Device → its meter record.
const METERS: Map<Address, Meter> = Map::new("meter");
/// Participant → its meter (one each: readings are kept per participant and period).
const METER_OF: Map<Address, Address> = Map::new("meter_of");
/// (period, sender) → (0 = supply | 1 = demand, Wh): the sender's latest forecast.
const FORECASTS: Map<(u64, Address), (u8, u64)> = Map::new("fc");
/// Period → (supply Wh, demand Wh), the totals of its forecasts.
const TOTALS: Map<u64, (u64, u64)> = Map::new("fc_total");

/// What `register_device` answers: the participant's meter it let go, if another device.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub struct Registered {
    pub replaced: Option<Address>,
}

/// Registers (or re-registers) `e.device` as `e.participant`'s meter. A participant's
/// earlier meter, and a device's earlier participant, are let go: one meter per participant.
/// Returns the participant's earlier meter if it was another device (the chain revokes it).
pub fn register(e: &MeterEntry) -> Result<Option<Address>> {
    ensure!(
        !e.kind.is_empty() && e.kind.len() <= MAX_KIND_BYTES,
        "a device kind has 1 to {MAX_KIND_BYTES} bytes"
    );
    let replaced = METER_OF
        .may_load(&e.participant)?
        .filter(|old| *old != e.device);
    if let Some(old) = replaced {
        METERS.remove(&old);
    }
    if let Some(old) = METERS.may_load(&e.device)?
        && old.participant != e.participant
    {
        METER_OF.remove(&old.participant);
    }
    METERS.save(
        &e.device,
        &Meter {
            participant: e.participant,
            kind: e.kind.clone(),
            rated_power_w: e.rated_power_w,
        },
    )?;
    METER_OF.save(&e.participant, &e.device)?;
    Ok(replaced)
}

/// The meter record of a device.
pub fn meter(device: &Address) -> Result<Option<Meter>> {
    METERS.may_load(device)
}

/// The meter of a participant, with its device address.
pub fn meter_of(participant: &Address) -> Result<Option<(Address, Meter)>> {
    let Some(device) = METER_OF.may_load(participant)? else {
        return Ok(None);
    };
    Ok(METERS.may_load(&device)?.map(|m| (device, m)))
}

/// Whether `participant`'s energy is renewable: its meter is of a renewable kind.
pub fn is_renewable(c: &Config, participant: &Address) -> Result<bool> {
    Ok(meter_of(participant)?.is_some_and(|(_, m)| c.renewable_kinds.contains(&m.kind)))
}

/// Most energy a meter of `rated_power_w` can measure in one period, Wh.
pub fn period_capacity_wh(c: &Config, rated_power_w: u64) -> u64 {
    (rated_power_w as u128 * c.energy_period_ms as u128 / 3_600_000) as u64
}

/// Records `sender`'s forecast for `period`, replacing its earlier one.
pub fn forecast(ctx: &mut Ctx, c: &Config, period: u64, kind: ForecastKind, wh: u64) -> Result<()> {
    let sender = ctx.caller()?;
    ensure!(
        ctx.env().time_ms < start_of(c, period),
        "forecasts for period {period} closed at its gate ({} ms)",
        start_of(c, period)
    );
    let Some((device, m)) = meter_of(&sender)? else {
        fail!("only owners of a registered meter forecast; {sender} has none");
    };
    let (slot, allowed) = match kind {
        ForecastKind::Supply => (0u8, c.renewable_kinds.contains(&m.kind)),
        ForecastKind::Demand => (1u8, c.load_kinds.contains(&m.kind)),
    };
    ensure!(
        allowed,
        "a {} forecast needs a meter of a {} kind; {device} is a {}",
        if slot == 0 { "supply" } else { "demand" },
        if slot == 0 { "renewable" } else { "load" },
        m.kind
    );
    let cap = period_capacity_wh(c, m.rated_power_w);
    ensure!(
        wh <= cap,
        "forecast of {wh} Wh exceeds what {device} can deliver in a period ({cap} Wh at {} W)",
        m.rated_power_w
    );
    let old = FORECASTS.may_load(&(period, sender))?;
    FORECASTS.save(&(period, sender), &(slot, wh))?;
    TOTALS.update(&period, |t| {
        let (mut supply, mut demand) = t.unwrap_or((0, 0));
        if let Some((old_slot, old_wh)) = old {
            // Always present in the total it was added to.
            let total = if old_slot == 0 {
                &mut supply
            } else {
                &mut demand
            };
            *total = total.saturating_sub(old_wh);
        }
        let total = if slot == 0 { &mut supply } else { &mut demand };
        *total = total
            .checked_add(wh)
            .ok_or_else(|| Error::new("forecast total overflows"))?;
        Ok((supply, demand))
    })?;
    ctx.emit(
        Event::new("forecast")
            .attr("period", period)
            .attr("kind", slot)
            .attr("wh", wh),
    );
    Ok(())
}

/// (renewable supply, demand) forecast for `period` so far.
pub fn totals(period: u64) -> Result<(u64, u64)> {
    Ok(TOTALS.may_load(&period)?.unwrap_or((0, 0)))
}
