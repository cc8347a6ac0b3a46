//! Signed mode on the sender: every block is hashed before the first datagram (by the driver,
//! on all its cores), so the hash list is known from the start; the announcement carries its
//! length and BLAKE3 from the first one, the hash list (object 2) goes out right after the
//! manifest and before the payload in every pass, and each announcement is followed by a
//! Signature packet (type 11) over the session's identity and the push's version. A block read
//! again later must hash as it did when signed, else it is unavailable (as in streamed mode).

use super::*;
use crate::proto::sign::{SignedFields, Signer};

/// Sender-side signed-mode state: the signature (constant for the session: it covers only
/// identity fields, never rate or GRTT) and whether one is due.
#[derive(Debug)]
pub(super) struct Signing {
    pub(super) signature: wire::Signature,
    /// Signatures owed: one per announcement sent.
    pub(super) due: u8,
}

/// Why a signed sender could not be built.
#[derive(Debug, Error)]
pub enum SigningError {
    /// The sender itself could not be built.
    #[error(transparent)]
    Sender(#[from] SenderError),
    /// The block hashes do not match the layout.
    #[error("{got} block hashes for a payload of {want} blocks")]
    HashCount {
        /// Hashes given.
        got: usize,
        /// Blocks in the layout.
        want: u32,
    },
}

impl Sender {
    /// A signed sender: like [`Sender::new`], with `hashes` the BLAKE3 of every payload block
    /// (hashed before the session starts), `signer` the key and `version` the push's version
    /// (receivers refuse one not newer than what they hold).
    pub fn new_signed(
        cfg: SenderConfig,
        manifest: &Manifest,
        hashes: Vec<[u8; 32]>,
        signer: &Signer,
        version: u64,
        now: Instant,
    ) -> Result<Self, SigningError> {
        let mut s = Sender::new(cfg, manifest, now)?;
        let want = s.layout().block_count();
        if hashes.len() != want as usize {
            return Err(SigningError::HashCount { got: hashes.len(), want });
        }
        s.block_hashes = hashes.into_iter().map(Some).collect();
        s.hash_list_root = None; // an empty payload built an empty list already: same result
        s.build_hash_list(now);
        let fields = SignedFields::of(&s.header, &s.announce, version);
        s.signing = Some(Signing { signature: signer.sign(&fields), due: 0 });
        Ok(s)
    }

    /// Whether this push is signed.
    pub fn is_signed(&self) -> bool {
        self.signing.is_some()
    }

    /// An announcement just went out: its signature follows.
    pub(super) fn announce_sent(&mut self) {
        if let Some(s) = self.signing.as_mut() {
            s.due = s.due.saturating_add(1);
        }
    }

    /// The signature owed, if any (sent right after its announcement).
    pub(super) fn next_signature(&mut self) -> Option<Packet<'static>> {
        let s = self.signing.as_mut().filter(|s| s.due > 0)?;
        s.due -= 1;
        Some(Packet::Signature(s.signature))
    }

    /// Whether a signature is owed.
    pub(super) fn signature_due(&self) -> bool {
        self.signing.as_ref().is_some_and(|s| s.due > 0)
    }

