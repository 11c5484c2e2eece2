//! Clearing one period's book over the grid: a double auction with network fees and feeder
//! limits, pure and deterministic.
//!
//! # The network
//!
//! Every order sits at a connection point: one of the island's feeders, or the point of common
//! coupling (the PCC: the island's bus, where feeders meet). A trade between a seller and a
//! buyer on the same feeder is a **feeder-level** trade; any other trade crosses the island
//! bus and is an **island-level** trade. An island trade leaves its seller's feeder through
//! that feeder's transformer (its *export*) and enters the buyer's feeder through the buyer's
//! (its *import*); a party at the PCC has no transformer in the way. Each transformer carries
//! at most its capacity × the period, in each direction.
//!
//! # Fees
//!
//! A trade at level `l` pays the wheeling charge `w_l` (per kWh, to the grid company) and the
//! transaction fee, whose buyer part `t_b` and seller part `t_s` (per kWh) the regulator's
//! share decides. `f_l = w_l + t_b + t_s` is everything a kWh at level `l` pays the network.
//! Wheeling inside a feeder is never dearer than across the island. Only one level's wheeling
//! applies to a trade, the highest it crosses: a fee is never counted twice.
//!
//! # The schedule: welfare net of fees
//!
//! The matching maximises `Σ (bid − offer − f_level) · q` over all schedules that respect every
//! order's volume and every transformer's limit in both directions. That is a min-cost flow:
//! source → each feeder's supply node (through its offers, cheapest first) → its demand node
//! (the local edge, cost `f_feeder`) or → the island bus (export edge, cost `f_island`, at
//! most the export capacity) → another feeder's demand node (import edge, at most its import
//! capacity) → sink (through its bids, dearest first). It is solved by successive shortest
//! paths (Bellman-Ford on the residual graph): each step sends energy along the cheapest
//! remaining path while that path's cost `offer + fees − bid` is at most zero, so trades with
//! zero surplus still happen, as in a plain double auction. The feeders' offers and bids are
//! stacks in merit order rather than nodes of their own, so the graph has only `2 · feeders + 5`
//! nodes whatever the size of the book.
//!
//! Ties are broken lexicographically, in this order: more welfare, then more renewable energy
//! (the paper's objective, eq. 1), then fewer island crossings (local trades first when all
//! else is equal), then order ids (earlier first). With wheeling inside a feeder no dearer
//! than across the island, no feeder both exports and imports in the result, so the
//! transformer limits bound its net flow too.
//!
//! # Prices: one per market level, and congestion
//!
//! A min-cost flow has node prices (its dual): `π(v)` with, for every edge still usable,
//! `π(to) ≤ π(from) + cost`. They are exactly the competitive prices of the schedule. At a
//! feeder's supply node `π` lies between the dearest offer it uses and the cheapest it leaves;
//! at its demand node between the cheapest bid it serves and the dearest it leaves; a
//! transformer with room left has the same price (plus fees) on both sides, and a full one
//! opens a gap: its **congestion**. Of all such prices we take the midpoint of the highest
//! (shortest-path distances from the source) and the lowest (minus the distances to it),
//! rounded down: again a dual solution, and with one feeder and no fees exactly the midpoint
//! of the market-clearing interval `[L, U]` of a plain double auction:
//!
//! - `L = max(limit of the last matched offer, highest limit of any bid with volume left)`,
//! - `U = min(limit of the last matched bid, lowest limit of any offer with volume left)`.
//!
//! Pay-as-clear then charges, per kWh:
//!
//! - feeder-level trades on feeder `k`: one energy price `p_k = π(demand_k) − w_feeder − t_b`;
//! - island-level trades: one energy price `p_island = π(bus) − w_island − t_b`; a buyer on a
//!   feeder whose import is full also pays the import congestion `π(demand_j) − π(bus)`, a
//!   seller on a feeder whose export is full the export congestion
//!   `π(bus) − f_island − π(supply_k)`, both to the grid company that owns the transformer.
//!
//! So every seller on a feeder nets the same `π(supply_k)` per kWh after its fees, and every
//! buyer on a feeder pays the same `π(demand_k)` in all, whichever level each of its trades
//! is at: no order is better off for being the one the decomposition sent across the island.
//! Each matched bid pays at most its limit and each matched offer nets at least its limit
//! (individual rationality after fees), and no order left with volume would trade at those
//! prices. Pay-as-bid charges each trade its bid's limit in all, fees included.
//!
//! # From flows to trades
//!
//! Each feeder's local flow pairs its first offers with its first bids (merit order); what is
//! left of its offers goes out through the bus to what is left of the other feeders' bids, in
//! feeder order, then merit order. Any pairing would do: every pair the flow allows covers its
//! fees, because the node prices separate every used bid from every used offer by at least the
//! fees of the level between them.

