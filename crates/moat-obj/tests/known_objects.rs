//! Specific facts about a few well-known real objects: program names and sections, map specs, linking,
//! line info. Each test skips (passes, saying so) when the shared objects folder is missing.

mod common;

use moat_abi::{MapType, BPF_F_RDONLY_PROG};
use moat_isa::{decode, CallTarget, Insn, LddwKind};
use moat_obj::{InnerMap, MapKind, MapSpec, Object};

/// Loads `rel` from the shared objects, or `None` if they are missing.
fn check(rel: &str) -> Option<Object> {
    let bytes = common::real(rel)?;
    Some(Object::parse(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}")))
}

/// The fields of a map spec that tests compare: (name, kind, type name, key, value, max_entries,
/// flags).
fn shape(m: &MapSpec) -> (&str, MapKind, &str, u32, u32, u32, u32) {
    (
        m.name.as_str(),
        m.kind,
        MapType::from_u32(m.map_type).map_or("?", MapType::name),
        m.key_size,
        m.value_size,
        m.max_entries,
        m.flags,
    )
}

/// The `lddw` instructions of a program, as (pc, kind, imm, next_imm).
fn lddws(p: &moat_obj::ProgramSpec) -> Vec<(usize, LddwKind, i32, i32)> {
    decode(&p.bytecode)
        .expect("decodes")
        .into_iter()
        .filter_map(|(pc, i)| match i {
            Insn::LoadImm64 {
                kind,
                imm,
                next_imm,
                ..
            } => Some((pc, kind, imm, next_imm)),
            _ => None,
        })
        .collect()
}

#[test]
fn new_linux_sockex1_has_btf_map_and_line_info() {
    let Some(obj) = check("new_linux/sockex1_kern.o") else {
        return;
    };
    assert_eq!(obj.license.as_deref(), Some("GPL"));
    assert!(obj.has_btf && obj.has_btf_ext);
    assert_eq!(obj.maps.len(), 1);
    assert_eq!(
        shape(&obj.maps[0]),
        ("my_map", MapKind::Btf, "array", 4, 8, 256, 0)
    );
    let p = obj.program("bpf_prog1").expect("program");
    assert_eq!(p.section, "socket1");
    assert_eq!(p.insn_count, 15);
    assert_eq!(p.map_indices, vec![0]);
    assert_eq!(lddws(p), vec![(7, LddwKind::MapIdx, 0, 0)]);
    // Every instruction has a source position, and the map lookup names its C line.
    assert!(p.line_info.len() > 5);
    let line = p.line_at(7).expect("line info at the lddw");
    assert!(line.file.ends_with("sockex1_kern.c"), "{}", line.file);
    assert_eq!(line.line, 24);
    assert!(
        line.text.contains("bpf_map_lookup_elem(&my_map"),
        "{}",
        line.text
    );
}

#[test]
fn legacy_sockex3_programs_by_section_and_global_symbol() {
    let Some(obj) = check("linux/sockex3_kern.o") else {
        return;
    };
    let names: Vec<(&str, &str)> = obj
        .programs
        .iter()
        .map(|p| (p.name.as_str(), p.section.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("bpf_func_PARSE_IP", "socket/3"),
            ("bpf_func_PARSE_IPV6", "socket/4"),
            ("bpf_func_PARSE_VLAN", "socket/1"),
            ("bpf_func_PARSE_MPLS", "socket/2"),
            ("main_prog", "socket/0"),
        ]
    );
    let maps: Vec<_> = obj.maps.iter().map(shape).collect();
    assert_eq!(
        maps,
        vec![
            ("jmp_table", MapKind::Legacy, "prog_array", 4, 4, 8, 0),
            ("percpu_map", MapKind::Legacy, "array", 4, 16, 32, 0),
            ("hash_map", MapKind::Legacy, "hash", 16, 16, 1024, 0),
        ]
    );
    assert!(!obj.has_btf);
    assert!(obj.programs.iter().all(|p| p.line_info.is_empty()));
}

#[test]
fn ovs_sections_without_symbols_are_named_by_section() {
    let Some(obj) = check("ovs/datapath.o") else {
        return;
    };
    assert_eq!(obj.programs.len(), 19);
    let tail3 = obj.program("tail-3").expect("tail-3");
    assert_eq!(tail3.name, "tail-3");
    assert_eq!(tail3.section, "tail-3");
    // Relocation type 0 (very old LLVM) still resolves to maps.
    assert_eq!(tail3.map_indices, vec![2, 6, 7, 8]);
    assert_eq!(
        obj.map("tailcalls").map(|m| m.map_type),
        Some(MapType::ProgArray.as_u32())
    );
    assert_eq!(obj.license.as_deref(), Some("GPL"));
}

#[test]
fn falco_memset_calls_are_recorded_not_refused() {
    let Some(obj) = check("falco/probe.o") else {
        return;
    };
    assert_eq!(obj.programs.len(), 95);
    let with_memset = obj
        .programs
        .iter()
        .filter(|p| {
            p.unresolved
                .iter()
                .any(|u| u.symbol == "memset" && u.is_call)
        })
        .count();
    assert_eq!(with_memset, 81);
}

#[test]
fn cilium_tail_call_sections_and_iproute2_maps() {
    let Some(obj) = check("cilium/bpf_lb.o") else {
        return;
    };
    let p = obj.program("2/1").expect("by section name");
    assert_eq!(p.name, "__send_drop_notify");
    assert_eq!(
        obj.map("cilium_calls_111").map(|m| m.map_type),
        Some(MapType::ProgArray.as_u32())
    );
    assert_eq!(obj.maps.len(), 16);
    assert!(obj.maps.iter().all(|m| m.legacy_def.len() == 28));
    let Some(dsr) = check("cilium/bpf_xdp_dsr_linux.o") else {
        return;
    };
    // 36-byte iproute2 records: pinning is PIN_GLOBAL_NS.
    assert_eq!(dsr.map("cilium_lxc").map(|m| m.pinning), Some(2));
}

#[test]
fn bpf2bpf_links_text_functions_after_the_caller() {
    let Some(obj) = check("build/bpf2bpf.o") else {
        return;
    };
    assert_eq!(obj.programs.len(), 1);
    let p = obj.program("func").expect("func");
    let spans: Vec<(&str, usize, usize)> = p
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.start, f.len))
        .collect();
    assert_eq!(
        spans,
        vec![("func", 0, 37), ("add2", 37, 8), ("add1", 45, 13)]
    );
    let calls: Vec<(usize, i64)> = decode(&p.bytecode)
        .expect("decodes")
        .into_iter()
        .filter_map(|(pc, i)| match i {
            Insn::Call(CallTarget::Local(_)) => Some((pc, i.branch_target(pc)?)),
            _ => None,
        })
        .collect();
    assert_eq!(calls, vec![(7, 37), (9, 37), (41, 45), (43, 45)]);
}

