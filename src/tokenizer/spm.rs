//! SentencePiece (`tokenizer.ggml.model = llama`): llama.cpp's `llm_tokenizer_spm`.
//!
//! The text (spaces already escaped to `▁`) starts as one symbol per UTF-8 character.
//! Every adjacent pair whose concatenation is a token goes into a priority queue by
//! that token's score (ties: leftmost first); the best pair is merged, and the pairs it
//! forms with its neighbours are queued. Entries made stale by an earlier merge are
//! recognised by their size and skipped. Symbols that end up not being tokens are
//! written as byte tokens (`<0xNN>`). O(n log n) in the text length.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;

use super::unicode::utf8_len;
use super::{TokenizerError, Vocab};

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Symbol {
    prev: u32,
    next: u32,
    start: u32,
    /// Bytes; 0 once merged into its left neighbour.
    n: u32,
    /// The token this symbol is, when known (set by merges).
    tok: u32,
}

/// A candidate merge. `key` orders the queue as llama.cpp's `llm_bigram_spm::comparator`:
/// highest score first, then the leftmost pair; the derived `Ord` compares `key` first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Bigram {
    key: u64,
    right: u32,
    size: u32,
    tok: u32,
}

/// `score` as a `u32` with the same order (scores are never NaN, and -0.0 is 0.0: both
/// are normalised when the vocabulary is loaded).
fn score_key(score: f32) -> u32 {
    let bits = score.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

impl Bigram {
    fn new(score: f32, left: u32, right: u32, size: u32, tok: u32) -> Bigram {
        let key = (u64::from(score_key(score)) << 32) | u64::from(u32::MAX - left);
        Bigram {
            key,
            right,
            size,
            tok,
        }
    }

    fn left(&self) -> u32 {
        u32::MAX - self.key as u32
    }
}

/// Reusable buffers.
#[derive(Default, Debug)]
pub(crate) struct SpmScratch {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
}

/// Tokenize `text` (already prefixed and whitespace-escaped) into `out`.
///
/// No merge can join two symbols across a point where no token of the vocabulary could
/// span: between a character `X` and a following `▁`, when no token contains `X▁`
/// (`joins_space` lists the `X` that some token has; SentencePiece vocabularies split at
/// whitespace, so it is nearly empty). Merges on the two sides never interact, and the
/// queue orders each side's pairs the same way, so each such segment is tokenized on
/// its own with the same result — and small queues instead of one over the whole text.
pub(crate) fn tokenize(
    vocab: &Vocab,
    byte_tokens: &[Option<u32>; 256],
    joins_space: &[u32],
    text: &[u8],
    s: &mut SpmScratch,
    out: &mut Vec<u32>,
) -> Result<(), TokenizerError> {
    const SPACE: &[u8] = "\u{2581}".as_bytes();
    let mut seg_start = 0usize;
    let mut i = 1usize;
    while i + SPACE.len() <= text.len() {
        if text.get(i..i + SPACE.len()) != Some(SPACE) {
            i += 1;
            continue;
        }
        // The character before the `▁` at `i`.
        let mut k = i - 1;
        while k > seg_start && text.get(k).is_some_and(|&b| b & 0xC0 == 0x80) {
            k -= 1;
        }
        let prev = text
            .get(k..i)
            .and_then(|b| core::str::from_utf8(b).ok())
            .and_then(|c| c.chars().next());
        if let Some(c) = prev {
            if c != '\u{2581}' && joins_space.binary_search(&u32::from(c)).is_err() {
                segment(
                    vocab,
                    byte_tokens,
                    text.get(seg_start..i).unwrap_or(&[]),
                    s,
                    out,
                )?;
                seg_start = i;
            }
        }
        i += SPACE.len();
    }
    segment(
        vocab,
        byte_tokens,
        text.get(seg_start..).unwrap_or(&[]),
        s,
        out,
    )
}

/// llama.cpp's `llm_tokenizer_spm_session::tokenize` on one piece of text.
fn segment(
    vocab: &Vocab,
    byte_tokens: &[Option<u32>; 256],
    text: &[u8],
    s: &mut SpmScratch,
    out: &mut Vec<u32>,
) -> Result<(), TokenizerError> {
    if text.is_empty() {
        return Ok(());
    }
    if u32::try_from(text.len()).is_err() {
        return Err(TokenizerError::TextTooLong {
            max: u32::MAX as u64,
        });
    }
    s.symbols.clear();
    s.queue.clear();
    let mut offs = 0usize;
    while offs < text.len() {
        let n = utf8_len(text[offs]).min(text.len() - offs);
        let index = s.symbols.len() as u32;
        let end = offs + n;
        s.symbols.push(Symbol {
            prev: index.wrapping_sub(1), // NONE for the first
            next: if end == text.len() { NONE } else { index + 1 },
            start: offs as u32,
            n: n as u32,
            tok: NONE,
        });
        offs = end;
    }
    for i in 1..s.symbols.len() as u32 {
        try_add_bigram(vocab, text, s, i - 1, i);
    }
    while let Some(b) = s.queue.pop() {
        let left = b.left();
        let (l, r) = (left as usize, b.right as usize);
        let (Some(&ls), Some(&rs)) = (s.symbols.get(l), s.symbols.get(r)) else {
            continue;
        };
        if ls.n == 0 || rs.n == 0 || ls.n + rs.n != b.size {
            continue;
        }
        let next = rs.next;
        if let Some(sym) = s.symbols.get_mut(l) {
            sym.n += rs.n;
            sym.next = next;
            sym.tok = b.tok;
        }
        if let Some(sym) = s.symbols.get_mut(r) {
            sym.n = 0;
        }
        if let Some(sym) = s.symbols.get_mut(next as usize) {
            sym.prev = left;
        }
        try_add_bigram(vocab, text, s, ls.prev, left);
        try_add_bigram(vocab, text, s, left, next);
    }
    let mut i = 0u32;
    while let Some(sym) = s.symbols.get(i as usize) {
        let bytes = text
            .get(sym.start as usize..(sym.start + sym.n) as usize)
            .unwrap_or(&[]);
        let tok = if sym.tok != NONE {
            Some(sym.tok)
        } else {
            vocab.find(bytes)
        };
        match tok {
            Some(t) => out.push(t),
            None => {
                for &byte in bytes {
                    match byte_tokens[byte as usize] {
                        Some(t) => out.push(t),
                        None => return Err(TokenizerError::MissingByteToken { byte }),
                    }
                }
            }
        }
        i = sym.next;
    }
    Ok(())
}

fn try_add_bigram(vocab: &Vocab, text: &[u8], s: &mut SpmScratch, left: u32, right: u32) {
    if left == NONE || right == NONE {
        return;
    }
    let (Some(l), Some(r)) = (s.symbols.get(left as usize), s.symbols.get(right as usize)) else {
        return;
    };
    let size = l.n + r.n;
    let Some(bytes) = text.get(l.start as usize..(l.start + size) as usize) else {
        return;
    };
    let Some(tok) = vocab.find(bytes) else { return };
    s.queue
        .push(Bigram::new(vocab.score(tok), left, right, size, tok));
}
