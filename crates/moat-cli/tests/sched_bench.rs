//! `moat sched-bench` end to end on a tiny configuration: it prints a table per workload and
//! writes a PNG plot. Only the output's shape is checked; the numbers belong in BENCHMARKS.md.

use std::process::Command;

#[test]
fn sched_bench_prints_tables_and_writes_plots() {
    let dir = std::env::temp_dir().join(format!("moat-sched-bench-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args([
            "sched-bench",
            "--requests",
            "2000",
            "--loads",
            "30",
            "--workloads",
            "bimodal,exponential",
            "--systems",
            "fcfs,tokio,signal-10,coop-adaptive,signal-adaptive-ebpf",
            "--quiet",
            "--out",
        ])
        .arg(&dir)
        .output()
        .expect("moat runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("uintr: "), "{stdout}");
    for row in [
        "| fcfs | 30 |",
        "| tokio | 30 |",
        "| signal-10 | 30 |",
        "| coop-adaptive | 30 |",
    ] {
        assert_eq!(stdout.matches(row).count(), 2, "{row} in {stdout}");
    }
    for workload in ["bimodal", "exponential"] {
        let png = std::fs::read(dir.join(format!("sched-{workload}.png"))).expect("plot written");
        assert_eq!(png.get(1..4), Some(&b"PNG"[..]));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
