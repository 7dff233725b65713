//! The Linux kernel as a second opinion on the conformance suite (`../shared/conformance/tests`).
//!
//! Every program is loaded into the kernel with `BPF_PROG_LOAD` and run once with `BPF_PROG_TEST_RUN`,
//! and its `r0` and memory are compared with moat's interpreter on the same input. The test prints
//! `skipped: <reason>` and passes when `bpf()` is unusable here.
//!
//! How a conformance program is made to run in the kernel:
//!
//! * The input memory (`-- mem`) lives in the value of a one-element array map rather than in the
//!   packet. The verifier knows a map value's size statically, so the constant-offset loads and stores
//!   of these tests are provably in bounds; packet accesses would need an explicit `data_end` check,
//!   which no conformance program makes. (Passing `-- mem` as the XDP packet instead, with a prologue
//!   `r1 = data; r2 = data_end - data`, gave 260 agreements, 52 rejections "R1 offset is outside of the
//!   packet" and one difference, `mem-len.data`, whose packet had to be padded to 14 bytes.) A prologue `lddw r1, map_value(mem, 0); mov r2, LEN` sets up
//!   the conformance convention (`r1` = address, `r2` = exact length); without `-- mem` it is
//!   `mov r1, 0; mov r2, 0`. The prologue is prepended, so relative jumps, `call local` and code
//!   pointers inside the program are unaffected.
//! * The kernel reports only the low 32 bits of `r0` (`retval` is a `u32`). To compare all 64 bits,
//!   every `exit` of the main function becomes a `ja` to an epilogue at the end of the main function,
//!   `lddw r1, map_value(result, 0); stxdw [r1], r0; exit`, which stores `r0` in a second map. Inserting
//!   the epilogue before the subprograms shifts them, so `call local` and `lddw` code pointers that
//!   cross it are adjusted (jumps never cross a function boundary: the kernel forbids it).
//! * The program type is XDP (the test run needs a packet of at least 14 bytes, a dummy here; helper 5
//!   is `bpf_ktime_get_ns`, as in moat).
//!
//! Each file is classified `agree` (same 64-bit `r0`, same memory afterwards), `kernel rejected`
//! (the verifier refused it) or `differ`. Rejections must be listed in [`REJECTED`] under a category
//! whose verifier message they show, differences in [`DIFFER`] with a reason, and both lists must be
//! exact, so a stale entry fails the test too. The lists were made on Linux 6.18 (x86_64, root).

mod common;
use common::shared_dir;

