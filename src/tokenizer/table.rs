//! A table of byte strings in one buffer, with a hash index from text to id.
//!
//! 262,144 token texts live in one `Vec<u8>` with a `Vec<u32>` of offsets; the index is a
//! `hashbrown::HashTable<u32>` of ids that hashes the bytes in place, so no `String` is
//! allocated per token.

use alloc::vec::Vec;
use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

/// Byte strings with ids `0..len`, looked up by text.
#[derive(Clone, Default)]
pub(crate) struct StrTable {
    bytes: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` are the bytes of string `i`.
    offsets: Vec<u32>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl core::fmt::Debug for StrTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StrTable")
            .field("len", &self.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Why a string could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// Already present, with this id.
    Duplicate(u32),
    /// The buffer would pass `u32::MAX` bytes.
    TooLarge,
}

impl StrTable {
    pub fn with_capacity(n: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(n.saturating_add(1));
        offsets.push(0);
        StrTable {
            bytes: Vec::with_capacity(bytes),
            offsets,
            index: HashTable::with_capacity(n),
            hasher: DefaultHashBuilder::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Total bytes of all strings.
    pub fn bytes_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn get(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let start = *self.offsets.get(i)? as usize;
        let end = *self.offsets.get(i.checked_add(1)?)? as usize;
        self.bytes.get(start..end)
    }

    /// The id of `text`, if present.
    pub fn find(&self, text: &[u8]) -> Option<u32> {
        self.find_hashed(text, self.hasher.hash_one(text))
    }

    fn find_hashed(&self, text: &[u8], hash: u64) -> Option<u32> {
        let (bytes, offsets) = (&self.bytes, &self.offsets);
        self.index
            .find(hash, |&id| {
                let i = id as usize;
                match (offsets.get(i), offsets.get(i + 1)) {
                    (Some(&s), Some(&e)) => bytes.get(s as usize..e as usize) == Some(text),
                    _ => false,
                }
            })
            .copied()
    }

    /// Add `text` with the next id.
    pub fn push(&mut self, text: &[u8]) -> Result<u32, PushError> {
        let hash = self.hasher.hash_one(text);
        if let Some(id) = self.find_hashed(text, hash) {
            return Err(PushError::Duplicate(id));
        }
        self.push_unindexed(text)?;
        let id = u32::try_from(self.len() - 1).map_err(|_| PushError::TooLarge)?;
        let (bytes, offsets, hasher) = (&self.bytes, &self.offsets, &self.hasher);
        self.index.insert_unique(hash, id, |&other| {
            let i = other as usize;
            match (offsets.get(i), offsets.get(i + 1)) {
                (Some(&s), Some(&e)) => {
                    hasher.hash_one(bytes.get(s as usize..e as usize).unwrap_or(&[]))
                }
                _ => 0,
            }
        });
        Ok(id)
    }

    /// Append `text` as the next string without indexing it (for tables that are only
    /// read by id).
    pub fn push_unindexed(&mut self, text: &[u8]) -> Result<(), PushError> {
        let end = self
            .bytes
            .len()
            .checked_add(text.len())
            .ok_or(PushError::TooLarge)?;
        let end = u32::try_from(end).map_err(|_| PushError::TooLarge)?;
        self.bytes.extend_from_slice(text);
        self.offsets.push(end);
        Ok(())
    }

    /// Release spare capacity after loading.
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.offsets.shrink_to_fit();
    }
}
