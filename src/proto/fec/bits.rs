//! Which source symbols of a block a collector holds: one bit per symbol, kept inside the
//! collector for blocks of up to [`INLINE_BITS`] symbols (a 1 MiB block of 1400-byte symbols
//! has 749), on the heap beyond. Inline, a symbol's bit sits beside the collector's counts,
//! so recording a symbol is one memory access, not a pointer to follow first: at 10,000
//! simulated receivers this is the state every copy touches.

use bitvec::array::BitArray;
use bitvec::slice::BitSlice;
use bitvec::vec::BitVec;

/// Most symbols whose bits are kept inline.
pub(super) const INLINE_BITS: usize = 12 * 64;

/// A bit per source symbol, all clear at first.
#[derive(Clone)]
pub(super) enum SourceBits {
    /// Up to [`INLINE_BITS`]: the first `len` bits of the array.
    Inline { bits: BitArray<[usize; INLINE_BITS / usize::BITS as usize]>, len: u16 },
    /// More symbols than that.
    Heap(BitVec),
}

impl SourceBits {
    /// `k` clear bits.
    pub(super) fn new(k: u16) -> Self {
        if usize::from(k) <= INLINE_BITS {
            SourceBits::Inline { bits: BitArray::ZERO, len: k }
        } else {
            SourceBits::Heap(BitVec::repeat(false, usize::from(k)))
        }
    }

    /// The bits, one per source symbol.
    pub(super) fn as_bitslice(&self) -> &BitSlice {
        match self {
            SourceBits::Inline { bits, len } => &bits[..usize::from(*len)],
            SourceBits::Heap(v) => v.as_bitslice(),
        }
    }

    /// Set bit `i` (below `k`); returns whether it was clear.
    pub(super) fn set(&mut self, i: usize) -> bool {
        let bits: &mut BitSlice = match self {
            SourceBits::Inline { bits, len } => &mut bits[..usize::from(*len)],
            SourceBits::Heap(v) => v.as_mut_bitslice(),
        };
        !bits.replace(i, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_up_to_the_limit_heap_past_it_and_both_count_the_same() {
        for k in [1u16, 749, INLINE_BITS as u16, INLINE_BITS as u16 + 1, 2000] {
            let mut b = SourceBits::new(k);
            assert_eq!(matches!(b, SourceBits::Inline { .. }), usize::from(k) <= INLINE_BITS);
            assert_eq!(b.as_bitslice().len(), usize::from(k));
            let last = usize::from(k) - 1;
            assert!(b.set(last), "k {k}: new");
            assert!(!b.set(last), "k {k}: duplicate");
            assert!(b.set(0) || last == 0);
            let ones: Vec<usize> = b.as_bitslice().iter_ones().collect();
            assert_eq!(ones, if last == 0 { vec![0] } else { vec![0, last] }, "k {k}");
        }
    }
}
