//! Multicast UDP socket setup with `socket2`.
//!
//! * [`resolve_interface`] turns "eth0", "192.0.2.7" or "2001:db8::7" into an [`Interface`]
//!   (name, index, IPv4 address if any) using `getifaddrs(3)` and `if_nametoindex(3)`.
//! * [`open_multicast`] opens a UDP socket (IPv4 or IPv6, after the group) bound to the group's
//!   port, joins the group on exactly that interface, pins the outgoing interface, TTL (hop
//!   limit) and loopback, and asks for large kernel buffers (reporting what was actually granted
//!   in [`SocketInfo`]).
//! * [`parse_group`] and [`parse_rate`] parse the command-line forms of a group address and a
//!   bit rate; [`group_scope_warning`] says when a group lies outside the organisation- and
//!   site-local ranges meant for this (239.255.0.0/16; ff15::/16 and other site and
//!   organisation scopes).
//!
//! Nothing in this module sends a datagram.

use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

/// Errors from socket setup and from parsing network-related arguments.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What we were doing (e.g. "bind", "join multicast group").
        op: &'static str,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
    /// No interface with this name or address exists.
    #[error("no such network interface: {0:?}")]
    NoSuchInterface(String),
    /// The interface exists but has no IPv4 address configured (needed for an IPv4 group).
    #[error("network interface {0:?} has no IPv4 address")]
    InterfaceHasNoIpv4(String),
    /// The address is not a multicast address (224.0.0.0/4 or ff00::/8).
    #[error("{0} is not a multicast address (224.0.0.0/4 or ff00::/8)")]
    NotMulticast(SocketAddr),
    /// A group string could not be parsed as `a.b.c.d:port` or `[v6]:port`.
    #[error("bad multicast group {0:?}: expected a multicast address and non-zero port, e.g. 239.255.0.1:7000 or [ff15::1]:7000")]
    BadGroup(String),
    /// A rate string could not be parsed.
    #[error("bad rate {0:?}: expected a positive number of bits per second with optional k/M/G/T suffix, e.g. 200M, 1.5G, 800k")]
    BadRate(String),
}

impl NetError {
    fn io(op: &'static str, source: io::Error) -> Self {
        NetError::Io { op, source }
    }
}

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
/// address resolves too (an IPv6 group needs only the index); [`open_multicast`] refuses it for
/// an IPv4 group with [`NetError::InterfaceHasNoIpv4`]. Errors with [`NetError::NoSuchInterface`]
/// when nothing matches.
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
        let found = addrs.iter().find(|a| a.addr == ip).ok_or_else(missing)?;
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

/// Options for a multicast socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOptions {
    /// `IP_MULTICAST_TTL` for outgoing datagrams (default 1: stay on the local link).
    pub ttl: u32,
    /// `IP_MULTICAST_LOOP`: deliver our own multicasts to local listeners (default true).
    pub loopback: bool,
    /// Requested `SO_RCVBUF` in bytes (default 32 MiB). 0 leaves the kernel default.
    pub recv_buffer: usize,
    /// Requested `SO_SNDBUF` in bytes (default 4 MiB). 0 leaves the kernel default.
    pub send_buffer: usize,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions { ttl: 1, loopback: true, recv_buffer: 32 << 20, send_buffer: 4 << 20 }
    }
}

/// What the kernel granted, for logs and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketInfo {
    /// `SO_RCVBUF` as read back (Linux reports twice the usable payload size).
    pub recv_buffer: usize,
    /// `SO_SNDBUF` as read back (Linux reports twice the usable payload size).
    pub send_buffer: usize,
    /// Whether `SO_RCVBUFFORCE` succeeded (bypassing `net.core.rmem_max`).
    pub recv_buffer_forced: bool,
}

