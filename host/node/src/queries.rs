//! Contract queries against the latest committed state: the public ones (the API's, anyone
//! may send them) on the node's query pool, the node's own on the caller's thread, and the
//! per-block count `/v1/status` shows.

use crate::query_pool;
use crate::{Node, NodeError, QUERY_ANSWER_WAIT, QUERY_WAIT, QueryError};
use gridledger_state::StateStack;
use gridledger_types::Address;
use gridledger_vm::{BlockEnv, CallRequest, Entry, Vm};
use std::sync::Arc;

/// Held while a [`Node::query_here`] runs.
static OWN_QUERY: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

impl Node {
    /// How many delivery periods the market has settled (0 without a market), at the head.
    pub fn settled_periods(&self) -> u64 {
        self.settled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts the settled periods at the head, for [`Node::settled_periods`]. Once per block
    /// and at start, never per request: `/v1/status`, polled by every browser and probe, runs
    /// no contract. It runs on the execution engine, which has the market compiled already
    /// (the query engine compiles its own artifacts: a second compile of every contract at
    /// start, for a figure the node needs anyway).
    pub(crate) fn count_settled_periods(&self) {
        let Some(label) = self
            .genesis
            .market
            .as_ref()
            .and_then(|m| m.stats_contract.as_ref())
        else {
            return;
        };
        let Ok(Some(contract)) = self.contract_by_label(label) else {
            return;
        };
        // On a failed query the last count stays (it only grows).
        if let Some(n) = self
            .query_on(&self.exec.vm, &contract, br#"{"stats":{}}"#)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["settled_periods"].as_u64())
        {
            self.settled.store(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A query of the node's own, on this thread, against the latest committed state.
    fn query_on(&self, vm: &Vm, contract: &Address, msg: &[u8]) -> Result<Vec<u8>, QueryError> {
        let head = self.head();
        let snap = Arc::new(self.store.snapshot().map_err(NodeError::from)?);
        let out = vm
            .call(
                &BlockEnv {
                    height: head.height,
                    time_ms: head.time_ms,
                    chain_id: head.chain_id,
                },
                &mut StateStack::new(snap),
                CallRequest {
                    contract: *contract,
                    entry: Entry::Query,
                    caller: None,
                    funds: 0,
                    msg,
                    gas_limit: vm.config().limits.query_gas,
                },
            )
            .map_err(NodeError::from)?;
        Ok(out.result?)
    }

    /// Runs a contract query against the latest committed state.
    /// On the query engine and threads: at most [`crate::MAX_CONCURRENT_QUERIES`] at once, each
    /// bounded by the query gas and [`crate::QUERY_TIME_LIMIT`].
    pub fn query(self: &Arc<Self>, contract: &Address, msg: &[u8]) -> Result<Vec<u8>, QueryError> {
        let (node, contract, msg) = (self.clone(), *contract, msg.to_vec());
        // On the low-priority query threads: however many come, consensus runs first.
        self.query_threads
            .run(QUERY_WAIT, QUERY_ANSWER_WAIT, move || {
                node.query_on(&node.queries, &contract, &msg)
            })
            .map_err(|e| match e {
                query_pool::NoAnswer::Busy(n) => QueryError::Busy(n),
                query_pool::NoAnswer::TimedOut(d) => QueryError::TimedOut(d),
                query_pool::NoAnswer::Died => {
                    QueryError::Node(NodeError::Config("a query thread panicked".into()))
                }
            })?
    }

    /// A query of the node's own (the devnet's simulated participants), on the caller's
    /// thread: on the query engine, with the same gas and wall-clock limits as the public
    /// queries ([`crate::QUERY_TIME_LIMIT`]), but at the caller's CPU priority and never
    /// waiting for a place in their pool. One at a time (the engine's instance pool has room
    /// for one beyond the pool's queries). The caller's thread needs the stack contracts run
    /// on for the deepest nesting (`(max_call_depth + 1) × max_wasm_stack` and a margin; a
    /// shallow query needs far less). Not for anything a remote party can trigger: that goes
    /// through [`Node::query`].
    pub fn query_here(&self, contract: &Address, msg: &[u8]) -> Result<Vec<u8>, QueryError> {
        let _one_at_a_time = OWN_QUERY.lock();
        self.query_on(&self.queries, contract, msg)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::test_genesis;
    use crate::{MAX_CONCURRENT_QUERIES, Node, QueryError};
    use gridledger_types::Address;
    use std::time::Duration;

    /// With every place of the public pool held, the node's own query is answered at once
    /// (here: that there is no such contract), where a public one would wait for a place.
    #[test]
    fn the_nodes_own_queries_do_not_wait_for_the_public_pool() {
        let node = Node::in_memory(test_genesis(vec![]), std::path::Path::new(".")).unwrap();
        let (started, starts) = std::sync::mpsc::channel();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
        let holders: Vec<_> = (0..MAX_CONCURRENT_QUERIES)
            .map(|_| {
                let (node, started, wait) = (node.clone(), started.clone(), wait.clone());
                std::thread::spawn(move || {
                    node.query_threads.run(
                        Duration::from_secs(60),
                        Duration::from_secs(120),
                        move || {
                            let _ = started.send(());
                            let _ = wait.lock().map(|w| w.recv());
                        },
                    )
                })
            })
            .collect();
        for _ in 0..MAX_CONCURRENT_QUERIES {
            starts.recv_timeout(Duration::from_secs(60)).unwrap();
        }
        assert_eq!(node.query_threads.running(), MAX_CONCURRENT_QUERIES);
        let nobody = Address([0xEE; 32]);
        match node.query_here(&nobody, b"{}") {
            Err(QueryError::Call(gridledger_vm::CallError::NotFound(_))) => {}
            Err(e) => panic!("expected not found, got {e}"),
            Ok(_) => panic!("a query of no contract answered"),
        }
        for _ in 0..MAX_CONCURRENT_QUERIES {
            go.send(()).unwrap();
        }
        for h in holders {
            assert!(h.join().unwrap().is_ok());
        }
    }
}
