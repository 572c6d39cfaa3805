//! Saved session state: a self-checking binary blob with the KV cache of the used
//! positions, the token history, the last logits and the pending token.
//!
//! Layout (version 1, every number little-endian):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 8 | magic `TRAMSTAT` |
//! | 8 | 4 | format version (1) |
//! | 12 | 1 | KV type: 0 = f16, 1 = f32 |
//! | 13 | 1 | flags: bit 0 logits present, bit 1 pending token present |
//! | 14 | 2 | reserved, 0 |
//! | 16 | 8 | model fingerprint ([`Model::fingerprint`]) |
//! | 24 | 8 | `n_pos`: positions used |
//! | 32 | 4 | `n_layer` |
//! | 36 | 4 | `kv_dim` (values per position and layer) |
//! | 40 | 4 | `n_vocab` |
//! | 44 | 4 | pending token (0 when absent) |
//! | 48 | 4·n_pos | token history (`u32` ids, one per position) |
//! | … | 4·n_vocab | logits (`f32`), if flag bit 0 |
//! | … | n_layer·n_pos·kv_dim·elem | keys, layer after layer, position after position |
//! | … | same | values |
//! | end − 8 | 8 | FNV-1a 64 of every byte before it |
//!
//! Loading checks everything (magic, version, length, checksum, fingerprint, sizes)
//! before the session is touched, so a refused blob leaves the session as it was.

use alloc::vec::Vec;

use super::kv::{KvStore, KvType};
use super::load::{fnv1a, FNV_OFFSET};
use super::{Model, State};
use crate::Result;

/// The magic bytes that start a saved state.
pub(crate) const MAGIC: [u8; 8] = *b"TRAMSTAT";
/// The format version written, and the only one read.
pub const STATE_VERSION: u32 = 1;
const HEADER_LEN: usize = 48;
const FLAG_LOGITS: u8 = 1;
const FLAG_PENDING: u8 = 2;

/// Why a saved state was refused (or could not be written).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The bytes do not start with the state magic.
    #[error("not a saved session state (bad magic)")]
    NotAState,
    /// A format version this build does not read.
    #[error("saved state format version {found} is not supported (this build reads {supported})")]
    Version {
        /// Version in the blob.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The blob is shorter or longer than its header says.
    #[error("saved state has {found} bytes, its header implies {expected}")]
    Length {
        /// Bytes the header implies (saturated at `u64::MAX` if it overflows).
        expected: u64,
        /// Bytes given.
        found: usize,
    },
    /// The checksum does not match: the blob was corrupted.
    #[error("saved state is corrupted: checksum {found:#018x}, computed {computed:#018x}")]
    Checksum {
        /// Checksum stored in the blob.
        found: u64,
        /// Checksum of the bytes.
        computed: u64,
    },
    /// The state was saved from another model file.
    #[error("saved state belongs to another model (fingerprint {found:#018x}, this model {expected:#018x})")]
    WrongModel {
        /// This model's fingerprint.
        expected: u64,
        /// The blob's.
        found: u64,
    },
    /// The blob's KV cache type differs from the session's.
    #[error("saved state has a {saved:?} KV cache, the session a {session:?} one")]
    KvType {
        /// Type in the blob.
        saved: KvType,
        /// Type of the session.
        session: KvType,
    },
    /// The blob holds more positions than the session's context.
    #[error("saved state holds {positions} positions, the session's context only {capacity}")]
    TooLong {
        /// Positions in the blob.
        positions: u64,
        /// The session's context length.
        capacity: usize,
    },
    /// A field is out of range (unknown KV type or flags, a token id outside the vocabulary,
    /// dimensions that do not match the model).
    #[error("saved state field {field} = {value} is invalid")]
    Field {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// Writing the state failed.
    #[cfg(feature = "std")]
    #[error("cannot write the saved state: {0}")]
    Write(#[source] std::io::Error),
}

/// What a loaded blob says besides the cache (the session keeps these).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Loaded {
    /// Positions restored.
    pub(crate) n_pos: usize,
    /// True if the logits were restored.
    pub(crate) has_logits: bool,
    /// The sampled token not yet run through the model.
    pub(crate) pending: Option<u32>,
}

/// Where the bytes of a state go: a `Vec`, or a writer (std).
pub(crate) trait Sink {
    /// Append `bytes`.
    fn put(&mut self, bytes: &[u8]) -> Result<()>;
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// A [`Sink`] for any `std::io::Write`.
#[cfg(feature = "std")]
pub(crate) struct WriteSink<W>(pub(crate) W);

#[cfg(feature = "std")]
impl<W: std::io::Write> Sink for WriteSink<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.0
            .write_all(bytes)
            .map_err(|e| StateError::Write(e).into())
    }
}

/// Hashes everything written through it.
struct Hashing<'a, S: ?Sized> {
    sink: &'a mut S,
    hash: u64,
}

impl<S: Sink + ?Sized> Hashing<'_, S> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.hash = fnv1a(self.hash, bytes);
        self.sink.put(bytes)
    }
}

