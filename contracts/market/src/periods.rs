//! A period's life after its gate: clearing, settlement, and catching up on periods a stop
//! of the chain skipped, so that no escrow is ever left behind.
//!
//! Every figure settlement uses (μ, the reference price, the subsidy rate, penalty rates and
//! tariff) is fixed when the period clears, from the forecasts made before its gate, and
//! stored with it ([`prices`]): nothing sent later changes how a period settles.
//!
//! A buyer's grid tariff and over-draw penalty come out of its remaining escrow; what the
//! escrow does not cover is recorded as the buyer's debt to the grid company ([`DEBTS`]),
//! paid with `pay_debt`; an account in debt cannot bid.

use crate::statement::Lines;
use crate::*;
use pricing::PriceAnswer;
use std::collections::BTreeMap;

/// Period → the figures it cleared with (and settles with).
const PRICES: Map<u64, PriceAnswer> = Map::new("prices");
/// Every period below this one is cleared.
const CLEAR_FROM: Item<u64> = Item::new("clear_from");
/// Every period below this one is settled.
const SETTLE_FROM: Item<u64> = Item::new("settle_from");
/// Account → micro-tokens it owes the grid company (tariff or penalty its escrow did not cover).
pub const DEBTS: Map<Address, u64> = Map::new("debt");

/// Trades of a period that get an event each (a call's events are capped by the VM, and a
/// period of 10,000 orders has thousands of trades); `period_cleared` says how many there were.
pub const MAX_TRADE_EVENTS: usize = 1_000;
/// Debts of a period that get an event each.
pub const MAX_DEBT_EVENTS: usize = 500;

/// Most skipped periods one boundary call looks at (empty ones cost a scan each).
const CATCH_UP_PERIODS: u64 = 64;

/// Gas a period call gets unless the market is told otherwise (genesis `sudo_gas` default).
pub const DEFAULT_CALL_GAS: u64 = 2_000_000_000;

/// What one period call plans to spend: four fifths of its gas, the rest in reserve in case
/// the estimates below are low. A call that runs out of gas undoes everything it did and fails
/// again on every retry, so the plan, not the cap, decides how much one call does.
fn call_budget(call_gas: u64) -> u64 {
    call_gas / 5 * 4
}

/// Upper estimates of a period's work on the real VM. Measured
/// (`full_periods_and_a_stop_settle_within_the_period_calls_gas`, host/node/tests/
/// market_clock.rs, and its 10,000-order predecessor): orders from one account each clear for
/// ≈59,000 gas an order over four feeders and ≈102,000–110,000 over 32 (the most a grid has),
/// and settle, with about a trade an order and every meter reporting, for ≈70,000–90,000.
const CLEAR_GAS_PER_ORDER: u64 = 60_000;
const CLEAR_GAS_PER_ORDER_AND_FEEDER: u64 = 2_000;
const SETTLE_GAS_PER_ORDER: u64 = 40_000;
const SETTLE_GAS_PER_TRADE: u64 = 60_000;
/// Looking at a period (loading its summary, count and topology, a scan when it is empty).
const PERIOD_GAS: u64 = 2_000_000;

/// Most orders a period may take when each period call has `call_gas`: clearing one full
/// period over the most feeders a grid has and settling another (with as many trades as the
/// clearing can make: orders + 2 × feeders + 2) take at most half the call's plan, so every
/// call has at least as much again to catch up with, and a backlog drains even while every
/// period is full.
pub fn orders_that_fit(call_gas: u64) -> u32 {
    let feeders = grid::MAX_FEEDERS as u64;
    let per_order = CLEAR_GAS_PER_ORDER
        + feeders * CLEAR_GAS_PER_ORDER_AND_FEEDER
        + SETTLE_GAS_PER_ORDER
        + SETTLE_GAS_PER_TRADE;
    let fixed = 2 * PERIOD_GAS + (2 * feeders + 2) * SETTLE_GAS_PER_TRADE;
    let n = (call_budget(call_gas) / 2).saturating_sub(fixed) / per_order;
    // Whole hundreds: a figure people can remember.
    (n / 100 * 100).min(MAX_ORDERS_PER_PERIOD as u64) as u32
}

/// The gas a period call has left to plan with. The call's own period is always cleared and
/// the period whose readings window ended always settled (full ones take at most half the plan:
/// [`orders_that_fit`]); catching up takes what is left, a whole period at a time, so a call
/// never starts work it cannot finish, and always has room for at least one more period.
#[derive(Debug)]
struct Budget(u64);

