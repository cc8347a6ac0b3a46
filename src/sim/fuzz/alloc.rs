//! A counting global allocator: live heap bytes per thread, and the peak within a scope, so a
//! harness can bound the memory the code under test holds. Per thread, because the test
//! harness runs cases on several threads at once; the state machines under test are
//! single-threaded, so what they allocate is allocated and freed on the harness's thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Live bytes allocated by this thread (less those it freed; may go negative when a
    /// thread frees what another allocated).
    static LIVE: Cell<i64> = const { Cell::new(0) };
    /// Highest `LIVE` since the innermost [`HeapScope`] began.
    static PEAK: Cell<i64> = const { Cell::new(0) };
    /// Whether any allocation went through [`CountingAlloc`] on this thread.
    static SEEN: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, counting. Install it with
/// `#[global_allocator] static A: CountingAlloc = CountingAlloc;` to enable the memory checks
/// of the fuzz harnesses.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

fn add(delta: i64) {
    // `try_with`: during thread teardown the slots may be gone; counting then stops.
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
    let _ = SEEN.try_with(|s| s.set(true));
}

// SAFETY: every call is forwarded unchanged to `System`; the counters are const-initialised
// thread-locals without destructors, so touching them never allocates or re-enters.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// Measures the peak heap growth on this thread from its creation on. Scopes do not nest: a
/// new one restarts the peak.
#[derive(Debug)]
pub struct HeapScope {
    base: i64,
    counting: bool,
}

impl HeapScope {
    /// Start measuring. Counting is on only if [`CountingAlloc`] is the global allocator.
    pub fn start() -> Self {
        // An allocation of our own tells whether the counting allocator sees this thread.
        drop(std::hint::black_box(Box::new(0u64)));
        let counting = SEEN.try_with(Cell::get).unwrap_or(false);
        let base = LIVE.try_with(Cell::get).unwrap_or(0);
        let _ = PEAK.try_with(|p| p.set(base));
        HeapScope { base, counting }
    }

    /// Highest heap growth (bytes) since [`HeapScope::start`], `None` when not counting.
    pub fn peak(&self) -> Option<u64> {
        let peak = PEAK.try_with(Cell::get).ok()?;
        self.counting.then(|| (peak - self.base).max(0) as u64)
    }

    /// Panic if the peak growth exceeded `limit` bytes (`what` names the limit).
    pub fn check(&self, limit: u64, what: &str) {
        if let Some(peak) = self.peak() {
            assert!(peak <= limit, "{what}: heap grew by {peak} bytes, limit {limit}");
        }
    }
}
