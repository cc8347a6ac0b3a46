//! Sender side: a file opened for sending. Blocks are read on demand with
//! positioned reads, so one [`FileSource`] can be shared (via `Arc`) by many
//! worker threads and the file is never loaded into memory as a whole.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{check_range, validate_name, StorageError, IO_CHUNK};

/// Hashes computed by one read pass over a source, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceHashes {
    /// BLAKE3 of each block, in order; the last block may be short and is
    /// hashed unpadded. Empty for an empty file.
    pub block_hashes: Vec<[u8; 32]>,
    /// BLAKE3 of the whole file.
    pub object_hash: [u8; 32],
}

/// A file opened for sending: reads blocks on demand with positioned reads,
/// never loads the whole file. `Send + Sync`; all methods take `&self`.
///
/// The length is taken when the file is opened; reads never go past it.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    path: PathBuf,
    len: u64,
}

impl FileSource {
    /// Opens `path`, which must be (or link to) a regular file.
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
        Ok(FileSource { file, path: path.to_path_buf(), len: meta.len() })
    }

    /// Length of the file in bytes (as of [`open`](Self::open)).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File name (last component) as UTF-8, validated with
    /// [`validate_name`].
    pub fn name(&self) -> Result<String, StorageError> {
        let Some(name) = self.path.file_name() else {
            return Err(StorageError::BadName(format!(
                "{} has no file name component",
                self.path.display()
            )));
        };
        let Some(name) = name.to_str() else {
            return Err(StorageError::BadName(format!("{:?} is not valid UTF-8", name)));
        };
        validate_name(name)?;
        Ok(name.to_owned())
    }

    /// Reads `len` bytes at `offset` into a new `Vec`.
    ///
    /// Fails with [`StorageError::OutOfRange`] if the range reaches past the
    /// end of the file.
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        check_range(offset, len as u64, self.len)?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Fills `buf` from `offset`, reporting a file that shrank since
    /// [`open`](Self::open) as [`StorageError::SizeMismatch`].
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StorageError> {
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

    /// One sequential pass: BLAKE3 of each `block_bytes`-sized block (the
    /// last one short, unpadded) and of the whole file.
    ///
    /// Memory use is bounded by a single reusable buffer of at most
    /// `min(block_bytes, 1 MiB)` bytes. `block_bytes` must be non-zero.
    pub fn hash_blocks(&self, block_bytes: u64) -> Result<SourceHashes, StorageError> {
        if block_bytes == 0 {
            return Err(StorageError::InvalidArgument("block size must be > 0"));
        }
        let n_blocks = self.len.div_ceil(block_bytes);
        let chunk = block_bytes.min(IO_CHUNK).min(self.len.max(1));
        // `chunk` is at most 1 MiB, so it fits in usize.
        let mut buf = vec![0u8; chunk as usize];
        let mut block_hashes = Vec::with_capacity(usize::try_from(n_blocks).unwrap_or(0));
        let mut whole = blake3::Hasher::new();
        let mut block = blake3::Hasher::new();
        let mut offset = 0u64;
        while offset < self.len {
            let block_end = offset.saturating_add(block_bytes).min(self.len);
            block.reset();
            while offset < block_end {
                let n = (block_end - offset).min(chunk) as usize;
                let piece = &mut buf[..n];
                self.read_exact_at(piece, offset)?;
                block.update(piece);
                whole.update(piece);
                offset += n as u64;
            }
            block_hashes.push(*block.finalize().as_bytes());
        }
        Ok(SourceHashes { block_hashes, object_hash: *whole.finalize().as_bytes() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(src.name().unwrap(), "src.bin");
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
