//! The firmware path (`examples/embedded/firmware.rs`, no `std`): its tokens and text
//! are the std `Session` API's on the same model and options, its memory plan is the
//! library's, and a heap too small for the plan is refused before the session
//! allocates. (`cross/check-nostd.sh` builds the same file for bare-metal targets.)

#[path = "../examples/embedded/firmware.rs"]
mod firmware;

mod common;

use firmware::{FirmwareError, Output};
use tramontane::{GenerateOptions, SamplerChain, StopReason};

const PROMPT: &str = "The engine temperature is";

#[test]
fn firmware_generates_what_the_std_session_generates() {
    let mut out = Output::new();
    firmware::generate(firmware::MODEL, PROMPT, || None, &mut out).unwrap();
    assert_eq!(out.n_tokens, firmware::MAX_TOKENS);
    assert_eq!(out.stop, Some(StopReason::MaxTokens));

    // The same model from the file system, through the std API.
    let model = common::synth("qwen2-q4_0");
    let mut session = model.session(firmware::session_options()).unwrap();
    let done = session
        .complete(
            PROMPT,
            GenerateOptions::default()
                .max_tokens(firmware::MAX_TOKENS)
                .sampler(SamplerChain::greedy()),
        )
        .unwrap();
    assert_eq!(out.tokens(), &done.tokens[..]);
    assert!(!out.truncated, "{} bytes of text", done.text.len());
    assert_eq!(out.text(), done.text);
    assert_eq!(
        out.plan,
        tramontane::memory_plan_for(
            &model,
            &firmware::session_options(),
            &GenerateOptions::default().sampler(SamplerChain::greedy())
        )
        .unwrap()
    );
    eprintln!("firmware: {:?} {:?}", out.tokens(), out.text());
}

#[test]
fn firmware_refuses_a_heap_smaller_than_the_plan() {
    let mut out = Output::new();
    let err = firmware::generate(firmware::MODEL, PROMPT, || Some(10_000), &mut out).unwrap_err();
    match err {
        FirmwareError::HeapTooSmall { needed, free } => {
            assert_eq!((needed, free), (out.plan.total, 10_000));
            assert!(needed > 10_000);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(out.n_tokens, 0);
}

#[test]
fn bump_allocator_aligns_reuses_the_last_block_and_runs_out() {
    use std::alloc::{GlobalAlloc, Layout};
    let heap: firmware::Bump<4096> = firmware::Bump::new();
    let a = Layout::from_size_align(10, 1).unwrap();
    let b = Layout::from_size_align(64, 64).unwrap();
    // SAFETY: layouts with non-zero sizes; blocks freed with their own layouts.
    unsafe {
        let pa = heap.alloc(a);
        let pb = heap.alloc(b);
        assert!(!pa.is_null() && !pb.is_null());
        assert_eq!(pb as usize % 64, 0);
        assert!(pb as usize >= pa as usize + 10);
        let used = heap.used();
        heap.dealloc(pb, b); // the last block: given back
        assert!(heap.used() < used);
        let pc = heap.alloc(b);
        assert_eq!(pc, pb);
        heap.dealloc(pa, a); // not the last: kept
        assert_eq!(heap.used(), used);
        assert!(heap
            .alloc(Layout::from_size_align(8192, 1).unwrap())
            .is_null());
        assert_eq!(heap.peak(), used);
    }
}
