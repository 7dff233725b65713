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

/// Prints an object's programs, maps and sections (as one JSON object with `json`).
pub fn inspect(input: &Input, json: bool) -> Result<()> {
    let obj = input
        .object()?
        .with_context(|| format!("{}: not an ELF object", input.path()))?;
    if json {
        out!("{}", describe_json(input.path(), &obj));
    } else {
        out_raw!("{}", describe(input.path(), &obj));
    }
    Ok(())
}

/// A program type by the name `--type` takes for it.
fn prog_type_name(t: moat::ProgType) -> String {
    use moat::ProgType as P;
    match t {
        P::Buffer => "buffer".into(),
        P::Xdp => "xdp".into(),
        P::SchedCls => "sched_cls".into(),
        P::SocketFilter => "socket_filter".into(),
        P::CgroupSkb => "cgroup_skb".into(),
        P::Tracing => "tracing".into(),
        P::SockOps => "sock_ops".into(),
        P::CgroupSock => "cgroup_sock".into(),
        P::CgroupSockAddr => "cgroup_sock_addr".into(),
        P::LwtIn => "lwt_in".into(),
        P::LwtOut => "lwt_out".into(),
        P::LwtXmit => "lwt_xmit".into(),
        P::CgroupDevice => "cgroup_device".into(),
        P::CgroupSysctl => "cgroup_sysctl".into(),
        P::SkMsg => "sk_msg".into(),
        other => snake_case(&format!("{other:?}")),
    }
}

/// `LegacyMaps` → `legacy_maps`: the names of moat-obj's fieldless kinds in JSON.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// `moat inspect --json`: the fields documented in `moat inspect --help`.
fn describe_json(path: &str, obj: &Object) -> serde_json::Value {
    use serde_json::json;
    let programs: Vec<serde_json::Value> = obj
        .programs
        .iter()
        .map(|p| {
            let maps: Vec<&str> = p
                .map_indices
                .iter()
                .filter_map(|&i| obj.maps.get(i).map(|m| m.name.as_str()))
                .collect();
            let unresolved: Vec<serde_json::Value> = p
                .unresolved
                .iter()
                .map(|u| json!({"symbol": u.symbol, "insn": u.insn, "call": u.is_call}))
                .collect();
            json!({
                "name": p.name,
                "section": p.section,
                "type": moat::ProgType::from_section(&p.section).map(prog_type_name),
                "insns": p.insn_count,
                "tag": hex(&moat::program_tag(&p.bytecode)).replace(' ', ""),
                "maps": maps,
                "core_relocations": p.core_relocations,
                "unresolved": unresolved,
            })
        })
        .collect();
    let maps: Vec<serde_json::Value> = obj
        .maps
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "type": MapType::try_from(m.map_type).ok().map(MapType::name),
                "type_id": m.map_type,
                "key_size": m.key_size,
                "value_size": m.value_size,
                "max_entries": m.max_entries,
                "flags": m.flags,
                "kind": snake_case(&format!("{:?}", m.kind)),
                "pinned_by_name": m.pinning == moat::LIBBPF_PIN_BY_NAME,
            })
        })
        .collect();
    let sections: Vec<serde_json::Value> = obj
        .sections
        .iter()
        .map(|s| {
            json!({
                "index": s.index,
                "name": s.name,
                "kind": snake_case(&format!("{:?}", s.kind)),
                "size": s.size,
            })
        })
        .collect();
    json!({
        "file": path,
        "license": obj.license,
        "kernel_version": obj.kernel_version,
        "btf": obj.has_btf,
        "btf_ext": obj.has_btf_ext,
        "programs": programs,
        "maps": maps,
        "sections": sections,
    })
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
        let ty = moat::ProgType::from_section(&p.section)
            .map_or_else(|| "? (use --type)".to_string(), prog_type_name);
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

/// One instruction of `disasm --json`: `pc`, `text`, and `source` where line info covers it.
fn insn_json(
    pc: usize,
    insn: &moat_isa::Insn,
    source: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut v = serde_json::json!({ "pc": pc, "text": moat_isa::disasm_one(insn) });
    if let Some(source) = source {
        v["source"] = source;
    }
    v
}

