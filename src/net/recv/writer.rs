//! The receiver's block writer: one thread that owns the staging [`Sink`] and writes the
//! verified blocks the loop hands it, so that copying a block into the page cache (the largest
//! cost of a clean receive) runs beside the loop instead of on it.
//!
//! The queue is bounded ([`QUEUE_BLOCKS`]): when the disk is slower than the network the loop
//! waits for room, as it waited for each write before, so memory stays bounded. Commands run
//! in order, so a [`Writer::flush`] or [`Writer::finish`] sees every write queued before it.
//! Each write's outcome (and its bytes, for a local repairer) comes back on a channel that the
//! loop drains every turn ([`Writer::try_written`]); after the first failed write the thread
//! skips the writes still queued (the loop aborts the sink when it sees the failure). A sink
//! that fails late (a tree's own writer thread, [`Sink::deferred_failure`]) is asked after
//! every write and every [`FAILURE_POLL`] while the queue is empty, and its failure comes back
//! as one more failed outcome, without waiting for another block. Ending
//! the writer ([`Writer::abort`], [`Writer::suspend`], dropping it) waits for the thread, so
//! the staged data is gone (or kept) when the call returns.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::proto::manifest::HashList;
use crate::storage::{Sink, StorageError};

/// Blocks (about 1 MiB each) that may wait for the writer before the loop waits for room.
pub(super) const QUEUE_BLOCKS: usize = 8;
/// How often an idle writer asks its sink for a late failure ([`Sink::deferred_failure`]).
pub(super) const FAILURE_POLL: Duration = Duration::from_millis(10);

/// One block to write.
pub(super) struct Write {
    /// Block number.
    pub block: u32,
    /// Byte offset in the payload.
    pub offset: u64,
    /// The verified bytes.
    pub data: Vec<u8>,
    /// Bytes were written there before and failed verification: replace them.
    pub rewrite: bool,
    /// BLAKE3 of `data`, recorded by a resumable sink once written.
    pub hash: [u8; 32],
}

/// What became of a [`Write`].
pub(super) struct Written {
    /// Block number.
    pub block: u32,
    /// The bytes (handed on to a local repairer).
    pub data: Vec<u8>,
    /// It replaced earlier bytes.
    pub rewrite: bool,
    /// The sink's answer.
    pub result: Result<(), StorageError>,
}

enum Command {
    Write(Write),
    /// Reply once every earlier command ran (their [`Written`] are sent by then).
    Flush(SyncSender<()>),
    Finish {
        hashes: HashList,
        readback: bool,
        reply: SyncSender<Result<[u8; 32], StorageError>>,
    },
    Abort,
    Suspend,
}

/// The writer thread and the two channels to it.
pub(super) struct Writer {
    commands: Option<SyncSender<Command>>,
    written: Receiver<Written>,
    /// Outcomes [`write_now`](Self::write_now) read past, in order, for `try_written`.
    early: VecDeque<Written>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Start a thread owning `sink`.
    pub(super) fn start(sink: Box<dyn Sink>) -> std::io::Result<Writer> {
        let (commands, rx) = mpsc::sync_channel(QUEUE_BLOCKS);
        let (done, written) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mcast-write".into())
            .spawn(move || serve(sink, rx, done))?;
        Ok(Writer {
            commands: Some(commands),
            written,
            early: VecDeque::new(),
            thread: Some(thread),
        })
    }

    /// Queue a block (waits while [`QUEUE_BLOCKS`] are queued). Fails only if the thread is
    /// gone (it panicked).
    pub(super) fn write(&mut self, w: Write) -> Result<(), StorageError> {
        self.command(Command::Write(w))
    }

    /// A finished write, if any, in the order they were queued.
    pub(super) fn try_written(&mut self) -> Option<Written> {
        self.early.pop_front().or_else(|| self.written.try_recv().ok())
    }

    /// Write a block and wait for its outcome (the rare blocks taken from a previous version,
    /// which the core is told about at once). Outcomes of other writes stay for
    /// [`try_written`](Self::try_written).
    pub(super) fn write_now(&mut self, w: Write) -> Result<(), StorageError> {
        self.write(w)?;
        self.flush()?;
        self.early.extend(self.written.try_iter());
        // Every queued write ran, so the last outcome is this one's (unless it was skipped
        // after an earlier failure, whose outcome is then the last).
        match self.early.pop_back() {
            Some(w) => w.result,
            None => Err(gone()),
        }
    }

