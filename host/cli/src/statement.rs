//! `gridledger statement ADDRESS --day YYYY-MM-DD`: a participant's market statement for a day
//! of chain time (UTC), from the node's `/v1/statements` route; `--csv` prints one row per
//! period and a total row.

use crate::NodeArg;
use crate::client::Client;
use anyhow::Result;
use clap::Args;
use gridledger_types::Address;
use serde_json::Value;

#[derive(Args)]
pub struct StatementArgs {
    address: Address,
    /// The day, YYYY-MM-DD (UTC, chain time).
    #[arg(long)]
    day: String,
    /// Comma-separated values: a row per settled period, then the total.
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    node: NodeArg,
}

/// The line items, in the order CSV columns and the text list them.
const LINES: [&str; 18] = [
    "sold_wh",
    "delivered_wh",
    "bought_wh",
    "received_wh",
    "sales",
    "purchases",
    "wheeling_fees",
    "transaction_fees",
    "congestion_fees",
    "subsidy",
    "shortfall_penalties",
    "grid_energy",
    "overdraw_penalties",
    "debt_recorded",
    "points",
    "fees_received",
    "grid_receipts",
    "net",
];

pub fn run(args: StatementArgs) -> Result<()> {
    let s = Client::new(&args.node.node)
        .get(&format!("/v1/statements/{}?day={}", args.address, args.day))?;
    print!("{}", if args.csv { csv(&s) } else { text(&s) });
    Ok(())
}

fn cell(lines: &Value, net: &Value, name: &str) -> String {
    if name == "net" {
        return net.as_i64().unwrap_or(0).to_string();
    }
    lines[name].as_u64().unwrap_or(0).to_string()
}

pub fn csv(s: &Value) -> String {
    let mut out = format!("period,{}\n", LINES.join(","));
    for p in s["by_period"].as_array().into_iter().flatten() {
        let row: Vec<String> = LINES
            .iter()
            .map(|l| cell(&p["lines"], &p["net"], l))
            .collect();
        out += &format!("{},{}\n", p["period"], row.join(","));
    }
    let total: Vec<String> = LINES
        .iter()
        .map(|l| cell(&s["totals"], &s["net"], l))
        .collect();
    out += &format!("total,{}\n", total.join(","));
    out
}

fn text(s: &Value) -> String {
    let t = &s["totals"];
    let tok = |v: &Value| v.as_u64().unwrap_or(0) as f64 / 1e6;
    let kwh = |v: &Value| v.as_u64().unwrap_or(0) as f64 / 1e3;
    let periods = match (s["first_period"].as_u64(), s["last_period"].as_u64()) {
        (Some(a), Some(b)) => format!("periods {a} to {b}"),
        _ => "no market periods".into(),
    };
    format!(
        "statement of {} for {} ({periods}; {} with activity, settled)\n\
         sold       {:>12.3} kWh contracted, {:.3} kWh delivered, average {:.6} tok/kWh, {:.6} tok\n\
         bought     {:>12.3} kWh contracted, {:.3} kWh delivered, average {:.6} tok/kWh, {:.6} tok\n\
         fees       wheeling {:.6} tok, transaction {:.6} tok, congestion {:.6} tok\n\
         subsidy    {:.6} tok\n\
         penalties  shortfall {:.6} tok, over-draw {:.6} tok; grid energy {:.6} tok\n\
         debt       {:.6} tok recorded (owed, not in net)\n\
         points     {}\n\
         received   fees {:.6} tok, tariffs and penalties {:.6} tok (the grid company, the fee collector)\n\
         net        {:+.6} tok\n",
        s["account"].as_str().unwrap_or("?"),
        s["day"].as_str().unwrap_or("?"),
        s["periods"],
        kwh(&t["sold_wh"]),
        kwh(&t["delivered_wh"]),
        tok(&s["average_sale_price"]),
        tok(&t["sales"]),
        kwh(&t["bought_wh"]),
        kwh(&t["received_wh"]),
        tok(&s["average_purchase_price"]),
        tok(&t["purchases"]),
        tok(&t["wheeling_fees"]),
        tok(&t["transaction_fees"]),
        tok(&t["congestion_fees"]),
        tok(&t["subsidy"]),
        tok(&t["shortfall_penalties"]),
        tok(&t["overdraw_penalties"]),
        tok(&t["grid_energy"]),
        tok(&t["debt_recorded"]),
        t["points"].as_u64().unwrap_or(0),
        tok(&t["fees_received"]),
        tok(&t["grid_receipts"]),
        s["net"].as_i64().unwrap_or(0) as f64 / 1e6,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_has_a_row_per_period_and_a_total() {
        let s = json!({
            "by_period": [{"period": 7, "lines": {"sales": 5, "sold_wh": 10}, "net": 5},
                          {"period": 9, "lines": {"purchases": 3}, "net": -3}],
            "totals": {"sales": 5, "sold_wh": 10, "purchases": 3},
            "net": 2,
        });
        let out = csv(&s);
        let rows: Vec<&str> = out.lines().collect();
        assert_eq!(rows.len(), 4);
        assert!(rows[0].starts_with("period,sold_wh,") && rows[0].ends_with(",net"));
        assert!(rows[1].starts_with("7,10,") && rows[1].ends_with(",5"));
        assert!(rows[2].ends_with(",-3"));
        assert!(rows[3].starts_with("total,10,") && rows[3].ends_with(",2"));
        assert_eq!(rows[1].split(',').count(), LINES.len() + 1);
    }
}
