//! Object → blocks → symbols arithmetic. Pure functions of three numbers: object size, symbol
//! size `T` and symbols per full block `K`. Every block but the last holds `K` symbols; the last
//! holds just enough symbols for the remaining bytes, its final symbol zero-padded.

use thiserror::Error;

/// Smallest symbol size accepted (bytes).
pub const MIN_SYMBOL_SIZE: u16 = 16;
/// Largest symbol size accepted (bytes): a jumbo-frame datagram less headers.
pub const MAX_SYMBOL_SIZE: u16 = 8900;
/// Largest number of source symbols in one block (RFC 6330's K'max is 56403; we stay well below
/// it so that a block stays a few MiB).
pub const MAX_BLOCK_SYMBOLS: u16 = 8192;

/// A layout that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayoutError {
    /// Symbol size outside [`MIN_SYMBOL_SIZE`, `MAX_SYMBOL_SIZE`].
    #[error("symbol size {0} outside {MIN_SYMBOL_SIZE}..={MAX_SYMBOL_SIZE}")]
    SymbolSize(u16),
    /// Symbols per block outside 1..=[`MAX_BLOCK_SYMBOLS`].
    #[error("symbols per block {0} outside 1..={MAX_BLOCK_SYMBOLS}")]
    BlockSymbols(u16),
    /// The object needs more than `u32::MAX` blocks.
    #[error("object of {0} bytes needs more than 2^32-1 blocks")]
    TooLarge(u64),
}

/// How an object is cut into blocks and symbols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    object_size: u64,
    symbol_size: u16,
    block_symbols: u16,
    block_count: u32,
}

impl Layout {
    /// A checked layout for `object_size` bytes in symbols of `symbol_size` bytes, `block_symbols`
    /// symbols per full block.
    pub fn new(
        object_size: u64,
        symbol_size: u16,
        block_symbols: u16,
    ) -> Result<Self, LayoutError> {
        if !(MIN_SYMBOL_SIZE..=MAX_SYMBOL_SIZE).contains(&symbol_size) {
            return Err(LayoutError::SymbolSize(symbol_size));
        }
        if block_symbols == 0 || block_symbols > MAX_BLOCK_SYMBOLS {
            return Err(LayoutError::BlockSymbols(block_symbols));
        }
        let block_bytes = u64::from(symbol_size) * u64::from(block_symbols);
        let count = object_size.div_ceil(block_bytes);
        let block_count = u32::try_from(count).map_err(|_| LayoutError::TooLarge(object_size))?;
        Ok(Layout { object_size, symbol_size, block_symbols, block_count })
    }

    /// The number of symbols per full block that makes blocks about `target_block_bytes` long.
    pub fn block_symbols_for(symbol_size: u16, target_block_bytes: u64) -> u16 {
        let k = target_block_bytes / u64::from(symbol_size.max(1));
        k.clamp(1, u64::from(MAX_BLOCK_SYMBOLS)) as u16
    }

    /// Object size in bytes.
    pub fn object_size(&self) -> u64 {
        self.object_size
    }

    /// Symbol size `T` in bytes.
    pub fn symbol_size(&self) -> u16 {
        self.symbol_size
    }

    /// Symbols per full block `K`.
    pub fn block_symbols(&self) -> u16 {
        self.block_symbols
    }

    /// Bytes in a full block (`K * T`).
    pub fn block_bytes(&self) -> u64 {
        u64::from(self.symbol_size) * u64::from(self.block_symbols)
    }

    /// Number of blocks (0 for an empty object).
    pub fn block_count(&self) -> u32 {
        self.block_count
    }

    /// Byte offset of block `block` in the object, `None` past the end.
    pub fn block_offset(&self, block: u32) -> Option<u64> {
        (block < self.block_count).then(|| u64::from(block) * self.block_bytes())
    }

    /// Bytes of object data in block `block` (the last block may be short), `None` past the end.
    pub fn block_len(&self, block: u32) -> Option<usize> {
        let offset = self.block_offset(block)?;
        let len = (self.object_size - offset).min(self.block_bytes());
        Some(len as usize)
    }

    /// Source symbols of the whole object.
    pub fn symbol_count(&self) -> u64 {
        self.object_size.div_ceil(u64::from(self.symbol_size))
    }

    /// Source symbols in block `block`, `None` past the end.
    pub fn source_symbols(&self, block: u32) -> Option<u16> {
        let len = self.block_len(block)? as u64;
        Some(len.div_ceil(u64::from(self.symbol_size)) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundaries() {
        assert!(Layout::new(1, MIN_SYMBOL_SIZE, 1).is_ok());
        assert_eq!(Layout::new(1, MIN_SYMBOL_SIZE - 1, 1), Err(LayoutError::SymbolSize(15)));
        assert!(Layout::new(1, MAX_SYMBOL_SIZE, MAX_BLOCK_SYMBOLS).is_ok());
        assert!(Layout::new(1, MAX_SYMBOL_SIZE + 1, 1).is_err());
        assert!(Layout::new(1, 16, MAX_BLOCK_SYMBOLS + 1).is_err());
        assert!(Layout::new(1, 16, 0).is_err());
        // u32::MAX blocks of 16 bytes fit, one more byte does not.
        assert!(Layout::new(16 * u64::from(u32::MAX), 16, 1).is_ok());
        assert!(Layout::new(16 * u64::from(u32::MAX) + 1, 16, 1).is_err());
    }

    #[test]
    fn empty_object_has_no_blocks() {
        let l = Layout::new(0, 1400, 749).unwrap();
        assert_eq!(l.block_count(), 0);
        assert_eq!(l.block_len(0), None);
    }

    #[test]
    fn default_block_is_about_a_mebibyte() {
        let k = Layout::block_symbols_for(1400, 1 << 20);
        assert_eq!(k, 748);
        assert!(u64::from(k) * 1400 <= 1 << 20);
    }

    proptest! {
        #[test]
        fn blocks_tile_the_object(size in 0u64..10_000_000, t in 16u16..2000, k in 1u16..300) {
            let l = Layout::new(size, t, k).unwrap();
            let mut total = 0u64;
            for b in 0..l.block_count() {
                prop_assert_eq!(l.block_offset(b), Some(total));
                let len = l.block_len(b).unwrap() as u64;
                prop_assert!(len > 0 && len <= l.block_bytes());
                let syms = u64::from(l.source_symbols(b).unwrap());
                prop_assert!(syms * u64::from(t) >= len && (syms - 1) * u64::from(t) < len);
                total += len;
            }
            prop_assert_eq!(total, size);
            prop_assert_eq!(l.block_len(l.block_count()), None);
        }
    }
}
