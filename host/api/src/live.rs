//! What changes as blocks commit: the server-sent block stream (`/v1/events`) and the
//! operators' metrics (`/metrics`, Prometheus text format).
//!
//! One task follows the node's committed blocks, updates the metrics and publishes one JSON
//! event per block; each SSE client reads from that broadcast. Gauges that are cheaper to read
//! than to track (mempool size, peers, plugin counters) are read when scraped.

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use gridledger_devices::PluginSet;
use gridledger_node::Node;
use gridledger_node::validator::ValidatorStatus;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::broadcast;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

struct Metrics {
    registry: Registry,
    height: Gauge,
    finalized_height: Gauge,
    finality_latency: Histogram,
    block_gas: Histogram,
    contract_gas: Counter,
    transactions: Counter,
    mempool: Gauge,
    peers: Gauge,
    certified_height: Gauge,
    diverged: Gauge,
    plugin_polls: Family<PluginLabel, Counter>,
    plugin_failures: Family<PluginLabel, Counter>,
    plugin_readings: Family<PluginLabel, Counter>,
    /// Plugin counters as last seen, so the Prometheus counters move by the difference.
    seen: HashMap<(String, &'static str), u64>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gridledger");
        let m = Metrics {
            height: Gauge::default(),
            finalized_height: Gauge::default(),
            finality_latency: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]),
            block_gas: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                1e5, 4.0, 12,
            )),
            contract_gas: Counter::default(),
            transactions: Counter::default(),
            mempool: Gauge::default(),
            peers: Gauge::default(),
            certified_height: Gauge::default(),
            diverged: Gauge::default(),
            plugin_polls: Family::default(),
            plugin_failures: Family::default(),
            plugin_readings: Family::default(),
            seen: HashMap::new(),
            registry: Registry::default(),
        };
        registry.register(
            "block_height",
            "Height of the latest committed block",
            m.height.clone(),
        );
        registry.register(
            "finalized_height",
            "Height of the latest finalized block (every committed block is final)",
            m.finalized_height.clone(),
        );
        registry.register(
            "finality_latency_seconds",
            "From a block's proposal time to its commit on this node",
            m.finality_latency.clone(),
        );
        registry.register(
            "block_gas_used",
            "Gas used per block (transactions and the chain's own contract calls)",
            m.block_gas.clone(),
        );
        registry.register(
            "contract_gas",
            "Gas used by all blocks",
            m.contract_gas.clone(),
        );
        registry.register(
            "transactions",
            "Transactions committed",
            m.transactions.clone(),
        );
        registry.register(
            "mempool_transactions",
            "Transactions waiting in the mempool",
            m.mempool.clone(),
        );
        registry.register(
            "peers_connected",
            "Validators this node is connected to",
            m.peers.clone(),
        );
        registry.register(
            "certified_height",
            "Height of the latest header a quorum of validators certified after executing it",
            m.certified_height.clone(),
        );
        registry.register(
            "execution_diverged",
            "1 when a quorum certified another header than this node executed (it stopped voting)",
            m.diverged.clone(),
        );
        registry.register(
            "plugin_polls",
            "Polls of each device plugin",
            m.plugin_polls.clone(),
        );
        registry.register(
            "plugin_failures",
            "Failed starts and polls of each device plugin",
            m.plugin_failures.clone(),
        );
        registry.register(
            "plugin_readings",
            "Signed readings each device plugin produced",
            m.plugin_readings.clone(),
        );
        Metrics { registry, ..m }
    }

    fn advance(&mut self, family: &'static str, plugin: &str, now: u64) {
        let before = self
            .seen
            .insert((plugin.to_string(), family), now)
            .unwrap_or(0);
        let f = match family {
            "polls" => &self.plugin_polls,
            "failures" => &self.plugin_failures,
            _ => &self.plugin_readings,
        };
        f.get_or_create(&PluginLabel {
            plugin: plugin.to_string(),
        })
        .inc_by(now.saturating_sub(before));
    }
}

/// The live side of the API: the block stream and the metrics.
#[derive(Clone)]
pub struct Live {
    node: Arc<Node>,
    plugins: Option<Arc<PluginSet>>,
    validator: Option<Arc<ValidatorStatus>>,
    metrics: Arc<Mutex<Metrics>>,
    events: broadcast::Sender<BlockEvent>,
    /// The latest events, for clients that reconnect with `Last-Event-ID`.
    recent: Arc<Mutex<std::collections::VecDeque<BlockEvent>>>,
    /// Event streams open now.
    streams: Arc<std::sync::atomic::AtomicUsize>,
}

/// Event streams served at once; one more is answered `503 busy`.
pub const MAX_EVENT_STREAMS: usize = 256;

