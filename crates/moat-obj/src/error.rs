//! The loader's error type: every refusal says where in the file it happened (section name and index,
//! byte offset, symbol, relocation index).

use std::fmt;
use thiserror::Error;

/// A section named in an error: its name (as far as it could be read) and its index in the section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionRef {
    /// The section's name, or `""` where it could not be read.
    pub name: String,
    /// The section's index in the ELF section header table.
    pub index: usize,
}

impl fmt::Display for SectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "section '{}' (#{})", self.name, self.index)
    }
}

/// A failure reported by the `object` crate's ELF reader, kept as the source of an [`ObjError::Elf`].
///
/// Opaque on purpose, so the ELF crate's types stay out of moat-obj's public API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfReadError(pub(crate) object::read::Error);

impl fmt::Display for ElfReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ElfReadError {}

/// Why a relocation entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RelocErrorKind {
    /// The relocation type is not one a BPF program section can carry (`R_BPF_64_64`, `R_BPF_64_32`, or
    /// type 0 from very old LLVM).
    #[error("unsupported relocation type {0}")]
    UnknownType(u32),
    /// The offset is not 8-aligned or lies outside the section.
    #[error("offset is misaligned or outside the section ({size} bytes)")]
    BadOffset {
        /// Size of the relocated section in bytes.
        size: u64,
    },
    /// The symbol index is past the end of the symbol table.
    #[error("symbol index {index} is outside the symbol table ({count} symbols)")]
    BadSymbolIndex {
        /// The relocation's symbol index.
        index: u32,
        /// Number of symbols in the table.
        count: usize,
    },
    /// The relocated instruction is neither `lddw` nor `call`.
    #[error("relocated instruction has opcode 0x{opcode:02x}, not lddw or call")]
    NotLddwOrCall {
        /// The instruction's opcode byte.
        opcode: u8,
    },
    /// The symbol is defined in a section a program cannot refer to (or a special section index).
    #[error("symbol is in section #{section}, which is neither code, a map nor global data")]
    BadTarget {
        /// The symbol's section index.
        section: usize,
    },
    /// The symbol points into a map section but no map definition starts there.
    #[error("no map is defined at offset {offset} of its section")]
    NoMapAt {
        /// Byte offset in the map section.
        offset: u64,
    },
    /// The target code offset is misaligned or outside its section.
    #[error("code target {target} (in slots) is misaligned or outside its section")]
    BadCodeTarget {
        /// The computed target, in instruction slots from the start of the target section.
        target: i64,
    },
    /// The global data offset does not fit the 32-bit immediate.
    #[error("data offset {offset} does not fit in 32 bits")]
    DataOffsetTooLarge {
        /// The computed byte offset.
        offset: i64,
    },
    /// Two relocations patch the same instruction.
    #[error("a second relocation patches the same instruction")]
    Duplicate,
}

/// Why a map definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MapErrorKind {
    /// A legacy map section has contents but no symbols to name its records.
    #[error("map section has {size} bytes but no map symbols")]
    NoSymbols {
        /// Section size in bytes.
        size: u64,
    },
    /// The section size is not a whole number of records of a usable size.
    #[error("record size {record} (section {size} bytes / {count} maps) is not a valid bpf_map_def size")]
    BadRecordSize {
        /// Section size in bytes.
        size: u64,
        /// Number of map symbols.
        count: usize,
        /// The computed record size (rounded down).
        record: u64,
    },
    /// A map symbol does not point at the start of a record inside the section.
    #[error("symbol at offset {offset} is not at a record boundary inside the section")]
    BadSymbolOffset {
        /// The symbol's value.
        offset: u64,
    },
    /// A BTF map definition is not shaped as libbpf's macros make it.
    #[error("BTF map definition: {0}")]
    BadBtfDefinition(String),
    /// A legacy map-in-map names an inner map that does not exist.
    #[error("inner map index {0} does not name a map in the same section")]
    BadInnerMap(u32),
    /// `.maps` exists but the object carries no BTF to describe it.
    #[error("the .maps section needs BTF, and the object has none")]
    MissingBtf,
    /// A global data section is larger than moat accepts.
    #[error("global data section of {size} bytes exceeds the {max}-byte limit")]
    DataTooLarge {
        /// The section size.
        size: u64,
        /// The limit.
        max: u64,
    },
}

/// Why BTF or BTF.ext data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BtfErrorKind {
    /// The magic number is not `0xeb9f` (or the data is big-endian).
    #[error("bad magic 0x{0:04x}")]
    BadMagic(u16),
    /// The header or a sub-section lies outside the data.
    #[error("header or sub-section is outside the data")]
    BadHeader,
    /// The data ends in the middle of a record.
    #[error("data ends in the middle of a record")]
    Truncated,
    /// A string offset points past the string table.
    #[error("string offset {0} is past the end of the string table")]
    BadStringOffset(u32),
    /// A type id names no type.
    #[error("type id {0} does not exist")]
    BadTypeId(u32),
    /// A type kind number that BTF does not define.
    #[error("unknown type kind {0}")]
    UnknownKind(u32),
    /// A type chain is longer than the resolver follows (or loops).
    #[error("type chain from id {0} is too deep or loops")]
    TooDeep(u32),
    /// A type whose size was needed has none (void, function, forward declaration) or overflows.
    #[error("type id {0} has no usable size")]
    NoSize(u32),
    /// A record size in BTF.ext is smaller than the record it must hold.
    #[error("record size {0} is too small")]
    BadRecordSize(u32),
}

