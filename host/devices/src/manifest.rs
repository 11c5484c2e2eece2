//! What a plugin is allowed: the `[[plugins]]` entries of a node's TOML config.
//!
//! Nothing is granted by default. A plugin gets the directory it may read, the socket addresses
//! it may connect to, the devices it may report for, and its memory and time per call.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginManifest {
    /// A name for logs, status and `gridledger plugin swap`.
    pub id: String,
    /// The component file.
    pub wasm: PathBuf,
    /// If set, the version the plugin must report.
    pub version: Option<String>,
    /// If set, the SHA-256 (hex) the component file must have.
    pub code_hash: Option<String>,
    /// The SHA-256 (hex) of every component a hot swap may install. A swap to anything else
    /// is refused before it is compiled; with an empty list (the default) swaps are refused.
    /// The pin is the operator's, not the uploader's: whoever reaches the admin door still
    /// cannot install code the manifest does not name.
    #[serde(default)]
    pub allowed_code_hashes: Vec<String>,
    /// Time between polls.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Most linear memory (and tables) the plugin may grow to, bytes.
    #[serde(default = "default_memory")]
    pub memory_limit_bytes: usize,
    /// Most time one call (init or poll) may take.
    #[serde(default = "default_time_limit")]
    pub time_limit_ms: u64,
    /// Socket addresses the plugin may connect to (TCP). Nothing else on the network.
    #[serde(default)]
    pub connect: Vec<SocketAddr>,
    /// A directory the plugin may read (never write), seen by it as `/data`.
    pub read_dir: Option<PathBuf>,
    /// Handed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// The devices it reports for.
    pub devices: Vec<DeviceBinding>,
}

/// A device a plugin reports for, and where the node finds its signing key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceBinding {
    /// The name the plugin uses for it.
    pub name: String,
    /// Dev key derived from a public phrase (devnets only).
    pub dev_seed: Option<String>,
    /// File holding the ed25519 secret key as 64 hex digits.
    pub key_file: Option<PathBuf>,
}

fn default_poll_ms() -> u64 {
    1_000
}

fn default_memory() -> usize {
    32 << 20
}

fn default_time_limit() -> u64 {
    1_000
}

impl PluginManifest {
    /// The config as the JSON text `init` receives.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".into())
    }
}
