//! Zero-copy GGUF reader and a writer for fixtures and tools.
//!
//! [`Gguf::parse`] walks the header, the metadata and the tensor table of a byte
//! slice once, checking every count, length and offset against the bytes that exist
//! before anything is sliced or allocated, and keeps only an index of positions.
//! Strings, arrays and tensor data are then handed out as borrows of the original
//! bytes: nothing is copied, and a 262,144-entry token array costs no allocation.
//!
//! ```
//! use tramontane::gguf::{Gguf, GgufWriter, GgmlType};
//! let mut w = GgufWriter::new();
//! w.add_str("general.architecture", "llama");
//! w.add_u32("llama.block_count", 2);
//! w.add_tensor("tok", GgmlType::F32, &[4], &[0u8; 16])?;
//! let bytes = w.to_bytes()?;
//! let gguf = Gguf::parse(&bytes[..])?;
//! assert_eq!(gguf.get_str("general.architecture")?, "llama");
//! assert_eq!(gguf.get_u32("llama.block_count")?, 2);
//! assert_eq!(gguf.tensor("tok")?.data.len(), 16);
//! # Ok::<(), tramontane::Error>(())
//! ```

mod error;
mod reader;
pub mod types;
mod value;
mod writer;

use alloc::string::ToString;
use alloc::vec::Vec;
use core::ops::Range;

pub use error::GgufError;
pub use types::{GgmlType, TypeId};
pub use value::{ArrayIter, ArrayView, Value, ValueType};
pub use writer::{GgufWriter, OwnedValue};

/// The alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest tensor name accepted, in bytes.
pub const MAX_TENSOR_NAME: u64 = 64;
/// Longest string accepted (key, value or array element), in bytes.
pub const MAX_STRING_LEN: u64 = 64 << 20;
/// Most elements accepted in one metadata array.
pub const MAX_ARRAY_LEN: u64 = 1 << 28;
/// Most metadata entries accepted.
pub const MAX_KV_COUNT: u64 = 1 << 20;
/// Most tensors accepted.
pub const MAX_TENSOR_COUNT: u64 = 1 << 20;
/// Most dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// A parsed GGUF file over bytes `B` (a slice, a [`crate::Backing`], a `Vec<u8>` …).
///
/// Parsing validates everything once; the accessors then borrow from the bytes.
pub struct Gguf<B> {
    bytes: B,
    index: reader::Index,
}

impl<B> core::fmt::Debug for Gguf<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.index.version)
            .field("alignment", &self.index.alignment)
            .field("metadata", &self.index.kvs.len())
            .field("tensors", &self.index.tensors.len())
            .finish()
    }
}

/// Shape and place of one tensor, as listed in the tensor table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorInfo<'a> {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub name: &'a str,
    /// Its element type.
    pub ty: GgmlType,
    /// ne\[0\] … ne\[3\], unused dimensions are 1 (ggml's order: ne\[0\] is the row length).
    pub ne: [u64; 4],
    /// How many of `ne` the file lists (1 to 4).
    pub n_dims: usize,
    /// Offset of its bytes from the start of the data section.
    pub offset: u64,
    /// Number of bytes.
    pub size: u64,
}

impl TensorInfo<'_> {
    /// The dimensions as listed in the file (GGUF order, ne\[0\] first).
    pub fn shape(&self) -> &[u64] {
        self.ne.get(..self.n_dims).unwrap_or(&self.ne)
    }

    /// Total number of elements (cannot overflow: checked when parsed).
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().fold(1u64, |a, &d| a.saturating_mul(d))
    }
}

/// A tensor's description and its bytes, borrowed from the file.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// Name, type, shape, offset.
    pub info: TensorInfo<'a>,
    /// The tensor's bytes, exactly `info.size` of them. The address may be unaligned
    /// when the file is a `&'static [u8]` from `include_bytes!`.
    pub data: &'a [u8],
}