/// Why an object could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ObjError {
    /// The data does not start with the ELF magic number.
    #[error("not an ELF file")]
    NotElf,
    /// The file is too short for what its headers describe.
    #[error("truncated ELF: {what} needs {needed} bytes, the file has {len}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// The number of bytes it needs from the start of the file.
        needed: u64,
        /// The file length.
        len: usize,
    },
    /// Not a 64-bit ELF file.
    #[error("ELF class {0} is not supported (eBPF objects are ELF64)")]
    WrongClass(u8),
    /// Not a little-endian ELF file.
    #[error("ELF data encoding {0} is not supported (moat runs little-endian eBPF)")]
    WrongEndian(u8),
    /// An `e_machine` that is neither `EM_BPF` (247) nor 0 (very old LLVM).
    #[error("ELF machine {0} is not eBPF")]
    WrongMachine(u16),
    /// The ELF structure is malformed in a way the ELF reader reported.
    #[error("malformed ELF {what}")]
    Elf {
        /// What was being read.
        what: &'static str,
        /// The reader's report.
        #[source]
        source: ElfReadError,
    },
    /// A section or symbol name whose offset is outside its string table.
    #[error("{what} #{index}: name is outside the string table")]
    BadName {
        /// `"section"` or `"symbol"`.
        what: &'static str,
        /// The section or symbol index.
        index: usize,
    },
    /// A section's data lies (partly) past the end of the file.
    #[error("{section}: data at offset {offset} with size {size} is past the end of the file ({len} bytes)")]
    SectionOutOfBounds {
        /// The section.
        section: SectionRef,
        /// `sh_offset`.
        offset: u64,
        /// `sh_size`.
        size: u64,
        /// The file length.
        len: usize,
    },
    /// A code section whose size is not a whole number of instructions.
    #[error("{section}: code size {size} is not a multiple of 8")]
    BadCodeSize {
        /// The section.
        section: SectionRef,
        /// `sh_size`.
        size: u64,
    },
    /// A function symbol that does not start on an instruction inside its section.
    #[error(
        "{section}: symbol '{symbol}' at offset {offset} is misaligned or outside the section"
    )]
    BadSymbol {
        /// The section.
        section: SectionRef,
        /// The symbol's name.
        symbol: String,
        /// The symbol's value.
        offset: u64,
    },
    /// A relocation entry is malformed or cannot be applied.
    #[error("{section}: relocation #{reloc} at offset {offset} (type {r_type}, symbol '{symbol}'): {kind}")]
    BadRelocation {
        /// The relocated (code) section.
        section: SectionRef,
        /// Index of the entry in its relocation section.
        reloc: usize,
        /// Byte offset in the relocated section.
        offset: u64,
        /// Relocation type.
        r_type: u32,
        /// The symbol's name (empty if unnamed or unreadable).
        symbol: String,
        /// What is wrong.
        kind: RelocErrorKind,
    },
    /// An `lddw` whose second slot is missing (cut off by the end of its section).
    #[error("{section}: lddw at offset {offset} is cut in half by the end of the section")]
    LddwTruncated {
        /// The section.
        section: SectionRef,
        /// Byte offset of the first slot.
        offset: u64,
    },
    /// A local call or function address (without relocation) whose target is outside its section.
    #[error("{section}: instruction {insn} calls slot {target}, outside the section")]
    BadLocalCall {
        /// The section.
        section: SectionRef,
        /// Slot index of the call in its section.
        insn: usize,
        /// The computed target slot.
        target: i64,
    },
    /// Linking would exceed a size limit: one program's slots (the kernel's 1M instructions), or all
    /// programs' slots together (so that many programs sharing big sub-programs cannot exhaust memory).
    #[error("program '{program}' exceeds the linker's limit of {limit} instruction slots")]
    ProgramTooLarge {
        /// The program's name.
        program: String,
        /// The limit that was hit, in slots.
        limit: usize,
    },
    /// A map definition is malformed.
    #[error("{section}: map '{map}': {kind}")]
    BadMap {
        /// The section holding the definition.
        section: SectionRef,
        /// The map's name (empty if not known yet).
        map: String,
        /// What is wrong.
        kind: MapErrorKind,
    },
    /// A map whose values would take more than 4 GiB (`value_size × max_entries`).
    #[error("map '{map}': value_size {value_size} × max_entries {max_entries} exceeds 4 GiB")]
    OversizedMap {
        /// The map's name.
        map: String,
        /// The value size in bytes.
        value_size: u32,
        /// The number of entries.
        max_entries: u32,
    },
    /// The `.BTF` or `.BTF.ext` section is malformed.
    #[error("{section}: bad BTF at byte {offset}: {kind}")]
    Btf {
        /// `.BTF` or `.BTF.ext`.
        section: SectionRef,
        /// Byte offset in the section.
        offset: usize,
        /// What is wrong.
        kind: BtfErrorKind,
    },
    /// [`crate::Object::program`] found no program of that name (function or section name).
    #[error("no program named '{0}'")]
    MissingProgram(String),
}
