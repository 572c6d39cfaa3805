//! ggml's block structs (`ggml-common.h`), with alignment 1.
//!
//! Each field is a byte array (or `u8`/`i8`): multi-byte values such as the f16 scales
//! are stored as their little-endian bytes and read through accessors, so that a block
//! can be viewed in place at any address. The layout (field order and sizes) is
//! ggml's; each struct's size is asserted at compile time.

use core::mem::{align_of, size_of};

use bytemuck::{Pod, Zeroable};

use super::{f16_bytes, f16_le};
use crate::gguf::GgmlType;

/// Values per block of Q4_0.
pub const QK4_0: usize = 32;
/// Values per block of Q4_1.
pub const QK4_1: usize = 32;
/// Values per block of Q5_0.
pub const QK5_0: usize = 32;
/// Values per block of Q5_1.
pub const QK5_1: usize = 32;
/// Values per block of Q8_0.
pub const QK8_0: usize = 32;
/// Values per block of Q8_1.
pub const QK8_1: usize = 32;
/// Values per block of IQ4_NL.
pub const QK4_NL: usize = 32;
/// Values per block of MXFP4.
pub const QK_MXFP4: usize = 32;
/// Values per super-block of the K-quants (and IQ4_XS).
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales and mins in Q4_K and Q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// The 16 non-linear levels of IQ4_NL and IQ4_XS (`kvalues_iq4nl`).
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The E2M1 values of MXFP4, doubled (`kvalues_mxfp4`).
pub const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// A ggml block struct: which type it is, and how many values it holds.
pub trait QuantBlock: Pod {
    /// The ggml type whose blocks this struct lays out.
    const TYPE: GgmlType;
    /// Values per block (`ggml_blck_size`).
    const QK: usize;
}

macro_rules! block {
    ($name:ident, $ty:ident, $qk:expr, $bytes:expr) => {
        impl QuantBlock for $name {
            const TYPE: GgmlType = GgmlType::$ty;
            const QK: usize = $qk;
        }
        const _: () = assert!(size_of::<$name>() == $bytes);
        const _: () = assert!(align_of::<$name>() == 1);
        const _: () = assert!(size_of::<$name>() as u64 == GgmlType::$ty.block_bytes());
        const _: () = assert!($qk as u64 == GgmlType::$ty.block_size());
    };
}

/// `block_q4_0`: 32 values `d · (q − 8)`, q in 4 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale (f16).
    pub d: [u8; 2],
    /// Nibbles: low nibble of byte j is value j, high nibble is value j + 16.
    pub qs: [u8; QK4_0 / 2],
}
block!(BlockQ4_0, Q4_0, QK4_0, 18);

/// `block_q4_1`: 32 values `d · q + m`, q in 4 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Scale (f16).
    pub d: [u8; 2],
    /// Minimum (f16).
    pub m: [u8; 2],
    /// Nibbles, laid out as in Q4_0.
    pub qs: [u8; QK4_1 / 2],
}
block!(BlockQ4_1, Q4_1, QK4_1, 20);

/// `block_q5_0`: 32 values `d · (q − 16)`, q in 5 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Scale (f16).
    pub d: [u8; 2],
    /// Fifth bits: bit j of this little-endian u32 belongs to value j.
    pub qh: [u8; 4],
    /// Low nibbles, laid out as in Q4_0.
    pub qs: [u8; QK5_0 / 2],
}
block!(BlockQ5_0, Q5_0, QK5_0, 22);

/// `block_q5_1`: 32 values `d · q + m`, q in 5 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Scale (f16).
    pub d: [u8; 2],
    /// Minimum (f16).
    pub m: [u8; 2],
    /// Fifth bits, as in Q5_0.
    pub qh: [u8; 4],
    /// Low nibbles, laid out as in Q4_0.
    pub qs: [u8; QK5_1 / 2],
}
block!(BlockQ5_1, Q5_1, QK5_1, 24);

/// `block_q8_0`: 32 values `d · q`, q an i8.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale (f16).
    pub d: [u8; 2],
    /// Quants.
    pub qs: [i8; QK8_0],
}
block!(BlockQ8_0, Q8_0, QK8_0, 34);

/// `block_q8_1`: Q8_0 plus `s = d · Σ q` (f16), used for activations.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ8_1 {
    /// Scale (f16).
    pub d: [u8; 2],
    /// `d · Σ qs` (f16).
    pub s: [u8; 2],
    /// Quants.
    pub qs: [i8; QK8_1],
}
block!(BlockQ8_1, Q8_1, QK8_1, 36);

/// `block_q2_K`: 16 sub-blocks of 16 values `d·sc · q − dmin·m`, q in 2 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ2K {
    /// Per sub-block: scale in the low nibble, min in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants, four per byte.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the scales (f16).
    pub d: [u8; 2],
    /// Super-block scale for the mins (f16).
    pub dmin: [u8; 2],
}
block!(BlockQ2K, Q2_K, QK_K, 84);

