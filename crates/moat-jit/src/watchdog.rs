//! Time budgets for JIT runs: a [`Watchdog`] is a timer thread that stops, through the thread's
//! [`Interrupter`], every run that outlives the budget it was armed with.
//!
//! A thread arms the watchdog before a run ([`Watchdog::arm`]: one clock read and two atomic
//! accesses, no system call while the watchdog is awake) and disarms it after
//! ([`Armed::disarm`], which says whether the watchdog fired). The watchdog thread sleeps until
//! [`Watchdog::spin`] before the earliest deadline of an armed run (with a timer slack of 1 ns) and
//! spins on the clock from there, so it interrupts an overrunning run within microseconds of its
//! deadline without keeping a core busy while runs end in time; with nothing armed it parks and the
//! next arming wakes it. The run stops at its next polling point (a loop back-edge or call) with
//! `RunErrorKind::Interrupted`.
//!
//! Each arming is a small state machine per thread (`IDLE` → deadline → `FIRING` → `FIRED` →
//! `IDLE`), so a request the watchdog raises just as the run ends is withdrawn and never stops the
//! thread's next run.

use crate::Interrupter;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// No run armed.
const IDLE: u64 = 0;
/// The watchdog is raising the interrupt of an overdue run.
const FIRING: u64 = u64::MAX;
/// The watchdog raised the interrupt of an overdue run.
const FIRED: u64 = u64::MAX - 1;
/// The latest deadline a slot can hold (nanoseconds since the watchdog's epoch).
const LATEST: u64 = u64::MAX - 2;

/// Spinning starts this long before a deadline unless set otherwise ([`Watchdog::with_spin`]): a
/// little more than the latest wake-up of a timed sleep on a virtual machine (~40 µs).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(60);

/// A thread that stops JIT runs which overrun their time budget. Dropping it stops the thread.
#[derive(Debug)]
pub struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the watchdog thread and the armed threads share.
#[derive(Debug)]
struct Shared {
    epoch: Instant,
    /// The slot of every thread that armed this watchdog.
    slots: Mutex<Vec<Weak<Slot>>>,
    /// Bumped when `slots` changes.
    version: AtomicU64,
    /// When the watchdog thread looks next (ns since `epoch`): 0 while it spins, [`u64::MAX`] while
    /// it is parked with nothing armed.
    wake_at: AtomicU64,
    stop: AtomicBool,
    spin_ns: u64,
}

/// One thread's arming: [`IDLE`], a deadline, [`FIRING`] or [`FIRED`].
#[derive(Debug)]
struct Slot {
    state: AtomicU64,
    interrupter: Interrupter,
}

/// A thread's slot for one watchdog (known by the address of its shared part, which the `Weak`
/// keeps allocated); `None` while the slot is out, armed.
type ThreadSlot = (Weak<Shared>, Option<Arc<Slot>>);

thread_local! {
    /// This thread's slots, one per watchdog it armed.
    static SLOTS: std::cell::RefCell<Vec<ThreadSlot>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(LATEST)
    }
}

impl Watchdog {
    /// Starts a watchdog thread that spins from [`DEFAULT_SPIN`] before each deadline.
    pub fn new() -> std::io::Result<Watchdog> {
        Watchdog::with_spin(DEFAULT_SPIN)
    }

    /// Starts a watchdog thread that sleeps until `spin` before the earliest deadline and spins on
    /// the clock from there: the longer, the more precisely late wake-ups are absorbed, the more
    /// CPU time it spends.
    pub fn with_spin(spin: Duration) -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            slots: Mutex::new(Vec::new()),
            version: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            spin_ns: u64::try_from(spin.as_nanos()).unwrap_or(LATEST),
        });
        let watched = shared.clone();
        let thread = std::thread::Builder::new()
            .name("moat-watchdog".into())
            .spawn(move || watch(&watched))?;
        Ok(Watchdog {
            shared,
            thread: Some(thread),
        })
    }

    /// How long before a deadline the watchdog thread starts spinning.
    pub fn spin(&self) -> Duration {
        Duration::from_nanos(self.shared.spin_ns)
    }

    /// Arms the watchdog for a run on the calling thread that may last `budget`: past it, the
    /// thread's run in progress (or its next one) is interrupted. Disarm it when the run ends
    /// (dropping the [`Armed`] does too). While the thread has this watchdog armed, arming it
    /// again (a run nested in the run, from a helper) changes nothing: the outer budget bounds
    /// both, and the inner [`Armed::disarm`] reports `false`.
    pub fn arm(&self, budget: Duration) -> Armed {
        let Some(slot) = self.take_slot() else {
            return Armed { slot: None };
        };
        let shared = &self.shared;
        let budget = u64::try_from(budget.as_nanos()).unwrap_or(LATEST);
        let deadline = shared.now().saturating_add(budget).clamp(1, LATEST);
        slot.state.store(deadline, Ordering::SeqCst);
        if deadline.saturating_sub(shared.spin_ns) < shared.wake_at.load(Ordering::SeqCst) {
            if let Some(t) = &self.thread {
                t.thread().unpark();
            }
        }
        Armed {
            slot: Some((slot, Arc::as_ptr(shared))),
        }
    }

    /// Takes the calling thread's slot out of its table (registered on first use); `None` while
    /// it is out (armed).
    fn take_slot(&self) -> Option<Arc<Slot>> {
        let me = Arc::as_ptr(&self.shared);
        SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            if let Some((_, s)) = slots.iter_mut().find(|(w, _)| std::ptr::eq(w.as_ptr(), me)) {
                return s.take();
            }
            slots.retain(|(w, _)| w.strong_count() > 0);
            let slot = Arc::new(Slot {
                state: AtomicU64::new(IDLE),
                interrupter: Interrupter::for_current_thread(),
            });
            let mut all = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
            all.retain(|w| w.strong_count() > 0);
            all.push(Arc::downgrade(&slot));
            self.shared.version.fetch_add(1, Ordering::SeqCst);
            slots.push((Arc::downgrade(&self.shared), None));
            Some(slot)
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // A watchdog thread never panics; if it did, there is nothing left to stop.
            let _ = t.join();
        }
    }
}

