//! Where a period's orders and trades are kept.
//!
//! Orders are written one entry each as they are placed (`ord`, keyed `(period, id)`). Clearing
//! decides every order's fill and escrow at once, and settlement changes them all again, so
//! from clearing on a period's orders live in pages of [`BOOK_PAGE`] (`book`, keyed
//! `(period, page)`, orders in id order) and its trades in pages of [`TRADE_PAGE`] (`trp`,
//! keyed `(period, page)`, trades in clearing order).
//!
//! Why pages: a state write costs a validator far more than its bytes (a Jellyfish leaf and its
//! path to the root, then table inserts at commit: about 15 µs a write where the benchmark ran,
//! BENCHMARKS.md). One entry per order and per trade made a period of 10,000 orders 15,000
//! writes, 230 ms of the boundary block's 270 ms; in pages it is about 240.
//!
//! Invariant: once a period has `book` pages, they hold all of its orders and are the only
//! current record of them (a cleared period takes no new order and no cancellation, so the
//! set never changes); its `ord` entries stay as they were placed. Read a period's orders
//! through [`orders`], never `ord` directly.
//!
//! Markets deployed before pages kept each trade under `trd` (period, index) and rewrote
//! `ord`: code upgraded onto such a market would have to move every cleared, unsettled
//! period's `trd` entries into `trp` pages and its orders into `book` first (today the market
//! refuses migration, so no chain holds both layouts).

use crate::{ORDERS, Order, Trade};
use gridledger_sdk::Order as Iter;
use gridledger_sdk::prelude::*;

/// Orders per `book` entry: a page of 128 orders is about 8 KB.
pub const BOOK_PAGE: usize = 128;
/// Trades per `trp` entry: a page of 32 trades is about 5 KB, small enough that a proof of
/// one trade (its page) stays a few kilobytes.
pub const TRADE_PAGE: u64 = 32;

const BOOK: Map<(u64, u64), Vec<Order>> = Map::new("book");
const TRADES: Map<(u64, u64), Vec<Trade>> = Map::new("trp");

/// The state key's page of the trade at `index` of its period.
pub fn trade_page(index: u64) -> u64 {
    index / TRADE_PAGE
}

/// The period's orders in id order, at most `limit`: its book once it has cleared, the orders
/// as placed before.
pub fn orders(period: u64, limit: usize) -> Result<Vec<Order>> {
    let mut out = Vec::new();
    for page in BOOK.prefixed(&period, Iter::Ascending) {
        if out.len() >= limit {
            break;
        }
        out.extend(page?.1);
    }
    if out.is_empty() {
        // Not cleared (or cleared empty, when `ord` holds nothing either).
        return ORDERS
            .prefixed(&period, Iter::Ascending)
            .take(limit)
            .map(|r| r.map(|(_, o)| o))
            .collect();
    }
    out.truncate(limit);
    Ok(out)
}

/// Writes the period's whole book (`orders` in id order) as its current record.
pub fn save_orders(period: u64, orders: &[Order]) -> Result<()> {
    for (n, page) in orders.chunks(BOOK_PAGE).enumerate() {
        BOOK.save(&(period, n as u64), &page.to_vec())?;
    }
    Ok(())
}

/// The period's trades in clearing order (a trade's index is its place), at most `limit`.
pub fn trades(period: u64, limit: usize) -> Result<Vec<Trade>> {
    let mut out = Vec::new();
    for page in TRADES.prefixed(&period, Iter::Ascending) {
        if out.len() >= limit {
            break;
        }
        out.extend(page?.1);
    }
    out.truncate(limit);
    Ok(out)
}

/// Writes all of the period's trades, in clearing order.
pub fn save_trades(period: u64, trades: &[Trade]) -> Result<()> {
    for (n, page) in trades.chunks(TRADE_PAGE as usize).enumerate() {
        TRADES.save(&(period, n as u64), &page.to_vec())?;
    }
    Ok(())
}
