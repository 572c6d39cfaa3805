//! The parser: a cursor over a byte slice that uses only checked operations.
//!
//! Every count and length read from the file is compared with the bytes that remain
//! before it is used, so a hostile header cannot make us allocate or loop more than
//! the file's own size allows.

use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::Range;

use super::types::{GgmlType, TypeId};
use super::value::ValueType;
use super::{
    GgufError, DEFAULT_ALIGNMENT, MAX_ARRAY_LEN, MAX_DIMS, MAX_KV_COUNT, MAX_STRING_LEN,
    MAX_TENSOR_COUNT, MAX_TENSOR_NAME,
};

/// Positions of everything the file holds; the bytes stay where they are.
#[derive(Debug)]
pub(crate) struct Index {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub kvs: Vec<RawKv>,
    /// Indices into `kvs`, sorted by key, for binary search.
    pub kvs_sorted: Vec<u32>,
    pub tensors: Vec<RawTensor>,
    /// Indices into `tensors`, sorted by name.
    pub tensors_sorted: Vec<u32>,
}

#[derive(Debug)]
pub(crate) struct RawKv {
    pub key: Range<usize>,
    pub val: RawVal,
}

#[derive(Debug)]
pub(crate) enum RawVal {
    Fixed(ValueType, Range<usize>),
    Str(Range<usize>),
    Array {
        elem: ValueType,
        len: usize,
        bytes: Range<usize>,
    },
}

#[derive(Debug)]
pub(crate) struct RawTensor {
    pub name: Range<usize>,
    pub ty: GgmlType,
    pub ne: [u64; 4],
    pub n_dims: usize,
    pub offset: u64,
    pub size: u64,
}

/// Smallest possible metadata entry: key length (8) + 1 key byte + type (4) + a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// Smallest possible tensor info: name length (8) + 1 name byte + n_dims (4) + one dim (8)
/// + type (4) + offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 1 + 4 + 8 + 4 + 8;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        self.buf.len().saturating_sub(self.pos) as u64
    }

    fn truncated(&self, what: &'static str, needed: u64) -> GgufError {
        GgufError::Truncated {
            what,
            offset: self.pos as u64,
            needed,
            len: self.buf.len() as u64,
        }
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<Range<usize>, GgufError> {
        if n > self.remaining() {
            return Err(self.truncated(what, n));
        }
        // n <= remaining <= usize::MAX, so these cannot fail; keep them checked anyway.
        let n = usize::try_from(n).map_err(|_| self.truncated(what, n))?;
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.truncated(what, n as u64))?;
        let r = self.pos..end;
        self.pos = end;
        Ok(r)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let r = self.take(N as u64, what)?;
        self.buf
            .get(r)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| self.truncated(what, N as u64))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    /// A GGUF string: u64 length + UTF-8 bytes, at most `max` bytes.
    fn string(&mut self, what: &'static str, max: u64) -> Result<Range<usize>, GgufError> {
        let offset = self.pos as u64;
        let len = self.u64(what)?;
        if len > max {
            return Err(GgufError::StringTooLong { len, max, offset });
        }
        let r = self.take(len, what)?;
        let bytes = self.buf.get(r.clone()).unwrap_or(&[]);
        if !is_utf8(bytes) {
            return Err(GgufError::InvalidUtf8 {
                offset: r.start as u64,
            });
        }
        Ok(r)
    }

    fn str_at(&self, r: &Range<usize>) -> &'a str {
        self.buf
            .get(r.clone())
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

/// Whether `b` is UTF-8: the same answer as `core::str::from_utf8(b).is_ok()`.
///
/// Vocabularies are 100,000s of strings of a few bytes, mostly ASCII and two-byte
/// sequences; for those, the set-up of `from_utf8` costs more than the checking.
fn is_utf8(b: &[u8]) -> bool {
    let mut rest = b;
    loop {
        // Eight ASCII bytes at a time.
        while let Some((w, tail)) = rest.split_first_chunk::<8>() {
            if u64::from_le_bytes(*w) & 0x8080_8080_8080_8080 != 0 {
                break;
            }
            rest = tail;
        }
        // One character (Unicode 15, table 3-7: well-formed UTF-8 byte sequences).
        rest = match rest {
            [] => return true,
            [0x00..=0x7F, tail @ ..] => tail,
            [0xC2..=0xDF, 0x80..=0xBF, tail @ ..] => tail,
            [0xE0, 0xA0..=0xBF, 0x80..=0xBF, tail @ ..] => tail,
            [0xE1..=0xEC | 0xEE..=0xEF, 0x80..=0xBF, 0x80..=0xBF, tail @ ..] => tail,
            [0xED, 0x80..=0x9F, 0x80..=0xBF, tail @ ..] => tail,
            [0xF0, 0x90..=0xBF, 0x80..=0xBF, 0x80..=0xBF, tail @ ..] => tail,
            [0xF1..=0xF3, 0x80..=0xBF, 0x80..=0xBF, 0x80..=0xBF, tail @ ..] => tail,
            [0xF4, 0x80..=0x8F, 0x80..=0xBF, 0x80..=0xBF, tail @ ..] => tail,
            _ => return false,
        };
    }
}

