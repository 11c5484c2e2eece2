//! The market: stages 2 (transaction) and 3 (settlement) of every delivery period.
//!
//! Periods are numbered from `start_ms` in steps of `period_ms`; period `j` is delivered during
//! `[start(j), start(j+1))`.
//!
//! - **Orders** for period `j` are accepted until gate closure at `start(j)`. An offer (seller,
//!   Wh, minimum price, renewable?) posts a performance bond of `Wh × shortfall_penalty` with
//!   it; a bid (buyer, Wh, maximum price) posts its full margin `Wh × max_price` into escrow.
//!   Prices must lie in the regulator's band. Orders can be cancelled before gate closure.
//! - **Clearing** happens when period `j` starts: the chain itself calls `sudo` at the period
//!   boundary (see [`auction`] for the rules). Unmatched escrow and bond are returned at once.
//! - **Readings**: after delivery, each participant's registered meter reports the Wh it
//!   produced and consumed in the period.
//! - **Settlement** of period `j` happens at the boundary two periods later (one period for
//!   readings), or when anyone calls `settle` after that: sellers are paid for energy both
//!   contracted and delivered, from the buyers' escrow; renewable sellers receive the subsidy
//!   `R_i` from the pool; a seller's shortfall costs the penalty from its bond; a buyer's
//!   residual imbalance (energy bought but not delivered, then drawn from the grid) and
//!   over-draw are paid to the grid company at the tariff (over-draw also pays the penalty);
//!   unused margin and bond are refunded; buyers of renewable energy in periods with `μ < 1`
//!   earn incentive points (1 per Wh). A period settles once.
//!
//! All token movements are transfers out of this contract's own balance, which always equals
//! open escrow + open bonds + the subsidy pool.

pub mod auction;

use auction::{BookOrder, clear};
use gridledger_sdk::Order as Iter;
use gridledger_sdk::prelude::*;
use pricing::PriceAnswer;

/// Largest order, Wh (1 GWh), so amounts × prices cannot overflow.
pub const MAX_ORDER_WH: u64 = 1_000_000_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub pricing: Address,
    pub grid_company: Address,
    /// Registers devices.
    pub admin: Address,
    pub start_ms: u64,
    pub period_ms: u64,
}

#[derive(Serialize, Deserialize)]
pub struct InstantiateMsg {
    pub pricing: Address,
    pub grid_company: Address,
    pub admin: Address,
    pub start_ms: u64,
    pub period_ms: u64,
    /// Meter → participant.
    #[serde(default)]
    pub devices: Vec<(Address, Address)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub period: u64,
    pub owner: Address,
    pub side: Side,
    pub wh: u64,
    pub price: u64,
    pub renewable: bool,
    /// Tokens held for this order: a bid's margin or an offer's bond.
    pub escrow: u64,
    pub filled_wh: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    pub period: u64,
    pub seller: Address,
    pub buyer: Address,
    pub offer_id: u64,
    pub bid_id: u64,
    pub wh: u64,
    pub price: u64,
    pub renewable: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    pub produced_wh: u64,
    pub consumed_wh: u64,
}

