//! Policies as eBPF programs: the `sched` context, the bundled programs (`policies/*.asm`: FCFS,
//! round robin, EDF, adaptive quantum) and [`ProgramPolicy`], which runs one for every decision.
//!
//! # The `sched` context
//!
//! A program is loaded as a buffer program verified for [`SCHED_CTX_SIZE`] bytes (`r1` = the
//! context, `r2` = its length) and returns the index of the task to run in `r0`. Little-endian:
//!
//! | offset | field | |
//! |--:|---|---|
//! | 0 | `u64 now` | the scheduler's clock (ns) |
//! | 8 | `u32 nr_tasks` | candidates in `tasks` (1–32) |
//! | 12 | `u32 queue_len` | runnable tasks of the worker and the shared queue |
//! | 16 | `u64 quantum` | *out*: how long the chosen task may run (ns; 0: to its end) |
//! | 24 | `u64 base_quantum` | the configured quantum |
//! | 32 | `u64 min_quantum` | the smallest quantum an adaptive policy may choose |
//! | 40 | `u64 reserved[3]` | zero |
//! | 64 + 32·i | `u64 arrival, deadline, service, enqueued` | task `i` ([`TaskMeta`]) |

use crate::policy::{Decision, Policy, SchedView, TaskMeta, MAX_CANDIDATES};
use moat::{Engine, Error, LoadedProgram, Runtime};

/// Bytes of the `sched` context.
pub const SCHED_CTX_SIZE: usize = 64 + 32 * MAX_CANDIDATES;

/// The bundled policy programs, by name: `fcfs`, `rr`, `edf`, `adaptive`.
pub const PROGRAMS: [(&str, &str); 4] = [
    ("fcfs", include_str!("../policies/fcfs.asm")),
    ("rr", include_str!("../policies/rr.asm")),
    ("edf", include_str!("../policies/edf.asm")),
    ("adaptive", include_str!("../policies/adaptive.asm")),
];

/// A policy that is an eBPF program, run (verified, by the JIT where there is one) for every
/// decision.
#[derive(Debug)]
pub struct ProgramPolicy {
    name: String,
    program: LoadedProgram,
}

impl ProgramPolicy {
    /// Loads the policy program `bytecode`, verified for the `sched` context.
    pub fn load(name: &str, bytecode: &[u8]) -> Result<ProgramPolicy, Error> {
        let mut rt = Runtime::new();
        rt.set_engine(Engine::default());
        rt.set_isolation(moat::Isolation::None);
        rt.set_buffer_size(SCHED_CTX_SIZE as u64);
        Ok(ProgramPolicy {
            name: name.to_string(),
            program: rt.load_bytecode(bytecode)?,
        })
    }

    /// Loads assembly text.
    pub fn load_asm(name: &str, source: &str) -> Result<ProgramPolicy, Error> {
        ProgramPolicy::load(name, &moat_isa::assemble_bytes(source)?)
    }

    /// One of the bundled [`PROGRAMS`].
    pub fn bundled(name: &str) -> Option<Result<ProgramPolicy, Error>> {
        let (_, source) = PROGRAMS.iter().find(|(n, _)| *n == name)?;
        Some(ProgramPolicy::load_asm(&format!("ebpf-{name}"), source))
    }

    /// The loaded program.
    pub fn program(&self) -> &LoadedProgram {
        &self.program
    }
}

/// Writes `view` as a `sched` context.
pub fn encode(view: &SchedView<'_>, ctx: &mut [u8; SCHED_CTX_SIZE]) {
    ctx.fill(0);
    let put = |ctx: &mut [u8; SCHED_CTX_SIZE], at: usize, v: u64| {
        ctx[at..at + 8].copy_from_slice(&v.to_le_bytes());
    };
    put(ctx, 0, view.now);
    let n = view.tasks.len().min(MAX_CANDIDATES);
    ctx[8..12].copy_from_slice(&(n as u32).to_le_bytes());
    ctx[12..16].copy_from_slice(&view.queue_len.to_le_bytes());
    put(ctx, 24, view.base_quantum);
    put(ctx, 32, view.min_quantum);
    for (i, t) in view.tasks.iter().take(n).enumerate() {
        let at = 64 + 32 * i;
        let TaskMeta {
            arrival,
            deadline,
            service,
            enqueued,
        } = *t;
        for (k, v) in [arrival, deadline, service, enqueued]
            .into_iter()
            .enumerate()
        {
            put(ctx, at + 8 * k, v);
        }
    }
}

impl Policy for ProgramPolicy {
    fn pick(&self, view: &SchedView<'_>) -> Decision {
        let mut ctx = [0u8; SCHED_CTX_SIZE];
        encode(view, &mut ctx);
        // A failing policy program falls back to the first candidate, run to its end.
        let index = self.program.run(&mut ctx).unwrap_or(0);
        let mut quantum = [0u8; 8];
        quantum.copy_from_slice(&ctx[16..24]);
        Decision {
            index: usize::try_from(index).unwrap_or(0),
            quantum: u64::from_le_bytes(quantum),
        }
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Adaptive, Edf, Fcfs, RoundRobin};

    /// Every bundled program decides as its Rust twin on many views.
    #[test]
    fn bundled_programs_agree_with_the_rust_policies() {
        let rust: [(&str, &dyn Policy); 4] = [
            ("fcfs", &Fcfs),
            ("rr", &RoundRobin),
            ("edf", &Edf),
            ("adaptive", &Adaptive),
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (name, twin) in rust {
            let program = ProgramPolicy::bundled(name)
                .expect("bundled")
                .expect("loads");
            for round in 0..200 {
                let n = 1 + (next() % MAX_CANDIDATES as u64) as usize;
                let tasks: Vec<TaskMeta> = (0..n)
                    .map(|_| TaskMeta {
                        arrival: next() % 1000,
                        deadline: if next() % 4 == 0 {
                            u64::MAX
                        } else {
                            next() % 1000
                        },
                        service: next() % 1000,
                        enqueued: next() % 1000,
                    })
                    .collect();
                let view = SchedView {
                    now: 5000,
                    queue_len: (n as u32) + (next() % 100) as u32 * (round % 2),
                    base_quantum: 50_000,
                    min_quantum: 5_000,
                    tasks: &tasks,
                };
                assert_eq!(program.pick(&view), twin.pick(&view), "{name}: {view:?}");
            }
        }
    }
}
