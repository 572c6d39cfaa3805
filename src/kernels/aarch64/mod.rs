//! aarch64 kernels: NEON (baseline), dotprod (`sdot`), i8mm (`smmla`).

use super::table::Kernels;

mod body;
mod dotprod;
mod i8mm;
mod neon;

/// Proof that the CPU has Advanced SIMD (NEON).
#[derive(Clone, Copy, Debug)]
pub struct Neon {
    _private: (),
}

/// Proof that the CPU has NEON and the dot-product extension.
#[derive(Clone, Copy, Debug)]
pub struct Dotprod {
    _private: (),
}

/// Proof that the CPU has NEON, dotprod and the int8 matrix multiply extension.
#[derive(Clone, Copy, Debug)]
pub struct I8mm {
    _private: (),
}

impl Neon {
    /// `Some` if NEON is available (always on aarch64 targets with `neon`).
    #[inline]
    pub fn detect() -> Option<Neon> {
        #[cfg(feature = "std")]
        let ok = std::arch::is_aarch64_feature_detected!("neon");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(target_feature = "neon");
        ok.then_some(Neon { _private: () })
    }

    /// The NEON kernel table.
    pub fn kernels(self) -> &'static Kernels {
        &NEON
    }
}

impl Dotprod {
    /// `Some` if NEON and dotprod are available.
    #[inline]
    pub fn detect() -> Option<Dotprod> {
        #[cfg(feature = "std")]
        let ok = std::arch::is_aarch64_feature_detected!("neon")
            && std::arch::is_aarch64_feature_detected!("dotprod");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(all(target_feature = "neon", target_feature = "dotprod"));
        ok.then_some(Dotprod { _private: () })
    }

    /// The dotprod kernel table.
    pub fn kernels(self) -> &'static Kernels {
        &DOTPROD
    }
}

impl I8mm {
    /// `Some` if NEON, dotprod and i8mm are available.
    #[inline]
    pub fn detect() -> Option<I8mm> {
        #[cfg(feature = "std")]
        let ok = std::arch::is_aarch64_feature_detected!("neon")
            && std::arch::is_aarch64_feature_detected!("dotprod")
            && std::arch::is_aarch64_feature_detected!("i8mm");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(all(
            target_feature = "neon",
            target_feature = "dotprod",
            target_feature = "i8mm"
        ));
        ok.then_some(I8mm { _private: () })
    }

    /// The i8mm kernel table.
    pub fn kernels(self) -> &'static Kernels {
        &I8MM
    }
}

use dotprod::TABLE as DOTPROD;
use i8mm::TABLE as I8MM;
use neon::TABLE as NEON;
