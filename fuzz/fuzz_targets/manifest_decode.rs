//! Fuzz target `manifest_decode`: Manifest::decode of arbitrary bytes (after a 12-byte layout
//! prefix); never panics, accepted manifests round-trip. The harness is
//! `mcast::sim::fuzz::fuzz_manifest`, the same one `tests/fuzz.rs` runs under proptest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcast::sim::fuzz::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    mcast::sim::fuzz::fuzz_manifest(data);
});