impl<B: AsRef<[u8]>> Gguf<B> {
    /// Parse and validate a GGUF file (version 2 or 3) held in `bytes`.
    pub fn parse(bytes: B) -> Result<Self, GgufError> {
        let index = reader::parse(bytes.as_ref())?;
        Ok(Gguf { bytes, index })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// The backing bytes, by reference.
    pub(crate) fn backing(&self) -> &B {
        &self.bytes
    }

    /// The backing bytes, by value.
    pub fn into_bytes(self) -> B {
        self.bytes
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.index.version
    }

    /// Alignment of the data section and of every tensor offset.
    pub fn alignment(&self) -> u64 {
        self.index.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.index.data_offset
    }

    fn slice(&self, r: &Range<usize>) -> &[u8] {
        self.bytes.as_ref().get(r.clone()).unwrap_or(&[])
    }

    fn str_at(&self, r: &Range<usize>) -> &str {
        core::str::from_utf8(self.slice(r)).unwrap_or("")
    }

    /// Number of metadata entries.
    pub fn metadata_len(&self) -> usize {
        self.index.kvs.len()
    }

    /// Every metadata entry in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, Value<'_>)> + '_ {
        self.index
            .kvs
            .iter()
            .map(move |kv| (self.str_at(&kv.key), self.value_of(kv)))
    }

    fn value_of(&self, kv: &reader::RawKv) -> Value<'_> {
        match &kv.val {
            reader::RawVal::Fixed(ty, r) => {
                Value::decode_fixed(*ty, self.slice(r)).unwrap_or(Value::U8(0))
            }
            reader::RawVal::Str(r) => Value::String(self.str_at(r)),
            reader::RawVal::Array { elem, len, bytes } => Value::Array(ArrayView {
                elem: *elem,
                len: *len,
                bytes: self.slice(bytes),
            }),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<Value<'_>> {
        let i = self
            .index
            .kvs_sorted
            .binary_search_by(|&i| {
                let k = self
                    .index
                    .kvs
                    .get(i as usize)
                    .map(|kv| self.str_at(&kv.key))
                    .unwrap_or("");
                k.cmp(key)
            })
            .ok()?;
        let kv_index = *self.index.kvs_sorted.get(i)?;
        self.index
            .kvs
            .get(kv_index as usize)
            .map(|kv| self.value_of(kv))
    }