/// One participant's part in a period, from its trades and its meter's reading.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyRecord {
    pub participant: Address,
    pub sold_wh: u64,
    pub bought_wh: u64,
    /// From the accepted reading, if one arrived.
    pub produced_wh: Option<u64>,
    pub consumed_wh: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeriodSummary {
    pub period: u64,
    pub cleared: bool,
    pub settled: bool,
    pub reference_price: u64,
    pub mu: Fixed,
    /// Uniform clearing price (pay-as-clear), or the volume-weighted average (pay-as-bid).
    pub clearing_price: u64,
    pub traded_wh: u64,
    pub renewable_wh: u64,
    pub trades: u64,
    pub delivered_wh: u64,
    /// Paid to sellers for delivered energy.
    pub settled_value: u64,
    pub subsidy_paid: u64,
    pub penalties: u64,
    pub imbalance_paid: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cleared_periods: u64,
    pub settled_periods: u64,
    pub traded_wh: u64,
    pub pool: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecuteMsg {
    /// Sell `wh` in `period` at no less than `min_price`; send the bond as funds.
    Offer {
        period: u64,
        wh: u64,
        min_price: u64,
        renewable: bool,
    },
    /// Buy `wh` in `period` at no more than `max_price`; send the margin as funds.
    Bid {
        period: u64,
        wh: u64,
        max_price: u64,
    },
    /// Withdraw an order before gate closure; its escrow comes back.
    Cancel { period: u64, id: u64 },
    /// A registered meter reports its participant's energy for a delivered period.
    Reading {
        period: u64,
        produced_wh: u64,
        consumed_wh: u64,
    },
    /// Settle a delivered period (anyone, once readings had a period to arrive).
    Settle { period: u64 },
    /// Add to the subsidy pool (send funds).
    FundPool {},
    /// Register a meter for a participant (admin only).
    RegisterDevice {
        device: Address,
        participant: Address,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SudoMsg {
    /// Period `period` begins: clear it, and settle the period two before it.
    PeriodBoundary { period: u64 },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryMsg {
    Config {},
    Stats {},
    Period {
        period: u64,
    },
    Orders {
        period: u64,
        limit: u32,
    },
    Trades {
        period: u64,
        limit: u32,
    },
    Points {
        account: Address,
    },
    /// Each participant in a period's trades: energy sold and bought, and what its meter
    /// reported (for supervision: delivery reliability and over-draw).
    Parties {
        period: u64,
    },
    /// What an order must send: a bid's margin at its price, an offer's bond at the penalty rate.
    Escrow {
        side: Side,
        wh: u64,
        price: u64,
    },
}

const CONFIG: Item<Config> = Item::new("config");
const STATS: Item<Stats> = Item::new("stats");
const NEXT_ID: Item<u64> = Item::new("next_id");
const DEVICES: Map<Address, Address> = Map::new("dev");
const ORDERS: Map<(u64, u64), Order> = Map::new("ord");
const TRADES: Map<(u64, u64), Trade> = Map::new("trd");
const READINGS: Map<(u64, Address), Reading> = Map::new("rd");
const PERIODS: Map<u64, PeriodSummary> = Map::new("per");
const POINTS: Map<Address, u64> = Map::new("pts");

/// `wh × price_per_kwh`, in micro-tokens, rounded up (what a party must put up).
pub fn value_ceil(wh: u64, price: u64) -> u64 {
    ((wh as u128 * price as u128).div_ceil(1000)) as u64
}

/// `wh × price_per_kwh`, rounded down (what a party is paid).
pub fn value_floor(wh: u64, price: u64) -> u64 {
    ((wh as u128 * price as u128) / 1000) as u64
}

fn start_of(c: &Config, period: u64) -> u64 {
    c.start_ms
        .saturating_add(period.saturating_mul(c.period_ms))
}

fn pricing_for(c: &Config, ctx: &Ctx, period: u64) -> Result<PriceAnswer> {
    ctx.query_contract(&c.pricing, &pricing::QueryMsg::Price { period })
}

fn pay(ctx: &mut Ctx, to: &Address, amount: u64) -> Result<()> {
    if amount > 0 {
        ctx.transfer(to, amount)?;
    }
    Ok(())
}

fn place(
    ctx: &mut Ctx,
    period: u64,
    side: Side,
    wh: u64,
    price: u64,
    renewable: bool,
) -> Result<Response> {
    let c = CONFIG.load()?;
    let owner = ctx.caller()?;
    let now = ctx.env().time_ms;
    ensure!(wh > 0, "order amount must be positive");
    ensure!(
        wh <= MAX_ORDER_WH,
        "order of {wh} Wh exceeds the limit of {MAX_ORDER_WH}"
    );
    ensure!(
        now < start_of(&c, period),
        "gate closed: period {period} started at {} ms",
        start_of(&c, period)
    );
    let p = pricing_for(&c, ctx, period)?;
    ensure!(
        price >= p.f_min && price <= p.f_max,
        "price {price} is outside the band [{}, {}]",
        p.f_min,
        p.f_max
    );
    let needed = match side {
        Side::Buy => value_ceil(wh, price),
        Side::Sell => value_ceil(wh, p.shortfall_penalty),
    };
    let sent = ctx.env().funds;
    ensure!(
        sent == needed,
        "this order needs {needed} in escrow sent with it; {sent} was sent"
    );
    let id = NEXT_ID.may_load()?.unwrap_or(0);
    NEXT_ID.save(&(id + 1))?;
    let order = Order {
        id,
        period,
        owner,
        side,
        wh,
        price,
        renewable: renewable && side == Side::Sell,
        escrow: sent,
        filled_wh: 0,
    };
    ORDERS.save(&(period, id), &order)?;
    ctx.emit(
        Event::new(if side == Side::Buy { "bid" } else { "offer" })
            .attr("period", period)
            .attr("id", id)
            .attr("owner", owner)
            .attr("wh", wh)
            .attr("price", price),
    );
    Response::json(&id)
}

/// Clears a period (idempotent: a cleared period is left alone).
fn clear_period(ctx: &mut Ctx, period: u64) -> Result<PeriodSummary> {
    let mut summary = PERIODS.may_load(&period)?.unwrap_or(PeriodSummary {
        period,
        ..Default::default()
    });
    if summary.cleared {
        return Ok(summary);
    }
    let c = CONFIG.load()?;
    let p = pricing_for(&c, ctx, period)?;
    let orders: Vec<Order> = ORDERS
        .prefixed(&period, Iter::Ascending)
        .map(|r| r.map(|(_, o)| o))
        .collect::<Result<_>>()?;
    let book = |side| -> Vec<BookOrder> {
        orders
            .iter()
            .filter(|o| o.side == side)
            .map(|o| BookOrder {
                id: o.id,
                wh: o.wh,
                price: o.price,
                renewable: o.renewable,
            })
            .collect()
    };
    let matches = clear(&book(Side::Buy), &book(Side::Sell), p.mechanism);
    let mut by_id: std::collections::BTreeMap<u64, Order> =
        orders.into_iter().map(|o| (o.id, o)).collect();
    let mut value: u128 = 0;
    for (n, m) in matches.iter().enumerate() {
        let (Some(bid), Some(offer)) = (by_id.get(&m.bid).cloned(), by_id.get(&m.offer).cloned())
        else {
            fail!("matched an unknown order");
        };
        let trade = Trade {
            period,
            seller: offer.owner,
            buyer: bid.owner,
            offer_id: offer.id,
            bid_id: bid.id,
            wh: m.wh,
            price: m.price,
            renewable: offer.renewable,
        };
        TRADES.save(&(period, n as u64), &trade)?;
        ctx.emit(
            Event::new("trade")
                .attr("period", period)
                .attr("seller", trade.seller)
                .attr("buyer", trade.buyer)
                .attr("wh", m.wh)
                .attr("price", m.price)
                .attr("renewable", trade.renewable),
        );
        summary.traded_wh += m.wh;
        if trade.renewable {
            summary.renewable_wh += m.wh;
        }
        value += m.wh as u128 * m.price as u128;
        if let Some(o) = by_id.get_mut(&m.bid) {
            o.filled_wh += m.wh;
        }
        if let Some(o) = by_id.get_mut(&m.offer) {
            o.filled_wh += m.wh;
        }
    }
    // Return what unmatched quantities no longer need to secure.
    for o in by_id.values_mut() {
        let keep = match o.side {
            // A bid keeps what its fills could cost at its own limit (covers any trade price).
            Side::Buy => value_ceil(o.filled_wh, o.price),
            Side::Sell => value_ceil(o.filled_wh, p.shortfall_penalty),
        }
        .min(o.escrow);
        let refund = o.escrow - keep;
        if refund > 0 || o.filled_wh > 0 {
            o.escrow = keep;
            ORDERS.save(&(period, o.id), o)?;
            pay(ctx, &o.owner.clone(), refund)?;
        }
    }
    summary.cleared = true;
    summary.reference_price = p.price;
    summary.mu = p.mu;
    summary.trades = matches.len() as u64;
    summary.clearing_price = if summary.traded_wh > 0 {
        (value / summary.traded_wh as u128) as u64
    } else {
        0
    };
    PERIODS.save(&period, &summary)?;
    STATS.update(|s| {
        let mut s = s.unwrap_or_default();
        s.cleared_periods += 1;
        s.traded_wh += summary.traded_wh;
        Ok(s)
    })?;
    ctx.emit(
        Event::new("period_cleared")
            .attr("period", period)
            .attr("price", summary.clearing_price)
            .attr("mu", summary.mu)
            .attr("traded_wh", summary.traded_wh)
            .attr("renewable_wh", summary.renewable_wh),
    );
    Ok(summary)
}

/// Per-participant totals for settlement.
#[derive(Default)]
struct Party {
    contracted_wh: u64,
    delivered_wh: u64,
}

fn settle_period(ctx: &mut Ctx, period: u64) -> Result<PeriodSummary> {
    let c = CONFIG.load()?;
    let mut summary = PERIODS.may_load(&period)?.unwrap_or(PeriodSummary {
        period,
        ..Default::default()
    });
    ensure!(!summary.settled, "period {period} is already settled");
    ensure!(summary.cleared, "period {period} was never cleared");
    let now = ctx.env().time_ms;
    let ready = start_of(&c, period + 2);
    ensure!(
        now >= ready,
        "settlement before delivery: period {period} can settle from {ready} ms"
    );
    let p = pricing_for(&c, ctx, period)?;
    let trades: Vec<Trade> = TRADES
        .prefixed(&period, Iter::Ascending)
        .map(|r| r.map(|(_, t)| t))
        .collect::<Result<_>>()?;
    let mut orders: std::collections::BTreeMap<u64, Order> = ORDERS
        .prefixed(&period, Iter::Ascending)
        .map(|r| r.map(|(_, o)| (o.id, o)))
        .collect::<Result<_>>()?;
    let reading = |who: &Address| READINGS.may_load(&(period, *who));
    // Each seller's metered output is allocated to its trades in clearing order.
    let mut output_left: std::collections::BTreeMap<Address, u64> = Default::default();
    let mut buyers: std::collections::BTreeMap<Address, Party> = Default::default();
    let mut pool = STATS.may_load()?.unwrap_or_default().pool;
    for t in &trades {
        let left = match output_left.entry(t.seller) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(reading(&t.seller)?.map_or(0, |r| r.produced_wh))
            }
        };
        let delivered = t.wh.min(*left);
        *left -= delivered;
        let payment = value_floor(delivered, t.price);
        // The buyer's escrow pays the seller.
        let bid = orders
            .get_mut(&t.bid_id)
            .ok_or("bid of a trade is missing")?;
        let payment = payment.min(bid.escrow);
        bid.escrow -= payment;
        pay(ctx, &t.seller, payment)?;
        summary.settled_value += payment;
        summary.delivered_wh += delivered;
        // Shortfall: the penalty comes out of the seller's bond, to the grid company that covers it.
        let offer = orders
            .get_mut(&t.offer_id)
            .ok_or("offer of a trade is missing")?;
        let penalty = value_ceil(t.wh - delivered, p.shortfall_penalty).min(offer.escrow);
        offer.escrow -= penalty;
        pay(ctx, &c.grid_company, penalty)?;
        summary.penalties += penalty;
        // Subsidy for renewable energy delivered, from the pool.
        if t.renewable && delivered > 0 {
            let r = pricing::subsidy(p.mu, p.price, delivered)?.min(pool);
            pool -= r;
            pay(ctx, &t.seller, r)?;
            summary.subsidy_paid += r;
            if p.mu < Fixed::ONE {
                POINTS.update(&t.buyer, |x| Ok(x.unwrap_or(0).saturating_add(delivered)))?;
            }
        }
        let b = buyers.entry(t.buyer).or_default();
        b.contracted_wh += t.wh;
        b.delivered_wh += delivered;
    }
    // Buyers: imbalance and over-draw to the grid company, from what is left of their escrow.
    for (buyer, party) in &buyers {
        let consumed = reading(buyer)?.map_or(party.delivered_wh, |r| r.consumed_wh);
        let from_grid = consumed
            .min(party.contracted_wh)
            .saturating_sub(party.delivered_wh);
        let overdraw = consumed.saturating_sub(party.contracted_wh);
        let mut owed = value_ceil(from_grid + overdraw, p.grid_tariff);
        let penalty = value_ceil(overdraw, p.overdraw_penalty);
        let mut penalty_owed = penalty;
        for o in orders
            .values_mut()
            .filter(|o| o.owner == *buyer && o.side == Side::Buy)
        {
            let a = owed.min(o.escrow);
            o.escrow -= a;
            owed -= a;
            summary.imbalance_paid += a;
            let b = penalty_owed.min(o.escrow);
            o.escrow -= b;
            penalty_owed -= b;
            summary.penalties += b;
            pay(ctx, &c.grid_company, a + b)?;
        }
    }
    // Whatever escrow is left goes back to its owner.
    for o in orders.values_mut() {
        if o.escrow > 0 {
            let owner = o.owner;
            pay(ctx, &owner, o.escrow)?;
            o.escrow = 0;
        }
        ORDERS.save(&(period, o.id), o)?;
    }
    summary.settled = true;
    PERIODS.save(&period, &summary)?;
    STATS.update(|s| {
        let mut s = s.unwrap_or_default();
        s.settled_periods += 1;
        s.pool = pool;
        Ok(s)
    })?;
    ctx.emit(
        Event::new("period_settled")
            .attr("period", period)
            .attr("delivered_wh", summary.delivered_wh)
            .attr("settled_value", summary.settled_value)
            .attr("subsidy", summary.subsidy_paid)
            .attr("penalties", summary.penalties),
    );
    Ok(summary)
}

pub struct Market;

impl Contract for Market {
    const NAME: &'static str = "market";
    const VERSION: u32 = 1;
    type InstantiateMsg = InstantiateMsg;
    type ExecuteMsg = ExecuteMsg;
    type QueryMsg = QueryMsg;
    type MigrateMsg = NoMsg;
    type SudoMsg = SudoMsg;

    fn instantiate(ctx: &mut Ctx, msg: InstantiateMsg) -> Result<Response> {
        ensure!(msg.period_ms > 0, "period_ms must be positive");
        CONFIG.save(&Config {
            pricing: msg.pricing,
            grid_company: msg.grid_company,
            admin: msg.admin,
            start_ms: msg.start_ms,
            period_ms: msg.period_ms,
        })?;
        for (device, participant) in msg.devices {
            DEVICES.save(&device, &participant)?;
        }
        STATS.save(&Stats {
            pool: ctx.env().funds,
            ..Default::default()
        })?;
        Ok(Response::new())
    }

    fn execute(ctx: &mut Ctx, msg: ExecuteMsg) -> Result<Response> {
        match msg {
            ExecuteMsg::Offer {
                period,
                wh,
                min_price,
                renewable,
            } => place(ctx, period, Side::Sell, wh, min_price, renewable),
            ExecuteMsg::Bid {
                period,
                wh,
                max_price,
            } => place(ctx, period, Side::Buy, wh, max_price, false),
            ExecuteMsg::Cancel { period, id } => {
                let c = CONFIG.load()?;
                let order = ORDERS
                    .may_load(&(period, id))?
                    .ok_or_else(|| Error::new(format!("no order {id} in period {period}")))?;
                ensure!(
                    order.owner == ctx.caller()?,
                    "only the order's owner may cancel it"
                );
                ensure!(
                    ctx.env().time_ms < start_of(&c, period),
                    "gate closed: orders of period {period} can no longer be cancelled"
                );
                ORDERS.remove(&(period, id));
                pay(ctx, &order.owner, order.escrow)?;
                ctx.emit(Event::new("cancel").attr("period", period).attr("id", id));
                Ok(Response::new())
            }
            ExecuteMsg::Reading {
                period,
                produced_wh,
                consumed_wh,
            } => {
                let c = CONFIG.load()?;
                let device = ctx.caller()?;
                let participant = DEVICES
                    .may_load(&device)?
                    .ok_or_else(|| Error::new(format!("{device} is not a registered meter")))?;
                ensure!(
                    ctx.env().time_ms >= start_of(&c, period + 1),
                    "period {period} is still being delivered"
                );
                ensure!(
                    !PERIODS.may_load(&period)?.is_some_and(|s| s.settled),
                    "period {period} is already settled"
                );
                ensure!(
                    !READINGS.has(&(period, participant)),
                    "a reading for {participant} in period {period} already exists"
                );
                ensure!(
                    produced_wh <= MAX_ORDER_WH && consumed_wh <= MAX_ORDER_WH,
                    "reading exceeds {MAX_ORDER_WH} Wh"
                );
                READINGS.save(
                    &(period, participant),
                    &Reading {
                        produced_wh,
                        consumed_wh,
                    },
                )?;
                ctx.emit(
                    Event::new("reading")
                        .attr("period", period)
                        .attr("participant", participant)
                        .attr("produced_wh", produced_wh)
                        .attr("consumed_wh", consumed_wh),
                );
                Ok(Response::new())
            }
            ExecuteMsg::Settle { period } => Response::json(&settle_period(ctx, period)?),
            ExecuteMsg::FundPool {} => {
                let funds = ctx.env().funds;
                ensure!(funds > 0, "send funds to add to the pool");
                STATS.update(|s| {
                    let mut s = s.unwrap_or_default();
                    s.pool += funds;
                    Ok(s)
                })?;
                Ok(Response::new())
            }
            ExecuteMsg::RegisterDevice {
                device,
                participant,
            } => {
                ensure!(
                    ctx.caller()? == CONFIG.load()?.admin,
                    "only the market admin registers meters"
                );
                DEVICES.save(&device, &participant)?;
                Ok(Response::new())
            }
        }
    }

    fn sudo(ctx: &mut Ctx, msg: SudoMsg) -> Result<Response> {
        match msg {
            SudoMsg::PeriodBoundary { period } => {
                let cleared = clear_period(ctx, period)?;
                let settled = match period.checked_sub(2) {
                    Some(old)
                        if PERIODS
                            .may_load(&old)?
                            .is_some_and(|s| s.cleared && !s.settled) =>
                    {
                        Some(settle_period(ctx, old)?)
                    }
                    _ => None,
                };
                Response::json(&(cleared, settled))
            }
        }
    }

    fn query(_ctx: &Ctx, msg: QueryMsg) -> Result<Response> {
        match msg {
            QueryMsg::Config {} => Response::json(&CONFIG.load()?),
            QueryMsg::Stats {} => Response::json(&STATS.may_load()?.unwrap_or_default()),
            QueryMsg::Period { period } => Response::json(&PERIODS.may_load(&period)?),
            QueryMsg::Orders { period, limit } => {
                let v: Vec<Order> = ORDERS
                    .prefixed(&period, Iter::Ascending)
                    .take(limit as usize)
                    .map(|r| r.map(|(_, o)| o))
                    .collect::<Result<_>>()?;
                Response::json(&v)
            }
            QueryMsg::Trades { period, limit } => {
                let v: Vec<Trade> = TRADES
                    .prefixed(&period, Iter::Ascending)
                    .take(limit as usize)
                    .map(|r| r.map(|(_, t)| t))
                    .collect::<Result<_>>()?;
                Response::json(&v)
            }
            QueryMsg::Points { account } => {
                Response::json(&POINTS.may_load(&account)?.unwrap_or(0))
            }
            QueryMsg::Parties { period } => {
                let mut parties: std::collections::BTreeMap<Address, (u64, u64)> =
                    Default::default();
                for t in TRADES.prefixed(&period, Iter::Ascending) {
                    let (_, t) = t?;
                    parties.entry(t.seller).or_default().0 += t.wh;
                    parties.entry(t.buyer).or_default().1 += t.wh;
                }
                let mut out = Vec::with_capacity(parties.len());
                for (participant, (sold_wh, bought_wh)) in parties {
                    let reading = READINGS.may_load(&(period, participant))?;
                    out.push(PartyRecord {
                        participant,
                        sold_wh,
                        bought_wh,
                        produced_wh: reading.as_ref().map(|r| r.produced_wh),
                        consumed_wh: reading.map(|r| r.consumed_wh),
                    });
                }
                Response::json(&out)
            }
            QueryMsg::Escrow { side, wh, price } => Response::json(&match side {
                Side::Buy => value_ceil(wh, price),
                Side::Sell => value_ceil(wh, price),
            }),
        }
    }
}

export_contract!(Market);

#[cfg(test)]
mod tests;
