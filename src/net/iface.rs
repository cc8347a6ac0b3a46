//! Local network interfaces: [`resolve_interface`] turns "eth0", "192.0.2.7" or "2001:db8::7"
//! into an [`Interface`] (name, index, IPv4 address if any) using `getifaddrs(3)` and
//! `if_nametoindex(3)`.

use crate::net::socket::NetError;
use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A resolved local network interface: the index used for group membership (`ip_mreqn`,
/// `ipv6_mreq`) and `IPV6_MULTICAST_IF`, and the IPv4 address used for `IP_MULTICAST_IF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Interface name as reported by `getifaddrs` (e.g. "lo", "eth0").
    pub name: String,
    /// The address it was looked up by, else its first IPv4 address, else its first IPv6
    /// address, else the unspecified IPv6 address (for logs).
    pub addr: IpAddr,
    /// Its IPv4 address (the one looked up by, or the first), if it has one.
    pub ipv4: Option<Ipv4Addr>,
    /// Kernel interface index (`if_nametoindex`), at least 1.
    pub index: u32,
}

impl Interface {
    /// Whether the interface currently has the `IFF_MULTICAST` flag set (i.e. the kernel will
    /// route multicast over it). Loopback lacks it by default on Linux.
    pub fn supports_multicast(&self) -> Result<bool, NetError> {
        Ok(interface_addrs()?
            .iter()
            .filter(|a| a.name == self.name)
            .any(|a| a.flags & libc::IFF_MULTICAST as u32 != 0))
    }
}

/// One `AF_INET` or `AF_INET6` entry of `getifaddrs`.
struct IfAddr {
    name: String,
    addr: IpAddr,
    flags: u32,
}

/// Frees the `getifaddrs` list on drop.
struct IfAddrsGuard(*mut libc::ifaddrs);

impl Drop for IfAddrsGuard {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from a successful getifaddrs call and is freed once.
            unsafe { libc::freeifaddrs(self.0) };
        }
    }
}

/// All IPv4 and IPv6 addresses of all interfaces, in `getifaddrs` order.
fn interface_addrs() -> Result<Vec<IfAddr>, NetError> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`; we free it through the guard.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(NetError::io("getifaddrs", io::Error::last_os_error()));
    }
    let guard = IfAddrsGuard(head);
    let mut out = Vec::new();
    let mut cur = guard.0;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list owned by `guard`.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to at least a sockaddr header.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let addr = if family == libc::AF_INET {
            // SAFETY: for AF_INET the address is a sockaddr_in; read it without assuming
            // alignment.
            let sin = unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in>()) };
            IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
        } else if family == libc::AF_INET6 {
            // SAFETY: for AF_INET6 the address is a sockaddr_in6; read it without assuming
            // alignment.
            let sin6 =
                unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in6>()) };
            IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
        } else {
            continue;
        };
        // SAFETY: ifa_name is a non-null NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
        out.push(IfAddr { name, addr, flags: ifa.ifa_flags });
    }
    Ok(out)
}

/// Kernel index of the interface called `name`, or `None` if there is none. Alias labels such
/// as "eth0:1" resolve to their base device.
fn interface_index(name: &str) -> Option<u32> {
    let base = name.split(':').next().unwrap_or(name);
    let c = CString::new(base).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// Parse an interface given as an address ("127.0.0.1", "2001:db8::1") or a name ("lo",
/// "eth0") into its name, index and IPv4 address.
///
/// Names are resolved with `getifaddrs` and `if_nametoindex`; an IP is matched against the
/// addresses from `getifaddrs` to find the owning interface. A named interface without any IPv4
/// address resolves too (an IPv6 group needs only the index); [`open_multicast`](crate::net::open_multicast) refuses it for
/// an IPv4 group with [`NetError::InterfaceHasNoIpv4`]. Errors with [`NetError::NoSuchInterface`]
/// when no interface has the name, [`NetError::NoInterfaceWithAddress`] when none has the address.
pub fn resolve_interface(spec: &str) -> Result<Interface, NetError> {
    let spec = spec.trim();
    let missing = || NetError::NoSuchInterface(spec.to_owned());
    if spec.is_empty() {
        return Err(missing());
    }
    let addrs = interface_addrs()?;
    let first_v4 = |name: &str| {
        addrs.iter().find_map(|a| match a.addr {
            IpAddr::V4(v4) if a.name == name => Some(v4),
            _ => None,
        })
    };
    if let Ok(ip) = spec.parse::<IpAddr>() {
        let found =
            addrs.iter().find(|a| a.addr == ip).ok_or(NetError::NoInterfaceWithAddress(ip))?;
        let index = interface_index(&found.name).ok_or_else(missing)?;
        let ipv4 = match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => first_v4(&found.name),
        };
        return Ok(Interface { name: found.name.clone(), addr: ip, ipv4, index });
    }
    if spec.contains('\0') {
        return Err(missing());
    }
    let index = interface_index(spec).ok_or_else(missing)?;
    let ipv4 = first_v4(spec);
    let addr = ipv4.map(IpAddr::V4).unwrap_or_else(|| {
        addrs.iter().find(|a| a.name == spec).map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |a| a.addr)
    });
    Ok(Interface { name: spec.to_owned(), addr, ipv4, index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_loopback_by_name() {
        let lo = resolve_interface("lo").expect("lo exists");
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(lo.ipv4, Some(Ipv4Addr::LOCALHOST));
        assert!(lo.index >= 1);
    }

    #[test]
    fn resolve_loopback_by_address() {
        let lo = resolve_interface("127.0.0.1").expect("127.0.0.1 is local");
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(lo.ipv4, Some(Ipv4Addr::LOCALHOST));
        assert!(lo.index >= 1);
        assert_eq!(resolve_interface("lo").expect("lo").index, lo.index);
    }

    #[test]
    fn resolve_loopback_by_ipv6_address() {
        let has_v6 = interface_addrs()
            .expect("getifaddrs")
            .iter()
            .any(|a| a.name == "lo" && a.addr == IpAddr::V6(Ipv6Addr::LOCALHOST));
        if !has_v6 {
            return; // IPv6 is off on this host: nothing to resolve.
        }
        let lo = resolve_interface("::1").expect("::1 is local");
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        // The IPv4 address comes along, for an IPv4 group on the same interface.
        assert_eq!(lo.ipv4, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(lo.index, resolve_interface("lo").expect("lo").index);
    }

    #[test]
    fn resolve_unknown_interface_fails() {
        for spec in ["no-such-if0", "", "bad\0name"] {
            match resolve_interface(spec) {
                Err(NetError::NoSuchInterface(_)) => {}
                other => panic!("{spec:?}: expected NoSuchInterface, got {other:?}"),
            }
        }
        for spec in ["192.0.2.254", "2001:db8::fe"] {
            match resolve_interface(spec) {
                Err(e @ NetError::NoInterfaceWithAddress(_)) => {
                    assert!(e.to_string().starts_with("no network interface has the address "))
                }
                other => panic!("{spec:?}: expected NoInterfaceWithAddress, got {other:?}"),
            }
        }
    }
}
