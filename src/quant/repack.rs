//! A repacked layout of Q5_0 rows for the x86-64 AVX2 kernels (opt-in at load time:
//! [`crate::Model::repack_weights`]).
//!
//! A Q5_0 block keeps its 32 fifth bits in one 32-bit word and its nibbles two to a
//! byte; turning them into 32 quant bytes takes an AVX2 core about 9 vector
//! instructions per block (a byte shuffle, an `or` and a compare for the fifth bits
//! alone), and the decode matvec of Q5_0 matrices is bound by that count on AMD's Zen 3
//! rather than by memory. [`BlockQ5_0x4`] holds the same bytes of 4 consecutive blocks
//! of a row (128 values) so that they unpack with fewer: one 32-byte load gives the
//! nibbles of two blocks (one `and` for the first, a shift and an `and` for the second),
//! and one 16-byte field gives the fifth bits of all four (a shift and an `and` per
//! block). A repacked row is its whole groups of 4 blocks, then the row's last
//! `blocks mod 4` blocks as they are: the same length as the Q5_0 row.
//!
//! The layout changes no value: [`BlockQ5_0x4::unpack`] gives the 4 blocks back, byte
//! for byte, and every kernel computes a repacked row's dot product with the same bits
//! as the Q5_0 row's.

use bytemuck::{Pod, Zeroable};

use super::blocks::BlockQ5_0;

/// Four consecutive [`BlockQ5_0`] of a row, rearranged (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ5_0x4 {
    /// The four blocks' scales (f16), in order.
    pub d: [[u8; 2]; 4],
    /// Fifth bits: bit `b` of byte `j` is that of value `j` of block `b`, bit `4 + b`
    /// that of value `16 + j` of block `b` (`j < 16`, `b < 4`).
    pub qh: [u8; 16],
    /// Nibbles: byte `j` of `qs[p]` holds value `j` (`j < 32`) of block `2p` in its low
    /// nibble and of block `2p + 1` in its high nibble.
    pub qs: [[u8; 32]; 2],
}
const _: () = assert!(size_of::<BlockQ5_0x4>() == 4 * size_of::<BlockQ5_0>());
const _: () = assert!(align_of::<BlockQ5_0x4>() == 1);

/// Bits `0..8` of `bits` as 8 bytes of 0 or 1 (byte `i` = bit `i`): the byte copied 8
/// times, bit `i` kept in byte `i`, then moved to that byte's bit 0 (adding `0x7f` to a
/// byte sets its top bit exactly when the byte is not 0, without a carry).
fn spread8(bits: u32) -> u64 {
    let x = u64::from(bits & 0xff) * 0x0101_0101_0101_0101;
    let kept = x & 0x8040_2010_0804_0201;
    ((kept + 0x7f7f_7f7f_7f7f_7f7f) >> 7) & 0x0101_0101_0101_0101
}

/// Bits `0..16` of `bits` as 16 bytes of 0 or 1 (little-endian).
fn spread16(bits: u32) -> u128 {
    u128::from(spread8(bits)) | (u128::from(spread8(bits >> 8)) << 64)
}

/// The low nibble of each of 16 bytes (little-endian).
const LOW_NIBBLES: u128 = 0x0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f;

impl BlockQ5_0x4 {
    /// The 4 blocks in the repacked layout (word operations: a Qwen2.5-Coder 0.5B's
    /// 172 MB of Q5_0 repack in a fraction of a second).
    pub fn pack(blocks: &[BlockQ5_0; 4]) -> BlockQ5_0x4 {
        let mut g = BlockQ5_0x4::zeroed();
        let mut fifth = 0u128;
        let mut nib = [[0u128; 2]; 2];
        for (b, x) in blocks.iter().enumerate() {
            g.d[b] = x.d;
            let qh = x.qh();
            // Byte j: bit b from value j, bit 4 + b from value 16 + j.
            fifth |= (spread16(qh) << b) | (spread16(qh >> 16) << (b + 4));
            // Values 0..16 are the low nibbles, 16..32 the high ones.
            let qs = u128::from_le_bytes(x.qs);
            let shift = 4 * (b % 2);
            let pair = &mut nib[b / 2];
            pair[0] |= (qs & LOW_NIBBLES) << shift;
            pair[1] |= ((qs >> 4) & LOW_NIBBLES) << shift;
        }
        g.qh = fifth.to_le_bytes();
        for (q, n) in g.qs.iter_mut().zip(nib) {
            let (lo, hi) = q.split_at_mut(16);
            lo.copy_from_slice(&n[0].to_le_bytes());
            hi.copy_from_slice(&n[1].to_le_bytes());
        }
        g
    }

    /// The 4 blocks back, byte for byte (bit by bit: the reference for [`Self::pack`],
    /// and the portable dot product's way to read a group).
    pub fn unpack(&self) -> [BlockQ5_0; 4] {
        let mut out = [BlockQ5_0::zeroed(); 4];
        for (b, x) in out.iter_mut().enumerate() {
            x.d = self.d[b];
            let mut qh = 0u32;
            for j in 0..32 {
                let fifth = (self.qh[j % 16] >> (b + 4 * (j / 16))) & 1;
                qh |= u32::from(fifth) << j;
                let q = (self.qs[b / 2][j] >> (4 * (b % 2))) & 0x0f;
                x.qs[j % 16] |= q << (4 * (j / 16));
            }
            x.qh = qh.to_le_bytes();
        }
        out
    }
}

/// Bytes of a whole group of 4 blocks.
const GROUP: usize = size_of::<BlockQ5_0x4>();

/// Bytes of one Q5_0 block.
const BLOCK: usize = size_of::<BlockQ5_0>();

/// Repack one Q5_0 row (`src`, whole blocks) into `dst` (the same length). Returns
/// `false`, leaving `dst` as it is, if the lengths differ or are not whole blocks.
pub fn repack_q5_0_row(src: &[u8], dst: &mut [u8]) -> bool {
    if src.len() != dst.len() || !src.len().is_multiple_of(BLOCK) {
        return false;
    }
    let whole = src.len() / GROUP * GROUP;
    let (src_g, src_tail) = src.split_at(whole);
    let (dst_g, dst_tail) = dst.split_at_mut(whole);
    for (s, d) in src_g.chunks_exact(GROUP).zip(dst_g.chunks_exact_mut(GROUP)) {
        let blocks = bytemuck::try_cast_slice::<u8, BlockQ5_0>(s).ok();
        if let Some(blocks) = blocks.and_then(|b| <&[BlockQ5_0; 4]>::try_from(b).ok()) {
            d.copy_from_slice(bytemuck::bytes_of(&BlockQ5_0x4::pack(blocks)));
        }
    }
    dst_tail.copy_from_slice(src_tail);
    true
}

/// The blocks of a repacked row (whole blocks; a ragged end is ignored), in row order,
/// as Q5_0 blocks.
pub(crate) fn q5_0x4_blocks(row: &[u8]) -> impl Iterator<Item = BlockQ5_0> + '_ {
    let whole = row.len() / GROUP * GROUP;
    let (groups, tail) = row.split_at(whole);
    groups
        .chunks_exact(GROUP)
        .flat_map(|g| bytemuck::pod_read_unaligned::<BlockQ5_0x4>(g).unpack())
        .chain(
            tail.chunks_exact(BLOCK)
                .map(bytemuck::pod_read_unaligned::<BlockQ5_0>),
        )
}
