//! The model's tensors: positions in the file, read in place. The norm and bias vectors
//! are read in place too when their data are F32 (see [`VectorRef`]); in another type
//! they are copied to F32 when the model is loaded.
//!
//! Every shape is checked against the configuration when the model is loaded; a
//! wrong one is a [`ModelError::TensorShape`] naming the tensor.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use super::config::ModelConfig;
use super::error::Shape;
use super::ModelError;
use crate::gguf::{GgmlType, Gguf, GgufError, TensorView};
use crate::kernels::{act_type, Weight, WeightLayout};
use crate::quant::dequantize_row;
use crate::Result;

/// Where a matrix lives in the file: name, type, shape and byte range. A view over the
/// model's bytes is made with [`TensorRef::view`]; nothing is copied.
#[derive(Clone, Debug)]
pub struct TensorRef {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub ty: GgmlType,
    /// `ne[0]`: elements per row (the input width of a matmul).
    pub cols: usize,
    /// `ne[1]`: rows (the output width of a matmul).
    pub rows: usize,
    /// Byte range of the data in the file.
    pub range: Range<usize>,
    /// Bytes per row.
    pub row_bytes: usize,
    /// A copy in the [`WeightLayout::Q5_0x4`] layout, read instead of the file's bytes
    /// by every matrix product, if [`crate::Model::repack_weights`] made one.
    pub(crate) repacked: Option<alloc::sync::Arc<RepackedCopy>>,
}

/// The memory of a repacked copy (as many bytes as the file's rows). With std, an
/// anonymous map which Linux is asked to back with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`): the copy is then written with one page fault per 2 MiB
/// instead of per 4 KiB (Qwen2.5-Coder 0.5B's 172 MB: about 42,000 faults fewer at
/// open), and decode streams it with one TLB entry per 2 MiB, as it does the file's map.
/// Without std, a heap allocation.
pub(crate) struct RepackedCopy(CopyMemory);

#[cfg(feature = "std")]
type CopyMemory = memmap2::MmapMut;
#[cfg(not(feature = "std"))]
type CopyMemory = alloc::boxed::Box<[u8]>;

impl RepackedCopy {
    /// `len` zero bytes, or [`ModelError::OutOfMemory`].
    fn zeroed(len: usize) -> Result<RepackedCopy> {
        let oom = || ModelError::OutOfMemory {
            what: "repacked weights",
            bytes: len,
        };
        #[cfg(feature = "std")]
        {
            let map = memmap2::MmapMut::map_anon(len).map_err(|_| oom())?;
            #[cfg(target_os = "linux")]
            {
                // Advice only: without huge pages the copy works the same.
                let _ = map.advise(memmap2::Advice::HugePage);
            }
            Ok(RepackedCopy(map))
        }
        #[cfg(not(feature = "std"))]
        {
            let mut v = Vec::new();
            v.try_reserve_exact(len).map_err(|_| oom())?;
            v.resize(len, 0u8);
            Ok(RepackedCopy(v.into_boxed_slice()))
        }
    }
}

impl core::ops::Deref for RepackedCopy {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl core::ops::DerefMut for RepackedCopy {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl core::fmt::Debug for RepackedCopy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RepackedCopy({} bytes)", self.len())
    }
}

/// Whether [`crate::Model::repack_weights`] copies a matrix of `ty` with rows of `cols`
/// values: Q5_0 rows of at least 4 blocks (one whole group).
pub(crate) fn repackable(ty: GgmlType, cols: u64) -> bool {
    ty == GgmlType::Q5_0 && cols / 32 >= 4
}

impl TensorRef {
    /// The tensor as a kernel [`Weight`] over `bytes` (the whole file).
    pub fn view<'a>(&'a self, bytes: &'a [u8]) -> Weight<'a> {
        Weight {
            name: &self.name,
            ty: self.ty,
            cols: self.cols,
            rows: self.rows,
            data: bytes.get(self.range.clone()).unwrap_or(&[]),
            layout: WeightLayout::File,
        }
    }

    /// The tensor as the forward pass's matrix products read it: its repacked copy if
    /// it has one (the same results), else [`TensorRef::view`].
    pub fn kernel_view<'a>(&'a self, bytes: &'a [u8]) -> Weight<'a> {
        match &self.repacked {
            Some(copy) => Weight {
                data: copy,
                layout: WeightLayout::Q5_0x4,
                ..self.view(&[])
            },
            None => self.view(bytes),
        }
    }

