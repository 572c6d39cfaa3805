//! Text transformations of SentencePiece and of llama.cpp's `detokenize`.

use alloc::vec::Vec;

/// ' ' → '▁' (llama.cpp's `llama_escape_whitespace`).
pub(crate) fn escape_whitespace(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        if b == b' ' {
            out.extend_from_slice("\u{2581}".as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// '▁' → ' ' (llama.cpp's `llama_unescape_whitespace`).
pub(crate) fn unescape_whitespace(text: &[u8], out: &mut Vec<u8>) {
    const ESC: &[u8] = "\u{2581}".as_bytes();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.starts_with(ESC) {
            out.push(b' ');
            rest = rest.get(ESC.len()..).unwrap_or(&[]);
        } else if let Some((&b, tail)) = rest.split_first() {
            out.push(b);
            rest = tail;
        }
    }
}

/// The three passes of llama.cpp's `clean_spaces` in `detokenize`.
pub(crate) fn clean_up_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ," lose the space.
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for (i, &x) in text.iter().enumerate() {
        if i > 0 && text.get(i - 1) == Some(&b' ') && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // " ' " → "'" (a single apostrophe between spaces). llama.cpp overwrites the space
    // after it with a NUL, which the next position then sees as its predecessor.
    let t = core::mem::take(&mut out);
    let mut nul_at = usize::MAX;
    let mut i = 1;
    if let Some(&first) = t.first() {
        out.push(first);
    }
    while i < t.len() {
        let x = t[i];
        let prev = if i - 1 == nul_at { 0 } else { t[i - 1] };
        if x == b'\'' && i + 1 < t.len() && prev == b' ' && t[i + 1] == b' ' {
            out.pop();
            nul_at = i + 1;
            out.push(x);
            i += 2;
            continue;
        }
        out.push(x);
        i += 1;
    }
    // " 's", " 'm", " 're", " 've" lose the space.
    let t = core::mem::take(&mut out);
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && x == b'\'' && i + 1 < t.len() {
            let x1 = t[i + 1];
            let x2 = t.get(i + 2).copied();
            let remove = matches!(x1, b's' | b'm')
                || (!matches!(x1, b't' | b'd')
                    && matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e'))));
            if remove {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
}
