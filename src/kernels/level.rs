//! Which SIMD level this CPU supports, and which one is in use.

use core::sync::atomic::{AtomicU8, Ordering};

use super::{KernelError, KernelLevel};

/// 0: not chosen yet; otherwise `1 + index in KernelLevel::ALL`.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

fn encode(level: KernelLevel) -> u8 {
    match level {
        KernelLevel::Scalar => 1,
        KernelLevel::Avx2 => 2,
        KernelLevel::Neon => 3,
        KernelLevel::Dotprod => 4,
        KernelLevel::I8mm => 5,
        KernelLevel::AvxVnni => 6,
        KernelLevel::Avx512Vnni => 7,
        KernelLevel::Avx512Gfni => 8,
    }
}

fn decode(v: u8) -> Option<KernelLevel> {
    Some(match v {
        1 => KernelLevel::Scalar,
        2 => KernelLevel::Avx2,
        3 => KernelLevel::Neon,
        4 => KernelLevel::Dotprod,
        5 => KernelLevel::I8mm,
        6 => KernelLevel::AvxVnni,
        7 => KernelLevel::Avx512Vnni,
        8 => KernelLevel::Avx512Gfni,
        _ => return None,
    })
}

/// Can `level` run here? Detected at run time with `std`; without `std`, from the
/// target features the crate was compiled with (aarch64 NEON is baseline).
pub fn available(level: KernelLevel) -> bool {
    match level {
        KernelLevel::Scalar => true,
        #[cfg(target_arch = "x86_64")]
        KernelLevel::Avx2 => super::x86_64::Avx2::detect().is_some(),
        #[cfg(target_arch = "x86_64")]
        KernelLevel::AvxVnni => super::x86_64::AvxVnni::detect().is_some(),
        #[cfg(target_arch = "x86_64")]
        KernelLevel::Avx512Vnni => super::x86_64::Avx512Vnni::detect().is_some(),
        #[cfg(target_arch = "x86_64")]
        KernelLevel::Avx512Gfni => super::x86_64::Avx512Gfni::detect().is_some(),
        #[cfg(target_arch = "aarch64")]
        KernelLevel::Neon => super::aarch64::Neon::detect().is_some(),
        #[cfg(target_arch = "aarch64")]
        KernelLevel::Dotprod => super::aarch64::Dotprod::detect().is_some(),
        #[cfg(target_arch = "aarch64")]
        KernelLevel::I8mm => super::aarch64::I8mm::detect().is_some(),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// The best level this CPU supports.
pub fn best_level() -> KernelLevel {
    KernelLevel::ALL
        .into_iter()
        .rev()
        .find(|l| available(*l))
        .unwrap_or(KernelLevel::Scalar)
}

/// The level in use, chosen once per process: the one set by [`select`], else
/// `TRAMONTANE_KERNELS` if it names an available level, else the best detected.
///
/// An unusable `TRAMONTANE_KERNELS` value is ignored here (the best level is used);
/// call [`select(None)`](select) to get it reported as an error.
pub fn cpu_features() -> KernelLevel {
    if let Some(level) = decode(CHOSEN.load(Ordering::Relaxed)) {
        return level;
    }
    let level = from_env().ok().flatten().unwrap_or_else(best_level);
    // Another thread may have chosen meanwhile; the first choice wins.
    match CHOSEN.compare_exchange(0, encode(level), Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => level,
        Err(v) => decode(v).unwrap_or(level),
    }
}

/// Choose the level in use: `Some(level)` forces it (an error if the CPU lacks it);
/// `None` takes `TRAMONTANE_KERNELS` if set (an error if it names an unknown or
/// unavailable level), else the best detected level. Returns the level now in use.
///
/// Kernel calls already running keep the table they started with; later calls use the
/// new one. Results differ between levels only in the last bits of f32 sums where
/// documented (see the module docs), so switching mid-generation is allowed but
/// breaks bit-reproducibility against a run that did not switch.
pub fn select(level: Option<KernelLevel>) -> Result<KernelLevel, KernelError> {
    let level = match level {
        Some(l) => l,
        None => from_env()?.unwrap_or_else(best_level),
    };
    if !available(level) {
        return Err(KernelError::Unavailable {
            level,
            best: best_level(),
        });
    }
    CHOSEN.store(encode(level), Ordering::Relaxed);
    Ok(level)
}

/// The level named by `TRAMONTANE_KERNELS`, if it is set (std only).
#[cfg(feature = "std")]
fn from_env() -> Result<Option<KernelLevel>, KernelError> {
    let Some(v) = std::env::var_os("TRAMONTANE_KERNELS") else {
        return Ok(None);
    };
    let s = v.to_string_lossy();
    if s.trim().is_empty() {
        return Ok(None);
    }
    let level: KernelLevel = s.parse()?;
    if !available(level) {
        return Err(KernelError::Unavailable {
            level,
            best: best_level(),
        });
    }
    Ok(Some(level))
}

#[cfg(not(feature = "std"))]
fn from_env() -> Result<Option<KernelLevel>, KernelError> {
    Ok(None)
}
