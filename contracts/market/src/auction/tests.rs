use super::*;
use proptest::prelude::*;

fn order(id: u64, wh: u64, price: u64, renewable: bool) -> BookOrder {
    BookOrder {
        id,
        wh,
        price,
        renewable,
        at: 0,
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
        m.iter()
            .map(|t| (t.bid, t.offer, t.wh, t.price))
            .collect::<Vec<_>>(),
        vec![(1, 3, 50, 100)]
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

// ---- The network: fees, feeder limits, prices per level ----

fn at(id: u64, wh: u64, price: u64, renewable: bool, feeder: usize) -> BookOrder {
    BookOrder {
        at: feeder,
        ..order(id, wh, price, renewable)
    }
}

fn fees(wheeling_feeder: u64, wheeling_island: u64, buyer_fee: u64, seller_fee: u64) -> Fees {
    Fees {
        wheeling_feeder,
        wheeling_island,
        buyer_fee,
        seller_fee,
    }
}

fn limit(import_wh: u64, export_wh: u64) -> FeederLimit {
    FeederLimit {
        import_wh,
        export_wh,
    }
}

/// What the buyer pays and the seller nets per kWh.
fn gross(m: &Match) -> u64 {
    m.price + m.rates.wheeling + m.rates.buyer_fee + m.rates.buyer_congestion
}

fn net(m: &Match) -> u64 {
    m.price - m.rates.seller_fee - m.rates.seller_congestion
}

#[test]
fn a_bid_must_cover_the_offer_and_the_fees_of_the_pair() {
    // Same feeder: 10 wheeling + 4 fees; across the island: 30 + 4.
    let f = fees(10, 30, 2, 2);
    let feeders = [limit(1_000, 1_000), limit(1_000, 1_000)];
    // Offer 100 and bid 120 on feeder 0 trade locally (120 ≥ 114).
    let c = clear_network(
        &[at(1, 50, 120, false, 0)],
        &[at(2, 50, 100, false, 0)],
        &feeders,
        &f,
        Mechanism::PayAsClear,
    );
    assert_eq!(c.matches.len(), 1);
    assert_eq!(c.matches[0].level, Level::Feeder);
    // On different feeders the same pair does not cover 100 + 34.
    let c = clear_network(
        &[at(1, 50, 120, false, 1)],
        &[at(2, 50, 100, false, 0)],
        &feeders,
        &f,
        Mechanism::PayAsClear,
    );
    assert!(c.matches.is_empty(), "{c:?}");
    // At 134 it does, exactly (zero surplus still trades); buyer pays its limit, seller nets its.
    let c = clear_network(
        &[at(1, 50, 134, false, 1)],
        &[at(2, 50, 100, false, 0)],
        &feeders,
        &f,
        Mechanism::PayAsClear,
    );
    assert_eq!(c.matches.len(), 1, "{c:?}");
    let m = &c.matches[0];
    assert_eq!((m.level, gross(m), net(m)), (Level::Island, 134, 100));
    assert_eq!(
        m.rates.wheeling, 30,
        "only the island's wheeling, not the feeder's too"
    );
}

#[test]
fn local_trades_come_first_when_all_else_is_equal() {
    // No fees at all: the buyer on feeder 0 could take either offer at the same price.
    let feeders = [limit(1_000, 1_000), limit(1_000, 1_000)];
    let c = clear_network(
        &[at(1, 50, 200, false, 0)],
        &[at(2, 50, 100, false, 1), at(3, 50, 100, false, 0)],
        &feeders,
        &Fees::default(),
        Mechanism::PayAsClear,
    );
    assert_eq!(
        c.matches
            .iter()
            .map(|m| (m.offer, m.level))
            .collect::<Vec<_>>(),
        vec![(3, Level::Feeder)]
    );
    // Cheaper wheeling inside the feeder wins against a cheaper offer across the island when
    // the fees make up the difference: 100 + 5 local beats 97 + 20 island.
    let c = clear_network(
        &[at(1, 50, 200, false, 0)],
        &[at(2, 50, 97, false, 1), at(3, 50, 100, false, 0)],
        &feeders,
        &fees(5, 20, 0, 0),
        Mechanism::PayAsClear,
    );
    assert_eq!(
        c.matches.iter().map(|m| m.offer).collect::<Vec<_>>(),
        vec![3]
    );
}

#[test]
fn a_full_transformer_limits_the_schedule_and_prices_its_congestion() {
    // The wind park (feeder 0) offers 300 Wh at 80; the village (feeder 1) bids for 300 Wh at
    // 300, and has a PV offer of 100 Wh at 150. The park exports at most 120 Wh.
    let feeders = [limit(0, 120), limit(1_000, 0)];
    let bids = [at(1, 300, 300, false, 1)];
    let offers = [at(2, 300, 80, true, 0), at(3, 100, 150, true, 1)];
    let c = clear_network(
        &bids,
        &offers,
        &feeders,
        &Fees::default(),
        Mechanism::PayAsClear,
    );
    let from_wind: u64 = c
        .matches
        .iter()
        .filter(|m| m.offer == 2)
        .map(|m| m.wh)
        .sum();
    let from_pv: u64 = c
        .matches
        .iter()
        .filter(|m| m.offer == 3)
        .map(|m| m.wh)
        .sum();
    assert_eq!((from_wind, from_pv), (120, 100), "{c:?}");
    assert_eq!(c.flows[0].export_wh, 120);
    assert_eq!(c.flows[1].import_wh, 120);
    assert_eq!(c.flows[1].local_wh, 100);
    // The village's price: the bid is left wanting (80 Wh unserved) and the PV offer is used
    // up, so its demand price lies in [150, 300]; the park's supply price in [80, 80]: offers
    // left there at 80. Every buyer pays the same and every seller on a feeder nets the same.
    let village: Vec<u64> = c.matches.iter().map(gross).collect();
    assert!(village.iter().all(|g| *g == village[0]), "{c:?}");
    assert_eq!(
        village[0], 300,
        "the village's bid is left wanting: its own limit sets the price"
    );
    let wind = c.matches.iter().find(|m| m.offer == 2).unwrap();
    assert_eq!(net(wind), 80, "the park nets its supply price");
    assert!(
        wind.rates.seller_congestion > 0,
        "the full export opens a gap: {wind:?}"
    );
    // Budget balance: per kWh, the gap is the congestion (no fees here).
    assert_eq!(
        gross(wind) - net(wind),
        wind.rates.buyer_congestion + wind.rates.seller_congestion
    );
}

/// The best welfare net of fees over every integer schedule of pair quantities that respects
/// volumes and transformer limits (the definition, by enumeration).
fn brute_force_net_welfare(
    bids: &[BookOrder],
    offers: &[BookOrder],
    feeders: &[FeederLimit],
    fees: &Fees,
) -> i64 {
    let n = feeders.len();
    let level = |o: &BookOrder, b: &BookOrder| {
        if o.at == b.at && o.at < n {
            Level::Feeder
        } else {
            Level::Island
        }
    };
    let pairs: Vec<(usize, usize)> = (0..offers.len())
        .flat_map(|i| (0..bids.len()).map(move |j| (i, j)))
        .collect();
    struct S<'a> {
        bids: &'a [BookOrder],
        offers: &'a [BookOrder],
        feeders: &'a [FeederLimit],
        pairs: Vec<(usize, usize)>,
        best: i64,
    }
    #[allow(clippy::too_many_arguments)] // the enumeration's state, spelled out
    fn rec(
        s: &mut S,
        k: usize,
        offer_left: &mut Vec<u64>,
        bid_left: &mut Vec<u64>,
        export: &mut Vec<u64>,
        import: &mut Vec<u64>,
        w: i64,
        weight: &dyn Fn(usize, usize) -> (i64, bool),
    ) {
        if k == s.pairs.len() {
            s.best = s.best.max(w);
            return;
        }
        let (i, j) = s.pairs[k];
        let (per_wh, crosses) = weight(i, j);
        let (from, to) = (s.offers[i].at, s.bids[j].at);
        let mut max = offer_left[i].min(bid_left[j]);
        if crosses {
            if from < s.feeders.len() {
                max = max.min(s.feeders[from].export_wh - export[from]);
            }
            if to < s.feeders.len() {
                max = max.min(s.feeders[to].import_wh - import[to]);
            }
        }
        for q in 0..=max {
            offer_left[i] -= q;
            bid_left[j] -= q;
            if crosses {
                if from < s.feeders.len() {
                    export[from] += q;
                }
                if to < s.feeders.len() {
                    import[to] += q;
                }
            }
            rec(
                s,
                k + 1,
                offer_left,
                bid_left,
                export,
                import,
                w + per_wh * q as i64,
                weight,
            );
            offer_left[i] += q;
            bid_left[j] += q;
            if crosses {
                if from < s.feeders.len() {
                    export[from] -= q;
                }
                if to < s.feeders.len() {
                    import[to] -= q;
                }
            }
        }
    }
    let weight = |i: usize, j: usize| {
        let (o, b) = (&offers[i], &bids[j]);
        let l = level(o, b);
        let f = wheeling(fees, l) + fees.buyer_fee + fees.seller_fee;
        (
            b.price as i64 - o.price as i64 - f as i64,
            l == Level::Island,
        )
    };
    let mut s = S {
        bids,
        offers,
        feeders,
        pairs,
        best: 0,
    };
    rec(
        &mut s,
        0,
        &mut offers.iter().map(|o| o.wh).collect(),
        &mut bids.iter().map(|b| b.wh).collect(),
        &mut vec![0; n],
        &mut vec![0; n],
        0,
        &weight,
    );
    s.best
}

/// A random network: 1 to 3 feeders with small limits (some zero), fees with wheeling inside
/// a feeder no dearer than across the island, and orders on feeders or at the PCC.
fn network(
    max_orders: usize,
    max_wh: u64,
) -> impl Strategy<Value = (Vec<FeederLimit>, Fees, Vec<BookOrder>, Vec<BookOrder>)> {
    let feeders = proptest::collection::vec((0..=max_wh * 2, 0..=max_wh * 2), 1..=3);
    let fees = (0u64..4, 0u64..4, 0u64..3, 0u64..3)
        .prop_map(|(wf, extra, b, s)| fees(wf * 5, (wf + extra) * 5, b * 5, s * 5));
    let orders = move |first: u64| {
        proptest::collection::vec(
            (1..=max_wh, 1u64..20, any::<bool>(), 0usize..4),
            0..=max_orders,
        )
        .prop_map(move |v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (q, p, r, f))| at(first + i as u64, q, p * 10, r, f))
                .collect::<Vec<_>>()
        })
    };
    (feeders, fees, orders(0), orders(100)).prop_map(|(f, fees, bids, offers)| {
        let limits = f.into_iter().map(|(i, e)| limit(i, e)).collect();
        (limits, fees, bids, offers)
    })
}

