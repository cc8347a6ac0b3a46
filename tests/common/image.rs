//! The 48 MiB test disk image of `tests/image.rs` and `tests/image_stream.rs`: where its data
//! is and its bytes.

/// One MiB.
pub const MIB: u64 = 1 << 20;

/// Image size.
pub const SIZE: u64 = 48 * MIB;

/// Its data runs (offset, length): 1.5 MiB from 512 KiB (inside and past the first MiB), 3 MiB
/// of compressible text at 20 MiB, 64 KiB in the last MiB. Zeros elsewhere (4 MiB of them at
/// 8 MiB are written zeros in the file image, holes the rest).
pub const DATA: [(u64, u64); 3] =
    [(MIB / 2, 3 * MIB / 2), (20 * MIB, 3 * MIB), (SIZE - MIB, 64 << 10)];

/// The image's bytes: random data in the first and last runs, text in the second.
pub fn image_bytes() -> Vec<u8> {
    let mut content = vec![0u8; SIZE as usize];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for (i, &(off, len)) in DATA.iter().enumerate() {
        let part = &mut content[off as usize..(off + len) as usize];
        if i == 1 {
            for (j, b) in part.iter_mut().enumerate() {
                *b = b"the quick brown fox jumps over the lazy dog\n"[j % 44];
            }
        } else {
            for b in part.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = (state >> 24) as u8;
            }
        }
    }
    content
}
