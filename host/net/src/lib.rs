//! QUIC transport between validators (`quinn`), knowing nothing of the protocol it carries.
//!
//! - **Who**: mutual TLS against the validator set ([`tls`]): a connection from or to anyone
//!   whose key is not a validator's network key from genesis fails the handshake.
//! - **What**: each direction of a pair of validators is one connection opened by the sender,
//!   carrying one unidirectional stream of frames: a 4-byte big-endian length, then the
//!   message. A frame over the size limit, or one the protocol's decoder refuses, closes the
//!   connection (logged); the node keeps running and the peer may reconnect.
//! - **When**: a sender per peer, with a queue bounded in messages and in bytes
//!   ([`MAX_QUEUED_BYTES`]; a full queue drops the message, which the protocol tolerates, and
//!   says so in the log), reconnecting with backoff.
//! - **How much**: what a peer may send is rate-limited per connection
//!   ([`INBOUND_BYTES_PER_SEC`], [`INBOUND_MESSAGES_PER_SEC`]): beyond it the reader pauses,
//!   and QUIC's flow control makes the sender wait, so a flooding peer slows only itself.
//! - **quinn's defaults, minded**: keep-alives well inside the idle timeout, so quiet links stay
//!   up; stream limits set for one stream each way; shutdown finishes streams and waits for the
//!   endpoint to go idle, since `close` would drop undelivered data.

pub mod identity;
pub mod requests;
pub mod tls;

use identity::Identity;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tls::ValidatorVerifier;
use tokio::sync::mpsc;

/// The application protocol name in the TLS handshake.
pub const ALPN: &[u8] = b"gridledger/1";
const KEEP_ALIVE: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Bytes queued for one peer, at most: a queue of large blocks cannot take the memory.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;
/// What one peer's connection may deliver per second, sustained (twice that in a burst).
pub const INBOUND_BYTES_PER_SEC: u64 = 64 << 20;
pub const INBOUND_MESSAGES_PER_SEC: u64 = 20_000;

/// A peer validator.
#[derive(Clone, Debug)]
pub struct Peer {
    pub index: u16,
    /// Its ed25519 network key, as registered in genesis.
    pub key: [u8; 32],
    pub addr: SocketAddr,
}

/// Where a validator's endpoint serves: an address to bind, or a socket already bound.
///
/// A socket bound beforehand is how a process running several validators (the devnet, the
/// benches, tests) gives each its own port: choosing free ports by binding and releasing them
/// lets the kernel hand the same port out twice, and two validators then fight over it.
#[derive(Debug)]
pub enum Listen {
    Addr(SocketAddr),
    Socket(std::net::UdpSocket),
}

impl Listen {
    /// The address served on.
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Listen::Addr(a) => Ok(*a),
            Listen::Socket(s) => s.local_addr(),
        }
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Listen::Addr(addr)
    }
}

impl From<std::net::UdpSocket> for Listen {
    fn from(socket: std::net::UdpSocket) -> Self {
        Listen::Socket(socket)
    }
}

/// `n` UDP sockets bound on loopback to ports the kernel chose, all distinct and held, for
/// validators started in this process ([`Listen::Socket`]).
pub fn loopback_sockets(n: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    (0..n)
        .map(|_| std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)))
        .collect()
}

/// `n` free loopback UDP ports, distinct from each other (held together while the kernel
/// picks them), for validators that restart on their address and so bind by it. Released
/// before they are bound again: another bind could in principle take one in between. Where no
/// restart is needed, hand over [`loopback_sockets`] instead.
pub fn free_loopback_addrs(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    loopback_sockets(n)?
        .iter()
        .map(|s| s.local_addr())
        .collect()
}

pub struct NetConfig {
    pub me: u16,
    pub listen: Listen,
    /// Our ed25519 network secret.
    pub secret: [u8; 32],
    /// The other validators.
    pub peers: Vec<Peer>,
    /// Frames above this many bytes close the connection.
    pub max_frame: usize,
    /// Messages queued per peer before new ones are dropped.
    pub queue: usize,
    /// Non-voting nodes (observers) admitted to ask this node questions: their network keys.
    /// They may open request streams ([`requests`]) and nothing else.
    pub observers: Vec<[u8; 32]>,
    /// What answers observers' requests (none: observers are refused at the handshake).
    pub serve: Option<requests::Handler>,
}

