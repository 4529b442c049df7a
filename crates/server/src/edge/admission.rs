//! Who may open a connection, and how much work one client may have in
//! progress.
//!
//! A client is its address, with an IPv6 /64 counted as one (a single host
//! is usually given a whole /64, so counting single IPv6 addresses would
//! let one host multiply its share). Counts live in one mutex-guarded map:
//! taking or returning a slot is a hash lookup, far below the cost of the
//! accept or the request it guards, and an entry is removed when its count
//! returns to zero so the map holds only clients that are connected now.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A client as the limits see it: its address, or (with authentication
/// on) the user its token names, which the per-token limits count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6Net(u64),
    /// A token's user (`auth::Principal::user`).
    User(u64),
    /// A trusted proxy (`--trusted-proxies`): its connections carry many
    /// clients, each counted by the address its requests name, so only the
    /// global cap counts the proxy's connections.
    Proxy,
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ServerFull { max: u32 },
    ClientFull { max: u32 },
    UserFull { max: u32 },
}

impl Refusal {
    pub fn message(self) -> String {
        match self {
            Refusal::ServerFull { max } => {
                format!("Server at its connection limit ({max}); retry later")
            }
            Refusal::ClientFull { max } => format!(
                "Too many connections from your address (limit {max}); close some and retry"
            ),
            Refusal::UserFull { max } => format!(
                "Too many WebSockets open with your token (limit {max}); close some and retry"
            ),
        }
    }
}

#[derive(Default)]
struct Counts {
    total: u32,
    per_client: HashMap<ClientKey, u32>,
}

/// The global and per-client connection caps.
pub struct ConnectionCaps {
    max_total: u32,
    max_per_client: u32,
    counts: Mutex<Counts>,
}

impl ConnectionCaps {
    pub fn new(max_total: u32, max_per_client: u32) -> Arc<ConnectionCaps> {
        Arc::new(ConnectionCaps {
            max_total,
            max_per_client,
            counts: Mutex::default(),
        })
    }

    pub fn max_total(&self) -> u32 {
        self.max_total
    }

    /// A slot for a new connection, held until the returned guard drops.
    pub fn admit(self: &Arc<Self>, client: ClientKey) -> Result<ConnectionSlot, Refusal> {
        let mut c = lock(&self.counts);
        if c.total >= self.max_total {
            return Err(Refusal::ServerFull {
                max: self.max_total,
            });
        }
        if client == ClientKey::Proxy {
            c.total += 1;
            return Ok(ConnectionSlot {
                caps: Arc::clone(self),
                client,
            });
        }
        let mine = c.per_client.entry(client).or_insert(0);
        if *mine >= self.max_per_client {
            let max = self.max_per_client;
            return Err(match client {
                ClientKey::User(_) => Refusal::UserFull { max },
                _ => Refusal::ClientFull { max },
            });
        }
        *mine += 1;
        c.total += 1;
        Ok(ConnectionSlot {
            caps: Arc::clone(self),
            client,
        })
    }

    pub fn open(&self) -> u32 {
        lock(&self.counts).total
    }

    /// Clients with at least one connection open (for tests and logs).
    pub fn clients(&self) -> usize {
        lock(&self.counts).per_client.len()
    }

    fn release(&self, client: ClientKey) {
        let mut c = lock(&self.counts);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                c.per_client.remove(&client);
            }
        }
    }
}

/// One admitted connection; dropping it frees the slot.
pub struct ConnectionSlot {
    caps: Arc<ConnectionCaps>,
    client: ClientKey,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.caps.release(self.client);
    }
}

/// Bounds the data requests (the ones whose cost grows with what they ask
/// for) in progress: at most `per_client` for one client, and at most
/// `total` overall, so cheap requests and the live stream always find a
/// free worker. Requests over a bound wait in line (fairly, in arrival
/// order) rather than fail: their client only gets slower.
pub struct Inflight {
    per_client: usize,
    total: Arc<Semaphore>,
    clients: Mutex<HashMap<ClientKey, Arc<Semaphore>>>,
}

