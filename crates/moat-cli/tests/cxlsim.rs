//! `moat cxlsim` end to end on `examples/cxlsim/membench.c`, whose CXL traffic is known by
//! construction: a pointer chase over a buffer the `threshold` policy places on CXL is slowed by
//! about `1 + extra / miss`; with everything local nothing is injected; the JSON report parses and
//! names the allocation site; bad topologies and policies fail naming what is wrong. Needs
//! `perf_event_open` (root, or `perf_event_paranoid` ≤ 1) and a C compiler; skips saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn moat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moat"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

#[test]
fn a_chase_on_cxl_slows_by_the_extra_latency_and_local_memory_by_nothing() {
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
    ] {
        let mut c = moat();
        c.arg("cxlsim").args(args);
        if args[0] == "--compare" {
            c.args(["--local", "100,10"]);
        }
        let o = c.args(["--", "/bin/true"]).output().expect("runs");
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
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
    // A chase long enough to attach to after its 64 MiB array exists.
    let mut child = Command::new(&bench)
        .args(["chase", "64", "40000000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("membench starts");
    std::thread::sleep(std::time::Duration::from_millis(1500));
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
