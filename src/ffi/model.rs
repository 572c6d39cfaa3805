//! `tra_model`: opening, freeing, information, tokenizing and detokenizing.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ffi::c_char;

use super::error::{guard, guard_void, Fail, TraStatus};
use super::{c_token, input, non_null, put, utf8, write_text};
use crate::Model;

use TraStatus::*;

/// A loaded model (opaque). Immutable: any number of threads and sessions may use it at
/// once. Sessions keep it alive, so it may be freed before them.
#[derive(Debug)]
pub struct TraModel {
    pub(crate) model: Arc<Model>,
}

/// What `tra_model_get_info` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraModelInfo {
    /// Tokens in the vocabulary (valid ids are 0 .. n_vocab-1).
    pub n_vocab: u32,
    /// Context length the model was trained with (sessions may use another).
    pub n_ctx_train: u32,
    /// Transformer layers.
    pub n_layer: u32,
    /// Embedding width.
    pub n_embd: u32,
    /// Beginning-of-sequence token, or -1.
    pub bos: i32,
    /// End-of-sequence token, or -1.
    pub eos: i32,
}

/// `tra_tokenize_ex` flag: add BOS (and EOS) as the model's metadata asks.
pub const TRA_TOKENIZE_ADD_SPECIAL: u32 = 1;
/// `tra_tokenize_ex` flag: turn special-token text (`<start_of_turn>`) into those tokens.
/// Leave it off for text typed by a user.
pub const TRA_TOKENIZE_PARSE_SPECIAL: u32 = 2;

