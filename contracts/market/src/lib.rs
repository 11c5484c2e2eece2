//! The market: stages 2 (transaction) and 3 (settlement) of every delivery period.
//!
//! Periods are numbered from `start_ms` in steps of `period_ms`; period `j` is delivered during
//! `[start(j), start(j+1))`.
//!
//! - **Forecasts** for period `j` come from owners of registered meters until its gate
//!   ([`registry`]): renewable supply from renewable kinds, load from load kinds, each bounded
//!   by the meter's rating over the period.
//! - **Orders** for period `j` are accepted until gate closure at `start(j)`. An offer (seller,
//!   Wh, minimum price) posts a performance bond of `Wh × shortfall_penalty` with it; it is
//!   renewable exactly when the seller's registered meter is of a renewable kind. A bid (buyer,
//!   Wh, maximum price) posts its full margin `Wh × max_price` into escrow. Prices must lie in
//!   the regulator's band; an order has at least [`MIN_ORDER_WH`]; a period takes at most
//!   as many orders as its period calls can clear and settle with room to catch up
//!   ([`periods::orders_that_fit`]: 3,500 with 2·10⁹ gas a call), at most
//!   [`MAX_ORDERS_PER_OWNER`] from one owner.
//!   Orders can be cancelled before gate closure.
//! - **Clearing** happens when period `j` starts: the chain itself calls `sudo` at the period
//!   boundary (see [`auction`] for the rules), and anyone may call `clear` for a past period
//!   not cleared yet. μ, the reference price and the rates settlement uses are fixed then.
//!   Unmatched escrow and bond are returned at once. After a stop of the chain, each boundary
//!   call also clears and settles the periods the stop skipped ([`periods`]).
//! - **Readings**: after delivery, each participant's registered meter reports the Wh it
//!   produced and consumed in the period.
//! - **Settlement** of period `j` happens at the boundary two periods later (one period for
//!   readings; `readings_window_periods` more), or when anyone calls `settle` after that: sellers are paid for energy both
//!   contracted and delivered, from the buyers' escrow; renewable sellers receive the subsidy
//!   `R_i` from the pool; a seller's shortfall costs the penalty from its bond; a buyer's
//!   residual imbalance (energy bought but not delivered, then drawn from the grid) and
//!   over-draw are paid to the grid company at the tariff (over-draw also pays the penalty);
//!   unused margin and bond are refunded; buyers of renewable energy in periods with `μ < 1`
//!   earn incentive points (1 per Wh). A period settles once.
//!
//! - **The grid** ([`grid`]): each participant is connected to a feeder or to the point of
//!   common coupling; clearing respects each feeder transformer's capacity in both directions
//!   and charges the regulator's network fees ([`auction`] explains how): a trade's buyer pays
//!   the energy price plus wheeling (to the grid company), its part of the transaction fee (to
//!   the fee collector) and any import congestion; its seller receives the energy price less
//!   its part of the transaction fee and any export congestion. Fees are charged on the energy
//!   delivered, at settlement; per period, what buyers paid equals what sellers received plus
//!   the fees, to the micro-token.
//! - **Statements**: settlement records each participant's line items per period
//!   ([`statement`]), so a participant's statement over any range of periods is one query.
//!
//! All token movements are transfers out of this contract's own balance, which always equals
//! open escrow + open bonds + the subsidy pool.

pub mod auction;
pub mod book;
pub mod grid;
pub mod periods;
pub mod registry;
pub mod statement;

pub use auction::TradeRates;
use auction::{BookOrder, Level};
use gridledger_sdk::prelude::*;
use pricing::{ForecastKind, PriceAnswer};
use registry::MeterEntry;

