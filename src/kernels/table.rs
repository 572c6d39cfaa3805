//! The table of kernel function pointers for one level, and the matmul driver on top.

use super::acts::row_bytes;
use super::{act_type, scalar, Acts, KernelError, KernelLevel, Threads, Weight, WeightLayout};
use crate::gguf::GgmlType;
use core::sync::atomic::{AtomicU8, Ordering};

/// Dot product of one weight row with one activation row of `n` values.
///
/// # Safety
///
/// The CPU must support the table's level. `x` must hold exactly `n` values of the
/// weight type and `y` exactly `n` values of its activation type (whole blocks).
pub(crate) type DotFn = unsafe fn(x: &[u8], y: &[u8], n: usize) -> f32;

/// Dot products of one weight row with up to 4 activation rows (`ys[..nv]`), each
/// computed exactly as [`DotFn`] would; `out[nv..]` is left as is.
///
/// # Safety
///
/// As [`DotFn`], for each of `ys[..nv]`; `nv ≤ 4`.
pub(crate) type Dot4Fn =
    unsafe fn(x: &[u8], ys: [&[u8]; 4], nv: usize, n: usize, out: &mut [f32; 4]);

/// Dot products of 2 weight rows with 2 activation rows:
/// `[x0·y0, x0·y1, x1·y0, x1·y1]`, each computed exactly as [`DotFn`] would.
///
/// # Safety
///
/// As [`DotFn`], for each pair.
pub(crate) type Dot2x2Fn = unsafe fn(x: [&[u8]; 2], y: [&[u8]; 2], n: usize) -> [f32; 4];

/// Dot products of `out.len()` consecutive weight rows (`x`, `n` values each) with one
/// activation row `y`, each computed exactly as [`DotFn`] would.
///
/// # Safety
///
/// As [`DotFn`]: `x` must hold exactly `out.len()` rows of `n` values of the weight type
/// and `y` one row of `n` values of its activation type.
pub(crate) type DotRowsFn = unsafe fn(x: &[u8], y: &[u8], n: usize, out: &mut [f32]);

/// Dot products of up to [`GEMM_ROWS`] weight rows (`xs[..nr]`) with up to
/// [`GEMM_TILE`] activation rows (`ys[..nv]`, vectors `v0..v0 + nv` of a batch, `v0` a
/// multiple of 16): `out[v][r] = xs[r]·ys[v]`, each computed exactly as
/// [`Kernels::vec_dot_in_batch`] computes it for its vector; other entries of `out` are
/// left as they are.
///
/// # Safety
///
/// As [`DotFn`], for each pair; `nr ≤ GEMM_ROWS`, `nv ≤ GEMM_TILE`.
pub(crate) type GemmFn = unsafe fn(
    xs: &[&[u8]; GEMM_ROWS],
    nr: usize,
    ys: &[&[u8]; GEMM_TILE],
    nv: usize,
    n: usize,
    out: &mut [[f32; GEMM_ROWS]; GEMM_TILE],
);

/// Vectors of a [`GemmFn`] tile.
pub(crate) const GEMM_TILE: usize = 16;

/// Rows of a [`GemmFn`] call: the tile's per-vector preparation (block scales,
/// quants, offset corrections) is made once for this many rows.
pub(crate) const GEMM_ROWS: usize = 32;

/// f16 (little-endian bytes) → f32 for `min(src.len() / 2, dst.len())` values, exactly.
///
/// # Safety
///
/// The CPU must support the table's level.
pub(crate) type F16ToF32Fn = unsafe fn(src: &[u8], dst: &mut [f32]);

/// f32 → f16 (round to nearest even) for `min(src.len(), dst.len() / 2)` values.
///
/// # Safety
///
/// The CPU must support the table's level.
pub(crate) type F32ToF16Fn = unsafe fn(src: &[f32], dst: &mut [u8]);

/// `gate ← silu(gate) · up` for one row (see [`crate::model::ops::swiglu_row`]).
///
/// # Safety
///
/// The CPU must support the table's level.
pub(crate) type SwigluFn = unsafe fn(gate: &mut [f32], up: &[f32]);

/// Quantize one row of activations into exactly `row_bytes(ty, src.len())` bytes of
/// `dst` (see [`super::Acts`]); the same bytes at every level.
///
/// # Safety
///
/// The CPU must support the table's level.
pub(crate) type QuantizeActsFn =
    unsafe fn(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), KernelError>;

/// RoPE of one head in place (see [`crate::model::ops::rope_head`]).
///
/// # Safety
///
/// The CPU must support the table's level.
pub(crate) type RopeFn = unsafe fn(x: &mut [f32], cs: &[(f32, f32)], neox: bool);

/// The largest of a row of logits (see [`super::logits::max_logit_body`]).
///
/// # Safety
///
/// The CPU must support the table's level.
pub(crate) type MaxLogitFn = unsafe fn(logits: &[f32]) -> f32;

/// `l − log Σ e^logit` over a row of logits, given their maximum (see
/// [`super::logits::log_softmax_body`]).
///
/// # Safety
///
/// The CPU must support the table's level.
pub(crate) type LogSoftmaxFn = unsafe fn(logits: &[f32], l: f32, max: f32) -> f32;

