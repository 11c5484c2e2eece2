//! The relay: what the plugins read goes to the chain in `Readings` transactions sent by the
//! node's gateway account.
//!
//! The chain takes a device's reading when its number comes after the last one taken and its
//! timestamp lies within the time tolerance of its block; a reading refused or lost costs only
//! itself, the meter's next one is taken. So what the relay guards is freshness: a reading is
//! worth sending only while it can still land in a block inside the tolerance. The relay
//! - sends readings in the order they were read, in batches of at most [`MAX_BATCH`];
//! - drops a reading not yet sent once it is older than half the tolerance (the other half
//!   is for its way into a block): when the chain falls behind, the newest readings are sent,
//!   not a backlog that every block would refuse;
//! - keeps at most [`MAX_IN_FLIGHT`] readings on their way (admitted, not yet seen in a block,
//!   not yet too old to be taken), and waits while the mempool is busy, so a slow chain is not
//!   handed a mempool of readings that will be refused;
//! - when a block refuses a device's reading, moves the plugin's numbering for that device up
//!   to the chain's, which matters only if the chain holds a later number than the plugin
//!   (the same meter relayed from elsewhere, or batches of an earlier run landing late).

use gridledger_devices::PluginSet;
use gridledger_node::{Node, Rejected};
use gridledger_types::{Address, Hash32, Keypair, Payload, Receipt, SignedReading, TxBody};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// Most readings relayed in one transaction: a batch stays below the gas limit at which
/// leaders count a transaction as heavy ([`gridledger_node::heavy_tx_gas`]: heavy ones share
/// half a block), with room for its size. At 200 readings a batch (4·10⁸ gas) one batch made a
/// block, and 1,000 meters' readings piled up until they were too old to be taken.
const MAX_BATCH: usize = 80;
// Small enough for leaders to take first (their readings lane).
const _: () = assert!(MAX_BATCH <= gridledger_node::selection::LANE_MAX_READINGS);
/// Most readings on their way at once: about 5 s of a 1,000-meter community's readings (one
/// every 3 s each), the time tolerance of the devnet.
const MAX_IN_FLIGHT: usize = 20 * MAX_BATCH;
/// Most readings waiting to be sent; past it the oldest go.
const MAX_WAITING: usize = 2 * MAX_IN_FLIGHT;
/// How often the relay looks again at what waits, when nothing else wakes it.
const TICK: Duration = Duration::from_millis(100);
// Gas per reading beyond the transaction's size: what the chain reserves before applying
// a batch (only what is used is paid), and what a leader's readings lane allows.
use gridledger_node::devices::gas_per_reading;

/// A batch on its way.
struct InFlight {
    /// The devices its readings are of.
    devices: Vec<Address>,
    /// Wall time after which no block within the tolerance can take any of its readings.
    useless_after_ms: u64,
}

/// What the relay holds and knows of what it sent. Pure: the loop below feeds it the time.
struct Book {
    tolerance_ms: u64,
    /// Read and not yet sent, oldest first.
    waiting: VecDeque<SignedReading>,
    /// Admitted to the mempool, not yet seen in a block.
    in_flight: HashMap<Hash32, InFlight>,
    /// Devices with a reading refused in a block since they were last brought up to the
    /// chain's numbering.
    refused: BTreeSet<Address>,
    /// Readings dropped unsent, too old or past [`MAX_WAITING`].
    dropped: u64,
}

impl Book {
    fn new(tolerance_ms: u64) -> Book {
        Book {
            tolerance_ms,
            waiting: VecDeque::new(),
            in_flight: HashMap::new(),
            refused: BTreeSet::new(),
            dropped: 0,
        }
    }

    /// Readings the plugins just read.
    fn read(&mut self, batch: Vec<SignedReading>) {
        self.waiting.extend(batch);
        while self.waiting.len() > MAX_WAITING {
            self.waiting.pop_front();
            self.dropped += 1;
        }
    }

    fn in_flight_readings(&self) -> usize {
        self.in_flight.values().map(|f| f.devices.len()).sum()
    }

