//! Why linking or running a program failed: [`LinkError`] before any run, [`RunError`] (a
//! [`RunErrorKind`] at an instruction) during one. Both engines report the same errors at the same
//! instruction; addresses appear only as [`Locus`] in messages, never absolutely.

use crate::helpers::HelperError;
use crate::mem::Locus;
use crate::MAX_CALL_DEPTH;
use moat_isa::LddwKind;
use thiserror::Error;

/// Why a program could not be linked: something it refers to (a helper, a map) is missing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A branch does not land on an instruction (refused earlier by `Program::new`).
    #[error("instruction {pc}: branch target is not an instruction")]
    BadBranch {
        /// The branch's slot.
        pc: usize,
    },
    /// kfunc calls have no meaning in userspace (refused earlier by `Program::new`).
    #[error("instruction {pc}: kfunc call {id} is not supported")]
    Kfunc {
        /// The call's slot.
        pc: usize,
        /// The BTF id.
        id: i32,
    },
    /// A `call` names a helper id that is not registered.
    #[error("instruction {pc}: call to unknown helper {id}")]
    UnknownHelper {
        /// The call's slot.
        pc: usize,
        /// The helper id.
        id: i32,
    },
    /// An `lddw` pseudo source (map reference) could not be resolved.
    #[error("instruction {pc}: cannot resolve lddw {kind:?} {imm}: {reason}")]
    UnresolvedLddw {
        /// The instruction's slot.
        pc: usize,
        /// The pseudo source.
        kind: LddwKind,
        /// The first immediate.
        imm: i32,
        /// Why.
        reason: String,
    },
}

/// Why a run ended with an error. Every variant is reported with the instruction's slot index.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RunErrorKind {
    /// A load or store touched memory outside every region of the program.
    #[error("{} of {len} bytes at {at} is outside the program's memory", if *write { "store" } else { "load" })]
    OutOfBounds {
        /// The address (for the host; messages show `at`).
        addr: u64,
        /// Where the address lies relative to the program's memory.
        at: Locus,
        /// The access size.
        len: u64,
        /// Whether it was a store.
        write: bool,
    },
    /// An atomic operation on a misaligned (or out of bounds) address.
    #[error("atomic access of {len} bytes at {at} is misaligned or outside writable memory")]
    BadAtomic {
        /// The address (for the host; messages show `at`).
        addr: u64,
        /// Where the address lies relative to the program's memory.
        at: Locus,
        /// The access size.
        len: u64,
    },
    /// Execution ran past the last instruction.
    #[error("execution fell off the end of the program")]
    FellOffEnd,
    /// A call would exceed [`MAX_CALL_DEPTH`] frames.
    #[error("call depth exceeds {MAX_CALL_DEPTH} frames")]
    CallDepth,
    /// The instruction budget ran out (a runaway loop).
    #[error("instruction budget of {budget} exhausted")]
    Budget {
        /// The budget.
        budget: u64,
    },
    /// The host interrupted the run (a time budget, preemption): it stopped at a polling point
    /// (a loop back-edge or a call) of JIT code.
    #[error("interrupted by the host")]
    Interrupted,
    /// `callx` to a value that is neither a helper id nor a code address.
    #[error("callx target 0x{target:x} is neither a registered helper nor a function")]
    BadCallTarget {
        /// The register's value.
        target: u64,
    },
    /// The hardware stopped an access of generated code: a protection-key fault (the address lies
    /// in memory of another domain or of the host) or a page fault on unmapped memory. Only possible
    /// for accesses a (buggy) verifier proved safe, so that no software check ran.
    #[error("{} at {at} stopped by the hardware", if *protection_key { "protection-key fault" } else { "page fault" })]
    MemoryFault {
        /// The faulting address (for the host; messages show `at`).
        addr: u64,
        /// Where the address lies relative to the program's memory.
        at: Locus,
        /// Whether it was a protection-key fault (`SEGV_PKUERR`).
        protection_key: bool,
    },
    /// A helper refused its arguments or failed.
    #[error("helper {name} (#{id})")]
    Helper {
        /// The helper id.
        id: u32,
        /// The helper name.
        name: String,
        /// What went wrong.
        #[source]
        source: HelperError,
    },
}

/// A run-time error at an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("instruction {pc}: {kind}")]
pub struct RunError {
    /// The slot index of the failing instruction.
    pub pc: usize,
    /// What went wrong.
    pub kind: RunErrorKind,
}
