//! The rate simulator: one sender running automatic rate control (`proto::rate`) and a few
//! receivers, on a virtual clock, over links that have a capacity and a drop-tail queue, so
//! that pushing faster than a link builds delay and then loss, as a real bottleneck does:
//!
//! ```text
//! sender ─▶ [uplink: Bottleneck, shared with a TcpFlow] ─▶ fan-out ─▶ [link i: Bottleneck,
//!           random loss p_i, one-way delay d_i] ─▶ receiver i ─── feedback (d_i, no loss) ──▶ sender
//! ```
//!
//! [`run`] plays a [`Scenario`] and samples, every [`SAMPLE`], the sender's rate, what each
//! receiver got and what the competing TCP flow got ([`RateRun`]); [`plot::svg`] draws it.
//! Everything is seeded: a scenario always gives the same run.

pub mod cases;
mod link;
pub mod plot;

pub use link::{Bottleneck, TcpFlow, TCP_SEGMENT};

use super::consume::{drive_receiver_events, Decoder, FecModel, MemSink};
use super::object::Object;
use super::serve::{serve_sender_events, MemSource, SenderLog};
use crate::proto::rate::{AutoConfig, RateControl, RateSummary};
use crate::proto::receiver::{Receiver, ReceiverConfig};
use crate::proto::sender::{Sender, SenderConfig, StragglerPolicy};
use crate::proto::time::{Duration, Instant};
use crate::proto::Dest;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Sampling period of a run.
pub const SAMPLE: Duration = Duration::from_millis(100);

/// One receiver's path from the fan-out point.
#[derive(Debug, Clone)]
pub struct RxPath {
    /// Its link.
    pub link: Bottleneck,
    /// Random loss on it (independent per datagram), after the link.
    pub loss: f64,
    /// One-way propagation delay (each way).
    pub delay: Duration,
    /// The receiving host's capacity, if it is a limit: datagrams above it (beyond a burst of
    /// its `queue_bytes`) are dropped at arrival without delaying the others, as a full socket
    /// receive buffer does, and reported to the receiver as socket drops
    /// (`Receiver::note_socket_drops`).
    pub host: Option<Bottleneck>,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The receivers' paths.
    pub receivers: Vec<RxPath>,
    /// The sender's uplink, if it is a bottleneck of its own.
    pub uplink: Option<Bottleneck>,
    /// A competing TCP flow across the uplink from this time on (needs an uplink).
    pub tcp_from: Option<Duration>,
    /// Base round trip of the TCP flow.
    pub tcp_rtt: Duration,
    /// Virtual time simulated.
    pub duration: Duration,
    /// Payload bytes pushed (the push may end before `duration`).
    pub object_bytes: usize,
    /// Seed of the object bytes, the loss draws and the receivers.
    pub seed: u64,
    /// The controller's settings.
    pub auto: AutoConfig,
    /// The sender's straggler policy.
    pub straggler: StragglerPolicy,
}

impl Scenario {
    /// `receivers` receivers on links of `bps` with a queue of `queue_ms` at that rate, 5 ms
    /// away, no loss, no uplink bottleneck; 8 s; a floor of 2 Mbit/s.
    pub fn links(receivers: usize, bps: u64, queue_ms: u64, seed: u64) -> Self {
        let path = RxPath {
            link: Bottleneck::new(bps, queue_bytes(bps, queue_ms)),
            loss: 0.0,
            delay: Duration::from_millis(5),
            host: None,
        };
        Scenario {
            receivers: vec![path; receivers],
            uplink: None,
            tcp_from: None,
            tcp_rtt: Duration::from_millis(10),
            duration: Duration::from_secs(8),
            object_bytes: (bps as f64 / 8.0 * 8.0) as usize,
            seed,
            auto: AutoConfig {
                min_bps: 2_000_000,
                start_bps: 2_000_000,
                max_bps: 10_000_000_000,
                ..AutoConfig::default()
            },
            straggler: StragglerPolicy::default(),
        }
    }
}

/// Bytes a queue of `ms` milliseconds at `bps` holds.
pub fn queue_bytes(bps: u64, ms: u64) -> usize {
    (bps as f64 / 8.0 * ms as f64 / 1000.0) as usize
}

