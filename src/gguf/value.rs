//! Metadata values, borrowed from the file's bytes.

use core::fmt;

/// The type tag of a GGUF metadata value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    /// Classify a raw type id; `None` for ids GGUF does not define.
    pub const fn from_id(id: u32) -> Option<ValueType> {
        Some(match id {
            0 => ValueType::U8,
            1 => ValueType::I8,
            2 => ValueType::U16,
            3 => ValueType::I16,
            4 => ValueType::U32,
            5 => ValueType::I32,
            6 => ValueType::F32,
            7 => ValueType::Bool,
            8 => ValueType::String,
            9 => ValueType::Array,
            10 => ValueType::U64,
            11 => ValueType::I64,
            12 => ValueType::F64,
            _ => return None,
        })
    }

    /// The id stored in the file.
    pub const fn id(self) -> u32 {
        match self {
            ValueType::U8 => 0,
            ValueType::I8 => 1,
            ValueType::U16 => 2,
            ValueType::I16 => 3,
            ValueType::U32 => 4,
            ValueType::I32 => 5,
            ValueType::F32 => 6,
            ValueType::Bool => 7,
            ValueType::String => 8,
            ValueType::Array => 9,
            ValueType::U64 => 10,
            ValueType::I64 => 11,
            ValueType::F64 => 12,
        }
    }

    /// Bytes of one value for fixed-size types; `None` for strings and arrays.
    pub const fn fixed_size(self) -> Option<usize> {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => Some(1),
            ValueType::U16 | ValueType::I16 => Some(2),
            ValueType::U32 | ValueType::I32 | ValueType::F32 => Some(4),
            ValueType::U64 | ValueType::I64 | ValueType::F64 => Some(8),
            ValueType::String | ValueType::Array => None,
        }
    }

    /// Lower-case name as gguf-py spells it (`uint32`, `string`, …).
    pub const fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "uint8",
            ValueType::I8 => "int8",
            ValueType::U16 => "uint16",
            ValueType::I16 => "int16",
            ValueType::U32 => "uint32",
            ValueType::I32 => "int32",
            ValueType::F32 => "float32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "uint64",
            ValueType::I64 => "int64",
            ValueType::F64 => "float64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value, borrowed from the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    /// UTF-8, validated when the file was parsed.
    String(&'a str),
    Array(ArrayView<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> {
    /// The value's type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer value as i128 (lossless), or `None` for other types.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// A float value (f32, or f64 narrowed), or `None` for other types.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// The string, or `None` for other types.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, or `None` for other types.
    pub fn as_array(&self) -> Option<ArrayView<'a>> {
        match *self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Decode one value of a fixed-size type from exactly its bytes. The parser has
    /// already checked the length and (for bools) the range, so this cannot fail on
    /// parsed data; it returns `None` when called with the wrong length.
    pub(crate) fn decode_fixed(ty: ValueType, b: &'a [u8]) -> Option<Value<'a>> {
        Some(match ty {
            ValueType::U8 => Value::U8(*b.first()?),
            ValueType::I8 => Value::I8(i8::from_le_bytes([*b.first()?])),
            ValueType::Bool => Value::Bool(*b.first()? != 0),
            ValueType::U16 => Value::U16(u16::from_le_bytes(b.try_into().ok()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(b.try_into().ok()?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(b.try_into().ok()?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(b.try_into().ok()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(b.try_into().ok()?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(b.try_into().ok()?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(b.try_into().ok()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(b.try_into().ok()?)),
            ValueType::String | ValueType::Array => return None,
        })
    }
}

/// A metadata array: element type, count and the bytes holding the elements.
///
/// Nothing is copied: elements are decoded when they are read. Fixed-size elements
/// are found in O(1); strings are walked in order ([`ArrayView::strings`]), and a
/// caller who needs random access to strings (a vocabulary) builds an offset table
/// once.
#[derive(Clone, Copy, PartialEq)]
pub struct ArrayView<'a> {
    pub(crate) elem: ValueType,
    pub(crate) len: usize,
    /// Exactly the bytes of the elements (for strings: each u64 length + bytes).
    pub(crate) bytes: &'a [u8],
}

impl fmt::Debug for ArrayView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArrayView<{}; {}>", self.elem, self.len)
    }
}

impl<'a> ArrayView<'a> {
    /// The element type (never `Array`: nested arrays are rejected by the parser).
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw little-endian bytes of the elements.
    pub fn raw_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Element `i`: O(1) for fixed-size types, O(i) for strings.
    pub fn get(&self, i: usize) -> Option<Value<'a>> {
        if i >= self.len {
            return None;
        }
        match self.elem.fixed_size() {
            Some(sz) => {
                let start = i.checked_mul(sz)?;
                let b = self.bytes.get(start..start.checked_add(sz)?)?;
                Value::decode_fixed(self.elem, b)
            }
            None => self.iter().nth(i),
        }
    }

    /// All elements in order.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            elem: self.elem,
            remaining: self.len,
            rest: self.bytes,
        }
    }

    /// The elements as strings, or `None` if this is not an array of strings.
    pub fn strings(&self) -> Option<impl Iterator<Item = &'a str> + 'a> {
        if self.elem != ValueType::String {
            return None;
        }
        Some(self.iter().filter_map(|v| v.as_str()))
    }

    /// The elements as f32 (f32 or f64 arrays), or `None` for other element types.
    pub fn f32s(&self) -> Option<impl Iterator<Item = f32> + 'a> {
        if !matches!(self.elem, ValueType::F32 | ValueType::F64) {
            return None;
        }
        Some(self.iter().filter_map(|v| v.as_f32()))
    }

    /// The elements as i128 (any integer array), or `None` for other element types.
    pub fn integers(&self) -> Option<impl Iterator<Item = i128> + 'a> {
        if self.elem.fixed_size().is_none()
            || matches!(self.elem, ValueType::F32 | ValueType::F64 | ValueType::Bool)
        {
            return None;
        }
        Some(self.iter().filter_map(|v| v.as_integer()))
    }
}

/// Iterator over the elements of an [`ArrayView`].
#[derive(Clone, Debug)]
pub struct ArrayIter<'a> {
    elem: ValueType,
    remaining: usize,
    rest: &'a [u8],
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        match self.elem.fixed_size() {
            Some(sz) => {
                let (head, tail) = self.rest.split_at_checked(sz)?;
                self.rest = tail;
                Value::decode_fixed(self.elem, head)
            }
            None => {
                // Strings: u64 length + bytes, validated by the parser.
                let (len_bytes, tail) = self.rest.split_at_checked(8)?;
                let len = usize::try_from(u64::from_le_bytes(len_bytes.try_into().ok()?)).ok()?;
                let (s, tail) = tail.split_at_checked(len)?;
                self.rest = tail;
                core::str::from_utf8(s).ok().map(Value::String)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}
