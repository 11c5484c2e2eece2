//! The market on the native harness: a full period cycle, each bad input, and conservation.

use super::*;
use gridledger_sdk::testing::MockChain;
use pricing::{Mechanism, Params, Pricing};
use proptest::prelude::*;

mod network;

const PERIOD_MS: u64 = 60_000;
const START: u64 = 1_700_000_000_000 + 10 * PERIOD_MS;

fn params(mechanism: Mechanism) -> Params {
    Params {
        f_min: 100_000,
        f_max: 400_000,
        reference_price: 200_000,
        mu_min: "0.5".parse().unwrap(),
        mu_max: "1.5".parse().unwrap(),
        mu_slope: Fixed::ONE,
        shortfall_penalty: 50_000,
        overdraw_penalty: 40_000,
        grid_tariff: 300_000,
        mechanism,
    }
}

struct Setup {
    chain: MockChain,
    market: Address,
    pricing: Address,
    grid: Address,
}

fn addr(n: &str) -> Address {
    MockChain::addr(n)
}

fn meter(of: &str) -> Address {
    addr(&format!("meter-{of}"))
}

const PEOPLE: [&str; 4] = ["wind", "diesel", "house", "pump"];

/// Each participant's meter kind: only the wind turbine's energy is renewable.
fn kind_of(who: &str) -> &'static str {
    match who {
        "wind" => "wind_turbine",
        "diesel" => "diesel_generator",
        "house" => "household_load",
        _ => "water_plant",
    }
}

/// 1 MW: at most 16,666 Wh in a 60 s period.
const RATING_W: u64 = 1_000_000;

fn setup(mechanism: Mechanism, pool: u64) -> Setup {
    setup_grid(mechanism, pool, None, None)
}

/// Receives the transaction fees when a test sets a topology or fees.
fn fee_collector() -> Address {
    addr("fee-collector")
}

fn setup_grid(
    mechanism: Mechanism,
    pool: u64,
    topology: Option<grid::GridSpec>,
    fees: Option<pricing::FeeSchedule>,
) -> Setup {
    setup_market(mechanism, pool, topology, fees, None)
}

/// [`setup_grid`] with the gas the market's period calls get (`call_gas`).
fn setup_market(
    mechanism: Mechanism,
    pool: u64,
    topology: Option<grid::GridSpec>,
    fees: Option<pricing::FeeSchedule>,
    call_gas: Option<u64>,
) -> Setup {
    try_setup(mechanism, pool, topology, fees, call_gas, None).expect("the market instantiates")
}

/// [`setup_market`] with the periods a settlement waits for readings, or why the market
/// refused to instantiate.
fn try_setup(
    mechanism: Mechanism,
    pool: u64,
    topology: Option<grid::GridSpec>,
    fees: Option<pricing::FeeSchedule>,
    call_gas: Option<u64>,
    readings_window_periods: Option<u64>,
) -> Result<Setup, String> {
    let mut chain = MockChain::new();
    let (reg, grid) = (addr("regulator"), addr("grid"));
    for p in PEOPLE {
        chain.set_balance(addr(p), 1_000_000_000);
    }
    chain.set_balance(grid, pool);
    let pricing = chain
        .instantiate::<Pricing>(
            reg,
            &pricing::InstantiateMsg {
                params: params(mechanism),
                admin: reg,
                fees,
            },
            0,
        )
        .unwrap();
    let devices: Vec<MeterEntry> = PEOPLE
        .iter()
        .map(|p| MeterEntry {
            device: meter(p),
            participant: addr(p),
            kind: kind_of(p).into(),
            rated_power_w: RATING_W,
        })
        .collect();
    let market = chain.instantiate::<Market>(
        grid,
        &InstantiateMsg {
            pricing,
            grid_company: grid,
            admin: grid,
            start_ms: START,
            period_ms: PERIOD_MS,
            devices,
            renewable_kinds: vec!["wind_turbine".into(), "rooftop_pv".into()],
            load_kinds: vec!["household_load".into(), "water_plant".into()],
            energy_period_ms: None,
            grid: topology,
            fee_collector: Some(fee_collector()),
            call_gas,
            max_orders_per_period: None,
            readings_window_periods,
        },
        pool,
    )?;
    Ok(Setup {
        chain,
        market,
        pricing,
        grid,
    })
}

impl Setup {
    /// Moves the clock to `at_ms` within period `period` (negative offsets are before it).
    fn at(&mut self, period: u64, offset_ms: i64) {
        let t = (START + period * PERIOD_MS) as i64 + offset_ms;
        self.chain.set_block(self.chain.height() + 1, t as u64);
    }

    fn offer(&mut self, who: &str, period: u64, wh: u64, price: u64) -> Result<Vec<u8>, String> {
        self.offer_claiming(who, period, wh, price, None)
    }

    fn offer_claiming(
        &mut self,
        who: &str,
        period: u64,
        wh: u64,
        price: u64,
        renewable: Option<bool>,
    ) -> Result<Vec<u8>, String> {
        let bond = value_ceil(wh, 50_000);
        self.chain.execute(
            self.market,
            addr(who),
            &ExecuteMsg::Offer {
                period,
                wh,
                min_price: price,
                renewable,
            },
            bond,
        )
    }

    fn forecast(
        &mut self,
        who: &str,
        period: u64,
        kind: pricing::ForecastKind,
        wh: u64,
    ) -> Result<Vec<u8>, String> {
        self.chain.execute(
            self.market,
            addr(who),
            &ExecuteMsg::Forecast { period, kind, wh },
            0,
        )
    }

    fn bid(&mut self, who: &str, period: u64, wh: u64, price: u64) -> Result<Vec<u8>, String> {
        self.chain.execute(
            self.market,
            addr(who),
            &ExecuteMsg::Bid {
                period,
                wh,
                max_price: price,
            },
            value_ceil(wh, price),
        )
    }

    fn boundary(&mut self, period: u64) {
        self.at(period, 0);
        self.chain
            .sudo(self.market, &SudoMsg::PeriodBoundary { period })
            .unwrap();
    }

    fn settle(&mut self, who: &str, period: u64) -> Result<Vec<u8>, String> {
        self.chain
            .execute(self.market, addr(who), &ExecuteMsg::Settle { period }, 0)
    }

    fn reading(
        &mut self,
        who: &str,
        period: u64,
        produced: u64,
        consumed: u64,
    ) -> Result<Vec<u8>, String> {
        self.chain.execute(
            self.market,
            meter(who),
            &ExecuteMsg::Reading {
                period,
                produced_wh: produced,
                consumed_wh: consumed,
            },
            0,
        )
    }

    fn total(&self) -> u64 {
        PEOPLE
            .iter()
            .map(|p| self.chain.balance(addr(p)))
            .sum::<u64>()
            + self.chain.balance(self.market)
            + self.chain.balance(self.grid)
            + self.chain.balance(fee_collector())
    }

