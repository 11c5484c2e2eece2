//! Clearing one period's book: a double auction, pure and deterministic.
//!
//! Merit order: offers by price ascending, then renewable before non-renewable (the paper's
//! objective, eq. 1, prefers renewable energy), then by order id (earlier first); bids by
//! price descending, then by order id. The best bid and best offer match while the bid's
//! price is at least the offer's, for the smaller remaining quantity (partial fills). Greedy
//! merit-order matching maximises the welfare `Σ (bid − offer) · q`.
//!
//! Price. Pay-as-bid gives each trade its bid's price. Pay-as-clear gives every trade one
//! uniform price inside the market-clearing interval `[L, U]` of the matched book:
//!
//! - `L = max(limit of the last matched offer, highest limit of any bid with volume left)`,
//! - `U = min(limit of the last matched bid, lowest limit of any offer with volume left)`,
//!
//! at its midpoint `⌊(L + U) / 2⌋`. At any price in `[L, U]` every matched order is willing
//! (no bid pays above its limit, no offer sells below its own) and no order left with volume
//! would rather trade (no bid left wants to buy at that price, no offer left wants to sell at
//! it): the price a competitive market would set. `L ≤ U` always: matching stopped because
//! the best bid left is below the best offer left (or one side ran out). The midpoint of the
//! last matched pair alone is not enough: with renewable offers left unsold at a low limit it
//! would charge buyers far above the price those offers would accept.

use pricing::Mechanism;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookOrder {
    pub id: u64,
    pub wh: u64,
    /// Limit price, micro-tokens per kWh.
    pub price: u64,
    pub renewable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub bid: u64,
    pub offer: u64,
    pub wh: u64,
    pub price: u64,
}