/// An open event stream's place; given back when the stream ends (the client went away).
struct StreamPlace(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for StreamPlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A block's height and its event JSON.
type BlockEvent = (u64, Arc<String>);

/// Events kept for clients that reconnect (about a minute of blocks at the fastest pace).
const RECENT_EVENTS: usize = 512;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Live {
    /// Starts following `node`'s blocks (on the current tokio runtime).
    pub fn start(
        node: Arc<Node>,
        plugins: Option<Arc<PluginSet>>,
        validator: Option<Arc<ValidatorStatus>>,
    ) -> Live {
        let (events, _) = broadcast::channel(256);
        let live = Live {
            node,
            plugins,
            validator,
            metrics: Arc::new(Mutex::new(Metrics::new())),
            events,
            recent: Default::default(),
            streams: Default::default(),
        };
        let head = live.node.head().height as i64;
        {
            let m = live.metrics.lock();
            m.height.set(head);
            m.finalized_height.set(head);
        }
        tokio::spawn(live.clone().follow());
        live
    }

    async fn follow(self) {
        let mut blocks = self.node.subscribe();
        loop {
            let block = match blocks.recv().await {
                Ok(b) => b,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let h = &block.header;
            let latency_ms = now_ms().saturating_sub(h.time_ms);
            let gas: u64 = block.receipts.iter().map(|r| r.gas_used).sum();
            {
                let m = self.metrics.lock();
                m.height.set(h.height as i64);
                m.finalized_height.set(h.height as i64);
                m.finality_latency.observe(latency_ms as f64 / 1000.0);
                m.block_gas.observe(gas as f64);
                m.contract_gas.inc_by(gas);
                m.transactions.inc_by(h.tx_count as u64);
            }
            let mut kinds: std::collections::BTreeMap<&str, u64> = Default::default();
            for e in block.receipts.iter().flat_map(|r| &r.events) {
                *kinds.entry(e.kind.as_str()).or_default() += 1;
            }
            // Who signed the certificate that finalized it (consensus blocks only).
            let cert = self
                .node
                .finality(h.height)
                .ok()
                .flatten()
                .and_then(|p| p.certificate());
            let signers = cert
                .as_ref()
                .map(|c| c.signer_indices())
                .unwrap_or_default();
            let view = cert.map(|c| c.view);
            let event = serde_json::json!({
                "height": h.height,
                "hash": h.hash().to_hex(),
                "time_ms": h.time_ms,
                "proposer": h.proposer.to_hex(),
                "tx_count": h.tx_count,
                "receipt_count": h.receipt_count,
                "gas_used": gas,
                "finality_latency_ms": latency_ms,
                "events": kinds,
                "view": view,
                "signers": signers,
            });
            let event = (h.height, Arc::new(event.to_string()));
            {
                let mut recent = self.recent.lock();
                if recent.len() == RECENT_EVENTS {
                    recent.pop_front();
                }
                recent.push_back(event.clone());
            }
            let _ = self.events.send(event);
        }
    }
}

/// `GET /v1/events`: one `block` event per committed block, as JSON, with the block height as
/// its id. A client that reconnects with `Last-Event-ID` (browsers do) first gets the events
/// it missed, as far back as the last [`RECENT_EVENTS`]. A client that lags behind the live
/// stream skips what it missed.
pub async fn events(
    State(live): State<Live>,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    let open = live.streams.fetch_add(1, Ordering::AcqRel);
    let place = StreamPlace(live.streams.clone());
    if open >= MAX_EVENT_STREAMS {
        return Err((
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "code": "busy",
                "error": format!("{open} event streams are open; retry shortly"),
            })),
        )
            .into_response());
    }
    // Subscribe before reading the backlog, so no event falls between the two.
    let live_events = BroadcastStream::new(live.events.subscribe());
    let after: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok());
    let missed: Vec<BlockEvent> = match after {
        Some(h) => live
            .recent
            .lock()
            .iter()
            .filter(|(height, _)| *height > h)
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let sent_up_to = missed.last().map(|(h, _)| *h).or(after).unwrap_or(0);
    let stream = tokio_stream::iter(missed)
        .chain(
            live_events
                .filter_map(|msg| msg.ok())
                .filter(move |(height, _)| *height > sent_up_to),
        )
        .map(move |(height, json)| {
            // The place is held as long as the stream lives.
            let _ = &place;
            Ok(Event::default()
                .event("block")
                .id(height.to_string())
                .data(json.as_str()))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(live): State<Live>) -> Response {
    let statuses = live
        .plugins
        .as_ref()
        .map(|p| p.statuses())
        .unwrap_or_default();
    let mut m = live.metrics.lock();
    m.mempool.set(live.node.mempool_len() as i64);
    m.certified_height
        .set(live.node.certified_height().unwrap_or(0) as i64);
    m.diverged.set(live.node.diverged().is_some() as i64);
    m.peers.set(
        live.validator
            .as_ref()
            .map_or(0, |v| v.peers.load(Ordering::Relaxed) as i64),
    );
    for s in &statuses {
        m.advance("polls", &s.id, s.polls);
        m.advance("failures", &s.id, s.failures);
        m.advance("readings", &s.id, s.readings);
    }
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &m.registry) {
        return crate::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            e.to_string(),
        )
        .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
