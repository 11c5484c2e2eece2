//! Builds every contract under `contracts/` into a WebAssembly component, and every device
//! plugin under `device-plugins/` into a WASI 0.2 component.
//!
//! Device plugins: `cargo build --target wasm32-wasip2`, whose linker already emits a
//! component. Output: `target/device-plugins/<name>.wasm`.
//!
//! Equivalent to `cargo component build --target wasm32-unknown-unknown` for each contract,
//! without needing cargo-component: a plain `cargo build` for wasm32-unknown-unknown (the
//! SDK's wit-bindgen embeds the WIT world in the module), then `wit-component` wraps the
//! module into a component. Output: `target/contracts/<name>.wasm`.
//!
//! Usage: `cargo run -p gridledger-build [-- --out DIR] [CONTRACT...]`

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().context("workspace root")?;
    let mut out_dir = root.join("target/contracts");
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out_dir = PathBuf::from(args.next().context("--out needs a directory")?),
            "-h" | "--help" => {
                println!("usage: gridledger-build [--out DIR] [CONTRACT...]");
                return Ok(());
            }
            _ => names.push(a),
        }
    }
    let build_plugins = names.is_empty();
    if names.is_empty() {
        names = crates_in(&root.join("contracts"))?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // One cargo invocation per contract: built together, cargo would unify features, and a
    // contract that uses another's types (with its `library` feature) would strip the other's
    // entry points.
    for n in &names {
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args([
                "build",
                "--profile",
                "contract",
                "--target",
                "wasm32-unknown-unknown",
                "-p",
                n,
            ])
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("cargo build of contract {n} failed");
        }
    }
    std::fs::create_dir_all(&out_dir)?;
    for n in &names {
        let module_path = root
            .join("target/wasm32-unknown-unknown/contract")
            .join(format!("{}.wasm", n.replace('-', "_")));
        let module = std::fs::read(&module_path)
            .with_context(|| format!("reading {}", module_path.display()))?;
        let component = componentize(&module).with_context(|| format!("componentizing {n}"))?;
        let dest = out_dir.join(format!("{n}.wasm"));
        std::fs::write(&dest, &component)?;
        println!("{} ({} bytes)", dest.display(), component.len());
    }
    if build_plugins {
        build_device_plugins(&root, &cargo)?;
    }
    Ok(())
}

/// Builds each crate under `device-plugins/` for wasm32-wasip2 into `target/device-plugins`.
fn build_device_plugins(root: &Path, cargo: &str) -> Result<()> {
    let names = crates_in(&root.join("device-plugins"))?;
    let mut args = vec![
        "build",
        "--profile",
        "contract",
        "--target",
        "wasm32-wasip2",
    ];
    for n in &names {
        args.extend(["-p", n.as_str()]);
    }
    let status = Command::new(cargo)
        .current_dir(root)
        .args(&args)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the device plugins failed");
    }
    let out_dir = root.join("target/device-plugins");
    std::fs::create_dir_all(&out_dir)?;
    for n in &names {
        let file = format!("{}.wasm", n.replace('-', "_"));
        let built = root.join("target/wasm32-wasip2/contract").join(&file);
        let dest = out_dir.join(&file);
        std::fs::copy(&built, &dest).with_context(|| format!("copying {}", built.display()))?;
        println!("{}", dest.display());
    }
    Ok(())
}

/// Wraps a core module (with its embedded `component-type` section) into a component.
fn componentize(module: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)?
        .validate(true)
        .encode()
}

/// Crates in `dir` (directories with a Cargo.toml), by package name.
fn crates_in(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let manifest = entry.path().join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)?;
        let name = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_string())
            .with_context(|| format!("no package name in {}", manifest.display()))?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}