use pricing::Mechanism;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookOrder {
    pub id: u64,
    pub wh: u64,
    /// Limit price, micro-tokens per kWh.
    pub price: u64,
    pub renewable: bool,
    /// Connection point: a feeder's index, or any index past the feeders for the PCC.
    pub at: usize,
}

/// What a feeder's transformer carries in one period, Wh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeederLimit {
    /// Into the feeder from the island bus.
    pub import_wh: u64,
    /// Out of the feeder to the island bus.
    pub export_wh: u64,
}

/// The fees in force for a period, micro-tokens per kWh (waivers already applied): the
/// pricing contract's rates.
pub use pricing::FeeRates as Fees;

/// The wheeling charge of a trade at `level`.
pub fn wheeling(fees: &Fees, level: Level) -> u64 {
    match level {
        Level::Feeder => fees.wheeling_feeder,
        Level::Island => fees.wheeling_island,
    }
}

/// Everything a kWh at `level` pays the network: wheeling and both parts of the fee.
fn total(fees: &Fees, level: Level) -> u64 {
    wheeling(fees, level) + fees.buyer_fee + fees.seller_fee
}

/// The highest level of the network a trade crosses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Seller and buyer on the same feeder.
    Feeder,
    /// Through the island bus (different feeders, or a party at the PCC).
    #[default]
    Island,
}

/// A trade's fee rates, micro-tokens per kWh. The buyer pays `price + wheeling + buyer_fee +
/// buyer_congestion`; the seller receives `price − seller_fee − seller_congestion`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRates {
    pub wheeling: u64,
    pub buyer_fee: u64,
    pub seller_fee: u64,
    pub buyer_congestion: u64,
    pub seller_congestion: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub bid: u64,
    pub offer: u64,
    pub wh: u64,
    /// The energy price.
    pub price: u64,
    pub level: Level,
    pub rates: TradeRates,
}

/// Energy scheduled on one feeder in a period, Wh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeederFlow {
    /// Traded between parties on the feeder.
    pub local_wh: u64,
    /// Bought by parties on the feeder from outside it.
    pub import_wh: u64,
    /// Sold by parties on the feeder to outside it.
    pub export_wh: u64,
}

/// A cleared book.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clearing {
    pub matches: Vec<Match>,
    /// Per feeder (the PCC is not a feeder).
    pub flows: Vec<FeederFlow>,
    /// Pay-as-clear energy price of island-level trades, if there were any.
    pub island_price: Option<u64>,
    /// Per feeder: the pay-as-clear energy price of its feeder-level trades, if any.
    pub feeder_prices: Vec<Option<u64>>,
}

/// Clears a single market: every order at the PCC, no fees.
pub fn clear(bids: &[BookOrder], offers: &[BookOrder], mechanism: Mechanism) -> Vec<Match> {
    let at_pcc = |v: &[BookOrder]| -> Vec<BookOrder> {
        v.iter().map(|o| BookOrder { at: 0, ..o.clone() }).collect()
    };
    clear_network(
        &at_pcc(bids),
        &at_pcc(offers),
        &[],
        &Fees::default(),
        mechanism,
    )
    .matches
}

