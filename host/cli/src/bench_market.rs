//! `gridledger bench market`: the market contracts at scale, through the node.
//!
//! Each scenario is a fresh in-memory chain with the pricing and market contracts in genesis.
//! Orders are real signed transactions; the timed part is the one block whose period-boundary
//! system call clears (or settles) the period, so the figure includes everything the node does
//! for it (VM, storage, state root, commit).

use anyhow::{Context, Result, bail};
use gridledger_node::CommittedBlock;
use gridledger_node::genesis::{GenesisAccount, GenesisContract, MarketClock};
use gridledger_node::testing::{TestChain, test_genesis};
use gridledger_types::{Address, Keypair, Payload, TxBody};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const T0: u64 = 1_767_225_600_000;
const PERIOD_MS: u64 = 3_600_000;
/// Gas cap of the period call in the benchmark: high, so the measured gas is the true cost.
const BENCH_SUDO_GAS: u64 = 1_000_000_000_000;

struct Scenario {
    chain: TestChain,
    market: Address,
    traders: Vec<Keypair>,
}

fn trader(i: usize) -> Keypair {
    Keypair::from_seed_phrase(&format!("bench trader {i}"))
}

fn scenario(traders: usize, contracts_dir: &Path) -> Result<Scenario> {
    let accounts = (0..traders)
        .map(|i| GenesisAccount {
            name: format!("t{i}"),
            address: None,
            dev_seed: Some(format!("bench trader {i}")),
            balance: 1_000_000_000_000,
            roles: vec![],
        })
        .collect();
    let mut genesis = test_genesis(accounts);
    // Every trader is its own meter, so readings need no extra accounts. The first half sell
    // (every other one from a wind turbine, the rest from diesel), the second half buy.
    let devices: Vec<String> = (0..traders)
        .map(|i| {
            let kind = match (i < traders / 2, i % 2 == 0) {
                (true, true) => "wind_turbine",
                (true, false) => "diesel_generator",
                (false, _) => "household_load",
            };
            format!(
                r#"{{"device":"{{account:t{i}}}","participant":"{{account:t{i}}}","kind":"{kind}","rated_power_w":100000000}}"#
            )
        })
        .collect();
    let params = r#"{"f_min":100000,"f_max":400000,"reference_price":200000,"mu_min":"0.5","mu_max":"1.5","mu_slope":"1","shortfall_penalty":50000,"overdraw_penalty":40000,"grid_tariff":300000,"mechanism":"pay_as_clear"}"#;
    genesis.contracts = vec![
        GenesisContract {
            label: "pricing".into(),
            wasm: "pricing.wasm".into(),
            msg: format!(r#"{{"params":{params},"admin":"{{account:grid-company}}"}}"#),
            funds: 0,
            creator: "grid-company".into(),
            admin: None,
        },
        GenesisContract {
            label: "market".into(),
            wasm: "market.wasm".into(),
            msg: format!(
                r#"{{"pricing":"{{contract:pricing}}","grid_company":"{{account:grid-company}}","admin":"{{account:grid-company}}","start_ms":{{market_start_ms}},"period_ms":{{period_ms}},"call_gas":{BENCH_SUDO_GAS},"devices":[{}]}}"#,
                devices.join(",")
            ),
            funds: 1_000_000_000,
            creator: "grid-company".into(),
            admin: None,
        },
    ];
    genesis.market = Some(MarketClock {
        period_ms: PERIOD_MS,
        start_ms: Some(T0 + PERIOD_MS),
        sudo_contracts: vec!["market".into()],
        sudo_gas: BENCH_SUDO_GAS,
        stats_contract: Some("market".into()),
    });
    let chain = TestChain::with_genesis(genesis, contracts_dir);
    let market = chain
        .node
        .contract_by_label("market")?
        .context("market deployed")?;
    Ok(Scenario {
        chain,
        market,
        traders: (0..traders).map(trader).collect(),
    })
}

impl Scenario {
    /// Submits one execute per (trader, message, funds) and includes them all.
    fn run_txs(&mut self, txs: Vec<(usize, String, u64)>) -> Result<()> {
        for (i, msg, funds) in txs {
            let key = &self.traders[i];
            let nonce = self.chain.node.next_nonce(&key.address())?;
            let tx = TxBody {
                chain_id: self.chain.node.chain_id().to_string(),
                sender: key.address(),
                nonce,
                gas_limit: 50_000_000,
                payload: Payload::Execute {
                    contract: self.market,
                    msg: msg.into_bytes(),
                    funds,
                },
            }
            .sign(key);
            self.chain
                .node
                .submit(&tx.encode())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        while self.chain.node.mempool_len() > 0 {
            let t = self.chain.time_ms() + 1;
            let b = self.chain.block_at(t);
            if let Some(r) = b.receipts.iter().find(|r| !r.is_success()) {
                bail!("a benchmark transaction failed: {:?}", r.error);
            }
        }
        Ok(())
    }

    /// `n` orders for period 1: half offers, half bids, every pair crossing, equal sizes, so
    /// each offer matches exactly one bid.
    fn place_orders(&mut self, n: usize) -> Result<()> {
        let half = n / 2;
        let mut txs = Vec::new();
        for k in 0..half {
            let price = 100_000 + (k as u64 * 97) % 90_000; // offers 100k..190k
            txs.push((
                k,
                format!(r#"{{"offer":{{"period":1,"wh":1000,"min_price":{price}}}}}"#),
                50_000,
            ));
            let bid_price = 210_000 + (k as u64 * 89) % 150_000; // bids 210k..360k
            txs.push((
                half + k,
                format!(r#"{{"bid":{{"period":1,"wh":1000,"max_price":{bid_price}}}}}"#),
                bid_price,
            ));
        }
        self.run_txs(txs)
    }

    /// The block at `time` and how long producing it took.
    fn timed_block(&mut self, time: u64) -> (Arc<CommittedBlock>, f64) {
        let start = Instant::now();
        let b = self.chain.block_at(time);
        (b, start.elapsed().as_secs_f64() * 1000.0)
    }
}

/// Gas of the system call that emitted `event` for period 1.
fn system_gas(b: &CommittedBlock, event: &str) -> Result<u64> {
    let r = b
        .receipts
        .iter()
        .find(|r| {
            r.events.iter().any(|e| {
                e.kind == event && e.attributes.iter().any(|(k, v)| k == "period" && v == "1")
            })
        })
        .with_context(|| {
            let errors: Vec<String> = b
                .receipts
                .iter()
                .filter_map(|r| r.error.as_ref().map(|e| e.message.clone()))
                .take(3)
                .collect();
            format!("no {event} in the block (errors: {errors:?})")
        })?;
    if let Some(e) = &r.error {
        bail!("period call failed: {}", e.message);
    }
    Ok(r.gas_used)
}

/// A period of orders cleared, as measured.
struct Cleared {
    /// Wall time of the block that clears it.
    block_ms: f64,
    /// Of which the market's calls (the block's scheduled calls, as the node timed them: the
    /// empty period 0 and period 1, whose orders these are).
    call_ms: f64,
    gas: u64,
    scenario: Scenario,
}

/// Clears a period of `n` orders.
fn clear(n: usize, contracts_dir: &Path) -> Result<Cleared> {
    let mut s = scenario(n, contracts_dir)?;
    s.chain.block_at(T0 + 1_000);
    s.place_orders(n)?;
    let (b, block_ms) = s.timed_block(T0 + 2 * PERIOD_MS);
    Ok(Cleared {
        block_ms,
        call_ms: b.scheduled_calls_time.as_secs_f64() * 1000.0,
        gas: system_gas(&b, "period_cleared")?,
        scenario: s,
    })
}

/// The median run of `runs` clearings of `n` orders (by block time), and its call time's median.
fn clear_median(n: usize, runs: usize, contracts_dir: &Path) -> Result<Cleared> {
    let mut all = (0..runs)
        .map(|_| clear(n, contracts_dir))
        .collect::<Result<Vec<_>>>()?;
    let mut calls: Vec<f64> = all.iter().map(|c| c.call_ms).collect();
    calls.sort_by(f64::total_cmp);
    all.sort_by(|a, b| a.block_ms.total_cmp(&b.block_ms));
    let mut m = all.swap_remove(all.len() / 2);
    m.call_ms = calls[calls.len() / 2];
    Ok(m)
}

/// The community genesis of 1,000 households over 24 periods on one node: the median time of
/// the boundary blocks that clear a period with trades and settle another, and that period's
/// trade count.
fn community_boundary(contracts_dir: &Path) -> Result<(f64, u64)> {
    let base_path = Path::new("genesis/island.toml");
    let base = gridledger_node::Genesis::load(base_path)?;
    let g = crate::community::generate(&base, base_path, 1_000)?;
    let mut b: Vec<crate::community::Boundary> =
        crate::community::run_boundaries(g, base_path, contracts_dir, 24)?
            .into_iter()
            .filter(|b| b.cleared_trades > 0 && b.settled_value > 0)
            .collect();
    anyhow::ensure!(!b.is_empty(), "no boundary both cleared and settled trades");
    b.sort_by(|x, y| x.ms.total_cmp(&y.ms));
    let m = &b[b.len() / 2];
    Ok((m.ms, m.cleared_trades))
}

/// The book `place_orders(n)` places, for `auction::clear` run natively.
fn native_book(
    n: usize,
) -> (
    Vec<market::auction::BookOrder>,
    Vec<market::auction::BookOrder>,
) {
    let half = n / 2;
    let order = |id: usize, price: u64, renewable: bool| market::auction::BookOrder {
        id: id as u64,
        wh: 1000,
        price,
        renewable,
        at: 0,
    };
    let offers = (0..half)
        .map(|k| order(2 * k, 100_000 + (k as u64 * 97) % 90_000, k % 2 == 0))
        .collect();
    let bids = (0..half)
        .map(|k| order(2 * k + 1, 210_000 + (k as u64 * 89) % 150_000, false))
        .collect();
    (bids, offers)
}

/// Median wall time of `auction::clear` on the book, natively (same code as in the contract).
fn clear_native_ms(n: usize) -> f64 {
    let (bids, offers) = native_book(n);
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            let m = market::auction::clear(&bids, &offers, pricing::Mechanism::PayAsClear);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            std::hint::black_box(m);
            ms
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub fn run(json: bool, contracts_dir: &Path) -> Result<()> {
    let c1000 = clear(1_000, contracts_dir)?;
    let (clear_1000_ms, clear_1000_gas) = (c1000.block_ms, c1000.gas);
    println!("clear 1,000 orders: {clear_1000_ms:.1} ms, {clear_1000_gas} gas");
    let c10000 = clear_median(10_000, 3, contracts_dir)?;
    let (clear_10000_ms, clear_10000_gas) = (c10000.block_ms, c10000.gas);
    let call_ms = c10000.call_ms;
    println!(
        "clear 10,000 orders: {clear_10000_ms:.1} ms, {clear_10000_gas} gas (median of 3); the market's calls {call_ms:.1} ms of it (empty period 0, then period 1's orders), the rest the block's other work, mostly its state root and commit"
    );
    let native_ms = clear_native_ms(10_000);
    println!(
        "clear 10,000 orders natively (auction::clear alone): {native_ms:.2} ms; the market's call {:.0}x that, the whole block {:.0}x",
        call_ms / native_ms.max(1e-6),
        clear_10000_ms / native_ms.max(1e-6)
    );

    // Settlement of 1,000 trades: 2,000 orders pair up into 1,000 trades; sellers report.
    let mut s = clear(2_000, contracts_dir)?.scenario;
    let readings = (0..1_000)
        .map(|k| {
            (
                k,
                r#"{"reading":{"period":1,"produced_wh":990,"consumed_wh":0}}"#.to_string(),
                0,
            )
        })
        .collect();
    s.chain.block_at(T0 + 2 * PERIOD_MS + PERIOD_MS / 2);
    // Readings are accepted once period 1 is delivered (from period 2's start).
    s.chain.block_at(T0 + 3 * PERIOD_MS + 1);
    s.run_txs(readings)?;
    let trades = s
        .chain
        .query(s.market, r#"{"period":{"period":1}}"#)
        .map_err(|e| anyhow::anyhow!("{e}"))?["trades"]
        .as_u64()
        .unwrap_or(0);
    let (b, settle_1000_ms) = s.timed_block(T0 + 4 * PERIOD_MS);
    let settle_gas = system_gas(&b, "period_settled")?;
    println!("settle {trades} trades: {settle_1000_ms:.1} ms, {settle_gas} gas");
    let (community_ms, community_trades) = community_boundary(contracts_dir)?;
    println!(
        "a community of 1,000 households: a period boundary (clearing one period, settling another) {community_ms:.1} ms, median of the day's boundaries with trades ({community_trades} trades in the median's period)"
    );
    if json {
        println!(
            "{}",
            serde_json::json!({
                "clear_1000_ms": (clear_1000_ms * 10.0).round() / 10.0,
                "clear_1000_gas": clear_1000_gas,
                "clear_10000_ms": (clear_10000_ms * 10.0).round() / 10.0,
                "clear_10000_gas": clear_10000_gas,
                "clear_10000_call_ms": (call_ms * 10.0).round() / 10.0,
                "clear_10000_native_ms": (native_ms * 1000.0).round() / 1000.0,
                "settle_1000_ms": (settle_1000_ms * 10.0).round() / 10.0,
                "settle_1000_gas": settle_gas,
                "settle_trades": trades,
                "community_1000_boundary_ms": (community_ms * 10.0).round() / 10.0,
            })
        );
    }
    Ok(())
}
