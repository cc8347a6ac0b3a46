//! Replay protection: a sliding window of counters per nonce prefix (a bitmap, RFC 4303
//! §3.4.3 style) and a bounded table of prefixes, the least recently used evicted first. Only
//! datagrams whose tag verified reach the table, so only key holders can add prefixes.

use super::PREFIX_LEN;
use std::collections::HashMap;

/// Counters a window remembers behind the highest one seen.
pub const WINDOW_BITS: u64 = 1024;
/// Prefixes (sealers) an opener tracks by default: one per peer it hears.
pub const DEFAULT_MAX_PREFIXES: usize = 8192;

const WORDS: usize = (WINDOW_BITS / 64) as usize;

/// The counters seen from one sealer: the highest, and a bitmap of the [`WINDOW_BITS`] below
/// it (bit `c % WINDOW_BITS` for counter `c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// A window that has seen nothing.
    pub fn new() -> Self {
        ReplayWindow { top: 0, bits: [0; WORDS] }
    }

    fn bit(c: u64) -> (usize, u64) {
        let i = c % WINDOW_BITS;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether counter `c` would be accepted: above the highest seen, or within the window and
    /// not seen yet.
    pub fn check(&self, c: u64) -> bool {
        if c > self.top {
            return true;
        }
        if self.top - c >= WINDOW_BITS {
            return false;
        }
        let (w, m) = Self::bit(c);
        self.bits[w] & m == 0
    }

    /// Accept `c` if [`check`](Self::check) allows it and record it; `false` for a replay.
    pub fn accept(&mut self, c: u64) -> bool {
        if !self.check(c) {
            return false;
        }
        if c > self.top {
            if c - self.top >= WINDOW_BITS {
                self.bits = [0; WORDS];
            } else {
                for old in self.top + 1..=c {
                    let (w, m) = Self::bit(old);
                    self.bits[w] &= !m;
                }
            }
            self.top = c;
        }
        let (w, m) = Self::bit(c);
        self.bits[w] |= m;
        true
    }
}

/// One window per nonce prefix, at most `max` of them.
#[derive(Debug, Clone)]
pub struct ReplayTable {
    max: usize,
    tick: u64,
    windows: HashMap<[u8; PREFIX_LEN], (u64, ReplayWindow)>,
    evicted: u64,
}

impl ReplayTable {
    /// A table of at most `max` prefixes (at least one).
    pub fn new(max: usize) -> Self {
        ReplayTable { max: max.max(1), tick: 0, windows: HashMap::new(), evicted: 0 }
    }

    /// Prefixes tracked.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no prefix is tracked.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Prefixes evicted to make room so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Accept counter `c` of `prefix` (recording it) or refuse it as a replay. A new prefix
    /// evicts the least recently used one when the table is full.
    pub fn accept(&mut self, prefix: &[u8; PREFIX_LEN], c: u64) -> bool {
        self.tick += 1;
        let tick = self.tick;
        if let Some((used, w)) = self.windows.get_mut(prefix) {
            let ok = w.accept(c);
            if ok {
                *used = tick;
            }
            return ok;
        }
        if self.windows.len() >= self.max {
            let lru = self.windows.iter().min_by_key(|(_, (used, _))| *used).map(|(p, _)| *p);
            if let Some(p) = lru {
                self.windows.remove(&p);
                self.evicted += 1;
            }
        }
        let mut w = ReplayWindow::new();
        w.accept(c);
        self.windows.insert(*prefix, (tick, w));
        true
    }
}
