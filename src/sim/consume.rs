//! The receiver's side of an in-memory run, written once: [`drive_receiver_events`] drains a
//! receiver's events, runs each decode inline ([`Decoder`]: RaptorQ, or the ideal model that
//! knows the true bytes), writes decoded blocks into a [`MemSink`], checks the copy when the
//! receiver says it is complete and hands the verdict back with [`Receiver::handle_stored`].
//!
//! A [`MemSink`] keeps no bytes: it compares every write with the [`Object`] the sender holds,
//! so a thousand simulated receivers cost no memory, and a wrong byte is caught at the write
//! that carries it. A block written again (the hash list refuted it) replaces the earlier
//! write; what counts at the end is the copy as it stands.

use super::object::{block_of, Object};
use crate::proto::manifest::HashList;
use crate::proto::manifest::Manifest;
use crate::proto::receiver::{DecodeJob, Decoded, Event, Outcome, Receiver};
use crate::proto::time::Instant;
use crate::proto::wire::ObjectId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How blocks are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FecModel {
    /// Run RaptorQ on the symbols (exact, including its rare failure with exactly `K`).
    Real,
    /// A block with `K` symbols decodes to the right bytes (fast; no RaptorQ run).
    Ideal,
}

/// Runs decode jobs inline.
#[derive(Debug, Clone)]
pub struct Decoder {
    model: FecModel,
    object: Arc<Object>,
}

impl Decoder {
    /// A decoder for jobs about `object` under `model`.
    pub fn new(model: FecModel, object: Arc<Object>) -> Self {
        Decoder { model, object }
    }

    /// The model it runs.
    pub fn model(&self) -> FecModel {
        self.model
    }

    /// Decode `job`. [`FecModel::Ideal`] hands back the block's true bytes and hash (the job
    /// holds `K` symbols); a job the object does not know (wrong block or length) is decoded
    /// for real instead.
    pub fn decode(&self, job: DecodeJob) -> Decoded {
        match self.model {
            FecModel::Real => job.run(),
            FecModel::Ideal => match self.ideal(&job) {
                Some((data, hash)) => Decoded {
                    object: job.object,
                    block: job.block,
                    systematic: job.symbols.is_systematic(),
                    result: Ok((data, hash)),
                },
                None => job.run(),
            },
        }
    }

    fn ideal(&self, job: &DecodeJob) -> Option<(Vec<u8>, [u8; 32])> {
        let o = &self.object;
        let (bytes, layout) = match job.object {
            ObjectId::Manifest => o.manifest_bytes(),
            ObjectId::Payload => (o.bytes(), o.layout()),
            ObjectId::Hashes => o.hash_list_bytes(),
        };
        let data = block_of(bytes, layout, job.block).filter(|d| d.len() == job.len)?.to_vec();
        let hash = match job.object {
            ObjectId::Payload => o.block_hash(job.block)?,
            ObjectId::Manifest | ObjectId::Hashes => *blake3::hash(&data).as_bytes(),
        };
        Some((data, hash))
    }
}

/// An in-memory destination that checks what a receiver writes against the true object, and
/// records how the receiver ended.
#[derive(Debug, Clone)]
pub struct MemSink {
    object: Arc<Object>,
    /// Written ranges (offset, length), in the order written.
    writes: Vec<(u64, usize)>,
    wrong_writes: u64,
    /// The copy as it stands: per offset written, the length and whether it was right.
    current: BTreeMap<u64, (usize, bool)>,
    manifest: Option<Manifest>,
    stored: Option<(Instant, bool)>,
    outcome: Option<Outcome>,
}

impl MemSink {
    /// A sink for a copy of `object`.
    pub fn new(object: Arc<Object>) -> Self {
        MemSink {
            object,
            writes: Vec::new(),
            wrong_writes: 0,
            current: BTreeMap::new(),
            manifest: None,
            stored: None,
            outcome: None,
        }
    }

