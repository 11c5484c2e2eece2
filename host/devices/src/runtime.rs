//! Running plugin components: one wasmtime engine for all plugins, one store per running
//! instance, with the manifest's grants and nothing else.
//!
//! Every call is bounded twice. Epoch interruption traps a plugin that computes too long, and
//! a host-side timeout drops the call's future (and with it the store) when a plugin is stuck
//! in host I/O, where epochs do not reach it. Memory is capped by `StoreLimits`.

use crate::manifest::PluginManifest;
use gridledger_types::Hash32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit/device/device.wit",
        world: "device-plugin",
        exports: { default: async },
    });
}

pub use bindings::exports::gridledger::device::driver::{Info, Sample};

/// How often the engine's epoch ticks: the granularity of the compute time limit.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why a plugin call failed. The node logs it and restarts or rolls back the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("code refused: {0}")]
    Code(String),
    #[error("could not start: {0}")]
    Start(String),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("did not answer within {0} ms")]
    Timeout(u64),
    #[error("reported an error: {0}")]
    Reported(String),
}

/// A plugin's compiled code, with the hash the chain records.
#[derive(Clone)]
pub struct PluginCode {
    pub component: Component,
    pub hash: Hash32,
}

/// The engine and linker shared by all plugins.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    ticking: Arc<AtomicBool>,
}

/// What a plugin's store holds.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

impl PluginRuntime {
    pub fn new() -> anyhow::Result<PluginRuntime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("plugin engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e:#}"))?;
        let ticking = Arc::new(AtomicBool::new(true));
        let (weak, flag) = (engine.weak(), ticking.clone());
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(PluginRuntime {
            engine,
            linker,
            ticking,
        })
    }

    /// Compiles and checks a component: it must import nothing but WASI and export the
    /// driver interface.
    pub fn load(&self, wasm: &[u8]) -> Result<PluginCode, PluginError> {
        let component =
            Component::new(&self.engine, wasm).map_err(|e| PluginError::Code(format!("{e:#}")))?;
        let ty = component.component_type();
        for (name, _) in ty.imports(&self.engine) {
            if !name.starts_with("wasi:") {
                return Err(PluginError::Code(format!(
                    "imports {name}; a plugin may import only WASI"
                )));
            }
        }
        if !ty
            .exports(&self.engine)
            .any(|(name, _)| name.starts_with("gridledger:device/driver"))
        {
            return Err(PluginError::Code(
                "does not export gridledger:device/driver".into(),
            ));
        }
        Ok(PluginCode {
            component,
            hash: crate::set::PluginSet::code_hash(wasm),
        })
    }

    /// Starts an instance with the manifest's grants and runs its `init`.
    pub async fn start(
        &self,
        code: &PluginCode,
        manifest: &PluginManifest,
    ) -> Result<RunningPlugin, PluginError> {
        let wasi = grants(manifest)?;
        let limits = StoreLimitsBuilder::new()
            .memory_size(manifest.memory_limit_bytes)
            .table_elements(100_000)
            .build();
        let mut store = Store::new(
            &self.engine,
            PluginState {
                wasi,
                table: ResourceTable::new(),
                limits,
            },
        );
        store.limiter(|s| &mut s.limits);
        let limit_ms = manifest.time_limit_ms;
        let config = manifest.config_json();
        let started = bounded(&mut store, limit_ms, async |store| {
            let plugin = bindings::DevicePlugin::instantiate_async(
                &mut *store,
                &code.component,
                &self.linker,
            )
            .await?;
            let info = plugin
                .gridledger_device_driver()
                .call_init(&mut *store, &config)
                .await?;
            Ok((plugin, info))
        })
        .await;
        let (plugin, info) = match started {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(PluginError::Start(format!("{e:#}"))),
            Err(e) => return Err(e),
        };
        let info = info.map_err(PluginError::Reported)?;
        if info.version.is_empty() || info.model.is_empty() {
            return Err(PluginError::Start(
                "init returned an empty model or version".into(),
            ));
        }
        Ok(RunningPlugin {
            store,
            plugin,
            info,
            limit_ms,
            code_hash: code.hash,
        })
    }
}

/// A started plugin instance. Dropping it drops its store and everything the plugin held.
pub struct RunningPlugin {
    store: Store<PluginState>,
    plugin: bindings::DevicePlugin,
    pub info: Info,
    limit_ms: u64,
    pub code_hash: Hash32,
}

impl RunningPlugin {
    /// Polls the plugin, bounded in time and memory.
    pub async fn poll(&mut self, now_ms: u64) -> Result<Vec<Sample>, PluginError> {
        let plugin = &self.plugin;
        let out = bounded(&mut self.store, self.limit_ms, async |store| {
            plugin
                .gridledger_device_driver()
                .call_poll(store, now_ms)
                .await
        })
        .await?;
        match out {
            Ok(Ok(samples)) => Ok(samples),
            Ok(Err(reported)) => Err(PluginError::Reported(reported)),
            Err(trap) => Err(PluginError::Trap(format!("{trap:#}"))),
        }
    }
}

/// Runs `call` with the compute deadline set, inside a host-side timeout.
async fn bounded<T>(
    store: &mut Store<PluginState>,
    limit_ms: u64,
    call: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<T>,
) -> Result<wasmtime::Result<T>, PluginError> {
    let ticks = limit_ms.div_ceil(EPOCH_TICK.as_millis() as u64).max(1);
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    // The host-side bound is a little longer, so that compute overruns show as traps.
    let wall = Duration::from_millis(limit_ms + limit_ms / 2 + 20);
    tokio::time::timeout(wall, call(store))
        .await
        .map_err(|_| PluginError::Timeout(limit_ms))
}

/// The WASI context a manifest grants: its directory read-only at `/data`, connections to its
/// addresses only (each denial logged), no environment, arguments or inherited stdio.
fn grants(manifest: &PluginManifest) -> Result<WasiCtx, PluginError> {
    let mut b = WasiCtxBuilder::new();
    if let Some(dir) = &manifest.read_dir {
        b.preopened_dir(dir, "/data", FsPerms::ReadOnly)
            .map_err(|e| PluginError::Start(format!("read_dir {}: {e:#}", dir.display())))?;
    }
    let allowed: Arc<[std::net::SocketAddr]> = manifest.connect.clone().into();
    let id = manifest.id.clone();
    b.allow_tcp(!allowed.is_empty());
    b.allow_udp(false);
    b.allow_ip_name_lookup(false);
    b.socket_addr_check(move |addr, usage| {
        use wasmtime_wasi::sockets::SocketAddrUse;
        // wasi-libc binds 0.0.0.0:0 before every connect; that bind is harmless, and the
        // connect that follows is checked on its own.
        let ok = match usage {
            SocketAddrUse::TcpConnect => allowed.contains(&addr),
            SocketAddrUse::TcpBind => addr.port() == 0 && addr.ip().is_unspecified(),
            _ => false,
        };
        if !ok {
            tracing::warn!(plugin = %id, %addr, ?usage, "plugin denied a socket address it was not granted");
        }
        Box::pin(async move { ok })
    });
    Ok(b.build())
}
