//! Maps in shared memory, end to end: the controller reads the traced process's maps while it runs
//! (dumps every `--interval` with growing counts), streams ring-buffer records as they are
//! committed, and still reads the maps of a process that died without a word (`SIGKILL`).

use moat_agent::control::{launch_observed, le, Options, Outcome};
use moat_agent::protocol::Record;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/c")
        .join(name)
}

const TARGET: &str = env!("CARGO_BIN_EXE_moat-trace-target");

/// Traces `command`; also returns when each record arrived and when the trace ended.
fn trace_timed(
    options: Options,
    command: &[&str],
) -> (ExitStatus, Outcome, Vec<(Instant, Record)>, Instant) {
    let options = Options {
        capture: true,
        ..options
    };
    let command: Vec<OsString> = command.iter().map(OsString::from).collect();
    let mut arrivals = Vec::new();
    let mut log = Vec::new();
    let (status, outcome) = launch_observed(&options, &command, &mut log, &mut |r| {
        arrivals.push((Instant::now(), r.clone()))
    })
    .expect("trace starts");
    (status, outcome, arrivals, Instant::now())
}

/// Each dump's sum of the values of `map`, in order.
fn dump_sums(records: &[Record], map: &str) -> Vec<u64> {
    let mut sums = Vec::new();
    let mut current = 0;
    for r in records {
        match r {
            Record::DumpBegin(_) => current = 0,
            Record::Entry { map: m, value, .. } if m == map => current += le(value),
            Record::DumpEnd(_) => sums.push(current),
            _ => {}
        }
    }
    sums
}

#[test]
fn interval_dumps_read_the_maps_while_the_process_runs() {
    let (status, outcome, arrivals, end) = trace_timed(
        Options {
            object: example("uprobe_count.o"),
            interval: Some(Duration::from_millis(100)),
            ..Options::default()
        },
        &[TARGET, "serve", "900"],
    );
    assert_eq!(status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&outcome.stdout);
    let served: u64 = stdout
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("served N calls in {stdout:?}"));
    let sums = dump_sums(&outcome.records, "calls");
    assert_eq!(sums.last(), Some(&served), "the final dump has every call");
    // Dumps made while the process ran (well before the trace ended) saw counts grow.
    let running: Vec<Record> = arrivals
        .iter()
        .filter(|(t, _)| *t + Duration::from_millis(150) < end)
        .map(|(_, r)| r.clone())
        .collect();
    let early = dump_sums(&running, "calls");
    let growing: Vec<u64> = early
        .iter()
        .copied()
        .filter(|&s| s > 0 && s < served)
        .collect();
    assert!(growing.len() >= 2, "dumps while running: {early:?}");
    assert!(
        growing.windows(2).all(|w| w[0] <= w[1]) && growing.first() < growing.last(),
        "counts grow: {growing:?}"
    );
}

#[test]
fn ring_buffer_records_stream_while_the_process_runs() {
    // 10 calls of target_work (10 records), then 1.5 s of nothing, then SIGSEGV.
    let (status, outcome, arrivals, end) = trace_timed(
        Options {
            object: example("uretprobe_latency.o"),
            ..Options::default()
        },
        &[TARGET, "crash", "100"],
    );
    assert_eq!(status.signal(), Some(libc::SIGSEGV));
    let events: Vec<Instant> = arrivals
        .iter()
        .filter(|(_, r)| matches!(r, Record::Event { map, .. } if map == "events"))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(events.len(), 10);
    for t in events {
        assert!(
            end.duration_since(t) > Duration::from_millis(1000),
            "a record arrived {:?} before the end, not while the process ran",
            end.duration_since(t)
        );
    }
    assert_eq!(outcome.events("events").len(), 10);
}

#[test]
fn a_process_killed_by_sigkill_leaves_its_last_maps_and_records() {
    // Killed at once after the calls: no periodic dump of the agent's could have seen them, and
    // nothing runs at exit.
    let (status, outcome, _, _) = trace_timed(
        Options {
            object: example("uprobe_count.o"),
            ..Options::default()
        },
        &[TARGET, "killed", "700"],
    );
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(!outcome.records.contains(&Record::Detached));
    for arg in 0..7 {
        assert_eq!(outcome.value("calls", arg), Some(100), "calls[{arg}]");
    }
    let (status, outcome, _, _) = trace_timed(
        Options {
            object: example("uretprobe_latency.o"),
            ..Options::default()
        },
        &[TARGET, "killed", "700"],
    );
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(outcome.events("events").len(), 70);
    let hist: u64 = outcome
        .last_dump()
        .iter()
        .filter(|(m, _, _)| m == "hist")
        .map(|(_, _, v)| le(v))
        .sum();
    assert_eq!(hist, 70);
}

#[test]
fn maps_fall_back_to_the_report_file_when_they_cannot_be_shared() {
    // A directory no file can be made in: the agent loads the object again with private maps and
    // reports them through its file, as before maps were shared.
    let agent = moat_agent::control::find_agent().expect("the agent library");
    let report =
        std::env::temp_dir().join(format!("moat-live-fallback-{}.log", std::process::id()));
    std::fs::write(&report, b"").expect("report file");
    let status = std::process::Command::new(TARGET)
        .arg("700")
        .env("LD_PRELOAD", &agent)
        .env(moat_agent::agent::env::OBJECT, example("uprobe_count.o"))
        .env(moat_agent::agent::env::OUT, &report)
        .env(moat_agent::agent::env::SHM_DIR, "/proc/self")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("target runs");
    assert_eq!(status.code(), Some(3));
    let text = std::fs::read_to_string(&report).expect("report");
    let _ = std::fs::remove_file(&report);
    let records: Vec<Record> = text.lines().filter_map(Record::parse).collect();
    assert!(
        records.iter().any(
            |r| matches!(r, Record::Error { message, .. } if message.starts_with("maps not shared"))
        ),
        "{text}"
    );
    let outcome = Outcome {
        records,
        stdout: Vec::new(),
    };
    for arg in 0..7 {
        assert_eq!(outcome.value("calls", arg), Some(100), "calls[{arg}]");
    }
}