fn elem_size(ty: KvType) -> usize {
    match ty {
        KvType::F16 => 2,
        KvType::F32 => 4,
    }
}

/// Total blob length for these sizes, or `None` on overflow.
fn blob_len(
    n_pos: u64,
    n_layer: u64,
    kv_dim: u64,
    n_vocab: u64,
    elem: u64,
    logits: bool,
) -> Option<u64> {
    let history = n_pos.checked_mul(4)?;
    let logits = if logits { n_vocab.checked_mul(4)? } else { 0 };
    let kv = n_layer
        .checked_mul(n_pos)?
        .checked_mul(kv_dim)?
        .checked_mul(elem)?
        .checked_mul(2)?;
    (HEADER_LEN as u64)
        .checked_add(history)?
        .checked_add(logits)?
        .checked_add(kv)?
        .checked_add(8)
}

impl Model {
    /// Bytes [`Model::save_state_to`] writes for these contents.
    pub(crate) fn state_len(&self, st: &State, with_logits: bool) -> usize {
        let c = &self.config;
        blob_len(
            st.n_past() as u64,
            c.n_layer as u64,
            c.kv_dim() as u64,
            c.n_vocab as u64,
            elem_size(st.kv_type()) as u64,
            with_logits,
        )
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(usize::MAX)
    }

    /// Write the state: `history` holds the token at each used position, `logits` the
    /// logits after the last one (if valid), `pending` a sampled token not yet evaluated.
    pub(crate) fn save_state_to<S: Sink + ?Sized>(
        &self,
        st: &State,
        history: &[u32],
        logits: Option<&[f32]>,
        pending: Option<u32>,
        sink: &mut S,
    ) -> Result<()> {
        let c = &self.config;
        let n_pos = st.n_past();
        let kv_dim = c.kv_dim();
        let mut w = Hashing {
            sink,
            hash: FNV_OFFSET,
        };
        let mut flags = 0u8;
        let logits = logits.filter(|l| l.len() == c.n_vocab);
        if logits.is_some() {
            flags |= FLAG_LOGITS;
        }
        if pending.is_some() {
            flags |= FLAG_PENDING;
        }
        let kv_code = match st.kv_type() {
            KvType::F16 => 0u8,
            KvType::F32 => 1u8,
        };
        let u32_of = |n: usize, field| {
            u32::try_from(n).map_err(|_| StateError::Field {
                field,
                value: n as u64,
            })
        };
        let mut head = [0u8; HEADER_LEN];
        head[0..8].copy_from_slice(&MAGIC);
        head[8..12].copy_from_slice(&STATE_VERSION.to_le_bytes());
        head[12] = kv_code;
        head[13] = flags;
        head[16..24].copy_from_slice(&self.fingerprint().to_le_bytes());
        head[24..32].copy_from_slice(&(n_pos as u64).to_le_bytes());
        head[32..36].copy_from_slice(&u32_of(c.n_layer, "n_layer")?.to_le_bytes());
        head[36..40].copy_from_slice(&u32_of(kv_dim, "kv_dim")?.to_le_bytes());
        head[40..44].copy_from_slice(&u32_of(c.n_vocab, "n_vocab")?.to_le_bytes());
        head[44..48].copy_from_slice(&pending.unwrap_or(0).to_le_bytes());
        w.put(&head)?;

        // History: exactly n_pos ids (missing ones as 0, which cannot happen from a session).
        let mut buf = [0u8; 4096];
        let ids = history.iter().copied().chain(core::iter::repeat(0));
        put_words(&mut w, &mut buf, ids.take(n_pos).map(u32::to_le_bytes))?;
        if let Some(l) = logits {
            put_words(&mut w, &mut buf, l.iter().map(|v| v.to_le_bytes()))?;
        }
        let kv = st.kv();
        for store in [&kv.k, &kv.v] {
            for il in 0..c.n_layer {
                let (a, b) = (kv.row(il, 0), kv.row(il, n_pos));
                match store {
                    KvStore::F16(bytes) => w.put(bytes.get(2 * a..2 * b).unwrap_or(&[]))?,
                    KvStore::F32(vals) => put_words(
                        &mut w,
                        &mut buf,
                        vals.get(a..b)
                            .unwrap_or(&[])
                            .iter()
                            .map(|v| v.to_le_bytes()),
                    )?,
                }
            }
        }
        let sum = w.hash;
        w.sink.put(&sum.to_le_bytes())
    }