impl Budget {
    fn spend(&mut self, gas: u64) {
        self.0 = self.0.saturating_sub(gas);
    }

    /// Takes `gas` if it is left (and says so); otherwise takes nothing.
    fn take(&mut self, gas: u64) -> bool {
        let fits = gas <= self.0;
        if fits {
            self.0 -= gas;
        }
        fits
    }
}

fn clear_gas(period: u64) -> Result<u64> {
    let feeders = grid::at(period)?.map_or(0, |t| t.feeders.len() as u64);
    let per_order = CLEAR_GAS_PER_ORDER + feeders * CLEAR_GAS_PER_ORDER_AND_FEEDER;
    Ok(PERIOD_GAS.saturating_add(orders_in(period)?.saturating_mul(per_order)))
}

fn settle_gas(orders: u64, trades: u64) -> u64 {
    PERIOD_GAS
        .saturating_add(orders.saturating_mul(SETTLE_GAS_PER_ORDER))
        .saturating_add(trades.saturating_mul(SETTLE_GAS_PER_TRADE))
}

/// The figures a period clears with: from the pricing contract's parameters and the forecast
/// totals so far (before clearing), or the ones it cleared with (after).
pub fn prices(c: &Config, ctx: &Ctx, period: u64) -> Result<PriceAnswer> {
    if let Some(p) = PRICES.may_load(&period)? {
        return Ok(p);
    }
    let (supply_wh, demand_wh) = registry::totals(period)?;
    ctx.query_contract(
        &c.pricing,
        &pricing::QueryMsg::Price {
            period,
            supply_wh,
            demand_wh,
        },
    )
}

/// A trade's money for `wh` Wh: each line rounded down on its own, the seller's lines capped
/// by the energy payment, so that `buyer_paid = seller_received + fees` exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Items {
    pub energy: u64,
    pub wheeling: u64,
    pub buyer_fee: u64,
    pub seller_fee: u64,
    pub buyer_congestion: u64,
    pub seller_congestion: u64,
}

impl Items {
    pub fn of(r: &TradeRates, price: u64, wh: u64) -> Items {
        let mut items = Items {
            energy: value_floor(wh, price),
            wheeling: value_floor(wh, r.wheeling),
            buyer_fee: value_floor(wh, r.buyer_fee),
            seller_fee: value_floor(wh, r.seller_fee),
            buyer_congestion: value_floor(wh, r.buyer_congestion),
            seller_congestion: value_floor(wh, r.seller_congestion),
        };
        items.clip_seller();
        items
    }

    fn clip_seller(&mut self) {
        self.seller_fee = self.seller_fee.min(self.energy);
        self.seller_congestion = self.seller_congestion.min(self.energy - self.seller_fee);
    }

    pub fn buyer_paid(&self) -> u64 {
        self.energy + self.wheeling + self.buyer_fee + self.buyer_congestion
    }

    pub fn seller_received(&self) -> u64 {
        self.energy - self.seller_fee - self.seller_congestion
    }

    pub fn fees(&self) -> u64 {
        self.wheeling
            + self.buyer_fee
            + self.seller_fee
            + self.buyer_congestion
            + self.seller_congestion
    }

    /// Lowers the lines until the buyer pays at most `available`. Never needed: a bid's escrow
    /// is its fills at its own limit, and every trade's rates add up to at most that limit
    /// (see [`crate::auction`]); kept so that even a bug there cannot pay out escrow twice.
    fn cap_to(&mut self, available: u64) {
        let over = |i: &Items| i.buyer_paid().saturating_sub(available);
        let o = over(self);
        self.energy -= o.min(self.energy);
        self.clip_seller();
        let o = over(self);
        self.buyer_congestion -= o.min(self.buyer_congestion);
        let o = over(self);
        self.buyer_fee -= o.min(self.buyer_fee);
        let o = over(self);
        self.wheeling -= o.min(self.wheeling);
    }
}

