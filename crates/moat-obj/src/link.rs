//! Program discovery, relocation and linking.
//!
//! Every code section is split into functions at its function symbols (`STT_FUNC`, or global `NOTYPE`
//! symbols in old objects; code before the first symbol, or a section without symbols, is one function
//! named after the section). Relocations and unrelocated local calls are first resolved per section into
//! [`Fixup`]s; then each program is laid out as its own function followed by every function it reaches
//! through calls or `lddw` function pointers (breadth first, once each), and every fixup is applied with
//! offsets relative to that layout, as libbpf does.

use crate::btf_ext::{BtfExt, LineRecord};
use crate::elf::{Elf, Reloc, SymSection, STB_GLOBAL, STT_FUNC, STT_NOTYPE, STT_SECTION};
use crate::error::{ObjError, RelocErrorKind};
use crate::maps::Maps;
use crate::spec::{FunctionSpan, LineInfo, ProgramSpec, SectionKind, Unresolved};
use moat_isa::{RawInsn, INSN_SIZE};

/// [`INSN_SIZE`] for offset arithmetic in signed bytes.
const SLOT_BYTES: i64 = 8;
const _: () = assert!(INSN_SIZE == 8);
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// `BPF_LD | BPF_IMM | BPF_DW`.
const OP_LDDW: u8 = 0x18;
/// `BPF_JMP | BPF_CALL`.
const OP_CALL: u8 = 0x85;
/// `src` of a call to a local function (`BPF_PSEUDO_CALL`).
const PSEUDO_CALL: u8 = 1;
/// `src` of `lddw` with a map index (`BPF_PSEUDO_MAP_IDX`).
const PSEUDO_MAP_IDX: u8 = 5;
/// `src` of `lddw` with a map index and value offset (`BPF_PSEUDO_MAP_IDX_VALUE`).
const PSEUDO_MAP_IDX_VALUE: u8 = 6;
/// `src` of `lddw` loading a function address (`BPF_PSEUDO_FUNC`).
const PSEUDO_FUNC: u8 = 4;
/// `R_BPF_NONE`, used by very old LLVM (OVS) for map references.
const R_BPF_NONE: u32 = 0;
/// `R_BPF_64_64`: `lddw` immediates.
const R_BPF_64_64: u32 = 1;
/// `R_BPF_64_32`: call immediates.
const R_BPF_64_32: u32 = 10;
/// Symbol binding `STB_WEAK`.
const STB_WEAK: u8 = 2;
/// Largest linked program, in slots (the kernel's `BPF_COMPLEXITY_LIMIT_INSNS`).
pub(crate) const MAX_PROGRAM_SLOTS: usize = 1 << 20;
/// Largest total of linked slots over all programs of an object (real objects stay below 200 000;
/// at the limit the linked bytecode takes about 100 MB).
pub(crate) const MAX_TOTAL_SLOTS: usize = 1 << 22;

/// What a relocation or local reference asks of one instruction.
#[derive(Debug, Clone)]
enum Fixup {
    /// `lddw` of a map: becomes `src = 5`, `imm = map`.
    Map(usize),
    /// `lddw` of an address in global data: becomes `src = 6`, `imm = map`, `next_imm = offset`.
    MapValue { map: usize, offset: i32 },
    /// A call (`call = true`) or function address (`lddw`) of code in ELF section `section` at slot
    /// `target`.
    Code {
        section: usize,
        target: usize,
        call: bool,
    },
    /// A reference to an undefined symbol.
    Unresolved { symbol: String, call: bool },
}

/// A function of a code section: slots `start..end`.
#[derive(Debug, Clone)]
struct Func {
    name: String,
    start: usize,
    end: usize,
    global: bool,
}

