//! Multicast UDP socket setup with `socket2`, and the errors of the network setup.
//!
//! * [`open_multicast`] opens a UDP socket (IPv4 or IPv6, after the group) bound to the group's
//!   port, joins the group on exactly that interface, pins the outgoing interface, TTL (hop
//!   limit) and loopback, and asks for large kernel buffers (reporting what was actually granted
//!   in [`SocketInfo`]).
//! * [`resize_recv_buffer`] grows the receive buffer of an open socket.
//!
//! Interfaces are resolved in [`crate::net::iface`], groups parsed in [`crate::net::addr`].
//! Nothing in this module sends a datagram.

use crate::net::iface::Interface;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
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
    /// No interface with this name exists.
    #[error("no network interface is called {0:?} (list them with `ip -br link`)")]
    NoSuchInterface(String),
    /// The interface was given as an address, and no local interface has it.
    #[error("no network interface has the address {0} (list them with `ip -br addr`)")]
    NoInterfaceWithAddress(std::net::IpAddr),
    /// The UDP port could not be bound (typically: in use by another program).
    #[error("cannot bind UDP port {port}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A link-local control group (224.0.0.0/24: all-hosts, routers, mDNS ...), not for data.
    #[error("{0} is a link-local control group (224.0.0.0/24, e.g. all-hosts 224.0.0.1), reserved for routing and discovery protocols: use a group in 239.255.0.0/16")]
    ControlGroup(SocketAddr),
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
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        NetError::Io { op, source }
    }
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
pub(crate) fn setsockopt_int(
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

/// Log the granted size (debug: whether it is enough depends on the rate, see
/// [`recv_buffer_warning`]).
fn report_buffer(which: Buffer, requested: usize, granted: usize, forced: bool) {
    let opt = match which {
        Buffer::Recv => "SO_RCVBUF",
        Buffer::Send => "SO_SNDBUF",
    };
    tracing::debug!(requested, granted, forced, "{opt} granted {granted} bytes");
}

/// The shortest burst, in seconds of the sender's rate, a receive buffer should absorb: a
/// receiver that stops reading for a scheduler tick must not lose datagrams.
pub const RECV_BUFFER_MIN_SECONDS: f64 = 0.001;

/// Whether this process runs inside a user namespace other than the initial one (where
/// `net.core.rmem_max` belongs to the host and cannot be raised).
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let f: Vec<&str> = m.split_whitespace().collect();
        f != ["0", "0", "4294967295"]
    })
}

/// Why a receive buffer of `granted` bytes (as read back: Linux doubles the request) is too
/// small for `rate_bps`, with advice that works where this runs; `None` when it is enough
/// (it holds [`RECV_BUFFER_MIN_SECONDS`] of the rate).
pub fn recv_buffer_warning(granted: usize, rate_bps: u64, in_userns: bool) -> Option<String> {
    let usable = granted as f64 / 2.0;
    let holds = usable * 8.0 / rate_bps.max(1) as f64;
    if holds >= RECV_BUFFER_MIN_SECONDS {
        return None;
    }
    let fits = crate::net::io::fmt_rate(usable * 8.0 / RECV_BUFFER_MIN_SECONDS);
    let need = ((rate_bps as f64 / 8.0 * RECV_BUFFER_MIN_SECONDS).ceil() as u64 * 4).max(1 << 20);
    let advice = if in_userns {
        format!(
            "this runs inside a user namespace, where net.core.rmem_max cannot be raised; \
             send with --rate {fits} or less, or raise net.core.rmem_max to {need} on the host"
        )
    } else {
        format!(
            "raise the limit (as root: `sysctl -w net.core.rmem_max={need}`), run with \
             CAP_NET_ADMIN, or send with --rate {fits} or less"
        )
    };
    Some(format!(
        "the receive buffer (SO_RCVBUF) is {}, less than {:.0} ms of the sender's {}: datagrams \
         may be dropped on this host; {advice}",
        crate::net::io::fmt_bytes(granted as u64 / 2),
        RECV_BUFFER_MIN_SECONDS * 1e3,
        crate::net::io::fmt_rate(rate_bps as f64),
    ))
}

/// Log [`recv_buffer_warning`] as a warning, at most once per process.
pub fn warn_recv_buffer_once(granted: usize, rate_bps: u64) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Some(w) = recv_buffer_warning(granted, rate_bps, in_user_namespace()) {
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!("{w}");
        }
    }
}

