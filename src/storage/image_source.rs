//! [`ImageSource`], the [`Source`] of `mcast-send --image FILE|DEVICE|-`: a raw disk image or
//! a block device, of which only the data travels. The payload is the image's data extents
//! back to back ([`Image`]): holes found with `SEEK_DATA`/`SEEK_HOLE` (the whole file is data
//! where the file system or a device cannot say), then all-zero runs of
//! [`ImageOptions::granularity`] found by reading the data once on worker threads (one 1 MiB
//! buffer each) are left out too. `--no-sparse` ([`ImageOptions::sparse`] off) sends every
//! byte. A block device's size comes from `BLKGETSIZE64`. A pipe (`-`) is a [`StreamSource`]
//! (`stream.rs`): read as it is sent, under an upper bound ([`ImageOptions::stream_bound`],
//! `--max-size`); [`open_image`] picks the one a path needs.

pub mod producer;
pub mod stream;
pub use producer::Producer;
pub use stream::StreamSource;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Source, StorageError};
use crate::proto::manifest::{
    Entry, EntryError, EntryKind, Extent, ExtentMap, Image, RelPath, MAX_EXTENTS,
};

/// Default granularity of the all-zero scan: 64 KiB.
pub const DEFAULT_GRANULARITY: u64 = 64 << 10;

/// Bytes one scan work item covers (a worker reads it in 1 MiB pieces).
const SCAN_ITEM: u64 = 64 << 20;

/// Read size of the scan and of the spool.
const SCAN_READ: usize = 1 << 20;

/// How an image is scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOptions {
    /// Leave holes and all-zero runs out of the payload (`--no-sparse`: off).
    pub sparse: bool,
    /// Size of the all-zero runs looked for, in bytes (a power of two, at least 4 KiB).
    pub granularity: u64,
    /// Threads reading the data for the zero scan.
    pub threads: usize,
    /// For a pipe (`-`): the most bytes it may hold (`mcast-send --max-size`), announced as the
    /// image's size. Required for a pipe.
    pub stream_bound: Option<u64>,
    /// For a pipe: read the standard output of `sh -c COMMAND` (`--image-from`), whose failure
    /// fails the push, instead of standard input ([`Producer`]).
    pub stream_command: Option<String>,
}

impl Default for ImageOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        ImageOptions {
            sparse: true,
            granularity: DEFAULT_GRANULARITY,
            threads,
            stream_bound: None,
            stream_command: None,
        }
    }
}

