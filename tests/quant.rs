//! Quantized formats against reference vectors from gguf-py (fixtures/quant/*.bin,
//! written by fixtures/gen_quant_vectors.py, whose docstring describes the format).
//!
//! Dequantization must equal the reference bit for bit; quantizers must reproduce the
//! reference bytes exactly.

use std::path::PathBuf;

use tramontane::gguf::GgmlType;
use tramontane::quant::{
    self, dequantize_row, quantize_row, BlockIQ4NL, BlockIQ4XS, BlockMXFP4, BlockQ2K, BlockQ3K,
    BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0,
    BlockQ8_1, QuantBlock, QuantError,
};

const FLAG_QUANTIZED_SRC: u32 = 1;

/// Every type the generator writes, and whether our quantizer is checked on it.
const TYPES: [GgmlType; 18] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q8_K,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::MXFP4,
];

struct Vectors {
    flags: u32,
    n_rows: usize,
    n_per_row: usize,
    row_bytes: usize,
    src: Vec<f32>,
    quant: Vec<u8>,
    deq: Vec<f32>,
}

fn fixture_path(dir: &str, ty: GgmlType) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(format!("{}.bin", ty.name()))
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn load(ty: GgmlType) -> Vectors {
    load_from("fixtures/quant", ty)
}

fn load_from(dir: &str, ty: GgmlType) -> Vectors {
    let path = fixture_path(dir, ty);
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..4], b"TQV1", "{}", path.display());
    let u = |i: usize| u32::from_le_bytes(b[4 + 4 * i..8 + 4 * i].try_into().unwrap());
    assert_eq!(u(0), ty.id(), "type id in {}", path.display());
    let (flags, n_rows, n_src) = (u(1), u(2) as usize, u(3) as usize);
    let (n_per_row, row_bytes) = (u(4) as usize, u(5) as usize);
    assert_eq!(
        Some(row_bytes as u64),
        ty.row_bytes(n_per_row as u64),
        "row size of {ty} in {}",
        path.display()
    );
    let src_end = 32 + 4 * n_src * n_per_row;
    let quant_end = src_end + n_rows * row_bytes;
    assert_eq!(
        b.len(),
        quant_end + 4 * n_rows * n_per_row,
        "{}",
        path.display()
    );
    Vectors {
        flags,
        n_rows,
        n_per_row,
        row_bytes,
        src: f32s(&b[32..src_end]),
        quant: b[src_end..quant_end].to_vec(),
        deq: f32s(&b[quant_end..]),
    }
}

/// Compare as bits; report the first few differences.
fn assert_bits_eq(ty: GgmlType, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| got[i].to_bits() != want[i].to_bits())
        .collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{ty} {what}: {} of {} values differ; first at {i}: got {:e} ({:#010x}), want {:e} ({:#010x})",
            bad.len(),
            got.len(),
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        );
    }
}

fn assert_bytes_eq(ty: GgmlType, what: &str, got: &[u8], want: &[u8], row_bytes: usize) {
    assert_eq!(got.len(), want.len());
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        let n = (0..got.len()).filter(|&i| got[i] != want[i]).count();
        panic!(
            "{ty} {what}: {n} bytes differ; first at byte {i} (row {}, byte {} of the row, \
             block byte {}): got {:#04x}, want {:#04x}",
            i / row_bytes,
            i % row_bytes,
            i % ty.block_bytes() as usize,
            got[i],
            want[i]
        );
    }
}

#[test]
fn dequantize_matches_gguf_py_bit_exactly() {
    for ty in TYPES {
        let v = load(ty);
        // Whole file in one call …
        let mut y = vec![f32::NAN; v.n_rows * v.n_per_row];
        dequantize_row(ty, &v.quant, &mut y).unwrap();
        assert_bits_eq(ty, "dequantize", &y, &v.deq);
        // … and row by row from an odd address (alignment 1 views).
        let mut shifted = vec![0u8; v.row_bytes + 1];
        for r in 0..v.n_rows {
            shifted[1..].copy_from_slice(&v.quant[r * v.row_bytes..(r + 1) * v.row_bytes]);
            let mut y = vec![f32::NAN; v.n_per_row + 3];
            dequantize_row(ty, &shifted[1..], &mut y).unwrap();
            let want = &v.deq[r * v.n_per_row..(r + 1) * v.n_per_row];
            assert_bits_eq(ty, "dequantize (unaligned row)", &y[..v.n_per_row], want);
            assert!(
                y[v.n_per_row..].iter().all(|x| x.is_nan()),
                "{ty}: wrote past the row"
            );
        }
    }
}

#[test]
fn quantize_matches_reference_bytes() {
    let mut checked = Vec::new();
    for ty in TYPES {
        let v = load(ty);
        if v.flags & FLAG_QUANTIZED_SRC == 0 {
            continue;
        }
        let n_src = v.src.len() / v.n_per_row;
        let mut q = vec![0u8; n_src * v.row_bytes];
        quantize_row(ty, &v.src, &mut q).unwrap();
        assert_bytes_eq(ty, "quantize", &q, &v.quant[..q.len()], v.row_bytes);
        checked.push(ty);
    }
    use GgmlType::*;
    assert_eq!(
        checked,
        [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q8_K]
    );
}