/// Borrow a model handle.
///
/// # Safety
/// `m` is NULL or a live handle from `tra_model_open*`.
unsafe fn model_ref<'a>(m: *const TraModel) -> Result<&'a Model, Fail> {
    // SAFETY: the caller's contract: NULL (rejected) or a live handle.
    let h = unsafe { m.as_ref() }.ok_or_else(|| Fail::null("model"))?;
    Ok(&h.model)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Hand a loaded model to C.
///
/// # Safety
/// `out` is non-NULL and writable.
unsafe fn hand_out(out: *mut *mut TraModel, model: Model) {
    let h = Box::new(TraModel {
        model: Arc::new(model),
    });
    // SAFETY: the caller's contract for out.
    unsafe { put(out, Box::into_raw(h)) }
}

/// Open a GGUF model file: it is memory-mapped, validated and read in place (nothing is
/// copied). On success `*out` is a new handle to free with `tra_model_free`.
///
/// Errors: `TRA_ERR_IO` (missing, unreadable), `TRA_ERR_FORMAT` (not GGUF, truncated,
/// inconsistent), `TRA_ERR_UNSUPPORTED` (architecture, tensor type or tokenizer this
/// build does not implement), `TRA_ERR_INVALID_ARGUMENT` (NULL). `*out` is NULL on
/// failure. The file must not be truncated or rewritten while the model is open.
#[no_mangle]
pub unsafe extern "C" fn tra_model_open(path: *const c_char, out: *mut *mut TraModel) -> TraStatus {
    guard("tra_model_open", || {
        non_null(out, "out")?;
        // SAFETY: out is non-NULL; the caller guarantees it is writable.
        unsafe { put(out, core::ptr::null_mut()) };
        if path.is_null() {
            return Err(Fail::null("path"));
        }
        // SAFETY: non-NULL; the caller guarantees a NUL-terminated string.
        let bytes = unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes();
        let model = open_path(bytes)?;
        // SAFETY: out checked above.
        unsafe { hand_out(out, model) };
        Ok(TRA_OK)
    })
}

#[cfg(unix)]
fn open_path(bytes: &[u8]) -> Result<Model, Fail> {
    use std::os::unix::ffi::OsStrExt;
    Ok(Model::open(std::ffi::OsStr::from_bytes(bytes))?)
}

#[cfg(not(unix))]
fn open_path(bytes: &[u8]) -> Result<Model, Fail> {
    let s = core::str::from_utf8(bytes).map_err(|_| Fail::arg("path is not valid UTF-8"))?;
    Ok(Model::open(s)?)
}

/// Load a model from `len` bytes of GGUF already in memory (flash, a buffer, an
/// embedded array), read in place and not copied; they may be unaligned. The caller
/// keeps `data` alive and unchanged until the model and every session made from it are
/// freed. Errors and `*out` as `tra_model_open` (never `TRA_ERR_IO`).
#[no_mangle]
pub unsafe extern "C" fn tra_model_open_bytes(
    data: *const u8,
    len: usize,
    out: *mut *mut TraModel,
) -> TraStatus {
    guard("tra_model_open_bytes", || {
        non_null(out, "out")?;
        // SAFETY: out is non-NULL; the caller guarantees it is writable.
        unsafe { put(out, core::ptr::null_mut()) };
        // SAFETY: the caller guarantees `len` readable bytes at `data` that stay valid
        // and unchanged until the model and all its sessions are freed. The model (an
        // Arc shared with its sessions) is the only holder of this slice, so treating
        // it as 'static is sound under that contract.
        let bytes: &'static [u8] = unsafe { input(data, len, "data")? };
        let model = Model::from_static(bytes)?;
        // SAFETY: out checked above.
        unsafe { hand_out(out, model) };
        Ok(TRA_OK)
    })
}

/// Opt-in, right after opening and before any session: copy the model's Q5_0 matrices
/// into a layout that the x86-64 AVX2 kernels unpack faster (`Model::repack_weights` in
/// the Rust API). Decode and prefill read the copies (Gemma 3 270M and Qwen2.5-Coder 0.5B
/// Q4_K_M: about 14% more tokens per second with 2 threads on an AMD Zen 3), with the
/// same outputs, bit for bit. Memory: the copies take as many bytes as those matrices
/// take in the file (42.6 MB and 172 MB for those two models). For a model opened from a
/// file on Linux, the file's pages of each copied matrix are then released from the
/// process, so the resident set stays about the same; otherwise the copies come on top.
/// Does nothing on other CPUs or kernel levels, or for a model without Q5_0 matrices.
/// `*bytes_out` (may be NULL) gets the bytes allocated (0 when nothing was done). Unlike
/// the other calls on a model, this one changes it: no other call may use `model`
/// meanwhile.
///
/// Errors: `TRA_ERR_INVALID_ARGUMENT` (NULL `model`, or a session was made from it),
/// `TRA_ERR_INTERNAL` (the memory could not be allocated; the model works as before).
#[no_mangle]
pub unsafe extern "C" fn tra_model_repack(
    model: *mut TraModel,
    bytes_out: *mut usize,
) -> TraStatus {
    guard("tra_model_repack", || {
        // SAFETY: the caller's contract: NULL (rejected) or a live handle that no other
        // call uses meanwhile, so this is the only reference to it.
        let h = unsafe { model.as_mut() }.ok_or_else(|| Fail::null("model"))?;
        let m = Arc::get_mut(&mut h.model).ok_or_else(|| {
            Fail::arg("sessions were made from this model: repack before tra_session_new")
        })?;
        let bytes = m.repack_weights()?;
        if !bytes_out.is_null() {
            // SAFETY: non-NULL; the caller guarantees it is writable.
            unsafe { put(bytes_out, bytes) };
        }
        Ok(TRA_OK)
    })
}

/// Free a model handle. Sessions made from it keep the model itself alive until they
/// are freed. NULL is a no-op; freeing a handle twice is undefined behaviour.
#[no_mangle]
pub unsafe extern "C" fn tra_model_free(model: *mut TraModel) {
    guard_void("tra_model_free", || {
        if !model.is_null() {
            // SAFETY: a non-NULL handle comes from Box::into_raw in hand_out and is
            // freed once (the caller's contract).
            drop(unsafe { Box::from_raw(model) });
        }
    })
}

/// Write the model's sizes and special tokens to `*out`.
#[no_mangle]
pub unsafe extern "C" fn tra_model_get_info(
    model: *const TraModel,
    out: *mut TraModelInfo,
) -> TraStatus {
    guard("tra_model_get_info", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let m = unsafe { model_ref(model)? };
        non_null(out, "out")?;
        let c = m.config();
        let t = m.tokenizer();
        let info = TraModelInfo {
            n_vocab: to_u32(c.n_vocab),
            n_ctx_train: to_u32(c.n_ctx_train),
            n_layer: to_u32(c.n_layer),
            n_embd: to_u32(c.n_embd),
            bos: t.bos().map_or(-1, c_token),
            eos: t.eos().map_or(-1, c_token),
        };
        // SAFETY: out is non-NULL; the caller guarantees it is writable.
        unsafe { put(out, info) };
        Ok(TRA_OK)
    })
}

