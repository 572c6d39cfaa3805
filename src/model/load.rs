//! Loading helpers: the file fingerprint saved states carry, and page touching with
//! progress for [`super::Model::open_with_progress`].

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
