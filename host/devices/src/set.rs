//! The plugins of one node, started from their manifests, with one door for operators:
//! status and swap.

use crate::manifest::PluginManifest;
use crate::meter::{ChainClock, Meter, MeterPosition};
use crate::runtime::{PluginCode, PluginRuntime};
use crate::supervisor::{Clock, PluginHandle, PluginStatus, PluginTask, StageReport, SwapReport};
use gridledger_types::{Address, Hash32, Keypair, SignedReading};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// What the chain says about a device: its rating and where its readings stand.
#[derive(Clone, Debug)]
pub struct RegisteredDevice {
    pub rated_power_w: u64,
    pub position: MeterPosition,
}

/// Why the plugins could not start.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin}: {reason}")]
pub struct StartError {
    pub plugin: String,
    pub reason: String,
}

pub struct PluginSet {
    runtime: Arc<PluginRuntime>,
    handles: Vec<PluginHandle>,
    /// For each handle, the code hashes its manifest allows a swap to.
    allowed: Vec<Vec<Hash32>>,
}

impl PluginSet {
    /// Loads and checks every manifest's plugin (file hash and version pins, device keys,
    /// devices registered and not revoked), then starts them all. Readings go to `out`.
    pub async fn start(
        manifests: Vec<PluginManifest>,
        clock: ChainClock,
        now: Clock,
        registered: impl Fn(&Address) -> Option<RegisteredDevice>,
        out: mpsc::Sender<Vec<SignedReading>>,
        stop: watch::Receiver<bool>,
    ) -> Result<Arc<PluginSet>, StartError> {
        let runtime = Arc::new(PluginRuntime::new().map_err(|e| StartError {
            plugin: "*".into(),
            reason: format!("{e:#}"),
        })?);
        let mut handles = Vec::new();
        let mut allowed = Vec::new();
        for m in manifests {
            let fail = |reason: String| StartError {
                plugin: m.id.clone(),
                reason,
            };
            let pins = m
                .allowed_code_hashes
                .iter()
                .map(|h| {
                    h.parse::<Hash32>().map_err(|_| {
                        fail(format!("allowed_code_hashes: {h:?} is not 64 hex digits"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let wasm =
                std::fs::read(&m.wasm).map_err(|e| fail(format!("{}: {e}", m.wasm.display())))?;
            let code = runtime.load(&wasm).map_err(|e| fail(e.to_string()))?;
            if let Some(pin) = &m.code_hash
                && !pin.eq_ignore_ascii_case(&code.hash.to_hex())
            {
                return Err(fail(format!(
                    "{} has SHA-256 {}, the manifest pins {pin}",
                    m.wasm.display(),
                    code.hash
                )));
            }
            if let Some(want) = &m.version {
                let first = runtime
                    .start(&code, &m)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                if &first.info.version != want {
                    return Err(fail(format!(
                        "reports version {}, the manifest pins {want}",
                        first.info.version
                    )));
                }
            }
            let mut meters = Vec::new();
            for d in &m.devices {
                let key = device_key(d).map_err(|e| fail(format!("device {}: {e}", d.name)))?;
                let reg = registered(&key.address()).ok_or_else(|| {
                    fail(format!(
                        "device {} ({}) is not registered on chain, or is revoked",
                        d.name,
                        key.address()
                    ))
                })?;
                meters.push(Meter::new(&d.name, key, reg.rated_power_w, reg.position));
            }
            let task = PluginTask {
                runtime: runtime.clone(),
                manifest: m,
                code,
                meters,
                clock: clock.clone(),
                now: now.clone(),
                out: out.clone(),
            };
            handles.push(task.spawn(stop.clone()));
            allowed.push(pins);
        }
        Ok(Arc::new(PluginSet {
            runtime,
            handles,
            allowed,
        }))
    }

    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.handles.iter().map(|h| h.status()).collect()
    }

    /// The plugin named `target`, or the one reporting for the device named `target`.
    pub fn find(&self, target: &str) -> Option<&PluginHandle> {
        self.handles.iter().find(|h| h.id == target).or_else(|| {
            self.handles
                .iter()
                .find(|h| h.devices.iter().any(|d| d == target))
        })
    }

    /// Swaps the plugin behind `target` for the component `wasm`, if its manifest allows
    /// that component's hash (checked before anything is compiled).
    pub async fn swap(&self, target: &str, wasm: &[u8]) -> Result<SwapReport, String> {
        let (handle, code) = self.allowed_code(target, wasm).await?;
        handle.swap(code).await
    }

    /// Compiles, starts and health-checks `wasm` beside the plugin behind `target` (which
    /// keeps serving), for a later [`PluginSet::switch`]; the same pins as a swap.
    pub async fn stage(&self, target: &str, wasm: &[u8]) -> Result<StageReport, String> {
        let (handle, code) = self.allowed_code(target, wasm).await?;
        handle.stage(code).await
    }

    /// Puts the version staged for `target` in place; answers with its first reading.
    pub async fn switch(&self, target: &str) -> Result<SwapReport, String> {
        let handle = self
            .find(target)
            .ok_or_else(|| format!("no plugin or device named {target:?}"))?;
        handle.switch().await
    }

    /// The plugin behind `target` and `wasm` compiled, if its manifest allows its hash.
    async fn allowed_code(
        &self,
        target: &str,
        wasm: &[u8],
    ) -> Result<(&PluginHandle, PluginCode), String> {
        let (handle, allowed) = self
            .find_with_pins(target)
            .ok_or_else(|| format!("no plugin or device named {target:?}"))?;
        let hash = Self::code_hash(wasm);
        if !allowed.contains(&hash) {
            return Err(format!(
                "refused: {hash} is not in plugin {}'s allowed_code_hashes ({} listed); \
                 add it to the manifest and restart the node to allow it",
                handle.id,
                allowed.len()
            ));
        }
        // Compiling takes a second of CPU for a large component: off the async workers.
        let runtime = self.runtime.clone();
        let wasm = wasm.to_vec();
        let code: PluginCode = tokio::task::spawn_blocking(move || runtime.load(&wasm))
            .await
            .map_err(|e| format!("compiling: {e}"))?
            .map_err(|e| e.to_string())?;
        Ok((handle, code))
    }

    fn find_with_pins(&self, target: &str) -> Option<(&PluginHandle, &[Hash32])> {
        let i = self
            .handles
            .iter()
            .position(|h| h.id == target)
            .or_else(|| {
                self.handles
                    .iter()
                    .position(|h| h.devices.iter().any(|d| d == target))
            })?;
        Some((&self.handles[i], &self.allowed[i]))
    }

    /// Moves devices' sequence numbers up to `next_seq` (the chain's, by device address; a
    /// device it has no answer for, or already past it, keeps its own). See
    /// [`PluginHandle::resync`].
    pub async fn resync(&self, next_seq: impl Fn(&Address) -> Option<u64>) -> Result<(), String> {
        for h in &self.handles {
            let wanted: std::collections::HashMap<Address, u64> = h
                .addresses
                .iter()
                .filter_map(|a| next_seq(a).map(|n| (*a, n)))
                .collect();
            if !wanted.is_empty() {
                h.resync(wanted).await?;
            }
        }
        Ok(())
    }

    /// SHA-256 of a component file, as the manifest's `code_hash` pins it.
    pub fn code_hash(wasm: &[u8]) -> Hash32 {
        Hash32::tagged(b"", &[wasm])
    }
}

fn device_key(d: &crate::manifest::DeviceBinding) -> Result<Keypair, String> {
    match (&d.dev_seed, &d.key_file) {
        (Some(seed), None) => Ok(Keypair::from_seed_phrase(seed)),
        (None, Some(path)) => {
            let text = gridledger_keyfile::read(path).map_err(|e| e.to_string())?;
            let bytes = hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| format!("{}: expected 64 hex digits", path.display()))?;
            Ok(Keypair::from_secret(bytes))
        }
        _ => Err("give exactly one of dev_seed, key_file".into()),
    }
}