/// A code section with its functions, fixups and debug records.
#[derive(Debug)]
struct CodeSection {
    index: usize,
    name: String,
    kind: SectionKind,
    slots: Vec<RawInsn>,
    funcs: Vec<Func>,
    fixups: BTreeMap<usize, Fixup>,
    /// Line records by slot, sorted.
    lines: Vec<(usize, LineRecord)>,
    /// Slots with CO-RE relocations, sorted.
    core: Vec<usize>,
}

impl CodeSection {
    /// The function containing `slot`.
    fn func_at(&self, slot: usize) -> Option<usize> {
        let after = self.funcs.partition_point(|f| f.start <= slot);
        let i = after.checked_sub(1)?;
        self.funcs.get(i).filter(|f| slot < f.end).map(|_| i)
    }
}

/// Finds, relocates and links every program of the object.
pub(crate) fn programs(
    elf: &Elf<'_>,
    kinds: &[SectionKind],
    maps: &Maps,
    ext: Option<&BtfExt>,
) -> Result<Vec<ProgramSpec>, ObjError> {
    let mut code = Vec::new();
    for (index, kind) in kinds.iter().enumerate() {
        if matches!(kind, SectionKind::Program | SectionKind::Text) {
            code.push(code_section(elf, index, *kind)?);
        }
    }
    let pos: HashMap<usize, usize> = code.iter().enumerate().map(|(i, c)| (c.index, i)).collect();
    let sizes: HashMap<usize, usize> = code.iter().map(|c| (c.index, c.slots.len())).collect();
    for sec in code.iter_mut() {
        for &rel in elf.reloc_sections_for(sec.index) {
            for r in elf.relocs(rel)? {
                let (slot, fixup) = resolve(elf, kinds, maps, &sizes, sec, &r)?;
                if sec.fixups.insert(slot, fixup).is_some() {
                    return Err(reloc_error(elf, sec, &r, RelocErrorKind::Duplicate));
                }
            }
        }
        local_refs(elf, sec)?;
    }
    if let Some(ext) = ext {
        attach_ext(&mut code, ext);
    }
    // Every function of a program section is a program, except static (`STB_LOCAL`) functions that
    // something calls or takes the address of: those are sub-programs. (Falco's programs are static.)
    let mut callees = HashSet::new();
    for sec in &code {
        for fix in sec.fixups.values() {
            if let Fixup::Code {
                section, target, ..
            } = fix
            {
                if let Some(c) = pos.get(section).and_then(|&ci| code.get(ci)) {
                    callees.insert((c.index, c.func_at(*target)));
                }
            }
        }
    }
    let mut roots = Vec::new();
    for (ci, sec) in code.iter().enumerate() {
        if sec.kind == SectionKind::Program {
            roots.extend(
                sec.funcs
                    .iter()
                    .enumerate()
                    .filter(|(fi, f)| f.global || !callees.contains(&(sec.index, Some(*fi))))
                    .map(|(fi, _)| (ci, fi)),
            );
        }
    }
    if roots.is_empty() {
        // Objects whose only code is `.text`: its global functions are the programs.
        for (ci, sec) in code.iter().enumerate() {
            let globals: Vec<usize> = (0..sec.funcs.len())
                .filter(|&fi| sec.funcs.get(fi).is_some_and(|f| f.global))
                .collect();
            if globals.is_empty() {
                roots.extend((0..sec.funcs.len()).map(|fi| (ci, fi)));
            } else {
                roots.extend(globals.into_iter().map(|fi| (ci, fi)));
            }
        }
    }
    let mut total = 0usize;
    let mut out = Vec::with_capacity(roots.len());
    for root in roots {
        let p = link(&code, &pos, root)?;
        total = total.saturating_add(p.insn_count);
        if total > MAX_TOTAL_SLOTS {
            return Err(ObjError::ProgramTooLarge {
                program: p.name,
                limit: MAX_TOTAL_SLOTS,
            });
        }
        out.push(p);
    }
    Ok(out)
}

