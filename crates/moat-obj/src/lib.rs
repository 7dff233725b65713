//! Loads eBPF ELF objects — as `clang -target bpf -O2 -g` builds them under libbpf's conventions, and
//! older or odder real-world ones — into linked, relocated programs and plain-data map descriptions.
//!
//! [`Object::parse`] reads an object and returns its [`ProgramSpec`]s, [`MapSpec`]s, license, kernel
//! version, section summary and (from `.BTF.ext`) line info.
//!
//! # Conventions
//!
//! * **Programs.** Every executable section other than `.text` holds programs, one per function symbol
//!   (`STT_FUNC`, or a global `NOTYPE` symbol in old objects) except static functions that are called
//!   (those are sub-programs); code without a symbol is one program named after its section (OVS's
//!   `tail-N`, Cilium's `2/7`). `.text` holds sub-programs; only in objects that have no other code are
//!   its global functions the programs (PREVAIL's test objects).
//! * **Relocations** (`SHT_REL`, and `SHT_RELA` from very old LLVM) must sit on an `lddw` or `call` of
//!   a code section, with type `R_BPF_64_64`, `R_BPF_64_32` or 0 (old LLVM), a valid symbol and a
//!   target that is code, a map definition or global data; anything else is a typed error.
//! * **Linking.** A program's bytecode is its own function followed by every function it reaches by a
//!   local call (`call` with `src = 1`) or a function address (`lddw` with `src = 4`), each once,
//!   breadth first, with the instruction's `imm` rewritten to the new relative offset (`pc + 1 + imm`),
//!   as libbpf does.
//! * **Maps.** `lddw` of a map becomes `src = 5` (`BPF_PSEUDO_MAP_IDX`, [`moat_isa::LddwKind::MapIdx`])
//!   with `imm` = index into [`Object::maps`]; `lddw` of global data becomes `src = 6`
//!   (`BPF_PSEUDO_MAP_IDX_VALUE`, [`moat_isa::LddwKind::MapIdxValue`]) with `imm` = map index and the
//!   second slot's `imm` = byte offset into the value. Maps come from `.maps` (BTF), legacy `maps` /
//!   `maps/*` records, and global data sections (one single-entry array map each).
//! * **Unresolved symbols** (an undefined `memset`, `.kconfig` externs) are recorded on the program,
//!   not refused: the object can still be inspected.
//!
//! # Architecture invariant
//!
//! This crate depends on `moat-isa`, `moat-abi` (the kernel's map types and flags, libbpf's section
//! names) and an ELF reader only. It knows nothing of verification, map implementations or
//! execution: maps are described, never created, and map types are not checked.
//! Instructions are not decoded either (that is the verifier's first step); only `lddw` and `call`
//! slots are looked at. Hostile input never panics: every read is bounds-checked and every type chain
//! is followed under a depth limit.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Hostile input (programs, ELF files) flows through here: narrowing or sign-changing conversions
// are explicit (`try_from`, `cast_signed`), never a silent `as`.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

mod btf;
mod btf_ext;
mod ctype;
mod elf;
mod error;
mod link;
mod load;
mod maps;
mod spec;

pub use ctype::{CMember, CType, GlobalVar, ParseValueError};
pub use error::{BtfErrorKind, ElfReadError, MapErrorKind, ObjError, RelocErrorKind, SectionRef};
pub use spec::{
    FunctionSpan, InnerMap, LineInfo, MapKind, MapSpec, Object, ProgramSpec, SectionInfo,
    SectionKind, SlotInit, Unresolved,
};
