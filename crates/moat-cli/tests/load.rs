//! `moat load -- TOOL ARGS` on Debian's compiled libbpf tools (`libbpf-tools`, installed by
//! `scripts/libbpf-tools-deps.sh` when missing): the tool starts on moat, its maps are created and
//! its programs verified and loaded by moat (a program moat's verifier rejects fails with moat's
//! log in the tool's own output), and its uprobe programs run inside the traced process. Parity:
//! the same tool, on the kernel and on moat, traces the same deterministic workload
//! (`examples/libbpf-tools/workload.c`) and must count the same calls, exactly, with histograms of
//! the same shape. What moat cannot run fails with one clear line. Skipped, with the reason
//! printed, when not root or when the package cannot be installed.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const MOAT: &str = env!("CARGO_BIN_EXE_moat");

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("not root (libbpf tools check for it)".into());
    }
    // The tools are in /usr/sbin, on root's PATH.
    support::ensure_tools(&["funclatency", "cc", "stdbuf"], "libbpf-tools-deps.sh").err()
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

/// `examples/libbpf-tools/workload.c` and its library `libmoatwork.so`, built once per test
/// process.
fn workload_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-tools-workload");
            std::fs::create_dir_all(&dir).expect("workload directory");
            let src = support::workspace().join("examples/libbpf-tools");
            let cc = |args: &[&std::ffi::OsStr]| {
                let ok = Command::new("cc").args(args).status().expect("run cc");
                assert!(ok.success(), "cc {args:?}");
            };
            let lib = dir.join("libmoatwork.so");
            let bin = dir.join("workload");
            cc(&[
                "-O2".as_ref(),
                "-shared".as_ref(),
                "-fPIC".as_ref(),
                "-o".as_ref(),
                lib.as_os_str(),
                src.join("moatwork.c").as_os_str(),
            ]);
            let rpath = format!("-Wl,-rpath,{}", dir.display());
            let libdir = format!("-L{}", dir.display());
            cc(&[
                "-O2".as_ref(),
                "-o".as_ref(),
                bin.as_os_str(),
                src.join("workload.c").as_os_str(),
                libdir.as_ref(),
                "-lmoatwork".as_ref(),
                rpath.as_ref(),
            ]);
            bin
        })
        .clone()
}

/// The workload, started and waiting for its go.
struct Workload {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    pid: u32,
}

impl Workload {
    fn start() -> Workload {
        let mut child = Command::new(workload_bin())
            .arg(ROUNDS.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the workload");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("ready line");
        let pid = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("workload said `{line}`"));
        Workload { child, out, pid }
    }