fn key_string(c: &Cursor<'_>, key: &Range<usize>) -> String {
    c.str_at(key).to_string()
}

/// Parse one value of type `ty` for metadata `key`.
fn value(c: &mut Cursor<'_>, ty: ValueType, key: &Range<usize>) -> Result<RawVal, GgufError> {
    match ty {
        ValueType::String => Ok(RawVal::Str(c.string("metadata string", MAX_STRING_LEN)?)),
        ValueType::Array => {
            let elem_offset = c.pos as u64;
            let elem_id = c.u32("array element type")?;
            let elem = ValueType::from_id(elem_id).ok_or_else(|| GgufError::UnknownValueType {
                key: key_string(c, key),
                type_id: elem_id,
                offset: elem_offset,
            })?;
            if elem == ValueType::Array {
                return Err(GgufError::NestedArray {
                    key: key_string(c, key),
                    offset: elem_offset,
                });
            }
            let count_offset = c.pos as u64;
            let count = c.u64("array length")?;
            // Every element needs at least this many bytes (strings: their u64 length).
            let min_elem = elem.fixed_size().map_or(8, |s| s as u64);
            let max = MAX_ARRAY_LEN.min(c.remaining() / min_elem);
            if count > max {
                return Err(GgufError::CountTooLarge {
                    what: "array element",
                    count,
                    max,
                    offset: count_offset,
                });
            }
            let len = usize::try_from(count).map_err(|_| GgufError::CountTooLarge {
                what: "array element",
                count,
                max,
                offset: count_offset,
            })?;
            let start = c.pos;
            match elem.fixed_size() {
                Some(sz) => {
                    let r = c.take(count.saturating_mul(sz as u64), "array data")?;
                    if elem == ValueType::Bool {
                        if let Some(pos) = c
                            .buf
                            .get(r.clone())
                            .and_then(|b| b.iter().position(|&v| v > 1))
                        {
                            let at = r.start.saturating_add(pos);
                            return Err(GgufError::InvalidBool {
                                key: key_string(c, key),
                                value: c.buf.get(at).copied().unwrap_or(0),
                                offset: at as u64,
                            });
                        }
                    }
                }
                None => {
                    for _ in 0..len {
                        c.string("array string", MAX_STRING_LEN)?;
                    }
                }
            }
            Ok(RawVal::Array {
                elem,
                len,
                bytes: start..c.pos,
            })
        }
        _ => {
            let sz = ty.fixed_size().unwrap_or(1) as u64;
            let r = c.take(sz, "metadata value")?;
            if ty == ValueType::Bool {
                let v = c.buf.get(r.start).copied().unwrap_or(0);
                if v > 1 {
                    return Err(GgufError::InvalidBool {
                        key: key_string(c, key),
                        value: v,
                        offset: r.start as u64,
                    });
                }
            }
            Ok(RawVal::Fixed(ty, r))
        }
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    // a is a nonzero power of two.
    x.checked_add(a - 1).map(|v| v & !(a - 1))
}

/// Parse the header, metadata and tensor table of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Result<Index, GgufError> {
    let mut c = Cursor { buf, pos: 0 };
    let magic = c.array::<4>("magic")?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let tc_offset = c.pos as u64;
    let n_tensors = c.u64("tensor count")?;
    let kv_offset = c.pos as u64;
    let n_kv = c.u64("metadata count")?;

    // Each count must fit the bytes left, so the vectors below are bounded by the file size.
    let max_kv = MAX_KV_COUNT.min(c.remaining() / MIN_KV_BYTES);
    if n_kv > max_kv {
        return Err(GgufError::CountTooLarge {
            what: "metadata",
            count: n_kv,
            max: max_kv,
            offset: kv_offset,
        });
    }
    let max_t = MAX_TENSOR_COUNT.min(c.remaining() / MIN_TENSOR_INFO_BYTES);
    if n_tensors > max_t {
        return Err(GgufError::CountTooLarge {
            what: "tensor",
            count: n_tensors,
            max: max_t,
            offset: tc_offset,
        });
    }

    let mut kvs = Vec::with_capacity(n_kv as usize);
    let mut seen = BTreeSet::new();
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..n_kv {
        let key_offset = c.pos as u64;
        let key = c.string("metadata key", MAX_STRING_LEN)?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey { offset: key_offset });
        }
        let key_str = c.str_at(&key);
        if !seen.insert(key_str) {
            return Err(GgufError::DuplicateKey {
                key: key_str.to_string(),
            });
        }
        let ty_offset = c.pos as u64;
        let ty_id = c.u32("metadata value type")?;
        let ty = ValueType::from_id(ty_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key_str.to_string(),
            type_id: ty_id,
            offset: ty_offset,
        })?;
        let val = value(&mut c, ty, &key)?;
        if key_str == "general.alignment" {
            alignment = check_alignment(&c, &val)?;
        }
        kvs.push(RawKv { key, val });
    }

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = BTreeSet::new();
    for _ in 0..n_tensors {
        tensors.push(tensor_info(&mut c, &mut names, alignment)?);
    }

    let end_of_infos = c.pos as u64;
    let data_offset =
        align_up(end_of_infos, alignment).ok_or_else(|| c.truncated("data section", alignment))?;
    let file_len = buf.len() as u64;
    if !tensors.is_empty() && data_offset > file_len {
        return Err(GgufError::Truncated {
            what: "padding before the data section",
            offset: end_of_infos,
            needed: data_offset - end_of_infos,
            len: file_len,
        });
    }
    let data_len = file_len.saturating_sub(data_offset);
    check_tensor_ranges(&c, &tensors, data_len)?;

    let mut kvs_sorted: Vec<u32> = (0..kvs.len() as u32).collect();
    kvs_sorted.sort_by(|&a, &b| {
        let ka = kvs
            .get(a as usize)
            .map_or("", |kv: &RawKv| c.str_at(&kv.key));
        let kb = kvs
            .get(b as usize)
            .map_or("", |kv: &RawKv| c.str_at(&kv.key));
        ka.cmp(kb)
    });
    let mut tensors_sorted: Vec<u32> = (0..tensors.len() as u32).collect();
    tensors_sorted.sort_by(|&a, &b| {
        let na = tensors
            .get(a as usize)
            .map_or("", |t: &RawTensor| c.str_at(&t.name));
        let nb = tensors
            .get(b as usize)
            .map_or("", |t: &RawTensor| c.str_at(&t.name));
        na.cmp(nb)
    });

    Ok(Index {
        version,
        alignment,
        data_offset,
        kvs,
        kvs_sorted,
        tensors,
        tensors_sorted,
    })
}

