//! The host's wasmtime engines, one per [`EngineKind`], and the epoch ticker at which guests
//! yield and timeouts are enforced.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: a running guest yields this often, and a timeout is enforced
/// to within one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Bytes of each pooled linear memory reset in place rather than returned to the kernel.
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 1 << 20;
/// Bytes of each pooled table reset in place rather than returned to the kernel.
const TABLE_KEEP_RESIDENT: usize = 128 << 10;

pub use weft_api::{largest_data_image, LARGE_IMAGE_BYTES};

/// Bytes of dirtied pages the large-image engine resets in place per linear memory: a CPython
/// request dirties about a megabyte scattered over its 11.5 MB image, and more as its heap
/// grows; whatever is past this is returned to the kernel and faulted back in.
const LARGE_IMAGE_KEEP_RESIDENT: usize = 16 << 20;

/// Which instance allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    Pooling,
    OnDemand,
}

impl std::fmt::Display for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Allocator::Pooling => "pooling",
            Allocator::OnDemand => "on-demand",
        })
    }
}

/// Which engine compiles and runs a component. An engine with component-model concurrency gives
/// every store the data structures of concurrent execution, which made a fresh WASI 0.2
/// instance a third slower (bench/RESULTS.md); so only components that use it get it. How a
/// pooled memory is reset between instances is an engine setting too, and what suits a guest of
/// a megabyte is wrong for an interpreter's image of ten, so those get an engine of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// Components without component-model async: WASI 0.2 and plain exports.
    Plain,
    /// Like [`EngineKind::Plain`], for a large memory image (over [`LARGE_IMAGE_BYTES`]: CPython,
    /// JavaScript engines). Such a guest dirties hundreds of pages scattered over its image per
    /// request; a reset restores up to [`LARGE_IMAGE_KEEP_RESIDENT`] of them in place, where the
    /// plain engine's megabyte would return the rest to the kernel, to be faulted back in on
    /// the next request with a TLB shootdown on every core each time. Only for fresh instances:
    /// a reused one runs on the plain engine, so that the heap it grew does not stay resident.
    LargeImage,
    /// Components with async lifts or lowers, streams or futures: WASI 0.3. Their instances
    /// serve many requests each, so a reset's cost does not count.
    Concurrent,
}

impl EngineKind {
    /// Every engine, in the order a cached artifact is looked for.
    pub const ALL: [EngineKind; 3] = [
        EngineKind::Concurrent,
        EngineKind::Plain,
        EngineKind::LargeImage,
    ];

    /// The engine a component needs. Component-model async is told by validating it without
    /// that feature: what fails only that way needs the concurrent engine. A component that
    /// fails for any other reason goes there too, and its compile error comes from there.
    pub fn of(bytes: &[u8]) -> EngineKind {
        match EngineKind::concurrency_of(bytes) {
            EngineKind::Plain => EngineKind::by_image(bytes),
            kind => kind,
        }
    }

    /// Between the two engines of WASI 0.2 components, the one for `bytes`'s memory image;
    /// without validating it.
    pub fn by_image(bytes: &[u8]) -> EngineKind {
        if largest_data_image(bytes) > LARGE_IMAGE_BYTES {
            EngineKind::LargeImage
        } else {
            EngineKind::Plain
        }
    }

    /// The WASI generation a user builds for: the engines of one generation differ only in how
    /// they reset memory, and a component compiled for one can be compiled for the other.
    pub fn generation(self) -> &'static str {
        match self {
            EngineKind::Plain | EngineKind::LargeImage => "WASI 0.2",
            EngineKind::Concurrent => "WASI 0.3 (component-model async)",
        }
    }

    /// What `weft app status` says a component runs on.
    pub fn describe(self) -> &'static str {
        match self {
            EngineKind::Plain => "WASI 0.2; memory reset by the pages a request dirtied",
            EngineKind::LargeImage => {
                "WASI 0.2, large memory image; memory reset by the pages a request dirtied, up to 16 MiB"
            }
            EngineKind::Concurrent => "WASI 0.3; many requests per instance",
        }
    }

    fn concurrency_of(bytes: &[u8]) -> EngineKind {
        use wasmparser::WasmFeatures as F;
        // The features wasmtime refuses without concurrency support.
        let concurrency = F::CM_ASYNC
            | F::CM_MORE_ASYNC_BUILTINS
            | F::CM_ASYNC_STACKFUL
            | F::CM_THREADING
            | F::CM_ERROR_CONTEXT;
        let mut validator = wasmparser::Validator::new_with_features(F::all() - concurrency);
        match validator.validate_all(bytes) {
            Ok(_) => EngineKind::Plain,
            Err(_) => EngineKind::Concurrent,
        }
    }
}

/// Builds an engine of `kind`: the pooling allocator when its address-space reservation
/// succeeds, the on-demand allocator when it does not (small or restricted machines must still
/// start).
pub fn build_engine(
    pooling: bool,
    kind: EngineKind,
) -> Result<(Engine, Allocator), wasmtime::Error> {
    if pooling {
        let mut config = base_config(kind);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(kind)));
        match Engine::new(&config) {
            Ok(engine) => return Ok((engine, Allocator::Pooling)),
            Err(e) => tracing::warn!(
                "pooling allocator unavailable ({e}); falling back to on-demand allocation"
            ),
        }
    }
    Ok((Engine::new(&base_config(kind))?, Allocator::OnDemand))
}

