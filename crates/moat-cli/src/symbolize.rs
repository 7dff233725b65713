//! Addresses of a (possibly finished) process to function names and source lines: the process's
//! executable mappings say which file holds an address and at which file offset; the file's
//! `PT_LOAD` segments turn that into the address the file's symbols and DWARF use; `addr2line`
//! finds the function (from the symbol table, demangled) and the line (from DWARF, where the file
//! has it). Files are read once and kept.

use moat_agent::protocol::Record;
use object::{Object, ObjectSegment};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One executable file mapping of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// The file offset at `start`.
    pub offset: u64,
    /// The file.
    pub path: PathBuf,
}

impl Mapping {
    /// The mapping a record describes.
    pub fn from_record(r: &Record) -> Option<Mapping> {
        match r {
            Record::Mapping {
                start,
                end,
                offset,
                path,
            } => Some(Mapping {
                start: *start,
                end: *end,
                offset: *offset,
                path: PathBuf::from(path),
            }),
            _ => None,
        }
    }
}

/// What an address is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// The address.
    pub address: u64,
    /// The function holding it, if a symbol says.
    pub function: Option<String>,
    /// Bytes past the function's start.
    pub offset: u64,
    /// The source file and line, if the file has DWARF for it.
    pub file: Option<String>,
    /// The line.
    pub line: Option<u32>,
    /// The mapped file holding the address.
    pub object: Option<PathBuf>,
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.address)?;
        match &self.function {
            Some(name) => write!(f, " {name}+{:#x}", self.offset)?,
            None => write!(f, " ?")?,
        }
        if let (Some(file), Some(line)) = (&self.file, self.line) {
            let short = Path::new(file)
                .file_name()
                .map_or(file.clone(), |n| n.to_string_lossy().into_owned());
            write!(f, " ({short}:{line})")?;
        }
        if let Some(obj) = &self.object {
            let name = obj.file_name().unwrap_or(obj.as_os_str());
            write!(f, " [{}]", name.to_string_lossy())?;
        }
        Ok(())
    }
}

struct Loaded {
    loader: addr2line::Loader,
    /// `(file offset, file size, virtual address)` of each `PT_LOAD` segment.
    segments: Vec<(u64, u64, u64)>,
}

impl Loaded {
    fn open(path: &Path) -> Option<Loaded> {
        let data = std::fs::read(path).ok()?;
        let file = object::File::parse(&*data).ok()?;
        let segments = file
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, size, s.address())
            })
            .collect();
        let loader = addr2line::Loader::new(path).ok()?;
        Some(Loaded { loader, segments })
    }

    /// The file's own address of file offset `offset`.
    fn vaddr(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(o, size, _)| offset >= *o && offset < o + size)
            .map(|(o, _, vaddr)| vaddr + (offset - o))
    }
}

/// Symbolises addresses of one process, given its mappings.
#[derive(Default)]
pub struct Symbolizer {
    files: HashMap<PathBuf, Option<Loaded>>,
}

impl Symbolizer {
    /// What `address` is in a process mapped as `mappings`. `return_address`: the address
    /// follows a call (a stack's caller frames), so its line is looked up one byte back, at the
    /// call.
    pub fn frame(&mut self, mappings: &[Mapping], address: u64, return_address: bool) -> Frame {
        let mut frame = Frame {
            address,
            ..Frame::default()
        };
        let Some(m) = mappings
            .iter()
            .find(|m| address >= m.start && address < m.end)
        else {
            return frame;
        };
        frame.object = Some(m.path.clone());
        let Some(loaded) = self
            .files
            .entry(m.path.clone())
            .or_insert_with(|| Loaded::open(&m.path))
        else {
            return frame;
        };
        let Some(vaddr) = loaded.vaddr(address - m.start + m.offset) else {
            return frame;
        };
        let probe = if return_address {
            vaddr.saturating_sub(1)
        } else {
            vaddr
        };
        if let Some(sym) = loaded.loader.find_symbol_info(probe) {
            frame.function = Some(
                addr2line::demangle_auto(std::borrow::Cow::Borrowed(sym.name()), None).into_owned(),
            );
            frame.offset = vaddr.saturating_sub(sym.address());
        }
        if let Ok(Some(loc)) = loaded.loader.find_location(probe) {
            frame.file = loc.file.map(str::to_string);
            frame.line = loc.line;
        }
        frame
    }
}
