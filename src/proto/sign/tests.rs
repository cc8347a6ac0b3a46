//! Message encoding, signing and verification: a good signature verifies, another key's or a
//! tampered field's does not.

use super::*;

fn fields() -> SignedFields {
    SignedFields {
        session: 0x0a0b_0c0d,
        sender_node: 7,
        object_size: 3 << 30,
        symbol_size: 1400,
        block_symbols: 749,
        manifest_len: 321,
        manifest_hash: [0x11; 32],
        hashes_len: 3072 * 32,
        hashes_hash: [0x22; 32],
        version: 1_700_000_000_000,
    }
}

fn signer(seed: u8) -> Signer {
    Signer::from_secret(&[seed; KEY_LEN])
}

fn trusted(s: &Signer) -> TrustedKey {
    TrustedKey::from_bytes(&s.public_key()).unwrap()
}

#[test]
fn the_message_is_the_domain_then_every_field_big_endian() {
    let m = fields().message();
    assert_eq!(m.len(), MESSAGE_LEN);
    assert_eq!(&m[..DOMAIN.len()], DOMAIN);
    let rest = &m[DOMAIN.len()..];
    assert_eq!(&rest[..4], &[0x0a, 0x0b, 0x0c, 0x0d], "session");
    assert_eq!(&rest[4..8], &7u32.to_be_bytes(), "sender node");
    assert_eq!(&rest[8..16], &(3u64 << 30).to_be_bytes(), "object size");
    assert_eq!(&rest[16..18], &1400u16.to_be_bytes());
    assert_eq!(&rest[18..20], &749u16.to_be_bytes());
    assert_eq!(&rest[20..24], &321u32.to_be_bytes());
    assert_eq!(&rest[24..56], &[0x11; 32]);
    assert_eq!(&rest[56..60], &(3072u32 * 32).to_be_bytes());
    assert_eq!(&rest[60..92], &[0x22; 32]);
    assert_eq!(&rest[92..], &1_700_000_000_000u64.to_be_bytes(), "version last");
}

#[test]
fn a_signature_verifies_under_its_key_only() {
    let (a, b) = (signer(1), signer(2));
    let sig = a.sign(&fields());
    assert_eq!((sig.key_id, sig.version), (a.key_id(), fields().version));
    let keys = [trusted(&b), trusted(&a)];
    assert_eq!(verify(&keys, &fields(), &sig).map(TrustedKey::id), Ok(a.key_id()));
    // Another key trusted only: refused by id, before any curve arithmetic.
    assert_eq!(verify(&keys[..1], &fields(), &sig), Err(SignError::UntrustedKey(a.key_id())));
    // Another key's signature under our key's id: the id is only a name, the check is real.
    let forged = Signature { key_id: a.key_id(), ..b.sign(&fields()) };
    assert_eq!(verify(&keys, &fields(), &forged), Err(SignError::BadSignature));
}

#[test]
fn tampering_with_any_field_breaks_the_signature() {
    let s = signer(3);
    let keys = [trusted(&s)];
    let sig = s.sign(&fields());
    let f = fields();
    let tampered = [
        SignedFields { session: f.session ^ 1, ..f },
        SignedFields { sender_node: f.sender_node ^ 1, ..f },
        SignedFields { object_size: f.object_size + 1, ..f },
        SignedFields { symbol_size: f.symbol_size - 1, ..f },
        SignedFields { block_symbols: f.block_symbols + 1, ..f },
        SignedFields { manifest_len: f.manifest_len + 1, ..f },
        SignedFields { manifest_hash: [0x12; 32], ..f },
        SignedFields { hashes_len: f.hashes_len - 32, ..f },
        SignedFields { hashes_hash: [0x23; 32], ..f },
    ];
    for t in &tampered {
        assert_eq!(verify(&keys, t, &sig), Err(SignError::BadSignature), "{t:?}");
    }
    // The version is the packet's: a replay that claims a newer one fails too.
    let newer = Signature { version: sig.version + 1, ..sig };
    assert_eq!(verify(&keys, &f, &newer), Err(SignError::BadSignature));
    let mut flipped = sig;
    flipped.signature[10] ^= 1;
    assert_eq!(verify(&keys, &f, &flipped), Err(SignError::BadSignature));
    assert!(verify(&keys, &f, &sig).is_ok(), "the untampered one still verifies");
}

#[test]
fn key_ids_differ_per_key_and_bad_public_keys_are_refused() {
    assert_ne!(signer(1).key_id(), signer(2).key_id());
    assert_eq!(signer(1).key_id(), key_id(&signer(1).public_key()));
    assert_eq!(hex_id(&[0xab; KEY_ID_LEN]), "abababababababab");
    // y = 2 is not on the curve.
    let mut off_curve = [0u8; KEY_LEN];
    off_curve[0] = 2;
    assert_eq!(TrustedKey::from_bytes(&off_curve), Err(SignError::BadKey));
}
