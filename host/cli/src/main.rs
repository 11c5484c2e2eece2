//! `gridledger`: the node and its command line.

mod bench;
mod bench_attack;
mod bench_cluster;
mod bench_devices;
mod bench_market;
mod client;
mod community;
mod devnet;
mod doors;
mod observe;
mod plugins;
mod relay;
mod sim;
mod statement;
mod validators;
mod verify;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use client::Client;
use gridledger_types::{Address, GovAction, Hash32, Keypair, Payload, hash::parse_hex32};
use std::path::PathBuf;

/// The stack of every runtime thread: blocks and queries run contracts on them, and the deepest
/// nesting of calls needs more than a default thread has (see `VmConfig::execution_stack_bytes`).
fn execution_stack() -> usize {
    gridledger_vm::VmConfig::default().execution_stack_bytes()
}

/// Sends a component to the admin listener's `swap` or `stage` route; prints the report.
fn upload_plugin(admin: &AdminArg, target: &str, wasm: &std::path::Path, step: &str) -> Result<()> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let report = Client::admin(&admin.admin, &admin.admin_token)?.post_bytes(
        &format!("/v1/plugins/{target}/{step}"),
        bytes,
        "application/wasm",
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The runtime a command's node work runs on: two workers with the execution stack.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(execution_stack())
        .enable_all()
        .build()
}

#[derive(Parser)]
#[command(
    name = "gridledger",
    version,
    about = "A peer-to-peer electricity market on a permissioned chain"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct NodeArg {
    /// The node's API.
    #[arg(long, env = "GRIDLEDGER_NODE", default_value = "http://127.0.0.1:8480")]
    node: String,
}

/// A node's admin listener (printed at start as `admin: URL (token in FILE)`).
#[derive(Args, Clone)]
struct AdminArg {
    /// The admin listener.
    #[arg(
        long,
        env = "GRIDLEDGER_ADMIN",
        default_value = "http://127.0.0.1:8481"
    )]
    admin: String,
    /// The file holding its bearer token (`DATA_DIR/admin.token`).
    #[arg(long, env = "GRIDLEDGER_ADMIN_TOKEN")]
    admin_token: PathBuf,
}

#[derive(Args, Clone)]
struct Signer {
    /// File holding the sender's secret key (hex), as written by `keygen` or the devnet.
    #[arg(long, env = "GRIDLEDGER_KEY")]
    key: PathBuf,
    /// Gas limit; by default enough for the operation's size plus 20M of execution.
    #[arg(long)]
    gas: Option<u64>,
    #[command(flatten)]
    node: NodeArg,
}

