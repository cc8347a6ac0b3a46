//! Early writeback of a staged file: every [`WRITEBACK_EVERY`] bytes written, a helper thread
//! asks the kernel to start writing the file's dirty pages out (`sync_file_range` with
//! `SYNC_FILE_RANGE_WRITE`, which starts I/O and does not wait for it), so the fsync before
//! the file is placed finds little left to write instead of the whole file. It only starts
//! I/O early: durability still comes from that fsync, and an error here is left for the fsync
//! to report. The thread, started at the first kick, owns a duplicate of the descriptor, so
//! the receive loop never waits on the disk for it; a kick while one is in progress is
//! skipped (the next one covers its pages).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Bytes written between two writeback kicks.
pub(crate) const WRITEBACK_EVERY: u64 = 8 << 20;

/// Kicks of one file's writeback (see the module doc).
#[derive(Debug)]
pub(crate) struct Writeback {
    every: u64,
    /// Bytes written since the last kick.
    pending: u64,
    /// Kicks asked for (whether or not the thread took them).
    requested: u64,
    file: Option<File>,
    tx: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// `sync_file_range` calls made by the thread, and those that failed.
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Writeback {
    /// Kicks for `file` every `every` bytes (0: never). Nothing runs until the first kick.
    pub(crate) fn new(file: &File, every: u64) -> Self {
        let file = if every == 0 { None } else { file.try_clone().ok() };
        Writeback {
            every,
            pending: 0,
            requested: 0,
            file,
            tx: None,
            thread: None,
            done: Arc::default(),
            failed: Arc::default(),
        }
    }

    /// Count `len` bytes written; kick the writeback when [`WRITEBACK_EVERY`] have gathered.
    pub(crate) fn wrote(&mut self, len: u64) {
        if self.every == 0 {
            return;
        }
        self.pending = self.pending.saturating_add(len);
        if self.pending < self.every {
            return;
        }
        self.pending = 0;
        self.requested += 1;
        if self.tx.is_none() {
            self.start();
        }
        if let Some(tx) = &self.tx {
            match tx.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => self.tx = None,
            }
        }
    }

    /// Kicks asked for so far.
    #[cfg(test)]
    pub(crate) fn requested(&self) -> u64 {
        self.requested
    }

    /// Stop the thread (after the kick in progress, if any) and return the calls it made and
    /// how many of them failed.
    pub(crate) fn stop(&mut self) -> (u64, u64) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (self.done.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }

    fn start(&mut self) {
        let Some(file) = self.file.take() else { return };
        // One kick waiting besides the one in progress: more would only repeat it.
        let (tx, rx) = sync_channel::<()>(1);
        let (done, failed) = (Arc::clone(&self.done), Arc::clone(&self.failed));
        let spawned = std::thread::Builder::new().name("mcast-writeback".into()).spawn(move || {
            for () in rx {
                // SAFETY: a plain syscall on a descriptor this thread owns (`file`).
                let rc = unsafe {
                    libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
                };
                done.fetch_add(1, Ordering::Relaxed);
                if rc != 0 {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("early writeback failed: {}", std::io::Error::last_os_error());
                }
            }
        });
        match spawned {
            Ok(t) => {
                self.tx = Some(tx);
                self.thread = Some(t);
            }
            Err(e) => tracing::debug!("no early writeback: {e}"),
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn a_kick_comes_at_the_threshold_not_before() {
        let file = tempfile::tempfile().unwrap();
        let mut wb = Writeback::new(&file, 4096);
        file.write_all_at(&[7; 4095], 0).unwrap();
        wb.wrote(4095);
        assert_eq!(wb.requested(), 0, "one byte short");
        assert!(wb.thread.is_none(), "no thread before the first kick");
        file.write_all_at(&[7], 4095).unwrap();
        wb.wrote(1);
        assert_eq!(wb.requested(), 1, "at the threshold");
        assert_eq!(wb.stop(), (1, 0), "the thread made the call, and it succeeded");
        // The count starts over after a kick.
        let mut wb = Writeback::new(&file, 4096);
        wb.wrote(4096 * 2 - 1);
        assert_eq!(wb.requested(), 1);
        wb.wrote(1);
        assert_eq!(wb.requested(), 1, "the surplus was not carried over");
    }

    #[test]
    fn zero_means_never() {
        let file = tempfile::tempfile().unwrap();
        let mut wb = Writeback::new(&file, 0);
        wb.wrote(u64::MAX);
        assert_eq!(wb.requested(), 0);
        assert_eq!(wb.stop(), (0, 0));
    }
}
