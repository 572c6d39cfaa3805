//! The C ABI (feature `ffi`): opaque handles, status codes, a thread-local error message.
//!
//! The header `include/tramontane.h` is generated from this module by cbindgen
//! (`cbindgen.toml`, `scripts/gen-header.sh`) and checked in; `tests/ffi.rs` fails when
//! it is stale. The C libraries are this crate built as a staticlib / cdylib:
//!
//! ```text
//! cargo rustc --release --features ffi --lib --crate-type staticlib,cdylib
//! scripts/build-c-lib.sh [--prefix DIR]   # the same, plus header, pkg-config and CMake files
//! ```
//!
//! Rules every entry point follows:
//!
//! - it runs behind `catch_unwind`: a panic becomes `TRA_ERR_INTERNAL` (and the session
//!   it happened in refuses further calls), never an abort or an unwind into C;
//! - every pointer argument is checked for NULL (`TRA_ERR_INVALID_ARGUMENT`), except the
//!   ones documented as optional (`params` of `tra_session_new`, `user_data`);
//! - on failure the thread's message (`tra_last_error`) says which function failed and
//!   why; successful calls leave it unchanged;
//! - handle outputs are set to NULL on failure.
//!
//! Thread safety: a `tra_model` is immutable and may be used by any number of threads
//! at once. A `tra_session` is used by one thread at a time (a second concurrent call
//! is refused with `TRA_ERR_INVALID_ARGUMENT`, not undefined behaviour), except
//! `tra_session_cancel`, which any thread may call at any time while the session exists.

#![allow(clippy::missing_safety_doc)] // the C documentation states each contract

mod error;
mod model;
mod session;
#[cfg(test)]
mod tests;

pub use error::TraStatus;
pub use model::{
    tra_detokenize, tra_model_free, tra_model_get_info, tra_model_open, tra_model_open_bytes,
    tra_token_is_eog, tra_token_to_piece, tra_tokenize, tra_tokenize_ex, TraModel, TraModelInfo,
    TRA_TOKENIZE_ADD_SPECIAL, TRA_TOKENIZE_PARSE_SPECIAL,
};
pub use session::{
    tra_session_cancel, tra_session_feed, tra_session_free, tra_session_generate,
    tra_session_load_state, tra_session_logits, tra_session_memory_plan, tra_session_new,
    tra_session_next, tra_session_params_default, tra_session_position, tra_session_prompt,
    tra_session_prompt_tokens, tra_session_reset, tra_session_save_state, TraMemoryPlan,
    TraPieceCallback, TraSession, TraSessionParams, TRA_MAX_THREADS,
};

use core::ffi::{c_char, CStr};

use error::Fail;

/// The message of the last failed call on this thread ("" if none): which function
/// failed and why. The string stays valid until the next tramontane call on this
/// thread; copy it to keep it. Never NULL.
#[no_mangle]
pub extern "C" fn tra_last_error() -> *const c_char {
    std::panic::catch_unwind(error::last_error_ptr).unwrap_or(error::EMPTY.as_ptr())
}

static VERSION: &CStr = {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    match CStr::from_bytes_with_nul(V.as_bytes()) {
        Ok(v) => v,
        Err(_) => c"",
    }
};

/// The library version ("0.1.0"), a static string. Never NULL.
#[no_mangle]
pub extern "C" fn tra_version() -> *const c_char {
    VERSION.as_ptr()
}

/// Borrow a NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and unchanged for `'a`.
unsafe fn utf8<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: non-NULL, and the caller guarantees a NUL-terminated string alive for 'a.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|e| Fail::arg(alloc::format!("{what} is not valid UTF-8 ({e})")))
}

/// Borrow `n` elements the caller passed as an input array.
///
/// # Safety
/// `p` is NULL or points to `n` initialised `T`s that stay valid and unchanged for `'a`.
unsafe fn input<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T], Fail> {
    if p.is_null() {
        return Err(Fail::null(what));
    }
    if n.checked_mul(core::mem::size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Fail::arg(alloc::format!("{what}: length {n} is too large")));
    }
    if p.align_offset(core::mem::align_of::<T>()) != 0 {
        return Err(Fail::arg(alloc::format!("{what} is not aligned")));
    }
    // SAFETY: non-NULL and aligned, the byte length fits isize, and the caller
    // guarantees `n` initialised elements alive and unchanged for 'a.
    Ok(unsafe { core::slice::from_raw_parts(p, n) })
}

/// Fail with "`what` is NULL" when `p` is NULL.
fn non_null<T>(p: *const T, what: &str) -> Result<(), Fail> {
    if p.is_null() {
        Err(Fail::null(what))
    } else {
        Ok(())
    }
}

/// Store `v` through an output pointer already checked to be non-NULL.
///
/// # Safety
/// `p` is non-NULL, aligned and valid for a write of `T`.
unsafe fn put<T>(p: *mut T, v: T) {
    // SAFETY: the caller's contract.
    unsafe { p.write(v) }
}

/// Copy `bytes` and a NUL into the caller's buffer of `cap` bytes, or report the size
/// needed (NUL included) through `len_out` with `TRA_ERR_BUFFER_TOO_SMALL`. On success
/// `*len_out` is the length without the NUL.
///
/// # Safety
/// `buf` is valid for writes of `cap` bytes; `len_out` is non-NULL and writable.
unsafe fn write_text(
    bytes: &[u8],
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
    what: &str,
) -> Result<(), Fail> {
    let need = bytes.len().saturating_add(1);
    if cap < need {
        // SAFETY: the caller's contract for len_out.
        unsafe { put(len_out, need) };
        return Err(Fail::new(
            TraStatus::TRA_ERR_BUFFER_TOO_SMALL,
            alloc::format!("{what} needs {need} bytes (with the NUL), the buffer has {cap}"),
        ));
    }
    // SAFETY: buf is valid for `cap >= bytes.len() + 1` bytes (caller's contract) and
    // cannot overlap `bytes`, which lives in memory owned by the library.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        buf.add(bytes.len()).write(0);
        put(len_out, bytes.len());
    }
    Ok(())
}

/// `u32` token id → the C `int32_t` (vocabularies are smaller than `i32::MAX`).
fn c_token(id: u32) -> i32 {
    i32::try_from(id).unwrap_or(-1)
}