    /// The next batch to send at `now_ms`, if any waits and there is room on the way. What
    /// waits and is older than half the tolerance is dropped first.
    fn next_batch(&mut self, now_ms: u64) -> Option<Vec<SignedReading>> {
        let fresh_after = now_ms.saturating_sub(self.tolerance_ms / 2);
        let before = self.waiting.len();
        self.waiting
            .retain(|r| r.reading.timestamp_ms >= fresh_after);
        self.dropped += (before - self.waiting.len()) as u64;
        let room = MAX_IN_FLIGHT.saturating_sub(self.in_flight_readings());
        let n = self.waiting.len().min(room).min(MAX_BATCH);
        (n > 0).then(|| self.waiting.drain(..n).collect())
    }

    /// A batch the mempool could not take yet: first in line again.
    fn unsent(&mut self, batch: Vec<SignedReading>) {
        for r in batch.into_iter().rev() {
            self.waiting.push_front(r);
        }
    }

    fn sent(&mut self, tx: Hash32, batch: &[SignedReading]) {
        let newest = batch
            .iter()
            .map(|r| r.reading.timestamp_ms)
            .max()
            .unwrap_or(0);
        self.in_flight.insert(
            tx,
            InFlight {
                devices: batch.iter().map(|r| r.reading.device).collect(),
                // A second beyond the tolerance, for block times behind the wall clock.
                useless_after_ms: newest + self.tolerance_ms + 1_000,
            },
        );
    }

    /// A committed block: those of our transactions it holds are in, and the devices whose
    /// readings it refused are noted (all of a batch that failed: a failed transaction keeps
    /// no events).
    fn block(&mut self, receipts: &[Receipt]) {
        for r in receipts {
            let Some(sent) = self.in_flight.remove(&r.tx_hash) else {
                continue;
            };
            if r.error.is_some() {
                self.refused.extend(sent.devices);
                continue;
            }
            for e in r.events.iter().filter(|e| e.kind == "reading_refused") {
                let device = e.attributes.iter().find(|(k, _)| k == "device");
                if let Some(Ok(d)) = device.map(|(_, v)| v.parse::<Address>()) {
                    self.refused.insert(d);
                }
            }
        }
    }

    /// Batches still unseen when none of their readings can be taken any more stop counting
    /// as on their way (dropped by a mempool, or in blocks this node has not seen yet).
    fn expire(&mut self, now_ms: u64) {
        self.in_flight.retain(|_, f| now_ms <= f.useless_after_ms);
    }