    /// Check `blob` completely, then restore it into `st`, `history` (cleared and
    /// refilled) and `logits` (`n_vocab` floats, written if the blob has them).
    pub(crate) fn load_state_from(
        &self,
        st: &mut State,
        blob: &[u8],
        history: &mut Vec<u32>,
        logits: &mut [f32],
    ) -> Result<Loaded> {
        let c = &self.config;
        if blob.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(StateError::NotAState.into());
        }
        let head: &[u8; HEADER_LEN] = blob
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(StateError::Length {
                expected: HEADER_LEN as u64 + 8,
                found: blob.len(),
            })?;
        let u32_at =
            |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let version = u32_at(8);
        if version != STATE_VERSION {
            return Err(StateError::Version {
                found: version,
                supported: STATE_VERSION,
            }
            .into());
        }
        let saved_ty = match head[12] {
            0 => KvType::F16,
            1 => KvType::F32,
            v => {
                return Err(StateError::Field {
                    field: "kv_type",
                    value: u64::from(v),
                }
                .into())
            }
        };
        let flags = head[13];
        if flags & !(FLAG_LOGITS | FLAG_PENDING) != 0 || head[14] != 0 || head[15] != 0 {
            return Err(StateError::Field {
                field: "flags",
                value: u64::from(flags),
            }
            .into());
        }
        let has_logits = flags & FLAG_LOGITS != 0;
        let n_pos = u64_at(24);
        let (n_layer, kv_dim, n_vocab) = (u32_at(32), u32_at(36), u32_at(40));
        let expected = blob_len(
            n_pos,
            u64::from(n_layer),
            u64::from(kv_dim),
            u64::from(n_vocab),
            elem_size(saved_ty) as u64,
            has_logits,
        )
        .unwrap_or(u64::MAX);
        if expected != blob.len() as u64 {
            return Err(StateError::Length {
                expected,
                found: blob.len(),
            }
            .into());
        }
        let (body, tail) = blob.split_at(blob.len() - 8);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(tail);
        let found = u64::from_le_bytes(sum);
        let computed = fnv1a(FNV_OFFSET, body);
        if found != computed {
            return Err(StateError::Checksum { found, computed }.into());
        }
        let fp = self.fingerprint();
        if u64_at(16) != fp {
            return Err(StateError::WrongModel {
                expected: fp,
                found: u64_at(16),
            }
            .into());
        }
        for (field, saved, ours) in [
            ("n_layer", n_layer, c.n_layer),
            ("kv_dim", kv_dim, c.kv_dim()),
            ("n_vocab", n_vocab, c.n_vocab),
        ] {
            if usize::try_from(saved).ok() != Some(ours) {
                return Err(StateError::Field {
                    field,
                    value: u64::from(saved),
                }
                .into());
            }
        }
        if saved_ty != st.kv_type() {
            return Err(StateError::KvType {
                saved: saved_ty,
                session: st.kv_type(),
            }
            .into());
        }
        let n = match usize::try_from(n_pos) {
            Ok(n) if n <= st.n_ctx() => n,
            _ => {
                return Err(StateError::TooLong {
                    positions: n_pos,
                    capacity: st.n_ctx(),
                }
                .into())
            }
        };
        let pending = if flags & FLAG_PENDING != 0 {
            Some(u32_at(44))
        } else {
            None
        };
        // Sizes are now known to fit the blob (its length was checked above).
        let mut at = HEADER_LEN;
        let mut take = move |len: usize| {
            let s = body.get(at..at + len).unwrap_or(&[]);
            at += len;
            s
        };
        let hist = take(4 * n);
        let ids = hist
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        for (pos, id) in ids.clone().chain(pending).enumerate() {
            if id as usize >= c.n_vocab {
                return Err(StateError::Field {
                    field: if pos < n {
                        "history token"
                    } else {
                        "pending token"
                    },
                    value: u64::from(id),
                }
                .into());
            }
        }
        let saved_logits = if has_logits { take(4 * c.n_vocab) } else { &[] };

        // Everything checked: restore.
        history.clear();
        history.extend(ids);
        for (d, b) in logits.iter_mut().zip(saved_logits.chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        let per_layer = n * c.kv_dim();
        let elem = elem_size(saved_ty);
        let kv = st.kv_mut();
        for which in 0..2 {
            for il in 0..c.n_layer {
                let src = take(per_layer * elem);
                let a = kv.row(il, 0);
                let store = if which == 0 { &mut kv.k } else { &mut kv.v };
                match store {
                    KvStore::F16(bytes) => {
                        if let Some(dst) = bytes.get_mut(2 * a..2 * (a + per_layer)) {
                            dst.copy_from_slice(src);
                        }
                    }
                    KvStore::F32(vals) => {
                        if let Some(dst) = vals.get_mut(a..a + per_layer) {
                            for (d, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                            }
                        }
                    }
                }
            }
        }
        st.set_n_past(n);
        Ok(Loaded {
            n_pos: n,
            has_logits,
            pending,
        })
    }
}

/// Write 4-byte words through a stack buffer (few sink calls, no allocation).
fn put_words<S: Sink + ?Sized>(
    w: &mut Hashing<'_, S>,
    buf: &mut [u8; 4096],
    words: impl Iterator<Item = [u8; 4]>,
) -> Result<()> {
    let mut n = 0;
    for word in words {
        if n == buf.len() {
            w.put(&buf[..])?;
            n = 0;
        }
        buf[n..n + 4].copy_from_slice(&word);
        n += 4;
    }
    w.put(&buf[..n])
}
