//! A fresh WASI 0.2 instance, once it has answered, is reset in place for the next request
//! instead of dropped: the next request gets the same store and instance put back exactly as
//! instantiation left them, and skips making a new store and instantiating.
//!
//! The reset is the vendored wasmtime's (`vendor/README.md`, patch 5): each memory back to its
//! image and initial size by the same page scan a pooled slot gets when it is freed, tables,
//! globals and the rest of each core instance's vmctx copied back from right after
//! instantiation, every handle table emptied. The store's own state is made a new instance's
//! again (`InstanceState::renew`: resource table, random generators, log budget, memory
//! charge; its clocks start when it takes a request). A component is
//! reset in place only when all of that is the whole of its state: WASI 0.2, no component links
//! in its store, no `start` function in any core module (its writes to memory would be lost),
//! and what wasmtime checks itself (no passive element segments, data only from memory images,
//! pooled memories and funcref tables). Anything else gets a new store as before.
//!
//! The reset runs where the drop ran (`retire.rs`: after the answer is written), and an
//! instance that trapped, timed out or failed in any way is dropped, never reset. Reset
//! instances waiting for a request are bounded: 64 per workload, 256 on the host, 10 s each,
//! and never more than half the host's memory budget counting everything else charged to it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wasmtime::component::{Instance, ResetPoint};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use crate::state::InstanceState;
use crate::workload::Workload;

/// Instances kept reset across all workloads. Each holds a memory, a table and a stack slot of
/// its engine's pool, which new instances of every other app must still find free.
const HELD_IN_ALL: usize = 256;
/// Instances one workload keeps reset: as many as it had answering at once, up to this.
const HELD_PER_WORKLOAD: usize = 64;
/// A reset instance that has waited this long for a request is dropped.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

static HELD: AtomicUsize = AtomicUsize::new(0);

/// One place counted against [`HELD_IN_ALL`], given back when dropped.
struct Held;

impl Held {
    fn take() -> Option<Held> {
        HELD.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            (held < HELD_IN_ALL).then_some(held + 1)
        })
        .ok()
        .map(|_| Held)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An instance and its state right after instantiation: what resetting it takes.
pub(crate) struct Resettable {
    pub(crate) instance: Instance,
    pub(crate) point: ResetPoint,
}

/// A fresh instance reset and ready for a request.
pub(crate) struct Renewed {
    pub(crate) store: Store<InstanceState>,
    pub(crate) proxy: Proxy,
    pub(crate) reset: Resettable,
    idle_since: Instant,
    _held: Held,
}

/// One workload's reset instances, most recently reset last.
#[derive(Default)]
pub(crate) struct Pool(Mutex<Vec<Renewed>>);

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Vec<Renewed>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reset instance for the next request, if one waits.
    pub(crate) fn take(&self) -> Option<Renewed> {
        let mut renewed = self.lock().pop()?;
        renewed.store.data_mut().restart_clocks();
        Some(renewed)
    }

    /// Drops instances idle past [`IDLE`]; returns how many remain.
    pub(crate) fn prune(&self) -> usize {
        let mut pool = self.lock();
        let now = Instant::now();
        pool.retain(|r| now.duration_since(r.idle_since) < IDLE);
        pool.len()
    }

    /// Whether the workload keeps as many as it may.
    fn full(&self) -> bool {
        self.lock().len() >= HELD_PER_WORKLOAD
    }
}

/// Resets `finished` in place and keeps it in `workload`'s pool; drops it when the pools are
/// full, the reset fails, or its memory cannot be charged to the host's budget again.
fn renew(workload: &Workload, finished: Finishing) {
    let Finishing {
        mut store,
        proxy,
        reset,
    } = finished;
    let pool = workload.renewed();
    if pool.full() {
        return;
    }
    let Some(held) = Held::take() else { return };
    let bytes = match reset.instance.reset(&mut store, &reset.point) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::debug!(
                workload = workload.name(),
                "instance not reset in place, dropped: {e:#}"
            );
            return;
        }
    };
    // Its charge is given back first, so the host's budget never counts the memory twice.
    let state = store.data_mut();
    state.renew();
    // Idle instances never take more than half the host's memory budget: the rest is for
    // requests, of this app and every other.
    let budget = workload.memory_budget();
    if budget.used() + bytes as u64 > budget.limit() / 2
        || state.limiter.charge_existing(bytes).is_err()
    {
        return;
    }
    pool.lock().push(Renewed {
        store,
        proxy,
        reset,
        idle_since: Instant::now(),
        _held: held,
    });
}

