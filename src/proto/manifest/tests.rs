//! Unit tests of [`Manifest`]: encoding round trips and the checks `decode` applies to bytes
//! from the network.

use super::*;

/// An announcement matching `bytes` for a payload of 3000 bytes in blocks of 10 x 100.
fn announce_for(bytes: &[u8]) -> Announce {
    Announce {
        object_size: 3000,
        symbol_size: 100,
        block_symbols: 10,
        manifest_len: bytes.len() as u32,
        manifest_hash: *blake3::hash(bytes).as_bytes(),
        hashes_len: 0,
        hashes_hash: [0; 32],
        rate_bps: 1,
        grtt_us: 1,
    }
}

fn sample() -> Manifest {
    let name = RelPath::new("a.bin").unwrap();
    Manifest::single_file(name, 3000, 100, 10).unwrap()
}

/// Decode `m`'s encoding under an announcement made for it (so only the content checks apply).
fn decode_own(m: &Manifest) -> Result<Manifest, ManifestError> {
    let bytes = m.encode();
    Manifest::decode(&bytes, &announce_for(&bytes))
}

#[test]
fn single_file_round_trip() {
    let m = sample();
    assert_eq!(m.single_file_path().map(RelPath::as_str), Some("a.bin"));
    assert_eq!(m.summary(), "a.bin");
    assert_eq!(decode_own(&m).unwrap(), m);
}

#[test]
fn tree_round_trip() {
    let p = |s: &str| RelPath::new(s).unwrap();
    let entries = vec![
        Entry::new(p("d"), EntryKind::Dir { mode: Some(0o750) })
            .with_mtime(Mtime { secs: 1_700_000_000, nanos: 5 }),
        Entry::new(p("d/x"), EntryKind::File { offset: 0, len: 1000, mode: Some(0o644) })
            .with_mtime(Mtime { secs: -1, nanos: 999_999_999 }),
        Entry::file(p("d/y"), 1000, 2000),
        Entry::new(p("l"), EntryKind::Symlink { target: "d/x".into() })
            .with_mtime(Mtime { secs: MAX_MTIME_SECS, nanos: 0 }),
    ];
    let m = Manifest::new(entries, 3000, 100, 10).unwrap();
    assert_eq!(m.single_file_path(), None);
    assert_eq!(m.summary(), "4 entries");
    assert_eq!(decode_own(&m).unwrap(), m);
}

#[test]
fn an_mtime_out_of_range_from_the_network_is_refused() {
    let p = |s: &str| RelPath::new(s).unwrap();
    let at = |secs, nanos| Entry::file(p("f"), 0, 3000).with_mtime(Mtime { secs, nanos });
    // Built unchecked, as a forged manifest would be.
    let forged = |e| Manifest {
        entries: vec![e],
        object_size: 3000,
        symbol_size: 100,
        block_symbols: 10,
        compression: None,
    };
    assert!(decode_own(&forged(at(MAX_MTIME_SECS, 999_999_999))).is_ok());
    for bad in [at(MAX_MTIME_SECS + 1, 0), at(0, 1_000_000_000)] {
        assert!(matches!(
            decode_own(&forged(bad)),
            Err(ManifestError::Entries(EntryError::Bad { what: "mtime out of range", .. }))
        ),);
    }
}

#[test]
fn hash_and_announcement_checks() {
    let m = sample();
    let bytes = m.encode();
    let a = announce_for(&bytes);
    let mut flipped = bytes.clone();
    flipped[0] ^= 1;
    assert_eq!(Manifest::decode(&flipped, &a), Err(ManifestError::Hash));
    assert_eq!(Manifest::decode(&bytes[..bytes.len() - 1], &a), Err(ManifestError::Hash));
    let other_size = Announce { object_size: 2999, ..a };
    assert_eq!(
        Manifest::decode(&bytes, &other_size),
        Err(ManifestError::Inconsistent("differs from announcement"))
    );
    // Consistent hash but not a manifest.
    let junk = [0xffu8; 40];
    assert!(matches!(Manifest::decode(&junk, &announce_for(&junk)), Err(ManifestError::Parse(_))));
}

