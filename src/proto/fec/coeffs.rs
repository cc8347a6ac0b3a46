//! The coefficients of RaptorQ repair symbols over the source symbols, per (K, ESI), cached.
//!
//! RaptorQ is linear over GF(256): repair symbol `r` of a block of `K` source symbols is
//! `R_r = sum_i c[r][i] * s_i`, with `c` depending only on `K` and `r`. Encoding a *probe block*
//! of `K` symbols `K` bytes wide, symbol `i` the unit vector `e_i` (byte `i` set to 1), makes the
//! probe's repair symbol `r` exactly the row `c[r][0..K]`. The probe encoder (its RaptorQ
//! intermediate symbols, the costly part) is built once per `K`; rows are generated from it on
//! demand and kept, since proactive repair sends the same ESIs `K, K+1, ...` for every block.
//!
//! One cache is shared by every decode in the process ([`CoefficientCache::global`]); it is
//! thread-safe (decodes run on worker threads) and bounded: a few probes, most recent kept, and a
//! byte budget of rows per probe. A probe for `K` is only built the second time a block of that
//! `K` needs a decode, so a one-off `K` (an object's short last block) costs one full decode,
//! not a probe and a decode, and does not push a busy `K` out of the cache. Measured (debug
//! profile, opt-level 2): a probe costs about 3 ms at K = 749 (8 ms at 1498, 0.8 ms at 187), a
//! row under 1 us.

use raptorq::{ObjectTransmissionInformation, SourceBlockEncoder, Symbol};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Largest `K` with a probe: the probe holds about `2 K^2` bytes (8 MiB at 2048).
pub(super) const MAX_PROBE_K: u16 = 2048;
/// Probes kept at once (distinct `K`), the least recently used dropped first.
const MAX_PROBES: usize = 4;
/// Bytes of cached rows per probe (each row is `K` bytes).
const ROW_BYTES_PER_PROBE: usize = 4 << 20;
/// Distinct `K` whose decode requests are counted before a probe exists.
const MAX_COUNTED: usize = 64;

/// Repair-symbol coefficient rows per (K, ESI); see the module doc.
pub(super) struct CoefficientCache {
    /// Decode requests for a `K` before its probe is built (1: at once).
    probe_after: u32,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Probes, least recently used first.
    probes: Vec<Arc<Probe>>,
    /// Requests seen per `K` that has no probe yet.
    requests: HashMap<u16, u32>,
}

struct Probe {
    k: u16,
    /// Built outside the cache lock, by the first caller; others wait for it.
    encoder: OnceLock<SourceBlockEncoder>,
    rows: Mutex<Rows>,
}

#[derive(Default)]
struct Rows {
    by_esi: HashMap<u32, Arc<Symbol>>,
    /// Insertion order, for eviction.
    order: VecDeque<u32>,
}

impl CoefficientCache {
    /// A cache that builds a probe for a `K` at its `probe_after`-th request (at least 1).
    pub(super) fn new(probe_after: u32) -> Self {
        CoefficientCache { probe_after: probe_after.max(1), inner: Mutex::new(Inner::default()) }
    }

    /// The process-wide cache used by [`super::BlockSymbols::decode`].
    pub(super) fn global() -> &'static CoefficientCache {
        static CACHE: OnceLock<CoefficientCache> = OnceLock::new();
        CACHE.get_or_init(|| CoefficientCache::new(2))
    }

    /// Rows `c[esi][0..k]` for repair ESIs `esis` (each `>= k`), in order; `None` when `k` has no
    /// probe (too large, or not requested often enough yet).
    pub(super) fn rows(&self, k: u16, esis: &[u32]) -> Option<Vec<Arc<Symbol>>> {
        if k == 0 || k > MAX_PROBE_K || esis.iter().any(|&esi| esi < u32::from(k)) {
            return None;
        }
        let probe = self.probe(k)?;
        let encoder = probe.encoder.get_or_init(|| probe_encoder(k));
        let cap = (ROW_BYTES_PER_PROBE / usize::from(k)).max(esis.len());
        let mut rows = probe.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(esis.len());
        for &esi in esis {
            if let Some(row) = rows.by_esi.get(&esi) {
                out.push(Arc::clone(row));
                continue;
            }
            let row = Arc::new(row_from(encoder, k, esi)?);
            while rows.by_esi.len() >= cap {
                let Some(old) = rows.order.pop_front() else { break };
                rows.by_esi.remove(&old);
            }
            rows.by_esi.insert(esi, Arc::clone(&row));
            rows.order.push_back(esi);
            out.push(row);
        }
        Some(out)
    }

    /// The probe for `k`, created (empty) once `k` was requested `probe_after` times.
    fn probe(&self, k: u16) -> Option<Arc<Probe>> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pos) = inner.probes.iter().position(|p| p.k == k) {
            let probe = inner.probes.remove(pos);
            inner.probes.push(Arc::clone(&probe));
            return Some(probe);
        }
        if inner.requests.len() >= MAX_COUNTED && !inner.requests.contains_key(&k) {
            inner.requests.clear();
        }
        let seen = inner.requests.entry(k).or_insert(0);
        *seen += 1;
        if *seen < self.probe_after {
            return None;
        }
        inner.requests.remove(&k);
        if inner.probes.len() >= MAX_PROBES {
            inner.probes.remove(0);
        }
        let probe = Arc::new(Probe { k, encoder: OnceLock::new(), rows: Mutex::default() });
        inner.probes.push(Arc::clone(&probe));
        Some(probe)
    }
}

