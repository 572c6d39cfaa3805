//! AVX2 + FMA + F16C kernels.

use crate::kernels::table::Kernels;
use crate::kernels::KernelLevel;

/// The AVX2 table (entries not vectorized yet use the scalar kernels).
pub(super) static TABLE: Kernels = Kernels {
    level: KernelLevel::Avx2,
    ..Kernels::scalar()
};
