//! Loading helpers: the file fingerprint saved states carry, page touching with
//! progress for [`super::Model::open_with_progress`], and the order in which
//! [`super::Prefetch::Background`] asks for the tensors.

#[cfg(feature = "std")]
use alloc::vec::Vec;
#[cfg(feature = "std")]
use core::ops::Range;

use crate::backing::Backing;
use crate::gguf::Gguf;

/// FNV-1a 64 offset basis.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continue an FNV-1a 64 hash `h` over `bytes`.
pub(crate) fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// FNV-1a over the header, metadata and tensor table (every byte before the data
/// section), then the file size as 8 little-endian bytes.
pub(crate) fn fingerprint(g: &Gguf<Backing>) -> u64 {
    let bytes = g.bytes();
    let head_len = usize::try_from(g.data_offset())
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let h = fnv1a(FNV_OFFSET, bytes.get(..head_len).unwrap_or(&[]));
    fnv1a(h, &(bytes.len() as u64).to_le_bytes())
}

/// Tensors of at most this many bytes (norms, biases) come first in [`read_order`]:
/// loading copies them, before any layer runs.
#[cfg(feature = "std")]
const SMALL_TENSOR: u64 = 64 << 10;
/// Neighbouring ranges in [`read_order`] closer than this are read as one.
#[cfg(feature = "std")]
const MERGE_GAP: usize = 64 << 10;

/// Byte ranges of `g`'s tensor data in the order a first forward pass reads them: the
/// small tensors outside the blocks (a norm or bias vector in another type than F32 is
/// copied at load time; the F32 ones are read in place, see
/// [`super::weights::VectorRef`]), then every block's tensors by block number, its
/// small ones with it
/// (`blk.N.*`), then the other tensors, then the output head (`output.weight`, else the
/// tied `token_embd.weight`). With a separate output head, `token_embd.weight` is left
/// out: only the prompt's rows of it are read. With `skip_q5_0`, so are the Q5_0
/// tensors of rows of at least 128 values, which [`crate::Model::repack_weights`]
/// reads itself. Ranges are clamped to the file and neighbours are merged.
#[cfg(feature = "std")]
pub(crate) fn read_order<B: AsRef<[u8]>>(g: &Gguf<B>, skip_q5_0: bool) -> Vec<Range<usize>> {
    // (group, block, start, end); group 0 small outside the blocks, 1 block, 2 other, 3
    // output head.
    let len = g.bytes().len();
    let has_output = g.tensors().any(|t| t.name == "output.weight");
    let mut parts: Vec<(u8, usize, usize, usize)> = Vec::with_capacity(g.tensor_count());
    for t in g.tensors() {
        let start = g.data_offset().checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.size));
        let (Some(start), Some(end)) = (start, end) else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
            continue;
        };
        let end = end.min(len);
        if start >= end {
            continue;
        }
        let block = t
            .name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse::<usize>().ok());
        // (Matrices that the repack reads itself, then releases.)
        if skip_q5_0 && super::weights::repackable(t.ty, t.ne[0]) {
            continue;
        }
        let (group, block) = match (t.name, block) {
            ("token_embd.weight", _) if has_output => continue,
            ("token_embd.weight" | "output.weight", _) => (3, 0),
            (_, Some(b)) => (1, b),
            _ if t.size <= SMALL_TENSOR => (0, 0),
            _ => (2, 0),
        };
        parts.push((group, block, start, end));
    }
    parts.sort_unstable();
    let mut out: Vec<Range<usize>> = Vec::with_capacity(parts.len());
    for (_, _, start, end) in parts {
        match out.last_mut() {
            Some(last) if start >= last.end && start - last.end <= MERGE_GAP => {
                last.end = end;
            }
            _ => out.push(start..end),
        }
    }
    out
}