/// Reads a code section's instructions and splits it into functions.
fn code_section(elf: &Elf<'_>, index: usize, kind: SectionKind) -> Result<CodeSection, ObjError> {
    let data = elf.data(index)?;
    let name = elf.sref(index).name;
    if data.len() % INSN_SIZE != 0 {
        return Err(ObjError::BadCodeSize {
            section: elf.sref(index),
            size: data.len() as u64,
        });
    }
    let slots: Vec<RawInsn> = data
        .chunks_exact(INSN_SIZE)
        .filter_map(|c| <[u8; 8]>::try_from(c).ok())
        .map(RawInsn::from_bytes)
        .collect();
    let len = slots.len();
    let mut starts: Vec<(usize, bool, bool, String)> = Vec::new();
    if len > 0 {
        for s in elf.symbols_in(index) {
            let global = s.bind == STB_GLOBAL || s.bind == STB_WEAK;
            if !(s.kind == STT_FUNC || (s.kind == STT_NOTYPE && global)) {
                continue;
            }
            let start = usize::try_from(s.value)
                .ok()
                .filter(|v| v % INSN_SIZE == 0 && v / INSN_SIZE < len)
                .ok_or_else(|| ObjError::BadSymbol {
                    section: elf.sref(index),
                    symbol: s.name.clone(),
                    offset: s.value,
                })?;
            starts.push((
                start / INSN_SIZE,
                s.kind != STT_FUNC,
                !global,
                s.name.clone(),
            ));
        }
        // One function per start: prefer FUNC, then global symbols.
        starts.sort();
        starts.dedup_by_key(|s| s.0);
        if starts.first().is_none_or(|s| s.0 > 0) {
            starts.insert(0, (0, false, false, name.clone()));
        }
    }
    let mut funcs = Vec::with_capacity(starts.len());
    for (i, (start, _, local, fname)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(len, |n| n.0);
        funcs.push(Func {
            name: fname.clone(),
            start: *start,
            end,
            global: !local,
        });
    }
    Ok(CodeSection {
        index,
        name,
        kind,
        slots,
        funcs,
        fixups: BTreeMap::new(),
        lines: Vec::new(),
        core: Vec::new(),
    })
}

fn reloc_error(elf: &Elf<'_>, sec: &CodeSection, r: &Reloc, kind: RelocErrorKind) -> ObjError {
    ObjError::BadRelocation {
        section: elf.sref(sec.index),
        reloc: r.index,
        offset: r.offset,
        r_type: r.r_type,
        symbol: elf
            .symbols
            .get(r.symbol as usize)
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        kind,
    }
}

