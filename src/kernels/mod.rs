//! Compute kernels: quantized dot products, matvec / matmul, and the f32 operators of
//! the forward pass.
//!
//! # Shape of the API
//!
//! - A weight matrix is a [`Weight`]: a typed, zero-copy view of `rows` rows of `cols`
//!   values in their GGUF type.
//! - Activations are quantized **once** per matmul into [`Acts`], to the weight type's
//!   partner ([`act_type`], ggml's `vec_dot_type`): Q8_0 for the 32-value blocks, Q8_K
//!   for the K-quants, and so on. [`Acts`] allocates in [`Acts::new`] only.
//! - [`matmul`] computes `out[v·rows + r] = dot(row r of w, vector v of x)`. One vector
//!   is the decode matvec; several are prefill, tiled so that each weight block is read
//!   once per tile of vectors. Rows are split across [`Threads`]; every output element is
//!   computed by one thread with one fixed arithmetic, so the result is bit-identical
//!   for any thread count, and a vector gives the same result alone or in a batch.
//! - The f32 operators (RMSNorm, softmax, RoPE, SiLU, GELU, add, mul, the f16 KV cache
//!   helpers) live in [`ops`] and follow ggml's arithmetic.
//!
//! # Dispatch
//!
//! One [`Kernels`] table of function pointers per [`KernelLevel`]. The level in use is
//! chosen once per process ([`cpu_features`], [`select`]) from the CPU's features at run
//! time — never from `target-cpu` — and can be forced lower with the environment
//! variable `TRAMONTANE_KERNELS=scalar|avx2|avxvnni|avx512vnni|avx512gfni|neon|dotprod|i8mm` (with `std`). Asking for a
//! level the CPU lacks is an error ([`KernelError::Unavailable`]). Tests and benches
//! reach every level directly through [`kernels`].
//!
//! # Numerics
//!
//! Integer parts of the quantized dot products are exact in i32, as in ggml. The float
//! steps are those of llama.cpp's x86 CPU kernels, so that a model's logits equal
//! llama.cpp's to the last bit (`tests/parity.rs`); every SIMD level reproduces them
//! and equals its scalar twin bit for bit:
//!
//! - **Activations** are quantized as ggml's SIMD `quantize_row_q8_0/q8_1` do
//!   (`x · 127/amax`, rounded half to even; [`crate::quant::quantize_acts_q8_0`]) and as
//!   its reference `quantize_row_q8_K` does for Q8_K.
//! - **32-value blocks** (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL): per block, 8 exact lane
//!   sums (lane `k` = products `4k..4k+3`, the grouping of `maddubs`+`madd` or `sdot`),
//!   converted to f32 and accumulated as `acc_k = fma(dx·dy, lane_k, acc_k)`; then
//!   [`reduce8`]. Q4_1/Q5_1 add `Σ mx·sy`, summed apart, at the end.
//! - **Q4_K**: the arithmetic of ggml's repacked x86 kernels, `acc = fma(isum, d·dy,
//!   acc)` and `accm = fma(msum, dmin·dy, accm)` per super-block, `acc − accm`; for the
//!   vectors its `gemm` takes 4 at a time, one fused multiply-add per 64 values instead
//!   (see [`Kernels::vec_dot_in_batch`]).
//! - **Q6_K**: ggml's AVX2 kernel: 8 lanes of scaled sums of unsigned quants minus
//!   `32·(scale·block sum)` per lane pair, `acc_k = fma(d·dy, lane_k, acc_k)`, [`reduce8`];
//!   in batches of 8 or more, its tiled matmul's `acc = fma(d·isum, dy, acc)`.
//! - **Q2_K, Q3_K, Q5_K, IQ4_XS**: the whole super-block is one exact i32, `t_b =
//!   d·isum − dmin·msum`, summed in order (this crate's order; not llama.cpp's).
//! - **F32, F16, BF16**: 32 f32 lanes, `acc[i % 32] += x_i·y_i` (multiply, then add),
//!   folded `32 → 16 → 8` and summed as `GGML_F32x8_REDUCE` ([`reduce32`]).
//!
//! The f32 operators ([`ops`]) follow ggml likewise (its vectorised `expf`, the GELU
//! table as built with fused multiply-adds, f64 sums where it has them).

