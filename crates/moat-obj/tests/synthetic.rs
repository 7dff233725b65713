//! Linking and relocation on small synthetic objects, for cases the real objects lack: `lddw` function
//! pointers (`bpf_loop` callbacks, `src = 4`), static sub-programs addressed through the section
//! symbol, global data offsets, several programs in one section, undefined externs.

mod common;

use common::{call, exit, lddw, mov, Builder};
use moat_isa::RawInsn;
use moat_obj::{MapKind, ObjError, Object};
use object::{SectionKind, SymbolKind};

const R_BPF_64_64: u32 = 1;
const R_BPF_64_32: u32 = 10;

/// The raw slots of program `name`.
fn check(obj: &Object, name: &str) -> Vec<RawInsn> {
    obj.program(name).expect("program").raw_insns()
}

/// An object exercising every kind of fixup:
///
/// ```text
/// .text:  cb:     r0 = 0; exit            (static, slots 0-1)
///         helper: r0 = 1; exit            (global, slots 2-3)
/// xdp:    entry:  r2 = cb ll              (lddw → .text section symbol, imm = 0)
///                 call bpf_loop
///                 call helper             (R_BPF_64_32 → helper)
///                 r1 = .data + 4 ll
///                 r1 = my_map ll
///                 call memset             (undefined)
///                 exit
///         prog2:  call +1                 (no relocation: static local_fn in the same section)
///                 exit
///         local_fn: r0 = 2; exit          (static, called: a sub-program)
/// ```
fn fixture() -> Vec<u8> {
    let mut b = Builder::new();
    let text = b.code(".text", &[mov(0, 0), exit(), mov(0, 1), exit()]);
    b.symbol(text, "cb", 0, SymbolKind::Text, false);
    let helper = b.func(text, "helper", 16);
    let text_sym = b.section_symbol(text);
    let data = b.data(".data", &[1, 2, 3, 4, 5, 6, 7, 8], SectionKind::Data);
    let data_sym = b.section_symbol(data);
    let maps = b.data(
        "maps",
        &[2, 0, 0, 0, 4, 0, 0, 0, 8, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0],
        SectionKind::Data,
    );
    let my_map = b.symbol(maps, "my_map", 0, SymbolKind::Data, true);
    let memset = b.undefined("memset");
    let mut code = Vec::new();
    code.extend(lddw(2, 4, 0, 0)); // 0
    code.push(call(0, 181)); // 2
    code.push(call(1, -1)); // 3
    code.extend(lddw(1, 0, 4, 0)); // 4
    code.extend(lddw(1, 0, 0, 0)); // 6
    code.push(call(1, -1)); // 8
    code.push(exit()); // 9
    code.push(call(1, 1)); // 10: prog2
    code.push(exit()); // 11
    code.push(mov(0, 2)); // 12: local_fn
    code.push(exit()); // 13
    let xdp = b.code("xdp", &code);
    b.func(xdp, "entry", 0);
    b.func(xdp, "prog2", 80);
    b.symbol(xdp, "local_fn", 96, SymbolKind::Text, false);
    b.reloc(xdp, 0, text_sym, R_BPF_64_64);
    b.reloc(xdp, 24, helper, R_BPF_64_32);
    b.reloc(xdp, 32, data_sym, R_BPF_64_64);
    b.reloc(xdp, 48, my_map, R_BPF_64_64);
    b.reloc(xdp, 64, memset, R_BPF_64_32);
    b.build()
}

