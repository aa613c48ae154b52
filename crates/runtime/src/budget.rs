//! The host's memory budget: the linear memory all live guest instances together may hold.
//!
//! Each instance's limit bounds one guest; the budget bounds them all, so a hundred instances
//! each within its limit cannot take the machine into swap. Every store charges its memories'
//! sizes as they are created and grown and gives them back when it is dropped; an instance
//! that would take the total past the budget is refused (the request is told to retry), and the
//! instances already running keep theirs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the budget is when the operator does not say: this share of the machine's memory.
const DEFAULT_SHARE: (u64, u64) = (3, 4);
/// Assumed when the machine's memory cannot be read.
const UNKNOWN_MACHINE_MEMORY: u64 = 4 << 30;

/// Linear memory bytes that all guest instances of a host may hold at once.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none of it used.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// The budget in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held by live instances now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget if that leaves the total within it.
    fn try_charge(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// The default budget: three quarters of the machine's memory, or of the cgroup's limit when
/// the host runs in a container with a lower one.
pub fn default_memory_budget() -> u64 {
    let machine = machine_memory().unwrap_or(UNKNOWN_MACHINE_MEMORY);
    let available = cgroup_memory_limit().map_or(machine, |limit| limit.min(machine));
    available / DEFAULT_SHARE.1 * DEFAULT_SHARE.0
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn machine_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The cgroup v2 memory limit of this process, when one is set.
fn cgroup_memory_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let max = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).ok()?;
    max.trim().parse().ok()
}

/// Why a guest could not have the memory it asked for: the host's budget is spent.
#[derive(Debug, thiserror::Error)]
#[error(
    "the host's memory budget of {} MiB for all guests is spent; the request can be retried \
     once other instances finish (`weft up --memory-budget` sets the budget)",
    budget >> 20
)]
pub struct BudgetSpent {
    pub budget: u64,
}

/// One store's share of the budget: what its memories hold now, given back on drop.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<MemoryBudget>,
    /// A growth wasmtime fails after it was charged (rare: the limit is checked before the
    /// charge) stays charged until the store is dropped: counting too much is safe, too little not.
    held: u64,
}

impl Charge {
    pub(crate) fn new(budget: Arc<MemoryBudget>) -> Self {
        Charge { budget, held: 0 }
    }

    /// Charges a memory's growth from `current` to `desired` bytes.
    pub(crate) fn grow(&mut self, current: usize, desired: usize) -> Result<(), BudgetSpent> {
        let bytes = desired.saturating_sub(current) as u64;
        if !self.budget.try_charge(bytes) {
            return Err(BudgetSpent {
                budget: self.budget.limit,
            });
        }
        self.held += bytes;
        Ok(())
    }

    /// Gives back everything charged so far, for memories reset to hold nothing of their own.
    pub(crate) fn release_all(&mut self) {
        self.budget.release(std::mem::take(&mut self.held));
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_refused_past_the_budget_and_given_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut a = Charge::new(budget.clone());
        let mut b = Charge::new(budget.clone());
        a.grow(0, 60).unwrap();
        assert_eq!(budget.used(), 60);
        let spent = b.grow(0, 50).unwrap_err();
        assert_eq!(spent.budget, 100);
        assert_eq!(budget.used(), 60, "a refused charge takes nothing");
        b.grow(0, 40).unwrap();
        b.grow(40, 45).unwrap_err();
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_default_is_a_share_of_the_machine() {
        let machine = machine_memory().unwrap();
        let budget = default_memory_budget();
        assert!(budget > 0 && budget < machine, "{budget} of {machine}");
    }
}
