//! Finding a probed function in the running process: the file's ELF symbols (`.symtab`, else
//! `.dynsym`) give the function's virtual address and size, its `PT_LOAD` segments turn that into a
//! file offset, and `/proc/self/maps` (or another process's) says where that offset is mapped.

use crate::spec::Target;
use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A function located in a process's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The probed address (function start plus the target's offset).
    pub address: u64,
    /// The function's first byte.
    pub function: u64,
    /// The function's size from its symbol (0 when the symbol does not say).
    pub size: u64,
    /// The file mapped there.
    pub file: PathBuf,
    /// Where the probed address is in the file (what the kernel's uprobe PMU takes).
    pub file_offset: u64,
}

/// Why a target could not be found.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SymbolError {
    /// No mapped file of the process matches the target's path.
    #[error("{path}: not mapped in process {pid} (is it the program or one of its libraries?)")]
    NotMapped {
        /// The target's path.
        path: String,
        /// The process.
        pid: u32,
    },
    /// The file could not be read or parsed.
    #[error("{file}: cannot read its ELF symbols: {reason}")]
    BadFile {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file has no such symbol (stripped, or misspelt).
    #[error("{file}: no symbol `{symbol}` (stripped binary, or a misspelt name?)")]
    NoSymbol {
        /// The file.
        file: PathBuf,
        /// The symbol.
        symbol: String,
    },
    /// The symbol is not a function.
    #[error("{file}: `{symbol}` is not a function ({kind})")]
    NotFunction {
        /// The file.
        file: PathBuf,
        /// The symbol.
        symbol: String,
        /// What it is.
        kind: String,
    },
    /// The offset lies outside the function.
    #[error("{file}: offset {offset:#x} is outside `{symbol}` ({size} bytes)")]
    OffsetOutside {
        /// The file.
        file: PathBuf,
        /// The symbol.
        symbol: String,
        /// The offset.
        offset: u64,
        /// The function's size.
        size: u64,
    },
    /// The function's code is not in an executable mapping of the process.
    #[error("{file}: `{symbol}` (file offset {file_offset:#x}) is not in an executable mapping")]
    NotExecutable {
        /// The file.
        file: PathBuf,
        /// The symbol.
        symbol: String,
        /// Where it is in the file.
        file_offset: u64,
    },
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone)]
struct Mapping {
    start: u64,
    end: u64,
    exec: bool,
    offset: u64,
    path: String,
}

fn mappings(pid: u32) -> Vec<Mapping> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
            let (_dev, _inode) = (f.next()?, f.next()?);
            let path = f.collect::<Vec<_>>().join(" ");
            let (s, e) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                exec: perms.as_bytes().get(2) == Some(&b'x'),
                offset: u64::from_str_radix(offset, 16).ok()?,
                path,
            })
        })
        .collect()
}

/// The gaps of process `pid`'s address space (free ranges between mappings), for placing code near
/// a probed address.
pub(crate) fn gaps(pid: u32) -> Vec<(u64, u64)> {
    let maps = mappings(pid);
    let mut gaps = Vec::new();
    let mut prev = 0x10_0000u64;
    for m in &maps {
        if m.start > prev {
            gaps.push((prev, m.start));
        }
        prev = prev.max(m.end);
    }
    gaps
}

/// The executable mappings of the file `wanted` names (as [`locate`] matches paths) in process
/// `pid`: `(start, end)`.
pub(crate) fn exec_mappings(pid: u32, wanted: &str) -> Vec<(u64, u64)> {
    mappings(pid)
        .into_iter()
        .filter(|m| m.exec && matches(&m.path, wanted))
        .map(|m| (m.start, m.end))
        .collect()
}

