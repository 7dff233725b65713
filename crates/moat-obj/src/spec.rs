//! The loader's output types: a loaded [`Object`] with its linked programs, its maps described as data
//! and a summary of its sections.

use crate::error::ObjError;
use moat_isa::{RawInsn, INSN_SIZE};
use std::sync::Arc;

/// A loaded eBPF object: programs ready to verify and run, plus the maps they refer to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Object {
    /// Every program, in section order, then symbol order within a section.
    pub programs: Vec<ProgramSpec>,
    /// Every map; `lddw` instructions refer to them by index into this vector.
    pub maps: Vec<MapSpec>,
    /// The `license` section's string, if present.
    pub license: Option<String>,
    /// The `version` section's kernel version (`LINUX_VERSION_CODE`), if present.
    pub kernel_version: Option<u32>,
    /// A summary of every section, for `moat inspect`.
    pub sections: Vec<SectionInfo>,
    /// Whether the object has a `.BTF` section.
    pub has_btf: bool,
    /// Whether the object has a `.BTF.ext` section (line info, CO-RE relocations).
    pub has_btf_ext: bool,
}

impl Object {
    /// Parses and links an ELF object. See the crate documentation for the conventions followed.
    pub fn parse(bytes: &[u8]) -> Result<Object, ObjError> {
        crate::load::load(bytes)
    }

    /// The program named `name`: by function name first, then by section name (for programs without a
    /// symbol, and for selecting the first program of a section).
    pub fn program(&self, name: &str) -> Result<&ProgramSpec, ObjError> {
        self.programs
            .iter()
            .find(|p| p.name == name)
            .or_else(|| self.programs.iter().find(|p| p.section == name))
            .ok_or_else(|| ObjError::MissingProgram(name.to_string()))
    }

    /// The map named `name`, if any.
    pub fn map(&self, name: &str) -> Option<&MapSpec> {
        self.maps.iter().find(|m| m.name == name)
    }
}

/// One program: its own instructions followed by every `.text` function it calls (transitively),
/// relocated and linked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgramSpec {
    /// The function symbol's name, or the section name where the code has no symbol.
    pub name: String,
    /// The name of the section holding the program (`xdp`, `kprobe/...`, `2/7`, `tail-3`, `.text`).
    pub section: String,
    /// Byte offset of the program in its section.
    pub section_offset: u64,
    /// The linked bytecode, `8 × insn_count` bytes.
    pub bytecode: Vec<u8>,
    /// Number of 8-byte instruction slots (an `lddw` takes two).
    pub insn_count: usize,
    /// Indices into [`Object::maps`] of the maps the program refers to, sorted, without repeats.
    pub map_indices: Vec<usize>,
    /// The functions laid out in `bytecode`: the program itself first, then linked sub-programs.
    pub functions: Vec<FunctionSpan>,
    /// Calls and loads of symbols the object does not define (e.g. Falco's `memset`): left as they
    /// were, so the program can still be inspected but not run.
    pub unresolved: Vec<Unresolved>,
    /// Number of CO-RE relocation records (from `.BTF.ext`) in the program's linked functions.
    pub core_relocations: usize,
    /// Source positions from `.BTF.ext`, sorted by instruction; each holds until the next one.
    pub line_info: Vec<LineInfo>,
    /// From BTF: the type the program's first parameter points to (its context, e.g. the
    /// `struct request` of a buffer program), if the object has BTF for the function.
    pub context_type: Option<crate::CType>,
}

impl ProgramSpec {
    /// The instruction slots of [`ProgramSpec::bytecode`].
    pub fn raw_insns(&self) -> Vec<RawInsn> {
        self.bytecode
            .chunks_exact(INSN_SIZE)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok())
            .map(RawInsn::from_bytes)
            .collect()
    }

    /// The source position in effect at instruction slot `pc`, if line info covers it.
    pub fn line_at(&self, pc: usize) -> Option<&LineInfo> {
        let after = self.line_info.partition_point(|l| l.insn <= pc);
        after.checked_sub(1).and_then(|i| self.line_info.get(i))
    }
}

/// Where one function lies in a linked program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpan {
    /// The function's name (symbol name, or section name if it has none).
    pub name: String,
    /// First instruction slot in the linked program.
    pub start: usize,
    /// Length in slots.
    pub len: usize,
}

/// A reference to a symbol the object does not define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// Instruction slot in the linked program.
    pub insn: usize,
    /// The undefined symbol's name.
    pub symbol: String,
    /// Whether the instruction is a call (`true`) or an `lddw` (`false`).
    pub is_call: bool,
}