/// `block_q3_K`: 16 sub-blocks of 16 values `d·(sc − 32) · q`, q in 3 bits (−4..=3).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ3K {
    /// High bit of each quant (set means no −4 offset).
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of the quants.
    pub qs: [u8; QK_K / 4],
    /// 16 scales of 6 bits, packed.
    pub scales: [u8; 12],
    /// Super-block scale (f16).
    pub d: [u8; 2],
}
block!(BlockQ3K, Q3_K, QK_K, 110);

/// `block_q4_K`: 8 sub-blocks of 32 values `d·sc · q − dmin·m`, q in 4 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ4K {
    /// Super-block scale for the scales (f16).
    pub d: [u8; 2],
    /// Super-block scale for the mins (f16).
    pub dmin: [u8; 2],
    /// 8 scales and 8 mins of 6 bits, packed (see [`BlockQ4K::scale_min`]).
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit quants: 32 bytes per 64 values, low nibbles first.
    pub qs: [u8; QK_K / 2],
}
block!(BlockQ4K, Q4_K, QK_K, 144);

/// `block_q5_K`: as Q4_K with a fifth bit per quant.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ5K {
    /// Super-block scale for the scales (f16).
    pub d: [u8; 2],
    /// Super-block scale for the mins (f16).
    pub dmin: [u8; 2],
    /// 8 scales and 8 mins of 6 bits, packed as in Q4_K.
    pub scales: [u8; K_SCALE_SIZE],
    /// Fifth bits.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits, laid out as in Q4_K.
    pub qs: [u8; QK_K / 2],
}
block!(BlockQ5K, Q5_K, QK_K, 176);

/// `block_q6_K`: 16 sub-blocks of 16 values `d·sc · (q − 32)`, q in 6 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits of the quants.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the quants.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale (f16).
    pub d: [u8; 2],
}
block!(BlockQ6K, Q6_K, QK_K, 210);

/// `block_q8_K`: 256 values `d · q`, with sums of 16 quants; activations for K-quant dot
/// products.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ8K {
    /// Scale (f32, little-endian).
    pub d: [u8; 4],
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sums of each 16 quants (16 × i16, little-endian).
    pub bsums: [u8; QK_K / 16 * 2],
}
block!(BlockQ8K, Q8_K, QK_K, 292);

/// `block_iq4_nl`: 32 values `d · KVALUES_IQ4NL[q]`, q in 4 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockIQ4NL {
    /// Scale (f16).
    pub d: [u8; 2],
    /// Nibbles, laid out as in Q4_0.
    pub qs: [u8; QK4_NL / 2],
}
block!(BlockIQ4NL, IQ4_NL, QK4_NL, 18);

/// `block_iq4_xs`: 8 sub-blocks of 32 values `d·(ls − 32) · KVALUES_IQ4NL[q]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockIQ4XS {
    /// Scale (f16).
    pub d: [u8; 2],
    /// High 2 bits of the 8 sub-block scales (u16, little-endian).
    pub scales_h: [u8; 2],
    /// Low 4 bits of the 8 sub-block scales.
    pub scales_l: [u8; QK_K / 64],
    /// Nibbles: 16 bytes per 32 values, low nibbles first.
    pub qs: [u8; QK_K / 2],
}
block!(BlockIQ4XS, IQ4_XS, QK_K, 136);

/// `block_mxfp4`: 32 values `2^(e−128) · KVALUES_MXFP4[q]` (OCP microscaling FP4).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockMXFP4 {
    /// Shared exponent (E8M0).
    pub e: u8,
    /// Nibbles, laid out as in Q4_0.
    pub qs: [u8; QK_MXFP4 / 2],
}
block!(BlockMXFP4, MXFP4, QK_MXFP4, 17);

macro_rules! f16_field {
    ($get:ident, $set:ident, $doc:literal) => {
        #[doc = concat!($doc, " as f32.")]
        #[inline]
        pub fn $get(&self) -> f32 {
            f16_le(self.$get)
        }
        #[doc = concat!("Store ", $doc, " (rounded to f16).")]
        #[inline]
        pub fn $set(&mut self, v: f32) {
            self.$get = f16_bytes(v);
        }
    };
}

impl BlockQ4_0 {
    f16_field!(d, set_d, "The scale");
}
impl BlockQ4_1 {
    f16_field!(d, set_d, "The scale");
    f16_field!(m, set_m, "The minimum");
}
impl BlockQ5_0 {
    f16_field!(d, set_d, "The scale");
    /// The fifth bits as one u32 (bit j belongs to value j).
    #[inline]
    pub fn qh(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}
impl BlockQ5_1 {
    f16_field!(d, set_d, "The scale");
    f16_field!(m, set_m, "The minimum");
    /// The fifth bits as one u32 (bit j belongs to value j).
    #[inline]
    pub fn qh(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}
impl BlockQ8_0 {
    f16_field!(d, set_d, "The scale");
}
impl BlockQ8_1 {
    f16_field!(d, set_d, "The scale");
    f16_field!(s, set_s, "`d · Σ qs`");
}
impl BlockQ2K {
    f16_field!(d, set_d, "The super-block scale");
    f16_field!(dmin, set_dmin, "The super-block min scale");
}
impl BlockQ3K {
    f16_field!(d, set_d, "The super-block scale");

