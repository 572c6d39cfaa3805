//! A streaming detokenizer: token ids in, complete UTF-8 text out.

use alloc::vec::Vec;

use super::{Tokenizer, TokenizerError};

/// Turns generated token ids into text, one token at a time, yielding only complete
/// UTF-8: a character split over several tokens (an emoji written as four byte tokens)
/// is held back until its last byte arrives, and never comes out as U+FFFD. Bytes that
/// can never form a character (an invalid sequence) come out as U+FFFD, as
/// `String::from_utf8_lossy` would write them.
///
/// SentencePiece's leading-space rule is applied like llama.cpp's `llama_detokenize`:
/// when the vocabulary adds a space prefix (`add_space_prefix`), one leading space is
/// removed from the first token's text, unless that first token is the BOS token. Turn
/// it off with [`Detokenizer::strip_leading_space`] to get the pieces exactly as
/// llama.cpp's generation loop prints them.
///
/// After [`Detokenizer::new`] no call allocates: the buffers are sized for the longest
/// piece of the vocabulary.
///
/// ```no_run
/// # fn demo(tok: &tramontane::tokenizer::Tokenizer, ids: &[u32]) -> Result<(), tramontane::tokenizer::TokenizerError> {
/// let mut detok = tok.detokenizer();
/// let mut text = String::new();
/// for &id in ids {
///     text.push_str(detok.push(tok, id)?);
/// }
/// text.push_str(detok.finish());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Detokenizer {
    /// Bytes of an incomplete character carried over from earlier tokens (at most 3).
    pending: [u8; 4],
    n_pending: usize,
    /// Text handed out by the last call.
    out: Vec<u8>,
    /// Pending bytes + the new piece.
    work: Vec<u8>,
    strip_space: bool,
    special: bool,
    first: bool,
}

impl Detokenizer {
    /// A detokenizer for `tok` (its buffers are sized for `tok`'s longest piece).
    pub fn new(tok: &Tokenizer) -> Detokenizer {
        let (out, work) = Detokenizer::buffer_lens(tok);
        Detokenizer {
            pending: [0; 4],
            n_pending: 0,
            out: Vec::with_capacity(out),
            work: Vec::with_capacity(work),
            strip_space: tok.add_space_prefix(),
            special: false,
            first: true,
        }
    }

    /// Capacities of the two buffers [`Detokenizer::new`] allocates, in bytes: the text
    /// handed out, and pending bytes + one piece.
    pub(crate) fn buffer_lens(tok: &Tokenizer) -> (usize, usize) {
        // Worst case: every byte of pending + piece is invalid and becomes U+FFFD (3 bytes).
        let work = tok.max_piece_len().saturating_add(4);
        (work.saturating_mul(3), work)
    }

    /// Render control tokens (`<end_of_turn>` …) as their text instead of nothing
    /// (llama.cpp's `special` flag of `token_to_piece`). Off by default.
    pub fn render_special(mut self, on: bool) -> Detokenizer {
        self.special = on;
        self
    }

    /// Apply (default: when the vocabulary adds a space prefix) or not the leading-space rule.
    pub fn strip_leading_space(mut self, on: bool) -> Detokenizer {
        self.strip_space = on;
        self
    }

    /// Forget everything: the next token is the first again.
    pub fn reset(&mut self) {
        self.n_pending = 0;
        self.out.clear();
        self.first = true;
    }

    /// Add one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<&str, TokenizerError> {
        let mut piece = tok.token_to_piece(id, self.special)?;
        if self.first {
            self.first = false;
            let is_bos = tok.add_bos() && tok.bos() == Some(id);
            if self.strip_space && !is_bos {
                if let Some(rest) = piece.strip_prefix(b" ") {
                    piece = rest;
                }
            }
        }
        self.work.clear();
        self.work
            .extend_from_slice(self.pending.get(..self.n_pending).unwrap_or(&[]));
        self.work.extend_from_slice(piece);
        self.out.clear();
        self.n_pending = take_valid(&self.work, &mut self.out, &mut self.pending);
        Ok(core::str::from_utf8(&self.out).unwrap_or(""))
    }

    /// Flush what is left at the end of the stream (an incomplete character becomes
    /// U+FFFD) and start over.
    pub fn finish(&mut self) -> &str {
        self.out.clear();
        if self.n_pending > 0 {
            self.out.extend_from_slice("\u{FFFD}".as_bytes());
        }
        self.n_pending = 0;
        self.first = true;
        core::str::from_utf8(&self.out).unwrap_or("")
    }
}

/// Copy the valid UTF-8 of `bytes` to `out`, each invalid sequence as U+FFFD (as
/// `String::from_utf8_lossy` does), and keep an incomplete character at the end in
/// `pending`; returns how many bytes were kept.
fn take_valid(mut bytes: &[u8], out: &mut Vec<u8>, pending: &mut [u8; 4]) -> usize {
    loop {
        match core::str::from_utf8(bytes) {
            Ok(s) => {
                out.extend_from_slice(s.as_bytes());
                return 0;
            }
            Err(e) => {
                let (valid, after) = bytes.split_at(e.valid_up_to());
                out.extend_from_slice(valid);
                match e.error_len() {
                    Some(n) => {
                        out.extend_from_slice("\u{FFFD}".as_bytes());
                        bytes = after.get(n..).unwrap_or(&[]);
                    }
                    None => {
                        // A character cut at the end: keep it for the next token.
                        let keep = after.len().min(pending.len());
                        if let (Some(dst), Some(src)) = (pending.get_mut(..keep), after.get(..keep))
                        {
                            dst.copy_from_slice(src);
                        }
                        return keep;
                    }
                }
            }
        }
    }
}
