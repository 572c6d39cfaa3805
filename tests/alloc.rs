//! Zero heap allocations per generated token after the first: a counting global
//! allocator around 64 tokens of greedy and 64 of top-p sampling (with penalties and a
//! stop string to watch for), with 1 and 2 threads, with and without context shifts, on
//! the synthetic models and on Gemma 3 270M.
//!
//! The counter is global (the kernel worker threads' allocations count too): the tests
//! take a lock so that only one counts at a time. Allocations on the process's main
//! thread are not counted: that is the test harness, which allocates for its own
//! messages (such as "has been running for over 60 seconds") while a test runs on
//! another thread.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tramontane::{GenerateOptions, Model, SamplerChain, SessionOptions};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

/// Count one allocation unless it comes from the harness's main thread.
fn count_alloc() {
    // SAFETY: gettid and getpid have no preconditions and touch no memory of ours.
    let on_main = unsafe { libc::gettid() == libc::getpid() };
    if !on_main {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// relaxed atomic increment, which neither allocates nor touches the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc();
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Held by the test that counts.
static LOCK: Mutex<()> = Mutex::new(());

fn samplers() -> [(&'static str, SamplerChain); 2] {
    [
        ("greedy", SamplerChain::greedy()),
        (
            "top-p",
            SamplerChain::default()
                .top_k(0)
                .top_p(0.9)
                .min_p(0.0)
                .temperature(0.9)
                .repeat_penalty(1.1)
                .frequency_penalty(0.1)
                .seed(7),
        ),
    ]
}

/// Allocations during tokens 2..=65 of one stream.
fn count(m: &Model, so: SessionOptions, sampler: SamplerChain) -> (usize, usize) {
    let mut s = m.session(so).unwrap();
    let o = GenerateOptions::default()
        .max_tokens(65)
        .sampler(sampler)
        .stop("\u{1F600} never")
        .stop("xq")
        .ignore_eog(true);
    let mut stream = s.generate("Diagnostic: the engine", o).unwrap();
    stream.next().unwrap().unwrap(); // the first token may allocate
    let before = ALLOCS.load(Ordering::SeqCst);
    let mut n = 0;
    while let Some(p) = stream.next() {
        let p = p.unwrap();
        std::hint::black_box(p.text);
        n += 1;
    }
    let after = ALLOCS.load(Ordering::SeqCst);
    drop(stream);
    (after - before, n)
}

/// Runs the checks, prints every count, fails with the non-zero ones.
fn check_all(cases: impl FnOnce(&mut dyn FnMut(String, &Model, SessionOptions, SamplerChain))) {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut check = |label: String, m: &Model, so: SessionOptions, sampler: SamplerChain| {
        let (allocs, n) = count(m, so, sampler);
        let line = format!("{label}: {allocs} allocations over {n} tokens");
        if allocs != 0 || n != 64 {
            failures.push(line.clone());
        }
        report.push(line);
    };
    cases(&mut check);
    for line in &report {
        eprintln!("{line}");
    }
    assert!(failures.is_empty(), "allocations per token: {failures:#?}");
}

#[test]
fn zero_allocations_per_generated_token() {
    zero_allocations_per_generated_token_one_thread();
    zero_allocations_per_generated_token_with_threads();
}

fn zero_allocations_per_generated_token_one_thread() {
    check_all(|check| {
        for name in ["llama-gqa-f16", "gemma3-q4_k", "qwen2-q4_0"] {
            let m = common::synth(name);
            for (sname, sampler) in samplers() {
                let so = SessionOptions {
                    context_len: 256,
                    ..Default::default()
                };
                check(format!("{name} {sname}"), &m, so, sampler);
            }
            // Context shifts along the way (a context of 40: several shifts in 64 tokens).
            let so = SessionOptions {
                context_len: 40,
                context_shift: true,
                ..Default::default()
            };
            check(
                format!("{name} greedy, shifting"),
                &m,
                so,
                SamplerChain::greedy(),
            );
        }
        if let Some(m) = common::gemma() {
            for (sname, sampler) in samplers() {
                let so = SessionOptions {
                    context_len: 256,
                    ..Default::default()
                };
                check(format!("gemma-3-270m {sname}"), &m, so, sampler);
            }
        }
    });
}

/// Run from the test above, not as a test of its own: a second test thread starting
/// (its thread-local set-up allocates) would be counted in the first one's window.
fn zero_allocations_per_generated_token_with_threads() {
    check_all(|check| {
        for name in ["llama-gqa-f16", "gemma3-q4_k"] {
            let m = common::synth(name);
            for (sname, sampler) in samplers() {
                let so = SessionOptions {
                    context_len: 256,
                    threads: 2,
                    ..Default::default()
                };
                check(format!("{name} {sname} 2 threads"), &m, so, sampler);
            }
        }
        if let Some(mut m) = common::gemma() {
            let so = SessionOptions {
                context_len: 256,
                threads: 2,
                ..Default::default()
            };
            check(
                "gemma-3-270m greedy 2 threads".into(),
                &m,
                so.clone(),
                SamplerChain::greedy(),
            );
            // The decode reads the repacked Q5_0 copies (where the level repacks).
            let bytes = m.repack_weights().unwrap();
            check(
                format!("gemma-3-270m greedy 2 threads, {bytes} bytes repacked"),
                &m,
                so,
                SamplerChain::greedy(),
            );
        }
    });
    // Let the pools' workers exit before another test counts.
    std::thread::sleep(std::time::Duration::from_millis(200));
}