/// Clears `bids` against `offers` over `feeders` (see the module doc). Orders whose `at` is
/// not a feeder's index are at the PCC.
pub fn clear_network(
    bids: &[BookOrder],
    offers: &[BookOrder],
    feeders: &[FeederLimit],
    fees: &Fees,
    mechanism: Mechanism,
) -> Clearing {
    let mut net = Net::new(feeders, fees);
    let pcc = feeders.len();
    let place = |o: &BookOrder| o.at.min(pcc);
    let mut sorted_offers: Vec<&BookOrder> = offers.iter().filter(|o| o.wh > 0).collect();
    sorted_offers.sort_by(|a, b| {
        a.price
            .cmp(&b.price)
            .then(b.renewable.cmp(&a.renewable))
            .then(a.id.cmp(&b.id))
    });
    let mut sorted_bids: Vec<&BookOrder> = bids.iter().filter(|o| o.wh > 0).collect();
    sorted_bids.sort_by(|a, b| b.price.cmp(&a.price).then(a.id.cmp(&b.id)));
    for o in sorted_offers {
        net.supply[place(o)].push(o);
    }
    for b in sorted_bids {
        net.demand[place(b)].push(b);
    }
    net.solve();
    let prices = net.prices();
    net.trades(&prices, mechanism)
}

/// Path weights, compared lexicographically: welfare lost, then non-renewable Wh, then island
/// crossings (see "ties" in the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Weight {
    cost: i64,
    brown: i64,
    cross: i64,
}

impl std::ops::Add for Weight {
    type Output = Weight;
    fn add(self, o: Weight) -> Weight {
        Weight {
            cost: self.cost + o.cost,
            brown: self.brown + o.brown,
            cross: self.cross + o.cross,
        }
    }
}

impl std::ops::Neg for Weight {
    type Output = Weight;
    fn neg(self) -> Weight {
        Weight {
            cost: -self.cost,
            brown: -self.brown,
            cross: -self.cross,
        }
    }
}

/// Capacity of an edge without a limit (more than any book holds: orders are at most 10⁹ Wh
/// and a period at most 10⁴ orders).
const UNLIMITED: u64 = u64::MAX / 4;

/// A residual edge; edges come in pairs `2i` (forward) and `2i + 1` (its reverse).
struct Edge {
    from: usize,
    to: usize,
    cap: u64,
    weight: Weight,
}

/// One node's orders in merit order, consumed from the front.
#[derive(Default)]
struct Stack<'a> {
    orders: Vec<&'a BookOrder>,
    used: Vec<u64>,
    /// The first order with volume left.
    top: usize,
}

impl<'a> Stack<'a> {
    fn push(&mut self, o: &'a BookOrder) {
        self.orders.push(o);
        self.used.push(0);
    }

    fn top(&self) -> Option<(&'a BookOrder, u64)> {
        let o = self.orders.get(self.top)?;
        Some((o, o.wh - self.used[self.top]))
    }

    fn take(&mut self, q: u64) {
        self.used[self.top] += q;
        if self.used[self.top] == self.orders[self.top].wh {
            self.top += 1;
        }
    }

    /// The last order that got any volume: the dearest used offer, or the cheapest used bid.
    fn last_used(&self) -> Option<&'a BookOrder> {
        let i = self.used.iter().rposition(|u| *u > 0)?;
        Some(self.orders[i])
    }

    /// The orders with their used volume, in merit order.
    fn fills(&self) -> impl Iterator<Item = (&'a BookOrder, u64)> + '_ {
        self.orders
            .iter()
            .zip(&self.used)
            .filter(|(_, u)| **u > 0)
            .map(|(o, u)| (*o, *u))
    }
}

const SOURCE: usize = 0;
const SINK: usize = 1;
const BUS: usize = 2;

fn supply_node(f: usize) -> usize {
    3 + 2 * f
}

fn demand_node(f: usize) -> usize {
    4 + 2 * f
}

/// The flow network of one period: feeders `0..n`, and the PCC as a pseudo-feeder `n` with no
/// local edge and no limits.
struct Net<'a> {
    feeders: usize,
    fees: Fees,
    edges: Vec<Edge>,
    /// Per feeder (and the PCC last): (local, export, import) forward edge indexes.
    local: Vec<Option<usize>>,
    export: Vec<usize>,
    import: Vec<usize>,
    supply: Vec<Stack<'a>>,
    demand: Vec<Stack<'a>>,
}

