//! Timers in a table (after quinn-proto's `TimerTable`), shared by every role: each role names
//! its deadlines with an enum implementing [`TimerKind`], keeps them in one [`TimerTable`], answers
//! `poll_timeout` with [`TimerTable::next_timeout`] and, in `handle_timeout`, fires the expired
//! ones in the enum's order with [`TimerTable::take_expired`]. A deadline is either set or not;
//! setting it again moves it.

use crate::proto::time::Instant;
use std::fmt;
use std::marker::PhantomData;

/// Most timers one role may have (the table is a fixed array of this many slots).
pub const MAX_TIMERS: usize = 8;

/// A role's timer names.
pub trait TimerKind: Copy + Eq + fmt::Debug + 'static {
    /// Every timer, in the order `handle_timeout` fires them when several are due at once.
    const ALL: &'static [Self];
    /// The timer's slot, below [`MAX_TIMERS`] (checked when the table is made).
    fn index(self) -> usize;
}

/// One optional deadline per timer of `T`.
#[derive(Clone, Copy)]
pub struct TimerTable<T: TimerKind> {
    at: [Option<Instant>; MAX_TIMERS],
    /// The earliest of `at`, kept as the table changes: a driver polls the next timeout after
    /// every datagram, far more often than a timer moves (at 10,000 simulated receivers, that
    /// poll was one of the costs every copy paid).
    next: Option<Instant>,
    kind: PhantomData<T>,
}

impl<T: TimerKind> Default for TimerTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: TimerKind> TimerTable<T> {
    /// A table with every timer stopped.
    pub fn new() -> Self {
        assert!(
            T::ALL.iter().all(|t| t.index() < MAX_TIMERS),
            "a timer kind with more than {MAX_TIMERS} slots"
        );
        TimerTable { at: [None; MAX_TIMERS], next: None, kind: PhantomData }
    }

    /// Arm `timer` for `at`, replacing any earlier deadline.
    pub fn set(&mut self, timer: T, at: Instant) {
        self.at[timer.index()] = Some(at);
        self.refresh();
    }

    /// Disarm `timer`.
    pub fn stop(&mut self, timer: T) {
        self.at[timer.index()] = None;
        self.refresh();
    }

    /// Recompute the earliest deadline after a change.
    fn refresh(&mut self) {
        self.next = self.at.iter().flatten().min().copied();
    }

    /// `timer`'s deadline, if armed.
    pub fn get(&self, timer: T) -> Option<Instant> {
        self.at[timer.index()]
    }

    /// Whether `timer` is armed.
    pub fn is_set(&self, timer: T) -> bool {
        self.get(timer).is_some()
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// If `timer` is due at `now`, disarm it and return `true` (the caller then fires it).
    pub fn take_expired(&mut self, timer: T, now: Instant) -> bool {
        let slot = &mut self.at[timer.index()];
        if slot.is_some_and(|at| at <= now) {
            *slot = None;
            self.refresh();
            true
        } else {
            false
        }
    }
}

impl<T: TimerKind> fmt::Debug for TimerTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(T::ALL.iter().filter_map(|t| self.get(*t).map(|at| (t, at)))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Demo {
        A,
        B,
        C,
    }

    impl TimerKind for Demo {
        const ALL: &'static [Self] = &[Demo::A, Demo::B, Demo::C];
        fn index(self) -> usize {
            self as usize
        }
    }

    fn at(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    #[test]
    fn next_timeout_is_the_earliest_armed_deadline() {
        let mut t = TimerTable::<Demo>::new();
        assert_eq!(t.next_timeout(), None);
        t.set(Demo::C, at(30));
        t.set(Demo::A, at(50));
        assert_eq!(t.next_timeout(), Some(at(30)));
        t.set(Demo::C, at(70)); // moved, not added
        assert_eq!(t.next_timeout(), Some(at(50)));
        t.stop(Demo::A);
        assert_eq!((t.get(Demo::A), t.get(Demo::C)), (None, Some(at(70))));
        assert!(!t.is_set(Demo::B));
        assert_eq!(format!("{t:?}"), "{C: Instant(70)}");
    }

    #[test]
    fn take_expired_fires_each_due_timer_once() {
        let mut t = TimerTable::<Demo>::new();
        t.set(Demo::A, at(10));
        t.set(Demo::B, at(20));
        t.set(Demo::C, at(21));
        let fired: Vec<Demo> =
            Demo::ALL.iter().copied().filter(|d| t.take_expired(*d, at(20))).collect();
        assert_eq!(fired, vec![Demo::A, Demo::B], "due at or before now, in the kind's order");
        assert!(!t.take_expired(Demo::A, at(20)), "disarmed once taken");
        assert_eq!(t.next_timeout(), Some(at(21)));
    }

    proptest::proptest! {
        /// The kept earliest deadline is always the earliest armed one (the reference: a scan
        /// of the slots), whatever the order of sets, stops and expiries.
        #[test]
        fn the_kept_earliest_deadline_follows_every_change(
            ops in proptest::collection::vec((0usize..3, 0u8..3, 0u64..100), 0..60)
        ) {
            let mut t = TimerTable::<Demo>::new();
            for (kind, op, us) in ops {
                let d = Demo::ALL[kind];
                match op {
                    0 => t.set(d, at(us)),
                    1 => t.stop(d),
                    _ => {
                        t.take_expired(d, at(us));
                    }
                }
                let scan = Demo::ALL.iter().filter_map(|d| t.get(*d)).min();
                proptest::prop_assert_eq!(t.next_timeout(), scan);
            }
        }
    }
}
