//! [`Staged`]: a tree's [`Sink`] run on a thread of its own, so the receive loop never waits
//! for the file system. Creating the staging tree of a manifest with thousands of entries takes
//! a few hundred milliseconds (2,160 entries: 0.17–0.32 s on a loaded 2-core VM), during which a
//! loop that did it itself would stop reading its socket (at 1 Gbit/s, 40 MB arrive meanwhile:
//! the kernel drops them, and the loss cascades through repairs). Here the loop only queues
//! verified blocks (at most [`QUEUE_BLOCKS`]; beyond that `write_block` waits), and the thread
//! creates the sink, writes the blocks in order and, on `finish`, verifies and places the tree.

use crate::proto::manifest::{HashList, Manifest};
use crate::storage::{check_range, open_sink_with, Sink, SinkOptions, StorageError};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Blocks queued for the thread before [`Sink::write_block`] waits (32 MiB of 1 MiB blocks:
/// about a quarter of a second at 1 Gbit/s).
pub const QUEUE_BLOCKS: usize = 32;

/// What the loop asks of the thread.
enum Msg {
    /// Payload bytes at an offset; `true` when they replace refuted bytes written before.
    Write(u64, Vec<u8>, bool),
    /// Place the tree: the hash list it was verified against, and whether to read it back.
    Finish(HashList, bool),
    /// A block written before was given with its hash ([`Sink::record_block`]).
    Record(u32, [u8; 32]),
    /// Stop without placing, keeping what is staged ([`Sink::suspend`]).
    Suspend,
}

/// The thread's outcome: `None` when it was stopped (aborted) before `finish`.
type Outcome = Option<Result<[u8; 32], StorageError>>;

/// A sink opened and driven on its own thread (see the module docs).
pub struct Staged {
    dest: PathBuf,
    len: u64,
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<Outcome>>,
    /// The first error of the thread, so later writes fail at once.
    failed: Arc<Mutex<Option<Failure>>>,
}

/// The thread's first error as the loop's `write_block` returns it again: an existing
/// destination as itself (it is the common one), an operating-system error with its errno (so
/// the receiver can say "no space left on device"), anything else by its text.
#[derive(Debug, Clone)]
enum Failure {
    Exists(PathBuf),
    Os { op: &'static str, path: PathBuf, errno: i32 },
    Other(String),
}

impl Failure {
    fn of(e: &StorageError) -> Self {
        match e {
            StorageError::DestinationExists(p) => Failure::Exists(p.clone()),
            StorageError::Io { op, path, source } if source.raw_os_error().is_some() => {
                Failure::Os { op, path: path.clone(), errno: source.raw_os_error().unwrap_or(0) }
            }
            other => Failure::Other(other.to_string()),
        }
    }

    fn to_error(&self, dest: &Path) -> StorageError {
        match self {
            Failure::Exists(p) => StorageError::DestinationExists(p.clone()),
            Failure::Os { op, path, errno } => {
                StorageError::io(op, path.clone(), std::io::Error::from_raw_os_error(*errno))
            }
            Failure::Other(why) => {
                StorageError::io("stage", dest, std::io::Error::other(why.clone()))
            }
        }
    }
}

impl Staged {
    /// Starts the thread, which opens the sink of `manifest` at `dest` (see
    /// [`open_sink_with`]). An error opening it is returned by the next
    /// [`write_block`](Sink::write_block) after it happened, and by [`finish`](Sink::finish).
    pub fn spawn(dest: &Path, manifest: Manifest, replace: bool) -> Result<Self, StorageError> {
        let at = dest.to_path_buf();
        let len = manifest.object_size;
        Self::spawn_with(dest, len, move || open_sink_with(&at, &manifest, SinkOptions { replace }))
    }

    /// Like [`spawn`](Self::spawn), with the sink (of `len` bytes, for `dest`) opened by
    /// `open` on the thread.
    pub fn spawn_with(
        dest: &Path,
        len: u64,
        open: impl FnOnce() -> Result<Box<dyn Sink>, StorageError> + Send + 'static,
    ) -> Result<Self, StorageError> {
        let (tx, rx) = sync_channel(QUEUE_BLOCKS);
        let failed = Arc::new(Mutex::new(None));
        let flag = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("mcast-tree-sink".into())
            .spawn(move || run(open, &rx, &flag))
            .map_err(|e| StorageError::io("start the tree writer for", dest, e))?;
        Ok(Staged { dest: dest.to_path_buf(), len, tx: Some(tx), thread: Some(thread), failed })
    }

    /// Closes the queue and waits for the thread (which aborts its sink unless it finished).
    fn stop(&mut self) -> Outcome {
        drop(self.tx.take());
        self.thread.take().and_then(|t| t.join().ok()).flatten()
    }

    /// Queues a write for the thread (see [`Sink::write_block`]).
    fn queue(&mut self, offset: u64, data: &[u8], rewrite: bool) -> Result<(), StorageError> {
        check_range(offset, data.len() as u64, self.len)?;
        if let Some(f) = self.failed.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Err(f.to_error(&self.dest));
        }
        let tx = self.tx.as_ref().ok_or_else(|| self.stopped())?;
        tx.send(Msg::Write(offset, data.to_vec(), rewrite)).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> StorageError {
        StorageError::io("write the tree", &self.dest, std::io::Error::other("the writer stopped"))
    }
}

/// The thread: open, write what is queued (nothing more after an error), finish or abort.
fn run(
    open: impl FnOnce() -> Result<Box<dyn Sink>, StorageError>,
    rx: &Receiver<Msg>,
    failed: &Mutex<Option<Failure>>,
) -> Outcome {
    let note = |e: &StorageError| {
        let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert_with(|| Failure::of(e));
    };
    let sink = match open() {
        Ok(s) => s,
        Err(e) => {
            note(&e);
            return rx.iter().any(|m| matches!(m, Msg::Finish(..))).then_some(Err(e));
        }
    };
    let mut sink = Some(sink);
    let mut error = None;
    for msg in rx.iter() {
        match msg {
            Msg::Write(offset, data, rewrite) => {
                let Some(s) = sink.as_mut() else { continue };
                let written = if rewrite {
                    s.rewrite_block(offset, &data)
                } else {
                    s.write_block(offset, &data).map(drop)
                };
                if let Err(e) = written {
                    note(&e);
                    error = Some(e);
                    if let Some(s) = sink.take() {
                        s.abort();
                    }
                }
            }
            Msg::Record(block, hash) => {
                if let Some(s) = sink.as_mut() {
                    s.record_block(block, hash);
                }
            }
            Msg::Suspend => {
                if let Some(s) = sink.take() {
                    s.suspend();
                }
                return None;
            }
            Msg::Finish(hashes, readback) => {
                return Some(match (sink.take(), error) {
                    (Some(s), None) => s.finish(&hashes, readback),
                    (_, Some(e)) => Err(e),
                    (None, None) => unreachable!("the sink goes only with an error"),
                });
            }
        }
    }
    if let Some(s) = sink {
        s.abort();
    }
    None
}

impl Sink for Staged {
    fn len(&self) -> u64 {
        self.len
    }

    fn destination(&self) -> &Path {
        &self.dest
    }

    /// Queues the block (waiting while [`QUEUE_BLOCKS`] are queued). Fails at once if the
    /// thread already failed, with its error (an existing destination as
    /// [`StorageError::DestinationExists`], anything else by its text).
    fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError> {
        self.queue(offset, data, false)?;
        Ok(true)
    }

    fn rewrite_block(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.queue(offset, data, true)
    }

    /// The thread's first error, once it had one (a queued write that failed).
    fn deferred_failure(&self) -> Option<StorageError> {
        let f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        f.as_ref().map(|f| f.to_error(&self.dest))
    }

    fn finish(
        mut self: Box<Self>,
        hashes: &HashList,
        verify_readback: bool,
    ) -> Result<[u8; 32], StorageError> {
        if let Some(tx) = self.tx.as_ref() {
            // A send error means the thread is gone; stop() then reports it.
            let _ = tx.send(Msg::Finish(hashes.clone(), verify_readback));
        }
        self.stop().unwrap_or_else(|| Err(self.stopped()))
    }

    fn abort(mut self: Box<Self>) {
        self.stop();
    }

    fn record_block(&mut self, block: u32, hash: [u8; 32]) {
        if let Some(tx) = self.tx.as_ref() {
            // A stopped thread only means less to resume from.
            let _ = tx.send(Msg::Record(block, hash));
        }
    }

    /// Like [`abort`](Sink::abort), but the sink is suspended (a resumable one keeps what it
    /// staged).
    fn suspend(mut self: Box<Self>) {
        if let Some(tx) = self.tx.as_ref() {
            let _ = tx.send(Msg::Suspend);
        }
        self.stop();
    }
}

impl Drop for Staged {
    /// Like [`abort`](Sink::abort): the staging directory is removed before this returns.
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Source, TreeSource};

    fn tree(root: &Path) -> Manifest {
        std::fs::create_dir_all(root.join("sub/empty")).unwrap();
        std::fs::write(root.join("a"), vec![1u8; 1000]).unwrap();
        std::fs::write(
            root.join("sub/b"),
            (0..12000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        std::os::unix::fs::symlink("../a", root.join("sub/link")).unwrap();
        TreeSource::open(root).unwrap().manifest(64, 4).unwrap()
    }

    fn blocks(root: &Path, m: &Manifest) -> Vec<(u64, Vec<u8>)> {
        let src = TreeSource::open(root).unwrap();
        let bb = u64::from(m.symbol_size) * u64::from(m.block_symbols);
        (0..src.len().div_ceil(bb))
            .map(|i| {
                let off = i * bb;
                (off, src.read_at(off, bb.min(src.len() - off) as usize).unwrap())
            })
            .collect()
    }

    /// The hash list of the tree at `root`, as `m` lays it out.
    fn list(root: &Path, m: &Manifest) -> HashList {
        let src = TreeSource::open(root).unwrap();
        let whole = src.read_at(0, src.len() as usize).unwrap();
        HashList::of_bytes(&whole, m.layout().unwrap())
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn blocks_in_any_order_place_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let m = tree(&dir.path().join("src"));
        let dest = dir.path().join("dest");
        let mut sink: Box<dyn Sink> = Box::new(Staged::spawn(&dest, m.clone(), false).unwrap());
        assert_eq!(sink.len(), 13000);
        let mut all = blocks(&dir.path().join("src"), &m);
        assert!(all.len() > QUEUE_BLOCKS, "the queue fills and writes wait: {}", all.len());
        all.reverse();
        for (off, data) in &all {
            assert!(sink.write_block(*off, data).unwrap());
        }
        assert!(matches!(sink.write_block(13000, b"x"), Err(StorageError::OutOfRange { .. })));
        let hl = list(&dir.path().join("src"), &m);
        assert_eq!(sink.finish(&hl, true).unwrap(), hl.root());
        assert_eq!(
            std::fs::read(dest.join("sub/b")).unwrap(),
            std::fs::read(dir.path().join("src/sub/b")).unwrap()
        );
        assert_eq!(std::fs::read_link(dest.join("sub/link")).unwrap(), Path::new("../a"));
        assert!(dest.join("sub/empty").is_dir());
        assert_eq!(names(dir.path()), ["dest", "src"], "no staging directory left");
    }

    #[test]
    fn a_wrong_hash_or_a_drop_places_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = tree(&dir.path().join("src"));
        let dest = dir.path().join("dest");
        let all = blocks(&dir.path().join("src"), &m);
        let mut sink: Box<dyn Sink> = Box::new(Staged::spawn(&dest, m.clone(), false).unwrap());
        for (off, data) in &all {
            sink.write_block(*off, data).unwrap();
        }
        // What is read back differs from the list it claims to have been verified against.
        let layout = m.layout().unwrap();
        let wrong = HashList::new(layout, vec![[0; 32]; layout.block_count() as usize]).unwrap();
        let e = sink.finish(&wrong, true).unwrap_err();
        assert!(matches!(e, StorageError::HashMismatch { .. }), "{e}");
        let mut sink = Staged::spawn(&dest, m, false).unwrap();
        sink.write_block(all[0].0, &all[0].1).unwrap();
        drop(sink);
        assert_eq!(names(dir.path()), ["src"], "nothing placed, staging removed");
    }

    #[test]
    fn an_existing_tree_fails_at_finish_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let m = tree(&dir.path().join("src"));
        let dest = dir.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("old"), b"old").unwrap();
        let sink: Box<dyn Sink> = Box::new(Staged::spawn(&dest, m.clone(), false).unwrap());
        let e = sink.finish(&list(&dir.path().join("src"), &m), false).unwrap_err();
        assert!(matches!(e, StorageError::DestinationExists(_)), "{e}");
        assert_eq!(names(&dest), ["old"]);
        assert_eq!(names(dir.path()), ["dest", "src"]);
    }
}
