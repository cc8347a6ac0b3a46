//! The sinks of a disk-image push ([`EntryKind::Image`](crate::proto::manifest::EntryKind)):
//! the payload is the image's data extents back to back, and each block is written at its
//! image offsets ([`ExtentMap`]).
//!
//! - `file.rs`: [`ImageFileSink`], `mcast-recv --output FILE`: a sparse temp file of the
//!   image's size beside FILE (holes never written), fsynced and renamed into place.
//! - `device.rs`: [`DeviceSink`], `mcast-recv --to-device DEV`: written in place, with
//!   verify-then-commit: a marker over the first 4 KiB says "incomplete" from the start, the
//!   first [`HOLD_BYTES`] of the image are kept in memory and written last, after every other
//!   block verified and was fsynced; holes are skipped or zeroed (`--zero-fill`).
//! - `journal.rs`: a device push's resume journal, kept on the device between the marker and
//!   the end of the held region (overwritten by the commit).
//! - `checks.rs`: what makes a device unsafe to write (mounted, held, in use, too small).
//! - `runs.rs`: the zero runs a device sink left unwritten in a streamed image.
//!
//! A streamed image (`mcast-send --image -`, [`Image::streamed`]) is staged at its announced
//! bound; its payload's trailer (the real length) is kept in memory as it arrives
//! ([`keep_trailer`]), and `finish`, once everything verified, takes the image to be that
//! long: the file is truncated to it, a device is written only up to it.
//!
//! [`Image::streamed`]: crate::proto::manifest::Image

mod checks;
mod device;
mod file;
mod journal;
mod runs;

pub use checks::{check_target, mounted_devices, DeviceInfo};
pub use device::{read_marker, DeviceSink, HOLD_BYTES, MARKER_MAGIC};
pub use file::ImageFileSink;
pub use journal::{read_journal, JOURNAL_AT};

use std::path::Path;

use super::resume::HeldBlocks;
#[cfg(test)]
use super::to_hex;
use super::{Sink, StorageError};
use crate::proto::manifest::{read_trailer, ExtentMap, Manifest, STREAM_TRAILER_LEN};
#[cfg(test)]
use std::path::PathBuf;

/// How a receiver places an image push (`mcast-recv --to-device`, `--force`, `--zero-fill`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageTarget {
    /// The output is a device written in place (`--to-device`), not a file to create.
    pub device: bool,
    /// Write even to a device that is mounted, held, in use or smaller than the image, or to
    /// a regular file standing in for a device.
    pub force: bool,
    /// Zero the image's holes on the device (BLKZEROOUT, or punching holes in a regular file)
    /// instead of leaving what was there.
    pub zero_fill: bool,
}

/// The sink of image push `manifest` at `dest`: a [`DeviceSink`] with `target.device`, else an
/// [`ImageFileSink`] (`dest` an existing directory: `dest/<name>`; otherwise `dest` itself);
/// with the blocks an interrupted run of the push made durable on the device (a device
/// resumes; a file image starts over). A push that is not an image is refused for a device.
pub fn open(
    dest: &Path,
    manifest: &Manifest,
    target: &ImageTarget,
) -> Result<(Box<dyn Sink>, HeldBlocks), StorageError> {
    let Some((name, image)) = manifest.image() else {
        return Err(StorageError::Unsupported(format!(
            "--to-device takes only a disk-image push (mcast-send --image), not {}",
            manifest.summary()
        )));
    };
    if target.device {
        let id = crate::storage::resume::push_id(manifest);
        let (sink, held) = DeviceSink::open(dest, image, &manifest.layout()?, &id, target)?;
        return Ok((Box::new(sink), held));
    }
    let path = if dest.is_dir() { dest.join(name.as_str()) } else { dest.to_path_buf() };
    Ok((Box::new(ImageFileSink::create(&path, image)?), Vec::new()))
}

/// Writes `data` (payload bytes at `offset`) through `map` with `write(image_offset, bytes)`.
fn write_pieces(
    map: &ExtentMap,
    offset: u64,
    data: &[u8],
    mut write: impl FnMut(u64, &[u8]) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let Some(pieces) = map.pieces(offset, data.len()) else {
        return Err(StorageError::OutOfRange {
            offset,
            len: data.len() as u64,
            size: map.payload_len(),
        });
    };
    for p in pieces {
        write(p.image, &data[p.at..p.at + p.len])?;
    }
    Ok(())
}

/// Reads payload bytes at `offset` into `buf` through `map` with `read(image_offset, buf)`.
fn read_pieces(
    map: &ExtentMap,
    offset: u64,
    buf: &mut [u8],
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let Some(pieces) = map.pieces(offset, buf.len()) else {
        return Err(StorageError::OutOfRange {
            offset,
            len: buf.len() as u64,
            size: map.payload_len(),
        });
    };
    for p in pieces {
        read(p.image, &mut buf[p.at..p.at + p.len])?;
    }
    Ok(())
}

/// A streamed image's trailer, as the payload's last bytes arrive.
type Trailer = [u8; STREAM_TRAILER_LEN as usize];

/// Copies the trailer's bytes of payload range `offset..offset + data.len()` into `trailer`.
fn keep_trailer(map: &ExtentMap, offset: u64, data: &[u8], trailer: &mut Trailer) {
    if let Some(t) = map.trailer_part(offset, data.len()) {
        trailer[t.trailer_at..t.trailer_at + t.len].copy_from_slice(&data[t.at..t.at + t.len]);
    }
}

/// Fills the trailer's bytes of payload range `offset..offset + buf.len()` from `trailer`.
fn give_trailer(map: &ExtentMap, offset: u64, buf: &mut [u8], trailer: &Trailer) {
    if let Some(t) = map.trailer_part(offset, buf.len()) {
        buf[t.at..t.at + t.len].copy_from_slice(&trailer[t.trailer_at..t.trailer_at + t.len]);
    }
}

/// The real length of a streamed image of bound `bound` from its verified `trailer`.
fn stream_len(trailer: &Trailer, bound: u64, path: &Path) -> Result<u64, StorageError> {
    read_trailer(trailer, bound).ok_or_else(|| StorageError::SizeMismatch {
        path: path.to_path_buf(),
        expected: bound,
        actual: u64::from_be_bytes(*trailer),
    })
}

/// Refuse a hash list over another payload size than the sink's.
fn check_layout(
    hashes: &crate::proto::manifest::HashList,
    map: &ExtentMap,
    path: &Path,
) -> Result<(), StorageError> {
    let expected = hashes.layout().object_size();
    if expected != map.payload_len() {
        return Err(StorageError::SizeMismatch {
            path: path.to_path_buf(),
            expected,
            actual: map.payload_len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
