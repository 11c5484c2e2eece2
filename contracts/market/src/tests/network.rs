//! The market over a topology with the regulator's fees: limits, line items, budget balance,
//! fee changes, topology changes and statements.

use super::*;
use crate::grid::{FeederSpec, GridAnswer, GridSpec};
use crate::statement::Statement;
use pricing::FeeSchedule;

/// The wind turbine on its park feeder (exports at most 30 kW: 500 Wh in a 60 s period), the
/// house and the pump on the town feeder, the diesel generator at the PCC.
fn island(park_export_kw: u64) -> GridSpec {
    GridSpec {
        pcc: "substation".into(),
        feeders: vec![
            FeederSpec {
                name: "park".into(),
                import_kw: 0,
                export_kw: park_export_kw,
                accounts: vec![addr("wind")],
            },
            FeederSpec {
                name: "town".into(),
                import_kw: 1_000,
                export_kw: 1_000,
                accounts: vec![addr("house"), addr("pump")],
            },
        ],
    }
}

fn schedule(wheeling_feeder: u64, wheeling_island: u64, fee: u64, share: u64) -> FeeSchedule {
    FeeSchedule {
        wheeling_feeder,
        wheeling_island,
        transaction_fee: fee,
        buyer_share_percent: share,
        waivers: vec![],
    }
}

impl Setup {
    fn statement(&self, who: &str, first: u64, last: u64) -> Statement {
        self.chain
            .query(
                self.market,
                &QueryMsg::Statement {
                    account: addr(who),
                    first_period: first,
                    last_period: last,
                },
            )
            .unwrap()
    }

    fn balances(&self) -> Vec<u64> {
        PEOPLE.iter().map(|p| self.chain.balance(addr(p))).collect()
    }
}

fn assert_budget_balance(sum: &PeriodSummary) {
    assert_eq!(
        sum.buyers_paid,
        sum.sellers_received + sum.fees,
        "buyers paid what sellers received plus the fees: {sum:?}"
    );
    assert_eq!(
        sum.fees,
        sum.wheeling_fees + sum.transaction_fees + sum.congestion_fees
    );
}

#[test]
fn a_full_period_with_fees_and_a_binding_feeder_limit() {
    let mut s = setup_grid(
        Mechanism::PayAsClear,
        10_000_000,
        Some(island(30)),
        Some(schedule(2_000, 10_000, 4_000, 50)),
    );
    let total = s.total();
    let before = s.balances();
    s.at(0, -30_000);
    s.offer("wind", 0, 1_000, 100_000).unwrap();
    s.offer("diesel", 0, 1_000, 180_000).unwrap();
    s.bid("house", 0, 800, 250_000).unwrap();
    s.bid("pump", 0, 400, 220_000).unwrap();
    s.boundary(0);
    let sum = s.summary(0);
    // The park exports at most 500 Wh: the rest of the town's 1,200 Wh comes from diesel.
    let trades = s.trades(0, 100);
    let from = |who: &str| -> u64 {
        trades
            .iter()
            .filter(|t| t.seller == addr(who))
            .map(|t| t.wh)
            .sum()
    };
    assert_eq!((from("wind"), from("diesel")), (500, 700), "{trades:?}");
    let park = &sum.feeders[0];
    assert_eq!(
        (park.name.as_str(), park.export_wh, park.export_limit_wh),
        ("park", 500, 500)
    );
    assert_eq!(sum.feeders[1].import_wh, 1_200);
    assert!(trades.iter().all(|t| t.level == Level::Island));
    assert_eq!(trades[0].seller_feeder.as_deref(), Some("park"));
    assert_eq!(trades[0].buyer_feeder.as_deref(), Some("town"));
    // Diesel at the PCC sets the price: it nets its limit, 180,000; buyers pay that plus
    // 10,000 wheeling and 4,000 of fees: 194,000 in all; the energy price is 194,000 − 10,000
    // − 2,000. Wind nets its own limit: the full transformer's congestion (80,000 per kWh)
    // goes to the grid company.
    assert_eq!(sum.island_price, Some(182_000));
    for t in &trades {
        let gross = t.price + t.rates.wheeling + t.rates.buyer_fee + t.rates.buyer_congestion;
        let net = t.price - t.rates.seller_fee - t.rates.seller_congestion;
        assert_eq!(gross, 194_000, "{t:?}");
        let want_net = if t.seller == addr("wind") {
            100_000
        } else {
            180_000
        };
        assert_eq!(net, want_net, "{t:?}");
    }
    // Delivery: wind 400 of 500; diesel all; the house and the pump as bought.
    s.at(1, 10);
    s.reading("wind", 0, 400, 0).unwrap();
    s.reading("diesel", 0, 700, 0).unwrap();
    s.reading("house", 0, 0, 800).unwrap();
    s.reading("pump", 0, 0, 400).unwrap();
    let collector = s.chain.balance(fee_collector());
    s.boundary(2);
    let sum = s.summary(0);
    assert_budget_balance(&sum);
    assert_eq!(sum.delivered_wh, 1_100);
    assert_eq!((sum.produced_wh, sum.consumed_wh), (1_100, 1_200));
    assert_eq!(sum.renewable_delivered_wh, 400, "the wind's part");
    // Fees scale with what was delivered: 1,100 Wh at 4,000 per kWh, rounded down per line.
    assert!(
        (4_400 - 8..=4_400).contains(&sum.transaction_fees),
        "{sum:?}"
    );
    assert!(
        (11_000 - 4..=11_000).contains(&sum.wheeling_fees),
        "{sum:?}"
    );
    assert!(
        (32_000 - 4..=32_000).contains(&sum.congestion_fees),
        "{sum:?}"
    );
    assert_eq!(
        s.chain.balance(fee_collector()) - collector,
        sum.transaction_fees
    );
    assert_eq!(s.total(), total, "tokens are conserved");
    // Each trade's line items add up, and its fees stand for the energy delivered.
    for t in s.trades(0, 100) {
        let st = t.settlement.expect("settled");
        assert_eq!(
            st.buyer_paid,
            st.seller_received + t.wheeling_fee + t.buyer_fee + t.seller_fee + t.congestion_fee
        );
        assert_eq!(t.wheeling_fee, value_floor(st.delivered_wh, 10_000));
    }
    // Every participant's statement for the period is its balance change.
    for (p, b) in PEOPLE.iter().zip(before) {
        let st = s.statement(p, 0, 0);
        assert_eq!(
            st.net as i128,
            s.chain.balance(addr(p)) as i128 - b as i128,
            "statement of {p}: {st:?}"
        );
    }
    let wind = s.statement("wind", 0, 0);
    assert_eq!((wind.totals.sold_wh, wind.totals.delivered_wh), (500, 400));
    assert!(wind.totals.shortfall_penalties > 0 && wind.totals.subsidy > 0);
    assert_eq!(wind.average_sale_price, 182_000);
}