/// Disassembles a program (for objects: one or every program, with source lines where known); with
/// `json`, one JSON object as `moat disasm --help` documents.
pub fn disasm(input: &Input, with_pc: bool, program: Option<&str>, json: bool) -> Result<()> {
    let Some(obj) = input.object()? else {
        let bytes = input.bytecode(None)?;
        let insns = moat_isa::decode(&bytes).with_context(|| input.path().to_string())?;
        if json {
            let insns: Vec<_> = insns
                .iter()
                .map(|(pc, i)| insn_json(*pc, i, None))
                .collect();
            let program = serde_json::json!({ "name": null, "section": null, "insns": insns });
            out!(
                "{}",
                serde_json::json!({ "file": input.path(), "programs": [program] })
            );
        } else {
            out_raw!("{}", moat_isa::disasm(&insns, with_pc));
        }
        return Ok(());
    };
    let names: Vec<String> = match program {
        Some(_) => vec![choose_program(&obj, program, input.path())?],
        None => obj.programs.iter().map(|p| p.name.clone()).collect(),
    };
    if json {
        let mut programs = Vec::new();
        for name in names {
            let spec = obj
                .program(&name)
                .with_context(|| input.path().to_string())?;
            let insns = moat_isa::decode(&spec.bytecode)
                .with_context(|| format!("{}: program {}", input.path(), spec.name))?;
            let insns: Vec<_> = insns
                .iter()
                .map(|(pc, i)| {
                    let source = spec.line_at(*pc).filter(|l| l.line > 0).map(|l| {
                        serde_json::json!({
                            "file": &*l.file,
                            "line": l.line,
                            "column": l.column,
                            "text": l.text.trim(),
                        })
                    });
                    insn_json(*pc, i, source)
                })
                .collect();
            programs.push(serde_json::json!({
                "name": spec.name,
                "section": spec.section,
                "insns": insns,
            }));
        }
        out!(
            "{}",
            serde_json::json!({ "file": input.path(), "programs": programs })
        );
        return Ok(());
    }
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

/// A map's contents as read after a run (ring buffers and queues drained), with the C types BTF
/// gives its keys and values.
pub struct MapDump {
    name: String,
    map_type: MapType,
    pooled: bool,
    key_type: Option<moat::CType>,
    value_type: Option<moat::CType>,
    /// One value's size in bytes (for per-CPU maps: one CPU's).
    value_size: usize,
    /// Key and value, for maps with keys (per-CPU values: every CPU's, each padded to 8 bytes).
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Records (ring buffers) or values (queues, stacks), in order.
    items: Vec<Vec<u8>>,
}

/// A map with its name and the C types BTF gives its keys and values.
pub type TypedMap = (String, Arc<Map>, Option<moat::CType>, Option<moat::CType>);

/// Whether maps of type `t` keep one value per CPU.
fn is_per_cpu(t: MapType) -> bool {
    matches!(
        t,
        MapType::PercpuArray | MapType::PercpuHash | MapType::LruPercpuHash
    )
}

/// Reads every map.
pub fn collect_maps(maps: Vec<TypedMap>) -> Vec<MapDump> {
    maps.into_iter()
        .map(|(name, map, key_type, value_type)| {
            let t = map.map_type();
            let mut dump = MapDump {
                name,
                map_type: t,
                pooled: moat::PoolBackend::of(&map).is_some(),
                key_type,
                value_type,
                value_size: map.def().value_size as usize,
                entries: Vec::new(),
                items: Vec::new(),
            };
            match t {
                MapType::RingBuf => {
                    let _ = map.ringbuf_consume(&mut |r| dump.items.push(r.to_vec()));
                }
                MapType::PerfEventArray => {
                    map.perf_consume(&mut |_, r| dump.items.push(r.to_vec()));
                }
                MapType::Queue | MapType::Stack => {
                    while let Ok(v) = map.pop() {
                        dump.items.push(v);
                    }
                }
                _ => {
                    // Arrays have every index: only the elements a program wrote are shown.
                    let array = matches!(t, MapType::Array | MapType::PercpuArray);
                    dump.entries = map
                        .keys()
                        .filter_map(|k| map.lookup(&k).ok().map(|v| (k, v)))
                        .filter(|(_, v)| !array || v.iter().any(|&b| b != 0))
                        .collect();
                }
            }
            dump
        })
        .collect()
}

impl MapDump {
    /// `bytes` as the C type, when BTF gives one of exactly that size.
    fn decoded(ty: Option<&moat::CType>, bytes: &[u8]) -> Option<String> {
        let ty = ty?;
        (ty.size() as usize == bytes.len()).then(|| ty.format(bytes))
    }

    /// A per-CPU map's value split by CPU: each CPU's slot is `value_size` rounded up to 8 bytes,
    /// of which the first `value_size` are the value. `None` for other maps.
    fn per_cpu<'v>(&self, value: &'v [u8]) -> Option<Vec<&'v [u8]>> {
        if !is_per_cpu(self.map_type) || self.value_size == 0 {
            return None;
        }
        let stride = self.value_size.next_multiple_of(8);
        Some(
            value
                .chunks(stride)
                .map(|c| c.get(..self.value_size).unwrap_or(c))
                .collect(),
        )
    }

    /// The dump as JSON: `name`, `type`, `pooled`, and `entries` (`key`, `value` in hex, `key_c`,
    /// `value_c` decoded through BTF where the object has it; for per-CPU maps `values` instead of
    /// `value`: one `{cpu, value, value_c}` per CPU) or `records`/`values` (hex).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let mut v = json!({
            "name": self.name,
            "type": self.map_type.name(),
            "pooled": self.pooled,
        });
        match self.map_type {
            MapType::RingBuf | MapType::PerfEventArray | MapType::Queue | MapType::Stack => {
                let field = if matches!(self.map_type, MapType::RingBuf | MapType::PerfEventArray) {
                    "records"
                } else {
                    "values"
                };
                v[field] = self.items.iter().map(|i| json!(hex(i))).collect();
            }
            _ => {
                v["entries"] = self
                    .entries
                    .iter()
                    .map(|(k, val)| {
                        let value = |cpu: Option<usize>, bytes: &[u8]| {
                            let mut v = json!({ "value": hex(bytes) });
                            if let Some(cpu) = cpu {
                                v["cpu"] = json!(cpu);
                            }
                            if let Some(c) = Self::decoded(self.value_type.as_ref(), bytes) {
                                v["value_c"] = json!(c);
                            }
                            v
                        };
                        let mut e = match self.per_cpu(val) {
                            Some(cpus) => {
                                let values: Vec<_> = cpus
                                    .iter()
                                    .enumerate()
                                    .map(|(cpu, b)| value(Some(cpu), b))
                                    .collect();
                                json!({ "values": values })
                            }
                            None => value(None, val),
                        };
                        e["key"] = json!(hex(k));
                        if let Some(kc) = Self::decoded(self.key_type.as_ref(), k) {
                            e["key_c"] = json!(kc);
                        }
                        e
                    })
                    .collect();
            }
        }
        v
    }

    /// Prints the dump for people: hex, then the C values where BTF gives them; per-CPU values
    /// one CPU a line.
    pub fn print(&self) {
        let t = self.map_type.name();
        match self.map_type {
            MapType::RingBuf | MapType::PerfEventArray => {
                out!("map {} ({t}, {} records):", self.name, self.items.len());
                self.items.iter().for_each(|r| out!("  {}", hex(r)));
            }
            MapType::Queue | MapType::Stack => {
                out!("map {} ({t}, {} values):", self.name, self.items.len());
                self.items.iter().for_each(|v| out!("  {}", hex(v)));
            }
            _ => {
                let pooled = if self.pooled { " in the pool" } else { "" };
                out!(
                    "map {} ({t}{pooled}, {} entries):",
                    self.name,
                    self.entries.len()
                );
                let with_c = |bytes: &[u8], ty: Option<&moat::CType>| match Self::decoded(ty, bytes)
                {
                    Some(c) => format!("{}    ({c})", hex(bytes)),
                    None => hex(bytes),
                };
                for (k, v) in &self.entries {
                    if let Some(cpus) = self.per_cpu(v) {
                        out!("  {}:", with_c(k, self.key_type.as_ref()));
                        for (cpu, value) in cpus.iter().enumerate() {
                            out!("    cpu {cpu}: {}", with_c(value, self.value_type.as_ref()));
                        }
                        continue;
                    }
                    let key_c = Self::decoded(self.key_type.as_ref(), k);
                    let value_c = Self::decoded(self.value_type.as_ref(), v);
                    match (key_c, value_c) {
                        (None, None) => out!("  {} => {}", hex(k), hex(v)),
                        (kc, vc) => out!(
                            "  {} => {}    ({} => {})",
                            hex(k),
                            hex(v),
                            kc.unwrap_or_else(|| hex(k)),
                            vc.unwrap_or_else(|| hex(v))
                        ),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(map_type: MapType, value_size: usize) -> MapDump {
        MapDump {
            name: "m".into(),
            map_type,
            pooled: false,
            key_type: None,
            value_type: None,
            value_size,
            entries: Vec::new(),
            items: Vec::new(),
        }
    }

    /// Per-CPU values are split at 8-byte slots, each cut to the value size.
    #[test]
    fn per_cpu_values_split_by_cpu() {
        let bytes: Vec<u8> = (1..=16).collect();
        type Case<'a> = (MapType, usize, Option<Vec<&'a [u8]>>);
        let cases: [Case<'_>; 4] = [
            (
                MapType::PercpuArray,
                8,
                Some(vec![&bytes[..8], &bytes[8..]]),
            ),
            (
                MapType::PercpuHash,
                4,
                Some(vec![&bytes[..4], &bytes[8..12]]),
            ),
            (MapType::LruPercpuHash, 16, Some(vec![&bytes[..]])),
            (MapType::Hash, 8, None),
        ];
        for (t, size, want) in cases {
            assert_eq!(dump(t, size).per_cpu(&bytes), want, "{t:?} {size}");
        }
    }

    /// `inspect` names each program type as `--type` takes it.
    #[test]
    fn type_names_parse_back() {
        use moat::ProgType as P;
        for t in [
            P::Buffer,
            P::Xdp,
            P::SchedCls,
            P::SocketFilter,
            P::CgroupSkb,
            P::Tracing,
            P::SockOps,
            P::CgroupSock,
            P::CgroupSockAddr,
            P::LwtIn,
            P::LwtOut,
            P::LwtXmit,
            P::CgroupDevice,
            P::CgroupSysctl,
            P::SkMsg,
        ] {
            assert_eq!(P::parse(&prog_type_name(t)), Ok(t));
        }
    }

    #[test]
    fn kinds_are_snake_case() {
        for (name, want) in [
            ("LegacyMaps", "legacy_maps"),
            ("Btf", "btf"),
            ("BtfExt", "btf_ext"),
        ] {
            assert_eq!(snake_case(name), want);
        }
    }
}