    /// Whether [`TensorRef::repack_q5_0`] would make a copy: a [`repackable`] matrix not
    /// yet repacked.
    pub(crate) fn wants_repack(&self) -> bool {
        repackable(self.ty, self.cols as u64) && self.repacked.is_none()
    }

    /// Make the copy of a Q5_0 matrix in the [`WeightLayout::Q5_0x4`] layout (`bytes`:
    /// the whole file). Returns the bytes allocated: 0 for another type, for rows of
    /// fewer than 4 blocks (nothing to repack) or if the copy exists already.
    pub(crate) fn repack_q5_0(&mut self, bytes: &[u8]) -> Result<usize> {
        if !self.wants_repack() {
            return Ok(0);
        }
        let src = bytes.get(self.range.clone()).unwrap_or(&[]);
        let rb = self.row_bytes.max(1);
        let bad_shape = || ModelError::TensorShape {
            name: self.name.clone(),
            expected: Shape(alloc::vec![self.cols as u64, self.rows as u64]),
            found: Shape(alloc::vec![src.len() as u64]),
        };
        if !src.len().is_multiple_of(rb) {
            return Err(bad_shape().into());
        }
        let mut copy = RepackedCopy::zeroed(src.len())?;
        for (s, d) in src.chunks_exact(rb).zip(copy.chunks_exact_mut(rb)) {
            if !crate::quant::repack_q5_0_row(s, d) {
                return Err(bad_shape().into());
            }
        }
        self.repacked = Some(alloc::sync::Arc::new(copy));
        Ok(src.len())
    }

    /// Dequantize row `r` into `out[..cols]` (embedding lookup, ggml's `get_rows`).
    pub fn dequantize_row(&self, bytes: &[u8], r: usize, out: &mut [f32]) -> Result<()> {
        let start = self
            .range
            .start
            .saturating_add(r.saturating_mul(self.row_bytes));
        let end = start.saturating_add(self.row_bytes);
        let src = bytes
            .get(start..end)
            .filter(|_| end <= self.range.end)
            .ok_or(ModelError::TokenOutOfRange {
                token: u32::try_from(r).unwrap_or(u32::MAX),
                n_vocab: self.rows,
            })?;
        let dst = out.get_mut(..self.cols).ok_or(ModelError::SessionSize {
            what: "embedding row buffer",
        })?;
        dequantize_row(self.ty, src, dst)?;
        Ok(())
    }
}

/// A norm or bias vector of the forward pass, as F32 values.
///
/// F32 data are read in place from the model's bytes: loading only records where they
/// are, so opening a mapped file does not wait for the disk to bring in the pages
/// around them (with Qwen2.5-Coder 0.5B, its 24 blocks' norms and biases, spread over
/// the whole file: 39-52 ms of the open, page faults on 2 MiB folios). Data of another
/// type (F16, BF16), F32 bytes that are not 4-byte aligned in memory (a
/// [`crate::Model::from_static`] model may be), or any F32 data on a big-endian target,
/// are converted to an F32 copy when the model is loaded.
#[derive(Clone, Debug)]
pub struct VectorRef(VectorData);

#[derive(Clone, Debug)]
enum VectorData {
    /// Byte range of F32 values in the model's bytes, checked at load time to be whole,
    /// aligned values in those bytes.
    InPlace(Range<usize>),
    /// Converted at load time.
    Copied(Vec<f32>),
}

impl VectorRef {
    /// The values, given `bytes`, the model's bytes (the whole file) that the vector was
    /// loaded from. Empty if `bytes` are not those (they cannot hold the range, or not
    /// as aligned F32 values).
    pub fn get<'a>(&'a self, bytes: &'a [u8]) -> &'a [f32] {
        match &self.0 {
            VectorData::InPlace(range) => bytes
                .get(range.clone())
                .and_then(|b| bytemuck::try_cast_slice(b).ok())
                .unwrap_or(&[]),
            VectorData::Copied(values) => values,
        }
    }

    /// Whether the values are read in place from the model's bytes (else they were
    /// copied at load time).
    pub fn in_place(&self) -> bool {
        matches!(self.0, VectorData::InPlace(_))
    }
}

/// The values of an optional norm or bias vector ([`VectorRef::get`]), over the model's
/// `bytes`.
pub(crate) fn opt_values<'a>(v: &'a Option<VectorRef>, bytes: &'a [u8]) -> Option<&'a [f32]> {
    v.as_ref().map(|v| v.get(bytes))
}