/// The kernels for one weight type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TypeKernels {
    pub(crate) dot: DotFn,
    /// A kernel that unpacks each weight block once for up to 4 vectors, if the level
    /// has one for this type (else `dot` is called per vector).
    pub(crate) dot4: Option<Dot4Fn>,
    /// A 2 rows × 2 vectors kernel (i8mm `smmla`), used first when present.
    pub(crate) dot2x2: Option<Dot2x2Fn>,
    /// The dot product llama.cpp's x86 code uses for some vectors of a batch, with
    /// other float arithmetic than for one vector (see [`BatchRule`]).
    pub(crate) batch: Option<(Dot4Fn, BatchRule)>,
    /// A tile of up to [`GEMM_ROWS`] rows × [`GEMM_TILE`] vectors for batches (work
    /// shared by rows and by vectors), used first when present; same results as
    /// [`Kernels::vec_dot_in_batch`].
    pub(crate) gemm: Option<GemmFn>,
    /// `gemm` computes only the `batch` arithmetic: it is used only for batches whose
    /// every vector takes it ([`BatchRule::applies_to_all`]).
    pub(crate) gemm_batch_only: bool,
    /// The single dot over consecutive rows in one call (the decode matvec), if the
    /// level has it for this type.
    pub(crate) dot_rows: Option<DotRowsFn>,
}

/// Which vectors of a batch of `nv` take [`TypeKernels::batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchRule {
    /// With `nv ≥ 4`, all but the last `nv mod 4` (Q4_K: the repacked `gemm` kernel
    /// takes 4 vectors at a time, `gemv` the rest).
    Groups4,
    /// All of them when `nv ≥ 8` (Q6_K: the tiled K-quant matmul).
    AllFrom8,
}

impl BatchRule {
    /// Whether vector `v` of a batch of `nv` uses the batch kernel.
    #[inline]
    pub(crate) fn applies(self, v: usize, nv: usize) -> bool {
        match self {
            BatchRule::Groups4 => nv >= 4 && v < nv - nv % 4,
            BatchRule::AllFrom8 => nv >= 8,
        }
    }

    /// Whether every vector of a batch of `nv` uses the batch kernel.
    #[inline]
    pub(crate) fn applies_to_all(self, nv: usize) -> bool {
        match self {
            BatchRule::Groups4 => nv >= 4 && nv.is_multiple_of(4),
            BatchRule::AllFrom8 => nv >= 8,
        }
    }
}

impl TypeKernels {
    /// A dot kernel alone.
    pub(crate) const fn single(dot: DotFn) -> Self {
        TypeKernels {
            dot,
            dot4: None,
            dot2x2: None,
            batch: None,
            gemm: None,
            gemm_batch_only: false,
            dot_rows: None,
        }
    }

    /// The same kernels with a batch twin (see [`TypeKernels::batch`]).
    pub(crate) const fn with_batch(self, batch: Dot4Fn, rule: BatchRule) -> Self {
        TypeKernels {
            batch: Some((batch, rule)),
            ..self
        }
    }

    /// A dot kernel and its 4-vector twin.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) const fn tiled(dot: DotFn, dot4: Dot4Fn) -> Self {
        TypeKernels {
            dot,
            dot4: Some(dot4),
            dot2x2: None,
            batch: None,
            gemm: None,
            gemm_batch_only: false,
            dot_rows: None,
        }
    }

    /// The same kernels with a multi-row matvec entry (see [`TypeKernels::dot_rows`]).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) const fn with_rows(self, dot_rows: DotRowsFn) -> Self {
        TypeKernels {
            dot_rows: Some(dot_rows),
            ..self
        }
    }

    /// The same kernels with a prefill tile (see [`TypeKernels::gemm`]).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) const fn with_gemm(self, gemm: GemmFn) -> Self {
        TypeKernels {
            gemm: Some(gemm),
            ..self
        }
    }

    /// The same kernels with a prefill tile that computes the `batch` arithmetic alone
    /// (see [`TypeKernels::gemm_batch_only`]).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) const fn with_batch_gemm(self, gemm: GemmFn) -> Self {
        TypeKernels {
            gemm: Some(gemm),
            gemm_batch_only: true,
            ..self
        }
    }
}

/// The kernels of one SIMD level: one entry per weight type.
///
/// A value of this type exists only for a level the CPU supports: the scalar table is
/// always valid, the others are handed out by the capability types (`Avx2::detect()`,
/// `Neon::detect()`, …) through [`kernels`]. That invariant is what makes the safe
/// methods sound.
#[derive(Debug)]
pub struct Kernels {
    pub(crate) level: KernelLevel,
    pub(crate) q4_0: TypeKernels,
    pub(crate) q4_1: TypeKernels,
    pub(crate) q5_0: TypeKernels,
    /// Q5_0 rows in the [`WeightLayout::Q5_0x4`] layout.
    pub(crate) q5_0x4: TypeKernels,
    pub(crate) q5_1: TypeKernels,
    pub(crate) q8_0: TypeKernels,
    pub(crate) q2_k: TypeKernels,
    pub(crate) q3_k: TypeKernels,
    pub(crate) q4_k: TypeKernels,
    pub(crate) q5_k: TypeKernels,
    pub(crate) q6_k: TypeKernels,
    pub(crate) iq4_nl: TypeKernels,
    pub(crate) iq4_xs: TypeKernels,
    pub(crate) f32: TypeKernels,
    pub(crate) f16: TypeKernels,
    pub(crate) bf16: TypeKernels,
    /// Row conversions for an f16 KV cache.
    pub(crate) f16_to_f32: F16ToF32Fn,
    pub(crate) f32_to_f16: F32ToF16Fn,
    /// SwiGLU of one row.
    pub(crate) swiglu: SwigluFn,
    /// Activation quantization of one row.
    pub(crate) quantize_acts: QuantizeActsFn,
    /// RoPE of one head.
    pub(crate) rope: RopeFn,
    /// Attention of one query head (see [`super::attn`]).
    pub(crate) attn: super::attn::AttnKernels,
    /// The sampler's passes over the logits (see [`super::logits`]).
    pub(crate) max_logit: MaxLogitFn,
    pub(crate) log_softmax_at: LogSoftmaxFn,
}