/// The source of `mcast-send --image PATH`: a [`StreamSource`] of standard input for `-`
/// (which needs [`ImageOptions::stream_bound`]), else an [`ImageSource`].
pub fn open_image(
    path: &Path,
    opts: &ImageOptions,
) -> Result<std::sync::Arc<dyn Source>, StorageError> {
    if path != Path::new("-") {
        return Ok(std::sync::Arc::new(ImageSource::open(path, opts)?));
    }
    let Some(bound) = opts.stream_bound else {
        return Err(StorageError::InvalidArgument(
            "an image from standard input needs --max-size (the most bytes it may hold)",
        ));
    };
    let input: Box<dyn std::io::Read + Send> = match &opts.stream_command {
        Some(command) => Box::new(
            Producer::spawn(command)
                .map_err(|e| StorageError::io("start", "the --image-from command", e))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    Ok(std::sync::Arc::new(StreamSource::new(input, bound, "image", &std::env::temp_dir())?))
}

/// A disk image or block device as a payload of its data extents.
#[derive(Debug)]
pub struct ImageSource {
    file: File,
    path: PathBuf,
    map: ExtentMap,
    entries: Vec<Entry>,
    size: u64,
}

impl ImageSource {
    /// Opens the image or device at `path` and finds its data (a pipe is a
    /// [`StreamSource`], see [`open_image`]).
    pub fn open(path: &Path, opts: &ImageOptions) -> Result<Self, StorageError> {
        if opts.granularity < 4096 || !opts.granularity.is_power_of_two() {
            return Err(StorageError::InvalidArgument("granularity: a power of two >= 4 KiB"));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| StorageError::io("open", path, e))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("image").to_string();
        Self::from_file(file, path, &name, opts)
    }

    /// The source of an open image `file` (a regular file or a block device) named `name`.
    pub fn from_file(
        file: File,
        path: &Path,
        name: &str,
        opts: &ImageOptions,
    ) -> Result<Self, StorageError> {
        let meta = file.metadata().map_err(|e| StorageError::io("stat", path, e))?;
        let ft = meta.file_type();
        let (size, device) = if ft.is_block_device() {
            (device_size(&file).map_err(|e| StorageError::io("BLKGETSIZE64", path, e))?, true)
        } else if ft.is_file() {
            (meta.len(), false)
        } else {
            return Err(StorageError::NotRegularFile(path.to_path_buf()));
        };
        let extents = if !opts.sparse {
            whole(0, size)
        } else {
            let data = if device { whole(0, size) } else { data_ranges(&file, size) };
            let found =
                scan_zeros(&file, &data, opts).map_err(|e| StorageError::io("read", path, e))?;
            coalesce(found, opts.granularity, MAX_EXTENTS)
        };
        let image = Image { size, extents, streamed: false };
        let data = image.data_len();
        image.check(data).map_err(|e| StorageError::Manifest(EntryError::from(e).into()))?;
        let name = RelPath::new(name).or_else(|_| RelPath::new("image"))?;
        let map = ExtentMap::new(&image);
        let mtime = super::mtime_of(&meta);
        let mut entry = Entry::new(name, EntryKind::Image(image));
        entry.mtime = mtime.filter(|_| !device);
        tracing::info!(
            "image {}: {} bytes, {} of data in {} extents",
            path.display(),
            size,
            data,
            map_len(&entry)
        );
        Ok(ImageSource { file, path: path.to_path_buf(), map, entries: vec![entry], size })
    }

    /// Size of the image (its target must be at least this large).
    pub fn image_size(&self) -> u64 {
        self.size
    }

    /// The image's size and extents.
    pub fn image(&self) -> &Image {
        match &self.entries[0].kind {
            EntryKind::Image(img) => img,
            _ => unreachable!("an image source has one image entry"),
        }
    }
}

fn map_len(e: &Entry) -> usize {
    match &e.kind {
        EntryKind::Image(img) => img.extents.len(),
        _ => 0,
    }
}

impl Source for ImageSource {
    fn len(&self) -> u64 {
        self.map.payload_len()
    }

    fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let size = self.len();
        let Some(pieces) = self.map.pieces(offset, buf.len()) else {
            return Err(StorageError::OutOfRange { offset, len: buf.len() as u64, size });
        };
        for p in pieces {
            let dst = &mut buf[p.at..p.at + p.len];
            self.file.read_exact_at(dst, p.image).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    StorageError::Changed { path: self.path.clone(), what: "truncated" }
                } else {
                    StorageError::io("read", &self.path, e)
                }
            })?;
        }
        Ok(())
    }
}

/// The size of block device `file` (`BLKGETSIZE64`).
pub fn device_size(file: &File) -> std::io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to a live u64.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(size)
}

/// `_IOR(0x12, 114, size_t)`.
pub(crate) const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

fn whole(offset: u64, len: u64) -> Vec<Extent> {
    if len == 0 {
        Vec::new()
    } else {
        vec![Extent { offset, len }]
    }
}

/// The data ranges of `file` by `SEEK_DATA`/`SEEK_HOLE`; all of `0..size` where the file
/// system does not support them.
pub fn data_ranges(file: &File, size: u64) -> Vec<Extent> {
    let fd = file.as_raw_fd();
    let seek = |off: u64, whence| {
        // SAFETY: lseek on a valid fd has no memory effects.
        let r = unsafe { libc::lseek(fd, off as libc::off_t, whence) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r as u64)
        }
    };
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match seek(pos, libc::SEEK_DATA) {
            Ok(s) => s.min(size),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(_) => return whole(0, size),
        };
        if start >= size {
            break;
        }
        let end = match seek(start, libc::SEEK_HOLE) {
            Ok(h) => h.clamp(start + 1, size),
            Err(_) => return whole(0, size),
        };
        out.push(Extent { offset: start, len: end - start });
        pos = end;
    }
    out
}

