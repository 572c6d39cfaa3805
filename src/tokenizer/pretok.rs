//! Pre-tokenizers of byte-level BPE vocabularies: split text into words before merging.
//!
//! llama.cpp picks a list of regular expressions per `tokenizer.ggml.pre` and applies
//! them one after the other, each splitting every piece of the previous one into its
//! matches and the gaps between them. Its most used expressions (GPT-2, Llama 3,
//! Qwen2) have hand-written matchers in `unicode.cpp`; the others run through
//! `std::regex` on a "collapsed" text where every non-ASCII code point is replaced by
//! one byte per Unicode category. Each step here reproduces one of them, on code points,
//! in linear time:
//!
//! | step            | llama.cpp expression                                             |
//! |-----------------|------------------------------------------------------------------|
//! | `Gpt2`          | `'s\|'t\|'re\|'ve\|'m\|'ll\|'d\| ?\p{L}+\| ?\p{N}+\| ?[^\s\p{L}\p{N}]+\|\s+(?!\S)` (custom) |
//! | `Llama3`        | `(?i:'s\|…)\|[^\r\n\p{L}\p{N}]?\p{L}+\|\p{N}{1,3}\| ?[^\s\p{L}\p{N}]+[\r\n]*\|\s*[\r\n]+\|\s+(?!\S)\|\s+` (custom) |
//! | `Qwen2`         | the same with `\p{N}` instead of `\p{N}{1,3}` (custom)           |
//! | `Qwen35`        | Qwen2 with `[\p{L}\p{M}]+` letter runs (custom)                  |
//! | `Tekken`        | Mistral's case-aware expression (std::regex, collapsed)          |
//! | `Number`        | `\p{N}` (std::regex, collapsed)                                  |
//! | `NumberRun`     | `\p{N}+` (std::regex, collapsed)                                 |
//! | `PunctRun`      | `[\p{P}\$\+<=>\^~\|]+` (std::regex, collapsed)                   |
//! | `Digits3`       | `[0-9][0-9][0-9]` (std::wregex)                                  |

use alloc::vec::Vec;

use super::unicode::{self, c_is_letter, c_is_number, c_is_punct, c_is_space, Flags};

/// The pre-tokenizer of a byte-level BPE vocabulary (`tokenizer.ggml.pre`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PreTokenizer {
    /// llama.cpp's default (no or `default` pre-tokenizer): punctuation runs, GPT-2,
    /// number runs, then groups of three digits.
    Default,
    /// GPT-2's expression (`gpt-2`, `phi-2`, `mpt`, `olmo`, `jais` …).
    Gpt2,
    /// Llama 3's expression, numbers in groups of 1–3 (`llama-bpe`, `llama3`, `dbrx`,
    /// `smaug-bpe`, `chatglm-bpe`, `glm4` …).
    Llama3,
    /// Qwen2's expression, one digit per word (`qwen2`, `stablelm2`, `megrez`, `grok-2` …).
    Qwen2,
    /// Qwen 3.5's expression: Qwen2 with combining marks inside words (`qwen35`).
    Qwen35,
    /// Mistral's Tekken expression (`tekken`).
    Tekken,
    /// Single digits, then GPT-2's expression (`smollm`, `starcoder`, `refact`,
    /// `command-r`, `codeshell`, `exaone`, `minerva-7b`, `mellum2`).
    StarCoder,
}

/// One splitting step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Gpt2,
    Llama3,
    Qwen2,
    Qwen35,
    Tekken,
    Number,
    NumberRun,
    PunctRun,
    Digits3,
}

impl PreTokenizer {
    fn steps(self) -> &'static [Step] {
        match self {
            PreTokenizer::Default => &[Step::PunctRun, Step::Gpt2, Step::NumberRun, Step::Digits3],
            PreTokenizer::Gpt2 => &[Step::Gpt2],
            PreTokenizer::Llama3 => &[Step::Llama3],
            PreTokenizer::Qwen2 => &[Step::Qwen2],
            PreTokenizer::Qwen35 => &[Step::Qwen35],
            PreTokenizer::Tekken => &[Step::Tekken],
            PreTokenizer::StarCoder => &[Step::Number, Step::Gpt2],
        }
    }
}

