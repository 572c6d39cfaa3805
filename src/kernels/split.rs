//! Parallel loops over disjoint pieces of slices of any element type, and scratch
//! slots that a task holds alone while it runs: what the forward pass of a batch uses
//! to split its per-row steps (norms, activation quantization, RoPE, the KV-cache
//! store) and its attention over the threads.
//!
//! Built on [`Threads::for_tasks`], which runs every task index exactly once; each task
//! index owns its own pieces, so no two live pieces overlap. Nothing here allocates.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::Threads;

/// A `&mut [T]` shared by tasks that each take a disjoint piece of it.
struct Shared<'a, T> {
    ptr: *mut T,
    len: usize,
    _life: PhantomData<&'a mut [T]>,
}

// SAFETY: `Shared` hands out only disjoint pieces (see `piece`), so sending or sharing
// it between threads is like splitting a `&mut [T]` and sending the parts, which
// needs `T: Send`.
unsafe impl<T: Send> Send for Shared<'_, T> {}
// SAFETY: as above: concurrent `piece` calls for disjoint ranges never alias.
unsafe impl<T: Send> Sync for Shared<'_, T> {}

impl<'a, T> Shared<'a, T> {
    fn new(s: &'a mut [T]) -> Self {
        Shared {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            _life: PhantomData,
        }
    }

    /// Elements `[start, start + n)` clipped to the length, `None` if `start` is past
    /// the end.
    ///
    /// # Safety
    ///
    /// No other piece handed out by this `Shared` and still alive may overlap this one.
    #[allow(clippy::mut_from_ref)]
    unsafe fn piece(&self, start: usize, n: usize) -> Option<&'a mut [T]> {
        if start >= self.len {
            return None;
        }
        let n = n.min(self.len - start);
        // SAFETY: start < len and start + n <= len, so the range lies inside the slice
        // this was made from (borrowed mutably for 'a); the caller guarantees that no
        // other live piece overlaps it.
        Some(unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), n) })
    }
}

/// Scratch slots `0..n` (at most `usize::BITS`), each held by one task at a time.
struct Slots {
    /// Bit `i` set: slot `i` is free.
    free: AtomicUsize,
}

/// A held slot; freed when dropped (also when the task panics).
struct Held<'a> {
    slots: &'a Slots,
    bit: usize,
}

impl Slots {
    fn new(n: usize) -> Slots {
        let n = n.min(usize::BITS as usize);
        let all = if n == usize::BITS as usize {
            usize::MAX
        } else {
            (1usize << n) - 1
        };
        Slots {
            free: AtomicUsize::new(all),
        }
    }

    /// Take a free slot, waiting for one if all are held (with at least as many slots
    /// as threads, one is always free).
    fn take(&self) -> (usize, Held<'_>) {
        loop {
            let m = self.free.load(Ordering::Acquire);
            if m == 0 {
                core::hint::spin_loop();
                continue;
            }
            let bit = m & m.wrapping_neg();
            if self
                .free
                .compare_exchange_weak(m, m & !bit, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return (bit.trailing_zeros() as usize, Held { slots: self, bit });
            }
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.slots.free.fetch_or(self.bit, Ordering::Release);
    }
}

impl Threads {
    /// [`Threads::for_rows`] for any element type: split `out` into pieces of `chunk`
    /// elements (the last may be shorter; `chunk = 0` is taken as 1) and call
    /// `f(first index, piece)` for each, in parallel. One piece runs on the caller's
    /// thread without waking the workers.
    pub(crate) fn for_chunks<T: Send>(
        &self,
        out: &mut [T],
        chunk: usize,
        f: impl Fn(usize, &mut [T]) + Sync + Send,
    ) {
        let chunk = chunk.max(1);
        let n_tasks = out.len().div_ceil(chunk);
        if self.count() == 1 || n_tasks <= 1 {
            for (i, piece) in out.chunks_mut(chunk).enumerate() {
                f(i * chunk, piece);
            }
            return;
        }
        let base = Shared::new(out);
        self.for_tasks(n_tasks, |task| {
            let start = task * chunk;
            // SAFETY: `for_tasks` runs each task index once, and task i takes elements
            // [i·chunk, (i+1)·chunk) only: the pieces never overlap.
            if let Some(piece) = unsafe { base.piece(start, chunk) } {
                f(start, piece);
            }
        });
    }

