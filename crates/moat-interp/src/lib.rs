//! moat's safe eBPF interpreter.
//!
//! A checked [`moat_isa::Program`] is lowered once into a [`Prepared`] program (jump targets, helpers and
//! `lddw` pseudo sources resolved), which then runs any number of times. Semantics follow RFC 9669:
//! division by zero gives 0, modulo by zero leaves the dividend, shifts are masked, 32-bit operations
//! zero-extend. Safety does not depend on the verifier: every load and store is checked against the
//! [`MemoryMap`] of the run (context, live stack frames of 512 bytes each, memory of maps and helpers),
//! calls are limited to [`MAX_CALL_DEPTH`] frames and a budget bounds the instructions executed. Any
//! violation ends the run with a [`RunError`] naming the instruction.
//!
//! The interpreter knows nothing of ELF, maps or verification: maps reach it as `lddw` values from an
//! [`LddwResolver`] and as helpers in a [`HelperRegistry`].

#![deny(missing_docs)]

mod helpers;
mod interp;
mod lowmem;
mod mem;

pub use helpers::{
    Helper, HelperCtx, HelperError, HelperFn, HelperRegistry, ProgramRunner, TailCall,
    MAX_TAIL_CALLS,
};
pub use interp::{
    Buffer, LddwResolver, NoMaps, PrepareError, Prepared, RunError, RunErrorKind, CODE_ADDRESS_TAG,
    DEFAULT_BUDGET, MAX_CALL_DEPTH, STACK_FRAME_SIZE,
};
pub use lowmem::LowBuffer;
pub use mem::{Locus, MemoryMap, Region, RunState, STACK_BYTES};
