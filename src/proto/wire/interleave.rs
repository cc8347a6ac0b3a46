//! The order of data symbols on the wire, which receivers follow to tell which blocks the
//! sender has passed. The sender interleaves the symbols of a *window* of consecutive blocks:
//! round by round, ESI 0 of every block of the window, then ESI 1 of every block, and so on
//! (each block's proactive repair symbols continue its rounds after its source symbols), so a
//! burst of lost datagrams costs each block of the window a symbol or two instead of one block
//! many. A window is `w` blocks starting at a multiple of `w`, where `w` is a power of two at
//! most [`INTERLEAVE`] (the sender picks it from the blocks it can cache, see [`window_width`]; 1
//! is the plain block-by-block order). Windows of any such `w` nest inside the windows of [`INTERLEAVE`],
//! so a receiver that sees a symbol of block `b` knows, whatever `w` the sender chose, that
//! every block below [`window_start`]`(b)` has been passed: NAKs never go out for a block
//! whose symbols are still coming. Repairs (answers to NAKs) are sent for blocks already
//! passed, so they never move that line past what it would be anyway.

/// Most blocks in an interleaving window (a power of two).
pub const INTERLEAVE: u32 = 8;

/// The first block of the [`INTERLEAVE`]-block window holding `block`: once a data symbol of
/// `block` arrives, the sender has passed every block below it.
pub fn window_start(block: u32) -> u32 {
    block - block % INTERLEAVE
}

/// The window width a sender that can cache `cache_blocks` payload blocks and reads
/// `read_ahead` blocks ahead uses: [`INTERLEAVE`] when the cache holds a window, the previous
/// one (whose blocks the NAKs ask for while the next goes out) and the read-ahead, else 1
/// (block by block: a smaller cache would evict the blocks being repaired, and narrower
/// windows spread bursts too little to pay for completing blocks later).
pub fn window_width(cache_blocks: usize, read_ahead: usize) -> u32 {
    let needed = 2 * INTERLEAVE as usize + read_ahead;
    if cache_blocks >= needed {
        INTERLEAVE
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_nest_and_start_at_multiples() {
        assert_eq!(window_start(0), 0);
        assert_eq!(window_start(INTERLEAVE - 1), 0);
        assert_eq!(window_start(INTERLEAVE), INTERLEAVE);
        assert_eq!(window_start(u32::MAX), u32::MAX - u32::MAX % INTERLEAVE);
        // A sender window of any width it may pick starts at or after the receivers' line.
        for cache in 0..40 {
            for ra in 0..6 {
                let w = window_width(cache, ra);
                assert!(w.is_power_of_two() && w <= INTERLEAVE && INTERLEAVE % w == 0);
                for b in 0..64 {
                    assert!(b - b % w >= window_start(b));
                }
            }
        }
    }

    #[test]
    fn the_width_leaves_room_for_read_ahead_and_the_previous_window() {
        // Boundary pair: 8 + 8 + 4 cached blocks allow windows of 8; one fewer none.
        assert_eq!(window_width(20, 4), INTERLEAVE);
        assert_eq!(window_width(19, 4), 1);
        assert_eq!(window_width(32, 4), INTERLEAVE);
        assert_eq!(window_width(12, 4), 1);
        assert_eq!(window_width(0, 4), 1);
    }
}