#[test]
fn global_data_becomes_array_maps_with_value_offsets() {
    let Some(obj) = check("build/global_variable.o") else {
        return;
    };
    let maps: Vec<_> = obj.maps.iter().map(shape).collect();
    assert_eq!(
        maps,
        vec![
            (".bss", MapKind::Bss, "array", 4, 8, 1, 0),
            (
                ".rodata",
                MapKind::Rodata,
                "array",
                4,
                4,
                1,
                BPF_F_RDONLY_PROG
            ),
            (".data", MapKind::Data, "array", 4, 40, 1, 0),
        ]
    );
    assert_eq!(obj.maps[0].data, vec![0; 8]);
    let p = &obj.programs[0];
    assert!(lddws(p)
        .iter()
        .all(|(_, kind, imm, _)| *kind == LddwKind::MapIdxValue && (0..3).contains(imm)));
}

#[test]
fn map_in_map_btf_template_and_values() {
    let Some(obj) = check("build/map_in_map.o") else {
        return;
    };
    let outer = obj.map("array_of_maps").expect("outer");
    assert_eq!(outer.map_type, MapType::ArrayOfMaps.as_u32());
    let Some(InnerMap::Template(inner)) = &outer.inner_map else {
        panic!("no inner template: {outer:?}");
    };
    assert_eq!(
        (inner.map_type, inner.key_size, inner.value_size),
        (MapType::Array.as_u32(), 4, 4)
    );
    assert_eq!(outer.initial_slots.len(), 1);
    assert_eq!(outer.initial_slots[0].symbol, "inner_map");
    let Some(legacy) = check("build/map_in_map_legacy.o") else {
        return;
    };
    assert_eq!(
        legacy
            .map("array_of_maps")
            .and_then(|m| m.inner_map.clone()),
        Some(InnerMap::Map(1))
    );
}

#[test]
fn text_only_objects_expose_their_global_functions() {
    let Some(obj) = check("build/prog_array.o") else {
        return;
    };
    let names: Vec<&str> = obj.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["func0", "func1", "func2", "func3", "func"]);
    let slots: Vec<(u32, &str)> = obj.maps[0]
        .initial_slots
        .iter()
        .map(|s| (s.slot, s.symbol.as_str()))
        .collect();
    assert_eq!(
        slots,
        vec![(0, "func0"), (1, "func1"), (2, "func2"), (3, "func3")]
    );
}

#[test]
fn core_relocations_are_counted() {
    let Some(obj) = check("cilium-examples/tcprtt_bpf_bpfel.o") else {
        return;
    };
    let p = obj.program("tcp_close").expect("tcp_close");
    assert_eq!(p.section, "fentry/tcp_close");
    assert_eq!(p.core_relocations, 6);
}
