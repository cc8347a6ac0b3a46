//! The wire harness: parsing arbitrary bytes never panics, and a datagram that parses is the
//! canonical encoding of its packet: emitting what was parsed gives back the same bytes, which
//! parse to the same header and packet.

use crate::proto::wire;

/// Parse `data`; if it parses, emit the packet again and check the round trip. Also tries the
/// input sealed (magic, version and CRC made right), so that the body parsers see mutated
/// bodies and not only checksum failures.
pub fn fuzz_wire(data: &[u8]) {
    check(data);
    let mut sealed = data.to_vec();
    super::script::seal(&mut sealed, None);
    check(&sealed);
}

fn check(datagram: &[u8]) {
    let Ok((header, packet)) = wire::parse(datagram) else { return };
    let mut buf = Vec::new();
    wire::emit(&header, &packet, &mut buf);
    assert_eq!(buf, datagram, "{packet:?} does not emit back to the bytes it was parsed from");
    let again = wire::parse(&buf).expect("an emitted packet parses");
    assert_eq!(again, (header, packet), "emitted packet re-parses differently");
}