/// Whether every byte of `data` is zero.
pub(crate) fn is_zero(data: &[u8]) -> bool {
    let mut chunks = data.chunks_exact(64);
    chunks.by_ref().all(|c| c.iter().fold(0u8, |a, b| a | b) == 0)
        && chunks.remainder().iter().all(|b| *b == 0)
}

/// The parts of the `data` ranges that are not all-zero at `opts.granularity` (granules
/// aligned to image offsets), read on `opts.threads` workers in items of [`SCAN_ITEM`].
fn scan_zeros(file: &File, data: &[Extent], opts: &ImageOptions) -> std::io::Result<Vec<Extent>> {
    let mut items = Vec::new();
    for e in data {
        let mut pos = e.offset;
        while pos < e.end() {
            let end = (pos + SCAN_ITEM).min(e.end());
            items.push(Extent { offset: pos, len: end - pos });
            pos = end;
        }
    }
    let next = AtomicUsize::new(0);
    let threads = opts.threads.clamp(1, items.len().max(1));
    let (tx, rx) = std::sync::mpsc::channel::<(usize, std::io::Result<Vec<Extent>>)>();
    let mut out = Vec::new();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (tx, next, items) = (tx.clone(), &next, &items);
            s.spawn(move || {
                let mut buf = vec![0u8; SCAN_READ];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = scan_item(file, *item, opts.granularity, &mut buf);
                    let failed = r.is_err();
                    if tx.send((i, r)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Results in item order; the ones that arrive early wait here.
        let mut pending = BTreeMap::new();
        let mut want = 0;
        for (i, r) in rx {
            pending.insert(i, r);
            while let Some(r) = pending.remove(&want) {
                append(&mut out, r?);
                want += 1;
                if out.len() > 2 * MAX_EXTENTS {
                    out = coalesce(std::mem::take(&mut out), opts.granularity, MAX_EXTENTS);
                }
            }
        }
        Ok::<(), std::io::Error>(())
    })?;
    Ok(out)
}

/// The non-zero granules of `item`, merged.
fn scan_item(file: &File, item: Extent, gran: u64, buf: &mut [u8]) -> std::io::Result<Vec<Extent>> {
    let mut out = Vec::new();
    let mut pos = item.offset;
    while pos < item.end() {
        let n = (item.end() - pos).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, pos)?;
        let mut at = 0usize;
        while at < n {
            // Granules are aligned to image offsets; the first and last may be partial.
            let g_end = ((pos + at as u64) / gran + 1) * gran;
            let len = ((g_end - pos) as usize).min(n) - at;
            if !is_zero(&chunk[at..at + len]) {
                append(&mut out, vec![Extent { offset: pos + at as u64, len: len as u64 }]);
            }
            at += len;
        }
        pos += n as u64;
    }
    Ok(out)
}

/// Appends `more` (sorted, after `out`) to `out`, merging touching extents.
fn append(out: &mut Vec<Extent>, more: Vec<Extent>) {
    for e in more {
        match out.last_mut() {
            Some(last) if last.end() == e.offset => last.len += e.len,
            _ => out.push(e),
        }
    }
}

/// Merges extents whose gap is smaller than a threshold, doubling it from `gran` until at most
/// `max` extents remain (the gaps' zeros then travel as data).
pub fn coalesce(mut ext: Vec<Extent>, gran: u64, max: usize) -> Vec<Extent> {
    let mut gap = gran;
    while ext.len() > max {
        gap = gap.saturating_mul(2);
        let mut merged: Vec<Extent> = Vec::with_capacity(ext.len() / 2 + 1);
        for e in ext {
            match merged.last_mut() {
                Some(last) if e.offset - last.end() < gap => last.len = e.end() - last.offset,
                _ => merged.push(e),
            }
        }
        ext = merged;
    }
    ext
}

#[cfg(test)]
#[path = "image_source/tests.rs"]
mod tests;
