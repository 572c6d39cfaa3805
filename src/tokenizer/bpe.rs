//! Byte-level BPE (`tokenizer.ggml.model = gpt2`): llama.cpp's `llm_tokenizer_bpe`.
//!
//! The text is split into words by the pre-tokenizer; each word's bytes are mapped to
//! GPT-2's printable code points, one symbol per byte. Adjacent pairs listed in
//! `tokenizer.ggml.merges` go into a priority queue by rank (ties: leftmost first), the
//! best one is merged and the pairs around it are queued; stale entries are skipped.
//!
//! Strings are interned once when loading: every merge part and merge result gets an
//! id (its token id when it is a token), so merging compares integers, never strings.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::pretok::{self, PreTokenizer, SplitScratch};
use super::table::{PushError, StrTable};
use super::unicode::{cpt_to_byte, push_byte_encoded, utf8_len};
use super::{TokenizerError, Vocab};

const NONE: u32 = u32::MAX;

/// Merge ranks and the interned strings they refer to.
#[derive(Debug, Clone)]
pub(crate) struct Bpe {
    pub pre: PreTokenizer,
    /// A word that is a token is emitted as is (`tokenizer_ignore_merges`).
    pub ignore_merges: bool,
    /// Merge parts and results that are not tokens; their id is `n_vocab + index`.
    extra: StrTable,
    n_vocab: u32,
    /// (left id, right id) → (rank, id of the merged string), hashed by `hasher`.
    ranks: HashTable<Merge>,
    hasher: DefaultHashBuilder,
    /// Id of the one-character string that stands for each byte.
    byte_sid: [u32; 256],
    /// The token that is exactly this one byte, for symbols that are not tokens.
    single_byte_token: [Option<u32>; 256],
}

fn key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// One entry of the merge table.
#[derive(Debug, Clone, Copy)]
struct Merge {
    /// [`key`] of the left and right ids.
    key: u64,
    rank: u32,
    /// Id of the merged string.
    merged: u32,
}

/// The table of `merges` (given in rank order): the first of equal keys is kept.
///
/// The entries go in by their position in the table, not by rank: a table of 150,000
/// merges is larger than the caches, and filled in rank order nearly every insert
/// would be a cache miss. A stable counting sort on the top bits of each entry's
/// table position gives the order (equal keys stay in rank order).
fn merge_table(merges: &[Merge], hasher: &DefaultHashBuilder) -> HashTable<Merge> {
    const PART_BITS: u32 = 10;
    let hash = |m: &Merge| hasher.hash_one(m.key);
    let mut table: HashTable<Merge> = HashTable::with_capacity(merges.len());
    // hashbrown's table has a power of two of buckets, at least 8/7 of its capacity,
    // and a bucket's position is the hash's low bits. (Were that to change, only the
    // speed of this function would.)
    let cap = table.capacity();
    let buckets = cap
        .saturating_add(cap / 7)
        .checked_next_power_of_two()
        .unwrap_or(1);
    let shift = buckets.trailing_zeros().saturating_sub(PART_BITS);
    let part = |m: &Merge| ((hash(m) as usize & (buckets - 1)) >> shift) & ((1 << PART_BITS) - 1);
    // starts[p] = where part p begins in `order` (after the counting: where it ends).
    let mut starts = alloc::vec![0usize; (1 << PART_BITS) + 1];
    for m in merges {
        if let Some(c) = starts.get_mut(part(m) + 1) {
            *c += 1;
        }
    }
    let mut sum = 0;
    for s in starts.iter_mut() {
        sum += *s;
        *s = sum;
    }
    let mut order = alloc::vec![0u32; merges.len()];
    for (i, m) in merges.iter().enumerate() {
        if let (Some(at), Ok(i)) = (starts.get_mut(part(m)), u32::try_from(i)) {
            if let Some(slot) = order.get_mut(*at) {
                *slot = i;
            }
            *at += 1;
        }
    }
    for m in order.iter().filter_map(|&i| merges.get(i as usize)) {
        let h = hash(m);
        if table.find(h, |e| e.key == m.key).is_none() {
            table.insert_unique(h, *m, hash);
        }
    }
    table
}