/// Scratch buffers of [`split`], reusable across calls.
#[derive(Default, Debug)]
pub(crate) struct SplitScratch {
    pub cpts: Vec<u32>,
    collapsed: Vec<u8>,
    a: Vec<usize>,
    b: Vec<usize>,
}

/// Split `text` into words; returns their byte lengths, in order, in `out`.
pub(crate) fn split(pre: PreTokenizer, text: &str, s: &mut SplitScratch, out: &mut Vec<usize>) {
    out.clear();
    if text.is_empty() {
        return;
    }
    s.cpts.clear();
    s.cpts.extend(text.chars().map(u32::from));
    let steps = pre.steps();
    if steps.iter().any(|st| {
        matches!(
            st,
            Step::Tekken | Step::Number | Step::NumberRun | Step::PunctRun
        )
    }) {
        s.collapsed.clear();
        s.collapsed
            .extend(s.cpts.iter().map(|&c| unicode::collapsed(c)));
    }
    s.a.clear();
    s.a.push(s.cpts.len());
    for &step in steps {
        s.b.clear();
        let cpts = &s.cpts;
        let col = &s.collapsed;
        let mut start = 0usize;
        for &len in &s.a {
            let end = start + len;
            let c = Chunk {
                cpts,
                ini: start,
                end,
            };
            match step {
                Step::Gpt2 => gpt2(&c, &mut s.b),
                Step::Llama3 => llama3_qwen2(&c, &mut s.b, true),
                Step::Qwen2 => llama3_qwen2(&c, &mut s.b, false),
                Step::Qwen35 => qwen35(&c, &mut s.b),
                Step::Tekken => regex_split(start, end, &mut s.b, |p| tekken(col, p, end)),
                Step::Number => regex_split(start, end, &mut s.b, |p| {
                    col.get(p).is_some_and(|&x| c_is_number(x)).then_some(p + 1)
                }),
                Step::NumberRun => {
                    regex_split(start, end, &mut s.b, |p| run(col, p, end, c_is_number))
                }
                Step::PunctRun => regex_split(start, end, &mut s.b, |p| {
                    run(col, p, end, |x| {
                        c_is_punct(x)
                            || matches!(x, b'$' | b'+' | b'<' | b'=' | b'>' | b'^' | b'~' | b'|')
                    })
                }),
                Step::Digits3 => regex_split(start, end, &mut s.b, |p| {
                    let d = |i: usize| {
                        i < end && cpts.get(i).is_some_and(|&x| (0x30..=0x39).contains(&x))
                    };
                    (d(p) && d(p + 1) && d(p + 2)).then_some(p + 3)
                }),
            }
            start = end;
        }
        core::mem::swap(&mut s.a, &mut s.b);
    }
    // Code point counts → byte lengths.
    let mut i = 0usize;
    for &len in &s.a {
        let bytes: usize = s.cpts.get(i..i + len).map_or(0, |w| {
            w.iter()
                .map(|&c| char::from_u32(c).map_or(0, char::len_utf8))
                .sum()
        });
        out.push(bytes);
        i += len;
    }
}

const OUT_OF_RANGE: u32 = 0xFFFF_FFFF;

/// One piece of text being split, as llama.cpp's custom matchers see it: positions
/// outside `ini..end` read as `OUT_OF_RANGE` with no flags.
struct Chunk<'a> {
    cpts: &'a [u32],
    ini: usize,
    end: usize,
}

impl Chunk<'_> {
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.cpts.get(pos).copied().unwrap_or(OUT_OF_RANGE)
        } else {
            OUT_OF_RANGE
        }
    }

    fn flags(&self, pos: usize) -> Flags {
        match self.cpt(pos) {
            OUT_OF_RANGE => Flags(0),
            c => unicode::flags(c),
        }
    }
}

/// `_add_token`: records the piece `prev..end` if it is not empty.
struct Tokens<'o> {
    prev: usize,
    out: &'o mut Vec<usize>,
}

impl Tokens<'_> {
    fn add(&mut self, end: usize) -> usize {
        let len = end.saturating_sub(self.prev);
        if len > 0 {
            self.out.push(len);
        }
        self.prev = end;
        len
    }
}

