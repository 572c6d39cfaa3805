//! x86-64 kernels: AVX2 + FMA + F16C.

use super::table::Kernels;

mod attn;
mod avx2;

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
