//! A contract built the way authors build it, `cargo component build --target
//! wasm32-unknown-unknown`, deploys and runs. (`scripts/test` installs cargo-component.)

use gridledger_node::testing::TestChain;
use std::path::Path;
use std::process::Command;

#[test]
fn contract_built_by_cargo_component_deploys_and_runs() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = repo.join("target/cargo-component");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&repo)
        .args([
            "component",
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            "counter",
            "--target-dir",
        ])
        .arg(&target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo component build failed (is cargo-component installed? scripts/test installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = std::fs::read(target.join("wasm32-unknown-unknown/release/counter.wasm")).unwrap();

    let mut chain = TestChain::new();
    let author = chain.account("author", 1_000_000_000);
    let code = chain
        .store_code(&author, &wasm)
        .expect("cargo-component output is a valid contract");
    let c = chain.instantiate(&author, code, r#"{"start":41}"#).unwrap();
    assert!(
        chain
            .execute(&author, c, r#"{"increment":{"by":1}}"#, 0)
            .is_success()
    );
    assert_eq!(chain.query(c, r#"{"count":{}}"#).unwrap()["count"], 42);
}
