//! Phase 2 of a window (module `window`): each node takes its copies and its timer due in the
//! window, in time order, on its own clock. The sender goes first, on the calling thread; the
//! receivers then run side by side on up to [`Harness::set_threads`] threads, each thread a
//! contiguous range of receivers taken in index order. What they send and arm comes back as
//! lists ([`Out`]) that the caller applies in node order, so the event queue, the trace and
//! every result are the same for any number of threads.

use super::draw::{draw, Drawn};
use super::local::{Env, Local, Out};
use super::window::{Flight, Window};
use super::{Harness, Peer, Rx};
use crate::proto::auth::Keyring;
use crate::proto::time::Instant;
use crate::proto::wire::{Header, Packet};

/// A datagram of the window, parsed (`None`: it does not parse).
type Parsed<'a> = Option<(Header, Packet<'a>)>;

/// Receivers a thread takes at least (unless a test says less): below this a window runs on
/// one thread, where a thread would cost more than it saves.
pub(super) const MIN_PER_THREAD: usize = 64;

/// One node's side of phase 2.
trait Visit {
    /// When its armed timer is due, if it is armed.
    fn timer(&self) -> Option<Instant>;
    /// Flight `i` of the window reaches it.
    fn copy(&mut self, i: usize);
    /// Its timer fires at `at`.
    fn fire(&mut self, at: Instant);
}

/// Take `copies` (flight indices, arrival order) and every timer due before `end`, in time
/// order (a copy before a timer due at the same instant); returns the last instant acted at.
fn visit(v: &mut impl Visit, flights: &[Flight], copies: &[usize], end: Instant) -> Instant {
    let (mut next, mut latest) = (0, Instant::ZERO);
    loop {
        let timer = v.timer().filter(|t| *t < end);
        let copy = copies.get(next).map(|&i| (i, flights[i].at));
        match (copy, timer) {
            (Some((i, at)), t) if t.is_none_or(|t| at <= t) => {
                next += 1;
                v.copy(i);
                latest = latest.max(at);
            }
            (_, Some(t)) => {
                v.fire(t);
                latest = latest.max(t);
            }
            (_, None) => return latest,
        }
    }
}

/// The sender in phase 2: it acts through the harness at once.
struct SenderVisit<'h, 'f> {
    h: &'h mut Harness,
    flights: &'f [Flight],
}

impl Visit for SenderVisit<'_, '_> {
    fn timer(&self) -> Option<Instant> {
        self.h.peers[0].timer
    }

    fn copy(&mut self, i: usize) {
        let f = &self.flights[i];
        self.h.now = f.at;
        self.h.receive(0, f.from, &f.data, f.source_block, None);
    }

    fn fire(&mut self, at: Instant) {
        self.h.now = at;
        self.h.fire(0, None);
    }
}

/// A receiver in phase 2: what it sends and arms goes to `out`.
struct ReceiverVisit<'a, 'w> {
    local: Local<'a>,
    env: Env<'w>,
    flights: &'w [Flight],
    parsed: &'w [Parsed<'w>],
    out: &'a mut Vec<(usize, Out)>,
}

impl Visit for ReceiverVisit<'_, '_> {
    fn timer(&self) -> Option<Instant> {
        self.local.peer.timer
    }

    fn copy(&mut self, i: usize) {
        let f = &self.flights[i];
        match (&self.parsed[i], self.local.opens_nothing()) {
            (Some((header, packet)), true) => {
                let packet = super::copy_packet(packet);
                let (env, out) = (self.env, &mut *self.out);
                self.local.receive_parsed(env, f.at, f.from, *header, packet, f.source_block, out);
            }
            _ => self.local.receive(self.env, f.at, f.from, &f.data, f.source_block, self.out),
        }
    }

    fn fire(&mut self, at: Instant) {
        self.local.timeout(self.env, at, self.out);
    }
}

