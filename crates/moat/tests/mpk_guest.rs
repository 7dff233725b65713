//! The `mpk` backend tested where this machine cannot: its CPU has no protection keys, so this test
//! boots a Debian kernel under QEMU's software emulation (TCG) with `-cpu max`, whose emulated CPU has
//! PKU, and runs moat's `mpk` tests inside: `mpk.rs` (hardware stops what a buggy verifier let
//! through; more programs than keys), the attack suite under `mpk` on both engines, the isolation
//! crate's unit tests (layer-2 key sharing), the JIT's fault tests, and the bundled C examples, the
//! pool-map tests and the embedding tests (which the runtime's default, `Isolation::detect()`, runs
//! under `mpk` there).
//!
//! QEMU and the kernel come from `scripts/guest-deps.sh` (run here when missing: Debian's
//! `qemu-system-x86`, and `linux-image-amd64` unpacked to `target/guest/vmlinuz`). The initramfs is
//! built here: the guest's init (`moat-bench`'s `guest_init`), the test binaries, the shared
//! libraries they link and the files they read, at the paths they have on the host.
//!
//! Where the dependencies cannot be installed the test prints why and skips, except under `CI=true`
//! for a user who may install packages (root or password-less sudo), where that is a failure.

mod common;

use common::workspace_root;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the guest may run (TCG is some 10-50x slower than the host).
const GUEST_TIMEOUT: Duration = Duration::from_secs(25 * 60);

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether this user may install packages: root, or password-less sudo.
fn may_install() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    root || Command::new("sudo")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// QEMU and the kernel, installed by `scripts/guest-deps.sh` when missing.
fn guest_deps(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let kernel = dir.join("vmlinuz");
    let have_qemu = || {
        Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have_qemu() || !kernel.exists() {
        let script = workspace_root().join("scripts/guest-deps.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    if !have_qemu() {
        return Err("qemu-system-x86_64 is not installed".into());
    }
    if !kernel.exists() {
        return Err(format!("no kernel at {}", kernel.display()));
    }
    Ok((PathBuf::from("qemu-system-x86_64"), kernel))
}

/// Builds with cargo (same profile as this test, and `--workspace`, so that features resolve as
/// for `cargo test --workspace` and nothing is rebuilt) and returns the executable of `target`.
fn cargo_executable(args: &[&str], target: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args)
        .args(["--workspace", "--message-format=json"])
        .current_dir(workspace_root());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = format!("\"name\":\"{target}\",\"src_path\"");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&name))
        .find_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = l[start..].find('"')?;
            Some(PathBuf::from(&l[start..start + end]))
        })
        .unwrap_or_else(|| panic!("cargo {args:?} built no executable `{target}`"))
}

/// The shared libraries (and loader) `binary` links, from `ldd`.
fn libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, right)) => right.trim().split(' ').next()?,
                None => l.trim().split(' ').next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// `path` with `.` and `..` resolved without looking at the file system.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A `newc` cpio archive, the initramfs format.
struct Cpio {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<PathBuf>,
    files: BTreeSet<PathBuf>,
}

impl Cpio {
    fn new() -> Cpio {
        Cpio {
            out: Vec::new(),
            ino: 1,
            dirs: BTreeSet::new(),
            files: BTreeSet::new(),
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        let name_len = name.len() + 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name_len as u32,
            0,
        ];
        self.ino += 1;
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, path: &Path) {
        let mut acc = PathBuf::new();
        for part in path.components().skip(1) {
            acc.push(part);
            if self.dirs.insert(acc.clone()) {
                let name = acc.to_string_lossy().to_string();
                self.entry(&name, 0o040755, &[], (0, 0));
            }
        }
    }

