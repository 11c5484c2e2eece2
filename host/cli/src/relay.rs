//! The relay: what the plugins read goes to the chain in `Readings` transactions sent by the
//! node's gateway account; and when the chain refuses some of it, the plugins' numbering is
//! brought back to the chain's.
//!
//! The node numbers each device's readings itself, and the chain takes only the next number.
//! So a reading the chain refuses (its block came too late for its timestamp, the mempool
//! turned the batch away, …) leaves the node's numbering ahead of the chain's, and every later
//! reading of that device would be refused too. The relay notices refusals (at admission, in
//! its transactions' receipts, or a transaction that never makes it into a block), holds its
//! readings until its transactions on their way are in, then resumes every device from the
//! chain's record.

use gridledger_devices::PluginSet;
use gridledger_node::{Node, Rejected};
use gridledger_types::{Address, Hash32, Keypair, Payload, SignedReading, TxBody};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// Most readings relayed in one transaction: a batch stays below the gas limit at which
/// leaders count a transaction as heavy ([`gridledger_node::heavy_tx_gas`]: heavy ones share
/// half a block), with room for its size. At 200 readings a batch (4·10⁸ gas) one batch made a
/// block, and 1,000 meters' readings piled up until they were too old to be taken.
const MAX_BATCH: usize = 80;
/// Gas per reading beyond the transaction's size: what the chain reserves before applying
/// a batch, each reading's lookup and signature check and a possible energy report to the
/// market ([`gridledger_node::devices::REPORT_GAS`]). Only what is used is paid.
fn gas_per_reading(g: &gridledger_vm::GasSchedule) -> u64 {
    g.reading_lookup + g.reading_signature + gridledger_node::devices::REPORT_GAS
}
/// A readings transaction not in a block this many blocks after it was sent is taken as lost.
const LOST_AFTER_BLOCKS: u64 = 20;

/// What the relay knows of the readings it sent. Pure: the loop below feeds it.
#[derive(Default)]
struct Book {
    /// Readings transactions admitted to the mempool and not yet seen in a block, with the
    /// height of the chain when they were sent.
    in_flight: HashMap<Hash32, u64>,
    /// The chain refused something: send nothing until what is in flight is in, then resync.
    diverged: bool,
    /// After a resync, by device: readings taken up to this time carry the old numbering.
    cutoff_ms: HashMap<Address, u64>,
}

impl Book {
    /// Of a batch the plugins read, what may go to the chain now.
    fn sendable(&mut self, batch: Vec<SignedReading>) -> Vec<SignedReading> {
        if self.diverged {
            return Vec::new();
        }
        batch
            .into_iter()
            .filter(|r| {
                self.cutoff_ms
                    .get(&r.reading.device)
                    .is_none_or(|&cut| r.reading.timestamp_ms > cut)
            })
            .collect()
    }

    fn sent(&mut self, tx: Hash32, height: u64) {
        self.in_flight.insert(tx, height);
    }

    fn refused(&mut self) {
        self.diverged = true;
    }

    /// A committed block: those of our transactions that it holds are in; a refused reading
    /// among them, or one of ours long missing, means the numbering diverged.
    fn block(&mut self, height: u64, receipts: &[gridledger_types::Receipt]) {
        for r in receipts {
            if self.in_flight.remove(&r.tx_hash).is_some()
                && (r.error.is_some() || r.events.iter().any(|e| e.kind == "reading_refused"))
            {
                self.diverged = true;
            }
        }
        let before = self.in_flight.len();
        self.in_flight
            .retain(|_, sent| height < *sent + LOST_AFTER_BLOCKS);
        if self.in_flight.len() < before {
            self.diverged = true;
        }
    }

    fn ready_to_resync(&self) -> bool {
        self.diverged && self.in_flight.is_empty()
    }

    fn resynced(&mut self, cutoff_ms: HashMap<Address, u64>) {
        self.diverged = false;
        self.cutoff_ms = cutoff_ms;
    }
}

