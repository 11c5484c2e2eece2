//! A full mempool answers a submission with `503` and code `busy` over HTTP, and the
//! transaction is neither queued nor silently dropped as if accepted.

use gridledger_node::Node;
use gridledger_node::genesis::GenesisAccount;
use gridledger_node::testing::{TEST_CHAIN_ID, TX_GAS, test_genesis};
use gridledger_types::{Address, Keypair, Payload, SignedTx, TxBody};
use std::path::Path;

fn transfer(key: &Keypair, nonce: u64) -> SignedTx {
    TxBody {
        chain_id: TEST_CHAIN_ID.into(),
        sender: key.address(),
        nonce,
        gas_limit: TX_GAS / 100,
        payload: Payload::Transfer {
            to: Address([3; 32]),
            amount: 1,
        },
    }
    .sign(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mempool_answers_busy_with_503() {
    // A full pool makes room by evicting from a sender with at least two more waiting than
    // the newcomer: with every sender at one, nobody gives way, and the newcomer is refused.
    const CAPACITY: usize = 64;
    let senders: Vec<Keypair> = (0..CAPACITY + 1)
        .map(|i| Keypair::from_seed_phrase(&format!("busy sender {i}")))
        .collect();
    let genesis = test_genesis(
        (0..senders.len())
            .map(|i| GenesisAccount {
                name: format!("busy-sender-{i}"),
                address: None,
                dev_seed: Some(format!("busy sender {i}")),
                balance: 1_000_000_000,
                roles: vec![],
            })
            .collect(),
    );
    let node = Node::in_memory(genesis, Path::new(".")).unwrap();
    node.set_mempool_capacity(CAPACITY);
    for (k, sender) in senders[..CAPACITY].iter().enumerate() {
        node.submit(&transfer(sender, 0).encode())
            .unwrap_or_else(|e| panic!("transaction {k} refused: {e}"));
    }
    let sender = senders.last().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = gridledger_api::router(node.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let one_more = transfer(sender, 0);
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{url}/v1/txs"))
        .json(&serde_json::json!({"tx": hex::encode(one_more.encode())}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "busy", "{body}");
    assert!(body["error"].as_str().unwrap().contains("retry"), "{body}");
    let status: serde_json::Value = client
        .get(format!("{url}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["mempool"], CAPACITY,
        "nothing was queued, nothing evicted"
    );
    let tx = client
        .get(format!("{url}/v1/txs/{}", one_more.hash().to_hex()))
        .send()
        .await
        .unwrap();
    assert_eq!(tx.status(), 404, "the refused transaction is unknown");
}

/// Store reads run as blocking jobs under the API's limit, and `/v1/status`, statements and
/// submissions do not: with every place taken, they answer at once while an account read
/// waits for a place, and gets its answer when one frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_wait_for_a_blocking_place_and_status_does_not() {
    use gridledger_api::blocking::{JOBS, LIMIT};
    use std::time::Duration;
    let node = Node::in_memory(test_genesis(vec![]), Path::new(".")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = gridledger_api::router(node.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Every place held by a job that waits to be let go.
    let (started, starts) = std::sync::mpsc::channel();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
    let held: Vec<_> = (0..LIMIT)
        .map(|_| {
            let (started, wait) = (started.clone(), wait.clone());
            tokio::spawn(JOBS.run(move || {
                let _ = started.send(());
                let _ = wait.lock().map(|w| w.recv());
                Ok(())
            }))
        })
        .collect();
    for _ in 0..LIMIT {
        starts.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    assert_eq!(JOBS.free(), 0);

    let client = reqwest::Client::new();
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        client.get(format!("{url}/v1/status")).send(),
    )
    .await
    .expect("status answers while every blocking place is taken")
    .unwrap();
    assert_eq!(status.status(), 200);
    // Nor do statements (contract queries, limited by the query pool) and submissions (short):
    // neither waits behind reads. (No market here: the statement is a prompt 404.)
    let account = Address([3; 32]).to_hex();
    let statement = tokio::time::timeout(
        Duration::from_secs(20),
        client
            .get(format!("{url}/v1/statements/{account}?day=2026-01-01"))
            .send(),
    )
    .await
    .expect("a statement needs no blocking place")
    .unwrap();
    assert_eq!(statement.status(), 404);
    let submission = tokio::time::timeout(
        Duration::from_secs(20),
        client
            .post(format!("{url}/v1/txs"))
            .header("content-type", "application/octet-stream")
            .body(vec![1u8, 2, 3])
            .send(),
    )
    .await
    .expect("a submission needs no blocking place")
    .unwrap();
    assert_eq!(submission.status(), 400);

    let read = tokio::spawn(client.get(format!("{url}/v1/accounts/{account}")).send());
    // The read has no place: no answer yet (an absence, checked for a while; a read that
    // bypassed the limit would have answered in microseconds).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!read.is_finished(), "a read ran without a blocking place");
    for _ in 0..LIMIT {
        go.send(()).unwrap();
    }
    let answer = read.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["balance"], 0, "{body}");
    for h in held {
        assert!(h.await.unwrap().is_ok());
    }
}