fn base_config(kind: EngineKind) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .parallel_compilation(true);
    match kind {
        EngineKind::Plain | EngineKind::LargeImage => config.concurrency_support(false),
        // WASI 0.3 components: async lifts and lowers, streams and futures.
        EngineKind::Concurrent => config.wasm_component_model_async(true),
    };
    config
}

fn pooling_config(kind: EngineKind) -> PoolingAllocationConfig {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(2000)
        .total_core_instances(20_000)
        .total_memories(4000)
        .total_tables(4000)
        .total_stacks(2000)
        .max_core_instances_per_component(64)
        .max_memories_per_component(16)
        .max_tables_per_component(16)
        .table_elements(100_000)
        .max_memory_size(weft_manifest::MEMORY_CEILING as usize)
        .max_unused_warm_slots(100)
        // Resetting a slot with madvise makes the kernel flush TLBs on every core running a host
        // thread (a profile of fresh-instance load showed 30% of CPU in those shootdowns).
        // Restoring the pages a request dirtied, found with PAGEMAP_SCAN where the kernel has it,
        // keeps guests' memory resident and skips the syscall. weft's wasmtime resumes a scan
        // past its 32-region buffer (vendor/README.md): upstream decommits everything after it.
        .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    if kind == EngineKind::LargeImage {
        pooling.linear_memory_keep_resident(LARGE_IMAGE_KEEP_RESIDENT);
    }
    pooling
}

/// How long the ticker goes on ticking with no store before it sleeps: under any steady load,
/// it never does, so no request pays for waking it.
const TICKER_LINGER: Duration = Duration::from_millis(100);

/// Advances the engines' epochs every [`EPOCH_TICK`] while any store exists, and sleeps once
/// none has for [`TICKER_LINGER`]: an idle host would otherwise wake a thousand times a second
/// for nothing.
pub struct EpochTicker {
    shared: Arc<TickerShared>,
    thread: std::thread::Thread,
}

#[derive(Default)]
struct TickerShared {
    stop: AtomicBool,
    /// Stores alive, each holding an [`Awake`].
    stores: AtomicUsize,
    /// Set by the ticker before it sleeps, so that the first store after that wakes it.
    parked: AtomicBool,
    ticks: AtomicU64,
}

/// Keeps the ticker running while held: every store holds one, so a guest always has its
/// epoch advancing (to yield, to be moved, to be cut off at its timeout).
pub struct Awake(Arc<TickerShared>);

impl Drop for Awake {
    fn drop(&mut self) {
        self.0.stores.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    /// Starts the ticker thread, one for all `engines`.
    pub fn start(engines: &[&Engine]) -> std::io::Result<Self> {
        let shared = Arc::new(TickerShared::default());
        let weak: Vec<_> = engines.iter().map(|e| e.weak()).collect();
        let ticker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("weft-epoch".into())
            .spawn(move || {
                let linger = TICKER_LINGER.as_millis() / EPOCH_TICK.as_millis();
                let mut idle = 0;
                while !ticker.stop.load(Ordering::Relaxed) {
                    idle = match ticker.stores.load(Ordering::SeqCst) {
                        0 => idle + 1,
                        _ => 0,
                    };
                    if idle > linger {
                        idle = 0;
                        // Announced before the second look, and a new store looks at it after
                        // counting itself: one of the two sees the other, so no store is left
                        // without ticks.
                        ticker.parked.store(true, Ordering::SeqCst);
                        if ticker.stores.load(Ordering::SeqCst) == 0
                            && !ticker.stop.load(Ordering::SeqCst)
                        {
                            std::thread::park();
                        }
                        ticker.parked.store(false, Ordering::SeqCst);
                        continue;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &weak {
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => return,
                        }
                    }
                    ticker.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })?
            .thread()
            .clone();
        Ok(EpochTicker { shared, thread })
    }

    /// Keeps the epochs advancing until the guard is dropped; wakes the ticker if it sleeps.
    pub fn awake(&self) -> Awake {
        if self.shared.stores.fetch_add(1, Ordering::SeqCst) == 0
            && self.shared.parked.load(Ordering::SeqCst)
        {
            self.thread.unpark();
        }
        Awake(self.shared.clone())
    }

    /// Ticks so far.
    #[cfg(test)]
    fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Whether no core module in `bytes` (a component, nested ones included) has a `start`
/// function, and the component none either. Unparseable bytes say no.
pub(crate) fn no_start_function(bytes: &[u8]) -> bool {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(wasmparser::Payload::StartSection { .. })
            | Ok(wasmparser::Payload::ComponentStartSection { .. })
            | Err(_) => return false,
            Ok(_) => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticker_runs_while_a_store_exists_and_sleeps_while_none_does() {
        let engine = Engine::default();
        let ticker = EpochTicker::start(&[&engine]).unwrap();
        let settled = TICKER_LINGER * 3;
        std::thread::sleep(settled);
        let idle = ticker.ticks();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ticker.ticks(), idle, "ticked with no store");
        let store = ticker.awake();
        std::thread::sleep(Duration::from_millis(100));
        let running = ticker.ticks();
        assert!(
            running >= idle + 3,
            "{running} ticks in 100 ms with a store"
        );
        drop(store);
        std::thread::sleep(settled);
        let stopped = ticker.ticks();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ticker.ticks(), stopped, "ticked after the last store went");
        // Woken again by the next store, however many came and went meanwhile.
        let stores: Vec<_> = (0..3).map(|_| ticker.awake()).collect();
        std::thread::sleep(Duration::from_millis(100));
        assert!(ticker.ticks() >= stopped + 3);
        drop(stores);
    }
}