/// The table of `level`, or [`KernelError::Unavailable`] if the CPU lacks it.
pub fn kernels(level: KernelLevel) -> Result<&'static Kernels, KernelError> {
    let unavailable = || KernelError::Unavailable {
        level,
        best: super::best_level(),
    };
    match level {
        KernelLevel::Scalar => Ok(&scalar::SCALAR),
        #[cfg(target_arch = "x86_64")]
        KernelLevel::Avx2 => super::x86_64::Avx2::detect()
            .map(|t| t.kernels())
            .ok_or_else(unavailable),
        #[cfg(target_arch = "x86_64")]
        KernelLevel::AvxVnni => super::x86_64::AvxVnni::detect()
            .map(|t| t.kernels())
            .ok_or_else(unavailable),
        #[cfg(target_arch = "x86_64")]
        KernelLevel::Avx512Vnni => super::x86_64::Avx512Vnni::detect()
            .map(|t| t.kernels())
            .ok_or_else(unavailable),
        #[cfg(target_arch = "x86_64")]
        KernelLevel::Avx512Gfni => super::x86_64::Avx512Gfni::detect()
            .map(|t| t.kernels())
            .ok_or_else(unavailable),
        #[cfg(target_arch = "aarch64")]
        KernelLevel::Neon => super::aarch64::Neon::detect()
            .map(|t| t.kernels())
            .ok_or_else(unavailable),
        #[cfg(target_arch = "aarch64")]
        KernelLevel::Dotprod => super::aarch64::Dotprod::detect()
            .map(|t| t.kernels())
            .ok_or_else(unavailable),
        #[cfg(target_arch = "aarch64")]
        KernelLevel::I8mm => super::aarch64::I8mm::detect()
            .map(|t| t.kernels())
            .ok_or_else(unavailable),
        #[allow(unreachable_patterns)]
        _ => Err(unavailable()),
    }
}

impl Kernels {
    /// The portable table.
    pub(crate) const fn scalar() -> Self {
        use scalar as s;
        Kernels {
            level: KernelLevel::Scalar,
            q4_0: TypeKernels::single(s::dot_q4_0),
            q4_1: TypeKernels::single(s::dot_q4_1),
            q5_0: TypeKernels::single(s::dot_q5_0),
            q5_0x4: TypeKernels::single(s::dot_q5_0x4),
            q5_1: TypeKernels::single(s::dot_q5_1),
            q8_0: TypeKernels::single(s::dot_q8_0),
            q2_k: TypeKernels::single(s::dot_q2_k),
            q3_k: TypeKernels::single(s::dot_q3_k),
            q4_k: TypeKernels::single(s::dot_q4_k)
                .with_batch(s::dot4_q4_k_batch, BatchRule::Groups4),
            q5_k: TypeKernels::single(s::dot_q5_k),
            q6_k: TypeKernels::single(s::dot_q6_k)
                .with_batch(s::dot4_q6_k_batch, BatchRule::AllFrom8),
            iq4_nl: TypeKernels::single(s::dot_iq4_nl),
            iq4_xs: TypeKernels::single(s::dot_iq4_xs),
            f32: TypeKernels::single(s::dot_f32),
            f16: TypeKernels::single(s::dot_f16),
            bf16: TypeKernels::single(s::dot_bf16),
            f16_to_f32: s::f16_to_f32_row,
            f32_to_f16: s::f32_to_f16_row,
            swiglu: s::swiglu_row,
            quantize_acts: super::acts::quantize_into,
            rope: crate::model::ops::rope_head,
            attn: super::attn::SCALAR,
            max_logit: super::logits::max_logit,
            log_softmax_at: super::logits::log_softmax_at,
        }
    }

    /// The level of this table.
    pub fn level(&self) -> KernelLevel {
        self.level
    }

    pub(crate) fn for_type(&self, ty: GgmlType) -> Option<&TypeKernels> {
        use GgmlType as T;
        Some(match ty {
            T::Q4_0 => &self.q4_0,
            T::Q4_1 => &self.q4_1,
            T::Q5_0 => &self.q5_0,
            T::Q5_1 => &self.q5_1,
            T::Q8_0 => &self.q8_0,
            T::Q2_K => &self.q2_k,
            T::Q3_K => &self.q3_k,
            T::Q4_K => &self.q4_k,
            T::Q5_K => &self.q5_k,
            T::Q6_K => &self.q6_k,
            T::IQ4_NL => &self.iq4_nl,
            T::IQ4_XS => &self.iq4_xs,
            T::F32 => &self.f32,
            T::F16 => &self.f16,
            T::BF16 => &self.bf16,
            _ => return None,
        })
    }

    /// Dot product of one row of `n` values of `ty` (`x`, bytes at any address) with one
    /// row of `n` values of `act_type(ty)` (`y`), e.g. a vector from [`Acts::vec_bytes`].
    pub fn vec_dot(&self, ty: GgmlType, x: &[u8], y: &[u8], n: usize) -> Result<f32, KernelError> {
        let (k, at) = self.checked(ty)?;
        check_len("weight row bytes", row_bytes(ty, n)?, x.len())?;
        check_len("activation row bytes", row_bytes(at, n)?, y.len())?;
        // SAFETY: this table exists only for a level the CPU supports (see the type's
        // docs), and both rows were just checked to hold exactly `n` values.
        Ok(unsafe { (k.dot)(x, y, n) })
    }