/// Clears a period (idempotent: a cleared period is left alone). With `trade_events`, its first
/// [`MAX_TRADE_EVENTS`] trades get an event each; a catch-up call, which may clear several
/// periods, emits only their `period_cleared` (a call's events are capped by the VM).
pub fn clear_period(ctx: &mut Ctx, period: u64, trade_events: bool) -> Result<PeriodSummary> {
    let mut summary = PERIODS.may_load(&period)?.unwrap_or(PeriodSummary {
        period,
        ..Default::default()
    });
    if summary.cleared {
        return Ok(summary);
    }
    let c = CONFIG.load()?;
    let p = prices(&c, ctx, period)?;
    PRICES.save(&period, &p)?;
    let topology = grid::at(period)?;
    let limits = topology
        .as_ref()
        .map(|t| grid::limits(&c, t))
        .unwrap_or_default();
    let mut orders = book::orders(period, usize::MAX)?;
    // In id order (`book::orders`), which finding matches by id below relies on.
    if !orders.is_sorted_by_key(|o| o.id) {
        orders.sort_by_key(|o| o.id);
    }
    // Each order's connection point (`usize::MAX`: the PCC), each owner's looked up once. A
    // market without a topology has everyone at the PCC, and no lookup.
    let at: Vec<usize> = match &topology {
        None => vec![usize::MAX; orders.len()],
        Some(t) => {
            let mut feeder_of: BTreeMap<Address, usize> = BTreeMap::new();
            let mut at = Vec::with_capacity(orders.len());
            for o in &orders {
                let f = match feeder_of.get(&o.owner) {
                    Some(f) => *f,
                    None => {
                        let f = grid::feeder_of(t, &o.owner)?.unwrap_or(usize::MAX);
                        feeder_of.insert(o.owner, f);
                        f
                    }
                };
                at.push(f);
            }
            at
        }
    };
    let book = |side| -> Vec<BookOrder> {
        orders
            .iter()
            .zip(&at)
            .filter(|(o, _)| o.side == side)
            .map(|(o, &at)| BookOrder {
                id: o.id,
                wh: o.wh,
                price: o.price,
                renewable: o.renewable,
                at,
            })
            .collect()
    };
    let fees = p.fees;
    let cleared = auction::clear_network(
        &book(Side::Buy),
        &book(Side::Sell),
        &limits,
        &fees,
        p.mechanism,
    );
    let feeder_name =
        |i: usize| -> Option<String> { Some(topology.as_ref()?.feeders.get(at[i])?.name.clone()) };
    let index_of = |id: u64| orders.binary_search_by_key(&id, |o| o.id).ok();
    let mut value: u128 = 0;
    let mut trades = Vec::with_capacity(cleared.matches.len());
    let mut fills = Vec::with_capacity(cleared.matches.len());
    for (n, m) in cleared.matches.iter().enumerate() {
        let (Some(b), Some(s)) = (index_of(m.bid), index_of(m.offer)) else {
            fail!("matched an unknown order");
        };
        let (bid, offer) = (&orders[b], &orders[s]);
        let rates = m.rates;
        let items = Items::of(&rates, m.price, m.wh);
        let trade = Trade {
            period,
            seller: offer.owner,
            buyer: bid.owner,
            offer_id: offer.id,
            bid_id: bid.id,
            wh: m.wh,
            price: m.price,
            renewable: offer.renewable,
            level: m.level,
            seller_feeder: feeder_name(s),
            buyer_feeder: feeder_name(b),
            wheeling_fee: items.wheeling,
            buyer_fee: items.buyer_fee,
            seller_fee: items.seller_fee,
            congestion_fee: items.buyer_congestion + items.seller_congestion,
            rates,
            settlement: None,
        };
        // An event per trade for the first ones; all are in state (the `trades` query).
        if trade_events && n < MAX_TRADE_EVENTS {
            ctx.emit(
                Event::new("trade")
                    .attr("period", period)
                    .attr("seller", trade.seller)
                    .attr("buyer", trade.buyer)
                    .attr("wh", m.wh)
                    .attr("price", m.price)
                    .attr("renewable", trade.renewable)
                    .attr(
                        "level",
                        match m.level {
                            Level::Feeder => "feeder",
                            Level::Island => "island",
                        },
                    )
                    .attr("fees", items.fees()),
            );
        }
        summary.traded_wh += m.wh;
        if trade.renewable {
            summary.renewable_wh += m.wh;
        }
        value += m.wh as u128 * m.price as u128;
        fills.push((b, s, m.wh));
        trades.push(trade);
    }
    for (b, s, wh) in fills {
        orders[b].filled_wh += wh;
        orders[s].filled_wh += wh;
    }
    book::save_trades(period, &trades)?;
    // Return what unmatched quantities no longer need to secure.
    for o in orders.iter_mut() {
        let keep = match o.side {
            // A bid keeps what its fills could cost at its own limit: that covers any trade's
            // energy and fees, which add up to at most the limit.
            Side::Buy => value_ceil(o.filled_wh, o.price),
            Side::Sell => value_ceil(o.filled_wh, p.shortfall_penalty),
        }
        .min(o.escrow);
        let refund = o.escrow - keep;
        o.escrow = keep;
        pay(ctx, &o.owner, refund)?;
    }
    book::save_orders(period, &orders)?;
    summary.cleared = true;
    summary.reference_price = p.price;
    summary.mu = p.mu;
    summary.trades = cleared.matches.len() as u64;
    summary.clearing_price = if summary.traded_wh > 0 {
        (value / summary.traded_wh as u128) as u64
    } else {
        0
    };
    summary.island_price = cleared.island_price;
    if let Some(t) = &topology {
        summary.feeders = t
            .feeders
            .iter()
            .zip(&limits)
            .zip(cleared.flows.iter().zip(&cleared.feeder_prices))
            .map(|((f, l), (flow, price))| FeederPeriod {
                name: f.name.clone(),
                local_wh: flow.local_wh,
                import_wh: flow.import_wh,
                export_wh: flow.export_wh,
                import_limit_wh: l.import_wh,
                export_limit_wh: l.export_wh,
                price: *price,
            })
            .collect();
    }
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
            .attr("renewable_wh", summary.renewable_wh)
            .attr("trades", summary.trades),
    );
    Ok(summary)
}

