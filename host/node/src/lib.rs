//! A gridledger node: genesis, admission, block production and the committed chain.
//!
//! [`Node`] ties the pieces together: transactions are checked and queued
//! ([`Node::submit`]), executed into blocks ([`Node::produce_block`]) that are committed to the
//! store in one write each, and served back with proofs. Consensus among several validators
//! comes later; today one validator produces every block.

pub mod devices;
pub mod exec;
pub mod finality;
pub mod genesis;
pub mod governance;
pub mod mempool;
pub mod observer;
pub mod payload;
mod queries;
pub mod query_pool;
pub mod selection;
mod template;
pub mod testing;
pub mod validator;

pub use exec::{ChainParams, Executor, Rejected, SignatureCheck};
pub use genesis::{Genesis, GenesisError, MarketClock};

use gridledger_state::{Changes, Snapshot, StateStack, Store, StoreError};
use gridledger_types::schema::{self, Account, Roles};
use gridledger_types::{Address, Block, Hash32, Header, Receipt, SignedTx, codec, merkle};
use gridledger_vm::{
    BlockEnv, CallError, CallRequest, Entry, HostFault, Vm, VmConfig, code_hash, ledger,
};
use mempool::Mempool;
use parking_lot::{Mutex, RwLock};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most transactions per block.
pub const MAX_BLOCK_TXS: usize = 2_000;

/// Above this gas limit a transaction is heavy: heavy ones get at most half of a block between
/// them, so the biggest calls cannot crowd everyone else out ([`Node::proposal_candidates`]).
pub const fn heavy_tx_gas(max_block_gas: u64) -> u64 {
    max_block_gas / 8
}
/// Event bytes (kinds, keys, values) the transactions of one block may emit in all: a block's
/// receipts stay far below what the store keeps in one value. A transaction that would pass it
/// waits for the next block.
pub const MAX_BLOCK_EVENT_BYTES: usize = 16 << 20;
/// Transactions a node holds waiting for a block; beyond this it answers `busy`.
pub const MEMPOOL_CAPACITY: usize = 20_000;
/// Gas for each genesis contract's instantiation.
const GENESIS_GAS: u64 = 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Host(#[from] HostFault),
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    #[error("{0}")]
    Config(String),
}

impl From<gridledger_state::ReadError> for NodeError {
    fn from(e: gridledger_state::ReadError) -> Self {
        NodeError::Host(e.into())
    }
}

/// A query's failure.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// As many queries as the node runs at once are running; try again shortly.
    #[error("busy: {0} queries are running; retry shortly")]
    Busy(usize),
    /// No answer within the time the node waits for one.
    #[error("no answer within {0:?}")]
    TimedOut(std::time::Duration),
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Where a transaction is.
#[derive(Debug)]
pub enum TxStatus {
    Pending,
    /// Accepted, then let go without being included (why).
    Dropped(String),
    Included {
        block: Box<Block>,
        receipts: Vec<Receipt>,
        index: u32,
    },
    Unknown,
}

/// Sent to subscribers after each committed block.
#[derive(Clone, Debug)]
pub struct CommittedBlock {
    pub header: Header,
    pub receipts: Vec<Receipt>,
    pub tx_hashes: Vec<Hash32>,
    /// Wall time this node spent in the block's scheduled calls (`bench market` reports it):
    /// this node's own measurement, not part of the block.
    pub scheduled_calls_time: std::time::Duration,
}

pub struct Node {
    store: Store,
    exec: Executor,
    genesis: Genesis,
    genesis_hash: Hash32,
    proposer: Address,
    head: RwLock<Header>,
    mempool: Mutex<Mempool>,
    /// Serialises block production (the mempool lock is not held while executing).
    producing: Mutex<()>,
    blocks: tokio::sync::broadcast::Sender<Arc<CommittedBlock>>,
    /// Transactions accepted by [`Node::submit`], for validators to pass to their peers.
    submitted: tokio::sync::broadcast::Sender<Arc<Vec<u8>>>,
    validators: Vec<genesis::Validator>,
    /// Set when a quorum certified another header than ours: what differed.
    diverged: RwLock<Option<String>>,
    /// This node follows the validators without voting ([`observer`]).
    observing: std::sync::atomic::AtomicBool,
    /// The calls the chain makes on a clock ([`Genesis::scheduled_calls`]).
    schedule: Vec<genesis::ScheduledCall>,
    /// `settled_periods` at the head, counted after each commit.
    settled: std::sync::atomic::AtomicU64,
    /// Accepted transactions let go without being included, and why.
    dropped: Mutex<mempool::Dropped>,
    faults: FaultInjection,
    /// The VM queries run on (its own engine, pool and wall-clock limit), and the threads
    /// that run them (as many as may run at once).
    queries: Arc<Vm>,
    query_threads: query_pool::QueryPool,
}

/// Instances block execution may hold at once: the deepest nesting of calls, with room.
const EXECUTION_POOL_SLOTS: u32 = 16;
/// Queries run at once; more wait (up to [`QUERY_WAIT`]) and are then answered `busy`. Each
/// may nest calls up to the VM's depth.
pub const MAX_CONCURRENT_QUERIES: usize = 8;
pub const QUERY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The query engine's instances: for the pool's queries and one of the node's own
/// ([`Node::query_here`]: the devnet's simulated participants), each nesting calls up to the
/// VM's depth.
const QUERY_POOL_SLOTS: u32 = (MAX_CONCURRENT_QUERIES as u32 + 1) * 9;
/// Wall-clock limit of one query's run, on top of its gas (query threads run at the lowest
/// priority: on a busy machine an honest query can take seconds). It starts once the queried
/// contract's code is ready; compiling the contracts it calls moves it out, by at most the
/// limit in all.
pub const QUERY_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a caller waits for a query's answer: the longest a query can run once its code is
/// ready (its limit, and as much again for compiling what it calls), and a margin. A query
/// whose caller gave up still holds its thread until it stops ([`query_pool`]).
const QUERY_ANSWER_WAIT: std::time::Duration =
    std::time::Duration::from_secs(2 * QUERY_TIME_LIMIT.as_secs() + 1);