    /// The dot product [`Kernels::matmul`] computes for vector `v` of a batch of `nv`:
    /// [`Kernels::vec_dot`], except for the vectors that llama.cpp's x86 code multiplies
    /// with other float arithmetic in a batch (Q4_K from 4 vectors on, Q6_K from 8),
    /// whose arithmetic the matmul follows so that batches give llama.cpp's results.
    pub fn vec_dot_in_batch(
        &self,
        ty: GgmlType,
        x: &[u8],
        y: &[u8],
        n: usize,
        v: usize,
        nv: usize,
    ) -> Result<f32, KernelError> {
        let (k, at) = self.checked(ty)?;
        check_len("weight row bytes", row_bytes(ty, n)?, x.len())?;
        check_len("activation row bytes", row_bytes(at, n)?, y.len())?;
        match k.batch {
            Some((bd, rule)) if rule.applies(v - v % 4, nv) => {
                let mut out = [0.0f32; 4];
                // SAFETY: as in `vec_dot`, for one vector.
                unsafe { bd(x, [y; 4], 1, n, &mut out) };
                Ok(out[0])
            }
            // SAFETY: as in `vec_dot`.
            _ => Ok(unsafe { (k.dot)(x, y, n) }),
        }
    }

    /// f16 (little-endian bytes, any address) → f32 for `min(src.len() / 2, dst.len())`
    /// values, exactly (the same result at every level).
    pub fn f16_to_f32_row(&self, src: &[u8], dst: &mut [f32]) {
        // SAFETY: this table exists only for a level the CPU supports; the kernel
        // bounds itself by both lengths.
        unsafe { (self.f16_to_f32)(src, dst) }
    }

    /// f32 → f16 (round to nearest even) for `min(src.len(), dst.len() / 2)` values;
    /// the same bits at every level, except possibly NaN payloads.
    pub fn f32_to_f16_row(&self, src: &[f32], dst: &mut [u8]) {
        // SAFETY: as above.
        unsafe { (self.f32_to_f16)(src, dst) }
    }

    /// RoPE of one head in place, as the model's portable `rope_head` (the same bits at
    /// every level: a level with an FMA instruction runs the fused multiply-adds as
    /// instructions instead of calls).
    pub fn rope_head(&self, x: &mut [f32], cs: &[(f32, f32)], neox: bool) {
        // SAFETY: this table exists only for a level the CPU supports; the kernel
        // bounds itself by the slices' lengths.
        unsafe { (self.rope)(x, cs, neox) }
    }

    /// Quantize one row of activations into exactly `row_bytes(ty, src.len())` bytes.
    pub(crate) fn quantize_acts(
        &self,
        ty: GgmlType,
        src: &[f32],
        dst: &mut [u8],
    ) -> Result<(), KernelError> {
        // SAFETY: this table exists only for a level the CPU supports; the kernel
        // checks every length itself.
        unsafe { (self.quantize_acts)(ty, src, dst) }
    }

    /// `gate ← silu(gate) · up` for one row (ggml's `swiglu`: its vectorised `expf` for
    /// whole groups of 16 values, the C library's for the tail); the same bits at every
    /// level. Values past the shorter slice are left as they are.
    pub fn swiglu_row(&self, gate: &mut [f32], up: &[f32]) {
        // SAFETY: this table exists only for a level the CPU supports; the kernel
        // bounds itself by both lengths.
        unsafe { (self.swiglu)(gate, up) }
    }

    /// The largest logit, NaN skipped; −∞ if there is none. The same value at every
    /// level.
    pub(crate) fn max_logit(&self, logits: &[f32]) -> f32 {
        // SAFETY: this table exists only for a level the CPU supports; the kernel
        // reads only `logits`.
        unsafe { (self.max_logit)(logits) }
    }

    /// `l − max − log Σ e^(logit − max)` over `logits` (NaN logits count for nothing),
    /// given their maximum `max`. The same bits at every level.
    pub(crate) fn log_softmax_at(&self, logits: &[f32], l: f32, max: f32) -> f32 {
        // SAFETY: this table exists only for a level the CPU supports; the kernel
        // reads only `logits`.
        unsafe { (self.log_softmax_at)(logits, l, max) }
    }

    /// f16 · f16 for rows already checked to hold `n` values each.
    pub(crate) fn dot_f16(&self, x: &[u8], y: &[u8], n: usize) -> f32 {
        if x.len() != 2 * n || y.len() != 2 * n {
            return scalar::dot_f16(x, y, n);
        }
        // SAFETY: level supported (type invariant); both rows hold exactly `n` f16.
        unsafe { (self.f16.dot)(x, y, n) }
    }

    fn checked(&self, ty: GgmlType) -> Result<(&TypeKernels, GgmlType), KernelError> {
        let at = act_type(ty).ok_or(KernelError::UnsupportedType { ty })?;
        let k = self
            .for_type(ty)
            .ok_or(KernelError::UnsupportedType { ty })?;
        Ok((k, at))
    }

    /// The kernels of `w`'s type and layout; the activations `got` must be of the
    /// weight's partner type.
    fn checked_for(&self, w: &Weight<'_>, got: GgmlType) -> Result<&TypeKernels, KernelError> {
        let ty = w.ty;
        let (k, at) = self.checked(ty)?;
        if got != at {
            return Err(KernelError::ActType {
                weight: ty,
                expected: at,
                got,
            });
        }
        match (w.layout, ty) {
            (WeightLayout::File, _) => Ok(k),
            (WeightLayout::Q5_0x4, GgmlType::Q5_0) => Ok(&self.q5_0x4),
            (layout, ty) => Err(KernelError::Layout { ty, layout }),
        }
    }