    /// `host` stored at `at` (absolute; `..` resolved lexically), following symlinks.
    fn file(&mut self, host: &Path, at: &Path, mode: u32) {
        let at = &lexical(at);
        if !self.files.insert(at.clone()) {
            return; // already stored (the same path reached two ways)
        }
        let data = std::fs::read(host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
        if let Some(parent) = at.parent() {
            self.dir(parent);
        }
        let name = at
            .strip_prefix("/")
            .unwrap_or(at)
            .to_string_lossy()
            .to_string();
        self.entry(&name, 0o100000 | mode, &data, (0, 0));
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }
}

/// Boots the guest with `runs` (name, binary, tab-separated arguments) and returns its console
/// lines, or `None` (after printing why) where it cannot run outside CI.
fn run_in_guest(runs: &[(&str, PathBuf, &str)]) -> Option<Vec<String>> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        println!("skipped: the guest is x86-64 Linux");
        return None;
    }
    let root = workspace_root().canonicalize().expect("workspace");
    let dir = root.join("target/guest");
    std::fs::create_dir_all(&dir).expect("target/guest");
    let (qemu, kernel) = match guest_deps(&dir) {
        Ok(found) => found,
        // Outside CI, and where nothing may be installed (neither root nor password-less sudo),
        // the guest is skipped with the reason, like the kernel comparisons without `bpf()`.
        Err(why) if !ci() || !may_install() => {
            println!("skipped: {why}");
            return None;
        }
        Err(why) => panic!("the mpk guest cannot run under CI: {why}"),
    };
    let init = cargo_executable(&["build", "--bin", "guest_init"], "guest_init");
    let mut cpio = Cpio::new();
    for d in ["/dev", "/proc", "/sys", "/tmp", "/guest"] {
        cpio.dir(Path::new(d));
    }
    cpio.entry("dev/console", 0o020600, &[], (5, 1));
    cpio.file(&init, Path::new("/init"), 0o755);
    let mut libs = BTreeSet::new();
    libs.extend(libraries(&init));
    let mut plan = String::new();
    for (name, binary, args) in runs {
        let at = PathBuf::from(format!("/guest/{name}"));
        cpio.file(binary, &at, 0o755);
        libs.extend(libraries(binary));
        plan.push_str(&format!("{name}\t{}\t{args}\n", at.display()));
    }
    for lib in &libs {
        cpio.file(lib, lib, 0o755);
    }
    // The attack suite's files, where it looks for them (the manifest path it was built with).
    let attack_dir = root.join("crates/moat/tests/attacks");
    let built_at = workspace_root().join("crates/moat/tests/attacks");
    for entry in std::fs::read_dir(&attack_dir).expect("attacks") {
        let path = entry.expect("entry").path();
        cpio.file(&path, &path, 0o644);
        if built_at != attack_dir {
            cpio.file(
                &path,
                &built_at.join(path.file_name().expect("name")),
                0o644,
            );
        }
    }
    // The bundled examples (objects and packets) for `examples.rs`.
    for sub in ["examples/c", "examples/packets"] {
        for entry in std::fs::read_dir(root.join(sub)).expect("examples") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "o" || e == "bin") {
                cpio.file(&path, &path, 0o644);
                let built = workspace_root()
                    .join(sub)
                    .join(path.file_name().expect("name"));
                if built != path {
                    cpio.file(&path, &built, 0o644);
                }
            }
        }
    }
    let plan_file = dir.join("plan.txt");
    std::fs::write(&plan_file, &plan).expect("plan");
    cpio.file(&plan_file, Path::new("/guest/plan.txt"), 0o644);
    let initramfs = dir.join("initramfs.cpio");
    std::fs::File::create(&initramfs)
        .and_then(|mut f| f.write_all(&cpio.finish()))
        .expect("initramfs");

    println!(
        "booting the guest (QEMU TCG, -cpu max) with {} runs",
        runs.len()
    );
    let started = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "3072"])
        .args(["-nographic", "-no-reboot", "-monitor", "none"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initramfs)
        .args([
            "-append",
            "console=ttyS0 panic=-1 quiet print-fatal-signals=1 loglevel=7",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu starts");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("moat-guest:") {
                println!("{line}");
            }
            lines.push(line);
        }
        lines
    });
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > GUEST_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = reader.join().expect("reader");
    let _ = std::fs::write(dir.join("output.log"), lines.join("\n"));
    println!("guest ran {:.0} s", started.elapsed().as_secs_f64());
    assert!(
        lines.iter().any(|l| l.trim() == "moat-guest: done"),
        "the guest did not finish. guest output:\n{}",
        lines.join("\n")
    );
    for (name, _, _) in runs {
        let want = format!("moat-guest: {name} exit 0");
        assert!(
            lines.iter().any(|l| l.trim() == want),
            "{name} failed in the guest. guest output:\n{}",
            lines.join("\n")
        );
    }
    Some(lines)
}

#[test]
fn mpk_tests_pass_in_an_emulated_guest_with_protection_keys() {
    let test = |name: &str| cargo_executable(&["test", "--test", name, "--no-run"], name);
    let runs = [
        ("mpk", test("mpk"), "--nocapture"),
        ("attacks", test("attacks"), "--nocapture"),
        (
            "moat-isolate",
            cargo_executable(&["test", "--lib", "--no-run"], "moat_isolate"),
            "--nocapture",
        ),
        ("jit-faults", test("faults"), "--nocapture"),
        ("examples", test("examples"), "--nocapture"),
        ("pool_maps", test("pool_maps"), "--nocapture"),
        ("embedding", test("embedding"), "--nocapture"),
    ];
    let Some(lines) = run_in_guest(&runs) else {
        return;
    };
    let output = lines.join("\n");
    assert!(
        !output.contains("skipped: mpk unavailable"),
        "protection keys were unavailable in the guest. guest output:\n{output}"
    );
    for must in [
        "attacks under mpk, verifier trusted for Nothing: 84 passed, 0 failed",
        "test a_verifier_bug_cannot_reach_host_memory ... ok",
        "test a_verifier_bug_cannot_reach_another_domains_map ... ok",
        "test more_programs_than_keys_run_isolated_at_once ... ok",
        "test the_run_anchor_is_read_only_for_the_program ... ok",
        "test callbacks_and_helpers_run_confined_without_stack_growth ... ok",
        "test mpk::tests::more_domains_than_keys_share_them_one_owner_at_a_time ... ok",
        "test an_unchecked_wild_load_ends_the_run_with_a_memory_fault ... ok",
        "test counter_counts_packets_and_bytes_per_protocol ... ok",
        "test two_processes_count_into_the_same_pinned_pool_map ... ok",
        "test a_loaded_program_runs_on_many_threads ... ok",
    ] {
        assert!(
            output.contains(must),
            "missing `{must}`. guest output:\n{output}"
        );
    }
    for l in lines
        .iter()
        .filter(|l| l.contains("attacks under") || l.contains("programs on"))
    {
        println!("guest: {l}");
    }
}

/// The isolation benchmark with its `mpk` columns, in the guest (emulated: compare ratios only).
/// `cargo test --release -p moat --test mpk_guest -- --ignored --nocapture`
#[test]
#[ignore = "a benchmark: minutes under emulation"]
fn isolation_benchmark_in_the_guest() {
    let bench = cargo_executable(&["build", "--bin", "bench_isolation"], "bench_isolation");
    let Some(lines) = run_in_guest(&[("bench_isolation", bench, "")]) else {
        return;
    };
    for l in lines
        .iter()
        .filter(|l| l.starts_with('|') || l.starts_with("mpk") || l.starts_with("isolation"))
    {
        println!("{l}");
    }
}
