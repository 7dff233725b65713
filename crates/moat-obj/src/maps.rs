//! Map definitions: legacy `maps`/`maps/*` records, BTF-defined maps in `.maps`, and one array map per
//! global data section. Maps are only described here; creating them is the maps crate's job, and so is
//! deciding which map types exist.

use crate::btf::{Btf, Type};
use crate::elf::{read_u32, Elf, SymSection, STT_FILE, STT_SECTION};
use crate::error::{MapErrorKind, ObjError};
use crate::spec::{InnerMap, MapKind, MapSpec, SectionKind, SlotInit};
use moat_abi::{MapType, BPF_F_RDONLY_PROG};
use std::collections::HashMap;

/// The largest global data section accepted (the kernel's own limit on array values is smaller).
pub(crate) const MAX_DATA_SECTION: u64 = 64 << 20;
/// `value_size × max_entries` above this is refused.
const MAX_MAP_BYTES: u64 = 4 << 30;
/// Smallest legacy record: `type, key_size, value_size, max_entries`.
const MIN_LEGACY_RECORD: u64 = 16;

/// The object's maps and how relocations find them.
#[derive(Debug, Default)]
pub(crate) struct Maps {
    /// All maps, in the order `Object::maps` lists them.
    pub specs: Vec<MapSpec>,
    /// (section index, byte offset) of each legacy or BTF definition → map index.
    defs: HashMap<(usize, u64), usize>,
    /// Global data section index → map index.
    data: HashMap<usize, usize>,
    /// The section index of each map's definition, parallel to `specs`.
    sections: Vec<usize>,
}

impl Maps {
    /// The map defined at `offset` of map section `section`.
    pub fn def_at(&self, section: usize, offset: u64) -> Option<usize> {
        self.defs.get(&(section, offset)).copied()
    }

    /// The map holding global data section `section`.
    pub fn data_map(&self, section: usize) -> Option<usize> {
        self.data.get(&section).copied()
    }

    /// Appends a map defined in section `section`; returns its index.
    fn push(&mut self, m: MapSpec, section: usize) -> usize {
        self.specs.push(m);
        self.sections.push(section);
        self.specs.len() - 1
    }
}

