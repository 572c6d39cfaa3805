//! The threads kernels split their rows across.
//!
//! With the `parallel` feature and `n > 1`, [`Threads`] owns `n - 1` worker threads
//! that wait for jobs; the caller's thread is the `n`-th worker. A job is a borrowed
//! closure run over task indices `0..n_tasks`, claimed one by one from an atomic
//! counter; the caller returns only when every task has finished, so the borrow never
//! outlives the call (the same argument as scoped threads). Handing out a job
//! allocates nothing — no boxing, no queue — which keeps the decode loop free of heap
//! allocations, and waiting workers spin briefly before they park, which keeps the
//! per-matvec overhead to a few microseconds.
//!
//! When other processes hold the cores, a worker may not run for a whole scheduler
//! time slice (milliseconds), and every job waits for it. The caller sees this as a
//! wait for the workers far longer than its own share of the work; it then runs the
//! next jobs alone (at least [`pool::SERIAL_MIN`] of them, twice as many each time the
//! lag is seen again, up to [`pool::SERIAL_MAX`], half as many when the first job after
//! a stretch shows none), and the idle workers park and leave their cores to the
//! others. A job that takes more than 2 ms alone ends the stretch: a long job (a
//! prefill's matrix product) is better shared even with a worker that starts late. On
//! this 2-core machine, with one other process spinning, 2-thread decoding went from
//! half the 1-thread speed to about the 1-thread speed.
//!
//! The workers serve one job at a time: a job asked for while another runs (from
//! another thread sharing the `Threads`, or from inside a task) runs on its caller's
//! thread alone. A task that panics, on a worker or on the caller, makes the call
//! panic once every worker has left the job, never before: they still use the closure.
//!
//! Work is split by output rows only — never inside one dot product — so results do
//! not depend on the thread count or on which thread ran which task.

use super::KernelError;

/// Worker threads for the kernels: `n - 1` workers plus the caller's thread, which
/// wait for jobs by spinning briefly, then parking.
///
/// - Results do not depend on the thread count: work is split by output rows only.
/// - The workers serve one job at a time. A job asked for while another runs (from
///   another thread sharing this `Threads`, or from inside a task) runs on its caller's
///   thread alone.
/// - A task that panics makes the call panic, once every worker has left the job.
/// - When other processes hold the cores and a worker keeps the caller waiting (more
///   than 200 µs and twice the caller's own share of a job), the next jobs run on the
///   caller's thread alone for a while (16 jobs, doubling while the lag lasts, ended by
///   a job that takes more than 2 ms alone), and the parked workers leave their cores
///   to the others.
#[derive(Debug)]
pub struct Threads {
    n: usize,
    #[cfg(feature = "parallel")]
    pool: Option<pool::Pool>,
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
            let pool = pool::Pool::new(n - 1).map_err(|e| KernelError::ThreadPool {
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
            let n_tasks = out.len().div_ceil(chunk);
            let base = pool::SharedMut::new(out);
            pool.run(n_tasks, &|task| {
                let start = task * chunk;
                // Each task index is claimed exactly once, and task i owns elements
                // [i*chunk, min((i+1)*chunk, len)): the pieces never overlap.
                if let Some(piece) = base.piece(start, chunk) {
                    f(start, piece);
                }
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
            pool.run(n_tasks, &f);
            return;
        }
        (0..n_tasks).for_each(f);
    }
}

#[cfg(feature = "parallel")]
mod pool {
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use core::marker::PhantomData;
    use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};
    use std::thread::JoinHandle;

    /// How many times a waiting thread polls before it sleeps.
    const SPIN: u32 = 20_000;

    /// The fewest jobs the caller runs alone after the workers lagged (see the module
    /// docs): at about 150 jobs per decoded token, a tenth of a token. A worker held
    /// off once costs no more than that; one held off for long doubles the stretch.
    pub(super) const SERIAL_MIN: u32 = 16;

    /// The most jobs run alone in one stretch: dozens of tokens, after which one
    /// parallel job checks whether the cores are free again.
    pub(super) const SERIAL_MAX: u32 = 8192;

    /// A wait for the workers counts as lag when it exceeds this and twice the caller's
    /// own work in the job: more than a woken worker's start-up (tens of microseconds),
    /// less than a scheduler time slice.
    const LAG: core::time::Duration = core::time::Duration::from_micros(200);

    /// A job run alone in a stretch that takes longer than this ends the stretch: two
    /// threads would have done it in about half the time even if a worker started a
    /// scheduler time slice late. Decode's jobs take tens to hundreds of microseconds,
    /// except the output head's; a prefill's matrix products take milliseconds each.
    const LONG: core::time::Duration = core::time::Duration::from_millis(2);

    type Job<'a> = dyn Fn(usize) + Sync + 'a;

    /// A job as the workers see it: a pointer to the caller's closure (valid until the
    /// caller's `run` returns), the task count and the next unclaimed task.
    struct Shared {
        /// Bumped once per job (and once at shutdown); workers wait for it to change.
        epoch: AtomicUsize,
        /// `*const Job` of the current job, type-erased to a thin pointer to a fat one.
        job: AtomicPtr<&'static Job<'static>>,
        n_tasks: AtomicUsize,
        /// On its own cache lines: every task claim writes it, and the fields above
        /// are read by every waiting worker.
        next_task: Line<AtomicUsize>,
        /// Workers still inside the current job (its own lines, as `next_task`).
        busy: Line<AtomicUsize>,
        panicked: AtomicBool,
        stop: AtomicBool,
        /// Workers asleep (or about to sleep) on `wake`: `run` skips the lock and the
        /// wake-up call (a system call) when none is.
        sleepers: AtomicUsize,
        /// Whether the caller is asleep (or about to sleep) on `done`.
        waiting: AtomicBool,
        lock: Mutex<()>,
        wake: Condvar,
        done: Condvar,
    }

    /// A value alone on its cache lines (128 bytes: adjacent-line prefetch pairs them).
    #[repr(align(128))]
    struct Line<T>(T);

    impl<T> core::ops::Deref for Line<T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }

