//! Where model bytes live: a memory-mapped file, a `&'static [u8]` (flash,
//! `include_bytes!`), or a `Vec<u8>`. All three are read in place.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Deref;

/// The bytes of a model file.
pub enum Backing {
    /// A read-only memory map of a file (feature `std`).
    #[cfg(feature = "std")]
    Mmap(memmap2::Mmap),
    /// Bytes that live for the whole program: flash, `include_bytes!`. May be unaligned.
    Static(&'static [u8]),
    /// Bytes owned on the heap.
    Owned(Vec<u8>),
}

impl fmt::Debug for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            #[cfg(feature = "std")]
            Backing::Mmap(_) => "Mmap",
            Backing::Static(_) => "Static",
            Backing::Owned(_) => "Owned",
        };
        write!(f, "Backing::{kind}({} bytes)", self.len())
    }
}

impl Deref for Backing {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(feature = "std")]
            Backing::Mmap(m) => m,
            Backing::Static(s) => s,
            Backing::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Backing {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Backing {
    /// Map a file read-only. The file must not be truncated or written while mapped
    /// (as with every mmap-based loader: llama.cpp makes the same demand). On Linux the
    /// map is advised to take transparent huge pages (`madvise(MADV_HUGEPAGE)`): where
    /// the file system's page cache holds 2 MiB folios, a decoded token then streams
    /// the weights faster (Gemma 3 270M, 1 thread: about 7% more tokens per second).
    #[cfg(feature = "std")]
    pub fn map_file(path: impl AsRef<std::path::Path>) -> crate::Result<Backing> {
        Backing::map_file_keep(path).map(|(b, _, _)| b)
    }

    /// [`Backing::map_file`], also returning the open file (for [`Prefetcher`]; `None`
    /// for an empty file, which is not mapped) and whether the map takes huge pages
    /// ([`advise_huge_pages`]).
    #[cfg(feature = "std")]
    pub(crate) fn map_file_keep(
        path: impl AsRef<std::path::Path>,
    ) -> crate::Result<(Backing, Option<std::fs::File>, bool)> {
        use alloc::string::ToString;
        let path = path.as_ref();
        let io = |source| crate::Error::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            // mmap of an empty file fails on some systems; an empty file is simply empty.
            return Ok((Backing::Owned(Vec::new()), None, false));
        }
        let map = map_readonly(&file).map_err(io)?;
        let huge = advise_huge_pages(&map);
        Ok((Backing::Mmap(map), Some(file), huge))
    }
}

/// Ask Linux to back `map` with huge pages (`madvise(MADV_HUGEPAGE)`) and say whether
/// it took the advice. Where the page cache can hold 2 MiB folios (ext4, XFS, tmpfs on
/// recent kernels), the pages that page faults through this map read from storage
/// then come in 2 MiB folios, and each is mapped by one page-table entry: a decoded
/// token streams the weights with one TLB entry per 2 MiB instead of per 4 KiB, and the
/// hardware prefetchers, which stop at page boundaries, run on. Pages already in the
/// page cache in small folios stay mapped 4 KiB at a time. `false` outside Linux, and
/// where transparent huge pages are off (`never` in
/// `/sys/kernel/mm/transparent_hugepage/enabled`, or the advice refused).
#[cfg(feature = "std")]
fn advise_huge_pages(map: &memmap2::Mmap) -> bool {
    #[cfg(target_os = "linux")]
    {
        let never = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|s| s.contains("[never]"));
        !never && map.advise(memmap2::Advice::HugePage).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = map;
        false
    }
}

impl Backing {
    /// Ask the kernel to start reading `self[at..at + len]` from storage
    /// (`madvise(MADV_WILLNEED)`, which does not wait); only for a mapped file on Unix,
    /// a no-op otherwise and for a range out of bounds. Only advice: errors are ignored.
    #[cfg(feature = "std")]
    pub(crate) fn advise_willneed(&self, at: usize, len: usize) {
        #[cfg(unix)]
        if let Backing::Mmap(m) = self {
            if at.checked_add(len).is_some_and(|end| end <= m.len()) {
                let _ = advise_willneed(m, at, len);
            }
        }
        #[cfg(not(unix))]
        let _ = (at, len);
    }
}