/// Checks one relocation of a code section and turns it into a fixup of the slot it patches.
fn resolve(
    elf: &Elf<'_>,
    kinds: &[SectionKind],
    maps: &Maps,
    sizes: &HashMap<usize, usize>,
    sec: &CodeSection,
    r: &Reloc,
) -> Result<(usize, Fixup), ObjError> {
    let bad = |kind| reloc_error(elf, sec, r, kind);
    let size = (sec.slots.len() * INSN_SIZE) as u64;
    if !r.offset.is_multiple_of(INSN_SIZE as u64) || r.offset >= size {
        return Err(bad(RelocErrorKind::BadOffset { size }));
    }
    let slot =
        usize::try_from(r.offset / 8).map_err(|_| bad(RelocErrorKind::BadOffset { size }))?;
    let sym = elf
        .symbols
        .get(r.symbol as usize)
        .filter(|_| r.symbol != 0)
        .ok_or(bad(RelocErrorKind::BadSymbolIndex {
            index: r.symbol,
            count: elf.symbols.len(),
        }))?;
    if !matches!(r.r_type, R_BPF_NONE | R_BPF_64_64 | R_BPF_64_32) {
        return Err(bad(RelocErrorKind::UnknownType(r.r_type)));
    }
    let insn = sec
        .slots
        .get(slot)
        .copied()
        .ok_or(bad(RelocErrorKind::BadOffset { size }))?;
    let is_call = match insn.code {
        OP_LDDW => {
            if slot + 1 >= sec.slots.len() {
                return Err(ObjError::LddwTruncated {
                    section: elf.sref(sec.index),
                    offset: r.offset,
                });
            }
            false
        }
        OP_CALL => true,
        opcode => return Err(bad(RelocErrorKind::NotLddwOrCall { opcode })),
    };
    let target = match sym.section {
        SymSection::Undefined => {
            return Ok((
                slot,
                Fixup::Unresolved {
                    symbol: sym.name.clone(),
                    call: is_call,
                },
            ))
        }
        SymSection::Special(n) => {
            return Err(bad(RelocErrorKind::BadTarget {
                section: usize::from(n),
            }))
        }
        SymSection::Section(s) => s,
    };
    let target_kind = kinds.get(target).copied().unwrap_or(SectionKind::Other);
    let value = i64::try_from(sym.value).unwrap_or(i64::MAX);
    let fixup = if is_call {
        if !matches!(target_kind, SectionKind::Program | SectionKind::Text) {
            return Err(bad(RelocErrorKind::BadTarget { section: target }));
        }
        let byte = value.saturating_add(r.addend.unwrap_or(0));
        let t = (byte / SLOT_BYTES)
            .saturating_add(i64::from(insn.imm))
            .saturating_add(1);
        Fixup::Code {
            section: target,
            target: code_target(sizes, target, byte, t)
                .ok_or(bad(RelocErrorKind::BadCodeTarget { target: t }))?,
            call: true,
        }
    } else {
        let addend = r.addend.unwrap_or(i64::from(insn.imm));
        match target_kind {
            SectionKind::LegacyMaps | SectionKind::BtfMaps => {
                let off = if sym.kind == STT_SECTION {
                    value.saturating_add(addend)
                } else {
                    value
                };
                let map = u64::try_from(off)
                    .ok()
                    .and_then(|o| maps.def_at(target, o))
                    .ok_or(bad(RelocErrorKind::NoMapAt {
                        offset: off.cast_unsigned(),
                    }))?;
                Fixup::Map(map)
            }
            SectionKind::GlobalData => {
                let map = maps
                    .data_map(target)
                    .ok_or(bad(RelocErrorKind::BadTarget { section: target }))?;
                let off = value.saturating_add(addend);
                let offset = i32::try_from(off)
                    .map_err(|_| bad(RelocErrorKind::DataOffsetTooLarge { offset: off }))?;
                Fixup::MapValue { map, offset }
            }
            SectionKind::Program | SectionKind::Text => {
                let byte = value.saturating_add(addend);
                let t = byte / SLOT_BYTES;
                Fixup::Code {
                    section: target,
                    target: code_target(sizes, target, byte, t)
                        .ok_or(bad(RelocErrorKind::BadCodeTarget { target: t }))?,
                    call: false,
                }
            }
            _ => return Err(bad(RelocErrorKind::BadTarget { section: target })),
        }
    };
    Ok((slot, fixup))
}

/// Checks a code target: `byte` (the symbol's offset plus addend) must be 8-aligned and slot `t`
/// inside code section `section`.
fn code_target(sizes: &HashMap<usize, usize>, section: usize, byte: i64, t: i64) -> Option<usize> {
    let len = *sizes.get(&section)?;
    if byte % SLOT_BYTES != 0 {
        return None;
    }
    usize::try_from(t).ok().filter(|&t| t < len)
}

