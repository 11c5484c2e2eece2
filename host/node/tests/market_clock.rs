//! The market moves by itself: the chain calls the market's `sudo` at period boundaries, so
//! periods clear and settle without anyone sending a transaction for it.

use gridledger_node::genesis::{GenesisAccount, GenesisContract, MarketClock};
use gridledger_node::testing::{TestChain, test_genesis};
use gridledger_types::{Keypair, Payload};
use std::path::Path;

const T0: u64 = 1_767_225_600_000;
const PERIOD: u64 = 10_000;

fn account(name: &str, balance: u64) -> GenesisAccount {
    GenesisAccount {
        name: name.into(),
        address: None,
        dev_seed: Some(format!("clock {name}")),
        balance,
        roles: vec![],
    }
}

fn key(name: &str) -> Keypair {
    Keypair::from_seed_phrase(&format!("clock {name}"))
}

/// A wind turbine and a household trading on a market whose period calls get 10⁹ gas;
/// `call_gas` is what the market's instantiate message says about that (a JSON member, or
/// nothing).
fn two_party_genesis(call_gas: &str) -> gridledger_node::genesis::Genesis {
    let mut genesis = test_genesis(vec![
        account("regulator", 1_000_000_000),
        account("wind", 1_000_000_000),
        account("house", 1_000_000_000),
        account("meter-wind", 1_000_000_000),
        account("meter-house", 1_000_000_000),
    ]);
    let params = r#"{"f_min":100000,"f_max":400000,"reference_price":200000,"mu_min":"0.5","mu_max":"1.5","mu_slope":"1","shortfall_penalty":50000,"overdraw_penalty":40000,"grid_tariff":300000,"mechanism":"pay_as_clear"}"#;
    genesis.contracts = vec![
        GenesisContract { label: "pricing".into(), wasm: "pricing.wasm".into(), msg: format!(r#"{{"params":{params},"admin":"{{account:regulator}}"}}"#), funds: 0, creator: "regulator".into(), admin: Some("regulator".into()) },
        GenesisContract {
            label: "market".into(),
            wasm: "market.wasm".into(),
            msg: r#"{"pricing":"{contract:pricing}","grid_company":"{account:grid-company}","admin":"{account:grid-company}","start_ms":{market_start_ms},"period_ms":{period_ms},{call_gas}"devices":[{"device":"{account:meter-wind}","participant":"{account:wind}","kind":"wind_turbine","rated_power_w":10000000},{"device":"{account:meter-house}","participant":"{account:house}","kind":"household_load","rated_power_w":10000000}]}"#.replace("{call_gas}", call_gas),
            funds: 1_000_000,
            creator: "grid-company".into(),
            admin: Some("regulator".into()),
        },
    ];
    genesis.market = Some(MarketClock {
        period_ms: PERIOD,
        start_ms: Some(T0 + PERIOD),
        sudo_contracts: vec!["market".into()],
        sudo_gas: 1_000_000_000,
        stats_contract: Some("market".into()),
    });
    genesis
}

/// A market told its period calls get more gas than genesis gives them would plan more work
/// per call than a call can do (and let periods take more orders than its calls can settle):
/// the node refuses to start such a chain, and starts it once the market is told the truth.
#[test]
fn a_market_told_more_gas_than_its_period_calls_get_is_refused() {
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/contracts");
    // Not told at all: the market assumes its default of 2·10⁹.
    for told in ["", r#""call_gas":1000000001,"#] {
        let err = gridledger_node::Node::in_memory(two_party_genesis(told), &contracts)
            .err()
            .unwrap_or_else(|| panic!("a market told {told:?} started"));
        let said = err.to_string();
        assert!(
            said.contains("plans its period_boundary calls for")
                && said.contains("gives them 1000000000"),
            "{said}"
        );
    }
    for told in [r#""call_gas":{sudo_gas},"#, r#""call_gas":500000000,"#] {
        gridledger_node::Node::in_memory(two_party_genesis(told), &contracts)
            .unwrap_or_else(|e| panic!("a market told {told:?} did not start: {e}"));
    }
}

#[test]
fn periods_clear_and_settle_at_boundaries() {
    let genesis = two_party_genesis(r#""call_gas":{sudo_gas},"#);
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/contracts");
    let mut chain = TestChain::with_genesis(genesis, &contracts);
    let market = chain.node.contract_by_label("market").unwrap().unwrap();

    // Orders for period 1 (delivered from T0 + 20 s).
    chain.block_at(T0 + 1_000);
    let offer = chain.send(
        &key("wind"),
        Payload::Execute {
            contract: market,
            msg: br#"{"offer":{"period":1,"wh":1000,"min_price":150000,"renewable":true}}"#
                .to_vec(),
            funds: 50_000,
        },
    );
    assert!(offer.is_success(), "{:?}", offer.error);
    let bid = chain.send(
        &key("house"),
        Payload::Execute {
            contract: market,
            msg: br#"{"bid":{"period":1,"wh":800,"max_price":250000}}"#.to_vec(),
            funds: 200_000,
        },
    );
    assert!(bid.is_success(), "{:?}", bid.error);
    assert_eq!(chain.node.settled_periods(), 0);

    // Period 1 begins: the block's own system receipts clear periods 0 and 1.
    let b = chain.block_at(T0 + 2 * PERIOD);
    assert_eq!(b.header.receipt_count as usize, b.receipts.len());
    assert_eq!(b.header.tx_count, 0);
    let kinds: Vec<&str> = b
        .receipts
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.kind.as_str()))
        .collect();
    assert!(kinds.contains(&"trade"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "period_cleared").count(), 2);
    assert!(b.receipts.iter().all(|r| r.is_success() && r.fee == 0));

    // After delivery, the meters report.
    chain.block_at(T0 + 3 * PERIOD + 10);
    let r = chain.send(
        &key("meter-wind"),
        Payload::Execute {
            contract: market,
            msg: br#"{"reading":{"period":1,"produced_wh":1000,"consumed_wh":0}}"#.to_vec(),
            funds: 0,
        },
    );
    assert!(r.is_success(), "{:?}", r.error);
    let wind_before = chain.balance(&key("wind").address());

    // Period 3 begins: period 1 settles.
    let b = chain.block_at(T0 + 4 * PERIOD);
    let settled = b
        .receipts
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| e.kind == "period_settled")
        .count();
    assert!(settled >= 1);
    assert!(chain.node.settled_periods() >= 2, "periods 0 and 1");
    assert!(
        chain.balance(&key("wind").address()) > wind_before,
        "the seller was paid"
    );
    let summary = chain.query(market, r#"{"period":{"period":1}}"#).unwrap();
    assert_eq!(summary["settled"], true);
    assert_eq!(summary["delivered_wh"], 800);
    assert_supply_conserved(&chain);
}

/// Total supply changes only by mint and burn: the sum of every account's balance (users,
/// contracts, the fee collector) equals the recorded supply after a trading cycle.
fn assert_supply_conserved(chain: &TestChain) {
    let (sum, supply) = gridledger_node::testing::balances_and_supply(&chain.node);
    assert_eq!(sum, supply);
}

#[test]
fn supply_changes_only_by_mint_and_burn() {
    let mut chain = TestChain::new();
    assert_supply_conserved(&chain);
    let alice = chain.account("alice", 5_000_000);
    chain.send(
        &alice,
        Payload::Transfer {
            to: key("bob").address(),
            amount: 1_000,
        },
    );
    chain.send(
        &alice,
        Payload::Transfer {
            to: key("bob").address(),
            amount: u64::MAX,
        },
    );
    assert_supply_conserved(&chain);
    let gc = chain.grid_company.clone();
    assert!(
        chain
            .send(
                &gc,
                Payload::Mint {
                    to: alice.address(),
                    amount: 777
                }
            )
            .is_success()
    );
    assert!(
        chain
            .send(
                &gc,
                Payload::Burn {
                    amount: 555,
                    payout_ref: "r".into()
                }
            )
            .is_success()
    );
    assert_supply_conserved(&chain);
}

/// The chain's clock is generic: a `[[schedule]]` entry gives any contract its ticks (here the
/// example counter's `tick`), every tick due between two blocks in order, and after a stop
/// only the last `catch_up` of them.
#[test]
fn a_schedule_gives_any_contract_its_ticks() {
    use gridledger_node::genesis::ScheduledCall;
    let mut genesis = test_genesis(vec![account("someone", 1_000_000_000)]);
    genesis.contracts = vec![GenesisContract {
        label: "clock".into(),
        wasm: "counter.wasm".into(),
        msg: r#"{"start":0}"#.into(),
        funds: 0,
        creator: "someone".into(),
        admin: None,
    }];
    genesis.schedule = vec![ScheduledCall {
        contract: "clock".into(),
        every_ms: 1_000,
        start_ms: Some(T0),
        call: "tick".into(),
        gas: 10_000_000,
        catch_up: 3,
    }];
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/contracts");
    let mut chain = TestChain::with_genesis(genesis, &contracts);
    let clock = chain.node.contract_by_label("clock").unwrap().unwrap();
    let ticks = |chain: &TestChain| chain.query(clock, r#"{"ticks":{}}"#).unwrap();
    // Tick 0 is genesis time itself: nothing is due in a block after it before tick 1.
    chain.block_at(T0 + 500);
    assert_eq!(ticks(&chain)["count"], 0);
    let b = chain.block_at(T0 + 1_500);
    assert_eq!(ticks(&chain), serde_json::json!({"count": 1, "last": 1}));
    assert!(
        b.receipts
            .iter()
            .flat_map(|r| &r.events)
            .any(|e| e.kind == "tick"),
        "the call's receipt is in the block"
    );
    chain.block_at(T0 + 1_700);
    assert_eq!(
        ticks(&chain)["count"],
        1,
        "no tick between two blocks in one interval"
    );
    // Two ticks in one gap: both, in order.
    chain.block_at(T0 + 3_100);
    assert_eq!(ticks(&chain), serde_json::json!({"count": 3, "last": 3}));
    // A stop of ten ticks: only the last three are made up.
    chain.block_at(T0 + 13_200);
    assert_eq!(ticks(&chain), serde_json::json!({"count": 6, "last": 13}));
}

/// No escrow is ever stuck behind the period call's gas cap. Three periods filled with as
/// many orders as the market takes (one order per account, offers and bids of sizes that
/// rarely line up, so about as many trades as orders), over 32 feeders with 64-byte names (the
/// most a grid has) and with fees: period 1 settles with every meter reporting (partial
/// delivery, tariffs, over-draw penalties, debts) in the same call that clears period 3; then
/// the chain stops for 20 periods and the calls after it catch up on periods 2 and 3. Every
/// period call succeeds inside the market's plan (1.6·10⁹ of the 2·10⁹ a call gets), every
/// period settles, and the market holds nothing but its subsidy pool afterwards.
///
/// Before the market planned its calls (10,000 orders a period, catch-up by order count), the
/// first call after such a stop cleared and settled two full periods at once, ran out of gas,
/// and so did every call after it: all escrow locked.
#[test]
fn full_periods_and_a_stop_settle_within_the_period_calls_gas() {
    const PERIOD: u64 = 600_000;
    const TRADERS: usize = 3_600;
    let trader = |i: usize| Keypair::from_seed_phrase(&format!("flood trader {i}"));
    let seller = |i: usize| i.is_multiple_of(2);
    let accounts = (0..TRADERS)
        .map(|i| GenesisAccount {
            name: format!("t{i}"),
            address: None,
            dev_seed: Some(format!("flood trader {i}")),
            balance: 1_000_000_000_000,
            roles: vec![],
        })
        .collect();
    let mut genesis = test_genesis(accounts);
    let devices: Vec<String> = (0..TRADERS)
        .map(|i| {
            let kind = if seller(i) { "wind_turbine" } else { "household_load" };
            format!(
                r#"{{"device":"{{account:t{i}}}","participant":"{{account:t{i}}}","kind":"{kind}","rated_power_w":100000000}}"#
            )
        })
        .collect();
    // Sellers on the even feeders, buyers on the odd: clearing routes the island's trades
    // through the point of common coupling, and trades carry 64-byte feeder names.
    let feeders: Vec<String> = (0..32)
        .map(|f| {
            let on: Vec<String> = (0..TRADERS)
                .filter(|i| i % 32 == f)
                .map(|i| format!(r#""{{account:t{i}}}""#))
                .collect();
            format!(
                r#"{{"name":"feeder-{f:0>57}","import_kw":100000,"export_kw":100000,"accounts":[{}]}}"#,
                on.join(",")
            )
        })
        .collect();
    let params = r#"{"f_min":100000,"f_max":400000,"reference_price":200000,"mu_min":"0.5","mu_max":"1.5","mu_slope":"1","shortfall_penalty":50000,"overdraw_penalty":40000,"grid_tariff":300000,"mechanism":"pay_as_clear"}"#;
    let fees = r#"{"wheeling_feeder":5000,"wheeling_island":10000,"transaction_fee":2000,"buyer_share_percent":50}"#;
    genesis.contracts = vec![
        GenesisContract {
            label: "pricing".into(),
            wasm: "pricing.wasm".into(),
            msg: format!(
                r#"{{"params":{params},"fees":{fees},"admin":"{{account:grid-company}}"}}"#
            ),
            funds: 0,
            creator: "grid-company".into(),
            admin: None,
        },
        GenesisContract {
            label: "market".into(),
            wasm: "market.wasm".into(),
            msg: format!(
                r#"{{"pricing":"{{contract:pricing}}","grid_company":"{{account:grid-company}}","admin":"{{account:grid-company}}","start_ms":{{market_start_ms}},"period_ms":{{period_ms}},"devices":[{}],"grid":{{"pcc":"pcc","feeders":[{}]}}}}"#,
                devices.join(","),
                feeders.join(",")
            ),
            funds: 1_000_000_000_000,
            creator: "grid-company".into(),
            admin: None,
        },
    ];
    genesis.market = Some(MarketClock {
        period_ms: PERIOD,
        start_ms: Some(T0 + PERIOD),
        sudo_contracts: vec!["market".into()],
        sudo_gas: 2_000_000_000,
        stats_contract: Some("market".into()),
    });
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/contracts");
    let mut chain = TestChain::with_genesis(genesis, &contracts);
    let market = chain.node.contract_by_label("market").unwrap().unwrap();
    // Sends one execute per (trader, message, funds) and blocks until all are in; returns
    // how many were refused, each only because its period was full.
    let run = |chain: &mut TestChain, txs: Vec<(usize, String, u64)>| {
        for (i, msg, funds) in txs {
            let tx = chain.sign(
                &trader(i),
                Payload::Execute {
                    contract: market,
                    msg: msg.into_bytes(),
                    funds,
                },
                20_000_000,
            );
            chain.node.submit(&tx.encode()).expect("admitted");
        }
        let mut refused = 0;
        while chain.node.mempool_len() > 0 {
            let t = chain.time_ms() + 1;
            for r in chain
                .block_at(t)
                .receipts
                .iter()
                .filter(|r| !r.is_success())
            {
                let e = r
                    .error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_default();
                assert!(
                    e.contains("is full"),
                    "only a full period refuses an order: {e}"
                );
                refused += 1;
            }
        }
        refused
    };
    let orders_for = |period: u64| -> Vec<(usize, String, u64)> {
        (0..TRADERS)
            .map(|i| {
                if seller(i) {
                    let price = 100_000 + (i as u64 * 97 + period * 31) % 50_000;
                    (
                        i,
                        format!(r#"{{"offer":{{"period":{period},"wh":25,"min_price":{price}}}}}"#),
                        1_250,
                    )
                } else {
                    let wh = 24 + 2 * ((i as u64 / 2 + period) % 2);
                    (
                        i,
                        format!(r#"{{"bid":{{"period":{period},"wh":{wh},"max_price":300000}}}}"#),
                        wh * 300,
                    )
                }
            })
            .collect()
    };
    // Before period 0 (from T0 + PERIOD): orders for periods 1 to 3, until each is full.
    chain.block_at(T0 + 1_000);
    let mut orders = 0;
    for period in 1..=3 {
        let refused = run(&mut chain, orders_for(period));
        assert!(
            refused > 0,
            "period {period} took every order: it is not full"
        );
        orders += TRADERS - refused;
    }
    let mut period_calls = Vec::new();
    let mut calls_at = |chain: &mut TestChain, t: u64| {
        let b = chain.block_at(t);
        period_calls.extend(b.receipts.iter().filter(|r| r.fee == 0).cloned());
    };
    // Periods 1 and 2 clear at their starts; then every meter reports period 1: sellers 20 of
    // their 25 Wh, buyers 40 Wh (over-draw, tariffs, and debts where the escrow runs out).
    calls_at(&mut chain, T0 + 2 * PERIOD);
    calls_at(&mut chain, T0 + 3 * PERIOD);
    let readings = (0..TRADERS)
        .map(|i| {
            let (p, c) = if seller(i) { (20, 0) } else { (0, 40) };
            (
                i,
                format!(r#"{{"reading":{{"period":1,"produced_wh":{p},"consumed_wh":{c}}}}}"#),
                0,
            )
        })
        .collect();
    assert_eq!(run(&mut chain, readings), 0, "every reading accepted");
    // Period 3's call clears it and settles period 1; then the chain stops for 20 periods.
    calls_at(&mut chain, T0 + 4 * PERIOD);
    for k in 0..20 {
        calls_at(&mut chain, T0 + (25 + k) * PERIOD);
    }
    let failed: Vec<_> = period_calls
        .iter()
        .filter_map(|r| r.error.as_ref())
        .collect();
    assert!(failed.is_empty(), "period calls failed: {failed:?}");
    let most = period_calls.iter().map(|r| r.gas_used).max().unwrap_or(0);
    assert!(most <= 1_600_000_000, "a period call used {most} gas");
    let mut trades = 0;
    for period in 1..=3 {
        let summary = chain
            .query(market, &format!(r#"{{"period":{{"period":{period}}}}}"#))
            .unwrap();
        assert_eq!(summary["settled"], true, "period {period}: {summary}");
        trades += summary["trades"].as_u64().unwrap();
    }
    let p1 = chain.query(market, r#"{"period":{"period":1}}"#).unwrap();
    for field in [
        "fees",
        "penalties",
        "imbalance_paid",
        "debt_recorded",
        "subsidy_paid",
    ] {
        assert!(
            p1[field].as_u64().unwrap() > 0,
            "period 1 paid {field}: {p1}"
        );
    }
    assert!(
        trades as usize >= orders * 2 / 3,
        "{trades} trades of {orders} orders"
    );
    let stats = chain.query(market, r#"{"stats":{}}"#).unwrap();
    assert_eq!(
        chain.balance(&market),
        stats["pool"].as_u64().unwrap(),
        "the market holds its subsidy pool and no escrow"
    );
    assert_supply_conserved(&chain);
}
