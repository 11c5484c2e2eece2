//! The devnet's simulated island: participants forecast, offer and bid from their profiles
//! through ordinary signed transactions; the chain clears and settles by itself. What was
//! delivered comes from the device plugins' signed readings when genesis registers devices
//! (the island does); otherwise the meters report each period here.

use anyhow::{Context, Result, bail};
use gridledger_node::Node;
use gridledger_node::genesis::{Genesis, Participant};
use gridledger_types::{Address, Hash32, Keypair, Payload, TxBody};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Gas limit of each simulated transaction: about 5× what the market's calls use (an order
/// ≈ 200,000 gas, a forecast or reading ≈ 110,000; conformance vector `market`; on the
/// 1,000-household devnet the households' transactions used 218,000 on average). A block takes
/// transactions whose gas *limits* sum to at most the block gas (10⁹), so a limit far above
/// use costs block space: at 20 M, a block took 50 of them, and a 1,000-household community
/// (2,000 transactions a 5 s period) fell behind on four validators; at 2 M, 444 of them
/// left too little room beside the meters' readings.
const SIM_GAS: u64 = 1_000_000;

struct Member {
    cfg: Participant,
    key: Keypair,
    meter: Keypair,
}

pub struct Simulation {
    node: Arc<Node>,
    market: Address,
    members: Vec<Member>,
    /// Profile column → average W per row.
    profiles: BTreeMap<String, Vec<i64>>,
    rows: usize,
    start_ms: u64,
    period_ms: u64,
    shortfall_penalty: u64,
    last_period: Option<u64>,
    /// Meters report through transactions (no registered devices, so no plugins).
    meters_report: bool,
}

fn parse_profiles(text: &str) -> Result<(BTreeMap<String, Vec<i64>>, usize)> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .context("empty profile file")?
        .split(',')
        .collect();
    let mut cols: BTreeMap<String, Vec<i64>> = header
        .iter()
        .skip(2)
        .map(|h| (h.to_string(), Vec::new()))
        .collect();
    let mut rows = 0;
    for (n, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != header.len() {
            bail!(
                "profile row {} has {} cells, the header {}",
                n + 1,
                cells.len(),
                header.len()
            );
        }
        for (h, c) in header.iter().zip(&cells).skip(2) {
            let v: i64 = c
                .trim()
                .parse()
                .with_context(|| format!("profile row {}, column {h}: {c:?}", n + 1))?;
            cols.get_mut(*h).context("column")?.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        bail!("profile file has no rows");
    }
    Ok((cols, rows))
}