/// Where a thread finds who got a copy of which flight.
#[derive(Clone, Copy)]
enum Copies<'a> {
    /// Phase 1 drew every copy.
    Window(&'a Window),
    /// The thread drew its receivers' copies (module `draw`).
    Drawn(&'a Drawn),
}

impl Copies<'_> {
    /// `into` := the flights (of the first `n`) of which `node` got a copy, in arrival order.
    fn fill(self, node: usize, n: usize, into: &mut Vec<usize>) {
        into.clear();
        match self {
            Copies::Window(w) => into.extend(w.copies(node, n)),
            Copies::Drawn(d) => into.extend(d.copies(node, n)),
        }
    }
}

/// Consecutive receivers' state: endpoints, links and keyrings, receiver `i` at `i` in each.
struct Part<'a> {
    rxs: &'a mut [Rx],
    peers: &'a mut [Peer],
    auth: &'a mut [Option<Keyring>],
}

impl<'a> Part<'a> {
    /// The first `n` receivers, split off.
    fn take_front(&mut self, n: usize) -> Part<'a> {
        let (rxs, rest_r) = std::mem::take(&mut self.rxs).split_at_mut(n);
        let (peers, rest_p) = std::mem::take(&mut self.peers).split_at_mut(n);
        let (auth, rest_a) = std::mem::take(&mut self.auth).split_at_mut(n);
        (self.rxs, self.peers, self.auth) = (rest_r, rest_p, rest_a);
        Part { rxs, peers, auth }
    }
}

/// A thread's share of the receivers: nodes `base..base + part.rxs.len()`, of which `nodes` are
/// touched in the window.
struct Share<'a> {
    base: usize,
    part: Part<'a>,
    nodes: &'a [usize],
}

impl Share<'_> {
    /// Visit every touched node in index order; their outputs and the last instant acted at.
    fn run(
        mut self,
        env: Env<'_>,
        got: Copies<'_>,
        flights: &[Flight],
        parsed: &[Parsed<'_>],
        end: Instant,
    ) -> (Vec<(usize, Out)>, Instant) {
        let (mut out, mut latest, mut copies) = (Vec::new(), Instant::ZERO, Vec::new());
        for &node in self.nodes {
            let j = node - self.base;
            got.fill(node, flights.len(), &mut copies);
            let p = &mut self.part;
            let local =
                Local { node, rx: &mut p.rxs[j], peer: &mut p.peers[j], auth: &mut p.auth[j] };
            let mut v = ReceiverVisit { local, env, flights, parsed, out: &mut out };
            latest = latest.max(visit(&mut v, flights, &copies, end));
        }
        (out, latest)
    }
}

impl Harness {
    /// Receivers of a window run on up to `threads` threads (at least 1; the default is the
    /// machine's parallelism). The results do not depend on it.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Phase 2 for the sender: its `copies` of `flights` and its timer; the last instant.
    pub(super) fn visit_sender(
        &mut self,
        flights: &[Flight],
        copies: &[usize],
        end: Instant,
    ) -> Instant {
        visit(&mut SenderVisit { h: self, flights }, flights, copies, end)
    }