#[test]
fn a_fee_change_takes_effect_at_its_height_and_never_touches_a_cleared_period() {
    // Two identical markets; in one the regulator announces new fees after period 0 cleared.
    let run = |change: bool| {
        let mut s = setup_grid(
            Mechanism::PayAsClear,
            10_000_000,
            Some(island(1_000)),
            Some(schedule(1_000, 5_000, 2_000, 50)),
        );
        for period in 0..2 {
            s.at(period, -30_000);
            s.offer("wind", period, 1_000, 100_000).unwrap();
            s.bid("house", period, 800, 250_000).unwrap();
            s.offer("diesel", period, 300, 150_000).unwrap();
            s.bid("pump", period, 300, 240_000).unwrap();
        }
        s.boundary(0);
        if change {
            // The next block clears period 1: the new fees are in force from exactly that height.
            let at = s.chain.height() + 1;
            s.chain
                .execute(
                    s.pricing,
                    addr("regulator"),
                    &pricing::ExecuteMsg::SetFees {
                        fees: schedule(3_000, 20_000, 6_000, 100),
                        from_height: Some(at),
                    },
                    0,
                )
                .unwrap();
        }
        s.boundary(1);
        for period in 0..2 {
            s.at(period + 1, 10);
            s.reading("wind", period, 1_000, 0).unwrap();
            s.reading("diesel", period, 300, 0).unwrap();
            s.reading("house", period, 0, 800).unwrap();
            s.reading("pump", period, 0, 300).unwrap();
            s.boundary(period + 2);
        }
        (s.summary(0), s.summary(1), s.trades(1, 100))
    };
    let (calm0, calm1, _) = run(false);
    let (changed0, changed1, trades1) = run(true);
    assert_eq!(changed0, calm0, "period 0 settles as it cleared");
    assert_ne!(
        changed1.fees, calm1.fees,
        "period 1 cleared after the change"
    );
    assert!(
        trades1
            .iter()
            .all(|t| t.rates.buyer_fee == 6_000 && t.rates.seller_fee == 0)
    );
    assert_budget_balance(&changed1);
}

