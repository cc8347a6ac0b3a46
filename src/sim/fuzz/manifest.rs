//! The decoders of the two objects a receiver assembles from the network: the manifest
//! (postcard) and the hash list. Inputs start with a layout prefix ([`layout_prefix`]: object
//! size u64, symbol size u16, symbols per block u16, big-endian) that, with the rest of the
//! input as the object's bytes, makes an announcement; only prefixes the wire parser accepts
//! are used (the decoders may assume a parsed announcement). The decoders must never panic,
//! and what they accept must survive a round trip.

use crate::proto::manifest::{HashList, Manifest};
use crate::proto::wire::{self, Announce, Header, Packet, MAX_MANIFEST_LEN};

const PREFIX_LEN: usize = 12;

/// The prefix of a [`fuzz_manifest`] or [`fuzz_hash_list`] input for this layout.
pub fn layout_prefix(object_size: u64, symbol_size: u16, block_symbols: u16) -> Vec<u8> {
    let mut out = object_size.to_be_bytes().to_vec();
    out.extend_from_slice(&symbol_size.to_be_bytes());
    out.extend_from_slice(&block_symbols.to_be_bytes());
    out
}

/// An announcement of the prefix's layout for a manifest of `manifest` and a hash list of
/// `hashes` (`None`: not known yet), if the wire format accepts it.
fn announce(prefix: &[u8], manifest: &[u8], hashes: Option<&[u8]>) -> Option<Announce> {
    let a = Announce {
        object_size: u64::from_be_bytes(prefix[..8].try_into().ok()?),
        symbol_size: u16::from_be_bytes([prefix[8], prefix[9]]),
        block_symbols: u16::from_be_bytes([prefix[10], prefix[11]]),
        manifest_len: u32::try_from(manifest.len()).ok().filter(|l| *l <= MAX_MANIFEST_LEN)?,
        manifest_hash: *blake3::hash(manifest).as_bytes(),
        hashes_len: hashes.map_or(Some(0), |h| u32::try_from(h.len()).ok())?,
        hashes_hash: hashes.map_or([0; 32], |h| *blake3::hash(h).as_bytes()),
        rate_bps: 1,
        grtt_us: 1,
    };
    // Through the parser, so the decoders see only what a receiver could be announced.
    let mut buf = Vec::new();
    wire::emit(&Header::default(), &Packet::Announce(a), &mut buf);
    match wire::parse(&buf) {
        Ok((_, Packet::Announce(parsed))) => Some(parsed),
        _ => None,
    }
}

/// Decode the rest of `data` as a manifest announced with the prefix's layout: no panic; an
/// accepted manifest passes its own checks, agrees with the announcement, and encodes to
/// bytes that decode to the same manifest.
pub fn fuzz_manifest(data: &[u8]) {
    if data.len() < PREFIX_LEN {
        return;
    }
    let (prefix, bytes) = data.split_at(PREFIX_LEN);
    let Some(a) = announce(prefix, bytes, None) else { return };
    // A manifest not matching its announced hash is refused before it is parsed.
    let mut forged = a;
    forged.manifest_hash[0] ^= 1;
    assert!(Manifest::decode(bytes, &forged).is_err(), "manifest accepted with a wrong hash");
    let Ok(m) = Manifest::decode(bytes, &a) else { return };
    assert_eq!(m.check(), Ok(()), "a decoded manifest fails its own check");
    let layout = m.layout().expect("checked");
    assert_eq!(layout, a.layout(), "decoded manifest's layout differs from the announcement");
    let encoded = m.encode();
    let a2 = announce(prefix, &encoded, None).expect("re-encoded manifest fits an announcement");
    assert_eq!(Manifest::decode(&encoded, &a2).as_ref(), Ok(&m), "manifest round trip differs");
}

/// Decode the rest of `data` as the hash list of the prefix's layout, announced with its own
/// BLAKE3: no panic; an accepted list has one hash per block, encodes back to the same bytes
/// and its root is that BLAKE3.
pub fn fuzz_hash_list(data: &[u8]) {
    if data.len() < PREFIX_LEN {
        return;
    }
    let (prefix, bytes) = data.split_at(PREFIX_LEN);
    if let Some(unknown) = announce(prefix, b"m", None) {
        assert!(HashList::decode(bytes, &unknown).is_err(), "list accepted before announced");
    }
    let Some(a) = announce(prefix, b"m", Some(bytes)) else { return };
    let Ok(list) = HashList::decode(bytes, &a) else { return };
    assert_eq!(list.len() as u64, u64::from(a.layout().block_count()), "one hash per block");
    assert_eq!(list.encode(), bytes, "hash list does not encode back to its bytes");
    assert_eq!(Some(list.root()), a.hashes_hash(), "root differs from the announced hash");
    assert_eq!(list.layout(), &a.layout());
}