    /// Write a block (replacing an earlier write at the same offset): counted as wrong unless
    /// it equals the object's bytes there.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let off = usize::try_from(offset).ok();
        let truth = off.and_then(|o| self.object.bytes().get(o..o.checked_add(data.len())?));
        let right = truth == Some(data);
        if !right {
            self.wrong_writes += 1;
        }
        self.writes.push((offset, data.len()));
        self.current.insert(offset, (data.len(), right));
    }

    /// Blocks written, in order (offset, length).
    pub fn writes(&self) -> &[(u64, usize)] {
        &self.writes
    }

    /// Writes that differed from the object (or fell outside it), replaced since or not.
    pub fn wrong_writes(&self) -> u64 {
        self.wrong_writes
    }

    /// Ranges of the copy as it stands that differ from the object (wrong writes not replaced).
    pub fn wrong_now(&self) -> usize {
        self.current.values().filter(|(_, right)| !right).count()
    }

    /// Whether the copy as it stands covers the whole object and every range of it is right:
    /// it equals the object byte for byte.
    pub fn is_exact(&self) -> bool {
        let mut covered = 0u64;
        for (&off, &(len, right)) in &self.current {
            if !right || off > covered {
                return false;
            }
            covered = covered.max(off.saturating_add(len as u64));
        }
        covered >= self.object.bytes().len() as u64
    }

    /// Check the copy the receiver calls complete, as a sink's `finish` would place it: the
    /// hash list it verified against must be the object's and the copy exact. Returns the
    /// object hash.
    pub fn verify(&self, hashes: &HashList) -> Result<[u8; 32], String> {
        if !self.is_exact() {
            return Err("copy differs from the object".into());
        }
        if hashes != self.object.hash_list() {
            return Err("hash list mismatch".into());
        }
        Ok(hashes.root())
    }

    /// The manifest the receiver announced, if any.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// When the receiver asked for the copy to be placed, and whether it was exact then.
    pub fn stored(&self) -> Option<(Instant, bool)> {
        self.stored
    }

    /// How reception ended, if it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
}

/// Drain `rx`'s events at `now`: decode inline with `decoder` ([`Receiver::handle_decoded`]),
/// write blocks into `sink`, verify a complete copy ([`Receiver::handle_stored`]) and record the
/// manifest and the outcome. Returns whether there was any event.
pub fn drive_receiver_events(
    rx: &mut Receiver,
    now: Instant,
    decoder: &Decoder,
    sink: &mut MemSink,
) -> bool {
    let mut any = false;
    while let Some(ev) = rx.poll_event() {
        any = true;
        match ev {
            Event::Manifest(m) => sink.manifest = Some(m),
            Event::Decode(job) => rx.handle_decoded(now, decoder.decode(job)),
            Event::Block { offset, data, .. } => sink.write(offset, &data),
            Event::Complete { hashes, .. } => {
                sink.stored = Some((now, sink.is_exact()));
                rx.handle_stored(now, sink.verify(&hashes));
            }
            Event::Finished(outcome) => sink.outcome = Some(outcome),
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::fec::BlockSymbols;

    fn object() -> Arc<Object> {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
        Arc::new(Object::new(bytes, 16, 10).unwrap())
    }

    #[test]
    fn a_sink_is_exact_only_when_every_byte_is_covered_and_right() {
        let o = object();
        let mut sink = MemSink::new(Arc::clone(&o));
        sink.write(160, o.block(1).unwrap());
        assert!(!sink.is_exact(), "block 0 missing");
        for b in 0..7 {
            sink.write(u64::from(b) * 160, o.block(b).unwrap());
        }
        assert!(sink.is_exact());
        assert_eq!(sink.verify(o.hash_list()), Ok(o.hash()));
        let other = HashList::of_bytes(&[0; 1000], *o.layout());
        assert!(sink.verify(&other).is_err(), "a receiver expecting another object");
        let mut bad = o.block(3).unwrap().to_vec();
        bad[5] ^= 1;
        sink.write(480, &bad);
        sink.write(u64::MAX, &[1]);
        assert_eq!((sink.wrong_writes(), sink.wrong_now()), (2, 2));
        assert!(!sink.is_exact());
        assert!(sink.verify(o.hash_list()).is_err());
        // Rewriting the bad block with the right bytes mends that range, not the other.
        sink.write(480, o.block(3).unwrap());
        assert_eq!((sink.wrong_writes(), sink.wrong_now()), (2, 1));
        assert!(!sink.is_exact(), "still a wrong range past the end");
    }

    #[test]
    fn the_ideal_decoder_gives_true_bytes_and_falls_back_for_unknown_blocks() {
        let o = object();
        let ideal = Decoder::new(FecModel::Ideal, Arc::clone(&o));
        let job = |block, len| DecodeJob {
            object: ObjectId::Payload,
            block,
            symbols: BlockSymbols::new(16, 10).unwrap(),
            len,
        };
        let d = ideal.decode(job(6, 40));
        assert_eq!(d.result.unwrap(), (o.block(6).unwrap().to_vec(), o.block_hash(6).unwrap()));
        // No such block: decoded for real, which fails without symbols.
        assert!(ideal.decode(job(9, 160)).result.is_err());
        assert!(Decoder::new(FecModel::Real, o).decode(job(6, 40)).result.is_err());
    }
}
