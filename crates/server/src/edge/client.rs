//! Who a connection or a request comes from.
//!
//! Directly, that is the TCP peer. Behind a load balancer the peer is the
//! balancer, and every client would share its limits and its line in the
//! access log, so the real address is taken from what the balancer says:
//!
//! * `--trusted-proxies CIDR,...`: from a peer in one of these networks,
//!   the `Forwarded` (RFC 7239) or `X-Forwarded-For` header of each
//!   request names the client: the rightmost address in it that is not
//!   itself a trusted proxy (everything left of that was written by the
//!   client and could be anything). From any other peer the headers are
//!   ignored: a client cannot pick its own address.
//! * `--proxy-protocol`: a TCP balancer (HAProxy `send-proxy-v2`, nginx
//!   `stream` with `proxy_protocol on`, a cloud network balancer) writes a
//!   PROXY protocol header (v1 text or v2 binary) before the first byte of
//!   the connection; its source address is the client for the whole
//!   connection. The header is required on every connection (from a peer
//!   in `--trusted-proxies` only, when that is set).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::HeaderMap;
use ipnet::IpNet;
use ppp::{HeaderResult, PartialResult};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::admission::ClientKey;

/// The networks whose peers may say who the client is.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `--trusted-proxies` values: CIDR blocks or single addresses.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for item in items {
            let item = item.as_ref().trim();
            if item.is_empty() {
                continue;
            }
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!(
                        "--trusted-proxies {item:?}: not an address or a CIDR block \
                         (e.g. 10.0.0.0/8, 127.0.0.1, ::1/128)"
                    )
                })?;
            nets.push(net.trunc());
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// For the log at start-up.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// An IPv4 address that arrived as IPv6 (`::ffff:a.b.c.d`) as itself.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A client as the limits, the access log and the WebSocket see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote {
    /// The client's address (its port, when known).
    pub ip: IpAddr,
    pub port: Option<u16>,
    /// The proxy it came through, when it did.
    pub via: Option<SocketAddr>,
}

impl Remote {
    pub fn direct(peer: SocketAddr) -> Remote {
        Remote {
            ip: unmapped(peer.ip()),
            port: Some(peer.port()),
            via: None,
        }
    }

    pub fn key(&self) -> ClientKey {
        ClientKey::from(self.ip)
    }

    /// The address with its port (0 when a proxy did not say).
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(0))
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => SocketAddr::new(self.ip, port).fmt(f),
            None => self.ip.fmt(f),
        }
    }
}

/// The client a request from `peer` names, if `peer` is a trusted proxy
/// and its headers name one; `Forwarded` is read when present, else
/// `X-Forwarded-For`.
pub fn forwarded(headers: &HeaderMap, peer: SocketAddr, trusted: &TrustedProxies) -> Remote {
    let mut remote = Remote::direct(peer);
    if trusted.is_empty() || !trusted.contains(peer.ip()) {
        return remote;
    }
    let hops = if headers.contains_key(http::header::FORWARDED) {
        forwarded_hops(headers)
    } else {
        x_forwarded_for_hops(headers)
    };
    // From the right: the nearest hop first. Every hop a trusted proxy
    // added can be believed; the first address that is not a trusted
    // proxy is the client. A hop that is not an address ("unknown", an
    // obfuscated name) ends the walk at the last proxy believed.
    let mut client = None;
    for hop in hops.iter().rev() {
        match hop {
            Some((ip, port)) => {
                client = Some((*ip, *port));
                if !trusted.contains(*ip) {
                    break;
                }
            }
            None => break,
        }
    }
    if let Some((ip, port)) = client {
        remote = Remote {
            ip: unmapped(ip),
            port,
            via: Some(peer),
        };
    }
    remote
}

type Hop = Option<(IpAddr, Option<u16>)>;

/// `for=` of every element of every `Forwarded` header, left to right.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    let mut hops = Vec::new();
    for value in headers.get_all(http::header::FORWARDED) {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"'))
            });
            // An element without `for=` says nothing of the client.
            if let Some(node) = node {
                hops.push(node_address(node));
            }
        }
    }
    hops
}

/// RFC 7239 nodes: `192.0.2.60`, `192.0.2.60:8080`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711`; `unknown` and obfuscated names are not addresses.
fn node_address(node: &str) -> Hop {
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip = ip.parse::<IpAddr>().ok()?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((ip, port));
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let addr = node.parse::<SocketAddr>().ok()?;
    Some((addr.ip(), Some(addr.port())))
}

/// Every address of every `X-Forwarded-For` header, left to right.
fn x_forwarded_for_hops(headers: &HeaderMap) -> Vec<Hop> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        hops.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(node_address),
        );
    }
    hops
}

/// Largest PROXY header we wait for: v1 is at most 107 bytes; v2 carries
/// TLVs, which balancers keep small.
const MAX_PROXY_HEADER: usize = 4096;

