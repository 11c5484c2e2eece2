//! Questions from non-voting nodes (observers), answered by validators.
//!
//! An observer holds a network key that genesis admits, not a vote key. It dials a validator
//! with mutual TLS like a validator would, then opens one bidirectional stream per question:
//! a 4-byte big-endian length and the request, answered by a length and the response. It never
//! speaks consensus: a validator takes no unidirectional stream from it.
//!
//! What a validator spends on observers is bounded: at most
//! [`MAX_CONNECTIONS_PER_OBSERVER`] connections per observer key; a request is at most
//! [`MAX_REQUEST_BYTES`] and must arrive within [`READ_DEADLINE`]; each connection asks one
//! question at a time at most every [`MIN_REQUEST_GAP`]; at most [`MAX_CONCURRENT_ANSWERS`]
//! answers are being computed or written at once across all observers (the handler runs on
//! the blocking pool, off the consensus loop), and an answer not taken within
//! [`WRITE_DEADLINE`] ends the connection. A handler that finds the observer misbehaving
//! (say, forwarding transactions with bad signatures, which an honest observer has checked)
//! ends the connection too.

use crate::identity::Identity;
use crate::tls::{self, ValidatorVerifier};
use crate::{Peer, server_name, transport};
use quinn::crypto::rustls::QuicClientConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Index given to the observer keys in the TLS verifier: `OBSERVER_BASE + i` for the i-th.
pub const OBSERVER_BASE: u16 = 0x8000;
/// Observer keys a validator admits, at most (their indices stay clear of validators').
pub const MAX_OBSERVERS: usize = 1 << 14;
/// Largest request a validator reads (one forwarded transaction of the largest size fits).
pub const MAX_REQUEST_BYTES: usize = (4 << 20) + (64 << 10);
/// Least time between two questions on one connection.
pub const MIN_REQUEST_GAP: Duration = Duration::from_millis(5);
/// Answers computed or being written at once, across every observer.
pub const MAX_CONCURRENT_ANSWERS: usize = 4;
/// Connections one observer key may hold to a validator at once.
pub const MAX_CONNECTIONS_PER_OBSERVER: usize = 2;
/// A request must arrive whole within this, once its stream is open.
pub const READ_DEADLINE: Duration = Duration::from_secs(10);
/// An answer must be taken within this.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(30);

/// Answers a request from the observer with the given index (blocking work is fine: it runs
/// on the blocking pool). `Err` says the observer misbehaved: its connection is closed.
pub type Handler = Arc<dyn Fn(u16, Vec<u8>) -> Result<Vec<u8>, String> + Send + Sync>;

/// The semaphore every observer connection of one endpoint shares.
pub(crate) fn answer_permits() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_CONCURRENT_ANSWERS))
}

/// Open connections per observer.
#[derive(Clone, Default)]
pub(crate) struct Connections(Arc<parking_lot::Mutex<HashMap<u16, usize>>>);

/// One connection's place, given back when it ends.
struct Place(Connections, u16);

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = (self.0).0.lock();
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

impl Connections {
    fn take(&self, from: u16) -> Option<Place> {
        let mut open = self.0.lock();
        let n = open.entry(from).or_default();
        if *n >= MAX_CONNECTIONS_PER_OBSERVER {
            return None;
        }
        *n += 1;
        Some(Place(self.clone(), from))
    }
}

