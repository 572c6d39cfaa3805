//! The kernel level each target dispatches to (see the table in cross/README.md):
//! x86-64 picks AVX-512 VNNI (with GFNI if present), AVX-VNNI or AVX2 when the CPU has them, aarch64 at least NEON (baseline), and every
//! other target — armv7 among them — the scalar kernels, cleanly: the SIMD levels are
//! reported unavailable and asking for one is a typed error, not a crash.

use tramontane::kernels::{self, KernelError, KernelLevel};

#[test]
fn dispatch_fits_the_target() {
    let best = kernels::best_level();
    eprintln!(
        "target {}: best level {best}, in use {}",
        std::env::consts::ARCH,
        kernels::cpu_features()
    );
    #[cfg(target_arch = "x86_64")]
    {
        // The best x86 level is the highest the CPU has: AVX-VNNI needs AVX2 + FMA + F16C.
        let avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        let avx512vnni = std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni");
        let want = if !avx2 {
            KernelLevel::Scalar
        } else if avx512vnni && std::is_x86_feature_detected!("gfni") {
            KernelLevel::Avx512Gfni
        } else if avx512vnni {
            KernelLevel::Avx512Vnni
        } else if std::is_x86_feature_detected!("avxvnni") {
            KernelLevel::AvxVnni
        } else {
            KernelLevel::Avx2
        };
        assert_eq!(best, want);
    }
    let simd: &[KernelLevel] = if cfg!(target_arch = "x86_64") {
        &[KernelLevel::Neon, KernelLevel::Dotprod, KernelLevel::I8mm]
    } else if cfg!(target_arch = "aarch64") {
        assert!(
            kernels::available(KernelLevel::Neon),
            "NEON is baseline on aarch64"
        );
        assert!(best >= KernelLevel::Neon);
        &[
            KernelLevel::Avx2,
            KernelLevel::AvxVnni,
            KernelLevel::Avx512Vnni,
            KernelLevel::Avx512Gfni,
        ]
    } else {
        // armv7 (and any other target): NEON kernels exist for aarch64 only.
        assert_eq!(best, KernelLevel::Scalar);
        assert_eq!(kernels::cpu_features(), KernelLevel::Scalar);
        &[
            KernelLevel::Avx2,
            KernelLevel::AvxVnni,
            KernelLevel::Avx512Vnni,
            KernelLevel::Avx512Gfni,
            KernelLevel::Neon,
            KernelLevel::Dotprod,
            KernelLevel::I8mm,
        ]
    };
    assert!(kernels::available(KernelLevel::Scalar));
    for &level in simd {
        assert!(
            !kernels::available(level),
            "{level} on {}",
            std::env::consts::ARCH
        );
        assert!(
            matches!(
                kernels::select(Some(level)),
                Err(KernelError::Unavailable { .. })
            ),
            "{level}"
        );
        assert!(kernels::kernels(level).is_err(), "{level}");
    }
}