/// Read one byte of every 4 KiB page of `bytes` (so a mapped file is brought into
/// memory), calling `progress(done, total)` after each 4 MiB and at the end.
#[cfg(feature = "std")]
pub(crate) fn touch_pages(bytes: &[u8], mut progress: impl FnMut(u64, u64)) {
    const PAGE: usize = 4096;
    const STEP: usize = 4 << 20;
    let total = bytes.len() as u64;
    progress(0, total);
    let mut sum = 0u8;
    let mut done = 0u64;
    for chunk in bytes.chunks(STEP) {
        for page in chunk.chunks(PAGE) {
            sum = sum.wrapping_add(page.first().copied().unwrap_or(0));
        }
        core::hint::black_box(sum);
        done += chunk.len() as u64;
        if done < total {
            progress(done, total);
        }
    }
    progress(total, total);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        // Reference values of FNV-1a 64.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[cfg(feature = "std")]
    /// A file with the given tensors (F32 vectors of `len` values, written in this
    /// order) and the byte range of each.
    fn file_with(tensors: &[(&str, usize)]) -> (Gguf<Backing>, Vec<Range<usize>>) {
        let mut w = crate::gguf::GgufWriter::new();
        for &(name, len) in tensors {
            let data = alloc::vec![0u8; len * 4];
            w.add_tensor(name, crate::gguf::GgmlType::F32, &[len as u64], &data)
                .unwrap();
        }
        let g = Gguf::parse(Backing::Owned(w.to_bytes().unwrap())).unwrap();
        let ranges = tensors
            .iter()
            .map(|&(name, _)| {
                let v = g.tensor(name).unwrap();
                let start = (g.data_offset() + v.info.offset) as usize;
                start..start + v.info.size as usize
            })
            .collect();
        (g, ranges)
    }

    #[cfg(feature = "std")]
    #[test]
    fn read_order_can_leave_out_what_the_repack_reads() {
        use crate::gguf::GgmlType;
        let mut w = crate::gguf::GgufWriter::new();
        // Q5_0 rows of 128 values (4 blocks, 88 bytes) and of 96 (3 blocks, too short
        // to repack), between two F32 blocks' matrices.
        let tensors: [(&str, GgmlType, u64, usize); 4] = [
            ("blk.0.a", GgmlType::F32, 50_000, 200_000),
            ("blk.0.ffn_up.weight", GgmlType::Q5_0, 128, 88 * 2000),
            ("blk.0.ffn_down.weight", GgmlType::Q5_0, 96, 66 * 2000),
            ("blk.1.a", GgmlType::F32, 50_000, 200_000),
        ];
        for (name, ty, ne0, bytes) in tensors {
            let rows = bytes as u64 / ty.row_bytes(ne0).unwrap();
            w.add_tensor(name, ty, &[ne0, rows], &alloc::vec![0u8; bytes])
                .unwrap();
        }
        let g = Gguf::parse(Backing::Owned(w.to_bytes().unwrap())).unwrap();
        let r: Vec<Range<usize>> = tensors
            .iter()
            .map(|&(name, ..)| {
                let v = g.tensor(name).unwrap();
                let start = (g.data_offset() + v.info.offset) as usize;
                start..start + v.info.size as usize
            })
            .collect();
        assert_eq!(read_order(&g, false), alloc::vec![r[0].start..r[3].end]);
        assert_eq!(
            read_order(&g, true),
            alloc::vec![r[0].clone(), r[2].start..r[3].end]
        );
    }

    #[cfg(feature = "std")]
    #[test]
    fn read_order_follows_the_forward_pass() {
        // 160 KiB: not a small tensor. Tied output head: token_embd last; blocks by
        // number, not by name order; small tensors outside the blocks first, those of a
        // block with it.
        const BIG: usize = 40 << 10;
        let (g, r) = file_with(&[
            ("token_embd.weight", BIG),
            ("blk.10.attn_q.weight", BIG),
            ("blk.2.attn_q.weight", BIG),
            ("blk.2.attn_norm.weight", 64),
            ("blk.2.ffn_up.weight", BIG),
            ("output_norm.weight", 64),
        ]);
        let order = read_order(&g, false);
        // The output norm first; block 2's two matrices and the norm between them as
        // one range, then block 10, then the head.
        assert_eq!(
            order,
            alloc::vec![
                r[5].clone(),
                r[2].start..r[4].end,
                r[1].clone(),
                r[0].clone()
            ]
        );
        // Separate output head: token_embd is left out, the head comes last.
        let (g, r) = file_with(&[
            ("output.weight", BIG),
            ("token_embd.weight", BIG),
            ("blk.0.attn_q.weight", BIG),
            ("rope_freqs.weight", BIG),
        ]);
        // (The block and rope_freqs are neighbours in the file: one range.)
        assert_eq!(
            read_order(&g, false),
            alloc::vec![r[2].start..r[3].end, r[0].clone()]
        );
        // Adjacent blocks merge into one range.
        let (g, r) = file_with(&[("blk.0.a", BIG), ("blk.0.b", BIG), ("blk.1.a", BIG)]);
        assert_eq!(read_order(&g, false), alloc::vec![r[0].start..r[2].end]);
    }

    #[cfg(feature = "std")]
    #[test]
    fn prefetcher_survives_odd_ranges_and_stops_on_drop() {
        use crate::backing::Prefetcher;
        let path = std::env::temp_dir().join(alloc::format!(
            "tramontane-prefetcher-{}",
            std::process::id()
        ));
        std::fs::write(&path, alloc::vec![7u8; 3 << 20]).unwrap();
        let ranges = alloc::vec![
            0..(3 << 20),
            (1 << 20)..(3 << 20), // overlaps: past the budget of one file length
            (5 << 20)..(6 << 20), // past the end
            #[allow(clippy::reversed_empty_ranges)]
            (10..5), // empty
            usize::MAX - 1..usize::MAX,
        ];
        // A view of bytes shorter than the file: the ranges past them are clipped.
        let bytes = alloc::vec![3u8; 2 << 20];
        for i in 0..4 {
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: `bytes` outlives `p`, dropped below, and is never written.
            let view = unsafe { crate::backing::MapView::new(&bytes) };
            let p = Prefetcher::start(f, ranges.clone(), view, i >= 2);
            assert!(p.is_some());
            if i % 2 == 1 {
                // Let the thread go through every range before it is stopped.
                std::thread::sleep(core::time::Duration::from_millis(50));
            }
            drop(p);
        }
        let _ = std::fs::remove_file(&path);
    }

    #[cfg(feature = "std")]
    #[test]
    fn touch_pages_reports_to_the_end() {
        let bytes = alloc::vec![1u8; (9 << 20) + 5];
        let mut calls = alloc::vec::Vec::new();
        touch_pages(&bytes, |d, t| calls.push((d, t)));
        let t = bytes.len() as u64;
        assert_eq!(calls.first(), Some(&(0, t)));
        assert_eq!(calls.last(), Some(&(t, t)));
        assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(calls.len(), 4);
    }
}
