//! What the CLI prints about objects and maps: `inspect`, `disasm` of objects, `--dump-maps`.

use crate::input::{choose_program, Input};
use anyhow::{Context, Result};
use moat::{Map, MapType, Object};
use std::fmt::Write;
use std::sync::Arc;

fn map_type_name(t: u32) -> String {
    MapType::try_from(t).map_or_else(|_| format!("type {t}"), |t| t.name().to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints an object's programs, maps and sections.
pub fn inspect(input: &Input) -> Result<()> {
    let obj = input
        .object()?
        .with_context(|| format!("{}: not an ELF object", input.path()))?;
    out_raw!("{}", describe(input.path(), &obj));
    Ok(())
}

fn describe(path: &str, obj: &Object) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "object {path}: license {}, BTF {}, BTF.ext {}{}",
        obj.license.as_deref().unwrap_or("none"),
        if obj.has_btf { "yes" } else { "no" },
        if obj.has_btf_ext { "yes" } else { "no" },
        obj.kernel_version
            .map_or(String::new(), |v| format!(", kernel version 0x{v:x}")),
    );
    let _ = writeln!(out, "programs ({}):", obj.programs.len());
    for p in &obj.programs {
        let ty = moat::ProgType::from_section(&p.section).map_or_else(
            || "? (use --type)".to_string(),
            |t| format!("{t:?}").to_lowercase(),
        );
        let maps: Vec<&str> = p
            .map_indices
            .iter()
            .filter_map(|&i| obj.maps.get(i).map(|m| m.name.as_str()))
            .collect();
        let _ = write!(
            out,
            "  {:<24} section {:<20} type {:<14} {:>6} insns  tag {}",
            p.name,
            p.section,
            ty,
            p.insn_count,
            hex(&moat::program_tag(&p.bytecode)).replace(' ', "")
        );
        if !maps.is_empty() {
            let _ = write!(out, "  maps: {}", maps.join(", "));
        }
        if p.core_relocations > 0 {
            let _ = write!(out, "  CO-RE relocations: {}", p.core_relocations);
        }
        if !p.unresolved.is_empty() {
            let names: Vec<String> = p
                .unresolved
                .iter()
                .map(|u| format!("{}@{}", u.symbol, u.insn))
                .collect();
            let _ = write!(out, "  unresolved: {}", names.join(", "));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "maps ({}):", obj.maps.len());
    for m in &obj.maps {
        let _ = writeln!(
            out,
            "  {:<24} {:<16} key {:>4}  value {:>6}  max_entries {:>8}  flags 0x{:x}  ({:?}{})",
            m.name,
            map_type_name(m.map_type),
            m.key_size,
            m.value_size,
            m.max_entries,
            m.flags,
            m.kind,
            if m.pinning == moat::LIBBPF_PIN_BY_NAME {
                ", pinned by name: in the pool with --pool"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(out, "sections ({}):", obj.sections.len());
    for s in &obj.sections {
        let _ = writeln!(
            out,
            "  [{:>3}] {:<32} {:<12} {:>8} bytes",
            s.index,
            s.name,
            format!("{:?}", s.kind),
            s.size
        );
    }
    out
}

/// Disassembles a program (for objects: one or every program, with source lines where known).
pub fn disasm(input: &Input, with_pc: bool, program: Option<&str>) -> Result<()> {
    let Some(obj) = input.object()? else {
        let bytes = input.bytecode(None)?;
        let insns = moat_isa::decode(&bytes).with_context(|| input.path().to_string())?;
        out_raw!("{}", moat_isa::disasm(&insns, with_pc));
        return Ok(());
    };
    let names: Vec<String> = match program {
        Some(_) => vec![choose_program(&obj, program, input.path())?],
        None => obj.programs.iter().map(|p| p.name.clone()).collect(),
    };
    for name in names {
        let spec = obj
            .program(&name)
            .with_context(|| input.path().to_string())?;
        out!("{}:  # section {}", spec.name, spec.section);
        let insns = moat_isa::decode(&spec.bytecode)
            .with_context(|| format!("{}: program {}", input.path(), spec.name))?;
        let mut last_line = None;
        for (pc, insn) in &insns {
            if let Some(line) = spec.line_info.iter().find(|l| l.insn == *pc && l.line > 0) {
                if last_line != Some((line.file.clone(), line.line)) {
                    out!("    # {}:{}: {}", line.file, line.line, line.text.trim());
                    last_line = Some((line.file.clone(), line.line));
                }
            }
            let text = moat_isa::disasm_one(insn);
            if with_pc {
                out!("{pc:5}: {text}");
            } else {
                out!("    {text}");
            }
        }
    }
    Ok(())
}

/// Prints every map's contents (ring buffers and queues are drained; pool maps are marked).
pub fn dump_maps(maps: Vec<(String, Arc<Map>)>) {
    for (name, map) in maps {
        let t = map.map_type();
        match t {
            MapType::RingBuf => {
                let mut records = Vec::new();
                let _ = map.ringbuf_consume(&mut |r| records.push(hex(r)));
                out!("map {name} ({}, {} records):", t.name(), records.len());
                for r in records {
                    out!("  {r}");
                }
            }
            MapType::Queue | MapType::Stack => {
                let mut values = Vec::new();
                while let Ok(v) = map.pop() {
                    values.push(hex(&v));
                }
                out!("map {name} ({}, {} values):", t.name(), values.len());
                for v in values {
                    out!("  {v}");
                }
            }
            _ => {
                let entries: Vec<(Vec<u8>, Vec<u8>)> = map
                    .keys()
                    .filter_map(|k| map.lookup(&k).ok().map(|v| (k, v)))
                    .filter(|(_, v)| t != MapType::Array || v.iter().any(|&b| b != 0))
                    .collect();
                let pooled = if moat::PoolBackend::of(&map).is_some() {
                    " in the pool"
                } else {
                    ""
                };
                out!(
                    "map {name} ({}{pooled}, {} entries):",
                    t.name(),
                    entries.len()
                );
                for (k, v) in entries {
                    out!("  {} => {}", hex(&k), hex(&v));
                }
            }
        }
    }
}
