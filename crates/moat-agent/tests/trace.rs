//! `moat trace` end to end: the agent preloaded into the bundled test program and into real
//! programs, the examples attached, and the counts compared with what the programs really did;
//! the traced programs' output and exit status compared with untraced runs.

use moat_agent::control::{attach_running, launch, le, Options, Outcome};
use moat_agent::protocol::Record;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/c")
        .join(name)
}

const TARGET: &str = env!("CARGO_BIN_EXE_moat-trace-target");

fn trace(options: Options, command: &[&str]) -> (ExitStatus, Outcome) {
    let options = Options {
        capture: true,
        ..options
    };
    let command: Vec<OsString> = command.iter().map(OsString::from).collect();
    let mut log = Vec::new();
    launch(&options, &command, &mut log).expect("trace starts")
}

fn untraced(command: &[&str]) -> (Option<i32>, Vec<u8>) {
    let out = Command::new(command[0])
        .args(&command[1..])
        .output()
        .expect("runs");
    (out.status.code(), out.stdout)
}

fn attached(outcome: &Outcome) -> Vec<(String, String)> {
    outcome
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Attached {
                program, method, ..
            } => Some((program.clone(), method.clone())),
            _ => None,
        })
        .collect()
}

fn errors(outcome: &Outcome) -> Vec<String> {
    outcome
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Error { program, message } => Some(format!("{program}: {message}")),
            _ => None,
        })
        .collect()
}

/// `target_add(i % 7, i)` for i < n: calls per first argument, and the sum of the results.
fn expected_adds(n: u64) -> ([u64; 7], u64) {
    let mut calls = [0u64; 7];
    let mut sum = 0u64;
    for i in 0..n {
        calls[(i % 7) as usize] += 1;
        sum = sum.wrapping_add(i % 7 + i);
    }
    (calls, sum)
}

fn check_counts(trap: bool) {
    let n = 2000;
    let cmd = [TARGET, "2000"];
    let (status, outcome) = trace(
        Options {
            object: example("uprobe_count.o"),
            trap,
            ..Options::default()
        },
        &cmd,
    );
    assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
    let methods = attached(&outcome);
    assert_eq!(methods.len(), 2, "{methods:?}");
    for (_, m) in &methods {
        assert_eq!(m.contains("trap"), trap, "{m}");
    }
    let (calls, sum) = expected_adds(n);
    for (arg, &count) in calls.iter().enumerate() {
        assert_eq!(
            outcome.value("calls", arg as u64),
            Some(count),
            "calls[{arg}]"
        );
    }
    assert_eq!(outcome.value("returned", 0), Some(sum));
    let (code, stdout) = untraced(&cmd);
    assert_eq!(status.code(), code);
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        String::from_utf8_lossy(&stdout)
    );
}

#[test]
fn uprobe_and_uretprobe_count_every_call_rewritten() {
    check_counts(false);
}

#[test]
fn uprobe_and_uretprobe_count_every_call_with_int3() {
    check_counts(true);
}

#[test]
fn latency_histogram_and_events_from_two_threads() {
    let (threads, n) = (2u64, 500u64);
    let (status, outcome) = trace(
        Options {
            object: example("uretprobe_latency.o"),
            ..Options::default()
        },
        &[TARGET, "500", "2"],
    );
    assert_eq!(status.code(), Some(3));
    assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
    let calls = threads * n / 10;
    let total: u64 = outcome
        .last_dump()
        .iter()
        .filter(|(m, _, _)| m == "hist")
        .map(|(_, _, v)| le(v))
        .sum();
    assert_eq!(total, calls);
    let events = outcome.events("events");
    assert_eq!(events.len() as u64, calls);
    let address = outcome
        .records
        .iter()
        .find_map(|r| match r {
            Record::Attached { address, .. } => Some(*address),
            _ => None,
        })
        .expect("attached");
    let mut tids = std::collections::BTreeSet::new();
    for e in &events {
        assert_eq!(e.len(), 40);
        let pid = le(&e[0..4]);
        tids.insert(le(&e[4..8]));
        assert!(pid > 0);
        assert_eq!(le(&e[16..24]), address, "bpf_get_func_ip");
        assert_eq!(&e[24..39], b"moat-trace-targ", "bpf_get_current_comm");
    }
    assert_eq!(tids.len() as u64, threads, "bpf_get_current_pid_tgid");
}

fn malloc_count(n: u64) -> u64 {
    let (status, outcome) = trace(
        Options {
            object: example("malloc_free.o"),
            ..Options::default()
        },
        &[TARGET, "malloc", &n.to_string()],
    );
    assert_eq!(status.code(), Some(0));
    assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
    let mallocs = outcome.value("counts", 0).expect("mallocs counted");
    let frees = outcome.value("counts", 1).expect("frees counted");
    assert!(frees > 0);
    mallocs
}

