//! The genesis file: chain id, pinned VM settings, accounts with roles and balances, and the
//! contracts deployed before the first block.

use gridledger_consensus::crypto::{BlsPublic, BlsSecret, BlsSignature};
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
    /// The market's clock: which contracts the chain itself calls at period boundaries (a
    /// shorthand for one `[[schedule]]` entry per contract, plus the period the market's
    /// messages and readings use).
    pub market: Option<MarketClock>,
    /// Calls the chain makes to contracts on a clock, by itself (see [`ScheduledCall`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<ScheduledCall>,
    /// Simulated participants for the devnet (ignored by validators).
    pub simulation: Option<Simulation>,
    /// How regulators decide proposals.
    pub governance: Option<GovernanceConfig>,
    /// Metering devices registered at genesis, and the rules their readings meet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<DevicesConfig>,
    /// The validator set, in order (index 0 first). Empty: one node produces every block.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validators: Vec<GenesisValidator>,
    /// How far ahead of a validator's clock a proposed block time may be (default 2 s);
    /// a proposal further ahead gets no vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clock_drift_ms: Option<u64>,
    /// A development chain: keys may be derived from public phrases (`dev_seed`, in genesis
    /// accounts and in node configs). Anyone can derive those keys, so a chain without
    /// `dev = true` refuses them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dev: bool,
    /// Non-voting nodes the validators answer (the grid company's boundary node, a
    /// regulator's copy): each follows the chain and checks it, and votes on nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<GenesisObserver>,
    /// The network's topology, for contracts that need it (see [`GridConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<GridConfig>,
}

/// `[grid]`: the point of common coupling and the feeders, each with its transformer's
/// capacity and the accounts connected to it (an account no feeder lists is at the PCC). The
/// chain checks the names and renders it into genesis contract messages as `{grid}` (the
/// market keeps it and clears by it); it does not interpret it otherwise.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    /// The point of common coupling's name.
    pub pcc: String,
    #[serde(default)]
    pub feeders: Vec<GridFeeder>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridFeeder {
    pub name: String,
    /// What the feeder's transformer carries into it from the island bus, kW.
    pub import_kw: u64,
    /// What it carries out of it to the bus, kW.
    pub export_kw: u64,
    /// Names of the accounts connected to the feeder.
    #[serde(default)]
    pub accounts: Vec<String>,
}

/// An observer: a name and the ed25519 network key it presents in TLS.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisObserver {
    pub name: String,
    /// hex
    pub network_key: String,
}

/// The network key of the dev observer derived from `phrase` (devnets only): its secret and
/// the public key genesis lists.
pub fn dev_observer_key(phrase: &str) -> ([u8; 32], [u8; 32]) {
    let secret = Hash32::tagged(b"gridledger/dev-observer/v1", &[phrase.as_bytes()]).0;
    (secret, Keypair::from_secret(secret).address().0)
}

/// A validator: its account, its BLS vote key with proof of possession, and its network
/// (TLS) key signed by the vote key. `gridledger validator-keys` prints such an entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    /// Name of an account with the `validator` role.
    pub account: String,
    /// BLS12-381 public key (G1, compressed), hex.
    pub bls_public: String,
    /// The key's signature over itself, hex: proves the holder knows the secret.
    pub bls_pop: String,
    /// ed25519 network key the validator presents in TLS, hex.
    pub network_key: String,
    /// BLS signature binding the network key to the vote key, hex.
    pub network_key_sig: String,
}

/// A validator as the node uses it: keys decoded and checked.
#[derive(Clone, Debug)]
pub struct Validator {
    pub account: String,
    pub address: Address,
    pub bls: BlsPublic,
    pub network_key: [u8; 32],
}

/// Dev keys of a validator, derived from its account's `dev_seed` (never for real money).
pub fn dev_validator_keys(phrase: &str) -> (BlsSecret, [u8; 32]) {
    let bls = BlsSecret::from_seed(format!("gridledger/dev-bls/v1/{phrase}").as_bytes());
    let net = Hash32::tagged(b"gridledger/dev-network-key/v1", &[phrase.as_bytes()]).0;
    (bls, net)
}

