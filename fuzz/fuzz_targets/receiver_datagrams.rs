//! Fuzz target `receiver_datagrams`: a Receiver driven by a script of datagrams, clock steps,
//! decode results and storage verdicts (sim::fuzz::script); never panics, sends only valid
//! datagrams, memory bounded. The harness is `mcast::sim::fuzz::fuzz_receiver`, the same one
//! `tests/fuzz.rs` runs under proptest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcast::sim::fuzz::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    mcast::sim::fuzz::fuzz_receiver(data);
});
