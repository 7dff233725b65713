//! `moat jit-dump` shows the code `moat run` executes (issue 20, item 6). It used to compile with
//! the verifier off, so the dump kept the instruction-budget counter (`sub r12, n; jb` at every
//! block's head) and every bounds check, and printed jump targets as absolute host addresses. Now
//! it verifies as `run` does (`--no-verify` keeps the old code), prints each eBPF instruction's
//! code under `; pc N: <instruction>` with branch targets as `pc N` labels, and has `--json`.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const JIT: bool = cfg!(all(target_arch = "x86_64", target_os = "linux"));

fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("moat runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `moat jit-dump --json` of `args`, parsed.
fn dump_json(args: &[&str]) -> Value {
    let mut all = vec!["jit-dump", "--json"];
    all.extend_from_slice(args);
    let out = moat(&all);
    assert!(out.status.success(), "{all:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{all:?}: not JSON ({e})"))
}

/// Every native instruction's text, in code order (entry, instructions, stubs), whitespace
/// collapsed.
fn native_texts(v: &Value) -> Vec<String> {
    let natives = |list: &Value| -> Vec<String> {
        list.as_array()
            .expect("an array")
            .iter()
            .map(|n| {
                let text = n["text"].as_str().expect("a text");
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect()
    };
    let mut texts = natives(&v["entry"]);
    for insn in v["insns"].as_array().expect("insns") {
        texts.extend(natives(&insn["native"]));
    }
    texts.extend(natives(&v["stubs"]));
    texts
}

/// The budget counter as the JIT emits it (`moat-jit`'s `Emitter::budget`): `sub r12, n` and a
/// `jb` to the budget stub.
fn budget_counters(texts: &[String]) -> usize {
    texts
        .windows(2)
        .filter(|w| w[0].starts_with("sub r12,") && w[1].starts_with("jb "))
        .count()
}

#[test]
fn verified_dump_has_no_budget_counter() {
    if !JIT {
        assert!(!moat(&["jit-dump", "examples/c/counter.o"]).status.success());
        return;
    }
    let verified = dump_json(&["examples/c/counter.o"]);
    let unverified = dump_json(&["examples/c/counter.o", "--no-verify"]);
    assert_eq!(verified["verified"], true);
    assert_eq!(unverified["verified"], false);
    assert_eq!(verified["program"], "count_packets");
    let (v, u) = (native_texts(&verified), native_texts(&unverified));
    assert!(
        budget_counters(&u) > 0,
        "unverified code counts a budget:\n{u:#?}"
    );
    assert_eq!(budget_counters(&v), 0, "verified code counts none:\n{v:#?}");
}

#[test]
fn json_has_every_instruction_with_its_native_code() {
    if !JIT {
        return;
    }
    let v = dump_json(&["examples/c/counter.o"]);
    let insns = v["insns"].as_array().expect("insns");
    // Same instructions as `moat disasm --pc` lists.
    let disasm = stdout(&moat(&["disasm", "--pc", "examples/c/counter.o"]));
    let listed: Vec<u64> = disasm
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(pc, _)| pc.trim().parse().ok())
        .collect();
    let dumped: Vec<u64> = insns
        .iter()
        .map(|i| i["pc"].as_u64().expect("pc"))
        .collect();
    assert_eq!(dumped, listed);
    for insn in insns {
        assert!(!insn["ebpf"].as_str().expect("ebpf").is_empty(), "{insn}");
        for n in insn["native"].as_array().expect("native") {
            assert!(n["offset"].is_u64(), "{n}");
            let bytes = n["bytes"].as_str().expect("bytes");
            assert!(!bytes.is_empty() && bytes.len() % 2 == 0, "{n}");
            assert!(bytes.chars().all(|c| c.is_ascii_hexdigit()), "{n}");
        }
    }
    assert!(!v["entry"].as_array().expect("entry").is_empty());
    let stubs = v["stubs"].as_array().expect("stubs");
    assert!(stubs.iter().any(|n| n["stub_for"] == 0), "{v}");
}

#[test]
fn branch_targets_are_labels_not_addresses() {
    if !JIT {
        return;
    }
    for extra in [None, Some("--no-verify")] {
        let mut args = vec!["jit-dump", "examples/c/counter.o"];
        args.extend(extra);
        let out = moat(&args);
        assert!(out.status.success(), "{out:?}");
        let text = stdout(&out);
        // Each eBPF instruction is announced with its disassembly.
        assert!(text.contains("; pc 0: ldxw %r6, [%r1+4]"), "{text}");
        let (mut jumps_to_pc, mut jumps_to_stubs) = (0, 0);
        for line in text.lines().filter(|l| !l.starts_with(';')) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(mnemonic) = fields.get(2) else {
                continue;
            };
            if mnemonic.starts_with('j') {
                let target = fields[3..].join(" ");
                assert!(
                    target.starts_with("pc ")
                        || target.starts_with("stub(pc ")
                        || target.starts_with("@0x"),
                    "{extra:?}: a branch to a host address: {line}"
                );
                jumps_to_pc += usize::from(target.starts_with("pc "));
                jumps_to_stubs += usize::from(target.starts_with("stub(pc "));
            }
        }
        // `if (data + 14 > data_end)` and the other conditions branch inside the program; the
        // context loads' checks branch to their slow paths, each announced in the stubs.
        assert!(
            jumps_to_pc > 0,
            "{extra:?}: no branch to a `pc N` label:\n{text}"
        );
        assert!(
            jumps_to_stubs > 0,
            "{extra:?}: no branch to a stub:\n{text}"
        );
        assert!(text.contains("\n; stub(pc 0): "), "{extra:?}:\n{text}");
    }
}

#[test]
fn errors_are_json_with_json() {
    let out = moat(&[
        "jit-dump",
        "--json",
        "examples/c/counter.o",
        "--program",
        "nope",
    ]);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("nope")),
        "{v}"
    );
}
