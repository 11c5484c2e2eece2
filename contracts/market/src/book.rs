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
use serde::de::DeserializeOwned;

/// Orders per `book` entry: a page of 128 orders is about 8 KB.
pub const BOOK_PAGE: usize = 128;
/// Trades per `trp` entry: a page of 32 trades is about 5 KB, small enough that a proof of
/// one trade (its page) stays a few kilobytes.
pub const TRADE_PAGE: u64 = 32;

const BOOK: Map<(u64, u64), Vec<Order>> = Map::new("book");
const TRADES: Map<(u64, u64), Vec<Trade>> = Map::new("trp");

/// The period's orders in id order, at most `limit`: its book once it has cleared, the orders
/// as placed before.
pub fn orders(period: u64, limit: usize) -> Result<Vec<Order>> {
    let out = load(&BOOK, period, limit)?;
    if out.is_empty() {
        // Not cleared (or cleared empty, when `ord` holds nothing either). Sized by the
        // period's count up front: clearing loads thousands.
        let count = crate::ORDER_COUNT.may_load(&period)?.unwrap_or(0) as usize;
        let mut placed = Vec::with_capacity(count.min(limit));
        for entry in ORDERS.prefixed(&period, Iter::Ascending).take(limit) {
            placed.push(entry?.1);
        }
        return Ok(placed);
    }
    Ok(out)
}

/// Writes the period's whole book (`orders` in id order) as its current record.
pub fn save_orders(period: u64, orders: &[Order]) -> Result<()> {
    save(&BOOK, period, orders, BOOK_PAGE)
}

/// The period's trades in clearing order (a trade's index is its place), at most `limit`.
pub fn trades(period: u64, limit: usize) -> Result<Vec<Trade>> {
    load(&TRADES, period, limit)
}

/// Writes all of the period's trades, in clearing order.
pub fn save_trades(period: u64, trades: &[Trade]) -> Result<()> {
    save(&TRADES, period, trades, TRADE_PAGE as usize)
}

/// The first `limit` items of a period's pages, in order (only the pages they are on).
fn load<T: Serialize + DeserializeOwned>(
    pages: &Map<(u64, u64), Vec<T>>,
    period: u64,
    limit: usize,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for page in pages.prefixed(&period, Iter::Ascending) {
        if out.len() >= limit {
            break;
        }
        out.extend(page?.1);
    }
    out.truncate(limit);
    Ok(out)
}

/// Writes `items` as the period's pages of `per_page`. The count never shrinks once written
/// (a cleared period's book and trades are fixed), so no stale page is left behind.
fn save<T: Serialize + DeserializeOwned>(
    pages: &Map<(u64, u64), Vec<T>>,
    period: u64,
    items: &[T],
    per_page: usize,
) -> Result<()> {
    for (n, page) in items.chunks(per_page).enumerate() {
        pages.save_slice(&(period, n as u64), page)?;
    }
    Ok(())
}