/// Turns a frame into a protocol message, or says why it is garbage.
pub type Decoder<T> = Arc<dyn Fn(&[u8]) -> Result<T, String> + Send + Sync>;

pub struct Network {
    endpoint: quinn::Endpoint,
    senders: HashMap<u16, Outbox>,
    penalties: Penalties,
    connected: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Peers disconnected for a while after an offence (see [`Network::penalize`]), and until when.
#[derive(Clone, Default)]
struct Penalties(Arc<parking_lot::Mutex<HashMap<u16, tokio::time::Instant>>>);

impl Penalties {
    fn penalized(&self, peer: u16) -> bool {
        self.0
            .lock()
            .get(&peer)
            .is_some_and(|until| *until > tokio::time::Instant::now())
    }
}

/// One peer's queue: the channel, and the bytes waiting in it.
struct Outbox {
    queue: mpsc::Sender<Arc<Vec<u8>>>,
    bytes: Arc<AtomicUsize>,
}

/// The name a validator is dialled by: its certificate must carry that validator's key.
pub(crate) fn server_name(index: u16) -> String {
    format!("validator-{index}")
}

pub(crate) fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(Some(
        IDLE_TIMEOUT
            .try_into()
            .expect("a 5 s idle timeout is in range"),
    ));
    // Bidirectional streams carry observers' requests, one at a time per connection.
    t.max_concurrent_bidi_streams(1u32.into());
    t.max_concurrent_uni_streams(4u32.into());
    Arc::new(t)
}

