//! The runner accepts the stored vectors and reports any tampered one.

use std::path::Path;

#[test]
fn stored_vectors_match_and_a_changed_one_is_reported() {
    let stored = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors");
    assert!(gridledger_conformance::check(&stored).unwrap() > 20);

    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&stored).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let path = dir.path().join("tx_encoding.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["vectors"][2]["tx_hash"] = serde_json::json!("00".repeat(32));
    std::fs::write(&path, v.to_string()).unwrap();
    let err = gridledger_conformance::check(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("tx_encoding.json #2"), "{err}");
}
