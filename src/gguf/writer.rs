//! A GGUF (v3) writer, for fixtures and tools.

use alloc::string::String;
use alloc::vec::Vec;

use super::types::GgmlType;
use super::value::ValueType;
use super::{GgufError, DEFAULT_ALIGNMENT, MAX_DIMS};

/// A metadata value that owns its data, for writing.
#[derive(Clone, Debug, PartialEq)]
pub enum OwnedValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// All elements must be of the given (non-array) type.
    Array(ValueType, Vec<OwnedValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl OwnedValue {
    fn value_type(&self) -> ValueType {
        match self {
            OwnedValue::U8(_) => ValueType::U8,
            OwnedValue::I8(_) => ValueType::I8,
            OwnedValue::U16(_) => ValueType::U16,
            OwnedValue::I16(_) => ValueType::I16,
            OwnedValue::U32(_) => ValueType::U32,
            OwnedValue::I32(_) => ValueType::I32,
            OwnedValue::F32(_) => ValueType::F32,
            OwnedValue::Bool(_) => ValueType::Bool,
            OwnedValue::String(_) => ValueType::String,
            OwnedValue::Array(..) => ValueType::Array,
            OwnedValue::U64(_) => ValueType::U64,
            OwnedValue::I64(_) => ValueType::I64,
            OwnedValue::F64(_) => ValueType::F64,
        }
    }

    fn write_payload(&self, out: &mut Vec<u8>) {
        match self {
            OwnedValue::U8(v) => out.push(*v),
            OwnedValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::Bool(v) => out.push(u8::from(*v)),
            OwnedValue::String(s) => write_str(out, s),
            OwnedValue::Array(elem, items) => {
                out.extend_from_slice(&elem.id().to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for it in items {
                    it.write_payload(out);
                }
            }
            OwnedValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[derive(Debug)]
struct PendingTensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

/// Builds a GGUF v3 file in memory: metadata in insertion order, then the tensor
/// table, then each tensor's bytes at an offset rounded up to the alignment.
#[derive(Debug)]
pub struct GgufWriter {
    alignment: u64,
    kvs: Vec<(String, OwnedValue)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty file with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter {
            alignment: DEFAULT_ALIGNMENT,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Use another alignment (a nonzero power of two); also writes `general.alignment`.
    pub fn set_alignment(&mut self, alignment: u32) -> Result<(), GgufError> {
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(GgufError::BadAlignment {
                reason: alloc::format!("{alignment} is not a nonzero power of two"),
            });
        }
        self.alignment = alignment.into();
        self.add("general.alignment", OwnedValue::U32(alignment));
        Ok(())
    }

    /// Add (or replace) a metadata entry.
    pub fn add(&mut self, key: &str, value: OwnedValue) {
        match self.kvs.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.kvs.push((key.into(), value)),
        }
    }

    /// Add a u32 entry.
    pub fn add_u32(&mut self, key: &str, v: u32) {
        self.add(key, OwnedValue::U32(v));
    }

    /// Add an f32 entry.
    pub fn add_f32(&mut self, key: &str, v: f32) {
        self.add(key, OwnedValue::F32(v));
    }

    /// Add a bool entry.
    pub fn add_bool(&mut self, key: &str, v: bool) {
        self.add(key, OwnedValue::Bool(v));
    }

    /// Add a string entry.
    pub fn add_str(&mut self, key: &str, v: &str) {
        self.add(key, OwnedValue::String(v.into()));
    }

    /// Add an array of strings.
    pub fn add_str_array<S: AsRef<str>>(&mut self, key: &str, items: &[S]) {
        let items = items
            .iter()
            .map(|s| OwnedValue::String(s.as_ref().into()))
            .collect();
        self.add(key, OwnedValue::Array(ValueType::String, items));
    }

    /// Add an array of f32.
    pub fn add_f32_array(&mut self, key: &str, items: &[f32]) {
        self.add(
            key,
            OwnedValue::Array(
                ValueType::F32,
                items.iter().map(|&v| OwnedValue::F32(v)).collect(),
            ),
        );
    }

    /// Add an array of i32.
    pub fn add_i32_array(&mut self, key: &str, items: &[i32]) {
        self.add(
            key,
            OwnedValue::Array(
                ValueType::I32,
                items.iter().map(|&v| OwnedValue::I32(v)).collect(),
            ),
        );
    }

    /// Add a tensor. `dims` are in GGUF order (ne\[0\], the row length, first); `data`
    /// must hold exactly the bytes that shape and type need.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ty: GgmlType,
        dims: &[u64],
        data: &[u8],
    ) -> Result<(), GgufError> {
        if dims.is_empty() || dims.len() > MAX_DIMS {
            return Err(GgufError::BadDimCount {
                tensor: name.into(),
                n_dims: dims.len() as u32,
            });
        }
        let mut ne = [1u64; 4];
        for (slot, &d) in ne.iter_mut().zip(dims) {
            *slot = d;
        }
        let n = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let size = n
            .filter(|_| dims.iter().all(|&d| d > 0))
            .and_then(|n| ty.row_bytes(n))
            .filter(|_| ne[0] % ty.block_size() == 0)
            .ok_or_else(|| GgufError::ShapeOverflow {
                tensor: name.into(),
                shape: ne,
            })?;
        if size != data.len() as u64 {
            return Err(GgufError::TensorOutOfBounds {
                tensor: name.into(),
                offset: 0,
                end: data.len() as u64,
                data_len: size,
            });
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::DuplicateTensor { name: name.into() });
        }
        self.tensors.push(PendingTensor {
            name: name.into(),
            ty,
            dims: dims.to_vec(),
            data: data.to_vec(),
        });
        Ok(())
    }

    /// The complete file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let a = self.alignment;
        let pad = |n: u64| (a - n % a) % a;
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            write_str(&mut out, k);
            out.extend_from_slice(&v.value_type().id().to_le_bytes());
            v.write_payload(&mut out);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            let len = t.data.len() as u64;
            offset += len + pad(len);
        }
        if !self.tensors.is_empty() {
            out.resize(out.len() + pad(out.len() as u64) as usize, 0);
        }
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            out.resize(out.len() + pad(t.data.len() as u64) as usize, 0);
        }
        Ok(out)
    }

    /// Write the file to `path`.
    #[cfg(feature = "std")]
    pub fn write_to_file(&self, path: impl AsRef<std::path::Path>) -> crate::Result<()> {
        let bytes = self.to_bytes()?;
        let path = path.as_ref();
        std::fs::write(path, bytes).map_err(|source| crate::Error::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(feature = "std")]
use alloc::string::ToString;