    pub(super) struct Pool {
        shared: Arc<Shared>,
        workers: Vec<JoinHandle<()>>,
        /// Jobs still to run on the caller's thread alone (see the module docs).
        serial: AtomicU32,
        /// Length of the next such stretch.
        stretch: AtomicU32,
        /// Whether the next parallel job is the first after a stretch.
        probe: AtomicBool,
        /// Whether a job is running on the workers.
        active: AtomicBool,
    }

    /// Clears a flag when dropped (also when a panic unwinds through its owner).
    struct ClearOnDrop<'a>(&'a AtomicBool);

    impl Drop for ClearOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Release);
        }
    }

    impl core::fmt::Debug for Pool {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "Pool({} workers)", self.workers.len())
        }
    }

    impl Shared {
        /// Claim and run tasks until none is left.
        fn work(&self, job: &Job<'_>) {
            let n = self.n_tasks.load(Ordering::Acquire);
            loop {
                let t = self.next_task.fetch_add(1, Ordering::AcqRel);
                if t >= n {
                    break;
                }
                job(t);
            }
        }
    }

    impl Pool {
        pub(super) fn new(workers: usize) -> std::io::Result<Pool> {
            let shared = Arc::new(Shared {
                epoch: AtomicUsize::new(0),
                job: AtomicPtr::new(core::ptr::null_mut()),
                n_tasks: AtomicUsize::new(0),
                next_task: Line(AtomicUsize::new(0)),
                busy: Line(AtomicUsize::new(0)),
                panicked: AtomicBool::new(false),
                stop: AtomicBool::new(false),
                sleepers: AtomicUsize::new(0),
                waiting: AtomicBool::new(false),
                lock: Mutex::new(()),
                wake: Condvar::new(),
                done: Condvar::new(),
            });
            let mut pool = Pool {
                shared,
                workers: Vec::with_capacity(workers),
                serial: AtomicU32::new(0),
                stretch: AtomicU32::new(SERIAL_MIN),
                probe: AtomicBool::new(false),
                active: AtomicBool::new(false),
            };
            for i in 0..workers {
                let shared = Arc::clone(&pool.shared);
                let handle = std::thread::Builder::new()
                    .name(alloc::format!("tramontane-{}", i + 1))
                    .spawn(move || worker(&shared))?;
                pool.workers.push(handle);
            }
            Ok(pool)
        }

        /// Run `job(t)` for every `t` in `0..n_tasks` on the workers and the caller;
        /// return when all have finished. Allocates nothing.
        pub(super) fn run(&self, n_tasks: usize, job: &Job<'_>) {
            if n_tasks <= 1 || self.workers.is_empty() {
                (0..n_tasks).for_each(job);
                return;
            }
            // The workers serve one job at a time. Another job asked for meanwhile (from
            // another thread sharing the `Threads`, or by a task of this job) runs on
            // its caller's thread alone.
            if self.active.swap(true, Ordering::Acquire) {
                (0..n_tasks).for_each(job);
                return;
            }
            let _active = ClearOnDrop(&self.active);
            // One job at a time (above), so plain loads and stores of the counters are
            // enough.
            let serial = self.serial.load(Ordering::Relaxed);
            if serial > 0 {
                self.serial.store(serial - 1, Ordering::Relaxed);
                let start = std::time::Instant::now();
                (0..n_tasks).for_each(job);
                // A long job (a prefill's matrix product) is better shared even with a
                // worker that starts a time slice late: it ends the stretch.
                if start.elapsed() > LONG {
                    self.serial.store(0, Ordering::Relaxed);
                }
                return;
            }
            let s = &*self.shared;
            // Workers are idle here: the previous `run` waited for busy == 0.
            // The closure is published as a pointer to a fat `&Job` stored on this stack
            // frame, which outlives every use (we wait for busy == 0 below).
            let slot: &Job<'_> = job;
            let slot_ptr: *const &Job<'_> = &slot;
            s.n_tasks.store(n_tasks, Ordering::Release);
            s.next_task.store(0, Ordering::Release);
            s.busy.store(self.workers.len(), Ordering::Release);
            s.job
                .store(slot_ptr as *mut &'static Job<'static>, Ordering::Release);
            // A worker about to sleep announces it in `sleepers` and then reads the
            // epoch, under the lock; here the epoch is bumped and then `sleepers` read.
            // Both sides use SeqCst, so either the worker sees the new epoch (and does
            // not sleep) or this sees the sleeper (and wakes it under the lock, which
            // the sleeper holds from its check until it waits: no lost wake-up).
            s.epoch.fetch_add(1, Ordering::SeqCst);
            if s.sleepers.load(Ordering::SeqCst) != 0 {
                let _g = s.lock.lock().unwrap_or_else(|p| p.into_inner());
                s.wake.notify_all();
            }
            let start = std::time::Instant::now();
            // A task that panics on this thread must not end the call before the
            // workers are out of the job: they still use the closure and what it
            // borrows. The panic goes on once they are.
            let mine = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| s.work(job)));
            let worked = start.elapsed();
            // Wait for the workers to leave the job: spin, then sleep.
            let mut spins = 0u32;
            while s.busy.load(Ordering::Acquire) != 0 {
                if spins < SPIN {
                    spins += 1;
                    core::hint::spin_loop();
                } else {
                    // The same handshake as for `sleepers` above, with `waiting`.
                    let g = s.lock.lock().unwrap_or_else(|p| p.into_inner());
                    s.waiting.store(true, Ordering::SeqCst);
                    if s.busy.load(Ordering::SeqCst) != 0 {
                        let _g = s.done.wait(g).unwrap_or_else(|p| p.into_inner());
                    }
                    s.waiting.store(false, Ordering::SeqCst);
                }
            }
            s.job.store(core::ptr::null_mut(), Ordering::Release);
            if let Err(p) = mine {
                s.panicked.store(false, Ordering::Release);
                std::panic::resume_unwind(p);
            }
            let waited = start.elapsed().saturating_sub(worked);
            let stretch = self.stretch.load(Ordering::Relaxed);
            if waited > LAG && waited > 2 * worked {
                self.serial.store(stretch, Ordering::Relaxed);
                self.probe.store(true, Ordering::Relaxed);
                self.stretch
                    .store((2 * stretch).min(SERIAL_MAX), Ordering::Relaxed);
            } else if self.probe.swap(false, Ordering::Relaxed) {
                // The first job after a stretch, without lag: the next stretch is half as
                // long (not reset: amid lasting contention the workers also get their
                // turns, and a lucky job must not bring the lag back every few jobs).
                self.stretch
                    .store((stretch / 2).max(SERIAL_MIN), Ordering::Relaxed);
            }
            if s.panicked.swap(false, Ordering::AcqRel) {
                panic!("a kernel task panicked on a worker thread");
            }
        }
    }

    fn worker(s: &Shared) {
        let mut seen = 0usize;
        loop {
            // Wait for a new epoch: spin, then sleep on the condvar.
            let mut spins = 0u32;
            loop {
                let e = s.epoch.load(Ordering::Acquire);
                if e != seen {
                    seen = e;
                    break;
                }
                if spins < SPIN {
                    spins += 1;
                    core::hint::spin_loop();
                } else {
                    let g = s.lock.lock().unwrap_or_else(|p| p.into_inner());
                    s.sleepers.fetch_add(1, Ordering::SeqCst);
                    if s.epoch.load(Ordering::SeqCst) == seen {
                        let _g = s.wake.wait(g).unwrap_or_else(|p| p.into_inner());
                    }
                    s.sleepers.fetch_sub(1, Ordering::SeqCst);
                }
            }
            if s.stop.load(Ordering::Acquire) {
                return;
            }
            let ptr = s.job.load(Ordering::Acquire);
            if !ptr.is_null() {
                // SAFETY: `run` stored a pointer to a `&Job` on its own stack frame before
                // bumping the epoch, and it does not return (or clear the pointer) until
                // this worker has decremented `busy` below, so both the pointer and the
                // closure it refers to are alive for the whole call.
                let job: &Job<'_> = unsafe { *ptr };
                let r = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| s.work(job)));
                if r.is_err() {
                    s.panicked.store(true, Ordering::Release);
                }
            }
            if s.busy.fetch_sub(1, Ordering::SeqCst) == 1 && s.waiting.load(Ordering::SeqCst) {
                let _g = s.lock.lock().unwrap_or_else(|p| p.into_inner());
                s.done.notify_all();
            }
        }
    }

    impl Drop for Pool {
        fn drop(&mut self) {
            let s = &*self.shared;
            s.stop.store(true, Ordering::Release);
            {
                let _g = s.lock.lock().unwrap_or_else(|p| p.into_inner());
                s.epoch.fetch_add(1, Ordering::AcqRel);
                s.wake.notify_all();
            }
            for w in self.workers.drain(..) {
                let _ = w.join();
            }
        }
    }

    /// A `&mut [f32]` shared by tasks that each take a disjoint piece of it.
    pub(super) struct SharedMut<'a> {
        ptr: *mut f32,
        len: usize,
        _life: PhantomData<&'a mut [f32]>,
    }

    // SAFETY: SharedMut hands out only disjoint pieces (one per task index, each claimed
    // once), so sending/sharing it between threads is like splitting a &mut [f32].
    unsafe impl Send for SharedMut<'_> {}
    // SAFETY: as above: concurrent `piece` calls with distinct task ranges never alias.
    unsafe impl Sync for SharedMut<'_> {}

    impl<'a> SharedMut<'a> {
        pub(super) fn new(s: &'a mut [f32]) -> Self {
            SharedMut {
                ptr: s.as_mut_ptr(),
                len: s.len(),
                _life: PhantomData,
            }
        }

        /// Elements `[start, start + chunk)` clipped to the length. Callers must use each
        /// `start` (a multiple of `chunk`) from one task only.
        #[allow(clippy::mut_from_ref)]
        pub(super) fn piece(&self, start: usize, chunk: usize) -> Option<&mut [f32]> {
            if start >= self.len {
                return None;
            }
            let n = chunk.min(self.len - start);
            // SAFETY: start < len and start + n <= len, so the range lies inside the
            // slice this was made from (borrowed mutably for 'a); each task owns its
            // own range (see `for_rows`), so no two live pieces overlap.
            Some(unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), n) })
        }
    }
}

