//! `moat cxlsim` end to end on `examples/cxlsim/membench.c`, whose CXL traffic is known by
//! construction: a pointer chase over a buffer the `threshold` policy places on CXL is slowed by
//! about `1 + extra / miss`; with everything local nothing is injected; the JSON report parses and
//! names the allocation site; bad topologies and policies fail naming what is wrong. Needs
//! `perf_event_open` (root, or `perf_event_paranoid` ≤ 1) and a C compiler; skips saying so.
//!
//! The exact mode (`--mode exact`, under valgrind's lackey) counts the CXL misses of membench's
//! `sweep`, known by construction: one per line per pass. Needs valgrind (`scripts/cxlsim-deps.sh`,
//! run here when it is missing); skips saying so. It takes ~a minute, most of it the agent's start
//! under valgrind.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use support::workspace;

fn moat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moat"))
}

/// membench, built once per test process.
fn membench() -> Option<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("membench");
    if !bin.is_file() {
        let built = Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&bin)
            .arg(workspace().join("examples/cxlsim/membench.c"))
            .status()
            .ok()?;
        if !built.success() {
            return None;
        }
    }
    Some(bin)
}

/// Whether this process may sample others with the software CPU clock: as root, or where
/// `perf_event_paranoid` allows it for one's own processes.
fn can_sample() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if root || paranoid.is_some_and(|p| p <= 1) {
        return true;
    }
    println!("skipped: not root and perf_event_paranoid is {paranoid:?} (sampling needs <= 1)");
    false
}

fn ns_per_step(stdout: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.contains("ns/step"))
        .unwrap_or_else(|| panic!("no membench line in {stdout}"));
    line.split(" ns/step")
        .next()
        .and_then(|b| b.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unparsable: {line}"))
}

