//! GF(256) arithmetic for the fast decode path, in RaptorQ's field (RFC 6330 §5.7, polynomial
//! x^8 + x^4 + x^3 + x^2 + 1). Scalars and the SIMD symbol kernels are raptorq's own (`Octet`,
//! `Symbol`, public under its `benchmarking` feature), so the field is exactly the one the codec
//! uses. This module adds what raptorq leaves to its callers: skipping the 0 and 1 scalars that
//! its kernel refuses, and the small dense elimination that inverts the lost-symbol system.

use raptorq::{Octet, Symbol};

/// `a * b` in GF(256) (the scalar reference the tests check the row operations against).
#[cfg(test)]
pub(super) fn mul(a: u8, b: u8) -> u8 {
    (Octet::new(a) * Octet::new(b)).byte()
}

/// `1 / a` in GF(256); `a` must not be zero.
fn inv(a: u8) -> u8 {
    debug_assert_ne!(a, 0);
    (Octet::one() / Octet::new(a)).byte()
}

/// `dst += c * src` over whole symbols (equal lengths). Zero is skipped and one is a plain XOR:
/// raptorq's multiply kernel is meant for neither.
pub(super) fn fma(dst: &mut Symbol, src: &Symbol, c: u8) {
    match c {
        0 => {}
        1 => *dst += src,
        _ => dst.fused_addassign_mul_scalar(src, &Octet::new(c)),
    }
}