const fn is_rn(c: u32) -> bool {
    c == '\r' as u32 || c == '\n' as u32
}

fn ascii_lower(c: u32) -> u32 {
    // llama.cpp's unicode_tolower; only ASCII letters lower-case to the letters tested.
    if (0x41..=0x5A).contains(&c) {
        c + 0x20
    } else {
        c
    }
}

/// `'s|'t|'re|'ve|'m|'ll|'d` (case-insensitive when `fold`): the length of the match.
fn contraction(c: &Chunk<'_>, pos: usize, fold: bool) -> Option<usize> {
    if c.cpt(pos) != '\'' as u32 || pos + 1 >= c.end {
        return None;
    }
    let f = |x: u32| if fold { ascii_lower(x) } else { x };
    let next = f(c.cpt(pos + 1));
    if [b's', b't', b'm', b'd']
        .iter()
        .any(|&b| next == u32::from(b))
    {
        return Some(2);
    }
    if pos + 2 < c.end {
        let nn = f(c.cpt(pos + 2));
        let pair = |a: u8, b: u8| next == u32::from(a) && nn == u32::from(b);
        if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
            return Some(3);
        }
    }
    None
}

/// llama.cpp's `unicode_regex_split_custom_gpt2`.
fn gpt2(c: &Chunk<'_>, out: &mut Vec<usize>) {
    let mut t = Tokens { prev: c.ini, out };
    let mut pos = c.ini;
    while pos < c.end {
        let cpt = c.cpt(pos);
        let flags = c.flags(pos);
        if let Some(n) = contraction(c, pos, false) {
            pos += t.add(pos + n);
            continue;
        }
        let space = cpt == ' ' as u32;
        let mut f2 = if space { c.flags(pos + 1) } else { flags };
        // <space>?\p{L}+
        if f2.is_letter() {
            pos += usize::from(space);
            while f2.is_letter() {
                pos += 1;
                f2 = c.flags(pos);
            }
            t.add(pos);
            continue;
        }
        // <space>?\p{N}+
        if f2.is_number() {
            pos += usize::from(space);
            while f2.is_number() {
                pos += 1;
                f2 = c.flags(pos);
            }
            t.add(pos);
            continue;
        }
        // <space>?[^\s\p{L}\p{N}]+
        let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.any();
        if other(f2) {
            pos += usize::from(space);
            while other(f2) {
                pos += 1;
                f2 = c.flags(pos);
            }
            t.add(pos);
            continue;
        }
        let mut n_ws = 0;
        while c.flags(pos + n_ws).is_whitespace() {
            n_ws += 1;
        }
        // \s+(?!\S)
        if n_ws > 1 && c.cpt(pos + n_ws) != OUT_OF_RANGE {
            pos += n_ws - 1;
            t.add(pos);
            continue;
        }
        // \s+
        if n_ws > 0 {
            pos += n_ws;
            t.add(pos);
            continue;
        }
        pos += 1;
        t.add(pos);
    }
}

/// The whitespace tail shared by the Llama 3 / Qwen2 / Qwen3.5 matchers:
/// `\s*[\r\n]+|\s+(?!\S)|\s+`, else one code point.
fn whitespace_tail(c: &Chunk<'_>, pos: &mut usize, t: &mut Tokens<'_>) {
    let mut n_ws = 0;
    let mut last_rn = 0;
    while c.flags(*pos + n_ws).is_whitespace() {
        if is_rn(c.cpt(*pos + n_ws)) {
            last_rn = *pos + n_ws + 1;
        }
        n_ws += 1;
    }
    if last_rn > 0 {
        *pos = last_rn;
    } else if n_ws > 1 && c.cpt(*pos + n_ws) != OUT_OF_RANGE {
        *pos += n_ws - 1;
    } else if n_ws > 0 {
        *pos += n_ws;
    } else {
        *pos += 1;
    }
    t.add(*pos);
}

