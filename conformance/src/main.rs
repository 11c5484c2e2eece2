//! `gridledger-conformance check DIR` verifies the vectors; `generate DIR` rewrites them
//! (after an intended format change; review the diff).

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, dir) = match args.as_slice() {
        [cmd, dir] => (cmd.as_str(), PathBuf::from(dir)),
        _ => {
            eprintln!("usage: gridledger-conformance check|generate DIR");
            std::process::exit(2);
        }
    };
    let result = match cmd {
        "check" => {
            gridledger_conformance::check(&dir).map(|n| println!("conformance: {n} vectors match"))
        }
        "generate" => gridledger_conformance::generate(&dir)
            .map(|_| println!("conformance: vectors written to {}", dir.display())),
        _ => Err(anyhow::anyhow!("unknown command {cmd}")),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
