//! The market on the native harness: a full period cycle, each bad input, and conservation.

use super::*;
use gridledger_sdk::testing::MockChain;
use pricing::{Mechanism, Params, Pricing};
use proptest::prelude::*;

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

const PEOPLE: [&str; 4] = ["wind", "pv", "house", "pump"];

fn setup(mechanism: Mechanism, pool: u64) -> Setup {
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
            },
            0,
        )
        .unwrap();
    let devices: Vec<(Address, Address)> = PEOPLE.iter().map(|p| (meter(p), addr(p))).collect();
    let market = chain
        .instantiate::<Market>(
            grid,
            &InstantiateMsg {
                pricing,
                grid_company: grid,
                admin: grid,
                start_ms: START,
                period_ms: PERIOD_MS,
                devices,
            },
            pool,
        )
        .unwrap();
    Setup {
        chain,
        market,
        pricing,
        grid,
    }
}

impl Setup {
    /// Moves the clock to `at_ms` within period `period` (negative offsets are before it).
    fn at(&mut self, period: u64, offset_ms: i64) {
        let t = (START + period * PERIOD_MS) as i64 + offset_ms;
        self.chain.set_block(self.chain.height() + 1, t as u64);
    }

    fn offer(
        &mut self,
        who: &str,
        period: u64,
        wh: u64,
        price: u64,
        renewable: bool,
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
    }

    fn summary(&self, period: u64) -> PeriodSummary {
        let s: Option<PeriodSummary> = self
            .chain
            .query(self.market, &QueryMsg::Period { period })
            .unwrap();
        s.unwrap()
    }
}

#[test]
fn a_period_clears_and_settles() {
    let mut s = setup(Mechanism::PayAsClear, 10_000_000);
    let total = s.total();
    s.at(0, -30_000);
    s.offer("wind", 0, 1_000, 150_000, true).unwrap();
    s.offer("pv", 0, 500, 150_000, false).unwrap();
    s.bid("house", 0, 800, 250_000).unwrap();
    s.bid("pump", 0, 400, 200_000).unwrap();
    s.boundary(0);
    let sum = s.summary(0);
    assert!(sum.cleared);
    assert_eq!(sum.traded_wh, 1_200);
    assert_eq!(sum.renewable_wh, 1_000, "renewable offers win the tie");
    assert_eq!(
        sum.clearing_price, 175_000,
        "midpoint of the last matched bid (200k) and offer (150k)"
    );
    let trades: Vec<Trade> = s
        .chain
        .query(
            s.market,
            &QueryMsg::Trades {
                period: 0,
                limit: 10,
            },
        )
        .unwrap();
    assert_eq!(trades.len(), 3);
    assert!(trades.iter().all(|t| t.price == 175_000));
    assert_eq!(
        s.chain
            .events()
            .iter()
            .filter(|(_, e)| e.kind == "trade")
            .count(),
        3
    );

    // Delivery: wind delivers 900 of 1000, pv everything; the house draws 50 Wh extra.
    s.at(1, 10);
    s.reading("wind", 0, 900, 0).unwrap();
    s.reading("pv", 0, 500, 0).unwrap();
    s.reading("house", 0, 0, 850).unwrap();
    s.reading("pump", 0, 0, 400).unwrap();
    let house_before = s.chain.balance(addr("house"));
    s.boundary(2);
    let sum = s.summary(0);
    assert!(sum.settled);
    assert_eq!(sum.delivered_wh, 1_100);
    assert_eq!(sum.settled_value, value_floor(1_100, 175_000));
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
    let err = s
        .chain
        .execute(
            s.market,
            addr("house"),
            &ExecuteMsg::Settle { period: 0 },
            0,
        )
        .unwrap_err();
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
        (s.offer("wind", 0, 100, 50_000, true), "outside the band"),
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
    let err = s
        .chain
        .execute(
            s.market,
            addr("house"),
            &ExecuteMsg::Settle { period: 0 },
            0,
        )
        .unwrap_err();
    assert!(err.contains("settlement before delivery"), "{err}");
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
    s.offer("wind", 0, 1_000, 100_000, true).unwrap();
    s.bid("house", 0, 300, 300_000).unwrap();
    s.bid("pump", 0, 300, 200_000).unwrap();
    s.boundary(0);
    let trades: Vec<Trade> = s
        .chain
        .query(
            s.market,
            &QueryMsg::Trades {
                period: 0,
                limit: 10,
            },
        )
        .unwrap();
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
    s.chain
        .execute(
            s.pricing,
            addr("wind"),
            &pricing::ExecuteMsg::Forecast {
                period: 0,
                kind: pricing::ForecastKind::Supply,
                wh: 5_000,
            },
            0,
        )
        .unwrap();
    s.chain
        .execute(
            s.pricing,
            addr("house"),
            &pricing::ExecuteMsg::Forecast {
                period: 0,
                kind: pricing::ForecastKind::Demand,
                wh: 1_000,
            },
            0,
        )
        .unwrap();
    s.offer("wind", 0, 1_000, 100_000, true).unwrap();
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
        orders in proptest::collection::vec((0usize..4, any::<bool>(), 1u64..2_000, 100u64..400, any::<bool>()), 1..12),
        readings in proptest::collection::vec((0u64..2_500, 0u64..2_500), 4),
        pay_as_bid in any::<bool>(),
    ) {
        let mut s = setup(if pay_as_bid { Mechanism::PayAsBid } else { Mechanism::PayAsClear }, 5_000_000);
        let total = s.total();
        s.at(0, -1_000);
        for (who, sell, wh, price_k, renewable) in orders {
            let who = PEOPLE[who];
            let price = price_k * 1_000;
            if sell { s.offer(who, 0, wh, price, renewable).unwrap(); } else { s.bid(who, 0, wh, price).unwrap(); }
        }
        prop_assert_eq!(s.total(), total);
        s.boundary(0);
        prop_assert_eq!(s.total(), total);
        let trades: Vec<Trade> = s.chain.query(s.market, &QueryMsg::Trades { period: 0, limit: 100 }).unwrap();
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