#[derive(Subcommand)]
enum Command {
    /// Run the development chain: the genesis validators on loopback, the API, the island.
    Devnet(devnet::DevnetArgs),
    /// Run one validator, or one observer (`role = "observer"`), and its API from a TOML
    /// config.
    Node {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a genesis `[[validators]]` entry: new random keys (written to `--out`), or dev
    /// keys derived from the account's `dev_seed` phrase.
    ValidatorKeys {
        /// The validator's account name in genesis.
        #[arg(long)]
        account: String,
        /// Derive dev keys from this phrase (the account's dev_seed) instead of random ones.
        #[arg(long)]
        dev_seed: Option<String>,
        /// Where to write the secret keys (TOML: bls_secret, network_secret).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a genesis `[[observers]]` entry: a new random network key (written to `--out`),
    /// or the dev key derived from a phrase.
    ObserverKeys {
        /// The observer's name in genesis.
        #[arg(long)]
        name: String,
        /// Derive the dev key from this phrase instead of a random one (devnets only).
        #[arg(long)]
        dev_seed: Option<String>,
        /// Where to write the secret (TOML: network_secret).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make a new key; prints the address.
    Keygen {
        /// Where to write the secret key (hex). Printed if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the address of a key file.
    Address { key: PathBuf },
    /// Send tokens.
    Transfer {
        #[command(flatten)]
        signer: Signer,
        #[arg(long)]
        to: Address,
        #[arg(long)]
        amount: u64,
    },
    /// Create tokens (grid company only).
    Mint {
        #[command(flatten)]
        signer: Signer,
        #[arg(long)]
        to: Address,
        #[arg(long)]
        amount: u64,
    },
    /// Destroy tokens from the sender's balance (grid company only).
    Burn {
        #[command(flatten)]
        signer: Signer,
        #[arg(long)]
        amount: u64,
        #[arg(long, default_value = "")]
        payout_ref: String,
    },
    /// Upload, instantiate, execute, query and migrate contracts.
    #[command(subcommand)]
    Contract(ContractCmd),
    /// Write a genesis of the island with its village as N households, each its own account
    /// and meter (`gridledger devnet --genesis OUT` runs it).
    Community(community::CommunityArgs),
    /// A participant's market statement for a day: energy, prices, fees, subsidy, penalties,
    /// points, net (`--csv`: a row per period).
    Statement(statement::StatementArgs),
    /// Show an account's balance, nonce and roles.
    Account {
        address: Address,
        #[command(flatten)]
        node: NodeArg,
    },
    /// Show a transaction with its receipt; `--proof-out` saves its proof bundle.
    Tx {
        hash: String,
        #[arg(long)]
        proof_out: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArg,
    },
    /// Show a block (height, hash or `latest`).
    Block {
        id: String,
        #[command(flatten)]
        node: NodeArg,
    },
    /// Fetch a proof of an account's state into a file (for `verify`).
    ProveAccount {
        address: Address,
        #[arg(long)]
        height: Option<u64>,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        node: NodeArg,
    },
    /// Verify a proof bundle offline (from `tx --proof-out` or `prove-account`).
    Verify {
        file: PathBuf,
        /// A header hash you trust (e.g. from another node); the bundle's header must match.
        #[arg(long)]
        header_hash: Option<String>,
        /// The chain's genesis file: checks the bundle's finality certificate against its
        /// validator set (the header is then trusted because a quorum finalized it).
        #[arg(long)]
        genesis: Option<PathBuf>,
    },
    /// Governance: regulators propose and vote.
    #[command(subcommand)]
    Gov(GovCmd),
    /// Device plugins of a running node: health and hot swap.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Registered devices with their latest accepted readings.
    Devices {
        #[command(flatten)]
        node: NodeArg,
    },
    /// Print the hash of this build's VM settings (genesis pins it).
    VmHash,
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(Subcommand)]
enum GovCmd {
    /// Propose moving a governed contract to new (stored) code.
    ProposeUpgrade {
        #[command(flatten)]
        signer: Signer,
        contract: Address,
        #[arg(long)]
        code_hash: String,
        /// Migrate message (JSON).
        #[arg(long, default_value = "{}")]
        msg: String,
        /// Height at which it takes effect, if passed.
        #[arg(long)]
        enact_height: u64,
        /// Go back to code the contract ran before.
        #[arg(long)]
        rollback: bool,
    },
    /// Propose executing a message on a governed contract as governance (e.g. set_params).
    ProposeExecute {
        #[command(flatten)]
        signer: Signer,
        contract: Address,
        msg: String,
        #[arg(long)]
        enact_height: u64,
    },
    /// Vote on a proposal.
    Vote {
        #[command(flatten)]
        signer: Signer,
        proposal: u64,
        /// Vote against (default: for).
        #[arg(long)]
        reject: bool,
    },
    /// Show a proposal: action, votes, status (with its dry run once passed).
    Show {
        proposal: u64,
        #[command(flatten)]
        node: NodeArg,
    },
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Replace the plugin behind a device (or plugin id) with a new component, while the node
    /// runs: health check first, switch between polls, roll back if its first polls fail.
    Swap {
        /// A device name (as the plugin's manifest names it) or a plugin id.
        target: String,
        /// The new component (a WASI 0.2 component exporting gridledger:device/driver); its
        /// SHA-256 must be in the manifest's `allowed_code_hashes`.
        wasm: PathBuf,
        #[command(flatten)]
        admin: AdminArg,
    },
    /// Start and health-check a new component beside the running plugin (which keeps
    /// serving), for a quick `plugin switch` later. Same pins as `swap`.
    Stage {
        /// A device name or a plugin id.
        target: String,
        wasm: PathBuf,
        #[command(flatten)]
        admin: AdminArg,
    },
    /// Put the staged component in place now; prints its first reading's report.
    Switch {
        target: String,
        #[command(flatten)]
        admin: AdminArg,
    },
    /// Each plugin's state, version, code hash, polls, failures and swap history.
    Status {
        #[command(flatten)]
        node: NodeArg,
    },
}

#[derive(Subcommand)]
enum ContractCmd {
    /// Store a component; prints its code hash.
    Upload {
        #[command(flatten)]
        signer: Signer,
        wasm: PathBuf,
    },
    /// Create an instance of stored code.
    Instantiate {
        #[command(flatten)]
        signer: Signer,
        #[arg(long)]
        code_hash: String,
        /// Instantiate message (JSON).
        #[arg(long, default_value = "{}")]
        msg: String,
        #[arg(long, default_value = "")]
        label: String,
        /// Who may migrate it; immutable if absent.
        #[arg(long)]
        admin: Option<Address>,
        #[arg(long, default_value_t = 0)]
        funds: u64,
    },
    /// Execute a contract.
    Execute {
        #[command(flatten)]
        signer: Signer,
        contract: Address,
        /// Execute message (JSON).
        msg: String,
        #[arg(long, default_value_t = 0)]
        funds: u64,
    },
    /// Ask a contract a question (no transaction).
    Query {
        contract: Address,
        msg: String,
        #[command(flatten)]
        node: NodeArg,
    },
    /// Move a contract to new code (its admin only).
    Migrate {
        #[command(flatten)]
        signer: Signer,
        contract: Address,
        #[arg(long)]
        code_hash: String,
        #[arg(long, default_value = "{}")]
        msg: String,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn read_key(path: &std::path::Path) -> Result<Keypair> {
    let text = gridledger_keyfile::read(path).context("reading a key")?;
    let secret = parse_hex32(text.trim())
        .map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))?;
    Ok(Keypair::from_secret(secret))
}

fn parse_hash(s: &str) -> Result<Hash32> {
    parse_hex32(s)
        .map(Hash32)
        .map_err(|e| anyhow::anyhow!("bad hash {s:?}: {e}"))
}

fn json_arg(s: &str) -> Result<Vec<u8>> {
    let v: serde_json::Value =
        serde_json::from_str(s).with_context(|| format!("message is not JSON: {s}"))?;
    Ok(serde_json::to_vec(&v)?)
}

fn send(signer: &Signer, payload: Payload) -> Result<()> {
    let key = read_key(&signer.key)?;
    let client = Client::new(&signer.node.node);
    let receipt = client.sign_submit_wait(&key, payload, signer.gas)?;
    println!("{}", serde_json::to_string_pretty(&receipt)?);
    if receipt["receipt"]["success"] != serde_json::Value::Bool(true) {
        bail!(
            "transaction failed: {}",
            receipt["receipt"]["error"]["message"]
        );
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Devnet(args) => devnet::run(args),
        Command::Node { config } => validators::run_node(&config),
        Command::Statement(args) => statement::run(args),
        Command::Community(args) => community::run(args),
        Command::ValidatorKeys {
            account,
            dev_seed,
            out,
        } => {
            let (bls, net) = match &dev_seed {
                Some(p) => gridledger_node::genesis::dev_validator_keys(p),
                None => (
                    gridledger_consensus::crypto::BlsSecret::generate(),
                    gridledger_types::Keypair::generate().secret(),
                ),
            };
            if let Some(out) = out {
                gridledger_keyfile::write(
                    &out,
                    &format!(
                        "bls_secret = \"{}\"\nnetwork_secret = \"{}\"\n",
                        hex::encode(bls.to_bytes()),
                        hex::encode(net)
                    ),
                )?;
            }
            let entry = gridledger_node::genesis::validator_entry(&account, &bls, &net);
            println!("[[validators]]\n{}", toml::to_string(&entry)?);
            Ok(())
        }
        Command::ObserverKeys {
            name,
            dev_seed,
            out,
        } => {
            let (secret, public) = match &dev_seed {
                Some(p) => gridledger_node::genesis::dev_observer_key(p),
                None => {
                    let k = Keypair::generate();
                    (k.secret(), k.address().0)
                }
            };
            if let Some(out) = out {
                gridledger_keyfile::write(
                    &out,
                    &format!("network_secret = \"{}\"\n", hex::encode(secret)),
                )?;
            }
            let entry = gridledger_node::genesis::GenesisObserver {
                name,
                network_key: hex::encode(public),
            };
            println!("[[observers]]\n{}", toml::to_string(&entry)?);
            Ok(())
        }
        Command::Keygen { out } => {
            let k = Keypair::generate();
            match out {
                Some(path) => {
                    gridledger_keyfile::write(&path, &hex::encode(k.secret()))?;
                    println!("{}", k.address());
                }
                None => println!(
                    "address {}\nsecret  {}",
                    k.address(),
                    hex::encode(k.secret())
                ),
            }
            Ok(())
        }
        Command::Address { key } => {
            println!("{}", read_key(&key)?.address());
            Ok(())
        }
        Command::Transfer { signer, to, amount } => send(&signer, Payload::Transfer { to, amount }),
        Command::Mint { signer, to, amount } => send(&signer, Payload::Mint { to, amount }),
        Command::Burn {
            signer,
            amount,
            payout_ref,
        } => send(&signer, Payload::Burn { amount, payout_ref }),
        Command::Contract(c) => match c {
            ContractCmd::Upload { signer, wasm } => {
                let wasm =
                    std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
                send(&signer, Payload::StoreCode { wasm })
            }
            ContractCmd::Instantiate {
                signer,
                code_hash,
                msg,
                label,
                admin,
                funds,
            } => send(
                &signer,
                Payload::Instantiate {
                    code_hash: parse_hash(&code_hash)?,
                    msg: json_arg(&msg)?,
                    funds,
                    label,
                    admin,
                },
            ),
            ContractCmd::Execute {
                signer,
                contract,
                msg,
                funds,
            } => send(
                &signer,
                Payload::Execute {
                    contract,
                    msg: json_arg(&msg)?,
                    funds,
                },
            ),
            ContractCmd::Migrate {
                signer,
                contract,
                code_hash,
                msg,
            } => send(
                &signer,
                Payload::Migrate {
                    contract,
                    code_hash: parse_hash(&code_hash)?,
                    msg: json_arg(&msg)?,
                },
            ),
            ContractCmd::Query {
                contract,
                msg,
                node,
            } => {
                let answer = Client::new(&node.node)
                    .post_json(&format!("/v1/contracts/{contract}/query"), json_arg(&msg)?)?;
                println!("{}", serde_json::to_string_pretty(&answer)?);
                Ok(())
            }
        },
        Command::Plugin(PluginCmd::Swap {
            target,
            wasm,
            admin,
        }) => upload_plugin(&admin, &target, &wasm, "swap"),
        Command::Plugin(PluginCmd::Stage {
            target,
            wasm,
            admin,
        }) => upload_plugin(&admin, &target, &wasm, "stage"),
        Command::Plugin(PluginCmd::Switch { target, admin }) => {
            let report = Client::admin(&admin.admin, &admin.admin_token)?.post_bytes(
                &format!("/v1/plugins/{target}/switch"),
                Vec::new(),
                "application/octet-stream",
            )?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Plugin(PluginCmd::Status { node }) => {
            let v = Client::new(&node.node).get("/v1/plugins")?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Command::Devices { node } => {
            let v = Client::new(&node.node).get("/v1/devices")?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Command::Account { address, node } => {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &Client::new(&node.node).get(&format!("/v1/accounts/{address}"))?
                )?
            );
            Ok(())
        }
        Command::Tx {
            hash,
            proof_out,
            node,
        } => {
            let client = Client::new(&node.node);
            let v = match proof_out {
                // A bundle is final once the validators certified its block's header, a
                // moment after the block: wait for that (briefly) before saving it.
                Some(_) => client.tx_once_certified(&hash)?,
                None => client.get(&format!("/v1/txs/{hash}"))?,
            };
            if let Some(path) = proof_out {
                std::fs::write(&path, serde_json::to_string_pretty(&v["proof"])?)?;
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Command::Block { id, node } => {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &Client::new(&node.node).get(&format!("/v1/blocks/{id}"))?
                )?
            );
            Ok(())
        }
        Command::ProveAccount {
            address,
            height,
            out,
            node,
        } => {
            let path = match height {
                Some(h) => format!("/v1/accounts/{address}/proof?height={h}"),
                None => format!("/v1/accounts/{address}/proof"),
            };
            let v = Client::new(&node.node).get(&path)?;
            std::fs::write(&out, serde_json::to_string_pretty(&v)?)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Verify {
            file,
            header_hash,
            genesis,
        } => verify::run(&file, header_hash.as_deref(), genesis.as_deref()),
        Command::Gov(g) => match g {
            GovCmd::ProposeUpgrade {
                signer,
                contract,
                code_hash,
                msg,
                enact_height,
                rollback,
            } => send(
                &signer,
                Payload::Propose {
                    action: GovAction::Upgrade {
                        contract,
                        code_hash: parse_hash(&code_hash)?,
                        msg: json_arg(&msg)?,
                        rollback,
                    },
                    enact_height,
                },
            ),
            GovCmd::ProposeExecute {
                signer,
                contract,
                msg,
                enact_height,
            } => send(
                &signer,
                Payload::Propose {
                    action: GovAction::Execute {
                        contract,
                        msg: json_arg(&msg)?,
                    },
                    enact_height,
                },
            ),
            GovCmd::Vote {
                signer,
                proposal,
                reject,
            } => send(
                &signer,
                Payload::Vote {
                    proposal,
                    approve: !reject,
                },
            ),
            GovCmd::Show { proposal, node } => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &Client::new(&node.node).get(&format!("/v1/proposals/{proposal}"))?
                    )?
                );
                Ok(())
            }
        },
        Command::VmHash => {
            println!("{}", gridledger_vm::VmConfig::default().hash().to_hex());
            Ok(())
        }
        Command::Bench(b) => bench::run(b),
    }
}
