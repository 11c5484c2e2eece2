//! The admin listener refuses requests without the token with an answer the client can read,
//! even while it is uploading a component.

use gridledger_api::admin::{AdminToken, app};
use std::io::{Read, Write};

/// Found as a flaky devnet test: a swap upload without the token was refused before its body
/// was read, the connection closed on the unread upload and was reset, and the client saw
/// `IncompleteMessage` instead of `401`. Every refused upload now gets its answer.
#[test]
fn a_refused_upload_gets_its_401_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let token = AdminToken::load_or_create(&dir.path().join("admin.token")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(None, token, addr);
    rt.spawn(async move { axum::serve(listener, router).await });
    // 4 MiB: far more than the sockets buffer, so the upload is still going when the
    // refusal is decided.
    let body = vec![0u8; 4 << 20];
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /v1/plugins/x/swap HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).expect("the whole upload is taken");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).expect("an answer, not a reset");
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&buf[..n]);
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
}
