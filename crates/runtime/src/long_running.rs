//! Guest calls that run long move to low-priority threads, so short requests keep their latency.
//!
//! Every guest call starts on the thread that received it: the common, short request never hops.
//! A call that has been running (on a thread, not waiting) several times longer than its
//! component's calls usually take ([`Pace`]) is handed, with its whole store, to a pool of
//! threads at the lowest priority (nice 19). On an idle machine it keeps running at full speed;
//! under contention the cores go first to the ingress, the control API and short requests. Its timeout still holds: the deadline is wall time,
//! checked at every epoch tick wherever the call runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// The least running time a call may take on the thread that received it before it moves:
/// far above what a request that answers from memory takes (tens of microseconds for Rust),
/// and short enough that an endless loop costs the shared threads little.
const MIN_BUDGET: Duration = Duration::from_millis(3);

/// The most: however long a component's calls usually run, one that runs this long leaves.
const MAX_BUDGET: Duration = Duration::from_millis(100);

/// How many times its usual running time a call may take before it counts as running long.
const USUAL_FACTOR: u32 = 4;

/// Calls a component finishes before its own pace counts: until then, every call gets
/// [`LEARNING_BUDGET`]. A component's first calls run slower than its later ones (cold caches,
/// first page faults) and arrive together; judged by [`MIN_BUDGET`], they would all move at once
/// and, on a busy host, wait behind everything else.
const LEARNING_CALLS: u32 = 4;

/// The budget of a call made while its component's pace is still unknown: several times what
/// a cold first call of a fresh CPython instance runs (about 6 ms).
const LEARNING_BUDGET: Duration = Duration::from_millis(25);

/// What a component's calls usually take, so that only calls running far longer than usual
/// leave the shared threads. A fixed bar would punish a component whose every call is a little
/// heavy (a fresh CPython instance runs about 3 ms): under full load the calls of its slow tail
/// would move and wait behind all the others; a loop still leaves after [`MAX_BUDGET`] at most.
#[derive(Default)]
pub(crate) struct Pace {
    /// Running time per clean call in microseconds, a moving average.
    usual_micros: AtomicU64,
    /// Calls finished, clean or not (saturating at [`LEARNING_CALLS`]).
    calls: AtomicU32,
}

impl Pace {
    /// Running time after which the next call is marked long-running.
    pub(crate) fn budget(&self) -> Duration {
        if self.calls.load(Ordering::Relaxed) < LEARNING_CALLS {
            return LEARNING_BUDGET;
        }
        let usual = Duration::from_micros(self.usual_micros.load(Ordering::Relaxed));
        (usual * USUAL_FACTOR).clamp(MIN_BUDGET, MAX_BUDGET)
    }

    /// Counts a call that finished after running `ran` in all; only a clean finish (no trap,
    /// no timeout) tells what the component's calls usually take.
    pub(crate) fn record(&self, ran: Duration, clean: bool) {
        if self.calls.load(Ordering::Relaxed) < LEARNING_CALLS {
            self.calls.fetch_add(1, Ordering::Relaxed);
        }
        if !clean {
            return;
        }
        let sample = ran.min(MAX_BUDGET).as_micros() as u64;
        // Racing updates may lose a sample; the average only steers a budget.
        let usual = self.usual_micros.load(Ordering::Relaxed);
        self.usual_micros
            .store((usual * 7 + sample) / 8, Ordering::Relaxed);
    }
}

/// Counts one call on its component's [`Pace`] when dropped, however the call ends: clean
/// only once [`CallRecord::clean`] is called, so a call cut off or cancelled (its client gone)
/// counts as one that never finished.
pub(crate) struct CallRecord {
    pace: Arc<Pace>,
    clock: LongRunning,
    clean: bool,
}

impl CallRecord {
    pub(crate) fn new(pace: &Arc<Pace>, clock: &LongRunning) -> Self {
        CallRecord {
            pace: pace.clone(),
            clock: clock.clone(),
            clean: false,
        }
    }

    /// The call finished with no trap and within its timeout.
    pub(crate) fn clean(&mut self) {
        self.clean = true;
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.pace.record(self.clock.ran_so_far(), self.clean);
    }
}

/// The nice value of the long-running pool's threads: the lowest priority of a normal thread,
/// about 1.5% of a core against a busy thread at the default priority; the kernel's EEVDF
/// scheduler also lets a waking default-priority thread preempt it at once.
const LONG_RUNNING_NICE: i32 = 19;

