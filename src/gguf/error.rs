//! Errors of the GGUF reader and of the typed metadata / tensor accessors.

use alloc::string::String;

use super::types::TypeId;
use super::ValueType;

/// What is wrong with a GGUF file, or with a look-up in it.
///
/// Offsets are absolute byte offsets from the start of the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file ends before a field that the format requires.
    #[error("file truncated: {what} needs {needed} bytes at offset {offset}, file has {len}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The length of the whole file.
        len: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// Only versions 2 and 3 are read.
    #[error("unsupported GGUF version {version} (2 and 3 are supported)")]
    UnsupportedVersion {
        /// The version in the header.
        version: u32,
    },
    /// A count in the header or an array is larger than the cap or than the bytes left could hold.
    #[error("{what} count {count} at offset {offset} is too large (at most {max} here)")]
    CountTooLarge {
        /// What is being counted.
        what: &'static str,
        /// The count in the file.
        count: u64,
        /// The largest count accepted at this point.
        max: u64,
        /// Where the count is stored.
        offset: u64,
    },
    /// A string is longer than the cap or than the bytes left.
    #[error("string of {len} bytes at offset {offset} is too long (at most {max})")]
    StringTooLong {
        /// The length in the file.
        len: u64,
        /// The cap.
        max: u64,
        /// Where the length is stored.
        offset: u64,
    },
    /// A string is not valid UTF-8.
    #[error("string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the string's bytes start.
        offset: u64,
    },
    /// A metadata key is empty.
    #[error("empty metadata key at offset {offset}")]
    EmptyKey {
        /// Where the key is stored.
        offset: u64,
    },
    /// The same metadata key appears twice.
    #[error("duplicate metadata key {key:?}")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A metadata value type id is not one of GGUF's.
    #[error("metadata key {key:?}: unknown value type {type_id} at offset {offset}")]
    UnknownValueType {
        /// The key.
        key: String,
        /// The type id found.
        type_id: u32,
        /// Where the type id is stored.
        offset: u64,
    },
    /// A bool is stored as something other than 0 or 1.
    #[error("metadata key {key:?}: bool value {value} at offset {offset} is not 0 or 1")]
    InvalidBool {
        /// The key.
        key: String,
        /// The byte found.
        value: u8,
        /// Where it is stored.
        offset: u64,
    },
    /// Arrays of arrays are not supported (llama.cpp does not read them either).
    #[error("metadata key {key:?}: arrays of arrays are not supported (offset {offset})")]
    NestedArray {
        /// The key.
        key: String,
        /// Where the inner array type is stored.
        offset: u64,
    },
    /// `general.alignment` is not a nonzero power of two stored as u32.
    #[error("general.alignment: {reason}")]
    BadAlignment {
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor name is empty or longer than [`super::MAX_TENSOR_NAME`] bytes.
    #[error("tensor name of {len} bytes at offset {offset} is empty or too long (at most {max})")]
    BadTensorName {
        /// Its length.
        len: u64,
        /// The cap.
        max: u64,
        /// Where the name is stored.
        offset: u64,
    },
    /// Two tensors have the same name.
    #[error("duplicate tensor name {name:?}")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// A tensor has 0 or more than 4 dimensions.
    #[error("tensor {tensor:?}: {n_dims} dimensions (1 to 4 are allowed)")]
    BadDimCount {
        /// The tensor.
        tensor: String,
        /// The count in the file.
        n_dims: u32,
    },
    /// A tensor dimension is 0 or too large.
    #[error("tensor {tensor:?}: dimension {index} is {value}")]
    BadDim {
        /// The tensor.
        tensor: String,
        /// Which dimension (0 = ne\[0\]).
        index: usize,
        /// Its value.
        value: u64,
    },
    /// The number of elements or bytes of a tensor overflows.
    #[error("tensor {tensor:?}: shape {shape:?} overflows")]
    ShapeOverflow {
        /// The tensor.
        tensor: String,
        /// Its shape (ne\[0\] first).
        shape: [u64; 4],
    },
    /// The tensor type id is unknown or was removed from ggml.
    #[error("tensor {tensor:?}: {ty}")]
    BadTensorType {
        /// The tensor.
        tensor: String,
        /// What the id is.
        ty: TypeId,
    },
    /// ne\[0\] is not a multiple of the type's block size.
    #[error(
        "tensor {tensor:?}: row of {ne0} elements is not a multiple of the {ty} block size {block}"
    )]
    RowNotBlockMultiple {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: super::GgmlType,
        /// ne\[0\].
        ne0: u64,
        /// The block size.
        block: u64,
    },
    /// A tensor offset is not a multiple of the alignment.
    #[error("tensor {tensor:?}: offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// The tensor.
        tensor: String,
        /// Its offset, relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor's bytes lie (partly) outside the data section.
    #[error("tensor {tensor:?}: bytes {offset}..{end} (relative) lie outside the data section of {data_len} bytes")]
    TensorOutOfBounds {
        /// The tensor.
        tensor: String,
        /// Start, relative to the data section.
        offset: u64,
        /// End (exclusive), relative to the data section; saturated on overflow.
        end: u64,
        /// The data section's length.
        data_len: u64,
    },
    /// Two tensors share bytes.
    #[error("tensors {first:?} and {second:?} overlap")]
    OverlappingTensors {
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },
    /// A metadata key that was asked for is not in the file.
    #[error("metadata key {key:?} is missing")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata key holds another type than the one asked for, or a value out of range.
    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongType {
        /// The key.
        key: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the file holds.
        found: ValueType,
    },
    /// A tensor that was asked for is not in the file.
    #[error("tensor {name:?} is missing")]
    MissingTensor {
        /// The name.
        name: String,
    },
}
