//! Kernels: every SIMD level against the scalar twins (bit-exact), the scalar twins
//! against an f64 dot product of the dequantized values (per-type bounds), matmul
//! invariance under thread count and batching, the paired matvec of a feed-forward
//! with its activation, and the f32 operators.
//!
//! Every level this CPU supports is run directly (not only the dispatched one); the
//! detected and dispatched levels are printed.

use tramontane::gguf::GgmlType;
use tramontane::kernels::{
    self, act_type, Acts, KernelError, KernelLevel, Kernels, Threads, Weight, WeightLayout,
};
use tramontane::quant::{self, dequantize_row};

/// Every weight type with a kernel, in the priority order of the real models.
const TYPES: [GgmlType; 15] = [
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q5_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::BF16,
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn f32(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// How the block scales of random weights are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scale {
    Normal,
    Zero,
    Subnormal,
    Large,
}

const SCALES: [Scale; 4] = [Scale::Normal, Scale::Zero, Scale::Subnormal, Scale::Large];

fn f16_scale(rng: &mut Rng, s: Scale) -> [u8; 2] {
    let v: f32 = match s {
        Scale::Normal => rng.f32() * 0.05,
        Scale::Zero => 0.0,
        // f16 subnormals: |v| < 2^-14.
        Scale::Subnormal => {
            return ((rng.next() as u16 & 0x03ff) | (rng.next() as u16 & 0x8000)).to_le_bytes()
        }
        Scale::Large => rng.f32() * 3.0e4,
    };
    half::f16::from_f32(v).to_le_bytes()
}

fn f32_value(rng: &mut Rng, s: Scale) -> f32 {
    match s {
        Scale::Normal => rng.f32(),
        Scale::Zero => 0.0,
        Scale::Subnormal => rng.f32() * 1.0e-39,
        Scale::Large => rng.f32() * 1.0e15,
    }
}

/// Random weight rows of `ty`: random quant bits, scales chosen by `s`.
fn random_weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize, s: Scale) -> Vec<u8> {
    use GgmlType as T;
    let rb = ty.row_bytes(cols as u64).unwrap() as usize;
    let n = rb * rows;
    match ty {
        T::F32 => {
            return (0..rows * cols)
                .flat_map(|_| f32_value(rng, s).to_le_bytes())
                .collect()
        }
        T::F16 => {
            return (0..rows * cols)
                .flat_map(|_| {
                    half::f16::from_f32(f32_value(rng, s).clamp(-6.0e4, 6.0e4)).to_le_bytes()
                })
                .collect()
        }
        T::BF16 => {
            return (0..rows * cols)
                .flat_map(|_| ((f32_value(rng, s).to_bits() >> 16) as u16).to_le_bytes())
                .collect()
        }
        _ => {}
    }
    let mut b = rng.bytes(n);
    let bb = ty.block_bytes() as usize;
    for blk in b.chunks_exact_mut(bb) {
        // Offsets of the f16 scale fields in each block (ggml-common.h layouts).
        let fields: &[usize] = match ty {
            T::Q4_0 | T::Q5_0 | T::Q8_0 | T::IQ4_NL | T::IQ4_XS => &[0],
            T::Q4_1 | T::Q5_1 | T::Q4_K | T::Q5_K => &[0, 2],
            T::Q2_K => &[80, 82],
            T::Q3_K => &[108],
            T::Q6_K => &[208],
            _ => unreachable!(),
        };
        for &o in fields {
            blk[o..o + 2].copy_from_slice(&f16_scale(rng, s));
        }
        if ty == T::Q8_0 {
            // ggml's quantizers never write −128 (the AVX2 sign trick relies on it).
            for q in &mut blk[2..] {
                if *q == 0x80 {
                    *q = 0x81;
                }
            }
        }
    }
    b
}

fn random_acts(rng: &mut Rng, n: usize, s: Scale) -> Vec<f32> {
    (0..n)
        .map(|_| match s {
            Scale::Normal | Scale::Zero => rng.f32() * 2.0,
            Scale::Subnormal => rng.f32() * 1.0e-36,
            Scale::Large => rng.f32() * 1.0e8,
        })
        .collect()
}

fn deq(ty: GgmlType, b: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    dequantize_row(ty, b, &mut out).unwrap();
    out
}

