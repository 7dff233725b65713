//! Scheduling policies: which task runs next on a worker and for how long. A policy sees the
//! candidates' metadata ([`SchedView`]) and returns a [`Decision`]; it never sees tasks
//! themselves, and the mechanism that enforces its quantum never depends on it. The built-in
//! policies here are the Rust versions of the eBPF programs in `policies/` ([`crate::program`]).

/// What a policy knows of one runnable task. Times are nanoseconds of the scheduler's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMeta {
    /// When it was submitted.
    pub arrival: u64,
    /// When it should be done (`u64::MAX`: no deadline).
    pub deadline: u64,
    /// How long it has run so far.
    pub service: u64,
    /// When it last became runnable (submitted or preempted).
    pub enqueued: u64,
}

/// Most candidates a policy is shown at once (the worker's preempted tasks first, then the
/// oldest submitted ones).
pub const MAX_CANDIDATES: usize = 32;

/// One scheduling decision's input.
#[derive(Debug, Clone, Copy)]
pub struct SchedView<'a> {
    /// The scheduler's clock.
    pub now: u64,
    /// Runnable tasks of the worker and the shared queue (at least `tasks.len()`).
    pub queue_len: u32,
    /// The configured quantum (ns) of preemptive policies.
    pub base_quantum: u64,
    /// The smallest quantum (ns) an adaptive policy may choose.
    pub min_quantum: u64,
    /// The candidates, never empty.
    pub tasks: &'a [TaskMeta],
}

/// A policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index into [`SchedView::tasks`] (out of range: the first).
    pub index: usize,
    /// How long it may run before it is preempted (ns); 0: until it ends or yields.
    pub quantum: u64,
}

/// A scheduling policy.
pub trait Policy: Send + Sync {
    /// Which candidate runs next, and for how long.
    fn pick(&self, view: &SchedView<'_>) -> Decision;
    /// A short name for tables.
    fn name(&self) -> String;
}

/// The index of the smallest `key` among the tasks (the first of equals).
fn min_by(tasks: &[TaskMeta], key: impl Fn(&TaskMeta) -> u64) -> usize {
    tasks
        .iter()
        .enumerate()
        .min_by_key(|(i, t)| (key(t), *i))
        .map_or(0, |(i, _)| i)
}

/// First come, first served, without preemption.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fcfs;

impl Policy for Fcfs {
    fn pick(&self, view: &SchedView<'_>) -> Decision {
        Decision {
            index: min_by(view.tasks, |t| t.arrival),
            quantum: 0,
        }
    }
    fn name(&self) -> String {
        "fcfs".into()
    }
}

/// Round robin: the task runnable longest, for the base quantum.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobin;

impl Policy for RoundRobin {
    fn pick(&self, view: &SchedView<'_>) -> Decision {
        Decision {
            index: min_by(view.tasks, |t| t.enqueued),
            quantum: view.base_quantum,
        }
    }
    fn name(&self) -> String {
        "rr".into()
    }
}

/// Earliest deadline first, re-decided every base quantum.
#[derive(Debug, Clone, Copy, Default)]
pub struct Edf;

impl Policy for Edf {
    fn pick(&self, view: &SchedView<'_>) -> Decision {
        Decision {
            index: min_by(view.tasks, |t| t.deadline),
            quantum: view.base_quantum,
        }
    }
    fn name(&self) -> String {
        "edf".into()
    }
}

/// Round robin whose quantum shrinks under load (after LibPreemptible's controller): the base
/// quantum halved for every doubling of the runnable queue, never below the minimum.
#[derive(Debug, Clone, Copy, Default)]
pub struct Adaptive;

/// The adaptive quantum for `queue_len` runnable tasks.
pub fn adaptive_quantum(base: u64, min: u64, queue_len: u32) -> u64 {
    let halvings = 31 - queue_len.max(1).leading_zeros();
    (base >> halvings).max(min)
}

impl Policy for Adaptive {
    fn pick(&self, view: &SchedView<'_>) -> Decision {
        Decision {
            index: min_by(view.tasks, |t| t.enqueued),
            quantum: adaptive_quantum(view.base_quantum, view.min_quantum, view.queue_len),
        }
    }
    fn name(&self) -> String {
        "adaptive".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(arrival: u64, deadline: u64, enqueued: u64) -> TaskMeta {
        TaskMeta {
            arrival,
            deadline,
            service: 0,
            enqueued,
        }
    }

    #[test]
    fn built_in_policies_pick_as_documented() {
        let tasks = [meta(5, 100, 9), meta(3, 50, 12), meta(7, 10, 11)];
        let view = SchedView {
            now: 20,
            queue_len: 3,
            base_quantum: 40,
            min_quantum: 5,
            tasks: &tasks,
        };
        assert_eq!(
            Fcfs.pick(&view),
            Decision {
                index: 1,
                quantum: 0
            }
        );
        assert_eq!(
            RoundRobin.pick(&view),
            Decision {
                index: 0,
                quantum: 40
            }
        );
        assert_eq!(
            Edf.pick(&view),
            Decision {
                index: 2,
                quantum: 40
            }
        );
        assert_eq!(
            Adaptive.pick(&view),
            Decision {
                index: 0,
                quantum: 20
            }
        );
    }

    #[test]
    fn the_adaptive_quantum_halves_per_doubling_of_the_queue() {
        let q: Vec<u64> = [0, 1, 2, 3, 4, 8, 1000]
            .iter()
            .map(|&n| adaptive_quantum(50_000, 5_000, n))
            .collect();
        assert_eq!(q, [50_000, 50_000, 25_000, 25_000, 12_500, 6_250, 5_000]);
    }
}