    /// [`super::matmul`] with this table.
    pub fn matmul(
        &self,
        w: &Weight<'_>,
        x: &Acts,
        out: &mut [f32],
        threads: &Threads,
    ) -> Result<(), KernelError> {
        let k = self.checked_for(w, x.ty())?;
        let n = w.cols;
        if x.n_vecs() > 0 {
            check_len("activation columns", n, x.cols())?;
        }
        let wrow = row_bytes(w.ty, n)?;
        let wbytes = wrow.checked_mul(w.rows).ok_or(KernelError::Overflow {
            what: "weight bytes",
        })?;
        check_len("weight bytes", wbytes, w.data.len())?;
        let nv = x.n_vecs();
        let total = nv
            .checked_mul(w.rows)
            .ok_or(KernelError::Overflow { what: "output" })?;
        check_len("output length", total, out.len())?;
        if total == 0 {
            return Ok(());
        }
        let arow = x.row_bytes();
        let acts = x.bytes();
        let rows = w.rows;
        let data = w.data;
        let chunk = task_rows(rows, threads);

        if nv == 1 {
            threads.for_rows(out, chunk, |first, piece| {
                let xs = data
                    .get(first * wrow..(first + piece.len()) * wrow)
                    .unwrap_or(&[]);
                // SAFETY: `k` is this table's (level supported); `xs` holds `piece.len()`
                // whole rows of `n` values (rows·wrow bytes checked above, first +
                // piece.len() ≤ rows) and `acts` one vector of the partner type.
                unsafe { dot_piece(k, xs, wrow, acts, n, piece) };
            });
            return Ok(());
        }

        let shared = SharedOut::new(out);
        // A batch-only tile, for batches whose vectors all take the batch arithmetic
        // (Q6_K: 8 or more); the others go the way below, vector by vector.
        let gemm = k.gemm.filter(|_| {
            !k.gemm_batch_only || k.batch.is_some_and(|(_, rule)| rule.applies_to_all(nv))
        });
        if let Some(gemm) = gemm {
            // Whole calls of GEMM_ROWS rows per task where the rows allow.
            let chunk = chunk.next_multiple_of(GEMM_ROWS);
            let n_tasks = rows.div_ceil(chunk);
            threads.for_tasks(n_tasks, |task| {
                let r0 = task * chunk;
                let r1 = (r0 + chunk).min(rows);
                let row = |r: usize| data.get(r * wrow..(r + 1) * wrow).unwrap_or(&[]);
                // The tile writes every entry read back below.
                let mut res = [[0.0f32; GEMM_ROWS]; GEMM_TILE];
                // Whole tiles of 16 vectors (the 256-bit tiles take them 8 at a time; for
                // those, 6 and 4 measured slower than 8). Vector tiles outside, the task's
                // rows inside: the task's weight rows stay in L2 from one vector tile to
                // the next, and each of the tile's vectors gets its outputs written in
                // one run after the other (rows outside wrote 32 floats into each of all
                // the batch's output rows in turn: Qwen's 512-token prefill took 4-6%
                // longer that way, 64 tokens the same).
                for v0 in (0..nv).step_by(GEMM_TILE) {
                    let vn = (nv - v0).min(GEMM_TILE);
                    let ys: [&[u8]; GEMM_TILE] = core::array::from_fn(|i| {
                        let v = v0 + i.min(vn - 1);
                        acts.get(v * arow..(v + 1) * arow).unwrap_or(&[])
                    });
                    for rb in (r0..r1).step_by(GEMM_ROWS) {
                        let nr = (r1 - rb).min(GEMM_ROWS);
                        let xs: [&[u8]; GEMM_ROWS] =
                            core::array::from_fn(|i| row(rb + i.min(nr - 1)));
                        // SAFETY: level supported (type invariant); `xs[..nr]` are whole
                        // rows of `n` values (rows·wrow bytes checked above, rb + nr ≤
                        // rows), `ys[..vn]` whole vectors of the partner type; nr ≤ 32, vn ≤ 16.
                        unsafe { gemm(&xs, nr, &ys, vn, n, &mut res) };
                        for (v, rv) in res.iter().enumerate().take(vn) {
                            shared.write_run((v0 + v) * rows + rb, &rv[..nr]);
                        }
                    }
                }
            });
            return Ok(());
        }
        threads.for_tasks(rows.div_ceil(chunk), |task| {
            let r0 = task * chunk;
            let r1 = (r0 + chunk).min(rows);
            // Row blocks so that a few weight rows stay in L1 while all vectors pass.
            for rb in (r0..r1).step_by(ROW_BLOCK) {
                let rb1 = (rb + ROW_BLOCK).min(r1);
                for v0 in (0..nv).step_by(4) {
                    let vn = (nv - v0).min(4);
                    let ys: [&[u8]; 4] = core::array::from_fn(|i| {
                        let v = v0 + i.min(vn - 1);
                        acts.get(v * arow..(v + 1) * arow).unwrap_or(&[])
                    });
                    let row = |r: usize| data.get(r * wrow..(r + 1) * wrow).unwrap_or(&[]);
                    let mut r = rb;
                    if let Some(d22) = k.dot2x2 {
                        // 2×2 tiles first (rows r, r+1 × vector pairs of this tile).
                        while r + 2 <= rb1 && vn >= 2 {
                            let xs = [row(r), row(r + 1)];
                            for vp in (0..vn - vn % 2).step_by(2) {
                                // SAFETY: as for the single dot, for the 4 pairs.
                                let res = unsafe { d22(xs, [ys[vp], ys[vp + 1]], n) };
                                shared.write((v0 + vp) * rows + r, res[0]);
                                shared.write((v0 + vp + 1) * rows + r, res[1]);
                                shared.write((v0 + vp) * rows + r + 1, res[2]);
                                shared.write((v0 + vp + 1) * rows + r + 1, res[3]);
                            }
                            if vn % 2 == 1 {
                                for (i, x) in xs.into_iter().enumerate() {
                                    // SAFETY: as above.
                                    let v = unsafe { (k.dot)(x, ys[vn - 1], n) };
                                    shared.write((v0 + vn - 1) * rows + r + i, v);
                                }
                            }
                            r += 2;
                        }
                    }
                    for r in r..rb1 {
                        let xr = row(r);
                        let mut res = [0.0f32; 4];
                        let batch = k.batch.filter(|(_, rule)| rule.applies(v0, nv));
                        if let Some((bd, _)) = batch {
                            // Both rules cover whole groups of 4 aligned on `v0`.
                            // SAFETY: as for the 4-vector kernel below.
                            unsafe { bd(xr, ys, vn, n, &mut res) };
                        } else if let Some(dot4) = k.dot4 {
                            // SAFETY: as for the single dot: supported level, whole rows
                            // of `n` values, vn ≤ 4.
                            unsafe { dot4(xr, ys, vn, n, &mut res) };
                        } else {
                            for (o, y) in res.iter_mut().zip(ys).take(vn) {
                                // SAFETY: as above.
                                *o = unsafe { (k.dot)(xr, y, n) };
                            }
                        }
                        for (i, val) in res.iter().enumerate().take(vn) {
                            shared.write((v0 + i) * rows + r, *val);
                        }
                    }
                }
            }
        });
        Ok(())
    }
}

