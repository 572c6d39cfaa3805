//! Kernel benchmarks: matvec GB/s per weight type on a 4096×4096 matrix, scalar against
//! the best SIMD level (or the one `TRAMONTANE_KERNELS` names), 1 and 2 threads, next
//! to a read-bandwidth probe (a read-only sum over 1 GiB) on the same machine in the
//! same run.
//!
//! Weights do not fit in cache: each type's matrix is replicated to fill 1 GiB and the
//! iterations cycle through the copies (the L3 here may be hundreds of MiB). Q5_0 is
//! measured twice: as in a GGUF file, and repacked for the decode matvec (`q5_0x4`, the
//! layout of the `Model::repack_weights` opt-in).
//!
//! ```text
//! cargo bench --bench kernels                       # everything (~7 min)
//! cargo bench --bench kernels -- 'matvec/Q4_K'      # one type (criterion filter)
//! TRAMONTANE_KERNELS=avx2 cargo bench --bench kernels   # the matvec at a lower level
//! ```
//!
//! A second group, `prefill`, times the batch matmul (64 vectors against a 2048×1024
//! matrix, 1 thread) at every level this CPU has, for the types of the real models.
//!
//! After criterion's own report, tables of medians (GB/s of weights read, % of the
//! measured read bandwidth, SIMD/scalar; prefill GMAC/s per level) are printed from
//! criterion's estimates. For Q4_0, Q4_K, Q5_0, Q6_K and Q8_0 the share of the
//! bandwidth and the SIMD/scalar ratio are also measured interleaved (`paired`): the
//! probe and the kernel, or the two levels, timed one right after the other in each of
//! 15 rounds, and the median of the per-round ratios reported. On a shared machine the
//! load drifts over the minutes between criterion's probe and a kernel's figures; it
//! moves both sides of a round alike.
//!
//! Each round also times scalar and the level in use, 1 thread, on the first
//! [`HOT_ROWS`] rows of one copy, called over and over so that they stay in the core's
//! L2: the ratio of the two kernels' arithmetic alone. Read from memory, one thread of
//! a fast kernel waits on the memory (here about 13-15 GB/s), so its ratio to scalar is
//! capped at the read bandwidth over the scalar rate: for Q4_K (scalar 1.8 GB/s) below
//! 8× whatever the SIMD code does.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use tramontane::gguf::GgmlType;
use tramontane::kernels::{self, act_type, Acts, KernelLevel, Threads, Weight, WeightLayout};

const ROWS: usize = 4096;
const COLS: usize = 4096;
const WORKING_SET: usize = 1 << 30;

const TYPES: [GgmlType; 15] = [
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q5_0,
    GgmlType::Q6_K,
    GgmlType::Q8_0,
    GgmlType::Q4_1,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q5_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Byte offsets of the f16 scales in a block of `ty` (none for float rows).
fn scale_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType as T;
    match ty {
        T::Q4_0 | T::Q5_0 | T::Q8_0 | T::IQ4_NL | T::IQ4_XS => &[0],
        T::Q4_1 | T::Q5_1 | T::Q4_K | T::Q5_K => &[0, 2],
        T::Q2_K => &[80, 82],
        T::Q3_K => &[108],
        T::Q6_K => &[208],
        _ => &[],
    }
}

/// Set every block scale of random quantized bytes to a small sane f16 (0.01).
fn sane_scales(ty: GgmlType, m: &mut [u8]) {
    let small = half::f16::from_f32(0.01).to_le_bytes();
    for b in m.chunks_exact_mut(ty.block_bytes() as usize) {
        for &o in scale_fields(ty) {
            b[o..o + 2].copy_from_slice(&small);
        }
    }
}

/// One random 4096×4096 matrix of `ty` (sane f16 scales), replicated to fill
/// [`WORKING_SET`]; returns the bytes and the size of one matrix.
/// One matrix the matvec bench measures: a type, in the file's layout or repacked.
#[derive(Clone, Copy)]
struct Entry {
    ty: GgmlType,
    layout: WeightLayout,
}

impl Entry {
    /// The name in the bench ids and tables.
    fn name(self) -> &'static str {
        match self.layout {
            WeightLayout::Q5_0x4 => "q5_0x4",
            _ => self.ty.name(),
        }
    }
}

