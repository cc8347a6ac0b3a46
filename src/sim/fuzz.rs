//! Fuzz harnesses, shared by the cargo-fuzz targets (`fuzz/`) and the proptest runs
//! (`tests/fuzz.rs`) so that both drive exactly the same code and check the same invariants.
//! Each `fuzz_*` function takes arbitrary bytes, never returns an error and panics only when an
//! invariant of the code under test is broken (that panic is the finding):
//!
//! - [`fuzz_wire`]: [`wire::parse`](crate::proto::wire::parse) never panics, and whatever
//!   parses emits back to the same bytes and re-parses to the same packet.
//! - [`fuzz_manifest`], [`fuzz_hash_list`]: the manifest and hash-list decoders never panic,
//!   and what they accept survives a round trip.
//! - [`fuzz_receiver`]: a receiver fed datagrams, clock ticks, decode results and storage
//!   verdicts in the order the input says, as the driver would ([`script`] describes the
//!   input); what it sends parses, what it hands out stays inside the announced object, and
//!   its memory stays bounded.
//! - [`fuzz_sender`]: a sender in mid-push fed feedback datagrams and clock ticks; what it
//!   sends parses and the repairs it advertises (its queue) stay within a block plus margin.
//!
//! Memory is measured by [`CountingAlloc`] when the binary installs it as its global allocator
//! (the fuzz targets and `tests/fuzz.rs` do); elsewhere the memory checks are skipped.
//! [`corpus`] builds the seed corpus from a real push in the [`Harness`](super::Harness).
//! Sans-IO like the rest of `sim`: no files or clocks; the corpus is returned as bytes.

mod alloc;
pub mod corpus;
mod manifest;
mod receiver;
pub mod script;
mod sender;
mod wire;

pub use alloc::{CountingAlloc, HeapScope};
pub use manifest::{fuzz_hash_list, fuzz_manifest, layout_prefix};
pub use receiver::{fuzz_receiver, ReceiverRun, FUZZ_RECEIVER_NODE};
pub use sender::{fuzz_sender, SenderRun};
pub use wire::fuzz_wire;

/// The fuzz targets, by the name of their corpus directory and cargo-fuzz target.
pub const TARGETS: [&str; 5] =
    ["wire_parse", "receiver_datagrams", "sender_datagrams", "manifest_decode", "hash_list"];

/// Run the harness of `target` (one of [`TARGETS`]) on `data`. Unknown names panic.
pub fn run_target(target: &str, data: &[u8]) {
    match target {
        "wire_parse" => fuzz_wire(data),
        "receiver_datagrams" => {
            fuzz_receiver(data);
        }
        "sender_datagrams" => {
            fuzz_sender(data);
        }
        "manifest_decode" => fuzz_manifest(data),
        "hash_list" => fuzz_hash_list(data),
        other => panic!("unknown fuzz target {other}"),
    }
}
