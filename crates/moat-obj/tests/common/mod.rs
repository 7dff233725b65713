//! Shared test helpers: locating the real objects, and building small synthetic ELF objects (with the
//! `object` crate's writer) for cases the real objects do not cover.

#![allow(
    dead_code,
    reason = "each test binary uses its own share of these helpers"
)]

use moat_isa::RawInsn;
use object::write::{self, Relocation, SectionId, Symbol, SymbolId, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind,
    SymbolScope,
};
use std::path::{Path, PathBuf};

/// The shared objects folder (real-world objects; README.md, "Test data"): `$MOAT_OBJECTS_DIR`,
/// else `objects/` of `$MOAT_SHARED`, else `../shared/objects` beside the checkout. Where it is
/// missing, a test that needs it fails with a message naming the path when a variable named it or
/// `CI` is set, and otherwise prints why it skips and gets `None`.
pub fn objects_dir() -> Option<PathBuf> {
    let (dir, named) = match (
        std::env::var_os("MOAT_OBJECTS_DIR"),
        std::env::var_os("MOAT_SHARED"),
    ) {
        (Some(dir), _) => (PathBuf::from(dir), Some("MOAT_OBJECTS_DIR")),
        (None, Some(shared)) => (PathBuf::from(shared).join("objects"), Some("MOAT_SHARED")),
        (None, None) => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/objects"),
            None,
        ),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    let why = format!(
        "the shared objects folder {} does not exist (real-world eBPF objects, see README.md, \
         \"Test data\"): {}",
        dir.display(),
        match named {
            Some(var) => format!("{var} points nowhere"),
            None => "put `shared/` beside the checkout or set MOAT_SHARED to its path".into(),
        }
    );
    assert!(named.is_none() && std::env::var_os("CI").is_none(), "{why}");
    println!("skipped: {why}");
    None
}

/// The bytes of a real object, e.g. `real("new_linux/sockex1_kern.o")`; `None` (after printing a skip
/// reason) if the objects folder is missing.
pub fn real(rel: &str) -> Option<Vec<u8>> {
    let dir = objects_dir()?;
    Some(std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}")))
}

/// `r{dst} = imm64` with pseudo source `src` (two slots).
pub fn lddw(dst: u8, src: u8, imm: i32, next_imm: i32) -> [RawInsn; 2] {
    [
        RawInsn {
            code: 0x18,
            dst,
            src,
            off: 0,
            imm,
        },
        RawInsn {
            imm: next_imm,
            ..RawInsn::default()
        },
    ]
}

/// `call imm` with `src` 0 (helper) or 1 (local).
pub fn call(src: u8, imm: i32) -> RawInsn {
    RawInsn {
        code: 0x85,
        dst: 0,
        src,
        off: 0,
        imm,
    }
}

/// `r{dst} = imm` (64-bit).
pub fn mov(dst: u8, imm: i32) -> RawInsn {
    RawInsn {
        code: 0xb7,
        dst,
        src: 0,
        off: 0,
        imm,
    }
}

/// `exit`.
pub fn exit() -> RawInsn {
    RawInsn {
        code: 0x95,
        ..RawInsn::default()
    }
}

/// Instruction slots as bytes.
pub fn bytes(insns: &[RawInsn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

/// A synthetic BPF ELF object under construction.
pub struct Builder {
    obj: write::Object<'static>,
}

impl Builder {
    /// An empty little-endian `EM_BPF` relocatable object.
    pub fn new() -> Builder {
        Builder {
            obj: write::Object::new(BinaryFormat::Elf, Architecture::Bpf, Endianness::Little),
        }
    }

    /// Adds an executable section holding `insns`.
    pub fn code(&mut self, name: &str, insns: &[RawInsn]) -> SectionId {
        let id = self
            .obj
            .add_section(Vec::new(), name.as_bytes().to_vec(), SectionKind::Text);
        self.obj.append_section_data(id, &bytes(insns), 8);
        id
    }

    /// Adds a data section (`kind`: `Data`, `ReadOnlyData`, `UninitializedData`...).
    pub fn data(&mut self, name: &str, contents: &[u8], kind: SectionKind) -> SectionId {
        let id = self
            .obj
            .add_section(Vec::new(), name.as_bytes().to_vec(), kind);
        if kind == SectionKind::UninitializedData {
            self.obj.append_section_bss(id, contents.len() as u64, 8);
        } else {
            self.obj.append_section_data(id, contents, 8);
        }
        id
    }

    /// Adds a symbol of `kind` at `offset` of `section`.
    pub fn symbol(
        &mut self,
        section: SectionId,
        name: &str,
        offset: u64,
        kind: SymbolKind,
        global: bool,
    ) -> SymbolId {
        self.obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: offset,
            size: 0,
            kind,
            scope: if global {
                SymbolScope::Dynamic
            } else {
                SymbolScope::Compilation
            },
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        })
    }

    /// Adds a global function symbol at `offset` of `section`.
    pub fn func(&mut self, section: SectionId, name: &str, offset: u64) -> SymbolId {
        self.symbol(section, name, offset, SymbolKind::Text, true)
    }

    /// Adds an undefined symbol.
    pub fn undefined(&mut self, name: &str) -> SymbolId {
        self.obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: 0,
            size: 0,
            kind: SymbolKind::Unknown,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        })
    }

    /// The section symbol of `section`.
    pub fn section_symbol(&mut self, section: SectionId) -> SymbolId {
        self.obj.section_symbol(section)
    }

    /// Adds a relocation of type `r_type` at `offset` of `section` against `symbol` (addend 0: BPF keeps
    /// addends in the instruction).
    pub fn reloc(&mut self, section: SectionId, offset: u64, symbol: SymbolId, r_type: u32) {
        self.obj
            .add_relocation(
                section,
                Relocation {
                    offset,
                    symbol,
                    addend: 0,
                    flags: RelocationFlags::Elf { r_type },
                },
            )
            .expect("relocation");
    }

    /// The ELF bytes.
    pub fn build(&self) -> Vec<u8> {
        self.obj.write().expect("write ELF")
    }
}