fn levels() -> Vec<&'static Kernels> {
    KernelLevel::ALL
        .into_iter()
        .filter_map(|l| kernels::kernels(l).ok())
        .collect()
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Row lengths to test for `ty`: 0..=3 blocks, plus tails for the float types.
fn lengths(ty: GgmlType) -> Vec<usize> {
    let bs = ty.block_size() as usize;
    let mut v: Vec<usize> = (0..=3).map(|k| k * bs).collect();
    if bs == 1 {
        v.extend([1, 7, 31, 33, 63, 65, 100, 257]);
    } else {
        v.push(8 * bs + bs); // a full 8-lane group and a tail block
        v.push(17 * bs);
    }
    v
}

#[test]
fn print_levels() {
    let detected: Vec<_> = levels().iter().map(|k| k.level().name()).collect();
    println!(
        "kernel levels available: {detected:?}; best {}; dispatched {}",
        kernels::best_level(),
        kernels::cpu_features()
    );
}

#[test]
fn every_level_equals_scalar_bit_for_bit() {
    let scalar = kernels::kernels(KernelLevel::Scalar).unwrap();
    let mut rng = Rng(1);
    let mut acts = Acts::new(32 * 256, 1);
    for k in levels() {
        for ty in TYPES {
            let at = act_type(ty).unwrap();
            for n in lengths(ty) {
                for s in SCALES {
                    for _ in 0..3 {
                        let w = random_weights(&mut rng, ty, 1, n, s);
                        let x = random_acts(&mut rng, n, s);
                        acts.quantize(at, &x, n).unwrap();
                        let y = acts.vec_bytes(0).unwrap_or(&[]);
                        // The weights at an odd address too (model bytes are unaligned).
                        let mut odd = vec![0u8; w.len() + 1];
                        odd[1..].copy_from_slice(&w);
                        let want = scalar.vec_dot(ty, &w, y, n).unwrap();
                        let got = k.vec_dot(ty, &w, y, n).unwrap();
                        let got_odd = k.vec_dot(ty, &odd[1..], y, n).unwrap();
                        assert!(same(got, got_odd), "{} {ty} n={n}: odd address", k.level());
                        assert!(
                            same(want, got),
                            "{} {ty} n={n} {s:?}: scalar {want:e}, got {got:e}",
                            k.level()
                        );
                    }
                }
            }
        }
    }
}

/// Per-type relative bound on |kernel − f64 dot of the dequantized values|, as a
/// fraction of Σ|w_i·a_i|.
///
/// The kernels compute exactly the products of the values that dequantize; what is left
/// is f32 rounding: of `dx·dy` and of each block term (2 ulp), of the lane sums
/// (≈ blocks/8 + 3 additions), and for the K-quants of the reference itself, whose
/// dequantized values round `(d·sc)·q − dmin·m` per value.
fn bound(ty: GgmlType) -> f64 {
    use GgmlType as T;
    match ty {
        // One rounding per product, 32 lanes of ≤ n/32 + 5 additions (n ≤ 257 here).
        T::F32 | T::F16 | T::BF16 => 2.0e-6,
        // 32-value blocks: 2 roundings per block term, up to 64 blocks in 8 lanes.
        T::Q4_0 | T::Q4_1 | T::Q5_0 | T::Q5_1 | T::Q8_0 | T::IQ4_NL => 2.0e-6,
        // Super-blocks: the reference's per-value rounding adds ~2^-23 relative.
        _ => 4.0e-6,
    }
}

#[test]
fn scalar_matches_f64_reference() {
    let scalar = kernels::kernels(KernelLevel::Scalar).unwrap();
    let mut rng = Rng(2);
    let mut acts = Acts::new(64 * 256, 1);
    for ty in TYPES {
        let at = act_type(ty).unwrap();
        for n in lengths(ty)
            .into_iter()
            .chain([64 * ty.block_size() as usize])
        {
            for s in [Scale::Normal, Scale::Zero, Scale::Large] {
                let w = random_weights(&mut rng, ty, 1, n, s);
                let x = random_acts(&mut rng, n, Scale::Normal);
                acts.quantize(at, &x, n).unwrap();
                let y = acts.vec_bytes(0).unwrap_or(&[]);
                let got = scalar.vec_dot(ty, &w, y, n).unwrap() as f64;
                let (wd, yd) = (deq(ty, &w, n), deq(at, y, n));
                let exact: f64 = wd.iter().zip(&yd).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mag: f64 = wd
                    .iter()
                    .zip(&yd)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                // Q4_1 / Q5_1 add m·s, with s = d·Σq rounded to f16.
                let extra = match ty {
                    GgmlType::Q4_1 | GgmlType::Q5_1 => min_term(ty, &w, y) * 1.0e-3,
                    _ => 0.0,
                };
                let tol = bound(ty) * mag + extra + 1e-30;
                assert!(
                    (got - exact).abs() <= tol,
                    "{ty} n={n} {s:?}: got {got:e}, f64 {exact:e}, |err| {:e} > {tol:e}",
                    (got - exact).abs()
                );
            }
        }
    }
}