/// The watchdog armed for the calling thread's run; [`Armed::disarm`] it when the run ends.
#[derive(Debug)]
#[must_use = "dropping it disarms the watchdog at once"]
pub struct Armed {
    /// The thread's slot, taken out of its table, and the watchdog it belongs to (to put it back);
    /// `None` for a nested arming.
    slot: Option<(Arc<Slot>, *const Shared)>,
}

impl Armed {
    /// Disarms the watchdog: returns whether it fired (the run overran its budget; if the run still
    /// ended on its own, the interrupt it was sent is withdrawn).
    pub fn disarm(mut self) -> bool {
        self.end()
    }

    fn end(&mut self) -> bool {
        let Some((slot, owner)) = self.slot.take() else {
            return false;
        };
        let fired = Armed::settle(&slot);
        SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            if let Some((_, s)) = slots
                .iter_mut()
                .find(|(w, _)| std::ptr::eq(w.as_ptr(), owner))
            {
                *s = Some(slot);
            }
        });
        fired
    }

    /// Returns `slot` to idle; whether the watchdog fired.
    fn settle(slot: &Slot) -> bool {
        let state = &slot.state;
        loop {
            match state.load(Ordering::SeqCst) {
                IDLE => return false,
                FIRING => std::hint::spin_loop(),
                FIRED => {
                    // Delivered if the run stopped for it; otherwise withdrawn here.
                    slot.interrupter.clear();
                    state.store(IDLE, Ordering::SeqCst);
                    return true;
                }
                armed => {
                    if state
                        .compare_exchange(armed, IDLE, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        return false;
                    }
                }
            }
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.end();
    }
}

/// The watchdog thread.
fn watch(shared: &Shared) {
    // Sleeps end when asked, not up to 50 µs later (the default slack of a normal thread). Failure
    // only makes wake-ups later, which spinning absorbs.
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    let mut slots: Vec<Arc<Slot>> = Vec::new();
    let mut version = u64::MAX;
    while !shared.stop.load(Ordering::SeqCst) {
        let current = shared.version.load(Ordering::SeqCst);
        if current != version {
            version = current;
            let all = shared.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots = all.iter().filter_map(Weak::upgrade).collect();
        }
        let next = fire_overdue(shared, &slots);
        if next == u64::MAX {
            // Nothing armed: park until an arming wakes us (after announcing it, then looking again).
            shared.wake_at.store(u64::MAX, Ordering::SeqCst);
            if earliest(&slots) == u64::MAX && shared.version.load(Ordering::SeqCst) == version {
                std::thread::park();
            }
            shared.wake_at.store(0, Ordering::SeqCst);
            continue;
        }
        let wake = next.saturating_sub(shared.spin_ns);
        let now = shared.now();
        if wake > now {
            shared.wake_at.store(wake, Ordering::SeqCst);
            if earliest(&slots).saturating_sub(shared.spin_ns) >= wake
                && shared.version.load(Ordering::SeqCst) == version
            {
                std::thread::park_timeout(Duration::from_nanos(wake - now));
            }
            shared.wake_at.store(0, Ordering::SeqCst);
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Interrupts every overdue run; returns the earliest deadline still ahead ([`u64::MAX`]: none).
fn fire_overdue(shared: &Shared, slots: &[Arc<Slot>]) -> u64 {
    let now = shared.now();
    let mut next = u64::MAX;
    for slot in slots {
        let deadline = slot.state.load(Ordering::SeqCst);
        if deadline == IDLE || deadline > LATEST {
            continue;
        }
        if deadline > now {
            next = next.min(deadline);
        } else if slot
            .state
            .compare_exchange(deadline, FIRING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            slot.interrupter.interrupt();
            slot.state.store(FIRED, Ordering::SeqCst);
        }
    }
    next
}

/// The earliest armed deadline ([`u64::MAX`]: none).
fn earliest(slots: &[Arc<Slot>]) -> u64 {
    slots
        .iter()
        .map(|s| s.state.load(Ordering::SeqCst))
        .filter(|&d| d != IDLE && d <= LATEST)
        .min()
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_ends_in_time_is_not_reported() {
        let dog = Watchdog::new().expect("starts");
        let armed = dog.arm(Duration::from_secs(60));
        assert!(!armed.disarm());
    }

    #[test]
    fn an_overdue_arming_fires_and_its_request_is_withdrawn() {
        let dog = Watchdog::new().expect("starts");
        let armed = dog.arm(Duration::from_micros(1));
        let slot = armed.slot.as_ref().map(|(s, _)| s.clone()).expect("armed");
        while slot.state.load(Ordering::SeqCst) != FIRED {
            std::thread::yield_now();
        }
        assert!(armed.disarm());
        // The request raised for no run in progress was withdrawn: the thread's next run is free.
        let poller = Interrupter::for_current_thread();
        assert!(!poller.pending());
    }

    #[test]
    fn a_nested_arming_changes_nothing() {
        let dog = Watchdog::new().expect("starts");
        let outer = dog.arm(Duration::from_secs(60));
        let inner = dog.arm(Duration::from_micros(1));
        assert!(inner.slot.is_none());
        assert!(!inner.disarm());
        assert!(!outer.disarm());
        assert!(dog.arm(Duration::from_secs(60)).slot.is_some(), "put back");
    }
}
