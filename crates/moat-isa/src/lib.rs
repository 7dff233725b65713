//! The eBPF instruction set of RFC 9669: typed instructions ([`Insn`]), their exact binary encoding
//! ([`decode`], [`encode`]), the conformance suite's assembly syntax ([`asm`], [`disasm`]) and its test-file
//! format ([`datafile`]).
//!
//! This crate knows nothing of ELF, maps, verification or execution: it is the vocabulary every other
//! moat crate speaks.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// The decoder and assembler read hostile input: every narrowing or sign-changing conversion is
// explicit (`try_from`, `cast_signed`, byte splits) instead of an `as` cast.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

pub mod asm;
pub mod datafile;
pub mod disasm;
pub mod insn;
pub mod kernel_syntax;
pub mod opcode;
pub mod program;

pub use asm::{assemble, assemble_bytes, AsmError, AsmErrorKind};
pub use disasm::{disasm, disasm_one};
pub use insn::{
    decode, decode_one, decode_slots, encode, encode_one, AluOp, AtomicOp, CallTarget, DecodeError,
    DecodeErrorKind, Endian, Insn, JmpCond, LddwKind, Operand, RawInsn, Reg, Size, SxBits, Width,
    INSN_SIZE,
};
pub use program::{Program, ProgramError};
