//! Batched datagram I/O through `quinn-udp`: sends with UDP generic segmentation offload (GSO,
//! `UDP_SEGMENT`: one `sendmsg` carries up to ~45 equal-sized datagrams) and receives with
//! `recvmmsg` and UDP GRO (one call returns many datagrams, possibly coalesced into one buffer
//! with a `stride`). Each GSO segment is an ordinary datagram on the wire and at the receiver, so
//! the wire format does not change.
//!
//! * [`BatchSocket`] owns the socket and quinn-udp's per-socket state; [`BatchSocket::send`]
//!   sends one batch (falling back to one datagram per call when the kernel refuses GSO, e.g.
//!   with `EIO` from a device without it), [`BatchSocket::recv`] hands every waiting datagram to
//!   a closure, splitting GRO buffers at their stride, each datagram with the kernel's receive
//!   timestamp (`SO_TIMESTAMPNS`, which quinn-udp turns on and reads from the control messages
//!   of `recvmmsg`: one stamp per buffer, so the datagrams of one GRO buffer share it).
//! * [`TxBatch`] collects the datagrams a sender core emits into GSO batches: all segments the
//!   same size except the last, one destination, at most 64 KiB in all.
//! * [`socket_drops`] and [`udp_rcvbuf_errors`] read the kernel's drop counters, so a receiver
//!   can tell network loss from a host that could not keep up.
//!
//! Nothing here knows the protocol: bytes in, bytes out.

use crate::proto::time::Duration;
use quinn_udp::{EcnCodepoint, RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Largest UDP payload of one IPv4 datagram (65535 - 20 IP - 8 UDP): the cap on a whole GSO
/// batch, since the kernel builds it as one datagram before segmenting.
pub const MAX_GSO_BYTES: usize = 65_507;

/// Datagrams per `recvmmsg` call (quinn-udp's own batch size on Linux).
const RECV_BATCH: usize = 32;

/// Bytes per receive buffer: a full GRO train (at most 64 KiB) or one datagram of any size.
const RECV_BUF: usize = 65_536;

/// Counters of the batched I/O path, for reports and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchStats {
    /// `sendmsg` calls that succeeded.
    pub send_calls: u64,
    /// Datagrams sent (GSO segments count one each).
    pub datagrams_sent: u64,
    /// Batches sent with more than one segment.
    pub gso_batches: u64,
    /// Batches the kernel refused as GSO and that went out one datagram at a time.
    pub gso_fallbacks: u64,
    /// `recvmmsg` calls that returned data.
    pub recv_calls: u64,
    /// Datagrams received (after splitting GRO buffers).
    pub datagrams_received: u64,
    /// Receive buffers that held more than one datagram (GRO).
    pub gro_buffers: u64,
    /// Datagrams that arrived with the IP header's ECN field at Congestion Experienced (an
    /// AQM on the path marked them instead of dropping; quinn-udp reads the field with
    /// `IP_RECVTOS` / `IPV6_RECVTCLASS`).
    pub datagrams_ce: u64,
    /// Datagrams that came with a kernel receive timestamp (`SO_TIMESTAMPNS`); the others
    /// (`datagrams_received - datagrams_stamped`) were timed when the loop read them.
    pub datagrams_stamped: u64,
    /// Stamped datagrams handed over with an arrival earlier than a time the driver had
    /// already given the role (they arrived while the loop was busy or not scheduled; see
    /// `net::arrival`)...
    pub arrivals_early: u64,
    /// ...and by how many microseconds, in all.
    pub arrivals_early_us: u64,
    /// Stamped datagrams moved up to the previous arrival or to `net::arrival::MAX_STEP_BACK`
    /// before the latest time given (out of order, or a wall-clock step).
    pub arrivals_raised: u64,
    /// Stamped datagrams whose arrival was later than the loop's clock when it read them (the
    /// wall clock stepped, or the offset sample was off), handed over as the loop's time.
    pub arrivals_lowered: u64,
}

/// One received datagram, as [`BatchSocket::recv`] hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// Where it came from.
    pub from: SocketAddr,
    /// Its payload.
    pub data: &'a [u8],
    /// The kernel's receive timestamp (`CLOCK_REALTIME`, since the Unix epoch), if the kernel
    /// gave one; all datagrams of one GRO buffer share the buffer's stamp.
    pub stamp: Option<Duration>,
    /// Whether it arrived marked ECN Congestion Experienced (the kernel coalesces only
    /// datagrams of one ECN field into a GRO buffer).
    pub ce: bool,
}

