//! The scheduler: tasks (stackful coroutines, `corosensei`) on worker threads, a shared queue of
//! submitted tasks, each worker's queue of the tasks it preempted (a started task never moves to
//! another thread), the policy asked at every decision, and the timer that finds quanta overrun
//! and has the [`Mechanism`] preempt them.

use crate::clock::Clock;
use crate::mechanism::Mechanism;
use crate::policy::{Decision, Policy, SchedView, TaskMeta, MAX_CANDIDATES};
use crate::sys;
use corosensei::stack::{DefaultStack, Stack};
use corosensei::{Coroutine, CoroutineResult};
use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use thiserror::Error;

/// Who runs the timer that finds overrun quanta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    /// A thread of the scheduler spins on the clock (sleeping while every worker is idle).
    Thread,
    /// The embedder calls [`Scheduler::tick`] often (from a thread that spins anyway, such as a
    /// dispatcher or load generator).
    External,
}

/// How a scheduler is set up.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Worker threads.
    pub workers: usize,
    /// How overrunning tasks are preempted.
    pub mechanism: Mechanism,
    /// The quantum of preemptive policies.
    pub base_quantum: Duration,
    /// The smallest quantum adaptive policies may choose.
    pub min_quantum: Duration,
    /// Who runs the timer.
    pub timer: TimerMode,
    /// Bytes of each task's stack.
    pub stack_size: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            workers: 1,
            mechanism: Mechanism::Signal,
            base_quantum: Duration::from_micros(10),
            min_quantum: Duration::from_micros(5),
            timer: TimerMode::Thread,
            stack_size: 256 * 1024,
        }
    }
}

/// Why a scheduler could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SchedError {
    /// The preemption mechanism does not work on this machine.
    #[error("preemption by {mechanism} is unavailable: {reason}")]
    Unavailable {
        /// The mechanism.
        mechanism: Mechanism,
        /// Why.
        reason: String,
    },
    /// A thread could not be started.
    #[error("cannot start a scheduler thread")]
    Thread(#[source] std::io::Error),
}

/// Counters of a scheduler's work so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tasks submitted.
    pub spawned: u64,
    /// Tasks that ended.
    pub completed: u64,
    /// Times a task was switched out before its end (preempted or yielded).
    pub preemptions: u64,
    /// Preemption requests the timer issued (signals sent, flags set).
    pub requests: u64,
    /// Signals whose preemption the handler had to defer (process-wide).
    pub deferred: u64,
    /// Scheduling decisions taken.
    pub decisions: u64,
    /// Preemptions of a task past its quantum (switched out after its quantum ended).
    pub overruns: u64,
    /// Their total lateness: from the end of the quantum to the worker having the task switched
    /// out (ns): the timer's detection, the signal's delivery or the next checkpoint, and the
    /// switch.
    pub overrun_ns: u64,
}

/// A submitted task not yet started.
struct Pending {
    task: Box<dyn FnOnce() + Send>,
    meta: TaskMeta,
}

/// What the timer and a worker share.
#[derive(Debug, Default)]
struct WorkerSlot {
    tid: AtomicI32,
    /// Interrupts the worker's JIT runs (moat's eBPF programs in tasks), whose polling points then
    /// yield the task ([`moat_jit::set_poll_hook`]).
    interrupter: std::sync::OnceLock<moat_jit::Interrupter>,
    /// When the running task's quantum ends (clock ns; 0: no quantum).
    deadline: AtomicU64,
    /// A task is running.
    running: AtomicBool,
    /// The worker is parked (idle for a while); `spawn` unparks it.
    parked: AtomicBool,
    /// The worker's thread, to unpark it.
    thread: std::sync::OnceLock<std::thread::Thread>,
    /// Cooperative preemption requested.
    flag: AtomicBool,
    preemptions: AtomicU64,
    completed: AtomicU64,
    decisions: AtomicU64,
    overruns: AtomicU64,
    overrun_ns: AtomicU64,
}

struct Shared {
    clock: Clock,
    config: Config,
    policy: Box<dyn Policy>,
    queue: Mutex<VecDeque<Pending>>,
    queued: AtomicUsize,
    spawned: AtomicU64,
    requests: AtomicU64,
    workers: Vec<WorkerSlot>,
    stop: AtomicBool,
}

