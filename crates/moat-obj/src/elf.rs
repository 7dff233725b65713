//! A checked, normalised view of an ELF64 little-endian relocatable file: sections, symbols and
//! relocation entries, read through the `object` crate's low-level ELF reader.
//!
//! Everything here is read eagerly except section contents, which [`Elf::data`] bounds-checks on demand so
//! that a corrupt section the loader never needs (say, DWARF) does not stop `inspect`.

use crate::error::{ElfReadError, ObjError, SectionRef};
use object::elf::{FileHeader64, SHT_NOBITS, SHT_REL, SHT_RELA, SHT_SYMTAB};
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::LittleEndian as LE;
use std::collections::HashMap;

/// `EM_BPF`.
const EM_BPF: u16 = 247;
/// Size of the ELF64 file header.
const EHDR_SIZE: u64 = 64;
/// Size of one ELF64 section header.
const SHDR_SIZE: u64 = 64;

/// Symbol type `STT_NOTYPE`.
pub(crate) const STT_NOTYPE: u8 = 0;
/// Symbol type `STT_FUNC`.
pub(crate) const STT_FUNC: u8 = 2;
/// Symbol type `STT_SECTION`.
pub(crate) const STT_SECTION: u8 = 3;
/// Symbol type `STT_FILE`.
pub(crate) const STT_FILE: u8 = 4;
/// Symbol binding `STB_GLOBAL`.
pub(crate) const STB_GLOBAL: u8 = 1;
/// Section flag `SHF_WRITE`.
pub(crate) const SHF_WRITE: u64 = 0x1;
/// Section flag `SHF_EXECINSTR`.
pub(crate) const SHF_EXECINSTR: u64 = 0x4;