/// Answers an observer's questions, one at a time, until it goes away or misbehaves.
pub(crate) async fn serve_connection(
    conn: quinn::Connection,
    from: u16,
    serve: Handler,
    permits: Arc<Semaphore>,
    connections: Connections,
) {
    let Some(_place) = connections.take(from) else {
        tracing::warn!("observer {from} opened too many connections; refusing one");
        conn.close(5u32.into(), b"too many connections");
        return;
    };
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let started = tokio::time::Instant::now();
        let request = match tokio::time::timeout(
            READ_DEADLINE,
            read_frame(&mut recv, MAX_REQUEST_BYTES),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!("observer {from}: {e}; disconnecting it");
                conn.close(4u32.into(), b"bad request");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    "observer {from}: a request not sent within {READ_DEADLINE:?}; disconnecting it"
                );
                conn.close(4u32.into(), b"request too slow");
                return;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let serve = serve.clone();
        let answer = tokio::task::spawn_blocking(move || serve(from, request)).await;
        let answer = match answer {
            Ok(Ok(a)) => a,
            Ok(Err(why)) => {
                tracing::warn!("observer {from} misbehaved ({why}); disconnecting it");
                conn.close(6u32.into(), b"misbehaved");
                return;
            }
            Err(_) => {
                tracing::error!("answering observer {from} panicked");
                return;
            }
        };
        let len = (answer.len() as u32).to_be_bytes();
        let written = tokio::time::timeout(WRITE_DEADLINE, async {
            send.write_all(&len).await?;
            send.write_all(&answer).await?;
            send.finish()?;
            anyhow::Ok(())
        })
        .await;
        drop(permit);
        if !matches!(written, Ok(Ok(()))) {
            tracing::debug!("observer {from} did not take its answer; disconnecting it");
            conn.close(7u32.into(), b"answer not taken");
            return;
        }
        tokio::time::sleep_until(started + MIN_REQUEST_GAP).await;
    }
}

async fn read_frame(stream: &mut quinn::RecvStream, limit: usize) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| format!("reading a length: {e}"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(format!("a {len}-byte frame (limit {limit})"));
    }
    let mut buf = vec![0u8; len];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("reading a frame: {e}"))?;
    Ok(buf)
}

/// An observer's side: asks validators questions over QUIC, authenticated by its network key
/// and checking theirs against genesis.
pub struct Requester {
    endpoint: quinn::Endpoint,
    peers: HashMap<u16, Peer>,
    connections: parking_lot::Mutex<HashMap<u16, quinn::Connection>>,
}

impl Requester {
    /// An endpoint bound to `bind` (port 0: any) that dials only `validators`.
    pub fn new(
        bind: SocketAddr,
        secret: &[u8; 32],
        validators: Vec<Peer>,
    ) -> anyhow::Result<Requester> {
        let id = Identity::from_secret(secret)?;
        let keys: HashMap<[u8; 32], u16> = validators
            .iter()
            .map(|p| (p.key, p.index))
            .chain(std::iter::once((id.public, OBSERVER_BASE)))
            .collect();
        let verifier = Arc::new(ValidatorVerifier::new(keys, &tls::provider()));
        let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(
            tls::client_config(&id, verifier)?,
        )?));
        client.transport_config(transport());
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(client);
        Ok(Requester {
            endpoint,
            peers: validators.into_iter().map(|p| (p.index, p)).collect(),
            connections: Default::default(),
        })
    }

    /// The validators this requester may ask, by index.
    pub fn peers(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.peers.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Asks validator `to` one question; its answer, at most `limit` bytes, within `timeout`.
    pub async fn ask(
        &self,
        to: u16,
        request: &[u8],
        limit: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<u8>> {
        let asked = tokio::time::timeout(timeout, self.ask_now(to, request, limit)).await;
        match asked {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.connections.lock().remove(&to);
                Err(e)
            }
            Err(_) => {
                self.connections.lock().remove(&to);
                anyhow::bail!("validator {to} did not answer within {timeout:?}")
            }
        }
    }

    async fn ask_now(&self, to: u16, request: &[u8], limit: usize) -> anyhow::Result<Vec<u8>> {
        let conn = self.connection(to).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&(request.len() as u32).to_be_bytes())
            .await?;
        send.write_all(request).await?;
        let _ = send.finish();
        read_frame(&mut recv, limit)
            .await
            .map_err(|e| anyhow::anyhow!("validator {to}: {e}"))
    }

    async fn connection(&self, to: u16) -> anyhow::Result<quinn::Connection> {
        if let Some(c) = self.connections.lock().get(&to)
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let peer = self
            .peers
            .get(&to)
            .ok_or_else(|| anyhow::anyhow!("validator {to} is not known"))?;
        let conn = self.endpoint.connect(peer.addr, &server_name(to))?.await?;
        self.connections.lock().insert(to, conn.clone());
        Ok(conn)
    }

    /// Validators this requester holds a live connection to.
    pub fn connected(&self) -> usize {
        self.connections
            .lock()
            .values()
            .filter(|c| c.close_reason().is_none())
            .count()
    }

    /// Closes every connection and waits (briefly) for the endpoint to go idle.
    pub async fn shutdown(&self) {
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}
