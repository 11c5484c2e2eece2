//! Validators over QUIC on loopback: delivery, mutual authentication, and garbage.

use gridledger_net::identity::Identity;
use gridledger_net::{Decoder, NetConfig, Network, Peer, tls};
use quinn::crypto::rustls::QuicClientConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn secret(i: u8) -> [u8; 32] {
    [i + 1; 32]
}

fn public(i: u8) -> [u8; 32] {
    Identity::from_secret(&secret(i)).unwrap().public
}

/// Messages are UTF-8 text starting with "msg:"; anything else is garbage.
fn decoder() -> Decoder<String> {
    Arc::new(|b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) if s.starts_with("msg:") => Ok(s.to_string()),
        _ => Err("not a message".into()),
    })
}

type Inbox = mpsc::Receiver<(u16, String)>;

/// `n` validators on loopback, each knowing the others.
fn cluster(n: u8) -> (Vec<Network>, Vec<Inbox>, Vec<SocketAddr>) {
    let addrs = gridledger_net::free_loopback_addrs(n as usize).unwrap();
    let mut nets = Vec::new();
    let mut rxs = Vec::new();
    for i in 0..n {
        let peers = (0..n)
            .filter(|j| *j != i)
            .map(|j| Peer {
                index: j as u16,
                key: public(j),
                addr: addrs[j as usize],
            })
            .collect();
        let (tx, rx) = mpsc::channel(64);
        let net = Network::start(
            NetConfig {
                me: i as u16,
                listen: addrs[i as usize].into(),
                secret: secret(i),
                peers,
                max_frame: 1024,
                queue: 64,
                observers: Vec::new(),
                serve: None,
            },
            decoder(),
            tx,
        )
        .unwrap();
        nets.push(net);
        rxs.push(rx);
    }
    (nets, rxs, addrs)
}

/// A raw QUIC client holding `id`'s certificate, trusting the validators 0..3.
fn raw_client(id: &Identity) -> quinn::Endpoint {
    let keys: HashMap<[u8; 32], u16> = (0..3u8).map(|i| (public(i), i as u16)).collect();
    let verifier = Arc::new(tls::ValidatorVerifier::new(keys, &tls::provider()));
    let cfg = tls::client_config(id, verifier).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(cfg).unwrap(),
    )));
    ep
}

async fn recv(rx: &mut mpsc::Receiver<(u16, String)>) -> (u16, String) {
    timeout(WAIT, rx.recv())
        .await
        .expect("a message in time")
        .expect("channel open")
}