    /// The `orders` query: the period's orders in id order, at most `limit`.
    fn orders(&self, period: u64, limit: u32) -> Vec<Order> {
        self.chain
            .query(self.market, &QueryMsg::Orders { period, limit })
            .unwrap()
    }

    /// The `trades` query: the period's trades in clearing order, at most `limit`.
    fn trades(&self, period: u64, limit: u32) -> Vec<Trade> {
        self.chain
            .query(self.market, &QueryMsg::Trades { period, limit })
            .unwrap()
    }

    fn summary(&self, period: u64) -> PeriodSummary {
        let s: Option<PeriodSummary> = self
            .chain
            .query(self.market, &QueryMsg::Period { period })
            .unwrap();
        s.unwrap()
    }
}

/// Found on the 1,000-household devnet beside a browser: a period settles one period after
/// its delivery, and on 5-second periods readings that took longer than that through a busy
/// chain came too late (`period N is already settled`): sellers who delivered were penalised
/// for a shortfall. A market may wait longer for readings: with a window of two periods,
/// period 0 settles at the start of period 3, and a reading in period 2 still counts.
#[test]
fn a_longer_readings_window_settles_later_and_takes_late_readings() {
    let mut s = try_setup(Mechanism::PayAsClear, 10_000_000, None, None, None, Some(2)).unwrap();
    s.at(0, -30_000);
    s.offer("wind", 0, 1_000, 150_000).unwrap();
    s.bid("house", 0, 1_000, 250_000).unwrap();
    s.boundary(0);
    s.boundary(1);
    s.boundary(2);
    assert!(!s.summary(0).settled, "still waiting for readings");
    let err = s.settle("house", 0).unwrap_err();
    assert!(err.contains("can settle from"), "{err}");
    // Late, but inside the window.
    s.at(2, 4_000);
    s.reading("wind", 0, 1_000, 0).unwrap();
    s.reading("house", 0, 0, 1_000).unwrap();
    s.boundary(3);
    let sum = s.summary(0);
    assert!(sum.settled);
    assert_eq!(sum.delivered_wh, 1_000);
    assert_eq!(sum.penalties, 0, "nobody is penalised for a slow chain");
    // The default window is one period, and a market may not wait past the cap.
    let cfg: Config = s.chain.query(s.market, &QueryMsg::Config {}).unwrap();
    assert_eq!(cfg.readings_window_periods, 2);
    for bad in [0, MAX_READINGS_WINDOW_PERIODS + 1] {
        let err = try_setup(Mechanism::PayAsClear, 0, None, None, None, Some(bad))
            .err()
            .unwrap_or_else(|| panic!("a window of {bad} periods was taken"));
        assert!(
            err.contains("readings_window_periods must be 1 to 8"),
            "{err}"
        );
    }
}

/// The market's entries a step added or changed.
fn changed(before: &BTreeMap<Vec<u8>, Vec<u8>>, after: &BTreeMap<Vec<u8>, Vec<u8>>) -> usize {
    after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .count()
        + before.keys().filter(|k| !after.contains_key(*k)).count()
}

/// Found by `bench market`: clearing wrote every order of the period again and an entry per
/// trade, and settlement did it once more; a state write costs a validator far more than its
/// bytes, so a period of 10,000 orders spent 230 ms of its 270 ms boundary block in the state
/// tree and the commit. Both now write the period's book and trades in pages (`book`).
#[test]
fn a_period_clears_and_settles_in_a_few_writes() {
    let mut s = setup(Mechanism::PayAsClear, 10_000_000);
    s.at(0, -30_000);
    // 64 orders, 32 trades: every seller's and buyer's cap.
    for k in 0..MAX_ORDERS_PER_OWNER as u64 {
        s.offer("wind", 0, 1_000, 150_000 + k).unwrap();
        s.offer("diesel", 0, 1_000, 160_000 + k).unwrap();
        s.bid("house", 0, 1_000, 250_000 - k).unwrap();
        s.bid("pump", 0, 1_000, 240_000 - k).unwrap();
    }
    let before = s.chain.storage(s.market);
    s.boundary(0);
    let cleared = s.chain.storage(s.market);
    let sum = s.summary(0);
    assert_eq!(sum.trades, 32);
    // One book page, one trade page (32 trades), the summary, its prices, the stats and the
    // clock's bookkeeping: not 64 + 32.
    let writes = changed(&before, &cleared);
    assert!(writes <= 10, "clearing changed {writes} entries");
    let trades = s.trades(0, 100);
    assert_eq!(trades.len(), 32);
    let orders = s.orders(0, 100);
    assert_eq!(orders.len(), 64);
    assert!(
        orders.iter().all(|o| o.filled_wh == 1_000),
        "every order filled"
    );
    for who in PEOPLE {
        s.at(1, 1_000);
        let (produced, consumed) = if who == "wind" || who == "diesel" {
            (16_000, 0)
        } else {
            (0, 16_000)
        };
        s.reading(who, 0, produced, consumed).unwrap();
    }
    let read = s.chain.storage(s.market);
    s.boundary(2);
    assert!(s.summary(0).settled);
    // The book and trade pages again, statements of the four, the summary, stats, clock.
    let writes = changed(&read, &s.chain.storage(s.market));
    assert!(writes <= 20, "settlement changed {writes} entries");
    let orders = s.orders(0, 100);
    assert!(orders.iter().all(|o| o.escrow == 0), "all escrow is out");
    let trades = s.trades(0, 100);
    assert!(trades.iter().all(|t| t.settlement.is_some()));
}

/// Found by review of the book pages: the gate is a time check and the chain's boundary call
/// clears on the chain's clock, so a period cleared before its gate (a schedule or `start_ms`
/// that disagree) took a cancellation paid from its `ord` entry (the escrow as placed, whose
/// unmatched part clearing had already returned: paid twice) and orders that no book held
/// (escrow never returned). A cleared period now refuses both, and changes nothing.
#[test]
fn a_period_cleared_early_takes_no_order_and_no_cancellation() {
    let mut s = setup(Mechanism::PayAsClear, 0);
    s.at(1, -10_000);
    s.offer("wind", 1, 1_000, 150_000).unwrap();
    s.bid("pump", 1, 1_000, 300_000).unwrap();
    // Below the offer: unmatched, its margin returned at clearing.
    let id: u64 = serde_json::from_slice(&s.bid("house", 1, 1_000, 120_000).unwrap()).unwrap();
    s.chain
        .sudo(s.market, &SudoMsg::PeriodBoundary { period: 1 })
        .unwrap();
    assert!(s.summary(1).cleared, "cleared before its gate");
    let house = s.chain.balance(addr("house"));
    let (total, stored) = (s.total(), s.chain.storage(s.market));
    let err = s
        .chain
        .execute(
            s.market,
            addr("house"),
            &ExecuteMsg::Cancel { period: 1, id },
            0,
        )
        .unwrap_err();
    assert!(err.contains("period 1 is already cleared"), "{err}");
    let err = s.bid("house", 1, 1_000, 300_000).unwrap_err();
    assert!(err.contains("period 1 is already cleared"), "{err}");
    assert_eq!(s.chain.balance(addr("house")), house);
    assert_eq!((s.total(), s.chain.storage(s.market)), (total, stored));
}