#[test]
fn typed_activation_quantizers_match_quantize_row() {
    let src = load(GgmlType::Q8_K).src;
    let n = src.len();

    let mut want = vec![0u8; n / 32 * 34];
    quantize_row(GgmlType::Q8_0, &src, &mut want).unwrap();
    let mut y = vec![bytemuck_zero::<BlockQ8_0>(); n / 32];
    quant::quantize_row_q8_0(&src, &mut y).unwrap();
    assert_eq!(as_bytes(&y), want.as_slice());

    let mut want = vec![0u8; n / 32 * 36];
    quantize_row(GgmlType::Q8_1, &src, &mut want).unwrap();
    let mut y = vec![bytemuck_zero::<BlockQ8_1>(); n / 32];
    quant::quantize_row_q8_1(&src, &mut y).unwrap();
    assert_eq!(as_bytes(&y), want.as_slice());

    let mut want = vec![0u8; n / 256 * 292];
    quantize_row(GgmlType::Q8_K, &src, &mut want).unwrap();
    // Garbage in the output must be overwritten (all-zero blocks included).
    let mut y = vec![quant::blocks::<BlockQ8K>(&[0x5a; 292]).unwrap()[0]; n / 256];
    quant::quantize_row_q8_k(&src, &mut y).unwrap();
    assert_eq!(as_bytes(&y), want.as_slice());
}

/// The quantizers gguf-py lacks (Q2_K … Q6_K, Q8_K, Q8_1) against bytes from
/// ggml's own C reference (`quantize_row_*_ref`), fixtures/quant/ggml/.
#[test]
fn quantize_matches_ggml_c_reference() {
    for ty in [
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::Q8_1,
    ] {
        let v = load_from("fixtures/quant/ggml", ty);
        assert_ne!(v.flags & FLAG_QUANTIZED_SRC, 0);
        assert_eq!(v.src.len(), v.n_rows * v.n_per_row);
        let mut q = vec![0u8; v.quant.len()];
        quantize_row(ty, &v.src, &mut q).unwrap();
        assert_bytes_eq(ty, "quantize (ggml C)", &q, &v.quant, v.row_bytes);
        let mut y = vec![0f32; v.deq.len()];
        dequantize_row(ty, &v.quant, &mut y).unwrap();
        assert_bits_eq(ty, "dequantize (ggml C rows)", &y, &v.deq);
    }
}

/// K-quantizers round-trip within a per-type bound relative to each 256-block's
/// largest magnitude (blocks whose f16 super-scales would be subnormal are left out:
/// there the format itself loses precision), and zero blocks stay exactly zero.
#[test]
fn k_quantizers_round_trip() {
    let src = load(GgmlType::Q8_K).src;
    // (type, max |error| / block amax)
    for (ty, bound) in [
        (GgmlType::Q2_K, 0.40f32),
        (GgmlType::Q3_K, 0.25),
        (GgmlType::Q4_K, 0.10),
        (GgmlType::Q5_K, 0.05),
        (GgmlType::Q6_K, 0.03),
    ] {
        let row = ty.row_bytes(src.len() as u64).unwrap() as usize;
        let mut q = vec![0u8; row];
        quantize_row(ty, &src, &mut q).unwrap();
        let mut y = vec![0f32; src.len()];
        dequantize_row(ty, &q, &mut y).unwrap();
        for (b, (x, y)) in src.chunks(256).zip(y.chunks(256)).enumerate() {
            let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
            if amax < 1e-2 {
                continue;
            }
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert!(
                    (x - y).abs() <= bound * amax,
                    "{ty} block {b} value {i}: {x} → {y} (amax {amax})"
                );
            }
        }
        let zeros = [0f32; 256];
        let mut q = vec![0xffu8; ty.block_bytes() as usize];
        quantize_row(ty, &zeros, &mut q).unwrap();
        let mut y = [1f32; 256];
        dequantize_row(ty, &q, &mut y).unwrap();
        assert!(y.iter().all(|v| *v == 0.0), "{ty}: zeros do not round-trip");
    }
}

#[test]
fn block_structs_match_type_table() {
    fn check<B: QuantBlock>() {
        assert_eq!(
            std::mem::size_of::<B>() as u64,
            B::TYPE.block_bytes(),
            "{}",
            B::TYPE
        );
        assert_eq!(B::QK as u64, B::TYPE.block_size(), "{}", B::TYPE);
        assert_eq!(std::mem::align_of::<B>(), 1, "{}", B::TYPE);
    }
    check::<BlockQ4_0>();
    check::<BlockQ4_1>();
    check::<BlockQ5_0>();
    check::<BlockQ5_1>();
    check::<BlockQ8_0>();
    check::<BlockQ8_1>();
    check::<BlockQ2K>();
    check::<BlockQ3K>();
    check::<BlockQ4K>();
    check::<BlockQ5K>();
    check::<BlockQ6K>();
    check::<BlockQ8K>();
    check::<BlockIQ4NL>();
    check::<BlockIQ4XS>();
    check::<BlockMXFP4>();
}

#[test]
fn errors_not_panics() {
    let mut y = vec![0f32; 256];
    for ty in GgmlType::ALL {
        let bb = ty.block_bytes() as usize;
        // One byte short of a block: always an error, never a panic.
        if bb > 1 {
            assert!(
                dequantize_row(ty, &vec![0u8; bb - 1], &mut y).is_err(),
                "{ty}"
            );
        }
        // One block into a too-short output, where the type is supported.
        let r = dequantize_row(ty, &vec![0u8; bb], &mut y[..0]);
        assert!(
            matches!(
                r,
                Err(QuantError::OutputTooShort { .. } | QuantError::Unsupported { .. })
            ),
            "{ty}: {r:?}"
        );
    }
}

fn bytemuck_zero<T: QuantBlock>() -> T {
    bytemuck::Zeroable::zeroed()
}

fn as_bytes<T: QuantBlock>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}