use core::fmt;
use core::str::FromStr;

use crate::gguf::GgmlType;

mod acts;
pub(crate) mod attn;
mod level;
pub(crate) mod logits;
pub mod ops;
pub(crate) mod scalar;
mod split;
mod table;
mod threads;

#[cfg(target_arch = "x86_64")]
pub mod x86_64;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;

pub use acts::Acts;
pub use level::{available, best_level, cpu_features, select};
pub use table::{kernels, Kernels, MULTI_MAX};
pub use threads::Threads;

/// A SIMD level, from the portable scalar code up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelLevel {
    /// Portable Rust, every target.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C (Haswell and later).
    Avx2,
    /// AVX2 plus AVX-VNNI (`vpdpbusd` on 256-bit registers: Alder Lake, Sapphire Rapids,
    /// Zen 5 and later); the AVX2 kernels, with VNNI prefill tiles.
    AvxVnni,
    /// AVX2 plus AVX-512 F/BW/VL/VNNI (Ice Lake, Tiger Lake, Sapphire Rapids, Zen 4 and
    /// later); the AVX2 kernels, with 512-bit VNNI prefill tiles (two vectors per
    /// register, each in its own 8 lanes: the same arithmetic).
    Avx512Vnni,
    /// AVX-512 VNNI plus GFNI (Ice Lake, Sapphire Rapids, Zen 4 and later; Cascade Lake
    /// has VNNI without it): the AVX-512 VNNI kernels, with the Q5_0, IQ4_NL and Q4_K
    /// decode rows and the Q5_0 prefill tile taking their nibbles by one GF(2) affine
    /// transform per byte instead of a shift and a mask.
    Avx512Gfni,
    /// aarch64 Advanced SIMD (baseline on aarch64).
    Neon,
    /// aarch64 NEON plus the `sdot` dot-product instructions (Armv8.2 `dotprod`).
    Dotprod,
    /// aarch64 dotprod plus the int8 matrix multiply (Armv8.6 `i8mm`); it runs the
    /// dotprod kernels (`smmla` sums 8 values where llama.cpp's arithmetic of the 32-value
    /// blocks needs 4-value lanes; for the K-quant batches it would need interleaved
    /// layouts, see `kernels/aarch64/i8mm.rs`).
    I8mm,
}

impl KernelLevel {
    /// Every level, lowest first.
    pub const ALL: [KernelLevel; 8] = [
        KernelLevel::Scalar,
        KernelLevel::Avx2,
        KernelLevel::AvxVnni,
        KernelLevel::Avx512Vnni,
        KernelLevel::Avx512Gfni,
        KernelLevel::Neon,
        KernelLevel::Dotprod,
        KernelLevel::I8mm,
    ];

    /// The lower-case name used by `TRAMONTANE_KERNELS`.
    pub const fn name(self) -> &'static str {
        match self {
            KernelLevel::Scalar => "scalar",
            KernelLevel::Avx2 => "avx2",
            KernelLevel::AvxVnni => "avxvnni",
            KernelLevel::Avx512Vnni => "avx512vnni",
            KernelLevel::Avx512Gfni => "avx512gfni",
            KernelLevel::Neon => "neon",
            KernelLevel::Dotprod => "dotprod",
            KernelLevel::I8mm => "i8mm",
        }
    }
}

impl fmt::Display for KernelLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KernelLevel {
    type Err = KernelError;

    /// Parse a level name (case-insensitive, surrounding blanks ignored).
    fn from_str(s: &str) -> Result<Self, KernelError> {
        let s = s.trim();
        KernelLevel::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| KernelError::UnknownLevel {
                name: alloc::string::String::from(s),
            })
    }
}