/// A fresh instance that answered cleanly, with what it takes to reset it.
pub(crate) struct Finishing {
    pub(crate) store: Store<InstanceState>,
    pub(crate) proxy: Proxy,
    pub(crate) reset: Resettable,
}

/// Resets its instance into its workload's pool when dropped, which `retire.rs` does once the
/// answer is out.
pub(crate) struct Retiring {
    pub(crate) workload: Arc<Workload>,
    pub(crate) finishing: Option<Finishing>,
}

impl Drop for Retiring {
    fn drop(&mut self) {
        if let Some(finishing) = self.finishing.take() {
            renew(&self.workload, finishing);
        }
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::component::{Component, Linker};
    use wasmtime::Store;

    use crate::engine::build_engine;
    use crate::EngineKind;

    /// A component whose one export reports, packed in a u32, every kind of state a reset in
    /// place must put back (a mutable global, a byte of memory, the memory's and a table's
    /// sizes, a table slot, a passive data segment), then changes all of them.
    const TOUCH: &str = r#"
(component
  (core module $m
    (memory 1)
    (global $g (mut i32) (i32.const 0))
    (table $t 2 funcref)
    (elem (table $t) (i32.const 0) func $one)
    (elem declare func $two)
    (data $passive "\2a")
    (func $one (result i32) i32.const 1)
    (func $two (result i32) i32.const 2)
    (func (export "touch") (result i32)
      (local $seen i32)
      ;; on a fresh instance's call (the global still 0), the passive segment: it traps once
      ;; dropped, so a reset must bring it back
      (if (i32.eqz (global.get $g))
        (then (memory.init $passive (i32.const 200) (i32.const 0) (i32.const 1))))
      (local.set $seen
        (i32.or
          (i32.or (global.get $g) (i32.shl (i32.load8_u (i32.const 100)) (i32.const 8)))
          (i32.or
            (i32.or (i32.shl (memory.size) (i32.const 16)) (i32.shl (table.size $t) (i32.const 20)))
            (i32.shl (ref.is_null (table.get $t (i32.const 1))) (i32.const 24)))))
      (global.set $g (i32.add (global.get $g) (i32.const 1)))
      (i32.store8 (i32.const 100) (i32.add (i32.load8_u (i32.const 100)) (i32.const 1)))
      (drop (memory.grow (i32.const 1)))
      (table.set $t (i32.const 1) (ref.func $two))
      (drop (table.grow $t (ref.null func) (i32.const 1)))
      (data.drop $passive)
      (local.get $seen))
  )
  (core instance $i (instantiate $m))
  (func (export "touch") (result u32) (canon lift (core func $i "touch")))
)
"#;

    #[tokio::test]
    async fn a_reset_puts_back_globals_memory_tables_and_dropped_data() {
        let (engine, _) = build_engine(true, EngineKind::Plain).unwrap();
        let component = Component::new(&engine, TOUCH).unwrap();
        let linker = Linker::<()>::new(&engine);
        let mut store = Store::new(&engine, ());
        // weft's engines interrupt at epoch deadlines; this test has no ticker.
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = linker
            .instantiate_async(&mut store, &component)
            .await
            .unwrap();
        let point = instance
            .reset_point(&store)
            .expect("resettable: no start function, pooled, one instance");
        let touch = instance
            .get_typed_func::<(), (u32,)>(&mut store, "touch")
            .unwrap();
        let call = async |store: &mut Store<()>| {
            let (seen,) = touch.call_async(&mut *store, ()).await.unwrap();
            seen
        };
        // Fresh: global 0, byte 0, 1 page, 2 table slots, slot 1 null.
        let fresh = (1 << 16) | (2 << 20) | (1 << 24);
        assert_eq!(call(&mut store).await, fresh);
        // What the first call changed shows in the second; after a reset, the first call's
        // state again, and the data segment the first call dropped is there to initialize.
        assert_eq!(call(&mut store).await, 1 | (1 << 8) | (2 << 16) | (3 << 20));
        for _ in 0..3 {
            instance.reset(&mut store, &point).unwrap();
            assert_eq!(call(&mut store).await, fresh);
        }
    }

    #[tokio::test]
    async fn a_module_start_function_is_not_the_resets_to_overlook_but_the_callers() {
        // A component with a `start` function: weft checks the bytes, since wasmtime does not
        // keep that fact.
        let with_start = wat::parse_str(
            r#"(component (core module $m (memory 1) (func $s) (start $s)) (core instance (instantiate $m)))"#,
        )
        .unwrap();
        assert!(!crate::engine::no_start_function(&with_start));
        let without = wat::parse_str(TOUCH).unwrap();
        assert!(crate::engine::no_start_function(&without));
    }
}
