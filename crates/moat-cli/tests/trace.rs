//! `moat trace` from the command line: the help explains it, a traced command keeps its output and
//! exit status, and the report says what attached and what the maps hold.

use std::path::PathBuf;
use std::process::Command;

fn moat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moat"))
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/c")
        .join(name)
}

#[test]
fn help_explains_sections_methods_and_failing_open() {
    let out = moat().args(["trace", "--help"]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "uprobe/PATH:SYMBOL",
        "uretprobe/",
        "int3",
        "exit status",
        "--interval",
        "/dev/shm",
        "kill -9",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
}

#[test]
fn traced_commands_keep_output_and_status() {
    let report = std::env::temp_dir().join(format!("moat-cli-trace-{}.txt", std::process::id()));
    let dir = env!("CARGO_MANIFEST_DIR");
    let traced = moat()
        .arg("trace")
        .arg("-o")
        .arg(&report)
        .arg(example("malloc_free.o"))
        .args(["--", "/bin/ls", dir])
        .output()
        .expect("runs");
    let plain = Command::new("/bin/ls").arg(dir).output().expect("runs");
    assert_eq!(traced.status.code(), plain.status.code());
    assert_eq!(traced.stdout, plain.stdout);
    let text = std::fs::read_to_string(&report).expect("report");
    let _ = std::fs::remove_file(&report);
    assert!(
        text.contains("attached on_malloc: uprobe libc.so.6:malloc"),
        "{text}"
    );
    assert!(text.contains("counts[0] = "), "{text}");
    // A failing command's status comes through.
    let failing = moat()
        .arg("trace")
        .arg("-o")
        .arg("/dev/null")
        .arg(example("malloc_free.o"))
        .args(["--", "/bin/sh", "-c", "exit 7"])
        .status()
        .expect("runs");
    assert_eq!(failing.code(), Some(7));
}

#[test]
fn attaching_to_a_running_process_and_detaching() {
    let mut sleeper = Command::new("/bin/sleep")
        .arg("3")
        .spawn()
        .expect("sleep starts");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let out = moat()
        .arg("trace")
        .arg(example("malloc_free.o"))
        .args(["-p", &sleeper.id().to_string(), "--duration", "0.3"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("attached on_malloc"), "{text}");
    assert!(text.contains("detached"), "{text}");
    let status = sleeper.wait().expect("sleep ends");
    assert!(status.success(), "the process was not disturbed");
}

#[test]
fn program_choice_and_json_output() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = moat()
        .arg("trace")
        .args([
            "--program",
            "on_malloc",
            "--format",
            "json",
            "-o",
            "/dev/stdout",
        ])
        .arg(example("malloc_free.o"))
        .args(["--", "/bin/true", dir])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    }
    assert!(text.contains("\"attached\":\"on_malloc\""), "{text}");
    assert!(!text.contains("\"attached\":\"on_free\""), "{text}");
    assert!(text.contains("\"map\":\"counts\""), "{text}");
}