/// Books and trades over several pages: 288 orders (three book pages), 144 trades (four full
/// trade pages and a part), queried with limits that end inside a page, then settled.
#[test]
fn a_book_over_several_pages_is_queried_and_settled_whole() {
    let mut s = setup(Mechanism::PayAsClear, 0);
    let sellers: Vec<String> = (0..9).map(|k| format!("seller-{k}")).collect();
    let buyers: Vec<String> = (0..9).map(|k| format!("buyer-{k}")).collect();
    for who in sellers.iter().chain(&buyers) {
        s.chain.set_balance(addr(who), 1_000_000_000);
    }
    let start_total: u64 = sellers
        .iter()
        .chain(&buyers)
        .map(|w| s.chain.balance(addr(w)))
        .sum::<u64>()
        + s.total();
    s.at(0, -30_000);
    for k in 0..MAX_ORDERS_PER_OWNER as u64 {
        for (seller, buyer) in sellers.iter().zip(&buyers) {
            s.offer(seller, 0, 1_000, 150_000 + k).unwrap();
            s.bid(buyer, 0, 1_000, 250_000 - k).unwrap();
        }
    }
    s.boundary(0);
    for (limit, n) in [(100, 100), (129, 129), (1_000, 288)] {
        let o = s.orders(0, limit);
        assert_eq!(o.len(), n);
        assert!(o.windows(2).all(|w| w[0].id < w[1].id), "in id order");
        assert!(o.iter().all(|o| o.filled_wh == 1_000));
    }
    for (limit, n) in [(33, 33), (1_000, 144)] {
        assert_eq!(s.trades(0, limit).len(), n);
    }
    assert_eq!(s.summary(0).trades, 144);
    // No readings: every seller falls short and pays its bond; settlement spans every page.
    s.boundary(1);
    s.boundary(2);
    assert!(s.summary(0).settled);
    assert!(s.trades(0, 1_000).iter().all(|t| t.settlement.is_some()));
    assert!(s.orders(0, 1_000).iter().all(|o| o.escrow == 0));
    let end_total: u64 = sellers
        .iter()
        .chain(&buyers)
        .map(|w| s.chain.balance(addr(w)))
        .sum::<u64>()
        + s.total();
    assert_eq!(end_total, start_total, "every token accounted for");
    assert_eq!(s.chain.balance(s.market), 0, "no escrow left in the market");
}

/// Found by review: every energy report loads the market's config, and nothing bounded its
/// lists of device kinds, so a market instantiated with ~100 KB of them would fail every report.
#[test]
fn a_market_with_too_many_or_too_long_device_kinds_is_refused() {
    let msg = |renewable_kinds: Vec<String>, load_kinds: Vec<String>| InstantiateMsg {
        pricing: addr("pricing"),
        grid_company: addr("grid"),
        admin: addr("grid"),
        start_ms: START,
        period_ms: PERIOD_MS,
        devices: Vec::new(),
        renewable_kinds,
        load_kinds,
        energy_period_ms: None,
        grid: None,
        fee_collector: None,
        call_gas: None,
        max_orders_per_period: None,
        readings_window_periods: None,
    };
    let many: Vec<String> = (0..=MAX_KINDS).map(|i| format!("kind-{i}")).collect();
    let long = vec!["k".repeat(65)];
    for m in [msg(many.clone(), Vec::new()), msg(Vec::new(), long)] {
        let mut chain = MockChain::new();
        let err = chain
            .instantiate::<Market>(addr("grid"), &m, 0)
            .expect_err("refused");
        assert!(
            err.contains("at most 32 device kinds of at most 64 bytes"),
            "{err}"
        );
    }
    let mut chain = MockChain::new();
    let fits = msg(many[..MAX_KINDS].to_vec(), vec!["k".repeat(64)]);
    chain
        .instantiate::<Market>(addr("grid"), &fits, 0)
        .expect("32 kinds of 64 bytes are taken");
}

#[test]
fn a_period_clears_and_settles() {
    let mut s = setup(Mechanism::PayAsClear, 10_000_000);
    let total = s.total();
    s.at(0, -30_000);
    s.offer("wind", 0, 1_000, 150_000).unwrap();
    s.offer("diesel", 0, 500, 150_000).unwrap();
    s.bid("house", 0, 800, 250_000).unwrap();
    s.bid("pump", 0, 400, 200_000).unwrap();
    s.boundary(0);
    let sum = s.summary(0);
    assert!(sum.cleared);
    assert_eq!(sum.traded_wh, 1_200);
    assert_eq!(sum.renewable_wh, 1_000, "renewable offers win the tie");
    assert_eq!(
        sum.clearing_price, 150_000,
        "300 Wh of diesel at 150k are left unsold: the interval is [150k, min(200k, 150k)]"
    );
    let trades = s.trades(0, 10);
    assert_eq!(trades.len(), 3);
    assert!(trades.iter().all(|t| t.price == 150_000));
    assert_eq!(
        s.chain
            .events()
            .iter()
            .filter(|(_, e)| e.kind == "trade")
            .count(),
        3
    );

    // Delivery: wind delivers 900 of 1000, diesel everything; the house draws 50 Wh extra.
    s.at(1, 10);
    s.reading("wind", 0, 900, 0).unwrap();
    s.reading("diesel", 0, 500, 0).unwrap();
    s.reading("house", 0, 0, 850).unwrap();
    s.reading("pump", 0, 0, 400).unwrap();
    let house_before = s.chain.balance(addr("house"));
    s.boundary(2);
    let sum = s.summary(0);
    assert!(sum.settled);
    assert_eq!(sum.delivered_wh, 1_100);
    assert_eq!(sum.settled_value, value_floor(1_100, 150_000));
    assert!(sum.subsidy_paid > 0);
    assert!(
        sum.penalties > 0,
        "wind's shortfall and the house's over-draw are penalised"
    );
    assert_eq!(s.total(), total, "tokens are conserved");
    assert!(
        s.chain.balance(addr("house")) > house_before,
        "unused margin comes back"
    );
    let stats: Stats = s.chain.query(s.market, &QueryMsg::Stats {}).unwrap();
    assert_eq!(stats.settled_periods, 1);
    // Supervision sees each party's contract against its meter.
    let parties: Vec<PartyRecord> = s
        .chain
        .query(s.market, &QueryMsg::Parties { period: 0 })
        .unwrap();
    let wind = parties
        .iter()
        .find(|p| p.participant == addr("wind"))
        .unwrap();
    assert_eq!((wind.sold_wh, wind.produced_wh), (1_000, Some(900)));
    let house = parties
        .iter()
        .find(|p| p.participant == addr("house"))
        .unwrap();
    assert_eq!(house.consumed_wh, Some(850));
    assert!(house.bought_wh > 0 && house.sold_wh == 0);
    // The market holds nothing for period 0 any more: only the pool is left.
    assert_eq!(s.chain.balance(s.market), stats.pool);
    // Settling again is refused.
    let err = s.settle("house", 0).unwrap_err();
    assert!(err.contains("already settled"), "{err}");
}