    /// Phase 2 for the receivers touched in the window; their outputs, one list per thread in
    /// node order, the copies the threads drew (module `draw`; none unless the window defers
    /// draws), and `latest` moved to the last instant any of them acted at.
    pub(super) fn visit_receivers(
        &mut self,
        flights: &[Flight],
        parsed: &[Parsed<'_>],
        end: Instant,
        latest: &mut Instant,
    ) -> (Vec<Vec<(usize, Out)>>, Vec<Drawn>) {
        let results = if self.window.any_deferred(flights) {
            self.draw_and_visit(flights, parsed, end)
        } else {
            self.visit_touched(flights, parsed, end)
        };
        let mut outs = Vec::with_capacity(results.len());
        let mut drawn = Vec::new();
        for (out, at, d) in results {
            *latest = (*latest).max(at);
            outs.push(out);
            drawn.extend(d);
        }
        (outs, drawn)
    }

    /// Phase 2 when phase 1 drew every copy to a receiver: the touched receivers in contiguous
    /// ranges with about as many each.
    fn visit_touched(
        &mut self,
        flights: &[Flight],
        parsed: &[Parsed<'_>],
        end: Instant,
    ) -> Vec<Done> {
        let mut nodes = Vec::new();
        let mut at = self.window.next_touched(1);
        while let Some(n) = at {
            nodes.push(n);
            at = self.window.next_touched(n + 1);
        }
        if nodes.is_empty() {
            return Vec::new();
        }
        let threads = self.threads.min(nodes.len() / self.per_thread).max(1);
        let Harness { rxs, peers, auth, window, decoder, unix_base, .. } = self;
        let env = Env { decoder, unix_base: *unix_base };
        let mut rest = Part { rxs, peers: &mut peers[1..], auth: &mut auth[1..] };
        let mut shares = Vec::with_capacity(threads);
        let mut base = 1;
        for t in 0..threads {
            let (lo, hi) = (nodes.len() * t / threads, nodes.len() * (t + 1) / threads);
            let upto = if t + 1 == threads { base + rest.rxs.len() } else { nodes[hi] };
            let part = rest.take_front(upto - base);
            shares.push(Share { base, part, nodes: &nodes[lo..hi] });
            base = upto;
        }
        let window = &*window;
        run_side_by_side(shares, |share| {
            let (out, at) = share.run(env, Copies::Window(window), flights, parsed, end);
            (out, at, None)
        })
    }

    /// Phase 2 when the receivers' threads draw their copies: every receiver, in contiguous
    /// ranges of whole bitmap words with about as many receivers each; each thread draws its
    /// range's copies, then visits the ones touched.
    fn draw_and_visit(
        &mut self,
        flights: &[Flight],
        parsed: &[Parsed<'_>],
        end: Instant,
    ) -> Vec<Done> {
        let nodes = self.peers.len();
        let words = self.window.words();
        let threads = self.threads.min((nodes - 1) / self.per_thread).min(words).max(1);
        let Harness { rxs, peers, auth, window, decoder, unix_base, links, rng, .. } = self;
        let env = Env { decoder, unix_base: *unix_base };
        let (model, mut bad) = links.parts();
        let mut rest = Part { rxs, peers: &mut peers[1..], auth: &mut auth[1..] };
        let mut ranges = Vec::with_capacity(threads);
        let mut base = 1;
        for t in 0..threads {
            let (w_lo, w_hi) = (words * t / threads, words * (t + 1) / threads);
            let upto = (64 * w_hi).min(nodes);
            let (b, rest_b) = std::mem::take(&mut bad).split_at_mut(upto - base);
            bad = rest_b;
            ranges.push((base, upto, w_lo, w_hi - w_lo, rest.take_front(upto - base), b));
            base = upto;
        }
        let (window, stream) = (&*window, &*rng);
        run_side_by_side(ranges, |(lo, hi, w_lo, w_n, part, bad)| {
            let drawn = draw(flights, model, stream, w_lo, w_n, (lo, hi), bad, &*part.peers);
            let nodes = drawn.touched(window, flights.len());
            let share = Share { base: lo, part, nodes: &nodes };
            let (out, at) = share.run(env, Copies::Drawn(&drawn), flights, parsed, end);
            (out, at, Some(drawn))
        })
    }
}

/// What a thread did in phase 2: its outputs, the last instant it acted at, what it drew.
type Done = (Vec<(usize, Out)>, Instant, Option<Drawn>);

/// `work` on every item, the first on the calling thread and the others on threads of their
/// own; the results in the items' order.
fn run_side_by_side<T: Send>(items: Vec<T>, work: impl Fn(T) -> Done + Sync) -> Vec<Done> {
    let mut items = items.into_iter();
    let Some(first) = items.next() else { return Vec::new() };
    let work = &work;
    std::thread::scope(|s| {
        let others: Vec<_> = items.map(|item| s.spawn(move || work(item))).collect();
        let mut results = vec![work(first)];
        results.extend(others.into_iter().map(|h| h.join().expect("a receiver thread")));
        results
    })
}