/// The most matrices [`Kernels::matvec_multi`] takes in one call.
pub const MULTI_MAX: usize = 3;

/// The most runs of rows [`Kernels::matvec_pair_then`] splits its matrices into (one
/// completion counter each, on the stack); more rows make longer runs.
const PAIR_MAX_RUNS: usize = 256;

impl Kernels {
    /// Several matrices against the same vectors in one parallel section: `outs[i] =
    /// ws[i] · x`, each exactly as [`Kernels::matmul`] computes it (same results, any
    /// thread count). For one vector (the decode matvec) the row chunks of all matrices
    /// are handed out as the tasks of one job, which saves the pool's hand-off and the
    /// wait for the slowest thread per matrix; batches go through `matmul` one matrix
    /// after the other. At most [`MULTI_MAX`] matrices (one output slice each), all
    /// with the activation type of `x`.
    pub fn matvec_multi(
        &self,
        ws: &[Weight<'_>],
        x: &Acts,
        outs: &mut [&mut [f32]],
        threads: &Threads,
    ) -> Result<(), KernelError> {
        let n = ws.len();
        check_len("outputs of one multi-matvec", n, outs.len())?;
        if n > MULTI_MAX {
            return Err(KernelError::Length {
                what: "matrices of one multi-matvec",
                expected: MULTI_MAX,
                got: n,
            });
        }
        let fused = x.n_vecs() == 1 && threads.count() > 1;
        if !fused {
            for (w, out) in ws.iter().zip(outs.iter_mut()) {
                self.matmul(w, x, out, threads)?;
            }
            return Ok(());
        }
        // The checks of `matmul`, per matrix; then each matrix's chunks as tasks.
        let mut plan = [Part::EMPTY; MULTI_MAX];
        let mut n_tasks = 0usize;
        for ((w, out), p) in ws.iter().zip(outs.iter_mut()).zip(plan.iter_mut()) {
            let chunk = task_rows(w.rows, threads);
            *p = self.part(w, x, out, chunk, n_tasks)?;
            n_tasks = p.end_task;
        }
        let acts = x.bytes();
        let plan = &plan[..n];
        threads.for_tasks(n_tasks, |task| {
            if let Some(p) = plan.iter().find(|p| task < p.end_task) {
                // SAFETY: `for_tasks` hands each task index to one call of this closure.
                unsafe { p.rows_of_task(task, acts) };
            }
        });
        Ok(())
    }

    /// A feed-forward's `up` and `gate` for one vector (`outs = [up · x, gate · x]`,
    /// each exactly as [`Kernels::matmul`] computes it), then `then(first, up_rows,
    /// gate_rows)` on each run of rows `first..` in the same parallel section: the
    /// task that finishes the second of a run's two pieces (usually the `gate` one)
    /// runs `then` on it. The activation (and any bias) so runs on every thread,
    /// beside the other threads' dot products, with no pass of its own; the matrices
    /// stream as in [`Kernels::matvec_multi`] (all of `up`, then all of `gate`).
    ///
    /// The runs start at multiples of `align` rows (`then`'s vector width), so an
    /// element-wise `then` that treats a row's tail apart sees it where the whole row
    /// puts it, and gives the same results as on whole rows. Both matrices must have
    /// the same rows and the activation type of `x`, which holds one vector.
    pub fn matvec_pair_then(
        &self,
        ws: [&Weight<'_>; 2],
        x: &Acts,
        outs: [&mut [f32]; 2],
        align: usize,
        threads: &Threads,
        then: impl Fn(usize, &mut [f32], &mut [f32]) + Sync + Send,
    ) -> Result<(), KernelError> {
        let [up, gate] = ws;
        check_len("vectors of a paired matvec", 1, x.n_vecs())?;
        check_len("rows of a paired matvec", up.rows, gate.rows)?;
        let align = align.max(1);
        let mut chunk = task_rows(up.rows, threads).next_multiple_of(align);
        if up.rows.div_ceil(chunk) > PAIR_MAX_RUNS {
            chunk = up.rows.div_ceil(PAIR_MAX_RUNS).next_multiple_of(align);
        }
        let [up_out, gate_out] = outs;
        let pu = self.part(up, x, up_out, chunk, 0)?;
        let runs = pu.end_task;
        let pg = self.part(gate, x, gate_out, chunk, runs)?;
        // Pieces finished per run: 0, 1, then 2 once both are.
        let done = [const { AtomicU8::new(0) }; PAIR_MAX_RUNS];
        let acts = x.bytes();
        threads.for_tasks(2 * runs, |task| {
            let (mine, other, run) = if task < runs {
                (&pu, &pg, task)
            } else {
                (&pg, &pu, task - runs)
            };
            // SAFETY: `for_tasks` hands each task index to one call of this closure.
            let Some(piece) = (unsafe { mine.rows_of_task(task, acts) }) else {
                return;
            };
            let Some(n_done) = done.get(run) else { return };
            // AcqRel: the second finisher sees every write of the first one's piece.
            if n_done.fetch_add(1, Ordering::AcqRel) != 1 {
                return;
            }
            let first = run * chunk;
            let end = (first + chunk).min(other.out.len);
            // SAFETY: the other piece of this run was written by a task that has
            // finished (the counter read 1 after it) and that no longer uses it; only
            // the run's second finisher, this task, gets here, once; and it is in the
            // other output than `piece`.
            let Some(rest) = (unsafe { other.out.piece(first, end) }) else {
                return;
            };
            if task < runs {
                then(first, piece, rest);
            } else {
                then(first, rest, piece);
            }
        });
        Ok(())
    }

    /// The checks of `matmul` for `w` against the one vector of `x` into `out`, and
    /// the matrix as tasks `first_task..` of `chunk` rows each.
    fn part<'a>(
        &'a self,
        w: &Weight<'a>,
        x: &Acts,
        out: &'a mut [f32],
        chunk: usize,
        first_task: usize,
    ) -> Result<Part<'a>, KernelError> {
        let k = self.checked_for(w, x.ty())?;
        check_len("activation columns", w.cols, x.cols())?;
        let wrow = row_bytes(w.ty, w.cols)?;
        let wbytes = wrow.checked_mul(w.rows).ok_or(KernelError::Overflow {
            what: "weight bytes",
        })?;
        check_len("weight bytes", wbytes, w.data.len())?;
        check_len("output length", w.rows, out.len())?;
        let chunk = chunk.max(1);
        Ok(Part {
            k: Some(k),
            data: w.data,
            cols: w.cols,
            wrow,
            chunk,
            first_task,
            end_task: first_task + w.rows.div_ceil(chunk),
            out: SharedOut::new(out),
        })
    }
}

