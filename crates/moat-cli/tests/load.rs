//! `moat load -- TOOL ARGS` on Debian's compiled libbpf tools (`libbpf-tools`, installed by
//! `scripts/libbpf-tools-deps.sh` when missing): the tool starts on moat, its maps are created and
//! its programs verified and loaded by moat (a program moat's verifier rejects fails with moat's
//! log in the tool's own output), and attaching fails with one clear line, since running the
//! programs in the traced process is not done yet. Skipped, with the reason printed, when not root
//! or when the package cannot be installed.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const MOAT: &str = env!("CARGO_BIN_EXE_moat");

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("not root (libbpf tools check for it)".into());
    }
    if Path::new("/usr/sbin/funclatency").is_file() {
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/libbpf-tools-deps.sh");
    match Command::new("bash").arg(&script).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Some(format!("{}: {e}", script.display())),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

macro_rules! skip_unless_available {
    () => {
        if let Some(why) = unavailable() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// A process to trace: `sleep`, killed when dropped.
struct Target(Child);

impl Target {
    fn new() -> Target {
        Target(
            Command::new("sleep")
                .arg("60")
                .spawn()
                .expect("start sleep"),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `moat load -- ARGS` (the tool's output captured), at most `secs` seconds.
fn load(args: &[&str], secs: u32) -> Output {
    Command::new("timeout")
        .arg(secs.to_string())
        .arg(MOAT)
        .arg("load")
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run moat load")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn funclatency_loads_on_moat_and_names_the_uprobe_it_cannot_run_yet() {
    skip_unless_available!();
    let target = Target::new();
    let pid = target.pid().to_string();
    let out = load(
        &["funclatency", "-v", "-p", &pid, "c:nanosleep", "-d", "1"],
        30,
    );
    let err = stderr(&out);
    // Every map was created by moat, and both programs loaded (the attach step comes after).
    for map in ["cgroup_map", "starts", "funclate.rodata", "funclate.bss"] {
        assert!(
            err.contains(&format!("map '{map}': created successfully")),
            "{map}:\n{err}"
        );
    }
    assert!(!err.contains("failed to load"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("moat: program `dummy_kprobe` (kprobe) on uprobe "))
        .unwrap_or_else(|| panic!("no attach line:\n{err}"));
    assert!(line.contains("libc.so.6+0x"), "{line}");
    assert!(line.contains(&format!("(pid {pid})")), "{line}");
    assert!(!out.status.success(), "the tool cannot attach yet");
    // The tool was not killed by a signal and did not hang (timeout's 124).
    assert_eq!(out.status.code(), Some(1), "{err}");
}

#[test]
fn a_program_moat_rejects_fails_with_moats_verifier_log() {
    skip_unless_available!();
    let target = Target::new();
    let pid = target.pid().to_string();
    let out = load(&["syscount", "-p", &pid, "-d", "1"], 30);
    let err = stderr(&out);
    // libbpf prints the log buffer moat filled, between its markers.
    let log = err
        .split("-- BEGIN PROG LOAD LOG --")
        .nth(1)
        .and_then(|rest| rest.split("-- END PROG LOAD LOG --").next())
        .unwrap_or_else(|| panic!("no program load log:\n{err}"));
    assert!(log.contains("moat: "), "{log}");
    assert!(log.contains("helper"), "{log}");
    // And the errno the kernel gives a helper it does not know: EINVAL.
    assert!(err.contains("failed to load: -22"), "{err}");
}

#[test]
fn kernel_tracepoints_are_refused_in_one_line() {
    skip_unless_available!();
    let target = Target::new();
    let pid = target.pid().to_string();
    let out = load(&["opensnoop", "-p", &pid], 30);
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("moat: program "))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("(tracepoint)"), "{}", lines[0]);
    assert!(
        lines[0].contains("moat runs programs in user space only"),
        "{}",
        lines[0]
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
}

#[test]
fn a_missing_tool_is_one_line() {
    let out = load(&["/nonexistent/moat-no-such-tool"], 10);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot run `/nonexistent/moat-no-such-tool`"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn shared_memory_is_removed_when_the_tool_exits() {
    skip_unless_available!();
    let target = Target::new();
    let pid = target.pid().to_string();
    let before: Vec<_> = shm_dirs();
    let _ = load(&["funclatency", "-p", &pid, "c:nanosleep", "-d", "1"], 30);
    let after: Vec<_> = shm_dirs();
    // Tests run in parallel: a directory whose tool still runs belongs to another test; one whose
    // tool has exited was left behind.
    let exited = |d: &String| {
        d.rsplit('-')
            .next()
            .is_some_and(|pid| !std::path::Path::new("/proc").join(pid).exists())
    };
    let mut new: Vec<String> = after
        .into_iter()
        .filter(|d| !before.contains(d) && exited(d))
        .collect();
    // A directory whose tool exited an instant ago may still be on its way out.
    for _ in 0..20 {
        if new.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = shm_dirs();
        new.retain(|d| now.contains(d));
    }
    assert!(new.is_empty(), "left behind: {new:?}");
}

fn shm_dirs() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("moat-load-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_bare_preload_removes_its_shared_memory_too() {
    skip_unless_available!();
    let lib = Path::new(MOAT)
        .parent()
        .map(|d| d.join("deps/libmoat_interpose.so"))
        .filter(|p| p.is_file());
    let Some(lib) = lib else {
        eprintln!("skipped: libmoat_interpose.so not built beside moat");
        return;
    };
    let target = Target::new();
    let pid = target.pid().to_string();
    let tool = Command::new("funclatency")
        .args(["-p", &pid, "c:nanosleep", "-d", "1"])
        .env("LD_PRELOAD", &lib)
        .stdin(Stdio::null())
        .output()
        .expect("run funclatency");
    let err = stderr(&tool);
    assert!(err.contains("moat: program `dummy_kprobe`"), "{err}");
    // Only live processes may still have map storage: the tool's own directory is gone.
    let stale = stale_shm_dirs();
    assert!(stale.is_empty(), "left behind: {stale:?}");
}

/// `moat-load-PID` directories whose process is gone.
fn stale_shm_dirs() -> Vec<String> {
    shm_dirs()
        .into_iter()
        .filter(|d| {
            d.strip_prefix("moat-load-")
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect()
}
