//! `replay-memory`: the heap the DPoP replay cache holds at a steady rate
//! of fresh proofs, counted by a global allocator that tracks live bytes.
//!
//! It admits `--rate` proofs per second (each a new `jti`, spread over
//! `--keys` client keys) on a simulated clock for `--seconds` seconds, with
//! authd's default window (`max_age_seconds` 60 + 2 × `leeway_seconds` 5:
//! an entry lives until its `iat` + 65 s), and prints one JSON line: the
//! entries and live heap bytes once the window is full, and per entry.
//!
//! `cargo run --release -p authd-bench --bin replay-memory -- --rate 20000 --seconds 130`

#![allow(unsafe_code)] // the counting allocator: GlobalAlloc is an unsafe trait

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
};

use authd_jose::replay::{Admission, ReplayCache};
use clap::Parser;
use serde_json::json;

/// The system allocator, counting the bytes it has handed out and not got back.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` with the same arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as `GlobalAlloc::alloc`; the caller upholds its contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as `GlobalAlloc::realloc`; the caller upholds its contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Parser)]
struct Args {
    /// Fresh proofs admitted per simulated second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Simulated seconds (past the 65 s window, the cache is at its steady size).
    #[arg(long, default_value_t = 130)]
    seconds: i64,
    /// Distinct client keys the proofs come from.
    #[arg(long, default_value_t = 1_000)]
    keys: u64,
    /// The cache's bound (authd's default `replay_cache_max_entries`).
    #[arg(long, default_value_t = 2_000_000)]
    max_entries: usize,
}

fn main() {
    let args = Args::parse();
    let window = 65;
    let before = LIVE.load(Ordering::Relaxed);
    let cache = ReplayCache::new(args.max_entries, args.max_entries);
    let thumbprints: Vec<String> = (0..args.keys).map(|k| format!("{k:043}")).collect();
    let keys_bytes = LIVE.load(Ordering::Relaxed) - before;
    let (mut peak_entries, mut peak_bytes, mut refused) = (0usize, 0isize, 0u64);
    let mut n = 0u64;
    for second in 0..args.seconds {
        for _ in 0..args.rate {
            n += 1;
            let key = &thumbprints[(n % args.keys) as usize];
            let jti = format!("{n:x}-proof");
            if cache.admit(key, &jti, second + window, second) != Admission::Fresh {
                refused += 1;
            }
        }
        let bytes = LIVE.load(Ordering::Relaxed) - before - keys_bytes;
        if bytes > peak_bytes {
            peak_bytes = bytes;
            peak_entries = cache.len();
        }
    }
    let entries = cache.len();
    let bytes = LIVE.load(Ordering::Relaxed) - before - keys_bytes;
    println!(
        "{}",
        json!({
            "rate_per_second": args.rate,
            "window_seconds": window,
            "seconds": args.seconds,
            "entries": entries,
            "heap_bytes": bytes,
            "bytes_per_entry": bytes as f64 / entries.max(1) as f64,
            "peak_heap_bytes": peak_bytes,
            "entries_at_peak": peak_entries,
            "refused": refused,
        })
    );
}