#[test]
fn malloc_counts_match_the_calls_made() {
    // The runtime's own allocations are the same in both runs: the difference is the loop's.
    assert_eq!(malloc_count(2000) - malloc_count(1000), 1000);
}

#[test]
fn real_programs_keep_their_output() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let cmd = ["/bin/ls", "-l", dir];
    let (status, outcome) = trace(
        Options {
            object: example("malloc_free.o"),
            ..Options::default()
        },
        &cmd,
    );
    assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
    assert_eq!(attached(&outcome).len(), 2);
    assert!(
        outcome.value("counts", 0).unwrap_or(0) > 0,
        "ls calls malloc"
    );
    let (code, stdout) = untraced(&cmd);
    assert_eq!(status.code(), code);
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        String::from_utf8_lossy(&stdout)
    );
}

#[test]
fn missing_targets_are_named_and_the_program_runs_on() {
    let cmd = ["/bin/ls", "/"];
    let (status, outcome) = trace(
        Options {
            object: example("uprobe_count.o"),
            ..Options::default()
        },
        &cmd,
    );
    let errs = errors(&outcome);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].contains("moat-trace-target: not mapped"),
        "{errs:?}"
    );
    let (code, stdout) = untraced(&cmd);
    assert_eq!(status.code(), code);
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        String::from_utf8_lossy(&stdout)
    );
}

#[test]
fn a_misbehaving_probe_is_disabled_and_the_program_is_unharmed() {
    let cmd = [TARGET, "300"];
    // Verified, the probe is refused.
    let (_, refused) = trace(
        Options {
            object: example("misbehave.o"),
            ..Options::default()
        },
        &cmd,
    );
    assert!(
        errors(&refused).iter().any(|e| e.contains("not loaded")),
        "{:?}",
        errors(&refused)
    );
    // Unverified, it runs, every run fails, and the program's results are its own.
    let (status, outcome) = trace(
        Options {
            object: example("misbehave.o"),
            no_verify: true,
            ..Options::default()
        },
        &cmd,
    );
    assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
    let stats = outcome
        .records
        .iter()
        .find_map(|r| match r {
            Record::Stats { hits, errors, .. } => Some((*hits, *errors)),
            _ => None,
        })
        .expect("stats");
    assert_eq!(
        stats,
        (300, 300),
        "every run stopped (violations, then disabled)"
    );
    let (code, stdout) = untraced(&cmd);
    assert_eq!(status.code(), code);
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        String::from_utf8_lossy(&stdout)
    );
}

#[test]
fn python_keeps_its_output() {
    let Some(python) = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    else {
        println!("skipped: no python3");
        return;
    };
    let cmd = [python.as_str(), "-c", "print(sum(range(100)))"];
    let (status, outcome) = trace(
        Options {
            object: example("malloc_free.o"),
            ..Options::default()
        },
        &cmd,
    );
    assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
    assert!(
        outcome.value("counts", 0).unwrap_or(0) > 100,
        "python mallocs"
    );
    let (code, stdout) = untraced(&cmd);
    assert_eq!(status.code(), code);
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        String::from_utf8_lossy(&stdout)
    );
}

/// Successful and failed `openat` calls of `moat-trace-target open N PATH`, and the file names
/// the sys_enter probe read.
fn open_counts(n: u64, path: &str) -> (u64, u64, Vec<String>) {
    let (status, outcome) = trace(
        Options {
            object: example("openat.o"),
            ..Options::default()
        },
        &[TARGET, "open", &n.to_string(), path],
    );
    assert_eq!(status.code(), Some(0));
    assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
    let names = outcome
        .events("events")
        .iter()
        .map(|e| {
            let name = &e[8..];
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            String::from_utf8_lossy(&name[..end]).into_owned()
        })
        .collect();
    (
        outcome.value("results", 0).unwrap_or(0),
        outcome.value("results", 1).unwrap_or(0),
        names,
    )
}

#[test]
fn openat_tracepoints_count_every_call_with_its_file_name() {
    let (ok1, failed1, names1) = open_counts(10, "/");
    let (ok2, failed2, names2) = open_counts(30, "/");
    assert_eq!(ok2 - ok1, 20, "sys_exit_openat: successful opens");
    assert_eq!(failed2, failed1);
    assert_eq!(names2.len() - names1.len(), 20, "sys_enter_openat events");
    assert_eq!(names2.iter().filter(|n| *n == "/").count(), 30);
    let (_, failed, names) = open_counts(5, "/no/such/file");
    assert_eq!(names.iter().filter(|n| *n == "/no/such/file").count(), 5);
    assert!(failed >= 5);
}