/// A kernel call did not fit: wrong types or lengths, a level this CPU lacks, …
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// The requested SIMD level cannot run on this CPU (or this build's target).
    #[error("kernel level {level} is not available on this CPU (best available: {best})")]
    Unavailable {
        /// What was asked for.
        level: KernelLevel,
        /// The best level this CPU supports.
        best: KernelLevel,
    },
    /// `TRAMONTANE_KERNELS` (or a parsed string) names no level.
    #[error("unknown kernel level {name:?} (expected scalar, avx2, neon, dotprod or i8mm)")]
    UnknownLevel {
        /// The name given.
        name: alloc::string::String,
    },
    /// There is no dot-product kernel for this weight type.
    #[error("no kernel for {ty} weights")]
    UnsupportedType {
        /// The weight (or activation) type.
        ty: GgmlType,
    },
    /// A weight's [`WeightLayout`] is not one of its type's.
    #[error("{ty} weights cannot take the {layout:?} layout")]
    Layout {
        /// Weight type.
        ty: GgmlType,
        /// The layout given.
        layout: WeightLayout,
    },
    /// The activations were quantized to a type that does not pair with the weights.
    #[error("{weight} weights need {expected} activations, got {got}")]
    ActType {
        /// Weight type.
        weight: GgmlType,
        /// `act_type(weight)`.
        expected: GgmlType,
        /// What the activations hold.
        got: GgmlType,
    },
    /// A row length is not a whole number of blocks of the type.
    #[error("{cols} values are not a whole number of {ty} blocks of {block_size}")]
    NotWholeBlocks {
        /// The type.
        ty: GgmlType,
        /// Row length in values.
        cols: usize,
        /// Values per block.
        block_size: usize,
    },
    /// A length does not match what the shapes say.
    #[error("{what}: expected {expected}, got {got}")]
    Length {
        /// Which buffer or dimension.
        what: &'static str,
        /// What the shapes require.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// More than an [`Acts`] was sized for in [`Acts::new`].
    #[error("{what}: {needed} exceeds the capacity {capacity}")]
    Capacity {
        /// Which dimension.
        what: &'static str,
        /// What the call needs.
        needed: usize,
        /// What was allocated.
        capacity: usize,
    },
    /// A size computation overflowed `usize`.
    #[error("size of {what} overflows")]
    Overflow {
        /// What was being sized.
        what: &'static str,
    },
    /// The thread pool could not be built.
    #[error("cannot start {threads} kernel threads: {reason}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// What the pool builder said.
        reason: alloc::string::String,
    },
}

/// How a [`Weight`]'s rows are laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WeightLayout {
    /// As in the GGUF file: the blocks of its type, one after the other.
    #[default]
    File,
    /// Q5_0 rows repacked by [`crate::quant::repack_q5_0_row`]: groups of 4 blocks as
    /// [`crate::quant::BlockQ5_0x4`], then the row's last `blocks mod 4` blocks. The
    /// same length and the same results as the Q5_0 rows.
    Q5_0x4,
}

/// A weight matrix in its GGUF type, viewed in place: `rows` rows of `cols` values.
#[derive(Clone, Copy, Debug)]
pub struct Weight<'a> {
    /// Tensor name, for error messages.
    pub name: &'a str,
    /// Storage type.
    pub ty: GgmlType,
    /// Values per row (`ne[0]`).
    pub cols: usize,
    /// Number of rows (`ne[1]`).
    pub rows: usize,
    /// `rows × row_bytes(ty, cols)` bytes, at any address.
    pub data: &'a [u8],
    /// How the rows are laid out ([`WeightLayout::File`] unless repacked).
    pub layout: WeightLayout,
}