/// Every type of [`TYPES`] in the file's layout, and Q5_0 repacked for the decode
/// matvec (`Model::repack_weights`) right after Q5_0.
fn entries() -> Vec<Entry> {
    let mut v = Vec::new();
    for ty in TYPES {
        v.push(Entry {
            ty,
            layout: WeightLayout::File,
        });
        if ty == GgmlType::Q5_0 {
            v.push(Entry {
                ty,
                layout: WeightLayout::Q5_0x4,
            });
        }
    }
    v
}

fn matrices(e: Entry) -> (Vec<u8>, usize) {
    let ty = e.ty;
    let one = ty.row_bytes(COLS as u64).unwrap() as usize * ROWS;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut m: Vec<u8> = (0..one).map(|_| rng.next() as u8).collect();
    use GgmlType as T;
    if scale_fields(ty).is_empty() {
        // Float rows: small finite values.
        let w = ty.block_bytes() as usize;
        for v in m.chunks_exact_mut(w) {
            match ty {
                T::F32 => v.copy_from_slice(&(0.001f32 * (rng.next() % 100) as f32).to_le_bytes()),
                _ => v.copy_from_slice(&(0x3c00u16 | (rng.next() as u16 & 0x3ff)).to_le_bytes()),
            }
        }
    } else {
        sane_scales(ty, &mut m);
    }
    if e.layout == WeightLayout::Q5_0x4 {
        let rb = one / ROWS;
        let plain = m.clone();
        for (s, d) in plain.chunks_exact(rb).zip(m.chunks_exact_mut(rb)) {
            assert!(tramontane::quant::repack_q5_0_row(s, d));
        }
    }
    let copies = working_set().div_ceil(one).max(1);
    let mut all = Vec::with_capacity(copies * one);
    for _ in 0..copies {
        all.extend_from_slice(&m);
    }
    (all, one)
}

