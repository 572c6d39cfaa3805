//! x86-64 kernels: AVX2 + FMA + F16C, and the same with AVX-VNNI or AVX-512 VNNI
//! prefill tiles.

use super::table::Kernels;

mod attn;
mod avx2;
mod rows;
mod rows_k;
mod tiles;
mod tiles_k;
mod tiles_q6k;

/// Proof that the CPU supports AVX2, FMA and F16C: only [`Avx2::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Avx2 {
    _private: (),
}

impl Avx2 {
    /// `Some` if this CPU has AVX2, FMA and F16C (run-time detection with `std`,
    /// compile-time target features without).
    #[inline]
    pub fn detect() -> Option<Avx2> {
        #[cfg(feature = "std")]
        let ok = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ));
        ok.then_some(Avx2 { _private: () })
    }

    /// Wrapping sum of `data` as u64 words (see [`crate::kernels::read_probe`]).
    pub fn read_sum(self, data: &[u8]) -> u64 {
        // SAFETY: `self` proves the CPU has AVX2, FMA and F16C.
        unsafe { avx2::read_sum(data) }
    }

    /// The AVX2 kernel table.
    pub fn kernels(self) -> &'static Kernels {
        &avx2::TABLE
    }
}

/// Proof that the CPU supports AVX2, FMA, F16C and AVX-VNNI: only [`AvxVnni::detect`]
/// makes one.
#[derive(Clone, Copy, Debug)]
pub struct AvxVnni {
    _private: (),
}

impl AvxVnni {
    /// `Some` if this CPU has AVX2, FMA, F16C and AVX-VNNI (run-time detection with
    /// `std`, compile-time target features without).
    #[inline]
    pub fn detect() -> Option<AvxVnni> {
        #[cfg(feature = "std")]
        let ok = Avx2::detect().is_some() && std::is_x86_feature_detected!("avxvnni");
        #[cfg(not(feature = "std"))]
        let ok = Avx2::detect().is_some() && cfg!(target_feature = "avxvnni");
        ok.then_some(AvxVnni { _private: () })
    }

    /// The AVX-VNNI kernel table.
    pub fn kernels(self) -> &'static Kernels {
        &avx2::TABLE_VNNI
    }
}

/// Proof that the CPU supports AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI: only
/// [`Avx512Vnni::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Avx512Vnni {
    _private: (),
}

impl Avx512Vnni {
    /// `Some` if this CPU has AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI (run-time
    /// detection with `std`, compile-time target features without).
    #[inline]
    pub fn detect() -> Option<Avx512Vnni> {
        #[cfg(feature = "std")]
        let ok = Avx2::detect().is_some()
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni");
        #[cfg(not(feature = "std"))]
        let ok = Avx2::detect().is_some()
            && cfg!(all(
                target_feature = "avx512f",
                target_feature = "avx512bw",
                target_feature = "avx512vl",
                target_feature = "avx512vnni"
            ));
        ok.then_some(Avx512Vnni { _private: () })
    }

    /// The AVX-512 VNNI kernel table.
    pub fn kernels(self) -> &'static Kernels {
        &avx2::TABLE_ZMM
    }
}

/// Proof that the CPU supports everything [`Avx512Vnni`] needs and GFNI: only
/// [`Avx512Gfni::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Avx512Gfni {
    _private: (),
}

impl Avx512Gfni {
    /// `Some` if this CPU has the [`Avx512Vnni`] features and GFNI (run-time detection
    /// with `std`, compile-time target features without).
    #[inline]
    pub fn detect() -> Option<Avx512Gfni> {
        #[cfg(feature = "std")]
        let ok = Avx512Vnni::detect().is_some() && std::is_x86_feature_detected!("gfni");
        #[cfg(not(feature = "std"))]
        let ok = Avx512Vnni::detect().is_some() && cfg!(target_feature = "gfni");
        ok.then_some(Avx512Gfni { _private: () })
    }

    /// The AVX-512 VNNI + GFNI kernel table.
    pub fn kernels(self) -> &'static Kernels {
        &avx2::TABLE_GFNI
    }
}