    /// Wait until every queued write ran (their outcomes are ready for `try_written`).
    pub(super) fn flush(&mut self) -> Result<(), StorageError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.command(Command::Flush(reply))?;
        answer.recv().map_err(|_| gone())
    }

    /// Finish the sink after every queued write (see [`Sink::finish`]).
    pub(super) fn finish(
        mut self,
        hashes: HashList,
        readback: bool,
    ) -> Result<[u8; 32], StorageError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.command(Command::Finish { hashes, readback, reply })?;
        let r = answer.recv().map_err(|_| gone());
        self.join();
        r?
    }

    /// Discard everything staged (see [`Sink::abort`]); returns once it is gone.
    pub(super) fn abort(mut self) {
        let _ = self.command(Command::Abort);
        self.join();
    }

    /// Stop and keep what was staged for a resume (see [`Sink::suspend`]).
    pub(super) fn suspend(mut self) {
        let _ = self.command(Command::Suspend);
        self.join();
    }

    fn command(&mut self, c: Command) -> Result<(), StorageError> {
        match self.commands.as_ref().map(|tx| tx.send(c)) {
            Some(Ok(())) => Ok(()),
            _ => Err(gone()),
        }
    }

    fn join(&mut self) {
        self.commands = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    /// Like dropping the sink: the writes already queued run, then the thread drops the sink
    /// and ends, before this returns.
    fn drop(&mut self) {
        self.join();
    }
}

/// The thread: run the commands in order until the sink is ended or the loop goes.
fn serve(sink: Box<dyn Sink>, commands: Receiver<Command>, done: mpsc::Sender<Written>) {
    let mut sink = sink;
    let mut failed = false;
    let mut last_block = 0;
    loop {
        let c = match commands.recv_timeout(FAILURE_POLL) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        match c {
            None => {}
            Some(Command::Write(w)) => {
                last_block = w.block;
                let result = if failed {
                    Err(StorageError::Unsupported("not written after an earlier failure".into()))
                } else if w.rewrite {
                    sink.rewrite_block(w.offset, &w.data)
                } else {
                    sink.write_block(w.offset, &w.data).map(|_| ())
                };
                match &result {
                    Ok(()) => sink.record_block(w.block, w.hash),
                    Err(_) => failed = true,
                }
                let out = Written { block: w.block, data: w.data, rewrite: w.rewrite, result };
                if done.send(out).is_err() {
                    return;
                }
            }
            Some(Command::Flush(reply)) => {
                let _ = reply.send(());
            }
            Some(Command::Finish { hashes, readback, reply }) => {
                let _ = reply.send(sink.finish(&hashes, readback));
                return;
            }
            Some(Command::Abort) => return sink.abort(),
            Some(Command::Suspend) => return sink.suspend(),
        }
        if !failed {
            if let Some(e) = sink.deferred_failure() {
                failed = true;
                let out =
                    Written { block: last_block, data: Vec::new(), rewrite: false, result: Err(e) };
                if done.send(out).is_err() {
                    return;
                }
            }
        }
    }
}

