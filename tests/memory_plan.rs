//! `memory_plan` against what a session really allocates, measured with a counting
//! global allocator (live bytes and their peak), on every synthetic model with several
//! context lengths, batch sizes and both KV cache types, and on Gemma 3 270M.
//!
//! The plan is computed from the same size functions the constructors allocate with,
//! so with one thread it must match to the byte; with worker threads the pool's own
//! bookkeeping comes on top and must stay within 5%. The issue asks for 5% in all cases.
//!
//! Only allocations made off the process's main thread are counted (the harness
//! allocates on it for its own messages); everything runs in one `#[test]` so no other
//! test thread allocates meanwhile.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use tramontane::model::KvType;
use tramontane::{memory_plan, memory_plan_for, GenerateOptions, MemoryPlan, Model};
use tramontane::{SamplerChain, SessionOptions};

struct Counting;

/// Bytes currently allocated (off the main thread), and the highest value seen.
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn counted() -> bool {
    // SAFETY: gettid and getpid have no preconditions and touch no memory of ours.
    unsafe { libc::gettid() != libc::getpid() }
}

fn add(delta: isize) {
    if counted() {
        let now = LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// relaxed atomics, which neither allocate nor touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// What one session and one generation of `n_gen` tokens really allocated.
#[derive(Debug)]
struct Measured {
    /// Live bytes added by `Model::session`.
    session: isize,
    /// Live bytes added by starting the generation (prompt already tokenized).
    generation: isize,
    /// Highest live bytes over creation, generation and `n_gen` tokens, above the start.
    peak: isize,
}

fn measure(m: &Model, so: &SessionOptions, go: &GenerateOptions, n_gen: usize) -> Measured {
    // Tokenized before counting: the prompt's tokens are not part of the plan.
    let prompt = m.tokenizer().encode("The engine", true, false).unwrap();
    // Built before counting too: the stop strings belong to the caller.
    let go = go.clone().max_tokens(n_gen).ignore_eog(true);
    let base = live();
    PEAK.store(base, Ordering::SeqCst);
    let mut s = m.session(so.clone()).unwrap();
    let session = live() - base;
    let mut stream = s.generate_tokens(&prompt, go).unwrap();
    let generation = live() - base - session;
    while let Some(p) = stream.next() {
        std::hint::black_box(p.unwrap().token);
    }
    let peak = PEAK.load(Ordering::SeqCst) - base;
    drop(stream);
    drop(s);
    Measured {
        session,
        generation,
        peak,
    }
}

/// Within `pct` percent of `planned` (exact when `pct` is 0).
fn close(measured: isize, planned: usize, pct: f64) -> bool {
    let planned = planned as f64;
    (measured as f64 - planned).abs() <= planned * pct / 100.0
}

/// One case: the plan against the measurement. Returns the report line and whether
/// it failed. With one thread the session and generation figures must be exact; the
/// peak over the whole run (which also sees the worker pool with `threads > 1`) within
/// 5% of the plan's total.
fn check(label: &str, m: &Model, so: SessionOptions, go: &GenerateOptions) -> (String, bool) {
    let plan: MemoryPlan = memory_plan_for(m, &so, go).unwrap();
    let got = measure(m, &so, go, 8);
    let exact_pct = if so.threads > 1 { 5.0 } else { 0.0 };
    let ok = close(got.session, plan.session(), exact_pct)
        && close(got.generation, plan.sampler + plan.stream, exact_pct)
        && close(got.peak, plan.total, 5.0);
    let line = format!(
        "{label}: plan total {} B (kv {} scratch {} logits {} tokens {} sampler {} stream {}); \
         measured session {} B, generation {} B, peak {} B ({:+.3}%)",
        plan.total,
        plan.kv_cache,
        plan.scratch,
        plan.logits,
        plan.tokens,
        plan.sampler,
        plan.stream,
        got.session,
        got.generation,
        got.peak,
        (got.peak as f64 / plan.total as f64 - 1.0) * 100.0,
    );
    (line, !ok)
}

/// One test: a second test thread starting (its set-up allocates) would be counted in
/// the first one's window.
#[test]
fn memory_plan_against_allocation() {
    plan_refuses_what_the_session_refuses();
    plan_matches_real_allocation();
}

fn plan_matches_real_allocation() {
    let mut report = Vec::new();
    let mut failed = Vec::new();
    let mut run = |label: String, m: &Model, so: SessionOptions, go: &GenerateOptions| {
        let (line, bad) = check(&label, m, so, go);
        if bad {
            failed.push(line.clone());
        }
        report.push(line);
    };
    let greedy = GenerateOptions::default().sampler(SamplerChain::greedy());
    let stops = GenerateOptions::default()
        .sampler(SamplerChain::default().penalty_last_n(256).seed(3))
        .stop("\n\nUser:")
        .stop("END");
    for name in common::SYNTH {
        let m = common::synth(name);
        for (ctx, batch, kv) in [
            (48, 64, KvType::F16),
            (100, 7, KvType::F32),
            (512, 32, KvType::F16),
        ] {
            let so = SessionOptions {
                context_len: ctx,
                batch_size: batch,
                kv_type: kv,
                ..Default::default()
            };
            run(
                format!("{name} ctx {ctx} batch {batch} {kv:?}"),
                &m,
                so,
                &greedy,
            );
        }
        let so = SessionOptions {
            context_len: 256,
            ..Default::default()
        };
        run(format!("{name} ctx 256, stops, penalties"), &m, so, &stops);
    }
    let m = common::synth("gemma3-q4_k");
    let so = SessionOptions {
        context_len: 256,
        threads: 2,
        ..Default::default()
    };
    run("gemma3-q4_k ctx 256, 2 threads".into(), &m, so, &greedy);
    if let Some(m) = common::gemma() {
        for ctx in [512, 2048] {
            let so = SessionOptions {
                context_len: ctx,
                ..Default::default()
            };
            run(format!("gemma-3-270m ctx {ctx}"), &m, so, &greedy);
        }
    }
    for line in &report {
        eprintln!("{line}");
    }
    assert!(failed.is_empty(), "plan and allocation differ: {failed:#?}");
}

fn plan_refuses_what_the_session_refuses() {
    let m = common::synth("qwen2-q4_0");
    for so in [
        SessionOptions {
            context_len: 0,
            ..Default::default()
        },
        SessionOptions {
            batch_size: 0,
            ..Default::default()
        },
        SessionOptions {
            context_len: usize::MAX / 2,
            ..Default::default()
        },
    ] {
        assert!(memory_plan(&m, &so).is_err(), "{so:?}");
        assert!(m.session(so.clone()).is_err(), "{so:?}");
    }
    // The default generation options are what `memory_plan` assumes.
    let so = SessionOptions::default();
    assert_eq!(
        memory_plan(&m, &so).unwrap(),
        memory_plan_for(&m, &so, &GenerateOptions::default()).unwrap()
    );
    assert_eq!(m.memory_plan(&so).unwrap(), memory_plan(&m, &so).unwrap());
}
