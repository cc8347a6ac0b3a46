//! The sender's side of an in-memory run, written once: [`MemSource`] answers the sender's
//! block requests from an [`Object`] (or fails the blocks it is told to treat as unreadable),
//! and [`serve_sender_events`] drains a sender's events, serving `NeedBlock` inline and
//! recording everything else in a [`SenderLog`].

use super::object::Object;
use crate::proto::sender::{BlockRequest, Event, ReceiverInfo, Sender, SenderError};
use crate::proto::time::Instant;
use std::sync::Arc;

/// Block contents from memory, as a sender's storage would provide them.
#[derive(Debug, Clone)]
pub struct MemSource {
    object: Arc<Object>,
    unreadable: Vec<u32>,
}

impl MemSource {
    /// A source that can read every block of `object`.
    pub fn new(object: Arc<Object>) -> Self {
        MemSource { object, unreadable: Vec::new() }
    }

    /// The same source, failing to read these payload blocks (a storage error).
    pub fn with_unreadable(mut self, blocks: Vec<u32>) -> Self {
        self.unreadable = blocks;
        self
    }

    /// The object it serves.
    pub fn object(&self) -> &Arc<Object> {
        &self.object
    }

    /// The bytes `req` asks for: `None` for an unreadable block or a request outside the object.
    pub fn read(&self, req: &BlockRequest) -> Option<Vec<u8>> {
        if self.unreadable.contains(&req.block) {
            return None;
        }
        let off = usize::try_from(req.offset).ok()?;
        self.object.bytes().get(off..off.checked_add(req.len)?).map(<[u8]>::to_vec)
    }
}

/// What a sender's events said, in the order they came.
#[derive(Debug, Default)]
pub struct SenderLog {
    /// When the sender reported [`Event::Finished`].
    pub finished_at: Option<Instant>,
    /// Receivers dropped under the straggler policy (node ids).
    pub dropped: Vec<u32>,
    /// First reports, one per receiver.
    pub reports: Vec<ReceiverInfo>,
    /// Blocks the sender gave up on ([`Event::BlockUnavailable`]).
    pub unavailable: Vec<u32>,
    /// Blocks served with [`Sender::handle_block`].
    pub blocks_served: u64,
    /// Blocks failed with [`Sender::handle_block_failed`] (unreadable or unpreparable).
    pub blocks_failed: u64,
    /// Errors the sender returned for a served block (none when sender and source agree).
    pub errors: Vec<SenderError>,
}

/// Drain `sender`'s events at `now`: serve each `NeedBlock` from `source` (read, prepare,
/// [`Sender::handle_block`]; a block that cannot be read or prepared gets
/// [`Sender::handle_block_failed`]) and record the rest in `log`. Returns whether there was any
/// event.
pub fn serve_sender_events(
    sender: &mut Sender,
    now: Instant,
    source: &MemSource,
    log: &mut SenderLog,
) -> bool {
    let mut any = false;
    while let Some(ev) = sender.poll_event() {
        any = true;
        match ev {
            Event::NeedBlock(req) => {
                match source.read(&req).and_then(|data| req.prepare(data).ok()) {
                    Some(enc) => match sender.handle_block(req.block, enc) {
                        Ok(()) => log.blocks_served += 1,
                        Err(e) => log.errors.push(e),
                    },
                    None => {
                        log.blocks_failed += 1;
                        sender.handle_block_failed(req.block);
                    }
                }
            }
            Event::ReceiverReport(info) => log.reports.push(info),
            Event::ReceiverDropped { node, .. } => log.dropped.push(node),
            Event::BlockUnavailable { block } => log.unavailable.push(block),
            Event::Finished => log.finished_at = Some(now),
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sender::SenderConfig;

    fn setup(unreadable: Vec<u32>) -> (Sender, MemSource) {
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let object = Arc::new(Object::new(bytes, 100, 10).unwrap());
        let cfg = SenderConfig { read_ahead: 2, ..SenderConfig::default() };
        let sender = object.sender(cfg, Instant::ZERO).unwrap();
        (sender, MemSource::new(object).with_unreadable(unreadable))
    }

    #[test]
    fn requests_are_served_and_unreadable_blocks_failed() {
        let (mut sender, source) = setup(vec![1]);
        let mut log = SenderLog::default();
        assert!(serve_sender_events(&mut sender, Instant::ZERO, &source, &mut log));
        // read_ahead 2: blocks 0, 1 and 2 are requested at once; block 1 cannot be read.
        assert_eq!((log.blocks_served, log.blocks_failed), (2, 1));
        assert!(log.errors.is_empty());
        assert!(!serve_sender_events(&mut sender, Instant::ZERO, &source, &mut log));
    }

    #[test]
    fn reads_are_checked_against_the_object() {
        let (_, source) = setup(vec![]);
        let req = |offset, len| BlockRequest {
            block: 0,
            offset,
            len,
            symbols: 10,
            symbol_size: 100,
            codec: None,
        };
        assert_eq!(source.read(&req(4990, 10)).map(|d| d.len()), Some(10));
        assert_eq!(source.read(&req(4990, 11)), None);
        assert_eq!(source.read(&req(u64::MAX, 1)), None);
    }
}