#[test]
fn layout_checks() {
    let name = || RelPath::new("a").unwrap();
    assert_eq!(
        Manifest::single_file(name(), 3000, 8, 10),
        Err(ManifestError::Inconsistent("layout"))
    );
    // No more blocks than a hash list can cover.
    let max_blocks = u64::from(crate::proto::wire::MAX_HASH_LIST_LEN) / 32;
    assert!(Manifest::single_file(name(), max_blocks * 100, 100, 1).is_ok());
    assert_eq!(
        Manifest::single_file(name(), max_blocks * 100 + 1, 100, 1),
        Err(ManifestError::Inconsistent("too many blocks"))
    );
}

/// The wire form with unchecked paths, as a hostile sender would encode it.
#[derive(serde::Serialize)]
struct Hostile {
    entries: Vec<(String, EntryKind, Option<Mtime>)>,
    object_size: u64,
    symbol_size: u16,
    block_symbols: u16,
    compression: Option<crate::proto::compress::BlockCodec>,
}

impl Hostile {
    fn from(m: &Manifest) -> Self {
        Hostile {
            entries: m
                .entries
                .iter()
                .map(|e| (e.path.to_string(), e.kind.clone(), e.mtime))
                .collect(),
            object_size: m.object_size,
            symbol_size: m.symbol_size,
            block_symbols: m.block_symbols,
            compression: m.compression,
        }
    }

    fn decode(&self) -> Result<Manifest, ManifestError> {
        let bytes = postcard::to_allocvec(self).unwrap();
        Manifest::decode(&bytes, &announce_for(&bytes))
    }
}

#[test]
fn hostile_wire_form_matches_ours() {
    let m = sample();
    assert_eq!(postcard::to_allocvec(&Hostile::from(&m)).unwrap(), m.encode());
    assert_eq!(Hostile::from(&m).decode().unwrap(), m);
}

#[test]
fn hostile_names_are_refused() {
    for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a\0b", "a//b", "."] {
        let mut h = Hostile::from(&sample());
        h.entries[0].0 = bad.into();
        assert!(matches!(h.decode(), Err(ManifestError::Name(_))), "{bad:?}");
    }
}

#[test]
fn hostile_entries_are_refused() {
    let mut m = sample();
    m.entries[0].kind = EntryKind::File { offset: 0, len: 3001, mode: None };
    assert!(matches!(decode_own(&m), Err(ManifestError::Entries(EntryError::Bad { .. }))));
    let mut m = sample();
    m.entries.push(m.entries[0].clone());
    assert!(matches!(decode_own(&m), Err(ManifestError::Entries(_))));
    let mut m = sample();
    m.entries.clear();
    assert!(matches!(decode_own(&m), Err(ManifestError::Entries(EntryError::Coverage { .. }))));
    let mut m = sample();
    m.entries[0].kind = EntryKind::File { offset: 0, len: 3000, mode: Some(0o6755) };
    assert!(matches!(decode_own(&m), Err(ManifestError::Entries(EntryError::Bad { .. }))));
}

/// A claimed entry count far beyond the bytes present is a parse error, not an allocation.
#[test]
fn huge_entry_count_is_refused_cheaply() {
    let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 0x0f]; // varint u32::MAX entries
    bytes.extend_from_slice(&[0; 64]);
    assert!(matches!(
        Manifest::decode(&bytes, &announce_for(&bytes)),
        Err(ManifestError::Parse(_))
    ));
}

#[test]
fn encoding_is_stable() {
    // The wire form: entries first, each a length-prefixed path then the kind's variant index.
    let bytes = sample().encode();
    assert_eq!(&bytes[..9], &[1, 5, b'a', b'.', b'b', b'i', b'n', 0, 0]);
}

proptest::proptest! {
    /// Corrupted manifests under a matching announcement: never a panic, and whatever is
    /// accepted passes every check.
    #[test]
    fn corrupted_manifests_are_refused_or_sound(
        flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 1u8..=255), 1..4)
    ) {
        let p = |s: &str| RelPath::new(s).unwrap();
        let entries = vec![
            Entry::new(p("d"), EntryKind::Dir { mode: Some(0o755) }),
            Entry::file(p("d/x"), 0, 1000),
            Entry::new(p("d/l"), EntryKind::Symlink { target: "x".into() }),
            Entry::file(p("y"), 1000, 2000),
        ];
        let m = Manifest::new(entries, 3000, 100, 10).unwrap();
        let mut bytes = m.encode();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Ok(got) = Manifest::decode(&bytes, &announce_for(&bytes)) {
            proptest::prop_assert_eq!(got.check(), Ok(()));
        }
    }
}
