//! What an HTTP client can make a node hold: event streams are capped (one more is answered
//! `503 busy`, and a place comes back when a client goes away).

use gridledger_api::live::MAX_EVENT_STREAMS;
use gridledger_node::Node;
use gridledger_node::testing::test_genesis;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens `GET /v1/events` and returns the connection with the status code it answered.
async fn open_stream(addr: std::net::SocketAddr) -> (TcpStream, u16) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head).to_string();
    let code = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line {line:?}"));
    (s, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_and_places_come_back() {
    let node = Node::in_memory(test_genesis(Vec::new()), Path::new(".")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = gridledger_api::web::app(node, None, None);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut open = Vec::new();
    for _ in 0..MAX_EVENT_STREAMS {
        let (s, code) = open_stream(addr).await;
        assert_eq!(code, 200);
        open.push(s);
    }
    let (_, code) = open_stream(addr).await;
    assert_eq!(code, 503, "one stream past the cap");
    // Other requests are not held up by the open streams.
    let status = reqwest::get(format!("http://{addr}/v1/status"))
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    // A client goes away: its place comes back (once the server notices, which it does when
    // it next writes to the stream: the keep-alive, within 15 s).
    drop(open.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (s, code) = open_stream(addr).await;
        if code == 200 {
            open.push(s);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
