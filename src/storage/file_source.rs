//! [`FileSource`]: one regular file as a payload, read on demand with positioned reads, so one
//! source can be shared (via `Arc`) by many worker threads and the file is never loaded into
//! memory as a whole. Its manifest is a single file entry named after the file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{check_range, Source, StorageError};
use crate::proto::manifest::{Entry, RelPath};

/// A regular file opened for sending. `Send + Sync`; all methods take `&self`.
///
/// The length is taken when the file is opened; reads never go past it.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    path: PathBuf,
    len: u64,
    /// The one entry: the file's name, covering the whole payload.
    entries: [Entry; 1],
}

impl FileSource {
    /// Opens `path`, which must be (or link to) a regular file whose last component is a
    /// valid UTF-8 [`RelPath`] (it names the file at the receivers).
    ///
    /// The file is opened with `O_NONBLOCK` so that a FIFO or device given
    /// by mistake is rejected instead of blocking the open.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| StorageError::io("open", path, e))?;
        let meta = file.metadata().map_err(|e| StorageError::io("stat", path, e))?;
        if !meta.is_file() {
            return Err(StorageError::NotRegularFile(path.to_path_buf()));
        }
        let name = file_name(path)?;
        let len = meta.len();
        let mut entry = Entry::file(name, 0, len);
        entry.mtime = super::mtime_of(&meta);
        Ok(FileSource { file, path: path.to_path_buf(), len, entries: [entry] })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name the file gets at the receivers (its last path component).
    pub fn name(&self) -> &RelPath {
        &self.entries[0].path
    }
}

/// The last component of `path` as a checked single-component [`RelPath`].
fn file_name(path: &Path) -> Result<RelPath, StorageError> {
    let Some(name) = path.file_name() else {
        return Err(StorageError::BadName(format!(
            "{} has no file name component",
            path.display()
        )));
    };
    let Some(name) = name.to_str() else {
        return Err(StorageError::BadName(format!("{name:?} is not valid UTF-8")));
    };
    Ok(RelPath::new(name)?)
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Reports a file that shrank since [`open`](FileSource::open) as
    /// [`StorageError::SizeMismatch`].
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        check_range(offset, buf.len() as u64, self.len)?;
        self.file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StorageError::SizeMismatch {
                    path: self.path.clone(),
                    expected: self.len,
                    actual: self.file.metadata().map(|m| m.len()).unwrap_or(0),
                }
            } else {
                StorageError::io("read", &self.path, e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::IO_CHUNK;
    use std::io::Write;

    fn source_with(data: &[u8]) -> (tempfile::TempDir, FileSource) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src.bin");
        std::fs::File::create(&path).unwrap().write_all(data).unwrap();
        let src = FileSource::open(&path).unwrap();
        (dir, src)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<FileSource>();
    }

    #[test]
    fn hashes_match_direct_computation() {
        let block = 64usize;
        for len in [0, 1, block - 1, block, block + 1, 5 * block + 7, 3 * block] {
            let data = pattern(len);
            let (_dir, src) = source_with(&data);
            let h = src.hash_blocks(block as u64).unwrap();
            let expected: Vec<[u8; 32]> =
                data.chunks(block).map(|c| *blake3::hash(c).as_bytes()).collect();
            assert_eq!(h.block_hashes, expected, "len {len}");
            assert_eq!(h.object_hash, *blake3::hash(&data).as_bytes());
        }
    }

    #[test]
    fn blocks_larger_than_io_chunk() {
        // Block of 1 MiB + 3 exercises the inner chunk loop.
        let block = (IO_CHUNK + 3) as usize;
        let data = pattern(2 * block + 10);
        let (_dir, src) = source_with(&data);
        let h = src.hash_blocks(block as u64).unwrap();
        assert_eq!(h.block_hashes.len(), 3);
        for (c, got) in data.chunks(block).zip(&h.block_hashes) {
            assert_eq!(got, blake3::hash(c).as_bytes());
        }
        assert_eq!(h.object_hash, *blake3::hash(&data).as_bytes());
    }

    #[test]
    fn huge_block_size_is_fine() {
        let data = pattern(1000);
        let (_dir, src) = source_with(&data);
        let h = src.hash_blocks(u64::MAX).unwrap();
        assert_eq!(h.block_hashes, vec![*blake3::hash(&data).as_bytes()]);
    }

    #[test]
    fn zero_block_size_rejected() {
        let (_dir, src) = source_with(b"abc");
        assert!(matches!(src.hash_blocks(0), Err(StorageError::InvalidArgument(_))));
    }

    #[test]
    fn read_at_bounds() {
        let data = pattern(100);
        let (_dir, src) = source_with(&data);
        assert_eq!(src.len(), 100);
        assert!(!src.is_empty());
        assert_eq!(src.read_at(10, 20).unwrap(), &data[10..30]);
        assert_eq!(src.read_at(100, 0).unwrap(), Vec::<u8>::new());
        assert_eq!(src.read_at(0, 100).unwrap(), data);
        for (off, len) in [(0, 101), (100, 1), (u64::MAX, 1), (101, 0)] {
            assert!(
                matches!(src.read_at(off, len), Err(StorageError::OutOfRange { .. })),
                "{off} {len}"
            );
        }
    }

    #[test]
    fn truncated_file_reports_size_mismatch() {
        let data = pattern(100);
        let (_dir, src) = source_with(&data);
        std::fs::OpenOptions::new().write(true).open(src.path()).unwrap().set_len(10).unwrap();
        assert!(matches!(src.read_at(50, 10), Err(StorageError::SizeMismatch { actual: 10, .. })));
        assert!(matches!(src.hash_blocks(16), Err(StorageError::SizeMismatch { .. })));
    }

    #[test]
    fn name_and_non_regular_files() {
        let (dir, src) = source_with(b"x");
        assert_eq!(src.name().as_str(), "src.bin");
        let e = &src.entries()[0];
        assert_eq!((e.path.as_str(), e.payload_range()), ("src.bin", Some(0..1)));
        let meta = std::fs::metadata(dir.path().join("src.bin")).unwrap();
        let secs = std::os::unix::fs::MetadataExt::mtime(&meta);
        assert_eq!(e.mtime.map(|t| t.secs), Some(secs), "the file's mtime");
        assert_eq!(src.path(), dir.path().join("src.bin"));
        assert!(matches!(FileSource::open(dir.path()), Err(StorageError::NotRegularFile(_))));
        assert!(matches!(
            FileSource::open(&dir.path().join("missing")),
            Err(StorageError::Io { op: "open", .. })
        ));
    }

    #[test]
    fn fifo_is_rejected_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !matches!(status, Ok(s) if s.success()) {
            return; // mkfifo unavailable; nothing to test
        }
        assert!(matches!(FileSource::open(&fifo), Err(StorageError::NotRegularFile(_))));
    }
}