/// Per-participant totals for settlement.
#[derive(Default)]
struct Party {
    contracted_wh: u64,
    delivered_wh: u64,
}

/// Settles a cleared period, once, from the end of its readings window ([`settle_lag`]
/// periods after its start). With `debt_events`, the
/// first [`MAX_DEBT_EVENTS`] debts it records get an event each (catch-up emits none: debts
/// are in state, the `debt` query, and the period's `debt_recorded`).
pub fn settle_period(ctx: &mut Ctx, period: u64, debt_events: bool) -> Result<PeriodSummary> {
    let c = CONFIG.load()?;
    let mut summary = PERIODS.may_load(&period)?.unwrap_or(PeriodSummary {
        period,
        ..Default::default()
    });
    ensure!(!summary.settled, "period {period} is already settled");
    ensure!(summary.cleared, "period {period} was never cleared");
    let now = ctx.env().time_ms;
    let ready = start_of(&c, period + settle_lag(&c));
    ensure!(
        now >= ready,
        "period {period} is still being delivered or waiting for readings: it can settle from {ready} ms"
    );
    let p = prices(&c, ctx, period)?;
    let mut trades = book::trades(period, usize::MAX)?;
    let mut orders: BTreeMap<u64, Order> = book::orders(period, usize::MAX)?
        .into_iter()
        .map(|o| (o.id, o))
        .collect();
    let reading = |who: &Address| READINGS.may_load(&(period, *who));
    let fee_collector = c.fee_collector();
    // Each seller's metered output is allocated to its trades in clearing order.
    let mut output_left: BTreeMap<Address, u64> = Default::default();
    let mut buyers: BTreeMap<Address, Party> = Default::default();
    let mut lines: BTreeMap<Address, Lines> = Default::default();
    let mut pool = STATS.may_load()?.unwrap_or_default().pool;
    for t in &mut trades {
        let left = match output_left.entry(t.seller) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(reading(&t.seller)?.map_or(0, |r| r.produced_wh))
            }
        };
        let delivered = t.wh.min(*left);
        *left -= delivered;
        // The buyer's escrow pays the energy and the buyer's fees; the seller gets the energy
        // less its own; the fees go to the grid company (wheeling, congestion) and the fee
        // collector (transaction fees). All on the energy delivered.
        let bid = orders
            .get_mut(&t.bid_id)
            .ok_or("bid of a trade is missing")?;
        let mut items = Items::of(&t.rates, t.price, delivered);
        items.cap_to(bid.escrow);
        bid.escrow -= items.buyer_paid();
        pay(ctx, &t.seller, items.seller_received())?;
        pay(
            ctx,
            &c.grid_company,
            items.wheeling + items.buyer_congestion + items.seller_congestion,
        )?;
        pay(ctx, &fee_collector, items.buyer_fee + items.seller_fee)?;
        summary.settled_value += items.energy;
        summary.buyers_paid += items.buyer_paid();
        summary.sellers_received += items.seller_received();
        summary.wheeling_fees += items.wheeling;
        summary.transaction_fees += items.buyer_fee + items.seller_fee;
        summary.congestion_fees += items.buyer_congestion + items.seller_congestion;
        summary.fees += items.fees();
        summary.delivered_wh += delivered;
        if t.renewable {
            summary.renewable_delivered_wh += delivered;
        }
        // Shortfall: the penalty comes out of the seller's bond, to the grid company that covers it.
        let offer = orders
            .get_mut(&t.offer_id)
            .ok_or("offer of a trade is missing")?;
        let penalty = value_ceil(t.wh - delivered, p.shortfall_penalty).min(offer.escrow);
        offer.escrow -= penalty;
        pay(ctx, &c.grid_company, penalty)?;
        summary.penalties += penalty;
        // Subsidy for renewable energy delivered, from the pool.
        let mut subsidy = 0;
        let mut points = 0;
        if t.renewable && delivered > 0 {
            subsidy = pricing::subsidy(p.mu, p.price, delivered)?.min(pool);
            pool -= subsidy;
            pay(ctx, &t.seller, subsidy)?;
            summary.subsidy_paid += subsidy;
            if p.mu < Fixed::ONE {
                points = delivered;
                POINTS.update(&t.buyer, |x| Ok(x.unwrap_or(0).saturating_add(delivered)))?;
            }
        }
        let seller = lines.entry(t.seller).or_default();
        seller.sold_wh += t.wh;
        seller.delivered_wh += delivered;
        seller.sales += items.energy;
        seller.transaction_fees += items.seller_fee;
        seller.congestion_fees += items.seller_congestion;
        seller.subsidy += subsidy;
        seller.shortfall_penalties += penalty;
        // What the grid company and the fee collector received (entries only when they did:
        // a statement lists periods with line items).
        let network = items.wheeling + items.buyer_congestion + items.seller_congestion;
        if network + penalty > 0 {
            let grid = lines.entry(c.grid_company).or_default();
            grid.fees_received += network;
            grid.grid_receipts += penalty;
        }
        if items.buyer_fee + items.seller_fee > 0 {
            lines.entry(fee_collector).or_default().fees_received +=
                items.buyer_fee + items.seller_fee;
        }
        let buyer = lines.entry(t.buyer).or_default();
        buyer.bought_wh += t.wh;
        buyer.received_wh += delivered;
        buyer.purchases += items.energy;
        buyer.wheeling_fees += items.wheeling;
        buyer.transaction_fees += items.buyer_fee;
        buyer.congestion_fees += items.buyer_congestion;
        buyer.points += points;
        let b = buyers.entry(t.buyer).or_default();
        b.contracted_wh += t.wh;
        b.delivered_wh += delivered;
        // The trade's fees now stand for the energy delivered.
        t.wheeling_fee = items.wheeling;
        t.buyer_fee = items.buyer_fee;
        t.seller_fee = items.seller_fee;
        t.congestion_fee = items.buyer_congestion + items.seller_congestion;
        t.settlement = Some(TradeSettlement {
            delivered_wh: delivered,
            energy: items.energy,
            buyer_paid: items.buyer_paid(),
            seller_received: items.seller_received(),
            subsidy,
            shortfall_penalty: penalty,
        });
    }
    book::save_trades(period, &trades)?;
    // Buyers: imbalance and over-draw to the grid company, from what is left of their escrow.
    // Each buyer's bids, found once (not a scan of the book per buyer).
    let mut bids_of: BTreeMap<Address, Vec<u64>> = BTreeMap::new();
    for o in orders.values().filter(|o| o.side == Side::Buy) {
        bids_of.entry(o.owner).or_default().push(o.id);
    }
    let mut debt_events = if debt_events { MAX_DEBT_EVENTS } else { 0 };
    let mut grid_receipts = 0;
    for (buyer, party) in &buyers {
        let consumed = reading(buyer)?.map_or(party.delivered_wh, |r| r.consumed_wh);
        let from_grid = consumed
            .min(party.contracted_wh)
            .saturating_sub(party.delivered_wh);
        let overdraw = consumed.saturating_sub(party.contracted_wh);
        let mut owed = value_ceil(from_grid + overdraw, p.grid_tariff);
        let penalty = value_ceil(overdraw, p.overdraw_penalty);
        let mut penalty_owed = penalty;
        let l = lines.entry(*buyer).or_default();
        for id in bids_of.get(buyer).into_iter().flatten() {
            let Some(o) = orders.get_mut(id) else {
                continue;
            };
            let a = owed.min(o.escrow);
            o.escrow -= a;
            owed -= a;
            summary.imbalance_paid += a;
            l.grid_energy += a;
            let b = penalty_owed.min(o.escrow);
            o.escrow -= b;
            penalty_owed -= b;
            summary.penalties += b;
            l.overdraw_penalties += b;
            pay(ctx, &c.grid_company, a + b)?;
            grid_receipts += a + b;
        }
        // What the escrow did not cover is owed, not forgotten.
        let short = owed + penalty_owed;
        if short > 0 {
            DEBTS.update(buyer, |d| Ok(d.unwrap_or(0).saturating_add(short)))?;
            summary.debt_recorded += short;
            l.debt_recorded += short;
            if debt_events > 0 {
                debt_events -= 1;
                ctx.emit(
                    Event::new("debt")
                        .attr("period", period)
                        .attr("account", *buyer)
                        .attr("amount", short),
                );
            }
        }
    }
    if grid_receipts > 0 {
        lines.entry(c.grid_company).or_default().grid_receipts += grid_receipts;
    }
    // Whatever escrow is left goes back to its owner.
    for o in orders.values_mut() {
        if o.escrow > 0 {
            let owner = o.owner;
            pay(ctx, &owner, o.escrow)?;
            o.escrow = 0;
        }
    }
    book::save_orders(period, &orders.into_values().collect::<Vec<_>>())?;
    statement::record(period, &lines)?;
    (summary.produced_wh, summary.consumed_wh) = METERED.may_load(&period)?.unwrap_or((0, 0));
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
            .attr("penalties", summary.penalties)
            .attr("fees", summary.fees),
    );
    Ok(summary)
}

