//! Unicode classification as llama.cpp's `unicode.cpp` sees it, and GPT-2's byte↔unicode map.
//!
//! llama.cpp classifies code points with a table generated from Unicode 15.1
//! (`unicode-data.cpp`): one general-category group per code point (`\p{L}`, `\p{N}` …),
//! `UNDEFINED` for unassigned ones, and the `White_Space` property on the side. We take
//! the same data from `unicode-properties` pinned to its Unicode 15.1 release, so that a
//! code point assigned in a later Unicode version is classified as llama.cpp does
//! (undefined), and `char::is_whitespace` (the `White_Space` property, unchanged since
//! Unicode 6). An exhaustive comparison over all 0x110000 code points found no
//! difference with llama.cpp's table.

use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// `unicode_cpt_flags` bits.
pub(crate) const UNDEFINED: u16 = 0x0001;
pub(crate) const NUMBER: u16 = 0x0002;
pub(crate) const LETTER: u16 = 0x0004;
pub(crate) const SEPARATOR: u16 = 0x0008;
pub(crate) const ACCENT_MARK: u16 = 0x0010;
pub(crate) const PUNCTUATION: u16 = 0x0020;
pub(crate) const SYMBOL: u16 = 0x0040;
pub(crate) const CONTROL: u16 = 0x0080;
pub(crate) const MASK_CATEGORIES: u16 = 0x00FF;
pub(crate) const WHITESPACE: u16 = 0x0100;

/// A code point's flags, or 0 for a position outside the text being split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags(pub u16);

impl Flags {
    pub fn is_number(self) -> bool {
        self.0 & NUMBER != 0
    }
    pub fn is_letter(self) -> bool {
        self.0 & LETTER != 0
    }
    pub fn is_accent_mark(self) -> bool {
        self.0 & ACCENT_MARK != 0
    }
    pub fn is_whitespace(self) -> bool {
        self.0 & WHITESPACE != 0
    }
    /// Any flag at all (`as_uint() != 0` in llama.cpp): false only outside the text.
    pub fn any(self) -> bool {
        self.0 != 0
    }
    pub fn category(self) -> u16 {
        self.0 & MASK_CATEGORIES
    }
}

const fn ascii_category(c: u8) -> u16 {
    match c {
        b'0'..=b'9' => NUMBER,
        b'A'..=b'Z' | b'a'..=b'z' => LETTER,
        b' ' => SEPARATOR,
        b'$' | b'+' | b'<' | b'=' | b'>' | b'^' | b'`' | b'|' | b'~' => SYMBOL,
        0x21..=0x7E => PUNCTUATION,
        _ => CONTROL,
    }
}

const ASCII_FLAGS: [u16; 128] = {
    let mut t = [0u16; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        let ws = matches!(c, 0x09..=0x0D | 0x20);
        t[i] = ascii_category(c) | if ws { WHITESPACE } else { 0 };
        i += 1;
    }
    t
};

/// llama.cpp's `unicode_cpt_flags_from_cpt`.
pub(crate) fn flags(cpt: u32) -> Flags {
    if cpt < 128 {
        return Flags(ASCII_FLAGS[cpt as usize]);
    }
    let Some(c) = char::from_u32(cpt) else {
        // Surrogates (Cs) are \p{C}; anything above U+10FFFF is undefined.
        return Flags(if cpt < 0x110000 { CONTROL } else { UNDEFINED });
    };
    let cat = match c.general_category_group() {
        GeneralCategoryGroup::Letter => LETTER,
        GeneralCategoryGroup::Mark => ACCENT_MARK,
        GeneralCategoryGroup::Number => NUMBER,
        GeneralCategoryGroup::Punctuation => PUNCTUATION,
        GeneralCategoryGroup::Symbol => SYMBOL,
        GeneralCategoryGroup::Separator => SEPARATOR,
        GeneralCategoryGroup::Other => {
            if c.general_category() == GeneralCategory::Unassigned {
                UNDEFINED
            } else {
                CONTROL
            }
        }
    };
    Flags(cat | if c.is_whitespace() { WHITESPACE } else { 0 })
}

/// The byte that stands for a code point in llama.cpp's "collapsed" text, on which its
/// `std::regex` fallbacks run: ASCII stays itself, other whitespace becomes 0x0B, and
/// the rest becomes one byte per category (0xD1 number, 0xD2 letter, 0xD3 punctuation,
/// 0xD4 mark, 0xD5 symbol, 0xD0 anything else).
pub(crate) fn collapsed(cpt: u32) -> u8 {
    if cpt < 128 {
        return cpt as u8;
    }
    let f = flags(cpt);
    if f.is_whitespace() {
        return 0x0B;
    }
    match f.category() {
        NUMBER => 0xD1,
        LETTER => 0xD2,
        PUNCTUATION => 0xD3,
        ACCENT_MARK => 0xD4,
        SYMBOL => 0xD5,
        _ => 0xD0,
    }
}

