//! moat-sched: a user-level scheduler with microsecond preemption and the policy apart from the
//! mechanism (after LibPreemptible, Shinjuku and Concord), without kernel changes.
//!
//! A [`Scheduler`] runs tasks — closures, each on its own stack as a `corosensei` coroutine — on
//! worker threads. At every decision a worker asks the [`Policy`] which runnable task runs next
//! and for how long (its quantum); a policy is a Rust type ([`policy`]: FCFS, round robin, EDF,
//! an adaptive quantum) or an eBPF program run by moat ([`ProgramPolicy`], the bundled
//! `policies/*.asm` over the `sched` context of [`program`]). A timer (a thread of the scheduler,
//! or the embedder's via [`Scheduler::tick`]) finds tasks that overran their quantum, and the
//! [`Mechanism`] preempts them: a timer signal whose handler redirects the task into a switch to
//! its worker ([`Mechanism::Signal`]), a flag tasks poll at their preemption points
//! ([`Mechanism::Cooperative`], [`checkpoint`]), or user interrupts, which are detected and
//! reported unavailable where the CPU or kernel lacks them ([`Mechanism::Uintr`]). The mechanism
//! never changes with the policy.
//!
//! Tasks preempted by signal must not be stopped holding a lock or thread-owned state another
//! task of the same worker (or the worker itself) needs: such code goes in [`no_preempt`]. The C
//! library is never preempted (its locks), and [`Scheduler::spawn`] protects its own lock.
//!
//! All `unsafe` is in `sys`.

#![deny(missing_docs)]
#![deny(unsafe_code)]
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

pub mod clock;
pub mod mechanism;
pub mod policy;
pub mod program;
mod sched;
#[expect(
    unsafe_code,
    reason = "the TSC, tgkill, the preemption signal's handler and trampoline, switching out of a task"
)]
mod sys;

pub use clock::Clock;
pub use mechanism::Mechanism;
pub use policy::{Adaptive, Decision, Edf, Fcfs, Policy, RoundRobin, SchedView, TaskMeta};
pub use program::{ProgramPolicy, SCHED_CTX_SIZE};
pub use sched::{Config, SchedError, Scheduler, Stats, TimerMode};

/// A cooperative preemption point: if the timer asked the calling task's worker to preempt it
/// ([`Mechanism::Cooperative`]), the task yields to its worker here. One load and a branch
/// otherwise; nothing outside a task.
pub fn checkpoint() {
    if sys::in_task() && sys::take_flag() {
        sys::yield_task();
    }
}

/// Yields the calling task to its worker now (it goes back to the worker's queue).
pub fn yield_now() {
    sys::yield_task();
}

/// Runs `f` with the calling task not preemptible by signal (a critical section: it holds a lock
/// or thread-owned state another task of its worker may need). Nests.
pub fn no_preempt<R>(f: impl FnOnce() -> R) -> R {
    let depth = sys::no_preempt_enter();
    let result = f();
    sys::no_preempt_leave(depth);
    result
}
