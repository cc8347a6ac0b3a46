//! Fuzz target `wire_parse`: wire::parse never panics; what parses emits back to the same bytes and
//! re-parses to the same packet. The harness is `mcast::sim::fuzz::fuzz_wire`, the same one
//! `tests/fuzz.rs` runs under proptest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcast::sim::fuzz::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    mcast::sim::fuzz::fuzz_wire(data);
});
