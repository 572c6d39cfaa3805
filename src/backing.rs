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
    /// (as with every mmap-based loader: llama.cpp makes the same demand).
    #[cfg(feature = "std")]
    pub fn map_file(path: impl AsRef<std::path::Path>) -> crate::Result<Backing> {
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
            return Ok(Backing::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only and private to this process. Memory safety would
        // be broken only if another process truncated the file while it is mapped,
        // which the documentation of this function rules out (the usual mmap contract).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Ok(Backing::Mmap(map))
    }
}
