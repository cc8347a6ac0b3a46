//! Loss draws made by the receivers' threads (windowed stepping, module `window`).
//!
//! Phase 1 of a window fans out each arrival on one thread, drawing each copy's loss from the
//! harness's one ChaCha stream in arrival and node order: with thousands of receivers it was a
//! third of a two-thread run's wall time. When every copy takes a fixed number of words of the
//! stream whatever the earlier draws said ([`Links::fixed_draws`](crate::sim::loss::Links)),
//! phase 1 only notes where in the stream a datagram's copies to the receivers begin
//! ([`Deferred`]) and moves the stream past them; the copy to the sender is drawn at once. In
//! phase 2 each thread seeks a clone of the stream to its own receivers' words and draws their
//! copies ([`draw`]), so every copy gets exactly the words, and so the fate, that the one-thread
//! fan-out gives it. What each datagram's trace entry folds in (who got a copy, in node order)
//! is folded afterwards from the threads' bitmaps ([`mix`]), in arrival order.

use super::window::{Flight, Window};
use super::Peer;
use crate::sim::loss::{feedback_lost, link_lost, LossModel};
use rand_chacha::ChaCha8Rng;

/// Where a datagram's copies to the receivers draw their losses: from `word` on in the loss
/// stream, `per_copy` words each, in node order (the sending receiver, if any, skipped).
#[derive(Clone, Copy)]
pub(super) struct Deferred {
    pub(super) word: u128,
    pub(super) per_copy: u128,
}

/// One thread's draws: for nodes `64 * first_word..64 * (first_word + words)`, a bit per node
/// per flight of the window for who got a copy.
pub(super) struct Drawn {
    first_word: usize,
    words: usize,
    bits: Vec<u64>,
}

impl Drawn {
    /// The flights (of the first `n`) of which `node` got a copy, in arrival order.
    pub(super) fn copies(&self, node: usize, n: usize) -> impl Iterator<Item = usize> + '_ {
        let (w, bit) = (node / 64 - self.first_word, node % 64);
        (0..n).filter(move |&i| self.bits[i * self.words + w] & (1 << bit) != 0)
    }

    /// The nodes of its range with a copy, or a timer due in `window`, in index order.
    pub(super) fn touched(&self, window: &Window, flights: usize) -> Vec<usize> {
        let mut nodes = Vec::new();
        for w in 0..self.words {
            let word = self.first_word + w;
            let mut bits = window.touched_word(word);
            if word == 0 {
                bits &= !1; // never the sender
            }
            bits |= (0..flights).fold(0, |acc, i| acc | self.bits[i * self.words + w]);
            while bits != 0 {
                nodes.push(word * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
        nodes
    }
}

/// Draw the copies of `flights` to nodes `lo..hi` (their words of the node bitmap starting at
/// `first_word`), whose receivers' link states are `bad` and peers `peers` (node `lo` at 0),
/// from `stream` (the harness's loss stream, which each deferred flight seeks).
#[allow(clippy::too_many_arguments)]
pub(super) fn draw(
    flights: &[Flight],
    model: &LossModel,
    stream: &ChaCha8Rng,
    first_word: usize,
    words: usize,
    (lo, hi): (usize, usize),
    bad: &mut [bool],
    peers: &[Peer],
) -> Drawn {
    let mut bits = vec![0u64; flights.len() * words];
    let mut rng = stream.clone();
    for (i, f) in flights.iter().enumerate() {
        let Some(d) = f.deferred else { continue };
        // Copies drawn before node `lo`: one per receiver below it, the sending one aside.
        let before = (lo - 1) - usize::from(f.from != 0 && f.from < lo);
        if d.per_copy > 0 {
            rng.set_word_pos(d.word + d.per_copy * before as u128);
        }
        let row = &mut bits[i * words..(i + 1) * words];
        for to in lo..hi {
            if to == f.from {
                continue;
            }
            let lost = if f.from == 0 {
                link_lost(model, &mut bad[to - lo], &mut rng)
            } else {
                feedback_lost(model, &mut rng)
            };
            if !lost && f.at >= peers[to - lo].joins_at {
                let j = to - 64 * first_word;
                row[j / 64] |= 1 << (j % 64);
            }
        }
    }
    Drawn { first_word, words, bits }
}

/// A datagram's fold of its recipients (FNV-1a over their indices) starts here.
pub(super) const MIX_START: u64 = 0xcbf2_9ce4_8422_2325;

/// `mix` with recipient `to` folded in.
pub(super) fn fold(mix: u64, to: usize) -> u64 {
    (mix ^ to as u64).wrapping_mul(0x0100_0000_01b3)
}

/// What the trace folds in for flight `i`: the nodes that got a copy, in index order (the
/// sender's bit from `window`, the receivers' from `drawn`, ranges in node order), folded as
/// the one-thread fan-out folds them.
pub(super) fn mix(i: usize, window: &Window, drawn: &[Drawn]) -> u64 {
    let mut mix = MIX_START;
    if window.has(i, 0) {
        mix = fold(mix, 0);
    }
    for d in drawn {
        for (w, &word) in d.bits[i * d.words..(i + 1) * d.words].iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                mix = fold(mix, (d.first_word + w) * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
    }
    mix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_touches_its_receivers_with_a_copy_or_a_timer_and_never_the_sender() {
        let mut window = Window::default();
        window.begin(200, true);
        for node in [0, 3, 64, 127, 128, 199] {
            window.mark(node); // timers due in the window
        }
        // Two flights: node 5 got the first, node 130 the second.
        let mut bits = vec![0u64; 2 * 4];
        bits[0] |= 1 << 5;
        bits[4 + 2] |= 1 << (130 - 128);
        let all = Drawn { first_word: 0, words: 4, bits };
        assert_eq!(all.touched(&window, 2), [3, 5, 64, 127, 128, 130, 199]);
        assert_eq!(all.copies(130, 2).collect::<Vec<_>>(), [1]);
        assert_eq!(all.copies(5, 2).collect::<Vec<_>>(), [0]);
        assert_eq!(all.copies(64, 2).count(), 0, "a timer, no copy");
        // A range of words 1..3 (nodes 64..192): its own nodes only.
        let mut bits = vec![0u64; 2 * 2];
        bits[2 + 1] |= 1 << 2;
        let middle = Drawn { first_word: 1, words: 2, bits };
        assert_eq!(middle.touched(&window, 2), [64, 127, 128, 130]);
        assert_eq!(middle.copies(130, 2).collect::<Vec<_>>(), [1]);
    }
}
