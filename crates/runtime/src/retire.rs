//! A finished fresh instance is dropped after its answer is written, when the worker thread
//! would otherwise go idle.
//!
//! Dropping a store resets the instance's memory slot for the next instance (a `PAGEMAP_SCAN`
//! and a copy of the pages the request dirtied). Done where the instance ends, that reset sat
//! between the guest's last byte and the write of the response: on an idle host, part of the
//! request's latency. So each worker thread keeps the store it finished last and drops it when
//! it parks (it has nothing else to run), or when it finishes the next one, whichever comes
//! first. A busy worker does the same work one request later, and no worker ever keeps more
//! than one finished instance.

use std::any::Any;
use std::cell::{Cell, RefCell};

thread_local! {
    /// What this thread drops when it next parks.
    static RETIRED: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    /// Whether this thread calls [`drop_retired`] when it parks: only the runtime's workers do,
    /// so any other thread drops what it retires at once.
    static PARKS: Cell<bool> = const { Cell::new(false) };
}

/// Drops `finished` when this thread next parks; drops what it kept before now.
pub(crate) fn retire<T: 'static>(finished: T) {
    if !PARKS.get() {
        return drop(finished);
    }
    // Taken out before it is dropped: a store's drop must not run under the borrow.
    let previous = RETIRED.with(|slot| slot.borrow_mut().replace(Box::new(finished)));
    drop(previous);
}

/// For the async runtime's `on_thread_park` (and `on_thread_stop`): drops what this thread
/// kept, and marks it as a thread that parks, so it keeps what it retires from now on.
pub fn drop_retired() {
    PARKS.set(true);
    let kept = RETIRED.with(|slot| slot.borrow_mut().take());
    drop(kept);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts its drops.
    struct Finished(Arc<AtomicUsize>);

    impl Drop for Finished {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_thread_that_never_parks_drops_at_once() {
        std::thread::spawn(|| {
            let dropped = Arc::new(AtomicUsize::new(0));
            retire(Finished(dropped.clone()));
            assert_eq!(dropped.load(Ordering::SeqCst), 1);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_worker_keeps_one_until_it_parks_or_finishes_the_next() {
        std::thread::spawn(|| {
            drop_retired();
            let first = Arc::new(AtomicUsize::new(0));
            retire(Finished(first.clone()));
            assert_eq!(
                first.load(Ordering::SeqCst),
                0,
                "kept until the worker parks"
            );
            let second = Arc::new(AtomicUsize::new(0));
            retire(Finished(second.clone()));
            assert_eq!(first.load(Ordering::SeqCst), 1, "the next one replaces it");
            assert_eq!(second.load(Ordering::SeqCst), 0);
            drop_retired();
            assert_eq!(
                second.load(Ordering::SeqCst),
                1,
                "dropped when the worker parks"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_runtime_drops_a_retired_value_when_its_worker_idles() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_park(drop_retired)
            .enable_all()
            .build()
            .unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let counter = dropped.clone();
        runtime.block_on(async move {
            tokio::spawn(async move {
                // A worker has parked before it is given a task: it keeps what it retires.
                retire(Finished(counter));
            })
            .await
            .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while dropped.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert_eq!(dropped.load(Ordering::SeqCst), 1);
        });
    }
}