fn check_alignment(c: &Cursor<'_>, val: &RawVal) -> Result<u64, GgufError> {
    let RawVal::Fixed(ty, r) = val else {
        return Err(GgufError::BadAlignment {
            reason: "must be a uint32, found a string or array".into(),
        });
    };
    if *ty != ValueType::U32 {
        return Err(GgufError::BadAlignment {
            reason: alloc::format!("must be a uint32, found {ty}"),
        });
    }
    let bytes: [u8; 4] = c
        .buf
        .get(r.clone())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| GgufError::BadAlignment {
            reason: "unreadable".into(),
        })?;
    let a = u32::from_le_bytes(bytes);
    if a == 0 || !a.is_power_of_two() {
        return Err(GgufError::BadAlignment {
            reason: alloc::format!("{a} is not a nonzero power of two"),
        });
    }
    Ok(a.into())
}

fn tensor_info<'a>(
    c: &mut Cursor<'a>,
    names: &mut BTreeSet<&'a str>,
    alignment: u64,
) -> Result<RawTensor, GgufError> {
    let name_offset = c.pos as u64;
    let name_len_peek = {
        let mut p = Cursor {
            buf: c.buf,
            pos: c.pos,
        };
        p.u64("tensor name length")?
    };
    if name_len_peek == 0 || name_len_peek > MAX_TENSOR_NAME {
        return Err(GgufError::BadTensorName {
            len: name_len_peek,
            max: MAX_TENSOR_NAME,
            offset: name_offset,
        });
    }
    let name = c.string("tensor name", MAX_TENSOR_NAME)?;
    let name_str = c.str_at(&name);
    if !names.insert(name_str) {
        return Err(GgufError::DuplicateTensor {
            name: name_str.to_string(),
        });
    }
    let n_dims = c.u32("tensor dimension count")?;
    if n_dims == 0 || n_dims as usize > MAX_DIMS {
        return Err(GgufError::BadDimCount {
            tensor: name_str.to_string(),
            n_dims,
        });
    }
    let mut ne = [1u64; 4];
    for (index, slot) in ne.iter_mut().take(n_dims as usize).enumerate() {
        let value = c.u64("tensor dimension")?;
        if value == 0 || value > i64::MAX as u64 {
            return Err(GgufError::BadDim {
                tensor: name_str.to_string(),
                index,
                value,
            });
        }
        *slot = value;
    }
    let ty_id = c.u32("tensor type")?;
    let ty = match GgmlType::from_id(ty_id) {
        TypeId::Known(t) => t,
        other => {
            return Err(GgufError::BadTensorType {
                tensor: name_str.to_string(),
                ty: other,
            })
        }
    };
    let offset = c.u64("tensor offset")?;

    let overflow = || GgufError::ShapeOverflow {
        tensor: name_str.to_string(),
        shape: ne,
    };
    let n_elements = ne
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(overflow)?;
    if n_elements > i64::MAX as u64 {
        return Err(overflow());
    }
    let block = ty.block_size();
    if ne[0] % block != 0 {
        return Err(GgufError::RowNotBlockMultiple {
            tensor: name_str.to_string(),
            ty,
            ne0: ne[0],
            block,
        });
    }
    let size = (n_elements / block)
        .checked_mul(ty.block_bytes())
        .ok_or_else(overflow)?;
    if offset % alignment != 0 {
        return Err(GgufError::MisalignedTensor {
            tensor: name_str.to_string(),
            offset,
            alignment,
        });
    }
    Ok(RawTensor {
        name,
        ty,
        ne,
        n_dims: n_dims as usize,
        offset,
        size,
    })
}