/// One transformer block. Shapes in GGUF order `[ne0, ne1]`; d = `n_embd`,
/// q = `n_head * head_dim`, kv = `n_head_kv * head_dim`, ff = `n_ff`, hd = `head_dim`.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    /// `attn_norm.weight` `[d]`.
    pub attn_norm: VectorRef,
    /// `attn_q.weight` `[d, q]`.
    pub wq: TensorRef,
    /// `attn_k.weight` `[d, kv]`.
    pub wk: TensorRef,
    /// `attn_v.weight` `[d, kv]`.
    pub wv: TensorRef,
    /// `attn_output.weight` `[q, d]`.
    pub wo: TensorRef,
    /// `attn_q.bias` `[q]` (qwen2; optional everywhere, as in llama.cpp).
    pub bq: Option<VectorRef>,
    /// `attn_k.bias` `[kv]`.
    pub bk: Option<VectorRef>,
    /// `attn_v.bias` `[kv]`.
    pub bv: Option<VectorRef>,
    /// `attn_output.bias` `[d]`.
    pub bo: Option<VectorRef>,
    /// `attn_q_norm.weight` `[hd]` (QK-norm architectures).
    pub q_norm: Option<VectorRef>,
    /// `attn_k_norm.weight` `[hd]`.
    pub k_norm: Option<VectorRef>,
    /// `post_attention_norm.weight` `[d]` (gemma3).
    pub post_attn_norm: Option<VectorRef>,
    /// `ffn_norm.weight` `[d]`.
    pub ffn_norm: VectorRef,
    /// `ffn_gate.weight` `[d, ff]`.
    pub ffn_gate: TensorRef,
    /// `ffn_up.weight` `[d, ff]`.
    pub ffn_up: TensorRef,
    /// `ffn_down.weight` `[ff, d]`.
    pub ffn_down: TensorRef,
    /// `ffn_gate.bias` `[ff]` (optional, llama).
    pub ffn_gate_b: Option<VectorRef>,
    /// `ffn_up.bias` `[ff]` (optional, llama).
    pub ffn_up_b: Option<VectorRef>,
    /// `ffn_down.bias` `[d]` (optional, llama).
    pub ffn_down_b: Option<VectorRef>,
    /// `post_ffw_norm.weight` `[d]` (gemma3).
    pub post_ffn_norm: Option<VectorRef>,
}

/// Every tensor the forward pass reads.
#[derive(Clone, Debug)]
pub struct Weights {
    /// `token_embd.weight` `[d, n_vocab]`.
    pub token_embd: TensorRef,
    /// `output_norm.weight` `[d]`.
    pub output_norm: VectorRef,
    /// `output.weight` `[d, n_vocab]`, or `token_embd.weight` when tied.
    pub output: TensorRef,
    /// `output.bias` `[n_vocab]` (optional, qwen2).
    pub output_b: Option<VectorRef>,
    /// `rope_freqs.weight` `[n_rot/2]`: per-frequency divisors (Llama 3), optional.
    pub rope_freqs: Option<VectorRef>,
    /// The blocks.
    pub layers: Vec<LayerWeights>,
}

fn shape_of(v: &TensorView<'_>) -> Shape {
    Shape(v.info.shape().to_vec())
}

fn check_shape(v: &TensorView<'_>, expected: &[usize]) -> Result<()> {
    let found = v.info.shape();
    let same =
        found.len() == expected.len() && found.iter().zip(expected).all(|(&f, &e)| f == e as u64);
    if same {
        Ok(())
    } else {
        Err(ModelError::TensorShape {
            name: v.info.name.to_string(),
            expected: Shape(expected.iter().map(|&e| e as u64).collect()),
            found: shape_of(v),
        }
        .into())
    }
}