use moat::{DataFile, Runtime};
use moat_kernel::{
    available, create_map, load_program, KernelError, LoadOptions, Map, MapType, ProgType, BPF_ANY,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Verifier rejections by category: (what the category means, a substring of the verifier's reason
/// every file in it must show, the files).
const REJECTED: &[(&str, &str, &[&str])] = &[
    // The suite expects an out-of-range immediate shift count to be masked (`& 31` or `& 63`), as
    // interpreters and JITs do for register counts; the kernel verifier refuses any immediate count
    // outside `0..width` at load time (`check_alu_op`). Register counts out of range are accepted and
    // agree (`*-reg-high`, `*-reg-neg`).
    (
        "shift by an immediate outside 0..width",
        "invalid shift",
        &[
            "arsh32-imm-high.data",
            "arsh32-imm-neg.data",
            "arsh64-imm-high.data",
            "arsh64-imm-neg.data",
            "lsh32-imm-high.data",
            "lsh32-imm-neg.data",
            "lsh64-imm-high.data",
            "lsh64-imm-neg.data",
            "rsh32-imm-high.data",
            "rsh32-imm-neg.data",
            "rsh64-imm-high.data",
            "rsh64-imm-neg.data",
        ],
    ),
    // `call %reg` (`BPF_CALL | BPF_X`, opcode 0x8d) is in the ISA document but the kernel has no
    // verifier support for it.
    (
        "uses callx, which the kernel verifier does not support",
        "unknown opcode 8d",
        &["callx.data"],
    ),
];

/// Files whose kernel result legitimately differs from moat's, and why. Empty: `r2` is the exact
/// memory length (the memory is a map value, not a padded packet), all 64 bits of `r0` are compared
/// through the epilogue, and the one helper call (`call_unwind_fail.data`, helper 5 =
/// `bpf_ktime_get_ns` in both) has its result overwritten before `exit`.
const DIFFER: &[(&str, &str)] = &[];

fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    files
}

/// What running one file in both engines showed.
#[derive(Debug)]
enum Outcome {
    /// Same `r0` and memory.
    Agree,
    /// The kernel verifier refused the program; the reason line of its log.
    Rejected(String),
    /// Both ran, with different results.
    Differ(String),
}

/// One eBPF instruction slot.
fn insn(opcode: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let [o0, o1] = off.to_le_bytes();
    let [i0, i1, i2, i3] = imm.to_le_bytes();
    [opcode, (src << 4) | dst, o0, o1, i0, i1, i2, i3]
}

const LDDW: u8 = 0x18;
const JA: u8 = 0x05;
const JA32: u8 = 0x06;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const MOV64_IMM: u8 = 0xb7;
const STXDW: u8 = 0x7b;
/// `src` of a `lddw` loading the address of a map value (`BPF_PSEUDO_MAP_VALUE`).
const PSEUDO_MAP_VALUE: u8 = 2;
/// `src` of a `lddw` loading the address of a function (`BPF_PSEUDO_FUNC`).
const PSEUDO_FUNC: u8 = 4;
/// `src` of a `call` to a local function (`BPF_PSEUDO_CALL`).
const PSEUDO_CALL: u8 = 1;

/// `lddw dst, map_value(map_fd, 0)`: two slots.
fn lddw_map_value(dst: u8, map_fd: i32) -> [[u8; 8]; 2] {
    [
        insn(LDDW, dst, PSEUDO_MAP_VALUE, 0, map_fd),
        insn(0, 0, 0, 0, 0),
    ]
}

/// Where a slot's relative target lies, and in which field, if it has one.
enum Rel {
    /// `off` (jumps).
    Off,
    /// `imm` (`ja32`, `call local`, `lddw` code pointers).
    Imm,
}

fn relative(slot: &[u8; 8]) -> Option<Rel> {
    let (opcode, src) = (slot[0], slot[1] >> 4);
    if opcode == LDDW {
        return (src == PSEUDO_FUNC).then_some(Rel::Imm);
    }
    if !matches!(opcode & 0x07, 0x05 | 0x06) {
        return None;
    }
    match opcode & 0xf0 {
        0x80 => (opcode == CALL && src == PSEUDO_CALL).then_some(Rel::Imm),
        0x90 => None,
        _ if opcode == JA32 => Some(Rel::Imm),
        _ => Some(Rel::Off),
    }
}

/// The program rewritten for the kernel: prologue, main function with its exits turned into jumps to
/// the epilogue, epilogue, then the subprograms. `mem` is the descriptor of the memory map and the
/// memory's length; `result_fd` that of the map the epilogue stores `r0` in.
fn rewrite(program: &[u8], mem: Option<(i32, usize)>, result_fd: i32) -> Vec<u8> {
    let mut slots: Vec<[u8; 8]> = program
        .chunks_exact(8)
        .map(|c| c.try_into().expect("8 bytes"))
        .collect();
    // Which slots are instructions (not the second half of a `lddw`), and where subprograms start.
    let mut is_insn = vec![true; slots.len()];
    let mut main_end = slots.len();
    let mut pc = 0;
    while pc < slots.len() {
        let slot = slots[pc];
        if matches!(relative(&slot), Some(Rel::Imm)) && slot[0] != JA32 {
            let imm = i32::from_le_bytes(slot[4..8].try_into().expect("4 bytes"));
            let target = pc as i64 + i64::from(imm) + 1;
            if let Ok(target) = usize::try_from(target) {
                if target > 0 {
                    main_end = main_end.min(target);
                }
            }
        }
        if slot[0] == LDDW {
            if let Some(next) = is_insn.get_mut(pc + 1) {
                *next = false;
            }
            pc += 2;
        } else {
            pc += 1;
        }
    }
    let epilogue: Vec<[u8; 8]> = {
        let [a, b] = lddw_map_value(1, result_fd);
        vec![a, b, insn(STXDW, 1, 0, 0, 0), insn(EXIT, 0, 0, 0, 0)]
    };
    let shift = epilogue.len() as i64;
    let new_pc = |pc: i64| {
        if pc >= main_end as i64 {
            pc + shift
        } else {
            pc
        }
    };
    for pc in 0..slots.len() {
        if !is_insn[pc] {
            continue;
        }
        let slot = &mut slots[pc];
        let p = pc as i64;
        if slot[0] == EXIT && pc < main_end {
            let off = main_end as i64 - p - 1;
            *slot = insn(JA, 0, 0, i16::try_from(off).expect("short program"), 0);
            continue;
        }
        match relative(slot) {
            Some(Rel::Off) => {
                let off = i16::from_le_bytes([slot[2], slot[3]]);
                let target = p + i64::from(off) + 1;
                let adjusted = new_pc(target) - new_pc(p) - 1;
                let adjusted = i16::try_from(adjusted).expect("short program");
                slot[2..4].copy_from_slice(&adjusted.to_le_bytes());
            }
            Some(Rel::Imm) => {
                let imm = i32::from_le_bytes(slot[4..8].try_into().expect("4 bytes"));
                let target = p + i64::from(imm) + 1;
                let adjusted = new_pc(target) - new_pc(p) - 1;
                let adjusted = i32::try_from(adjusted).expect("short program");
                slot[4..8].copy_from_slice(&adjusted.to_le_bytes());
            }
            None => {}
        }
    }
    let prologue: Vec<[u8; 8]> = match mem {
        Some((map_fd, len)) => {
            let [a, b] = lddw_map_value(1, map_fd);
            let len = i32::try_from(len).expect("small memory");
            vec![a, b, insn(MOV64_IMM, 2, 0, 0, len)]
        }
        None => vec![insn(MOV64_IMM, 1, 0, 0, 0), insn(MOV64_IMM, 2, 0, 0, 0)],
    };
    let (main, subprograms) = slots.split_at(main_end);
    prologue
        .iter()
        .chain(main)
        .chain(&epilogue)
        .chain(subprograms)
        .flatten()
        .copied()
        .collect()
}

/// The reason line of a verifier log: the last line that is not a statistics line.
fn reason(log: &str) -> String {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
        })
        .unwrap_or("(empty log)")
        .to_string()
}

