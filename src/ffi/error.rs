//! Status codes, the thread-local error message, and the guard that every entry point
//! runs behind (`catch_unwind`: a panic becomes `TRA_ERR_INTERNAL`, never an abort).

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ffi::c_char;
use core::fmt::Write as _;
use core::panic::AssertUnwindSafe;
use std::panic::catch_unwind;

use crate::model::{ModelError, StateError};
use crate::session::SessionError;
use crate::{Error, GgufError};

/// What a call returned. `TRA_OK` (0) and `TRA_END` (1) are successes; every error is
/// negative, and `tra_last_error()` then describes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum TraStatus {
    /// Success.
    TRA_OK = 0,
    /// Generation has ended (end-of-generation token, `max_tokens`, or no generation is
    /// running); it stays ended until the next prompt.
    TRA_END = 1,
    /// A NULL pointer, a value out of range, text that is not UTF-8, a token id outside
    /// the vocabulary, a call in the wrong state (no logits yet, session busy).
    TRA_ERR_INVALID_ARGUMENT = -1,
    /// The file could not be opened or read (missing, permissions, …).
    TRA_ERR_IO = -2,
    /// The bytes are not a valid GGUF model (bad magic, truncated, inconsistent), or a
    /// saved state is corrupted or belongs to another model.
    TRA_ERR_FORMAT = -3,
    /// A valid file that asks for something this build does not implement
    /// (architecture, tensor type, tokenizer).
    TRA_ERR_UNSUPPORTED = -4,
    /// The session's context has no room for the tokens (context shift is off).
    TRA_ERR_CONTEXT_FULL = -5,
    /// `tra_session_cancel` stopped the call.
    TRA_ERR_CANCELLED = -6,
    /// The output buffer is too small; nothing was consumed, and the size needed was
    /// written to the length output.
    TRA_ERR_BUFFER_TOO_SMALL = -7,
    /// A bug in tramontane (a caught panic: the session it happened in then refuses
    /// further calls with this status; free it), or the system refused a resource
    /// (kernel threads could not be started, or the memory of `tra_model_repack`).
    TRA_ERR_INTERNAL = -99,
}

use TraStatus::*;

/// A failed call: the status and what to put in the thread's error message.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) status: TraStatus,
    pub(crate) msg: String,
}

impl Fail {
    pub(crate) fn new(status: TraStatus, msg: impl Into<String>) -> Fail {
        Fail {
            status,
            msg: msg.into(),
        }
    }

    /// `TRA_ERR_INVALID_ARGUMENT` with `msg`.
    pub(crate) fn arg(msg: impl Into<String>) -> Fail {
        Fail::new(TRA_ERR_INVALID_ARGUMENT, msg)
    }

    /// `TRA_ERR_INVALID_ARGUMENT`: `what` is NULL.
    pub(crate) fn null(what: &str) -> Fail {
        Fail::arg(alloc::format!("{what} is NULL"))
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        let status = status_of(&e);
        let mut msg = String::new();
        let _ = write!(msg, "{e}");
        Fail { status, msg }
    }
}

impl From<crate::TokenizerError> for Fail {
    fn from(e: crate::TokenizerError) -> Fail {
        Fail::from(Error::from(e))
    }
}