/// Largest order, Wh (1 GWh), so amounts × prices cannot overflow.
pub const MAX_ORDER_WH: u64 = 1_000_000_000;
/// Smallest order, Wh: a flood of dust orders costs the flooder, not the clearing.
pub const MIN_ORDER_WH: u64 = 10;
/// Most orders any period takes (the clearing's capacities assume it). A market takes fewer:
/// as many as its period calls can clear and settle with room to catch up
/// ([`periods::orders_that_fit`]), 3,500 with the default 2·10⁹ gas a call.
pub const MAX_ORDERS_PER_PERIOD: u32 = 10_000;
/// Most orders one owner may have in one period.
pub const MAX_ORDERS_PER_OWNER: u32 = 16;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub pricing: Address,
    pub grid_company: Address,
    /// Registers devices.
    pub admin: Address,
    pub start_ms: u64,
    pub period_ms: u64,
    /// Device kinds whose energy is renewable (subsidy, points, supply forecasts).
    #[serde(default)]
    pub renewable_kinds: Vec<String>,
    /// Device kinds that are loads (demand forecasts).
    #[serde(default)]
    pub load_kinds: Vec<String>,
    /// The field time one period stands for, ms (a meter's rating × this bounds a forecast,
    /// a transformer's capacity × this bounds what a period schedules through it).
    #[serde(default)]
    pub energy_period_ms: u64,
    /// Receives the transaction fees (default: the grid company).
    #[serde(default)]
    pub fee_collector: Option<Address>,
    /// Gas the chain gives each period call (genesis `sudo_gas`).
    pub call_gas: u64,
    /// Most orders one period takes.
    pub max_orders_per_period: u32,
    /// Whole periods after a period's delivery during which its readings may still come;
    /// it settles at the start of the period after them.
    pub readings_window_periods: u64,
}

/// Most device kinds a market lists as renewable, and as loads.
pub const MAX_KINDS: usize = 32;

/// Most periods a market waits for readings before it settles.
pub const MAX_READINGS_WINDOW_PERIODS: u64 = 8;

impl Config {
    pub fn fee_collector(&self) -> Address {
        self.fee_collector.unwrap_or(self.grid_company)
    }
}

#[derive(Serialize, Deserialize)]
pub struct InstantiateMsg {
    pub pricing: Address,
    pub grid_company: Address,
    pub admin: Address,
    pub start_ms: u64,
    pub period_ms: u64,
    /// The participants' meters.
    #[serde(default)]
    pub devices: Vec<MeterEntry>,
    #[serde(default = "default_renewable_kinds")]
    pub renewable_kinds: Vec<String>,
    #[serde(default = "default_load_kinds")]
    pub load_kinds: Vec<String>,
    /// Default: `period_ms`.
    pub energy_period_ms: Option<u64>,
    /// The network (default: none, every participant at one bus).
    #[serde(default)]
    pub grid: Option<grid::GridSpec>,
    /// Receives the transaction fees (default: the grid company).
    #[serde(default)]
    pub fee_collector: Option<Address>,
    /// Gas the chain gives each period call: genesis `sudo_gas` for the market (default
    /// 2·10⁹). The market plans its work within it.
    #[serde(default)]
    pub call_gas: Option<u64>,
    /// Most orders one period takes (default and most: what `call_gas` clears and settles
    /// with room to catch up, [`periods::orders_that_fit`]).
    #[serde(default)]
    pub max_orders_per_period: Option<u32>,
    /// Whole periods after a period's delivery during which its readings may still come
    /// (default 1, at most [`MAX_READINGS_WINDOW_PERIODS`]): period `p` settles at the start
    /// of period `p + 1 + readings_window_periods`.
    #[serde(default)]
    pub readings_window_periods: Option<u64>,
}

fn default_renewable_kinds() -> Vec<String> {
    ["wind_turbine", "rooftop_pv", "solar_pv", "hydro"]
        .map(String::from)
        .to_vec()
}

