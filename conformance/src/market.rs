//! Market scenarios: a genesis (TOML, contracts from the fixtures beside it) and blocks of
//! transactions, with the expected receipts (including the chain's own period calls), events,
//! balances and state root after every block.
//!
//! Input format, per scenario:
//! - `genesis`: the genesis file's text; its `wasm` entries name fixture files in this directory.
//! - `steps[]`: `time_ms` of the block and `txs[]`, each `{signer, call: {contract, msg, funds}}`
//!   (an execute on the contract with that genesis label; `msg` is the JSON message) or
//!   `{signer, payload}` (any payload in its JSON form, e.g. a governance proposal), with
//!   `gas_limit`. Each signer's nonces count from 0 across the scenario. A step is one block
//!   with exactly its transactions, in the listed order.
//! - `steps[].expected`: `height`, `state_root`, `receipts[]` (`success`, `error_code`,
//!   `error_message`, `gas_used`, `fee`, `events[]` of `{contract, kind, attributes}`), and
//!   `balances` of every genesis account and contract by name/label.

use anyhow::{Context, Result, bail};
use gridledger_node::Node;
use gridledger_node::genesis::Genesis;
use gridledger_types::{Address, Keypair, Payload, Receipt, TxBody};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Runs a scenario's inputs and returns its steps with `expected` filled in from this node.
pub fn run(scenario: &Value, dir: &Path) -> Result<Vec<Value>> {
    let genesis: Genesis = toml::from_str(scenario["genesis"].as_str().context("genesis text")?)?;
    let node = Node::in_memory(genesis.clone(), dir)?;
    let keys: BTreeMap<String, Keypair> = genesis.dev_keys().into_iter().collect();
    let mut names: BTreeMap<String, Address> = genesis.addresses();
    for c in &genesis.contracts {
        if let Some(a) = node.contract_by_label(&c.label)? {
            names.insert(c.label.clone(), a);
        }
    }
    let mut out = Vec::new();
    let mut nonces: BTreeMap<Address, u64> = BTreeMap::new();
    for step in scenario["steps"].as_array().context("steps")? {
        let mut submitted = Vec::new();
        for tx in step["txs"].as_array().context("txs")? {
            let signer = tx["signer"].as_str().context("signer")?;
            let key = keys
                .get(signer)
                .with_context(|| format!("no dev key for {signer}"))?;
            let payload = match tx.get("payload") {
                Some(p) => serde_json::from_value(p.clone()).context("payload")?,
                None => {
                    let call = &tx["call"];
                    let label = call["contract"].as_str().context("contract")?;
                    let contract = *names
                        .get(label)
                        .with_context(|| format!("no contract {label}"))?;
                    Payload::Execute {
                        contract,
                        msg: call["msg"].to_string().into_bytes(),
                        funds: call["funds"].as_u64().unwrap_or(0),
                    }
                }
            };
            let body = TxBody {
                chain_id: genesis.chain_id.clone(),
                sender: key.address(),
                nonce: {
                    let n = nonces.entry(key.address()).or_insert(0);
                    *n += 1;
                    *n - 1
                },
                gas_limit: tx["gas_limit"].as_u64().context("gas_limit")?,
                payload,
            };
            submitted.push(body.sign(key));
        }
        let hashes: Vec<_> = submitted.iter().map(|t| t.hash()).collect();
        let block = node.execute_block(step["time_ms"].as_u64().context("time_ms")?, submitted)?;
        if block.tx_hashes != hashes {
            bail!("not every transaction of the step was included");
        }
        let by_address: BTreeMap<Address, String> =
            names.iter().map(|(n, a)| (*a, n.clone())).collect();
        let balances: BTreeMap<String, u64> = names
            .iter()
            .map(|(n, a)| {
                (
                    n.clone(),
                    node.account(a).map(|(acct, _)| acct.balance).unwrap_or(0),
                )
            })
            .collect();
        let mut s = step.clone();
        s["expected"] = json!({
            "height": block.header.height,
            "state_root": block.header.state_root.to_hex(),
            "receipts": block.receipts.iter().map(|r| receipt_json(r, &by_address)).collect::<Vec<_>>(),
            "balances": balances,
        });
        out.push(s);
    }
    Ok(out)
}

