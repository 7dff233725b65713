//! moat's safe eBPF interpreter.
//!
//! A [`moat_exec::Linked`] program is lowered once into a [`Prepared`] program (jump targets become
//! operation indices; helpers and `lddw` values come from the linked program), which then runs any
//! number of times. Semantics follow RFC 9669: division by zero gives 0, modulo by zero leaves the
//! dividend, shifts are masked, 32-bit operations zero-extend. Safety does not depend on the
//! verifier: every load and store is checked against the [`moat_exec::MemoryMap`] of the run
//! (context, live stack frames of 512 bytes each, memory of maps and helpers), calls are limited to
//! [`moat_exec::MAX_CALL_DEPTH`] frames and a budget bounds the instructions executed. Any violation
//! ends the run with a [`moat_exec::RunError`] naming the instruction.
//!
//! The interpreter knows nothing of ELF, maps or verification: maps reach it as `lddw` values and
//! helpers resolved when the program was linked.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod interp;

pub use interp::Prepared;