impl Backing {
    /// Take the pages of `self[at..at + len]` out of this process's memory (Linux,
    /// `madvise(MADV_DONTNEED)`, on the 64 KiB-aligned part of the range, so that no
    /// page another range shares is touched): only for a mapped file, a no-op
    /// otherwise. The bytes do not change: the file's pages stay in the page cache,
    /// and a later read maps them again (from storage if they were evicted meanwhile).
    /// For bytes the model no longer reads (the Q5_0 matrices it has repacked), so that
    /// they do not count in the resident set twice. The range is first advised
    /// `MADV_NOHUGEPAGE`, which gives it a mapping (VMA) of its own: otherwise a page
    /// fault on a neighbouring tensor that shares a 2 MiB folio with it maps the whole
    /// folio again with one page-table entry, released pages included (a 300-token
    /// prompt took Gemma 3's map from 195 back to 252 MB resident that way). Only
    /// advice: errors are ignored.
    #[cfg(feature = "std")]
    pub(crate) fn release(&self, at: usize, len: usize) {
        #[cfg(target_os = "linux")]
        if let Backing::Mmap(m) = self {
            const ALIGN: usize = 64 << 10;
            let end = at.saturating_add(len).min(m.len());
            let (Some(start), end) = (at.checked_next_multiple_of(ALIGN), end - end % ALIGN) else {
                return;
            };
            if start < end {
                let _ = m.advise_range(memmap2::Advice::NoHugePage, start, end - start);
                // SAFETY: a read-only shared map of a file that nothing writes (the
                // contract of `map_file`). For such a map `MADV_DONTNEED` only removes
                // page-table entries: a reference into the range still reads the same
                // bytes, which the next access maps again from the page cache or the
                // file. No write through the map exists that could be lost.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (at, len);
    }
}

/// A read-only map of the whole of `file`.
#[cfg(feature = "std")]
fn map_readonly(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and private to this process. Memory safety would be
    // broken only if another process truncated the file while it is mapped, which the
    // documentation of `Backing::map_file` rules out (the usual mmap contract).
    unsafe { memmap2::Mmap::map(file) }
}

/// Bytes asked for in one `madvise(MADV_WILLNEED)` call. Linux reads at most
/// max(read-ahead window, largest device request) per call (`force_page_cache_ra`), and
/// the smallest usual read-ahead window is 128 KiB, so larger requests could be cut
/// short on some devices.
#[cfg(feature = "std")]
pub(crate) const PREFETCH_CHUNK: usize = 128 << 10;

/// Bytes queued ahead at most (asked for and not yet arrived): a read the model needs
/// at once waits behind at most this much (32 MiB: ~25 ms at 1.3 GB/s).
#[cfg(feature = "std")]
const PREFETCH_WINDOW: usize = 32 << 20;

/// The model's map of a file, for [`Prefetcher`] to map pages into: it reads one byte
/// of every page of a chunk that has arrived, so that the page faults (each maps a
/// page, or the 64 KiB around it, into the process's page tables) are taken on its
/// thread rather than on the thread computing the first forward pass.
#[cfg(feature = "std")]
#[derive(Clone, Copy)]
pub(crate) struct MapView {
    ptr: *const u8,
    len: usize,
}

// SAFETY: a `MapView` is only read through (`touch`), and `MapView::new`'s caller keeps
// the bytes alive and unchanged for as long as any thread may use it.
#[cfg(feature = "std")]
unsafe impl Send for MapView {}

#[cfg(feature = "std")]
impl MapView {
    /// A view of `bytes`.
    ///
    /// # Safety
    /// `bytes` must stay alive (mapped) and unwritten until every [`Prefetcher`] given
    /// this view has been dropped (its drop waits for its thread).
    pub(crate) unsafe fn new(bytes: &[u8]) -> MapView {
        MapView {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// Read one byte of every 4 KiB page that `self[at..at + len]` (clipped to the
    /// view) touches: the byte at `at`, then the first byte of each following page (the
    /// view starts a map, which starts a page).
    fn touch(self, at: usize, len: usize) {
        const PAGE: usize = 4096;
        let end = at.saturating_add(len).min(self.len);
        let mut sum = 0u8;
        let mut off = at;
        while off < end {
            // SAFETY: `off < self.len`, inside the bytes that `MapView::new`'s caller
            // keeps alive while this thread runs; a volatile read of one byte, which
            // nothing writes.
            sum ^= unsafe { core::ptr::read_volatile(self.ptr.add(off)) };
            off = (off | (PAGE - 1)) + 1;
        }
        core::hint::black_box(sum);
    }
}

/// A background thread that brings byte ranges of a mapped file into memory, in the
/// order given, [`PREFETCH_CHUNK`] bytes at a time, and maps them into the model's map
/// (a [`MapView`]). Two ways, after the model's map ([`advise_huge_pages`]):
/// - huge pages: the thread reads one byte of every page ([`MapView::touch`]), so the
///   reads are the page faults' own, through the model's map, and come in 2 MiB
///   folios (the kernel reads two ahead of each fault);
/// - otherwise: `madvise(MADV_WILLNEED)` on a read-only map of its own (the reads are
///   asynchronous, the thread only queues them, at most [`PREFETCH_WINDOW`] bytes
///   ahead), and each chunk is touched once it has arrived. The page cache then holds
///   small folios, which is why the first way does without it.
///
/// Dropping it stops the thread after the current chunk and waits for it. Only advice:
/// every failure is ignored, and the model reads its bytes through its own map whatever
/// happened here.
#[cfg(feature = "std")]
pub(crate) struct Prefetcher {
    stop: alloc::sync::Arc<core::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

#[cfg(feature = "std")]
impl fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefetcher")
            .field(
                "running",
                &self.handle.as_ref().is_some_and(|h| !h.is_finished()),
            )
            .finish()
    }
}

#[cfg(feature = "std")]
impl Prefetcher {
    /// Start the thread over `ranges` (byte ranges of `file`; parts past its end are
    /// skipped), mapping them into `view`; `huge`: the view's map takes huge pages (the
    /// thread reads by touching). `None` when the thread cannot be started.
    pub(crate) fn start(
        file: std::fs::File,
        ranges: Vec<core::ops::Range<usize>>,
        view: MapView,
        huge: bool,
    ) -> Option<Prefetcher> {
        use core::sync::atomic::{AtomicBool, Ordering};
        let stop = alloc::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("tramontane-prefetch".into())
            .spawn(move || {
                // The thread's own map, for the read-ahead advice.
                let map = if huge {
                    None
                } else {
                    match map_readonly(&file) {
                        Ok(map) => Some(map),
                        Err(_) => return,
                    }
                };
                drop(file);
                // Chunks asked for and not yet seen arrive, oldest first.
                let mut pending = alloc::collections::VecDeque::new();
                let mut in_flight = 0usize;
                // Never more than the map's length in all (a hostile tensor table can
                // list overlapping ranges); nothing past the view, which `touch` clips to.
                let mut budget = view.len;
                for r in ranges {
                    let end = r.end.min(view.len);
                    let mut at = r.start;
                    while at < end {
                        let len = PREFETCH_CHUNK.min(end - at);
                        if flag.load(Ordering::Relaxed) || budget < len {
                            return;
                        }
                        budget -= len;
                        let Some(map) = &map else {
                            view.touch(at, len);
                            at += len;
                            continue;
                        };
                        // Keep at most PREFETCH_WINDOW bytes queued, so that a page
                        // fault of the model (on a page not in this order) waits
                        // behind little.
                        while in_flight + len > PREFETCH_WINDOW {
                            let Some((a, l)) = pending.pop_front() else {
                                break;
                            };
                            // Reading a byte waits until its page has arrived (and maps
                            // it).
                            view.touch(a, l);
                            in_flight -= l;
                        }
                        if advise_willneed(map, at, len).is_err() {
                            return;
                        }
                        pending.push_back((at, len));
                        in_flight += len;
                        at += len;
                    }
                }
                // The last chunks asked for: mapped too.
                for (a, l) in pending {
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    view.touch(a, l);
                }
            })
            .ok()?;
        Some(Prefetcher {
            stop,
            handle: Some(handle),
        })
    }
}

#[cfg(feature = "std")]
impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, core::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// `madvise(MADV_WILLNEED)` on `map[at..at + len]` (the caller keeps it in bounds).
#[cfg(all(feature = "std", unix))]
fn advise_willneed(map: &memmap2::Mmap, at: usize, len: usize) -> std::io::Result<()> {
    map.advise_range(memmap2::Advice::WillNeed, at, len)
}

/// No read-ahead advice outside Unix: the thread stops at once.
#[cfg(all(feature = "std", not(unix)))]
fn advise_willneed(_map: &memmap2::Mmap, _at: usize, _len: usize) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}