/// Checks what must hold of any cleared network book; returns the welfare net of fees.
fn check_clearing(
    bids: &[BookOrder],
    offers: &[BookOrder],
    feeders: &[FeederLimit],
    f: &Fees,
    c: &Clearing,
    mechanism: Mechanism,
) -> Result<i64, TestCaseError> {
    let n = feeders.len();
    let bid = |id| bids.iter().find(|b| b.id == id).unwrap();
    let offer = |id| offers.iter().find(|o| o.id == id).unwrap();
    let on_feeder = |at: usize| (at < n).then_some(at);
    let mut export = vec![0u64; n];
    let mut import = vec![0u64; n];
    let mut welfare = 0i64;
    for m in &c.matches {
        let (b, o) = (bid(m.bid), offer(m.offer));
        let want = if o.at == b.at && o.at < n {
            Level::Feeder
        } else {
            Level::Island
        };
        prop_assert_eq!(m.level, want, "level of {:?}", m);
        // One level's wheeling, once: a trade never pays both.
        prop_assert_eq!(m.rates.wheeling, wheeling(f, m.level));
        prop_assert_eq!(
            (m.rates.buyer_fee, m.rates.seller_fee),
            (f.buyer_fee, f.seller_fee)
        );
        // Individual rationality after fees, and so every trade covers its fees.
        prop_assert!(
            gross(m) <= b.price,
            "buyer pays {} above its limit {}",
            gross(m),
            b.price
        );
        prop_assert!(m.price >= m.rates.seller_fee + m.rates.seller_congestion);
        prop_assert!(
            net(m) >= o.price,
            "seller nets {} below its limit {}",
            net(m),
            o.price
        );
        if mechanism == Mechanism::PayAsBid {
            prop_assert_eq!(gross(m), b.price);
        }
        if m.level == Level::Island {
            if let Some(k) = on_feeder(o.at) {
                export[k] += m.wh;
            }
            if let Some(k) = on_feeder(b.at) {
                import[k] += m.wh;
            }
        }
        let fee = wheeling(f, m.level) + f.buyer_fee + f.seller_fee;
        welfare += (b.price as i64 - o.price as i64 - fee as i64) * m.wh as i64;
    }
    for k in 0..n {
        prop_assert!(
            export[k] <= feeders[k].export_wh,
            "feeder {} exports {} > {}",
            k,
            export[k],
            feeders[k].export_wh
        );
        prop_assert!(
            import[k] <= feeders[k].import_wh,
            "feeder {} imports {} > {}",
            k,
            import[k],
            feeders[k].import_wh
        );
        prop_assert!(
            export[k] == 0 || import[k] == 0,
            "feeder {} both exports and imports",
            k
        );
        prop_assert_eq!(
            (c.flows[k].export_wh, c.flows[k].import_wh),
            (export[k], import[k])
        );
    }
    for o in offers.iter().chain(bids) {
        let filled: u64 = c
            .matches
            .iter()
            .filter(|m| m.bid == o.id || m.offer == o.id)
            .map(|m| m.wh)
            .sum();
        prop_assert!(filled <= o.wh);
    }
    if mechanism == Mechanism::PayAsClear {
        // One price per node: every buyer on a feeder pays the same in all, every seller on a
        // feeder nets the same; island trades share one energy price.
        for k in 0..=n {
            let grosses: Vec<u64> = c
                .matches
                .iter()
                .filter(|m| bid(m.bid).at.min(n) == k)
                .map(gross)
                .collect();
            prop_assert!(
                grosses.windows(2).all(|w| w[0] == w[1]),
                "buyers on {} pay {:?}",
                k,
                grosses
            );
            let nets: Vec<u64> = c
                .matches
                .iter()
                .filter(|m| offer(m.offer).at.min(n) == k)
                .map(net)
                .collect();
            prop_assert!(
                nets.windows(2).all(|w| w[0] == w[1]),
                "sellers on {} net {:?}",
                k,
                nets
            );
            // No envy: an order left with volume would not trade at its node's price.
            if let Some(g) = grosses.first() {
                for b in bids.iter().filter(|b| b.at.min(n) == k) {
                    let filled: u64 = c
                        .matches
                        .iter()
                        .filter(|m| m.bid == b.id)
                        .map(|m| m.wh)
                        .sum();
                    if filled < b.wh {
                        prop_assert!(b.price <= *g, "bid {} left wanting at {}", b.price, g);
                    }
                }
            }
            if let Some(s) = nets.first() {
                for o in offers.iter().filter(|o| o.at.min(n) == k) {
                    let filled: u64 = c
                        .matches
                        .iter()
                        .filter(|m| m.offer == o.id)
                        .map(|m| m.wh)
                        .sum();
                    if filled < o.wh {
                        prop_assert!(o.price >= *s, "offer {} left wanting at {}", o.price, s);
                    }
                }
            }
        }
        let island: Vec<u64> = c
            .matches
            .iter()
            .filter(|m| m.level == Level::Island)
            .map(|m| m.price)
            .collect();
        prop_assert!(
            island.windows(2).all(|w| w[0] == w[1]),
            "island prices {:?}",
            island
        );
        if let Some(p) = island.first() {
            prop_assert_eq!(c.island_price, Some(*p));
        }
    }
    Ok(welfare)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn network_clearing_is_optimal_net_of_fees_and_respects_every_limit(
        (feeders, f, bids, offers) in network(3, 3),
        pay_as_bid in any::<bool>(),
    ) {
        let mech = if pay_as_bid { Mechanism::PayAsBid } else { Mechanism::PayAsClear };
        let c = clear_network(&bids, &offers, &feeders, &f, mech);
        let welfare = check_clearing(&bids, &offers, &feeders, &f, &c, mech)?;
        prop_assert_eq!(welfare, brute_force_net_welfare(&bids, &offers, &feeders, &f));
    }

    #[test]
    fn network_clearing_holds_its_rules_on_larger_books(
        (feeders, f, bids, offers) in network(12, 400),
        pay_as_bid in any::<bool>(),
    ) {
        let mech = if pay_as_bid { Mechanism::PayAsBid } else { Mechanism::PayAsClear };
        let c = clear_network(&bids, &offers, &feeders, &f, mech);
        check_clearing(&bids, &offers, &feeders, &f, &c, mech)?;
    }
}
