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

#[test]
fn sigterm_ends_the_command_with_a_last_dump_and_no_shared_memory_left() {
    let child = moat()
        .arg("trace")
        .arg(example("malloc_free.o"))
        .args(["--", "/bin/sleep", "10"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("moat trace starts");
    let pid = child.id();
    let leftovers = || {
        std::fs::read_dir("/dev/shm")
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("moat-trace-{pid}-"))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    std::thread::sleep(std::time::Duration::from_millis(700));
    if std::path::Path::new("/dev/shm").is_dir() {
        assert_eq!(leftovers(), 1, "the maps' directory while tracing");
    }
    let start = std::time::Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = child.wait_with_output().expect("moat trace ends");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "sleep was ended"
    );
    // The command's status: killed by SIGTERM.
    assert_eq!(out.status.code(), Some(128 + 15));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("counts[0] = "), "{text}");
    assert_eq!(leftovers(), 0, "shared memory removed");
}
