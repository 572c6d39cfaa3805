//! Quantized tensor formats: ggml's block layouts, and scalar reference code to
//! dequantize and quantize them.
//!
//! Every block struct ([`BlockQ4_0`], [`BlockQ4K`], …) is `#[repr(C)]` with byte-array
//! fields only, so it has alignment 1 and can be viewed in place over model bytes that
//! come from an mmap or an `include_bytes!` at any address (see [`blocks()`]). Its size is
//! checked against ggml's at compile time.
//!
//! The scalar code here is the reference the SIMD kernels are tested against:
//! [`dequantize_row`] produces bit-for-bit the values of gguf-py's (and ggml's) reference
//! dequantization, and the quantizers produce byte-for-byte the blocks of ggml's
//! `quantize_row_*_ref` (`tests/quant.rs` checks both against vectors from gguf-py and,
//! for the quantizers gguf-py lacks, from ggml's C reference; see
//! `fixtures/gen_quant_vectors.py`).
//!
//! | type | dequantize | quantize |
//! |------|------------|----------|
//! | F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q8_K | yes | yes |
//! | Q2_K, Q3_K, Q4_K, Q5_K, Q6_K | yes | yes (ggml's reference, no imatrix) |
//! | IQ4_NL, IQ4_XS, MXFP4 | yes | no |
//!
//! ggml's reference code is plain IEEE single precision without fused multiply-add
//! (when compiled without FMA contraction, as gguf-py's numpy is); Rust never contracts,
//! so the results match exactly. Code that uses FMA (SIMD kernels) must be compared
//! with a tolerance instead.
//!
//! Names follow ggml (`QK_K`, `block_q4_K` → [`BlockQ4K`], `quantize_row_q8_K`), so a
//! reader of `ggml-quants.c` finds the same vocabulary.

use core::fmt;

use crate::gguf::GgmlType;

mod blocks;
mod dequant;
mod quantize;
mod quantize_k;
mod repack;

pub use blocks::{
    BlockIQ4NL, BlockIQ4XS, BlockMXFP4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1,
    BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, QuantBlock,
    KVALUES_IQ4NL, KVALUES_MXFP4, K_SCALE_SIZE, QK4_0, QK4_1, QK4_NL, QK5_0, QK5_1, QK8_0, QK8_1,
    QK_K, QK_MXFP4,
};
pub use dequant::dequantize_row;
pub use quantize::{
    quantize_acts_q8_0, quantize_acts_q8_1, quantize_row, quantize_row_q4_k, quantize_row_q6_k,
    quantize_row_q8_0, quantize_row_q8_1, quantize_row_q8_k,
};
pub(crate) use repack::q5_0x4_blocks;
pub use repack::{repack_q5_0_row, BlockQ5_0x4};

/// Which operation a [`QuantError::Unsupported`] was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantOp {
    /// Block data → `f32`.
    Dequantize,
    /// `f32` → block data.
    Quantize,
}

impl fmt::Display for QuantOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuantOp::Dequantize => "dequantization",
            QuantOp::Quantize => "quantization",
        })
    }
}