/// The file names of `moat-trace-target open N PATH` as `opensnoop_perf.o` reports them through
/// its perf event array.
fn perf_open_names(n: u64, path: &str) -> Vec<String> {
    let (status, outcome) = trace(
        Options {
            object: example("opensnoop_perf.o"),
            ..Options::default()
        },
        &[TARGET, "open", &n.to_string(), path],
    );
    assert_eq!(status.code(), Some(0));
    assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
    outcome
        .events("events")
        .iter()
        .map(|e| {
            assert_eq!(e.len(), 72, "struct event: pid, flags, name[64]");
            let name = &e[8..];
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            String::from_utf8_lossy(&name[..end]).into_owned()
        })
        .collect()
}

#[test]
fn perf_event_output_streams_every_record() {
    let names = perf_open_names(25, "/");
    assert_eq!(names.iter().filter(|n| *n == "/").count(), 25, "{names:?}");
    let missing = perf_open_names(7, "/no/such/file");
    assert_eq!(missing.iter().filter(|n| *n == "/no/such/file").count(), 7);
}

#[test]
fn openat_in_a_real_program() {
    let (status, outcome) = trace(
        Options {
            object: example("openat.o"),
            ..Options::default()
        },
        &["/bin/cat", "/etc/hostname", "/no/such/file"],
    );
    assert_eq!(status.code(), Some(1), "cat fails on the missing file");
    let names: Vec<String> = outcome
        .events("events")
        .iter()
        .map(|e| {
            String::from_utf8_lossy(&e[8..])
                .trim_end_matches('\0')
                .to_string()
        })
        .collect();
    assert!(names.contains(&"/etc/hostname".to_string()), "{names:?}");
    assert!(names.contains(&"/no/such/file".to_string()), "{names:?}");
    let ok = outcome.value("results", 0).unwrap_or(0);
    let failed = outcome.value("results", 1).unwrap_or(0);
    assert_eq!(ok + failed, names.len() as u64, "every enter has its exit");
}

/// The executable mappings of `pid`'s program, read through `/proc/PID/mem`.
fn program_code(pid: u32) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
    let mut code = Vec::new();
    for line in maps.lines().filter(|l| l.contains("moat-trace-target")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if !f[1].contains('x') {
            continue;
        }
        let (s, e) = f[0].split_once('-').expect("range");
        let (s, e) = (
            u64::from_str_radix(s, 16).expect("hex"),
            u64::from_str_radix(e, 16).expect("hex"),
        );
        let mut buf = vec![0u8; (e - s) as usize];
        mem.seek(SeekFrom::Start(s)).expect("seek");
        mem.read_exact(&mut buf).expect("read code");
        code.extend(buf);
    }
    code
}

#[test]
fn injected_into_a_running_process_and_detached_byte_identical() {
    let child = Command::new(TARGET)
        .args(["serve", "1500"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("target starts");
    let pid = child.id();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = program_code(pid);
    let start = std::time::Instant::now();
    let mut log = Vec::new();
    let outcome = match attach_running(
        &Options {
            object: example("uprobe_count.o"),
            ..Options::default()
        },
        pid as i32,
        &mut log,
        &mut || start.elapsed() > std::time::Duration::from_millis(400),
    ) {
        Ok(o) => o,
        Err(e) if e.to_string().contains("Operation not permitted") => {
            println!("skipped: ptrace not permitted here ({e})");
            let _ = child.wait_with_output();
            return;
        }
        Err(e) => panic!("injected and detached: {e}"),
    };
    let after = program_code(pid);
    assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
    assert_eq!(attached(&outcome).len(), 2);
    assert!(outcome.records.contains(&Record::Detached));
    assert!(
        before == after,
        "the code is byte-identical after detaching"
    );
    let counted: u64 = (0..7).filter_map(|k| outcome.value("calls", k)).sum();
    assert!(counted > 1000, "probes fired while attached ({counted})");
    let out = child.wait_with_output().expect("target ends");
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    let served: u64 = text
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .expect("served N");
    assert!(counted < served, "counted only while attached");
}

#[test]
fn a_crashing_process_leaves_its_maps() {
    let (status, outcome) = trace(
        Options {
            object: example("uprobe_count.o"),
            ..Options::default()
        },
        &[TARGET, "crash", "700"],
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGSEGV));
    assert!(!outcome.records.contains(&Record::Detached));
    // The agent's background dump (every second) saw every call.
    for arg in 0..7 {
        assert_eq!(outcome.value("calls", arg), Some(100), "calls[{arg}]");
    }
}

#[test]
fn raw_sys_enter_counts_every_system_call_and_reads_registers() {
    let count = |n: u64| {
        let (status, outcome) = trace(
            Options {
                object: example("syscall_count.o"),
                ..Options::default()
            },
            &[TARGET, "open", &n.to_string(), "/"],
        );
        assert_eq!(status.code(), Some(0));
        assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
        (
            outcome.value("syscalls", 257).unwrap_or(0),
            outcome.value("writes", 1).unwrap_or(0),
        )
    };
    let (opens_10, writes_10) = count(10);
    let (opens_40, _) = count(40);
    assert_eq!(opens_40 - opens_10, 30, "openat counted by raw sys_enter");
    // The program's one line of output, its fd read from the saved registers.
    assert_eq!(writes_10, 1, "write(1, ...) seen with its file descriptor");
}

#[test]
fn a_second_object_injected_meanwhile_leaves_the_first_undisturbed() {
    let child = Command::new(TARGET)
        .args(["serve", "1500"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("target starts");
    let pid = child.id() as i32;
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = program_code(child.id());
    let run = |delay: u64, length: u64| {
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(delay));
            let start = std::time::Instant::now();
            attach_running(
                &Options {
                    object: example("uprobe_count.o"),
                    ..Options::default()
                },
                pid,
                &mut Vec::new(),
                &mut || start.elapsed() > std::time::Duration::from_millis(length),
            )
        })
    };
    let first = run(0, 700);
    let second = run(200, 250);
    let (first, second) = match (first.join().expect("first"), second.join().expect("second")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) if e.to_string().contains("Operation not permitted") => {
            println!("skipped: ptrace not permitted here ({e})");
            let _ = child.wait_with_output();
            return;
        }
        (a, b) => panic!("{:?} {:?}", a.err(), b.err()),
    };
    let after = program_code(child.id());
    let total = |o: &Outcome| (0..7).filter_map(|k| o.value("calls", k)).sum::<u64>();
    assert!(errors(&first).is_empty() && errors(&second).is_empty());
    assert!(total(&second) > 0, "the second object's probes ran");
    assert!(
        total(&first) > total(&second),
        "the first object kept counting while the second was attached and after"
    );
    assert!(before == after, "byte-identical after both detached");
    let out = child.wait_with_output().expect("target ends");
    assert_eq!(out.status.code(), Some(3));
}