/// Tokenize UTF-8 text as a prompt: BOS (and EOS) added as the model's metadata asks,
/// special-token text left as text. Same as `tra_tokenize_ex(..., TRA_TOKENIZE_ADD_SPECIAL, ...)`.
///
/// On success `ids[0 .. *n_out]` holds the tokens. If `cap` is too small, nothing is
/// written to `ids`, `*n_out` is the count needed and the status
/// `TRA_ERR_BUFFER_TOO_SMALL` (`cap` 0 asks for the count; `ids` must still be non-NULL).
#[no_mangle]
pub unsafe extern "C" fn tra_tokenize(
    model: *const TraModel,
    utf8: *const c_char,
    ids: *mut i32,
    cap: usize,
    n_out: *mut usize,
) -> TraStatus {
    guard("tra_tokenize", || {
        // SAFETY: forwarded caller contract.
        unsafe { tokenize(model, utf8, TRA_TOKENIZE_ADD_SPECIAL, ids, cap, n_out) }
    })
}

/// `tra_tokenize` with `flags`: `TRA_TOKENIZE_ADD_SPECIAL | TRA_TOKENIZE_PARSE_SPECIAL`
/// or 0 (other bits are refused).
#[no_mangle]
pub unsafe extern "C" fn tra_tokenize_ex(
    model: *const TraModel,
    utf8: *const c_char,
    flags: u32,
    ids: *mut i32,
    cap: usize,
    n_out: *mut usize,
) -> TraStatus {
    guard("tra_tokenize_ex", || {
        // SAFETY: forwarded caller contract.
        unsafe { tokenize(model, utf8, flags, ids, cap, n_out) }
    })
}

/// # Safety
/// The contract of `tra_tokenize`.
unsafe fn tokenize(
    model: *const TraModel,
    text: *const c_char,
    flags: u32,
    ids: *mut i32,
    cap: usize,
    n_out: *mut usize,
) -> Result<TraStatus, Fail> {
    // SAFETY: the caller's contract: NULL or a live handle.
    let m = unsafe { model_ref(model)? };
    // SAFETY: the caller's contract: NULL or a NUL-terminated string.
    let text = unsafe { utf8(text, "utf8")? };
    non_null(ids, "ids")?;
    non_null(n_out, "n_out")?;
    if flags & !(TRA_TOKENIZE_ADD_SPECIAL | TRA_TOKENIZE_PARSE_SPECIAL) != 0 {
        return Err(Fail::arg(alloc::format!("unknown flags {flags:#x}")));
    }
    let toks = m.tokenizer().encode(
        text,
        flags & TRA_TOKENIZE_ADD_SPECIAL != 0,
        flags & TRA_TOKENIZE_PARSE_SPECIAL != 0,
    )?;
    // SAFETY: n_out is non-NULL; the caller guarantees it is writable.
    unsafe { put(n_out, toks.len()) };
    if toks.len() > cap {
        return Err(Fail::new(
            TRA_ERR_BUFFER_TOO_SMALL,
            alloc::format!("the text has {} tokens, ids has room for {cap}", toks.len()),
        ));
    }
    for (i, &t) in toks.iter().enumerate() {
        // SAFETY: ids is non-NULL and valid for `cap >= toks.len()` elements (caller's
        // contract), so `ids + i` is in bounds.
        unsafe { ids.add(i).write(c_token(t)) };
    }
    Ok(TRA_OK)
}