/// A one-element array map holding `value`.
fn value_map(value: &[u8]) -> Map {
    let size = u32::try_from(value.len()).expect("small value");
    let map = create_map(MapType::Array, 4, size, 1, 0).expect("creates an array map");
    map.update(&0u32.to_ne_bytes(), value, BPF_ANY)
        .expect("stores the value");
    map
}

fn map_value(map: &Map) -> Vec<u8> {
    map.lookup(&0u32.to_ne_bytes())
        .expect("lookup")
        .expect("array element exists")
}

/// Runs one file in moat and in the kernel.
fn check(path: &Path) -> Outcome {
    let text = std::fs::read_to_string(path).expect("readable");
    let file = DataFile::parse(&text).expect("parses");
    let program = file.program().expect("has a program");

    let rt = Runtime::new();
    let mut moat_mem = file.mem.clone();
    let moat_r0 = rt
        .load_data_file(&file)
        .and_then(|p| p.run(&mut moat_mem))
        .expect("moat runs every conformance program");

    const SENTINEL: u64 = 0x5a5a_5a5a_5a5a_5a5a;
    let result = value_map(&SENTINEL.to_ne_bytes());
    let mem = (!file.mem.is_empty()).then(|| value_map(&file.mem));
    let bytecode = rewrite(
        &program,
        mem.as_ref().map(|m| (m.fd(), file.mem.len())),
        result.fd(),
    );
    let prog = match load_program(&bytecode, &LoadOptions::new(ProgType::Xdp)) {
        Ok(prog) => prog,
        Err(KernelError::Load { log, .. }) => return Outcome::Rejected(reason(&log)),
        Err(e) => panic!("{}: unexpected load error {e}", path.display()),
    };
    let run = prog.test_run(&[0u8; 64], None, 1).expect("test run");
    let kernel_r0 = u64::from_ne_bytes(map_value(&result).try_into().expect("8-byte result value"));
    assert_eq!(
        run.retval,
        kernel_r0 as u32,
        "{}: retval is the low half of the stored r0",
        path.display()
    );
    let kernel_mem = mem.as_ref().map(map_value).unwrap_or_default();
    if kernel_r0 != moat_r0 {
        Outcome::Differ(format!(
            "r0 = {kernel_r0:#x} in the kernel, {moat_r0:#x} in moat"
        ))
    } else if kernel_mem != moat_mem {
        Outcome::Differ(format!(
            "memory {kernel_mem:02x?} in the kernel, {moat_mem:02x?} in moat"
        ))
    } else {
        Outcome::Agree
    }
}