/// The activation type a weight type is multiplied with (ggml's `vec_dot_type`), or
/// `None` if there is no kernel for it.
pub fn act_type(weight: GgmlType) -> Option<GgmlType> {
    use GgmlType as T;
    Some(match weight {
        T::Q4_0 | T::Q5_0 | T::Q8_0 | T::IQ4_NL => T::Q8_0,
        T::Q4_1 | T::Q5_1 => T::Q8_1,
        T::Q2_K | T::Q3_K | T::Q4_K | T::Q5_K | T::Q6_K | T::IQ4_XS => T::Q8_K,
        T::F16 => T::F16,
        T::BF16 => T::BF16,
        T::F32 => T::F32,
        _ => return None,
    })
}

/// `out[v·rows + r] = dot(row r of w, vector v of x)` with the kernels of the level in
/// use ([`cpu_features`]).
///
/// `x.ty()` must be `act_type(w.ty)`, `x` must hold vectors of `w.cols` values,
/// `w.data.len()` must be `rows × row_bytes` and `out.len()` must be
/// `x.n_vecs() · w.rows`. The result does not depend on `threads`.
pub fn matmul(
    w: &Weight<'_>,
    x: &Acts,
    out: &mut [f32],
    threads: &Threads,
) -> Result<(), KernelError> {
    kernels(cpu_features())?.matmul(w, x, out, threads)
}

/// ggml's `vec_dot_f16`: the dot product of two rows of `n` f16 values (little-endian
/// bytes, any address), in the crate's 32-lane order (see the module docs), with the
/// kernels of the level in use. Slices shorter than `2n` bytes give 0 for the missing
/// products, i.e. only `min(n, a.len()/2, b.len()/2)` values are used.
pub fn vec_dot_f16(a: &[u8], b: &[u8], n: usize) -> f32 {
    let n = n.min(a.len() / 2).min(b.len() / 2);
    let (a, b) = (&a[..2 * n], &b[..2 * n]);
    match kernels(cpu_features()) {
        Ok(k) => k.dot_f16(a, b, n),
        Err(_) => scalar::dot_f16(a, b, n),
    }
}

/// The table of the level in use ([`cpu_features`]), the portable one if that level's
/// table cannot be had (which `cpu_features` rules out: it only picks available levels).
pub(crate) fn in_use() -> &'static Kernels {
    kernels(cpu_features()).unwrap_or(&scalar::SCALAR)
}

/// A read-bandwidth probe: the wrapping sum of `data` as little-endian u64 words (a
/// ragged tail ignored), read as fast as the kernels read weights (the same vector
/// loads and prefetching), so matvec GB/s can be set against it.
pub fn read_probe(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = x86_64::Avx2::detect() {
        return t.read_sum(data);
    }
    data.chunks_exact(8)
        .map(|b| b.try_into().map_or(0, u64::from_le_bytes))
        .fold(0, u64::wrapping_add)
}

/// Sum 8 lanes in the fixed order of every level: `s_k = a_k + a_{k+4}`,
/// `t_k = s_k + s_{k+2}`, result `t_0 + t_1`.
#[inline(always)]
pub fn reduce8(a: [f32; 8]) -> f32 {
    let s = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    let t = [s[0] + s[2], s[1] + s[3]];
    t[0] + t[1]
}

/// Sum 32 lanes as ggml's `GGML_F32x8_REDUCE` (x86): fold `32 → 16 → 8` (upper half
/// onto lower half), then `[s_i = c_i + c_{i+4}]` and `(s0 + s1) + (s2 + s3)` (the
/// two `hadd`s).
#[inline(always)]
pub fn reduce32(a: [f32; 32]) -> f32 {
    let mut b = [0.0f32; 16];
    for (k, v) in b.iter_mut().enumerate() {
        *v = a[k] + a[k + 16];
    }
    let mut c = [0.0f32; 8];
    for (k, v) in c.iter_mut().enumerate() {
        *v = b[k] + b[k + 8];
    }
    let s = [c[0] + c[4], c[1] + c[5], c[2] + c[6], c[3] + c[7]];
    (s[0] + s[1]) + (s[2] + s[3])
}