/// One matrix of [`Kernels::matvec_multi`] or [`Kernels::matvec_pair_then`]: its
/// kernels, bytes, row chunks and tasks.
struct Part<'a> {
    k: Option<&'a TypeKernels>,
    data: &'a [u8],
    cols: usize,
    wrow: usize,
    chunk: usize,
    first_task: usize,
    end_task: usize,
    out: SharedOut<'a>,
}

impl Part<'_> {
    const EMPTY: Part<'static> = Part {
        k: None,
        data: &[],
        cols: 0,
        wrow: 0,
        chunk: 1,
        first_task: 0,
        end_task: 0,
        out: SharedOut {
            ptr: core::ptr::null_mut(),
            len: 0,
            _out: core::marker::PhantomData,
        },
    };

    /// Task `task`'s rows of this matrix against the vector `acts`, into their piece
    /// of the output, which is returned (`None` if the task is not this matrix's).
    ///
    /// # Safety
    ///
    /// No other call for the same task may be running or its piece still in use (each
    /// task index handed to one caller, as [`Threads::for_tasks`] does): the pieces of
    /// different tasks never overlap.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows_of_task(&self, task: usize, acts: &[u8]) -> Option<&mut [f32]> {
        let k = self.k?;
        let first = task.checked_sub(self.first_task)?.checked_mul(self.chunk)?;
        let end = first.saturating_add(self.chunk).min(self.out.len);
        let n = self.cols;
        // SAFETY: tasks own disjoint row ranges of their matrix, and this task's range
        // is in no other live piece (the caller's contract); see `SharedOut::piece`.
        let piece = unsafe { self.out.piece(first, end) }?;
        let xs = self
            .data
            .get(first * self.wrow..end * self.wrow)
            .unwrap_or(&[]);
        // SAFETY: `k` is a table's entry for a supported level (type invariant); `xs`
        // holds `piece.len()` whole rows of `n` values (rows·wrow bytes checked by
        // `part`, end ≤ rows) and `acts` one vector of the partner type.
        unsafe { dot_piece(k, xs, self.wrow, acts, n, piece) };
        Some(piece)
    }
}

/// One vector's dot products with consecutive weight rows: `piece[i] = xs row i · acts`,
/// by the type's multi-row entry where the level has one, else row by row.
///
/// # Safety
///
/// `k` belongs to the table of a level the CPU supports; `xs` holds `piece.len()` whole
/// rows of `wrow` bytes, each `n` values, and `acts` one vector of `n` values of the
/// partner type.
unsafe fn dot_piece(
    k: &TypeKernels,
    xs: &[u8],
    wrow: usize,
    acts: &[u8],
    n: usize,
    piece: &mut [f32],
) {
    if let Some(dot_rows) = k.dot_rows {
        // SAFETY: the caller's contract.
        unsafe { dot_rows(xs, acts, n, piece) };
        return;
    }
    for (o, xr) in piece.iter_mut().zip(xs.chunks_exact(wrow)) {
        // SAFETY: the caller's contract; `xr` is one whole row.
        *o = unsafe { (k.dot)(xr, acts, n) };
    }
}