#[test]
fn kernel_agrees_with_moat_on_conformance_programs() {
    if let Err(reason) = available() {
        println!("skipped: {reason}");
        return;
    }
    let Some(shared) = shared_dir() else {
        return;
    };
    let dir = shared.join("conformance/tests");
    let files = data_files(&dir);
    assert_eq!(
        files.len(),
        313,
        "conformance programs in {}",
        dir.display()
    );

    let mut outcomes = BTreeMap::new();
    for path in &files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        outcomes.insert(name, check(path));
    }

    let mut problems = Vec::new();
    let (mut agree, mut rejected, mut differ) = (0, 0, 0);
    for (name, outcome) in &outcomes {
        match outcome {
            Outcome::Agree => agree += 1,
            Outcome::Rejected(why) => {
                rejected += 1;
                match REJECTED
                    .iter()
                    .find(|(_, _, files)| files.contains(&name.as_str()))
                {
                    Some((_, needle, _)) if why.contains(needle) => {}
                    Some((category, needle, _)) => problems.push(format!(
                        "{name}: listed as `{category}`, but the verifier says `{why}` (no `{needle}`)"
                    )),
                    None => problems.push(format!("{name}: unexpected rejection: {why}")),
                }
            }
            Outcome::Differ(how) => {
                differ += 1;
                if !DIFFER.iter().any(|(file, _)| file == name) {
                    problems.push(format!("{name}: unexplained difference: {how}"));
                }
            }
        }
        if !matches!(outcome, Outcome::Agree) {
            println!("{name}: {outcome:?}");
        }
    }
    for (category, _, files) in REJECTED {
        for file in *files {
            if !matches!(outcomes.get(*file), Some(Outcome::Rejected(_))) {
                problems.push(format!(
                    "{file}: listed as rejected (`{category}`) but was {:?}",
                    outcomes.get(*file)
                ));
            }
        }
    }
    for (file, why) in DIFFER {
        if !matches!(outcomes.get(*file), Some(Outcome::Differ(_))) {
            problems.push(format!(
                "{file}: listed as differing ({why}) but was {:?}",
                outcomes.get(*file)
            ));
        }
    }
    println!(
        "kernel: {agree} agree, {rejected} rejected by the kernel verifier, {differ} differ (explained)"
    );
    for (category, _, files) in REJECTED {
        println!("  rejected, {category}: {}", files.len());
    }
    for p in &problems {
        eprintln!("FAIL {p}");
    }
    assert!(problems.is_empty(), "{} problems", problems.len());
}

#[test]
fn rewrite_moves_subprograms_behind_the_epilogue() {
    // mov r0, 1; call local +2 (pc 4); jne r0, 2, +0; exit | lddw r0, code(-5) (pc 0); mov r0, 2; exit
    let slot = |op, dst, src, off, imm| insn(op, dst, src, off, imm);
    let program: Vec<u8> = [
        slot(MOV64_IMM, 0, 0, 0, 1),
        slot(CALL, 0, PSEUDO_CALL, 0, 2),
        slot(0x55, 0, 0, 0, 2),
        slot(EXIT, 0, 0, 0, 0),
        slot(LDDW, 0, PSEUDO_FUNC, 0, -5),
        slot(0, 0, 0, 0, 0),
        slot(MOV64_IMM, 0, 0, 0, 2),
        slot(EXIT, 0, 0, 0, 0),
    ]
    .into_iter()
    .flatten()
    .collect();
    let [m0, m1] = lddw_map_value(1, 7);
    let [r0, r1] = lddw_map_value(1, 9);
    let want: Vec<u8> = [
        m0,
        m1,
        slot(MOV64_IMM, 2, 0, 0, 3),
        slot(MOV64_IMM, 0, 0, 0, 1),
        slot(CALL, 0, PSEUDO_CALL, 0, 6),
        slot(0x55, 0, 0, 0, 2),
        slot(JA, 0, 0, 0, 0),
        r0,
        r1,
        slot(STXDW, 1, 0, 0, 0),
        slot(EXIT, 0, 0, 0, 0),
        slot(LDDW, 0, PSEUDO_FUNC, 0, -9),
        slot(0, 0, 0, 0, 0),
        slot(MOV64_IMM, 0, 0, 0, 2),
        slot(EXIT, 0, 0, 0, 0),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(rewrite(&program, Some((7, 3)), 9), want);
}