#[test]
fn bad_orders_are_refused_and_change_nothing() {
    let mut s = setup(Mechanism::PayAsClear, 0);
    s.at(0, -1_000);
    let before = s.chain.storage(s.market);
    let total = (s.chain.balance(addr("house")), s.chain.balance(s.market));
    let cases: Vec<(Result<Vec<u8>, String>, &str)> = vec![
        (s.bid("house", 0, 0, 200_000), "must be positive"),
        (
            s.chain.execute(
                s.market,
                addr("house"),
                &ExecuteMsg::Bid {
                    period: 0,
                    wh: MAX_ORDER_WH + 1,
                    max_price: 200_000,
                },
                0,
            ),
            "exceeds the limit",
        ),
        (s.bid("house", 0, 100, 500_000), "outside the band"),
        (s.offer("wind", 0, 100, 50_000), "outside the band"),
        (
            s.bid("house", 0, MIN_ORDER_WH - 1, 200_000),
            "below the minimum",
        ),
        (
            s.offer_claiming("diesel", 0, 100, 150_000, Some(true)),
            "diesel_generator, which the market counts as not renewable",
        ),
        (
            s.offer_claiming("wind", 0, 100, 150_000, Some(false)),
            "counts as renewable",
        ),
        (
            s.forecast("nobody", 0, pricing::ForecastKind::Supply, 100),
            "only owners of a registered meter",
        ),
        (
            s.forecast("diesel", 0, pricing::ForecastKind::Supply, 100),
            "needs a meter of a renewable kind",
        ),
        (
            s.forecast("wind", 0, pricing::ForecastKind::Demand, 100),
            "needs a meter of a load kind",
        ),
        (
            s.forecast("wind", 0, pricing::ForecastKind::Supply, 1_000_000_000_000),
            "exceeds what",
        ),
        (
            s.chain.execute(
                s.market,
                addr("house"),
                &ExecuteMsg::Bid {
                    period: 0,
                    wh: 100,
                    max_price: 200_000,
                },
                1,
            ),
            "needs 20000 in escrow",
        ),
        (
            s.chain.execute(
                s.market,
                addr("nobody"),
                &ExecuteMsg::Bid {
                    period: 0,
                    wh: 100,
                    max_price: 200_000,
                },
                20_000,
            ),
            "insufficient funds",
        ),
        (s.reading("house", 0, 0, 10), "still being delivered"),
        (
            s.chain.execute(
                s.market,
                addr("house"),
                &ExecuteMsg::Reading {
                    period: 0,
                    produced_wh: 0,
                    consumed_wh: 1,
                },
                0,
            ),
            "not a registered meter",
        ),
        (
            s.chain.execute(
                s.market,
                addr("house"),
                &ExecuteMsg::Settle { period: 0 },
                0,
            ),
            "never cleared",
        ),
    ];
    for (result, text) in cases {
        let err = result.expect_err(text);
        assert!(err.contains(text), "expected {text:?} in {err:?}");
    }
    assert_eq!(s.chain.storage(s.market), before);
    assert_eq!(
        (s.chain.balance(addr("house")), s.chain.balance(s.market)),
        total
    );

    // After gate closure: late orders and cancellations are refused.
    s.bid("house", 0, 100, 200_000).unwrap();
    s.boundary(0);
    assert!(
        s.bid("house", 0, 100, 200_000)
            .unwrap_err()
            .contains("gate closed")
    );
    let err = s
        .chain
        .execute(
            s.market,
            addr("house"),
            &ExecuteMsg::Cancel { period: 0, id: 0 },
            0,
        )
        .unwrap_err();
    assert!(err.contains("gate closed"));
    // Settlement before delivery is over plus a period for readings.
    s.at(1, 5);
    let err = s.settle("house", 0).unwrap_err();
    assert!(err.contains("it can settle from"), "{err}");
    // A duplicate reading is refused.
    s.reading("house", 0, 0, 90).unwrap();
    assert!(
        s.reading("house", 0, 0, 95)
            .unwrap_err()
            .contains("already exists")
    );
}

#[test]
fn cancel_returns_the_escrow() {
    let mut s = setup(Mechanism::PayAsClear, 0);
    s.at(3, -5_000);
    let before = s.chain.balance(addr("pump"));
    let id: u64 = serde_json::from_slice(&s.bid("pump", 3, 1_000, 300_000).unwrap()).unwrap();
    assert_eq!(s.chain.balance(addr("pump")), before - 300_000);
    assert!(
        s.chain
            .execute(
                s.market,
                addr("house"),
                &ExecuteMsg::Cancel { period: 3, id },
                0
            )
            .unwrap_err()
            .contains("owner")
    );
    s.chain
        .execute(
            s.market,
            addr("pump"),
            &ExecuteMsg::Cancel { period: 3, id },
            0,
        )
        .unwrap();
    assert_eq!(s.chain.balance(addr("pump")), before);
}

#[test]
fn pay_as_bid_charges_each_bid_its_price() {
    let mut s = setup(Mechanism::PayAsBid, 0);
    s.at(0, -100);
    s.offer("wind", 0, 1_000, 100_000).unwrap();
    s.bid("house", 0, 300, 300_000).unwrap();
    s.bid("pump", 0, 300, 200_000).unwrap();
    s.boundary(0);
    let trades = s.trades(0, 10);
    assert_eq!(
        trades.iter().map(|t| t.price).collect::<Vec<_>>(),
        vec![300_000, 200_000]
    );
}

