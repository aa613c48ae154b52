//! The threads that serve requests: one per core, each running a single-threaded tokio runtime,
//! so that a connection, the guest calls it makes and the WASI 0.3 instances they use stay on
//! the thread that accepted it. On a work-stealing runtime the same request would wake threads
//! on other cores several times over (its connection's task, its instance's event loop, the
//! reactor), each wakeup an inter-processor interrupt and a context switch.

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    /// Which serving thread this is, if it is one.
    static THIS_CORE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The serving thread the caller runs on, if it runs on one.
pub fn current() -> Option<usize> {
    THIS_CORE.with(Cell::get)
}

/// The runtime of each serving thread, started on first use and kept for the process's life.
pub fn handles() -> &'static [tokio::runtime::Handle] {
    static HANDLES: OnceLock<Vec<tokio::runtime::Handle>> = OnceLock::new();
    HANDLES.get_or_init(|| {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..count).map(start).collect()
    })
}

/// Starts serving thread `index`, returning its runtime's handle once it runs.
fn start(index: usize) -> tokio::runtime::Handle {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("weft-serve-{index}"))
        .spawn(move || {
            THIS_CORE.with(|core| core.set(Some(index)));
            let runtime = tokio::runtime::Builder::new_current_thread()
                // A guest call may hold the thread for up to an epoch tick before it yields;
                // tokio's default of 61 tasks between looks at the sockets would let a new
                // request wait behind as many.
                .event_interval(8)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("cannot start serving thread {index}: {e}"));
            let _ = handle_tx.send(runtime.handle().clone());
            runtime.block_on(std::future::pending::<()>());
        })
        .unwrap_or_else(|e| panic!("cannot start serving thread {index}: {e}"));
    handle_rx
        .recv()
        .unwrap_or_else(|_| panic!("serving thread {index} ended as it started"))
}
