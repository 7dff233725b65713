//! moat's execution interface: what both engines (the interpreter and the JIT) share.
//!
//! A checked [`moat_isa::Program`] is *linked* once ([`Linked::new`]): helper calls resolved in a
//! [`HelperRegistry`], `lddw` pseudo sources resolved by an [`LddwResolver`] (the runtime's maps),
//! with the run budget and the static memory every run may touch (map storage). Each engine lowers a
//! `&Linked` into its own form. During a run, program memory is a [`MemoryMap`] (context, live
//! stack frames, map and helper memory) against which every unproven access and every helper
//! argument is checked; helpers see it through a [`HelperCtx`]; runs end with a [`RunError`] naming
//! the instruction. Engines implement [`ProgramRunner`], which is what helpers (callbacks) and the
//! program table (tail calls) call back into.
//!
//! This crate knows nothing of ELF, maps, verification or code generation; its limits (frames,
//! stack, tail calls) are the kernel's, from [`moat_abi`]. Its `unsafe` is in `mem.rs` (checked
//! program memory) and `lowmem.rs` (memory below 4 GiB).

#![deny(missing_docs)]
#![deny(unsafe_code)]
// Hostile input (programs, ELF files) flows through here: narrowing or sign-changing conversions
// are explicit (`try_from`, `cast_signed`), never a silent `as`.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

mod error;
mod helpers;
mod link;
#[expect(
    unsafe_code,
    reason = "memory below 4 GiB: mapping, unmapping, handing out the bytes"
)]
mod lowmem;
#[expect(
    unsafe_code,
    reason = "the only place program-computed addresses are dereferenced, after their check"
)]
mod mem;

pub use error::{LinkError, RunError, RunErrorKind};
pub use helpers::{
    DirectCall, DirectFn, Helper, HelperCtx, HelperError, HelperFn, HelperRegistry, ProgramRunner,
    TailCall,
};
pub use link::{Buffer, LddwResolver, Linked, LinkedHelper, NoMaps};
pub use lowmem::LowBuffer;
pub use mem::{with_stack, AtomicAlias, Locus, MemoryMap, Region, RunState, ORDER, STACK_BYTES};

/// Maximum call depth, the main function included: the kernel's `MAX_CALL_FRAMES`.
pub use moat_abi::MAX_CALL_FRAMES as MAX_CALL_DEPTH;
/// Maximum number of tail calls in one run.
pub use moat_abi::MAX_TAIL_CALLS;
/// The id of `bpf_tail_call`, which runs another program on the caller's stack.
pub const TAIL_CALL_HELPER: u32 = moat_abi::HelperId::TailCall.as_u32();
/// Bytes of stack per frame.
pub use moat_abi::STACK_FRAME_SIZE;
/// The default instruction budget of one run.
pub const DEFAULT_BUDGET: u64 = 100_000_000;
/// Tag of code addresses produced by `lddw rX, code(off)`, followed by the target slot index.
pub const CODE_ADDRESS_TAG: u64 = 0xc0de_0000_0000_0000;
pub(crate) const CODE_ADDRESS_MASK: u64 = 0xffff_0000_0000_0000;
