//! Checking uploaded components, and compiling each code hash once.

use gridledger_types::Hash32;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use crate::host::HostState;

/// The only interfaces a contract may import.
pub const ALLOWED_IMPORTS: [&str; 2] = [
    "gridledger:contract/host@0.1.0",
    "gridledger:contract/types@0.1.0",
];

/// Why code was refused at store time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("code is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not a WebAssembly component: {0}")]
    NotComponent(String),
    #[error(
        "a core wasm module, not a component: wrap it with wit-component (or build with cargo component)"
    )]
    CoreModule,
    #[error("the component nests other components; contracts must be a single component")]
    Nested,
    #[error(
        "the component imports `{0}`; contracts may import only gridledger:contract/host (no WASI: contracts must be deterministic)"
    )]
    ForbiddenImport(String),
    #[error("the component does not compile: {0}")]
    Compile(String),
    #[error("the component does not implement the contract world: {0}")]
    WrongWorld(String),
}

/// Structural checks that need no compilation: a component, not nested.
pub fn check_binary(wasm: &[u8], max_bytes: usize) -> Result<(), CodeError> {
    if wasm.len() > max_bytes {
        return Err(CodeError::TooLarge {
            size: wasm.len(),
            limit: max_bytes,
        });
    }
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| CodeError::NotComponent(e.message().to_string()))?;
        match payload {
            wasmparser::Payload::Version { encoding, .. } => {
                if depth == 0 && encoding == wasmparser::Encoding::Module {
                    return Err(CodeError::CoreModule);
                }
                depth += 1;
            }
            wasmparser::Payload::ComponentSection { .. } => return Err(CodeError::Nested),
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Checks the component's imports against the contract world.
pub fn check_imports(engine: &Engine, component: &Component) -> Result<(), CodeError> {
    for (name, _) in component.component_type().imports(engine) {
        if !ALLOWED_IMPORTS.contains(&name) {
            return Err(CodeError::ForbiddenImport(name.to_string()));
        }
    }
    Ok(())
}

/// Compiled, pre-linked contracts by code hash; in memory, and on disk across restarts.
pub struct CodeCache {
    dir: Option<PathBuf>,
    /// Names the engine build and settings: artifacts of another engine are never loaded.
    engine_tag: String,
    loaded: Mutex<HashMap<Hash32, Arc<InstancePre<HostState>>>>,
    capacity: usize,
}

impl CodeCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>, capacity: usize) -> CodeCache {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        CodeCache {
            dir,
            engine_tag: format!("{:016x}", h.finish()),
            loaded: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub fn get(&self, hash: &Hash32) -> Option<Arc<InstancePre<HostState>>> {
        self.loaded.lock().get(hash).cloned()
    }

    fn artifact_path(&self, hash: &Hash32) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}-{}.cwasm", hash.to_hex(), self.engine_tag)))
    }

    /// Loads a compiled artifact from disk, if one for this engine exists.
    pub fn load_artifact(&self, engine: &Engine, hash: &Hash32) -> Option<Component> {
        let path = self.artifact_path(hash)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `save_artifact` from `Component::serialize` with an
        // engine of the same compatibility hash (part of the file name), into the node's own
        // data directory. wasmtime also checks the engine settings in the artifact header.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(
                    "ignoring unusable compiled artifact {}: {e:#}",
                    path.display()
                );
                None
            }
        }
    }

    pub fn save_artifact(&self, hash: &Hash32, component: &Component) {
        let Some(path) = self.artifact_path(hash) else {
            return;
        };
        let result = component.serialize().and_then(|bytes| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // Write then rename, so a crash never leaves a truncated artifact under the name.
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!("could not cache compiled contract {}: {e:#}", hash.to_hex());
        }
    }

    pub fn insert(
        &self,
        linker: &Linker<HostState>,
        hash: Hash32,
        component: &Component,
    ) -> wasmtime::Result<Arc<InstancePre<HostState>>> {
        let pre = Arc::new(linker.instantiate_pre(component)?);
        let mut loaded = self.loaded.lock();
        if loaded.len() >= self.capacity {
            // Contracts in use are few; dropping an arbitrary one only costs a disk load.
            if let Some(k) = loaded.keys().next().copied() {
                loaded.remove(&k);
            }
        }
        loaded.insert(hash, pre.clone());
        Ok(pre)
    }
}
