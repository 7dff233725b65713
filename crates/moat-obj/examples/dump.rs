//! Prints what the loader makes of an object (development aid).
use moat_obj::Object;
fn main() {
    let path = std::env::args().nth(1).expect("path");
    let verbose = std::env::args().nth(2).is_some();
    let bytes = std::fs::read(&path).expect("read");
    let obj = Object::parse(&bytes).expect("parse");
    println!(
        "license={:?} version={:?} btf={} ext={}",
        obj.license, obj.kernel_version, obj.has_btf, obj.has_btf_ext
    );
    for (i, m) in obj.maps.iter().enumerate() {
        println!("map {i}: {} {:?} type={} k={} v={} max={} flags={:#x} pin={} inner={:?} slots={:?} data={}B", m.name, m.kind, m.map_type, m.key_size, m.value_size, m.max_entries, m.flags, m.pinning, m.inner_map.as_ref().map(|x| match x { moat_obj::InnerMap::Map(i) => format!("map {i}"), moat_obj::InnerMap::Template(t) => format!("tmpl type={} k={} v={} max={}", t.map_type, t.key_size, t.value_size, t.max_entries)}), m.initial_slots, m.data.len());
    }
    for p in &obj.programs {
        let dec = moat_isa::decode(&p.bytecode);
        println!(
            "prog {} [{}] insns={} maps={:?} funcs={:?} unresolved={} core={} lines={} decode={}",
            p.name,
            p.section,
            p.insn_count,
            p.map_indices,
            p.functions
                .iter()
                .map(|f| (&f.name, f.start, f.len))
                .collect::<Vec<_>>(),
            p.unresolved.len(),
            p.core_relocations,
            p.line_info.len(),
            match &dec {
                Ok(_) => "ok".to_string(),
                Err(e) => e.to_string(),
            }
        );
        if verbose {
            if let Ok(insns) = dec {
                for (pc, insn) in insns {
                    let line = p
                        .line_at(pc)
                        .map(|l| {
                            format!("  // {}:{}:{} {}", l.file, l.line, l.column, l.text.trim())
                        })
                        .unwrap_or_default();
                    println!("  {pc:4}: {}{}", moat_isa::disasm_one(&insn), line);
                }
            }
        }
    }
}