/// One sample of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the start (end of the sampling period).
    pub t: f64,
    /// The sender's rate at the sample, bits per second.
    pub rate_bps: u64,
    /// What each receiver got over the period (datagram bytes), bits per second.
    pub recv_bps: Vec<u64>,
    /// What the TCP flow got over the period, bits per second.
    pub tcp_bps: u64,
    /// The lowest link (or host) capacity on the path to any receiver at the sample, bits per
    /// second.
    pub capacity_bps: u64,
    /// How long a datagram would wait in each receiver link's queue at the sample.
    pub queue_delay: Vec<Duration>,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RateRun {
    /// Every [`SAMPLE`].
    pub samples: Vec<Sample>,
    /// The controller's own account at the end.
    pub summary: RateSummary,
    /// When each receiver placed a verified copy, if it did.
    pub completed: Vec<Option<Duration>>,
    /// Receivers the sender dropped as stragglers (node ids).
    pub dropped: Vec<u32>,
    /// Node id of receiver 0 (the others follow in order).
    pub first_node: u32,
    /// Drops at each receiver link's queue.
    pub queue_drops: Vec<u64>,
    /// Datagrams each receiving host dropped at its socket (see [`RxPath::host`]).
    pub socket_drops: Vec<u64>,
    /// Datagrams each receiver link's queue marked ECN Congestion Experienced.
    pub queue_marks: Vec<u64>,
    /// When each receiver link's queue dropped (the first `MAX_DROP_TIMES`).
    pub queue_drop_times: Vec<Vec<Duration>>,
    /// Virtual time at the end.
    pub end: Duration,
}

impl RateRun {
    /// Mean of `f` over the samples whose time is within `[from, to)` seconds.
    pub fn mean(&self, from: f64, to: f64, f: impl Fn(&Sample) -> f64) -> f64 {
        let v: Vec<f64> = self.samples.iter().filter(|s| s.t > from && s.t <= to).map(f).collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }
}

#[derive(Debug)]
enum Item {
    Wake(usize),
    /// A sender datagram past the uplink; whether it was marked CE there.
    Fanout(Arc<[u8]>, bool),
    /// A sender datagram to receiver i; whether it was marked CE on the way.
    Deliver(usize, Arc<[u8]>, bool),
    Feedback(usize, Arc<[u8]>),
    Overheard(usize, usize, Arc<[u8]>),
    TcpAck,
    TcpLoss,
    TcpStart,
}

struct Ev(Instant, u64, Item);
impl PartialEq for Ev {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ev {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

struct Sim<'a> {
    sc: &'a Scenario,
    now: Instant,
    seq: u64,
    heap: BinaryHeap<Reverse<Ev>>,
    rng: ChaCha8Rng,
    sender: Sender,
    source: MemSource,
    log: SenderLog,
    decoder: Decoder,
    rxs: Vec<(Receiver, MemSink)>,
    links: Vec<Bottleneck>,
    hosts: Vec<Option<Bottleneck>>,
    uplink: Option<Bottleneck>,
    tcp: Option<TcpFlow>,
    planned: Vec<Option<Instant>>,
    buf: Vec<u8>,
    got: Vec<u64>,
    tcp_got: u64,
}

fn addr(node: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 1 + node as u8], 7000))
}

/// First receiver's node id.
const FIRST_NODE: u32 = 2;

/// Play `sc` (see the module docs).
pub fn run(sc: &Scenario) -> RateRun {
    let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
    let mut bytes = vec![0u8; sc.object_bytes.max(1)];
    rng.fill_bytes(&mut bytes);
    let object = Arc::new(Object::new(bytes, 1200, 64).expect("a valid object"));
    let n = sc.receivers.len();
    let cfg = SenderConfig {
        rate_control: RateControl::Auto(sc.auto.clone()),
        expected_receivers: Some(n as u32),
        straggler: sc.straggler,
        linger: Duration::from_millis(200),
        ..SenderConfig::default()
    };
    let sender = object.sender(cfg, Instant::ZERO).expect("a valid sender");
    let rxs = (0..n)
        .map(|i| {
            let rx = Receiver::new(ReceiverConfig {
                node: FIRST_NODE + i as u32,
                seed: sc.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                ..ReceiverConfig::default()
            });
            (rx, MemSink::new(Arc::clone(&object)))
        })
        .collect();
    let mut sim = Sim {
        sc,
        now: Instant::ZERO,
        seq: 0,
        heap: BinaryHeap::new(),
        rng,
        sender,
        source: MemSource::new(Arc::clone(&object)),
        log: SenderLog::default(),
        decoder: Decoder::new(FecModel::Ideal, Arc::clone(&object)),
        rxs,
        links: sc.receivers.iter().map(|r| r.link.clone()).collect(),
        hosts: sc.receivers.iter().map(|r| r.host.clone()).collect(),
        uplink: sc.uplink.clone(),
        tcp: None,
        planned: vec![None; n + 1],
        buf: Vec::with_capacity(2048),
        got: vec![0; n],
        tcp_got: 0,
    };
    if let (Some(at), Some(_)) = (sc.tcp_from, &sc.uplink) {
        sim.push(Instant::ZERO + at, Item::TcpStart);
    }
    for node in 0..=n {
        sim.drain(node);
    }
    sim.play()
}