    /// Two slices split together: task `i` gets `a[i·ca ..][..ca]` and `b[i·cb ..][..cb]`
    /// (each clipped to its slice; empty past the end) and calls `f(i, piece_a,
    /// piece_b)`, for `i` in `0..n_tasks`, in parallel (`ca`, `cb` = 0 are taken as 1).
    pub(crate) fn for_chunks2<A: Send, B: Send>(
        &self,
        n_tasks: usize,
        (a, ca): (&mut [A], usize),
        (b, cb): (&mut [B], usize),
        f: impl Fn(usize, &mut [A], &mut [B]) + Sync + Send,
    ) {
        let (ca, cb) = (ca.max(1), cb.max(1));
        if self.count() == 1 || n_tasks <= 1 {
            let mut ia = a.chunks_mut(ca);
            let mut ib = b.chunks_mut(cb);
            for i in 0..n_tasks {
                f(
                    i,
                    ia.next().unwrap_or(&mut []),
                    ib.next().unwrap_or(&mut []),
                );
            }
            return;
        }
        let (sa, sb) = (Shared::new(a), Shared::new(b));
        self.for_tasks(n_tasks, |task| {
            // SAFETY: `for_tasks` runs each task index once, and task i takes elements
            // [i·ca, (i+1)·ca) of `a` and [i·cb, (i+1)·cb) of `b` only (the products
            // saturate to ranges past the ends, which give no piece): no two overlap.
            let pa = unsafe { sa.piece(task.saturating_mul(ca), ca) };
            // SAFETY: as above.
            let pb = unsafe { sb.piece(task.saturating_mul(cb), cb) };
            f(task, pa.unwrap_or(&mut []), pb.unwrap_or(&mut []));
        });
    }

    /// Like [`Threads::for_chunks`], with scratch: `scratch` is cut into slots of
    /// `slot_len` elements, and each call `f(first index, piece, slot)` gets a slot no
    /// other running call holds (with fewer slots than threads, a task waits for one).
    /// Pieces are handed out from the last to the first: in a causal batch the later
    /// rows cost more, and starting with them balances the threads. With no whole slot
    /// in `scratch`, `f` gets an empty one.
    pub(crate) fn for_chunks_scratch<T: Send, S: Send>(
        &self,
        out: &mut [T],
        chunk: usize,
        (scratch, slot_len): (&mut [S], usize),
        f: impl Fn(usize, &mut [T], &mut [S]) + Sync + Send,
    ) {
        let chunk = chunk.max(1);
        let n_tasks = out.len().div_ceil(chunk);
        let n_slots = scratch
            .len()
            .checked_div(slot_len)
            .unwrap_or(0)
            .min(usize::BITS as usize);
        if self.count() == 1 || n_tasks <= 1 || n_slots == 0 {
            let slot = scratch.get_mut(..slot_len).unwrap_or(&mut []);
            for i in (0..n_tasks).rev() {
                let start = i * chunk;
                if let Some(piece) = out.get_mut(start..(start + chunk).min(out.len())) {
                    f(start, piece, slot);
                }
            }
            return;
        }
        let base = Shared::new(out);
        let slots_mem = Shared::new(scratch);
        let slots = Slots::new(n_slots);
        self.for_tasks(n_tasks, |task| {
            let start = (n_tasks - 1 - task) * chunk;
            // SAFETY: `for_tasks` runs each task index once, and it takes elements
            // [start, start + chunk) for a `start` of its own: the pieces never overlap.
            let Some(piece) = (unsafe { base.piece(start, chunk) }) else {
                return;
            };
            let (s, _held) = slots.take();
            // SAFETY: slot `s` (< n_slots, so inside `scratch`) is held by this task
            // alone until `_held` is dropped at the end of this call, after the last
            // use of the piece; slots are disjoint ranges of `slot_len` elements.
            if let Some(slot) = unsafe { slots_mem.piece(s * slot_len, slot_len) } {
                f(start, piece, slot);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_once_for_any_thread_count() {
        for n in [1, 2, 3] {
            let Ok(t) = Threads::new(n) else { continue };
            let mut out = [0u32; 103];
            t.for_chunks(&mut out, 10, |first, p| {
                p.iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v += (first + i) as u32)
            });
            assert!(out.iter().enumerate().all(|(i, &v)| v == i as u32));

            let (mut a, mut b) = ([0u8; 10], [0u16; 7]);
            t.for_chunks2(4, (&mut a, 3), (&mut b, 2), |i, pa, pb| {
                pa.iter_mut().for_each(|v| *v += i as u8 + 1);
                pb.iter_mut().for_each(|v| *v += i as u16 + 1);
            });
            assert_eq!(a, [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]);
            assert_eq!(b, [1, 1, 2, 2, 3, 3, 4]);

            let mut scratch = [0u64; 3 * 4];
            let mut out = [0u64; 50];
            t.for_chunks_scratch(&mut out, 7, (&mut scratch, 4), |first, p, slot| {
                assert_eq!(slot.len(), 4);
                slot.iter_mut().for_each(|s| *s = first as u64);
                for (i, v) in p.iter_mut().enumerate() {
                    *v += slot[i % 4] + i as u64;
                }
            });
            assert!(out.iter().enumerate().all(|(i, &v)| v == i as u64));
        }
    }
}
