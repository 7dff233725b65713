//! moat's static verifier: proves, before a program runs, that it is safe to run in-process.
//!
//! [`verify`] checks control flow ([`cfg`]: every instruction reachable, no recursion), then
//! abstractly interprets every path ([`check`]) the way the Linux kernel's verifier does: each
//! register is uninitialised, a scalar (a [`tnum::Tnum`] plus signed and unsigned intervals,
//! [`scalar::Scalar`]) or a typed pointer (context, stack, map value or null, packet, ring buffer
//! memory) with a constant and a variable offset; stack slots remember spilled registers and
//! uninitialised bytes; branches refine ranges, prove packet bounds against `data_end` and turn
//! `*_or_null` pointers into checked ones. Every load and store must be in bounds of its region, every
//! helper call must match the helper's prototype ([`env::HelperProto`]), every ring buffer reservation
//! must be released, and loops must terminate within a complexity limit (states are pruned when an
//! earlier, more general state at the same instruction was already proven safe — registers no path
//! reads, and scalars whose value decides nothing, left out of the comparison as the kernel's
//! liveness and precision tracking leave them; returning to an identical state is an infinite
//! loop).
//!
//! The result, [`VerifiedProgram`], carries the proven facts ([`facts::Facts`]) later layers use: the
//! JIT elides bounds checks ([`ProvenAccesses`], which nothing but a verification can make without
//! `unsafe`), isolation audits helper arguments against the proven ranges.
//!
//! The verifier knows nothing of ELF, map implementations or execution: its inputs are a checked
//! [`moat_isa::Program`] and an [`env::Env`] describing the context, maps and helpers as data.
//!
//! Known simplifications (each errs on the side of rejection or relies on the engines' own checks):
//! 32-bit operations keep no separate 32-bit bounds; stack accesses need constant offsets; callbacks
//! (`bpf_loop`, `bpf_for_each_map_elem`) are verified for one invocation per call site.

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod cfg;
mod check;
pub mod env;
mod error;
pub mod facts;
mod proof;
mod reguse;
pub mod scalar;
pub mod state;
pub mod tnum;

pub use check::{Stats, MAX_COMPARE_WORK, MAX_PENDING_BRANCHES, MAX_STATE_BYTES};
pub use env::{
    Arg, Callback, Context, CtxField, Env, FieldKind, HelperProto, MapClass, MapInfo, Ret,
    PT_REGS_BYTES,
};
pub use error::{Reason, VerifyError};
pub use facts::{Facts, MemAccess};
/// Most call frames, as in the kernel.
pub use moat_abi::MAX_CALL_FRAMES;
pub use proof::{ProvenAccesses, ProvenMemory};

use moat_isa::Program;
use std::time::{Duration, Instant};

/// A program the verifier accepted, with what it proved. Only [`verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedProgram {
    program: Program,
    facts: Facts,
    stats: Stats,
    elapsed: Duration,
    log: Vec<String>,
}

impl VerifiedProgram {
    /// The program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// What was proven, per instruction.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// What was proven, as the JIT takes it: the accesses proven in bounds and whether every path
    /// ends.
    pub fn proven_accesses(&self) -> ProvenAccesses {
        ProvenAccesses::from_facts(&self.facts, self.program.slots())
    }

    /// Analysis statistics.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// How long verification took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The per-instruction log, when [`Env::log`] was set.
    pub fn log(&self) -> &[String] {
        &self.log
    }
}

/// A rejection, with the statistics and log gathered up to it.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Why and where.
    pub error: VerifyError,
    /// Statistics up to the rejection.
    pub stats: Stats,
    /// The log up to the rejection, when [`Env::log`] was set.
    pub log: Vec<String>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Rejection {}

/// Verifies `program` in `env`.
pub fn verify(program: &Program, env: &Env<'_>) -> Result<VerifiedProgram, Box<Rejection>> {
    let start = Instant::now();
    if let Err(error) = cfg::check(program) {
        return Err(Box::new(Rejection {
            error: *error,
            stats: Stats::default(),
            log: Vec::new(),
        }));
    }
    let mut checker = check::Checker::new(program, env);
    match checker.run() {
        Ok(stats) => Ok(VerifiedProgram {
            program: program.clone(),
            facts: checker.facts,
            stats,
            elapsed: start.elapsed(),
            log: checker.log,
        }),
        Err(error) => Err(Box::new(Rejection {
            error: *error,
            stats: checker.stats(),
            log: checker.log,
        })),
    }
}

/// Hooks for testing the verifier against itself.
pub mod testing {
    use std::cell::Cell;

    thread_local! {
        static EXACT_PRUNING: Cell<bool> = const { Cell::new(false) };
    }

    /// Runs `f` with pruning on this thread comparing states whole, without the register-use
    /// analysis (no liveness, every scalar precise): a program accepted with the analysis must be
    /// accepted without it too (or refused as too complex), or the analysis left out something
    /// that mattered. The differential oracle in `moat-fuzz` checks exactly that.
    pub fn with_exact_pruning<R>(f: impl FnOnce() -> R) -> R {
        let old = EXACT_PRUNING.with(|e| e.replace(true));
        let r = f();
        EXACT_PRUNING.with(|e| e.set(old));
        r
    }

    /// Whether [`with_exact_pruning`] is in force on this thread.
    pub(crate) fn exact_pruning() -> bool {
        EXACT_PRUNING.with(Cell::get)
    }
}