/// The RaptorQ encoder of the probe block for `k`: `k` symbols of `k` bytes, symbol `i` = `e_i`.
fn probe_encoder(k: u16) -> SourceBlockEncoder {
    let n = usize::from(k);
    let mut data = vec![0u8; n * n];
    for i in 0..n {
        data[i * n + i] = 1;
    }
    let oti = ObjectTransmissionInformation::new((n * n) as u64, k, 1, 1, 1);
    SourceBlockEncoder::new(0, &oti, &data)
}

/// Row `c[esi]`: the probe's repair symbol `esi`.
fn row_from(encoder: &SourceBlockEncoder, k: u16, esi: u32) -> Option<Symbol> {
    let packet = encoder.repair_packets(esi - u32::from(k), 1).into_iter().next()?;
    let (_, data) = packet.split();
    (data.len() == usize::from(k)).then(|| Symbol::new(data))
}

#[cfg(test)]
mod tests {
    use super::super::gf256::mul;
    use super::*;

    #[test]
    fn rows_are_the_coefficients_of_real_repair_symbols() {
        // A random block of K = 10 symbols of T = 24 bytes: each repair symbol must equal the
        // combination of the source symbols given by its row.
        let (k, t) = (10u16, 24usize);
        let data: Vec<u8> = (0..usize::from(k) * t).map(|i| (i * 97 + 13) as u8).collect();
        let oti = ObjectTransmissionInformation::new(data.len() as u64, t as u16, 1, 1, 1);
        let enc = SourceBlockEncoder::new(0, &oti, &data);
        let cache = CoefficientCache::new(1);
        let esis: Vec<u32> = (10..30).chain([1000, 123_456]).collect();
        let rows = cache.rows(k, &esis).unwrap();
        for (esi, row) in esis.iter().zip(&rows) {
            let repair = enc.repair_packets(esi - u32::from(k), 1).remove(0);
            let mut want = vec![0u8; t];
            for (i, &c) in row.as_bytes().iter().enumerate() {
                for (w, s) in want.iter_mut().zip(&data[i * t..(i + 1) * t]) {
                    *w ^= mul(c, *s);
                }
            }
            assert_eq!(repair.data(), &want[..], "esi {esi}");
        }
    }

    #[test]
    fn a_probe_is_built_at_the_configured_request() {
        let cache = CoefficientCache::new(2);
        assert!(cache.rows(12, &[12]).is_none(), "first request only counts");
        let first = cache.rows(12, &[12, 13]).expect("second request builds the probe");
        let again = cache.rows(12, &[13]).unwrap();
        assert!(Arc::ptr_eq(&first[1], &again[0]), "row served from the cache");
    }

    #[test]
    fn out_of_range_requests_are_refused() {
        let cache = CoefficientCache::new(1);
        assert!(cache.rows(0, &[1]).is_none());
        assert!(cache.rows(MAX_PROBE_K + 1, &[u32::from(MAX_PROBE_K) + 1]).is_none());
        assert!(cache.rows(8, &[7]).is_none(), "source ESI");
    }

    #[test]
    fn probes_and_rows_stay_bounded() {
        let cache = CoefficientCache::new(1);
        for k in 1..=(MAX_PROBES as u16 + 3) {
            cache.rows(k, &[u32::from(k)]).unwrap();
        }
        let inner = cache.inner.lock().unwrap();
        assert_eq!(inner.probes.len(), MAX_PROBES);
        // Most recent kept.
        assert_eq!(inner.probes.last().unwrap().k, MAX_PROBES as u16 + 3);
        drop(inner);
        // K = 2048: the row budget holds 2048 rows; ask for more, one call at a time.
        let k = MAX_PROBE_K;
        let cap = ROW_BYTES_PER_PROBE / usize::from(k);
        for esi in 0..(cap as u32 + 10) {
            cache.rows(k, &[u32::from(k) + esi]).unwrap();
        }
        let inner = cache.inner.lock().unwrap();
        let probe = inner.probes.iter().find(|p| p.k == k).unwrap();
        let rows = probe.rows.lock().unwrap();
        assert_eq!(rows.by_esi.len(), cap);
        assert_eq!(rows.order.len(), cap);
    }
}