/// llama.cpp's `unicode_regex_split_custom_llama3` (`groups_of_3`) and `…_qwen2`.
fn llama3_qwen2(c: &Chunk<'_>, out: &mut Vec<usize>, groups_of_3: bool) {
    let mut t = Tokens { prev: c.ini, out };
    let mut pos = c.ini;
    while pos < c.end {
        let cpt = c.cpt(pos);
        let flags = c.flags(pos);
        if let Some(n) = contraction(c, pos, true) {
            pos += t.add(pos + n);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(is_rn(cpt) || flags.is_number()) && (flags.is_letter() || c.flags(pos + 1).is_letter())
        {
            pos += 1;
            while c.flags(pos).is_letter() {
                pos += 1;
            }
            t.add(pos);
            continue;
        }
        // \p{N}{1,3} or \p{N}
        if flags.is_number() {
            if groups_of_3 {
                let mut ini = pos;
                while c.flags(pos).is_number() {
                    pos += 1;
                    if pos - ini >= 3 {
                        t.add(pos);
                        ini = pos;
                    }
                }
            } else {
                pos += 1;
            }
            t.add(pos);
            continue;
        }
        // <space>?[^\s\p{L}\p{N}]+[\r\n]*
        let space = cpt == ' ' as u32;
        let mut f2 = if space { c.flags(pos + 1) } else { flags };
        let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number());
        if other(f2) && flags.any() {
            pos += usize::from(space);
            while other(f2) && f2.any() {
                pos += 1;
                f2 = c.flags(pos);
            }
            while is_rn(c.cpt(pos)) {
                pos += 1;
            }
            t.add(pos);
            continue;
        }
        whitespace_tail(c, &mut pos, &mut t);
    }
}

