//! A future that is polled again at once when it wakes itself, within a budget.
//!
//! A WASI 0.3 instance's event loop (`Store::run_concurrent`) yields to the executor before each
//! low-priority work item (a guest callback that asked to yield): it wakes itself and returns
//! `Pending`. Guests built with wit-bindgen ask for that once or twice per request (2 per
//! request counted on `examples/hello-p3`'s `/sleep`, 1 on its `/`). On a busy host each yield
//! sends the instance's task to the back of a run queue holding a thousand connection tasks, so
//! an instance finishes only as many requests as it gets turns, and a response's body closes
//! milliseconds after its head. Polling again at once, while the turn is short, the task has
//! tokio's cooperative budget left and no guest was preempted for computing, skips the trip
//! through the queue and keeps the executor fair.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;

/// Polls in one turn of the executor past which a self-wake goes back through its queue.
const MAX_REPOLLS: u32 = 64;
/// Time spent polling again in one turn of the executor (counted from the first self-wake, so
/// a turn with none reads no clock) past which a self-wake goes back through its queue. A
/// guest that computed a whole epoch tick gives its thread up at once, whatever the time.
const TURN_BUDGET: Duration = Duration::from_millis(1);

/// Not being polled: a wake schedules the task.
const IDLE: u8 = 0;
/// Being polled: a wake is remembered and answered by polling again.
const POLLING: u8 = 1;
/// Woken while being polled.
const WOKEN: u8 = 2;

/// Wraps `inner` so its wakes during its own poll are answered by polling it again.
pub(crate) fn repoll_self_wakes<F: Future>(inner: F) -> RepollSelfWakes<F> {
    let relay = Arc::new(Relay {
        state: AtomicU8::new(IDLE),
        task: AtomicWaker::new(),
    });
    RepollSelfWakes {
        inner: Box::pin(inner),
        waker: Waker::from(relay.clone()),
        relay,
    }
}

/// See [`repoll_self_wakes`].
pub(crate) struct RepollSelfWakes<F> {
    inner: Pin<Box<F>>,
    relay: Arc<Relay>,
    /// The waker `inner` sees on every poll, so the wakers it stores stay valid.
    waker: Waker,
}

/// The waker `inner` sees: remembers a wake during a poll, passes one outside it to the task.
struct Relay {
    state: AtomicU8,
    task: AtomicWaker,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
            == Err(IDLE)
        {
            self.task.wake();
        }
    }
}

impl<F: Future> Future for RepollSelfWakes<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.relay.task.register(cx.waker());
        let mut began: Option<Instant> = None;
        let mut repolls = 0;
        loop {
            this.relay.state.store(POLLING, Ordering::Release);
            let outer = PREEMPTED.replace(false);
            let polled = this
                .inner
                .as_mut()
                .poll(&mut Context::from_waker(&this.waker));
            // A poll this one is nested in hears of the preemption too.
            let preempted = PREEMPTED.get();
            PREEMPTED.set(outer || preempted);
            let woken = this.relay.state.swap(IDLE, Ordering::AcqRel) == WOKEN;
            if polled.is_ready() || !woken {
                return polled;
            }
            repolls += 1;
            let began = *began.get_or_insert_with(Instant::now);
            let within_budget = !preempted
                && repolls < MAX_REPOLLS
                && began.elapsed() < TURN_BUDGET
                && tokio::task::coop::has_budget_remaining();
            if !within_budget {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}

thread_local! {
    /// Set when a guest on this thread computed a whole epoch tick during the current poll.
    static PREEMPTED: Cell<bool> = const { Cell::new(false) };
}

/// Called from the epoch callback when a guest has computed a whole tick: the poll it is in
/// gives its thread up instead of being polled again at once.
pub(crate) fn note_preemption() {
    PREEMPTED.set(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Yields (wakes itself, returns Pending) `yields` times, counting its polls.
    struct Yielder {
        yields: usize,
        polls: Arc<AtomicUsize>,
    }

    impl Future for Yielder {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.yields == 0 {
                return Poll::Ready(());
            }
            self.yields -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Counts the wakes the executor's waker gets.
    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An executor's waker that counts its wakes, and the count.
    fn counting_waker() -> (Waker, Arc<CountingWaker>) {
        let outer = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (Waker::from(outer.clone()), outer)
    }

    /// Polls `future` once, as an executor turn would.
    fn poll_once<F: Future>(future: &mut RepollSelfWakes<F>, waker: &Waker) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn self_wakes_are_answered_within_one_poll() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut future = repoll_self_wakes(Yielder {
            yields: 3,
            polls: polls.clone(),
        });
        let (waker, outer) = counting_waker();
        let polled = poll_once(&mut future, &waker);
        assert!(polled.is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 4);
        assert_eq!(outer.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn endless_self_wakes_go_back_to_the_executor() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut future = repoll_self_wakes(Yielder {
            yields: usize::MAX,
            polls: polls.clone(),
        });
        let (waker, outer) = counting_waker();
        let polled = poll_once(&mut future, &waker);
        assert!(polled.is_pending());
        assert!(polls.load(Ordering::Relaxed) <= MAX_REPOLLS as usize);
        assert_eq!(
            outer.0.load(Ordering::Relaxed),
            1,
            "the task is woken to run again"
        );
    }

    /// Computes until preempted at a tick, then yields, as a guest's fiber does.
    struct Computing {
        polls: Arc<AtomicUsize>,
    }

    impl Future for Computing {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            note_preemption();
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn a_preempted_guest_gives_its_thread_up_at_once() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut future = repoll_self_wakes(Computing {
            polls: polls.clone(),
        });
        let (waker, outer) = counting_waker();
        let polled = poll_once(&mut future, &waker);
        assert!(polled.is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        assert_eq!(outer.0.load(Ordering::Relaxed), 1);
        // The mark is the poll's own: the next future on this thread is polled again as usual.
        let polls = Arc::new(AtomicUsize::new(0));
        let mut next = repoll_self_wakes(Yielder {
            yields: 2,
            polls: polls.clone(),
        });
        assert!(poll_once(&mut next, &waker).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_wake_from_outside_a_poll_reaches_the_task() {
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let mut future = repoll_self_wakes(rx);
        let (waker, outer) = counting_waker();
        assert!(poll_once(&mut future, &waker).is_pending());
        assert_eq!(outer.0.load(Ordering::Relaxed), 0);
        tx.send(()).unwrap();
        assert_eq!(outer.0.load(Ordering::Relaxed), 1);
        assert!(poll_once(&mut future, &waker).is_ready());
    }
}