/// The error of a writer whose thread is gone (it panicked in the sink).
fn gone() -> StorageError {
    StorageError::Unsupported("the block writer thread stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::layout::Layout;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    /// What the test sink saw, shared with the test.
    #[derive(Default)]
    struct Log {
        calls: Vec<String>,
    }

    /// A sink in memory that logs every call and fails the write at `fail_at` (at once, or
    /// with `late`, as a thread of its own would: the write returns, the failure comes after).
    struct Memory {
        log: Arc<Mutex<Log>>,
        fail_at: Option<u64>,
        late: bool,
        failed_late: bool,
        dest: PathBuf,
    }

    impl Memory {
        fn push(&self, s: String) {
            self.log.lock().unwrap().calls.push(s);
        }
        fn full(&self) -> StorageError {
            StorageError::io("write", &self.dest, std::io::Error::other("full"))
        }
    }

    impl Sink for Memory {
        fn len(&self) -> u64 {
            1 << 20
        }
        fn destination(&self) -> &std::path::Path {
            &self.dest
        }
        fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError> {
            if self.fail_at == Some(offset) && !self.late {
                return Err(self.full());
            }
            self.failed_late |= self.fail_at == Some(offset);
            self.push(format!("write {offset} {}", data.len()));
            Ok(true)
        }
        fn rewrite_block(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
            self.push(format!("rewrite {offset} {}", data.len()));
            Ok(())
        }
        fn record_block(&mut self, block: u32, _hash: [u8; 32]) {
            self.push(format!("record {block}"));
        }
        fn deferred_failure(&self) -> Option<StorageError> {
            self.failed_late.then(|| self.full())
        }
        fn finish(
            self: Box<Self>,
            hashes: &HashList,
            readback: bool,
        ) -> Result<[u8; 32], StorageError> {
            self.push(format!("finish {readback}"));
            Ok(hashes.root())
        }
        fn abort(self: Box<Self>) {
            self.push("abort".into());
        }
        fn suspend(self: Box<Self>) {
            self.push("suspend".into());
        }
    }

    fn writer(fail_at: Option<u64>) -> (Writer, Arc<Mutex<Log>>) {
        writer_with(fail_at, false)
    }

    fn writer_with(fail_at: Option<u64>, late: bool) -> (Writer, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        let dest = PathBuf::from("/nowhere");
        let sink = Memory { log: Arc::clone(&log), fail_at, late, failed_late: false, dest };
        (Writer::start(Box::new(sink)).unwrap(), log)
    }

    fn block(block: u32, rewrite: bool) -> Write {
        let data = vec![block as u8; 100 + block as usize];
        Write { block, offset: u64::from(block) * 1000, data, rewrite, hash: [block as u8; 32] }
    }

    fn calls(log: &Arc<Mutex<Log>>) -> Vec<String> {
        log.lock().unwrap().calls.clone()
    }

    #[test]
    fn writes_run_in_order_and_come_back_with_their_bytes_before_the_finish() {
        let (mut w, log) = writer(None);
        // More blocks than the queue holds: the loop waits for room, nothing is lost.
        let n = QUEUE_BLOCKS as u32 * 3;
        for b in 0..n {
            w.write(block(b, b == n - 1)).unwrap();
        }
        w.flush().unwrap();
        let back: Vec<_> = std::iter::from_fn(|| w.try_written()).collect();
        assert_eq!(back.iter().map(|x| x.block).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
        assert!(back.iter().all(|x| x.result.is_ok() && x.data == block(x.block, false).data));
        assert!(back[n as usize - 1].rewrite);
        let hashes = HashList::new(Layout::new(0, 100, 10).unwrap(), Vec::new()).unwrap();
        assert_eq!(w.finish(hashes.clone(), true).unwrap(), hashes.root());
        let c = calls(&log);
        assert_eq!(c.len(), 2 * n as usize + 1);
        assert_eq!(c[0], "write 0 100");
        assert_eq!(c[1], "record 0");
        assert_eq!(c[2 * n as usize - 2], format!("rewrite {} {}", (n - 1) * 1000, 100 + n - 1));
        assert_eq!(c.last().unwrap(), "finish true");
    }

    #[test]
    fn after_a_failed_write_the_rest_are_skipped_and_the_first_error_comes_first() {
        let (mut w, log) = writer(Some(1000));
        for b in 0..4 {
            w.write(block(b, false)).unwrap();
        }
        w.flush().unwrap();
        let back: Vec<_> = std::iter::from_fn(|| w.try_written()).collect();
        assert_eq!(back.len(), 4);
        assert!(back[0].result.is_ok());
        let first = back[1].result.as_ref().unwrap_err().to_string();
        assert!(first.contains("full"), "{first}");
        assert!(back[2].result.is_err() && back[3].result.is_err());
        w.abort();
        assert_eq!(calls(&log), ["write 0 100", "record 0", "abort"]);
    }

    #[test]
    fn a_failure_the_sink_finds_late_comes_back_before_another_block_is_written() {
        let (mut w, log) = writer_with(Some(1000), true);
        w.write(block(0, false)).unwrap();
        w.write(block(1, false)).unwrap();
        w.flush().unwrap();
        let back: Vec<_> = std::iter::from_fn(|| w.try_written()).collect();
        assert_eq!(back.len(), 3, "both writes and the late failure, with no third block");
        assert!(back[0].result.is_ok() && back[1].result.is_ok(), "both were taken");
        let late = back[2].result.as_ref().unwrap_err().to_string();
        assert!(late.contains("full"), "{late}");
        // Asked once: after the failure, later writes are skipped, not failed again.
        w.write(block(2, false)).unwrap();
        w.flush().unwrap();
        let after: Vec<_> = std::iter::from_fn(|| w.try_written()).collect();
        assert_eq!(after.len(), 1);
        assert!(after[0].result.as_ref().unwrap_err().to_string().contains("earlier failure"));
        w.abort();
        assert_eq!(calls(&log), ["write 0 100", "record 0", "write 1000 101", "record 1", "abort"]);
    }

    #[test]
    fn write_now_returns_its_own_outcome_and_keeps_the_others_for_later() {
        let (mut w, log) = writer(Some(3000));
        w.write(block(1, false)).unwrap();
        w.write(block(2, false)).unwrap();
        assert!(w.write_now(block(3, false)).is_err());
        let back: Vec<_> = std::iter::from_fn(|| w.try_written()).map(|x| x.block).collect();
        assert_eq!(back, [1, 2]);
        w.suspend();
        assert_eq!(calls(&log).last().unwrap(), "suspend");
    }

    #[test]
    fn dropping_the_writer_drops_the_sink_before_it_returns() {
        let (mut w, log) = writer(None);
        w.write(block(0, false)).unwrap();
        drop(w);
        // The write queued before ran, then the sink was dropped (neither finished nor aborted).
        assert_eq!(calls(&log), ["write 0 100", "record 0"]);
        assert_eq!(Arc::strong_count(&log), 1, "the sink was dropped with the writer");
    }
}
