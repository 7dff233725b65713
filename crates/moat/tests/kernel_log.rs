//! `moat verify --log` against the kernel's level-2 verifier log, on the C examples the kernel
//! loads as XDP programs: every instruction line both logs print (`12: (2d) if r5 > r3 goto pc+5`)
//! must read the same — the opcode and the kernel's syntax — so that a user can compare the two
//! logs line by line. (A map reference reads `map[id:INDEX]` in moat's log and the map's kernel
//! address in the kernel's.) Needs root and `bpf()`; skips with the reason otherwise.

mod common;
use common::workspace_root;

use moat::{ObjectOptions, ProgType, Runtime};
use moat_kernel::{create_map, load_program, LoadOptions, BPF_ANY};
use std::collections::BTreeMap;

/// `pc: (op) text` lines of a log, by pc (the first time each is printed), map ids blanked.
fn insn_lines(log: &str) -> BTreeMap<usize, String> {
    let mut lines = BTreeMap::new();
    for line in log.lines() {
        let line = line.trim();
        let Some((pc, rest)) = line.split_once(": (") else {
            continue;
        };
        let Ok(pc) = pc.parse::<usize>() else {
            continue;
        };
        let text = rest.split(" ;").next().unwrap_or(rest).trim_end();
        let mut text = format!("({text}");
        // `lddw` of a map: the kernel prints the map's kernel address (it resolved the reference
        // before verifying), moat `map[id:INDEX]`; only the destination is compared.
        if text.starts_with("(18) ") && (text.contains("map[id:") || text.contains("= 0xffff")) {
            text = text.split(" = ").next().unwrap_or(&text).to_string() + " = <map>";
        }
        lines.entry(pc).or_insert(text);
    }
    lines
}

#[test]
fn instruction_lines_read_as_the_kernels() {
    if let Err(why) = moat_kernel::available() {
        println!("skipped: {why}");
        return;
    }
    let mut compared = 0;
    let mut problems = Vec::new();
    for stem in ["counter", "globals", "loop", "lpm", "tailcall", "events"] {
        let path = workspace_root().join(format!("examples/c/{stem}.o"));
        let bytes = std::fs::read(&path).expect("example object");
        let object = moat::Object::parse(&bytes).expect("parses");
        // moat's log.
        let mut rt = Runtime::new();
        rt.set_verifier_log(true);
        let verdicts = rt
            .verify_object(
                &bytes,
                ObjectOptions {
                    prog_type: Some(ProgType::Xdp),
                },
            )
            .expect("verifies");
        // The kernel's, with the object's maps created.
        let mut maps = Vec::new();
        for spec in &object.maps {
            let Ok(map) = create_map(
                spec.map_type,
                spec.key_size,
                spec.value_size,
                spec.max_entries,
                spec.flags,
            ) else {
                continue;
            };
            if !spec.data.is_empty() {
                let _ = map.update(&0u32.to_ne_bytes(), &spec.data, BPF_ANY);
            }
            maps.push(map);
        }
        if maps.len() != object.maps.len() {
            continue;
        }
        for (spec, (name, verdict)) in object.programs.iter().zip(&verdicts) {
            let Ok(verified) = verdict else { continue };
            let insns: Vec<moat_isa::Insn> = moat_isa::decode(&spec.bytecode)
                .expect("decodes")
                .into_iter()
                .map(|(_, i)| i)
                .collect();
            let fixed = moat_kernel::map_indices_to_fds(&insns, |i| {
                maps.get(i as usize).map_or(-1, |m| m.fd())
            });
            let mut options = LoadOptions::new(moat_kernel::ProgType::Xdp);
            options.log_level = 2;
            options.log_size = 16 << 20;
            options.license = object.license.clone().unwrap_or_else(|| "GPL".into());
            let Ok(prog) = load_program(&moat_isa::encode(&fixed), &options) else {
                continue;
            };
            let kernel = insn_lines(prog.log());
            let moat = insn_lines(&verified.log().join("\n"));
            for (pc, text) in &moat {
                if let Some(k) = kernel.get(pc) {
                    compared += 1;
                    if k != text {
                        problems.push(format!(
                            "{stem}.o {name} pc {pc}: moat `{text}`, kernel `{k}`"
                        ));
                    }
                }
            }
        }
    }
    println!(
        "{compared} instruction lines compared, {} differ",
        problems.len()
    );
    assert!(compared > 100, "too few lines compared: {compared}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
