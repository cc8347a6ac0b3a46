//! The receiver's introduction: once it locks onto a session it sends a Hello join (its node id
//! in the header, its host name in the body) to the sender, and repeats it every four GRTTs
//! (within [`HELLO_INTERVAL_MIN`]..=[`HELLO_INTERVAL_MAX`]) until the sender's welcome names it,
//! at most [`HELLO_TRIES`] times. The sender counts a report only from a node it heard before,
//! from the same address: the join is how a receiver that never NAKs nor echoes is heard.
//! The welcome is its own packet (not a report acknowledgement), so it can never end the
//! repetition of a report.

use super::session::{Ctx, Session, Timer};
use super::*;

/// Joins sent at most per session (the first at lock-on).
pub const HELLO_TRIES: u32 = 20;
/// Shortest interval between two joins.
pub const HELLO_INTERVAL_MIN: Duration = Duration::from_millis(50);
/// Longest interval between two joins.
pub const HELLO_INTERVAL_MAX: Duration = Duration::from_secs(1);

/// Where the receiver is in its introduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HelloState {
    /// Joins sent so far.
    pub(super) sent: u32,
    /// The sender's welcome named this receiver.
    pub(super) welcomed: bool,
}

impl HelloState {
    pub(super) fn new() -> Self {
        HelloState { sent: 0, welcomed: false }
    }
}

/// The host name a receiver announces when none was configured: its node id in hex.
pub fn default_host_name(node: u32) -> HostName {
    HostName::new(&format!("node-{node:08x}")).expect("a valid host name")
}

impl Session {
    /// Lock-on: the first join goes out at once.
    pub(super) fn start_hello(&mut self, now: Instant) {
        self.timers.set(Timer::Hello, now);
    }

    /// [`Timer::Hello`] fired: send a join unless welcomed or out of tries, and arm the next.
    pub(super) fn hello_due(&mut self, cx: &mut Ctx, now: Instant) {
        if self.hello.welcomed || self.hello.sent >= HELLO_TRIES {
            return;
        }
        self.hello.sent += 1;
        let host = cx.cfg.host.clone().unwrap_or_else(|| default_host_name(cx.cfg.node));
        self.outbox.push_back(Packet::Hello(Hello::Join { host }));
        if self.hello.sent < HELLO_TRIES {
            let interval = (self.grtt * 4).clamp(HELLO_INTERVAL_MIN, HELLO_INTERVAL_MAX);
            self.timers.set(Timer::Hello, now + interval);
        }
    }

    /// A Hello from the sender: a welcome that names us ends the joins.
    pub(super) fn on_hello(&mut self, cx: &mut Ctx, hello: &Hello) {
        if let Hello::Welcome { nodes } = hello {
            if nodes.contains(&cx.cfg.node) {
                self.hello.welcomed = true;
                self.timers.stop(Timer::Hello);
            }
        }
    }

    /// Whether the sender welcomed this receiver, and the joins sent so far.
    pub(super) fn hello_state(&self) -> (bool, u32) {
        (self.hello.welcomed, self.hello.sent)
    }
}

impl Receiver {
    /// Once locked onto a session: whether the sender welcomed this receiver (heard its Hello),
    /// and how many joins it sent.
    pub fn hello_state(&self) -> Option<(bool, u32)> {
        self.session.as_ref().map(Session::hello_state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENDER: u32 = 1;
    const SESSION: u32 = 9;
    const ME: u32 = 0x0bad_cafe;

    fn from() -> SocketAddr {
        SocketAddr::from(([198, 18, 0, 1], 7000))
    }

    fn datagram(node: u32, packet: &Packet) -> Vec<u8> {
        let mut b = Vec::new();
        wire::emit(&Header { flags: 0, session: SESSION, node }, packet, &mut b);
        b
    }

    /// Lock `r` at time zero onto SESSION: announced and its manifest delivered.
    fn lock(r: &mut Receiver) {
        use crate::proto::receiver::tests::{announce, feed_manifest, with_manifest};
        let (a, bytes) = with_manifest(announce(1_000_000));
        r.handle_datagram(Instant::ZERO, from(), &datagram(SENDER, &Packet::Announce(a)));
        feed_manifest(r, Instant::ZERO, from(), &a, &bytes);
        assert_eq!(r.session_id(), Some(SESSION));
    }

    /// The joins `r` sends up to `until`, driving its timers; each with when it went out.
    fn joins(r: &mut Receiver, from_t: Instant, until: Instant) -> Vec<(Instant, String)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let mut now = from_t;
        for _ in 0..10_000 {
            r.handle_timeout(now);
            while r.poll_transmit(now, &mut buf).is_some() {
                if let Ok((h, Packet::Hello(Hello::Join { host }))) = wire::parse(&buf) {
                    assert_eq!(h.node, ME);
                    out.push((now, host.to_string()));
                }
            }
            match r.poll_timeout() {
                Some(t) if t > now && t <= until => now = t,
                _ => break,
            }
        }
        out
    }

    fn receiver(host: Option<&str>) -> Receiver {
        let host = host.map(|h| HostName::new(h).unwrap());
        Receiver::new(ReceiverConfig { node: ME, host, ..ReceiverConfig::default() })
    }

    #[test]
    fn joins_repeat_a_bounded_number_of_times() {
        let mut r = receiver(Some("web-01"));
        assert!(joins(&mut r, Instant::ZERO, Instant::ZERO + Duration::from_secs(60)).is_empty());
        lock(&mut r);
        let sent = joins(&mut r, Instant::ZERO, Instant::ZERO + Duration::from_secs(60));
        assert_eq!(sent.len(), HELLO_TRIES as usize, "no welcome: every try, then silence");
        assert_eq!(sent[0], (Instant::ZERO, "web-01".to_string()), "the first at lock-on");
        // GRTT 1 ms: four GRTTs is below the floor.
        assert_eq!(sent[1].0 - sent[0].0, HELLO_INTERVAL_MIN);
        assert_eq!(r.hello_state().unwrap(), (false, HELLO_TRIES));
    }

    #[test]
    fn a_welcome_naming_us_ends_the_joins_and_others_do_not() {
        let mut r = receiver(None);
        lock(&mut r);
        let t1 = Instant::ZERO + HELLO_INTERVAL_MIN;
        let first = joins(&mut r, Instant::ZERO, t1);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].1, format!("node-{ME:08x}"), "the default name is the node id");
        let welcome = |nodes: Vec<u32>| Packet::Hello(Hello::Welcome { nodes });
        // Someone else's welcome, and a welcome of us from a node that is not the sender.
        r.handle_datagram(t1, from(), &datagram(SENDER, &welcome(vec![ME + 1])));
        r.handle_datagram(t1, from(), &datagram(SENDER + 5, &welcome(vec![ME])));
        let later = joins(&mut r, t1, t1 + HELLO_INTERVAL_MIN);
        assert_eq!(later.len(), 1, "still joining");
        let t2 = t1 + HELLO_INTERVAL_MIN;
        r.handle_datagram(t2, from(), &datagram(SENDER, &welcome(vec![ME + 1, ME])));
        assert!(joins(&mut r, t2, t2 + Duration::from_secs(60)).is_empty());
        assert_eq!(r.hello_state().unwrap(), (true, 3));
    }
}
