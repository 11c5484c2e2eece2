//! A multi-contract test harness on real wasm: an in-memory chain where every transaction is
//! its own block, so tests read like a script (like cw-multi-test, but running the same
//! components, VM and executor as the node).
//!
//! ```ignore
//! let mut chain = TestChain::new();
//! let alice = chain.account("alice", 1_000_000_000);
//! let code = chain.store_code(&alice, &std::fs::read("target/contracts/counter.wasm")?).unwrap();
//! let counter = chain.instantiate(&alice, code, r#"{"start":1}"#).unwrap();
//! let receipt = chain.execute(&alice, counter, r#"{"increment":{"by":2}}"#, 0);
//! assert!(receipt.is_success());
//! let answer = chain.query(counter, r#"{"count":{}}"#).unwrap();
//! ```

use crate::genesis::{Genesis, GenesisAccount};
use crate::{Node, Rejected, TxStatus};
use gridledger_types::{Address, Hash32, Keypair, Payload, Receipt, TxBody};
use gridledger_vm::{CallError, VmConfig};
use std::path::Path;
use std::sync::Arc;

pub const TEST_CHAIN_ID: &str = "test-chain";

/// Gas limit the harness gives each transaction.
pub const TX_GAS: u64 = 50_000_000;

pub struct TestChain {
    pub node: Arc<Node>,
    /// The grid company: fee collector, may mint and burn.
    pub grid_company: Keypair,
    time_ms: u64,
}

impl Default for TestChain {
    fn default() -> Self {
        Self::new()
    }
}

/// A genesis with a funded grid company, for tests.
/// The sum of every balance on `node`'s ledger (accounts, contracts, the fee collector) and
/// the supply it records: equal on any ledger where tokens are conserved.
pub fn balances_and_supply(node: &Node) -> (u128, u128) {
    use gridledger_state::StateRead;
    use gridledger_types::schema;
    let snap = node.snapshot().expect("a snapshot");
    let (mut sum, mut after) = (0u128, None::<Vec<u8>>);
    loop {
        let page = snap
            .scan(&[schema::TAG_ACCOUNT], after.as_deref(), 256, false)
            .expect("a scan");
        for (_, v) in &page {
            let a: schema::Account =
                gridledger_types::codec::decode("account", v).expect("an account");
            sum += a.balance as u128;
        }
        if page.len() < 256 {
            break;
        }
        after = page.last().map(|(k, _)| k.clone());
    }
    let supply: u64 = snap
        .get(&schema::meta_key(schema::META_SUPPLY))
        .expect("a read")
        .map(|b| gridledger_types::codec::decode("supply", &b).expect("the supply"))
        .unwrap_or(0);
    (sum, supply as u128)
}

/// [`test_genesis`] with `n` validators (accounts `v0`, `v1`, …, keys derived from `seed(i)`)
/// and 50 ms blocks.
pub fn validators_genesis(n: usize, seed: impl Fn(usize) -> String) -> Genesis {
    let accounts = (0..n)
        .map(|i| GenesisAccount {
            name: format!("v{i}"),
            address: None,
            dev_seed: Some(seed(i)),
            balance: 1_000_000,
            roles: vec!["validator".into()],
        })
        .collect();
    let mut g = test_genesis(accounts);
    g.block_interval_ms = 50;
    g.validators = (0..n)
        .map(|i| {
            let (bls, net) = crate::genesis::dev_validator_keys(&seed(i));
            crate::genesis::validator_entry(&format!("v{i}"), &bls, &net)
        })
        .collect();
    g
}

pub fn test_genesis(extra: Vec<GenesisAccount>) -> Genesis {
    let mut accounts = vec![GenesisAccount {
        name: "grid-company".into(),
        address: None,
        dev_seed: Some("test grid company".into()),
        balance: 1_000_000_000_000,
        roles: vec!["grid_company".into(), "validator".into()],
    }];
    accounts.extend(extra);
    Genesis {
        chain_id: TEST_CHAIN_ID.into(),
        genesis_time_ms: 1_767_225_600_000,
        vm_config_hash: VmConfig::default().hash().to_hex(),
        gas_price_per_kgas: 1,
        block_interval_ms: 500,
        accounts,
        contracts: Vec::new(),
        market: None,
        simulation: None,
        governance: None,
        devices: None,
        validators: Vec::new(),
        max_clock_drift_ms: None,
        dev: true,
        observers: Vec::new(),
        grid: None,
        schedule: Vec::new(),
    }
}

impl TestChain {
    pub fn new() -> TestChain {
        Self::with_genesis(test_genesis(Vec::new()), Path::new("."))
    }

    pub fn with_genesis(genesis: Genesis, contracts_dir: &Path) -> TestChain {
        let node = Node::in_memory(genesis, contracts_dir).expect("test chain");
        TestChain {
            node,
            grid_company: Keypair::from_seed_phrase("test grid company"),
            time_ms: 1_767_225_600_000,
        }
    }