/// Permission to run one data request; dropping it lets the next one in.
pub struct InflightPermit {
    _total: OwnedSemaphorePermit,
    _client: OwnedSemaphorePermit,
    owner: Arc<Inflight>,
    client: ClientKey,
}

impl Inflight {
    pub fn new(per_client: usize, total: usize) -> Arc<Inflight> {
        Arc::new(Inflight {
            per_client,
            total: Arc::new(Semaphore::new(total)),
            clients: Mutex::default(),
        })
    }

    pub async fn acquire(self: &Arc<Self>, client: ClientKey) -> InflightPermit {
        let mine = Arc::clone(
            lock(&self.clients)
                .entry(client)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_client))),
        );
        // The client's own turn first: a client over its share must not
        // hold a place in the global line while it waits for itself.
        let client_permit = mine.acquire_owned().await.expect("never closed");
        let total = Arc::clone(&self.total)
            .acquire_owned()
            .await
            .expect("never closed");
        InflightPermit {
            _total: total,
            _client: client_permit,
            owner: Arc::clone(self),
            client,
        }
    }

    /// Forgets clients with nothing running or waiting (one whose waiting
    /// request was cancelled is left in the map by `acquire`).
    pub fn sweep(&self) {
        lock(&self.clients).retain(|_, sem| Arc::strong_count(sem) > 1);
    }

    /// Clients with a data request running or waiting.
    #[cfg(test)]
    fn clients(&self) -> usize {
        lock(&self.clients).len()
    }
}

impl Drop for InflightPermit {
    fn drop(&mut self) {
        let mut clients = lock(&self.owner.clients);
        // Forget an idle client: the map and our own permit (returned just
        // after this runs) are then the only holders of its semaphore; every
        // other request of this client, running or waiting, holds a clone.
        if let Some(sem) = clients.get(&self.client) {
            if Arc::strong_count(sem) == 2 {
                clients.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::from(a), ClientKey::from(b));
        assert_ne!(ClientKey::from(a), ClientKey::from(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(ClientKey::from(mapped), ClientKey::from(v4));
    }

    #[test]
    fn caps_refuse_over_either_limit_and_free_on_drop() {
        let caps = ConnectionCaps::new(3, 2);
        let a = ClientKey::V4(1);
        let b = ClientKey::V4(2);
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).err(), Some(Refusal::ClientFull { max: 2 }));
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).err(), Some(Refusal::ServerFull { max: 3 }));
        assert_eq!(
            caps.admit(ClientKey::Proxy).err(),
            Some(Refusal::ServerFull { max: 3 })
        );
        drop(a1);
        assert_eq!(caps.open(), 2);
        assert!(caps.admit(b).is_ok());
        drop(_a2);
        assert_eq!(caps.clients(), 1);
        // A proxy is held to the global cap only.
        let caps = ConnectionCaps::new(10, 1);
        let proxied: Vec<_> = (0..5)
            .map(|_| caps.admit(ClientKey::Proxy).unwrap())
            .collect();
        assert_eq!((caps.open(), caps.clients()), (5, 0));
        drop(proxied);
        assert_eq!(caps.open(), 0);
    }

    #[tokio::test]
    async fn inflight_bounds_one_client_and_forgets_it_when_idle() {
        let inflight = Inflight::new(2, 3);
        let a = ClientKey::V4(1);
        let p1 = inflight.acquire(a).await;
        let p2 = inflight.acquire(a).await;
        let third = tokio::spawn({
            let inflight = Arc::clone(&inflight);
            async move { inflight.acquire(a).await }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        // Another client still gets in.
        let other = inflight.acquire(ClientKey::V4(2)).await;
        drop(other);
        drop(p1);
        let p3 = third.await.unwrap();
        drop(p2);
        drop(p3);
        assert_eq!(inflight.clients(), 0);
    }
}