#[test]
fn incentive_points_for_renewables_when_plentiful() {
    let mut s = setup(Mechanism::PayAsClear, 1_000_000);
    s.at(0, -100);
    // Forecast plenty of renewables: μ < 1.
    s.forecast("wind", 0, pricing::ForecastKind::Supply, 5_000)
        .unwrap();
    s.forecast("house", 0, pricing::ForecastKind::Demand, 1_000)
        .unwrap();
    s.offer("wind", 0, 1_000, 100_000).unwrap();
    s.bid("house", 0, 1_000, 300_000).unwrap();
    s.boundary(0);
    assert!(s.summary(0).mu < Fixed::ONE);
    s.at(1, 1);
    s.reading("wind", 0, 1_000, 0).unwrap();
    s.boundary(2);
    let points: u64 = s
        .chain
        .query(
            s.market,
            &QueryMsg::Points {
                account: addr("house"),
            },
        )
        .unwrap();
    assert_eq!(points, 1_000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the orders and readings, tokens are conserved, nobody is paid for energy not
    /// both contracted and delivered, and the period settles exactly once.
    #[test]
    fn settlement_conserves_tokens_and_pays_only_delivered_energy(
        orders in proptest::collection::vec((0usize..4, any::<bool>(), MIN_ORDER_WH..2_000, 100u64..400), 1..12),
        readings in proptest::collection::vec((0u64..2_500, 0u64..2_500), 4),
        pay_as_bid in any::<bool>(),
    ) {
        let mut s = setup(if pay_as_bid { Mechanism::PayAsBid } else { Mechanism::PayAsClear }, 5_000_000);
        let total = s.total();
        s.at(0, -1_000);
        for (who, sell, wh, price_k) in orders {
            let who = PEOPLE[who];
            let price = price_k * 1_000;
            if sell { s.offer(who, 0, wh, price).unwrap(); } else { s.bid(who, 0, wh, price).unwrap(); }
        }
        prop_assert_eq!(s.total(), total);
        s.boundary(0);
        prop_assert_eq!(s.total(), total);
        let trades = s.trades(0, 100);
        s.at(1, 1);
        for (i, (p, c)) in readings.iter().enumerate() {
            s.reading(PEOPLE[i], 0, *p, *c).unwrap();
        }
        s.boundary(2);
        prop_assert_eq!(s.total(), total);
        let sum = s.summary(0);
        prop_assert!(sum.settled);
        // Paid energy never exceeds what was both contracted and metered, per seller.
        let delivered_cap: u64 = PEOPLE.iter().enumerate().map(|(i, p)| {
            let contracted: u64 = trades.iter().filter(|t| t.seller == addr(p)).map(|t| t.wh).sum();
            contracted.min(readings[i].0)
        }).sum();
        prop_assert!(sum.delivered_wh <= delivered_cap);
        let stats: Stats = s.chain.query(s.market, &QueryMsg::Stats {}).unwrap();
        prop_assert_eq!(s.chain.balance(s.market), stats.pool, "no escrow is left behind");
        let again = s.chain.execute(s.market, addr("house"), &ExecuteMsg::Settle { period: 0 }, 0);
        prop_assert!(again.is_err(), "a period settles once");
    }
}

/// Found on a devnet: an account sent a demand forecast of 10^12 Wh for a period that had
/// already cleared, and settlement recomputed μ from it. Now forecasts close at the gate, are
/// bounded by the sender's meter, and settlement uses the figures the period cleared with.
#[test]
fn forecasts_after_the_gate_change_nothing_and_settlement_uses_the_cleared_figures() {
    let mut s = setup(Mechanism::PayAsClear, 100_000_000);
    let total = s.total();
    s.at(0, -1_000);
    s.forecast("wind", 0, pricing::ForecastKind::Supply, 600)
        .unwrap();
    s.forecast("house", 0, pricing::ForecastKind::Demand, 1_000)
        .unwrap();
    // A later forecast replaces the sender's earlier one.
    s.forecast("wind", 0, pricing::ForecastKind::Supply, 800)
        .unwrap();
    let live: PriceAnswer = s
        .chain
        .query(s.market, &QueryMsg::Price { period: 0 })
        .unwrap();
    assert_eq!((live.supply_wh, live.demand_wh), (800, 1_000));
    assert_eq!(live.mu, "1.2".parse().unwrap(), "1 + (1000 - 800) / 1000");
    assert_eq!(live.price, 240_000);
    s.offer("wind", 0, 1_000, 100_000).unwrap();
    s.bid("house", 0, 1_000, 300_000).unwrap();
    s.boundary(0);
    assert_eq!(s.summary(0).mu, live.mu);
    // After the gate: refused, and nothing changes.
    s.at(1, 5);
    let before = s.chain.storage(s.market);
    let err = s
        .forecast("house", 0, pricing::ForecastKind::Demand, 16_000)
        .unwrap_err();
    assert!(err.contains("closed at its gate"), "{err}");
    assert_eq!(s.chain.storage(s.market), before);
    // Even the regulator changing the parameters now does not reach back.
    let mut cheaper = params(Mechanism::PayAsClear);
    cheaper.reference_price = 100_000;
    s.chain
        .execute(
            s.pricing,
            addr("regulator"),
            &pricing::ExecuteMsg::SetParams { params: cheaper },
            0,
        )
        .unwrap();
    s.reading("wind", 0, 1_000, 0).unwrap();
    s.reading("house", 0, 0, 1_000).unwrap();
    s.boundary(2);
    let sum = s.summary(0);
    // R = μ · F · E = 1.2 · 240,000 · 1 kWh.
    assert_eq!(sum.subsidy_paid, 288_000);
    assert_eq!(s.total(), total);
}

#[test]
fn green_is_what_the_meter_is_and_only_the_admin_says_what_a_meter_is() {
    let mut s = setup(Mechanism::PayAsClear, 100_000_000);
    s.at(0, -1_000);
    s.offer("diesel", 0, 1_000, 100_000).unwrap();
    s.bid("house", 0, 1_000, 300_000).unwrap();
    s.boundary(0);
    let trades = s.trades(0, 10);
    assert!(!trades[0].renewable);
    s.at(1, 5);
    s.reading("diesel", 0, 1_000, 0).unwrap();
    s.boundary(2);
    assert_eq!(s.summary(0).subsidy_paid, 0, "no subsidy for diesel");
    // The diesel owner cannot re-register its meter as a wind turbine.
    let err = s
        .chain
        .execute(
            s.market,
            addr("diesel"),
            &ExecuteMsg::RegisterDevice {
                device: meter("diesel"),
                participant: addr("diesel"),
                kind: "wind_turbine".into(),
                rated_power_w: RATING_W,
            },
            0,
        )
        .unwrap_err();
    assert!(err.contains("only the market admin"), "{err}");
    let m: Option<registry::MeterAnswer> = s
        .chain
        .query(
            s.market,
            &QueryMsg::Meter {
                participant: addr("diesel"),
            },
        )
        .unwrap();
    let m = m.unwrap();
    assert_eq!((m.kind.as_str(), m.renewable), ("diesel_generator", false));
    // The grid company can (say the generator was replaced by a turbine): green from then on.
    let grid = s.grid;
    s.chain
        .execute(
            s.market,
            grid,
            &ExecuteMsg::RegisterDevice {
                device: meter("diesel"),
                participant: addr("diesel"),
                kind: "wind_turbine".into(),
                rated_power_w: RATING_W,
            },
            0,
        )
        .unwrap();
    s.at(3, -1_000);
    s.offer("diesel", 3, 1_000, 100_000).unwrap();
    let orders = s.orders(3, 10);
    assert!(orders[0].renewable);
}

#[test]
fn the_escrow_quote_is_what_the_order_must_send() {
    let mut s = setup(Mechanism::PayAsClear, 0);
    s.at(0, -1_000);
    let quote = |s: &Setup, side| -> u64 {
        s.chain
            .query(
                s.market,
                &QueryMsg::Escrow {
                    side,
                    wh: 1_000,
                    price: 400_000,
                },
            )
            .unwrap()
    };
    // An offer's bond is at the penalty rate (50,000 per kWh), not at its price.
    let bond = quote(&s, Side::Sell);
    assert_eq!(bond, 50_000);
    s.chain
        .execute(
            s.market,
            addr("wind"),
            &ExecuteMsg::Offer {
                period: 0,
                wh: 1_000,
                min_price: 400_000,
                renewable: None,
            },
            bond,
        )
        .unwrap();
    let margin = quote(&s, Side::Buy);
    assert_eq!(margin, 400_000);
    s.chain
        .execute(
            s.market,
            addr("house"),
            &ExecuteMsg::Bid {
                period: 0,
                wh: 1_000,
                max_price: 400_000,
            },
            margin,
        )
        .unwrap();
}

/// A market takes only as many orders a period as its period calls can clear and settle with
/// room to catch up: 3,500 with the default 2·10⁹ gas a call; a genesis asking for more is
/// refused.
#[test]
fn a_market_takes_only_as_many_orders_as_its_period_calls_can_settle() {
    assert_eq!(periods::orders_that_fit(periods::DEFAULT_CALL_GAS), 3_500);
    assert_eq!(
        periods::orders_that_fit(1_000_000_000_000),
        MAX_ORDERS_PER_PERIOD
    );
    let mut chain = MockChain::new();
    let msg = |call_gas, cap| InstantiateMsg {
        pricing: addr("pricing"),
        grid_company: addr("grid"),
        admin: addr("grid"),
        start_ms: START,
        period_ms: PERIOD_MS,
        devices: vec![],
        renewable_kinds: vec![],
        load_kinds: vec![],
        energy_period_ms: None,
        grid: None,
        fee_collector: None,
        call_gas,
        max_orders_per_period: cap,
        readings_window_periods: None,
    };
    let err = chain
        .instantiate::<Market>(addr("grid"), &msg(None, Some(3_600)), 0)
        .unwrap_err();
    assert!(format!("{err:?}").contains("do not fit"), "{err:?}");
    let err = chain
        .instantiate::<Market>(addr("grid"), &msg(Some(1_000), None), 0)
        .unwrap_err();
    assert!(format!("{err:?}").contains("too small"), "{err:?}");
    let market = chain
        .instantiate::<Market>(addr("grid"), &msg(None, None), 0)
        .unwrap();
    let c: Config = chain.query(market, &QueryMsg::Config {}).unwrap();
    assert_eq!(
        (c.call_gas, c.max_orders_per_period),
        (2_000_000_000, 3_500)
    );
}

/// After a stop, one period call does only what its plan holds: with period calls of 10⁸ gas
/// (100 orders a period), six full periods a stop skipped are not all cleared and settled by
/// the first call after it (without the plan they were, whatever they cost); the calls after
/// it finish, and every unit of escrow is back.
#[test]
fn after_a_stop_each_call_catches_up_only_as_far_as_its_plan() {
    let mut s = setup_market(
        Mechanism::PayAsClear,
        1_000_000,
        None,
        None,
        Some(100_000_000),
    );
    let cap = periods::orders_that_fit(100_000_000) as usize;
    assert_eq!(cap, 100);
    let per_owner = MAX_ORDERS_PER_OWNER as usize;
    let flooders: Vec<String> = (0..cap.div_ceil(per_owner))
        .map(|i| format!("flooder-{i}"))
        .collect();
    for f in &flooders {
        s.chain.set_balance(addr(f), 10_000_000);
    }
    let before: u64 = flooders.iter().map(|f| s.chain.balance(addr(f))).sum();
    s.at(0, -10_000);
    for period in 1..=6 {
        for k in 0..cap {
            s.bid(&flooders[k / per_owner], period, MIN_ORDER_WH, 100_000)
                .unwrap();
        }
    }
    s.boundary(0);
    // The chain stops; the next call the market sees is period 30's.
    s.boundary(30);
    let done = |s: &Setup| (1..=6).filter(|p| s.summary(*p).settled).count();
    let first = done(&s);
    assert!(first < 6, "the first call settled all six full periods");
    let mut calls = 1;
    while done(&s) < 6 {
        s.boundary(30 + calls);
        calls += 1;
        assert!(calls <= 6, "the calls after the stop do not catch up");
    }
    let after: u64 = flooders.iter().map(|f| s.chain.balance(addr(f))).sum();
    assert_eq!(after, before, "every bid's margin is back");
    let stats: Stats = s.chain.query(s.market, &QueryMsg::Stats {}).unwrap();
    assert_eq!(
        s.chain.balance(s.market),
        stats.pool,
        "no escrow left behind"
    );
}

/// A flood of orders into one period, then a stop of the chain for 20 periods: afterwards
/// every period is cleared and settled, and every unit of escrow is paid out or back with
/// its owner (the market holds the pool and nothing else).
#[test]
fn a_flood_and_a_long_stop_leave_no_escrow_behind() {
    let mut s = setup(Mechanism::PayAsClear, 1_000_000);
    // Flooders of 16 orders each fill period 0; the cap holds beyond that.
    let cap = periods::orders_that_fit(periods::DEFAULT_CALL_GAS) as usize;
    let per_owner = MAX_ORDERS_PER_OWNER as usize;
    let flooders: Vec<String> = (0..cap.div_ceil(per_owner))
        .map(|i| format!("flooder-{i}"))
        .collect();
    for f in &flooders {
        s.chain.set_balance(addr(f), 10_000_000);
    }
    let people: Vec<&str> = PEOPLE
        .iter()
        .copied()
        .chain(flooders.iter().map(|f| f.as_str()))
        .collect();
    let total = |s: &Setup| -> u64 {
        people.iter().map(|p| s.chain.balance(addr(p))).sum::<u64>()
            + s.chain.balance(s.market)
            + s.chain.balance(s.grid)
    };
    let before = total(&s);
    s.at(0, -10_000);
    for k in 0..cap {
        s.bid(&flooders[k / per_owner], 0, MIN_ORDER_WH, 100_000)
            .unwrap();
    }
    let err = s.bid(&flooders[0], 1, MIN_ORDER_WH, 100_000);
    assert!(err.is_ok(), "the cap is per period");
    let err = s.bid("house", 0, 100, 200_000).unwrap_err();
    assert!(err.contains("is full"), "{err}");
    let err = s.bid(&flooders[1], 1, MIN_ORDER_WH, 100_000);
    assert!(err.is_ok());
    for _ in 0..MAX_ORDERS_PER_OWNER {
        s.bid(&flooders[2], 1, MIN_ORDER_WH, 100_000).unwrap();
    }
    let err = s.bid(&flooders[2], 1, MIN_ORDER_WH, 100_000).unwrap_err();
    assert!(err.contains("at most 16 per owner"), "{err}");
    // Crossing orders in periods 1 and 2, which the stop will skip.
    s.offer("wind", 1, 1_000, 100_000).unwrap();
    s.bid("house", 1, 1_000, 300_000).unwrap();
    s.offer("diesel", 2, 500, 100_000).unwrap();
    s.bid("pump", 2, 500, 300_000).unwrap();
    s.boundary(0);
    assert!(s.summary(0).cleared);
    // The chain stops for 20 periods: the next boundary call the market sees is period 21's.
    s.boundary(21);
    s.boundary(22);
    for period in 0..=20 {
        let sum: Option<PeriodSummary> = s
            .chain
            .query(s.market, &QueryMsg::Period { period })
            .unwrap();
        let sum = sum.unwrap_or_else(|| panic!("period {period} was never cleared"));
        assert!(sum.cleared && sum.settled, "period {period}: {sum:?}");
    }
    assert_eq!(s.summary(1).traded_wh, 1_000);
    let stats: Stats = s.chain.query(s.market, &QueryMsg::Stats {}).unwrap();
    // Periods 21 and 22 hold no orders; the market holds the pool and nothing else.
    assert_eq!(s.chain.balance(s.market), stats.pool);
    assert_eq!(total(&s), before, "every token accounted for");
    // Anyone may still clear a past period by hand: there is none left to clear.
    let err = s
        .chain
        .execute(s.market, addr("house"), &ExecuteMsg::Clear { period: 5 }, 0)
        .unwrap_err();
    assert!(err.contains("already cleared"), "{err}");
}

/// A buyer whose escrow does not cover its tariff and over-draw penalty: the rest is
/// recorded as its debt to the grid company (not forgotten, not taken from anyone else), and
/// it cannot bid again until it paid.
#[test]
fn what_escrow_does_not_cover_is_a_debt_paid_before_the_next_bid() {
    let mut s = setup(Mechanism::PayAsClear, 0);
    let total = s.total();
    s.at(0, -1_000);
    s.offer("wind", 0, 100, 100_000).unwrap();
    s.bid("house", 0, 100, 100_000).unwrap(); // margin 10,000
    s.boundary(0);
    s.at(1, 5);
    s.reading("wind", 0, 0, 0).unwrap(); // nothing delivered
    s.reading("house", 0, 0, 1_000).unwrap(); // drew 1 kWh from the grid
    let grid_before = s.chain.balance(s.grid);
    s.boundary(2);
    let sum = s.summary(0);
    // Tariff on 100 Wh not delivered + 900 Wh over-drawn: 300,000; penalty on 900 Wh:
    // 36,000. The escrow (10,000) covers part; 326,000 remain owed.
    let owed = value_ceil(1_000, 300_000) + value_ceil(900, 40_000);
    assert_eq!(sum.debt_recorded, owed - 10_000);
    let debt: u64 = s
        .chain
        .query(
            s.market,
            &QueryMsg::Debt {
                account: addr("house"),
            },
        )
        .unwrap();
    assert_eq!(debt, owed - 10_000);
    // The seller's bond paid the shortfall penalty: the grid company got both.
    assert_eq!(
        s.chain.balance(s.grid) - grid_before,
        10_000 + value_ceil(100, 50_000)
    );
    s.at(3, -1_000);
    let err = s.bid("house", 3, 100, 100_000).unwrap_err();
    assert!(err.contains("owes the grid company"), "{err}");
    let pay = |s: &mut Setup, amount| {
        s.chain
            .execute(s.market, addr("house"), &ExecuteMsg::PayDebt {}, amount)
    };
    assert!(
        pay(&mut s, debt + 1)
            .unwrap_err()
            .contains("between 1 and the debt")
    );
    pay(&mut s, 1_000).unwrap();
    assert!(s.bid("house", 3, 100, 100_000).is_err(), "still owes");
    pay(&mut s, debt - 1_000).unwrap();
    s.bid("house", 3, 100, 100_000).unwrap();
    assert_eq!(s.total(), total, "every token accounted for");
}

/// What settlement must do, written from the README's rules ("The market rules"), not from
/// the contract's code: from a cleared period's trades and orders, its meter readings and the
/// figures it cleared with, every account's inflow, the grid company's, the pool's, points,
/// debts and the summary totals. Amounts a party is paid round down, amounts it owes round up.
#[derive(Debug, Default, PartialEq)]
struct ModelOutcome {
    inflow: BTreeMap<Address, u64>,
    pool_paid: u64,
    points: BTreeMap<Address, u64>,
    debts: BTreeMap<Address, u64>,
    delivered_wh: u64,
    settled_value: u64,
    subsidy_paid: u64,
    penalties: u64,
    imbalance_paid: u64,
}

use std::collections::BTreeMap;

fn model_settlement(
    trades: &[Trade],
    orders: &[Order],
    readings: &BTreeMap<Address, (u64, u64)>,
    figures: &PriceAnswer,
    pool: u64,
    grid: Address,
) -> ModelOutcome {
    let owe = |wh: u64, rate: u64| (wh as u128 * rate as u128).div_ceil(1000) as u64;
    let paid = |wh: u64, rate: u64| (wh as u128 * rate as u128 / 1000) as u64;
    let mut out = ModelOutcome::default();
    let mut escrow: BTreeMap<u64, u64> = orders.iter().map(|o| (o.id, o.escrow)).collect();
    let mut pool_left = pool;
    // A seller's metered output goes to its trades in clearing order.
    let mut output: BTreeMap<Address, u64> = BTreeMap::new();
    let mut contracted: BTreeMap<Address, u64> = BTreeMap::new();
    let mut delivered_to: BTreeMap<Address, u64> = BTreeMap::new();
    let mu = figures.mu.raw();
    for t in trades {
        let left = output
            .entry(t.seller)
            .or_insert_with(|| readings.get(&t.seller).map_or(0, |r| r.0));
        let delivered = t.wh.min(*left);
        *left -= delivered;
        // The buyer's escrow pays the seller for energy contracted and delivered.
        let bid = escrow.get_mut(&t.bid_id).unwrap();
        let pay = paid(delivered, t.price).min(*bid);
        *bid -= pay;
        *out.inflow.entry(t.seller).or_default() += pay;
        out.settled_value += pay;
        out.delivered_wh += delivered;
        // The shortfall penalty comes from the seller's bond, to the grid company.
        let bond = escrow.get_mut(&t.offer_id).unwrap();
        let penalty = owe(t.wh - delivered, figures.shortfall_penalty).min(*bond);
        *bond -= penalty;
        *out.inflow.entry(grid).or_default() += penalty;
        out.penalties += penalty;
        // Renewable delivery earns R = μ · F · E from the pool (as far as it goes), and the
        // buyer a point per Wh when μ < 1.
        if t.renewable && delivered > 0 {
            let r = (mu as u128 * figures.price as u128 * delivered as u128
                / (1000 * Fixed::SCALE as u128)) as u64;
            let r = r.min(pool_left);
            pool_left -= r;
            *out.inflow.entry(t.seller).or_default() += r;
            out.subsidy_paid += r;
            if figures.mu < Fixed::ONE {
                *out.points.entry(t.buyer).or_default() += delivered;
            }
        }
        *contracted.entry(t.buyer).or_default() += t.wh;
        *delivered_to.entry(t.buyer).or_default() += delivered;
    }
    out.pool_paid = pool - pool_left;
    // Buyers: energy bought but not delivered (drawn from the grid instead) and over-draw pay
    // the tariff, over-draw the penalty too, from the rest of their escrow; what that does not
    // cover is a debt.
    for (buyer, bought) in &contracted {
        let got = delivered_to[buyer];
        let consumed = readings.get(buyer).map_or(got, |r| r.1);
        let from_grid = consumed.min(*bought) - got.min(consumed.min(*bought));
        let overdraw = consumed.saturating_sub(*bought);
        let tariff = owe(from_grid + overdraw, figures.grid_tariff);
        let penalty = owe(overdraw, figures.overdraw_penalty);
        let mine: Vec<u64> = orders
            .iter()
            .filter(|o| o.owner == *buyer && o.side == Side::Buy)
            .map(|o| o.id)
            .collect();
        let available: u64 = mine.iter().map(|id| escrow[id]).sum();
        let tariff_paid = tariff.min(available);
        let penalty_paid = penalty.min(available - tariff_paid);
        let mut take = tariff_paid + penalty_paid;
        for id in &mine {
            let e = escrow.get_mut(id).unwrap();
            let x = take.min(*e);
            *e -= x;
            take -= x;
        }
        *out.inflow.entry(grid).or_default() += tariff_paid + penalty_paid;
        out.imbalance_paid += tariff_paid;
        out.penalties += penalty_paid;
        let short = tariff + penalty - tariff_paid - penalty_paid;
        if short > 0 {
            out.debts.insert(*buyer, short);
        }
    }
    // Whatever escrow is left goes back to its owner.
    for o in orders {
        *out.inflow.entry(o.owner).or_default() += escrow[&o.id];
    }
    out.inflow.retain(|_, v| *v > 0);
    out
}

proptest! {
    /// Values in u64 when the product fits, in u128 when not: the same as u128 throughout.
    #[test]
    fn values_round_as_in_wide_arithmetic(wh in any::<u64>(), price in any::<u64>(), small in 0u64..1 << 32) {
        for (w, p) in [(wh, price), (small, price), (wh, small), (small, small)] {
            let exact = w as u128 * p as u128;
            prop_assert_eq!(value_floor(w, p) as u128, exact / 1000 % (1 << 64));
            prop_assert_eq!(value_ceil(w, p) as u128, exact.div_ceil(1000) % (1 << 64));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// The contract's settlement against the model, on random books, forecasts (so μ above,
    /// below and at 1), readings (some missing), pools (some too small) and mechanisms.
    #[test]
    fn settlement_matches_the_model_of_the_rules(
        orders in proptest::collection::vec((0usize..4, any::<bool>(), MIN_ORDER_WH..2_000, 100_000u64..400_000), 1..14),
        readings in proptest::collection::vec(proptest::option::of((0u64..2_500, 0u64..2_500)), 4),
        supply in 0u64..3_000, demand in 0u64..3_000,
        pool in prop_oneof![Just(0u64), 0u64..50_000, Just(100_000_000)],
        (shortfall, overdraw, tariff) in (1u64..100_000, 1u64..100_000, 1u64..400_000),
        pay_as_bid in any::<bool>(),
    ) {
        let mechanism = if pay_as_bid { Mechanism::PayAsBid } else { Mechanism::PayAsClear };
        let mut s = setup(mechanism, pool);
        // Rates that are not whole micro-tokens per Wh, so every rounding shows.
        let mut p = params(mechanism);
        (p.shortfall_penalty, p.overdraw_penalty, p.grid_tariff) = (shortfall, overdraw, tariff);
        s.chain.execute(s.pricing, addr("regulator"), &pricing::ExecuteMsg::SetParams { params: p }, 0).unwrap();
        s.at(0, -1_000);
        if supply > 0 { s.forecast("wind", 0, pricing::ForecastKind::Supply, supply).unwrap(); }
        if demand > 0 { s.forecast("house", 0, pricing::ForecastKind::Demand, demand).unwrap(); }
        for (who, sell, wh, price) in orders {
            let owner = addr(PEOPLE[who]);
            let (msg, funds) = if sell {
                (ExecuteMsg::Offer { period: 0, wh, min_price: price, renewable: None }, value_ceil(wh, shortfall))
            } else {
                (ExecuteMsg::Bid { period: 0, wh, max_price: price }, value_ceil(wh, price))
            };
            s.chain.execute(s.market, owner, &msg, funds).unwrap();
        }
        s.boundary(0);
        let trades = s.trades(0, 1_000);
        let book = s.orders(0, 1_000);
        let figures: PriceAnswer = s.chain.query(s.market, &QueryMsg::Price { period: 0 }).unwrap();
        let stats: Stats = s.chain.query(s.market, &QueryMsg::Stats {}).unwrap();
        s.at(1, 1);
        let mut metered = BTreeMap::new();
        for (i, r) in readings.iter().enumerate() {
            if let Some((p, c)) = r {
                s.reading(PEOPLE[i], 0, *p, *c).unwrap();
                metered.insert(addr(PEOPLE[i]), (*p, *c));
            }
        }
        let accounts: Vec<Address> = PEOPLE.iter().map(|p| addr(p)).chain([s.grid]).collect();
        let before: Vec<u64> = accounts.iter().map(|a| s.chain.balance(*a)).collect();
        s.boundary(2);
        let want = model_settlement(&trades, &book, &metered, &figures, stats.pool, s.grid);
        for (a, b) in accounts.iter().zip(&before) {
            let got = s.chain.balance(*a) - b;
            prop_assert_eq!(got, want.inflow.get(a).copied().unwrap_or(0), "inflow of {}", a);
        }
        let sum = s.summary(0);
        prop_assert_eq!(
            (sum.delivered_wh, sum.settled_value, sum.subsidy_paid, sum.penalties, sum.imbalance_paid),
            (want.delivered_wh, want.settled_value, want.subsidy_paid, want.penalties, want.imbalance_paid)
        );
        let after: Stats = s.chain.query(s.market, &QueryMsg::Stats {}).unwrap();
        prop_assert_eq!(stats.pool - after.pool, want.pool_paid);
        prop_assert_eq!(s.chain.balance(s.market), after.pool, "no escrow left behind");
        for p in PEOPLE {
            let pts: u64 = s.chain.query(s.market, &QueryMsg::Points { account: addr(p) }).unwrap();
            prop_assert_eq!(pts, want.points.get(&addr(p)).copied().unwrap_or(0), "points of {}", p);
            let debt: u64 = s.chain.query(s.market, &QueryMsg::Debt { account: addr(p) }).unwrap();
            prop_assert_eq!(debt, want.debts.get(&addr(p)).copied().unwrap_or(0), "debt of {}", p);
        }
    }
}