// ---------------------------------------------------------------- attention
// (kept apart from the matmul code above; the kernels are in `attn.rs`)

impl Kernels {
    /// [`attn::HeadsFn`](super::attn::HeadsFn): attention of `s.heads` query heads that
    /// share the key and value rows `k`, `v`, in the scratch blocks of `ws`.
    pub(crate) fn attn_heads(
        &self,
        s: &super::attn::AttnShape,
        k: &[f32],
        v: &[f32],
        ws: &mut [f32],
    ) {
        // SAFETY: this table exists only for a level the CPU supports (see the type's
        // docs); the kernel bounds every access by the slices' lengths.
        unsafe { (self.attn.heads)(s, k, v, ws) }
    }

    /// Whether [`attn_heads_f16`](Self::attn_heads_f16) reads an f16 cache directly at
    /// this level (otherwise the caller widens the rows for [`attn_heads`](Self::attn_heads)).
    pub(crate) fn attn_reads_f16(&self) -> bool {
        self.attn.heads_f16.is_some()
    }

    /// [`attn::HeadsF16Fn`](super::attn::HeadsF16Fn): one query's attention over the f16
    /// cache rows `k`, `v` (little-endian bytes). Does nothing at a level without it
    /// ([`attn_reads_f16`](Self::attn_reads_f16)).
    pub(crate) fn attn_heads_f16(
        &self,
        s: &super::attn::AttnShape,
        k: &[u8],
        v: &[u8],
        ws: &mut [f32],
    ) {
        if let Some(f) = self.attn.heads_f16 {
            // SAFETY: as for `attn_heads`.
            unsafe { f(s, k, v, ws) }
        }
    }
}

/// Rows per task of a matmul over `rows` rows: enough tasks to balance the threads, few
/// enough to keep the per-task overhead small. Any split gives the same result.
fn task_rows(rows: usize, threads: &Threads) -> usize {
    rows.div_ceil(threads.count() * 8).max(4)
}

/// Weight rows processed together in the prefill matmul.
const ROW_BLOCK: usize = 8;

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), KernelError> {
    if expected != got {
        return Err(KernelError::Length {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// An output slice written from several threads at disjoint indices.
struct SharedOut<'a> {
    ptr: *mut f32,
    len: usize,
    _out: core::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: `SharedOut` is only a way to hand disjoint parts of one `&mut [f32]` to
// several threads; `write` is the only access, and every index is written by exactly
// one task (tasks own disjoint row ranges, see `Kernels::matmul`), so there are no
// data races. f32 is Send.
unsafe impl Sync for SharedOut<'_> {}
// SAFETY: as above.
unsafe impl Send for SharedOut<'_> {}

impl<'a> SharedOut<'a> {
    fn new(out: &'a mut [f32]) -> Self {
        SharedOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            _out: core::marker::PhantomData,
        }
    }

    /// Store `vals` at `i..` (ignored if out of bounds, which the callers never do).
    #[inline]
    fn write_run(&self, i: usize, vals: &[f32]) {
        // A whole tile's run, as one fixed-size copy (inline stores; the general copy
        // below is a call to `memmove`, which cost 1-2% of a prefill).
        if let Ok(run) = <&[f32; GEMM_ROWS]>::try_from(vals) {
            if i.checked_add(GEMM_ROWS).is_some_and(|end| end <= self.len) {
                // SAFETY: as below, for `GEMM_ROWS` values; `write_unaligned` needs no
                // alignment.
                unsafe {
                    self.ptr
                        .add(i)
                        .cast::<[f32; GEMM_ROWS]>()
                        .write_unaligned(*run)
                };
            }
            return;
        }
        if i.checked_add(vals.len()).is_some_and(|end| end <= self.len) {
            // SAFETY: `i + vals.len() ≤ len`, so the run is inside the slice borrowed
            // for 'a; no other task writes those indices (disjoint row ranges), nobody
            // reads the slice until all tasks have finished, and `vals` (a caller's
            // local) cannot overlap it.
            unsafe { core::ptr::copy_nonoverlapping(vals.as_ptr(), self.ptr.add(i), vals.len()) };
        }
    }

    /// Elements `[start, end)` as a slice, or `None` if the range is not inside.
    ///
    /// # Safety
    ///
    /// No other live piece or `write` may touch the same elements (the callers hand
    /// each range to one task only).
    #[allow(clippy::mut_from_ref)]
    unsafe fn piece(&self, start: usize, end: usize) -> Option<&mut [f32]> {
        if start >= end || end > self.len {
            return None;
        }
        // SAFETY: start < end ≤ len, so the range lies inside the slice borrowed for 'a
        // (non-null: len > 0); exclusivity is the caller's contract.
        Some(unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), end - start) })
    }

    /// Store `v` at `i` (ignored if out of bounds, which the callers never do).
    #[inline]
    fn write(&self, i: usize, v: f32) {
        if i < self.len {
            // SAFETY: `i < len`, so the pointer is inside the slice borrowed for 'a;
            // no other task writes index `i` (disjoint row ranges) and nobody reads the
            // slice until all tasks have finished.
            unsafe { self.ptr.add(i).write(v) };
        }
    }
}
