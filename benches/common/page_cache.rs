//! Evicting a file from the page cache and measuring what stayed (no llama.cpp in
//! here: shared by the benches' `common` and by `examples/cold_start.rs`, which
//! includes it with `#[path]`).

use std::path::Path;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Drop `path` from the page cache with `posix_fadvise(POSIX_FADV_DONTNEED)` (no root
/// needed; pages mapped by a live process stay) and return the fraction of its pages
/// still resident afterwards, measured with `mincore`.
pub fn drop_from_page_cache(path: &Path) -> Res<f64> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len() as usize;
    // SAFETY: a valid open descriptor; offset 0 and length 0 mean the whole file.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(format!("posix_fadvise: error {rc}").into());
    }
    resident_fraction(&f, len)
}

/// Fraction of the file's pages in the page cache (`mmap` + `mincore`, nothing read).
fn resident_fraction(f: &std::fs::File, len: usize) -> Res<f64> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(0.0);
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // SAFETY: a fresh shared read-only mapping of an open file; it is only passed to
    // mincore (never dereferenced) and unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err("mmap for mincore failed".into());
    }
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: `p` maps `len` bytes; `vec` holds one byte per page of that range.
    let rc = unsafe { libc::mincore(p, len, vec.as_mut_ptr()) };
    // SAFETY: unmapping exactly the mapping made above.
    unsafe { libc::munmap(p, len) };
    if rc != 0 {
        return Err("mincore failed".into());
    }
    let resident = vec.iter().filter(|&&b| b & 1 != 0).count();
    Ok(resident as f64 / pages as f64)
}
