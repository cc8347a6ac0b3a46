//! Addresses and rates as given on the command line: [`parse_group`] (IPv4 or IPv6 multicast
//! group and port), [`group_scope_warning`] (groups outside the organisation- and site-local
//! ranges meant for this: 239.255.0.0/16; ff15::/16 and other transient site and organisation
//! scopes), [`feedback_addr`] (the sender's port, group port + 1) and [`parse_rate`].

use crate::net::socket::NetError;
use std::net::{IpAddr, SocketAddr};

/// Parse a group like "239.255.0.1:7000" or "`[ff15::1]:7000`" into a [`SocketAddr`].
///
/// The address must be multicast ([`NetError::NotMulticast`] otherwise), not a link-local
/// control group of 224.0.0.0/24 ([`NetError::ControlGroup`]) and the port non-zero;
/// malformed input gives [`NetError::BadGroup`]. Any multicast scope is accepted; see
/// [`group_scope_warning`] for the ones that deserve a warning.
pub fn parse_group(s: &str) -> Result<SocketAddr, NetError> {
    let addr: SocketAddr = s.trim().parse().map_err(|_| NetError::BadGroup(s.to_owned()))?;
    if !addr.ip().is_multicast() {
        return Err(NetError::NotMulticast(addr));
    }
    if addr.port() == 0 {
        return Err(NetError::BadGroup(s.to_owned()));
    }
    if let IpAddr::V4(ip) = addr.ip() {
        if ip.octets()[..3] == [224, 0, 0] {
            return Err(NetError::ControlGroup(addr));
        }
    }
    Ok(addr)
}

/// Why `group` is a risky choice, if it is: for IPv4 anything outside the organisation-local
/// 239.255.0.0/16 (well-known and global groups belong to other software); for IPv6 anything
/// but a transient (T flag) group of site (5) or organisation (8) scope, such as ff15::/16.
pub fn group_scope_warning(group: &SocketAddr) -> Option<String> {
    match group.ip() {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            (o[0] != 239 || o[1] != 255).then(|| {
                format!("{ip} is outside 239.255.0.0/16, the organisation-local multicast range")
            })
        }
        IpAddr::V6(ip) => {
            let flags_scope = ip.octets()[1];
            let transient = flags_scope & 0x10 != 0;
            let scope = flags_scope & 0x0f;
            (!(transient && matches!(scope, 5 | 8))).then(|| {
                format!(
                    "{ip} is not a transient site- or organisation-local group (scope {scope:x}, \
                     {}): prefer ff15::/16 or ff18::/16",
                    if transient { "transient" } else { "well-known" }
                )
            })
        }
    }
}

/// Parse a rate like "200M", "1G", "1.5G", "800k" or "1000000" into bits per second.
///
/// SI multipliers (k = 1e3, M = 1e6, G = 1e9, T = 1e12; case-insensitive), optionally followed by
/// "bit", "bits", "bit/s", "bps" or "b/s" (lowercase, so "MB/s" is rejected rather than silently
/// read as bits). Fractions are rounded to the nearest bit per second. The result must be > 0;
/// anything else is [`NetError::BadRate`].
pub fn parse_rate(s: &str) -> Result<u64, NetError> {
    let bad = || NetError::BadRate(s.to_owned());
    let mut rest = s.trim();
    for suffix in ["bit/s", "bits", "bit", "bps", "b/s"] {
        if let Some(stripped) = rest.strip_suffix(suffix) {
            rest = stripped.trim_end();
            break;
        }
    }
    let (number, multiplier) = match rest.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                'k' => 1_000,
                'm' => 1_000_000,
                'g' => 1_000_000_000,
                't' => 1_000_000_000_000,
                _ => return Err(bad()),
            };
            (rest[..rest.len() - 1].trim_end(), m)
        }
        _ => (rest, 1),
    };
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    let dots = number.bytes().filter(|&b| b == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != number.len() {
        return Err(bad());
    }
    let bps = if dots == 0 {
        number.parse::<u64>().ok().and_then(|n| n.checked_mul(multiplier)).ok_or_else(bad)?
    } else {
        let v = number.parse::<f64>().map_err(|_| bad())? * multiplier as f64;
        // u64::MAX as f64 rounds up to 2^64, so `<` excludes everything that would saturate.
        if !v.is_finite() || v.round() >= u64::MAX as f64 {
            return Err(bad());
        }
        v.round() as u64
    };
    if bps == 0 {
        return Err(bad());
    }
    Ok(bps)
}

