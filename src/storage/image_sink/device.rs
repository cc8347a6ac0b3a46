//! [`DeviceSink`]: an image push written in place onto a block device (or, with `--force`, a
//! regular file standing in for one). A device has no temp file and rename, so it commits
//! this way instead:
//!
//! 1. Before anything else, a marker ([`MARKER_MAGIC`], the push id and the image size) is
//!    written over the first 4 KiB and fsynced: the partition table and any superblock there
//!    are gone, so nothing mounts a half-written device, and [`read_marker`] (or `head -c 100`)
//!    tells a later run that the device is incomplete.
//! 2. Every block is written at its image offsets as it arrives, except the part inside the
//!    first [`HOLD_BYTES`], which waits in memory.
//! 3. Once every block verified (the hash list), the holes are zeroed if asked
//!    (`--zero-fill`: `BLKZEROOUT`, or punching holes in a regular file; zeros written where
//!    neither works), the device is fsynced, optionally read back, and only then the held first
//!    region (holes in it as zeros) is written over the marker and fsynced.
//!
//! An interrupted or failed push leaves the marker: the device is known incomplete. Blocks
//! that verified and were fsynced outside the held region are recorded in a journal between
//! the marker and the end of the held region (`journal.rs`), so the next run of the same push
//! (the marker names it) keeps them and fetches only the rest; another push, or a failed one
//! ([`Sink::abort`]), starts over with the journal zeroed.
//!
//! A streamed image (`mcast-send --image -`) is written only up to its real length: all-zero
//! granules (and a granule's trailing zeros) are not written but kept as [`Runs`] (the stream's
//! zeros and everything past its end), zeroed at the commit with `--zero-fill` only up to the
//! length the verified trailer gives; the held first region is written up to that length. A
//! stream is not resumed (no journal): its push id names the bound, not the bytes.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::journal::{clear_journal, read_journal, DeviceJournal, JOURNAL_AT};
use super::runs::Runs;
use super::{
    check_layout, check_target, give_trailer, keep_trailer, read_pieces, stream_len, write_pieces,
    DeviceInfo, ImageTarget, Trailer,
};
use crate::proto::layout::Layout;
use crate::proto::manifest::{Extent, ExtentMap, HashList, Image};
use crate::storage::resume::HeldBlocks;
use crate::storage::{to_hex, Sink, StorageError};

/// The first bytes of the image that are held back in memory and written last: 1 MiB, where
/// partition tables (MBR, GPT) and most superblocks live.
pub const HOLD_BYTES: u64 = 1 << 20;

/// How much of the device the marker covers.
const MARKER_BYTES: u64 = 4096;

/// Granule of a streamed image's zero test on a device (64 KiB, aligned to image offsets).
const STREAM_GRANULE: u64 = 64 << 10;

/// What an incomplete device starts with.
pub const MARKER_MAGIC: &[u8] = b"MCAST-IMAGE-INCOMPLETE\n";

/// `_IO(0x12, 127)`: zero a byte range `[start, len]` of a block device.
const BLKZEROOUT: libc::c_ulong = 0x127f;

/// An image written in place, first region last.
#[derive(Debug)]
pub struct DeviceSink {
    file: File,
    path: PathBuf,
    map: ExtentMap,
    image: Image,
    held: Vec<u8>,
    block: bool,
    zero_fill: bool,
    committed: bool,
    /// The payload's layout (which blocks touch the held region).
    layout: Layout,
    /// Records the blocks made durable outside the held region (none for an image too small
    /// to have room for a journal).
    journal: Option<DeviceJournal>,
    /// A streamed image's trailer, as it arrived.
    trailer: Trailer,
    /// A streamed image's zero ranges left unwritten (outside the held region).
    skipped: Runs,
}

/// The marker at the start of `path`, if it holds one: `(push id hex, image size)`.
pub fn read_marker(path: &Path) -> std::io::Result<Option<(String, u64)>> {
    let f = File::open(path)?;
    let mut buf = vec![0u8; MARKER_BYTES as usize];
    let n = f.read_at(&mut buf, 0)?;
    let Some(rest) = buf[..n].strip_prefix(MARKER_MAGIC) else { return Ok(None) };
    let text = String::from_utf8_lossy(rest);
    let mut id = None;
    let mut size = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("push ") {
            id = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("size ") {
            size = v.parse().ok();
        }
    }
    Ok(id.zip(size))
}

