//! The address of the client behind a request: the TCP peer, or, when the peer is a
//! proxy we trust, the address the proxies recorded (`Forwarded`, RFC 7239, else
//! `X-Forwarded-For`). Anyone can send those headers, so they are believed only as far
//! as the chain of trusted proxies reaches: read from the nearest hop back, the first
//! address that is not a trusted proxy is the client.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// `TRUSTED_PROXIES`: networks whose forwarding headers are believed. Empty by
/// default: only the TCP peer counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// A comma-separated list of CIDR networks or single addresses.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is not a CIDR network or an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client of a request from `peer` with these headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut current = canonical(peer);
        if !self.trusts(current) {
            return current;
        }
        for hop in forwarded_chain(headers).into_iter().rev() {
            // A hop we cannot read ("unknown", an obfuscated name): the last proxy that
            // could tell is as far as we know.
            let Some(address) = hop else {
                return current;
            };
            current = canonical(address);
            if !self.trusts(current) {
                return current;
            }
        }
        current
    }

    /// Whether a trusted proxy says the client reached it over HTTPS: the nearest hop's
    /// `proto=` in `Forwarded`, else the nearest `X-Forwarded-Proto`. From any other peer
    /// the headers mean nothing.
    pub fn forwarded_https(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        if !self.trusts(canonical(peer)) {
            return false;
        }
        let nearest = |name: &str| {
            headers
                .get_all(name)
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .last()
                .map(str::trim)
        };
        if let Some(element) = nearest("forwarded") {
            return element.split(';').any(|pair| {
                pair.split_once('=').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("proto")
                        && value.trim().trim_matches('"').eq_ignore_ascii_case("https")
                })
            });
        }
        nearest("x-forwarded-proto").is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
    }
}

/// The request's client: its TCP peer, or the address the trusted proxies name. `None`
/// when actix knows no peer.
pub fn of(req: &actix_web::HttpRequest, proxies: &TrustedProxies) -> Option<IpAddr> {
    req.peer_addr()
        .map(|peer| proxies.client(peer.ip(), req.headers()))
}

/// Puts the request's client on the current span (its `client` field), so that the
/// request's log lines name it. Nothing when actix knows no peer.
pub fn record(req: &actix_web::HttpRequest, proxies: &TrustedProxies) {
    if let Some(client) = of(req, proxies) {
        tracing::Span::current().record("client", tracing::field::display(client));
    }
}

/// IPv4 addresses arrive as IPv6-mapped ones on a dual-stack listener.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// The addresses the proxies recorded, client first: `Forwarded`'s `for=` values if the
/// header is present, else `X-Forwarded-For`. `None` for a hop that is not an address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .filter_map(|value| value.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|value| value.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| forwarded_node(value.trim()))
                })
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|hop| forwarded_node(hop.trim()))
        .collect()
}

/// One node: `192.0.2.1`, `"192.0.2.1:8080"`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn forwarded_node(node: &str) -> Option<IpAddr> {
    let node = node.trim_matches('"');
    if let Ok(address) = node.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let bracketed = node.strip_prefix('[')?;
    bracketed.split(']').next()?.parse().ok()
}

/// Addresses here are only parsed and classified, never connected to.
#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let proxies = TrustedProxies::default();
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(proxies.client(ip("10.0.0.5"), &spoofed), ip("10.0.0.5"));
    }

    #[test]
    fn a_trusted_chain_is_followed_to_the_first_untrusted_hop() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7").expect("valid");
        // The client put a fake address first; the trusted proxies appended the real one.
        let chain = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(proxies.client(ip("192.0.2.7"), &chain), ip("203.0.113.9"));
        let forwarded = headers(&[(
            "forwarded",
            "for=198.51.100.1, for=\"[2001:db8::17]:4711\";proto=https, for=10.1.2.3",
        )]);
        assert_eq!(
            proxies.client(ip("10.9.9.9"), &forwarded),
            ip("2001:db8::17")
        );
        // Forwarded wins over X-Forwarded-For.
        let both = headers(&[
            ("forwarded", "for=203.0.113.50"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &both), ip("203.0.113.50"));
    }

    #[test]
    fn unreadable_hops_and_mapped_addresses() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").expect("valid");
        let unknown = headers(&[("forwarded", "for=unknown, for=10.0.0.2")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &unknown), ip("10.0.0.2"));
        let none = HeaderMap::new();
        assert_eq!(proxies.client(ip("::ffff:10.0.0.1"), &none), ip("10.0.0.1"));
        assert_eq!(
            proxies.client(ip("::ffff:203.0.113.4"), &none),
            ip("203.0.113.4")
        );
    }

    #[test]
    fn only_a_trusted_proxy_says_the_client_used_https() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").expect("valid");
        let https = headers(&[("x-forwarded-proto", "https")]);
        assert!(proxies.forwarded_https(ip("10.0.0.1"), &https));
        assert!(!proxies.forwarded_https(ip("203.0.113.4"), &https));
        let http = headers(&[("x-forwarded-proto", "https, http")]);
        assert!(!proxies.forwarded_https(ip("10.0.0.1"), &http));
        let forwarded = headers(&[
            ("forwarded", "for=203.0.113.4;proto=https"),
            ("x-forwarded-proto", "http"),
        ]);
        assert!(proxies.forwarded_https(ip("10.0.0.1"), &forwarded));
        assert!(!proxies.forwarded_https(ip("10.0.0.1"), &HeaderMap::new()));
    }

    #[test]
    fn the_list_is_checked() {
        assert_eq!(TrustedProxies::parse(""), Ok(TrustedProxies::default()));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
        assert!(TrustedProxies::parse("::1, fd00::/8").is_ok());
    }
}