fn receipt_json(r: &Receipt, names: &BTreeMap<Address, String>) -> Value {
    json!({
        "success": r.is_success(),
        "error_code": r.error.as_ref().map(|e| e.code),
        "error_message": r.error.as_ref().map(|e| e.message.clone()),
        "gas_used": r.gas_used,
        "fee": r.fee,
        "events": r.events.iter().map(|e| json!({
            "contract": e.contract.map(|c| names.get(&c).cloned().unwrap_or_else(|| c.to_hex())),
            "kind": e.kind,
            "attributes": e.attributes,
        })).collect::<Vec<_>>(),
    })
}

const T0: u64 = 1_767_225_600_000;
const P: u64 = 60_000;

fn call(signer: &str, contract: &str, msg: Value, funds: u64) -> Value {
    json!({"signer": signer, "gas_limit": 20_000_000, "call": {"contract": contract, "msg": msg, "funds": funds}})
}

/// The scenarios' inputs (their expected outputs come from running them).
pub fn scenario_inputs() -> Vec<Value> {
    vec![full_period(), governance_and_pay_as_bid()]
}

fn genesis_text(extra: &str) -> String {
    let mut g = format!(
        r#"chain_id = "conformance-market"
genesis_time_ms = {T0}
vm_config_hash = "{vm}"
gas_price_per_kgas = 1

[[accounts]]
name = "grid"
dev_seed = "conformance grid"
balance = 1000000000000
roles = ["grid_company"]

[[accounts]]
name = "regulator"
dev_seed = "conformance regulator"
balance = 1000000000
roles = ["regulator"]

[[accounts]]
name = "wind"
dev_seed = "conformance wind"
balance = 1000000000

[[accounts]]
name = "pv"
dev_seed = "conformance pv"
balance = 1000000000

[[accounts]]
name = "house"
dev_seed = "conformance house"
balance = 1000000000

[[accounts]]
name = "pump"
dev_seed = "conformance pump"
balance = 1000000000

[[accounts]]
name = "meter-wind"
dev_seed = "conformance meter-wind"
balance = 100000000
roles = ["device"]

[[accounts]]
name = "meter-pv"
dev_seed = "conformance meter-pv"
balance = 100000000
roles = ["device"]

[[accounts]]
name = "meter-house"
dev_seed = "conformance meter-house"
balance = 100000000
roles = ["device"]

[[accounts]]
name = "meter-pump"
dev_seed = "conformance meter-pump"
balance = 100000000
roles = ["device"]

[[contracts]]
label = "pricing"
wasm = "pricing.wasm"
creator = "regulator"
admin = "governance"
msg = '{{"admin":"{{governance}}","params":{{"f_min":100000,"f_max":400000,"reference_price":200000,"mu_min":"0.5","mu_max":"1.5","mu_slope":"1","shortfall_penalty":50000,"overdraw_penalty":40000,"grid_tariff":300000,"mechanism":"pay_as_clear"}}}}'

[[contracts]]
label = "market"
wasm = "market.wasm"
creator = "grid"
admin = "governance"
funds = 10000000
msg = '{{"pricing":"{{contract:pricing}}","grid_company":"{{account:grid}}","admin":"{{account:grid}}","start_ms":{{market_start_ms}},"period_ms":{{period_ms}},"devices":[{{"device":"{{account:meter-wind}}","participant":"{{account:wind}}","kind":"wind_turbine","rated_power_w":100000000}},{{"device":"{{account:meter-pv}}","participant":"{{account:pv}}","kind":"rooftop_pv","rated_power_w":100000000}},{{"device":"{{account:meter-house}}","participant":"{{account:house}}","kind":"household_load","rated_power_w":100000000}},{{"device":"{{account:meter-pump}}","participant":"{{account:pump}}","kind":"water_plant","rated_power_w":100000000}}]}}'

[market]
period_ms = {P}
start_ms = {start}
sudo_contracts = ["market"]
sudo_gas = 2000000000
stats_contract = "market"
"#,
        vm = gridledger_vm::VmConfig::default().hash().to_hex(),
        start = T0 + P,
    );
    g.push_str(extra);
    g
}