/// The byte whose GPT-2 character `s` is, if `s` is one such character (they are
/// all below U+0800: one or two bytes).
fn encoded_byte(s: &[u8]) -> Option<u8> {
    let cpt = match *s {
        [a] if a < 0x80 => u32::from(a),
        [a @ 0xC2..=0xDF, b @ 0x80..=0xBF] => (u32::from(a & 0x1F) << 6) | u32::from(b & 0x3F),
        _ => return None,
    };
    cpt_to_byte(cpt)
}

/// Whether `t` is `a` followed by `b`.
fn is_concat(t: &[u8], a: &[u8], b: &[u8]) -> bool {
    t.len() == a.len() + b.len() && t.starts_with(a) && t.ends_with(b)
}

impl Bpe {
    /// Build from the merge list (`"left right"` strings, rank = position).
    pub fn new<'a>(
        vocab: &Vocab,
        pre: PreTokenizer,
        ignore_merges: bool,
        merges: impl Iterator<Item = &'a [u8]>,
        n_merges: usize,
    ) -> Result<Bpe, TokenizerError> {
        let n_vocab = u32::try_from(vocab.len()).map_err(|_| TokenizerError::VocabSize {
            n_tokens: vocab.len(),
            max: i32::MAX as usize,
        })?;
        let mut bpe = Bpe {
            pre,
            ignore_merges,
            extra: StrTable::with_capacity(0, 0),
            n_vocab,
            ranks: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            byte_sid: [NONE; 256],
            single_byte_token: [None; 256],
        };
        let mut joined = Vec::new();
        let mut table = Vec::with_capacity(n_merges);
        // The token that is each byte's one-character text: a sixth of the merge parts
        // are one character (Qwen2.5), and this saves their lookups.
        let mut enc = Vec::new();
        let mut byte_token = [NONE; 256];
        for (b, t) in (0..=255u8).zip(byte_token.iter_mut()) {
            enc.clear();
            push_byte_encoded(&mut enc, b);
            *t = vocab.find(&enc).unwrap_or(NONE);
        }
        // Byte-level BPE vocabularies usually list the merge results in rank order, so
        // the result of a merge is most often the token after the previous result: that
        // guess is checked by comparing bytes, and only a wrong guess costs a lookup.
        let mut guess = NONE;
        for (rank, m) in merges.enumerate() {
            let rank = u32::try_from(rank).map_err(|_| TokenizerError::TextTooLarge {
                max: u64::from(u32::MAX),
            })?;
            let b = m;
            // llama.cpp splits at the first space after the first byte.
            let Some(pos) = b
                .get(1..)
                .and_then(|t| t.iter().position(|&c| c == b' '))
                .map(|p| p + 1)
            else {
                continue;
            };
            let (first, second) = (&b[..pos], &b[pos + 1..]);
            let l = bpe.intern_part(vocab, first, &byte_token)?;
            let r = bpe.intern_part(vocab, second, &byte_token)?;
            // Token texts are unique, so a token with exactly these bytes is the one
            // `intern` would find.
            let merged = match vocab.texts.get(guess) {
                Some(t) if is_concat(t, first, second) => guess,
                _ => {
                    joined.clear();
                    joined.extend_from_slice(first);
                    joined.extend_from_slice(second);
                    bpe.intern(vocab, &joined)?
                }
            };
            guess = if merged < n_vocab { merged + 1 } else { NONE };
            table.push(Merge {
                key: key(l, r),
                rank,
                merged,
            });
        }
        bpe.ranks = merge_table(&table, &bpe.hasher);
        drop(table);
        for (byte, &token) in (0..=255u8).zip(&byte_token) {
            // The token found above, else (a character that is no token) a string
            // interned for the merges, if any.
            bpe.byte_sid[byte as usize] = if token != NONE {
                token
            } else {
                enc.clear();
                push_byte_encoded(&mut enc, byte);
                bpe.sid(vocab, &enc).unwrap_or(NONE)
            };
            bpe.single_byte_token[byte as usize] = vocab.find(&[byte]);
        }
        bpe.extra.shrink_to_fit();
        Ok(bpe)
    }

    pub fn n_merges(&self) -> usize {
        self.ranks.len()
    }

    fn sid(&self, vocab: &Vocab, s: &[u8]) -> Option<u32> {
        vocab
            .find(s)
            .or_else(|| self.extra.find(s).and_then(|i| i.checked_add(self.n_vocab)))
    }

    /// [`intern`](Self::intern), for a text that is one GPT-2 character from
    /// `byte_token` (the token of each byte's character, or `NONE`).
    fn intern_part(
        &mut self,
        vocab: &Vocab,
        s: &[u8],
        byte_token: &[u32; 256],
    ) -> Result<u32, TokenizerError> {
        match encoded_byte(s).map(|b| byte_token[b as usize]) {
            Some(id) if id != NONE => Ok(id),
            _ => self.intern(vocab, s),
        }
    }

    fn intern(&mut self, vocab: &Vocab, s: &[u8]) -> Result<u32, TokenizerError> {
        if let Some(id) = self.sid(vocab, s) {
            return Ok(id);
        }
        let too_large = TokenizerError::TextTooLarge {
            max: u64::from(u32::MAX),
        };
        let i = match self.extra.push(s) {
            Ok(i) => i,
            Err(PushError::Duplicate(i)) => i,
            Err(PushError::TooLarge) => return Err(too_large),
        };
        i.checked_add(self.n_vocab)
            .filter(|&id| id != NONE)
            .ok_or(too_large)
    }
}