/// The runtime whose threads run long guest calls.
fn pool() -> &'static tokio::runtime::Runtime {
    static POOL: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    POOL.get_or_init(|| {
        // One thread fewer than the cores, so that one core is always free of long calls:
        // a short request then never waits for the kernel to preempt a long one.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().max(2) - 1);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("weft-long-guest")
            .on_thread_start(|| {
                // The lowest nice value, per thread on Linux (a thread's id names that thread
                // only). Not SCHED_IDLE: on a host busy with other processes an idle-class
                // thread may not run at all, and a call cut off at its timeout must still get
                // the moment it takes to end.
                if let Err(e) = lower_this_thread() {
                    tracing::warn!(error = %e, "cannot lower the priority of a long-running guest thread");
                }
            })
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the long-running guest threads: {e}"))
    })
}

/// The slice a long-running thread may keep a core for once a thread of the ingress, the
/// control API or a short call wakes there: the kernel's default (about 3 ms) would hold a
/// waking short request for as long.
const LONG_RUNNING_SLICE_NANOS: u64 = 100_000;

/// Puts the calling thread at [`LONG_RUNNING_NICE`] with a [`LONG_RUNNING_SLICE_NANOS`] slice
/// (`sched_setattr`, Linux 6.12+: a short slice lets a waking thread preempt it); on an older
/// kernel, at that nice value with the default slice.
fn lower_this_thread() -> std::io::Result<()> {
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        sched_policy: u32,
        sched_flags: u64,
        sched_nice: i32,
        sched_priority: u32,
        sched_runtime: u64,
        sched_deadline: u64,
        sched_period: u64,
        sched_util_min: u32,
        sched_util_max: u32,
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_nice: LONG_RUNNING_NICE,
        sched_runtime: LONG_RUNNING_SLICE_NANOS,
        ..Default::default()
    };
    // SAFETY: sched_setattr reads `attr.size` bytes from a live, initialised struct laid out as
    // the kernel's `struct sched_attr` (SCHED_ATTR_SIZE_VER1); pid 0 is the calling thread.
    #[allow(unsafe_code)]
    let done = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if done == 0 {
        return Ok(());
    }
    let thread = rustix::thread::gettid();
    rustix::process::setpriority_process(Some(thread), LONG_RUNNING_NICE).map_err(Into::into)
}

/// How long one call has been running, shared by its store's epoch callback (which reads it)
/// and the [`Demotable`] that polls it (which clocks each poll); raised once the call has run
/// past its budget.
#[derive(Clone, Default)]
pub(crate) struct LongRunning(Arc<CallClock>);

#[derive(Default)]
struct CallClock {
    marked: AtomicBool,
    /// Nanoseconds spent in earlier polls.
    ran_nanos: AtomicU64,
    /// When the poll in progress began, in [`wall_nanos`]; 0 between polls.
    poll_began: AtomicU64,
    /// The polling thread's CPU time when the epoch callback first read the clock in the poll in
    /// progress; 0 until then.
    checkpoint_cpu: AtomicU64,
    /// The part of the poll in progress before that first read, counted in wall time.
    before_checkpoint: AtomicU64,
}

/// The CPU time the calling thread has used, in nanoseconds (never 0). CPU time, not wall
/// time: a call whose thread the kernel preempts (for the load generator, another process) has
/// not run meanwhile, and must not be taken for a long one.
fn thread_cpu_nanos() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64 + 1
}

/// Monotonic wall time in nanoseconds since the first call (never 0): a vDSO read, no system
/// call.
fn wall_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// The most wall time a poll is charged before its thread's CPU clock is first read. The epoch
/// callback reads it at the first tick a running guest sees, so a guest that computes is on the
/// CPU clock within about a tick; wall time beyond that, with no tick seen, is time the thread
/// spent off the CPU (or in the host), which must not make a call look long.
const UNCLOCKED_CAP: Duration = crate::engine::EPOCH_TICK;

impl LongRunning {
    /// Starts the clock over for the store's next call, without a new allocation per request.
    pub(crate) fn reset(&self) {
        self.0.marked.store(false, Ordering::Relaxed);
        self.0.ran_nanos.store(0, Ordering::Relaxed);
        self.0.poll_began.store(0, Ordering::Relaxed);
        self.0.checkpoint_cpu.store(0, Ordering::Relaxed);
    }

    pub(crate) fn mark(&self) {
        self.0.marked.store(true, Ordering::Relaxed);
    }