/// The status a crate error maps to.
pub(crate) fn status_of(e: &Error) -> TraStatus {
    match e {
        Error::Io { .. } => TRA_ERR_IO,
        Error::Gguf(g) => match g {
            GgufError::UnsupportedVersion { .. } => TRA_ERR_UNSUPPORTED,
            _ => TRA_ERR_FORMAT,
        },
        Error::Quant(_) => TRA_ERR_FORMAT,
        Error::Kernel(_) => TRA_ERR_INTERNAL,
        Error::Model(m) => match m {
            ModelError::ContextFull { .. } => TRA_ERR_CONTEXT_FULL,
            ModelError::TokenOutOfRange { .. }
            | ModelError::EmptyInput
            | ModelError::SessionSize { .. } => TRA_ERR_INVALID_ARGUMENT,
            ModelError::UnknownArch { .. }
            | ModelError::UnsupportedTensorType { .. }
            | ModelError::Unsupported { .. } => TRA_ERR_UNSUPPORTED,
            ModelError::LogitsBuffer { .. }
            | ModelError::ForeignState
            | ModelError::OutOfMemory { .. } => TRA_ERR_INTERNAL,
            _ => TRA_ERR_FORMAT,
        },
        Error::Tokenizer(t) => match t {
            crate::TokenizerError::UnsupportedModel { .. }
            | crate::TokenizerError::UnknownPreTokenizer { .. } => TRA_ERR_UNSUPPORTED,
            crate::TokenizerError::InvalidToken { .. }
            | crate::TokenizerError::TextTooLong { .. }
            | crate::TokenizerError::TooManyTokens { .. } => TRA_ERR_INVALID_ARGUMENT,
            _ => TRA_ERR_FORMAT,
        },
        Error::Sampling(_) => TRA_ERR_INVALID_ARGUMENT,
        Error::Session(s) => match s {
            SessionError::Cancelled => TRA_ERR_CANCELLED,
            _ => TRA_ERR_INVALID_ARGUMENT,
        },
        Error::State(s) => match s {
            StateError::TooLong { .. } => TRA_ERR_CONTEXT_FULL,
            StateError::Write(_) => TRA_ERR_IO,
            _ => TRA_ERR_FORMAT,
        },
        // Variants added later: a status must be chosen for them here.
        #[allow(unreachable_patterns)]
        _ => TRA_ERR_INTERNAL,
    }
}

std::thread_local! {
    /// The last error message of this thread, NUL-terminated (empty: no error yet).
    static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Store "`func`: `msg`" as this thread's message (NUL bytes in it become `?`). Never
/// panics: during thread teardown, or re-entered, the message is simply not stored.
pub(crate) fn set_last_error(func: &str, msg: &str) {
    let _ = LAST_ERROR.try_with(|cell| {
        if let Ok(mut buf) = cell.try_borrow_mut() {
            buf.clear();
            for part in [func.as_bytes(), b": ", msg.as_bytes()] {
                buf.extend(part.iter().map(|&b| if b == 0 { b'?' } else { b }));
            }
            buf.push(0);
        }
    });
}

/// This thread's message, or `""`.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|cell| match cell.try_borrow() {
            Ok(buf) if !buf.is_empty() => buf.as_ptr().cast::<c_char>(),
            _ => EMPTY.as_ptr(),
        })
        .unwrap_or(EMPTY.as_ptr())
}

/// An empty C string.
pub(crate) static EMPTY: &core::ffi::CStr = c"";

/// The text of a panic payload.
fn panic_text(payload: &(dyn core::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Run the body of entry point `func`: its error becomes its status and this thread's
/// message; a panic becomes `TRA_ERR_INTERNAL`.
pub(crate) fn guard(
    func: &'static str,
    body: impl FnOnce() -> Result<TraStatus, Fail>,
) -> TraStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(fail)) => {
            set_last_error(func, &fail.msg);
            fail.status
        }
        Err(payload) => {
            let mut msg = String::new();
            let _ = write!(
                msg,
                "internal error (panic: {}); please report it",
                panic_text(&*payload)
            );
            set_last_error(func, &msg);
            TRA_ERR_INTERNAL
        }
    }
}

/// Like [`guard`] for the entry points that return nothing: a panic is swallowed
/// (and recorded as this thread's message).
pub(crate) fn guard_void(func: &'static str, body: impl FnOnce()) {
    let _ = guard(func, || {
        body();
        Ok(TRA_OK)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::CStr;

    fn last() -> String {
        // SAFETY: last_error_ptr returns a NUL-terminated string that lives until the
        // next call on this thread; it is copied at once.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn guard_maps_errors_and_panics() {
        assert_eq!(guard("f", || Ok(TRA_END)), TRA_END);
        assert_eq!(
            guard("f", || Err(Fail::null("path"))),
            TRA_ERR_INVALID_ARGUMENT
        );
        assert_eq!(last(), "f: path is NULL");
        assert_eq!(
            guard("g", || -> Result<TraStatus, Fail> { panic!("boom") }),
            TRA_ERR_INTERNAL
        );
        assert!(
            last().starts_with("g: internal error (panic: boom)"),
            "{}",
            last()
        );
        set_last_error("h", "a\0b");
        assert_eq!(last(), "h: a?b");
    }
}