/// One section header, normalised.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    /// Index in the section header table.
    pub index: usize,
    /// The name from the section name string table.
    pub name: String,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_offset`.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
    /// `sh_info` (for relocation sections: the relocated section).
    pub info: u32,
}

/// Where a symbol is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SymSection {
    /// `SHN_UNDEF`: an extern (helper-like function such as `memset`, a `.kconfig` variable...).
    Undefined,
    /// A regular section index.
    Section(usize),
    /// `SHN_ABS`, `SHN_COMMON` or another reserved index.
    Special(u16),
}

/// One symbol table entry, normalised.
#[derive(Debug, Clone)]
pub(crate) struct Symbol {
    /// The symbol's name (lossy UTF-8).
    pub name: String,
    /// Where it is defined.
    pub section: SymSection,
    /// `st_value`: for symbols in a relocatable file, the byte offset in its section.
    pub value: u64,
    /// `st_type`.
    pub kind: u8,
    /// `st_bind`.
    pub bind: u8,
}

/// One relocation entry (`Elf64_Rel` or `Elf64_Rela`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reloc {
    /// Index of the entry in its relocation section.
    pub index: usize,
    /// Byte offset in the relocated section.
    pub offset: u64,
    /// Relocation type.
    pub r_type: u32,
    /// Symbol table index.
    pub symbol: u32,
    /// The explicit addend of `Elf64_Rela`; `None` for `Elf64_Rel` (the addend is in the instruction).
    pub addend: Option<i64>,
}

/// A parsed ELF file.
pub(crate) struct Elf<'a> {
    /// The whole file.
    pub data: &'a [u8],
    /// All section headers, indexed by section index (index 0 is the null section).
    pub sections: Vec<Section>,
    /// All symbols, indexed by symbol index (index 0 is the null symbol).
    pub symbols: Vec<Symbol>,
    /// Symbol indices by defining section, so that per-section lookups stay linear overall.
    by_section: HashMap<usize, Vec<usize>>,
    /// Relocation section indices by the section they relocate.
    relocs_for: HashMap<usize, Vec<usize>>,
}

fn elf_err(what: &'static str) -> impl FnOnce(object::read::Error) -> ObjError {
    move |e| ObjError::Elf {
        what,
        source: ElfReadError(e),
    }
}

impl<'a> Elf<'a> {
    /// Parses the header, the section table and the symbol table.
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>, ObjError> {
        if data.get(..4) != Some(&b"\x7fELF"[..]) {
            return Err(ObjError::NotElf);
        }
        if (data.len() as u64) < EHDR_SIZE {
            return Err(ObjError::Truncated {
                what: "ELF header",
                needed: EHDR_SIZE,
                len: data.len(),
            });
        }
        let class = data.get(4).copied().unwrap_or_default();
        if class != 2 {
            return Err(ObjError::WrongClass(class));
        }
        let encoding = data.get(5).copied().unwrap_or_default();
        if encoding != 1 {
            return Err(ObjError::WrongEndian(encoding));
        }
        let header = FileHeader64::<LE>::parse(data).map_err(elf_err("file header"))?;
        let endian = LE;
        let machine = header.e_machine(endian);
        if machine != EM_BPF && machine != 0 {
            return Err(ObjError::WrongMachine(machine));
        }
        let shoff = header.e_shoff(endian);
        let shnum = header
            .shnum(endian, data)
            .map_err(elf_err("section count"))?;
        let table_end = (shnum as u64)
            .checked_mul(SHDR_SIZE)
            .and_then(|n| n.checked_add(shoff))
            .unwrap_or(u64::MAX);
        if shoff != 0 && table_end > data.len() as u64 {
            return Err(ObjError::Truncated {
                what: "section header table",
                needed: table_end,
                len: data.len(),
            });
        }
        let table = header
            .sections(endian, data)
            .map_err(elf_err("section table"))?;
        let mut sections = Vec::with_capacity(table.len());
        for (index, sh) in table.enumerate() {
            let name = table
                .section_name(endian, sh)
                .map_err(|_| ObjError::BadName {
                    what: "section",
                    index: index.0,
                })?;
            sections.push(Section {
                index: index.0,
                name: String::from_utf8_lossy(name).into_owned(),
                sh_type: sh.sh_type(endian),
                flags: sh.sh_flags(endian),
                offset: sh.sh_offset(endian),
                size: sh.sh_size(endian),
                info: sh.sh_info(endian),
            });
        }
        let symtab = table
            .symbols(endian, data, SHT_SYMTAB)
            .map_err(elf_err("symbol table"))?;
        let mut symbols = Vec::with_capacity(symtab.len());
        for (index, sym) in symtab.enumerate() {
            let name = symtab
                .symbol_name(endian, sym)
                .map_err(|_| ObjError::BadName {
                    what: "symbol",
                    index: index.0,
                })?;
            let section = match sym.st_shndx(endian) {
                0 => SymSection::Undefined,
                object::elf::SHN_XINDEX => match symtab.symbol_section(endian, sym, index) {
                    Ok(Some(s)) => SymSection::Section(s.0),
                    Ok(None) => SymSection::Undefined,
                    Err(e) => return Err(elf_err("extended symbol section index")(e)),
                },
                n if n < object::elf::SHN_LORESERVE => SymSection::Section(usize::from(n)),
                n => SymSection::Special(n),
            };
            symbols.push(Symbol {
                name: String::from_utf8_lossy(name).into_owned(),
                section,
                value: sym.st_value(endian),
                kind: sym.st_type(),
                bind: sym.st_bind(),
            });
        }
        let mut by_section: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, s) in symbols.iter().enumerate() {
            if let SymSection::Section(sec) = s.section {
                by_section.entry(sec).or_default().push(i);
            }
        }
        let mut relocs_for: HashMap<usize, Vec<usize>> = HashMap::new();
        for s in &sections {
            if s.sh_type == SHT_REL || s.sh_type == SHT_RELA {
                if let Ok(target) = usize::try_from(s.info) {
                    relocs_for.entry(target).or_default().push(s.index);
                }
            }
        }
        Ok(Elf {
            data,
            sections,
            symbols,
            by_section,
            relocs_for,
        })
    }

    /// The section named in errors.
    pub fn sref(&self, index: usize) -> SectionRef {
        SectionRef {
            name: self
                .sections
                .get(index)
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            index,
        }
    }

    /// The contents of a section: bounds-checked against the file; empty for `SHT_NOBITS`.
    pub fn data(&self, index: usize) -> Result<&'a [u8], ObjError> {
        let Some(s) = self.sections.get(index) else {
            return Ok(&[]);
        };
        if s.sh_type == SHT_NOBITS {
            return Ok(&[]);
        }
        let out_of_bounds = || ObjError::SectionOutOfBounds {
            section: self.sref(index),
            offset: s.offset,
            size: s.size,
            len: self.data.len(),
        };
        let start = usize::try_from(s.offset).map_err(|_| out_of_bounds())?;
        let size = usize::try_from(s.size).map_err(|_| out_of_bounds())?;
        let end = start.checked_add(size).ok_or_else(out_of_bounds)?;
        self.data.get(start..end).ok_or_else(out_of_bounds)
    }

    /// Indices of the `SHT_REL`/`SHT_RELA` sections that relocate section `target`.
    pub fn reloc_sections_for(&self, target: usize) -> &[usize] {
        self.relocs_for.get(&target).map_or(&[], Vec::as_slice)
    }

    /// The symbols defined in section `section`.
    pub fn symbols_in(&self, section: usize) -> impl Iterator<Item = &Symbol> + '_ {
        self.by_section
            .get(&section)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|&i| self.symbols.get(i))
    }

    /// The entries of relocation section `index`.
    pub fn relocs(&self, index: usize) -> Result<Vec<Reloc>, ObjError> {
        let Some(s) = self.sections.get(index) else {
            return Ok(Vec::new());
        };
        let rela = s.sh_type == SHT_RELA;
        let entry = if rela { 24 } else { 16 };
        let data = self.data(index)?;
        if data.len() % entry != 0 {
            return Err(ObjError::Truncated {
                what: "relocation section",
                needed: s
                    .offset
                    .saturating_add(s.size.next_multiple_of(entry as u64)),
                len: self.data.len(),
            });
        }
        let mut out = Vec::with_capacity(data.len() / entry);
        for (i, chunk) in data.chunks_exact(entry).enumerate() {
            let offset = read_u64(chunk, 0);
            let info = read_u64(chunk, 8);
            out.push(Reloc {
                index: i,
                offset,
                r_type: (info & 0xffff_ffff) as u32,
                symbol: (info >> 32) as u32,
                addend: rela.then(|| read_u64(chunk, 16).cast_signed()),
            });
        }
        Ok(out)
    }
}

/// Reads a little-endian `u64` at `off`, or 0 past the end.
pub(crate) fn read_u64(b: &[u8], off: usize) -> u64 {
    off.checked_add(8)
        .and_then(|end| b.get(off..end))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// Reads a little-endian `u32` at `off`, or `None` past the end.
pub(crate) fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    off.checked_add(4)
        .and_then(|end| b.get(off..end))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
}