/// The chain's call at the start of `period`: clear it, settle the period [`settle_lag`] before
/// it (two, with the default readings window of one period), and
/// go on with any earlier period a stop left uncleared or unsettled, oldest first, as far as
/// the call's [`Budget`] goes (later calls continue).
pub fn boundary(ctx: &mut Ctx, period: u64) -> Result<(PeriodSummary, Option<PeriodSummary>)> {
    let c = CONFIG.load()?;
    let lag = settle_lag(&c);
    let mut budget = Budget(call_budget(c.call_gas));
    budget.spend(clear_gas(period)?);
    let cleared = clear_period(ctx, period, true)?;
    let mut settled = None;
    if let Some(old) = period.checked_sub(lag)
        && let Some(s) = PERIODS.may_load(&old)?
        && s.cleared
        && !s.settled
    {
        budget.spend(settle_gas(orders_in(old)?, s.trades));
        settled = Some(settle_period(ctx, old, true)?);
    }
    catch_up(ctx, period, lag, &mut budget)?;
    Ok((cleared, settled))
}

/// Periods from a period's start to its settlement: its delivery, then the readings window.
pub fn settle_lag(c: &Config) -> u64 {
    1 + c.readings_window_periods
}

fn orders_in(period: u64) -> Result<u64> {
    Ok(ORDER_COUNT.may_load(&period)?.unwrap_or(0) as u64)
}