    fn require(&self, key: &str) -> Result<Value<'_>, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    fn wrong(key: &str, expected: &'static str, v: &Value<'_>) -> GgufError {
        GgufError::WrongType {
            key: key.to_string(),
            expected,
            found: v.value_type(),
        }
    }

    fn int_of<T: TryFrom<i128>>(
        key: &str,
        expected: &'static str,
        v: Value<'_>,
    ) -> Result<T, GgufError> {
        v.as_integer()
            .and_then(|i| T::try_from(i).ok())
            .ok_or_else(|| Self::wrong(key, expected, &v))
    }

    /// An integer value that fits in u32 (any integer type is accepted if lossless).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        Self::int_of(key, "uint32", self.require(key)?)
    }

    /// An integer value that fits in u64.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        Self::int_of(key, "uint64", self.require(key)?)
    }

    /// An integer value that fits in i32.
    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        Self::int_of(key, "int32", self.require(key)?)
    }

    /// A float value (f32, or f64 narrowed).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.require(key)?;
        v.as_f32().ok_or_else(|| Self::wrong(key, "float32", &v))
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.require(key)? {
            Value::Bool(b) => Ok(b),
            v => Err(Self::wrong(key, "bool", &v)),
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "string", &v))
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<ArrayView<'_>, GgufError> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| Self::wrong(key, "array", &v))
    }

    /// Like [`Gguf::get_u32`], but a missing key is `Ok(None)`.
    pub fn find_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.get(key)
            .map(|v| Self::int_of(key, "uint32", v))
            .transpose()
    }

    /// Like [`Gguf::get_f32`], but a missing key is `Ok(None)`.
    pub fn find_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.get(key).map(|_| self.get_f32(key)).transpose()
    }

    /// Like [`Gguf::get_bool`], but a missing key is `Ok(None)`.
    pub fn find_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.get(key).map(|_| self.get_bool(key)).transpose()
    }

    /// Like [`Gguf::get_str`], but a missing key is `Ok(None)`.
    pub fn find_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(Self::wrong(key, "string", &v)),
        }
    }

    /// Like [`Gguf::get_array`], but a missing key is `Ok(None)`.
    pub fn find_array(&self, key: &str) -> Result<Option<ArrayView<'_>>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(Self::wrong(key, "array", &v)),
        }
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.index.tensors.len()
    }

    fn info_of(&self, t: &reader::RawTensor) -> TensorInfo<'_> {
        TensorInfo {
            name: self.str_at(&t.name),
            ty: t.ty,
            ne: t.ne,
            n_dims: t.n_dims,
            offset: t.offset,
            size: t.size,
        }
    }

    /// Every tensor's description, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorInfo<'_>> + '_ {
        self.index.tensors.iter().map(move |t| self.info_of(t))
    }

    /// The bytes of a tensor described by this file.
    pub fn tensor_data(&self, info: &TensorInfo<'_>) -> &[u8] {
        let start = self.index.data_offset.saturating_add(info.offset);
        let end = start.saturating_add(info.size);
        match (usize::try_from(start), usize::try_from(end)) {
            (Ok(s), Ok(e)) => self.bytes.as_ref().get(s..e).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The tensor called `name`: type, shape and bytes.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, GgufError> {
        let found = self
            .index
            .tensors_sorted
            .binary_search_by(|&i| {
                let n = self
                    .index
                    .tensors
                    .get(i as usize)
                    .map(|t| self.str_at(&t.name))
                    .unwrap_or("");
                n.cmp(name)
            })
            .ok()
            .and_then(|i| self.index.tensors_sorted.get(i))
            .and_then(|&i| self.index.tensors.get(i as usize));
        match found {
            Some(t) => {
                let info = self.info_of(t);
                Ok(TensorView {
                    info,
                    data: self.tensor_data(&info),
                })
            }
            None => Err(GgufError::MissingTensor {
                name: name.to_string(),
            }),
        }
    }

    /// Bytes per tensor type, summed over the tensor table (for `inspect`).
    pub fn size_by_type(&self) -> Vec<(GgmlType, u64, usize)> {
        let mut out: Vec<(GgmlType, u64, usize)> = Vec::new();
        for t in &self.index.tensors {
            match out.iter_mut().find(|e| e.0 == t.ty) {
                Some(e) => {
                    e.1 = e.1.saturating_add(t.size);
                    e.2 += 1;
                }
                None => out.push((t.ty, t.size, 1)),
            }
        }
        out.sort_by_key(|e| e.0);
        out
    }
}

/// Parse `data` and, if it is a valid GGUF file, read every metadata value (every
/// array element) and every tensor's bytes, looking each tensor up by name. Used by
/// the fuzz target and by the smoke test; returns how many items were touched.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) -> usize {
    let Ok(g) = Gguf::parse(data) else { return 0 };
    let mut touched = 0usize;
    for (key, v) in g.metadata() {
        touched = touched.wrapping_add(key.len());
        if let Value::Array(a) = v {
            for item in a.iter() {
                touched = touched.wrapping_add(usize::from(item.as_str().is_some()) + 1);
            }
        }
        let again = g.get(key).map(|v| v.value_type());
        touched = touched.wrapping_add(usize::from(again == Some(v.value_type())));
    }
    for t in g.tensors() {
        let view = g.tensor(t.name);
        if let Ok(view) = view {
            touched =
                touched.wrapping_add(view.data.iter().map(|&b| usize::from(b)).sum::<usize>());
            touched = touched.wrapping_add(usize::from(view.data.len() as u64 == t.size));
        }
    }
    touched
}