/// A UDP socket driven in batches through quinn-udp.
pub struct BatchSocket {
    sock: UdpSocket,
    state: UdpSocketState,
    /// Our own cap on segments per batch (1 forces the one-datagram-per-call path).
    segment_cap: usize,
    bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
    stats: BatchStats,
    /// The ECN codepoint put on every datagram sent (`None`: not ECN-capable).
    ecn: Option<EcnCodepoint>,
}

impl std::fmt::Debug for BatchSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSocket")
            .field("max_segments", &self.max_segments())
            .field("gro_segments", &self.state.gro_segments())
            .finish()
    }
}

impl BatchSocket {
    /// Wrap `sock` (made non-blocking). quinn-udp also turns on `UDP_GRO`, `IP_RECVTOS` (the
    /// ECN field) and path-MTU probing; multicast settings made before (`IP_MULTICAST_IF`,
    /// TTL, loop) stay.
    ///
    /// It would turn on `IP_PKTINFO` too, which is turned off again: with a receive timestamp,
    /// a GRO segment size and the packet info, the ECN field's control message no longer fits
    /// quinn-udp's control buffer (88 bytes; the kernel truncates, `MSG_CTRUNC`), so a GRO
    /// buffer's CE mark would be lost. Nothing here reads the destination address.
    pub fn new(sock: UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new(UdpSockRef::from(&sock))?;
        #[cfg(target_os = "linux")]
        {
            let s = socket2::SockRef::from(&sock);
            let (level, name) = if sock.local_addr()?.is_ipv4() {
                (libc::IPPROTO_IP, libc::IP_PKTINFO)
            } else {
                (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
            };
            if let Err(e) = crate::net::socket::setsockopt_int(&s, level, name, 0) {
                tracing::debug!(
                    "could not turn packet info off ({e}): CE marks of GRO buffers are lost"
                );
            }
        }
        Ok(BatchSocket {
            sock,
            state,
            segment_cap: usize::MAX,
            bufs: (0..RECV_BATCH).map(|_| vec![0u8; RECV_BUF]).collect(),
            metas: vec![RecvMeta::default(); RECV_BATCH],
            stats: BatchStats::default(),
            ecn: None,
        })
    }

    /// Mark every datagram sent from now on ECN-capable (ECT(0), RFC 3168), or not. Only a
    /// sender that answers congestion marks may say so: an AQM then marks its datagrams
    /// Congestion Experienced instead of dropping them.
    pub fn set_ecn_capable(&mut self, on: bool) {
        self.ecn = on.then_some(EcnCodepoint::Ect0);
    }

    /// Never put more than `cap` (at least 1) segments in one send; 1 disables GSO.
    pub fn limit_segments(&mut self, cap: usize) {
        self.segment_cap = cap.max(1);
    }

    /// Segments one send may carry now: what the kernel allows (1 without GSO, or after it
    /// refused a batch), capped by [`BatchSocket::limit_segments`].
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments().min(self.segment_cap).max(1)
    }

    /// Whether the kernel coalesces received datagrams (UDP GRO).
    pub fn gro_enabled(&self) -> bool {
        self.state.gro_segments() > 1
    }

    /// The socket, for polling and socket options.
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Counters so far.
    pub fn stats(&self) -> BatchStats {
        self.stats
    }

    /// Count how the driver placed stamped arrivals in time (`net::arrival`).
    pub fn count_arrivals(&mut self, c: crate::net::arrival::ArrivalCounts) {
        self.stats.arrivals_early += c.early;
        self.stats.arrivals_early_us += c.early_us;
        self.stats.arrivals_raised += c.raised;
        self.stats.arrivals_lowered += c.lowered;
    }

    /// Send `contents` to `to` as datagrams of `segment_size` bytes (the last may be shorter).
    /// Waits (bounded) while the socket buffer is full. When the kernel refuses segmentation,
    /// the same datagrams go out one per call, and later batches are not segmented.
    pub fn send(&mut self, to: SocketAddr, contents: &[u8], segment_size: usize) -> io::Result<()> {
        if contents.is_empty() {
            return Ok(());
        }
        let segment_size = segment_size.clamp(1, contents.len());
        let segments = contents.len().div_ceil(segment_size);
        if segments > 1 && segments <= self.max_segments() && contents.len() <= MAX_GSO_BYTES {
            match self.send_one(to, contents, Some(segment_size)) {
                Ok(()) => {
                    self.stats.gso_batches += 1;
                    self.stats.datagrams_sent += segments as u64;
                    return Ok(());
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                    // quinn-udp has switched GSO off for this socket; resend one by one.
                    tracing::info!("kernel refused a GSO batch ({e}); sending single datagrams");
                    self.stats.gso_fallbacks += 1;
                }
                Err(e) => return Err(e),
            }
        }
        for chunk in contents.chunks(segment_size) {
            self.send_one(to, chunk, None)?;
            self.stats.datagrams_sent += 1;
        }
        Ok(())
    }

