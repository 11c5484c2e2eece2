//! Statements: what each settled period did for each participant, line by line.
//!
//! Settlement records every participant's line items per period (energy sold and bought,
//! their value at the energy price, each fee it paid, subsidy, penalties, grid energy,
//! points), and for the grid company and the fee collector what they received. A statement
//! sums them over a range of periods. `net` is what those periods moved into (positive) or
//! out of the account's balance: escrow posted and refunded cancels out, and a debt recorded
//! is owed, not paid, so it is listed but not in `net`.
//!
//! Lines are stored with postcard, field by field: a new field changes the stored layout
//! (a chain with older lines needs a migration; `serde(default)` would not help).

use gridledger_sdk::Order as Iter;
use gridledger_sdk::prelude::*;

/// Most periods one statement covers (a devnet day of 5-second periods is 17,280).
pub const MAX_STATEMENT_PERIODS: u64 = 20_000;
/// Most periods a statement lists one by one (the totals cover them all).
pub const MAX_LISTED_PERIODS: usize = 500;

/// A participant's line items, micro-tokens and Wh.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lines {
    /// Contracted as seller, and of that delivered.
    pub sold_wh: u64,
    pub delivered_wh: u64,
    /// Contracted as buyer, and of that delivered to it.
    pub bought_wh: u64,
    pub received_wh: u64,
    /// Delivered sales and purchases at their energy prices.
    pub sales: u64,
    pub purchases: u64,
    /// Fees it paid, as buyer and as seller.
    pub wheeling_fees: u64,
    pub transaction_fees: u64,
    pub congestion_fees: u64,
    pub subsidy: u64,
    /// For energy it sold and did not deliver.
    pub shortfall_penalties: u64,
    /// The grid tariff for energy it bought but was not delivered, and for over-draw.
    pub grid_energy: u64,
    pub overdraw_penalties: u64,
    /// Tariff and penalties its escrow did not cover (owed, not in `net`).
    pub debt_recorded: u64,
    pub points: u64,
    /// Fees it received: wheeling and congestion (the grid company), transaction fees (the
    /// fee collector).
    pub fees_received: u64,
    /// Grid tariffs and penalties it received (the grid company).
    pub grid_receipts: u64,
}

impl Lines {
    /// What these lines moved into (+) or out of (−) the balance.
    pub fn net(&self) -> i128 {
        let i = |v: u64| v as i128;
        i(self.sales) + i(self.subsidy) + i(self.fees_received) + i(self.grid_receipts)
            - i(self.purchases)
            - i(self.wheeling_fees)
            - i(self.transaction_fees)
            - i(self.congestion_fees)
            - i(self.shortfall_penalties)
            - i(self.grid_energy)
            - i(self.overdraw_penalties)
    }

    fn add(&mut self, o: &Lines) {
        self.sold_wh += o.sold_wh;
        self.delivered_wh += o.delivered_wh;
        self.bought_wh += o.bought_wh;
        self.received_wh += o.received_wh;
        self.sales += o.sales;
        self.purchases += o.purchases;
        self.wheeling_fees += o.wheeling_fees;
        self.transaction_fees += o.transaction_fees;
        self.congestion_fees += o.congestion_fees;
        self.subsidy += o.subsidy;
        self.shortfall_penalties += o.shortfall_penalties;
        self.grid_energy += o.grid_energy;
        self.overdraw_penalties += o.overdraw_penalties;
        self.debt_recorded += o.debt_recorded;
        self.points += o.points;
        self.fees_received += o.fees_received;
        self.grid_receipts += o.grid_receipts;
    }
}

/// The `statement` query's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub account: Address,
    pub first_period: u64,
    pub last_period: u64,
    /// Periods in the range in which the account had line items.
    pub periods: u64,
    pub totals: Lines,
    pub net: i64,
    /// Volume-weighted energy prices, micro-tokens per kWh (0 without energy).
    pub average_sale_price: u64,
    pub average_purchase_price: u64,
    /// The first [`MAX_LISTED_PERIODS`] periods with line items, with each one's net.
    pub by_period: Vec<PeriodLines>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodLines {
    pub period: u64,
    pub lines: Lines,
    pub net: i64,
}

/// (account, period) → its line items in that settled period.
const LINES: Map<(Address, u64), Lines> = Map::new("stmt");

/// Records settlement's line items of one period.
pub fn record(period: u64, parties: &std::collections::BTreeMap<Address, Lines>) -> Result<()> {
    for (who, lines) in parties {
        LINES.save(&(*who, period), lines)?;
    }
    Ok(())
}

/// `account`'s statement over settled periods `first..=last`.
pub fn of(account: &Address, first: u64, last: u64) -> Result<Statement> {
    ensure!(first <= last, "the first period comes before the last");
    ensure!(
        last - first < MAX_STATEMENT_PERIODS,
        "a statement covers at most {MAX_STATEMENT_PERIODS} periods"
    );
    let iter = match first.checked_sub(1) {
        Some(before) => LINES.range(Some(&(*account, before)), Iter::Ascending),
        None => LINES.prefixed(account, Iter::Ascending),
    };
    let mut s = Statement {
        account: *account,
        first_period: first,
        last_period: last,
        ..Default::default()
    };
    for r in iter {
        let ((who, period), lines) = r?;
        if who != *account || period > last {
            break;
        }
        s.periods += 1;
        s.totals.add(&lines);
        if s.by_period.len() < MAX_LISTED_PERIODS {
            s.by_period.push(PeriodLines {
                period,
                net: lines.net() as i64,
                lines,
            });
        }
    }
    s.net = s.totals.net() as i64;
    let avg = |value: u64, wh: u64| {
        if wh == 0 {
            0
        } else {
            (value as u128 * 1000 / wh as u128) as u64
        }
    };
    s.average_sale_price = avg(s.totals.sales, s.totals.delivered_wh);
    s.average_purchase_price = avg(s.totals.purchases, s.totals.received_wh);
    Ok(s)
}