#[test]
fn only_the_grid_company_changes_the_topology_and_only_from_a_future_period() {
    let mut s = setup_grid(Mechanism::PayAsClear, 0, Some(island(30)), None);
    s.at(3, -1_000);
    let before = s.chain.storage(s.market);
    let set = |s: &mut Setup, who: Address, from_period: u64, grid: GridSpec| {
        s.chain
            .execute(s.market, who, &ExecuteMsg::SetGrid { grid, from_period }, 0)
    };
    let gc = s.grid;
    let err = set(&mut s, addr("house"), 5, island(60)).unwrap_err();
    assert!(err.contains("only the grid company"), "{err}");
    let err = set(&mut s, gc, 2, island(60)).unwrap_err();
    assert!(err.contains("future period"), "{err}");
    let mut twice = island(60);
    twice.feeders[1].accounts.push(addr("wind"));
    let err = set(&mut s, gc, 5, twice).unwrap_err();
    assert!(err.contains("connected twice"), "{err}");
    let mut too_many = island(60);
    too_many.feeders = (0..=grid::MAX_FEEDERS)
        .map(|i| FeederSpec {
            name: format!("f{i}"),
            import_kw: 1,
            export_kw: 1,
            accounts: vec![],
        })
        .collect();
    assert!(set(&mut s, gc, 5, too_many).is_err());
    assert_eq!(s.chain.storage(s.market), before, "refusals change nothing");
    // A change from period 5: periods up to 4 keep the old limits.
    set(&mut s, gc, 5, island(60)).unwrap();
    let grid_at = |s: &Setup, period| -> GridAnswer {
        let g: Option<GridAnswer> = s
            .chain
            .query(
                s.market,
                &QueryMsg::Grid {
                    period: Some(period),
                    accounts: None,
                },
            )
            .unwrap();
        g.unwrap()
    };
    let old = grid_at(&s, 4);
    assert_eq!(
        (
            old.from_period,
            old.feeders[0].export_wh,
            old.next_from_period
        ),
        (0, 500, Some(5))
    );
    let new = grid_at(&s, 5);
    assert_eq!((new.from_period, new.feeders[0].export_wh), (5, 1_000));
    assert_eq!(new.feeders[1].accounts.len(), 2);
    assert_eq!(new.feeders[1].connected, 2);
    // Versions only go forward.
    let err = set(&mut s, gc, 4, island(90)).unwrap_err();
    assert!(err.contains("already announced"), "{err}");
}