fn full_period() -> Value {
    let genesis = genesis_text("");
    let bid = |who: &str, wh: u64, price: u64, funds: u64| {
        call(
            who,
            "market",
            json!({"bid": {"period": 1, "wh": wh, "max_price": price}}),
            funds,
        )
    };
    // Whether an offer is renewable is the seller's meter's kind, not the offer's say.
    let offer = |who: &str, wh: u64, price: u64, _renewable: bool, funds: u64| {
        call(
            who,
            "market",
            json!({"offer": {"period": 1, "wh": wh, "min_price": price}}),
            funds,
        )
    };
    let reading = |meter: &str, p: u64, c: u64| {
        call(
            meter,
            "market",
            json!({"reading": {"period": 1, "produced_wh": p, "consumed_wh": c}}),
            0,
        )
    };
    let steps = vec![
        json!({"description": "forecasts, orders and every kind of bad order, before gate closure", "time_ms": T0 + 1_000, "txs": [
            call("wind", "market", json!({"forecast": {"period": 1, "kind": "supply", "wh": 1000}}), 0),
            call("house", "market", json!({"forecast": {"period": 1, "kind": "demand", "wh": 1200}}), 0),
            call("pump", "pricing", json!({"forecast": {"period": 1, "kind": "demand", "wh": 1000000000000u64}}), 0),
            call("house", "market", json!({"forecast": {"period": 1, "kind": "supply", "wh": 10}}), 0),
            call("pv", "market", json!({"offer": {"period": 1, "wh": 100, "min_price": 160000, "renewable": false}}), 5_000),
            bid("house", 5, 250_000, 2),
            offer("wind", 1000, 150_000, true, 50_000),
            offer("pv", 500, 160_000, false, 25_000),
            bid("house", 800, 250_000, 200_000),
            bid("pump", 400, 200_000, 80_000),
            bid("pump", 0, 200_000, 0),
            bid("pump", 100, 500_000, 50_000),
            offer("pv", 100, 50_000, false, 5_000),
            bid("pump", 100, 200_000, 1),
            bid("house", 100, 300_000, 30_000),
            call("house", "market", json!({"cancel": {"period": 1, "id": 4}}), 0),
            call("pump", "market", json!({"cancel": {"period": 1, "id": 0}}), 0),
            reading("meter-wind", 900, 0),
            call("wind", "market", json!({"register_device": {"device": "00".repeat(32), "participant": "00".repeat(32), "kind": "wind_turbine", "rated_power_w": 1000}}), 0),
            call("regulator", "pricing", json!({"set_params": {"params": {"f_min":1,"f_max":2,"reference_price":1,"mu_min":"0.5","mu_max":"1.5","mu_slope":"1","shortfall_penalty":0,"overdraw_penalty":0,"grid_tariff":0,"mechanism":"pay_as_clear"}}}), 0),
            call("house", "market", json!({"settle": {"period": 1}}), 0),
        ]}),
        json!({"description": "period 1 begins: a late bid is refused, then the chain clears periods 0 and 1", "time_ms": T0 + 2 * P, "txs": [
            bid("house", 100, 250_000, 25_000),
        ]}),
        json!({"description": "period 1 delivered: readings, a duplicate, a reading from a non-meter, an early settlement", "time_ms": T0 + 3 * P + 1, "txs": [
            reading("meter-wind", 900, 0),
            reading("meter-pv", 500, 0),
            reading("meter-house", 0, 850),
            reading("meter-pump", 0, 400),
            reading("meter-wind", 950, 0),
            call("house", "market", json!({"reading": {"period": 1, "produced_wh": 0, "consumed_wh": 1}}), 0),
            call("house", "market", json!({"settle": {"period": 1}}), 0),
        ]}),
        json!({"description": "period 3 begins: the chain settles period 1", "time_ms": T0 + 4 * P, "txs": []}),
        json!({"description": "settling again is refused; the pool can be funded; queries of the results", "time_ms": T0 + 4 * P + 1_000, "txs": [
            call("house", "market", json!({"settle": {"period": 1}}), 0),
            call("grid", "market", json!({"fund_pool": {}}), 1_000_000),
            call("grid", "market", json!({"fund_pool": {}}), 0),
        ]}),
    ];
    json!({"description": "one full market period: pricing, orders, clearing, readings, settlement, with the error paths", "genesis": genesis, "steps": steps})
}