/// What a section is.
pub(crate) fn classify(name: &str, sh_type: u32, flags: u64) -> SectionKind {
    use crate::elf::{SHF_EXECINSTR, SHF_WRITE};
    use object::elf::{SHT_NOBITS, SHT_PROGBITS, SHT_REL, SHT_RELA, SHT_STRTAB, SHT_SYMTAB};
    let data_name = |base: &str| {
        name == base
            || name
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    match sh_type {
        SHT_REL | SHT_RELA => return SectionKind::Relocations,
        SHT_SYMTAB => return SectionKind::Symbols,
        SHT_STRTAB => return SectionKind::Strings,
        _ => {}
    }
    if name.starts_with(".debug") {
        return SectionKind::Debug;
    }
    match name {
        "license" => return SectionKind::License,
        "version" => return SectionKind::Version,
        ".BTF" => return SectionKind::Btf,
        ".BTF.ext" => return SectionKind::BtfExt,
        ".maps" => return SectionKind::BtfMaps,
        _ => {}
    }
    if name == "maps" || name.starts_with("maps/") {
        return SectionKind::LegacyMaps;
    }
    if sh_type == SHT_PROGBITS && flags & SHF_EXECINSTR != 0 {
        return if name == ".text" {
            SectionKind::Text
        } else {
            SectionKind::Program
        };
    }
    if (sh_type == SHT_PROGBITS || sh_type == SHT_NOBITS)
        && (data_name(".data") || data_name(".rodata") || data_name(".bss"))
    {
        return SectionKind::GlobalData;
    }
    // Very old objects: code without `SHF_EXECINSTR`, recognised by its section name.
    if sh_type == SHT_PROGBITS && flags & SHF_WRITE == 0 && moat_abi::section_def(name).is_some() {
        return SectionKind::Program;
    }
    SectionKind::Other
}

/// Reads every map definition of the object.
pub(crate) fn collect(
    elf: &Elf<'_>,
    kinds: &[SectionKind],
    btf: Option<&Btf<'_>>,
) -> Result<Maps, ObjError> {
    let mut maps = Maps::default();
    for (index, kind) in kinds.iter().enumerate() {
        if *kind == SectionKind::LegacyMaps {
            legacy(elf, index, &mut maps)?;
        }
    }
    let legacy_count = maps.specs.len();
    // Resolve legacy inner map indices now that all legacy maps are known.
    for (m, &section) in maps.specs.iter().zip(&maps.sections) {
        if let Some(InnerMap::Map(i)) = m.inner_map {
            if i >= legacy_count {
                return Err(ObjError::BadMap {
                    section: elf.sref(section),
                    map: m.name.clone(),
                    kind: MapErrorKind::BadInnerMap(u32::try_from(i).unwrap_or(u32::MAX)),
                });
            }
        }
    }
    for (index, kind) in kinds.iter().enumerate() {
        if *kind == SectionKind::BtfMaps {
            btf_maps(elf, index, btf, &mut maps)?;
        }
    }
    for (index, kind) in kinds.iter().enumerate() {
        if *kind == SectionKind::GlobalData {
            global_data(elf, index, &mut maps)?;
        }
    }
    for m in &maps.specs {
        check_size(m)?;
    }
    Ok(maps)
}

fn check_size(m: &MapSpec) -> Result<(), ObjError> {
    if u64::from(m.value_size) * u64::from(m.max_entries) > MAX_MAP_BYTES {
        return Err(ObjError::OversizedMap {
            map: m.name.clone(),
            value_size: m.value_size,
            max_entries: m.max_entries,
        });
    }
    if let Some(InnerMap::Template(inner)) = &m.inner_map {
        check_size(inner)?;
    }
    Ok(())
}

/// A map with every field zero, to be filled in.
fn blank(name: String, kind: MapKind, section: &str, offset: u64) -> MapSpec {
    MapSpec {
        name,
        kind,
        map_type: 0,
        key_size: 0,
        value_size: 0,
        max_entries: 0,
        flags: 0,
        pinning: 0,
        numa_node: 0,
        inner_map: None,
        initial_slots: Vec::new(),
        data: Vec::new(),
        legacy_def: Vec::new(),
        section: section.to_string(),
        section_offset: offset,
        key_type: None,
        value_type: None,
        vars: Vec::new(),
    }
}

/// The named, non-section symbols defined in section `index`, sorted by offset, one per offset.
fn symbols_in(elf: &Elf<'_>, index: usize) -> Vec<(u64, String)> {
    let mut syms: Vec<(u64, String)> = elf
        .symbols
        .iter()
        .filter(|s| {
            s.section == SymSection::Section(index)
                && s.kind != STT_SECTION
                && s.kind != STT_FILE
                && !s.name.is_empty()
        })
        .map(|s| (s.value, s.name.clone()))
        .collect();
    syms.sort();
    syms.dedup_by_key(|s| s.0);
    syms
}

/// Legacy `struct bpf_map_def` records (20 or 28 bytes), or longer iproute2 `struct bpf_elf_map` ones.
fn legacy(elf: &Elf<'_>, index: usize, maps: &mut Maps) -> Result<(), ObjError> {
    let data = elf.data(index)?;
    let size = data.len() as u64;
    let syms = symbols_in(elf, index);
    let err = |map: &str, kind| ObjError::BadMap {
        section: elf.sref(index),
        map: map.to_string(),
        kind,
    };
    if syms.is_empty() {
        return if size == 0 {
            Ok(())
        } else {
            Err(err("", MapErrorKind::NoSymbols { size }))
        };
    }
    let count = syms.len();
    let record = size / count as u64;
    if record * count as u64 != size || record < MIN_LEGACY_RECORD || !record.is_multiple_of(4) {
        return Err(err(
            "",
            MapErrorKind::BadRecordSize {
                size,
                count,
                record,
            },
        ));
    }
    let section_name = elf.sref(index).name;
    for (offset, name) in syms {
        let bytes = usize::try_from(offset)
            .ok()
            .filter(|_| offset % record == 0)
            .and_then(|o| Some(o..o.checked_add(usize::try_from(record).ok()?)?))
            .and_then(|r| data.get(r))
            .ok_or_else(|| err(&name, MapErrorKind::BadSymbolOffset { offset }))?;
        let w = |i: usize| read_u32(bytes, i * 4).unwrap_or(0);
        let mut m = blank(name, MapKind::Legacy, &section_name, offset);
        m.map_type = w(0);
        m.key_size = w(1);
        m.value_size = w(2);
        m.max_entries = w(3);
        m.flags = w(4);
        if record == 28 {
            // libbpf / samples/bpf: inner_map_idx, numa_node.
            if matches!(
                MapType::from_u32(m.map_type),
                Some(MapType::ArrayOfMaps | MapType::HashOfMaps)
            ) {
                m.inner_map = Some(InnerMap::Map(w(5) as usize));
            }
            m.numa_node = w(6);
        } else if record >= 32 {
            // iproute2: id, pinning, inner_id, inner_idx.
            m.pinning = w(6);
        }
        m.legacy_def = bytes.to_vec();
        let i = maps.push(m, index);
        maps.defs.insert((index, offset), i);
    }
    Ok(())
}

/// Layout facts about one BTF map definition, for `.rel.maps`.
struct BtfDef {
    map: usize,
    start: u64,
    size: u64,
    values_offset: Option<u64>,
}

/// BTF-defined maps: the variables of the `.maps` DATASEC.
fn btf_maps(
    elf: &Elf<'_>,
    index: usize,
    btf: Option<&Btf<'_>>,
    maps: &mut Maps,
) -> Result<(), ObjError> {
    let section_name = elf.sref(index).name;
    let bad = |map: &str, kind| ObjError::BadMap {
        section: elf.sref(index),
        map: map.to_string(),
        kind,
    };
    let Some(btf) = btf else {
        return if elf.sections.get(index).is_some_and(|s| s.size == 0) {
            Ok(())
        } else {
            Err(bad("", MapErrorKind::MissingBtf))
        };
    };
    let syms = symbols_in(elf, index);
    let mut defs = Vec::new();
    let mut found = false;
    for ty in btf.types() {
        let Type::Datasec { name, vars } = ty else {
            continue;
        };
        if btf.string(*name).ok() != Some(".maps") {
            continue;
        }
        found = true;
        for v in vars {
            let (name, target) = match btf.get(v.type_id) {
                Ok(Type::Var { name, target }) => (*name, *target),
                _ => {
                    return Err(bad(
                        "",
                        MapErrorKind::BadBtfDefinition(format!(
                            "DATASEC entry type {} is not a VAR",
                            v.type_id
                        )),
                    ))
                }
            };
            let name = btf
                .string(name)
                .map_err(|(_, k)| bad("", MapErrorKind::BadBtfDefinition(k.to_string())))?
                .to_string();
            let offset = syms
                .iter()
                .find(|s| s.1 == name)
                .map(|s| s.0)
                .unwrap_or(u64::from(v.offset));
            let mut m = blank(name.clone(), MapKind::Btf, &section_name, offset);
            let layout = btf_def(btf, target, &mut m, 0)
                .map_err(|e| bad(&name, MapErrorKind::BadBtfDefinition(e)))?;
            let i = maps.push(m, index);
            maps.defs.insert((index, offset), i);
            defs.push(BtfDef {
                map: i,
                start: offset,
                size: layout.0,
                values_offset: layout.1,
            });
        }
    }
    if !found && !syms.is_empty() {
        return Err(bad(
            "",
            MapErrorKind::BadBtfDefinition("BTF has no `.maps` DATASEC".to_string()),
        ));
    }
    // A definition with `.values = { ... }` extends past its struct (a flexible array), up to the next
    // definition.
    let section_size = elf.sections.get(index).map_or(0, |s| s.size);
    let mut starts: Vec<u64> = defs.iter().map(|d| d.start).collect();
    starts.sort_unstable();
    for d in defs.iter_mut() {
        let next = starts.iter().find(|&&s| s > d.start).copied();
        d.size = d
            .size
            .max(next.unwrap_or(section_size).saturating_sub(d.start));
    }
    // `.values = { ... }` initialisers are relocations in `.maps`.
    for &rel in elf.reloc_sections_for(index) {
        for r in elf.relocs(rel)? {
            let symbol = elf
                .symbols
                .get(r.symbol as usize)
                .filter(|_| r.symbol != 0)
                .map(|s| s.name.clone())
                .ok_or_else(|| {
                    bad(
                        "",
                        MapErrorKind::BadBtfDefinition(format!(
                            "relocation #{} has bad symbol index {}",
                            r.index, r.symbol
                        )),
                    )
                })?;
            let def = defs
                .iter()
                .find(|d| r.offset >= d.start && r.offset - d.start < d.size);
            let slot = def.and_then(|d| {
                let values = d.start.checked_add(d.values_offset?)?;
                let slot = r.offset.checked_sub(values)? / 8;
                Some((d.map, u32::try_from(slot).ok()?))
            });
            match slot {
                Some((map, slot)) => {
                    if let Some(m) = maps.specs.get_mut(map) {
                        m.initial_slots.push(SlotInit { slot, symbol });
                    }
                }
                None => {
                    return Err(bad(
                        &symbol,
                        MapErrorKind::BadBtfDefinition(format!(
                            "relocation at offset {} is not in a `values` array",
                            r.offset
                        )),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Reads a `__uint(name, val)` field: a pointer to an array of `val` elements.
fn uint_field(btf: &Btf<'_>, type_id: u32, field: &str) -> Result<u32, String> {
    let ptr = btf.skip_aliases(type_id).map_err(|e| e.to_string())?;
    if let Ok(Type::Ptr { target }) = btf.get(ptr) {
        let arr = btf.skip_aliases(*target).map_err(|e| e.to_string())?;
        if let Ok(Type::Array { nelems, .. }) = btf.get(arr) {
            return Ok(*nelems);
        }
    }
    Err(format!(
        "field `{field}` is not an __uint() (pointer to array)"
    ))
}

/// Reads a `__type(name, T)` field: a pointer to `T`; returns `sizeof(T)`.
fn type_field(btf: &Btf<'_>, type_id: u32, field: &str) -> Result<u32, String> {
    let ptr = btf.skip_aliases(type_id).map_err(|e| e.to_string())?;
    match btf.get(ptr) {
        Ok(Type::Ptr { target }) => {
            let size = btf.size_of(*target).map_err(|e| e.to_string())?;
            u32::try_from(size).map_err(|_| format!("field `{field}`: type size {size} too large"))
        }
        _ => Err(format!("field `{field}` is not a __type() (pointer)")),
    }
}

/// Fills `m` from the definition struct `type_id`; returns the struct's size and the byte offset of
/// its `values` member, if any.
fn btf_def(
    btf: &Btf<'_>,
    type_id: u32,
    m: &mut MapSpec,
    depth: u32,
) -> Result<(u64, Option<u64>), String> {
    let sid = btf.skip_aliases(type_id).map_err(|e| e.to_string())?;
    let Ok(Type::Struct { size, members }) = btf.get(sid) else {
        return Err(format!("type {type_id} is not a struct"));
    };
    let mut values_offset = None;
    for member in members {
        let name = btf.string(member.name).map_err(|(_, k)| k.to_string())?;
        let t = member.type_id;
        match name {
            "type" => m.map_type = uint_field(btf, t, name)?,
            "max_entries" => m.max_entries = uint_field(btf, t, name)?,
            "map_flags" => m.flags = uint_field(btf, t, name)?,
            "key_size" => m.key_size = uint_field(btf, t, name)?,
            "value_size" => m.value_size = uint_field(btf, t, name)?,
            "pinning" => m.pinning = uint_field(btf, t, name)?,
            "numa_node" => m.numa_node = uint_field(btf, t, name)?,
            "key" => m.key_size = type_field(btf, t, name)?,
            "value" => m.value_size = type_field(btf, t, name)?,
            "values" => {
                values_offset = Some(u64::from(member.bit_offset / 8));
                let arr = btf.skip_aliases(t).map_err(|e| e.to_string())?;
                let Ok(Type::Array { elem, .. }) = btf.get(arr) else {
                    return Err("field `values` is not an array".to_string());
                };
                let ptr = btf.skip_aliases(*elem).map_err(|e| e.to_string())?;
                let Ok(Type::Ptr { target }) = btf.get(ptr) else {
                    return Err("field `values` is not an array of pointers".to_string());
                };
                let inner = btf.skip_aliases(*target).map_err(|e| e.to_string())?;
                if matches!(btf.get(inner), Ok(Type::Struct { .. })) {
                    if depth > 0 {
                        return Err("inner map definition has its own `values`".to_string());
                    }
                    let mut spec = blank(
                        format!("{}.inner", m.name),
                        MapKind::Btf,
                        &m.section,
                        m.section_offset,
                    );
                    btf_def(btf, inner, &mut spec, depth + 1)?;
                    m.inner_map = Some(InnerMap::Template(Box::new(spec)));
                }
                if m.value_size == 0 {
                    m.value_size = 4;
                }
            }
            _ => {}
        }
    }
    Ok((u64::from(*size), values_offset))
}

/// One array map for a global data section.
fn global_data(elf: &Elf<'_>, index: usize, maps: &mut Maps) -> Result<(), ObjError> {
    let Some(section) = elf.sections.get(index) else {
        return Ok(());
    };
    if section.size == 0 {
        return Ok(());
    }
    let name = section.name.clone();
    if section.size > MAX_DATA_SECTION {
        return Err(ObjError::BadMap {
            section: elf.sref(index),
            map: name,
            kind: MapErrorKind::DataTooLarge {
                size: section.size,
                max: MAX_DATA_SECTION,
            },
        });
    }
    let kind = if name.starts_with(".rodata") {
        MapKind::Rodata
    } else if name.starts_with(".bss") || section.sh_type == object::elf::SHT_NOBITS {
        MapKind::Bss
    } else {
        MapKind::Data
    };
    let data = if section.sh_type == object::elf::SHT_NOBITS {
        vec![0; usize::try_from(section.size).unwrap_or(0)]
    } else {
        elf.data(index)?.to_vec()
    };
    let mut m = blank(name.clone(), kind, &name, 0);
    m.map_type = MapType::Array.as_u32();
    m.key_size = 4;
    // At most MAX_DATA_SECTION (checked above), so it fits.
    m.value_size = u32::try_from(section.size).unwrap_or(u32::MAX);
    m.max_entries = 1;
    if kind == MapKind::Rodata {
        m.flags = BPF_F_RDONLY_PROG;
    }
    m.data = data;
    let i = maps.push(m, index);
    maps.data.insert(index, i);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::elf::{SHT_NOBITS, SHT_PROGBITS, SHT_REL};

    /// Section kinds by name, type and flags.
    fn check(name: &str, sh_type: u32, flags: u64) -> SectionKind {
        classify(name, sh_type, flags)
    }

    #[test]
    fn classifies_sections() {
        const AX: u64 = 0x6;
        const WA: u64 = 0x3;
        assert_eq!(check("xdp", SHT_PROGBITS, AX), SectionKind::Program);
        assert_eq!(check("2/7", SHT_PROGBITS, AX), SectionKind::Program);
        assert_eq!(check(".text", SHT_PROGBITS, AX), SectionKind::Text);
        assert_eq!(check("maps", SHT_PROGBITS, WA), SectionKind::LegacyMaps);
        assert_eq!(
            check("maps/inner", SHT_PROGBITS, WA),
            SectionKind::LegacyMaps
        );
        assert_eq!(check(".maps", SHT_PROGBITS, WA), SectionKind::BtfMaps);
        assert_eq!(
            check(".rodata.str1.1", SHT_PROGBITS, 0x32),
            SectionKind::GlobalData
        );
        assert_eq!(
            check(".data.percpu", SHT_PROGBITS, WA),
            SectionKind::GlobalData
        );
        assert_eq!(check(".bss", SHT_NOBITS, WA), SectionKind::GlobalData);
        assert_eq!(check(".database", SHT_PROGBITS, WA), SectionKind::Other);
        assert_eq!(check(".relxdp", SHT_REL, 0), SectionKind::Relocations);
        assert_eq!(check(".debug_info", SHT_PROGBITS, 0), SectionKind::Debug);
        // Very old objects: a program section without SHF_EXECINSTR, recognised by name.
        assert_eq!(
            check("kprobe/sys_write", SHT_PROGBITS, 0x2),
            SectionKind::Program
        );
        assert_eq!(
            check("kprobe/sys_write", SHT_PROGBITS, WA),
            SectionKind::Other
        );
    }
}
