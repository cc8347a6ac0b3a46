//! Recovery of a few lost source symbols at a cost that grows with what was lost.
//!
//! A block missing the source symbols `J` (`|J| = e`) with repair symbols `R_r` received: each
//! `R_r = sum_i c[r][i] s_i` (rows from [`CoefficientCache`]). With `A[r][j] = c[r][J_j]` and
//! `X` a left inverse of `A` (`X A = I`, found by elimination over the `e` columns),
//!
//! `s_{J_j} = sum_r X[j][r] R_r + sum_{i received} D[j][i] s_i`,  `D[j] = sum_r X[j][r] c[r]`
//!
//! (`-` is `+` in GF(256)). `D` costs `e^2` row operations of `K` bytes and the symbols
//! `e * (K - e + n)` operations of `T` bytes: about `e * K * T` multiply-adds, against a full
//! RaptorQ solve that costs the same whatever `e` is. If `A` has rank below `e`, the lost symbols
//! are not determined by what was received, so no decoder can recover them: that is reported as
//! [`Outcome::Singular`], not handed to raptorq.

use super::coeffs::CoefficientCache;
use super::gf256::{fma, left_inverse};
use bitvec::slice::BitSlice;
use raptorq::Symbol;

/// What [`recover`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The lost symbols were written into the block.
    Recovered,
    /// The received symbols do not determine the lost ones (more repair symbols are needed).
    Singular,
    /// Not attempted (too many lost for this path, or no coefficients for this `K`): use the
    /// full decoder.
    Declined,
}

/// Largest `e` worth the fast path for a block of `k` symbols. Measured at K = 749, T = 1400
/// (`benches/fec.rs`, release, shared 2-core machine, three runs): 63-130 us at e = 1,
/// 0.34-0.65 ms at e = 8, 1.3-2.8 ms at e = 32 (about 40 us per further symbol when idle),
/// against 2.3-5.5 ms for raptorq's full solve of the same symbols whatever e is. The two meet
/// near e = K / 13 when idle and K / 16 under load; K / 20 keeps the fast path well ahead.
pub(super) fn max_lost(k: u16) -> usize {
    (usize::from(k) / 20).max(4)
}

/// Fill in the lost source symbols of `source` (`K * T` bytes, `have[i]` for the received ones)
/// from `repairs` (ESI >= K, `T` bytes each, distinct ESIs). Nothing is written unless
/// [`Outcome::Recovered`] is returned.
pub(super) fn recover(
    cache: &CoefficientCache,
    t: usize,
    source: &mut [u8],
    have: &BitSlice,
    repairs: &[(u32, Vec<u8>)],
) -> Outcome {
    let Ok(k) = u16::try_from(have.len()) else { return Outcome::Declined };
    if source.len() != have.len() * t || repairs.iter().any(|(_, s)| s.len() != t) {
        return Outcome::Declined;
    }
    let lost: Vec<usize> = have.iter_zeros().collect();
    let e = lost.len();
    if e == 0 {
        return Outcome::Recovered;
    }
    if e > max_lost(k) {
        return Outcome::Declined;
    }
    if repairs.len() < e {
        return Outcome::Singular;
    }
    let esis: Vec<u32> = repairs.iter().map(|(esi, _)| *esi).collect();
    let Some(rows) = cache.rows(k, &esis) else { return Outcome::Declined };
    let a: Vec<Vec<u8>> =
        rows.iter().map(|row| lost.iter().map(|&j| row.as_bytes()[j]).collect()).collect();
    let Some(x) = left_inverse(&a, e) else { return Outcome::Singular };

    // D[j] = sum_r X[j][r] c[r]: the coefficient of every source symbol in lost symbol j.
    let d: Vec<Symbol> = x
        .iter()
        .map(|xj| {
            let mut dj = Symbol::zero(usize::from(k));
            for (row, &c) in rows.iter().zip(xj) {
                fma(&mut dj, row, c);
            }
            dj
        })
        .collect();
    let mut acc: Vec<Symbol> = (0..e).map(|_| Symbol::zero(t)).collect();
    let mut scratch = Vec::with_capacity(t);
    // Repair part, one repair symbol at a time so it is read once for all e targets. X is zero
    // on the rows that elimination passed over (more repairs held than lost symbols).
    for (r, (_, bytes)) in repairs.iter().enumerate() {
        if x.iter().all(|xj| xj[r] == 0) {
            continue;
        }
        scratch.clear();
        scratch.extend_from_slice(bytes);
        let sym = Symbol::new(scratch);
        for (accj, xj) in acc.iter_mut().zip(&x) {
            fma(accj, &sym, xj[r]);
        }
        scratch = sym.into_bytes();
    }
    // Source part, likewise one received symbol at a time.
    for i in have.iter_ones() {
        scratch.clear();
        scratch.extend_from_slice(&source[i * t..(i + 1) * t]);
        let sym = Symbol::new(scratch);
        for (accj, dj) in acc.iter_mut().zip(&d) {
            fma(accj, &sym, dj.as_bytes()[i]);
        }
        scratch = sym.into_bytes();
    }
    for (&j, accj) in lost.iter().zip(&acc) {
        source[j * t..(j + 1) * t].copy_from_slice(accj.as_bytes());
    }
    Outcome::Recovered
}