/// Matches `bids` against `offers`. Returns the trades in matching order.
pub fn clear(bids: &[BookOrder], offers: &[BookOrder], mechanism: Mechanism) -> Vec<Match> {
    let mut bids: Vec<&BookOrder> = bids.iter().filter(|o| o.wh > 0).collect();
    let mut offers: Vec<&BookOrder> = offers.iter().filter(|o| o.wh > 0).collect();
    bids.sort_by(|a, b| b.price.cmp(&a.price).then(a.id.cmp(&b.id)));
    offers.sort_by(|a, b| {
        a.price
            .cmp(&b.price)
            .then(b.renewable.cmp(&a.renewable))
            .then(a.id.cmp(&b.id))
    });
    let (mut i, mut j) = (0, 0);
    let (mut bid_left, mut offer_left) = (
        bids.first().map_or(0, |b| b.wh),
        offers.first().map_or(0, |o| o.wh),
    );
    let mut matches = Vec::new();
    let mut last = (0, 0);
    while i < bids.len() && j < offers.len() && bids[i].price >= offers[j].price {
        let q = bid_left.min(offer_left);
        matches.push(Match {
            bid: bids[i].id,
            offer: offers[j].id,
            wh: q,
            price: bids[i].price,
        });
        last = (bids[i].price, offers[j].price);
        bid_left -= q;
        offer_left -= q;
        if bid_left == 0 {
            i += 1;
            bid_left = bids.get(i).map_or(0, |b| b.wh);
        }
        if offer_left == 0 {
            j += 1;
            offer_left = offers.get(j).map_or(0, |o| o.wh);
        }
    }
    if mechanism == Mechanism::PayAsClear && !matches.is_empty() {
        // Here `bids[i]` (if any) is the best bid with volume left, `offers[j]` the best offer.
        let (last_bid, last_offer) = last;
        let low = bids.get(i).map_or(last_offer, |b| b.price.max(last_offer));
        let high = offers.get(j).map_or(last_bid, |o| o.price.min(last_bid));
        let uniform = low / 2 + high / 2 + (low % 2 + high % 2) / 2;
        for m in &mut matches {
            m.price = uniform;
        }
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn order(id: u64, wh: u64, price: u64, renewable: bool) -> BookOrder {
        BookOrder {
            id,
            wh,
            price,
            renewable,
        }
    }

    #[test]
    fn textbook_book() {
        let bids = [order(1, 100, 300, false), order(2, 100, 200, false)];
        let offers = [order(3, 150, 100, false), order(4, 100, 250, false)];
        let m = clear(&bids, &offers, Mechanism::PayAsClear);
        // 100 Wh bid@300 vs offer@100, then 50 Wh bid@200 vs offer@100; bid@200 < offer@250 stops.
        assert_eq!(m.iter().map(|m| m.wh).sum::<u64>(), 150);
        // 50 Wh of the bid at 200 stay unserved: below 200 it would buy more, so the
        // market-clearing interval is [max(100, 200), min(200, 250)] = [200, 200].
        assert!(m.iter().all(|m| m.price == 200), "{m:?}");
    }

    #[test]
    fn unsold_cheap_offers_set_the_price() {
        // The island's case: renewable offers at 85 go unsold while the last matched bid is at
        // 280. The midpoint of the last matched pair (182) would charge buyers more than twice
        // what the unsold offers would accept; the market-clearing price is 85.
        let bids = [order(1, 100, 280, false)];
        let offers = [order(2, 300, 85, true)];
        let m = clear(&bids, &offers, Mechanism::PayAsClear);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].wh, m[0].price), (100, 85));
        // Both sides exhausted exactly: the interval is the last matched pair's.
        let m = clear(
            &[order(1, 100, 280, false)],
            &[order(2, 100, 85, true)],
            Mechanism::PayAsClear,
        );
        assert_eq!(m[0].price, (280 + 85) / 2);
        // A bid left unserved above the last matched offer lifts the floor.
        let bids = [order(1, 100, 300, false), order(3, 100, 120, false)];
        let offers = [order(2, 100, 100, false), order(4, 100, 200, false)];
        let m = clear(&bids, &offers, Mechanism::PayAsClear);
        // Matched: 300 vs 100. Left: bid 120, offer 200. L = max(100, 120), U = min(300, 200).
        assert_eq!(
            m.iter().map(|t| (t.wh, t.price)).collect::<Vec<_>>(),
            vec![(100, 160)]
        );
    }

    #[test]
    fn renewables_win_price_ties() {
        let bids = [order(1, 50, 300, false)];
        let offers = [order(2, 50, 100, false), order(3, 50, 100, true)];
        let m = clear(&bids, &offers, Mechanism::PayAsClear);
        assert_eq!(
            m,
            vec![Match {
                bid: 1,
                offer: 3,
                wh: 50,
                price: 100
            }]
        );
    }

    /// The best total welfare over all feasible allocations, by enumeration.
    fn brute_force_welfare(bids: &[BookOrder], offers: &[BookOrder]) -> i128 {
        fn rec(
            k: usize,
            bids: &[BookOrder],
            offers: &[BookOrder],
            alloc: &mut Vec<u64>,
            best: &mut i128,
        ) {
            let n = bids.len() + offers.len();
            if k == n {
                let bought: u64 = alloc[..bids.len()].iter().sum();
                let sold: u64 = alloc[bids.len()..].iter().sum();
                if bought == sold {
                    let w: i128 = bids
                        .iter()
                        .zip(&alloc[..bids.len()])
                        .map(|(b, q)| b.price as i128 * *q as i128)
                        .sum::<i128>()
                        - offers
                            .iter()
                            .zip(&alloc[bids.len()..])
                            .map(|(o, q)| o.price as i128 * *q as i128)
                            .sum::<i128>();
                    *best = (*best).max(w);
                }
                return;
            }
            let cap = if k < bids.len() {
                bids[k].wh
            } else {
                offers[k - bids.len()].wh
            };
            for q in 0..=cap {
                alloc.push(q);
                rec(k + 1, bids, offers, alloc, best);
                alloc.pop();
            }
        }
        let mut best = 0;
        rec(0, bids, offers, &mut Vec::new(), &mut best);
        best
    }

    fn book() -> impl Strategy<Value = Vec<(u64, u64, bool)>> {
        proptest::collection::vec((0u64..4, 1u64..10, any::<bool>()), 0..4)
    }

    proptest! {
        #[test]
        fn clearing_is_welfare_maximal_and_respects_limits(
            raw_bids in book(), raw_offers in book(), pay_as_bid in any::<bool>()
        ) {
            let bids: Vec<_> = raw_bids.iter().enumerate().map(|(i, (q, p, r))| order(i as u64, *q, *p * 10, *r)).collect();
            let offers: Vec<_> = raw_offers.iter().enumerate().map(|(i, (q, p, r))| order(100 + i as u64, *q, *p * 10, *r)).collect();
            let mech = if pay_as_bid { Mechanism::PayAsBid } else { Mechanism::PayAsClear };
            let m = clear(&bids, &offers, mech);
            let find = |set: &[BookOrder], id| set.iter().find(|o| o.id == id).cloned().unwrap();
            let mut welfare: i128 = 0;
            for t in &m {
                let (b, o) = (find(&bids, t.bid), find(&offers, t.offer));
                prop_assert!(t.price <= b.price, "no trade above a bid's limit");
                prop_assert!(t.price >= o.price, "no trade below an offer's limit");
                welfare += (b.price as i128 - o.price as i128) * t.wh as i128;
            }
            for b in &bids {
                prop_assert!(m.iter().filter(|t| t.bid == b.id).map(|t| t.wh).sum::<u64>() <= b.wh);
            }
            for o in &offers {
                prop_assert!(m.iter().filter(|t| t.offer == o.id).map(|t| t.wh).sum::<u64>() <= o.wh);
            }
            prop_assert_eq!(welfare, brute_force_welfare(&bids, &offers));
        }
    }

    /// Orders for the larger property tests: up to 12 per side, 1..1000 Wh, limits 10..500.
    fn big_book(first_id: u64) -> impl Strategy<Value = Vec<BookOrder>> {
        proptest::collection::vec((1u64..1000, 1u64..50, any::<bool>()), 0..12).prop_map(move |v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (q, p, r))| order(first_id + i as u64, q, p * 10, r))
                .collect()
        })
    }

    fn filled(m: &[Match], id: u64) -> u64 {
        m.iter()
            .filter(|t| t.bid == id || t.offer == id)
            .map(|t| t.wh)
            .sum()
    }

    /// The prices at which the matched book is a competitive equilibrium, found by trying
    /// every price (the definition, not the algorithm): every matched bid and offer willing,
    /// every bid left unwilling to pay more, every offer left unwilling to take less.
    fn equilibrium_prices(bids: &[BookOrder], offers: &[BookOrder], m: &[Match]) -> Vec<u64> {
        (0..=600)
            .filter(|&p| {
                bids.iter().all(|b| {
                    let f = filled(m, b.id);
                    (f == 0 || b.price >= p) && (f == b.wh || b.price <= p)
                }) && offers.iter().all(|o| {
                    let f = filled(m, o.id);
                    (f == 0 || o.price <= p) && (f == o.wh || o.price >= p)
                })
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn pay_as_clear_prices_at_the_middle_of_the_clearing_interval(
            bids in big_book(0), offers in big_book(1000),
        ) {
            let m = clear(&bids, &offers, Mechanism::PayAsClear);
            if m.is_empty() {
                // No trade only when no bid reaches any offer.
                let best_bid = bids.iter().map(|b| b.price).max();
                let best_offer = offers.iter().map(|o| o.price).min();
                if let (Some(b), Some(o)) = (best_bid, best_offer) { prop_assert!(b < o); }
                return Ok(());
            }
            let price = m[0].price;
            prop_assert!(m.iter().all(|t| t.price == price), "one uniform price");
            let find = |set: &[BookOrder], id| set.iter().find(|o| o.id == id).cloned().unwrap();
            for t in &m {
                // Individual rationality.
                prop_assert!(find(&bids, t.bid).price >= price);
                prop_assert!(find(&offers, t.offer).price <= price);
            }
            // No envy: nobody left with volume would trade at this price.
            for b in &bids {
                let f = filled(&m, b.id);
                prop_assert!(f <= b.wh);
                if f < b.wh { prop_assert!(b.price <= price, "bid {} left wanting at {}", b.price, price); }
            }
            for o in &offers {
                let f = filled(&m, o.id);
                prop_assert!(f <= o.wh);
                if f < o.wh { prop_assert!(o.price >= price, "offer {} left wanting at {}", o.price, price); }
            }
            // Exactly the midpoint of the equilibrium interval.
            let eq = equilibrium_prices(&bids, &offers, &m);
            let (lo, hi) = (eq[0], eq[eq.len() - 1]);
            prop_assert_eq!(eq.len() as u64, hi - lo + 1, "the interval is contiguous");
            prop_assert_eq!(price, (lo + hi) / 2);
            // Budget balance: what buyers take is what sellers give, trade by trade.
            let bought: u64 = bids.iter().map(|b| filled(&m, b.id)).sum();
            let sold: u64 = offers.iter().map(|o| filled(&m, o.id)).sum();
            prop_assert_eq!(bought, sold);
        }

        #[test]
        fn the_same_book_in_any_arrival_order_gives_the_same_trades(
            (bids, shuffled_bids) in big_book(0).prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
            (offers, shuffled_offers) in big_book(1000).prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
            pay_as_bid in any::<bool>(),
        ) {
            let mech = if pay_as_bid { Mechanism::PayAsBid } else { Mechanism::PayAsClear };
            prop_assert_eq!(
                clear(&bids, &offers, mech),
                clear(&shuffled_bids, &shuffled_offers, mech)
            );
        }
    }
}
