//! The other transports of the side-by-side comparison, run small: Open MPI (shared memory and TCP)
//! through the C driver, TCP over a veth pair between two network namespaces, and the emulated CXL
//! device. Open MPI is installed with `scripts/omb-deps.sh` when missing; where that or the
//! namespaces are impossible the test prints `skipped: <reason>` and passes — except under
//! `CI=true`, where it fails.

use moat_omb::launch::{Kind, Launcher};
use moat_omb::netns::{self, VethPair};
use moat_omb::suite::{self, Bench, Params, Row};
use moat_omb::{Comm, Device, Geometry, Tcp};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips (or, under CI, fails) with `reason`.
fn skip(reason: &str) {
    assert!(!ci(), "CI=true and {reason}");
    println!("skipped: {reason}");
}

/// Whether `tool` runs: `--version`, or `-V` for tools that know only that (iproute2's `ip`).
fn have(tool: &str) -> bool {
    ["--version", "-V"].iter().any(|flag| {
        Command::new(tool)
            .arg(flag)
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Makes sure `mpicc` and `mpirun` exist, installing them with the project's script.
fn mpi_available() -> Result<(), String> {
    if have("mpicc") && have("mpirun") {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/omb-deps.sh");
    let status = Command::new("bash").arg(&script).status();
    if have("mpicc") && have("mpirun") {
        return Ok(());
    }
    Err(format!(
        "Open MPI missing and {} failed: {status:?}",
        script.display()
    ))
}

fn small() -> Params {
    Params {
        min: 1,
        max: 64 << 10,
        iters: Some(50),
        iters_large: Some(5),
        window: 8,
    }
}

fn launcher() -> Launcher {
    Launcher {
        exe: std::env::current_exe().unwrap(),
        prefix: Vec::new(),
        scratch: std::env::temp_dir().join(format!("moat-omb-test-{}", std::process::id())),
    }
}

#[test]
fn open_mpi_runs_the_same_patterns() {
    if let Err(reason) = mpi_available() {
        return skip(&reason);
    }
    let l = launcher();
    let params = Params {
        max: 16 << 10,
        ..small()
    };
    for (kind, bench) in [
        (Kind::MpiSm, Bench::Latency),
        (Kind::MpiTcp, Bench::Latency),
        (Kind::MpiSm, Bench::Allreduce),
    ] {
        let rows = l
            .run(kind, bench, 2, &params, 0, &mut |_| {})
            .unwrap_or_else(|e| panic!("{} {bench}: {e}", kind.name()));
        let sizes: Vec<usize> = rows.iter().map(|r| r.size).collect();
        assert_eq!(sizes, params.sizes(bench), "{} {bench}", kind.name());
        assert!(rows.iter().all(|r| r.value > 0.0), "{rows:?}");
    }
    let _ = std::fs::remove_dir_all(&l.scratch);
}

/// The role of a process started in a namespace by the veth test, if this is one.
fn veth_role() -> Option<(usize, u16)> {
    let rank = std::env::var("MOAT_OMB_VETH_RANK").ok()?.parse().ok()?;
    let port = std::env::var("MOAT_OMB_VETH_PORT").ok()?.parse().ok()?;
    Some((rank, port))
}

/// Entry point of the processes the veth test starts in each namespace (nothing otherwise).
#[test]
fn veth_child() {
    let Some((rank, port)) = veth_role() else {
        return;
    };
    let addrs: Vec<SocketAddr> = (0..2)
        .map(|r| SocketAddr::new(netns::ADDRS[r], port + r as u16))
        .collect();
    let mut t = Tcp::connect(rank, &addrs).unwrap();
    let params = Params {
        max: 4096,
        ..small()
    };
    suite::run(Bench::Latency, &mut t, &params, &mut |r| {
        println!("ROW {} {}", r.size, r.value);
    })
    .unwrap();
    std::process::exit(0);
}

#[test]
fn tcp_crosses_a_veth_pair_between_two_namespaces() {
    if veth_role().is_some() {
        return;
    }
    // Namespaces need CAP_NET_ADMIN: run as root.
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if !root || !have("ip") {
        return skip("network namespaces need root and iproute2");
    }
    let pair = match VethPair::create() {
        Ok(p) => p,
        Err(e) => return skip(&e.to_string()),
    };
    let port = 30_000 + (std::process::id() % 20_000) as u16;
    let spawn = |r: usize| {
        Command::new("ip")
            .args(["netns", "exec", pair.namespace(r)])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "veth_child", "--nocapture", "--test-threads=1"])
            .env("MOAT_OMB_VETH_RANK", r.to_string())
            .env("MOAT_OMB_VETH_PORT", port.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (c0, c1) = (spawn(0), spawn(1));
    let (o0, o1) = (
        c0.wait_with_output().unwrap(),
        c1.wait_with_output().unwrap(),
    );
    assert!(o0.status.success() && o1.status.success());
    // The test harness prints `test veth_child ... ` without a newline before the child's first
    // row: a row starts wherever `ROW ` does.
    let stdout = String::from_utf8_lossy(&o0.stdout);
    let rows: Vec<Row> = stdout
        .lines()
        .filter_map(|l| l.find("ROW ").map(|at| &l[at..]))
        .filter_map(moat_omb::launch::parse_row)
        .collect();
    assert_eq!(rows.len(), 13, "{stdout}");
    assert!(rows.iter().all(|r| r.value > 0.0));
}

#[test]
fn the_emulated_cxl_device_adds_its_cost_per_line() {
    let g = Geometry::default();
    let path: PathBuf = std::env::temp_dir().join(format!("moat-omb-cxl-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    Comm::create(&path, &g).unwrap();
    let mut a = Comm::attach_on(&path, 0, Device { miss_ns: 1000 }).unwrap();
    let mut b = Comm::attach_on(&path, 1, Device { miss_ns: 1000 }).unwrap();
    std::fs::remove_file(&path).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    for _ in 0..10 {
        a.send(1, &[7; 4000]).unwrap();
        assert_eq!(b.recv(0, &mut buf).unwrap(), 4000);
    }
    // 4016 bytes are 63 lines, charged once by the sender and once by the receiver: 126 µs.
    assert!(t.elapsed().as_micros() >= 10 * 126, "{:?}", t.elapsed());
}