/// Block data or a buffer does not fit the requested operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// The quantized bytes are not a whole number of blocks of the type.
    #[error("{len} bytes of {ty} data are not a whole number of {block_bytes}-byte blocks")]
    NotWholeBlocks {
        /// The tensor type.
        ty: GgmlType,
        /// Length of the byte slice.
        len: usize,
        /// Bytes per block of `ty`.
        block_bytes: usize,
    },
    /// The number of values to quantize is not a multiple of the type's block size.
    #[error(
        "{len} values cannot be quantized to {ty}: not a multiple of its block size {block_size}"
    )]
    NotWholeValues {
        /// The target type.
        ty: GgmlType,
        /// Number of `f32` values given.
        len: usize,
        /// Values per block of `ty`.
        block_size: usize,
    },
    /// A byte slice cannot be viewed as a slice of block structs (length not a multiple
    /// of the struct size).
    #[error("{len} bytes cannot be viewed as {block} blocks of {block_bytes} bytes")]
    BadCast {
        /// Rust name of the block struct.
        block: &'static str,
        /// Length of the byte slice.
        len: usize,
        /// Size of the block struct.
        block_bytes: usize,
    },
    /// The output buffer is shorter than the result.
    #[error("output for {ty} {op} too short: {needed} elements needed, {got} given")]
    OutputTooShort {
        /// The tensor type.
        ty: GgmlType,
        /// The operation.
        op: QuantOp,
        /// Elements (values for dequantization, bytes or blocks for quantization) needed.
        needed: usize,
        /// Elements the output has.
        got: usize,
    },
    /// The type has no reference implementation of this operation here.
    #[error("{op} of {ty} is not supported")]
    Unsupported {
        /// The tensor type.
        ty: GgmlType,
        /// The operation.
        op: QuantOp,
    },
}

/// View `bytes` in place as a slice of block structs (or any alignment-1 [`Pod`] type).
///
/// Every block struct of this module has alignment 1, so the only way this fails is a
/// length that is not a multiple of `size_of::<T>()`. Zero-sized `T` is refused too.
///
/// [`Pod`]: bytemuck::Pod
pub fn blocks<T: bytemuck::Pod>(bytes: &[u8]) -> Result<&[T], QuantError> {
    bytemuck::try_cast_slice(bytes).map_err(|_| QuantError::BadCast {
        block: core::any::type_name::<T>(),
        len: bytes.len(),
        block_bytes: core::mem::size_of::<T>(),
    })
}

/// Mutable twin of [`blocks()`].
pub fn blocks_mut<T: bytemuck::Pod>(bytes: &mut [u8]) -> Result<&mut [T], QuantError> {
    let len = bytes.len();
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| QuantError::BadCast {
        block: core::any::type_name::<T>(),
        len,
        block_bytes: core::mem::size_of::<T>(),
    })
}

/// View `bytes` as blocks of `B`, saying which ggml type was expected if they do not fit.
pub(crate) fn typed_blocks<B: QuantBlock>(bytes: &[u8]) -> Result<&[B], QuantError> {
    blocks::<B>(bytes).map_err(|_| QuantError::NotWholeBlocks {
        ty: B::TYPE,
        len: bytes.len(),
        block_bytes: core::mem::size_of::<B>(),
    })
}

/// ggml's `nearest_int`: round to the nearest integer, ties to even, by adding 1.5·2²³
/// and reading the mantissa. Exact for |x| ≤ 4194303; outside that range (or for NaN)
/// the result is meaningless but defined — no panic, no UB.
#[inline]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    let bits = v.to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// f16 stored little-endian → f32 (exact).
#[inline]
pub(crate) fn f16_le(b: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(b).to_f32()
}

/// f32 → f16 (round to nearest even, as `GGML_FP32_TO_FP16` and numpy) stored little-endian.
#[inline]
pub(crate) fn f16_bytes(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-2.6), -3);
        assert_eq!(nearest_int(127.49), 127);
        // Out of range and NaN: defined, no panic.
        let _ = nearest_int(f32::NAN);
        let _ = nearest_int(f32::INFINITY);
        let _ = nearest_int(-1e30);
    }

    #[test]
    fn blocks_view_any_address() {
        let bytes = [0u8; 3 * 18 + 1];
        // Odd offset: alignment 1 means the view works anywhere.
        let v: &[BlockQ4_0] = blocks(&bytes[1..]).unwrap();
        assert_eq!(v.len(), 3);
        assert!(matches!(
            blocks::<BlockQ4_0>(&bytes[2..]),
            Err(QuantError::BadCast {
                len: 53,
                block_bytes: 18,
                ..
            })
        ));
        assert!(matches!(
            typed_blocks::<BlockQ4K>(&bytes),
            Err(QuantError::NotWholeBlocks {
                ty: GgmlType::Q4_K,
                ..
            })
        ));
    }
}