fn small_grid() -> impl Strategy<Value = (GridSpec, Vec<usize>)> {
    // Each person on feeder 0, feeder 1 or the PCC (2); limits 0..120 kW (0..2,000 Wh).
    (
        proptest::collection::vec(0usize..3, PEOPLE.len()),
        (0u64..120, 0u64..120, 0u64..120, 0u64..120),
    )
        .prop_map(|(at, (i0, e0, i1, e1))| {
            let on = |f: usize| -> Vec<Address> {
                PEOPLE
                    .iter()
                    .zip(&at)
                    .filter(|(_, a)| **a == f)
                    .map(|(p, _)| addr(p))
                    .collect()
            };
            let feeder = |name: &str, import_kw, export_kw, f| FeederSpec {
                name: name.into(),
                import_kw,
                export_kw,
                accounts: on(f),
            };
            (
                GridSpec {
                    pcc: "pcc".into(),
                    feeders: vec![feeder("a", i0, e0, 0), feeder("b", i1, e1, 1)],
                },
                at,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Random topologies, fees, books and deliveries over two periods: no period schedules more
    /// through a transformer than it carries, every trade covers its fees, buyers pay what
    /// sellers receive plus fees, the fee collector gets exactly the transaction fees, tokens
    /// are conserved, and each participant's statement is its balance change.
    #[test]
    fn every_period_balances_and_every_statement_is_the_balance_change(
        (grid_spec, at) in small_grid(),
        (wf, extra, fee, share) in (0u64..20_000, 0u64..20_000, 0u64..10_000, 0u64..=100),
        orders in proptest::collection::vec((0usize..4, any::<bool>(), MIN_ORDER_WH..2_000, 100_000u64..400_000, 0u64..2), 1..16),
        readings in proptest::collection::vec(proptest::option::of((0u64..2_500, 0u64..2_500)), 8),
        pay_as_bid in any::<bool>(),
    ) {
        let mechanism = if pay_as_bid { Mechanism::PayAsBid } else { Mechanism::PayAsClear };
        let mut s = setup_grid(mechanism, 1_000_000, Some(grid_spec.clone()), Some(schedule(wf, wf + extra, fee, share)));
        let total = s.total();
        let before = s.balances();
        let receivers = [(s.grid, s.chain.balance(s.grid)), (fee_collector(), s.chain.balance(fee_collector()))];
        s.at(0, -1_000);
        for (who, sell, wh, price, period) in orders {
            let _ = if sell { s.offer(PEOPLE[who], period, wh, price) } else { s.bid(PEOPLE[who], period, wh, price) };
        }
        s.boundary(0);
        s.boundary(1);
        let collector = s.chain.balance(fee_collector());
        for period in 0..2u64 {
            s.at(period + 1, 10);
            for (i, r) in readings.iter().enumerate().filter(|(i, _)| *i as u64 / 4 == period) {
                if let Some((p, c)) = r {
                    s.reading(PEOPLE[i % 4], period, *p, *c).unwrap();
                }
            }
            s.boundary(period + 2);
        }
        let mut transaction_fees = 0;
        for period in 0..2 {
            let sum = s.summary(period);
            prop_assert!(sum.settled);
            prop_assert_eq!(sum.buyers_paid, sum.sellers_received + sum.fees);
            prop_assert_eq!(sum.fees, sum.wheeling_fees + sum.transaction_fees + sum.congestion_fees);
            transaction_fees += sum.transaction_fees;
            for (k, f) in sum.feeders.iter().enumerate() {
                prop_assert!(f.export_wh <= f.export_limit_wh && f.import_wh <= f.import_limit_wh, "feeder {}: {:?}", k, f);
            }
            for t in s.trades(period, 100) {
                let seller = PEOPLE.iter().position(|p| addr(p) == t.seller).unwrap();
                let buyer = PEOPLE.iter().position(|p| addr(p) == t.buyer).unwrap();
                let want = if at[seller] == at[buyer] && at[seller] < 2 { Level::Feeder } else { Level::Island };
                prop_assert_eq!(t.level, want);
                let r = t.rates;
                prop_assert_eq!(r.wheeling, if want == Level::Feeder { wf } else { wf + extra });
                let gross = t.price + r.wheeling + r.buyer_fee + r.buyer_congestion;
                prop_assert!(t.price >= r.seller_fee + r.seller_congestion, "{:?}", t);
                let st = t.settlement.unwrap();
                prop_assert_eq!(st.buyer_paid, st.seller_received + t.wheeling_fee + t.buyer_fee + t.seller_fee + t.congestion_fee);
                let _ = gross;
            }
        }
        prop_assert_eq!(s.chain.balance(fee_collector()) - collector, transaction_fees);
        prop_assert_eq!(s.total(), total, "tokens are conserved");
        let stats: Stats = s.chain.query(s.market, &QueryMsg::Stats {}).unwrap();
        prop_assert_eq!(s.chain.balance(s.market), stats.pool, "no escrow left behind");
        for (p, b) in PEOPLE.iter().zip(before) {
            let st = s.statement(p, 0, 1);
            prop_assert_eq!(st.net as i128, s.chain.balance(addr(p)) as i128 - b as i128, "statement of {}: {:?}", p, st);
        }
        // So are the grid company's (wheeling, congestion, tariffs, penalties) and the fee
        // collector's (transaction fees).
        for (who, b) in receivers {
            let st: Statement = s.chain.query(s.market, &QueryMsg::Statement { account: who, first_period: 0, last_period: 1 }).unwrap();
            prop_assert_eq!(st.net as i128, s.chain.balance(who) as i128 - b as i128, "statement of {}: {:?}", who, st);
        }
    }
}

/// The VM's cap on one call's events (`max_events_per_call`, host/vm/src/config.rs): the mock
/// chain does not enforce it, so this test counts.
const VM_MAX_EVENTS_PER_CALL: usize = 4_096;

#[test]
fn a_catch_up_after_a_stop_stays_inside_the_vm_event_cap() {
    let mut s = setup(Mechanism::PayAsClear, 0);
    // Five periods of 1,120 trades each, placed ahead: 70 sellers and 70 buyers, 16 orders
    // each, every offer matching one bid.
    let traders = 70;
    for i in 0..traders {
        s.chain.set_balance(addr(&format!("s{i}")), 1_000_000_000);
        s.chain.set_balance(addr(&format!("b{i}")), 1_000_000_000);
    }
    s.at(0, -30_000);
    for period in 0..5 {
        for i in 0..traders {
            for _ in 0..MAX_ORDERS_PER_OWNER {
                let (seller, buyer) = (addr(&format!("s{i}")), addr(&format!("b{i}")));
                let offer = ExecuteMsg::Offer {
                    period,
                    wh: 10,
                    min_price: 150_000,
                    renewable: None,
                };
                s.chain
                    .execute(s.market, seller, &offer, value_ceil(10, 50_000))
                    .unwrap();
                let bid = ExecuteMsg::Bid {
                    period,
                    wh: 10,
                    max_price: 250_000,
                };
                s.chain
                    .execute(s.market, buyer, &bid, value_ceil(10, 250_000))
                    .unwrap();
            }
        }
    }
    // The chain stops for ten periods; the next boundary catches up.
    s.boundary(10);
    let events = s.chain.events().len();
    assert!(
        events <= VM_MAX_EVENTS_PER_CALL,
        "one boundary call emitted {events} events"
    );
    for period in 0..5 {
        assert_eq!(s.summary(period).trades, 1_120, "period {period} cleared");
    }
}