    fn send_one(
        &mut self,
        to: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit =
            Transmit { destination: to, ecn: self.ecn, contents, segment_size, src_ip: None };
        for _ in 0..1000 {
            match self.state.try_send(UdpSockRef::from(&self.sock), &transmit) {
                Ok(()) => {
                    self.stats.send_calls += 1;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_writable(&self.sock, Duration::from_millis(10))?;
                }
                // Linux reports a momentarily full device queue as ENOBUFS.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "socket send buffer stayed full"))
    }

    /// Hand every waiting datagram to `f` (stopping after about `max`, so timers and
    /// transmissions get their turn). GRO buffers are split at their stride, so `f` always sees
    /// single datagrams. Returns how many were handed over.
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(Received<'_>)) -> io::Result<usize> {
        let mut n = 0;
        while n < max {
            let got = {
                let mut slices: Vec<IoSliceMut<'_>> =
                    self.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                match self.state.recv(UdpSockRef::from(&self.sock), &mut slices, &mut self.metas) {
                    Ok(got) => got,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.stats.recv_calls += 1;
            for (meta, buf) in self.metas.iter().zip(&self.bufs).take(got) {
                let data = &buf[..meta.len.min(buf.len())];
                let stride = if meta.stride == 0 { data.len().max(1) } else { meta.stride };
                if data.len() > stride {
                    self.stats.gro_buffers += 1;
                }
                let ce = meta.ecn == Some(EcnCodepoint::Ce);
                for d in data.chunks(stride) {
                    n += 1;
                    self.stats.datagrams_received += 1;
                    self.stats.datagrams_stamped += u64::from(meta.timestamp.is_some());
                    self.stats.datagrams_ce += u64::from(ce);
                    f(Received { from: meta.addr, data: d, stamp: meta.timestamp, ce });
                }
            }
            if got < RECV_BATCH {
                break; // the queue is drained; save the call that would say WouldBlock
            }
        }
        Ok(n)
    }
}

fn wait_writable(sock: &UdpSocket, timeout: Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd that lives for the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Datagrams collected for one GSO send: one destination, equal-sized segments except possibly
/// the last, at most [`MAX_GSO_BYTES`] and `max_segments` segments.
#[derive(Debug)]
pub struct TxBatch {
    buf: Vec<u8>,
    dest: Option<SocketAddr>,
    segment: usize,
    count: usize,
    /// The last segment was shorter than `segment`: nothing may follow it.
    closed: bool,
    /// Largest batch sent so far, in segments.
    largest: usize,
}

impl Default for TxBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl TxBatch {
    /// An empty batch.
    pub fn new() -> Self {
        TxBatch {
            buf: Vec::with_capacity(MAX_GSO_BYTES),
            dest: None,
            segment: 0,
            count: 0,
            closed: false,
            largest: 0,
        }
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Largest batch sent so far, in segments.
    pub fn largest(&self) -> usize {
        self.largest
    }

    fn fits(&self, to: SocketAddr, len: usize, max_segments: usize) -> bool {
        self.count == 0
            || (self.dest == Some(to)
                && !self.closed
                && len <= self.segment
                && self.count < max_segments
                && self.buf.len() + len <= MAX_GSO_BYTES)
    }

    /// Add one datagram for `to`, first sending what is waiting if it cannot join the batch;
    /// sends when the batch is full.
    pub fn push(&mut self, sock: &mut BatchSocket, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let max_segments = sock.max_segments();
        if !self.fits(to, data.len(), max_segments) {
            self.flush(sock)?;
        }
        if self.count == 0 {
            self.dest = Some(to);
            self.segment = data.len();
        }
        self.buf.extend_from_slice(data);
        self.count += 1;
        self.closed = data.len() < self.segment;
        if self.count >= max_segments || self.buf.len() + self.segment > MAX_GSO_BYTES {
            self.flush(sock)?;
        }
        Ok(())
    }

    /// Send what is waiting.
    pub fn flush(&mut self, sock: &mut BatchSocket) -> io::Result<()> {
        let Some(to) = self.dest.take() else { return Ok(()) };
        let result = sock.send(to, &self.buf, self.segment);
        self.largest = self.largest.max(self.count);
        self.buf.clear();
        self.count = 0;
        self.closed = false;
        result
    }
}

/// `SO_MEMINFO` (Linux, generic value): the socket's memory counters, `SK_MEMINFO_DROPS`
/// among them.
#[cfg(target_os = "linux")]
const SO_MEMINFO: libc::c_int = 55;

/// Datagrams the kernel dropped on this socket (`sk_drops`: receive buffer full, bad checksum),
/// read with `SO_MEMINFO`; `None` where the kernel does not say.
pub fn socket_drops(sock: &UdpSocket) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut info = [0u32; 16];
        let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: `info` is writable for `len` bytes and `len` is a valid in/out length.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let idx = libc::SK_MEMINFO_DROPS as usize;
        if rc == 0 && (len as usize) >= (idx + 1) * 4 {
            return Some(u64::from(info[idx]));
        }
        None
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = sock;
        None
    }
}

/// `Udp: RcvbufErrors` from `/proc/net/snmp`: datagrams this network namespace dropped because
/// a socket's receive buffer was full (all sockets together).
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    parse_rcvbuf_errors(&text)
}

fn parse_rcvbuf_errors(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let names = udp.next()?;
    let values = udp.next()?;
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// How long a paced sender should wait past its pacer's deadline so that each wake-up sends a
/// batch: the time half a full GSO batch takes at `rate_bps`, at most 1 ms. With the token
/// bucket one batch deep, a late wake-up (up to another half batch) loses no rate.
pub fn pace_slack(rate_bps: u64) -> Duration {
    let us = (MAX_GSO_BYTES as u64 / 2) * 8_000_000 / rate_bps.max(1);
    Duration::from_micros(us.min(1000))
}

/// Receive buffer to ask for at `rate_bps`: 100 ms of traffic (the kernel doubles the value
/// for its own overhead), at least 32 MiB, at most 1 GiB.
pub fn recv_buffer_for_rate(rate_bps: u64) -> usize {
    let bytes = rate_bps / 8 / 10;
    usize::try_from(bytes).unwrap_or(usize::MAX).clamp(32 << 20, 1 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn pair() -> (BatchSocket, BatchSocket) {
        let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a");
        let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind b");
        (BatchSocket::new(a).expect("a"), BatchSocket::new(b).expect("b"))
    }

    fn datagram(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j) as u8).collect()
    }

    /// Receive until `want` datagrams arrived (bounded number of polls, each waiting for data).
    fn recv_all(sock: &mut BatchSocket, want: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for _ in 0..200 {
            if got.len() >= want {
                break;
            }
            crate::net::io::precise_wait(sock.socket(), Duration::from_millis(50)).expect("poll");
            sock.recv(usize::MAX, |r| got.push(r.data.to_vec())).expect("recv");
        }
        got
    }

    fn roundtrip(cap: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, BatchStats, usize) {
        let (mut a, mut b) = pair();
        a.limit_segments(cap);
        let to = b.socket().local_addr().expect("addr");
        let mut batch = TxBatch::new();
        // 40 full datagrams, a short one (closes a batch), 10 more full ones: few enough to fit
        // the default receive buffer even unbatched.
        let mut sent: Vec<Vec<u8>> = (0..40).map(|i| datagram(i, 1432)).collect();
        sent.push(datagram(40, 700));
        sent.extend((41..51).map(|i| datagram(i, 1432)));
        for d in &sent {
            batch.push(&mut a, to, d).expect("push");
        }
        batch.flush(&mut a).expect("flush");
        let got = recv_all(&mut b, sent.len());
        (sent, got, a.stats(), batch.largest())
    }

    #[test]
    fn the_ecn_field_goes_out_as_set_and_a_ce_mark_is_read_back() {
        let (mut a, mut b) = pair();
        let to = b.socket().local_addr().expect("addr");
        // What an AQM would have written on the path, sent directly: CE, then ECT(0).
        let mut marks = Vec::new();
        for (ecn, n) in [(Some(EcnCodepoint::Ce), 3), (Some(EcnCodepoint::Ect0), 2), (None, 1)] {
            a.ecn = ecn;
            let mut batch = TxBatch::new();
            for i in 0..n {
                batch.push(&mut a, to, &datagram(i, 1000)).expect("push");
            }
            batch.flush(&mut a).expect("flush");
            let mut got = Vec::new();
            for _ in 0..200 {
                if got.len() >= n {
                    break;
                }
                crate::net::io::precise_wait(b.socket(), Duration::from_millis(50)).expect("poll");
                b.recv(usize::MAX, |r| got.push(r.ce)).expect("recv");
            }
            assert_eq!(got.len(), n);
            marks.push(got);
        }
        assert_eq!(marks, [vec![true; 3], vec![false; 2], vec![false]]);
        assert_eq!(b.stats().datagrams_ce, 3);
        // The sender's switch: ECT(0) or nothing.
        a.set_ecn_capable(true);
        assert_eq!(a.ecn, Some(EcnCodepoint::Ect0));
        a.set_ecn_capable(false);
        assert_eq!(a.ecn, None);
    }

    #[test]
    fn batches_arrive_as_separate_datagrams() {
        let (sent, got, stats, largest) = roundtrip(usize::MAX);
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "datagrams differ");
        assert_eq!(stats.datagrams_sent, sent.len() as u64);
        assert!(largest <= MAX_GSO_BYTES / 1432);
        if stats.gso_batches > 0 {
            assert!(stats.send_calls < sent.len() as u64);
        }
    }

    #[test]
    fn forced_single_segments_still_deliver_everything() {
        let (sent, got, stats, largest) = roundtrip(1);
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "datagrams differ");
        assert_eq!(stats.gso_batches, 0);
        assert_eq!(stats.send_calls, sent.len() as u64);
        assert_eq!(largest, 1);
    }

    /// The kernel stamps what it receives (`SO_TIMESTAMPNS`), every datagram of a GRO buffer
    /// with the buffer's stamp, and each stamp lies between the send and the read.
    #[test]
    fn received_datagrams_carry_kernel_stamps() {
        let (mut a, mut b) = pair();
        let to = b.socket().local_addr().expect("addr");
        let wall = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let before = wall();
        let mut batch = TxBatch::new();
        for i in 0..20 {
            batch.push(&mut a, to, &datagram(i, 1000)).expect("push");
        }
        batch.flush(&mut a).expect("flush");
        let mut stamps = Vec::new();
        for _ in 0..200 {
            if stamps.len() >= 20 {
                break;
            }
            crate::net::io::precise_wait(b.socket(), Duration::from_millis(50)).expect("poll");
            b.recv(usize::MAX, |r| stamps.push(r.stamp)).expect("recv");
        }
        let after = wall();
        assert_eq!(stamps.len(), 20);
        let stats = b.stats();
        if cfg!(target_os = "linux") {
            assert_eq!(stats.datagrams_stamped, 20, "{stats:?}");
            for s in &stamps {
                let s = s.expect("stamped");
                assert!(s >= before - Duration::from_millis(1) && s <= after, "{s:?}");
            }
        }
        assert_eq!(stats.datagrams_stamped, stamps.iter().filter(|s| s.is_some()).count() as u64);
    }

    #[test]
    fn batch_rules() {
        let to: SocketAddr = (Ipv4Addr::LOCALHOST, 9).into();
        let other: SocketAddr = (Ipv4Addr::LOCALHOST, 10).into();
        let mut b = TxBatch::new();
        b.dest = Some(to);
        b.segment = 100;
        b.count = 1;
        b.buf.extend_from_slice(&[0; 100]);
        assert!(b.fits(to, 100, 64));
        assert!(b.fits(to, 50, 64), "a shorter last segment may join");
        assert!(!b.fits(to, 101, 64), "a longer one may not");
        assert!(!b.fits(other, 100, 64), "one destination per batch");
        assert!(!b.fits(to, 100, 1), "segment cap");
        b.closed = true;
        assert!(!b.fits(to, 100, 64), "nothing after a short segment");
    }

    #[test]
    fn snmp_parsing() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 10 0 3 7 42 0\nUdpLite: InDatagrams RcvbufErrors\nUdpLite: 0 0\n";
        assert_eq!(parse_rcvbuf_errors(text), Some(42));
        assert_eq!(parse_rcvbuf_errors("garbage"), None);
        assert_eq!(parse_rcvbuf_errors("Udp: RcvbufErrors\nUdp: x\n"), None);
    }

    #[test]
    fn drops_counter_is_readable() {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        if cfg!(target_os = "linux") {
            assert_eq!(socket_drops(&s), Some(0));
        }
    }

    #[test]
    fn slack_is_half_a_batch() {
        assert_eq!(pace_slack(1_000_000_000), Duration::from_micros(262));
        assert_eq!(pace_slack(5_000_000_000), Duration::from_micros(52));
        assert_eq!(pace_slack(100_000_000), Duration::from_millis(1));
        assert_eq!(pace_slack(0), Duration::from_millis(1));
    }

    #[test]
    fn buffer_follows_rate() {
        assert_eq!(recv_buffer_for_rate(1_000_000), 32 << 20);
        assert_eq!(recv_buffer_for_rate(5_000_000_000), 62_500_000);
        assert_eq!(recv_buffer_for_rate(u64::MAX), 1 << 30);
    }
}
