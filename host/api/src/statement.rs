//! `GET /v1/statements/{address}?day=YYYY-MM-DD`: a participant's market statement for one
//! day of chain time (UTC). The day is the market periods that start in it; the market's
//! `statement` query sums their line items (energy, prices, each fee, subsidy, penalties,
//! points, net), a chunk of periods at a time.

use crate::{ApiError, ApiResult, parse_address};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use gridledger_node::Node;
use gridledger_types::Address;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Periods one market query covers (the market's own bound).
const CHUNK: u64 = 20_000;
/// Most chunks one request may cost (a day of 1-second periods is 5).
const MAX_CHUNKS: u64 = 5;
/// Periods listed one by one in the answer.
const MAX_LISTED: usize = 500;

#[derive(Deserialize)]
pub struct DayQuery {
    day: String,
}

/// `[start, end)` of a UTC day, ms since the Unix epoch.
pub fn day_bounds(day: &str) -> Result<(u64, u64), String> {
    let bad = || format!("day {day:?} is not a date YYYY-MM-DD");
    let mut parts = day.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d): (i32, u8, u8) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let month = time::Month::try_from(m).map_err(|_| bad())?;
    let date =
        time::Date::from_calendar_date(y, month, d).map_err(|e| format!("{}: {e}", bad()))?;
    let start = date.midnight().assume_utc().unix_timestamp();
    let start = u64::try_from(start).map_err(|_| format!("day {day} is before 1970"))? * 1000;
    Ok((start, start + 86_400_000))
}

/// The periods whose start lies in `[from_ms, to_ms)`, for a market starting at `start_ms`.
pub fn periods_in(start_ms: u64, period_ms: u64, from_ms: u64, to_ms: u64) -> Option<(u64, u64)> {
    if period_ms == 0 || to_ms <= start_ms {
        return None;
    }
    let first = from_ms.saturating_sub(start_ms).div_ceil(period_ms);
    let last = (to_ms - 1 - start_ms) / period_ms;
    (first <= last).then_some((first, last))
}

fn market(node: &Node) -> ApiResult<Address> {
    let label = node
        .genesis()
        .market
        .as_ref()
        .and_then(|m| m.stats_contract.clone())
        .unwrap_or_else(|| "market".into());
    node.contract_by_label(&label)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("this chain has no market (no contract labelled {label})"),
        )
    })
}

fn query(node: &Arc<Node>, contract: &Address, msg: Value) -> ApiResult<Value> {
    let bytes = node
        .query(contract, msg.to_string().as_bytes())
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "query_failed",
                format!("the market's query failed: {e}"),
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid_result",
            format!("the market answered something that is not JSON: {e}"),
        )
    })
}

/// Adds every number of `b`'s line items to `a`'s.
fn add_lines(a: &mut Map<String, Value>, b: &Value) {
    if let Some(b) = b.as_object() {
        for (k, v) in b {
            let sum = a.get(k).and_then(Value::as_u64).unwrap_or(0) + v.as_u64().unwrap_or(0);
            a.insert(k.clone(), json!(sum));
        }
    }
}

pub async fn get_statement(
    State(node): State<Arc<Node>>,
    Path(address): Path<String>,
    Query(q): Query<DayQuery>,
) -> ApiResult<Json<Value>> {
    let who = parse_address(&address)?;
    let (from_ms, to_ms) = day_bounds(&q.day).map_err(|e| ApiError::bad("bad_day", e))?;
    let day = q.day.clone();
    // Not among the blocking jobs: a statement is contract queries, which wait for the query
    // pool (its own limit); holding a read's place while waiting there would let a few
    // statement requests stall every read.
    let out =
        crate::blocking::beside(move || statement(&node, who, &day, from_ms, to_ms)).await??;
    Ok(Json(out))
}

fn statement(
    node: &Arc<Node>,
    who: Address,
    day: &str,
    from_ms: u64,
    to_ms: u64,
) -> ApiResult<Value> {
    let market = market(node)?;
    let config = query(node, &market, json!({"config": {}}))?;
    let (start_ms, period_ms) = (
        config["start_ms"].as_u64().unwrap_or(0),
        config["period_ms"].as_u64().unwrap_or(0),
    );
    let mut totals = Map::new();
    let mut by_period: Vec<Value> = Vec::new();
    let (mut periods, mut net) = (0u64, 0i64);
    let range = periods_in(start_ms, period_ms, from_ms, to_ms);
    if let Some((first, last)) = range {
        let chunks = (last - first) / CHUNK + 1;
        if chunks > MAX_CHUNKS {
            return Err(ApiError::bad(
                "too_many_periods",
                format!(
                    "a day of {period_ms} ms periods has more than {} periods",
                    CHUNK * MAX_CHUNKS
                ),
            ));
        }
        let mut at = first;
        while at <= last {
            let end = (at + CHUNK - 1).min(last);
            let s = query(
                node,
                &market,
                json!({"statement": {"account": who, "first_period": at, "last_period": end}}),
            )?;
            periods += s["periods"].as_u64().unwrap_or(0);
            net += s["net"].as_i64().unwrap_or(0);
            add_lines(&mut totals, &s["totals"]);
            for p in s["by_period"].as_array().into_iter().flatten() {
                if by_period.len() < MAX_LISTED {
                    by_period.push(p.clone());
                }
            }
            at = end + 1;
        }
    }
    let avg = |value: &str, wh: &str| {
        let (v, w) = (
            totals.get(value).and_then(Value::as_u64).unwrap_or(0),
            totals.get(wh).and_then(Value::as_u64).unwrap_or(0),
        );
        if w == 0 {
            0
        } else {
            (v as u128 * 1000 / w as u128) as u64
        }
    };
    Ok(json!({
        "account": who,
        "day": day,
        "first_period": range.map(|r| r.0),
        "last_period": range.map(|r| r.1),
        "periods": periods,
        "totals": totals,
        "net": net,
        "average_sale_price": avg("sales", "delivered_wh"),
        "average_purchase_price": avg("purchases", "received_wh"),
        "by_period": by_period,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_and_bad_days_are_refused() {
        assert_eq!(
            day_bounds("2026-01-01").unwrap(),
            (1_767_225_600_000, 1_767_312_000_000)
        );
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "yesterday",
            "2026-01",
            "2026-01-01-01",
        ] {
            assert!(day_bounds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_day_is_the_periods_that_start_in_it() {
        // Periods of 10 ms from 5: period k starts at 5 + 10k.
        assert_eq!(periods_in(5, 10, 0, 100), Some((0, 9)));
        assert_eq!(periods_in(5, 10, 15, 35), Some((1, 2)));
        assert_eq!(
            periods_in(5, 10, 16, 25),
            None,
            "no period starts in [16, 25)"
        );
        assert_eq!(periods_in(500, 10, 0, 400), None, "before the market");
    }
}