impl Network {
    /// Binds the endpoint and starts accepting and dialling. Decoded messages arrive on
    /// `inbound` tagged with the sender's validator index, as its certificate proved it.
    pub fn start<T: Send + 'static>(
        cfg: NetConfig,
        decode: Decoder<T>,
        inbound: mpsc::Sender<(u16, T)>,
    ) -> anyhow::Result<Network> {
        let id = Identity::from_secret(&cfg.secret)?;
        let observers: Vec<[u8; 32]> = match cfg.serve {
            Some(_) => cfg.observers.clone(),
            None => Vec::new(),
        };
        let keys: HashMap<[u8; 32], u16> = cfg
            .peers
            .iter()
            .map(|p| (p.key, p.index))
            .chain(std::iter::once((id.public, cfg.me)))
            .chain(
                observers
                    .iter()
                    .enumerate()
                    .take(requests::MAX_OBSERVERS)
                    .map(|(i, k)| (*k, requests::OBSERVER_BASE + i as u16)),
            )
            .collect();
        let verifier = Arc::new(ValidatorVerifier::new(keys, &tls::provider()));
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(
            tls::server_config(&id, verifier.clone())?,
        )?));
        server.transport_config(transport());
        let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(
            tls::client_config(&id, verifier.clone())?,
        )?));
        client.transport_config(transport());
        let mut endpoint = match cfg.listen {
            Listen::Addr(addr) => quinn::Endpoint::server(server, addr)?,
            Listen::Socket(socket) => quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                Some(server),
                socket,
                Arc::new(quinn::TokioRuntime),
            )?,
        };
        endpoint.set_default_client_config(client);

        let connected = Arc::new(AtomicUsize::new(0));
        let penalties = Penalties::default();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(accept_loop(
            endpoint.clone(),
            verifier,
            cfg.max_frame,
            decode,
            inbound,
            cfg.serve,
            penalties.clone(),
        )));
        let mut senders = HashMap::new();
        for peer in cfg.peers {
            let (tx, rx) = mpsc::channel(cfg.queue.max(1));
            let bytes = Arc::new(AtomicUsize::new(0));
            senders.insert(
                peer.index,
                Outbox {
                    queue: tx,
                    bytes: bytes.clone(),
                },
            );
            tasks.push(tokio::spawn(send_loop(
                endpoint.clone(),
                peer,
                rx,
                bytes,
                connected.clone(),
            )));
        }
        Ok(Network {
            endpoint,
            senders,
            penalties,
            connected,
            tasks,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Queues a message for one peer; false if its queue is full (in messages or in
    /// [`MAX_QUEUED_BYTES`]) and the message was dropped.
    pub fn send(&self, to: u16, bytes: Arc<Vec<u8>>) -> bool {
        let Some(out) = self.senders.get(&to) else {
            return false;
        };
        let len = bytes.len();
        let queued = out.bytes.fetch_add(len, Ordering::Relaxed);
        if queued + len > MAX_QUEUED_BYTES {
            out.bytes.fetch_sub(len, Ordering::Relaxed);
            tracing::debug!("queue to validator {to} holds {queued} bytes; message dropped");
            return false;
        }
        match out.queue.try_send(bytes) {
            Ok(()) => true,
            Err(_) => {
                out.bytes.fetch_sub(len, Ordering::Relaxed);
                tracing::debug!("queue to validator {to} is full; message dropped");
                false
            }
        }
    }

    /// Disconnects `peer` for `duration`: its connections close at their next frame, new ones
    /// are refused, and nothing it sends meanwhile is delivered (what it sent got it here:
    /// a signature that does not verify). Messages to it still go out.
    pub fn penalize(&self, peer: u16, duration: Duration) {
        tracing::warn!("validator {peer} disconnected for {duration:?}");
        self.penalties
            .0
            .lock()
            .insert(peer, tokio::time::Instant::now() + duration);
    }

    /// Bytes waiting in the queue to `to`.
    pub fn queued_bytes(&self, to: u16) -> usize {
        self.senders
            .get(&to)
            .map_or(0, |o| o.bytes.load(Ordering::Relaxed))
    }

    pub fn broadcast(&self, bytes: Arc<Vec<u8>>) {
        for &to in self.senders.keys() {
            self.send(to, bytes.clone());
        }
    }

    /// Peers we currently hold an outgoing connection to.
    pub fn connected_peers(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// Stops dialling and accepting, and waits (briefly) for queued data to be delivered.
    pub async fn shutdown(self) {
        drop(self.senders);
        for t in &self.tasks {
            t.abort();
        }
        // Wait for the tasks to be gone: each holds a handle that keeps the socket bound.
        for t in self.tasks {
            let _ = t.await;
        }
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        let addr = self.endpoint.local_addr();
        drop(self.endpoint);
        // quinn's endpoint task lets go of the socket a moment after the last handle; return
        // only once the address is free, so a validator restarted in the same process can
        // bind it again (bounded: a socket held elsewhere is not ours to wait for).
        if let Ok(addr) = addr {
            for _ in 0..200 {
                if std::net::UdpSocket::bind(addr).is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn accept_loop<T: Send + 'static>(
    endpoint: quinn::Endpoint,
    verifier: Arc<ValidatorVerifier>,
    max_frame: usize,
    decode: Decoder<T>,
    inbound: mpsc::Sender<(u16, T)>,
    serve: Option<requests::Handler>,
    penalties: Penalties,
) {
    let permits = requests::answer_permits();
    let observers = requests::Connections::default();
    while let Some(incoming) = endpoint.accept().await {
        let (verifier, decode, inbound) = (verifier.clone(), decode.clone(), inbound.clone());
        let (serve, permits, observers) = (serve.clone(), permits.clone(), observers.clone());
        let penalties = penalties.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("refused a connection: {e}");
                    return;
                }
            };
            let Some(from) = peer_index(&conn, &verifier) else {
                conn.close(1u32.into(), b"unknown peer");
                return;
            };
            if from >= requests::OBSERVER_BASE {
                // An observer asks; it never speaks consensus.
                if let Some(serve) = serve {
                    requests::serve_connection(conn, from, serve, permits, observers).await;
                }
                return;
            }
            if penalties.penalized(from) {
                conn.close(8u32.into(), b"penalized");
                return;
            }
            while let Ok(stream) = conn.accept_uni().await {
                let (conn, decode, inbound) = (conn.clone(), decode.clone(), inbound.clone());
                let penalties = penalties.clone();
                tokio::spawn(read_frames(
                    conn, from, stream, max_frame, decode, inbound, penalties,
                ));
            }
        });
    }
}

fn peer_index(conn: &quinn::Connection, verifier: &ValidatorVerifier) -> Option<u16> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    verifier.identify(certs.first()?).ok()
}

async fn read_frames<T>(
    conn: quinn::Connection,
    from: u16,
    mut stream: quinn::RecvStream,
    max_frame: usize,
    decode: Decoder<T>,
    inbound: mpsc::Sender<(u16, T)>,
    penalties: Penalties,
) {
    let mut budget = Budget::new();
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > max_frame {
            tracing::warn!(
                "validator {from} sent a {len}-byte frame (limit {max_frame}); disconnecting it"
            );
            conn.close(2u32.into(), b"frame too large");
            return;
        }
        // Over its rate, the peer waits: we stop reading, and flow control stops it.
        if let Some(wait) = budget.spend(len as u64, tokio::time::Instant::now()) {
            tracing::debug!("validator {from} is over its rate; reading it again in {wait:?}");
            tokio::time::sleep(wait).await;
        }
        let mut buf = vec![0u8; len];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        if penalties.penalized(from) {
            conn.close(8u32.into(), b"penalized");
            return;
        }
        match decode(&buf) {
            Ok(m) => {
                if inbound.send((from, m)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("validator {from} sent garbage ({e}); disconnecting it");
                conn.close(3u32.into(), b"malformed message");
                return;
            }
        }
    }
}

/// Token buckets of one connection's inbound bytes and messages: a second's worth refills each
/// second, up to two seconds' worth.
struct Budget {
    bytes: f64,
    messages: f64,
    at: tokio::time::Instant,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            bytes: 2.0 * INBOUND_BYTES_PER_SEC as f64,
            messages: 2.0 * INBOUND_MESSAGES_PER_SEC as f64,
            at: tokio::time::Instant::now(),
        }
    }

    /// Takes one message of `len` bytes; how long to wait first if that overdraws a bucket.
    fn spend(&mut self, len: u64, now: tokio::time::Instant) -> Option<Duration> {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        let (bytes_rate, messages_rate) = (
            INBOUND_BYTES_PER_SEC as f64,
            INBOUND_MESSAGES_PER_SEC as f64,
        );
        self.bytes = (self.bytes + secs * bytes_rate).min(2.0 * bytes_rate) - len as f64;
        self.messages = (self.messages + secs * messages_rate).min(2.0 * messages_rate) - 1.0;
        let wait = (-self.bytes / bytes_rate).max(-self.messages / messages_rate);
        (wait > 0.0).then(|| Duration::from_secs_f64(wait))
    }
}

