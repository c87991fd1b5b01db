//! Which addresses a webhook may connect to. Decided on the address alone (no I/O), so
//! every range is tested without sending a packet.
//!
//! Refused: everything that is not a public unicast address: this network, loopback,
//! private (RFC 1918), shared (CGNAT, RFC 6598), link-local (169.254/16, where cloud
//! metadata services answer), IETF and documentation ranges, benchmarking, multicast,
//! reserved and broadcast; for IPv6 the unspecified and loopback addresses, unique
//! local (fc00::/7), link-local (fe80::/10), site-local, documentation, discard,
//! multicast, and every form that embeds an IPv4 address (mapped `::ffff:a.b.c.d`,
//! compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`), judged by the IPv4
//! address inside.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 127/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
    /// 100.64/10: carrier-grade NAT.
    Shared,
    /// 169.254/16 (cloud metadata), fe80::/10, fec0::/10.
    LinkLocal,
    /// 0/8, ::.
    Unspecified,
    /// 224/4, ff00::/8.
    Multicast,
    /// 240/4 and 255.255.255.255, IETF, documentation, benchmarking and discard ranges.
    Reserved,
}

impl Refusal {
    /// What `WEBHOOK_ALLOW_INSECURE=true` lets through, for local runs and tests: the
    /// machine itself and private networks, never link-local (cloud metadata) or the
    /// ranges no receiver lives in.
    pub fn allowed_when_insecure(self) -> bool {
        matches!(self, Refusal::Loopback | Refusal::Private | Refusal::Shared)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Loopback => "a loopback address",
            Refusal::Private => "a private address",
            Refusal::Shared => "a shared (carrier-grade NAT) address",
            Refusal::LinkLocal => "a link-local address",
            Refusal::Unspecified => "an unspecified address",
            Refusal::Multicast => "a multicast address",
            Refusal::Reserved => "a reserved address",
        })
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> (Ipv4Addr, u8) {
    (Ipv4Addr::new(a, b, c, d), prefix)
}

/// IPv4 ranges and why each is refused; the first that contains an address decides.
const V4: [((Ipv4Addr, u8), Refusal); 16] = [
    (v4(0, 0, 0, 0, 8), Refusal::Unspecified),
    (v4(10, 0, 0, 0, 8), Refusal::Private),
    (v4(100, 64, 0, 0, 10), Refusal::Shared),
    (v4(127, 0, 0, 0, 8), Refusal::Loopback),
    (v4(169, 254, 0, 0, 16), Refusal::LinkLocal),
    (v4(172, 16, 0, 0, 12), Refusal::Private),
    (v4(192, 0, 0, 0, 24), Refusal::Reserved),
    (v4(192, 0, 2, 0, 24), Refusal::Reserved),
    (v4(192, 88, 99, 0, 24), Refusal::Reserved),
    (v4(192, 168, 0, 0, 16), Refusal::Private),
    (v4(198, 18, 0, 0, 15), Refusal::Reserved),
    (v4(198, 51, 100, 0, 24), Refusal::Reserved),
    (v4(203, 0, 113, 0, 24), Refusal::Reserved),
    (v4(224, 0, 0, 0, 4), Refusal::Multicast),
    (v4(240, 0, 0, 0, 4), Refusal::Reserved),
    // 255.255.255.255 is in 240/4; kept apart so the table says it.
    (v4(255, 255, 255, 255, 32), Refusal::Reserved),
];

/// IPv6 ranges that embed no IPv4 address, and why each is refused.
const V6: [(u128, u8, Refusal); 8] = [
    (0, 128, Refusal::Unspecified),
    (1, 128, Refusal::Loopback),
    (
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        64,
        Refusal::Reserved,
    ),
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        Refusal::Reserved,
    ),
    (
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        7,
        Refusal::Private,
    ),
    (
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        10,
        Refusal::LinkLocal,
    ),
    (
        0xfec0_0000_0000_0000_0000_0000_0000_0000,
        10,
        Refusal::LinkLocal,
    ),
    (
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        8,
        Refusal::Multicast,
    ),
];

/// Why a webhook may not connect to `ip`, or `None` when it is a public address.
pub fn refusal(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(ip) => refusal_v4(ip),
        IpAddr::V6(ip) => refusal_v6(ip),
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<Refusal> {
    V4.iter()
        .find(|((network, prefix), _)| {
            Ipv4Net::new(*network, *prefix).is_ok_and(|net| net.contains(&ip))
        })
        .map(|(_, refusal)| *refusal)
}

fn refusal_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if let Some(embedded) = embedded_v4(ip) {
        // Whatever wraps it, the packet goes where the IPv4 address says.
        return refusal_v4(embedded);
    }
    V6.iter()
        .find(|(network, prefix, _)| {
            Ipv6Net::new(Ipv6Addr::from(*network), *prefix).is_ok_and(|net| net.contains(&ip))
        })
        .map(|(_, _, refusal)| *refusal)
}

