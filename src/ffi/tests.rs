//! The C ABI called from Rust: the handle lifecycle (the session's stream borrows the
//! session, which borrows the model kept alive by an `Arc`), cancellation from another
//! thread, partial reads, saved states, callbacks. Small enough for Miri, which checks
//! the unsafe code (Stacked Borrows, data races) along these paths (~25 min):
//! `cargo +nightly miri test --target riscv64gc-unknown-linux-gnu --features ffi --lib ffi::`
//! (a riscv64 target because libm's x86_64 and aarch64 `sqrtf` are inline assembly,
//! which Miri cannot run).

use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr::{null, null_mut};

use super::*;
use TraStatus::*;

static MODEL: &[u8] = include_bytes!("../../fixtures/models-synth/qwen2-q4_0.gguf");

fn last_error() -> alloc::string::String {
    // SAFETY: tra_last_error returns a NUL-terminated string valid until the next call
    // on this thread; it is copied at once.
    unsafe { CStr::from_ptr(tra_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn params(max_tokens: u32) -> TraSessionParams {
    TraSessionParams {
        context_len: 32,
        temperature: 0.0,
        max_tokens,
        ..tra_session_params_default()
    }
}

struct Handles {
    model: *mut TraModel,
    session: *mut TraSession,
}

fn open(max_tokens: u32) -> Handles {
    let mut model = null_mut();
    let mut session = null_mut();
    let p = params(max_tokens);
    // SAFETY: MODEL is 'static; the out pointers are valid locals.
    unsafe {
        assert_eq!(
            tra_model_open_bytes(MODEL.as_ptr(), MODEL.len(), &mut model),
            TRA_OK
        );
        assert_eq!(tra_session_new(model, &p, &mut session), TRA_OK);
    }
    Handles { model, session }
}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: live handles from `open`, freed once (the session first or not: the
        // session keeps the model alive either way).
        unsafe {
            tra_model_free(self.model);
            tra_session_free(self.session);
        }
    }
}

/// Pull pieces until the status is not TRA_OK; (tokens, text, final status).
fn drain(s: *mut TraSession) -> (Vec<i32>, Vec<u8>, TraStatus) {
    let mut buf = [0 as c_char; 128];
    let (mut len, mut tok) = (0usize, 0i32);
    let (mut toks, mut text) = (Vec::new(), Vec::new());
    loop {
        // SAFETY: a live session; buf holds 128 bytes; the outputs are locals.
        let st = unsafe { tra_session_next(s, buf.as_mut_ptr(), buf.len(), &mut len, &mut tok) };
        if st != TRA_OK {
            return (toks, text, st);
        }
        toks.push(tok);
        text.extend(buf[..len].iter().map(|&c| c as u8));
    }
}

#[test]
fn lifecycle_partial_reads_and_end() {
    let h = open(4);
    let s = h.session;
    let prompt = c"hello";
    // SAFETY: live handles, NUL-terminated prompt, valid local outputs throughout.
    unsafe {
        assert_eq!(tra_session_prompt(s, prompt.as_ptr()), TRA_OK);
        let (want_toks, want_text, st) = drain(s);
        assert_eq!(st, TRA_END);
        assert_eq!(drain(s).2, TRA_END);

        // Again, reading each piece through a 1-byte buffer first.
        assert_eq!(tra_session_reset(s), TRA_OK);
        assert_eq!(tra_session_prompt(s, prompt.as_ptr()), TRA_OK);
        let mut one = [0 as c_char; 1];
        let mut big = [0 as c_char; 128];
        let (mut len, mut tok) = (0usize, 0i32);
        let (mut toks, mut text) = (Vec::new(), Vec::new());
        loop {
            match tra_session_next(s, one.as_mut_ptr(), 1, &mut len, &mut tok) {
                TRA_OK => toks.push(tok),
                TRA_ERR_BUFFER_TOO_SMALL => {
                    let need = len;
                    assert!(need >= 2);
                    assert_eq!(
                        tra_session_next(s, big.as_mut_ptr(), need, &mut len, &mut tok),
                        TRA_OK
                    );
                    assert_eq!(len + 1, need);
                    toks.push(tok);
                    text.extend(big[..len].iter().map(|&c| c as u8));
                }
                TRA_END => break,
                st => panic!("{st:?}: {}", last_error()),
            }
        }
        assert_eq!((toks, text), (want_toks, want_text));

        // Save mid-generation, restore into a second session: the same tokens follow.
        assert_eq!(tra_session_reset(s), TRA_OK);
        assert_eq!(tra_session_prompt(s, prompt.as_ptr()), TRA_OK);
        let mut buf = [0 as c_char; 128];
        assert_eq!(
            tra_session_next(s, buf.as_mut_ptr(), 128, &mut len, &mut tok),
            TRA_OK
        );
        let mut need = 0usize;
        let mut dummy = [0u8; 1];
        assert_eq!(
            tra_session_save_state(s, dummy.as_mut_ptr(), 0, &mut need),
            TRA_ERR_BUFFER_TOO_SMALL
        );
        let mut blob = std::vec![0u8; need];
        assert_eq!(
            tra_session_save_state(s, blob.as_mut_ptr(), need, &mut len),
            TRA_OK
        );
        let rest_a = drain(s).0;
        let other = open(4);
        assert_eq!(
            tra_session_load_state(other.session, blob.as_ptr(), blob.len()),
            TRA_OK
        );
        assert_eq!(tra_session_prompt(other.session, c"".as_ptr()), TRA_OK);
        let rest_b = drain(other.session).0;
        assert!(rest_b.starts_with(&rest_a), "{rest_a:?} vs {rest_b:?}");

        // Logits: the pending generated token is evaluated first.
        let mut logits: *const f32 = null();
        let mut n = 0usize;
        assert_eq!(tra_session_logits(s, &mut logits, &mut n), TRA_OK);
        assert_eq!(n, 320);
        assert!(!logits.is_null());
    }
}

#[test]
fn null_arguments_and_errors() {
    let h = open(2);
    let mut out = null_mut();
    let (mut len, mut tok) = (0usize, 0i32);
    let mut buf = [0 as c_char; 8];
    // SAFETY: NULL where a pointer is tested, valid pointers elsewhere.
    unsafe {
        assert_eq!(tra_model_open(null(), &mut out), TRA_ERR_INVALID_ARGUMENT);
        assert!(out.is_null());
        assert_eq!(last_error(), "tra_model_open: path is NULL");
        assert_eq!(
            tra_session_next(null_mut(), buf.as_mut_ptr(), 8, &mut len, &mut tok),
            TRA_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            tra_session_next(h.session, buf.as_mut_ptr(), 8, &mut len, null_mut()),
            TRA_ERR_INVALID_ARGUMENT
        );
        assert_eq!(last_error(), "tra_session_next: token_out is NULL");
        assert_eq!(
            tra_model_open_bytes(MODEL.as_ptr(), 100, &mut out),
            TRA_ERR_FORMAT
        );
        assert_eq!(
            tra_session_prompt(h.session, c"\xff".as_ptr()),
            TRA_ERR_INVALID_ARGUMENT
        );
        let ids = [1i32, -4];
        assert_eq!(
            tra_session_feed(h.session, ids.as_ptr(), 2),
            TRA_ERR_INVALID_ARGUMENT
        );
        assert_eq!(last_error(), "tra_session_feed: token id -4 is negative");
        // A failed call leaves the message; a successful one does not change it.
        assert_eq!(tra_session_reset(h.session), TRA_OK);
        assert_eq!(last_error(), "tra_session_feed: token id -4 is negative");
        assert_eq!(
            CStr::from_ptr(tra_version()).to_str(),
            Ok(env!("CARGO_PKG_VERSION"))
        );
    }
}

/// A session pointer to hand to another thread.
#[derive(Clone, Copy)]
struct SendPtr(*mut TraSession);
// SAFETY: tra_session_cancel may be called from any thread while the session lives.
unsafe impl Send for SendPtr {}

impl SendPtr {
    /// Cancel (a method, so that closures capture the whole Send wrapper).
    fn cancel(self) -> TraStatus {
        // SAFETY: the session outlives the threads that use this (they are joined
        // before it is freed); cancel is the one call allowed from another thread.
        unsafe { tra_session_cancel(self.0) }
    }
}

#[test]
fn cancel_from_another_thread_and_model_freed_first() {
    // The session keeps the model alive.
    let mut h = open(0);
    // SAFETY: a live handle, freed once; `h.model` is set to NULL so Drop skips it.
    unsafe { tra_model_free(h.model) };
    h.model = null_mut();
    let s = SendPtr(h.session);
    // SAFETY: live session, NUL-terminated prompt.
    unsafe { assert_eq!(tra_session_prompt(h.session, c"hi".as_ptr()), TRA_OK) };
    let mut buf = [0 as c_char; 128];
    let (mut len, mut tok) = (0usize, 0i32);
    // SAFETY: as in `drain`.
    let st = unsafe { tra_session_next(h.session, buf.as_mut_ptr(), 128, &mut len, &mut tok) };
    assert_eq!(st, TRA_OK);
    // Between two tokens.
    let t = std::thread::spawn(move || s.cancel());
    assert_eq!(t.join().expect("cancel thread"), TRA_OK);
    assert_eq!(drain(h.session).2, TRA_ERR_CANCELLED);
    assert_eq!(drain(h.session).2, TRA_END);

    // While the session is generating on this thread (the cancel flag is read through
    // a shared reference while this thread holds the session's state).
    // SAFETY: live session, NUL-terminated prompt.
    unsafe { assert_eq!(tra_session_prompt(h.session, c" more".as_ptr()), TRA_OK) };
    let t = std::thread::spawn(move || s.cancel());
    let (_, _, st) = drain(h.session);
    assert_eq!(t.join().expect("cancel thread"), TRA_OK);
    assert!(
        matches!(st, TRA_ERR_CANCELLED | TRA_ERR_CONTEXT_FULL),
        "{st:?}"
    );
}

struct Collected {
    calls: usize,
    text: Vec<u8>,
    reentrant: Option<TraStatus>,
    session: *mut TraSession,
}

unsafe extern "C" fn on_piece(
    user_data: *mut c_void,
    text: *const c_char,
    len: usize,
    _token: i32,
) -> c_int {
    // SAFETY: user_data is the `Collected` passed to tra_session_generate, alive for the
    // call; text holds len bytes and a NUL.
    let c = unsafe { &mut *user_data.cast::<Collected>() };
    // SAFETY: as above.
    let bytes = unsafe { core::slice::from_raw_parts(text.cast::<u8>(), len + 1) };
    assert_eq!(bytes.last(), Some(&0));
    c.text.extend_from_slice(&bytes[..len]);
    c.calls += 1;
    if c.reentrant.is_none() {
        let mut pos = 0usize;
        // SAFETY: a live session (busy: the call must be refused).
        c.reentrant = Some(unsafe { tra_session_position(c.session, &mut pos) });
    }
    0
}

#[test]
fn callback_generation_matches_next() {
    let a = open(5);
    let b = open(5);
    // SAFETY: live sessions; `c` outlives the generate call.
    unsafe {
        assert_eq!(tra_session_prompt(a.session, c"hello".as_ptr()), TRA_OK);
        let (toks, text, _) = drain(a.session);
        let mut c = Collected {
            calls: 0,
            text: Vec::new(),
            reentrant: None,
            session: b.session,
        };
        let st = tra_session_generate(
            b.session,
            c"hello".as_ptr(),
            Some(on_piece),
            (&mut c as *mut Collected).cast(),
        );
        assert_eq!(st, TRA_OK);
        assert_eq!((c.calls, c.text), (toks.len(), text));
        assert_eq!(c.reentrant, Some(TRA_ERR_INVALID_ARGUMENT));
    }
}

#[test]
fn memory_plan_is_the_rust_plan_plus_the_handle() {
    let h = open(4);
    let p = params(4);
    let mut plan = TraMemoryPlan::default();
    // SAFETY: live model handle, valid locals.
    let st = unsafe { tra_session_memory_plan(h.model, &p, &mut plan) };
    assert_eq!(st, TRA_OK);
    // SAFETY: a live handle from `open`.
    let model = unsafe { &(*h.model).model };
    let so = crate::SessionOptions {
        context_len: 32,
        ..Default::default()
    };
    let gen = crate::GenerateOptions::default().sampler(crate::SamplerChain::greedy());
    let rust = crate::memory_plan_for(model, &so, &gen).unwrap();
    assert_eq!(plan.kv_cache, rust.kv_cache);
    assert_eq!(plan.scratch, rust.scratch);
    assert_eq!(plan.sampler, rust.sampler);
    assert!(plan.handle > 0);
    assert_eq!(plan.total, rust.total + plan.handle);
    // NULL params: the defaults (2048 positions).
    let mut dflt = TraMemoryPlan::default();
    // SAFETY: as above.
    let st = unsafe { tra_session_memory_plan(h.model, null(), &mut dflt) };
    assert_eq!(st, TRA_OK);
    assert!(dflt.kv_cache == plan.kv_cache * 64 && dflt.total > plan.total);
    // Refused like tra_session_new refuses.
    let bad = TraSessionParams {
        context_len: 0,
        ..p
    };
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            tra_session_memory_plan(h.model, &bad, &mut plan),
            TRA_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            tra_session_memory_plan(null(), &p, &mut plan),
            TRA_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            tra_session_memory_plan(h.model, &p, null_mut()),
            TRA_ERR_INVALID_ARGUMENT
        );
    }
}