/// The feedback address of a group: same group, data port + 1.
pub fn feedback_addr(group: SocketAddr) -> Result<SocketAddr, NetError> {
    let port = group.port().checked_add(1).ok_or_else(|| {
        NetError::BadGroup(format!("{group}: port {} has no feedback port above it", group.port()))
    })?;
    let mut fb = group;
    fb.set_port(port);
    Ok(fb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn parse_group_accepts_multicast() {
        assert_eq!(
            parse_group("239.255.0.1:7000").expect("valid"),
            SocketAddr::from((Ipv4Addr::new(239, 255, 0, 1), 7000))
        );
        assert_eq!(parse_group(" 224.0.1.251:5353 ").expect("valid").port(), 5353);
        for control in ["224.0.0.1:7000", "224.0.0.251:5353", "224.0.0.255:9"] {
            let e = parse_group(control).unwrap_err();
            assert!(matches!(e, NetError::ControlGroup(_)), "{control}: {e:?}");
            assert!(e.to_string().contains("link-local control group"), "{e}");
        }
        assert_eq!(
            parse_group("[ff15::1]:7000").expect("valid"),
            SocketAddr::from((Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0, 1), 7000))
        );
        assert_eq!(parse_group("[ff02::1]:7000").expect("link-local is legal").port(), 7000);
    }

    #[test]
    fn group_scopes() {
        let warn = |s: &str| group_scope_warning(&parse_group(s).expect(s));
        for quiet in ["239.255.0.1:7000", "[ff15::1]:7000", "[ff18::42]:7000", "[ff35::1]:9"] {
            assert_eq!(warn(quiet), None, "{quiet}");
        }
        for loud in [
            "224.0.1.251:5353",
            "239.1.0.1:7000",
            "[ff02::1]:7000",
            "[ff05::2]:7000",
            "[ff1e::1]:7000",
            "[ff11::1]:7000",
        ] {
            assert!(warn(loud).is_some(), "{loud}");
        }
    }

    #[test]
    fn parse_group_rejects_non_multicast_and_malformed() {
        assert!(matches!(parse_group("10.0.0.1:7000"), Err(NetError::NotMulticast(_))));
        assert!(matches!(parse_group("240.0.0.1:7000"), Err(NetError::NotMulticast(_))));
        assert!(matches!(parse_group("[2001:db8::1]:7000"), Err(NetError::NotMulticast(_))));
        for s in [
            "",
            "239.255.0.1",
            "239.255.0.1:",
            "239.255.0.1:70000",
            "239.255.0.1:0",
            "239.255.0:7000",
            "[ff15::1]",
            "[ff15::1]:0",
            "ff15::1:7000",
            "group:7000",
        ] {
            assert!(
                matches!(parse_group(s), Err(NetError::BadGroup(_))),
                "{s:?} should be rejected, got {:?}",
                parse_group(s)
            );
        }
    }

    #[test]
    fn parse_rate_table() {
        let ok: &[(&str, u64)] = &[
            ("1000000", 1_000_000),
            ("1", 1),
            ("200M", 200_000_000),
            ("200m", 200_000_000),
            ("1G", 1_000_000_000),
            ("1.5G", 1_500_000_000),
            ("800k", 800_000),
            ("800K", 800_000),
            ("2T", 2_000_000_000_000),
            (" 100M ", 100_000_000),
            ("100 M", 100_000_000),
            ("100Mbit", 100_000_000),
            ("100Mbps", 100_000_000),
            ("100Mb/s", 100_000_000),
            ("100Mbit/s", 100_000_000),
            ("10 Gbit/s", 10_000_000_000),
            ("0.5k", 500),
            (".5M", 500_000),
            ("1.", 1),
            ("1000bps", 1000),
        ];
        for &(s, want) in ok {
            match parse_rate(s) {
                Ok(got) => assert_eq!(got, want, "{s:?}"),
                Err(e) => panic!("{s:?}: {e}"),
            }
        }
        let bad = [
            "",
            "0",
            "0k",
            "0.0G",
            "-1M",
            "+1M",
            "abc",
            "1X",
            "M",
            ".",
            "1.2.3M",
            "1e6",
            "inf",
            "NaN",
            "1MB/s",
            "1 000",
            "99999999999999999999",
            "20000000000T",
            "0.4",
        ];
        for s in bad {
            assert!(
                matches!(parse_rate(s), Err(NetError::BadRate(_))),
                "{s:?} should be rejected, got {:?}",
                parse_rate(s)
            );
        }
    }

    #[test]
    fn feedback_port_is_the_next_one() {
        let g = |port| SocketAddr::from((Ipv4Addr::new(239, 255, 0, 1), port));
        assert_eq!(feedback_addr(g(65534)).unwrap(), g(65535));
        assert!(feedback_addr(g(65535)).is_err());
        let g6 = |port| SocketAddr::from((Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0, 1), port));
        assert_eq!(feedback_addr(g6(7000)).unwrap(), g6(7001));
    }
}