/// Relays the plugins' readings until `incoming` closes (or, while waiting out a busy
/// mempool, `stop` turns true).
pub async fn run(
    node: Arc<Node>,
    relay: Keypair,
    set: Arc<PluginSet>,
    mut incoming: mpsc::Receiver<Vec<SignedReading>>,
    relayed: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) {
    let mut blocks = node.subscribe();
    let mut book = Book::default();
    loop {
        tokio::select! {
            batch = incoming.recv() => {
                let Some(mut batch) = batch else { break };
                while batch.len() < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(more) => batch.extend(more),
                        Err(_) => break,
                    }
                }
                let batch = book.sendable(batch);
                for chunk in batch.chunks(MAX_BATCH) {
                    send(&node, &relay, chunk.to_vec(), &mut book, &relayed, &stop).await;
                }
            }
            block = blocks.recv() => match block {
                Ok(b) => book.block(b.header.height, &b.receipts),
                // What of ours the missed blocks held counts as lost after LOST_AFTER_BLOCKS;
                // the resync that follows is needless but harmless.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
        if book.ready_to_resync() {
            let chain_next = |device: &Address| {
                node.device(device)
                    .ok()
                    .flatten()
                    .map(|rec| rec.last.map_or(0, |l| l.seq + 1))
            };
            match set.resync(chain_next).await {
                Ok(cutoffs) => {
                    tracing::warn!(
                        "the chain refused readings: every device resumes from its record on chain"
                    );
                    book.resynced(cutoffs);
                }
                Err(e) => tracing::error!("resuming the devices from the chain failed: {e}"),
            }
        }
    }
}

/// Submits one batch, retrying while the mempool is busy.
async fn send(
    node: &Node,
    relay: &Keypair,
    batch: Vec<SignedReading>,
    book: &mut Book,
    relayed: &AtomicU64,
    stop: &watch::Receiver<bool>,
) {
    let mut wait = Duration::from_millis(50);
    loop {
        match submit(node, relay, batch.clone()) {
            Ok(hash) => {
                book.sent(hash, node.head().height);
                relayed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(Rejected::MempoolFull) if !*stop.borrow() => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::warn!(readings = batch.len(), error = %e, "readings could not be relayed");
                book.refused();
                return;
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
    use gridledger_types::{ErrorCode, Event, MeterReading, Receipt, ReceiptError};

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

    fn receipt(tx: u8, refused: bool, failed: bool) -> Receipt {
        Receipt {
            tx_hash: Hash32([tx; 32]),
            gas_used: 0,
            fee: 0,
            error: failed.then(|| ReceiptError {
                code: ErrorCode::InvalidInput,
                message: "no reading accepted".into(),
            }),
            events: refused
                .then(|| Event {
                    contract: None,
                    kind: "reading_refused".into(),
                    attributes: Vec::new(),
                })
                .into_iter()
                .collect(),
            result: Vec::new(),
        }
    }

    #[test]
    fn accepted_readings_flow_and_nothing_is_resynced() {
        let mut book = Book::default();
        assert_eq!(book.sendable(vec![reading(1, 0, 10)]).len(), 1);
        book.sent(Hash32([1; 32]), 5);
        book.block(6, &[receipt(1, false, false), receipt(9, true, true)]);
        assert!(book.in_flight.is_empty());
        assert!(
            !book.ready_to_resync(),
            "another sender's refusal is not ours"
        );
        assert_eq!(book.sendable(vec![reading(1, 1, 20)]).len(), 1);
    }

    #[test]
    fn a_refused_reading_holds_the_relay_until_its_batches_are_in_then_resyncs() {
        let mut book = Book::default();
        book.sent(Hash32([1; 32]), 5);
        book.sent(Hash32([2; 32]), 5);
        // The first batch had a reading refused; the second is still on its way.
        book.block(6, &[receipt(1, true, false)]);
        assert!(book.sendable(vec![reading(1, 7, 30)]).is_empty(), "held");
        assert!(!book.ready_to_resync(), "a batch is still in flight");
        book.block(7, &[receipt(2, false, false)]);
        assert!(book.ready_to_resync());
        // The plugin's last poll before the resync was at 40 ms: what it read up to then
        // carries the old numbering and is dropped; what it reads after goes.
        book.resynced(HashMap::from([(Address([1; 32]), 40)]));
        let sent = book.sendable(vec![
            reading(1, 8, 40),
            reading(1, 3, 41),
            reading(2, 5, 35),
        ]);
        let seqs: Vec<u64> = sent.iter().map(|r| r.reading.seq).collect();
        assert_eq!(seqs, vec![3, 5]);
        assert!(!book.ready_to_resync());
    }

    #[test]
    fn a_failed_batch_a_refused_submission_and_a_lost_one_each_diverge() {
        let mut failed = Book::default();
        failed.sent(Hash32([1; 32]), 5);
        failed.block(6, &[receipt(1, false, true)]);
        assert!(failed.ready_to_resync());

        let mut turned_away = Book::default();
        turned_away.refused();
        assert!(turned_away.ready_to_resync());

        let mut lost = Book::default();
        lost.sent(Hash32([1; 32]), 5);
        lost.block(5 + LOST_AFTER_BLOCKS - 1, &[]);
        assert!(!lost.ready_to_resync(), "not yet given up on");
        lost.block(5 + LOST_AFTER_BLOCKS, &[]);
        assert!(lost.ready_to_resync());
    }
}