fn default_load_kinds() -> Vec<String> {
    ["household_load", "charging_pile", "water_plant"]
        .map(String::from)
        .to_vec()
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
    /// The energy price, micro-tokens per kWh (fees are line items of their own).
    pub price: u64,
    pub renewable: bool,
    /// The highest network level the trade crosses.
    #[serde(default)]
    pub level: Level,
    /// The seller's and the buyer's feeders (`None`: at the PCC).
    #[serde(default)]
    pub seller_feeder: Option<String>,
    #[serde(default)]
    pub buyer_feeder: Option<String>,
    /// Micro-tokens for the whole trade: for the contracted Wh once cleared, for the delivered
    /// Wh once settled. Wheeling to the grid company, paid by the buyer.
    #[serde(default)]
    pub wheeling_fee: u64,
    /// The buyer's and the seller's parts of the transaction fee, to the fee collector.
    #[serde(default)]
    pub buyer_fee: u64,
    #[serde(default)]
    pub seller_fee: u64,
    /// Congestion of full transformers (both sides), to the grid company.
    #[serde(default)]
    pub congestion_fee: u64,
    #[serde(default)]
    pub rates: TradeRates,
    /// What settlement did with the trade.
    #[serde(default)]
    pub settlement: Option<TradeSettlement>,
}

/// A settled trade's line items, micro-tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeSettlement {
    pub delivered_wh: u64,
    /// The energy payment: delivered Wh at the energy price.
    pub energy: u64,
    /// Energy + wheeling + the buyer's fee + import congestion, from the buyer's escrow.
    pub buyer_paid: u64,
    /// Energy − the seller's fee − export congestion, to the seller.
    pub seller_received: u64,
    /// `R_i`, from the pool, to the seller.
    pub subsidy: u64,
    /// For the Wh not delivered, from the seller's bond.
    pub shortfall_penalty: u64,
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
    /// Tariff and penalties buyers' escrow did not cover, recorded as their debts.
    #[serde(default)]
    pub debt_recorded: u64,
    /// Every network fee collected: wheeling + transaction + congestion.
    #[serde(default)]
    pub fees: u64,
    #[serde(default)]
    pub wheeling_fees: u64,
    #[serde(default)]
    pub transaction_fees: u64,
    #[serde(default)]
    pub congestion_fees: u64,
    /// Out of buyers' escrow for trades (energy and their fees), and to sellers (energy less
    /// theirs): `buyers_paid = sellers_received + fees`.
    #[serde(default)]
    pub buyers_paid: u64,
    #[serde(default)]
    pub sellers_received: u64,
    /// Pay-as-clear energy prices: of island-level trades, and of each feeder's local trades.
    #[serde(default)]
    pub island_price: Option<u64>,
    #[serde(default)]
    pub feeders: Vec<FeederPeriod>,
    /// What every meter of the period reported, produced and consumed (community figures:
    /// self-sufficiency is `delivered_wh / consumed_wh`, self-consumption
    /// `delivered_wh / produced_wh`), and the renewable part of the energy delivered.
    #[serde(default)]
    pub produced_wh: u64,
    #[serde(default)]
    pub consumed_wh: u64,
    #[serde(default)]
    pub renewable_delivered_wh: u64,
}