fn check_tensor_ranges(
    c: &Cursor<'_>,
    tensors: &[RawTensor],
    data_len: u64,
) -> Result<(), GgufError> {
    for t in tensors {
        let end = t.offset.checked_add(t.size);
        if end.is_none_or(|e| e > data_len) {
            return Err(GgufError::TensorOutOfBounds {
                tensor: c.str_at(&t.name).to_string(),
                offset: t.offset,
                end: end.unwrap_or(u64::MAX),
                data_len,
            });
        }
    }
    let mut by_offset: Vec<&RawTensor> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        if let [a, b] = pair {
            // Both ends were checked above, so the sum cannot overflow.
            if a.offset.saturating_add(a.size) > b.offset {
                return Err(GgufError::OverlappingTensors {
                    first: c.str_at(&a.name).to_string(),
                    second: c.str_at(&b.name).to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(b: &[u8]) {
        assert_eq!(is_utf8(b), core::str::from_utf8(b).is_ok(), "{b:x?}");
    }

    #[test]
    fn is_utf8_agrees_with_core() {
        // Every sequence of up to three bytes.
        for a in 0..=255u8 {
            same(&[a]);
            for b in 0..=255u8 {
                same(&[a, b]);
                for c in 0..=255u8 {
                    same(&[a, b, c]);
                }
            }
        }
        // Four bytes: every lead byte with continuation bytes around their limits.
        let edges = [
            0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xE0, 0xF0, 0xF4,
            0xF5, 0xFF,
        ];
        for a in 0..=255u8 {
            for &b in &edges {
                for &c in &edges {
                    for &d in &edges {
                        same(&[a, b, c, d]);
                    }
                }
            }
        }
        // Characters around the eight-byte ASCII steps, at every offset.
        let text = "Ġthe ▁world 世界 😀 plain ascii text, longer than eight bytes. é".as_bytes();
        for i in 0..text.len() {
            for j in i..=text.len() {
                same(&text[i..j]);
            }
        }
    }
}
