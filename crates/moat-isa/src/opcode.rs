//! Raw opcode constants of the eBPF encoding (RFC 9669 §3–§5).
//!
//! These names mirror the kernel's `BPF_*` macros. They stay inside `moat-isa`: every other crate works
//! with the typed [`crate::Insn`].

/// Instruction class: non-standard load (`lddw`, legacy packet loads).
pub const CLASS_LD: u8 = 0x00;
/// Instruction class: load into register.
pub const CLASS_LDX: u8 = 0x01;
/// Instruction class: store immediate.
pub const CLASS_ST: u8 = 0x02;
/// Instruction class: store register (and atomics).
pub const CLASS_STX: u8 = 0x03;
/// Instruction class: 32-bit arithmetic.
pub const CLASS_ALU: u8 = 0x04;
/// Instruction class: 64-bit jumps.
pub const CLASS_JMP: u8 = 0x05;
/// Instruction class: 32-bit jumps.
pub const CLASS_JMP32: u8 = 0x06;
/// Instruction class: 64-bit arithmetic.
pub const CLASS_ALU64: u8 = 0x07;

/// Source bit: the operand is the immediate.
pub const SRC_K: u8 = 0x00;
/// Source bit: the operand is the source register.
pub const SRC_X: u8 = 0x08;

/// Memory mode: 64-bit immediate (`lddw`).
pub const MODE_IMM: u8 = 0x00;
/// Memory mode: legacy absolute packet load.
pub const MODE_ABS: u8 = 0x20;
/// Memory mode: legacy indirect packet load.
pub const MODE_IND: u8 = 0x40;
/// Memory mode: regular load/store.
pub const MODE_MEM: u8 = 0x60;
/// Memory mode: sign-extending load.
pub const MODE_MEMSX: u8 = 0x80;
/// Memory mode: atomic operation.
pub const MODE_ATOMIC: u8 = 0xc0;

/// Size: 32-bit word.
pub const SIZE_W: u8 = 0x00;
/// Size: 16-bit half word.
pub const SIZE_H: u8 = 0x08;
/// Size: 8-bit byte.
pub const SIZE_B: u8 = 0x10;
/// Size: 64-bit double word.
pub const SIZE_DW: u8 = 0x18;

/// Atomic modifier: also return the old value.
pub const ATOMIC_FETCH: i32 = 0x01;
/// Atomic exchange (always fetches).
pub const ATOMIC_XCHG: i32 = 0xe0 | ATOMIC_FETCH;
/// Atomic compare-and-exchange (always fetches).
pub const ATOMIC_CMPXCHG: i32 = 0xf0 | ATOMIC_FETCH;

/// `lddw` source: plain 64-bit immediate.
pub const PSEUDO_NONE: u8 = 0;
/// `lddw` source: map by file descriptor.
pub const PSEUDO_MAP_FD: u8 = 1;
/// `lddw` source: address of a map value by map fd plus offset.
pub const PSEUDO_MAP_VALUE: u8 = 2;
/// `lddw` source: address of a BTF variable.
pub const PSEUDO_BTF_ID: u8 = 3;
/// `lddw` source: address of a local function.
pub const PSEUDO_FUNC: u8 = 4;
/// `lddw` source: map by index into the program's map list.
pub const PSEUDO_MAP_IDX: u8 = 5;
/// `lddw` source: address of a map value by map index plus offset.
pub const PSEUDO_MAP_IDX_VALUE: u8 = 6;

/// `call` source: helper function by static id.
pub const CALL_HELPER: u8 = 0;
/// `call` source: program-local function, `imm` is the PC-relative target.
pub const CALL_LOCAL: u8 = 1;
/// `call` source: kernel function by BTF id.
pub const CALL_KFUNC: u8 = 2;