/// A feeder in a cleared period: what was scheduled on it against its limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeederPeriod {
    pub name: String,
    pub local_wh: u64,
    pub import_wh: u64,
    pub export_wh: u64,
    pub import_limit_wh: u64,
    pub export_limit_wh: u64,
    /// The energy price of its feeder-level trades, if it had any.
    pub price: Option<u64>,
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
    /// Sell `wh` in `period` at no less than `min_price`; send the bond as funds. The offer is
    /// renewable when the seller's meter is of a renewable kind; `renewable`, if given, must
    /// say the same.
    Offer {
        period: u64,
        wh: u64,
        min_price: u64,
        #[serde(default)]
        renewable: Option<bool>,
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
    /// Settle a delivered period (anyone, once readings had a period to arrive); a period not
    /// cleared yet is cleared first.
    Settle { period: u64 },
    /// Clear a period whose gate has closed and that is not cleared yet (anyone).
    Clear { period: u64 },
    /// The sender's forecast for a coming period (owners of registered meters); a later one
    /// replaces its earlier one.
    Forecast {
        period: u64,
        kind: ForecastKind,
        wh: u64,
    },
    /// Add to the subsidy pool (send funds).
    FundPool {},
    /// Pay (part of) the sender's debt to the grid company (send funds; at most the debt).
    PayDebt {},
    /// Register or change a participant's meter (admin only: the grid company).
    RegisterDevice {
        device: Address,
        participant: Address,
        kind: String,
        rated_power_w: u64,
    },
    /// A new topology from `from_period` on, a period still open for orders (the grid
    /// company only).
    SetGrid {
        grid: grid::GridSpec,
        from_period: u64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SudoMsg {
    /// Period `period` begins: clear it, and settle the period whose readings window ended
    /// (two before it, by default).
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
    /// A period's price figures: from its forecasts so far, or those it cleared with.
    Price {
        period: u64,
    },
    /// A participant's meter (device, kind, rating) and whether its energy is renewable.
    Meter {
        participant: Address,
    },
    /// What an account owes the grid company.
    Debt {
        account: Address,
    },
    /// The topology a period clears with (default: the next period to clear), with up to
    /// `accounts` connected accounts listed per feeder (default 100).
    Grid {
        #[serde(default)]
        period: Option<u64>,
        #[serde(default)]
        accounts: Option<u32>,
    },
    /// An account's statement over settled periods `first_period..=last_period` (at most
    /// [`statement::MAX_STATEMENT_PERIODS`] periods).
    Statement {
        account: Address,
        first_period: u64,
        last_period: u64,
    },
}

const CONFIG: Item<Config> = Item::new("config");
const STATS: Item<Stats> = Item::new("stats");
const NEXT_ID: Item<u64> = Item::new("next_id");
/// Orders as placed; from clearing on, a period's current orders are in [`book`].
const ORDERS: Map<(u64, u64), Order> = Map::new("ord");
const READINGS: Map<(u64, Address), Reading> = Map::new("rd");
const PERIODS: Map<u64, PeriodSummary> = Map::new("per");
const POINTS: Map<Address, u64> = Map::new("pts");
/// Period → orders in it; (period, owner) → the owner's orders in it.
const ORDER_COUNT: Map<u64, u32> = Map::new("n_ord");
const OWNER_ORDERS: Map<(u64, Address), u32> = Map::new("n_own");
/// Period → (produced, consumed) Wh, the sums of its accepted readings.
pub(crate) const METERED: Map<u64, (u64, u64)> = Map::new("metered");

/// `wh × price_per_kwh`, in micro-tokens, rounded up (what a party must put up).
pub fn value_ceil(wh: u64, price: u64) -> u64 {
    // u64 arithmetic when both fit in 32 bits (nearly always), so the product cannot
    // overflow: u128 arithmetic (and an overflow-checked u64 multiply) are library calls in
    // wasm, and clearing does this for every order and trade.
    if (wh | price) >> 32 == 0 {
        (wh * price).div_ceil(1000)
    } else {
        ((wh as u128 * price as u128).div_ceil(1000)) as u64
    }
}

/// `wh × price_per_kwh`, rounded down (what a party is paid).
pub fn value_floor(wh: u64, price: u64) -> u64 {
    if (wh | price) >> 32 == 0 {
        wh * price / 1000
    } else {
        ((wh as u128 * price as u128) / 1000) as u64
    }
}

pub(crate) fn start_of(c: &Config, period: u64) -> u64 {
    c.start_ms
        .saturating_add(period.saturating_mul(c.period_ms))
}

/// The pricing parameters in force (band, rates), without any period's forecasts.
fn pricing_params(c: &Config, ctx: &Ctx, period: u64) -> Result<PriceAnswer> {
    ctx.query_contract(
        &c.pricing,
        &pricing::QueryMsg::Price {
            period,
            supply_wh: 0,
            demand_wh: 0,
        },
    )
}

fn pay(ctx: &mut Ctx, to: &Address, amount: u64) -> Result<()> {
    if amount > 0 {
        ctx.transfer(to, amount)?;
    }
    Ok(())
}

/// Orders of a cleared period are in its book ([`book`]): none is added or taken away.
fn ensure_not_cleared(period: u64) -> Result<()> {
    ensure!(
        !PERIODS.may_load(&period)?.is_some_and(|s| s.cleared),
        "period {period} is already cleared: its book takes no order and no cancellation"
    );
    Ok(())
}

fn place(
    ctx: &mut Ctx,
    period: u64,
    side: Side,
    wh: u64,
    price: u64,
    claimed_renewable: Option<bool>,
) -> Result<Response> {
    let c = CONFIG.load()?;
    let owner = ctx.caller()?;
    let now = ctx.env().time_ms;
    ensure!(wh > 0, "order amount must be positive");
    ensure!(
        wh >= MIN_ORDER_WH,
        "order of {wh} Wh is below the minimum of {MIN_ORDER_WH} Wh"
    );
    ensure!(
        wh <= MAX_ORDER_WH,
        "order of {wh} Wh exceeds the limit of {MAX_ORDER_WH}"
    );
    ensure!(
        now < start_of(&c, period),
        "gate closed: period {period} started at {} ms",
        start_of(&c, period)
    );
    // The gate and the chain's clock agree when genesis is right; a period cleared early
    // (another schedule, a hand-set start) must still take nothing once its book is written.
    ensure_not_cleared(period)?;
    let in_period = ORDER_COUNT.may_load(&period)?.unwrap_or(0);
    ensure!(
        in_period < c.max_orders_per_period,
        "period {period} is full: it takes at most {} orders",
        c.max_orders_per_period
    );
    let mine = OWNER_ORDERS.may_load(&(period, owner))?.unwrap_or(0);
    ensure!(
        mine < MAX_ORDERS_PER_OWNER,
        "{owner} has {mine} orders in period {period}: at most {MAX_ORDERS_PER_OWNER} per owner"
    );
    let renewable = side == Side::Sell && registry::is_renewable(&c, &owner)?;
    if let Some(claim) = claimed_renewable
        && claim != renewable
    {
        fail!(
            "the offer says renewable: {claim}, but the seller's registered meter {}",
            match registry::meter_of(&owner)? {
                Some((d, m)) => format!(
                    "({d}) is a {}, which the market counts as {}",
                    m.kind,
                    if renewable {
                        "renewable"
                    } else {
                        "not renewable"
                    }
                ),
                None =>
                    "does not exist: only a registered renewable meter makes energy green".into(),
            }
        );
    }
    if side == Side::Buy {
        let debt = periods::DEBTS.may_load(&owner)?.unwrap_or(0);
        ensure!(
            debt == 0,
            "{owner} owes the grid company {debt}: pay it (pay_debt) before bidding again"
        );
    }
    let p = pricing_params(&c, ctx, period)?;
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
    ORDER_COUNT.save(&period, &(in_period + 1))?;
    OWNER_ORDERS.save(&(period, owner), &(mine + 1))?;
    let order = Order {
        id,
        period,
        owner,
        side,
        wh,
        price,
        renewable,
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
        let call_gas = msg.call_gas.unwrap_or(periods::DEFAULT_CALL_GAS);
        let fit = periods::orders_that_fit(call_gas);
        ensure!(
            fit >= MAX_ORDERS_PER_OWNER,
            "a period call of {call_gas} gas is too small for a market"
        );
        let max_orders_per_period = msg.max_orders_per_period.unwrap_or(fit);
        ensure!(
            max_orders_per_period <= fit,
            "{max_orders_per_period} orders per period do not fit a period call of {call_gas} gas: at most {fit}"
        );
        // Every energy report loads the config: its lists stay small.
        for kinds in [&msg.renewable_kinds, &msg.load_kinds] {
            ensure!(
                kinds.len() <= MAX_KINDS && kinds.iter().all(|k| k.len() <= 64),
                "at most {MAX_KINDS} device kinds of at most 64 bytes each"
            );
        }
        let readings_window_periods = msg.readings_window_periods.unwrap_or(1);
        ensure!(
            (1..=MAX_READINGS_WINDOW_PERIODS).contains(&readings_window_periods),
            "readings_window_periods must be 1 to {MAX_READINGS_WINDOW_PERIODS}"
        );
        CONFIG.save(&Config {
            pricing: msg.pricing,
            grid_company: msg.grid_company,
            admin: msg.admin,
            start_ms: msg.start_ms,
            period_ms: msg.period_ms,
            renewable_kinds: msg.renewable_kinds,
            load_kinds: msg.load_kinds,
            energy_period_ms: msg.energy_period_ms.unwrap_or(msg.period_ms),
            fee_collector: msg.fee_collector,
            call_gas,
            max_orders_per_period,
            readings_window_periods,
        })?;
        for e in &msg.devices {
            registry::register(e)?;
        }
        if let Some(g) = &msg.grid {
            grid::set(g, 0)?;
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
            } => place(ctx, period, Side::Buy, wh, max_price, None),
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
                // Its `ord` entry no longer holds what is left of the escrow (`book`).
                ensure_not_cleared(period)?;
                ORDERS.remove(&(period, id));
                ORDER_COUNT.update(&period, |n| Ok(n.unwrap_or(1).saturating_sub(1)))?;
                OWNER_ORDERS.update(&(period, order.owner), |n| {
                    Ok(n.unwrap_or(1).saturating_sub(1))
                })?;
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
                let participant = registry::meter(&device)?
                    .ok_or_else(|| Error::new(format!("{device} is not a registered meter")))?
                    .participant;
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
                METERED.update(&period, |m| {
                    let (p, c) = m.unwrap_or((0, 0));
                    Ok((p + produced_wh, c + consumed_wh))
                })?;
                ctx.emit(
                    Event::new("reading")
                        .attr("period", period)
                        .attr("participant", participant)
                        .attr("produced_wh", produced_wh)
                        .attr("consumed_wh", consumed_wh),
                );
                Ok(Response::new())
            }
            ExecuteMsg::Settle { period } => {
                let c = CONFIG.load()?;
                let cleared = PERIODS.may_load(&period)?.is_some_and(|s| s.cleared);
                if !cleared && ctx.env().time_ms >= start_of(&c, period) {
                    periods::clear_period(ctx, period, true)?;
                }
                Response::json(&periods::settle_period(ctx, period, true)?)
            }
            ExecuteMsg::Clear { period } => {
                let c = CONFIG.load()?;
                ensure!(
                    ctx.env().time_ms >= start_of(&c, period),
                    "period {period} is still open for orders until {} ms",
                    start_of(&c, period)
                );
                ensure!(
                    !PERIODS.may_load(&period)?.is_some_and(|s| s.cleared),
                    "period {period} is already cleared"
                );
                Response::json(&periods::clear_period(ctx, period, true)?)
            }
            ExecuteMsg::Forecast { period, kind, wh } => {
                let c = CONFIG.load()?;
                registry::forecast(ctx, &c, period, kind, wh)?;
                Ok(Response::new())
            }
            ExecuteMsg::PayDebt {} => {
                let who = ctx.caller()?;
                let funds = ctx.env().funds;
                let debt = periods::DEBTS.may_load(&who)?.unwrap_or(0);
                ensure!(debt > 0, "{who} owes nothing");
                ensure!(
                    funds > 0 && funds <= debt,
                    "send between 1 and the debt ({debt}) as funds; {funds} was sent"
                );
                if funds == debt {
                    periods::DEBTS.remove(&who);
                } else {
                    periods::DEBTS.save(&who, &(debt - funds))?;
                }
                pay(ctx, &CONFIG.load()?.grid_company, funds)?;
                ctx.emit(
                    Event::new("debt_paid")
                        .attr("account", who)
                        .attr("amount", funds),
                );
                Ok(Response::new())
            }
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
                kind,
                rated_power_w,
            } => {
                ensure!(
                    ctx.caller()? == CONFIG.load()?.admin,
                    "only the market admin registers meters"
                );
                let replaced = registry::register(&MeterEntry {
                    device,
                    participant,
                    kind: kind.clone(),
                    rated_power_w,
                })?;
                ctx.emit(
                    Event::new("meter_registered")
                        .attr("device", device)
                        .attr("participant", participant)
                        .attr("kind", kind),
                );
                // The participant's meter it replaced, if any: `{"replaced": ADDR | null}`.
                Response::json(&registry::Registered { replaced })
            }
            ExecuteMsg::SetGrid { grid, from_period } => {
                let c = CONFIG.load()?;
                ensure!(
                    ctx.caller()? == c.grid_company,
                    "only the grid company changes the topology"
                );
                let start = start_of(&c, from_period);
                ensure!(
                    ctx.env().time_ms < start,
                    "a topology change takes effect from a future period: period \
                     {from_period}'s gate closed at {start} ms"
                );
                grid::set(&grid, from_period)?;
                ctx.emit(
                    Event::new("grid")
                        .attr("from_period", from_period)
                        .attr("feeders", grid.feeders.len()),
                );
                Ok(Response::new())
            }
        }
    }

    fn sudo(ctx: &mut Ctx, msg: SudoMsg) -> Result<Response> {
        match msg {
            SudoMsg::PeriodBoundary { period } => Response::json(&periods::boundary(ctx, period)?),
        }
    }

    fn query(ctx: &Ctx, msg: QueryMsg) -> Result<Response> {
        match msg {
            QueryMsg::Config {} => Response::json(&CONFIG.load()?),
            QueryMsg::Stats {} => Response::json(&STATS.may_load()?.unwrap_or_default()),
            QueryMsg::Period { period } => Response::json(&PERIODS.may_load(&period)?),
            QueryMsg::Orders { period, limit } => {
                Response::json(&book::orders(period, limit as usize)?)
            }
            QueryMsg::Trades { period, limit } => {
                Response::json(&book::trades(period, limit as usize)?)
            }
            QueryMsg::Points { account } => {
                Response::json(&POINTS.may_load(&account)?.unwrap_or(0))
            }
            QueryMsg::Parties { period } => {
                let mut parties: std::collections::BTreeMap<Address, (u64, u64)> =
                    Default::default();
                for t in book::trades(period, usize::MAX)? {
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
                // An offer's bond is at the penalty rate, whatever its price.
                Side::Sell => {
                    let c = CONFIG.load()?;
                    let now = ctx.env().time_ms;
                    let period = now.saturating_sub(c.start_ms) / c.period_ms.max(1) + 1;
                    value_ceil(wh, pricing_params(&c, ctx, period)?.shortfall_penalty)
                }
            }),
            QueryMsg::Price { period } => {
                let c = CONFIG.load()?;
                Response::json(&periods::prices(&c, ctx, period)?)
            }
            QueryMsg::Meter { participant } => {
                let c = CONFIG.load()?;
                let renewable = registry::is_renewable(&c, &participant)?;
                Response::json(&registry::meter_of(&participant)?.map(|(device, m)| {
                    registry::MeterAnswer {
                        device,
                        kind: m.kind,
                        rated_power_w: m.rated_power_w,
                        renewable,
                    }
                }))
            }
            QueryMsg::Debt { account } => {
                Response::json(&periods::DEBTS.may_load(&account)?.unwrap_or(0))
            }
            QueryMsg::Grid { period, accounts } => {
                let c = CONFIG.load()?;
                let now = ctx.env().time_ms;
                let period = period
                    .unwrap_or_else(|| now.saturating_sub(c.start_ms) / c.period_ms.max(1) + 1);
                let limit = accounts.unwrap_or(100).min(grid::MAX_CONNECTIONS as u32);
                Response::json(&grid::answer(&c, period, limit as usize)?)
            }
            QueryMsg::Statement {
                account,
                first_period,
                last_period,
            } => Response::json(&statement::of(&account, first_period, last_period)?),
        }
    }
}

export_contract!(Market);

#[cfg(test)]
mod tests;