fn governance_and_pay_as_bid() -> Value {
    let genesis = genesis_text(
        r#"
[[accounts]]
name = "regulator-2"
dev_seed = "conformance regulator-2"
balance = 1000000000
roles = ["regulator"]

[[accounts]]
name = "meter-extra"
dev_seed = "conformance meter-extra"
balance = 100000000
roles = ["device"]

[governance]
quorum = 2
"#,
    );
    let g: Genesis = toml::from_str(&genesis).expect("scenario genesis");
    let addr = g.addresses();
    // Genesis contracts' addresses: creator and index from the top of the nonce range.
    let pricing = Address::contract(&addr["regulator"], u64::MAX);
    let params = json!({"params": {"f_min":100000,"f_max":400000,"reference_price":200000,"mu_min":"0.5","mu_max":"1.5","mu_slope":"1","shortfall_penalty":50000,"overdraw_penalty":40000,"grid_tariff":300000,"mechanism":"pay_as_bid"}});
    let propose = serde_json::to_value(Payload::Propose {
        action: gridledger_types::GovAction::Execute {
            contract: pricing,
            msg: json!({ "set_params": params }).to_string().into_bytes(),
        },
        enact_height: 3,
    })
    .expect("payload");
    let vote = |approve| {
        serde_json::to_value(Payload::Vote {
            proposal: 0,
            approve,
        })
        .expect("payload")
    };
    let tx = |signer: &str, payload: Value| json!({"signer": signer, "gas_limit": 20_000_000, "payload": payload});
    let bid = |who: &str, wh: u64, price: u64| {
        call(
            who,
            "market",
            json!({"bid": {"period": 1, "wh": wh, "max_price": price}}),
            wh * price / 1000,
        )
    };
    let steps = vec![
        json!({"description": "a regulator proposes pay-as-bid; an outsider cannot vote; the second regulator passes it; meter registration; oversized and unaffordable orders", "time_ms": T0 + 1_000, "txs": [
            tx("regulator", propose),
            tx("wind", vote(true)),
            tx("regulator", vote(true)),
            tx("regulator-2", vote(true)),
            call("grid", "market", json!({"register_device": {"device": addr["meter-extra"].to_hex(), "participant": addr["pv"].to_hex(), "kind": "rooftop_pv", "rated_power_w": 100000000}}), 0),
            call("wind", "market", json!({"offer": {"period": 1, "wh": 1_000_000_001u64, "min_price": 150000}}), 0),
            call("pump", "market", json!({"bid": {"period": 1, "wh": 10_000_000, "max_price": 200000}}), 2_000_000_000),
        ]}),
        json!({"description": "waiting for the announced height", "time_ms": T0 + 2_000, "txs": []}),
        json!({"description": "enacted at height 3; orders under pay-as-bid", "time_ms": T0 + 3_000, "txs": [
            call("wind", "market", json!({"offer": {"period": 1, "wh": 1000, "min_price": 100000}}), 50_000),
            bid("house", 300, 300_000),
            bid("pump", 300, 200_000),
        ]}),
        json!({"description": "period 1 clears pay-as-bid; cancelling after gate closure is refused", "time_ms": T0 + 2 * P, "txs": [
            call("house", "market", json!({"cancel": {"period": 1, "id": 1}}), 0),
        ]}),
        json!({"description": "readings, one through the newly registered meter", "time_ms": T0 + 3 * P + 1, "txs": [
            call("meter-wind", "market", json!({"reading": {"period": 1, "produced_wh": 600, "consumed_wh": 0}}), 0),
            call("meter-extra", "market", json!({"reading": {"period": 1, "produced_wh": 0, "consumed_wh": 0}}), 0),
        ]}),
        json!({"description": "period 1 settles with a shortfall; a late reading is refused", "time_ms": T0 + 4 * P, "txs": []}),
        json!({"description": "a reading after settlement", "time_ms": T0 + 4 * P + 1_000, "txs": [
            call("meter-house", "market", json!({"reading": {"period": 1, "produced_wh": 0, "consumed_wh": 300}}), 0),
        ]}),
    ];
    json!({"description": "governance switches the mechanism to pay-as-bid; a period under it with a seller shortfall", "genesis": genesis, "steps": steps})
}