#[test]
fn links_callbacks_calls_data_and_maps() {
    let obj = Object::parse(&fixture()).expect("parses");
    let names: Vec<&str> = obj.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["entry", "prog2"]);
    let maps: Vec<(&str, MapKind)> = obj.maps.iter().map(|m| (m.name.as_str(), m.kind)).collect();
    assert_eq!(
        maps,
        vec![("my_map", MapKind::Legacy), (".data", MapKind::Data)]
    );
    assert_eq!(obj.maps[1].data, vec![1, 2, 3, 4, 5, 6, 7, 8]);

    let p = obj.program("entry").expect("entry");
    let spans: Vec<(&str, usize, usize)> = p
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.start, f.len))
        .collect();
    assert_eq!(
        spans,
        vec![("entry", 0, 10), ("cb", 10, 2), ("helper", 12, 2)]
    );
    let s = check(&obj, "entry");
    assert_eq!(s.len(), 14);
    // Function pointer: src 4, pc 0 + 1 + 9 = 10 (cb).
    assert_eq!((s[0].src, s[0].imm), (4, 9));
    // Helper call untouched.
    assert_eq!((s[2].src, s[2].imm), (0, 181));
    // Local call: src 1, pc 3 + 1 + 8 = 12 (helper).
    assert_eq!((s[3].src, s[3].imm), (1, 8));
    // Global data: src 6, map 1, offset 4.
    assert_eq!((s[4].src, s[4].imm, s[5].imm), (6, 1, 4));
    // Map: src 5, map 0.
    assert_eq!((s[6].src, s[6].imm, s[7].imm), (5, 0, 0));
    assert_eq!(p.map_indices, vec![0, 1]);
    // memset stays as it was, recorded.
    assert_eq!((s[8].src, s[8].imm), (1, -1));
    assert_eq!(p.unresolved.len(), 1);
    assert_eq!(
        (p.unresolved[0].insn, p.unresolved[0].symbol.as_str()),
        (8, "memset")
    );

    // prog2 calls the static local_fn of its own section, which is linked, not a program.
    let q = obj.program("prog2").expect("prog2");
    let spans: Vec<(&str, usize)> = q
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.start))
        .collect();
    assert_eq!(spans, vec![("prog2", 0), ("local_fn", 2)]);
    let s = check(&obj, "prog2");
    assert_eq!((s[0].src, s[0].imm), (1, 1));
    assert_eq!(
        obj.program("local_fn"),
        Err(ObjError::MissingProgram("local_fn".into()))
    );
}

#[test]
fn recursion_and_shared_callees_are_linked_once() {
    // .text: f calls itself and g; g calls f.
    let mut b = Builder::new();
    let text = b.code(
        ".text",
        &[call(1, -1), call(1, 1), exit(), call(1, -4), exit()],
    );
    b.func(text, "f", 0);
    b.func(text, "g", 24);
    let main = b.code("socket", &[call(1, -1), call(1, -1), exit()]);
    let f = b.func(main, "main", 0);
    let _ = f;
    let text_f = b.section_symbol(text);
    // Both calls of main go to f (section symbol + imm: target = 0/8 + imm + 1 = 0).
    b.reloc(main, 0, text_f, R_BPF_64_32);
    b.reloc(main, 8, text_f, R_BPF_64_32);
    // f's first call to itself: section symbol, imm -1 → slot 0.
    b.reloc(text, 0, text_f, R_BPF_64_32);
    let obj = Object::parse(&b.build()).expect("parses");
    let p = obj.program("main").expect("main");
    let spans: Vec<(&str, usize, usize)> = p
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.start, f.len))
        .collect();
    assert_eq!(spans, vec![("main", 0, 3), ("f", 3, 3), ("g", 6, 2)]);
    let s = p.raw_insns();
    let target = |pc: usize| pc as i64 + 1 + i64::from(s[pc].imm);
    assert_eq!(
        [target(0), target(1), target(3), target(4), target(6)],
        [3, 3, 3, 6, 3]
    );
}

#[test]
fn lddw_cut_in_half_is_refused() {
    let mut b = Builder::new();
    let xdp = b.code("xdp", &[mov(0, 0), lddw(1, 0, 0, 0)[0]]);
    b.func(xdp, "cut", 0);
    assert!(matches!(
        Object::parse(&b.build()),
        Err(ObjError::LddwTruncated { offset: 8, .. })
    ));
}

#[test]
fn local_call_outside_the_section_is_refused() {
    let mut b = Builder::new();
    let xdp = b.code("xdp", &[call(1, 5), exit()]);
    b.func(xdp, "p", 0);
    assert!(matches!(
        Object::parse(&b.build()),
        Err(ObjError::BadLocalCall {
            insn: 0,
            target: 6,
            ..
        })
    ));
}

#[test]
fn bss_and_rodata_maps() {
    let mut b = Builder::new();
    b.data(".bss", &[0; 12], SectionKind::UninitializedData);
    b.data(".rodata.cst16", &[7; 16], SectionKind::ReadOnlyData);
    let xdp = b.code("xdp", &[mov(0, 0), exit()]);
    b.func(xdp, "p", 0);
    let obj = Object::parse(&b.build()).expect("parses");
    let maps: Vec<_> = obj
        .maps
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.kind,
                m.value_size,
                m.flags,
                m.data.clone(),
            )
        })
        .collect();
    assert_eq!(
        maps,
        vec![
            (".bss", MapKind::Bss, 12, 0, vec![0; 12]),
            (".rodata.cst16", MapKind::Rodata, 16, 0x80, vec![7; 16]),
        ]
    );
}