impl Simulation {
    /// Sets up the simulation described in genesis, if it has one.
    pub fn from_genesis(
        node: Arc<Node>,
        genesis: &Genesis,
        genesis_path: &Path,
    ) -> Result<Option<Simulation>> {
        let (Some(sim), Some(clock)) = (&genesis.simulation, &genesis.market) else {
            return Ok(None);
        };
        let path = genesis_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&sim.profiles);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let (profiles, rows) = parse_profiles(&text)?;
        let keys: BTreeMap<String, Keypair> = genesis.dev_keys().into_iter().collect();
        let mut members = Vec::new();
        for p in &sim.participants {
            if !profiles.contains_key(&p.profile) {
                bail!("participant {}: no profile column {}", p.account, p.profile);
            }
            let key = keys
                .get(&p.account)
                .with_context(|| format!("participant {} needs a dev_seed account", p.account))?;
            let meter = keys
                .get(&p.meter)
                .with_context(|| format!("meter {} needs a dev_seed account", p.meter))?;
            members.push(Member {
                cfg: p.clone(),
                key: key.clone(),
                meter: meter.clone(),
            });
        }
        let label = |l: &str| -> Result<Address> {
            node.contract_by_label(l)?
                .with_context(|| format!("no contract labelled {l}"))
        };
        let pricing = label(&sim.pricing)?;
        let market = label(&sim.market)?;
        let params: Value = serde_json::from_slice(
            &node
                .query_here(&pricing, br#"{"params":{}}"#)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        )?;
        let shortfall_penalty = params["shortfall_penalty"]
            .as_u64()
            .context("pricing params")?;
        Ok(Some(Simulation {
            node,
            market,
            members,
            profiles,
            rows,
            start_ms: clock.start(genesis.genesis_time_ms),
            period_ms: clock.period_ms,
            shortfall_penalty,
            last_period: None,
            meters_report: genesis.devices.is_none(),
        }))
    }

    /// Average W of a participant's whole fleet in profile row `row`.
    fn power(&self, m: &Member, period: u64) -> i64 {
        let row = (period % self.rows as u64) as usize;
        self.profiles[&m.cfg.profile][row].saturating_mul(m.cfg.units as i64)
    }

    fn send(&self, key: &Keypair, contract: Address, msg: Value, funds: u64) {
        let result = self
            .node
            .next_nonce(&key.address())
            .map_err(|e| e.to_string())
            .and_then(|nonce| {
                let tx = TxBody {
                    chain_id: self.node.chain_id().to_string(),
                    sender: key.address(),
                    nonce,
                    gas_limit: SIM_GAS,
                    payload: Payload::Execute {
                        contract,
                        msg: msg.to_string().into_bytes(),
                        funds,
                    },
                }
                .sign(key);
                self.node.submit(&tx.encode()).map_err(|e| e.to_string())
            });
        if let Err(e) = result {
            eprintln!(
                "simulation: a transaction of {} was refused: {e}",
                key.address()
            );
        }
    }

    /// Called after each block: at the start of each period, every participant forecasts and
    /// orders for the next period, and every meter reports the period just delivered.
    pub fn on_block(&mut self, time_ms: u64) {
        if time_ms < self.start_ms {
            return;
        }
        let period = (time_ms - self.start_ms) / self.period_ms;
        if self.last_period == Some(period) {
            return;
        }
        let first = self.last_period.is_none();
        self.last_period = Some(period);
        let target = period + 1;
        for m in &self.members {
            let w = self.power(m, target);
            let wh = (w.unsigned_abs()) / 4;
            if wh == 0 {
                continue;
            }
            let selling = m.cfg.producer && w > 0;
            // Forecasts go to the market, before the period's gate: renewable output from the
            // turbines and PV, load from the loads (a battery forecasts neither).
            let kind = match (selling && m.cfg.renewable, m.cfg.producer) {
                (true, _) => Some("supply"),
                (false, false) => Some("demand"),
                (false, true) => None,
            };
            if let Some(kind) = kind {
                self.send(
                    &m.key,
                    self.market,
                    json!({"forecast": {"period": target, "kind": kind, "wh": wh}}),
                    0,
                );
            }
            if selling {
                // Whether the energy is renewable is the meter's kind: the offer does not say.
                let bond = (wh as u128 * self.shortfall_penalty as u128).div_ceil(1000) as u64;
                self.send(
                    &m.key,
                    self.market,
                    json!({"offer": {"period": target, "wh": wh, "min_price": m.cfg.limit_price}}),
                    bond,
                );
            } else {
                // A buyer settles what it owes the grid company (tariff and over-draw its escrow
                // did not cover) before it bids again, as a household pays its bill.
                if let Some(debt) = self.debt_of(&m.key.address())
                    && debt > 0
                {
                    self.send(&m.key, self.market, json!({"pay_debt": {}}), debt);
                }
                let margin = (wh as u128 * m.cfg.limit_price as u128).div_ceil(1000) as u64;
                self.send(
                    &m.key,
                    self.market,
                    json!({"bid": {"period": target, "wh": wh, "max_price": m.cfg.limit_price}}),
                    margin,
                );
            }
        }
        if first || period == 0 || !self.meters_report {
            return;
        }
        // Meters report the period just delivered: the profile, give or take 5 %.
        let delivered = period - 1;
        for m in &self.members {
            let w = self.power(m, delivered);
            let noise = Hash32::tagged(
                b"sim-noise",
                &[&delivered.to_be_bytes(), m.cfg.account.as_bytes()],
            )
            .0[0] as i64;
            let wh = (w.unsigned_abs() as i64 / 4) * (950 + noise * 100 / 255) / 1000;
            let (produced, consumed) = if m.cfg.producer && w > 0 {
                (wh, 0)
            } else {
                (0, wh)
            };
            self.send(&m.meter, self.market, json!({"reading": {"period": delivered, "produced_wh": produced, "consumed_wh": consumed}}), 0);
        }
    }

    /// What `who` owes the grid company, in committed state.
    fn debt_of(&self, who: &Address) -> Option<u64> {
        let msg = json!({"debt": {"account": who}}).to_string();
        serde_json::from_slice::<Value>(&self.node.query_here(&self.market, msg.as_bytes()).ok()?)
            .ok()?
            .as_u64()
    }

    /// One line for a settled period.
    pub fn describe(&self, period: u64) -> Option<String> {
        let msg = json!({"period": {"period": period}}).to_string();
        let v: Value =
            serde_json::from_slice(&self.node.query_here(&self.market, msg.as_bytes()).ok()?)
                .ok()?;
        let traded = v["traded_wh"].as_u64()?;
        let renewable = v["renewable_wh"].as_u64()?;
        if traded == 0 && v["delivered_wh"].as_u64()? == 0 {
            // Periods before the simulation started (e.g. caught up after a stop).
            return None;
        }
        let row = period % self.rows as u64;
        let mu: f64 = v["mu"].as_str()?.parse().ok()?;
        let share = if traded > 0 {
            renewable as f64 * 100.0 / traded as f64
        } else {
            0.0
        };
        Some(format!(
            "period {period} ({:02}:{:02}): price {:.3} tok/kWh, μ {mu:.3}, traded {:.1} kWh ({share:.0}% renewable), delivered {:.1} kWh, settled {:.3} tok, fees {:.3} tok, subsidy {:.3} tok, penalties {:.3} tok{}",
            row / 4,
            (row % 4) * 15,
            v["clearing_price"].as_u64()? as f64 / 1e6,
            traded as f64 / 1000.0,
            v["delivered_wh"].as_u64()? as f64 / 1000.0,
            v["settled_value"].as_u64()? as f64 / 1e6,
            v["fees"].as_u64().unwrap_or(0) as f64 / 1e6,
            v["subsidy_paid"].as_u64()? as f64 / 1e6,
            v["penalties"].as_u64()? as f64 / 1e6,
            full_feeders(&v),
        ))
    }
}

/// ", full: wind-park export" for the feeders whose transformer limit bound the period.
fn full_feeders(period: &Value) -> String {
    let mut full = Vec::new();
    for f in period["feeders"].as_array().into_iter().flatten() {
        for dir in ["export", "import"] {
            let (used, limit) = (
                f[format!("{dir}_wh")].as_u64().unwrap_or(0),
                f[format!("{dir}_limit_wh")].as_u64().unwrap_or(0),
            );
            if used > 0 && used == limit {
                full.push(format!("{} {dir}", f["name"].as_str().unwrap_or("?")));
            }
        }
    }
    if full.is_empty() {
        String::new()
    } else {
        format!(", full: {}", full.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_node::TxStatus;

    #[test]
    fn profiles_parse_and_bad_rows_are_reported() {
        let (cols, rows) =
            parse_profiles("period,time,a_w,b_w\n0,00:00,5,-3\n1,00:15,7,0\n").unwrap();
        assert_eq!(rows, 2);
        assert_eq!(cols["b_w"], vec![-3, 0]);
        assert!(
            parse_profiles("period,time,a\n0,00:00\n")
                .unwrap_err()
                .to_string()
                .contains("cells")
        );
        assert!(parse_profiles("period,time,a\n0,00:00,x\n").is_err());
    }

    /// A 1,000-household community sends about 2,000 transactions a period (a forecast and an
    /// order each). Leaders take transactions by their gas limits, so those must fit in the
    /// blocks of one period with room to spare for readings and everyone else: at most half.
    #[test]
    fn a_communitys_period_of_transactions_fits_in_half_a_periods_blocks() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let genesis = Genesis::load(&repo.join("genesis/island.toml")).unwrap();
        let clock = genesis.market.clone().unwrap();
        let blocks = clock.period_ms / genesis.block_interval_ms;
        let block_gas = gridledger_vm::VmConfig::default().limits.max_block_gas;
        assert!(
            2_000 * SIM_GAS <= blocks * block_gas / 2,
            "2,000 transactions of {SIM_GAS} gas do not fit in half of {blocks} blocks of {block_gas}"
        );
    }

    #[test]
    fn the_shipped_island_profiles_load() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../genesis/profiles/island_profiles.csv");
        let (cols, rows) = parse_profiles(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(rows, 96);
        for c in [
            "wind_turbine_w",
            "pv_household_w",
            "household_load_w",
            "charging_pile_w",
            "water_plant_w",
            "battery_w",
        ] {
            assert!(cols.contains_key(c), "{c}");
        }
        assert!(
            cols["pv_household_w"][0] == 0 && cols["pv_household_w"][48] > 0,
            "PV is zero at midnight, positive at noon"
        );
    }

    /// A day of the island (96 delivery periods) on one node, the simulated participants
    /// trading across the topology, their meters reporting: after every settled period, the
    /// sum of every balance (accounts, contracts, the fee collector) equals the recorded
    /// supply, and the supply is what genesis created (the simulation neither mints nor burns).
    /// The day has network fees, feeder-level trades and a transformer at its limit; and each
    /// participant's statement over the day is its balance change, once the gas it paid, the
    /// escrow of its orders still open and the debts it paid off are counted.
    #[test]
    fn an_island_day_accounts_for_every_token_after_every_settled_period() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let path = repo.join("genesis/island.toml");
        let mut genesis = Genesis::load(&path).unwrap();
        // One node makes every block; the meters report through the simulation.
        genesis.validators.clear();
        genesis.observers.clear();
        genesis.drop_device_readings();
        let node = Node::in_memory(genesis.clone(), &repo.join("target/contracts")).unwrap();
        let mut sim = Simulation::from_genesis(node.clone(), &genesis, &path)
            .unwrap()
            .unwrap();
        let created: u128 = genesis.accounts.iter().map(|a| a.balance as u128).sum();
        let ledger = gridledger_node::testing::balances_and_supply;
        let clock = genesis.market.clone().unwrap();
        let start = clock.start(genesis.genesis_time_ms);
        let market = sim.market;
        let query = |msg: Value| -> Value {
            serde_json::from_slice(&node.query(&market, msg.to_string().as_bytes()).unwrap())
                .unwrap()
        };
        let topology = query(json!({"grid": {"period": 5}}));
        assert_eq!(
            topology["feeders"][0]["name"], "wind-park",
            "the market has the topology: {topology}"
        );
        let addresses = genesis.addresses();
        let participants: Vec<Address> = genesis
            .simulation
            .as_ref()
            .unwrap()
            .participants
            .iter()
            .map(|p| addresses[&p.account])
            .collect();
        let mut gas: BTreeMap<Address, u128> = BTreeMap::new();
        let (mut settled, mut traded_wh, mut fees, mut local_trades, mut full) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut last_settled = 0;
        let mut t = genesis.genesis_time_ms;
        while settled < 96 {
            t += genesis.block_interval_ms;
            assert!(
                t < start + 100 * clock.period_ms,
                "96 periods settle in a day and a bit"
            );
            let block = node.produce_block(t).unwrap();
            // The gas each sender paid.
            if let Some(h) = block.tx_hashes.first()
                && let TxStatus::Included {
                    block: b, receipts, ..
                } = node.tx_status(h).unwrap()
            {
                let fee: BTreeMap<_, _> = receipts.iter().map(|r| (r.tx_hash, r.fee)).collect();
                // The simulation's gas limits are tight (they cost block space), not too tight.
                let sent: std::collections::HashSet<_> = b.txs.iter().map(|t| t.hash()).collect();
                for r in receipts.iter().filter(|r| sent.contains(&r.tx_hash)) {
                    assert!(
                        r.error
                            .as_ref()
                            .is_none_or(|e| e.code != gridledger_types::ErrorCode::OutOfGas),
                        "a simulated transaction ran out of its {SIM_GAS} gas: {r:?}"
                    );
                }
                for tx in &b.txs {
                    *gas.entry(tx.body.sender).or_default() +=
                        fee.get(&tx.hash()).copied().unwrap_or(0) as u128;
                }
            }
            sim.on_block(t);
            for period in crate::devnet::settled_periods(&block) {
                let (sum, supply) = ledger(&node);
                assert_eq!(sum, supply, "period {period}: balances and supply differ");
                assert_eq!(
                    supply, created,
                    "period {period}: supply moved without mint or burn"
                );
                let v = query(json!({"period": {"period": period}}));
                traded_wh += v["traded_wh"].as_u64().unwrap_or(0);
                fees += v["fees"].as_u64().unwrap_or(0);
                assert_eq!(
                    v["buyers_paid"].as_u64(),
                    Some(v["sellers_received"].as_u64().unwrap() + v["fees"].as_u64().unwrap()),
                    "period {period}: buyers paid what sellers received plus fees"
                );
                if !full_feeders(&v).is_empty() {
                    full += 1;
                }
                let trades = query(json!({"trades": {"period": period, "limit": 1000}}));
                local_trades += trades
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| t["level"] == "feeder")
                    .count() as u64;
                settled += 1;
                last_settled = last_settled.max(period);
            }
        }
        assert!(traded_wh > 0, "the day had trades");
        let seen = format!("fees {fees}, local trades {local_trades}, periods at a limit {full}");
        assert!(fees > 0, "the day's trades paid network fees: {seen}");
        assert!(
            local_trades > 0,
            "some trades stayed inside a feeder: {seen}"
        );
        assert!(full > 0, "a transformer limit bound some periods: {seen}");
        // Statements: the day's net, less gas, less escrow still in open orders, is the
        // balance change since genesis.
        let now_period = (t - start) / clock.period_ms;
        for who in &participants {
            let st = query(
                json!({"statement": {"account": who, "first_period": 0, "last_period": last_settled}}),
            );
            let mut open: u128 = 0;
            for period in 0..=now_period + 2 {
                let orders = query(json!({"orders": {"period": period, "limit": 1000}}));
                open += orders
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|o| o["owner"] == json!(who))
                    .map(|o| o["escrow"].as_u64().unwrap() as u128)
                    .sum::<u128>();
            }
            let genesis_balance = genesis
                .accounts
                .iter()
                .find(|a| addresses[&a.name] == *who)
                .unwrap()
                .balance as i128;
            let now = node.account(who).unwrap().0.balance as i128;
            // Debts the day recorded and the participant paid since (pay_debt transactions).
            let owed = query(json!({"debt": {"account": who}})).as_u64().unwrap() as i128;
            let paid_debt = st["totals"]["debt_recorded"].as_u64().unwrap() as i128 - owed;
            assert_eq!(
                now - genesis_balance,
                st["net"].as_i64().unwrap() as i128
                    - gas.get(who).copied().unwrap_or(0) as i128
                    - open as i128
                    - paid_debt,
                "statement of {who}: {st}"
            );
        }
    }
}
