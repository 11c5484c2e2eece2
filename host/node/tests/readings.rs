//! Meter readings on chain: only registered devices' correctly signed, fresh, plausible
//! readings are accepted, and only accepted readings reach settlement.

use gridledger_node::Rejected;
use gridledger_node::genesis::{
    DevicesConfig, GenesisAccount, GenesisContract, GenesisDevice, MarketClock,
};
use gridledger_node::testing::{TEST_CHAIN_ID, TestChain, test_genesis};
use gridledger_types::{Hash32, Keypair, MeterReading, Payload, Receipt, SignedReading};
use std::path::Path;

const T0: u64 = 1_767_225_600_000;
const PERIOD: u64 = 10_000;
/// The wind meter's rated power: 36 kW, so 100 Wh per 10 s.
const RATED_W: u64 = 36_000;

fn account(name: &str) -> GenesisAccount {
    GenesisAccount {
        name: name.into(),
        address: None,
        dev_seed: Some(format!("readings {name}")),
        balance: 1_000_000_000,
        roles: vec![],
    }
}

fn key(name: &str) -> Keypair {
    Keypair::from_seed_phrase(&format!("readings {name}"))
}

/// Period 0 starts at T0 + PERIOD. The wind and house meters are registered at genesis; the
/// market accepts readings from both.
fn chain() -> TestChain {
    let mut genesis = test_genesis(
        [
            "regulator",
            "wind",
            "house",
            "meter-wind",
            "meter-house",
            "relay",
            "stranger",
        ]
        .into_iter()
        .map(account)
        .collect(),
    );
    let params = r#"{"f_min":100000,"f_max":400000,"reference_price":200000,"mu_min":"0.5","mu_max":"1.5","mu_slope":"1","shortfall_penalty":50000,"overdraw_penalty":40000,"grid_tariff":300000,"mechanism":"pay_as_clear"}"#;
    genesis.contracts = vec![
        GenesisContract { label: "pricing".into(), wasm: "pricing.wasm".into(), msg: format!(r#"{{"params":{params},"admin":"{{account:regulator}}"}}"#), funds: 0, creator: "regulator".into(), admin: Some("regulator".into()) },
        GenesisContract {
            label: "market".into(),
            wasm: "market.wasm".into(),
            msg: r#"{"pricing":"{contract:pricing}","grid_company":"{account:grid-company}","admin":"{account:grid-company}","start_ms":{market_start_ms},"period_ms":{period_ms},"call_gas":{sudo_gas},"devices":[{"device":"{account:meter-wind}","participant":"{account:wind}","kind":"wind_turbine","rated_power_w":10000000},{"device":"{account:meter-house}","participant":"{account:house}","kind":"household_load","rated_power_w":10000000}]}"#.into(),
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
    genesis.devices = Some(DevicesConfig {
        reading_contract: Some("market".into()),
        time_tolerance_ms: 5_000,
        field_period_ms: None,
        registered: vec![
            GenesisDevice {
                device: "meter-wind".into(),
                owner: "wind".into(),
                kind: "wind_turbine".into(),
                rated_power_w: RATED_W,
            },
            GenesisDevice {
                device: "meter-house".into(),
                owner: "house".into(),
                kind: "household_load".into(),
                rated_power_w: RATED_W,
            },
        ],
    });
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/contracts");
    TestChain::with_genesis(genesis, &contracts)
}

fn period_of(t: u64) -> u64 {
    (t - T0 - PERIOD) / PERIOD
}

fn reading(device: &str, seq: u64, export_wh: u64, import_wh: u64, t: u64) -> MeterReading {
    MeterReading {
        device: key(device).address(),
        period: period_of(t),
        export_wh,
        import_wh,
        power_w: 0,
        timestamp_ms: t,
        seq,
        plugin: Hash32([7; 32]),
    }
}

/// Signed by the key the reading names.
fn signed(r: MeterReading) -> SignedReading {
    let name = ["meter-wind", "meter-house", "stranger"]
        .into_iter()
        .find(|d| key(d).address() == r.device)
        .expect("a known device");
    r.sign(TEST_CHAIN_ID, &key(name))
}

/// Relays readings in a block at `t`.
fn relay(chain: &mut TestChain, t: u64, readings: Vec<SignedReading>) -> Receipt {
    chain.block_at(t - 1);
    let tx = chain.sign(&key("relay"), Payload::Readings { readings }, 500_000_000);
    let hash = chain.node.submit(&tx.encode()).expect("admitted");
    chain.block_at(t);
    included(chain, &hash)
}

/// The receipt of a transaction in a block already made.
fn included(chain: &TestChain, hash: &Hash32) -> Receipt {
    match chain.node.tx_status(hash).unwrap() {
        gridledger_node::TxStatus::Included {
            receipts, index, ..
        } => receipts[index as usize].clone(),
        other => panic!("not included: {other:?}"),
    }
}

/// The wind meter's first reading, 1 s into period 0 (`start`).
fn first_wind_reading(chain: &mut TestChain) {
    let t = T0 + PERIOD + 1_000;
    let r = relay(chain, t, vec![signed(reading("meter-wind", 0, 0, 0, t))]);
    assert!(r.is_success(), "{:?}", r.error);
}

fn refused_reasons(r: &Receipt) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&r.result).unwrap_or_default();
    v["refused"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["reason"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn only_fresh_plausible_readings_from_registered_devices_are_accepted() {
    let mut chain = chain();
    let t1 = T0 + PERIOD + 2_000;
    let first = relay(
        &mut chain,
        t1,
        vec![signed(reading("meter-wind", 0, 1_000, 0, t1))],
    );
    assert!(first.is_success(), "{:?}", first.error);
    let wind = key("meter-wind").address();
    let accepted = chain.node.device(&wind).unwrap().unwrap();
    assert_eq!(accepted.last.as_ref().map(|r| r.seq), Some(0));
    assert_eq!(accepted.plugin, Some(Hash32([7; 32])));

    // 1 s later: at most 36,000 W × 1 s = 10 Wh (+1 for rounding).
    let t2 = t1 + 1_000;
    let mut forged = signed(reading("meter-wind", 1, 1_005, 0, t2));
    forged.signature = key("stranger").sign(&forged.reading.signing_bytes(TEST_CHAIN_ID));
    let mut tampered = signed(reading("meter-wind", 1, 1_005, 0, t2));
    tampered.reading.export_wh = 1_006;
    let cases: Vec<(SignedReading, &str)> = vec![
        (forged, "bad signature"),
        (tampered, "bad signature"),
        (signed(reading("stranger", 0, 5, 0, t2)), "not registered"),
        (
            signed(reading("meter-wind", 0, 1_005, 0, t2)),
            "sequence 0 is not after the last accepted one (0)",
        ),
        (
            signed(reading("meter-wind", 1, 999, 0, t2)),
            "went backwards",
        ),
        (
            signed(reading("meter-wind", 1, 1_005, 0, t1)),
            "not after the previous",
        ),
        (
            signed(reading("meter-wind", 1, 1_005, 0, t2 + 6_000)),
            "strays too far",
        ),
        (
            signed(reading("meter-wind", 1, 1_012, 0, t2)),
            "more than the device's rated power allows (11 Wh)",
        ),
        (
            signed(MeterReading {
                period: period_of(t2) + 1,
                ..reading("meter-wind", 1, 1_005, 0, t2)
            }),
            "reading for period 1 is ahead of the block's period 0",
        ),
    ];
    for (bad, why) in cases {
        let root_before = chain.node.device(&wind).unwrap();
        let r = relay(&mut chain, t2, vec![bad]);
        let error = r
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        assert!(error.contains(why), "want {why:?}, got {error:?}");
        assert_eq!(
            chain.node.device(&wind).unwrap(),
            root_before,
            "a refused reading changed the device ({why})"
        );
    }

    // A good one beside a bad one: the good one is accepted, the bad one listed.
    let r = relay(
        &mut chain,
        t2,
        vec![
            signed(reading("meter-wind", 1, 1_011, 0, t2)),
            signed(reading("stranger", 0, 5, 0, t2)),
        ],
    );
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(
        refused_reasons(&r),
        vec!["device is not registered".to_string()]
    );
    assert_eq!(
        chain
            .node
            .device(&wind)
            .unwrap()
            .unwrap()
            .last
            .map(|l| l.export_wh),
        Some(1_011)
    );

    // Revoked by the grid company: refused from then on. Only the grid company may revoke.
    let stranger = key("stranger");
    let r = chain.send(&stranger, Payload::RevokeDevice { device: wind });
    assert!(
        r.error
            .as_ref()
            .is_some_and(|e| e.message.contains("grid_company")),
        "{:?}",
        r.error
    );
    let gc = chain.grid_company.clone();
    assert!(
        chain
            .send(&gc, Payload::RevokeDevice { device: wind })
            .is_success()
    );
    let t3 = chain.time_ms() + 1_000;
    let r = relay(
        &mut chain,
        t3,
        vec![signed(reading("meter-wind", 2, 1_012, 0, t3))],
    );
    assert!(r.error.is_some_and(|e| e.message.contains("revoked")));
}

#[test]
fn device_keys_sign_readings_not_transactions() {
    let mut chain = chain();
    let meter = key("meter-wind");
    let tx = chain.sign(
        &meter,
        Payload::Transfer {
            to: key("wind").address(),
            amount: 1,
        },
        1_000_000,
    );
    assert!(matches!(
        chain.node.submit(&tx.encode()),
        Err(Rejected::DeviceSender(_))
    ));

    // Registration: grid company only, once per device.
    let stranger = key("stranger");
    let register = |device: &Keypair| Payload::RegisterDevice {
        device: device.address(),
        owner: key("wind").address(),
        kind: "pv".into(),
        rated_power_w: 5_000,
    };
    let new_meter = Keypair::from_seed_phrase("a new meter");
    assert!(chain.send(&stranger, register(&new_meter)).error.is_some());
    let gc = chain.grid_company.clone();
    assert!(chain.send(&gc, register(&new_meter)).is_success());
    let again = chain.send(&gc, register(&new_meter));
    assert!(
        again
            .error
            .is_some_and(|e| e.message.contains("already registered"))
    );
    assert_eq!(chain.node.devices().unwrap().len(), 3);
}

/// Found by reading the two registries: a device registered on chain was not the market's
/// meter (the grid company had to register it twice, and nothing checked the two agreed), so
/// its readings were accepted and its energy then refused by the market ("not a registered
/// meter"). Registering on chain now registers it with the reading contract in the same
/// transaction, or not at all.
#[test]
fn a_device_registered_on_chain_is_the_markets_meter_too() {
    let mut chain = chain();
    let market = chain.node.contract_by_label("market").unwrap().unwrap();
    let gc = chain.grid_company.clone();
    let owner = key("stranger").address();
    let meter_of = |chain: &TestChain| {
        chain
            .query(
                market,
                &format!(r#"{{"meter":{{"participant":"{}"}}}}"#, owner.to_hex()),
            )
            .unwrap()
    };
    let register = |device: &Keypair| Payload::RegisterDevice {
        device: device.address(),
        owner,
        kind: "rooftop_pv".into(),
        rated_power_w: 5_000,
    };
    assert!(meter_of(&chain).is_null(), "{}", meter_of(&chain));
    // Gas for the transaction but not for the market's call: nothing is registered anywhere.
    let starved = Keypair::from_seed_phrase("a starved meter");
    let tx = chain.sign(&gc, register(&starved), 40_000);
    let hash = chain.node.submit(&tx.encode()).expect("admitted");
    chain.next_block();
    let r = included(&chain, &hash);
    assert!(r.error.is_some(), "the market's call ran out of gas");
    assert_eq!(chain.node.devices().unwrap().len(), 2);
    assert!(meter_of(&chain).is_null());
    // With gas for both: one registration, in both registries.
    let new_meter = Keypair::from_seed_phrase("a new meter");
    let r = chain.send(&gc, register(&new_meter));
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(chain.node.devices().unwrap().len(), 3);
    let m = meter_of(&chain);
    assert_eq!(m["device"], new_meter.address().to_hex(), "{m}");
    assert_eq!(m["kind"], "rooftop_pv", "{m}");
    assert_eq!(m["rated_power_w"], 5_000, "{m}");
    // Found by review: the market keeps one meter per participant, so a second device for the
    // same owner replaced the first there while the chain kept it live (its readings accepted,
    // their energy refused). The replaced device is revoked on chain in the same transaction.
    let revoked = |chain: &TestChain, d: &Keypair| {
        chain
            .node
            .devices()
            .unwrap()
            .into_iter()
            .find(|(id, _)| *id == d.address())
            .map(|(_, rec)| rec.revoked)
    };
    assert_eq!(revoked(&chain, &new_meter), Some(false));
    let newer = Keypair::from_seed_phrase("a newer meter");
    let r = chain.send(&gc, register(&newer));
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(meter_of(&chain)["device"], newer.address().to_hex());
    assert_eq!(
        revoked(&chain, &new_meter),
        Some(true),
        "the replaced meter"
    );
    assert_eq!(revoked(&chain, &newer), Some(false));
    assert!(
        r.events.iter().any(|e| e.kind == "device_revoked"),
        "{:?}",
        r.events
    );
}

#[test]
fn settlement_uses_the_energy_of_accepted_readings() {
    let mut chain = chain();
    let market = chain.node.contract_by_label("market").unwrap().unwrap();
    chain.block_at(T0 + 1_000);
    let offer = chain.send(
        &key("wind"),
        Payload::Execute {
            contract: market,
            msg: br#"{"offer":{"period":1,"wh":300,"min_price":150000,"renewable":true}}"#.to_vec(),
            funds: 15_000,
        },
    );
    assert!(offer.is_success(), "{:?}", offer.error);
    let bid = chain.send(
        &key("house"),
        Payload::Execute {
            contract: market,
            msg: br#"{"bid":{"period":1,"wh":300,"max_price":250000}}"#.to_vec(),
            funds: 75_000,
        },
    );
    assert!(bid.is_success(), "{:?}", bid.error);

    // Readings every 5 s through periods 0..=2; the wind meter exports 50 Wh and the house
    // meter imports 40 Wh each time (36 kW × 5 s allows 51 Wh).
    let mut seq = 0;
    let mut t = T0 + PERIOD + 1_000;
    while t < T0 + 4 * PERIOD {
        let r = relay(
            &mut chain,
            t,
            vec![
                signed(reading("meter-wind", seq, 50 * seq, 0, t)),
                signed(reading("meter-house", seq, 0, 40 * seq, t)),
            ],
        );
        assert!(
            r.is_success() && refused_reasons(&r).is_empty(),
            "{:?} {:?}",
            r.error,
            refused_reasons(&r)
        );
        seq += 1;
        t += 5_000;
    }
    // Period 1 held the readings at +21 s and +26 s; the steps across its boundaries are split
    // by time, so its energy runs from +20 s to +30 s: 100 Wh out, 80 Wh in. The seller
    // delivered 100 of the 300 Wh it sold, and pays the shortfall penalty on the rest.
    chain.block_at(T0 + 5 * PERIOD);
    let summary = chain.query(market, r#"{"period":{"period":1}}"#).unwrap();
    assert_eq!(summary["settled"], true, "{summary}");
    assert_eq!(summary["delivered_wh"], 100, "{summary}");
    assert_eq!(
        summary["penalties"].as_u64().map(|p| p > 0),
        Some(true),
        "{summary}"
    );
}

/// Junk costs a state read, not a signature check: readings of an unregistered device are
/// refused before their signatures are looked at (each lookup paid, `reading_lookup`), while
/// the checks a batch does need are paid for too, `reading_signature` each (4,096 junk
/// readings used to cost a validator ~0.3 s of checks for a few million gas).
#[test]
fn junk_readings_are_refused_before_their_signatures_and_checks_are_paid() {
    let mut chain = chain();
    let t = T0 + PERIOD + 1_000;
    let n = 100;
    // A stranger's device is not registered: refused unchecked.
    let junk: Vec<SignedReading> = (0..n)
        .map(|i| signed(reading("stranger", i, 0, 0, t)))
        .collect();
    let why = |r: &Receipt| {
        r.error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default()
    };
    let a = relay(&mut chain, t, junk);
    assert!(why(&a).contains("not registered"), "{}", why(&a));
    let g = chain.node.vm().config().gas.clone();
    assert!(
        a.gas_used >= n * g.reading_lookup,
        "every lookup is paid: {}",
        a.gas_used
    );
    // The wind meter's readings, signed by the wrong key: each is worth a check (registered,
    // after the last one), and each check is paid.
    let forged: Vec<SignedReading> = (0..n)
        .map(|i| reading("meter-wind", i, 0, 0, t + 1_000).sign(TEST_CHAIN_ID, &key("stranger")))
        .collect();
    let b = relay(&mut chain, t + 1_000, forged);
    assert!(why(&b).contains("signature"), "{}", why(&b));
    assert!(
        b.gas_used >= a.gas_used + n * g.reading_signature,
        "{} vs {}",
        b.gas_used,
        a.gas_used
    );
    // Correctly signed but too old for the block: refused before their signatures too.
    let stale: Vec<SignedReading> = (0..n)
        .map(|i| signed(reading("meter-wind", i, 0, 0, t + 2_000)))
        .collect();
    let c = relay(&mut chain, t + 8_000, stale);
    assert!(why(&c).contains("strays too far"), "{}", why(&c));
    assert!(
        c.gas_used < n * g.reading_signature,
        "stale readings' signatures were paid: {}",
        c.gas_used
    );
}

/// The market's `reading` events in a receipt: (period, produced Wh, consumed Wh).
fn reported(r: &Receipt) -> Vec<(u64, u64, u64)> {
    r.events
        .iter()
        .filter(|e| e.kind == "reading")
        .map(|e| {
            let attr = |k: &str| {
                e.attributes
                    .iter()
                    .find(|(a, _)| a == k)
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .unwrap_or(u64::MAX)
            };
            (attr("period"), attr("produced_wh"), attr("consumed_wh"))
        })
        .collect()
}

/// Found by reading the code: all the energy across a gap in readings landed in the period
/// in which readings resumed, so a seller controlling its gateway could bank energy and
/// release it where it sold. Now a step is split by time, and a gap earns nothing.
#[test]
fn energy_across_a_gap_is_split_by_time_not_banked_into_one_period() {
    let mut chain = chain();
    let start = |p: u64| T0 + PERIOD + p * PERIOD;
    // A reading 1 s into period 0, then nothing until 5 s into period 3 (the meter counted
    // 10 Wh/s all along), then one 1 s into period 4.
    first_wind_reading(&mut chain);
    let r = relay(
        &mut chain,
        start(3) + 5_000,
        vec![signed(reading("meter-wind", 1, 340, 0, start(3) + 5_000))],
    );
    assert!(
        r.is_success() && refused_reasons(&r).is_empty(),
        "{:?} {:?}",
        r.error,
        refused_reasons(&r)
    );
    // Period 0 closes with its share of the 34 s step (the 9 s inside it); it was settled
    // at period 2's start, so the market refuses that late report and says so.
    assert_eq!(reported(&r), vec![]);
    assert!(
        r.events.iter().any(|e| e.kind == "reading_not_reported"
            && e.attributes
                .iter()
                .any(|(k, v)| k == "reason" && v.contains("already settled"))),
        "{:?}",
        r.events
    );
    let r = relay(
        &mut chain,
        start(4) + 1_000,
        vec![signed(reading("meter-wind", 2, 400, 0, start(4) + 1_000))],
    );
    assert!(r.is_success(), "{:?}", r.error);
    // Period 3: the 5 s of the long step inside it (50 Wh) and the 5 s of the next step
    // before period 4 (50 Wh), not the 340 Wh counted since period 0.
    assert_eq!(reported(&r), vec![(3, 100, 0)]);
}

/// Found by reading the code: the energy report ran on the relayer's leftover gas, so anyone
/// resubmitting the gateway's signed readings with a minimal gas limit had them accepted
/// while the report failed, and the period's energy was lost. Now a batch must hold the
/// reports' gas before anything is applied.
#[test]
fn a_relayer_with_too_little_gas_for_the_reports_changes_nothing() {
    let mut chain = chain();
    let start = |p: u64| T0 + PERIOD + p * PERIOD;
    first_wind_reading(&mut chain);
    let closing = signed(reading("meter-wind", 1, 100, 0, start(1) + 1_000));
    // Enough for the bytes and the signature check, not for the report.
    let g = chain.node.vm().config().gas.clone();
    let payload = Payload::Readings {
        readings: vec![closing.clone()],
    };
    chain.block_at(start(1) + 999);
    let probe = chain.sign(&key("stranger"), payload.clone(), 0);
    let tight = g.tx_base
        + g.tx_per_byte * probe.encode().len() as u64
        + g.reading_lookup
        + g.reading_signature
        + 10_000;
    let tx = chain.sign(&key("stranger"), payload, tight);
    let hash = chain.node.submit(&tx.encode()).expect("admitted");
    let before = chain.node.devices().unwrap();
    chain.block_at(start(1) + 1_000);
    let receipt = included(&chain, &hash);
    assert!(!receipt.is_success());
    let err = receipt
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(err.contains("reporting 1 periods' energy"), "{err}");
    assert_eq!(
        chain.node.devices().unwrap(),
        before,
        "the reading was not consumed"
    );
    // The gateway's own batch, with the gas it needs, is accepted and reported.
    let r = relay(&mut chain, start(1) + 2_000, vec![closing]);
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(reported(&r), vec![(0, 90, 0)]);
}

/// Found on the 1,000-household devnet beside a browser (issue 16): one reading arrived after
/// the time tolerance and was refused, and from then on every later reading of that meter was
/// refused too (`sequence N is not the next one`), so its delivery fell to 0 kWh for good. A
/// refused or withheld reading now costs only itself: the meter's next one is taken, and the
/// energy across the skip is split by time like any step.
#[test]
fn a_refused_reading_costs_only_itself_and_a_skip_is_split_by_time() {
    let mut chain = chain();
    let start = |p: u64| T0 + PERIOD + p * PERIOD;
    let wind = key("meter-wind").address();
    first_wind_reading(&mut chain);
    // Taken at 3 s, in a block at 9 s: older than the 5 s tolerance, refused.
    let stale = relay(
        &mut chain,
        start(0) + 9_000,
        vec![signed(reading("meter-wind", 1, 20, 0, start(0) + 3_000))],
    );
    assert!(!stale.is_success());
    // The meter's next reading is taken.
    let r = relay(
        &mut chain,
        start(0) + 9_500,
        vec![signed(reading("meter-wind", 2, 85, 0, start(0) + 9_500))],
    );
    let no_report_gas = r.gas_used;
    assert!(
        r.is_success() && refused_reasons(&r).is_empty(),
        "{:?} {:?}",
        r.error,
        refused_reasons(&r)
    );
    // A replay of an older number is still refused, and changes nothing.
    let before = chain.node.device(&wind).unwrap();
    let replay = relay(
        &mut chain,
        start(0) + 9_700,
        vec![signed(reading("meter-wind", 1, 86, 0, start(0) + 9_700))],
    );
    let err = replay.error.map(|e| e.message).unwrap_or_default();
    assert!(
        err.contains("sequence 1 is not after the last accepted one (2)"),
        "{err}"
    );
    assert_eq!(chain.node.device(&wind).unwrap(), before);
    // Seq 3 is withheld; seq 4, 2 s into period 1, is 25 Wh on over 2.5 s: period 0 closes
    // with the 85 Wh up to seq 2 and its 0.5 s share of the step (5 Wh).
    let r = relay(
        &mut chain,
        start(1) + 2_000,
        vec![signed(reading("meter-wind", 4, 110, 0, start(1) + 2_000))],
    );
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(reported(&r), vec![(0, 90, 0)]);
    // A report runs well inside its fixed budget: a batch of one reading with a report
    // against one without.
    let report_gas = r.gas_used - no_report_gas;
    assert!(
        report_gas < gridledger_node::devices::REPORT_GAS / 2,
        "a report used {report_gas} gas"
    );
    // Period 1: the other 20 Wh of that step, and 8 s of the next 9 s step of 30 Wh (26).
    let r = relay(
        &mut chain,
        start(2) + 1_000,
        vec![signed(reading("meter-wind", 5, 140, 0, start(2) + 1_000))],
    );
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(reported(&r), vec![(1, 46, 0)]);
}

/// Found by review: a reading stamped in the next period, in a block still in the current
/// one, was accepted without closing the period, so the next period's energy up to it was
/// later counted in the current one. It is refused, unchecked, and changes nothing.
#[test]
fn a_reading_of_a_period_the_block_has_not_reached_is_refused() {
    let mut chain = chain();
    let start = |p: u64| T0 + PERIOD + p * PERIOD;
    let wind = key("meter-wind").address();
    first_wind_reading(&mut chain);
    let before = chain.node.device(&wind).unwrap();
    let ahead = relay(
        &mut chain,
        start(1) - 500,
        vec![signed(reading("meter-wind", 1, 90, 0, start(1) + 100))],
    );
    let err = ahead.error.map(|e| e.message).unwrap_or_default();
    assert!(
        err.contains("reading for period 1 is ahead of the block's period 0"),
        "{err}"
    );
    let g = chain.node.vm().config().gas.clone();
    assert!(
        ahead.gas_used < g.reading_signature,
        "its signature was checked"
    );
    assert_eq!(chain.node.device(&wind).unwrap(), before);
    // Once the block is in period 1, a reading taken then but saying period 0 is refused too.
    let wrong = relay(
        &mut chain,
        start(1) + 300,
        vec![signed(MeterReading {
            period: 0,
            ..reading("meter-wind", 1, 90, 0, start(1) + 200)
        })],
    );
    let err = wrong.error.map(|e| e.message).unwrap_or_default();
    assert!(
        err.contains("reading says period 0 but was taken in period 1"),
        "{err}"
    );
    assert_eq!(chain.node.device(&wind).unwrap(), before);
}

/// Found by review: the reports a batch must pay for were counted reading by reading from
/// the device's open period, and a reading that is later refused (here a forgery of a later
/// period) moved that count on: a real reading of the period between then triggered a
/// report nobody had paid for, which ran on whatever gas was left and could lose the
/// period's energy. Now every distinct period above the open one counts.
#[test]
fn a_forged_later_reading_cannot_lower_the_reports_a_batch_pays_for() {
    let mut chain = chain();
    let start = |p: u64| T0 + PERIOD + p * PERIOD;
    first_wind_reading(&mut chain);
    let t = start(2) + 500;
    let mut forged = signed(reading("meter-wind", 1, 100, 0, start(2) + 400));
    forged.signature = key("stranger").sign(&forged.reading.signing_bytes(TEST_CHAIN_ID));
    let batch = vec![
        forged,
        signed(reading("meter-wind", 1, 100, 0, start(2) - 1_000)),
        signed(reading("meter-wind", 2, 114, 0, start(2) + 400)),
    ];
    let payload = Payload::Readings { readings: batch };
    let g = chain.node.vm().config().gas.clone();
    chain.block_at(t - 1);
    let probe = chain.sign(&key("stranger"), payload.clone(), 0);
    // Enough for three lookups and checks and one report, not two.
    let one_report = g.tx_base
        + g.tx_per_byte * probe.encode().len() as u64
        + 3 * (g.reading_lookup + g.reading_signature)
        + gridledger_node::devices::REPORT_GAS
        + 10_000;
    let tx = chain.sign(&key("stranger"), payload, one_report);
    let hash = chain.node.submit(&tx.encode()).expect("admitted");
    let before = chain.node.devices().unwrap();
    chain.block_at(t);
    let receipt = included(&chain, &hash);
    let err = receipt.error.map(|e| e.message).unwrap_or_default();
    assert!(err.contains("reporting 2 periods' energy"), "{err}");
    assert_eq!(chain.node.devices().unwrap(), before, "nothing consumed");
}

/// Found on the 1,000-household devnet: leaders took waiting transactions one per sender in
/// turn, and the device gateway is one sender relaying every meter, so with the households'
/// orders waiting it got one batch of 80 readings into a block (about 80 a second against
/// 333 read): the rest grew too old to be taken and settlement saw almost no energy.
/// Readings are now taken first, up to half of a block's gas, in nonce order, however many
/// transactions each household has waiting (found by review: a lane drawn from the first
/// rounds of the turns still gave the gateway one batch per round); and only batches whose
/// gas limit their readings can use (found by review: a lane by payload alone was half a
/// block for anyone holding a large limit on a batch that fails at once).
#[test]
fn readings_are_taken_first_up_to_half_a_block_among_many_senders() {
    // 700 households with 3 transactions each: more than a block's 2,000 in three turns.
    let houses: Vec<String> = (0..700).map(|i| format!("house {i}")).collect();
    let mut accounts: Vec<GenesisAccount> = houses.iter().map(|n| account(n)).collect();
    accounts.push(account("relay"));
    accounts.push(account("spammer"));
    accounts.push(account("flooder"));
    let chain = TestChain::with_genesis(test_genesis(accounts), Path::new("."));
    let max_gas = chain.node.vm().config().limits.max_block_gas;
    let g = chain.node.vm().config().gas.clone();
    let t = T0 + PERIOD + 1_000;
    let batch_tx = |from: &Keypair, nonce: u64, readings: Vec<SignedReading>, gas: Option<u64>| {
        let body = |gas_limit| gridledger_types::TxBody {
            chain_id: TEST_CHAIN_ID.into(),
            sender: from.address(),
            nonce,
            gas_limit,
            payload: Payload::Readings {
                readings: readings.clone(),
            },
        };
        // As the relay sets it: the bytes and, per reading, what it may use.
        let size = body(0).sign(from).encode().len() as u64;
        let per_reading =
            g.reading_lookup + g.reading_signature + gridledger_node::devices::REPORT_GAS;
        let fit = g.tx_base + g.tx_per_byte * (size + 16) + per_reading * readings.len() as u64;
        body(gas.unwrap_or(fit)).sign(from)
    };
    // A spammer's batch of one reading holding a quarter of a block: not first.
    let spammer = key("spammer");
    let spam = batch_tx(
        &spammer,
        0,
        vec![signed(reading("stranger", 0, 0, 0, t))],
        Some(max_gas / 4),
    );
    chain.node.submit(&spam.encode()).expect("admitted");
    // Another's batch of 600 junk readings, each costing only its lookup, holding exactly
    // what its readings may use (nearly half a block): too big a batch to be first.
    let flooder = key("flooder");
    let junk = (0..600)
        .map(|i| signed(reading("stranger", i, 0, 0, t)))
        .collect();
    let flood = batch_tx(&flooder, 0, junk, None);
    chain.node.submit(&flood.encode()).expect("admitted");
    // Every household waits with three 2 M gas transactions (as the simulation's orders)...
    for n in &houses {
        for nonce in 0..3 {
            let tx = gridledger_types::TxBody {
                chain_id: TEST_CHAIN_ID.into(),
                sender: key(n).address(),
                nonce,
                gas_limit: 2_000_000,
                payload: Payload::Transfer {
                    to: key("relay").address(),
                    amount: 1,
                },
            }
            .sign(&key(n));
            chain.node.submit(&tx.encode()).expect("admitted");
        }
    }
    // ...and the gateway with 8 full batches of 80 readings.
    let relay = key("relay");
    let mut batch_gas = 0;
    for nonce in 0..8 {
        let readings = (0..80)
            .map(|i| signed(reading("stranger", nonce * 80 + i, 0, 0, t)))
            .collect();
        let tx = batch_tx(&relay, nonce, readings, None);
        batch_gas = tx.body.gas_limit;
        chain.node.submit(&tx.encode()).expect("admitted");
    }
    let picked = chain
        .node
        .proposal_candidates(gridledger_node::MAX_BLOCK_TXS, &Default::default());
    let first = (max_gas / 2 / batch_gas) as usize;
    assert!(first >= 6, "{first} batches in half a block");
    let relayed: Vec<u64> = picked
        .iter()
        .filter(|t| t.body.sender == relay.address())
        .map(|t| t.body.nonce)
        .collect();
    assert!(relayed.len() >= first, "{relayed:?}");
    assert_eq!(
        relayed,
        (0..relayed.len() as u64).collect::<Vec<_>>(),
        "in nonce order"
    );
    assert!(
        picked[..first]
            .iter()
            .all(|t| t.body.sender == relay.address()),
        "the gateway's batches come first, the spammer's and the flooder's do not"
    );
    let gas: u64 = picked.iter().map(|t| t.body.gas_limit).sum();
    assert!(gas <= max_gas, "{gas}");
    // The households fill the rest.
    let houses_in = picked
        .iter()
        .filter(|t| {
            ![relay.address(), spammer.address(), flooder.address()].contains(&t.body.sender)
        })
        .count();
    assert!(houses_in >= 150, "{houses_in}");
}