/// Set an integer socket option directly with `setsockopt(2)`.
#[cfg(target_os = "linux")]
fn setsockopt_int(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passing a pointer to a live c_int with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Which socket buffer [`set_buffer`] configures.
#[derive(Clone, Copy)]
enum Buffer {
    Recv,
    Send,
}

/// Ask for a buffer of `requested` bytes: privileged `SO_*BUFFORCE` first, then the normal
/// option (capped by `net.core.{r,w}mem_max`). Returns (granted, forced).
fn set_buffer(socket: &Socket, which: Buffer, requested: usize) -> Result<(usize, bool), NetError> {
    let mut forced = false;
    if requested > 0 {
        #[cfg(target_os = "linux")]
        {
            let opt = match which {
                Buffer::Recv => libc::SO_RCVBUFFORCE,
                Buffer::Send => libc::SO_SNDBUFFORCE,
            };
            let value = libc::c_int::try_from(requested).unwrap_or(libc::c_int::MAX);
            forced = setsockopt_int(socket, libc::SOL_SOCKET, opt, value).is_ok();
        }
        if !forced {
            let r = match which {
                Buffer::Recv => socket.set_recv_buffer_size(requested),
                Buffer::Send => socket.set_send_buffer_size(requested),
            };
            r.map_err(|e| {
                NetError::io(
                    match which {
                        Buffer::Recv => "set SO_RCVBUF",
                        Buffer::Send => "set SO_SNDBUF",
                    },
                    e,
                )
            })?;
        }
    }
    let granted = match which {
        Buffer::Recv => socket.recv_buffer_size().map_err(|e| NetError::io("get SO_RCVBUF", e))?,
        Buffer::Send => socket.send_buffer_size().map_err(|e| NetError::io("get SO_SNDBUF", e))?,
    };
    Ok((granted, forced))
}

/// Log the granted size and warn when it is far below the request.
fn report_buffer(which: Buffer, requested: usize, granted: usize, forced: bool) {
    let (opt, sysctl) = match which {
        Buffer::Recv => ("SO_RCVBUF", "net.core.rmem_max"),
        Buffer::Send => ("SO_SNDBUF", "net.core.wmem_max"),
    };
    tracing::info!(requested, granted, forced, "{opt} granted {granted} bytes");
    if requested > 0 && granted < requested / 2 {
        tracing::warn!(
            requested,
            granted,
            "{opt} is only {granted} bytes but {requested} were requested; raise the limit with \
             `sysctl -w {sysctl}={requested}` (or run with CAP_NET_ADMIN) to avoid drops"
        );
    }
}

/// Ask for a receive buffer of `requested` bytes on an open socket (`SO_RCVBUFFORCE` first,
/// then `SO_RCVBUF`), log what was granted and warn when it is less than half the request.
/// Returns the size read back (Linux reports twice the usable payload) and whether the forced
/// option worked.
pub fn resize_recv_buffer(sock: &UdpSocket, requested: usize) -> Result<(usize, bool), NetError> {
    let sock = socket2::SockRef::from(sock);
    let (granted, forced) = set_buffer(&sock, Buffer::Recv, requested)?;
    report_buffer(Buffer::Recv, requested, granted, forced);
    Ok((granted, forced))
}

/// `IPV6_MULTICAST_ALL` (Linux, since 4.20; not in the libc crate): deliver only the groups
/// joined on this socket.
#[cfg(target_os = "linux")]
const IPV6_MULTICAST_ALL: libc::c_int = 29;

/// Open a UDP socket for multicast group `group` (IPv4 or IPv6) on interface `iface`.
///
/// The socket is bound to the unspecified address of the group's family and the group's port
/// with `SO_REUSEADDR`/`SO_REUSEPORT` (so several receivers on one host can share the port), has
/// `IP_MULTICAST_ALL`/`IPV6_MULTICAST_ALL` off (only groups joined on this socket are
/// delivered), joins `group` on `iface` by index, and sends through `iface` explicitly
/// (`IP_MULTICAST_IF`/`IPV6_MULTICAST_IF`, never the default route) with the given TTL (hop
/// limit) and loopback. An IPv6 socket is also bound to the device (`SO_BINDTODEVICE`, where
/// permitted): Linux hands IPv6 multicast to every socket that joined the group on any
/// interface, so without it a host with the group joined on two links would see each datagram
/// twice. Buffer sizes are requested with `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` first, falling back
/// to the unprivileged options; the granted sizes are logged and returned.
///
/// Errors with [`NetError::NotMulticast`] if `group` is not a multicast address and with
/// [`NetError::InterfaceHasNoIpv4`] for an IPv4 group on an interface without an IPv4 address.
/// The returned socket is in blocking mode.
pub fn open_multicast(
    group: SocketAddr,
    iface: &Interface,
    opts: &SocketOptions,
) -> Result<(UdpSocket, SocketInfo), NetError> {
    if !group.ip().is_multicast() {
        return Err(NetError::NotMulticast(group));
    }
    let iface_v4 = match group {
        SocketAddr::V4(_) => {
            iface.ipv4.ok_or_else(|| NetError::InterfaceHasNoIpv4(iface.name.clone()))?
        }
        SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    let socket = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| NetError::io("create UDP socket", e))?;
    socket.set_reuse_address(true).map_err(|e| NetError::io("set SO_REUSEADDR", e))?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true).map_err(|e| NetError::io("set SO_REUSEPORT", e))?;

    let (recv_buffer, recv_buffer_forced) = set_buffer(&socket, Buffer::Recv, opts.recv_buffer)?;
    report_buffer(Buffer::Recv, opts.recv_buffer, recv_buffer, recv_buffer_forced);
    let (send_buffer, send_forced) = set_buffer(&socket, Buffer::Send, opts.send_buffer)?;
    report_buffer(Buffer::Send, opts.send_buffer, send_buffer, send_forced);

    match group {
        SocketAddr::V4(g) => {
            let iface_addr = iface_v4;
            let bind_addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, g.port());
            socket.bind(&SockAddr::from(bind_addr)).map_err(|e| NetError::io("bind", e))?;
            #[cfg(target_os = "linux")]
            setsockopt_int(&socket, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, 0)
                .map_err(|e| NetError::io("set IP_MULTICAST_ALL", e))?;
            let membership = if iface.index != 0 {
                InterfaceIndexOrAddress::Index(iface.index)
            } else {
                InterfaceIndexOrAddress::Address(iface_addr)
            };
            socket
                .join_multicast_v4_n(g.ip(), &membership)
                .map_err(|e| NetError::io("join multicast group", e))?;
            socket
                .set_multicast_if_v4(&iface_addr)
                .map_err(|e| NetError::io("set IP_MULTICAST_IF", e))?;
            socket
                .set_multicast_ttl_v4(opts.ttl)
                .map_err(|e| NetError::io("set IP_MULTICAST_TTL", e))?;
            socket
                .set_multicast_loop_v4(opts.loopback)
                .map_err(|e| NetError::io("set IP_MULTICAST_LOOP", e))?;
        }
        SocketAddr::V6(g) => open_v6(&socket, g, iface, opts)?,
    }
    socket.set_nonblocking(false).map_err(|e| NetError::io("set blocking mode", e))?;

    tracing::info!(
        %group,
        iface = %iface.name,
        iface_addr = %iface.addr,
        iface_index = iface.index,
        ttl = opts.ttl,
        loopback = opts.loopback,
        "joined multicast group"
    );
    Ok((socket.into(), SocketInfo { recv_buffer, send_buffer, recv_buffer_forced }))
}

