//! The kernel level each target dispatches to (see the table in cross/README.md):
//! x86-64 picks AVX2 when the CPU has it, aarch64 at least NEON (baseline), and every
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
    let simd: &[KernelLevel] = if cfg!(target_arch = "x86_64") {
        &[KernelLevel::Neon, KernelLevel::Dotprod, KernelLevel::I8mm]
    } else if cfg!(target_arch = "aarch64") {
        assert!(
            kernels::available(KernelLevel::Neon),
            "NEON is baseline on aarch64"
        );
        assert!(best >= KernelLevel::Neon);
        &[KernelLevel::Avx2]
    } else {
        // armv7 (and any other target): NEON kernels exist for aarch64 only.
        assert_eq!(best, KernelLevel::Scalar);
        assert_eq!(kernels::cpu_features(), KernelLevel::Scalar);
        &[
            KernelLevel::Avx2,
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