/// The IPv4 address inside an IPv4-mapped, IPv4-compatible, NAT64 or 6to4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let prefix96 = bits >> 32;
    match prefix96 {
        // ::ffff:a.b.c.d
        0xffff => Some(low32),
        // ::a.b.c.d (deprecated), but not :: or ::1, which are IPv6's own.
        0 if bits > 1 => Some(low32),
        // 64:ff9b::a.b.c.d (NAT64, RFC 6052)
        0x0064_ff9b_0000_0000_0000_0000 => Some(low32),
        _ if bits >> 112 == 0x2002 => {
            // 2002:AABB:CCDD::/48 is 6to4 for AA.BB.CC.DD.
            Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(text: &str) -> Option<Refusal> {
        refusal(text.parse().expect("an address"))
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ok in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80e::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert_eq!(of(ok), None, "{ok}");
        }
    }

    #[test]
    fn every_refused_ipv4_range_is_refused_at_both_ends() {
        for (text, why) in [
            ("0.0.0.0", Refusal::Unspecified),
            ("0.255.255.255", Refusal::Unspecified),
            ("10.0.0.0", Refusal::Private),
            ("10.255.255.255", Refusal::Private),
            ("100.64.0.0", Refusal::Shared),
            ("100.127.255.255", Refusal::Shared),
            ("127.0.0.1", Refusal::Loopback),
            ("127.255.255.254", Refusal::Loopback),
            ("169.254.169.254", Refusal::LinkLocal),
            ("169.254.0.0", Refusal::LinkLocal),
            ("172.16.0.0", Refusal::Private),
            ("172.31.255.255", Refusal::Private),
            ("192.168.0.1", Refusal::Private),
            ("192.168.255.255", Refusal::Private),
            ("192.0.2.1", Refusal::Reserved),
            ("198.18.0.1", Refusal::Reserved),
            ("224.0.0.1", Refusal::Multicast),
            ("239.255.255.255", Refusal::Multicast),
            ("240.0.0.1", Refusal::Reserved),
            ("255.255.255.255", Refusal::Reserved),
        ] {
            assert_eq!(of(text), Some(why), "{text}");
        }
    }

    #[test]
    fn every_refused_ipv6_range_is_refused() {
        for (text, why) in [
            ("::", Refusal::Unspecified),
            ("::1", Refusal::Loopback),
            ("fc00::1", Refusal::Private),
            ("fdff:ffff::1", Refusal::Private),
            ("fe80::1", Refusal::LinkLocal),
            ("febf::1", Refusal::LinkLocal),
            ("fec0::1", Refusal::LinkLocal),
            ("ff02::1", Refusal::Multicast),
            ("2001:db8::1", Refusal::Reserved),
            ("100::1", Refusal::Reserved),
        ] {
            assert_eq!(of(text), Some(why), "{text}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_by_the_ipv4_address() {
        for (text, why) in [
            ("::ffff:127.0.0.1", Refusal::Loopback),
            ("::ffff:7f00:1", Refusal::Loopback),
            ("::ffff:10.1.2.3", Refusal::Private),
            ("::ffff:169.254.169.254", Refusal::LinkLocal),
            ("::ffff:0.0.0.0", Refusal::Unspecified),
            ("::127.0.0.1", Refusal::Loopback),
            ("::192.168.1.1", Refusal::Private),
            ("::169.254.169.254", Refusal::LinkLocal),
            ("64:ff9b::127.0.0.1", Refusal::Loopback),
            ("64:ff9b::a9fe:a9fe", Refusal::LinkLocal),
            ("2002:7f00:0001::1", Refusal::Loopback),
            ("2002:c0a8:0101::", Refusal::Private),
            ("2002:a9fe:a9fe::1", Refusal::LinkLocal),
        ] {
            assert_eq!(of(text), Some(why), "{text}");
        }
    }

    #[test]
    fn insecure_mode_lets_only_the_machine_and_private_networks_through() {
        assert!(Refusal::Loopback.allowed_when_insecure());
        assert!(Refusal::Private.allowed_when_insecure());
        assert!(!Refusal::LinkLocal.allowed_when_insecure());
        assert!(!Refusal::Multicast.allowed_when_insecure());
        assert!(!Refusal::Unspecified.allowed_when_insecure());
    }
}