    /// A new account funded by the grid company.
    pub fn account(&mut self, name: &str, balance: u64) -> Keypair {
        let key = Keypair::from_seed_phrase(&format!("test account {name}"));
        if balance > 0 {
            let gc = self.grid_company.clone();
            let r = self.send(
                &gc,
                Payload::Transfer {
                    to: key.address(),
                    amount: balance,
                },
            );
            assert!(r.is_success(), "funding {name}: {:?}", r.error);
        }
        key
    }

    pub fn balance(&self, who: &Address) -> u64 {
        self.node.account(who).map(|(a, _)| a.balance).unwrap_or(0)
    }

    pub fn nonce(&self, who: &Address) -> u64 {
        self.node.account(who).map(|(a, _)| a.nonce).unwrap_or(0)
    }

    /// A signed transaction from `key` with its next nonce.
    pub fn sign(
        &self,
        key: &Keypair,
        payload: Payload,
        gas_limit: u64,
    ) -> gridledger_types::SignedTx {
        TxBody {
            chain_id: TEST_CHAIN_ID.into(),
            sender: key.address(),
            nonce: self.nonce(&key.address()),
            gas_limit,
            payload,
        }
        .sign(key)
    }

    /// Submits raw bytes and, if admitted, produces a block with them. Returns the receipt.
    pub fn submit_bytes(&mut self, bytes: &[u8]) -> Result<Receipt, Rejected> {
        let hash = self.node.submit(bytes)?;
        self.next_block();
        match self.node.tx_status(&hash).expect("status") {
            TxStatus::Included {
                receipts, index, ..
            } => Ok(receipts[index as usize].clone()),
            other => panic!("admitted transaction not included: {other:?}"),
        }
    }

    /// Produces one block (with whatever is pending), a second after the last.
    pub fn next_block(&mut self) {
        self.block_at(self.time_ms + 1000);
    }

    /// Produces one block at `time_ms` (at least 1 ms after the last).
    pub fn block_at(&mut self, time_ms: u64) -> Arc<crate::CommittedBlock> {
        self.time_ms = time_ms.max(self.time_ms + 1);
        self.node.produce_block(self.time_ms).expect("block")
    }

    /// Time of the last block.
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// Signs, submits and includes a transaction; panics if it is rejected.
    pub fn send(&mut self, key: &Keypair, payload: Payload) -> Receipt {
        let tx = self.sign(key, payload, TX_GAS);
        self.submit_bytes(&tx.encode()).expect("admitted")
    }

    pub fn store_code(&mut self, key: &Keypair, wasm: &[u8]) -> Result<Hash32, Box<Receipt>> {
        let gas = TX_GAS + 40 * wasm.len() as u64;
        let tx = self.sign(
            key,
            Payload::StoreCode {
                wasm: wasm.to_vec(),
            },
            gas,
        );
        let r = self.submit_bytes(&tx.encode()).expect("admitted");
        if !r.is_success() {
            return Err(Box::new(r));
        }
        let v: serde_json::Value = serde_json::from_slice(&r.result).expect("store result");
        Ok(Hash32(
            gridledger_types::hash::parse_hex32(v["code_hash"].as_str().unwrap_or_default())
                .expect("hash"),
        ))
    }

    pub fn instantiate(
        &mut self,
        key: &Keypair,
        code_hash: Hash32,
        msg: &str,
    ) -> Result<Address, Box<Receipt>> {
        self.instantiate_with(key, code_hash, msg, Some(key.address()), 0)
    }

    pub fn instantiate_with(
        &mut self,
        key: &Keypair,
        code_hash: Hash32,
        msg: &str,
        admin: Option<Address>,
        funds: u64,
    ) -> Result<Address, Box<Receipt>> {
        let r = self.send(
            key,
            Payload::Instantiate {
                code_hash,
                msg: msg.as_bytes().to_vec(),
                funds,
                label: String::new(),
                admin,
            },
        );
        if !r.is_success() {
            return Err(Box::new(r));
        }
        let v: serde_json::Value = serde_json::from_slice(&r.result).expect("instantiate result");
        Ok(v["contract"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("contract address"))
    }

    pub fn execute(&mut self, key: &Keypair, contract: Address, msg: &str, funds: u64) -> Receipt {
        self.send(
            key,
            Payload::Execute {
                contract,
                msg: msg.as_bytes().to_vec(),
                funds,
            },
        )
    }

    pub fn query(&self, contract: Address, msg: &str) -> Result<serde_json::Value, CallError> {
        match self.node.query(&contract, msg.as_bytes()) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)),
            Err(crate::QueryError::Call(e)) => Err(e),
            Err(crate::QueryError::Node(e)) => panic!("node fault: {e}"),
            Err(crate::QueryError::Busy(n)) => panic!("{n} queries running in a test chain"),
            Err(crate::QueryError::TimedOut(d)) => panic!("a test query had no answer in {d:?}"),
        }
    }

    /// The state root at the head.
    pub fn state_root(&self) -> Hash32 {
        self.node.head().state_root
    }
}