/// Records calls and function addresses that carry no relocation (targets in the same section), and
/// refuses an `lddw` cut in half by the end of the section.
fn local_refs(elf: &Elf<'_>, sec: &mut CodeSection) -> Result<(), ObjError> {
    let len = sec.slots.len();
    let mut i = 0;
    while let Some(insn) = sec.slots.get(i).copied() {
        let is_lddw = insn.code == OP_LDDW;
        if is_lddw && i + 1 >= len {
            return Err(ObjError::LddwTruncated {
                section: elf.sref(sec.index),
                offset: (i * INSN_SIZE) as u64,
            });
        }
        let local = (is_lddw && insn.src == PSEUDO_FUNC)
            || (insn.code == OP_CALL && insn.src == PSEUDO_CALL);
        if local && !sec.fixups.contains_key(&i) {
            let t = i64::try_from(i).map_or(i64::MAX, |i| i + 1 + i64::from(insn.imm));
            let target = usize::try_from(t)
                .ok()
                .filter(|&t| t < len)
                .ok_or_else(|| ObjError::BadLocalCall {
                    section: elf.sref(sec.index),
                    insn: i,
                    target: t,
                })?;
            sec.fixups.insert(
                i,
                Fixup::Code {
                    section: sec.index,
                    target,
                    call: !is_lddw,
                },
            );
        }
        i += if is_lddw { 2 } else { 1 };
    }
    Ok(())
}

/// Hands `.BTF.ext` line info and CO-RE records to the code sections they name (the first section of
/// that name). Line records are kept one per slot (the first), as the kernel requires.
fn attach_ext(code: &mut [CodeSection], ext: &BtfExt) {
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, c) in code.iter().enumerate() {
        by_name.entry(c.name.clone()).or_insert(i);
    }
    for (name, records) in &ext.line_info {
        if let Some(sec) = by_name.get(name).and_then(|&i| code.get_mut(i)) {
            sec.lines.extend(
                records
                    .iter()
                    .filter(|r| (r.insn_off as usize).is_multiple_of(INSN_SIZE))
                    .map(|r| (r.insn_off as usize / INSN_SIZE, r.clone())),
            );
        }
    }
    for (name, offs) in &ext.core_relos {
        if let Some(sec) = by_name.get(name).and_then(|&i| code.get_mut(i)) {
            sec.core
                .extend(offs.iter().map(|&o| o as usize / INSN_SIZE));
        }
    }
    for sec in code.iter_mut() {
        sec.lines.sort_by_key(|l| l.0);
        sec.lines.dedup_by_key(|l| l.0);
        sec.core.sort_unstable();
    }
}