/// Test hooks that make this node misbehave on purpose, to prove the others notice: both
/// off (`u64::MAX`) unless a test turns them on.
struct FaultInjection {
    /// From this height on, execution writes one extra state key (a node that computes
    /// something else).
    execute_differently_from: std::sync::atomic::AtomicU64,
    /// At this height, `commit_finalized` fails after executing and before writing (a power
    /// cut in the middle of a commit).
    fail_commit_at: std::sync::atomic::AtomicU64,
}

impl Default for FaultInjection {
    fn default() -> Self {
        FaultInjection {
            execute_differently_from: u64::MAX.into(),
            fail_commit_at: u64::MAX.into(),
        }
    }
}

/// What consensus adds to a block it finalized.
struct ConsensusCommit {
    digest: gridledger_consensus::Digest,
    proof: Vec<u8>,
    /// The proposal, encoded: stored so peers catching up can fetch it later.
    proposal: Vec<u8>,
    proposer: Address,
}

impl Node {
    /// Opens the node's data directory, creating the chain from `genesis` if it is empty.
    /// Contract files named in genesis are read from `contracts_dir`.
    pub fn open(
        data_dir: &Path,
        genesis: Genesis,
        contracts_dir: &Path,
    ) -> Result<Arc<Node>, NodeError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| NodeError::Config(format!("{}: {e}", data_dir.display())))?;
        let store = Store::open(&data_dir.join("chain.redb"))?;
        Self::with_store(
            store,
            Some(data_dir.join("compiled")),
            genesis,
            contracts_dir,
        )
    }

    /// A node on an in-memory store (tests, benchmarks).
    pub fn in_memory(genesis: Genesis, contracts_dir: &Path) -> Result<Arc<Node>, NodeError> {
        Self::with_store(Store::in_memory()?, None, genesis, contracts_dir)
    }

    fn with_store(
        store: Store,
        cache_dir: Option<PathBuf>,
        genesis: Genesis,
        contracts_dir: &Path,
    ) -> Result<Arc<Node>, NodeError> {
        let vm = Vm::with_pool_slots(VmConfig::default(), cache_dir.clone(), EXECUTION_POOL_SLOTS)
            .map_err(|e| NodeError::Config(format!("engine: {e:#}")))?;
        // Queries (anyone may send them) get an engine and an instance pool of their own, so
        // that however many run they never take an instance block execution needs.
        // Its engine checks a wall-clock deadline, so it compiles contracts apart from the
        // execution engine (see `VmConfig::engine`): the node's own per-block work never runs
        // on it (`settled_periods` runs on the execution engine), only queries someone sent.
        let queries = Vm::for_queries(
            VmConfig::default(),
            cache_dir,
            QUERY_POOL_SLOTS,
            QUERY_TIME_LIMIT,
        )
        .map_err(|e| NodeError::Config(format!("query engine: {e:#}")))?;
        let query_threads = query_pool::QueryPool::start(
            MAX_CONCURRENT_QUERIES,
            queries.config().execution_stack_bytes(),
        )
        .map_err(|e| NodeError::Config(format!("query threads: {e}")))?;
        let ours = vm.config_hash().to_hex();
        if genesis.vm_config_hash != ours {
            return Err(NodeError::Config(format!(
                "genesis pins VM settings {} but this node runs {ours}; nodes with different VM settings could disagree, so this one will not start",
                genesis.vm_config_hash
            )));
        }
        let addresses = genesis.addresses();
        let fee_collector = genesis
            .accounts
            .iter()
            .find(|a| a.roles.iter().any(|r| r == "grid_company"))
            .and_then(|a| addresses.get(&a.name).copied())
            .ok_or_else(|| {
                NodeError::Config(
                    "genesis needs an account with the grid_company role (it collects fees)".into(),
                )
            })?;
        let proposer = genesis
            .accounts
            .iter()
            .find(|a| a.roles.iter().any(|r| r == "validator"))
            .and_then(|a| addresses.get(&a.name).copied())
            .unwrap_or(fee_collector);
        let exec = Executor {
            vm,
            params: ChainParams {
                chain_id: genesis.chain_id.clone(),
                gas_price_per_kgas: genesis.gas_price_per_kgas,
                fee_collector,
                gov_quorum: genesis.governance_quorum(),
                gov_regulators: genesis.regulators() as u32,
                readings: reading_rules(&genesis),
            },
            keys: Default::default(),
        };
        let genesis_hash = genesis.hash();
        let snap = store.snapshot()?;
        let head = match snap.head_block()? {
            Some(b) => {
                let stored = snap_genesis_hash(&snap)?;
                if stored != Some(genesis_hash) {
                    return Err(NodeError::Config(
                        "this data directory holds a chain from another genesis".into(),
                    ));
                }
                b.header
            }
            None => build_genesis(
                &store,
                &exec,
                &genesis,
                contracts_dir,
                genesis_hash,
                proposer,
            )?,
        };
        let (blocks, _) = tokio::sync::broadcast::channel(64);
        let (submitted, _) = tokio::sync::broadcast::channel(4096);
        let validators = genesis.validator_set()?;
        let diverged = store.diverged()?;
        let schedule = genesis.scheduled_calls();
        let node = Arc::new(Node {
            submitted,
            validators,
            store,
            exec,
            genesis,
            genesis_hash,
            proposer,
            head: RwLock::new(head),
            mempool: Mutex::new(Mempool::new(MEMPOOL_CAPACITY)),
            producing: Mutex::new(()),
            blocks,
            diverged: RwLock::new(diverged),
            observing: Default::default(),
            settled: Default::default(),
            schedule,
            faults: FaultInjection::default(),
            dropped: Mutex::new(mempool::Dropped::default()),
            queries: Arc::new(queries),
            query_threads,
        });
        node.count_settled_periods();
        Ok(node)
    }

    pub fn chain_id(&self) -> &str {
        &self.genesis.chain_id
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn genesis_hash(&self) -> Hash32 {
        self.genesis_hash
    }

    pub fn vm(&self) -> &Vm {
        &self.exec.vm
    }

    pub fn params(&self) -> &ChainParams {
        &self.exec.params
    }

    pub fn head(&self) -> Header {
        self.head.read().clone()
    }

    /// The nonce a new transaction of `who` must carry: one past its committed and pending ones.
    pub fn next_nonce(&self, who: &Address) -> Result<u64, NodeError> {
        let snap = self.store.snapshot()?;
        let committed = ledger::account(&snap, who)?.nonce;
        Ok(self.mempool.lock().next_nonce(who, committed))
    }

    /// The wall-clock limit of a query on this node (on top of the query gas).
    pub fn query_time_limit(&self) -> Option<std::time::Duration> {
        self.queries.deadline()
    }

    /// Sets how many ordinary transactions the mempool holds (default [`MEMPOOL_CAPACITY`];
    /// tests fill a small one).
    pub fn set_mempool_capacity(&self, capacity: usize) {
        self.mempool.lock().set_capacity(capacity);
    }

    pub fn mempool_len(&self) -> usize {
        self.mempool.lock().len()
    }

    pub fn snapshot(&self) -> Result<Snapshot, NodeError> {
        Ok(self.store.snapshot()?)
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<CommittedBlock>> {
        self.blocks.subscribe()
    }

    /// Checks a transaction and queues it, and offers it to the validators' gossip. Returns
    /// its hash.
    pub fn submit(&self, bytes: &[u8]) -> Result<Hash32, Rejected> {
        let hash = self.submit_relayed(bytes)?;
        let _ = self.submitted.send(Arc::new(bytes.to_vec()));
        Ok(hash)
    }

    /// Transactions accepted by [`Node::submit`] from now on.
    pub fn subscribe_submitted(&self) -> tokio::sync::broadcast::Receiver<Arc<Vec<u8>>> {
        self.submitted.subscribe()
    }

    /// The validator set from genesis (empty: this node produces every block itself).
    pub fn validators(&self) -> &[genesis::Validator] {
        &self.validators
    }

    pub fn executor(&self) -> &Executor {
        &self.exec
    }

    /// Whether this node's mempool holds (so has verified) the transaction.
    pub fn admitted(&self, hash: &Hash32) -> bool {
        self.mempool.lock().contains(hash)
    }

    /// `"observer"` for a node that follows the validators without voting ([`observer`]),
    /// else `"validator"` (a validator, or the one node of a chain without validators).
    pub fn role(&self) -> &'static str {
        if self.observing.load(std::sync::atomic::Ordering::Relaxed) {
            "observer"
        } else {
            "validator"
        }
    }

    /// Marks this node as an observer (for [`Node::role`]).
    pub fn set_observing(&self) {
        self.observing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Why this node's execution is known to differ from a quorum's, if it does.
    pub fn diverged(&self) -> Option<String> {
        self.diverged.read().clone()
    }

    /// Records, durably, that a quorum certified another header than this node computed: the
    /// node never votes again on this state, across restarts.
    pub fn set_diverged(&self, why: String) {
        // The first difference is the one to fix; later ones follow from it.
        if self.diverged.read().is_some() {
            return;
        }
        tracing::error!("this node's execution diverged from the validators': {why}");
        if let Err(e) = self.store.save_diverged(&why) {
            tracing::error!("could not record the divergence on disk: {e}");
        }
        self.diverged.write().get_or_insert(why);
    }

    /// Stores the execution certificate (wire-encoded) of the block at `height`.
    pub fn save_execution_certificate(&self, height: u64, cert: &[u8]) -> Result<(), NodeError> {
        Ok(self.store.save_execution_certificate(height, cert)?)
    }

    /// The execution certificate of the block at `height`: a quorum's signatures over its
    /// header hash, the proof that the header is final.
    pub fn execution_certificate(&self, height: u64) -> Result<Option<Vec<u8>>, NodeError> {
        Ok(self.store.snapshot()?.execution_certificate(height)?)
    }

    /// The highest height a quorum certified (0 if none).
    pub fn certified_height(&self) -> Result<u64, NodeError> {
        Ok(self.store.snapshot()?.last_certified_height()?.unwrap_or(0))
    }

    /// Test hook: from `height` on, this node executes blocks differently from everyone else.
    #[doc(hidden)]
    pub fn inject_execution_fault_from(&self, height: u64) {
        self.faults
            .execute_differently_from
            .store(height, std::sync::atomic::Ordering::SeqCst);
    }

    /// Test hook: committing the finalized block at `height` fails after execution and before
    /// anything is written, as a power cut there would.
    #[doc(hidden)]
    pub fn inject_commit_failure_at(&self, height: u64) {
        self.faults
            .fail_commit_at
            .store(height, std::sync::atomic::Ordering::SeqCst);
    }

    /// Pending transactions for a proposal, leaving out those already in flight, within the
    /// payload limits validators enforce ([`payload`]). Senders take turns (the mempool's
    /// order); a transaction that does not fit is skipped with the rest of its sender's, and
    /// smaller ones behind it still get in. Heavy transactions (a gas limit above an eighth of
    /// the block's, or more than 64 KiB) share at most half of the block's gas and half of its
    /// bytes (a large one may still go first into an empty block): senders of the costliest
    /// calls or the biggest batches cannot crowd everyone else out of every block.
    /// Up to `max` waiting transactions, in the order a block would take them (an observer
    /// forwards them again until they are included).
    pub fn waiting(&self, max: usize) -> Vec<SignedTx> {
        self.mempool
            .lock()
            .select(max)
            .into_iter()
            .map(|p| p.tx)
            .collect()
    }

    /// Executes a finalized proposal into the next block and commits it with its proof.
    pub fn commit_finalized(
        &self,
        proposal: &gridledger_consensus::Proposal,
        proof: &finality::FinalityProof,
        proposer: Address,
    ) -> Result<Arc<CommittedBlock>, NodeError> {
        let head = self.head();
        if proposal.height != head.height + 1 {
            return Err(NodeError::Config(format!(
                "finalized height {} does not follow the head {}",
                proposal.height, head.height
            )));
        }
        // Honest validators voted only for payloads that pass `payload::check`, so a finalized
        // one that does not decode or goes back in time means more than f are faulty: stop,
        // rather than repair it differently from someone else.
        let (time_ms, txs) = match finality::BlockPayload::decode(&proposal.payload) {
            Some(p) if p.time_ms > head.time_ms => (p.time_ms, p.txs),
            _ => {
                return Err(NodeError::Config(format!(
                    "the finalized payload at height {} is invalid (it does not decode, or its time is not after its parent's)",
                    proposal.height
                )));
            }
        };
        // What this node admitted to its mempool it has verified already; the rest is
        // checked here as one batch, and what fails is left for execution to refuse.
        let mut candidates = {
            let pool = self.mempool.lock();
            with_lengths(txs, |t| {
                if pool.contains(&t.hash()) {
                    SignatureCheck::AlreadyVerified
                } else {
                    SignatureCheck::Verify
                }
            })
        };
        let unchecked: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].2 == SignatureCheck::Verify)
            .collect();
        let checks = {
            let txs: Vec<&SignedTx> = unchecked.iter().map(|&i| &candidates[i].0).collect();
            self.exec.check_signatures(&txs)
        };
        for (&i, check) in unchecked.iter().zip(checks) {
            if check.is_ok() {
                candidates[i].2 = SignatureCheck::AlreadyVerified;
            }
        }
        if proposal.height
            == self
                .faults
                .fail_commit_at
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(NodeError::Config(format!(
                "injected failure while committing height {}",
                proposal.height
            )));
        }
        self.build_block(
            time_ms,
            candidates,
            Some(ConsensusCommit {
                digest: proposal.digest(),
                proof: proof.encode(),
                proposal: borsh::to_vec(proposal)
                    .map_err(|e| NodeError::Config(format!("encoding a proposal: {e}")))?,
                proposer,
            }),
        )
    }

    /// A proposal this node voted for or finalized, by digest (for peers that are catching
    /// up, or that restarted together with this node).
    pub fn consensus_proposal(
        &self,
        digest: &gridledger_consensus::Digest,
    ) -> Result<Option<gridledger_consensus::Proposal>, NodeError> {
        Ok(self
            .store
            .snapshot()?
            .proposal(&digest.0)?
            .and_then(|b| borsh::from_slice(&b).ok()))
    }

    /// The proof that the block at `height` is final (blocks made by consensus only).
    pub fn finality(&self, height: u64) -> Result<Option<finality::FinalityProof>, NodeError> {
        Ok(self
            .store
            .snapshot()?
            .finality(height)?
            .and_then(|b| finality::FinalityProof::decode(&b)))
    }

    /// The last finalized proposal, as consensus resumes from it.
    pub fn consensus_tip(&self) -> Result<gridledger_consensus::Tip, NodeError> {
        let head = self.head();
        Ok(match self.finality(head.height)? {
            Some(p) => match p.block_proposal() {
                Some(link) => gridledger_consensus::Tip {
                    view: link.view,
                    height: link.height,
                    digest: link.digest(),
                },
                None => gridledger_consensus::Tip::GENESIS,
            },
            None => gridledger_consensus::Tip::GENESIS,
        })
    }

    /// Durably saves the consensus engine's state (if given) and the proposals it is about
    /// to vote for, in one write.
    pub fn save_consensus(
        &self,
        state: Option<&[u8]>,
        proposals: &[gridledger_consensus::Proposal],
    ) -> Result<(), NodeError> {
        let proposals = proposals
            .iter()
            .map(|p| {
                borsh::to_vec(p)
                    .map(|b| (p.digest().0, b))
                    .map_err(|e| NodeError::Config(format!("encoding a proposal: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.store.save_consensus(state, &proposals)?)
    }

    pub fn consensus_state(&self) -> Result<Option<Vec<u8>>, NodeError> {
        Ok(self.store.consensus_state()?)
    }

    /// Checks a transaction a peer passed on and queues it (without passing it on again).
    pub fn submit_relayed(&self, bytes: &[u8]) -> Result<Hash32, Rejected> {
        let (tx, hash) = self.precheck(bytes)?;
        self.exec.check_stateless(&tx, bytes.len())?;
        self.admit(tx, hash, bytes.len())
    }

    /// [`Node::submit_relayed`] for a batch peers passed on, in order, each answered as alone;
    /// their signatures are checked as one batch.
    pub fn submit_relayed_batch(&self, batch: &[Vec<u8>]) -> Vec<Result<Hash32, Rejected>> {
        let mut answers: Vec<Result<(SignedTx, Hash32), Rejected>> =
            batch.iter().map(|b| self.precheck(b)).collect();
        let pending: Vec<usize> = (0..answers.len()).filter(|&i| answers[i].is_ok()).collect();
        let checks = {
            let txs: Vec<(&SignedTx, usize)> = pending
                .iter()
                .filter_map(|&i| answers[i].as_ref().ok().map(|(t, _)| (t, batch[i].len())))
                .collect();
            self.exec.check_stateless_batch(&txs)
        };
        for (&i, check) in pending.iter().zip(checks) {
            if let Err(e) = check {
                answers[i] = Err(e);
            }
        }
        answers
            .into_iter()
            .zip(batch)
            .map(|(a, b)| a.and_then(|(tx, hash)| self.admit(tx, hash, b.len())))
            .collect()
    }

    fn state_view(&self) -> Result<gridledger_state::StateView, Rejected> {
        self.store
            .state_view()
            .map_err(|e| Rejected::Malformed(format!("node busy: {e}")))
    }

    /// What is refused before its signature is checked: undecodable bytes, a duplicate, a used
    /// nonce. Gossip brings most transactions more than once, some after their block: neither
    /// a duplicate nor a used nonce costs a signature check. (Nonces only grow, so any view of
    /// the state is recent enough to refuse a used one.)
    fn precheck(&self, bytes: &[u8]) -> Result<(SignedTx, Hash32), Rejected> {
        let tx = SignedTx::decode(bytes).map_err(|e| Rejected::Malformed(e.to_string()))?;
        let hash = tx.hash();
        if self.mempool.lock().contains(&hash) {
            return Err(Rejected::Duplicate);
        }
        let used = committed_nonce(&self.state_view()?, &tx.body.sender);
        if tx.body.nonce < used {
            return Err(Rejected::NonceReplayed {
                got: tx.body.nonce,
                want: used,
            });
        }
        Ok((tx, hash))
    }

    /// Queues a transaction whose stateless checks passed, if its nonce is next and its
    /// sender can pay.
    fn admit(&self, tx: SignedTx, hash: Hash32, encoded_len: usize) -> Result<Hash32, Rejected> {
        let mut pool = self.mempool.lock();
        // Read the state under the pool lock: a block commits its state before it prunes the
        // pool, so this view never misses a transaction the pool has just let go.
        let snap = self.state_view()?;
        if pool.contains(&hash) {
            return Err(Rejected::Duplicate);
        }
        // The device gateway's readings and regulators' votes have room kept for them.
        let reserved = mempool::is_reserved(&tx);
        let sender = tx.body.sender;
        let (pending, pending_gas) = pool.pending_of(&sender);
        let full = pool.is_full(reserved);
        // Full in bytes: one eviction may not make room.
        if full && pool.bytes() >= mempool::MAX_POOL_BYTES {
            return Err(Rejected::MempoolFull);
        }
        // The device gateway relays every meter's readings: its share is the reserved room.
        let max = if reserved {
            mempool::RESERVED
        } else {
            mempool::MAX_PENDING_PER_SENDER
        };
        if pending >= max {
            return Err(Rejected::TooManyPending { max });
        }
        let max_bytes = mempool::MAX_PENDING_BYTES_PER_SENDER * if reserved { 8 } else { 1 };
        let pending_bytes = pool.pending_bytes_of(&sender);
        if pending > 0 && pending_bytes + encoded_len > max_bytes {
            return Err(Rejected::TooManyPendingBytes {
                pending: pending_bytes,
                max: max_bytes,
            });
        }
        let expected = pool.next_nonce(&sender, committed_nonce(&snap, &sender));
        self.exec.check_stateful(&snap, &tx, expected)?;
        // The maximum fees of what already waits are spoken for: one account with funds for
        // one fee cannot queue thousands of transactions that execution would then drop
        // without a fee.
        let balance = ledger::account(&snap, &sender)
            .map(|a| a.balance)
            .unwrap_or(0);
        let fees = self
            .exec
            .params
            .fee(pending_gas.saturating_add(tx.body.gas_limit));
        if balance < fees {
            return Err(Rejected::CannotPayFee { balance, fee: fees });
        }
        // A full pool makes room by evicting from whoever has the most waiting, once this
        // transaction has passed every other check (an invalid one evicts no one).
        if full {
            let (victim, nonce) = pool
                .eviction_for(&sender, pending, mempool::is_reserved)
                .ok_or(Rejected::MempoolFull)?;
            if let Some(gone) = pool.evict(&victim, nonce) {
                self.dropped.lock().record(
                    gone,
                    format!("evicted from a full mempool: its sender {victim} had the most transactions waiting"),
                );
            }
        }
        pool.insert_hashed(tx, encoded_len, hash);
        self.dropped.lock().forget(&hash);
        Ok(hash)
    }

    /// Executes pending transactions into the next block and commits it.
    pub fn produce_block(&self, now_ms: u64) -> Result<Arc<CommittedBlock>, NodeError> {
        let candidates = self
            .mempool
            .lock()
            .select(MAX_BLOCK_TXS)
            .into_iter()
            .map(|p| (p.tx, p.len, SignatureCheck::AlreadyVerified))
            .collect();
        self.build_block(now_ms, candidates, None)
    }

    /// Executes exactly these transactions, in this order, into the next block (conformance
    /// runners and, later, followers replaying a proposal). Transactions that cannot apply are
    /// left out, as in [`Node::produce_block`].
    pub fn execute_block(
        &self,
        now_ms: u64,
        txs: Vec<SignedTx>,
    ) -> Result<Arc<CommittedBlock>, NodeError> {
        // Signatures as one batch (it accepts exactly what single checks accept); what fails
        // is checked again, alone, by execution, which refuses it.
        let checks = self.exec.check_signatures(&txs.iter().collect::<Vec<_>>());
        let mut candidates = with_lengths(txs, |_| SignatureCheck::Verify);
        for (c, check) in candidates.iter_mut().zip(checks) {
            if check.is_ok() {
                c.2 = SignatureCheck::AlreadyVerified;
            }
        }
        self.build_block(now_ms, candidates, None)
    }

    fn build_block(
        &self,
        now_ms: u64,
        candidates: Vec<(SignedTx, usize, SignatureCheck)>,
        consensus: Option<ConsensusCommit>,
    ) -> Result<Arc<CommittedBlock>, NodeError> {
        let _guard = self.producing.lock();
        let parent = self.head();
        let height = parent.height + 1;
        let time_ms = now_ms.max(parent.time_ms + 1);
        let block_env = BlockEnv {
            height,
            time_ms,
            chain_id: self.genesis.chain_id.clone(),
        };
        let snap = Arc::new(self.store.snapshot()?);
        let mut state = StateStack::new(snap);
        let mut txs = Vec::new();
        let mut receipts = Vec::new();
        let mut refused: Vec<Address> = Vec::new();
        let mut refused_why: std::collections::HashMap<Address, String> = Default::default();
        // Senders whose next transaction did not fit this block's event bytes: the rest of
        // theirs wait for the next block (in the mempool), in order.
        let mut deferred: Vec<Address> = Vec::new();
        let mut event_bytes = 0usize;
        for (tx, len, signature) in candidates {
            if refused.contains(&tx.body.sender) || deferred.contains(&tx.body.sender) {
                continue;
            }
            state.push_layer();
            match self
                .exec
                .apply(&block_env, &mut state, &tx, len, signature)?
            {
                Ok(r) => {
                    let bytes: usize = r.events.iter().map(gridledger_vm::event_bytes).sum();
                    if event_bytes + bytes > MAX_BLOCK_EVENT_BYTES {
                        state.discard_layer();
                        deferred.push(tx.body.sender);
                        continue;
                    }
                    state.commit_layer();
                    event_bytes += bytes;
                    receipts.push(r);
                    txs.push(tx);
                    continue;
                }
                // Already executed (another validator proposed it too): skip it alone.
                Err(Rejected::NonceReplayed { .. }) => {}
                Err(reason) => {
                    tracing::debug!("dropping {}: {reason}", tx.hash().to_hex());
                    refused.push(tx.body.sender);
                    refused_why.insert(tx.body.sender, reason.to_string());
                }
            }
            state.discard_layer();
        }
        // Each included transaction's receipt carries its hash, computed once by execution.
        let tx_hashes: Vec<Hash32> = receipts.iter().map(|r| r.tx_hash).collect();
        let senders: Vec<Address> = txs.iter().map(|t| t.body.sender).collect();
        receipts.extend(self.exec.enact_due(&block_env, &mut state)?);
        let scheduled_start = std::time::Instant::now();
        receipts.extend(self.scheduled_calls(&block_env, parent.time_ms, &mut state)?);
        let scheduled_calls_time = scheduled_start.elapsed();
        state.set(
            schema::meta_key(schema::META_HEIGHT),
            codec::encode(&height),
        );
        if let Some(c) = &consensus {
            state.set(
                schema::meta_key(finality::CONSENSUS_DIGEST_KEY),
                c.digest.0.to_vec(),
            );
            if height
                >= self
                    .faults
                    .execute_differently_from
                    .load(std::sync::atomic::Ordering::SeqCst)
            {
                state.set(schema::meta_key("injected_fault"), codec::encode(&height));
            }
        }
        let changes = state.take_changes();
        let header = commit_block(
            &self.store,
            &self.genesis.chain_id,
            parent.hash(),
            height,
            time_ms,
            consensus.as_ref().map_or(self.proposer, |c| c.proposer),
            txs,
            &receipts,
            &changes,
            consensus.as_ref().map(|c| gridledger_state::Finalized {
                proof: &c.proof,
                digest: c.digest.0,
                proposal: &c.proposal,
            }),
        )?;
        *self.head.write() = header.clone();
        self.count_settled_periods();

        // Forget what was included or can no longer apply.
        {
            let snap = self.store.snapshot()?;
            let mut pool = self.mempool.lock();
            let mut senders = senders;
            senders.extend(refused.iter().copied());
            senders.sort();
            senders.dedup();
            let included: std::collections::HashSet<Hash32> = tx_hashes.iter().copied().collect();
            let mut dropped = self.dropped.lock();
            for s in senders {
                let next = ledger::account(&snap, &s)?.nonce;
                for gone in pool.prune_sender(&s, next, refused.contains(&s)) {
                    if included.contains(&gone) {
                        continue;
                    }
                    let why = match refused_why.get(&s) {
                        Some(r) => format!(
                            "left out of block {height} with its sender's refused transaction: {r}"
                        ),
                        None => format!(
                            "its nonce was used by another transaction of its sender (block {height})"
                        ),
                    };
                    dropped.record(gone, why);
                }
            }
        }
        let committed = Arc::new(CommittedBlock {
            header,
            receipts,
            tx_hashes,
            scheduled_calls_time,
        });
        let _ = self.blocks.send(committed.clone());
        Ok(committed)
    }

    /// The chain's own calls on its schedule (genesis `[[schedule]]` and the market clock): for
    /// every tick due after the parent block and by this one, the contract's `sudo` gets its
    /// call, gas-capped, each receipt after the transactions' receipts. What the contract does
    /// with it is the contract's business: the chain knows clocks, not markets.
    fn scheduled_calls(
        &self,
        env: &BlockEnv,
        parent_time_ms: u64,
        state: &mut StateStack,
    ) -> Result<Vec<Receipt>, NodeError> {
        // Every due call with its time; in time order, the schedule's order among equals.
        let mut due: Vec<(u64, usize, u64)> = Vec::new();
        for (i, c) in self.schedule.iter().enumerate() {
            let start = c.start_ms.unwrap_or(self.genesis.genesis_time_ms);
            for n in c.due(self.genesis.genesis_time_ms, parent_time_ms, env.time_ms) {
                due.push((start.saturating_add(n.saturating_mul(c.every_ms)), i, n));
            }
        }
        due.sort_unstable();
        let mut out = Vec::new();
        for (_, i, n) in due {
            let c = &self.schedule[i];
            let Some(b) = gridledger_state::StateRead::get(state, &label_key(&c.contract))? else {
                continue;
            };
            let Some(contract) = Address::from_slice(&b) else {
                continue;
            };
            let msg = serde_json::json!({ c.call.as_str(): { "period": n } }).to_string();
            out.push(
                self.exec
                    .system_call(env, state, contract, msg.as_bytes(), c.gas)?,
            );
        }
        Ok(out)
    }

    pub fn account(&self, who: &Address) -> Result<(Account, Roles), NodeError> {
        let snap = self.store.snapshot()?;
        Ok((ledger::account(&snap, who)?, ledger::roles(&snap, who)?))
    }

    pub fn tx_status(&self, hash: &Hash32) -> Result<TxStatus, NodeError> {
        let snap = self.store.snapshot()?;
        if let Some((height, index)) = snap.tx_location(hash)? {
            let block = snap
                .block(height)?
                .ok_or(StoreError::UnknownHeight(height))?;
            let receipts = snap
                .receipts(height)?
                .ok_or(StoreError::UnknownHeight(height))?;
            return Ok(TxStatus::Included {
                block: Box::new(block),
                receipts,
                index,
            });
        }
        if self.mempool.lock().contains(hash) {
            return Ok(TxStatus::Pending);
        }
        if let Some(why) = self.dropped.lock().why(hash) {
            return Ok(TxStatus::Dropped(why.to_string()));
        }
        Ok(TxStatus::Unknown)
    }

    /// A registered device and where its readings stand.
    pub fn device(
        &self,
        id: &Address,
    ) -> Result<Option<gridledger_types::DeviceRecord>, NodeError> {
        let snap = self.store.snapshot()?;
        devices::device(&snap, id).map_err(fail_to_node)
    }

    /// Every registered device, in registration order.
    pub fn devices(&self) -> Result<Vec<(Address, gridledger_types::DeviceRecord)>, NodeError> {
        let snap = self.store.snapshot()?;
        let mut out = Vec::new();
        for id in devices::device_list(&snap).map_err(fail_to_node)? {
            if let Some(rec) = devices::device(&snap, &id).map_err(fail_to_node)? {
                out.push((id, rec));
            }
        }
        Ok(out)
    }

    /// The rules meter readings meet on this chain, if it takes them.
    pub fn reading_rules(&self) -> Option<&devices::ReadingRules> {
        self.exec.params.readings.as_ref()
    }

    /// A governance proposal.
    pub fn proposal(&self, id: u64) -> Result<Option<governance::Proposal>, NodeError> {
        let snap = self.store.snapshot()?;
        governance::load(&snap, id).map_err(fail_to_node)
    }

    /// The latest `limit` governance proposals, newest first.
    pub fn proposals(&self, limit: usize) -> Result<Vec<governance::Proposal>, NodeError> {
        let snap = self.store.snapshot()?;
        let mut out = Vec::new();
        let mut id = governance::proposal_count(&snap).map_err(fail_to_node)?;
        while id > 0 && out.len() < limit {
            id -= 1;
            if let Some(p) = governance::load(&snap, id).map_err(fail_to_node)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Address of a contract deployed at genesis, by label.
    pub fn contract_by_label(&self, label: &str) -> Result<Option<Address>, NodeError> {
        let snap = self.store.snapshot()?;
        match gridledger_state::StateRead::get(&snap, &label_key(label))? {
            Some(b) => Ok(Address::from_slice(&b)),
            None => Ok(None),
        }
    }
}

/// A failure outside a transaction is the node's: a host fault, or state it cannot read.
fn fail_to_node(e: exec::Fail) -> NodeError {
    match e {
        exec::Fail::Host(h) => h.into(),
        exec::Fail::Op(e) => NodeError::Config(e.1),
    }
}

/// Refuses a genesis whose scheduled calls get less gas than their contract was told they get
/// (`call_gas` in its `config` answer, as the market reports it): such a contract sizes each
/// call's work by that figure (the market: how many orders a period takes), so its calls
/// would run out of gas and the escrow they release would stay locked. Checked on the
/// genesis state before block 0 is written, on the execution VM (no deadline, no query
/// threads to be busy): a contract that has no `config` answer, or no `call_gas` in it, is
/// not told, and anything else that fails here is a fault.
fn check_scheduled_call_gas(
    exec: &Executor,
    env: &BlockEnv,
    state: &mut StateStack,
    genesis: &Genesis,
    labels: &std::collections::BTreeMap<String, Address>,
) -> Result<(), NodeError> {
    for call in genesis.scheduled_calls() {
        let Some(&contract) = labels.get(&call.contract) else {
            continue;
        };
        let out = exec.vm.call(
            env,
            state,
            CallRequest {
                contract,
                entry: Entry::Query,
                caller: None,
                funds: 0,
                msg: br#"{"config":{}}"#,
                gas_limit: exec.vm.config().limits.query_gas,
            },
        )?;
        let answer = match out.result {
            Ok(a) => a,
            Err(gridledger_vm::CallError::Contract(_)) => continue,
            Err(e) => {
                return Err(NodeError::Config(format!(
                    "genesis contract {}: its config query failed: {e}",
                    call.contract
                )));
            }
        };
        let told = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("call_gas")?.as_u64());
        if let Some(told) = told
            && told > call.gas
        {
            return Err(NodeError::Config(format!(
                "contract {} plans its {} calls for {told} gas (call_gas), but genesis gives them {}: \
                 they would run out of gas; give it \"call_gas\": {{sudo_gas}}",
                call.contract, call.call, call.gas
            )));
        }
    }
    Ok(())
}

/// The reading rules genesis sets, if it has `[devices]` (which needs `[market]`).
fn reading_rules(genesis: &Genesis) -> Option<devices::ReadingRules> {
    let (d, m) = (genesis.devices.as_ref()?, genesis.market.as_ref()?);
    Some(devices::ReadingRules {
        reading_contract: d.reading_contract.clone(),
        market_start_ms: m.start(genesis.genesis_time_ms),
        period_ms: m.period_ms,
        time_tolerance_ms: d.time_tolerance_ms,
        field_period_ms: d.field_period_ms.unwrap_or(m.period_ms),
    })
}

/// The nonce `who` has used up to, in committed state.
fn committed_nonce(snap: &gridledger_state::StateView, who: &Address) -> u64 {
    ledger::account(snap, who).map(|a| a.nonce).unwrap_or(0)
}

/// Transactions with their encoded lengths (what block building charges gas for) and whether
/// their signatures still need checking.
fn with_lengths(
    txs: Vec<SignedTx>,
    check: impl Fn(&SignedTx) -> SignatureCheck,
) -> Vec<(SignedTx, usize, SignatureCheck)> {
    txs.into_iter()
        .map(|t| {
            let len = t.encode().len();
            let c = check(&t);
            (t, len, c)
        })
        .collect()
}

pub(crate) fn label_key(label: &str) -> Vec<u8> {
    schema::meta_key(&format!("label/{label}"))
}

const META_GENESIS: &str = "genesis_hash";

fn snap_genesis_hash(snap: &Snapshot) -> Result<Option<Hash32>, NodeError> {
    Ok(
        gridledger_state::StateRead::get(snap, &schema::meta_key(META_GENESIS))?
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok().map(Hash32)),
    )
}

/// Roots the block's lists, computes the state root and writes it all in one transaction.
#[allow(clippy::too_many_arguments)]
fn commit_block(
    store: &Store,
    chain_id: &str,
    parent_hash: Hash32,
    height: u64,
    time_ms: u64,
    proposer: Address,
    txs: Vec<SignedTx>,
    receipts: &[Receipt],
    changes: &Changes,
    finalized: Option<gridledger_state::Finalized<'_>>,
) -> Result<Header, NodeError> {
    let tx_bytes: Vec<Vec<u8>> = txs.iter().map(|t| t.encode()).collect();
    let receipt_bytes: Vec<Vec<u8>> = receipts.iter().map(|r| r.encode()).collect();
    let prepared = store.prepare_root(changes, height)?;
    let header = Header {
        chain_id: chain_id.to_string(),
        height,
        parent_hash,
        time_ms,
        proposer,
        tx_root: merkle::list_root(&tx_bytes),
        tx_count: txs.len() as u32,
        state_root: prepared.root,
        receipts_root: merkle::list_root(&receipt_bytes),
        receipt_count: receipts.len() as u32,
    };
    let block = Block {
        header: header.clone(),
        txs,
    };
    store.commit_final_block(&block, receipts, changes, prepared, finalized)?;
    Ok(header)
}

/// Writes the genesis state (accounts, roles, code, contracts) as block 0.
fn build_genesis(
    store: &Store,
    exec: &Executor,
    genesis: &Genesis,
    contracts_dir: &Path,
    genesis_hash: Hash32,
    proposer: Address,
) -> Result<Header, NodeError> {
    let addresses = genesis.addresses();
    let mut state = StateStack::new(Arc::new(store.snapshot()?));
    let mut supply: u64 = 0;
    for a in &genesis.accounts {
        let addr = addresses[&a.name];
        ledger::set_account(
            &mut state,
            &addr,
            &Account {
                balance: a.balance,
                nonce: 0,
            },
        );
        supply = supply
            .checked_add(a.balance)
            .ok_or_else(|| NodeError::Config("genesis balances overflow".into()))?;
        let mut roles = Roles::default();
        for r in &a.roles {
            roles.0 |= Roles::bit(r).unwrap_or(0);
        }
        if roles.0 != 0 {
            state.set(schema::roles_key(&addr), codec::encode(&roles));
        }
    }
    state.set(
        schema::meta_key(schema::META_SUPPLY),
        codec::encode(&supply),
    );
    for d in genesis.devices.iter().flat_map(|d| &d.registered) {
        let registered = devices::register(
            &mut state,
            addresses[&d.device],
            addresses[&d.owner],
            &d.kind,
            d.rated_power_w,
        );
        if let Err(e) = registered {
            return Err(match e {
                exec::Fail::Host(h) => h.into(),
                exec::Fail::Op(e) => {
                    NodeError::Config(format!("genesis device {}: {}", d.device, e.1))
                }
            });
        }
    }
    state.set(schema::meta_key(META_GENESIS), genesis_hash.0.to_vec());
    state.set(schema::meta_key(schema::META_HEIGHT), codec::encode(&0u64));
    let env = BlockEnv {
        height: 0,
        time_ms: genesis.genesis_time_ms,
        chain_id: genesis.chain_id.clone(),
    };
    let mut receipts = Vec::new();
    let mut labels: std::collections::BTreeMap<String, Address> = Default::default();
    for (i, c) in genesis.contracts.iter().enumerate() {
        let path = contracts_dir.join(&c.wasm);
        let wasm = std::fs::read(&path).map_err(|e| {
            NodeError::Config(format!(
                "genesis contract {}: {}: {e} (build the contracts: cargo run -p gridledger-build)",
                c.label,
                path.display()
            ))
        })?;
        let info = exec
            .vm
            .validate_code(&wasm)
            .map_err(|e| NodeError::Config(format!("genesis contract {}: {e}", c.label)))?;
        let hash = code_hash(&wasm);
        state.set(
            schema::code_key(&hash),
            codec::encode(&schema::CodeEntry {
                name: info.name,
                version: info.version,
                wasm,
            }),
        );
        let creator = addresses[&c.creator];
        let admin = match &c.admin {
            Some(n) if n == "governance" => Some(Address::governance()),
            Some(n) => Some(*addresses.get(n).ok_or_else(|| {
                NodeError::Config(format!("genesis contract {}: unknown admin {n}", c.label))
            })?),
            None => None,
        };
        // Genesis contracts take nonces from the top of the range, far from any transaction's.
        let contract = Address::contract(&creator, u64::MAX - i as u64);
        let done = exec.instantiate(
            &env,
            &mut state,
            creator,
            contract,
            hash,
            template::fill(&c.msg, genesis, &addresses, &labels)?.as_bytes(),
            c.funds,
            &c.label,
            admin,
            GENESIS_GAS,
        );
        let done = match done {
            Ok(d) => d,
            Err(exec::Fail::Host(h)) => return Err(h.into()),
            Err(exec::Fail::Op(e)) => {
                return Err(NodeError::Config(format!(
                    "genesis contract {} failed to instantiate: {}",
                    c.label, e.1
                )));
            }
        };
        state.set(label_key(&c.label), contract.0.to_vec());
        labels.insert(c.label.clone(), contract);
        receipts.push(Receipt {
            tx_hash: Hash32::ZERO,
            gas_used: done.gas,
            fee: 0,
            error: None,
            events: done.events,
            result: contract.0.to_vec(),
        });
    }
    check_scheduled_call_gas(exec, &env, &mut state, genesis, &labels)?;
    let changes = state.take_changes();
    let header = commit_block(
        store,
        &genesis.chain_id,
        Hash32::ZERO,
        0,
        genesis.genesis_time_ms,
        proposer,
        Vec::new(),
        &receipts,
        &changes,
        None,
    )?;
    Ok(header)
}