fn marker(push_id: &[u8; 32], size: u64, len: usize) -> Vec<u8> {
    let mut m = MARKER_MAGIC.to_vec();
    m.extend_from_slice(format!("push {}\nsize {size}\n", to_hex(push_id)).as_bytes());
    m.resize(len.max(m.len()), 0);
    m.truncate(len);
    m
}

impl DeviceSink {
    /// Opens `path` for `image` (push `push_id`, payload laid out as `layout`): refuses,
    /// unless `target.force`, a device that is mounted, held, opened exclusively elsewhere or
    /// smaller than the image, and a regular file; then writes the marker. Returns the sink
    /// and the blocks an interrupted run of the same push made durable (empty when starting
    /// over).
    pub fn open(
        path: &Path,
        image: &Image,
        layout: &Layout,
        push_id: &[u8; 32],
        target: &ImageTarget,
    ) -> Result<(Self, HeldBlocks), StorageError> {
        let open = |flags| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC | flags)
                .open(path)
        };
        let file = match open(libc::O_EXCL) {
            Ok(f) => f,
            // O_EXCL on a block device: EBUSY while mounted or opened exclusively elsewhere.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && target.force => {
                open(0).map_err(|e| StorageError::io("open", path, e))?
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(StorageError::Unsupported(format!(
                    "{} is in use (mounted or opened exclusively by another process): --force to write anyway",
                    path.display()
                )))
            }
            Err(e) => return Err(StorageError::io("open", path, e)),
        };
        let info =
            DeviceInfo::gather(path, &file).map_err(|e| StorageError::io("inspect", path, e))?;
        check_target(path, &info, image.size, target.force).map_err(StorageError::Unsupported)?;
        if !info.block && info.size < image.size {
            file.set_len(image.size).map_err(|e| StorageError::io("extend", path, e))?;
        }
        let hold = HOLD_BYTES.min(image.size) as usize;
        // A stream is never resumed: its push id names the bound, not the bytes.
        let ours = !image.streamed
            && matches!(read_marker(path), Ok(Some((id, size))) if id == to_hex(push_id) && size == image.size);
        let mut sink = DeviceSink {
            file,
            path: path.to_path_buf(),
            map: ExtentMap::new(image),
            image: image.clone(),
            held: vec![0u8; hold],
            block: info.block,
            zero_fill: target.zero_fill,
            committed: false,
            layout: *layout,
            journal: None,
            trailer: Trailer::default(),
            skipped: Runs::default(),
        };
        let io = |what| move |e| StorageError::io(what, path, e);
        let (mut held, mut next) = (Vec::new(), JOURNAL_AT);
        if ours {
            (held, next) = read_journal(&sink.file, push_id, hold as u64, layout.block_count())
                .map_err(io("read the resume journal of"))?;
            // Only blocks wholly outside the held region are ever recorded; keep it so.
            held.retain(|&(b, _)| !sink.touches_held(b));
            tracing::warn!(
                "{} holds an interrupted run of this push: {} blocks kept",
                path.display(),
                held.len()
            );
        } else {
            if matches!(read_marker(path), Ok(Some(_))) {
                tracing::warn!(
                    "{} holds an interrupted earlier push; starting over",
                    path.display()
                );
            }
            // The journal region is zeroed before the marker names this push, so no reader
            // ever sees this push's marker over another push's (or old) bytes there.
            if !image.streamed {
                clear_journal(&sink.file, hold as u64)
                    .map_err(io("clear the resume journal of"))?;
            }
            let m = marker(push_id, image.size, MARKER_BYTES.min(hold as u64) as usize);
            sink.file.write_all_at(&m, 0).map_err(io("write marker to"))?;
        }
        sink.file.sync_data().map_err(io("fsync"))?;
        if hold as u64 > JOURNAL_AT && !image.streamed {
            sink.journal =
                Some(DeviceJournal::start(&sink.file, path, *push_id, next, hold as u64)?);
        }
        Ok((sink, held))
    }

    /// Whether payload block `block` has a byte in the held region (or is not in the layout).
    fn touches_held(&self, block: u32) -> bool {
        let (Some(off), Some(len)) =
            (self.layout.block_offset(block), self.layout.block_len(block))
        else {
            return true;
        };
        let hold = self.held.len() as u64;
        match self.map.pieces(off, len) {
            Some(pieces) => pieces.into_iter().any(|p| p.image < hold),
            None => true,
        }
    }

    /// Stop the journal and zero it: the next run starts over.
    fn forget_journal(&mut self) {
        if let Some(mut j) = self.journal.take() {
            j.stop();
        }
        if let Err(e) = clear_journal(&self.file, self.held.len() as u64) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not clear the resume journal");
        }
    }

    /// Writes payload bytes at `offset`; a streamed image's zero ranges outside the held
    /// region are skipped and noted, unless `rewrite` (then every byte is written over what a
    /// bad block left).
    fn put(&mut self, offset: u64, data: &[u8], rewrite: bool) -> Result<(), StorageError> {
        keep_trailer(&self.map, offset, data, &mut self.trailer);
        let streamed = self.image.streamed;
        let (file, path, held, skipped) =
            (&self.file, &self.path, &mut self.held, &mut self.skipped);
        let hold = held.len() as u64;
        write_pieces(&self.map, offset, data, |at, bytes| {
            let split = hold.saturating_sub(at).min(bytes.len() as u64) as usize;
            if split > 0 {
                held[at as usize..at as usize + split].copy_from_slice(&bytes[..split]);
            }
            let (at, bytes) = (at + split as u64, &bytes[split..]);
            let write = |at: u64, b: &[u8]| {
                file.write_all_at(b, at).map_err(|e| StorageError::io("write", path, e))
            };
            if !streamed || bytes.is_empty() {
                return if bytes.is_empty() { Ok(()) } else { write(at, bytes) };
            }
            if rewrite {
                skipped.remove(at, at + bytes.len() as u64);
                return write(at, bytes);
            }
            let mut pos = 0usize;
            while pos < bytes.len() {
                let g_end = ((at + pos as u64) / STREAM_GRANULE + 1) * STREAM_GRANULE;
                let n = ((g_end - at) as usize).min(bytes.len()) - pos;
                let g = &bytes[pos..pos + n];
                // Up to the granule's last non-zero byte; the rest is a zero run.
                let keep = g.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                if keep > 0 {
                    write(at + pos as u64, &g[..keep])?;
                }
                skipped.add(at + (pos + keep) as u64, at + (pos + n) as u64);
                pos += n;
            }
            Ok(())
        })
    }

    /// Zeroes `hole` (outside the held region) on the device.
    fn zero(&self, hole: Extent) -> Result<(), StorageError> {
        let start = hole.offset.max(self.held.len() as u64);
        let end = hole.end();
        if start >= end {
            return Ok(());
        }
        let fd = self.file.as_raw_fd();
        let done = if self.block {
            // BLKZEROOUT wants 512-byte alignment: the inner part by ioctl, the edges as zeros.
            let (a, b) = (start.next_multiple_of(512), end / 512 * 512);
            if a < b {
                let range = [a, b - a];
                // SAFETY: BLKZEROOUT reads two u64 from the pointer, which points to them.
                let ok = unsafe { libc::ioctl(fd, BLKZEROOUT, range.as_ptr()) } == 0;
                ok.then_some((a, b))
            } else {
                None
            }
        } else {
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            // SAFETY: fallocate on an fd we own; no memory involved.
            let ok = unsafe { libc::fallocate(fd, mode, start as i64, (end - start) as i64) } == 0;
            ok.then_some((start, end))
        };
        let (a, b) = done.unwrap_or((end, end));
        self.write_zeros(start, a.min(end))?;
        self.write_zeros(b.max(start), end)
    }

    fn write_zeros(&self, mut from: u64, to: u64) -> Result<(), StorageError> {
        let zeros = vec![0u8; (to.saturating_sub(from)).min(1 << 20) as usize];
        while from < to {
            let n = (to - from).min(zeros.len() as u64) as usize;
            self.file
                .write_all_at(&zeros[..n], from)
                .map_err(|e| StorageError::io("zero", &self.path, e))?;
            from += n as u64;
        }
        Ok(())
    }
}

