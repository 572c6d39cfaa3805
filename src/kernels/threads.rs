//! The threads kernels split their rows across.

use super::KernelError;

/// Worker threads for the kernels.
///
/// With the `parallel` feature and `n > 1`, an owned rayon pool of `n` threads (built
/// once, in [`Threads::new`]); otherwise everything runs inline on the caller's thread.
/// Work is split by output rows only — never inside one dot product — so results do
/// not depend on the thread count.
#[derive(Debug)]
pub struct Threads {
    n: usize,
    #[cfg(feature = "parallel")]
    pool: Option<rayon::ThreadPool>,
}

impl Threads {
    /// `n` threads (`n = 0` is taken as 1). Without the `parallel` feature, `n > 1` still
    /// runs inline, and [`Threads::count`] says 1.
    pub fn new(n: usize) -> Result<Self, KernelError> {
        let n = n.max(1);
        #[cfg(feature = "parallel")]
        {
            if n == 1 {
                return Ok(Self::single());
            }
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| alloc::format!("tramontane-{i}"))
                .build()
                .map_err(|e| KernelError::ThreadPool {
                    threads: n,
                    reason: alloc::string::ToString::to_string(&e),
                })?;
            Ok(Threads {
                n,
                pool: Some(pool),
            })
        }
        #[cfg(not(feature = "parallel"))]
        {
            let _ = n;
            Ok(Self::single())
        }
    }

    /// One thread: the caller's.
    pub fn single() -> Self {
        Threads {
            n: 1,
            #[cfg(feature = "parallel")]
            pool: None,
        }
    }

    /// How many threads share the work.
    pub fn count(&self) -> usize {
        self.n
    }

    /// Split `out` into pieces of `chunk` elements (the last may be shorter; `chunk = 0`
    /// is taken as 1) and call `f(first index, piece)` for each, in parallel.
    pub fn for_rows(
        &self,
        out: &mut [f32],
        chunk: usize,
        f: impl Fn(usize, &mut [f32]) + Sync + Send,
    ) {
        let chunk = chunk.max(1);
        #[cfg(feature = "parallel")]
        if let Some(pool) = &self.pool {
            use rayon::prelude::*;
            pool.install(|| {
                out.par_chunks_mut(chunk)
                    .enumerate()
                    .for_each(|(i, piece)| f(i * chunk, piece));
            });
            return;
        }
        for (i, piece) in out.chunks_mut(chunk).enumerate() {
            f(i * chunk, piece);
        }
    }

    /// Call `f(task)` for every task in `0..n_tasks`, in parallel.
    pub(crate) fn for_tasks(&self, n_tasks: usize, f: impl Fn(usize) + Sync + Send) {
        #[cfg(feature = "parallel")]
        if let Some(pool) = &self.pool {
            use rayon::prelude::*;
            pool.install(|| (0..n_tasks).into_par_iter().for_each(&f));
            return;
        }
        (0..n_tasks).for_each(f);
    }
}