/// The genesis entry for a validator with these keys.
pub fn validator_entry(
    account: &str,
    bls: &BlsSecret,
    network_secret: &[u8; 32],
) -> GenesisValidator {
    // An ed25519 public key is what an address is.
    let network_key = Keypair::from_secret(*network_secret).address().0;
    GenesisValidator {
        account: account.to_string(),
        bls_public: hex::encode(bls.public().to_bytes()),
        bls_pop: hex::encode(bls.proof_of_possession().to_bytes()),
        network_key: hex::encode(network_key),
        network_key_sig: hex::encode(bls.sign_network_key(&network_key).to_bytes()),
    }
}

fn hex_array<const N: usize>(what: &str, s: &str) -> Result<[u8; N], GenesisError> {
    hex::decode(s)
        .ok()
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or_else(|| GenesisError::Invalid(format!("{what}: expected {N} bytes of hex")))
}

/// `[devices]`: the rules for meter readings, and the devices registered at genesis.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    /// Label of the contract that accepted readings are reported to, per period, as
    /// `{"reading":{"period","produced_wh","consumed_wh"}}` sent by the device.
    pub reading_contract: Option<String>,
    /// How far a reading's timestamp may stray from block time.
    #[serde(default = "default_time_tolerance")]
    pub time_tolerance_ms: u64,
    /// Field time one market period stands for (the devnet runs a 15-minute period in a few
    /// seconds); the energy bound is rated power × elapsed time × field_period / period.
    /// Defaults to the market period (no compression).
    pub field_period_ms: Option<u64>,
    #[serde(default)]
    pub registered: Vec<GenesisDevice>,
}

fn default_time_tolerance() -> u64 {
    30_000
}

/// A device registered at genesis.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisDevice {
    /// The device's account (by name): its key signs the readings.
    pub device: String,
    /// The participant it meters (by name).
    pub owner: String,
    pub kind: String,
    pub rated_power_w: u64,
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
    /// A store: its profile is what it is asked to do; its device plugin applies these limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery: Option<BatteryLimits>,
}

/// A battery's size and limits (for its simulated device).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatteryLimits {
    pub capacity_wh: u64,
    /// State of charge at the start of each simulated day.
    pub initial_wh: u64,
    pub max_charge_w: u64,
    pub max_discharge_w: u64,
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

/// A call the chain makes by itself: at every `every_ms` from `start_ms` (tick `n` at
/// `start_ms + n × every_ms`), the contract labelled `contract` gets `sudo`
/// `{"<call>":{"period":n}}` with a gas cap of `gas`, its receipt after the block's
/// transactions'. Ticks that fell between two blocks are all called in the later block, in
/// order; after a stop, only the last `catch_up` (the contract catches up on the rest itself,
/// or anyone can ask it to). Calls due at the same time go in the order of the schedule.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduledCall {
    pub contract: String,
    pub every_ms: u64,
    /// Tick 0; defaults to the genesis time.
    pub start_ms: Option<u64>,
    #[serde(default = "default_call")]
    pub call: String,
    #[serde(default = "default_sudo_gas")]
    pub gas: u64,
    #[serde(default = "default_catch_up")]
    pub catch_up: u64,
}

fn default_call() -> String {
    "period_boundary".into()
}

fn default_catch_up() -> u64 {
    16
}