fn lookup<'a, B: AsRef<[u8]>>(g: &'a Gguf<B>, name: &str) -> Result<Option<TensorView<'a>>> {
    match g.tensor(name) {
        Ok(v) => Ok(Some(v)),
        Err(GgufError::MissingTensor { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The byte range of `v`'s data in `g`'s bytes.
fn data_range<B: AsRef<[u8]>>(g: &Gguf<B>, v: &TensorView<'_>) -> Result<Range<usize>> {
    let offset_error = || ModelError::SessionSize {
        what: "tensor offset",
    };
    let start = usize::try_from(g.data_offset().saturating_add(v.info.offset))
        .map_err(|_| offset_error())?;
    let end = start.checked_add(v.data.len()).ok_or_else(offset_error)?;
    Ok(start..end)
}

fn matrix_ref<B: AsRef<[u8]>>(
    g: &Gguf<B>,
    v: &TensorView<'_>,
    cols: usize,
    rows: usize,
) -> Result<TensorRef> {
    check_shape(v, &[cols, rows])?;
    let name = v.info.name.to_string();
    if act_type(v.info.ty).is_none() {
        return Err(ModelError::UnsupportedTensorType {
            name,
            ty: v.info.ty,
            reason: "no matrix multiplication kernel for this type",
        }
        .into());
    }
    let row_bytes = v
        .info
        .ty
        .row_bytes(cols as u64)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| ModelError::UnsupportedTensorType {
            name: name.clone(),
            ty: v.info.ty,
            reason: "row length is not a whole number of blocks",
        })?;
    let Range { start, end } = data_range(g, v)?;
    // The parser has checked the bytes exist; make sure our arithmetic agrees with it.
    let expect_len = row_bytes.checked_mul(rows);
    if g.bytes().get(start..end).map(<[u8]>::len) != Some(v.data.len())
        || expect_len != Some(v.data.len())
    {
        return Err(ModelError::TensorShape {
            name,
            expected: Shape(alloc::vec![cols as u64, rows as u64]),
            found: shape_of(v),
        }
        .into());
    }
    Ok(TensorRef {
        name,
        ty: v.info.ty,
        cols,
        rows,
        range: start..end,
        row_bytes,
        repacked: None,
    })
}

fn matrix<B: AsRef<[u8]>>(g: &Gguf<B>, name: &str, cols: usize, rows: usize) -> Result<TensorRef> {
    let v = g.tensor(name)?;
    matrix_ref(g, &v, cols, rows)
}

/// The vector `v` of `len` values: in place if its data are F32 that `g`'s bytes hold
/// as aligned values on a little-endian target, else copied (see [`VectorRef`]).
fn vector_of<B: AsRef<[u8]>>(g: &Gguf<B>, v: &TensorView<'_>, len: usize) -> Result<VectorRef> {
    check_shape(v, &[len])?;
    if cfg!(target_endian = "little") && v.info.ty == GgmlType::F32 {
        let range = data_range(g, v)?;
        let values = g
            .bytes()
            .get(range.clone())
            .and_then(|b| bytemuck::try_cast_slice::<u8, f32>(b).ok());
        if values.map(<[f32]>::len) == Some(len) {
            return Ok(VectorRef(VectorData::InPlace(range)));
        }
    }
    let mut out = vec![0.0f32; len];
    dequantize_row(v.info.ty, v.data, &mut out).map_err(|_| ModelError::UnsupportedTensorType {
        name: v.info.name.to_string(),
        ty: v.info.ty,
        reason: "norm and bias vectors must be F32, F16 or BF16",
    })?;
    Ok(VectorRef(VectorData::Copied(out)))
}

fn vector<B: AsRef<[u8]>>(g: &Gguf<B>, name: &str, len: usize) -> Result<VectorRef> {
    let v = g.tensor(name)?;
    vector_of(g, &v, len)
}

fn opt_vector<B: AsRef<[u8]>>(g: &Gguf<B>, name: &str, len: usize) -> Result<Option<VectorRef>> {
    lookup(g, name)?.map(|v| vector_of(g, &v, len)).transpose()
}

impl Weights {
    /// Find and check every tensor. `n_vocab` is the row count of `token_embd.weight`,
    /// read before the configuration with [`Weights::vocab_size`].
    pub fn load<B: AsRef<[u8]>>(g: &Gguf<B>, c: &ModelConfig) -> Result<Weights> {
        let d = c.n_embd;
        let token_embd = matrix(g, "token_embd.weight", d, c.n_vocab)?;
        let output_norm = vector(g, "output_norm.weight", d)?;
        let output = match lookup(g, "output.weight")? {
            Some(v) => matrix_ref(g, &v, d, c.n_vocab)?,
            None => token_embd.clone(),
        };
        let output_b = opt_vector(g, "output.bias", c.n_vocab)?;
        let rope_freqs = opt_vector(g, "rope_freqs.weight", c.n_rot / 2)?;

        let (q, kv, ff, hd) = (c.q_dim(), c.kv_dim(), c.n_ff, c.head_dim);
        let spec = c.arch;
        let mut layers = Vec::with_capacity(c.n_layer);
        for il in 0..c.n_layer {
            let n = |t: &str| format!("blk.{il}.{t}");
            let req_if = |cond: bool, t: &str, len: usize| -> Result<Option<VectorRef>> {
                if cond {
                    vector(g, &n(t), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(LayerWeights {
                attn_norm: vector(g, &n("attn_norm.weight"), d)?,
                wq: matrix(g, &n("attn_q.weight"), d, q)?,
                wk: matrix(g, &n("attn_k.weight"), d, kv)?,
                wv: matrix(g, &n("attn_v.weight"), d, kv)?,
                wo: matrix(g, &n("attn_output.weight"), q, d)?,
                bq: opt_vector(g, &n("attn_q.bias"), q)?,
                bk: opt_vector(g, &n("attn_k.bias"), kv)?,
                bv: opt_vector(g, &n("attn_v.bias"), kv)?,
                bo: opt_vector(g, &n("attn_output.bias"), d)?,
                q_norm: req_if(spec.qk_norm, "attn_q_norm.weight", hd)?,
                k_norm: req_if(spec.qk_norm, "attn_k_norm.weight", hd)?,
                post_attn_norm: req_if(spec.post_norms, "post_attention_norm.weight", d)?,
                ffn_norm: vector(g, &n("ffn_norm.weight"), d)?,
                ffn_gate: matrix(g, &n("ffn_gate.weight"), d, ff)?,
                ffn_up: matrix(g, &n("ffn_up.weight"), d, ff)?,
                ffn_down: matrix(g, &n("ffn_down.weight"), ff, d)?,
                ffn_gate_b: opt_vector(g, &n("ffn_gate.bias"), ff)?,
                ffn_up_b: opt_vector(g, &n("ffn_up.bias"), ff)?,
                ffn_down_b: opt_vector(g, &n("ffn_down.bias"), d)?,
                post_ffn_norm: req_if(spec.post_norms, "post_ffw_norm.weight", d)?,
            });
        }
        // The embedding rows are dequantized one at a time: make sure that works now,
        // on a row of zero bytes (reading the file's first row here would wait for the
        // disk while the model is opened).
        let mut row = vec![0.0f32; d];
        let zeros = vec![0u8; token_embd.row_bytes];
        let zero_ref = TensorRef {
            range: 0..token_embd.row_bytes,
            ..token_embd.clone()
        };
        zero_ref.dequantize_row(&zeros, 0, &mut row).map_err(|_| {
            ModelError::UnsupportedTensorType {
                name: token_embd.name.clone(),
                ty: token_embd.ty,
                reason: "embedding rows cannot be dequantized",
            }
        })?;
        Ok(Weights {
            token_embd,
            output_norm,
            output,
            output_b,
            rope_freqs,
            layers,
        })
    }

    /// Every matrix the forward pass multiplies with: each block's `wq`, `wk`, `wv`,
    /// `wo`, `ffn_gate`, `ffn_up`, `ffn_down`, then the output head (which is
    /// `token_embd` when the two are tied).
    pub fn matrices(&self) -> impl Iterator<Item = &TensorRef> {
        self.layers
            .iter()
            .flat_map(|l| {
                [
                    &l.wq,
                    &l.wk,
                    &l.wv,
                    &l.wo,
                    &l.ffn_gate,
                    &l.ffn_up,
                    &l.ffn_down,
                ]
            })
            .chain(core::iter::once(&self.output))
    }

    /// [`Weights::matrices`], to change (for [`TensorRef::repack_q5_0`]).
    pub(crate) fn matrices_mut(&mut self) -> impl Iterator<Item = &mut TensorRef> {
        self.layers
            .iter_mut()
            .flat_map(|l| {
                [
                    &mut l.wq,
                    &mut l.wk,
                    &mut l.wv,
                    &mut l.wo,
                    &mut l.ffn_gate,
                    &mut l.ffn_up,
                    &mut l.ffn_down,
                ]
            })
            .chain(core::iter::once(&mut self.output))
    }

    /// Rows of `token_embd.weight` (the vocabulary size), checking it is a matrix.
    pub fn vocab_size<B: AsRef<[u8]>>(g: &Gguf<B>) -> Result<usize> {
        let v = g.tensor("token_embd.weight")?;
        let shape = v.info.shape();
        match shape {
            [_, rows] if *rows > 0 => usize::try_from(*rows).map_err(|_| {
                ModelError::SessionSize {
                    what: "vocabulary size",
                }
                .into()
            }),
            _ => Err(ModelError::Unsupported {
                what: format!(
                    "token_embd.weight must be a matrix [n_embd, n_vocab] with n_vocab > 0, found {}",
                    shape_of(&v)
                ),
            }
            .into()),
        }
    }
}