/// Reads the PROXY protocol header at the start of `tcp` (and nothing
/// after it), by `deadline`. Returns the client it names, or None for a
/// `LOCAL` connection (the balancer's own health check) or an `UNKNOWN`
/// one, which are then the peer itself.
pub async fn read_proxy_header(
    tcp: &TcpStream,
    deadline: Instant,
) -> Result<Option<SocketAddr>, String> {
    let mut buf = vec![0u8; MAX_PROXY_HEADER];
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut buf)).await {
            Err(_) => return Err("no PROXY protocol header in time".into()),
            Ok(Ok(0)) => return Err("closed before its PROXY protocol header".into()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(format!("reading the PROXY protocol header: {e}")),
        };
        let parsed = HeaderResult::parse(&buf[..n]);
        if parsed.is_incomplete() {
            if n >= MAX_PROXY_HEADER {
                return Err("PROXY protocol header too long".into());
            }
            // Wait for more of it: peek again once more has arrived.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let (len, client) = match parsed {
            HeaderResult::V1(Ok(header)) => {
                let client = match header.addresses {
                    ppp::v1::Addresses::Tcp4(a) => {
                        Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                    }
                    ppp::v1::Addresses::Tcp6(a) => {
                        Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                    }
                    ppp::v1::Addresses::Unknown => None,
                };
                (header.header.len(), client)
            }
            HeaderResult::V2(Ok(header)) => {
                let client = match (header.command, header.addresses) {
                    (ppp::v2::Command::Local, _) => None,
                    (_, ppp::v2::Addresses::IPv4(a)) => {
                        Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                    }
                    (_, ppp::v2::Addresses::IPv6(a)) => {
                        Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                    }
                    _ => None,
                };
                (header.len(), client)
            }
            HeaderResult::V1(Err(e)) => {
                return Err(format!("not a PROXY protocol header: {e}"));
            }
            HeaderResult::V2(Err(e)) => {
                return Err(format!("not a PROXY protocol header: {e}"));
            }
        };
        // Consume exactly the header; the rest is the client's.
        let mut left = len;
        while left > 0 {
            match tcp.try_read(&mut buf[..left]) {
                Ok(0) => return Err("closed inside its PROXY protocol header".into()),
                Ok(n) => left -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::timeout_at(deadline, tcp.readable())
                        .await
                        .map_err(|_| "no PROXY protocol header in time".to_string())?
                        .map_err(|e| format!("reading the PROXY protocol header: {e}"))?;
                }
                Err(e) => return Err(format!("reading the PROXY protocol header: {e}")),
            }
        }
        return Ok(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        h
    }

    fn client(pairs: &[(&str, &str)], peer: &str, trusted: &[&str]) -> String {
        let trusted = TrustedProxies::parse(trusted).unwrap();
        forwarded(&headers(pairs), peer.parse().unwrap(), &trusted).to_string()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let xff = [("x-forwarded-for", "1.2.3.4")];
        assert_eq!(client(&xff, "10.0.0.9:5000", &[]), "10.0.0.9:5000");
        assert_eq!(
            client(&xff, "10.0.0.9:5000", &["127.0.0.1"]),
            "10.0.0.9:5000"
        );
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let trusted = ["10.0.0.0/8"];
        // A client that sends its own X-Forwarded-For gets it appended to.
        let xff = [("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.1.1.1")];
        assert_eq!(client(&xff, "10.0.0.2:80", &trusted), "1.2.3.4");
        let two = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4"),
        ];
        assert_eq!(client(&two, "10.0.0.2:80", &trusted), "1.2.3.4");
        // Only proxies: the leftmost.
        let inner = [("x-forwarded-for", "10.9.9.9, 10.1.1.1")];
        assert_eq!(client(&inner, "10.0.0.2:80", &trusted), "10.9.9.9");
        // Nothing said: the proxy itself.
        assert_eq!(client(&[], "10.0.0.2:80", &trusted), "10.0.0.2:80");
        // Garbage stops the walk at the last proxy believed.
        let junk = [("x-forwarded-for", "1.2.3.4, nonsense")];
        assert_eq!(client(&junk, "10.0.0.2:80", &trusted), "10.0.0.2:80");
    }

    #[test]
    fn forwarded_is_read_first() {
        let trusted = ["127.0.0.0/8", "::1"];
        let h = [
            (
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8::7]:4711\"",
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ];
        assert_eq!(client(&h, "127.0.0.1:1", &trusted), "[2001:db8::7]:4711");
        let unknown = [("forwarded", "for=192.0.2.60, for=unknown")];
        assert_eq!(client(&unknown, "[::1]:1", &trusted), "[::1]:1");
        let ported = [("forwarded", "For=\"192.0.2.60:8080\"")];
        assert_eq!(client(&ported, "127.0.0.1:1", &trusted), "192.0.2.60:8080");
    }

    #[test]
    fn trusted_proxies_parse() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "127.0.0.1", " ::1 "]).unwrap();
        assert!(t.contains("10.200.0.1".parse().unwrap()));
        assert!(t.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(t.contains("::1".parse().unwrap()));
        assert!(!t.contains("127.0.0.2".parse().unwrap()));
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["example.com"]).is_err());
    }
}