impl ScheduledCall {
    /// The ticks due after a block at `parent_ms` and by one at `now_ms`, oldest first, at
    /// most `catch_up` of them (the latest).
    pub fn due(
        &self,
        genesis_time_ms: u64,
        parent_ms: u64,
        now_ms: u64,
    ) -> std::ops::RangeInclusive<u64> {
        let start = self.start_ms.unwrap_or(genesis_time_ms);
        let every = self.every_ms.max(1);
        if now_ms < start {
            return std::ops::RangeInclusive::new(1, 0);
        }
        let current = (now_ms - start) / every;
        let first = if parent_ms < start {
            0
        } else {
            (parent_ms - start) / every + 1
        };
        first.max(current.saturating_sub(self.catch_up.max(1) - 1))..=current
    }
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
    /// contract) are replaced by addresses, `{genesis_time_ms}`, `{period_ms}`,
    /// `{market_start_ms}` and `{sudo_gas}` (the period calls' gas) by numbers.
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
    pub fn max_clock_drift_ms(&self) -> u64 {
        self.max_clock_drift_ms
            .unwrap_or(crate::payload::DEFAULT_MAX_CLOCK_DRIFT_MS)
    }

    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|e| GenesisError::Read(path.into(), e))?;
        let g: Genesis =
            toml::from_str(&text).map_err(|e| GenesisError::Parse(path.into(), e.to_string()))?;
        g.check()?;
        Ok(g)
    }

    fn check(&self) -> Result<(), GenesisError> {
        // Messages name accounts and contracts as `{account:NAME}`: a brace in a name would
        // end it early.
        let braced = |n: &str| n.contains(['{', '}']);
        if let Some(n) = self
            .accounts
            .iter()
            .map(|a| a.name.as_str())
            .chain(self.contracts.iter().map(|c| c.label.as_str()))
            .find(|n| braced(n))
        {
            return Err(GenesisError::Invalid(format!(
                "name {n:?}: account names and contract labels may not hold braces"
            )));
        }
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
            if a.dev_seed.is_some() && !self.dev {
                return Err(GenesisError::Invalid(format!(
                    "account {}: dev_seed derives a key anyone can compute; it is accepted only \
                     on a development chain (`dev = true` in genesis)",
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
        for c in &self.schedule {
            if !self.contracts.iter().any(|g| g.label == c.contract) {
                return Err(GenesisError::Invalid(format!(
                    "schedule: no genesis contract labelled {}",
                    c.contract
                )));
            }
            // Bounded work per block: a call at most every 100 ms, at most 64 missed ones
            // made up after a stop.
            if c.every_ms < 100 || c.catch_up == 0 || c.catch_up > 64 || c.call.is_empty() {
                return Err(GenesisError::Invalid(format!(
                    "schedule {}: every_ms must be at least 100, catch_up between 1 and 64, and call named",
                    c.contract
                )));
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
        self.validator_set()?;
        if let Some(d) = &self.devices {
            if self.market.is_none() {
                return Err(GenesisError::Invalid(
                    "devices: readings are dated by market period, so [market] is needed".into(),
                ));
            }
            if let Some(l) = &d.reading_contract
                && !self.contracts.iter().any(|c| &c.label == l)
            {
                return Err(GenesisError::Invalid(format!(
                    "devices.reading_contract: no genesis contract labelled {l}"
                )));
            }
            if d.field_period_ms == Some(0) {
                return Err(GenesisError::Invalid(
                    "devices.field_period_ms must be positive".into(),
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for r in &d.registered {
                for n in [&r.device, &r.owner] {
                    if !names.contains(n.as_str()) {
                        return Err(GenesisError::Invalid(format!(
                            "device {}: unknown account {n}",
                            r.device
                        )));
                    }
                }
                if !seen.insert(r.device.as_str()) {
                    return Err(GenesisError::Invalid(format!(
                        "device {} is registered twice",
                        r.device
                    )));
                }
                if r.rated_power_w == 0 {
                    return Err(GenesisError::Invalid(format!(
                        "device {}: rated_power_w must be positive",
                        r.device
                    )));
                }
            }
        }
        if let Some(g) = &self.grid {
            let mut feeders = std::collections::BTreeSet::new();
            let mut connected = std::collections::BTreeSet::new();
            for f in &g.feeders {
                if f.name.is_empty() || f.name == g.pcc || !feeders.insert(f.name.as_str()) {
                    return Err(GenesisError::Invalid(format!(
                        "grid: feeder name {:?} is empty, the PCC's, or used twice",
                        f.name
                    )));
                }
                for a in &f.accounts {
                    if !names.contains(a.as_str()) {
                        return Err(GenesisError::Invalid(format!(
                            "grid: feeder {} lists unknown account {a}",
                            f.name
                        )));
                    }
                    if !connected.insert(a.as_str()) {
                        return Err(GenesisError::Invalid(format!(
                            "grid: account {a} is connected to two feeders"
                        )));
                    }
                }
            }
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

    /// The validators, decoded and checked: known accounts with the validator role, keys that
    /// decode with the checked decoders, proofs of possession and network-key bindings that
    /// verify, nothing listed twice.
    pub fn validator_set(&self) -> Result<Vec<Validator>, GenesisError> {
        let addresses = self.addresses();
        let mut out: Vec<Validator> = Vec::new();
        for v in &self.validators {
            let what = |field: &str| format!("validator {}: {field}", v.account);
            let account = self
                .accounts
                .iter()
                .find(|a| a.name == v.account)
                .ok_or_else(|| GenesisError::Invalid(what("no such account")))?;
            if !account.roles.iter().any(|r| r == "validator") {
                return Err(GenesisError::Invalid(what(
                    "account lacks the validator role",
                )));
            }
            let bls = BlsPublic::from_bytes(&hex_array(&what("bls_public"), &v.bls_public)?)
                .ok_or_else(|| GenesisError::Invalid(what("bls_public is not a valid G1 point")))?;
            let pop = BlsSignature::from_bytes(&hex_array(&what("bls_pop"), &v.bls_pop)?)
                .ok_or_else(|| GenesisError::Invalid(what("bls_pop is not a valid G2 point")))?;
            if !bls.verify_possession(&pop) {
                return Err(GenesisError::Invalid(what(
                    "proof of possession does not verify",
                )));
            }
            let network_key: [u8; 32] = hex_array(&what("network_key"), &v.network_key)?;
            let sig =
                BlsSignature::from_bytes(&hex_array(&what("network_key_sig"), &v.network_key_sig)?)
                    .ok_or_else(|| {
                        GenesisError::Invalid(what("network_key_sig is not a G2 point"))
                    })?;
            if !bls.verify_network_key(&network_key, &sig) {
                return Err(GenesisError::Invalid(what(
                    "network_key_sig does not verify: the network key is not vouched for by the BLS key",
                )));
            }
            if out
                .iter()
                .any(|o| o.account == v.account || o.bls == bls || o.network_key == network_key)
            {
                return Err(GenesisError::Invalid(what("listed twice or shares a key")));
            }
            out.push(Validator {
                account: v.account.clone(),
                address: addresses[&v.account],
                bls,
                network_key,
            });
        }
        Ok(out)
    }

    /// The observers' network keys, by name; each a valid hex key, none listed twice or
    /// shared with a validator.
    pub fn observer_keys(&self) -> Result<Vec<(String, [u8; 32])>, GenesisError> {
        let validators: Vec<[u8; 32]> = self
            .validator_set()?
            .iter()
            .map(|v| v.network_key)
            .collect();
        let mut out: Vec<(String, [u8; 32])> = Vec::new();
        for o in &self.observers {
            let what = |field: &str| format!("observer {}: {field}", o.name);
            let key: [u8; 32] = hex_array(&what("network_key"), &o.network_key)?;
            if validators.contains(&key) || out.iter().any(|(n, k)| *n == o.name || *k == key) {
                return Err(GenesisError::Invalid(what(
                    "listed twice or shares a key with a validator",
                )));
            }
            out.push((o.name.clone(), key));
        }
        Ok(out)
    }

    /// Every call the chain makes on a clock: the market clock's (one per contract, in its
    /// order), then `[[schedule]]`'s.
    /// `[grid]` as JSON with account addresses, for `{grid}` in contract messages (`null`
    /// without a topology).
    pub fn grid_json(&self) -> String {
        let Some(g) = &self.grid else {
            return "null".into();
        };
        let addresses = self.addresses();
        let feeders: Vec<serde_json::Value> = g
            .feeders
            .iter()
            .map(|f| {
                let accounts: Vec<String> = f
                    .accounts
                    .iter()
                    .filter_map(|a| addresses.get(a).map(|a| a.to_hex()))
                    .collect();
                serde_json::json!({
                    "name": f.name,
                    "import_kw": f.import_kw,
                    "export_kw": f.export_kw,
                    "accounts": accounts,
                })
            })
            .collect();
        serde_json::json!({ "pcc": g.pcc, "feeders": feeders }).to_string()
    }

    /// `[devices.registered]` as a contract's list of meters (`{devices}` in a genesis
    /// message): `[{"device","participant","kind","rated_power_w"}]`, accounts as
    /// `{account:NAME}`, `[]` without `[devices]`. The market's registry is filled from it, so the chain's device
    /// registry and the market's cannot disagree at genesis.
    pub fn devices_json(&self) -> String {
        let Some(d) = &self.devices else {
            return "[]".into();
        };
        // By name: filling the message resolves them, and refuses an unknown one.
        let named = |name: &str| format!("{{account:{name}}}");
        let meters: Vec<serde_json::Value> = d
            .registered
            .iter()
            .map(|r| {
                serde_json::json!({
                    "device": named(&r.device),
                    "participant": named(&r.owner),
                    "kind": r.kind,
                    "rated_power_w": r.rated_power_w,
                })
            })
            .collect();
        serde_json::Value::from(meters).to_string()
    }

    /// For runs whose meters report by transaction (one node, no device plugins): drops
    /// `[devices]` and its readings pipeline, keeping its devices in the messages that name
    /// them (`{devices}`).
    pub fn drop_device_readings(&mut self) {
        let meters = self.devices_json();
        for c in &mut self.contracts {
            c.msg = c.msg.replace("{devices}", &meters);
        }
        self.devices = None;
    }

    pub fn scheduled_calls(&self) -> Vec<ScheduledCall> {
        let mut out: Vec<ScheduledCall> = Vec::new();
        if let Some(m) = &self.market {
            for label in &m.sudo_contracts {
                out.push(ScheduledCall {
                    contract: label.clone(),
                    every_ms: m.period_ms,
                    start_ms: Some(m.start(self.genesis_time_ms)),
                    call: default_call(),
                    gas: m.sudo_gas,
                    catch_up: default_catch_up(),
                });
            }
        }
        out.extend(self.schedule.iter().cloned());
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn island() -> Genesis {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../genesis/island.toml");
        Genesis::load(&path).expect("the island genesis loads")
    }

    #[test]
    fn the_island_has_four_checked_validators() {
        let set = island().validator_set().unwrap();
        assert_eq!(set.len(), 4);
        let (bls, net) = dev_validator_keys("gridledger island validator-2");
        assert_eq!(set[1].bls, bls.public());
        assert_eq!(set[1].network_key, Keypair::from_secret(net).address().0);
    }

    #[test]
    fn validators_with_unproven_keys_are_refused() {
        let g = island();
        let mut stolen_pop = g.clone();
        stolen_pop.validators[0].bls_pop = g.validators[1].bls_pop.clone();
        let e = stolen_pop.validator_set().unwrap_err().to_string();
        assert!(e.contains("proof of possession"), "{e}");

        let mut foreign_net = g.clone();
        foreign_net.validators[0].network_key = g.validators[1].network_key.clone();
        let e = foreign_net.validator_set().unwrap_err().to_string();
        assert!(e.contains("network_key_sig does not verify"), "{e}");

        let mut twice = g.clone();
        twice.validators[1] = g.validators[0].clone();
        assert!(twice.validator_set().is_err());

        let mut not_a_point = g.clone();
        not_a_point.validators[2].bls_public = "ff".repeat(48);
        let e = not_a_point.validator_set().unwrap_err().to_string();
        assert!(e.contains("not a valid G1 point"), "{e}");

        let mut no_role = g;
        no_role.validators[3].account = "wind-1".into();
        let e = no_role.validator_set().unwrap_err().to_string();
        assert!(e.contains("validator role"), "{e}");
    }

    #[test]
    fn the_grid_renders_with_addresses_and_bad_grids_are_refused() {
        let g = island();
        let json: serde_json::Value = serde_json::from_str(&g.grid_json()).unwrap();
        assert_eq!(json["pcc"], "island-substation");
        let park = &json["feeders"][0];
        assert_eq!(
            (park["name"].as_str(), park["export_kw"].as_u64()),
            (Some("wind-park"), Some(2000))
        );
        let wind = g.addresses()["wind-1"].to_hex();
        assert_eq!(park["accounts"][0].as_str(), Some(wind.as_str()));
        let mut twice = island();
        let grid = twice.grid.as_mut().unwrap();
        let again = grid.feeders[0].accounts[0].clone();
        grid.feeders[1].accounts.push(again);
        let e = twice.check().unwrap_err().to_string();
        assert!(e.contains("connected to two feeders"), "{e}");
        let mut unknown = island();
        unknown.grid.as_mut().unwrap().feeders[0]
            .accounts
            .push("nobody".into());
        let e = unknown.check().unwrap_err().to_string();
        assert!(e.contains("unknown account nobody"), "{e}");
        let mut same = island();
        let grid = same.grid.as_mut().unwrap();
        grid.feeders[1].name = grid.feeders[0].name.clone();
        assert!(same.check().is_err());
        let mut none = island();
        none.grid = None;
        assert_eq!(none.grid_json(), "null");
    }

    #[test]
    fn the_market_clock_is_a_schedule_and_bad_schedules_are_refused() {
        let g = island();
        // The market section is shorthand for one schedule entry per contract it calls.
        let calls = g.scheduled_calls();
        let m = g.market.as_ref().unwrap();
        assert_eq!(calls.len(), m.sudo_contracts.len());
        assert!(calls.iter().all(|c| c.every_ms == m.period_ms
            && c.call == "period_boundary"
            && c.gas == m.sudo_gas
            && c.catch_up == 16));
        // Ticks due between two blocks, at most catch_up of them.
        let c = &calls[0];
        let start = m.start(g.genesis_time_ms);
        let p = m.period_ms;
        assert_eq!(c.due(g.genesis_time_ms, start + p / 2, start + p), 1..=1);
        assert!(
            c.due(g.genesis_time_ms, start + p, start + p + 1)
                .is_empty()
        );
        assert_eq!(c.due(g.genesis_time_ms, start, start + 100 * p), 85..=100);
        assert!(c.due(g.genesis_time_ms, 0, start - 1).is_empty());

        let entry = ScheduledCall {
            contract: "market".into(),
            every_ms: 1_000,
            start_ms: None,
            call: "tick".into(),
            gas: 1_000_000,
            catch_up: 4,
        };
        let mut ok = g.clone();
        ok.schedule = vec![entry.clone()];
        assert!(ok.check().is_ok());
        for (bad, says) in [
            (
                ScheduledCall {
                    contract: "nobody".into(),
                    ..entry.clone()
                },
                "no genesis contract labelled nobody",
            ),
            (
                ScheduledCall {
                    every_ms: 0,
                    ..entry.clone()
                },
                "every_ms",
            ),
            (
                ScheduledCall {
                    catch_up: 0,
                    ..entry.clone()
                },
                "catch_up",
            ),
            (
                ScheduledCall {
                    catch_up: 1_000,
                    ..entry.clone()
                },
                "catch_up",
            ),
        ] {
            let mut g = g.clone();
            g.schedule = vec![bad];
            let e = g.check().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn dev_seeds_are_refused_on_a_chain_that_is_not_a_dev_chain() {
        let mut g = island();
        assert!(g.dev && g.check().is_ok());
        g.dev = false;
        let e = g.check().unwrap_err().to_string();
        assert!(
            e.contains("account grid-company") && e.contains("dev = true"),
            "{e}"
        );
        // With addresses instead of phrases the same chain is fine.
        for a in &mut g.accounts {
            a.address = Some(dev_key(a).address());
            a.dev_seed = None;
        }
        assert!(g.check().is_ok());
        // A dev chain's flag is part of what it is: the hash changes with it.
        let mut other = g.clone();
        other.dev = true;
        assert_ne!(g.hash(), other.hash());
    }

    /// Found by reading the island: the market's meters were a second list beside
    /// `[devices.registered]`, kind and rating written out twice. `{devices}` renders the one
    /// list, and survives dropping the readings pipeline for one-node runs.
    #[test]
    fn the_market_gets_its_meters_from_the_registered_devices() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut g = Genesis::load(&repo.join("genesis/island.toml")).unwrap();
        let addresses = g.addresses();
        let market = |g: &Genesis| {
            g.contracts
                .iter()
                .find(|c| c.label == "market")
                .unwrap()
                .msg
                .clone()
        };
        assert!(market(&g).contains(r#""devices": {devices}"#));
        let meters: serde_json::Value = serde_json::from_str(&g.devices_json()).unwrap();
        let registered = &g.devices.as_ref().unwrap().registered;
        assert_eq!(meters.as_array().unwrap().len(), registered.len());
        for (m, r) in meters.as_array().unwrap().iter().zip(registered) {
            assert_eq!(m["device"], format!("{{account:{}}}", r.device));
            assert_eq!(m["participant"], format!("{{account:{}}}", r.owner));
            assert!(addresses.contains_key(&r.device) && addresses.contains_key(&r.owner));
            assert_eq!(m["kind"], r.kind.as_str());
            assert_eq!(m["rated_power_w"], r.rated_power_w);
        }
        let rendered = g.devices_json();
        g.drop_device_readings();
        assert!(g.devices.is_none());
        assert!(market(&g).contains(&format!(r#""devices": {rendered}"#)));
        assert_eq!(g.devices_json(), "[]");
        // A brace in a name would end `{account:NAME}` early.
        for braced in ["wind}1", "{wind"] {
            let mut b = island();
            b.accounts[0].name = braced.into();
            let e = b.check().unwrap_err().to_string();
            assert!(e.contains("may not hold braces"), "{e}");
        }
        let mut b = island();
        b.contracts[0].label = "pri}cing".into();
        assert!(b.check().is_err());
    }
}