/// A verified probe that would run for milliseconds per call (2^22 `bpf_loop` steps) is stopped at
/// its time budget on every hit and then disabled; the traced program's results are its own.
#[test]
fn a_slow_probe_is_stopped_at_its_time_budget() {
    let cmd = [TARGET, "100"];
    let (status, outcome) = trace(
        Options {
            object: example("slow_probe.o"),
            time_budget: Some(std::time::Duration::from_micros(50)),
            ..Options::default()
        },
        &cmd,
    );
    assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
    let attached = attached(&outcome);
    assert!(
        attached.len() == 1 && attached[0].1.starts_with("rewritten"),
        "{attached:?}"
    );
    let stats = outcome
        .records
        .iter()
        .find_map(|r| match r {
            Record::Stats {
                hits,
                errors,
                overruns,
                ..
            } => Some((*hits, *errors, *overruns)),
            _ => None,
        })
        .expect("stats");
    assert_eq!(
        stats,
        (100, 100, 3),
        "(runs, failed runs, runs over the budget): three overruns, then disabled"
    );
    let (code, stdout) = untraced(&cmd);
    assert_eq!(status.code(), code);
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        String::from_utf8_lossy(&stdout)
    );
}

/// A probe on `mmap` runs inside `malloc` with the arena's lock held (a large allocation): its
/// helpers must not allocate, or the process deadlocks on its own lock. `cxl_all.o` reads the
/// caller's return address with `bpf_probe_read_user` in every allocator probe, `mmap`'s too.
#[test]
fn probes_inside_the_allocator_lock_never_deadlock() {
    // The interpreter itself (`python3` may be a launcher script that execs it).
    let Some(python) = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    else {
        println!("skipped: no python3");
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (status, outcome) = trace(
            Options {
                object: example("cxl_all.o"),
                ..Options::default()
            },
            &[
                python.as_str(),
                "-c",
                "b = [bytearray(4 << 20) for _ in range(8)]; print(sum(len(x) for x in b))",
            ],
        );
        let _ = tx.send((status, outcome));
    });
    let (status, outcome) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("python3 under cxl_all.o finished (a deadlock in malloc otherwise)");
    assert_eq!(status.code(), Some(0));
    assert!(errors(&outcome).is_empty(), "{:?}", errors(&outcome));
    assert_eq!(String::from_utf8_lossy(&outcome.stdout).trim(), "33554432");
    // The eight 4 MiB buffers were placed on CXL (python frees them before it exits, so the
    // cumulative total says it: mmap'd inside malloc and malloc'd, both count).
    let cxl = outcome.value("cxl_totals", 1).expect("cxl_totals");
    assert!(cxl >= 8 * (4 << 20), "{cxl} bytes placed");
}