/// A source position from BTF line info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInfo {
    /// First instruction slot (in the linked program) of this position.
    pub insn: usize,
    /// Source file name.
    pub file: Arc<str>,
    /// Line number, 1-based.
    pub line: u32,
    /// Column, 1-based (0 if unknown).
    pub column: u32,
    /// The text of the source line.
    pub text: Arc<str>,
}

/// How a map was defined in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// A BTF-defined map in `.maps`.
    Btf,
    /// A legacy `struct bpf_map_def` (or iproute2 `struct bpf_elf_map`) record in `maps` or `maps/*`.
    Legacy,
    /// Global data: `.data` or `.data.*`.
    Data,
    /// Read-only global data: `.rodata` or `.rodata.*` (including merged strings).
    Rodata,
    /// Zero-initialised global data: `.bss` or `.bss.*`.
    Bss,
}

/// The inner map of a map-in-map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InnerMap {
    /// Another map of the object (legacy `inner_map_idx`), by index into [`Object::maps`].
    Map(usize),
    /// A template definition (BTF `__array(values, struct {...})`).
    Template(Box<MapSpec>),
}

/// A slot of a map preset by the object (BTF `.values = { [i] = &sym }`, from relocations in `.maps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInit {
    /// The slot (key) index.
    pub slot: u32,
    /// The symbol stored there: an inner map's or a program's name.
    pub symbol: String,
}

/// A map, described as data. The map type is the kernel's `BPF_MAP_TYPE_*` number, not checked here:
/// which types exist and are supported is the maps crate's business.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapSpec {
    /// The symbol's name, or the section name for global data.
    pub name: String,
    /// How the map was defined.
    pub kind: MapKind,
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Maximum number of entries.
    pub max_entries: u32,
    /// `BPF_F_*` map flags.
    pub flags: u32,
    /// Pinning mode (libbpf: 1 = by name; iproute2: 1 = object, 2 = global namespace), 0 if none.
    pub pinning: u32,
    /// NUMA node (legacy 28-byte records and BTF `numa_node`), 0 if unset.
    pub numa_node: u32,
    /// The inner map of a map-in-map, if the definition names one.
    pub inner_map: Option<InnerMap>,
    /// Slots preset by the object.
    pub initial_slots: Vec<SlotInit>,
    /// Initial contents of a global data map (`value_size` bytes, zeros for `.bss`); empty otherwise.
    pub data: Vec<u8>,
    /// The raw legacy definition record; empty for other kinds. Useful where the 28-byte layout is
    /// ambiguous (old iproute2 `bpf_elf_map` puts `id, pinning` where `bpf_map_def` has
    /// `inner_map_idx, numa_node`).
    pub legacy_def: Vec<u8>,
    /// The section holding the definition.
    pub section: String,
    /// Byte offset of the definition in its section.
    pub section_offset: u64,
    /// From BTF: the key's C type (`__type(key, T)`), if known.
    pub key_type: Option<crate::CType>,
    /// From BTF: the value's C type (`__type(value, T)`), if known.
    pub value_type: Option<crate::CType>,
    /// From BTF, for global data maps: the section's variables, by offset.
    pub vars: Vec<crate::GlobalVar>,
}

/// What a section is, as far as the loader is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// Code holding programs.
    Program,
    /// `.text`: sub-programs linked into callers (or the programs themselves, in objects that have no
    /// other code).
    Text,
    /// Legacy map definitions (`maps`, `maps/*`).
    LegacyMaps,
    /// BTF map definitions (`.maps`).
    BtfMaps,
    /// Global data (`.data*`, `.rodata*`, `.bss*`).
    GlobalData,
    /// The `license` string.
    License,
    /// The `version` word.
    Version,
    /// `.BTF`.
    Btf,
    /// `.BTF.ext`.
    BtfExt,
    /// A relocation section (`SHT_REL`/`SHT_RELA`).
    Relocations,
    /// The symbol table.
    Symbols,
    /// A string table.
    Strings,
    /// DWARF debug information (`.debug_*`).
    Debug,
    /// Anything else (`.eh_frame`, `.llvm_addrsig`, unknown sections).
    Other,
}

/// One section, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    /// Index in the section header table.
    pub index: usize,
    /// Name.
    pub name: String,
    /// What the loader took it for.
    pub kind: SectionKind,
    /// `sh_size` in bytes.
    pub size: u64,
}