    fn take_refused(&mut self) -> BTreeSet<Address> {
        std::mem::take(&mut self.refused)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Relays the plugins' readings until `incoming` closes or `stop` turns true.
pub async fn run(
    node: Arc<Node>,
    relay: Keypair,
    set: Arc<PluginSet>,
    mut incoming: mpsc::Receiver<Vec<SignedReading>>,
    relayed: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(tolerance_ms) = node.reading_rules().map(|r| r.time_tolerance_ms) else {
        return;
    };
    let mut blocks = node.subscribe();
    let mut book = Book::new(tolerance_ms);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dropped_logged = 0;
    loop {
        tokio::select! {
            batch = incoming.recv() => {
                let Some(batch) = batch else { break };
                book.read(batch);
                while let Ok(more) = incoming.try_recv() {
                    book.read(more);
                }
            }
            block = blocks.recv() => match block {
                Ok(b) => book.block(&b.receipts),
                // What of ours the missed blocks held stops counting when it is too old.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick() => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
        }
        let now = now_ms();
        book.expire(now);
        while let Some(batch) = book.next_batch(now) {
            match submit(&node, &relay, batch.clone()) {
                Ok(hash) => {
                    relayed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    book.sent(hash, &batch);
                }
                Err(
                    Rejected::MempoolFull
                    | Rejected::TooManyPending { .. }
                    | Rejected::TooManyPendingBytes { .. },
                ) => {
                    book.unsent(batch);
                    break;
                }
                Err(e) => {
                    // Those readings are lost; the meters' next ones are taken all the same.
                    tracing::warn!(readings = batch.len(), error = %e, "readings could not be relayed");
                }
            }
        }
        if book.dropped >= dropped_logged + 1_000 {
            tracing::warn!(
                dropped = book.dropped,
                "readings dropped unsent: older than half the time tolerance before the chain could take them"
            );
            dropped_logged = book.dropped;
        }
        let refused = book.take_refused();
        if !refused.is_empty() {
            let chain_next = |device: &Address| {
                if !refused.contains(device) {
                    return None;
                }
                node.device(device)
                    .ok()
                    .flatten()
                    .and_then(|rec| rec.last.map(|l| l.seq.saturating_add(1)))
            };
            if let Err(e) = set.resync(chain_next).await {
                tracing::error!("moving refused devices up to the chain's numbering failed: {e}");
            }
        }
    }
}

fn submit(node: &Node, relay: &Keypair, readings: Vec<SignedReading>) -> Result<Hash32, Rejected> {
    let nonce = node
        .next_nonce(&relay.address())
        .map_err(|e| Rejected::Malformed(e.to_string()))?;
    let n = readings.len() as u64;
    let payload = Payload::Readings { readings };
    let tx = TxBody {
        chain_id: node.chain_id().to_string(),
        sender: relay.address(),
        nonce,
        gas_limit: 0,
        payload,
    };
    let size = tx.clone().sign(relay).encode().len() as u64;
    let g = node.vm().config().gas.clone();
    let tx = TxBody {
        gas_limit: g.tx_base + g.tx_per_byte * (size + 16) + gas_per_reading(&g) * n,
        ..tx
    }
    .sign(relay);
    node.submit(&tx.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_types::{ErrorCode, Event, MeterReading, ReceiptError};

    /// A full batch's transaction stays under the chain's gas cap per transaction (else every
    /// full batch would be refused with `gas_limit_too_high`), with room for its bytes.
    #[test]
    fn a_full_batch_fits_one_transactions_gas_cap() {
        let vm = gridledger_vm::VmConfig::default();
        let bytes_gas = vm.gas.tx_base + vm.gas.tx_per_byte * (MAX_BATCH as u64 * 400);
        let batch_gas = MAX_BATCH as u64 * gas_per_reading(&vm.gas) + bytes_gas;
        assert!(batch_gas <= vm.limits.max_tx_gas);
        // Not heavy: many batches fit in a block, not one.
        assert!(batch_gas <= gridledger_node::heavy_tx_gas(vm.limits.max_block_gas));
    }

    const TOLERANCE: u64 = 5_000;
    const NOW: u64 = 1_000_000;

    fn reading(device: u8, seq: u64, timestamp_ms: u64) -> SignedReading {
        MeterReading {
            device: Address([device; 32]),
            period: 0,
            export_wh: seq,
            import_wh: 0,
            power_w: 0,
            timestamp_ms,
            seq,
            plugin: Hash32([0; 32]),
        }
        .sign("test", &Keypair::from_seed_phrase("device"))
    }

    /// A receipt of transaction `tx` that refused a reading of each of `refused`.
    fn receipt(tx: u8, refused: &[u8], failed: bool) -> Receipt {
        Receipt {
            tx_hash: Hash32([tx; 32]),
            gas_used: 0,
            fee: 0,
            error: failed.then(|| ReceiptError {
                code: ErrorCode::InvalidInput,
                message: "no reading accepted".into(),
            }),
            events: refused
                .iter()
                .map(|d| Event {
                    contract: None,
                    kind: "reading_refused".into(),
                    attributes: vec![
                        ("device".into(), Address([*d; 32]).to_hex()),
                        ("reason".into(), "timestamp strays too far".into()),
                    ],
                })
                .collect(),
            result: Vec::new(),
        }
    }

    fn seqs(batch: &[SignedReading]) -> Vec<u64> {
        batch.iter().map(|r| r.reading.seq).collect()
    }

    /// Found on the 1,000-household devnet beside a browser (issue 16): after one refusal the
    /// relay sent nothing until all it had on its way was in, then renumbered the meters, and
    /// its readings were too old by the time they went. Now a refusal holds nothing back.
    #[test]
    fn a_refused_reading_holds_nothing_back_and_only_its_device_is_brought_up() {
        let mut book = Book::new(TOLERANCE);
        book.read(vec![reading(1, 0, NOW), reading(2, 0, NOW)]);
        let batch = book.next_batch(NOW).expect("sent at once");
        assert_eq!(seqs(&batch), vec![0, 0]);
        book.sent(Hash32([1; 32]), &batch);
        book.read(vec![reading(1, 1, NOW + 1_000)]);
        // Our batch's block refused device 1's reading; another sender's refusals are not ours.
        book.block(&[receipt(1, &[1], false), receipt(9, &[3], false)]);
        assert!(book.in_flight.is_empty());
        assert_eq!(book.take_refused(), BTreeSet::from([Address([1; 32])]));
        assert!(book.take_refused().is_empty(), "taken once");
        let batch = book.next_batch(NOW + 1_000).expect("not held");
        assert_eq!(seqs(&batch), vec![1]);
    }

    /// Found by review: a batch whose every reading was refused fails, and a failed
    /// transaction keeps no events, so its devices were never brought up.
    #[test]
    fn a_failed_batch_brings_up_all_its_devices() {
        let mut book = Book::new(TOLERANCE);
        book.read(vec![reading(1, 0, NOW), reading(2, 0, NOW)]);
        let batch = book.next_batch(NOW).expect("a batch");
        book.sent(Hash32([1; 32]), &batch);
        book.block(&[receipt(1, &[], true)]);
        assert_eq!(
            book.take_refused(),
            BTreeSet::from([Address([1; 32]), Address([2; 32])])
        );
    }

    #[test]
    fn readings_older_than_half_the_tolerance_are_dropped_unsent() {
        let mut book = Book::new(TOLERANCE);
        book.read(vec![
            reading(1, 0, NOW - 2_501),
            reading(2, 0, NOW - 2_500),
            reading(1, 1, NOW),
        ]);
        let batch = book.next_batch(NOW).expect("the fresh ones");
        assert_eq!(
            batch
                .iter()
                .map(|r| r.reading.timestamp_ms)
                .collect::<Vec<_>>(),
            vec![NOW - 2_500, NOW]
        );
        assert_eq!(book.dropped, 1);
        assert!(book.next_batch(NOW).is_none());
    }

    #[test]
    fn what_is_on_its_way_is_bounded_until_a_block_takes_it_or_it_is_too_old() {
        let mut book = Book::new(TOLERANCE);
        let n = MAX_IN_FLIGHT + MAX_BATCH;
        book.read((0..n as u64).map(|i| reading(1, i, NOW)).collect());
        let mut sent = 0;
        let mut tx = 0u8;
        while let Some(batch) = book.next_batch(NOW) {
            assert!(batch.len() <= MAX_BATCH);
            sent += batch.len();
            tx += 1;
            book.sent(Hash32([tx; 32]), &batch);
        }
        assert_eq!(sent, MAX_IN_FLIGHT, "no more than the bound on its way");
        assert_eq!(book.waiting.len(), MAX_BATCH);
        // One batch in a block makes room for one more.
        book.block(&[receipt(1, &[], false)]);
        let batch = book.next_batch(NOW).expect("room again");
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(batch[0].reading.seq, MAX_IN_FLIGHT as u64);
        book.sent(Hash32([200; 32]), &batch);
        // Unseen batches stop counting once no block inside the tolerance could take them.
        book.expire(NOW + TOLERANCE + 1_000);
        assert_eq!(book.in_flight_readings(), MAX_IN_FLIGHT);
        book.expire(NOW + TOLERANCE + 1_001);
        assert_eq!(book.in_flight_readings(), 0);
    }

    #[test]
    fn a_batch_the_mempool_turned_away_goes_first_again_in_order() {
        let mut book = Book::new(TOLERANCE);
        book.read((0..3).map(|i| reading(1, i, NOW)).collect());
        let batch = book.next_batch(NOW).expect("a batch");
        book.read(vec![reading(1, 3, NOW)]);
        book.unsent(batch);
        assert_eq!(
            seqs(&book.next_batch(NOW).expect("again")),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn what_waits_is_capped_and_the_oldest_goes() {
        let mut book = Book::new(TOLERANCE);
        book.read(
            (0..(MAX_WAITING + 5) as u64)
                .map(|i| reading(1, i, NOW))
                .collect(),
        );
        assert_eq!(book.waiting.len(), MAX_WAITING);
        assert_eq!(book.dropped, 5);
        assert_eq!(book.waiting[0].reading.seq, 5);
    }
}