#[derive(Clone, Copy, Debug)]
struct Symbol {
    prev: u32,
    next: u32,
    start: u32,
    n: u32,
    sid: u32,
}

/// (rank, left, right, size, merged id); the smallest comes out first.
type QueueEntry = Reverse<(u32, u32, u32, u32, u32)>;

/// Reusable buffers.
#[derive(Default, Debug)]
pub(crate) struct BpeScratch {
    split: SplitScratch,
    words: Vec<usize>,
    enc: Vec<u8>,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<QueueEntry>,
}

/// Tokenize one raw-text fragment into `out`.
pub(crate) fn tokenize(
    bpe: &Bpe,
    vocab: &Vocab,
    text: &str,
    s: &mut BpeScratch,
    out: &mut Vec<u32>,
) {
    pretok::split(bpe.pre, text, &mut s.split, &mut s.words);
    let mut start = 0usize;
    let words = core::mem::take(&mut s.words);
    for &len in &words {
        let end = start + len;
        if let Some(w) = text.as_bytes().get(start..end) {
            word(bpe, vocab, w, s, out);
        }
        start = end;
    }
    s.words = words;
}

fn word(bpe: &Bpe, vocab: &Vocab, w: &[u8], s: &mut BpeScratch, out: &mut Vec<u32>) {
    s.enc.clear();
    for &b in w {
        push_byte_encoded(&mut s.enc, b);
    }
    if bpe.ignore_merges {
        if let Some(t) = vocab.find(&s.enc) {
            out.push(t);
            return;
        }
    }
    s.symbols.clear();
    s.queue.clear();
    let mut offs = 0usize;
    for &b in w {
        let n = utf8_len(s.enc.get(offs).copied().unwrap_or(0)).min(s.enc.len() - offs);
        let index = s.symbols.len() as u32;
        let end = offs + n;
        s.symbols.push(Symbol {
            prev: index.wrapping_sub(1),
            next: if end == s.enc.len() { NONE } else { index + 1 },
            start: offs as u32,
            n: n as u32,
            sid: bpe.byte_sid[b as usize],
        });
        offs = end;
    }
    for i in 1..s.symbols.len() as u32 {
        add_bigram(bpe, s, i - 1, i);
    }
    while let Some(Reverse((_, left, right, size, merged))) = s.queue.pop() {
        let (Some(&ls), Some(&rs)) = (s.symbols.get(left as usize), s.symbols.get(right as usize))
        else {
            continue;
        };
        if ls.n == 0 || rs.n == 0 || ls.n + rs.n != size {
            continue; // outdated
        }
        let next = rs.next;
        if let Some(sym) = s.symbols.get_mut(left as usize) {
            sym.n += rs.n;
            sym.next = next;
            sym.sid = merged;
        }
        if let Some(sym) = s.symbols.get_mut(right as usize) {
            sym.n = 0;
        }
        if let Some(sym) = s.symbols.get_mut(next as usize) {
            sym.prev = left;
        }
        add_bigram(bpe, s, ls.prev, left);
        add_bigram(bpe, s, left, next);
    }
    for sym in s.symbols.iter().filter(|sym| sym.n > 0) {
        if sym.sid < bpe.n_vocab {
            out.push(sym.sid);
            continue;
        }
        // Not a token: llama.cpp looks up each byte of the (encoded) text on its own
        // and drops the ones that are not tokens.
        let bytes = s
            .enc
            .get(sym.start as usize..(sym.start + sym.n) as usize)
            .unwrap_or(&[]);
        out.extend(
            bytes
                .iter()
                .filter_map(|&b| bpe.single_byte_token[b as usize]),
        );
    }
}