    fn is_marked(&self) -> bool {
        self.0.marked.load(Ordering::Relaxed)
    }

    /// Time the call has spent being polled, the poll in progress included. Called by the
    /// store's epoch callback on the polling thread: its first call in a poll puts the rest of
    /// that poll on the thread's CPU clock.
    pub(crate) fn ran(&self) -> Duration {
        self.ran_reading(true)
    }

    /// What a finished call ran, read without starting the CPU clock.
    fn ran_so_far(&self) -> Duration {
        self.ran_reading(false)
    }

    fn ran_reading(&self, checkpoint: bool) -> Duration {
        let earlier = self.0.ran_nanos.load(Ordering::Relaxed);
        let began = self.0.poll_began.load(Ordering::Relaxed);
        if began == 0 {
            return Duration::from_nanos(earlier);
        }
        let at = self.0.checkpoint_cpu.load(Ordering::Relaxed);
        let current = if at != 0 {
            self.0.before_checkpoint.load(Ordering::Relaxed) + thread_cpu_nanos().saturating_sub(at)
        } else {
            let unclocked = capped(wall_nanos().saturating_sub(began));
            if checkpoint {
                self.0.before_checkpoint.store(unclocked, Ordering::Relaxed);
                self.0
                    .checkpoint_cpu
                    .store(thread_cpu_nanos(), Ordering::Relaxed);
            }
            unclocked
        };
        Duration::from_nanos(earlier + current)
    }

    /// Polls `call` once, adding the time the poll takes to the call's running time.
    fn clocked_poll<T>(
        &self,
        call: Pin<&mut (dyn Future<Output = T> + Send)>,
        cx: &mut Context<'_>,
    ) -> Poll<T> {
        // A thread's CPU clock is a system call that locks the scheduler's queue (4% of a fresh
        // Rust request's CPU when read at every poll). A poll starts on wall time and moves to
        // the CPU clock only once the epoch callback sees a tick in it: the short polls of a
        // short request read no clock but the vDSO's.
        self.0.poll_began.store(wall_nanos(), Ordering::Relaxed);
        let poll = call.poll(cx);
        let ran = self.ran_so_far().as_nanos() as u64;
        self.0.poll_began.store(0, Ordering::Relaxed);
        self.0.checkpoint_cpu.store(0, Ordering::Relaxed);
        self.0.ran_nanos.store(ran, Ordering::Relaxed);
        poll
    }
}

/// Wall nanoseconds of a poll not yet on the CPU clock, at most [`UNCLOCKED_CAP`].
fn capped(wall: u64) -> u64 {
    wall.min(UNCLOCKED_CAP.as_nanos() as u64)
}

/// A guest call that runs where it is polled until it is marked long-running, then finishes on
/// the low-priority pool. Dropping it cancels the call wherever it runs.
pub(crate) struct Demotable<T: Send + 'static> {
    stage: Stage<T>,
    long_running: LongRunning,
}

enum Stage<T> {
    Here(Pin<Box<dyn Future<Output = T> + Send>>),
    Moved(JoinHandle<T>),
    Moving,
}

impl<T: Send + 'static> Demotable<T> {
    /// Wraps `call`, whose store reports through `long_running`.
    pub(crate) fn new(
        call: impl Future<Output = T> + Send + 'static,
        long_running: LongRunning,
    ) -> Self {
        Demotable {
            stage: Stage::Here(Box::pin(call)),
            long_running,
        }
    }
}

impl<T: Send + 'static> Future for Demotable<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        if let Stage::Here(call) = &mut this.stage {
            if !this.long_running.is_marked() {
                // The epoch callback marks the call and yields, which wakes this task at once.
                return this.long_running.clocked_poll(call.as_mut(), cx);
            }
            if let Stage::Here(call) = std::mem::replace(&mut this.stage, Stage::Moving) {
                let clock = this.long_running.clone();
                let mut call = call;
                this.stage = Stage::Moved(pool().spawn(std::future::poll_fn(move |cx| {
                    clock.clocked_poll(call.as_mut(), cx)
                })));
            }
        }
        match &mut this.stage {
            Stage::Moved(handle) => Pin::new(handle).poll(cx).map(|finished| match finished {
                Ok(output) => output,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {
                    unreachable!("a moved call is cancelled only when its Demotable is dropped")
                }
            }),
            Stage::Here(_) | Stage::Moving => unreachable!("a call is moved before it is awaited"),
        }
    }
}