/// Lays out one program: its own function, then every function reached from it, with fixups applied.
fn link(
    code: &[CodeSection],
    pos: &HashMap<usize, usize>,
    root: (usize, usize),
) -> Result<ProgramSpec, ObjError> {
    let (root_sec, root_func) = code
        .get(root.0)
        .and_then(|s| Some((s, s.funcs.get(root.1)?)))
        .ok_or_else(|| ObjError::MissingProgram(String::new()))?;
    let too_large = || ObjError::ProgramTooLarge {
        program: root_func.name.clone(),
        limit: MAX_PROGRAM_SLOTS,
    };
    let mut out: Vec<RawInsn> = Vec::new();
    let mut base_of: HashMap<(usize, usize), usize> = HashMap::new();
    let mut queued: HashSet<(usize, usize)> = HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    let mut pending: Vec<(usize, (usize, usize), usize)> = Vec::new();
    let mut maps_used = BTreeSet::new();
    let mut functions = Vec::new();
    let mut unresolved = Vec::new();
    let mut line_info = Vec::new();
    let mut core_relocations = 0;
    while let Some((ci, fi)) = queue.pop_front() {
        let Some((sec, f)) = code.get(ci).and_then(|s| Some((s, s.funcs.get(fi)?))) else {
            continue;
        };
        let base = out.len();
        if base + (f.end - f.start) > MAX_PROGRAM_SLOTS {
            return Err(too_large());
        }
        base_of.insert((ci, fi), base);
        out.extend_from_slice(sec.slots.get(f.start..f.end).unwrap_or_default());
        functions.push(FunctionSpan {
            name: f.name.clone(),
            start: base,
            len: f.end - f.start,
        });
        for (&s, fix) in sec.fixups.range(f.start..f.end) {
            let pc = base + (s - f.start);
            let lddw_second = |out: &mut Vec<RawInsn>, imm: i32| -> Result<(), ObjError> {
                if s + 1 >= f.end {
                    return Err(ObjError::LddwTruncated {
                        section: crate::error::SectionRef {
                            name: sec.name.clone(),
                            index: sec.index,
                        },
                        offset: (s * INSN_SIZE) as u64,
                    });
                }
                if let Some(next) = out.get_mut(pc + 1) {
                    next.imm = imm;
                }
                Ok(())
            };
            match fix {
                Fixup::Map(m) => {
                    let imm = i32::try_from(*m).map_err(|_| too_large())?;
                    lddw_second(&mut out, 0)?;
                    if let Some(insn) = out.get_mut(pc) {
                        insn.src = PSEUDO_MAP_IDX;
                        insn.imm = imm;
                    }
                    maps_used.insert(*m);
                }
                Fixup::MapValue { map, offset } => {
                    let imm = i32::try_from(*map).map_err(|_| too_large())?;
                    lddw_second(&mut out, *offset)?;
                    if let Some(insn) = out.get_mut(pc) {
                        insn.src = PSEUDO_MAP_IDX_VALUE;
                        insn.imm = imm;
                    }
                    maps_used.insert(*map);
                }
                Fixup::Code {
                    section,
                    target,
                    call,
                } => {
                    let tci = *pos.get(section).ok_or_else(too_large)?;
                    let tfi = code
                        .get(tci)
                        .and_then(|c| c.func_at(*target))
                        .ok_or_else(too_large)?;
                    if queued.insert((tci, tfi)) {
                        queue.push_back((tci, tfi));
                    }
                    pending.push((pc, (tci, tfi), *target));
                    if let Some(insn) = out.get_mut(pc) {
                        insn.src = if *call { PSEUDO_CALL } else { PSEUDO_FUNC };
                    }
                }
                Fixup::Unresolved { symbol, call } => unresolved.push(Unresolved {
                    insn: pc,
                    symbol: symbol.clone(),
                    is_call: *call,
                }),
            }
        }
        let first = sec.lines.partition_point(|l| l.0 < f.start);
        for (slot, r) in sec.lines.iter().skip(first).take_while(|l| l.0 < f.end) {
            line_info.push(LineInfo {
                insn: base + (slot - f.start),
                file: r.file.clone(),
                line: r.line,
                column: r.column,
                text: r.text.clone(),
            });
        }
        let lo = sec.core.partition_point(|&s| s < f.start);
        let hi = sec.core.partition_point(|&s| s < f.end);
        core_relocations += hi.saturating_sub(lo);
    }
    for (pc, func, target) in pending {
        let (Some(&base), Some(start)) = (
            base_of.get(&func),
            code.get(func.0)
                .and_then(|c| c.funcs.get(func.1))
                .map(|f| f.start),
        ) else {
            return Err(too_large());
        };
        let dest = base + (target - start);
        let rel = i64::try_from(dest).map_err(|_| too_large())?
            - i64::try_from(pc + 1).map_err(|_| too_large())?;
        let imm = i32::try_from(rel).map_err(|_| too_large())?;
        if let Some(insn) = out.get_mut(pc) {
            insn.imm = imm;
        }
    }
    let bytecode: Vec<u8> = out.iter().flat_map(|i| i.to_bytes()).collect();
    Ok(ProgramSpec {
        name: root_func.name.clone(),
        section: root_sec.name.clone(),
        section_offset: (root_func.start * INSN_SIZE) as u64,
        insn_count: out.len(),
        bytecode,
        map_indices: maps_used.into_iter().collect(),
        functions,
        unresolved,
        core_relocations,
        line_info,
        context_type: None,
    })
}