/// A user-level scheduler: tasks on worker threads, preempted by the configured mechanism when
/// they overrun the quantum the policy gave them. Dropping it lets the workers finish every
/// submitted task, then stops them.
pub struct Scheduler {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.shared.config)
            .field("policy", &self.shared.policy.name())
            .field("stats", &self.stats())
            .finish()
    }
}

/// A signal preempting inside the C library or a critical section is deferred; the timer sends
/// the next one this much later.
const RETRY_NS: u64 = 10_000;

/// How long an idle worker spins before it parks.
const IDLE_SPIN_NS: u64 = 50_000;

impl Scheduler {
    /// Starts `config.workers` workers deciding with `policy`.
    pub fn new(config: Config, policy: Box<dyn Policy>) -> Result<Scheduler, SchedError> {
        config
            .mechanism
            .availability()
            .map_err(|reason| SchedError::Unavailable {
                mechanism: config.mechanism,
                reason,
            })?;
        let shared = Arc::new(Shared {
            clock: Clock::new(),
            config,
            policy,
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            spawned: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            workers: (0..config.workers.max(1))
                .map(|_| WorkerSlot::default())
                .collect(),
            stop: AtomicBool::new(false),
        });
        let mut scheduler = Scheduler {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        for index in 0..shared.workers.len() {
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("moat-sched-{index}"))
                .spawn(move || work(&shared, index))
                .map_err(SchedError::Thread)?;
            scheduler.threads.push(thread);
        }
        if config.timer == TimerMode::Thread && config.mechanism != Mechanism::None {
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name("moat-sched-timer".into())
                .spawn(move || {
                    // Spins while workers run tasks; sleeps once they have been idle for 1 ms.
                    let mut idle_since = None;
                    while !shared.stop.load(Ordering::Relaxed) {
                        if shared.tick() {
                            idle_since = None;
                        } else {
                            let now = shared.clock.now();
                            let since = *idle_since.get_or_insert(now);
                            if now - since > 1_000_000 {
                                std::thread::sleep(Duration::from_micros(200));
                            }
                        }
                        std::hint::spin_loop();
                    }
                })
                .map_err(SchedError::Thread)?;
            scheduler.threads.push(thread);
        }
        // Workers publish their thread ids before the timer may signal them.
        while shared
            .workers
            .iter()
            .any(|w| w.tid.load(Ordering::SeqCst) == 0)
        {
            std::thread::yield_now();
        }
        Ok(scheduler)
    }

    /// Submits `task`, due `deadline` from now (none: no deadline). Callable from tasks too.
    pub fn spawn(&self, task: impl FnOnce() + Send + 'static, deadline: Option<Duration>) {
        let now = self.shared.clock.now();
        let deadline = deadline.map_or(u64::MAX, |d| {
            now.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        });
        let pending = Pending {
            task: Box::new(task),
            meta: TaskMeta {
                arrival: now,
                deadline,
                service: 0,
                enqueued: now,
            },
        };
        // The queue's lock must never be held by a preempted task: its worker takes it next.
        crate::no_preempt(|| {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.push_back(pending);
            self.shared.queued.fetch_add(1, Ordering::SeqCst);
        });
        if let Some(w) = self
            .shared
            .workers
            .iter()
            .find(|w| w.parked.load(Ordering::SeqCst))
        {
            if let Some(t) = w.thread.get() {
                t.unpark();
            }
        }
        self.shared.spawned.fetch_add(1, Ordering::Relaxed);
    }

    /// One round of the timer (for [`TimerMode::External`]): preempts every worker whose task
    /// overran its quantum. Returns whether any worker is running a task.
    pub fn tick(&self) -> bool {
        self.shared.tick()
    }

