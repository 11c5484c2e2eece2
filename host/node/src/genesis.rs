//! The genesis file: chain id, pinned VM settings, accounts with roles and balances, and the
//! contracts deployed before the first block.

use gridledger_types::{Address, Hash32, Keypair};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `genesis/*.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    /// Block time of the genesis block, ms since the Unix epoch.
    pub genesis_time_ms: u64,
    /// Hash of the VM settings every node must run with (`gridledger vm-hash` prints it).
    pub vm_config_hash: String,
    /// Fee per 1000 gas, in the smallest token unit.
    #[serde(default = "default_gas_price")]
    pub gas_price_per_kgas: u64,
    /// Target time between blocks.
    #[serde(default = "default_block_ms")]
    pub block_interval_ms: u64,
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    #[serde(default)]
    pub contracts: Vec<GenesisContract>,
    /// The market's clock: which contracts the chain itself calls at period boundaries.
    pub market: Option<MarketClock>,
    /// Simulated participants for the devnet (ignored by validators).
    pub simulation: Option<Simulation>,
    /// How regulators decide proposals.
    pub governance: Option<GovernanceConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// Regulator approvals that pass a proposal.
    pub quorum: u32,
}

/// The devnet's simulated island: who trades, from which profile.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Simulation {
    /// CSV of per-period average power in W, relative to the genesis file.
    pub profiles: String,
    /// Label of the pricing contract (forecasts go there).
    pub pricing: String,
    /// Label of the market contract (orders and readings go there).
    pub market: String,
    pub participants: Vec<Participant>,
}

/// One simulated participant.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    /// Its account (by name); must have a `dev_seed`.
    pub account: String,
    /// Its meter's account (by name, `dev_seed`, registered with the market).
    pub meter: String,
    /// Profile column; positive values are produced, negative consumed (a battery is both).
    pub profile: String,
    /// How many units of the profile this participant is (e.g. 3000 households).
    pub units: u64,
    /// A producer (`true`: offers what it produces) or a consumer (bids what it consumes).
    pub producer: bool,
    #[serde(default)]
    pub renewable: bool,
    /// Limit price, micro-tokens per kWh: an offer's minimum or a bid's maximum.
    pub limit_price: u64,
}

/// Delivery periods and the contracts that move with them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketClock {
    /// Length of a delivery period.
    pub period_ms: u64,
    /// Start of period 0; defaults to the genesis time.
    pub start_ms: Option<u64>,
    /// Labels of contracts whose `sudo` gets `{"period_boundary":{"period":N}}` when period
    /// N begins, in this order.
    pub sudo_contracts: Vec<String>,
    /// Gas cap of each such call.
    #[serde(default = "default_sudo_gas")]
    pub sudo_gas: u64,
    /// Label of the contract answering `{"stats":{}}` with `settled_periods` (the status page).
    pub stats_contract: Option<String>,
}

fn default_sudo_gas() -> u64 {
    2_000_000_000
}

impl MarketClock {
    pub fn start(&self, genesis_time_ms: u64) -> u64 {
        self.start_ms.unwrap_or(genesis_time_ms)
    }
}

fn default_gas_price() -> u64 {
    1
}

fn default_block_ms() -> u64 {
    500
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// A name for people and for other genesis entries (`admin = "grid-company"`).
    pub name: String,
    /// The account's address. For development chains, give `dev_seed` instead: the key is
    /// derived from the phrase (never do that with real money).
    pub address: Option<Address>,
    pub dev_seed: Option<String>,
    #[serde(default)]
    pub balance: u64,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisContract {
    /// Label of the instance; other tools look contracts up by it.
    pub label: String,
    /// Component file, relative to the contracts directory (`target/contracts`).
    pub wasm: String,
    /// Instantiate message, as JSON text. `{account:NAME}` and `{contract:LABEL}` (an earlier
    /// contract) are replaced by addresses, `{genesis_time_ms}` and `{period_ms}` by numbers.
    #[serde(default = "default_msg")]
    pub msg: String,
    /// Tokens the creator sends to the instance (e.g. a subsidy pool).
    #[serde(default)]
    pub funds: u64,
    /// The account (by name) that creates it.
    pub creator: String,
    /// The account (by name) allowed to migrate it, or `governance` for the regulators by
    /// proposal; immutable if absent.
    pub admin: Option<String>,
}

fn default_msg() -> String {
    "{}".into()
}

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("genesis file {0}: {1}")]
    Parse(PathBuf, String),
    #[error("genesis: {0}")]
    Invalid(String),
}

impl Genesis {
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|e| GenesisError::Read(path.into(), e))?;
        let g: Genesis =
            toml::from_str(&text).map_err(|e| GenesisError::Parse(path.into(), e.to_string()))?;
        g.check()?;
        Ok(g)
    }

    fn check(&self) -> Result<(), GenesisError> {
        let mut names = std::collections::BTreeSet::new();
        for a in &self.accounts {
            if !names.insert(a.name.as_str()) {
                return Err(GenesisError::Invalid(format!(
                    "account {} is listed twice",
                    a.name
                )));
            }
            if a.address.is_some() == a.dev_seed.is_some() {
                return Err(GenesisError::Invalid(format!(
                    "account {}: give exactly one of address, dev_seed",
                    a.name
                )));
            }
            for r in &a.roles {
                if gridledger_types::schema::Roles::bit(r).is_none() {
                    return Err(GenesisError::Invalid(format!(
                        "account {}: unknown role {r}",
                        a.name
                    )));
                }
            }
        }
        if let Some(m) = &self.market {
            if m.period_ms == 0 {
                return Err(GenesisError::Invalid(
                    "market.period_ms must be positive".into(),
                ));
            }
            for l in m.sudo_contracts.iter().chain(&m.stats_contract) {
                if !self.contracts.iter().any(|c| &c.label == l) {
                    return Err(GenesisError::Invalid(format!(
                        "market: no genesis contract labelled {l}"
                    )));
                }
            }
        }
        if let Some(g) = &self.governance
            && (g.quorum == 0 || g.quorum as usize > self.regulators())
        {
            return Err(GenesisError::Invalid(format!(
                "governance.quorum must be between 1 and the {} regulators",
                self.regulators()
            )));
        }
        for c in &self.contracts {
            if !names.contains(c.creator.as_str()) {
                return Err(GenesisError::Invalid(format!(
                    "contract {}: unknown creator {}",
                    c.label, c.creator
                )));
            }
        }
        Ok(())
    }

    pub fn regulators(&self) -> usize {
        self.accounts
            .iter()
            .filter(|a| a.roles.iter().any(|r| r == "regulator"))
            .count()
    }

    /// The approvals a proposal needs: as written, or a majority of the regulators.
    pub fn governance_quorum(&self) -> u32 {
        match &self.governance {
            Some(g) => g.quorum,
            None => (self.regulators() / 2 + 1) as u32,
        }
    }

    /// Address of each named account.
    pub fn addresses(&self) -> BTreeMap<String, Address> {
        self.accounts
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    a.address.unwrap_or_else(|| dev_key(a).address()),
                )
            })
            .collect()
    }

    /// Keys of the accounts with a `dev_seed`, for the devnet to hand to its users.
    pub fn dev_keys(&self) -> Vec<(String, Keypair)> {
        self.accounts
            .iter()
            .filter(|a| a.dev_seed.is_some())
            .map(|a| (a.name.clone(), dev_key(a)))
            .collect()
    }

    /// The identity of this genesis: a hash of its canonical JSON. Stored at height 0, so a
    /// node never resumes a data directory made from another genesis.
    pub fn hash(&self) -> Hash32 {
        let json = serde_json::to_vec(self).unwrap_or_default();
        Hash32::tagged(gridledger_types::hash::domain::GENESIS, &[&json])
    }
}

fn dev_key(a: &GenesisAccount) -> Keypair {
    Keypair::from_seed_phrase(a.dev_seed.as_deref().unwrap_or_default())
}