/// The IPv6 half of [`open_multicast`]: bind, device, membership, interface, hops, loopback.
fn open_v6(
    socket: &Socket,
    group: SocketAddrV6,
    iface: &Interface,
    opts: &SocketOptions,
) -> Result<(), NetError> {
    socket.set_only_v6(true).map_err(|e| NetError::io("set IPV6_V6ONLY", e))?;
    let bind_addr = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, group.port(), 0, 0);
    socket.bind(&SockAddr::from(bind_addr)).map_err(|e| NetError::io("bind", e))?;
    #[cfg(target_os = "linux")]
    {
        if let Err(e) = setsockopt_int(socket, libc::IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0) {
            tracing::warn!("IPV6_MULTICAST_ALL not available ({e}): other groups may be seen");
        }
        if let Err(e) = socket.bind_device(Some(iface.name.as_bytes())) {
            tracing::warn!(
                "cannot bind to device {} ({e}): datagrams of this group arriving on other \
                 interfaces will be seen too",
                iface.name
            );
        }
    }
    socket
        .join_multicast_v6(group.ip(), iface.index)
        .map_err(|e| NetError::io("join multicast group (IPv6)", e))?;
    socket
        .set_multicast_if_v6(iface.index)
        .map_err(|e| NetError::io("set IPV6_MULTICAST_IF", e))?;
    socket
        .set_multicast_hops_v6(opts.ttl)
        .map_err(|e| NetError::io("set IPV6_MULTICAST_HOPS", e))?;
    socket
        .set_multicast_loop_v6(opts.loopback)
        .map_err(|e| NetError::io("set IPV6_MULTICAST_LOOP", e))?;
    Ok(())
}