impl<T: Send + 'static> Drop for Demotable<T> {
    fn drop(&mut self) {
        if let Stage::Moved(handle) = &self.stage {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_component_gets_a_learning_budget_until_its_pace_is_known() {
        let pace = Pace::default();
        for _ in 0..LEARNING_CALLS {
            assert_eq!(pace.budget(), LEARNING_BUDGET);
            pace.record(Duration::from_secs(5), false);
        }
        assert_eq!(
            pace.budget(),
            MIN_BUDGET,
            "calls that never finish cleanly set no pace"
        );
    }

    #[test]
    fn a_component_whose_calls_are_all_heavy_gets_room_up_to_the_ceiling() {
        let pace = Pace::default();
        for _ in 0..64 {
            pace.record(Duration::from_millis(6), true);
        }
        let budget = pace.budget();
        assert!(
            budget > Duration::from_millis(23) && budget <= Duration::from_millis(24),
            "{budget:?}"
        );
        for _ in 0..64 {
            pace.record(Duration::from_secs(1), true);
        }
        assert_eq!(pace.budget(), MAX_BUDGET);
    }

    #[test]
    fn light_calls_bring_the_budget_back_down() {
        let pace = Pace::default();
        for _ in 0..64 {
            pace.record(Duration::from_millis(50), true);
        }
        for _ in 0..64 {
            pace.record(Duration::ZERO, true);
        }
        assert_eq!(pace.budget(), MIN_BUDGET);
    }

    /// Spins for `cpu` of the thread's CPU time as a computing guest does, the epoch callback
    /// reading `clock` at every tick.
    fn compute(clock: &LongRunning, cpu: Duration) {
        let spin = thread_cpu_nanos();
        let mut tick = Instant::now();
        while thread_cpu_nanos() - spin < cpu.as_nanos() as u64 {
            if tick.elapsed() >= crate::engine::EPOCH_TICK {
                clock.ran();
                tick = Instant::now();
            }
            std::hint::spin_loop();
        }
    }

    #[tokio::test]
    async fn a_poll_whose_thread_is_off_the_cpu_counts_only_what_it_ran() {
        // A thread put to sleep inside a poll stands for one the kernel preempted: the poll
        // takes 30 ms of wall time and next to no CPU time.
        let flag = LongRunning::default();
        let clock = flag.clone();
        let call = Demotable::new(
            async move {
                std::thread::sleep(Duration::from_millis(30));
                clock.ran()
            },
            flag.clone(),
        );
        let during = call.await;
        let after = flag.ran();
        assert!(during < Duration::from_millis(5), "{during:?}");
        assert!(after < Duration::from_millis(5), "{after:?}");
    }

    #[tokio::test]
    async fn a_call_is_clocked_only_while_it_runs() {
        let flag = LongRunning::default();
        let clock = flag.clone();
        let call = Demotable::new(
            async move {
                compute(&clock, Duration::from_millis(20));
                tokio::time::sleep(Duration::from_millis(200)).await;
                clock.ran()
            },
            flag,
        );
        let ran = call.await;
        assert!(
            ran >= Duration::from_millis(20) && ran < Duration::from_millis(200),
            "{ran:?}"
        );
    }

    #[tokio::test]
    async fn a_computing_call_preempted_midway_counts_only_what_it_ran() {
        // Ticks put the poll on the thread's CPU clock; the 30 ms the thread then spends off
        // the CPU add nothing.
        let flag = LongRunning::default();
        let clock = flag.clone();
        let call = Demotable::new(
            async move {
                compute(&clock, Duration::from_millis(5));
                std::thread::sleep(Duration::from_millis(30));
                clock.ran()
            },
            flag.clone(),
        );
        let during = call.await;
        let after = flag.ran();
        for ran in [during, after] {
            assert!(
                ran >= Duration::from_millis(4) && ran < Duration::from_millis(15),
                "{ran:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_marked_call_finishes_on_the_long_running_threads() {
        let flag = LongRunning::default();
        let marker = flag.clone();
        let call = Demotable::new(
            async move {
                let before = std::thread::current().name().map(str::to_owned);
                marker.mark();
                tokio::task::yield_now().await;
                (before, std::thread::current().name().map(str::to_owned))
            },
            flag,
        );
        let (before, after) = call.await;
        assert_ne!(before.as_deref(), Some("weft-long-guest"));
        assert_eq!(after.as_deref(), Some("weft-long-guest"));
    }
}