fn catch_up(ctx: &mut Ctx, period: u64, lag: u64, budget: &mut Budget) -> Result<()> {
    // Clearing: every period before `period` (whose gates have all closed).
    let mut from = CLEAR_FROM.may_load()?.unwrap_or(0);
    let mut looked = 0u64;
    while from < period && looked < CATCH_UP_PERIODS && budget.take(PERIOD_GAS) {
        if !PERIODS.may_load(&from)?.is_some_and(|s| s.cleared) {
            if !budget.take(clear_gas(from)?) {
                break;
            }
            clear_period(ctx, from, false)?;
        }
        from += 1;
        looked += 1;
    }
    CLEAR_FROM.save(&from)?;
    // Settlement: every cleared period up to `period - lag`.
    let mut from = SETTLE_FROM.may_load()?.unwrap_or(0);
    let mut looked = 0u64;
    while from + lag <= period && looked < CATCH_UP_PERIODS && budget.take(PERIOD_GAS) {
        match PERIODS.may_load(&from)? {
            Some(s) if s.settled => {}
            Some(s) if s.cleared => {
                if !budget.take(settle_gas(orders_in(from)?, s.trades)) {
                    break;
                }
                settle_period(ctx, from, false)?;
            }
            // Not cleared yet (the clearing cursor is behind): stop here, come back later.
            _ => break,
        }
        from += 1;
        looked += 1;
    }
    SETTLE_FROM.save(&from)?;
    Ok(())
}
