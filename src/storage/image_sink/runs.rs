//! [`Runs`]: disjoint byte ranges, merged as they are added and cut where they are removed.
//! A device sink of a streamed image keeps here the all-zero ranges it did not write (zeroed
//! at the commit with `--zero-fill`, read as zeros by `--verify-readback`).

use std::collections::BTreeMap;

use crate::proto::manifest::Extent;

/// Disjoint, non-touching ranges, by start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Runs {
    /// start -> end (exclusive).
    map: BTreeMap<u64, u64>,
}

impl Runs {
    /// Adds `start..end` (merged with the ranges it touches).
    pub(super) fn add(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        // A range that starts before and reaches `start`.
        if let Some((&s, &e)) = self.map.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                self.map.remove(&s);
            }
        }
        // Ranges starting inside (or right at the end of) the new one.
        while let Some((&s, &e)) = self.map.range(start..=end).next() {
            end = end.max(e);
            self.map.remove(&s);
        }
        self.map.insert(start, end);
    }

    /// Removes `start..end` from every range.
    pub(super) fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let hit: Vec<(u64, u64)> = self
            .map
            .range(..end)
            .rev()
            .take_while(|(_, &e)| e > start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in hit {
            self.map.remove(&s);
            if s < start {
                self.map.insert(s, start);
            }
            if e > end {
                self.map.insert(end, e);
            }
        }
    }

    /// The ranges, in order.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = Extent> + '_ {
        self.map.iter().map(|(&offset, &end)| Extent { offset, len: end - offset })
    }

    /// The parts of the ranges inside `start..end`.
    pub(super) fn within(&self, start: u64, end: u64) -> Vec<Extent> {
        let first = self.map.range(..=start).next_back().map_or(start, |(&s, _)| s);
        self.map
            .range(first..end)
            .filter_map(|(&s, &e)| {
                let (a, b) = (s.max(start), e.min(end));
                (a < b).then(|| Extent { offset: a, len: b - a })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(r: &Runs) -> Vec<(u64, u64)> {
        r.iter().map(|e| (e.offset, e.end())).collect()
    }

    #[test]
    fn adding_merges_and_removing_cuts() {
        let mut r = Runs::default();
        r.add(10, 20);
        r.add(30, 40);
        r.add(20, 25);
        assert_eq!(list(&r), [(10, 25), (30, 40)]);
        r.add(5, 35);
        assert_eq!(list(&r), [(5, 40)]);
        r.add(50, 50);
        assert_eq!(list(&r), [(5, 40)]);
        r.remove(10, 12);
        assert_eq!(list(&r), [(5, 10), (12, 40)]);
        r.remove(0, 6);
        r.remove(39, 100);
        assert_eq!(list(&r), [(6, 10), (12, 39)]);
        assert_eq!(r.within(8, 13), [Extent { offset: 8, len: 2 }, Extent { offset: 12, len: 1 }]);
        assert_eq!(r.within(10, 12), []);
        r.remove(0, 100);
        assert_eq!(list(&r), []);
    }
}
