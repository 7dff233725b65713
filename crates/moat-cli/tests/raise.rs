//! Loop raising through the CLI (issue 16): on by default for verified programs, `--no-raise` turns
//! it off, `moat jit-dump` shows which loops were raised and into what (text and `--json`), and
//! `moat run` gives the same result raised, unraised and interpreted, for every loop program of
//! `moat-raise/tests/loops` and for the bundled example `examples/asm/checksum.s`.

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

fn loop_files() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../moat-raise/tests/loops");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("loops")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".asm"))
        .map(|n| format!("crates/moat-raise/tests/loops/{n}"))
        .collect();
    names.sort();
    names
}

fn loops_json(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["jit-dump", "--json", "--mem-size", "1500"];
    all.extend_from_slice(args);
    let out = moat(&all);
    assert!(out.status.success(), "{all:?}: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["loops"].as_array().expect("loops").clone()
}

#[test]
fn jit_dump_shows_raised_loops_and_no_raise_turns_raising_off() {
    if !JIT {
        return;
    }
    let mut raised = 0;
    for file in loop_files() {
        let source = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(&file),
        )
        .expect("read");
        let want = source
            .lines()
            .find_map(|l| l.strip_prefix("# expect: raised "))
            .map(str::trim);
        let loops = loops_json(&[&file]);
        assert_eq!(loops.len(), 1, "{file}: one loop reported");
        let got = loops[0]["raised"].as_str();
        match (want, got) {
            (Some(w), Some(g)) => {
                assert!(g.starts_with(w), "{file}: raised to `{g}`, expected `{w}`");
                raised += 1;
            }
            (None, None) => assert!(loops[0]["reason"].is_string(), "{file}: a reason"),
            _ => panic!("{file}: expected {want:?}, got {got:?}"),
        }
        assert!(
            loops[0]["report"]
                .as_str()
                .is_some_and(|r| r.contains("loop ")),
            "{file}: a report"
        );
        // Off: no loop reported, and the text dump says why.
        assert!(loops_json(&[&file, "--no-raise"]).is_empty(), "{file}");
        let text = moat(&["jit-dump", "--mem-size", "1500", &file]);
        let text = String::from_utf8_lossy(&text.stdout);
        if let Some(w) = want {
            assert!(
                text.contains(&format!("raised to {w}")) && text.contains("; raised loop "),
                "{file}: {text}"
            );
        }
    }
    assert!(raised >= 10);
}

#[test]
fn run_results_agree_raised_unraised_and_interpreted() {
    if !JIT {
        return;
    }
    // A buffer of repeating letters with a '/' and a zero late in it: every loop runs long.
    let mut mem: Vec<u8> = (0..1500).map(|i| b'a' + (i % 750 % 3) as u8).collect();
    mem[1200] = b'/';
    mem[1400] = 0;
    let hex: String = mem.iter().map(|b| format!("{b:02x}")).collect();
    for file in loop_files() {
        let r0 = |extra: &[&str]| -> String {
            let mut args = vec!["run", "--json", "--mem", &hex, &file];
            args.extend_from_slice(extra);
            let out = moat(&args);
            assert!(out.status.success(), "{args:?}: {out:?}");
            let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            v["r0"].to_string()
        };
        let raised = r0(&[]);
        assert_eq!(raised, r0(&["--no-raise"]), "{file}");
        assert_eq!(raised, r0(&["--engine", "interp"]), "{file}");
    }
}

/// The bundled example's checksum loop (a pointer that advances, a length that counts down) is
/// raised, and gives the RFC 1071 result on the sample IPv4 header raised, unraised and
/// interpreted.
#[test]
fn the_example_checksum_is_raised_and_agrees() {
    if !JIT {
        return;
    }
    let file = "examples/asm/checksum.s";
    let loops = loops_json(&[file]);
    assert!(
        loops.iter().any(|l| l["raised"]
            .as_str()
            .is_some_and(|p| p.starts_with("reduce.add.2.be r1, r0"))),
        "{loops:?}"
    );
    let r0 = |extra: &[&str]| -> String {
        let mut args = vec![
            "run",
            "--json",
            "--mem-file",
            "examples/asm/ipv4-header.bin",
            file,
        ];
        args.extend_from_slice(extra);
        let out = moat(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        v["r0"].to_string()
    };
    let raised = r0(&[]);
    assert_eq!(raised, "0", "a correct header's checksum");
    assert_eq!(raised, r0(&["--no-raise"]));
    assert_eq!(raised, r0(&["--engine", "interp"]));
}