/// `\s` of a narrow `std::regex` in the "C" locale, on collapsed text.
pub(crate) fn c_is_space(b: u8) -> bool {
    matches!(b, 0x09..=0x0D | 0x20)
}

/// `\p{L}` on collapsed text.
pub(crate) fn c_is_letter(b: u8) -> bool {
    b == 0xD2 || b.is_ascii_alphabetic()
}

/// `\p{N}` on collapsed text.
pub(crate) fn c_is_number(b: u8) -> bool {
    b == 0xD1 || b.is_ascii_digit()
}

/// `\p{P}` on collapsed text.
pub(crate) fn c_is_punct(b: u8) -> bool {
    b == 0xD3 || (b < 128 && ascii_category(b) == PUNCTUATION)
}

/// Number of bytes of the UTF-8 sequence that starts with `b` (llama.cpp's `unicode_len_utf8`).
pub(crate) fn utf8_len(b: u8) -> usize {
    const LOOKUP: [u8; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[(b >> 4) as usize] as usize
}

/// GPT-2's byte → code point map (`bytes_to_unicode`).
pub(crate) const BYTE_TO_CPT: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut n = 0u16;
    let mut b = 0usize;
    while b < 256 {
        let keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if keep {
            t[b] = b as u16;
        } else {
            t[b] = 256 + n;
            n += 1;
        }
        b += 1;
    }
    t
};

/// The inverse of [`BYTE_TO_CPT`], indexed by code point; `0x100` where no byte maps.
/// The code points are `0..256 + 68` (68 bytes do not map to themselves).
const CPT_TO_BYTE: [u16; 256 + 68] = {
    let mut t = [0x100u16; 256 + 68];
    let mut b = 0usize;
    while b < 256 {
        t[BYTE_TO_CPT[b] as usize] = b as u16;
        b += 1;
    }
    t
};

/// The inverse of [`BYTE_TO_CPT`]: the byte a code point stands for, if any.
pub(crate) fn cpt_to_byte(cpt: u32) -> Option<u8> {
    let b = *CPT_TO_BYTE.get(usize::try_from(cpt).ok()?)?;
    u8::try_from(b).ok()
}

/// Append the UTF-8 encoding of GPT-2's code point for `b`.
pub(crate) fn push_byte_encoded(out: &mut alloc::vec::Vec<u8>, b: u8) {
    let cpt = u32::from(BYTE_TO_CPT[b as usize]);
    let c = char::from_u32(cpt).unwrap_or('\u{FFFD}');
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(cpt_to_byte(u32::from(BYTE_TO_CPT[b as usize])), Some(b));
        }
        assert_eq!(BYTE_TO_CPT[b' ' as usize], 0x120); // 'Ġ'
        assert_eq!(BYTE_TO_CPT[b'\n' as usize], 0x10A); // 'Ċ'
        assert_eq!(cpt_to_byte(0x4E00), None);
        // Every other code point below the table's end is no byte.
        let mapped: alloc::vec::Vec<u32> = BYTE_TO_CPT.iter().map(|&c| u32::from(c)).collect();
        for cpt in 0..0x400u32 {
            if !mapped.contains(&cpt) {
                assert_eq!(cpt_to_byte(cpt), None, "{cpt:#x}");
            }
        }
        assert_eq!(mapped.iter().max(), Some(&(256 + 67)));
    }

    #[test]
    fn flags_match_llama_cpp_spot_checks() {
        assert_eq!(flags(u32::from('a')).0, LETTER);
        assert_eq!(flags(u32::from(' ')).0, SEPARATOR | WHITESPACE);
        assert_eq!(flags(u32::from('\n')).0, CONTROL | WHITESPACE);
        assert_eq!(flags(0xA0).0, SEPARATOR | WHITESPACE);
        assert_eq!(flags(0x85).0, CONTROL | WHITESPACE);
        assert_eq!(flags(u32::from('é')).0, LETTER);
        assert_eq!(flags(u32::from('٣')).0, NUMBER);
        assert_eq!(flags(0x0301).0, ACCENT_MARK);
        assert_eq!(flags(0x200D).0, CONTROL); // ZWJ is Cf
        assert_eq!(flags(0x1F600).0, SYMBOL);
        assert_eq!(flags(0x1C89).0, UNDEFINED); // assigned in Unicode 16, not in 15.1
        assert_eq!(flags(0x31EF).0, SYMBOL); // assigned in Unicode 15.1
        assert_eq!(collapsed(u32::from('é')), 0xD2);
        assert_eq!(collapsed(0x3000), 0x0B);
        assert_eq!(collapsed(u32::from('«')), 0xD3);
    }
}
