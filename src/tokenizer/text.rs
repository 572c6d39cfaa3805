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
    let mut rest = text;
    // Everything before the next byte that can start a '▁' (E2 96 81) is copied as it is.
    while let Some(i) = rest.iter().position(|&b| b == 0xE2) {
        let (head, tail) = rest.split_at_checked(i).unwrap_or((rest, &[]));
        out.extend_from_slice(head);
        rest = match tail {
            [0xE2, 0x96, 0x81, after @ ..] => {
                out.push(b' ');
                after
            }
            [b, after @ ..] => {
                out.push(*b);
                after
            }
            [] => &[],
        };
    }
    out.extend_from_slice(rest);
}

/// Whether `text` has a '▁'.
pub(crate) fn has_escaped_space(text: &[u8]) -> bool {
    text.split(|&b| b == 0xE2)
        .skip(1)
        .any(|after| matches!(after, [0x96, 0x81, ..]))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's loop: at each position, '▁' or one byte.
    fn unescape_bytewise(text: &[u8]) -> Vec<u8> {
        const ESC: &[u8] = "\u{2581}".as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < text.len() {
            if text[i..].starts_with(ESC) {
                out.push(b' ');
                i += ESC.len();
            } else {
                out.push(text[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn unescape_whitespace_matches_the_bytewise_loop() {
        let pool: [&[u8]; 8] = [
            b"\xE2\x96\x81",
            b"\xE2",
            b"\xE2\x96",
            b"\x96\x81",
            b"a",
            b" ",
            "é".as_bytes(),
            b"\xE2\xE2\x96\x81",
        ];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let text: Vec<u8> = (0..(x % 7) as usize)
                .flat_map(|i| pool[((x >> (8 + 3 * i)) & 7) as usize].iter().copied())
                .collect();
            let mut out = alloc::vec![b'#'];
            unescape_whitespace(&text, &mut out);
            assert_eq!(out[1..], unescape_bytewise(&text)[..], "{text:x?}");
            let has = text.windows(3).any(|w| w == "\u{2581}".as_bytes());
            assert_eq!(has_escaped_space(&text), has, "{text:x?}");
        }
    }
}