/// Bytes the weight copies fill: 1 GiB, or `TRAMONTANE_BENCH_WORKING_SET` (bytes; a
/// small value such as 1 keeps one matrix, hot in cache, to see the compute bound).
fn working_set() -> usize {
    std::env::var("TRAMONTANE_BENCH_WORKING_SET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(WORKING_SET)
}

/// Read-only sum over `data` split across the pool's threads, read the way the kernels
/// read weights (`kernels::read_probe`: vector loads, software prefetch).
fn sum_bytes(data: &[u8], threads: &Threads) -> f32 {
    let n = threads.count();
    let chunk = data.len().div_ceil(n);
    let mut out = [0.0f32; 2];
    threads.for_rows(&mut out[..n.min(2)], 1, |i, o| {
        let part = data
            .get(i * chunk..((i + 1) * chunk).min(data.len()))
            .unwrap_or(&[]);
        o[0] = kernels::read_probe(part) as f32;
    });
    out[0] + out[1]
}

/// Bytes read per probe iteration: about one matrix, so that the probe's and the
/// matvec's iterations are timed alike (on a shared machine, long iterations collect
/// more preemptions than short ones).
const PROBE_STEP: usize = 8 << 20;

/// The probe's 1 GiB, every page written (so that it reads RAM, not the zero page).
fn probe_bytes() -> Vec<u8> {
    (0..WORKING_SET).map(|i| (i * 7 + i / 4096) as u8).collect()
}

fn bench_bandwidth(c: &mut Criterion, data: &[u8]) {
    let steps = WORKING_SET / PROBE_STEP;
    let mut g = c.benchmark_group("bandwidth");
    g.throughput(Throughput::Bytes(PROBE_STEP as u64));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for threads in [Threads::new(1).unwrap(), Threads::new(2).unwrap()] {
        let mut i = 0usize;
        let id = BenchmarkId::new("read_sum_1GiB", format!("t{}", threads.count()));
        g.bench_function(id, |b| {
            b.iter(|| {
                let part = &data[i * PROBE_STEP..(i + 1) * PROBE_STEP];
                i = (i + 1) % steps;
                black_box(sum_bytes(part, &threads))
            })
        });
    }
    g.finish();
}

/// Scalar and the level in use: the best one the CPU has, or the one
/// `TRAMONTANE_KERNELS` names (so that a lower level can be measured on a CPU with more).
fn levels() -> Vec<KernelLevel> {
    let level = kernels::cpu_features();
    if level == KernelLevel::Scalar {
        vec![KernelLevel::Scalar]
    } else {
        vec![KernelLevel::Scalar, level]
    }
}

/// Rounds of the interleaved measurement ([`paired`]).
const PAIRED_ROUNDS: usize = 15;

/// Matvec calls (on successive copies) per timed turn of [`paired`], after one untimed;
/// the probe reads as many bytes.
const PAIRED_CALLS: usize = 6;

/// The first five types, those of issue 3's targets, get the interleaved measurement
/// (Q5_0 in both layouts).
const PAIRED_TYPES: usize = 5;

/// Rows of the in-cache turns of [`paired`]: 256 rows of 4096 values take 0.6 MB
/// (Q4_K) to 1.1 MB (Q8_0), which fit in a 2 MB L2.
const HOT_ROWS: usize = 256;

/// Calls per timed in-cache turn (each reads [`HOT_ROWS`] rows).
const HOT_CALLS: usize = 40;

/// The interleaved ratios of one type ([`paired`]), medians over the rounds.
struct Paired {
    e: Entry,
    /// The level in use, 2 threads, over the read probe, from memory.
    share: f64,
    /// The level in use over scalar, 1 thread, from memory.
    speedup: f64,
    /// The level in use over scalar, 1 thread, the same rows over and over, in cache.
    speedup_hot: f64,
}

/// Ratios measured side by side, for one type: `PAIRED_ROUNDS` rounds, each timing, one
/// right after the other (which goes first alternates), the read probe and the matvec
/// of the level in use with 2 threads (over the same number of bytes), then the scalar
/// and that level's matvec with 1 thread, from memory and then on [`HOT_ROWS`] rows in
/// cache. Returns the medians of the per-round ratios: the machine's load moves both
/// sides of a round alike, where criterion's figures for the probe and for a kernel are
/// minutes apart.
fn paired(
    e: Entry,
    all: &[u8],
    one: usize,
    acts: &Acts,
    probe: &[u8],
    pools: &[Threads; 2],
) -> Paired {
    let (ty, layout) = (e.ty, e.layout);
    let copies = all.len() / one;
    let steps = probe.len() / one;
    let (mut i, mut p) = (0usize, 0usize);
    let mut out = vec![0.0f32; ROWS];
    let mut time = |level: KernelLevel, threads: &Threads| {
        let k = kernels::kernels(level).unwrap();
        turn(|| {
            let w = Weight {
                name: "bench",
                ty,
                cols: COLS,
                rows: ROWS,
                data: &all[i * one..(i + 1) * one],
                layout,
            };
            i = (i + 1) % copies;
            k.matmul(&w, acts, &mut out, threads).unwrap();
            black_box(out[0]);
        })
    };
    let mut hot_out = vec![0.0f32; HOT_ROWS];
    let mut hot = |level: KernelLevel| {
        let k = kernels::kernels(level).unwrap();
        let w = Weight {
            name: "bench",
            ty,
            cols: COLS,
            rows: HOT_ROWS,
            data: &all[..one / ROWS * HOT_ROWS],
            layout,
        };
        turn_of(HOT_CALLS, || {
            k.matmul(&w, acts, &mut hot_out, &pools[0]).unwrap();
            black_box(hot_out[0]);
        })
    };
    let mut probe_time = |threads: &Threads| {
        turn(|| {
            black_box(sum_bytes(&probe[p * one..(p + 1) * one], threads));
            p = (p + 1) % steps;
        })
    };
    let level = kernels::cpu_features();
    let (mut share, mut speedup, mut speedup_hot) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..PAIRED_ROUNDS {
        // Which side of a pair goes first alternates from round to round.
        let (tp, tk, ts, tv) = if round % 2 == 0 {
            let tp = probe_time(&pools[1]);
            let tk = time(level, &pools[1]);
            let ts = time(KernelLevel::Scalar, &pools[0]);
            (tp, tk, ts, time(level, &pools[0]))
        } else {
            let tk = time(level, &pools[1]);
            let tp = probe_time(&pools[1]);
            let tv = time(level, &pools[0]);
            (tp, tk, time(KernelLevel::Scalar, &pools[0]), tv)
        };
        share.push(tp / tk);
        speedup.push(ts / tv);
        let (hs, hv) = if round % 2 == 0 {
            let hs = hot(KernelLevel::Scalar);
            (hs, hot(level))
        } else {
            let hv = hot(level);
            (hot(KernelLevel::Scalar), hv)
        };
        speedup_hot.push(hs / hv);
    }
    Paired {
        e,
        share: median(&mut share),
        speedup: median(&mut speedup),
        speedup_hot: median(&mut speedup_hot),
    }
}

/// Seconds that `PAIRED_CALLS` calls of `call` take, after one call left out of the
/// time: it wakes the pool's workers, which may have gone to sleep during the other
/// pool's turns.
fn turn(call: impl FnMut()) -> f64 {
    turn_of(PAIRED_CALLS, call)
}

/// Seconds that `calls` calls of `call` take, after one untimed (see [`turn`]).
fn turn_of(calls: usize, mut call: impl FnMut()) -> f64 {
    call();
    let t0 = std::time::Instant::now();
    for _ in 0..calls {
        call();
    }
    t0.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn bench_matvec(c: &mut Criterion, probe: &[u8]) -> Vec<Paired> {
    let mut ratios = Vec::new();
    println!(
        "kernel level: best {}, dispatched {}",
        kernels::best_level(),
        kernels::cpu_features()
    );
    let pools = [Threads::new(1).unwrap(), Threads::new(2).unwrap()];
    let mut g = c.benchmark_group("matvec");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for e in entries() {
        let ty = e.ty;
        let (all, one) = matrices(e);
        let copies = all.len() / one;
        let at = act_type(ty).unwrap();
        let mut rng = Rng(7);
        let x: Vec<f32> = (0..COLS)
            .map(|_| (rng.next() % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        let mut acts = Acts::new(COLS, 1);
        acts.quantize(at, &x, COLS).unwrap();
        let mut out = vec![0.0f32; ROWS];
        g.throughput(Throughput::Bytes(one as u64));
        for level in levels() {
            let k = kernels::kernels(level).unwrap();
            for threads in &pools {
                let id = BenchmarkId::new(e.name(), format!("{}-t{}", level, threads.count()));
                let mut i = 0usize;
                g.bench_function(id, |b| {
                    b.iter(|| {
                        let data = &all[i * one..(i + 1) * one];
                        i = (i + 1) % copies;
                        let w = Weight {
                            name: "bench",
                            ty,
                            cols: COLS,
                            rows: ROWS,
                            data,
                            layout: e.layout,
                        };
                        k.matmul(&w, &acts, &mut out, threads).unwrap();
                        black_box(out[0])
                    })
                });
            }
        }
        if TYPES[..PAIRED_TYPES].contains(&ty) && kernels::cpu_features() != KernelLevel::Scalar {
            ratios.push(paired(e, &all, one, &acts, probe, &pools));
        }
    }
    g.finish();
    ratios
}

const PF_ROWS: usize = 2048;
const PF_COLS: usize = 1024;
const PF_VECS: usize = 64;
const PF_TYPES: [GgmlType; 5] = [
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

/// The prefill matmul (one batch of [`PF_VECS`] vectors) at every available level.
fn bench_prefill(c: &mut Criterion) {
    let t1 = Threads::new(1).unwrap();
    let mut g = c.benchmark_group("prefill");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    for ty in PF_TYPES {
        let one = ty.row_bytes(PF_COLS as u64).unwrap() as usize * PF_ROWS;
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut w: Vec<u8> = (0..one).map(|_| rng.next() as u8).collect();
        sane_scales(ty, &mut w);
        let x: Vec<f32> = (0..PF_VECS * PF_COLS)
            .map(|_| (rng.next() % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        let mut acts = Acts::new(PF_COLS, PF_VECS);
        acts.quantize(act_type(ty).unwrap(), &x, PF_COLS).unwrap();
        let mut out = vec![0.0f32; PF_VECS * PF_ROWS];
        g.throughput(Throughput::Elements((PF_ROWS * PF_COLS * PF_VECS) as u64));
        for level in KernelLevel::ALL {
            let Ok(k) = kernels::kernels(level) else {
                continue;
            };
            let weight = Weight {
                name: "bench",
                ty,
                cols: PF_COLS,
                rows: PF_ROWS,
                data: &w,
                layout: WeightLayout::File,
            };
            g.bench_function(BenchmarkId::new(ty.name(), level.name()), |b| {
                b.iter(|| {
                    k.matmul(&weight, &acts, &mut out, &t1).unwrap();
                    black_box(out[0])
                })
            });
        }
    }
    g.finish();
}

/// The prefill table: GMAC/s per level, from criterion's medians.
fn prefill_summary() {
    let levels: Vec<KernelLevel> = KernelLevel::ALL
        .into_iter()
        .filter(|l| kernels::available(*l))
        .collect();
    println!(
        "\n## Prefill matmul medians ({PF_VECS} vectors × {PF_ROWS}×{PF_COLS}, 1 thread, GMAC/s)\n"
    );
    let head: Vec<String> = levels.iter().map(|l| l.name().to_string()).collect();
    println!("| type | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(levels.len()));
    let macs = (PF_ROWS * PF_COLS * PF_VECS) as f64;
    for ty in PF_TYPES {
        let cells: Vec<String> = levels
            .iter()
            .map(|l| {
                median_ns("prefill", ty.name(), l.name())
                    .map_or("-".into(), |ns| format!("{:.1}", macs / ns))
            })
            .collect();
        println!("| {} | {} |", ty.name(), cells.join(" | "));
    }
}

/// Median time in ns of one benchmark, from criterion's estimates.
fn median_ns(group: &str, func: &str, param: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = format!("{dir}/criterion/{group}/{func}/{param}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn summary(paired: &[Paired]) {
    let gbs = |bytes: usize, ns: f64| bytes as f64 / ns;
    let bw: Vec<Option<f64>> = [1, 2]
        .iter()
        .map(|t| {
            median_ns("bandwidth", "read_sum_1GiB", &format!("t{t}")).map(|ns| gbs(PROBE_STEP, ns))
        })
        .collect();
    println!(
        "\n## Kernel medians ({} rows × {} cols, weights cycled over 1 GiB)\n",
        ROWS, COLS
    );
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    println!(
        "read bandwidth (sum over 1 GiB): 1 thread {} GB/s, 2 threads {} GB/s\n",
        fmt(bw[0]),
        fmt(bw[1])
    );
    let level = kernels::cpu_features();
    println!(
        "| type | scalar t1 GB/s | scalar t2 GB/s | {level} t1 GB/s | {level} t2 GB/s | {level} t2 / bandwidth | {level}/scalar (t1) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for e in entries() {
        let one = e.ty.row_bytes(COLS as u64).unwrap() as usize * ROWS;
        let get = |l: KernelLevel, t: usize| {
            median_ns("matvec", e.name(), &format!("{}-t{}", l, t)).map(|ns| gbs(one, ns))
        };
        let (s1, s2, v1, v2) = (
            get(KernelLevel::Scalar, 1),
            get(KernelLevel::Scalar, 2),
            get(level, 1),
            get(level, 2),
        );
        if s1.is_none() && v1.is_none() {
            continue;
        }
        let ratio = match (v2, bw[1]) {
            (Some(v), Some(b)) => format!("{:.0}%", 100.0 * v / b),
            _ => "-".into(),
        };
        let speedup = match (v1, s1) {
            (Some(v), Some(s)) => format!("{:.1}×", v / s),
            _ => "-".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            e.name(),
            fmt(s1),
            fmt(s2),
            fmt(v1),
            fmt(v2),
            ratio,
            speedup
        );
    }
    if paired.is_empty() {
        return;
    }
    println!(
        "\n## Interleaved ratios (medians of {PAIRED_ROUNDS} rounds; each round times the probe and \
         the {level} matvec, 2 threads, one right after the other, then scalar and {level}, 1 thread, \
         from memory and on {HOT_ROWS} rows in cache)\n"
    );
    println!(
        "| type | {level} t2 / bandwidth | {level}/scalar (t1) | {level}/scalar (t1), in cache |"
    );
    println!("|---|---|---|---|");
    for p in paired {
        println!(
            "| {} | {:.0}% | {:.1}× | {:.1}× |",
            p.e.name(),
            100.0 * p.share,
            p.speedup,
            p.speedup_hot
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let probe = probe_bytes();
    bench_bandwidth(&mut c, &probe);
    let paired = bench_matvec(&mut c, &probe);
    drop(probe);
    bench_prefill(&mut c);
    c.final_summary();
    summary(&paired);
    prefill_summary();
}