impl<'a> Net<'a> {
    fn new(limits: &[FeederLimit], fees: &Fees) -> Self {
        let n = limits.len();
        let mut net = Net {
            feeders: n,
            fees: *fees,
            edges: Vec::new(),
            local: Vec::new(),
            export: Vec::new(),
            import: Vec::new(),
            supply: (0..=n).map(|_| Stack::default()).collect(),
            demand: (0..=n).map(|_| Stack::default()).collect(),
        };
        let w = |cost: u64, cross| Weight {
            cost: cost as i64,
            brown: 0,
            cross,
        };
        for f in 0..=n {
            let (import, export) = limits
                .get(f)
                .map_or((UNLIMITED, UNLIMITED), |l| (l.import_wh, l.export_wh));
            let local = (f < n).then(|| {
                net.add(
                    supply_node(f),
                    demand_node(f),
                    UNLIMITED,
                    w(total(fees, Level::Feeder), 0),
                )
            });
            net.local.push(local);
            let e = net.add(
                supply_node(f),
                BUS,
                export,
                w(total(fees, Level::Island), 1),
            );
            net.export.push(e);
            let i = net.add(BUS, demand_node(f), import, w(0, 0));
            net.import.push(i);
        }
        net
    }

    fn nodes(&self) -> usize {
        5 + 2 * self.feeders
    }

    fn add(&mut self, from: usize, to: usize, cap: u64, weight: Weight) -> usize {
        let i = self.edges.len();
        self.edges.push(Edge {
            from,
            to,
            cap,
            weight,
        });
        self.edges.push(Edge {
            from: to,
            to: from,
            cap: 0,
            weight: -weight,
        });
        i
    }

    /// Energy on a forward edge: its reverse's capacity.
    fn flow(&self, e: usize) -> u64 {
        self.edges[e + 1].cap
    }

    /// Successive shortest paths while the cheapest path has no positive cost.
    fn solve(&mut self) {
        let orders: usize = self.supply.iter().map(|s| s.orders.len()).sum::<usize>()
            + self.demand.iter().map(|s| s.orders.len()).sum::<usize>();
        // Each step uses up an order or fills (or empties) a transformer edge; the bound only
        // guards against a bug looping forever inside a block.
        let max_steps = 2 * orders + 8 * (self.feeders + 1) + 16;
        for _ in 0..max_steps {
            if !self.augment() {
                break;
            }
        }
    }