impl Sink for DeviceSink {
    fn len(&self) -> u64 {
        self.map.payload_len()
    }

    fn destination(&self) -> &Path {
        &self.path
    }

    /// Every byte of an extent is written (a device's old contents are not zeros).
    fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError> {
        self.put(offset, data, false).map(|()| true)
    }

    fn rewrite_block(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.put(offset, data, true)
    }

    fn finish(
        mut self: Box<Self>,
        hashes: &HashList,
        verify_readback: bool,
    ) -> Result<[u8; 32], StorageError> {
        check_layout(hashes, &self.map, &self.path)?;
        // A stream's real length, from its verified trailer; the bound for any other image.
        let end = if self.image.streamed {
            stream_len(&self.trailer, self.image.size, &self.path)?
        } else {
            self.image.size
        };
        if self.zero_fill {
            let zeros: Vec<Extent> = if self.image.streamed {
                self.skipped.within(0, end)
            } else {
                self.image.holes().collect()
            };
            for hole in zeros {
                self.zero(hole)?;
            }
        }
        self.file.sync_all().map_err(|e| StorageError::io("fsync", &self.path, e))?;
        if verify_readback {
            let hold = self.held.len() as u64;
            let bad = hashes.first_mismatch(|off, buf| {
                give_trailer(&self.map, off, buf, &self.trailer);
                read_pieces(&self.map, off, buf, |at, b| {
                    let split = hold.saturating_sub(at).min(b.len() as u64) as usize;
                    if split > 0 {
                        b[..split].copy_from_slice(&self.held[at as usize..at as usize + split]);
                    }
                    self.file
                        .read_exact_at(&mut b[split..], at + split as u64)
                        .map_err(|e| StorageError::io("read back", &self.path, e))?;
                    // A stream's unwritten zeros read as what they stand for.
                    for z in self.skipped.within(at, at + b.len() as u64) {
                        let from = (z.offset - at) as usize;
                        b[from..from + z.len as usize].fill(0);
                    }
                    Ok(())
                })
            })?;
            if let Some(b) = bad {
                // What the journal says was verified does not read back: never resume from it.
                self.forget_journal();
                return Err(StorageError::HashMismatch {
                    expected: format!("block {b} as verified"),
                    actual: "other bytes read back (the device stays marked incomplete)".into(),
                });
            }
        }
        // Commit: the first region over the marker (and the journal), last; the journal's
        // thread has stopped writing before.
        if let Some(mut j) = self.journal.take() {
            j.stop();
        }
        // A stream shorter than the held region: its bytes, and the marker's bytes (zeros).
        let first = (self.held.len() as u64).min(end.max(MARKER_BYTES)) as usize;
        self.file
            .write_all_at(&self.held[..first], 0)
            .map_err(|e| StorageError::io("write", &self.path, e))?;
        self.file.sync_all().map_err(|e| StorageError::io("fsync", &self.path, e))?;
        self.committed = true;
        tracing::info!(
            "{}: image committed (first {} B written last)",
            self.path.display(),
            self.held.len()
        );
        Ok(hashes.root())
    }

    /// A failed push: the device stays marked incomplete and its journal is zeroed, so the
    /// next run writes it from the start.
    fn abort(mut self: Box<Self>) {
        if !self.committed {
            self.forget_journal();
            tracing::warn!(
                "{} is left incomplete: its first 4 KiB hold the mcast marker (run the push again)",
                self.path.display()
            );
        }
    }

    /// Recorded once the device is fsynced with it, if no byte of it is in the held region.
    fn record_block(&mut self, block: u32, hash: [u8; 32]) {
        if !self.touches_held(block) {
            if let Some(j) = &self.journal {
                j.record(block, hash);
            }
        }
    }

    /// Interrupted: record what was given, keep the marker and the journal for a resume.
    fn suspend(mut self: Box<Self>) {
        if let Some(mut j) = self.journal.take() {
            j.stop();
        }
        tracing::warn!(
            "{} is left incomplete, with a resume journal: run the same push again to finish it",
            self.path.display()
        );
    }
}