/// Whether mapped file `mapped` is what `wanted` names: the same file, or (for a bare file name)
/// a file of that name.
fn matches(mapped: &str, wanted: &str) -> bool {
    if mapped.is_empty() || mapped.starts_with('[') {
        return false;
    }
    if !wanted.contains('/') {
        return Path::new(mapped).file_name().and_then(|n| n.to_str()) == Some(wanted);
    }
    if mapped == wanted {
        return true;
    }
    match (std::fs::canonicalize(mapped), std::fs::canonicalize(wanted)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The file of `maps` (process `pid`'s mappings) that `path` names, and its bytes, read through
/// the process's root so that a process in another mount namespace works.
fn mapped_file(maps: &[Mapping], path: &str, pid: u32) -> Result<(PathBuf, Vec<u8>), SymbolError> {
    let file = maps
        .iter()
        .find(|m| matches(&m.path, path))
        .map(|m| PathBuf::from(&m.path))
        .ok_or_else(|| SymbolError::NotMapped {
            path: path.to_string(),
            pid,
        })?;
    let bytes = std::fs::read(format!("/proc/{pid}/root{}", file.display()))
        .or_else(|_| std::fs::read(&file))
        .map_err(|e| SymbolError::BadFile {
            file: file.clone(),
            reason: e.to_string(),
        })?;
    Ok((file, bytes))
}

/// Finds `target` in process `pid` (`std::process::id()` for this one).
pub fn locate(target: &Target, pid: u32) -> Result<Located, SymbolError> {
    let maps = mappings(pid);
    let (file, bytes) = mapped_file(&maps, &target.path, pid)?;
    let bad = |reason: String| SymbolError::BadFile {
        file: file.clone(),
        reason,
    };
    let elf = object::File::parse(&*bytes).map_err(|e| bad(e.to_string()))?;
    let symbol = elf
        .symbols()
        .chain(elf.dynamic_symbols())
        .find(|s| s.name() == Ok(target.symbol.as_str()) && s.address() != 0)
        .ok_or_else(|| SymbolError::NoSymbol {
            file: file.clone(),
            symbol: target.symbol.clone(),
        })?;
    if symbol.kind() != SymbolKind::Text {
        return Err(SymbolError::NotFunction {
            file: file.clone(),
            symbol: target.symbol.clone(),
            kind: format!("{:?}", symbol.kind()).to_lowercase(),
        });
    }
    let size = symbol.size();
    if target.offset != 0 && size != 0 && target.offset >= size {
        return Err(SymbolError::OffsetOutside {
            file,
            symbol: target.symbol.clone(),
            offset: target.offset,
            size,
        });
    }
    let vaddr = symbol.address();
    let file_offset = elf
        .segments()
        .find_map(|seg| {
            let (start, len) = (seg.address(), seg.size());
            let (off, _) = seg.file_range();
            (vaddr >= start && vaddr < start.saturating_add(len)).then(|| vaddr - start + off)
        })
        .ok_or_else(|| bad(format!("`{}` lies in no segment", target.symbol)))?;
    placed(
        &maps,
        file,
        &target.symbol,
        file_offset,
        target.offset,
        size,
    )
}

/// The function that starts at `file_offset` in `file` (`size` bytes, 0 if unknown), probed
/// `offset` bytes in, where process `maps` map it; `symbol` names it in errors.
fn placed(
    maps: &[Mapping],
    file: PathBuf,
    symbol: &str,
    file_offset: u64,
    offset: u64,
    size: u64,
) -> Result<Located, SymbolError> {
    let not_exec = || SymbolError::NotExecutable {
        file: file.clone(),
        symbol: symbol.to_string(),
        file_offset,
    };
    let mapping = maps
        .iter()
        .filter(|m| m.path == file.to_string_lossy())
        .find(|m| file_offset >= m.offset && file_offset - m.offset < m.end - m.start)
        .ok_or_else(not_exec)?;
    if !mapping.exec {
        return Err(not_exec());
    }
    let function = mapping.start + (file_offset - mapping.offset);
    Ok(Located {
        address: function + offset,
        function,
        size,
        file,
        file_offset: file_offset + offset,
    })
}

/// Finds the code at `file_offset` of the file `path` names (as [`Target::path`]) in process
/// `pid`: what the kernel's uprobe PMU is given (libbpf resolves symbols to file offsets itself).
/// The function is the text symbol that holds the offset, where there is one (its size then
/// bounds what a probe may displace); otherwise the probed address itself, of unknown size.
pub fn locate_file_offset(path: &str, file_offset: u64, pid: u32) -> Result<Located, SymbolError> {
    let maps = mappings(pid);
    let (file, bytes) = mapped_file(&maps, path, pid)?;
    let elf = object::File::parse(&*bytes).map_err(|e| SymbolError::BadFile {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let label = format!("offset {file_offset:#x}");
    // The segment's addresses: where the symbols are.
    let Some((seg_addr, seg_off)) = elf.segments().find_map(|seg| {
        let (off, len) = seg.file_range();
        (file_offset >= off && file_offset - off < len).then_some((seg.address(), off))
    }) else {
        return placed(&maps, file, &label, file_offset, 0, 0);
    };
    let vaddr = file_offset - seg_off + seg_addr;
    let holder = elf
        .symbols()
        .chain(elf.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .find(|s| vaddr >= s.address() && vaddr - s.address() < s.size());
    match holder {
        Some(sym) => {
            let into = vaddr - sym.address();
            let name = sym.name().map_or(label, str::to_string);
            placed(&maps, file, &name, file_offset - into, into, sym.size())
        }
        None => placed(&maps, file, &label, file_offset, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str, symbol: &str) -> Target {
        Target {
            path: path.into(),
            symbol: symbol.into(),
            offset: 0,
        }
    }

    #[test]
    fn finds_libc_functions_at_their_dlsym_address() {
        let pid = std::process::id();
        let found = locate(&target("libc.so.6", "getpid"), pid).unwrap();
        let real = libc::getpid as *const () as u64;
        assert_eq!(found.function, real);
    }

    #[test]
    fn a_file_offset_finds_the_function_that_holds_it() {
        let pid = std::process::id();
        let by_name = locate(&target("libc.so.6", "getpid"), pid).unwrap();
        let at = locate_file_offset("libc.so.6", by_name.file_offset, pid).unwrap();
        assert_eq!(
            (at.address, at.function),
            (by_name.address, by_name.function)
        );
        let inside = locate_file_offset("libc.so.6", by_name.file_offset + 4, pid).unwrap();
        assert_eq!(inside.address, by_name.address + 4);
        assert_eq!(inside.function, by_name.function);
        assert_eq!(inside.file_offset, by_name.file_offset + 4);
    }

    #[test]
    fn missing_things_are_named() {
        let pid = std::process::id();
        assert!(matches!(
            locate(&target("libc.so.6", "no_such_function_here"), pid),
            Err(SymbolError::NoSymbol { .. })
        ));
        assert!(matches!(
            locate(&target("/no/such/file", "f"), pid),
            Err(SymbolError::NotMapped { .. })
        ));
        assert!(matches!(
            locate(&target("libc.so.6", "environ"), pid),
            Err(SymbolError::NotFunction { .. })
        ));
    }
}
