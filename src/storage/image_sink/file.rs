//! [`ImageFileSink`]: an image push into a regular file. A temp file of the image's size is
//! created beside the destination (sparse: holes and all-zero data are never written), every
//! block lands at its image offsets, and `finish` fsyncs it (reads it back first with
//! `--verify-readback`) and renames it over the destination. Dropped unfinished, it removes
//! the temp file; the destination is never touched before the rename. A streamed image is
//! staged at its bound and truncated to the length its verified trailer gives before the fsync.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{
    check_layout, give_trailer, keep_trailer, read_pieces, stream_len, write_pieces, Trailer,
};
use crate::proto::manifest::{ExtentMap, HashList, Image};
use crate::storage::image_source::is_zero;
use crate::storage::names::{random_u64, temp_file_name};
use crate::storage::resume::try_lock;
use crate::storage::{Sink, StorageError};

/// The unit of the zero test of what is written (64 KiB, aligned to image offsets).
const ZERO_GRANULE: u64 = 64 << 10;

/// A sparse temp file beside the destination, renamed into place once verified.
#[derive(Debug)]
pub struct ImageFileSink {
    file: File,
    map: ExtentMap,
    dir: PathBuf,
    final_path: PathBuf,
    temp_path: PathBuf,
    size: u64,
    done: bool,
    streamed: bool,
    trailer: Trailer,
}

impl ImageFileSink {
    /// A sink for `image` to be placed at `path` (whose parent must exist).
    pub fn create(path: &Path, image: &Image) -> Result<Self, StorageError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| StorageError::BadName(format!("{}: no file name", path.display())))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temp_path = dir.join(temp_file_name(name, random_u64()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&temp_path)
            .map_err(|e| StorageError::io("create temp file", &temp_path, e))?;
        let sink = ImageFileSink {
            file,
            map: ExtentMap::new(image),
            dir,
            final_path: path.to_path_buf(),
            temp_path,
            size: image.size,
            done: false,
            streamed: image.streamed,
            trailer: Trailer::default(),
        };
        // A new file: only a racing process could hold a lock on it.
        if !try_lock(&sink.file).map_err(|e| StorageError::io("lock", &sink.temp_path, e))? {
            return Err(StorageError::Busy { dest: sink.final_path.clone(), pid: 0 });
        }
        sink.file
            .set_len(image.size)
            .map_err(|e| StorageError::io("set length of", &sink.temp_path, e))?;
        Ok(sink)
    }

    /// Path of the temp file being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    fn put(&mut self, offset: u64, data: &[u8], skip_zeros: bool) -> Result<bool, StorageError> {
        keep_trailer(&self.map, offset, data, &mut self.trailer);
        let mut wrote = false;
        let (file, temp) = (&self.file, &self.temp_path);
        let mut write = |at: u64, bytes: &[u8]| {
            wrote = true;
            file.write_all_at(bytes, at).map_err(|e| StorageError::io("write", temp, e))
        };
        write_pieces(&self.map, offset, data, |at, bytes| {
            if !skip_zeros {
                return write(at, bytes);
            }
            // Granule by granule (aligned to image offsets): a streamed image's pieces are
            // whole blocks, zeros included.
            let mut pos = 0usize;
            while pos < bytes.len() {
                let g_end = ((at + pos as u64) / ZERO_GRANULE + 1) * ZERO_GRANULE;
                let n = ((g_end - at) as usize).min(bytes.len()) - pos;
                if !is_zero(&bytes[pos..pos + n]) {
                    write(at + pos as u64, &bytes[pos..pos + n])?;
                }
                pos += n;
            }
            Ok(())
        })?;
        Ok(wrote)
    }

    fn remove_temp(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.temp_path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.temp_path.display(), error = %e, "could not remove temp file");
            }
        }
    }
}

impl Drop for ImageFileSink {
    fn drop(&mut self) {
        self.remove_temp();
    }
}

impl Sink for ImageFileSink {
    fn len(&self) -> u64 {
        self.map.payload_len()
    }

    fn destination(&self) -> &Path {
        &self.final_path
    }

    /// The temp file starts as one hole: all-zero pieces are left unwritten.
    fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError> {
        self.put(offset, data, true)
    }

    fn rewrite_block(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.put(offset, data, false).map(|_| ())
    }

    fn finish(
        mut self: Box<Self>,
        hashes: &HashList,
        verify_readback: bool,
    ) -> Result<[u8; 32], StorageError> {
        check_layout(hashes, &self.map, &self.temp_path)?;
        if self.streamed {
            // Every block verified, the trailer too: the image is that long.
            self.size = stream_len(&self.trailer, self.size, &self.temp_path)?;
            self.file
                .set_len(self.size)
                .map_err(|e| StorageError::io("truncate", &self.temp_path, e))?;
        }
        self.file.sync_all().map_err(|e| StorageError::io("fsync", &self.temp_path, e))?;
        let len =
            self.file.metadata().map_err(|e| StorageError::io("stat", &self.temp_path, e))?.len();
        if len != self.size {
            return Err(StorageError::SizeMismatch {
                path: self.temp_path.clone(),
                expected: self.size,
                actual: len,
            });
        }
        if verify_readback {
            let size = self.size;
            let bad = hashes.first_mismatch(|off, buf| {
                give_trailer(&self.map, off, buf, &self.trailer);
                read_pieces(&self.map, off, buf, |at, b| {
                    // A stream's bytes past its end were zeros, and are gone.
                    let n = size.saturating_sub(at).min(b.len() as u64) as usize;
                    b[n..].fill(0);
                    self.file
                        .read_exact_at(&mut b[..n], at)
                        .map_err(|e| StorageError::io("read back", &self.temp_path, e))
                })
            })?;
            if let Some(b) = bad {
                return Err(StorageError::HashMismatch {
                    expected: format!("block {b} as verified"),
                    actual: "other bytes read back".into(),
                });
            }
        }
        std::fs::rename(&self.temp_path, &self.final_path)
            .map_err(|e| StorageError::io("rename temp file to", &self.final_path, e))?;
        self.done = true;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io("fsync directory", &self.dir, e))?;
        Ok(hashes.root())
    }

    fn abort(mut self: Box<Self>) {
        self.remove_temp();
    }
}