/// Σ_b |m_b · s_b| for Q4_1 / Q5_1 rows against Q8_1 activations.
fn min_term(ty: GgmlType, w: &[u8], y: &[u8]) -> f64 {
    let bb = ty.block_bytes() as usize;
    w.chunks_exact(bb)
        .zip(y.chunks_exact(36))
        .map(|(wb, yb)| {
            let m = half::f16::from_le_bytes([wb[2], wb[3]]).to_f32() as f64;
            let s = half::f16::from_le_bytes([yb[2], yb[3]]).to_f32() as f64;
            (m * s).abs()
        })
        .sum()
}

#[test]
fn matmul_is_thread_and_batch_invariant() {
    let scalar = kernels::kernels(KernelLevel::Scalar).unwrap();
    let mut rng = Rng(3);
    let t1 = Threads::single();
    let t3 = Threads::new(3).unwrap();
    for k in levels() {
        for ty in TYPES {
            let at = act_type(ty).unwrap();
            let bs = ty.block_size() as usize;
            let cols = if bs == 1 { 96 } else { 3 * bs.max(32) };
            let cols = cols - cols % bs;
            // 32-value blocks: also 20 blocks (Gemma's 640), 8-block groups and a tail,
            // as the prefill tiles take them, and as the decode matvec takes them (8-block
            // groups, then a group of 4); 5 blocks (a group of 4 alone and one more); 70
            // blocks (the decode matvec's larger per-vector tables, above 64 blocks, and
            // a group of 4 then 2); every scale class.
            let shapes: Vec<(usize, Scale)> = if bs == 32 {
                vec![
                    (cols, Scale::Normal),
                    (5 * bs, Scale::Normal),
                    (20 * bs, Scale::Normal),
                    (70 * bs, Scale::Normal),
                ]
                .into_iter()
                .chain(SCALES.into_iter().map(|s| (17 * bs, s)))
                .collect()
            } else if bs == 256 {
                // Super-blocks: also 65 (past the 64 whose vector sums Q4_K's AVX-512
                // decode rows keep on the stack).
                vec![(cols, Scale::Normal), (65 * bs, Scale::Normal)]
            } else {
                vec![(cols, Scale::Normal)]
            };
            for (rows, (cols, scale)) in [1usize, 7, 37]
                .into_iter()
                .flat_map(|r| shapes.iter().map(move |s| (r, *s)))
            {
                let w = random_weights(&mut rng, ty, rows, cols, scale);
                let weight = Weight {
                    name: "w",
                    ty,
                    cols,
                    rows,
                    data: &w,
                    layout: WeightLayout::File,
                };
                // Super-blocks: also 2, 3, 6 and 7 vectors (Q4_K's tile takes whole
                // groups of 4 in the batch arithmetic and the rest in the other), and
                // 8 or more with tails of 4 and 7 (Q6_K's batch-only tile). 32-value
                // blocks: the 256-bit tiles take up to 16 vectors as two halves of up
                // to 8, so one half, both halves whole or not, and a second tile.
                let nvs: &[usize] = if bs == 256 {
                    &[1, 2, 3, 5, 6, 7, 8, 9, 12, 15, 17]
                } else {
                    &[1, 5, 9, 15, 16, 17, 31]
                };
                for &nv in nvs {
                    let x = random_acts(&mut rng, nv * cols, scale);
                    let mut acts = Acts::new(cols, nv);
                    acts.quantize(at, &x, cols).unwrap();
                    let mut o1 = vec![0.0f32; nv * rows];
                    let mut o3 = vec![1.0f32; nv * rows];
                    k.matmul(&weight, &acts, &mut o1, &t1).unwrap();
                    k.matmul(&weight, &acts, &mut o3, &t3).unwrap();
                    for v in 0..nv {
                        for r in 0..rows {
                            let i = v * rows + r;
                            let row = &w[r * w.len() / rows..(r + 1) * w.len() / rows];
                            let y = acts.vec_bytes(v).unwrap();
                            let single = k.vec_dot(ty, row, y, cols).unwrap();
                            let in_batch = k.vec_dot_in_batch(ty, row, y, cols, v, nv).unwrap();
                            let scalar_in_batch =
                                scalar.vec_dot_in_batch(ty, row, y, cols, v, nv).unwrap();
                            assert!(
                                same(in_batch, scalar_in_batch),
                                "{} {ty} batch arithmetic vs scalar (vector {v} of {nv})",
                                k.level()
                            );
                            if nv == 1 {
                                assert!(same(single, in_batch), "{} {ty} batch of 1", k.level());
                            }
                            assert!(same(o1[i], o3[i]), "{} {ty} threads", k.level());
                            assert!(
                                same(o1[i], in_batch),
                                "{} {ty} matmul vs dot (vector {v} of {nv})",
                                k.level()
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Q5_0 rows repacked for the decode matvec (`WeightLayout::Q5_0x4`): the layout gives
/// the blocks back byte for byte, and at every level a repacked matrix gives the
/// Q5_0 matrix's outputs bit for bit, one vector or a batch, 1 or 3 threads: rows of
/// 1 to 9 blocks (groups of 4 and a tail of 1 to 3), Gemma's 640 and Qwen's 896
/// values, 130 blocks (past the 64 of the small per-vector tables), every scale class.
#[test]
fn repacked_q5_0_equals_q5_0() {
    let mut rng = Rng(29);
    // Whole groups unpack to the blocks they were packed from.
    for _ in 0..200 {
        let raw = random_weights(&mut rng, GgmlType::Q5_0, 1, 128, Scale::Normal);
        let blocks: [quant::BlockQ5_0; 4] =
            core::array::from_fn(|b| bytemuck::pod_read_unaligned(&raw[22 * b..22 * b + 22]));
        let g = quant::BlockQ5_0x4::pack(&blocks);
        assert_eq!(g.unpack(), blocks);
        let mut row = vec![0u8; raw.len()];
        assert!(quant::repack_q5_0_row(&raw, &mut row));
        assert_eq!(row, bytemuck::bytes_of(&g));
    }
    // Lengths that are not one row of whole blocks are refused, `dst` untouched.
    let mut dst = [7u8; 44];
    assert!(!quant::repack_q5_0_row(&[0u8; 43], &mut dst[..43]));
    assert!(!quant::repack_q5_0_row(&[0u8; 44], &mut dst[..22]));
    assert!(dst.iter().all(|&b| b == 7));

    let (t1, t3) = (Threads::single(), Threads::new(3).unwrap());
    let shapes: Vec<(usize, Scale)> = (1..=9)
        .map(|b| (32 * b, Scale::Normal))
        .chain([
            (640, Scale::Normal),
            (896, Scale::Normal),
            (130 * 32, Scale::Normal),
        ])
        .chain(SCALES.into_iter().map(|s| (17 * 32, s)))
        .collect();
    for k in levels() {
        for &(cols, scale) in &shapes {
            for rows in [1usize, 5, 37] {
                let w = random_weights(&mut rng, GgmlType::Q5_0, rows, cols, scale);
                let rb = w.len() / rows;
                let mut packed = vec![0u8; w.len()];
                for (s, d) in w
                    .chunks_exact(rb.max(1))
                    .zip(packed.chunks_exact_mut(rb.max(1)))
                {
                    assert!(quant::repack_q5_0_row(s, d));
                }
                let plain = Weight {
                    name: "w",
                    ty: GgmlType::Q5_0,
                    cols,
                    rows,
                    data: &w,
                    layout: WeightLayout::File,
                };
                let repacked = Weight {
                    data: &packed,
                    layout: WeightLayout::Q5_0x4,
                    ..plain
                };
                for nv in [1usize, 2, 5, 17] {
                    let x: Vec<f32> = (0..nv)
                        .flat_map(|_| random_acts(&mut rng, cols, scale))
                        .collect();
                    let mut acts = Acts::new(cols, nv);
                    acts.quantize(GgmlType::Q8_0, &x, cols).unwrap();
                    let mut want = vec![0.0f32; rows * nv];
                    k.matmul(&plain, &acts, &mut want, &t1).unwrap();
                    for t in [&t1, &t3] {
                        let mut got = vec![f32::NAN; rows * nv];
                        k.matmul(&repacked, &acts, &mut got, t).unwrap();
                        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                same(*a, *b),
                                "{:?} {cols} cols {rows} rows {nv} vectors {scale:?}, output {i}: {a} vs {b}",
                                k.level()
                            );
                        }
                    }
                    if nv == 1 && cols > 0 {
                        let y = acts.vec_bytes(0).unwrap();
                        let one = k.vec_dot(GgmlType::Q5_0, &w[..rb], y, cols).unwrap();
                        assert!(same(one, want[0]));
                    }
                }
            }
        }
        // The layout belongs to Q5_0 only.
        let w = random_weights(&mut rng, GgmlType::Q8_0, 1, 128, Scale::Normal);
        let q8 = Weight {
            name: "w",
            ty: GgmlType::Q8_0,
            cols: 128,
            rows: 1,
            data: &w,
            layout: WeightLayout::Q5_0x4,
        };
        let mut acts = Acts::new(128, 1);
        acts.quantize(
            GgmlType::Q8_0,
            &random_acts(&mut rng, 128, Scale::Normal),
            128,
        )
        .unwrap();
        let err = k.matmul(&q8, &acts, &mut [0.0f32], &t1).unwrap_err();
        assert!(matches!(err, KernelError::Layout { .. }), "{err}");
    }
}

#[test]
fn paired_matvec_equals_two_matmuls_then_the_activation() {
    let mut rng = Rng(12);
    let threads = [
        Threads::single(),
        Threads::new(2).unwrap(),
        Threads::new(3).unwrap(),
    ];
    for k in levels() {
        for ty in [GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_K] {
            let cols = 256;
            let at = act_type(ty).unwrap();
            // Rows: fewer than one run, runs of 64 with a short last one, a tail of the
            // activation's 16-value groups (100 = 6·16 + 4), Qwen2.5's 4864.
            for rows in [1usize, 37, 100, 130, 4864] {
                let up = random_weights(&mut rng, ty, rows, cols, Scale::Normal);
                let gate = random_weights(&mut rng, ty, rows, cols, Scale::Normal);
                let wu = Weight {
                    name: "up",
                    ty,
                    cols,
                    rows,
                    data: &up,
                    layout: WeightLayout::File,
                };
                let wg = Weight {
                    name: "gate",
                    ty,
                    cols,
                    rows,
                    data: &gate,
                    layout: WeightLayout::File,
                };
                let mut acts = Acts::new(cols, 1);
                acts.quantize(at, &random_acts(&mut rng, cols, Scale::Normal), cols)
                    .unwrap();
                let t1 = Threads::single();
                let (mut u, mut g) = (vec![0.0f32; rows], vec![0.0f32; rows]);
                k.matmul(&wu, &acts, &mut u, &t1).unwrap();
                k.matmul(&wg, &acts, &mut g, &t1).unwrap();
                // Large enough that the activation's exp over- and underflows too.
                g.iter_mut().for_each(|v| *v *= 40.0);
                k.swiglu_row(&mut g, &u);
                for t in &threads {
                    let (mut pu, mut pg) = (vec![1.0f32; rows], vec![1.0f32; rows]);
                    let seen = std::sync::Mutex::new(vec![0u32; rows]);
                    k.matvec_pair_then(
                        [&wu, &wg],
                        &acts,
                        [&mut pu, &mut pg],
                        64,
                        t,
                        |first, u, g| {
                            assert_eq!(first % 64, 0, "runs start at multiples of 64");
                            assert_eq!(u.len(), g.len());
                            seen.lock().unwrap()[first..first + g.len()]
                                .iter_mut()
                                .for_each(|s| *s += 1);
                            g.iter_mut().for_each(|v| *v *= 40.0);
                            k.swiglu_row(g, u);
                        },
                    )
                    .unwrap();
                    assert!(
                        seen.into_inner().unwrap().iter().all(|&s| s == 1),
                        "every row once"
                    );
                    for r in 0..rows {
                        assert!(same(pu[r], u[r]), "{} {ty} up row {r} of {rows}", k.level());
                        assert!(
                            same(pg[r], g[r]),
                            "{} {ty} gate row {r} of {rows}, {} threads",
                            k.level(),
                            t.count()
                        );
                    }
                }
                // Refused: two vectors, matrices of different rows.
                let mut two = Acts::new(cols, 2);
                two.quantize(at, &random_acts(&mut rng, 2 * cols, Scale::Normal), cols)
                    .unwrap();
                let (mut a, mut b) = (vec![0.0f32; 2 * rows], vec![0.0f32; 2 * rows]);
                let e =
                    k.matvec_pair_then([&wu, &wg], &two, [&mut a, &mut b], 64, &t1, |_, _, _| {});
                assert!(matches!(e, Err(KernelError::Length { .. })), "{e:?}");
                if rows > 1 {
                    let short = Weight {
                        rows: rows - 1,
                        data: &gate[..gate.len() / rows * (rows - 1)],
                        layout: WeightLayout::File,
                        ..wg
                    };
                    let (mut a, mut b) = (vec![0.0f32; rows], vec![0.0f32; rows - 1]);
                    let e = k.matvec_pair_then(
                        [&wu, &short],
                        &acts,
                        [&mut a, &mut b],
                        64,
                        &t1,
                        |_, _, _| {},
                    );
                    assert!(matches!(e, Err(KernelError::Length { .. })), "{e:?}");
                }
            }
        }
    }
}

#[test]
fn dispatched_matmul_works() {
    let mut rng = Rng(4);
    let (rows, cols) = (5, 64);
    let w = random_weights(&mut rng, GgmlType::Q8_0, rows, cols, Scale::Normal);
    let weight = Weight {
        name: "w",
        ty: GgmlType::Q8_0,
        cols,
        rows,
        data: &w,
        layout: WeightLayout::File,
    };
    let mut acts = Acts::new(cols, 2);
    acts.quantize(
        GgmlType::Q8_0,
        &random_acts(&mut rng, 2 * cols, Scale::Normal),
        cols,
    )
    .unwrap();
    let mut out = vec![0.0; 2 * rows];
    kernels::matmul(&weight, &acts, &mut out, &Threads::single()).unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
}

#[test]
fn bad_inputs_are_errors() {
    let k = kernels::kernels(KernelLevel::Scalar).unwrap();
    let w = vec![0u8; 2 * 18];
    let weight = Weight {
        name: "w",
        ty: GgmlType::Q4_0,
        cols: 32,
        rows: 2,
        data: &w,
        layout: WeightLayout::File,
    };
    let mut acts = Acts::new(64, 2);
    acts.quantize(GgmlType::Q8_K, &[0.0; 256][..64], 64)
        .unwrap_err();
    acts.quantize(GgmlType::Q8_1, &[0.5; 32], 32).unwrap();
    let mut out = vec![0.0; 2];
    assert!(matches!(
        k.matmul(&weight, &acts, &mut out, &Threads::single()),
        Err(KernelError::ActType { .. })
    ));
    acts.quantize(GgmlType::Q8_0, &[0.5; 64], 32).unwrap();
    // 2 vectors × 2 rows = 4 outputs needed.
    assert!(matches!(
        k.matmul(&weight, &acts, &mut out, &Threads::single()),
        Err(KernelError::Length { .. })
    ));
    let short = Weight {
        data: &w[..35],
        layout: WeightLayout::File,
        ..weight
    };
    let mut out4 = vec![0.0; 4];
    assert!(k
        .matmul(&short, &acts, &mut out4, &Threads::single())
        .is_err());
    assert!(k
        .matmul(&weight, &acts, &mut out4, &Threads::single())
        .is_ok());
    // Capacity.
    assert!(matches!(
        acts.quantize(GgmlType::Q8_0, &[0.0; 96], 32),
        Err(KernelError::Capacity { .. })
    ));
    assert!(matches!(
        acts.quantize(GgmlType::Q8_0, &[0.0; 128], 128),
        Err(KernelError::Capacity { .. })
    ));
    assert!(matches!(
        acts.quantize(GgmlType::Q4_0, &[0.0; 32], 32),
        Err(KernelError::UnsupportedType { .. })
    ));
    assert!(matches!(
        acts.quantize(GgmlType::Q8_0, &[0.0; 48], 48),
        Err(KernelError::NotWholeBlocks { .. })
    ));
    // Unsupported weight types and wrong row lengths in vec_dot.
    assert!(k.vec_dot(GgmlType::IQ2_XXS, &[], &[], 0).is_err());
    assert!(k.vec_dot(GgmlType::Q4_0, &w[..18], &[0u8; 33], 32).is_err());
    assert!("AVX2".parse::<KernelLevel>().is_ok());
    assert!("sse9".parse::<KernelLevel>().is_err());
    for l in KernelLevel::ALL {
        if kernels::kernels(l).is_err() {
            assert!(matches!(
                kernels::select(Some(l)),
                Err(KernelError::Unavailable { .. })
            ));
        }
    }
}

#[test]
fn f16_rows_equal_at_every_level() {
    let mut rng = Rng(6);
    let scalar = kernels::kernels(KernelLevel::Scalar).unwrap();
    for n in [0usize, 1, 3, 4, 7, 8, 9, 31, 100] {
        // Normal, subnormal, huge (→ inf), ties of f16 rounding.
        let mut x: Vec<f32> = (0..n).map(|_| rng.f32() * 70000.0).collect();
        for (i, v) in x.iter_mut().enumerate() {
            match i % 4 {
                1 => *v *= 1e-9,
                2 => *v = f32::from_bits(0x3f80_1000 + (i as u32 % 3) * 0x2000),
                _ => {}
            }
        }
        let mut want = vec![0u8; 2 * n];
        scalar.f32_to_f16_row(&x, &mut want);
        let mut back = vec![0.0f32; n];
        scalar.f16_to_f32_row(&want, &mut back);
        for k in levels() {
            let mut h = vec![0u8; 2 * n + 1];
            k.f32_to_f16_row(&x, &mut h[1..]);
            assert_eq!(&h[1..], &want[..], "{} f32→f16 n={n}", k.level());
            let mut f = vec![0.0f32; n];
            k.f16_to_f32_row(&h[1..], &mut f);
            assert_eq!(
                f.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{} f16→f32 n={n}",
                k.level()
            );
        }
    }
}

#[test]
fn f16_helpers_round_trip() {
    let x: Vec<f32> = (0..77).map(|i| (i as f32 - 38.0) * 0.125).collect();
    let mut b = vec![0u8; 2 * x.len()];
    kernels::ops::f32_to_f16_row(&x, &mut b);
    let mut y = vec![0.0; x.len()];
    kernels::ops::f16_to_f32_row(&b, &mut y);
    assert_eq!(x, y);
    let d = kernels::ops::vec_dot_f16(&b, &b, x.len()) as f64;
    let want: f64 = x.iter().map(|v| (*v as f64) * (*v as f64)).sum();
    assert!((d - want).abs() < 1e-3, "{d} vs {want}");
    let _ = quant::QK_K;
}

/// f64 references for the f32 operators (their exact ggml arithmetic is documented in
/// `kernels::ops`; these check the math, with f32-sized tolerances).
#[test]
fn ops_match_f64_references() {
    use kernels::ops;
    let mut rng = Rng(5);
    // RMSNorm with weight.
    let x: Vec<f32> = (0..1000).map(|_| rng.f32() * 3.0).collect();
    let w: Vec<f32> = (0..1000).map(|_| rng.f32()).collect();
    let mut out = vec![0.0; 1000];
    ops::rms_norm(&mut out, &x, Some(&w), 1e-6);
    let ms: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 1000.0;
    let sc = 1.0 / (ms + 1e-6).sqrt();
    for i in 0..1000 {
        let want = x[i] as f64 * sc * w[i] as f64;
        assert!(
            (out[i] as f64 - want).abs() <= 1e-6 * want.abs().max(1e-3),
            "rms_norm {i}"
        );
    }
    // Softmax.
    let mut y: Vec<f32> = (0..300).map(|_| rng.f32() * 20.0).collect();
    let max = y.iter().fold(f64::MIN, |m, v| m.max(*v as f64));
    let den: f64 = y.iter().map(|v| (*v as f64 - max).exp()).sum();
    let want: Vec<f64> = y.iter().map(|v| (*v as f64 - max).exp() / den).collect();
    ops::softmax_inplace(&mut y);
    for (g, w) in y.iter().zip(&want) {
        assert!((*g as f64 - w).abs() <= 1e-6 * w + 1e-12, "softmax {g} {w}");
    }
    // RoPE, normal and NeoX, several heads, partial rotation.
    let (heads, hd, n_rot, pos, base) = (3usize, 16usize, 12usize, 37usize, 10000.0f32);
    for neox in [false, true] {
        let x: Vec<f32> = (0..heads * hd).map(|_| rng.f32()).collect();
        let mut r = x.clone();
        ops::rope_inplace(&mut r, heads, hd, n_rot, pos, base, 1.0, neox);
        for h in 0..heads {
            for k in 0..n_rot / 2 {
                let theta = pos as f64 * (base as f64).powf(-2.0 * k as f64 / n_rot as f64);
                let (i0, i1) = if neox {
                    (k, k + n_rot / 2)
                } else {
                    (2 * k, 2 * k + 1)
                };
                let (a, b) = (x[h * hd + i0] as f64, x[h * hd + i1] as f64);
                let (c, s) = (theta.cos(), theta.sin());
                // theta is accumulated in f32 as ggml does: allow its rounding.
                let tol = 1e-4;
                assert!(
                    (r[h * hd + i0] as f64 - (a * c - b * s)).abs() < tol,
                    "rope {neox} {h} {k}"
                );
                assert!(
                    (r[h * hd + i1] as f64 - (a * s + b * c)).abs() < tol,
                    "rope {neox} {h} {k}"
                );
            }
            for i in n_rot..hd {
                assert_eq!(r[h * hd + i], x[h * hd + i], "rope leaves dims past n_rot");
            }
        }
    }
    // GELU (tanh) through f16, SiLU.
    let mut g: Vec<f32> = (0..2000).map(|i| (i as f32 - 1000.0) / 80.0).collect();
    let src = g.clone();
    ops::gelu_tanh_inplace(&mut g);
    for (o, x) in g.iter().zip(&src) {
        let x = *x as f64;
        let want = 0.5
            * x
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * x * (1.0 + 0.044715 * x * x)).tanh());
        // input and output each rounded to f16 (relative 2^-11), plus the slope.
        assert!(
            (*o as f64 - want).abs() <= 2e-3 * (want.abs() + x.abs()) + 1e-4,
            "gelu {x}: {o} vs {want}"
        );
    }
    let mut si = src.clone();
    ops::silu_inplace(&mut si);
    for (o, x) in si.iter().zip(&src) {
        let x = *x as f64;
        let want = x / (1.0 + (-x).exp());
        assert!(
            (*o as f64 - want).abs() <= 1e-6 * want.abs() + 1e-7,
            "silu {x}"
        );
    }
    let mut a = vec![1.0f32, 2.0, 3.0];
    ops::add_inplace(&mut a, &[0.5, 0.5]);
    ops::mul_inplace(&mut a, &[2.0, 2.0, 2.0, 9.0]);
    assert_eq!(a, [3.0, 5.0, 6.0]);
}

#[test]
fn swiglu_is_the_same_at_every_level() {
    let scalar = kernels::kernels(KernelLevel::Scalar).unwrap();
    let mut rng = Rng(11);
    for k in levels() {
        for n in [0usize, 1, 15, 16, 17, 33, 64, 100] {
            let mut gate: Vec<f32> = (0..n).map(|_| rng.f32() * 30.0).collect();
            // Values where e^-x overflows, underflows or is exactly 1.
            for (i, v) in [-200.0f32, 200.0, 0.0, -88.7, 88.7].into_iter().enumerate() {
                if let Some(g) = gate.get_mut(3 * i) {
                    *g = v;
                }
            }
            let up: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
            let (mut a, mut b) = (gate.clone(), gate.clone());
            scalar.swiglu_row(&mut a, &up);
            k.swiglu_row(&mut b, &up);
            for (x, y) in a.iter().zip(&b) {
                assert!(same(*x, *y), "{} swiglu n={n}: {x:e} vs {y:e}", k.level());
            }
        }
    }
}

#[test]
fn rope_is_the_same_at_every_level() {
    let scalar = kernels::kernels(KernelLevel::Scalar).unwrap();
    let mut rng = Rng(12);
    for k in levels() {
        for hd in [2usize, 8, 64, 128, 256] {
            for neox in [false, true] {
                let cs: Vec<(f32, f32)> = (0..hd / 2)
                    .map(|i| {
                        let a = rng.f32() * 100.0 + i as f32;
                        (a.cos(), a.sin())
                    })
                    .collect();
                let x: Vec<f32> = (0..hd).map(|_| rng.f32() * 50.0).collect();
                let (mut a, mut b) = (x.clone(), x.clone());
                scalar.rope_head(&mut a, &cs, neox);
                k.rope_head(&mut b, &cs, neox);
                assert_ne!(a, x, "rope moved nothing");
                for (p, q) in a.iter().zip(&b) {
                    assert!(
                        same(*p, *q),
                        "{} rope hd={hd} neox={neox}: {p:e} vs {q:e}",
                        k.level()
                    );
                }
            }
        }
    }
}