    /// Scale `j` (0..16) unpacked from its 6 bits, minus 32 (−32..=31).
    /// Low 4 bits: nibble of `scales[j % 8]` (low for j < 8); high 2 bits: bits
    /// `2·(j/4)..` of `scales[8 + j % 4]`.
    #[inline]
    pub fn scale(&self, j: usize) -> i8 {
        let j = j % 16;
        let low = (self.scales[j % 8] >> (4 * (j / 8))) & 0x0f;
        let high = (self.scales[8 + j % 4] >> (2 * (j / 4))) & 0x03;
        ((low | (high << 4)) as i8).wrapping_sub(32)
    }
}
impl BlockQ4K {
    f16_field!(d, set_d, "The super-block scale");
    f16_field!(dmin, set_dmin, "The super-block min scale");

    /// Scale and min of sub-block `j` (0..8), 6 bits each (`get_scale_min_k4`).
    #[inline]
    pub fn scale_min(&self, j: usize) -> (u8, u8) {
        scale_min_k4(j, &self.scales)
    }
}
impl BlockQ5K {
    f16_field!(d, set_d, "The super-block scale");
    f16_field!(dmin, set_dmin, "The super-block min scale");

    /// Scale and min of sub-block `j` (0..8), 6 bits each (`get_scale_min_k4`).
    #[inline]
    pub fn scale_min(&self, j: usize) -> (u8, u8) {
        scale_min_k4(j, &self.scales)
    }
}
impl BlockQ6K {
    f16_field!(d, set_d, "The super-block scale");
}
impl BlockQ8K {
    /// The scale.
    #[inline]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }
    /// Store the scale.
    #[inline]
    pub fn set_d(&mut self, v: f32) {
        self.d = v.to_le_bytes();
    }
    /// Sum of quants `16·j .. 16·j + 16` (j in 0..16).
    #[inline]
    pub fn bsum(&self, j: usize) -> i16 {
        let j = j % 16;
        i16::from_le_bytes([self.bsums[2 * j], self.bsums[2 * j + 1]])
    }
    /// Store sum `j` (0..16).
    #[inline]
    pub fn set_bsum(&mut self, j: usize, v: i16) {
        let j = j % 16;
        let [a, b] = v.to_le_bytes();
        self.bsums[2 * j] = a;
        self.bsums[2 * j + 1] = b;
    }
}
impl BlockIQ4NL {
    f16_field!(d, set_d, "The scale");
}
impl BlockIQ4XS {
    f16_field!(d, set_d, "The scale");

    /// Sub-block scale `ib` (0..8), unpacked from 6 bits, minus 32 (−32..=31).
    #[inline]
    pub fn scale(&self, ib: usize) -> i32 {
        let ib = ib % 8;
        let h = u16::from_le_bytes(self.scales_h);
        let low = (self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f;
        let high = ((h >> (2 * ib)) & 0x03) as u8;
        i32::from(low | (high << 4)) - 32
    }
}
impl BlockMXFP4 {
    /// The scale `2^(e − 128)`, i.e. half the E8M0 value (`GGML_E8M0_TO_FP32_HALF`),
    /// since [`KVALUES_MXFP4`] are doubled.
    #[inline]
    pub fn d(&self) -> f32 {
        let bits = if self.e < 2 {
            0x0020_0000u32 << self.e
        } else {
            u32::from(self.e - 1) << 23
        };
        f32::from_bits(bits)
    }
}

/// ggml's `get_scale_min_k4`: 6-bit scale and min `j` (0..8) of a Q4_K/Q5_K block.
/// Sub-blocks 0..4 keep theirs in the low 6 bits of bytes j and j + 4; sub-blocks 4..8
/// keep the low 4 bits in byte j + 4 and the high 2 bits in the top of bytes j − 4 and j.
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    let j = j % 8;
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<B: QuantBlock>() {
        assert_eq!(size_of::<B>() as u64, B::TYPE.block_bytes(), "{}", B::TYPE);
        assert_eq!(B::QK as u64, B::TYPE.block_size(), "{}", B::TYPE);
        assert_eq!(align_of::<B>(), 1, "{}", B::TYPE);
    }

    #[test]
    fn sizes_match_ggml_type_table() {
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
    fn q3_k_scale_unpacking() {
        let mut b = BlockQ3K::zeroed();
        // Scale 9: low nibble in the high half of scales[1], high bits at bits 4..6 of scales[9].
        b.scales[1] = 0xa0;
        b.scales[9] = 0b10 << 4;
        assert_eq!(b.scale(9), (0x0a | (0b10 << 4)) - 32);
        assert_eq!(b.scale(1), -32);
    }

    #[test]
    fn mxfp4_scale() {
        let b = |e| BlockMXFP4 { e, qs: [0; 16] }.d();
        assert_eq!(b(128), 1.0);
        assert_eq!(b(129), 2.0);
        assert_eq!(b(1), f32::from_bits(0x0040_0000));
        assert_eq!(b(0), f32::from_bits(0x0020_0000));
    }
}