fn add_bigram(bpe: &Bpe, s: &mut BpeScratch, left: u32, right: u32) {
    if left == NONE || right == NONE {
        return;
    }
    let (Some(l), Some(r)) = (s.symbols.get(left as usize), s.symbols.get(right as usize)) else {
        return;
    };
    if l.sid == NONE || r.sid == NONE {
        return;
    }
    let k = key(l.sid, r.sid);
    if let Some(&Merge { rank, merged, .. }) =
        bpe.ranks.find(bpe.hasher.hash_one(k), |m| m.key == k)
    {
        s.queue
            .push(Reverse((rank, left, right, l.n + r.n, merged)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    #[test]
    fn encoded_byte_inverts_the_byte_encoding() {
        let mut enc = Vec::new();
        for b in 0..=255u8 {
            enc.clear();
            push_byte_encoded(&mut enc, b);
            assert_eq!(encoded_byte(&enc), Some(b));
        }
        for s in ["", "ab", "\u{144}", "\u{7FF}", "世", "ĠĠ"] {
            assert_eq!(encoded_byte(s.as_bytes()), None, "{s}");
        }
        for s in [&b"\xC4"[..], b"\xC0\x80", b"\xC4\xC4", b"\x80"] {
            assert_eq!(encoded_byte(s), None, "{s:x?}");
        }
    }

    #[test]
    fn merge_table_keeps_the_first_rank_of_each_pair() {
        let hasher = DefaultHashBuilder::default();
        for n in [0usize, 1, 7, 100, 5000, 40_000] {
            // Few distinct pairs, so that many repeat.
            let mut x = 0x2545_F491_4F6C_DD1Du64 ^ n as u64;
            let merges: Vec<Merge> = (0..n as u32)
                .map(|rank| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = (x % (n as u64 / 2 + 1)) as u32;
                    Merge {
                        key: key(k % 97, k / 97),
                        rank,
                        merged: rank.wrapping_mul(31),
                    }
                })
                .collect();
            let mut first = BTreeMap::new();
            for m in &merges {
                first.entry(m.key).or_insert((m.rank, m.merged));
            }
            let table = merge_table(&merges, &hasher);
            assert_eq!(table.len(), first.len());
            for (&k, &(rank, merged)) in &first {
                let e = table.find(hasher.hash_one(k), |e| e.key == k);
                assert_eq!(e.map(|e| (e.rank, e.merged)), Some((rank, merged)));
            }
        }
    }
}
