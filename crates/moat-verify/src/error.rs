//! Rejections: the instruction, its disassembly, the register state and a one-line reason.

use std::fmt;
use thiserror::Error;

/// Why a program was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Reason {
    /// The bytecode is not well formed.
    #[error("{0}")]
    Malformed(String),
    /// An instruction no path reaches.
    #[error("unreachable instruction")]
    Unreachable,
    /// A call cycle among functions.
    #[error("recursive call: {chain}")]
    Recursion {
        /// The functions in the cycle, by first slot.
        chain: String,
    },
    /// More nested calls than allowed.
    #[error("call depth {frames} exceeds 8 frames")]
    CallDepth {
        /// The depth reached.
        frames: usize,
    },
    /// The frames of the call chain use more than 512 bytes of stack together.
    #[error("combined stack size of {bytes} bytes exceeds 512")]
    StackTooDeep {
        /// Bytes used.
        bytes: u32,
    },
    /// Execution may run past the last instruction.
    #[error("execution falls through the end of the program")]
    FallsOffEnd,
    /// A register read before it is written.
    #[error("r{reg} is read before it is written (!read_ok)")]
    UninitRegister {
        /// The register.
        reg: u8,
    },
    /// Arithmetic the pointer rules forbid.
    #[error("pointer arithmetic with {what} prohibited")]
    PointerArithmetic {
        /// The operation.
        what: &'static str,
    },
    /// Arithmetic on a pointer that may be null.
    #[error("pointer arithmetic on a pointer that may be null prohibited")]
    NullablePointerArithmetic,
    /// A memory access through something that is not a pointer.
    #[error("invalid memory access: {what} is not a pointer")]
    NotAPointer {
        /// The register's state.
        what: String,
    },
    /// A dereference of a pointer that may be null.
    #[error("invalid memory access: {what} may be null, check it first")]
    MaybeNull {
        /// The register's state.
        what: String,
    },
    /// An access outside its region.
    #[error("invalid access to {region}: bytes {lo}..{hi} outside 0..{limit}")]
    OutOfBounds {
        /// The region.
        region: String,
        /// First byte.
        lo: i64,
        /// One past the last byte.
        hi: i64,
        /// The region's size.
        limit: u64,
    },
    /// A packet access beyond what comparisons with `data_end` proved.
    #[error("invalid access to packet: bytes {lo}..{hi}, only {known} bytes proven by checks against data_end")]
    PacketOutOfBounds {
        /// First byte.
        lo: i64,
        /// One past the last byte.
        hi: i64,
        /// Bytes proven to exist.
        known: u64,
    },
    /// A stack access whose offset is not a constant.
    #[error("variable stack access prohibited")]
    VariableStackAccess,
    /// A context access whose offset is not a constant.
    #[error("variable context access prohibited")]
    VariableCtxAccess,
    /// A context access that matches no field (or the wrong size).
    #[error("invalid {ctx} access: offset {off}, size {size} (context is {ctx_size} bytes)")]
    BadCtxAccess {
        /// The context structure.
        ctx: &'static str,
        /// Offset.
        off: i64,
        /// Access size.
        size: usize,
        /// The structure's size.
        ctx_size: u32,
    },
    /// A store to read-only memory.
    #[error("write into read-only {region}")]
    ReadOnly {
        /// What was written.
        region: String,
    },
    /// A pointer stored or returned where an unprivileged loader forbids it.
    #[error("pointer leaks into {into}")]
    PointerLeak {
        /// Where.
        into: &'static str,
    },
    /// An uninitialised stack read by an unprivileged program.
    #[error("invalid read from stack at offset {off}: uninitialised")]
    UninitStack {
        /// Offset from the frame pointer.
        off: i64,
    },
    /// Part of a spilled pointer read back (unprivileged).
    #[error("partial read of a spilled pointer")]
    PartialPointerRead,
    /// Part of a spilled pointer overwritten (unprivileged).
    #[error("partial overwrite of a spilled pointer")]
    PartialPointerOverwrite,
    /// A pointer stored to the stack other than as 8 bytes at an 8-aligned offset (the kernel's
    /// "invalid size of register spill" and strict stack alignment): the spill could not be tracked,
    /// and its bytes would read back as a number that leaks the address.
    #[error(
        "invalid spill of a pointer: {size} bytes at fp{off} (pointers spill as 8 aligned bytes)"
    )]
    MisalignedPointerSpill {
        /// Offset from the frame pointer.
        off: i64,
        /// Bytes written.
        size: i64,
    },
    /// A pointer comparison (unprivileged).
    #[error("pointer comparison prohibited")]
    PointerComparison,
    /// An atomic operation on memory that does not allow it.
    #[error("atomic operation on {what} prohibited")]
    BadAtomicTarget {
        /// The base register's state.
        what: String,
    },
    /// `lddw` names a map the program does not have.
    #[error("lddw refers to map index {index}, which does not exist")]
    UnknownMap {
        /// The index.
        index: i64,
    },
    /// Direct value access to a map that is not an array.
    #[error("direct value access to non-array map `{map}`")]
    DirectValueAccess {
        /// The map.
        map: String,
    },
    /// An `lddw` pseudo source moat does not support.
    #[error("unsupported lddw source {kind}")]
    UnsupportedLddw {
        /// The kind.
        kind: String,
    },
    /// `ldabs`/`ldind` in a program type without them.
    #[error("legacy packet loads (ldabs/ldind) are only allowed in socket filter and tc programs")]
    LegacyPacketLoad,
    /// `ldabs`/`ldind` without the context in `r6`.
    #[error("legacy packet loads need the context pointer in r6")]
    LegacyPacketLoadNeedsCtxInR6,
    /// A helper the kernel does not offer to programs of this type.
    #[error("program of type {prog_type} cannot use helper {helper}")]
    HelperUnavailable {
        /// The helper's name.
        helper: &'static str,
        /// The kernel program type.
        prog_type: &'static str,
    },
    /// A helper the kernel offers only to a loader with `CAP_PERFMON`, called under the rules of an
    /// unprivileged loader.
    #[error("{helper} needs CAP_PERFMON: an unprivileged loader may not call it")]
    HelperNeedsPerfmon {
        /// The helper's name.
        helper: &'static str,
    },
    /// Pointer arithmetic the kernel refuses an unprivileged loader as Spectre v1 hardening (its
    /// `sanitize_ptr_alu`): a register added to a pointer other than a stack or map value pointer,
    /// or a variable offset whose sign is unknown.
    #[error("{what}: pointer arithmetic with it prohibited for !root (Spectre v1 hardening)")]
    SpeculativePointerArithmetic {
        /// What made it refused.
        what: String,
    },
    /// One `bpf_tail_call` site reached with different program arrays, under the rules of an
    /// unprivileged loader (the kernel's Spectre v1 hardening).
    #[error("tail_call abusing map_ptr: this bpf_tail_call is reached with different program arrays, which an unprivileged loader may not do")]
    TailCallMapsDiffer,
    /// A map of maps whose inner map is not known, so a lookup in it cannot be typed.
    #[error("map of maps `{map}` names no inner map (BTF `__array(values, ...)` or a legacy inner map index)")]
    NoInnerMap {
        /// The outer map's name.
        map: String,
    },
    /// A GPL-only helper called by a program whose license is not GPL-compatible.
    #[error("{helper} is GPL-only: the program's license is not GPL-compatible (the kernel accepts \"GPL\", \"GPL v2\", \"GPL and additional rights\", \"Dual BSD/GPL\", \"Dual MIT/GPL\", \"Dual MPL/GPL\")")]
    GplOnlyHelper {
        /// The helper's name.
        helper: &'static str,
    },
    /// A helper called while a `bpf_spin_lock` is held (only `bpf_spin_unlock` may be).
    #[error("call to {helper} while holding a bpf_spin_lock: function calls are not allowed while holding a lock")]
    CallWhileLocked {
        /// The helper's name (or `#id`).
        helper: String,
    },
    /// The main function returns a value outside the range its program type allows.
    #[error("at program exit r0 is {found}, which should have been in [{lo}, {hi}]")]
    ReturnOutOfRange {
        /// What `r0` may be.
        found: String,
        /// The smallest allowed value.
        lo: u64,
        /// The largest allowed value.
        hi: u64,
    },
    /// `exit` while a `bpf_spin_lock` is held.
    #[error("exit while holding a bpf_spin_lock: bpf_spin_unlock is missing")]
    ExitWhileLocked,
    /// `bpf_spin_unlock` with no lock held.
    #[error("bpf_spin_unlock without taking a lock")]
    UnlockWithoutLock,
    /// `bpf_spin_unlock` of another lock than the one held (another map or offset).
    #[error("bpf_spin_unlock of a different lock than the one held")]
    UnlockOfDifferentLock,
    /// A call to a helper without a prototype.
    #[error("unknown helper #{id}")]
    UnknownHelper {
        /// The id.
        id: i32,
    },
    /// A helper argument of the wrong kind.
    #[error("{helper} argument {arg}: expected {expected}, found {found}")]
    HelperArg {
        /// The helper.
        helper: String,
        /// 1-based argument.
        arg: u8,
        /// What it takes.
        expected: &'static str,
        /// What it got.
        found: String,
    },
    /// A helper memory argument that is not entirely accessible.
    #[error("{helper} argument {arg}: bytes {lo}..{hi} of {region} outside 0..{limit}")]
    HelperMemOutOfBounds {
        /// The helper.
        helper: String,
        /// 1-based argument.
        arg: u8,
        /// The region.
        region: String,
        /// First byte.
        lo: i64,
        /// One past the last byte.
        hi: i64,
        /// The region's size.
        limit: i64,
    },
    /// A reservation released twice, or one never taken.
    #[error("releasing a reference that is not held")]
    ReleasedTwice,
    /// Exit with a reservation still held.
    #[error("{count} ring buffer reservation(s) not released on this path (unreleased reference)")]
    UnreleasedReference {
        /// How many.
        count: usize,
    },
    /// A callback returning something other than 0 or 1.
    #[error("callback must return 0 or 1, returns {what}")]
    CallbackReturn {
        /// The returned state.
        what: String,
    },
    /// `callx` through something that is not a known function.
    #[error("callx target {what} is not a known function")]
    CallxTarget {
        /// The register's state.
        what: String,
    },
    /// A kfunc call.
    #[error("kfunc calls (BTF id {id}) are not supported")]
    Kfunc {
        /// The BTF id.
        id: i32,
    },
    /// A loop that returns to an identical state.
    #[error("infinite loop detected")]
    InfiniteLoop,
    /// Pointer arithmetic or an access whose offset leaves the range the verifier tracks: a constant
    /// offset, a known variable offset or a variable offset's lower bound beyond ±2^29 (the kernel's
    /// `BPF_MAX_VAR_OFF`), a variable offset without lower bound, or offsets whose sum overflows.
    #[error("pointer offset not allowed: {what}")]
    PointerOffset {
        /// What is out of range.
        what: String,
    },
    /// An atomic operation on an address that may not be aligned to its size.
    #[error("misaligned {size}-byte atomic access to {region} at offset {off}")]
    MisalignedAtomic {
        /// The region.
        region: String,
        /// The offset (with its variable part, if any).
        off: String,
        /// Access size.
        size: usize,
    },
    /// The analysis exceeded one of its budgets: instructions processed (a loop without a proven
    /// bound, or a huge program), states kept for pruning, or branches waiting to be explored.
    #[error("program too complex: more than {limit} {what}")]
    TooComplex {
        /// The limit.
        limit: u64,
        /// What was counted.
        what: &'static str,
    },
}

/// A rejection at one instruction.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct VerifyError {
    /// Slot index of the instruction.
    pub pc: usize,
    /// Its disassembly.
    pub insn: String,
    /// The registers of the current frame on the failing path.
    pub state: String,
    /// Why.
    pub reason: Reason,
    /// The C source line, where line info names one (`file:line: text`).
    pub line: Option<String>,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "instruction {}", self.pc)?;
        if !self.insn.is_empty() {
            write!(f, " (`{}`)", self.insn)?;
        }
        write!(f, ": {}", self.reason)?;
        if let Some(line) = &self.line {
            write!(f, "\n  source: {line}")?;
        }
        if !self.state.is_empty() {
            write!(f, "\n  state: {}", self.state)?;
        }
        Ok(())
    }
}
