//! Fuzz target `sender_datagrams`: a Sender in mid-push fed feedback datagrams and clock steps;
//! never panics, sends only valid datagrams, advertised repairs within a block plus margin, memory
//! bounded. The harness is `mcast::sim::fuzz::fuzz_sender`, the same one `tests/fuzz.rs` runs under
//! proptest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcast::sim::fuzz::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    mcast::sim::fuzz::fuzz_sender(data);
});