/// A left inverse of the `n x e` matrix `a` (rows of `e` bytes, `n >= e`): an `e x n` matrix `x`
/// with `x * a = I`, or `None` if `a` has rank below `e`. Gauss-Jordan elimination on `[a | I_n]`
/// choosing pivots among all `n` rows, so any `e` independent rows serve, whichever they are.
/// Row operations run over whole rows with the SIMD kernels.
pub(super) fn left_inverse(a: &[Vec<u8>], e: usize) -> Option<Vec<Vec<u8>>> {
    let n = a.len();
    if n < e || a.iter().any(|row| row.len() != e) {
        return None;
    }
    // Row r of the working matrix: e coefficients, then n bookkeeping columns (identity at start).
    let mut w: Vec<Symbol> = a
        .iter()
        .enumerate()
        .map(|(r, row)| {
            let mut v = Vec::with_capacity(e + n);
            v.extend_from_slice(row);
            v.resize(e + n, 0);
            v[e + r] = 1;
            Symbol::new(v)
        })
        .collect();
    for col in 0..e {
        let pivot = (col..n).find(|&r| w[r].as_bytes()[col] != 0)?;
        w.swap(col, pivot);
        let scale = inv(w[col].as_bytes()[col]);
        if scale != 1 {
            w[col].mulassign_scalar(&Octet::new(scale));
        }
        let (before, rest) = w.split_at_mut(col);
        let (pivot_row, after) = rest.split_first_mut()?;
        for row in before.iter_mut().chain(after.iter_mut()) {
            let f = row.as_bytes()[col];
            fma(row, pivot_row, f);
        }
    }
    w.truncate(e);
    Some(w.into_iter().map(|row| row.as_bytes()[e..].to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mat_mul(x: &[Vec<u8>], a: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let cols = a.first().map_or(0, Vec::len);
        x.iter()
            .map(|xr| {
                (0..cols)
                    .map(|c| xr.iter().zip(a).fold(0u8, |acc, (&xv, ar)| acc ^ mul(xv, ar[c])))
                    .collect()
            })
            .collect()
    }

    fn identity(e: usize) -> Vec<Vec<u8>> {
        (0..e).map(|i| (0..e).map(|j| u8::from(i == j)).collect()).collect()
    }

    #[test]
    fn field_is_raptorqs() {
        // RFC 6330 §5.7: alpha = 2 and alpha^8 = x^4 + x^3 + x^2 + 1 = 0x1d.
        assert_eq!(mul(0x80, 2), 0x1d);
        assert_eq!(mul(0, 0x53), 0);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "a = {a}");
        }
    }

    #[test]
    fn fma_handles_zero_one_and_others() {
        let src = Symbol::new((0..40).collect());
        let mut dst = Symbol::new(vec![7; 40]);
        fma(&mut dst, &src, 0);
        assert_eq!(dst.as_bytes(), &[7; 40][..]);
        fma(&mut dst, &src, 1);
        let want: Vec<u8> = (0..40).map(|i| 7 ^ i).collect();
        assert_eq!(dst.as_bytes(), &want[..]);
        fma(&mut dst, &src, 0x35);
        let want: Vec<u8> = (0..40u8).map(|i| 7 ^ i ^ mul(0x35, i)).collect();
        assert_eq!(dst.as_bytes(), &want[..]);
    }

    #[test]
    fn rank_deficient_matrices_have_no_inverse() {
        // Second row is 3 times the first.
        let a = vec![vec![1, 2], vec![mul(3, 1), mul(3, 2)]];
        assert!(left_inverse(&a, 2).is_none());
        // A zero column.
        assert!(left_inverse(&[vec![0, 5], vec![0, 9], vec![0, 1]], 2).is_none());
        // Fewer rows than unknowns, or ragged rows.
        assert!(left_inverse(&[vec![1, 2]], 2).is_none());
        assert!(left_inverse(&[vec![1, 2], vec![3]], 2).is_none());
        // e = 0 is the empty (trivially invertible) system.
        assert_eq!(left_inverse(&[vec![], vec![]], 0), Some(vec![]));
    }

    #[test]
    fn a_dependent_row_is_passed_over() {
        // Rows 0 and 1 are dependent; rows 0 and 2 are not: the inverse must use row 2.
        let a = vec![vec![4, 8], vec![mul(9, 4), mul(9, 8)], vec![1, 1]];
        let x = left_inverse(&a, 2).unwrap();
        assert_eq!(mat_mul(&x, &a), identity(2));
        // Only the pivot rows appear in the inverse: the passed-over row costs nothing.
        assert!(x.iter().all(|xj| xj[1] == 0), "{x:?}");
    }

    proptest! {
        #[test]
        fn left_inverse_is_a_left_inverse(
            e in 1usize..40,
            extra in 0usize..3,
            seed in any::<u64>(),
            shape in 0u8..3,
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let n = e + extra;
            let mut a: Vec<Vec<u8>> = (0..n).map(|_| (0..e).map(|_| rng.gen()).collect()).collect();
            match shape {
                // A zero column: never invertible.
                1 => a.iter_mut().for_each(|row| row[e / 2] = 0),
                // The last row a multiple of the first: singular when there are no extra rows.
                2 => a[n - 1] = a[0].iter().map(|&v| mul(v, 0x8e)).collect(),
                _ => {}
            }
            match left_inverse(&a, e) {
                Some(x) => prop_assert_eq!(mat_mul(&x, &a), identity(e)),
                // No inverse: then no e rows are independent, which a brute-force rank says too.
                None => prop_assert!(rank(&a) < e),
            }
            if shape == 1 || (shape == 2 && extra == 0 && e > 1) {
                prop_assert!(left_inverse(&a, e).is_none());
            }
        }
    }

    /// Rank by plain elimination, written independently of `left_inverse`.
    fn rank(a: &[Vec<u8>]) -> usize {
        let mut m: Vec<Vec<u8>> = a.to_vec();
        let cols = m.first().map_or(0, Vec::len);
        let mut rank = 0;
        for c in 0..cols {
            let Some(p) = (rank..m.len()).find(|&r| m[r][c] != 0) else { continue };
            m.swap(rank, p);
            let pv = m[rank].clone();
            for row in m.iter_mut().skip(rank + 1) {
                let f = mul(row[c], inv(pv[c]));
                for (d, s) in row.iter_mut().zip(&pv) {
                    *d ^= mul(f, *s);
                }
            }
            rank += 1;
        }
        rank
    }
}