impl Sim<'_> {
    fn push(&mut self, at: Instant, item: Item) {
        self.seq += 1;
        self.heap.push(Reverse(Ev(at.max(self.now), self.seq, item)));
    }

    fn play(mut self) -> RateRun {
        let end = Instant::ZERO + self.sc.duration;
        let mut samples = Vec::new();
        let mut next_sample = Instant::ZERO + SAMPLE;
        let mut last_got = vec![0u64; self.rxs.len()];
        let mut last_tcp = 0u64;
        loop {
            let next = self.heap.peek().map(|Reverse(e)| e.0);
            let done =
                self.sender.is_finished() && self.rxs.iter().all(|(_, s)| s.outcome().is_some());
            let stop = done || next.is_none_or(|a| a > end);
            let until = match next {
                _ if done => self.now,
                Some(a) if a <= end => a,
                _ => end,
            };
            while next_sample <= until {
                samples.push(self.sample(next_sample, &mut last_got, &mut last_tcp));
                next_sample += SAMPLE;
            }
            if stop {
                break;
            }
            let Some(Reverse(Ev(at, _, item))) = self.heap.pop() else { break };
            self.now = at;
            self.handle(item);
        }
        let completed = self
            .rxs
            .iter()
            .map(|(_, s)| {
                s.stored()
                    .filter(|(_, ok)| *ok)
                    .map(|(t, _)| t.saturating_duration_since(Instant::ZERO))
            })
            .collect();
        RateRun {
            samples,
            summary: self.sender.rate_summary(),
            completed,
            dropped: self.log.dropped.clone(),
            first_node: FIRST_NODE,
            queue_drops: self.links.iter().map(|l| l.drops).collect(),
            socket_drops: self.hosts.iter().map(|h| h.as_ref().map_or(0, |h| h.drops)).collect(),
            queue_marks: self.links.iter().map(|l| l.marks).collect(),
            queue_drop_times: self
                .links
                .iter()
                .map(|l| {
                    l.drop_times
                        .iter()
                        .map(|t| t.saturating_duration_since(Instant::ZERO))
                        .collect()
                })
                .collect(),
            end: self.now.saturating_duration_since(Instant::ZERO),
        }
    }

    fn sample(&self, at: Instant, last_got: &mut [u64], last_tcp: &mut u64) -> Sample {
        let secs = SAMPLE.as_secs_f64();
        let bps = |now: u64, before: u64| ((now - before) as f64 * 8.0 / secs) as u64;
        let recv_bps = self.got.iter().zip(last_got.iter()).map(|(g, l)| bps(*g, *l)).collect();
        last_got.copy_from_slice(&self.got);
        let tcp_bps = bps(self.tcp_got, *last_tcp);
        *last_tcp = self.tcp_got;
        let up = self.uplink.as_ref().map_or(u64::MAX, |u| u.capacity_at(at));
        let links = self.links.iter().map(|l| l.capacity_at(at)).min().unwrap_or(u64::MAX);
        let hosts = self.hosts.iter().flatten().map(|h| h.capacity_at(at)).min();
        let links = links.min(hosts.unwrap_or(u64::MAX));
        Sample {
            t: at.saturating_duration_since(Instant::ZERO).as_secs_f64(),
            rate_bps: self.sender.rate(),
            recv_bps,
            tcp_bps,
            capacity_bps: links.min(up),
            queue_delay: self.links.iter().map(|l| l.delay_at(at)).collect(),
        }
    }

    fn handle(&mut self, item: Item) {
        match item {
            Item::Wake(node) => {
                if self.planned[node] != Some(self.now) {
                    return;
                }
                self.planned[node] = None;
                if node == 0 {
                    self.sender.handle_timeout(self.now);
                } else {
                    self.rxs[node - 1].0.handle_timeout(self.now);
                }
                self.drain(node);
            }
            Item::Fanout(data, ce) => {
                // The sender's datagrams are ECN-capable (automatic rate control answers marks).
                for i in 0..self.rxs.len() {
                    let path = &self.sc.receivers[i];
                    let Some((left, marked)) =
                        self.links[i].enqueue_ect(self.now, data.len(), true)
                    else {
                        continue;
                    };
                    if self.rng.gen::<f64>() < path.loss {
                        continue;
                    }
                    self.push(left + path.delay, Item::Deliver(i, Arc::clone(&data), ce || marked));
                }
            }
            Item::Deliver(i, data, ce) => {
                if let Some(host) = self.hosts[i].as_mut() {
                    if host.enqueue(self.now, data.len()).is_none() {
                        let total = host.drops;
                        self.rxs[i].0.note_socket_drops(self.now, total);
                        return;
                    }
                }
                self.got[i] += data.len() as u64;
                if ce {
                    self.rxs[i].0.note_ce_mark();
                }
                self.rxs[i].0.handle_datagram(self.now, addr(0), &data);
                self.drain(i + 1);
            }
            Item::Feedback(i, data) => {
                self.sender.handle_datagram(self.now, addr(i + 1), &data);
                self.drain(0);
            }
            Item::Overheard(from, to, data) => {
                self.rxs[to].0.handle_datagram(self.now, addr(from + 1), &data);
                self.drain(to + 1);
            }
            Item::TcpStart => {
                self.tcp = Some(TcpFlow::new(self.sc.tcp_rtt));
                self.tcp_send();
            }
            Item::TcpAck => {
                if let Some(t) = self.tcp.as_mut() {
                    t.on_ack();
                    self.tcp_got += TCP_SEGMENT as u64;
                }
                self.tcp_send();
            }
            Item::TcpLoss => {
                let rtt = self.sc.tcp_rtt;
                if let Some(t) = self.tcp.as_mut() {
                    t.on_loss(self.now, rtt);
                }
                self.tcp_send();
            }
        }
    }

    /// Send what the TCP window allows into the uplink.
    fn tcp_send(&mut self) {
        let rtt = self.sc.tcp_rtt;
        while self.tcp.as_ref().is_some_and(TcpFlow::may_send) {
            if let Some(t) = self.tcp.as_mut() {
                t.on_sent();
            }
            let left = self.uplink.as_mut().and_then(|u| u.enqueue(self.now, TCP_SEGMENT));
            match left {
                Some(left) => self.push(left + rtt, Item::TcpAck),
                None => self.push(self.now + rtt, Item::TcpLoss),
            }
        }
    }

    /// Send what `node` has to send, act on its events, and re-arm its timer.
    fn drain(&mut self, node: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let mut progressed = false;
            loop {
                let sent = if node == 0 {
                    self.sender.poll_transmit(self.now, &mut buf)
                } else {
                    self.rxs[node - 1].0.poll_transmit(self.now, &mut buf)
                };
                let Some(t) = sent else { break };
                progressed = true;
                self.route(node, t.dest, Arc::from(&buf[..t.size]));
            }
            progressed |= if node == 0 {
                serve_sender_events(&mut self.sender, self.now, &self.source, &mut self.log)
            } else {
                let (rx, sink) = &mut self.rxs[node - 1];
                drive_receiver_events(rx, self.now, &self.decoder, sink)
            };
            if !progressed {
                break;
            }
        }
        self.buf = buf;
        let t = if node == 0 {
            self.sender.poll_timeout()
        } else {
            self.rxs[node - 1].0.poll_timeout()
        };
        if let Some(t) = t {
            let t = t.max(self.now);
            if self.planned[node] != Some(t) {
                self.planned[node] = Some(t);
                self.push(t, Item::Wake(node));
            }
        }
    }

    fn route(&mut self, node: usize, dest: Dest, data: Arc<[u8]>) {
        if node == 0 {
            match self.uplink.as_mut() {
                Some(u) => {
                    if let Some((left, ce)) = u.enqueue_ect(self.now, data.len(), true) {
                        self.push(left, Item::Fanout(data, ce));
                    }
                }
                None => self.push(self.now, Item::Fanout(data, false)),
            }
            return;
        }
        let i = node - 1;
        let back = self.sc.receivers[i].delay;
        self.push(self.now + back, Item::Feedback(i, Arc::clone(&data)));
        if dest == Dest::All {
            for j in (0..self.rxs.len()).filter(|j| *j != i) {
                let d = back + self.sc.receivers[j].delay;
                self.push(self.now + d, Item::Overheard(i, j, Arc::clone(&data)));
            }
        }
    }
}