/// Parse a group like "239.255.0.1:7000" or "[ff15::1]:7000" into a [`SocketAddr`].
///
/// The address must be multicast ([`NetError::NotMulticast`] otherwise) and the port non-zero;
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
    fn resolve_unknown_interface_fails() {
        for spec in ["no-such-if0", "", "bad\0name", "192.0.2.254", "2001:db8::fe"] {
            match resolve_interface(spec) {
                Err(NetError::NoSuchInterface(_)) => {}
                other => panic!("{spec:?}: expected NoSuchInterface, got {other:?}"),
            }
        }
    }

    #[test]
    fn parse_group_accepts_multicast() {
        assert_eq!(
            parse_group("239.255.0.1:7000").expect("valid"),
            SocketAddr::from((Ipv4Addr::new(239, 255, 0, 1), 7000))
        );
        assert_eq!(parse_group(" 224.0.0.251:5353 ").expect("valid").port(), 5353);
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
            "224.0.0.251:5353",
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
    fn default_options() {
        let o = SocketOptions::default();
        assert_eq!(o.ttl, 1);
        assert!(o.loopback);
        assert_eq!(o.recv_buffer, 32 * 1024 * 1024);
        assert_eq!(o.send_buffer, 4 * 1024 * 1024);
    }

    #[test]
    fn open_rejects_an_ipv4_group_on_an_interface_without_ipv4() {
        let no_v4 = Interface {
            name: "lo".into(),
            addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            ipv4: None,
            index: resolve_interface("lo").expect("lo").index,
        };
        let group = SocketAddr::from((Ipv4Addr::new(239, 255, 77, 2), 47_125));
        assert!(matches!(
            open_multicast(group, &no_v4, &SocketOptions::default()),
            Err(NetError::InterfaceHasNoIpv4(name)) if name == "lo"
        ));
    }

    #[test]
    fn open_rejects_unicast_group() {
        let lo = resolve_interface("lo").expect("lo exists");
        let group = SocketAddr::from((Ipv4Addr::LOCALHOST, 47_123));
        assert!(matches!(
            open_multicast(group, &lo, &SocketOptions::default()),
            Err(NetError::NotMulticast(g)) if g == group
        ));
    }

    #[test]
    fn open_multicast_on_loopback() {
        let lo = resolve_interface("lo").expect("lo exists");
        if !lo.supports_multicast().expect("getifaddrs") {
            // Loopback has no IFF_MULTICAST here (the Linux default); joining a group on it is
            // meaningless, so there is nothing to check. Inside a test network namespace run
            // `ip link set lo multicast on` first to exercise this.
            return;
        }
        let group = SocketAddr::from((Ipv4Addr::new(239, 255, 77, 1), 47_931));
        let opts = SocketOptions { ttl: 0, loopback: false, ..SocketOptions::default() };
        let (a, info) = open_multicast(group, &lo, &opts).expect("open on lo");
        assert!(info.recv_buffer > 0);
        assert!(info.send_buffer > 0);
        assert_eq!(a.local_addr().expect("local_addr").port(), group.port());
        assert_eq!(a.multicast_ttl_v4().expect("ttl"), 0);
        assert!(!a.multicast_loop_v4().expect("loop"));
        // A second receiver can bind the same port.
        let (b, _) = open_multicast(group, &lo, &SocketOptions::default()).expect("second open");
        assert_eq!(b.multicast_ttl_v4().expect("ttl"), 1);
        assert!(b.multicast_loop_v4().expect("loop"));
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