#[cfg(all(test, feature = "parallel"))]
mod tests {
    use super::pool::SERIAL_MIN;
    use super::Threads;
    use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use core::time::Duration;
    use std::time::Instant;

    /// Runs a 2-task job in which the worker's task sleeps `sleep` once both tasks have
    /// started (the caller's task waits for the worker's to start, up to a second);
    /// returns whether the worker took a task.
    fn job_with_slow_worker(t: &Threads, sleep: Duration) -> bool {
        let caller = std::thread::current().id();
        let worker_in = AtomicBool::new(false);
        let mut out = [0.0f32; 2];
        t.for_rows(&mut out, 1, |_, _| {
            if std::thread::current().id() == caller {
                let t0 = Instant::now();
                while !worker_in.load(Ordering::Acquire) && t0.elapsed() < Duration::from_secs(1) {
                    core::hint::spin_loop();
                }
            } else {
                worker_in.store(true, Ordering::Release);
                std::thread::sleep(sleep);
            }
        });
        worker_in.load(Ordering::Acquire)
    }

    #[test]
    fn a_lagging_worker_sends_the_next_jobs_to_the_caller() {
        let t = Threads::new(2).unwrap();
        let caller = std::thread::current().id();
        // The worker holds its task 200 ms while the caller is done at once: lag.
        assert!(job_with_slow_worker(&t, Duration::from_millis(200)));
        // The next SERIAL_MIN jobs run on the caller's thread alone.
        let on_worker = AtomicUsize::new(0);
        for _ in 0..SERIAL_MIN {
            let mut out = [0.0f32; 8];
            t.for_rows(&mut out, 1, |i, o| {
                if std::thread::current().id() != caller {
                    on_worker.fetch_add(1, Ordering::Relaxed);
                }
                o[0] = i as f32;
            });
            assert_eq!(out, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        }
        assert_eq!(on_worker.load(Ordering::Relaxed), 0);
        // Then the worker takes part again (a job without lag, which also resets the
        // stretch).
        assert!(job_with_slow_worker(&t, Duration::ZERO));
    }

    #[test]
    fn a_long_job_alone_ends_the_stretch() {
        let t = Threads::new(2).unwrap();
        let caller = std::thread::current().id();
        assert!(job_with_slow_worker(&t, Duration::from_millis(200)));
        // The stretch's first job takes 5 ms, all on the caller.
        let on_worker = AtomicUsize::new(0);
        let mut out = [0.0f32; 4];
        t.for_rows(&mut out, 1, |_, _| {
            if std::thread::current().id() != caller {
                on_worker.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_micros(1250));
        });
        assert_eq!(on_worker.load(Ordering::Relaxed), 0);
        // So the next job is shared again, well before SERIAL_MIN jobs.
        assert!(job_with_slow_worker(&t, Duration::ZERO));
    }

    #[test]
    fn a_task_may_run_a_job_of_its_own() {
        let t = Threads::new(2).unwrap();
        let mut out = [0.0f32; 6];
        t.for_rows(&mut out, 1, |i, o| {
            let mut inner = [0.0f32; 5];
            t.for_rows(&mut inner, 1, |j, p| p[0] = (i * 10 + j) as f32);
            o[0] = inner.iter().sum();
        });
        let want: [f32; 6] = core::array::from_fn(|i| (50 * i + 10) as f32);
        assert_eq!(out, want);
    }

    #[test]
    fn a_panic_on_the_caller_waits_for_the_workers() {
        let t = Threads::new(2).unwrap();
        let caller = std::thread::current().id();
        let worker_in = AtomicBool::new(false);
        let worker_done = AtomicBool::new(false);
        let r = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
            let mut out = [0.0f32; 2];
            t.for_rows(&mut out, 1, |_, _| {
                if std::thread::current().id() == caller {
                    let t0 = Instant::now();
                    while !worker_in.load(Ordering::Acquire)
                        && t0.elapsed() < Duration::from_secs(1)
                    {
                        core::hint::spin_loop();
                    }
                    panic!("a task on the caller's thread");
                }
                worker_in.store(true, Ordering::Release);
                std::thread::sleep(Duration::from_millis(1500));
                worker_done.store(true, Ordering::Release);
            });
        }));
        assert!(r.is_err());
        // The worker's task had ended when the panic reached here (its 1.5 s are
        // longer than a first panic takes to unwind, about 0.1 s here).
        assert!(worker_in.load(Ordering::Acquire));
        assert!(worker_done.load(Ordering::Acquire));
        // And the pool still runs jobs, the worker included (a panic is not lag).
        assert!(job_with_slow_worker(&t, Duration::ZERO));
    }
}