fn report(o: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let json = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no JSON report: {stdout}\n{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    serde_json::from_str(json).expect("the report is JSON")
}

/// Held by the test that times a run and by the one that keeps both cores busy under valgrind:
/// run side by side (cargo runs a file's tests in parallel), the second skews the first's timing.
static CORES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The cores to this test alone, among this file's tests.
fn cores() -> std::sync::MutexGuard<'static, ()> {
    CORES.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_chase_on_cxl_slows_by_the_extra_latency_and_local_memory_by_nothing() {
    let _cores = cores();
    let Some(bench) = membench() else {
        println!("skipped: no C compiler");
        return;
    };
    if !can_sample() {
        return;
    }
    let bench = bench.to_str().unwrap_or_default();
    let chase = [bench, "chase", "128", "1500000"];
    let run = |extra: &str, policy: &str, inject: bool| {
        let mut c = moat();
        c.args(["cxlsim", "--json", "--latency", extra, "--policy", policy]);
        c.args(["--calibrate-mib", "128"]);
        if !inject {
            c.args(["--no-inject", "--compare", "100,300"]);
        }
        let o = c.arg("--").args(chase).output().expect("moat cxlsim runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (ns_per_step(&String::from_utf8_lossy(&o.stdout)), report(&o))
    };
    // The baseline: the same sampling, no delay.
    let (base, predicted) = run("200", "threshold", false);
    let (slowed, r) = run("200", "threshold", true);
    let miss = r["local_dram"]["latency_ns"].as_f64().expect("calibration");
    let analytic = 1.0 + 200.0 / miss;
    let measured = slowed / base;
    // Loose bounds: a shared, noisy machine (BENCHMARKS.md has the careful numbers).
    assert!(
        measured > 1.0 + (analytic - 1.0) * 0.5 && measured < 1.0 + (analytic - 1.0) * 2.0,
        "measured {measured:.2}x, analytic {analytic:.2}x (miss {miss:.0} ns)"
    );
    // The prediction alone says the same of the whole run.
    let p = predicted["slowdown"].as_f64().expect("slowdown");
    assert!(p > 1.2, "predicted {p:.2}x");
    assert!(predicted["injected_ns"].as_u64() == Some(0));
    // --compare: the same samples on +100 and +300 ns expanders, side by side.
    let configs = predicted["configurations"]
        .as_array()
        .expect("configurations");
    let slowdowns: Vec<f64> = configs
        .iter()
        .filter_map(|c| c["slowdown"].as_f64())
        .collect();
    assert_eq!(slowdowns.len(), 3, "{configs:?}");
    assert!(
        slowdowns[1] < slowdowns[0] && slowdowns[0] < slowdowns[2],
        "+100 < +200 (this run) < +300: {slowdowns:?}"
    );
    assert!(r["injected_ns"].as_u64().unwrap_or(0) > 0);
    // The big buffer's call site (in membench's `cycle`) takes the CXL time.
    let sites = r["sites"].as_array().expect("sites");
    assert!(
        sites
            .first()
            .and_then(|s| s["name"].as_str())
            .is_some_and(|n| n.contains("cycle")),
        "{sites:?}"
    );
    assert!(r["cxl_latency_samples"].as_u64().unwrap_or(0) > 50, "{r}");
    // Everything local: no CXL samples, nothing injected.
    let (_, local) = run("200", "local", true);
    assert_eq!(local["cxl_latency_samples"].as_u64(), Some(0), "{local}");
    assert_eq!(local["injected_ns"].as_u64(), Some(0), "{local}");
}

/// valgrind and a C compiler, installed when missing; `Err` says why they cannot be.
fn exact_tools() -> Result<(), String> {
    support::ensure_tools(&["cc", "valgrind"], "cxlsim-deps.sh")
}

#[test]
fn the_exact_mode_counts_one_cxl_miss_per_line_per_pass_of_a_sweep() {
    let _cores = cores();
    if let Err(why) = exact_tools() {
        println!("skipped: {why}");
        return;
    }
    let Some(bench) = membench() else {
        println!("skipped: no C compiler");
        return;
    };
    // 2 MiB swept 3 times through a 128 KiB LLC: every line misses on every pass. The array is
    // one malloc above the threshold policy's 1 MiB, so on CXL; it starts 16 bytes into a page
    // (malloc's header), so a pass touches 32768 or 32769 lines.
    let (mib, passes) = (2u64, 3u64);
    let o = moat()
        .args(["cxlsim", "--mode", "exact", "--json", "--local", "100,10"])
        .args(["--llc-size", "128K", "--llc-ways", "16", "--latency", "200"])
        .args(["--compare", "100,300", "--"])
        .arg(&bench)
        .args(["sweep", &mib.to_string(), &passes.to_string()])
        .output()
        .expect("moat cxlsim runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&o);
    assert_eq!(r["mode"], "exact", "{r}");
    let e = &r["exact"];
    let lines = mib * (1 << 20) / 64;
    let cxl = e["cxl_misses"].as_u64().expect("cxl_misses");
    assert!(
        (passes * lines..=passes * (lines + 1)).contains(&cxl),
        "{cxl} CXL misses; by construction {passes} x {lines} (+1 per pass): {e}"
    );
    assert_eq!(e["llc"]["size_bytes"].as_u64(), Some(128 << 10));
    // Each pass is one stream: a latency-bound miss where it starts, streaming after.
    let latency = e["cxl_latency_misses"].as_u64().expect("latency misses");
    assert!(latency <= 2 * passes, "{e}");
    assert_eq!(latency + e["cxl_stream_misses"].as_u64().unwrap_or(0), cxl);
    // Latency-bound misses cost +200 ns each, divided by the parallelism the native run time
    // implies; 10 GB/s of streaming fits the 32 GB/s link.
    let parallelism = e["parallelism"].as_f64().expect("parallelism");
    let delay = r["delay_latency_ns"].as_u64().expect("delay") as f64;
    assert!(
        (delay - latency as f64 * 200.0 / parallelism).abs() <= 1.0 + latency as f64,
        "{r}"
    );
    assert_eq!(r["delay_bandwidth_ns"].as_u64(), Some(0), "{r}");
    assert_eq!(r["injected_ns"].as_u64(), Some(0));
    // Every CXL miss has its allocation site: membench's main, which made the array (a line
    // past the array's end may fall in the mmap that holds it, whose site is in malloc).
    assert!(r["placed_ranges"].as_u64().unwrap_or(0) >= 1, "{r}");
    let sites = r["sites"].as_array().expect("sites");
    let by_site: u64 = sites.iter().filter_map(|s| s["samples"].as_u64()).sum();
    assert_eq!(by_site, cxl, "{r}");
    assert!(
        sites[0]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("main"))
            && sites[0]["samples"].as_u64() >= Some(cxl - passes),
        "{r}"
    );
}

#[test]
fn bad_topologies_and_policies_are_named() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let topo = dir.join("bad.topo");
    std::fs::write(
        &topo,
        "switch s parent=root latency=70ns bandwidth=64GB/s\ndevice d parent=s latency=fast bandwidth=8GB/s\n",
    )
    .expect("write");
    let o = moat()
        .args(["cxlsim", "--local", "100,10", "--topology"])
        .arg(&topo)
        .args(["--", "/bin/true"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.topo") && err.contains("line 2") && err.contains("latency `fast`"),
        "{err}"
    );
    let o = moat()
        .args([
            "cxlsim",
            "--local",
            "100,10",
            "--policy",
            "nonesuch",
            "--json",
            "--",
            "/bin/true",
        ])
        .output()
        .expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a JSON error");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("nonesuch") && e.contains("threshold")),
        "{v}"
    );
    // Malformed --compare and --local values are named, before anything runs.
    for (args, needle) in [
        (
            ["--compare", "fast"],
            "--compare fast: expected NS[:GB_PER_S]",
        ),
        (
            ["--compare", "200:0"],
            "--compare 200:0: bandwidth must be a positive number",
        ),
        (["--local", "100"], "--local 100: expected NS,GB_PER_S"),
        (["--local", "0,10"], "--local 0,10: both must be positive"),
        (
            ["--llc-size", "big"],
            "--llc-size big: expected bytes, e.g. 32M or 491520K",
        ),
        (["--llc-ways", "0"], "associativity 0 must be 1..=64"),
    ] {
        let mut c = moat();
        c.arg("cxlsim").args(args);
        if args[0] == "--compare" {
            c.args(["--local", "100,10"]);
        }
        if args[0].starts_with("--llc") {
            c.args(["--local", "100,10", "--mode", "exact"]);
        }
        let o = c.args(["--", "/bin/true"]).output().expect("runs");
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // The exact mode runs a command; it cannot attach.
    let o = moat()
        .args(["cxlsim", "--local", "100,10", "--mode", "exact", "-p", "1"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--mode exact runs a command"), "{err}");
    // An object that is no policy (no `cxl_placed` map) is refused before anything runs.
    let counter = workspace().join("examples/c/counter.o");
    let o = moat()
        .args(["cxlsim", "--local", "100,10", "--policy"])
        .arg(&counter)
        .args(["--", "/bin/true"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no `cxl_placed` map"), "{err}");
}

#[test]
fn attaching_places_existing_memory_with_existing() {
    let Some(bench) = membench() else {
        println!("skipped: no C compiler");
        return;
    };
    if !can_sample() {
        return;
    }
    // A chase that outlives both attaches however loaded the machine (it is killed below),
    // attached to once its 64 MiB array exists: the policy must not see the allocation.
    let mut child = Command::new(&bench)
        .args(["chase", "64", "2000000000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("membench starts");
    let statm = format!("/proc/{}/statm", child.id());
    let resident = || {
        std::fs::read_to_string(&statm)
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * 4096)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while resident() < 64 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "membench did not fill its array in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    let run = |existing: bool| {
        let mut c = moat();
        c.args([
            "cxlsim",
            "--json",
            "--no-inject",
            "--local",
            "150,20",
            "-p",
            &pid,
        ]);
        c.args(["--duration", "1"]);
        if existing {
            c.args(["--existing", "1"]);
        }
        let o = c.output().expect("moat cxlsim runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        report(&o)
    };
    let without = run(false);
    let with = run(true);
    let _ = child.kill();
    let _ = child.wait();
    // The array was allocated before moat attached: the policy never saw it.
    assert_eq!(
        without["cxl_latency_samples"].as_u64(),
        Some(0),
        "{without}"
    );
    assert!(
        with["cxl_latency_samples"].as_u64().unwrap_or(0) > 50,
        "{with}"
    );
    assert!(with["slowdown"].as_f64().unwrap_or(0.0) > 1.3, "{with}");
    assert!(
        with["sites"][0]["name"]
            .as_str()
            .is_some_and(|n| n.contains("before moat attached")),
        "{with}"
    );
}
