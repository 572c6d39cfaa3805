//! Context shift: drop a range of cached positions, move the later ones down, and rotate
//! their keys back so they sit at their new positions (llama.cpp's "K-shift").
//!
//! Keys are stored after RoPE. Moving a key from position `p` to `p − n` means
//! rotating it by the angle of position `−n`: RoPE rotations compose by adding angles,
//! so the result is the key RoPE would have produced at `p − n` (up to rounding, and the
//! f16 cache rounds the rotated key again, as llama.cpp's does). Values carry no
//! position and are only moved.

use super::kv::{KvCache, KvStore};
use super::{ops, Model, RopeStyle, State};
use crate::kernels::ops as kops;

impl Model {
    /// Remove positions `keep .. keep + discard` from `st`: the positions after them move
    /// down by `discard`, their keys are rotated by `−discard`, and the next token goes
    /// to `n_past − discard`. Does nothing when the range is empty or does not lie within
    /// the used positions.
    ///
    /// `row` holds at least `kv_dim` floats and `rope` at least `n_rot / 2` pairs: the
    /// caller's scratch, so that nothing is allocated.
    pub(crate) fn shift_kv(
        &self,
        st: &mut State,
        keep: usize,
        discard: usize,
        row: &mut [f32],
        rope: &mut [(f32, f32)],
    ) {
        let c = &self.config;
        let n_past = st.n_past();
        let Some(end) = keep.checked_add(discard) else {
            return;
        };
        if discard == 0 || end > n_past {
            return;
        }
        let n_move = n_past - end;
        let kv_dim = c.kv_dim();
        let hd = c.head_dim;
        let (Some(row), Some(rope)) = (row.get_mut(..kv_dim), rope.get_mut(..c.n_rot / 2)) else {
            return;
        };
        let neox = c.arch.rope == RopeStyle::Neox;
        let freqs = super::weights::opt_values(&self.weights.rope_freqs, self.gguf.bytes());
        let kv = st.kv_mut();
        for il in 0..c.n_layer {
            let (from, to) = (kv.row(il, end), kv.row(il, keep));
            let len = n_move * kv_dim;
            move_values(&mut kv.k, from, to, len);
            move_values(&mut kv.v, from, to, len);

            // The angles of position −discard: those of +discard with the sine negated
            // (cos is even and sin odd, exactly, in libm as in the C library).
            let (base, scale) = c.rope_params(il);
            ops::rope_cache(rope, discard, c.n_rot, base, scale, freqs);
            for cs in rope.iter_mut() {
                cs.1 = -cs.1;
            }
            for pos in keep..keep + n_move {
                rotate_key(kv, il, pos, hd, row, rope, neox);
            }
        }
        st.set_n_past(n_past - discard);
    }
}

/// Copy `len` values from value index `from` to `to` (overlapping is fine).
fn move_values(s: &mut KvStore, from: usize, to: usize, len: usize) {
    match s {
        KvStore::F16(b) => {
            if from.saturating_add(len).saturating_mul(2) <= b.len() {
                b.copy_within(2 * from..2 * (from + len), 2 * to);
            }
        }
        KvStore::F32(v) => {
            if from.saturating_add(len) <= v.len() {
                v.copy_within(from..from + len, to);
            }
        }
    }
}

/// Rotate every head of the key of `(il, pos)` by the angles in `rope`.
fn rotate_key(
    kv: &mut KvCache,
    il: usize,
    pos: usize,
    hd: usize,
    row: &mut [f32],
    rope: &[(f32, f32)],
    neox: bool,
) {
    let at = kv.row(il, pos);
    let n = row.len();
    match &mut kv.k {
        KvStore::F16(b) => {
            let Some(bytes) = b.get_mut(2 * at..2 * (at + n)) else {
                return;
            };
            kops::f16_to_f32_row(bytes, row);
            for head in row.chunks_exact_mut(hd) {
                ops::rope_head(head, rope, neox);
            }
            kops::f32_to_f16_row(row, bytes);
        }
        KvStore::F32(v) => {
            let Some(vals) = v.get_mut(at..at + n) else {
                return;
            };
            for head in vals.chunks_exact_mut(hd) {
                ops::rope_head(head, rope, neox);
            }
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::model::{KvType, StateOptions};
    use alloc::vec;
    use alloc::vec::Vec;

    fn model(name: &str) -> Model {
        let path = std::format!(
            "{}/fixtures/models-synth/{name}.gguf",
            env!("CARGO_MANIFEST_DIR")
        );
        Model::open(path).unwrap()
    }

    fn row(kv: &KvStore, at: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n];
        match kv {
            KvStore::F16(b) => kops::f16_to_f32_row(&b[2 * at..2 * (at + n)], &mut out),
            KvStore::F32(v) => out.copy_from_slice(&v[at..at + n]),
        }
        out
    }

    /// Layer 0's keys depend only on the token and its position, so after a shift they
    /// must equal the keys of a fresh evaluation of the remaining tokens.
    #[test]
    fn shifted_keys_equal_fresh_keys() {
        for name in ["llama-gqa-f32", "qwen2-q4_0", "gemma3-f16"] {
            let m = model(name);
            let c = m.config().clone();
            let kvd = c.kv_dim();
            let toks: Vec<u32> = core::iter::once(1).chain(20..30).collect();
            for (ty, tol) in [(KvType::F32, 1e-4f32), (KvType::F16, 4e-3)] {
                let mut o = StateOptions::new(32);
                o.kv_type = ty;
                let mut logits = vec![0.0; c.n_vocab];
                let mut a = m.new_state_with(o).unwrap();
                m.eval(&mut a, &toks, &mut logits).unwrap();
                let mut scratch = vec![0.0; kvd];
                let mut rope = vec![(0.0, 0.0); c.n_rot / 2];
                m.shift_kv(&mut a, 1, 4, &mut scratch, &mut rope);
                assert_eq!(a.n_past(), 7);

                let fresh: Vec<u32> = core::iter::once(1).chain(24..30).collect();
                let mut b = m.new_state_with(o).unwrap();
                m.eval(&mut b, &fresh, &mut logits).unwrap();
                for pos in 0..7 {
                    let at = a.kv().row(0, pos);
                    for (which, sa, sb) in
                        [("K", &a.kv().k, &b.kv().k), ("V", &a.kv().v, &b.kv().v)]
                    {
                        let (x, y) = (row(sa, at, kvd), row(sb, at, kvd));
                        for (i, (p, q)) in x.iter().zip(&y).enumerate() {
                            assert!(
                                (p - q).abs() <= tol * (1.0 + q.abs()),
                                "{name} {ty:?} {which} pos {pos} [{i}]: {p} vs {q}"
                            );
                        }
                    }
                }
                // The kept position is untouched in every layer.
                for il in 0..c.n_layer {
                    let at = a.kv().row(il, 0);
                    assert_eq!(row(&a.kv().k, at, kvd), row(&b.kv().k, at, kvd));
                }
                // Out-of-range requests do nothing.
                m.shift_kv(&mut a, 5, 10, &mut scratch, &mut rope);
                m.shift_kv(&mut a, usize::MAX, 1, &mut scratch, &mut rope);
                assert_eq!(a.n_past(), 7);
            }
        }
    }
}
