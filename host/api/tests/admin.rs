//! The admin listener refuses requests without the token with an answer the client can read,
//! even while it is uploading a component.

use gridledger_api::admin::{AdminToken, app};
use std::io::{Read, Write};

/// An admin listener (no plugins) on a runtime of its own; its token directory and runtime
/// live as long as the caller keeps them.
fn serve() -> (
    tempfile::TempDir,
    tokio::runtime::Runtime,
    std::net::SocketAddr,
) {
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
    (dir, rt, addr)
}

/// Reads an answer's head (through the blank line).
fn answer_head(s: &mut std::net::TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).expect("an answer, not a reset");
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).to_string()
}

/// Found as a flaky devnet test: a swap upload without the token was refused before its body
/// was read, the connection closed on the unread upload and was reset, and the client saw
/// `IncompleteMessage` instead of `401`. Every refused upload now gets its answer.
#[test]
fn a_refused_upload_gets_its_401_not_a_reset() {
    let (_dir, _rt, addr) = serve();
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
        let answer = answer_head(&mut s);
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
}

/// Found by review: reading a refused body asked a client that waits for `100 Continue` to
/// upload everything just to be refused. It is refused before it sends anything.
#[test]
fn a_client_waiting_to_upload_is_refused_before_it_sends_its_body() {
    let (_dir, _rt, addr) = serve();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/plugins/x/swap HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 16000000\r\nExpect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let answer = answer_head(&mut s);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}