/// Ask for a receive buffer of `requested` bytes on an open socket (`SO_RCVBUFFORCE` first,
/// then `SO_RCVBUF`) and log what was granted (whether that is enough: [`warn_recv_buffer_once`]).
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
/// The socket is bound to the group's address and port (on Linux; elsewhere the unspecified
/// address of its family) with `SO_REUSEADDR`/`SO_REUSEPORT` (so several receivers on one host
/// can share the port), has `IP_MULTICAST_ALL`/`IPV6_MULTICAST_ALL` off (only groups joined on
/// this socket are delivered), joins `group` on `iface` by index, and sends through `iface` explicitly
/// (`IP_MULTICAST_IF`/`IPV6_MULTICAST_IF`, never the default route) with the given TTL (hop
/// limit) and loopback. An IPv6 socket is also bound to the device (`SO_BINDTODEVICE`, where
/// permitted): Linux hands IPv6 multicast to every socket that joined the group on any
/// interface, so without it a host with the group joined on two links would see each datagram
/// twice. Buffer sizes are requested with `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` first, falling back
/// to the unprivileged options; the granted sizes are logged and returned.
///
/// What it takes, in open mode where anyone may send to the port: only datagrams sent to the
/// group address itself. Bound to the group, it is not handed datagrams sent to the host's
/// own (unicast) addresses at that port, nor, with the multicast-all option off, those of
/// other groups joined by other sockets on the same port. The receivers' data socket
/// (`group:port`) thus takes only the group's data and control; the sender's feedback socket
/// (`group:port+1`, see [`feedback_addr`](crate::net::feedback_addr)) takes only feedback
/// multicast to the group, which is where receivers send every NAK, echo and report. What such
/// datagrams claim is checked by the state machines (node ids bound to their first address,
/// budgets, sequence numbers), not here.
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
            let bind_addr = SocketAddrV4::new(bind_ip_v4(*g.ip()), g.port());
            socket
                .bind(&SockAddr::from(bind_addr))
                .map_err(|source| NetError::Bind { port: g.port(), source })?;
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

    tracing::debug!(
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

/// The address an IPv4 group's socket binds to: the group itself on Linux (so that unicast
/// to the port is not delivered), the unspecified address elsewhere.
fn bind_ip_v4(group: Ipv4Addr) -> Ipv4Addr {
    if cfg!(target_os = "linux") {
        group
    } else {
        Ipv4Addr::UNSPECIFIED
    }
}

/// The address and scope id an IPv6 group's socket binds to: the group on Linux (with the
/// interface as scope for interface- and link-local groups, which need one), the unspecified
/// address elsewhere.
fn bind_ip_v6(group: Ipv6Addr, index: u32) -> (Ipv6Addr, u32) {
    if !cfg!(target_os = "linux") {
        return (Ipv6Addr::UNSPECIFIED, 0);
    }
    let scope = group.segments()[0] & 0x000f;
    (group, if scope <= 2 { index } else { 0 })
}

/// The IPv6 half of [`open_multicast`]: bind, device, membership, interface, hops, loopback.
fn open_v6(
    socket: &Socket,
    group: SocketAddrV6,
    iface: &Interface,
    opts: &SocketOptions,
) -> Result<(), NetError> {
    socket.set_only_v6(true).map_err(|e| NetError::io("set IPV6_V6ONLY", e))?;
    let (ip, scope) = bind_ip_v6(*group.ip(), iface.index);
    let bind_addr = SocketAddrV6::new(ip, group.port(), 0, scope);
    socket
        .bind(&SockAddr::from(bind_addr))
        .map_err(|source| NetError::Bind { port: group.port(), source })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::iface::resolve_interface;
    use std::net::IpAddr;

    #[test]
    fn recv_buffer_warns_only_when_too_small_for_the_rate() {
        // 208 KiB usable (the unprivileged default, read back doubled) holds 1 ms of 1.7 Gbit/s.
        let granted = 425_984;
        assert_eq!(recv_buffer_warning(granted, 1_000_000_000, true), None);
        assert_eq!(recv_buffer_warning(granted, 100_000_000, false), None);
        let w = recv_buffer_warning(granted, 10_000_000_000, true).expect("too small");
        assert!(
            w.starts_with("the receive buffer (SO_RCVBUF) is 208.0 KiB, less than 1 ms"),
            "{w}"
        );
        assert!(w.contains("user namespace") && w.contains("--rate 1.70 Gbit/s"), "{w}");
        assert!(!w.contains("sysctl -w"), "no advice that cannot be followed: {w}");
        let host = recv_buffer_warning(granted, 10_000_000_000, false).expect("too small");
        assert!(host.contains("sysctl -w net.core.rmem_max=5000000"), "{host}");
    }

    #[test]
    fn a_taken_port_is_named() {
        let lo = resolve_interface("lo").expect("lo exists");
        let taken = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        let port = taken.local_addr().unwrap().port();
        let group = SocketAddr::from((Ipv4Addr::new(239, 255, 77, 3), port));
        let e = open_multicast(group, &lo, &SocketOptions::default()).unwrap_err();
        assert!(matches!(e, NetError::Bind { port: p, .. } if p == port), "{e:?}");
        assert!(e.to_string().starts_with(&format!("cannot bind UDP port {port}: ")), "{e}");
    }

    #[test]
    fn the_socket_binds_to_the_group() {
        let g4 = Ipv4Addr::new(239, 255, 0, 1);
        let g6: Ipv6Addr = "ff15::1".parse().unwrap();
        let link: Ipv6Addr = "ff02::1:3".parse().unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(bind_ip_v4(g4), g4);
            assert_eq!(bind_ip_v6(g6, 7), (g6, 0), "site scope needs no scope id");
            assert_eq!(bind_ip_v6(link, 7), (link, 7), "link scope is bound to the interface");
        } else {
            assert_eq!(bind_ip_v4(g4), Ipv4Addr::UNSPECIFIED);
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
}
