//! Clearing one period's book: a double auction, pure and deterministic.
//!
//! Merit order: offers by price ascending, then renewable before non-renewable (the paper's
//! objective, eq. 1, prefers renewable energy), then by order id (earlier first); bids by
//! price descending, then by order id. The best bid and best offer match while the bid's
//! price is at least the offer's, for the smaller remaining quantity (partial fills).
//!
//! Price: pay-as-clear gives every trade the uniform price `⌊(b + o) / 2⌋` of the last matched
//! bid `b` and offer `o`, which lies between every matched bid's and offer's limits; since
//! limits are inside the band at order time, so is the price. Pay-as-bid gives each trade its
//! bid's price. Greedy merit-order matching maximises the welfare `Σ (bid − offer) · q`.

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
        let uniform = (last.0 + last.1) / 2;
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
        assert!(m.iter().all(|m| m.price == 150));
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
                price: 200
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
}
