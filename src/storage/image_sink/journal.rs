//! The resume journal of a device push ([`DeviceSink`](super::DeviceSink)), kept on the device
//! itself, inside the region that is written last: from the end of the marker (4 KiB) to the
//! end of the held first region (1 MiB, or the image's size if smaller). Nothing of the image
//! is there until the commit, which overwrites the journal with the image's first bytes.
//!
//! Format: an append-only array of 40-byte records from [`JOURNAL_AT`]: block (u32 LE),
//! BLAKE3 of the bytes written (32), CRC-32 of the push id followed by both (4). Reading stops
//! at the first record that fails its CRC (a zeroed slot, a torn write, or a record of another
//! push: the CRC covers the push id), so a journal of another push never counts. A later
//! record for a block replaces an earlier one (a block written again). When a push starts over
//! (another push id, or no marker), the whole region is zeroed first.
//!
//! Durability: a block is recorded only after the device was fsynced with its bytes on it (a
//! thread batches [`FLUSH_BLOCKS`](crate::storage::resume::FLUSH_BLOCKS) blocks or
//! [`FLUSH_INTERVAL`](crate::storage::resume::FLUSH_INTERVAL), as the file journal does); the
//! record itself is synced with the next batch, so a lost record only means a block fetched
//! again. Only blocks with no byte in the held region are recorded: those bytes are in memory
//! and die with the process. A full region (about 26,000 records: 26 GiB of data in 1 MiB
//! blocks) stops recording; the rest of the push is fetched again after an interruption.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

use crate::storage::resume::{flush_batches, HeldBlocks};
use crate::storage::StorageError;

/// Where the journal starts on the device: right after the marker.
pub const JOURNAL_AT: u64 = 4096;
/// Bytes of a record.
const RECORD: usize = 4 + 32 + 4;

fn crc(push_id: &[u8; 32], body: &[u8]) -> [u8; 4] {
    let mut h = crc32fast::Hasher::new();
    h.update(push_id);
    h.update(body);
    h.finalize().to_le_bytes()
}

fn record(push_id: &[u8; 32], block: u32, hash: &[u8; 32]) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..4].copy_from_slice(&block.to_le_bytes());
    r[4..36].copy_from_slice(hash);
    let c = crc(push_id, &r[..36]);
    r[36..].copy_from_slice(&c);
    r
}

/// The blocks the journal in `file` (region `JOURNAL_AT..end`) records for push `push_id`, of
/// at most `block_count` blocks, each with its hash (the last record of a block wins), and
/// where the next record goes.
pub fn read_journal(
    file: &File,
    push_id: &[u8; 32],
    end: u64,
    block_count: u32,
) -> std::io::Result<(HeldBlocks, u64)> {
    let len = end.saturating_sub(JOURNAL_AT) as usize;
    let mut region = vec![0u8; len];
    let n = read_fully(file, &mut region, JOURNAL_AT)?;
    let mut hashes = std::collections::BTreeMap::new();
    let mut next = JOURNAL_AT;
    for r in region[..n].chunks_exact(RECORD) {
        if crc(push_id, &r[..36]) != r[36..] {
            break;
        }
        let block = u32::from_le_bytes(r[..4].try_into().expect("4 bytes"));
        if block >= block_count {
            break;
        }
        hashes.insert(block, <[u8; 32]>::try_from(&r[4..36]).expect("32 bytes"));
        next += RECORD as u64;
    }
    Ok((hashes.into_iter().collect(), next))
}

/// Reads at `at` until `buf` is full or the file ends; the bytes read.
fn read_fully(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Zero the journal region `JOURNAL_AT..end` of `file` (a push starting over).
pub fn clear_journal(file: &File, end: u64) -> std::io::Result<()> {
    let len = end.saturating_sub(JOURNAL_AT) as usize;
    file.write_all_at(&vec![0u8; len], JOURNAL_AT)
}

/// Records verified blocks on the device from a thread of its own, the device synced first.
#[derive(Debug)]
pub struct DeviceJournal {
    tx: Option<Sender<(u32, [u8; 32])>>,
    thread: Option<JoinHandle<()>>,
}

impl DeviceJournal {
    /// Start recording into `file` (`path` for logs) at `next`, up to `end`, for `push_id`.
    pub fn start(
        file: &File,
        path: &Path,
        push_id: [u8; 32],
        next: u64,
        end: u64,
    ) -> Result<Self, StorageError> {
        let file =
            file.try_clone().map_err(|e| StorageError::io("duplicate handle of", path, e))?;
        let err_path = path.to_path_buf();
        let path: PathBuf = path.to_path_buf();
        let (tx, rx) = channel::<(u32, [u8; 32])>();
        let thread = std::thread::Builder::new()
            .name("mcast-dev-journal".into())
            .spawn(move || {
                let mut next = next;
                // The data first: a record on the device means its block is durable.
                let flushed = flush_batches(&rx, |pending| {
                    let room = (end.saturating_sub(next) as usize / RECORD).min(pending.len());
                    let bytes: Vec<u8> =
                        pending[..room].iter().flat_map(|(b, h)| record(&push_id, *b, h)).collect();
                    file.sync_data()?;
                    file.write_all_at(&bytes, next)?;
                    next += bytes.len() as u64;
                    if room < pending.len() {
                        tracing::warn!(
                            path = %path.display(),
                            "device resume journal full: later blocks are not recorded"
                        );
                        return Ok(false);
                    }
                    Ok(true)
                });
                if let Err(e) = flushed {
                    tracing::warn!(path = %path.display(), error = %e, "device resume journal stopped");
                }
            })
            .map_err(|e| StorageError::io("start the resume journal for", &err_path, e))?;
        Ok(DeviceJournal { tx: Some(tx), thread: Some(thread) })
    }

    /// `block` was written with bytes hashing to `hash` (recorded once durable).
    pub fn record(&self, block: u32, hash: [u8; 32]) {
        if let Some(tx) = &self.tx {
            // A stopped journal only means less to resume from.
            let _ = tx.send((block, hash));
        }
    }

    /// Record everything given so far, and stop: after this nothing writes to the journal
    /// region (the commit may overwrite it).
    pub fn stop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DeviceJournal {
    fn drop(&mut self) {
        self.stop();
    }
}