/// llama.cpp's `unicode_regex_split_custom_qwen35`.
fn qwen35(c: &Chunk<'_>, out: &mut Vec<usize>) {
    let mut t = Tokens { prev: c.ini, out };
    let mut pos = c.ini;
    let word = |f: Flags| f.is_letter() || f.is_accent_mark();
    while pos < c.end {
        let cpt = c.cpt(pos);
        let flags = c.flags(pos);
        if let Some(n) = contraction(c, pos, true) {
            pos += t.add(pos + n);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+
        if !(is_rn(cpt) || flags.is_number()) && (word(flags) || word(c.flags(pos + 1))) {
            pos += 1;
            while word(c.flags(pos)) {
                pos += 1;
            }
            t.add(pos);
            continue;
        }
        if flags.is_number() {
            pos += 1;
            t.add(pos);
            continue;
        }
        // <space>?[^\s\p{L}\p{M}\p{N}]+[\r\n]*
        let space = cpt == ' ' as u32;
        let mut f2 = if space { c.flags(pos + 1) } else { flags };
        let other = |f: Flags| !(f.is_whitespace() || word(f) || f.is_number());
        if other(f2) && flags.any() {
            pos += usize::from(space);
            while other(f2) && f2.any() {
                pos += 1;
                f2 = c.flags(pos);
            }
            while is_rn(c.cpt(pos)) {
                pos += 1;
            }
            t.add(pos);
            continue;
        }
        whitespace_tail(c, &mut pos, &mut t);
    }
}

/// `std::regex_iterator` over `start..end`: every match, and every gap between matches,
/// becomes a piece. `m(p)` is the end of the match that starts at `p`, if any.
fn regex_split(
    start: usize,
    end: usize,
    out: &mut Vec<usize>,
    mut m: impl FnMut(usize) -> Option<usize>,
) {
    let mut last = start;
    let mut p = start;
    while p < end {
        match m(p) {
            Some(e) if e > p && e <= end => {
                if p > last {
                    out.push(p - last);
                }
                out.push(e - p);
                last = e;
                p = e;
            }
            _ => p += 1,
        }
    }
    if last < end {
        out.push(end - last);
    }
}

/// End of the run of `pred` starting at `p` (at least one), before `end`.
fn run(col: &[u8], p: usize, end: usize, pred: impl Fn(u8) -> bool) -> Option<usize> {
    let mut e = p;
    while e < end && col.get(e).is_some_and(|&x| pred(x)) {
        e += 1;
    }
    (e > p).then_some(e)
}

/// Mistral's Tekken expression on collapsed text, with ECMAScript (first alternative
/// that matches, greedy with backtracking) semantics:
///
/// ```text
/// [^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+
/// |[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*
/// |\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
/// ```
fn tekken(col: &[u8], p: usize, end: usize) -> Option<usize> {
    let at = |i: usize| if i < end { col.get(i).copied() } else { None };
    let is_pre = |x: u8| !(x == b'\r' || x == b'\n' || c_is_letter(x) || c_is_number(x));
    // a letter that is not a-z / not A-Z
    let is_up = |x: u8| c_is_letter(x) && !x.is_ascii_lowercase();
    let is_lo = |x: u8| c_is_letter(x) && !x.is_ascii_uppercase();
    let run_of = |mut i: usize, f: &dyn Fn(u8) -> bool| {
        while at(i).is_some_and(f) {
            i += 1;
        }
        i
    };
    let alt1 = |q: usize| -> Option<usize> {
        let r = run_of(q, &is_up);
        (q..=r)
            .rev()
            .find(|&k| at(k).is_some_and(is_lo))
            .map(|k| run_of(k, &is_lo))
    };
    let alt2 = |q: usize| -> Option<usize> {
        let r = run_of(q, &is_up);
        (r > q).then(|| run_of(r, &is_lo))
    };
    let pre = at(p).is_some_and(is_pre);
    for alt in [&alt1 as &dyn Fn(usize) -> Option<usize>, &alt2] {
        if pre {
            if let Some(e) = alt(p + 1) {
                return Some(e);
            }
        }
        if let Some(e) = alt(p) {
            return Some(e);
        }
    }
    let x = at(p)?;
    // \p{N}
    if c_is_number(x) {
        return Some(p + 1);
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n/]*'
    let other = |x: u8| !(c_is_space(x) || c_is_letter(x) || c_is_number(x));
    let q = if x == b' ' && at(p + 1).is_some_and(other) {
        p + 1
    } else {
        p
    };
    if at(q).is_some_and(other) {
        let e = run_of(q, &other);
        return Some(run_of(e, &|x| matches!(x, b'\r' | b'\n' | b'/')));
    }
    // \s*[\r\n]+
    let w = run_of(p, &c_is_space);
    if let Some(k) = (p..w).rev().find(|&k| matches!(at(k), Some(b'\r' | b'\n'))) {
        return Some(k + 1);
    }
    // \s+(?!\S) and \s+
    if w > p {
        if w >= end || w - p == 1 {
            return Some(w);
        }
        return Some(w - 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn words(pre: PreTokenizer, text: &str) -> Vec<String> {
        let mut s = SplitScratch::default();
        let mut out = Vec::new();
        split(pre, text, &mut s, &mut out);
        let mut i = 0;
        out.iter()
            .map(|&n| {
                let w = String::from(&text[i..i + n]);
                i += n;
                w
            })
            .collect()
    }

    #[test]
    fn gpt2_words() {
        assert_eq!(
            words(PreTokenizer::Gpt2, "Hello world's  end!!\n"),
            ["Hello", " world", "'s", " ", " end", "!!", "\n"]
        );
    }

    #[test]
    fn llama3_numbers_in_threes() {
        assert_eq!(
            words(PreTokenizer::Llama3, "1234567 ab"),
            ["123", "456", "7", " ab"]
        );
        assert_eq!(words(PreTokenizer::Qwen2, "123 "), ["1", "2", "3", " "]);
        assert_eq!(
            words(PreTokenizer::Llama3, "a  \n\n b"),
            ["a", "  \n\n", " b"]
        );
        assert_eq!(
            words(PreTokenizer::Llama3, "I'M here"),
            ["I", "'M", " here"]
        );
    }

    #[test]
    fn tekken_case_split() {
        assert_eq!(
            words(PreTokenizer::Tekken, "HelloWorld ABCdef"),
            ["Hello", "World", " ABCdef"]
        );
        assert_eq!(words(PreTokenizer::Tekken, "x  y"), ["x", " ", " y"]);
    }

    #[test]
    fn default_pipeline() {
        assert_eq!(
            words(PreTokenizer::Default, "a+b 12345"),
            ["a", "+", "b", " ", "123", "45"]
        );
        assert_eq!(
            words(PreTokenizer::StarCoder, "ab 12"),
            ["ab", " ", "1", "2"]
        );
    }
}