#[tokio::test]
async fn validators_exchange_messages_tagged_with_who_sent_them() {
    let (nets, mut rxs, _) = cluster(3);
    nets[0].broadcast(Arc::new(b"msg:hello".to_vec()));
    assert_eq!(recv(&mut rxs[1]).await, (0, "msg:hello".to_string()));
    assert_eq!(recv(&mut rxs[2]).await, (0, "msg:hello".to_string()));
    nets[2].send(1, Arc::new(b"msg:to one".to_vec()));
    assert_eq!(recv(&mut rxs[1]).await, (2, "msg:to one".to_string()));
    for n in nets {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn a_stranger_cannot_connect() {
    let (nets, mut rxs, addrs) = cluster(3);
    let stranger = Identity::from_secret(&[99; 32]).unwrap();
    let ep = raw_client(&stranger);
    let outcome = timeout(WAIT, async {
        let conn = ep.connect(addrs[0], "gridledger-validator")?.await?;
        // The server refuses our certificate after the client side finished its handshake
        // flight: the first stream write or the connection's close tells.
        let mut s = conn.open_uni().await?;
        s.write_all(b"\0\0\0\x09msg:sneak").await?;
        s.finish()?;
        Err::<(), anyhow::Error>(anyhow::anyhow!(conn.closed().await))
    })
    .await
    .expect("the attempt ends");
    let err = outcome.unwrap_err().to_string();
    assert!(
        err.contains("certificate") || err.contains("TLS") || err.contains("closed"),
        "{err}"
    );
    // A validator's message sent afterwards is the first thing node 0 sees.
    nets[1].send(0, Arc::new(b"msg:after".to_vec()));
    assert_eq!(recv(&mut rxs[0]).await, (1, "msg:after".to_string()));
    for n in nets {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn garbage_and_oversized_frames_disconnect_the_sender_and_nothing_else() {
    let (nets, mut rxs, addrs) = cluster(3);
    // Validator 2's key, but speaking nonsense on a connection of its own.
    let id = Identity::from_secret(&secret(2)).unwrap();
    let ep = raw_client(&id);
    for frame in [
        b"\0\0\0\x07garbage".to_vec(),  // the decoder refuses it
        b"\x7f\xff\xff\xffxx".to_vec(), // 2 GiB announced, limit 1 KiB
    ] {
        let conn = ep
            .connect(addrs[0], "gridledger-validator")
            .unwrap()
            .await
            .unwrap();
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&frame).await.unwrap();
        let _ = s.finish();
        let reason = timeout(WAIT, conn.closed())
            .await
            .expect("closed by the node");
        let text = reason.to_string();
        assert!(
            text.contains("malformed message") || text.contains("frame too large"),
            "{text}"
        );
    }
    // Node 0 still takes messages, from the real validator 2 as well.
    nets[2].send(0, Arc::new(b"msg:still here".to_vec()));
    assert_eq!(recv(&mut rxs[0]).await, (2, "msg:still here".to_string()));
    assert!(rxs[0].try_recv().is_err(), "no garbage was delivered");
    for n in nets {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn a_peer_that_returns_is_reconnected() {
    let (mut nets, mut rxs, addrs) = cluster(2);
    nets[0].send(1, Arc::new(b"msg:one".to_vec()));
    assert_eq!(recv(&mut rxs[1]).await.1, "msg:one");
    // Validator 1 goes away and comes back on the same address.
    nets.pop().unwrap().shutdown().await;
    // In a real restart the process is gone and the OS frees the port at once; here quinn's
    // endpoint task lets go of the socket shortly after shutdown, so binding is retried.
    let (tx, mut rx) = mpsc::channel(64);
    let back = timeout(WAIT, async {
        loop {
            let started = Network::start(
                NetConfig {
                    me: 1,
                    listen: addrs[1].into(),
                    secret: secret(1),
                    peers: vec![Peer {
                        index: 0,
                        key: public(0),
                        addr: addrs[0],
                    }],
                    max_frame: 1024,
                    queue: 64,
                    observers: Vec::new(),
                    serve: None,
                },
                decoder(),
                tx.clone(),
            );
            match started {
                Ok(n) => return n,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("the port is free again");
    // Messages sent while the link is down may be lost; keep sending until one arrives.
    let got = timeout(WAIT, async {
        loop {
            nets[0].send(1, Arc::new(b"msg:again".to_vec()));
            tokio::select! {
                m = rx.recv() => return m,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    })
    .await
    .expect("reconnected in time");
    assert_eq!(got, Some((0, "msg:again".to_string())));
    back.shutdown().await;
    nets.pop().unwrap().shutdown().await;
}

/// A queue to a peer that is not there holds at most MAX_QUEUED_BYTES: more is dropped, not
/// kept (a flood of large blocks for a dead peer cannot take the memory).
#[tokio::test]
async fn a_queue_to_an_absent_peer_is_capped_in_bytes() {
    let addrs = gridledger_net::free_loopback_addrs(2).unwrap();
    let (tx, _rx) = mpsc::channel(64);
    let net = Network::start(
        NetConfig {
            me: 0,
            listen: addrs[0].into(),
            secret: secret(0),
            // Nobody listens at the peer's address.
            peers: vec![Peer {
                index: 1,
                key: public(1),
                addr: addrs[1],
            }],
            max_frame: 1024,
            queue: 4096,
            observers: Vec::new(),
            serve: None,
        },
        decoder(),
        tx,
    )
    .unwrap();
    let block = Arc::new(vec![0u8; 8 << 20]);
    let fits = gridledger_net::MAX_QUEUED_BYTES / block.len();
    for i in 0..fits {
        assert!(net.send(1, block.clone()), "message {i} fits");
    }
    assert!(!net.send(1, block.clone()), "one more is dropped");
    assert_eq!(net.queued_bytes(1), fits * block.len());
    // Small messages still fit under the cap only if there is room: there is none.
    assert!(!net.send(1, Arc::new(vec![0u8; (8 << 20) + 1])));
    net.shutdown().await;
}

async fn ask(r: &gridledger_net::requests::Requester, q: &[u8]) -> anyhow::Result<Vec<u8>> {
    r.ask(0, q, 1024, WAIT).await
}

/// Observers: an admitted key asks and is answered; it cannot speak consensus; it holds at
/// most two connections; a handler that finds it misbehaving closes its connection; a key
/// that is not admitted is refused; and a validator can be dialled only as itself.
#[tokio::test]
async fn observers_ask_within_their_bounds_and_speak_no_consensus() {
    use gridledger_net::requests::{MAX_CONNECTIONS_PER_OBSERVER, Requester};
    let addrs = gridledger_net::free_loopback_addrs(2).unwrap();
    let observer = [42u8; 32];
    let observer_public = Identity::from_secret(&observer).unwrap().public;
    let (tx, mut rx) = mpsc::channel(64);
    let validator = |i: u8, peer: u8, tx| {
        Network::start(
            NetConfig {
                me: i as u16,
                listen: addrs[i as usize].into(),
                secret: secret(i),
                peers: vec![Peer {
                    index: peer as u16,
                    key: public(peer),
                    addr: addrs[peer as usize],
                }],
                max_frame: 1024,
                queue: 64,
                observers: vec![observer_public],
                // Echoes the question, or calls it misbehaviour.
                serve: Some(Arc::new(|_, q: Vec<u8>| {
                    if q == b"bad" {
                        Err("asked badly".to_string())
                    } else {
                        Ok(q)
                    }
                })),
            },
            decoder(),
            tx,
        )
        .unwrap()
    };
    let v0 = validator(0, 1, tx);
    let (tx1, _rx1) = mpsc::channel(64);
    let v1 = validator(1, 0, tx1);
    let peers = vec![Peer {
        index: 0,
        key: public(0),
        addr: addrs[0],
    }];
    let asker = Requester::new("127.0.0.1:0".parse().unwrap(), &observer, peers.clone()).unwrap();
    assert_eq!(ask(&asker, b"hello").await.unwrap(), b"hello");
    // Misbehaving ends the connection; asking again opens a new one.
    assert!(ask(&asker, b"bad").await.is_err());
    assert_eq!(ask(&asker, b"again").await.unwrap(), b"again");
    // At most two connections per observer key: a third is refused while two are open.
    let more: Vec<Requester> = (0..MAX_CONNECTIONS_PER_OBSERVER)
        .map(|_| Requester::new("127.0.0.1:0".parse().unwrap(), &observer, peers.clone()).unwrap())
        .collect();
    assert_eq!(ask(&more[0], b"two").await.unwrap(), b"two");
    assert!(
        ask(&more[1], b"three").await.is_err(),
        "a third connection is refused"
    );
    // A key genesis does not admit gets nowhere.
    let stranger = Requester::new("127.0.0.1:0".parse().unwrap(), &[7; 32], peers).unwrap();
    assert!(ask(&stranger, b"hi").await.is_err());
    // The observer's key on a stream of consensus frames: nothing is delivered; the next
    // thing validator 0 hears is validator 1.
    let ep = raw_client(&Identity::from_secret(&observer).unwrap());
    let conn = ep.connect(addrs[0], "validator-0").unwrap().await.unwrap();
    if let Ok(mut s) = conn.open_uni().await {
        let _ = s.write_all(b"\0\0\0\x09msg:sneak").await;
        let _ = s.finish();
    }
    // Dialling validator 0 by validator 1's name fails: its certificate is not validator 1's.
    assert!(ep.connect(addrs[0], "validator-1").unwrap().await.is_err());
    v1.send(0, Arc::new(b"msg:from one".to_vec()));
    assert_eq!(recv(&mut rx).await, (1, "msg:from one".to_string()));
    drop(more);
    v0.shutdown().await;
    v1.shutdown().await;
}

/// A penalized peer is disconnected for the penalty: what it sends meanwhile is not delivered,
/// and afterwards it is heard again.
#[tokio::test]
async fn a_penalized_peer_is_not_heard_until_its_penalty_ends() {
    let (nets, mut rxs, _) = cluster(2);
    nets[1].send(0, Arc::new(b"msg:before".to_vec()));
    assert_eq!(recv(&mut rxs[0]).await, (1, "msg:before".to_string()));
    nets[0].penalize(1, Duration::from_secs(3));
    nets[1].send(0, Arc::new(b"msg:during".to_vec()));
    // Keep trying until something gets through: the first thing heard is after the penalty.
    let started = tokio::time::Instant::now();
    let got = timeout(WAIT, async {
        loop {
            nets[1].send(0, Arc::new(b"msg:after".to_vec()));
            tokio::select! {
                m = rxs[0].recv() => return (m, started.elapsed()),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    })
    .await
    .expect("heard again after the penalty");
    assert_eq!(got.0, Some((1, "msg:after".to_string())));
    assert!(
        got.1 >= Duration::from_millis(2_900),
        "heard after {:?}",
        got.1
    );
    for n in nets {
        n.shutdown().await;
    }
}