    /// The object sent after `object` in a pass: manifest, payload, hash list; signed, the hash
    /// list goes before the payload (receivers hold no block until it verified).
    pub(super) fn next_object(&self, object: ObjectId) -> Option<ObjectId> {
        if self.signing.is_none() {
            return object.next();
        }
        match object {
            ObjectId::Manifest => Some(ObjectId::Hashes),
            ObjectId::Hashes => Some(ObjectId::Payload),
            ObjectId::Payload => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sign::{verify, TrustedKey};
    use crate::sim::Object;

    /// What a datagram was (data: only which object).
    #[derive(Debug)]
    enum Sent {
        Announce(Announce),
        Signature(wire::Signature),
        Probe,
        Data(ObjectId),
    }

    /// The first `n` datagrams a signed sender sends at time zero, serving blocks from `obj`.
    fn first_datagrams(s: &mut Sender, obj: &Object, n: usize) -> Vec<Sent> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let now = Instant::ZERO;
        while out.len() < n {
            while let Some(ev) = s.poll_event() {
                if let Event::NeedBlock(req) = ev {
                    let data = obj.bytes()[req.offset as usize..][..req.len].to_vec();
                    s.handle_block(req.block, req.prepare(data).unwrap()).unwrap();
                }
            }
            if s.poll_transmit(now, &mut buf).is_none() {
                break;
            }
            let p = match wire::parse(&buf).unwrap().1 {
                Packet::Data(d) => Sent::Data(d.object),
                Packet::Announce(a) => Sent::Announce(a),
                Packet::Signature(sig) => Sent::Signature(sig),
                Packet::Probe(_) => Sent::Probe,
                Packet::Flush(_) => break, // the end of the pass
                other => panic!("unexpected {other:?}"),
            };
            out.push(p);
        }
        out
    }

    #[test]
    fn signed_pushes_announce_the_list_at_once_sign_each_announce_and_send_it_first() {
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let obj = Object::new(bytes, 100, 10).unwrap(); // 5 blocks
        let signer = Signer::from_secret(&[5; 32]);
        let hashes = obj.hash_list().as_slice().to_vec();
        let cfg = SenderConfig { auto_parity: false, fec_overhead: 0.0, ..Default::default() };
        let mut s =
            Sender::new_signed(cfg, obj.manifest(), hashes, &signer, 42, Instant::ZERO).unwrap();
        assert!(s.is_signed());
        assert_eq!(s.object_hash(), Some(obj.hash()));
        let sent = first_datagrams(&mut s, &obj, 200);
        let keys = [TrustedKey::from_bytes(&signer.public_key()).unwrap()];
        let header = Header { flags: 0, session: s.cfg.session, node: s.cfg.node };
        let mut announces = 0;
        for (i, p) in sent.iter().enumerate() {
            if let Sent::Announce(a) = p {
                announces += 1;
                assert_eq!(a.hashes_hash(), Some(obj.hash()), "known from the first announce");
                let Sent::Signature(sig) = &sent[i + 1] else { panic!("no signature after {i}") };
                assert_eq!(sig.version, 42);
                assert!(verify(&keys, &SignedFields::of(&header, a, 0), sig).is_ok());
            }
        }
        let signatures = sent.iter().filter(|p| matches!(p, Sent::Signature(_))).count();
        assert!(matches!(sent[..3], [Sent::Announce(_), Sent::Signature(_), Sent::Announce(_)]));
        assert!(announces >= 4 && signatures == announces, "{sent:?}");
        // Data in order: the manifest, the hash list, then the payload.
        let objects: Vec<ObjectId> = sent
            .iter()
            .filter_map(|p| if let Sent::Data(o) = p { Some(*o) } else { None })
            .collect();
        let first_payload = objects.iter().position(|o| *o == ObjectId::Payload).unwrap();
        let last_hashes = objects.iter().rposition(|o| *o == ObjectId::Hashes).unwrap();
        assert_eq!(objects[0], ObjectId::Manifest);
        assert!(last_hashes < first_payload, "{objects:?}");
        let payload = objects.iter().filter(|o| **o == ObjectId::Payload).count();
        assert_eq!(payload, 50, "every payload source symbol, after the list");
    }

    #[test]
    fn a_wrong_number_of_hashes_is_refused() {
        let obj = Object::new(vec![1; 5000], 100, 10).unwrap();
        let signer = Signer::from_secret(&[5; 32]);
        let short = obj.hash_list().as_slice()[1..].to_vec();
        let built = Sender::new_signed(
            Default::default(),
            obj.manifest(),
            short,
            &signer,
            1,
            Instant::ZERO,
        );
        assert!(matches!(built, Err(SigningError::HashCount { got: 4, want: 5 })));
    }
}