    /// Makes the workload's rounds and waits until they are done.
    fn run(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("go");
        stdin.flush().expect("flush");
        let mut line = String::new();
        self.out.read_line(&mut line).expect("done line");
        assert_eq!(line.trim(), format!("done {ROUNDS}"));
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Rounds of the workload: each calls the traced functions once.
const ROUNDS: u64 = 200;

/// Runs `tool ARGS` (with `-p PID` of a fresh workload) on the kernel or, `on_moat`, through
/// `moat load`; once the tool has attached (its first line of output), runs the workload, then
/// interrupts the tool as Ctrl-C would and returns what it printed (stdout, stderr).
fn traced_run(on_moat: bool, tool: &str, args: &[&str]) -> (String, String) {
    let mut workload = Workload::start();
    let pid = workload.pid.to_string();
    let command: Vec<&str> = [tool, "-p", &pid]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    // Records reach the tool's perf buffer within a few milliseconds (moat's epoll slice).
    let run = run_tool(on_moat, &pid, &command, || workload.run(), 200);
    assert!(
        run.attached,
        "{tool} on {}: nothing printed; status {}; stderr:\n{}",
        if on_moat { "moat" } else { "the kernel" },
        run.status,
        run.stderr
    );
    (run.stdout, run.stderr)
}

/// What [`run_tool`] saw of a tool.
struct ToolRun {
    /// Whether it printed a first line (it prints one once attached).
    attached: bool,
    stdout: String,
    stderr: String,
    status: std::process::ExitStatus,
}

/// Runs `command` (a tool and its arguments) with line-buffered output, on the kernel or,
/// `on_moat`, through `moat load --pid PID` (events on every process run in `pid`); once it has
/// printed its first line, runs `work`, waits `settle_ms` for the last records to reach the tool
/// and ends it with SIGINT, the way Ctrl-C does (`moat load` passes it on).
fn run_tool(
    on_moat: bool,
    pid: &str,
    command: &[&str],
    work: impl FnOnce(),
    settle_ms: u64,
) -> ToolRun {
    let mut cmd = Command::new("stdbuf");
    cmd.arg("-oL");
    if on_moat {
        cmd.args([MOAT, "load", "--pid", pid, "--"]);
    }
    let mut tool = cmd
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the tool");
    let mut out = BufReader::new(tool.stdout.take().expect("stdout"));
    let mut stdout = String::new();
    let attached = out.read_line(&mut stdout).is_ok_and(|n| n > 0);
    if attached {
        work();
        std::thread::sleep(std::time::Duration::from_millis(settle_ms));
    }
    let _ = Command::new("kill")
        .args(["-INT", &tool.id().to_string()])
        .status();
    let _ = out.read_to_string(&mut stdout);
    let mut stderr = String::new();
    if let Some(mut e) = tool.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = tool.wait().expect("wait for the tool");
    ToolRun {
        attached,
        stdout,
        stderr,
        status,
    }
}

/// A log2 histogram as funclatency prints it: (bucket's low end, count) for every line.
fn histogram(out: &str) -> Vec<(u64, u64)> {
    out.lines()
        .filter_map(|l| {
            let (range, rest) = l.split_once(':')?;
            let (low, _) = range.split_once("->")?;
            let count = rest.split('|').next()?.trim().parse().ok()?;
            Some((low.trim().parse().ok()?, count))
        })
        .collect()
}

/// The bucket holding the most calls.
fn mode(h: &[(u64, u64)]) -> u64 {
    h.iter().max_by_key(|&&(_, c)| c).map_or(0, |&(b, _)| b)
}

/// `funclatency -p PID FUNCTION` on the kernel and on moat: the same calls counted, exactly, and
/// the same shape (the fullest buckets at most one apart).
fn funclatency_agrees(function: &str) {
    let (kernel, _) = traced_run(false, "funclatency", &[function]);
    let (moat, moat_err) = traced_run(true, "funclatency", &[function]);
    let (k, m) = (histogram(&kernel), histogram(&moat));
    let total = |h: &[(u64, u64)]| h.iter().map(|&(_, c)| c).sum::<u64>();
    assert_eq!(total(&k), ROUNDS, "kernel:\n{kernel}");
    assert_eq!(total(&m), ROUNDS, "moat:\n{moat}\n{moat_err}");
    // One bucket apart at most: a sleep's overshoot on a loaded machine moves calls across the
    // power of two next to it.
    let (a, b) = (mode(&k).max(1), mode(&m).max(1));
    assert!(a.max(b) <= 2 * a.min(b), "kernel:\n{kernel}\nmoat:\n{moat}");
    println!(
        "{function}: kernel and moat both counted {ROUNDS} calls, most at {} ns",
        mode(&m)
    );
}

#[test]
fn funclatency_on_a_libc_function_matches_the_kernel() {
    skip_unless_available!();
    funclatency_agrees("c:usleep");
}

#[test]
fn funclatency_on_a_function_of_the_program_matches_the_kernel() {
    skip_unless_available!();
    funclatency_agrees("moatwork:bundled_sleep");
}

/// `gethostlatency -p PID`: one line per `getaddrinfo` of the workload on both, with latencies of
/// the same order (medians within a factor of four).
#[test]
fn gethostlatency_matches_the_kernel() {
    skip_unless_available!();
    let lookups = |out: &str| -> Vec<f64> {
        out.lines()
            .filter(|l| l.split_whitespace().nth(4) == Some("localhost"))
            .filter_map(|l| l.split_whitespace().nth(3)?.parse().ok())
            .collect()
    };
    let (kernel, _) = traced_run(false, "gethostlatency", &[]);
    let (moat, moat_err) = traced_run(true, "gethostlatency", &[]);
    let (k, m) = (lookups(&kernel), lookups(&moat));
    assert_eq!(k.len() as u64, ROUNDS, "kernel:\n{kernel}");
    assert_eq!(m.len() as u64, ROUNDS, "moat:\n{moat}\n{moat_err}");
    // Lookups take tens of microseconds, in two clusters (files cached or not): the medians, not
    // the fullest bucket, are what stays put from run to run.
    let median = |ms: &[f64]| {
        let mut v = ms.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    // The two runs follow each other on a shared machine whose load moves a lookup of tens of
    // microseconds by as much again: the same order of magnitude is what the check can ask.
    let (mk, mm) = (median(&k), median(&m));
    assert!(
        mm <= 4.0 * mk && mk <= 4.0 * mm,
        "medians {mk} and {mm} ms:\nkernel:\n{kernel}\nmoat:\n{moat}"
    );
    println!("gethostlatency: kernel and moat both saw {ROUNDS} lookups, medians {mk} and {mm} ms");
}

/// `opensnoop -p PID` (its programs at the `syscalls:sys_enter_openat`/`sys_exit_openat`
/// tracepoints, which moat runs by rewriting the system call sites of the workload's libc; the
/// tracepoints fire for every process, so `moat load --pid` names the one): the same opens with
/// the same descriptors and errors. Not necessarily in the same order: records go to the ring of
/// the CPU the workload ran on, and the tool reads the rings one after another (the kernel's
/// per-CPU rings give no order across CPUs either).
#[test]
fn opensnoop_matches_the_kernel() {
    skip_unless_available!();
    let opens = |out: &str| -> Vec<String> {
        out.lines()
            .skip(1)
            .filter_map(|l| {
                l.split_once(char::is_whitespace)
                    .map(|(_, rest)| rest.trim())
            })
            .map(str::to_string)
            .collect()
    };
    let (kernel, _) = traced_run(false, "opensnoop", &[]);
    let (moat, moat_err) = traced_run(true, "opensnoop", &[]);
    let (mut k, mut m) = (opens(&kernel), opens(&moat));
    let devnull = |v: &[String]| v.iter().filter(|l| l.ends_with(" /dev/null")).count() as u64;
    assert_eq!(devnull(&k), ROUNDS, "kernel:\n{kernel}");
    k.sort();
    m.sort();
    assert!(k == m, "kernel:\n{kernel}\nmoat:\n{moat}\n{moat_err}");
    println!(
        "opensnoop: kernel and moat both saw the same {} opens",
        k.len()
    );
}

/// `sigsnoop -k -p PID` (the `kill` system call's tracepoints): one line per `kill(self, 0)` of the
/// workload on both, each with signal 0, the workload as target and result 0.
#[test]
fn sigsnoop_matches_the_kernel() {
    skip_unless_available!();
    // (signal, target is the sender, result) of each line of the sender.
    let signals = |out: &str| -> Vec<(String, bool, String)> {
        out.lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (pid, sig, tpid, result) = (f.get(1)?, f.get(3)?, f.get(4)?, f.get(5)?);
                Some((sig.to_string(), pid == tpid, result.to_string()))
            })
            .collect()
    };
    let (kernel, _) = traced_run(false, "sigsnoop", &["-k"]);
    let (moat, moat_err) = traced_run(true, "sigsnoop", &["-k"]);
    let (k, m) = (signals(&kernel), signals(&moat));
    let expected = vec![("0".to_string(), true, "0".to_string()); ROUNDS as usize];
    assert_eq!(k, expected, "kernel:\n{kernel}");
    assert_eq!(m, expected, "moat:\n{moat}\n{moat_err}");
    println!("sigsnoop: kernel and moat both saw {ROUNDS} kill(self, 0)");
}

/// An interactive bash reading commands from a pipe through readline, waiting (in `sleep`, where
/// moat may inject its agent) until the tool is ready.
struct Bash {
    child: Child,
    go: PathBuf,
}

impl Bash {
    fn start(tag: &str) -> Bash {
        let go = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bash-go-{tag}"));
        let _ = std::fs::remove_file(&go);
        let mut child = Command::new("bash")
            .args(["--norc", "--noprofile", "-i"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bash");
        let wait = format!("while [ ! -e {} ]; do sleep 0.05; done\n", go.display());
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin.write_all(wait.as_bytes()).expect("wait command");
        Bash { child, go }
    }

    /// Lets bash go on to `commands`, one line each, and waits until it has read them all.
    fn run(&mut self, commands: &[String]) {
        let done = self.go.with_extension("done");
        let _ = std::fs::remove_file(&done);
        let stdin = self.child.stdin.as_mut().expect("stdin");
        for c in commands {
            stdin
                .write_all(format!("{c}\n").as_bytes())
                .expect("command");
        }
        stdin
            .write_all(format!("touch {}\n", done.display()).as_bytes())
            .expect("last command");
        stdin.flush().expect("flush");
        std::fs::write(&self.go, b"").expect("go");
        for _ in 0..200 {
            if done.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("bash did not run its commands");
    }
}

impl Drop for Bash {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bashreadline` (no process option: on moat, `moat load --pid` names the bash) on the kernel and
/// on moat: every command line the bash read.
#[test]
fn bashreadline_matches_the_kernel() {
    skip_unless_available!();
    let commands: Vec<String> = (0..ROUNDS / 4).map(|i| format!(": moat-cmd-{i}")).collect();
    let lines = |on_moat: bool| -> (Vec<String>, String) {
        let mut bash = Bash::start(if on_moat { "moat" } else { "kernel" });
        let pid = bash.child.id().to_string();
        // The last command's line reaches the tool's output in a moment.
        let run = run_tool(
            on_moat,
            &pid,
            &["bashreadline"],
            || bash.run(&commands),
            300,
        );
        assert!(
            run.attached,
            "bashreadline printed nothing:\n{}",
            run.stderr
        );
        let (rest, err) = (run.stdout, run.stderr);
        // Other shells of the machine show up on the kernel: only this bash's lines count.
        let mine = rest
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(pid.as_str()))
            .filter_map(|l| l.split_once(&pid).map(|(_, c)| c.trim().to_string()))
            .filter(|c| c.starts_with(": moat-cmd-"))
            .collect();
        (mine, err)
    };
    // Sorted: a record goes to the ring of the CPU bash ran on, and rings are read one after
    // another (on the kernel as on moat), so lines of a bash that moved between CPUs may come
    // out of order.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (kernel, _) = lines(false);
    let (moat, moat_err) = lines(true);
    let expected = sorted(commands.clone());
    assert_eq!(sorted(kernel), expected, "kernel");
    assert_eq!(sorted(moat), expected, "moat:\n{moat_err}");
    println!(
        "bashreadline: kernel and moat both saw {} commands",
        commands.len()
    );
}

#[test]
fn a_tool_tracing_every_process_is_refused_in_one_line() {
    skip_unless_available!();
    // Without `-p`, a library is named by its path.
    let lib = workload_bin().with_file_name("libmoatwork.so");
    let function = format!("{}:bundled_sleep", lib.display());
    let out = load(&["funclatency", &function, "-d", "1"], 30);
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("moat: program "))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("(kprobe) on uprobe "), "{}", lines[0]);
    assert!(lines[0].contains("of every process"), "{}", lines[0]);
    assert!(lines[0].contains("(-p PID)"), "{}", lines[0]);
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
    // sigsnoop's program runs at `signal:signal_generate`, inside the kernel.
    let out = load(&["sigsnoop", "-p", &pid], 30);
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
    assert_ne!(out.status.code(), Some(124), "hung:\n{err}");
    assert!(!out.status.success(), "{err}");
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

/// The interposer (inside the tool), the agent (inside the traced process) and `moat load` spell
/// the orders and the socket's variable each on their own (none links another): the same.
#[test]
fn the_interposer_the_agent_and_moat_load_use_the_same_names() {
    use moat_agent::agent::env;
    use moat_interpose::traced::orders;
    assert_eq!(moat_interpose::traced::CONTROL_ENV, "MOAT_LOAD_CONTROL");
    assert_eq!(moat_interpose::traced::PID_ENV, "MOAT_LOAD_PID");
    let src =
        std::fs::read_to_string(support::workspace().join("crates/moat-cli/src/load_control.rs"))
            .expect("load_control.rs");
    assert!(src.contains("pub const CONTROL_ENV: &str = \"MOAT_LOAD_CONTROL\";"));
    assert!(src.contains("pub const PID_ENV: &str = \"MOAT_LOAD_PID\";"));
    assert!(
        src.contains("MOAT_TRACE_OUT="),
        "the report is found by the agent's key"
    );
    for (a, b) in [
        (orders::CODE, env::PROG_CODE),
        (orders::NAME, env::PROG_NAME),
        (orders::MAPS, env::PROG_MAPS),
        (orders::PATH, env::PROG_PATH),
        (orders::OFFSET, env::PROG_OFFSET),
        (orders::RETURN, env::PROG_RETURN),
        (orders::SYSCALL, env::PROG_SYSCALL),
        (orders::SHM_DIR, env::SHM_DIR),
        (orders::OUT, env::OUT),
    ] {
        assert_eq!(a, b);
    }
    assert_eq!(env::OUT, "MOAT_TRACE_OUT");
}