async fn send_loop(
    endpoint: quinn::Endpoint,
    peer: Peer,
    mut queue: mpsc::Receiver<Arc<Vec<u8>>>,
    queued: Arc<AtomicUsize>,
    connected: Arc<AtomicUsize>,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let conn = match endpoint.connect(peer.addr, &server_name(peer.index)) {
            Ok(connecting) => connecting.await,
            Err(e) => {
                tracing::warn!("cannot dial validator {}: {e}", peer.index);
                return;
            }
        };
        let (conn, mut stream) = match conn {
            Ok(c) => match c.open_uni().await {
                Ok(s) => (c, s),
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
            Err(e) => {
                tracing::debug!("validator {} unreachable: {e}", peer.index);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_START;
        connected.fetch_add(1, Ordering::Relaxed);
        tracing::info!("connected to validator {} at {}", peer.index, peer.addr);
        let closed = loop {
            // A connection lost while there is nothing to send is noticed when it closes (the
            // idle timeout, with keep-alives flowing while it lives), not on the next write:
            // the connected count stays true during a partition.
            let next = tokio::select! {
                m = queue.recv() => m,
                _ = conn.closed() => break false,
            };
            let Some(msg) = next else {
                let _ = stream.finish();
                break true;
            };
            queued.fetch_sub(msg.len(), Ordering::Relaxed);
            let len = (msg.len() as u32).to_be_bytes();
            if stream.write_all(&len).await.is_err() || stream.write_all(&msg).await.is_err() {
                break false;
            }
        };
        connected.fetch_sub(1, Ordering::Relaxed);
        if closed {
            return;
        }
        tracing::info!("lost validator {}; reconnecting", peer.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_over_its_rate_waits_in_proportion() {
        let start = tokio::time::Instant::now();
        let mut b = Budget::new();
        b.at = start;
        // Two seconds' worth in a burst is free...
        assert_eq!(b.spend(2 * INBOUND_BYTES_PER_SEC, start), None);
        // ...one more second's worth waits a second.
        let wait = b.spend(INBOUND_BYTES_PER_SEC, start).unwrap();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        // After waiting it (the bucket refills), a small message goes at once.
        let later = start + Duration::from_secs(2);
        assert_eq!(b.spend(1, later), None);
        // Messages count on their own: a flood of empty frames waits too.
        let mut b = Budget::new();
        b.at = start;
        assert!(b.spend(0, start).is_none());
        for _ in 0..2 * INBOUND_MESSAGES_PER_SEC {
            b.spend(0, start);
        }
        assert!(b.spend(0, start).is_some());
    }
}