/// Token ids from C → u32, refusing negative ones (ids past the vocabulary are refused
/// by the tokenizer or the session).
pub(crate) fn checked_ids(ids: &[i32]) -> Result<&[u32], Fail> {
    if let Some(&bad) = ids.iter().find(|&&t| t < 0) {
        return Err(Fail::arg(alloc::format!("token id {bad} is negative")));
    }
    Ok(bytemuck::cast_slice(ids))
}

/// The text of `n` tokens (llama.cpp's `llama_detokenize` with `remove_special`): a
/// leading BOS and trailing EOS are dropped, control tokens give no text, and the
/// leading space SentencePiece adds is removed, so that the text of `tra_tokenize`
/// comes back. Invalid UTF-8 (a token sequence cut inside a character) is written as
/// is. Output as `tra_session_next`: NUL-terminated, `*len_out` its length without
/// the NUL, or `TRA_ERR_BUFFER_TOO_SMALL` with `*len_out` = bytes needed with the NUL.
#[no_mangle]
pub unsafe extern "C" fn tra_detokenize(
    model: *const TraModel,
    ids: *const i32,
    n: usize,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> TraStatus {
    guard("tra_detokenize", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let m = unsafe { model_ref(model)? };
        // SAFETY: the caller's contract: `n` initialised ids.
        let ids = unsafe { input(ids, n, "ids")? };
        non_null(buf, "buf")?;
        non_null(len_out, "len_out")?;
        let text: Vec<u8> = m.tokenizer().detokenize(checked_ids(ids)?, true, false)?;
        // SAFETY: buf valid for cap bytes and len_out writable (caller's contract).
        unsafe { write_text(&text, buf, cap, len_out, "the text")? };
        Ok(TRA_OK)
    })
}

/// The bytes of one token (control tokens give none), for a custom decoding loop.
/// A piece may be part of a UTF-8 character: join pieces before printing them.
/// Output as `tra_detokenize`.
#[no_mangle]
pub unsafe extern "C" fn tra_token_to_piece(
    model: *const TraModel,
    token: i32,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> TraStatus {
    guard("tra_token_to_piece", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let m = unsafe { model_ref(model)? };
        non_null(buf, "buf")?;
        non_null(len_out, "len_out")?;
        let id = u32::try_from(token)
            .map_err(|_| Fail::arg(alloc::format!("token id {token} is negative")))?;
        let piece = m.tokenizer().token_to_piece(id, false)?;
        // SAFETY: buf valid for cap bytes and len_out writable (caller's contract).
        unsafe { write_text(piece, buf, cap, len_out, "the piece")? };
        Ok(TRA_OK)
    })
}

/// `*out` = whether `token` ends generation (EOS, end of turn …, as the model's
/// metadata lists them).
#[no_mangle]
pub unsafe extern "C" fn tra_token_is_eog(
    model: *const TraModel,
    token: i32,
    out: *mut bool,
) -> TraStatus {
    guard("tra_token_is_eog", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let m = unsafe { model_ref(model)? };
        non_null(out, "out")?;
        let eog = u32::try_from(token).is_ok_and(|t| m.tokenizer().is_eog(t));
        // SAFETY: out is non-NULL; the caller guarantees it is writable.
        unsafe { put(out, eog) };
        Ok(TRA_OK)
    })
}
