//! `moat run --engine jit|interp` and `moat jit-dump`: both engines give the same result and timing
//! line; the dump shows the entry trampoline and every instruction's code; `--time-budget` stops a
//! runaway loop.

use std::path::Path;
use std::process::{Command, Output};

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

#[test]
fn both_engines_run_with_repeat_and_agree() {
    for engine in ["jit", "interp"] {
        let out = moat(&[
            "run",
            "crates/moat-bench/programs/prime.asm",
            "--engine",
            engine,
            "--repeat",
            "3",
        ]);
        assert!(out.status.success(), "{engine}: {out:?}");
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.first().is_some_and(|l| l.ends_with(" ns/run")),
            "{engine}: {text}"
        );
        assert_eq!(lines.last(), Some(&"0x1"), "{engine}");
    }
}

#[test]
fn jit_dump_disassembles_every_instruction() {
    let out = moat(&["jit-dump", "crates/moat-bench/programs/loop_sum.asm"]);
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        assert!(!out.status.success());
        return;
    }
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("\n; entry trampoline\n"), "{text}");
    for slot in 0..6 {
        assert!(
            text.contains(&format!("\n; pc {slot}: ")),
            "insn {slot} missing:\n{text}"
        );
    }
    assert!(text.contains("ret"));
}

#[test]
fn a_time_budget_stops_an_endless_loop() {
    let dir = std::env::temp_dir().join(format!("moat-time-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("endless.asm");
    std::fs::write(&file, "mov r0, 0\nloop:\nadd r0, 1\nja loop\nexit\n").expect("writes");
    let path = file.to_str().expect("utf-8 path");
    let out = moat(&["run", path, "--no-verify", "--time-budget", "50us"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("ran past its time budget of 50µs"),
        "{stderr}"
    );
    let out = moat(&["run", path, "--no-verify", "--time-budget", "50 parsecs"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown time unit"));
    let _ = std::fs::remove_dir_all(&dir);
}