    /// Sends energy along the cheapest source-to-sink path, if it costs at most zero.
    fn augment(&mut self) -> bool {
        let n = self.nodes();
        let mut dist: Vec<Option<Weight>> = vec![None; n];
        let mut pred: Vec<Option<usize>> = vec![None; n];
        for (f, s) in self.supply.iter().enumerate() {
            if let Some((o, _)) = s.top() {
                dist[supply_node(f)] = Some(Weight {
                    cost: o.price as i64,
                    brown: i64::from(!o.renewable),
                    cross: 0,
                });
            }
        }
        for _ in 0..n {
            let mut changed = false;
            for (i, e) in self.edges.iter().enumerate() {
                if e.cap == 0 {
                    continue;
                }
                let Some(d) = dist[e.from] else { continue };
                let nd = d + e.weight;
                if dist[e.to].is_none_or(|old| nd < old) {
                    dist[e.to] = Some(nd);
                    pred[e.to] = Some(i);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut best: Option<(Weight, usize)> = None;
        for (f, s) in self.demand.iter().enumerate() {
            let (Some((b, _)), Some(d)) = (s.top(), dist[demand_node(f)]) else {
                continue;
            };
            let w = d + Weight {
                cost: -(b.price as i64),
                brown: 0,
                cross: 0,
            };
            if best.is_none_or(|(bw, _)| w < bw) {
                best = Some((w, f));
            }
        }
        let Some((w, to_feeder)) = best else {
            return false;
        };
        if w.cost > 0 {
            return false;
        }
        // Walk back from the buyer's demand node to the seller's supply node.
        let mut path = Vec::new();
        let mut v = demand_node(to_feeder);
        while let Some(e) = pred[v] {
            path.push(e);
            v = self.edges[e].from;
            if path.len() > n {
                return false; // a cycle: cannot happen without negative cycles
            }
        }
        if v < 3 || !(v - 3).is_multiple_of(2) {
            return false; // the walk must end at a supply node
        }
        let from_feeder = (v - 3) / 2;
        let (Some((_, offer_left)), Some((_, bid_left))) =
            (self.supply[from_feeder].top(), self.demand[to_feeder].top())
        else {
            return false;
        };
        let q = path
            .iter()
            .map(|e| self.edges[*e].cap)
            .fold(offer_left.min(bid_left), u64::min);
        if q == 0 {
            return false;
        }
        for e in path {
            self.edges[e].cap -= q;
            self.edges[e ^ 1].cap += q;
        }
        self.supply[from_feeder].take(q);
        self.demand[to_feeder].take(q);
        true
    }

    /// The dual prices: for each node, the midpoint of its highest and lowest price over the
    /// final residual graph (welfare only), rounded down.
    fn prices(&self) -> Vec<Option<i64>> {
        let n = self.nodes();
        // (from, to, cost) of every edge still usable, stacks and the return edge included.
        let mut arcs: Vec<(usize, usize, i64)> = self
            .edges
            .iter()
            .filter(|e| e.cap > 0)
            .map(|e| (e.from, e.to, e.weight.cost))
            .collect();
        let mut traded = false;
        for f in 0..=self.feeders {
            let (s, d) = (&self.supply[f], &self.demand[f]);
            if let Some((o, _)) = s.top() {
                arcs.push((SOURCE, supply_node(f), o.price as i64));
            }
            if let Some(o) = s.last_used() {
                arcs.push((supply_node(f), SOURCE, -(o.price as i64)));
                traded = true;
            }
            if let Some((b, _)) = d.top() {
                arcs.push((demand_node(f), SINK, -(b.price as i64)));
            }
            if let Some(b) = d.last_used() {
                arcs.push((SINK, demand_node(f), b.price as i64));
            }
        }
        // The return edge: more or less energy may flow at no cost.
        arcs.push((SINK, SOURCE, 0));
        if traded {
            arcs.push((SOURCE, SINK, 0));
        }
        let high = shortest(n, SOURCE, arcs.iter().copied());
        let to_source = shortest(n, SOURCE, arcs.iter().map(|(a, b, c)| (*b, *a, *c)));
        (0..n)
            .map(|v| match (to_source[v], high[v]) {
                (Some(t), Some(h)) => Some((-t + h).div_euclid(2)),
                (Some(t), None) => Some(-t),
                (None, h) => h,
            })
            .collect()
    }

    fn trades(&self, prices: &[Option<i64>], mechanism: Mechanism) -> Clearing {
        let fees = self.fees;
        let price = |v: usize| prices[v].map(|p| p.max(0) as u64);
        let mut out = Clearing {
            flows: vec![FeederFlow::default(); self.feeders],
            feeder_prices: vec![None; self.feeders],
            ..Default::default()
        };
        // (order, Wh) queues of what goes through the bus, with each order's feeder.
        let mut exporters: Vec<(&BookOrder, usize, u64)> = Vec::new();
        let mut importers: Vec<(&BookOrder, usize, u64)> = Vec::new();
        for f in 0..=self.feeders {
            let local = self.local[f].map_or(0, |e| self.flow(e));
            let mut offers: Vec<(&BookOrder, usize, u64)> = Vec::new();
            let mut left = local;
            for (o, used) in self.supply[f].fills() {
                let here = used.min(left);
                left -= here;
                if here > 0 {
                    offers.push((o, f, here));
                }
                if used > here {
                    exporters.push((o, f, used - here));
                }
            }
            let mut bids: Vec<(&BookOrder, usize, u64)> = Vec::new();
            let mut left = local;
            for (b, used) in self.demand[f].fills() {
                let here = used.min(left);
                left -= here;
                if here > 0 {
                    bids.push((b, f, here));
                }
                if used > here {
                    importers.push((b, f, used - here));
                }
            }
            if f < self.feeders {
                out.flows[f] = FeederFlow {
                    local_wh: local,
                    import_wh: self.flow(self.import[f]),
                    export_wh: self.flow(self.export[f]),
                };
                if local > 0 {
                    let gross = price(demand_node(f));
                    out.feeder_prices[f] =
                        gross.map(|g| g.saturating_sub(fees.wheeling_feeder + fees.buyer_fee));
                }
            }
            let gross = price(demand_node(f));
            pair(&offers, &bids, |(o, _), (b, _), wh| {
                let gross = match mechanism {
                    Mechanism::PayAsClear => gross.unwrap_or(b.price),
                    Mechanism::PayAsBid => b.price,
                };
                out.matches.push(Match {
                    bid: b.id,
                    offer: o.id,
                    wh,
                    price: gross.saturating_sub(fees.wheeling_feeder + fees.buyer_fee),
                    level: Level::Feeder,
                    rates: TradeRates {
                        wheeling: fees.wheeling_feeder,
                        buyer_fee: fees.buyer_fee,
                        seller_fee: fees.seller_fee,
                        buyer_congestion: 0,
                        seller_congestion: 0,
                    },
                });
            });
        }
        let bus = price(BUS);
        if !exporters.is_empty() {
            out.island_price = bus.map(|p| p.saturating_sub(fees.wheeling_island + fees.buyer_fee));
        }
        let mut island = Vec::new();
        pair(&exporters, &importers, |o, b, wh| island.push((o, b, wh)));
        for ((o, from), (b, to), wh) in island {
            let (supply_price, demand_price) = (price(supply_node(from)), price(demand_node(to)));
            // Congestion: the gaps a full transformer opens between the bus and a feeder.
            let seller_congestion = match (bus, supply_price) {
                (Some(h), Some(s)) => h.saturating_sub(total(&fees, Level::Island) + s),
                _ => 0,
            };
            let buyer_congestion = match (bus, demand_price) {
                (Some(h), Some(d)) => d.saturating_sub(h),
                _ => 0,
            };
            let gross = match mechanism {
                Mechanism::PayAsClear => demand_price.unwrap_or(b.price),
                Mechanism::PayAsBid => b.price,
            };
            out.matches.push(Match {
                bid: b.id,
                offer: o.id,
                wh,
                price: gross
                    .saturating_sub(fees.wheeling_island + fees.buyer_fee + buyer_congestion),
                level: Level::Island,
                rates: TradeRates {
                    wheeling: fees.wheeling_island,
                    buyer_fee: fees.buyer_fee,
                    seller_fee: fees.seller_fee,
                    buyer_congestion,
                    seller_congestion,
                },
            });
        }
        out
    }
}

/// An order with its feeder (the PCC's index for the PCC) and Wh to pair.
type Part<'a> = (&'a BookOrder, usize, u64);

/// Pairs two lists of parts in order, each unit once; `emit` gets each side's order and
/// feeder, and the Wh.
fn pair<'a>(
    offers: &[Part<'a>],
    bids: &[Part<'a>],
    mut emit: impl FnMut((&'a BookOrder, usize), (&'a BookOrder, usize), u64),
) {
    let (mut i, mut j) = (0, 0);
    let (mut offer_left, mut bid_left) = (
        offers.first().map_or(0, |o| o.2),
        bids.first().map_or(0, |b| b.2),
    );
    while i < offers.len() && j < bids.len() {
        let q = offer_left.min(bid_left);
        emit((offers[i].0, offers[i].1), (bids[j].0, bids[j].1), q);
        offer_left -= q;
        bid_left -= q;
        if offer_left == 0 {
            i += 1;
            offer_left = offers.get(i).map_or(0, |o| o.2);
        }
        if bid_left == 0 {
            j += 1;
            bid_left = bids.get(j).map_or(0, |b| b.2);
        }
    }
}

/// Bellman-Ford distances from `from` (no negative cycles: the residual graph of a min-cost
/// flow has none; the pass bound keeps a bug from looping).
fn shortest(
    n: usize,
    from: usize,
    arcs: impl Iterator<Item = (usize, usize, i64)> + Clone,
) -> Vec<Option<i64>> {
    let mut dist = vec![None; n];
    dist[from] = Some(0);
    for _ in 0..n {
        let mut changed = false;
        for (a, b, c) in arcs.clone() {
            let Some(d) = dist[a] else { continue };
            if dist[b].is_none_or(|old: i64| d + c < old) {
                dist[b] = Some(d + c);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    dist
}

#[cfg(test)]
mod tests;