    /// The scheduler's clock.
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// The policy's name.
    pub fn policy_name(&self) -> String {
        self.shared.policy.name()
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let sum = |f: fn(&WorkerSlot) -> &AtomicU64| {
            s.workers.iter().map(|w| f(w).load(Ordering::Relaxed)).sum()
        };
        Stats {
            spawned: s.spawned.load(Ordering::Relaxed),
            completed: sum(|w| &w.completed),
            preemptions: sum(|w| &w.preemptions),
            requests: s.requests.load(Ordering::Relaxed),
            deferred: sys::DEFERRED.load(Ordering::Relaxed),
            decisions: sum(|w| &w.decisions),
            overruns: sum(|w| &w.overruns),
            overrun_ns: sum(|w| &w.overrun_ns),
        }
    }

    /// Waits until every submitted task has ended (ticking the timer meanwhile if it is
    /// external).
    pub fn wait_idle(&self) {
        loop {
            let s = self.stats();
            if s.completed >= s.spawned {
                return;
            }
            if self.shared.config.timer == TimerMode::External {
                self.tick();
            } else {
                // Leave the cores to the workers and the timer.
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if self.shared.config.timer == TimerMode::External {
            self.wait_idle();
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            // A worker that panicked has nothing left to stop.
            let _ = t.join();
        }
    }
}

impl Shared {
    fn tick(&self) -> bool {
        let now = self.clock.now();
        let mut running = false;
        for slot in &self.workers {
            running |= slot.running.load(Ordering::Relaxed);
            let deadline = slot.deadline.load(Ordering::Acquire);
            if deadline == 0 || now < deadline {
                continue;
            }
            match self.config.mechanism {
                Mechanism::Cooperative => {
                    if slot
                        .deadline
                        .compare_exchange(deadline, 0, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        slot.flag.store(true, Ordering::Relaxed);
                        if let Some(i) = slot.interrupter.get() {
                            i.interrupt();
                        }
                        self.requests.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Mechanism::Signal => {
                    // The handler clears the deadline when it preempts; if it had to defer, the
                    // next signal goes out RETRY_NS later.
                    if slot
                        .deadline
                        .compare_exchange(
                            deadline,
                            now + RETRY_NS,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        sys::send_timer_signal(slot.tid.load(Ordering::Relaxed));
                        // JIT code is not the executable's: the signal defers there, and the
                        // run's next polling point yields instead.
                        if let Some(i) = slot.interrupter.get() {
                            i.interrupt();
                        }
                        self.requests.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Mechanism::None | Mechanism::Uintr => {}
            }
        }
        running
    }
}

/// A task that has started: its coroutine and what the policy sees of it.
struct Started {
    coroutine: Coroutine<(), (), (), DefaultStack>,
    meta: TaskMeta,
    /// Its yielder's address, set when it first runs.
    yielder: Rc<Cell<usize>>,
    stack_limit: u64,
}

impl Started {
    fn new(pending: Pending, stack: DefaultStack) -> Started {
        let yielder = Rc::new(Cell::new(0));
        let set = yielder.clone();
        let stack_limit = stack.limit().get() as u64;
        let task = pending.task;
        let coroutine = Coroutine::with_stack(stack, move |y, ()| {
            // A panicking task ends; the worker goes on.
            sys::run_task(
                y,
                |addr| set.set(addr),
                || {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                },
            );
        });
        Started {
            coroutine,
            meta: pending.meta,
            yielder,
            stack_limit,
        }
    }
}

/// What a polling point of JIT code that the timer interrupted does on a worker: inside a task,
/// yield it (the run goes on when the task is resumed); elsewhere (a policy program), go on.
fn poll_hook() -> bool {
    sys::yield_task();
    true
}

/// A worker thread.
fn work(shared: &Arc<Shared>, index: usize) {
    let slot = &shared.workers[index];
    sys::become_worker();
    sys::set_flag(&slot.flag, &slot.deadline);
    let interrupter = slot
        .interrupter
        .get_or_init(moat_jit::Interrupter::for_current_thread);
    moat_jit::set_poll_hook(Some(poll_hook));
    let _ = slot.thread.set(std::thread::current());
    slot.tid.store(sys::gettid(), Ordering::SeqCst);
    let mut idle_since: Option<u64> = None;
    let config = shared.config;
    let preemptive = !matches!(config.mechanism, Mechanism::None | Mechanism::Uintr);
    let base_quantum = u64::try_from(config.base_quantum.as_nanos()).unwrap_or(u64::MAX);
    let min_quantum = u64::try_from(config.min_quantum.as_nanos()).unwrap_or(u64::MAX);
    let mut local: VecDeque<Started> = VecDeque::new();
    let mut stacks: Vec<DefaultStack> = Vec::new();
    let mut metas: Vec<TaskMeta> = Vec::with_capacity(MAX_CANDIDATES);
    loop {
        let global = shared.queued.load(Ordering::Acquire);
        if local.is_empty() && global == 0 {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            // Spin for a while (a new task starts within nanoseconds), then park until a spawn
            // unparks the worker: an idle worker leaves its core to others.
            let now = shared.clock.now();
            if now - *idle_since.get_or_insert(now) > IDLE_SPIN_NS {
                slot.parked.store(true, Ordering::SeqCst);
                if shared.queued.load(Ordering::SeqCst) == 0 {
                    std::thread::park_timeout(Duration::from_millis(1));
                }
                slot.parked.store(false, Ordering::SeqCst);
            }
            std::hint::spin_loop();
            continue;
        }
        idle_since = None;
        let now = shared.clock.now();
        metas.clear();
        metas.extend(local.iter().take(MAX_CANDIDATES).map(|t| t.meta));
        let local_count = metas.len();
        let mut queue = None;
        if global > 0 && local_count < MAX_CANDIDATES {
            let q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            metas.extend(q.iter().take(MAX_CANDIDATES - local_count).map(|p| p.meta));
            queue = Some(q);
        }
        if metas.is_empty() {
            continue;
        }
        let queue_len = local.len() + queue.as_ref().map_or(0, |q| q.len());
        let view = SchedView {
            now,
            queue_len: u32::try_from(queue_len).unwrap_or(u32::MAX),
            base_quantum,
            min_quantum,
            tasks: &metas,
        };
        let Decision {
            index: pick,
            quantum,
        } = shared.policy.pick(&view);
        slot.decisions.fetch_add(1, Ordering::Relaxed);
        let pick = if pick < metas.len() { pick } else { 0 };
        let task = if pick < local_count {
            local.remove(pick)
        } else {
            let pending = queue.as_mut().and_then(|q| q.remove(pick - local_count));
            pending.and_then(|p| {
                shared.queued.fetch_sub(1, Ordering::AcqRel);
                let stack = match stacks.pop() {
                    Some(s) => Ok(s),
                    None => DefaultStack::new(config.stack_size),
                };
                // Without a stack the task cannot run: it is dropped (and counted as ended).
                if stack.is_err() {
                    slot.completed.fetch_add(1, Ordering::Relaxed);
                }
                stack.ok().map(|s| Started::new(p, s))
            })
        };
        drop(queue);
        let Some(mut task) = task else { continue };
        let start = shared.clock.now();
        slot.flag.store(false, Ordering::Relaxed);
        interrupter.clear();
        if preemptive && quantum > 0 {
            slot.deadline
                .store(start.saturating_add(quantum).max(1), Ordering::Release);
        }
        slot.running.store(true, Ordering::Relaxed);
        sys::enter_task(task.yielder.get(), task.stack_limit);
        let result = task.coroutine.resume(());
        sys::leave_task();
        slot.running.store(false, Ordering::Relaxed);
        slot.deadline.store(0, Ordering::Release);
        let end = shared.clock.now();
        task.meta.service += end.saturating_sub(start);
        match result {
            CoroutineResult::Yield(()) => {
                slot.preemptions.fetch_add(1, Ordering::Relaxed);
                let quantum_end = start.saturating_add(quantum);
                if preemptive && quantum > 0 && end >= quantum_end {
                    slot.overruns.fetch_add(1, Ordering::Relaxed);
                    slot.overrun_ns
                        .fetch_add(end - quantum_end, Ordering::Relaxed);
                }
                task.meta.enqueued = end;
                local.push_back(task);
            }
            CoroutineResult::Return(()) => {
                slot.completed.fetch_add(1, Ordering::Relaxed);
                stacks.push(task.coroutine.into_stack());
            }
        }
    }
}
