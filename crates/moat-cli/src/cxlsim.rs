//! `moat cxlsim`: how would a program run with part of its memory behind CXL? Runs (or attaches
//! to) an unmodified program with a placement policy — a moat program on glibc's allocator,
//! verified and isolated like every attached program — deciding which allocations sit on which
//! CXL device, samples the process's CPU time with the software clock (no hardware counters:
//! it works in a VM), turns the time spent waiting on CXL-placed memory into delay over the
//! topology's links, and injects it by stopping the process at each epoch's end.
//!
//! `--mode exact` ([`crate::cxlsim_exact`]) is the reference the sampling mode is validated
//! against: every access of the program through an LLC model, under valgrind.

use crate::memleak::RemoveOnDrop;
use crate::symbolize::{Mapping, Symbolizer};
use anyhow::{anyhow, Context, Result};
use clap::Args;
use moat_agent::control::{attach_running_observed, launch_spawned, Options};
use moat_agent::protocol::Record;
use moat_cxlsim::model::Calibration;
use moat_cxlsim::placement::{Placed, Placement};
use moat_cxlsim::topology::{self, Topology};
use moat_cxlsim::{Epoch, Simulator};
use moat_kernel::sampling::{pause, Sampler};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bundled placement policies (`examples/c/cxl_*.bpf.c`, rebuilt with `make -C examples/c`).
const POLICIES: [(&str, &[u8]); 5] = [
    ("local", include_bytes!("../../../examples/c/cxl_local.o")),
    ("all", include_bytes!("../../../examples/c/cxl_all.o")),
    (
        "interleave",
        include_bytes!("../../../examples/c/cxl_interleave.o"),
    ),
    (
        "threshold",
        include_bytes!("../../../examples/c/cxl_threshold.o"),
    ),
    (
        "hot-sites",
        include_bytes!("../../../examples/c/cxl_hot_sites.o"),
    ),
];

/// The policy's map of placed ranges.
pub(crate) const PLACED_MAP: &str = "cxl_placed";

/// How the accesses that reach CXL memory are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Sample the process's CPU time (software clock) and inject the delay as it runs.
    Sampling,
    /// Every access through an LLC model, under valgrind: slow, exact, predicted only.
    Exact,
}

/// `moat cxlsim [--topology FILE] [--policy NAME|OBJ] [--epoch MS] -- CMD ARGS`.
#[derive(Debug, Args)]
#[command(after_long_help = CXLSIM_HELP)]
pub struct CxlsimArgs {
    /// Attach to running process PID instead of starting a command.
    #[arg(long, short = 'p', value_name = "PID", conflicts_with = "command")]
    pid: Option<i32>,
    /// With -p: stop after SECONDS.
    #[arg(long, value_name = "SECONDS", requires = "pid")]
    duration: Option<f64>,
    /// With -p: place the process's existing anonymous mappings (heap, anonymous mmaps; not
    /// stacks) of at least --existing-min bytes on TIER — memory allocated before moat attached,
    /// which the policy never saw (without it, that memory is local).
    #[arg(long, value_name = "TIER", requires = "pid")]
    existing: Option<u32>,
    /// With --existing: the smallest mapping placed, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    existing_min: u64,
    /// The memory system (see --help for the format). Without it: one expander on the root
    /// port, --latency and --bandwidth away.
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// Without --topology: the expander's extra latency over local DRAM, ns.
    #[arg(long, value_name = "NS", default_value_t = 200.0)]
    latency: f64,
    /// Without --topology: the expander link's bandwidth, GB/s.
    #[arg(long, value_name = "GB_PER_S", default_value_t = 32.0)]
    bandwidth: f64,
    /// The placement policy: local, all, interleave, threshold (allocations of at least 1 MiB
    /// on CXL), hot-sites, or a policy object built on examples/c/cxlsim.h.
    #[arg(long, value_name = "NAME|OBJ", default_value = "threshold")]
    policy: String,
    /// Set a policy global before it loads, e.g. `--global min_size=65536`, `--global tier=2`.
    #[arg(long = "global", value_name = "NAME=VALUE")]
    globals: Vec<String>,
    /// How CXL accesses are found: `sampling` (fast, injects delay as the program runs) or
    /// `exact` (every access of the program through an LLC model under valgrind's lackey, about
    /// 100x slower; predicts without injecting: the reference for validating sampling).
    #[arg(long, value_enum, default_value = "sampling")]
    mode: Mode,
    /// With --mode exact: the LLC's size (e.g. `32M`; default: this machine's LLC, from sysfs).
    #[arg(long, value_name = "BYTES")]
    llc_size: Option<String>,
    /// With --mode exact: the LLC's associativity (default: this machine's LLC's).
    #[arg(long, value_name = "WAYS")]
    llc_ways: Option<u32>,
    /// With --mode exact: the LLC's line size in bytes (default: this machine's, else 64).
    #[arg(long, value_name = "BYTES")]
    llc_line: Option<u64>,
    /// Epoch length: delay is computed and injected this often.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    epoch: u64,
    /// CPU time between two samples of a thread.
    #[arg(long, value_name = "US", default_value_t = 200)]
    period: u64,
    /// Only predict: measure and report the delay, inject none.
    #[arg(long)]
    no_inject: bool,
    /// Also predict, from the same samples, the run on one expander of each of these extra
    /// latencies (ns, `:GB_PER_S` for its bandwidth; default the --bandwidth), e.g.
    /// `--compare 100,200,300:16`: a table of tier configurations side by side.
    #[arg(long, value_name = "NS[:GB_PER_S],...", value_delimiter = ',')]
    compare: Vec<String>,
    /// Calibration working set (local DRAM latency and bandwidth are measured at start), MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    calibrate_mib: usize,
    /// Use these local DRAM figures instead of measuring: NS,GB_PER_S.
    #[arg(long, value_name = "NS,GB_PER_S")]
    local: Option<String>,
    /// Write a timeline plot (PNG) of the injected delay per epoch.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// One JSON object with the whole report instead of text (on failure `{"error": ...}`).
    #[arg(long)]
    json: bool,
    /// Allocation sites listed in the report.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// The command, after `--`.
    #[arg(last = true, required_unless_present = "pid", value_name = "CMD")]
    command: Vec<OsString>,
}

const CXLSIM_HELP: &str = "\
Runs CMD (or attaches to process PID) as if the memory a placement policy chooses sat behind CXL.

How: the policy (a moat program attached to glibc's malloc, calloc, realloc, free, memalign,
posix_memalign, aligned_alloc, valloc, mmap and munmap; examples/c/cxlsim.h) records the
allocations it places on CXL devices. The process's CPU time is sampled with the kernel's software
CPU clock (perf_event_open; no hardware counters needed, so it works in a VM): a sample whose
thread was at a load or store into CXL-placed memory counts as time waiting on CXL. Each epoch,
latency-bound waits grow by the device path's extra latency over local DRAM's (measured at start),
streams by how much narrower than their measured rate the links are (shared switch links add up);
the process is stopped for that long (SIGSTOP/SIGCONT). The report gives the run time, the
predicted slowdown, the CXL share of memory time per allocation site, and per-epoch delay.

The policy runs in CMD's own process: give the program itself, not a launcher script that execs
it (children and exec'd images run without moat's agent). With -p, memory the process allocated
before moat attached was never seen by the policy and stays local, unless --existing TIER places
its anonymous mappings (>= --existing-min) on a tier.

Exact mode (--mode exact): the reference for validating the sampling mode. CMD runs first
natively (output discarded: its run time is the baseline), then under valgrind's lackey tool
(Debian package valgrind; scripts/cxlsim-deps.sh) with the same agent and policy: every load and
store of the program, in order, goes through an LLC model (--llc-size, --llc-ways, --llc-line;
default this machine's LLC from sysfs) with LRU sets, and each miss to CXL-placed memory costs
the tier's extra latency (or, continuing a sequential stream, its bytes' transfer over the links,
as in sampling mode). Nothing is injected: the report predicts. Expect ~100x the native run time,
plus a few seconds for the agent's start under valgrind; scale the workload down. valgrind does
not follow exec: a launcher script (a pyenv shim) is traced, the program it execs is not.

Topology file (one line per switch or device; each names its parent and the link to it):
  switch sw0  parent=root latency=70ns  bandwidth=64GB/s
  device mem0 parent=sw0  latency=100ns bandwidth=16GB/s   # tier 1: +170 ns
  device mem1 parent=root latency=100ns bandwidth=32GB/s   # tier 2: +100 ns, direct
Devices are tiers 1, 2, ... in file order; policies return a tier (0 = local).

Examples:
  moat cxlsim -- ./membench chase 256 20000000
  moat cxlsim --latency 300 --policy all -- python3 script.py
  moat cxlsim --topology two-level.topo --policy interleave --plot delay.png -- ./app
  moat cxlsim --no-inject --json -p 1234 --duration 10
  moat cxlsim --no-inject --compare 100,200,300,200:8 -- ./app   # configurations side by side
  moat cxlsim --mode exact --llc-size 4M --llc-ways 16 --compare 100,300 -- ./membench chase 64 100000";

/// One epoch's row of the report.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) at: Duration,
    pub(crate) epoch: Epoch,
    pub(crate) injected: Duration,
}

/// What the sampling thread and the controller share.
#[derive(Default)]
struct Shared {
    placement: Option<Placement>,
    dump: Vec<(Vec<u8>, Vec<u8>)>,
    /// Ranges placed before the policy ran (`--existing`), kept under every dump's.
    existing: Vec<(u64, Placed)>,
}

/// With -p: the process's anonymous mappings (heap and anonymous `mmap`s, not stacks) of at
/// least `min` bytes, placed on `tier` (call site 0: before moat attached).
fn existing_ranges(pid: i32, tier: u32, min: u64) -> Vec<(u64, Placed)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            let name = f.nth(3).unwrap_or("");
            if !perms.starts_with("rw") || !(name.is_empty() || name == "[heap]") {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            (b - a >= min).then_some((
                a,
                Placed {
                    size: b - a,
                    site: 0,
                    tier,
                    flags: 0,
                },
            ))
        })
        .collect()
}

fn parse_local(s: &str) -> Result<Calibration> {
    let (ns, gbps) = s
        .split_once(',')
        .ok_or_else(|| anyhow!("--local {s}: expected NS,GB_PER_S"))?;
    let ns: f64 = ns.trim().parse().context("--local latency")?;
    let gbps: f64 = gbps.trim().parse().context("--local bandwidth")?;
    if !(ns > 0.0 && gbps > 0.0) {
        return Err(anyhow!("--local {s}: both must be positive"));
    }
    Ok(Calibration {
        latency: Duration::from_secs_f64(ns * 1e-9),
        bandwidth: gbps * 1e9,
    })
}

/// The --compare list as single-expander topologies.
fn compare_topologies(list: &[String], default_gbps: f64) -> Result<Vec<(String, Topology)>> {
    list.iter()
        .map(|item| {
            let (ns, gbps) = match item.split_once(':') {
                Some((ns, bw)) => (ns, bw.parse::<f64>().ok()),
                None => (item.as_str(), Some(default_gbps)),
            };
            let ns: f64 = ns
                .trim()
                .parse()
                .map_err(|_| anyhow!("--compare {item}: expected NS[:GB_PER_S]"))?;
            let gbps = gbps
                .filter(|g| *g > 0.0)
                .ok_or_else(|| anyhow!("--compare {item}: bandwidth must be a positive number"))?;
            if ns.is_nan() || ns < 0.0 {
                return Err(anyhow!("--compare {item}: latency must be >= 0"));
            }
            Ok((
                format!("one expander, +{ns} ns, {gbps} GB/s"),
                topology::direct(Duration::from_secs_f64(ns * 1e-9), gbps * 1e9),
            ))
        })
        .collect()
}

fn policy_object(name: &str) -> Result<(PathBuf, Option<RemoveOnDrop>)> {
    if let Some((_, bytes)) = POLICIES.iter().find(|(n, _)| *n == name) {
        let path =
            std::env::temp_dir().join(format!("moat-cxlsim-{name}-{}.o", std::process::id()));
        std::fs::write(&path, bytes).with_context(|| path.display().to_string())?;
        return Ok((path.clone(), Some(RemoveOnDrop(path))));
    }
    let path = PathBuf::from(name);
    if !path.exists() {
        let names: Vec<&str> = POLICIES.iter().map(|(n, _)| *n).collect();
        return Err(anyhow!(
            "--policy {name}: no such file, and not a bundled policy ({})",
            names.join(", ")
        ));
    }
    // A policy reports its placements in `cxl_placed`; without it nothing would ever be placed.
    let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
    let object = moat::Object::parse(&bytes).with_context(|| path.display().to_string())?;
    if !object.maps.iter().any(|m| m.name == PLACED_MAP) {
        return Err(anyhow!(
            "--policy {name}: the object has no `{PLACED_MAP}` map; build policies on \
             examples/c/cxlsim.h"
        ));
    }
    Ok((path, None))
}

/// The executable file mappings of `pid` (for naming allocation sites), as memleak reads them.
pub(crate) fn mappings(pid: i32) -> Vec<Mapping> {
    crate::memleak_kernel::mappings(pid)
        .iter()
        .filter_map(Mapping::from_record)
        .collect()
}

/// `moat cxlsim`.
pub fn run(args: CxlsimArgs) -> ExitCode {
    match simulate(&args) {
        Ok(code) => code,
        Err(e) => crate::fail(args.json, format!("{e:#}")),
    }
}

fn simulate(args: &CxlsimArgs) -> Result<ExitCode> {
    let topology = match &args.topology {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            Topology::parse(&text).with_context(|| path.display().to_string())?
        }
        None => {
            if !(args.latency >= 0.0 && args.bandwidth > 0.0) {
                return Err(anyhow!("--latency must be >= 0 and --bandwidth > 0"));
            }
            topology::direct(
                Duration::from_secs_f64(args.latency * 1e-9),
                args.bandwidth * 1e9,
            )
        }
    };
    let compare = compare_topologies(&args.compare, args.bandwidth)?;
    if args.mode == Mode::Exact && args.pid.is_some() {
        return Err(anyhow!(
            "--mode exact runs a command under valgrind; it cannot attach (-p)"
        ));
    }
    if args.epoch == 0 || args.period == 0 {
        return Err(anyhow!("--epoch and --period must be positive"));
    }
    let calibration = match &args.local {
        Some(s) => parse_local(s)?,
        None => {
            if !args.json {
                eprintln!(
                    "moat cxlsim: measuring local DRAM ({} MiB pointer chase and stream)...",
                    args.calibrate_mib
                );
            }
            // Sampled as the workload will be (see `Calibration::measure`).
            let own = Sampler::open(0, Duration::from_micros(args.period.max(1))).ok();
            let c = Calibration::measure(args.calibrate_mib.max(1) << 20);
            drop(own);
            c
        }
    };
    if !args.json {
        eprintln!(
            "moat cxlsim: local DRAM {:.0} ns per dependent miss, {:.1} GB/s",
            calibration.latency.as_secs_f64() * 1e9,
            calibration.bandwidth / 1e9
        );
        for line in topology.describe() {
            eprintln!("moat cxlsim: {line}");
        }
    }
    let (object, _keep) = policy_object(&args.policy)?;
    let globals = args
        .globals
        .iter()
        .map(|g| {
            g.split_once('=')
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("--global {g}: expected NAME=VALUE"))
        })
        .collect::<Result<Vec<_>>>()?;
    let epoch_len = Duration::from_millis(args.epoch);
    let period = Duration::from_micros(args.period);
    let options = Options {
        object,
        globals,
        interval: Some(epoch_len.max(Duration::from_millis(50))),
        dump_maps: Some(vec![PLACED_MAP.to_string()]),
        ..Options::default()
    };

    if args.mode == Mode::Exact {
        return exact(args, &options, topology, calibration, &compare, epoch_len);
    }

    let shared = Arc::new(Mutex::new(Shared::default()));
    if let (Some(pid), Some(tier)) = (args.pid, args.existing) {
        if tier == 0 || tier as usize > topology.tiers() {
            return Err(anyhow!(
                "--existing {tier}: the topology has tiers 1..={}",
                topology.tiers()
            ));
        }
        let ranges = existing_ranges(pid, tier, args.existing_min);
        if !args.json {
            eprintln!(
                "moat cxlsim: {} existing anonymous mappings ({:.1} MiB) placed on tier {tier}",
                ranges.len(),
                ranges.iter().map(|r| r.1.size).sum::<u64>() as f64 / (1u64 << 20) as f64
            );
        }
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        let mut p = Placement::default();
        for (start, placed) in &ranges {
            p.insert(*start, *placed);
        }
        s.placement = Some(p);
        s.existing = ranges;
    }
    let done = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicI32::new(args.pid.unwrap_or(0)));
    let inject = !args.no_inject;
    let progress = !args.json && std::io::stderr().is_terminal();
    let sampler_thread = {
        let (shared, done, target) = (shared.clone(), done.clone(), target.clone());
        let topology = topology.clone();
        std::thread::spawn(move || {
            epochs(
                topology,
                calibration,
                period,
                epoch_len,
                inject,
                progress,
                &shared,
                &done,
                &target,
            )
        })
    };

    let mut observe = |r: &Record| {
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Record::DumpBegin(_) => s.dump.clear(),
            Record::Entry { map, key, value } if map == PLACED_MAP => {
                s.dump.push((key.clone(), value.clone()));
            }
            Record::DumpEnd(_) => {
                let mut p = Placement::default();
                p.replace(s.dump.iter().map(|(k, v)| (&k[..], &v[..])));
                for (start, placed) in &s.existing {
                    p.insert(*start, *placed);
                }
                s.placement = Some(p);
            }
            Record::Error { program, message } => {
                eprintln!("moat cxlsim: policy {program}: {message}");
            }
            _ => {}
        }
    };
    let started = Instant::now();
    let mut sink = std::io::sink();
    let code = match args.pid {
        Some(pid) => {
            moat_agent::inject::block_interrupts();
            let duration = args
                .duration
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let mut until = || {
                moat_agent::inject::interrupted()
                    || duration.is_some_and(|d| started.elapsed() >= d)
                    || !moat_agent::control::alive(pid)
            };
            attach_running_observed(&options, pid, &mut sink, &mut until, &mut observe)
                .map(|_| ExitCode::SUCCESS)
        }
        None => {
            let mut spawned = |pid: u32| target.store(pid as i32, Ordering::SeqCst);
            launch_spawned(
                &options,
                &args.command,
                &mut sink,
                &mut observe,
                &mut spawned,
            )
            .map(|(status, _)| crate::trace::exit_code(status))
        }
    };
    let wall = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let outcome = sampler_thread
        .join()
        .map_err(|_| anyhow!("the sampling thread panicked"))?;
    let code = code.map_err(|e| anyhow!("{e}"))?;
    let (rows, sim, maps, sampling_error) = outcome;
    if progress {
        eprint!("\r\x1b[K");
    }
    if let Some(e) = sampling_error {
        return Err(anyhow!("sampling the process: {e}"));
    }
    let report = Report {
        compare: &compare,
        args,
        calibration: &calibration,
        topology: &topology,
        rows: &rows,
        placement: sim.placement(),
        sites: sim.sites(),
        mappings: &maps,
        wall,
        inject,
        period,
        exact: None,
    };
    report.emit(&rows)?;
    Ok(code)
}

/// `--mode exact`: the command natively (for its run time), then under valgrind's lackey with
/// every access through the LLC model.
fn exact(
    args: &CxlsimArgs,
    options: &Options,
    topology: Topology,
    calibration: Calibration,
    compare: &[(String, Topology)],
    epoch_len: Duration,
) -> Result<ExitCode> {
    let geometry =
        crate::cxlsim_exact::geometry(args.llc_size.as_deref(), args.llc_ways, args.llc_line)?;
    let (tool, lib) = crate::cxlsim_exact::lackey()?;
    if !args.json {
        eprintln!(
            "moat cxlsim: exact mode: LLC {} KiB, {}-way, {}-byte lines; timing the command natively first",
            geometry.size >> 10,
            geometry.ways,
            geometry.line
        );
    }
    let native = crate::cxlsim_exact::native_time(options, &args.command)?;
    // What the `valgrind` launcher would set for its tool (see `cxlsim_exact` for why the tool
    // runs without it). No other thread runs yet.
    std::env::set_var("VALGRIND_LIB", &lib);
    let launcher = Path::new("/usr/bin/valgrind");
    std::env::set_var(
        "VALGRIND_LAUNCHER",
        if launcher.is_file() { launcher } else { &tool },
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("a socket for the trace")?;
    let port = listener.local_addr()?.port();
    let command = crate::cxlsim_exact::traced_command(&tool, port, &args.command);
    let done = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicI32::new(0));
    let progress = !args.json && std::io::stderr().is_terminal();
    let reader = {
        let (done, target) = (done.clone(), target.clone());
        let topology = topology.clone();
        std::thread::spawn(move || {
            crate::cxlsim_exact::follow(
                listener,
                geometry,
                topology,
                calibration,
                epoch_len,
                progress,
                &done,
                &target,
            )
        })
    };
    let mut observe = |r: &Record| {
        if let Record::Error { program, message } = r {
            eprintln!("moat cxlsim: policy {program}: {message}");
        }
    };
    let started = Instant::now();
    let mut sink = std::io::sink();
    let mut spawned = |pid: u32| target.store(pid as i32, Ordering::SeqCst);
    let code = launch_spawned(options, &command, &mut sink, &mut observe, &mut spawned)
        .map(|(status, _)| crate::trace::exit_code(status));
    let wall = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let outcome = reader
        .join()
        .map_err(|_| anyhow!("the trace reader panicked"))?;
    let code = code.map_err(|e| anyhow!("{e}"))?;
    if progress {
        eprint!("\r\x1b[K");
    }
    let mut outcome = outcome?;
    if !outcome.shared_maps && !args.json {
        eprintln!(
            "moat cxlsim: warning: the policy's maps ({PLACED_MAP}) were not found in shared \
             memory; nothing was placed on CXL"
        );
    }
    if outcome.counts.accesses == 0 {
        return Err(anyhow!(
            "valgrind traced no accesses; its messages:\n{}",
            outcome.messages.join("\n")
        ));
    }
    // Overlapped misses expose a fraction of the extra latency each (see `Counts::parallelism`).
    let parallelism = outcome.counts.parallelism(calibration.latency, native);
    let period = Duration::from_secs_f64(calibration.latency.as_secs_f64() / parallelism);
    for row in &mut outcome.rows {
        row.epoch.delay =
            moat_cxlsim::model::delay(&topology, &calibration, period, &row.epoch.tiers);
    }
    let info = ExactInfo {
        geometry,
        counts: outcome.counts,
        native,
        parallelism,
    };
    let report = Report {
        compare,
        args,
        calibration: &calibration,
        topology: &topology,
        rows: &outcome.rows,
        placement: &outcome.placement,
        sites: &outcome.sites,
        mappings: &outcome.mappings,
        wall,
        inject: false,
        period,
        exact: Some(&info),
    };
    report.emit(&outcome.rows)?;
    Ok(code)
}

/// What the exact mode adds to the report.
struct ExactInfo {
    geometry: moat_cxlsim::cache::Geometry,
    counts: moat_cxlsim::exact::Counts,
    /// The command's native run time: the baseline of the slowdown.
    native: Duration,
    /// The memory-level parallelism of its latency-bound misses.
    parallelism: f64,
}

type EpochOutcome = (Vec<Row>, Simulator, Vec<Mapping>, Option<String>);

/// The sampling thread: waits for the process, then every epoch drains the samples, updates the
/// placement from the latest dump, computes the delay and injects it.
#[allow(clippy::too_many_arguments)]
fn epochs(
    topology: Topology,
    calibration: Calibration,
    period: Duration,
    epoch_len: Duration,
    inject: bool,
    progress: bool,
    shared: &Mutex<Shared>,
    done: &AtomicBool,
    target: &AtomicI32,
) -> EpochOutcome {
    let empty = |topology: Topology, e: Option<String>| {
        let reader: moat_cxlsim::MemoryReader = Box::new(|_, _| Vec::new());
        (
            Vec::new(),
            Simulator::new(topology, calibration, period, reader),
            Vec::new(),
            e,
        )
    };
    let pid = loop {
        let pid = target.load(Ordering::SeqCst);
        if pid > 0 {
            break pid;
        }
        if done.load(Ordering::SeqCst) {
            return empty(topology, None);
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let mut sampler = match Sampler::open(pid, period) {
        Ok(s) => s,
        Err(e) => return empty(topology, Some(e.to_string())),
    };
    let reader = match moat_cxlsim::proc_mem_reader(pid) {
        Ok(r) => r,
        Err(e) => return empty(topology, Some(format!("/proc/{pid}/mem: {e}"))),
    };
    let mut sim = Simulator::new(topology, calibration, period, reader);
    let start = Instant::now();
    let mut rows = Vec::new();
    let mut maps = mappings(pid);
    let mut last_maps = Instant::now();
    let mut injected_total = Duration::ZERO;
    let mut next = start + epoch_len;
    loop {
        let finished = done.load(Ordering::SeqCst);
        if !finished {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        if let Some(p) = shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .placement
            .take()
        {
            sim.set_placement(p);
        }
        let lost = sampler.drain(|s| sim.add(s));
        sim.lost(lost);
        let epoch = sim.end_epoch();
        let delay = epoch.delay.total();
        let injected = if inject && !finished && delay >= Duration::from_micros(20) {
            if pause(pid, delay) {
                delay
            } else {
                Duration::ZERO
            }
        } else {
            Duration::ZERO
        };
        injected_total += injected;
        // An epoch is `epoch_len` of the process running: the next starts after the pause.
        next = Instant::now() + epoch_len;
        if last_maps.elapsed() >= Duration::from_secs(1) && !finished {
            let m = mappings(pid);
            if !m.is_empty() {
                maps = m;
            }
            last_maps = Instant::now();
        }
        if progress {
            let cxl: u64 = epoch.tiers.iter().map(|t| t.latency + t.stream).sum();
            eprint!(
                "\r\x1b[Kmoat cxlsim: {:.1} s, epoch {}, {} samples ({} at CXL memory), {} placed ranges, injected {:.0} ms",
                start.elapsed().as_secs_f64(),
                rows.len() + 1,
                epoch.samples,
                cxl,
                sim.placement().len(),
                injected_total.as_secs_f64() * 1e3
            );
        }
        rows.push(Row {
            at: start.elapsed(),
            epoch,
            injected,
        });
        if finished {
            break;
        }
    }
    (rows, sim, maps, None)
}

struct Report<'a> {
    /// The --compare configurations: (label, topology).
    compare: &'a [(String, Topology)],
    args: &'a CxlsimArgs,
    calibration: &'a Calibration,
    topology: &'a Topology,
    rows: &'a [Row],
    placement: &'a Placement,
    sites: &'a HashMap<u64, u64>,
    mappings: &'a [Mapping],
    wall: Duration,
    inject: bool,
    /// What one epoch count stands for in the delay model: a sample's CPU time, or (exact mode)
    /// one local miss latency.
    period: Duration,
    exact: Option<&'a ExactInfo>,
}

/// Totals over the run.
struct Totals {
    samples: u64,
    local: u64,
    latency: u64,
    stream: u64,
    lost: u64,
    delay: Duration,
    delay_latency: Duration,
    delay_bandwidth: Duration,
    injected: Duration,
}

impl Report<'_> {
    fn totals(&self) -> Totals {
        let mut t = Totals {
            samples: 0,
            local: 0,
            latency: 0,
            stream: 0,
            lost: 0,
            delay: Duration::ZERO,
            delay_latency: Duration::ZERO,
            delay_bandwidth: Duration::ZERO,
            injected: Duration::ZERO,
        };
        for r in self.rows {
            t.samples += r.epoch.samples;
            t.local += r.epoch.local;
            t.lost += r.epoch.lost;
            for w in &r.epoch.tiers {
                t.latency += w.latency;
                t.stream += w.stream;
            }
            t.delay += r.epoch.delay.total();
            t.delay_latency += r.epoch.delay.latency;
            t.delay_bandwidth += r.epoch.delay.bandwidth;
            t.injected += r.injected;
        }
        t
    }

    /// Prints the report (text or JSON) and draws the plot.
    fn emit(&self, rows: &[Row]) -> Result<()> {
        if self.args.json {
            println!("{}", self.json());
        } else {
            self.text(&mut std::io::stdout())?;
        }
        if let Some(path) = &self.args.plot {
            plot(path, rows, &self.args.policy).with_context(|| path.display().to_string())?;
            if !self.args.json {
                eprintln!("moat cxlsim: wrote {}", path.display());
            }
        }
        Ok(())
    }

    /// Run time without the simulated delay, and with it.
    fn times(&self, t: &Totals) -> (Duration, Duration) {
        if let Some(e) = self.exact {
            return (e.native, e.native + t.delay);
        }
        if self.inject {
            (self.wall.saturating_sub(t.injected), self.wall)
        } else {
            (self.wall, self.wall + t.delay)
        }
    }

    /// Run time without CXL and predicted on each --compare configuration (every CXL tier's
    /// waits taken as that single expander's), with the measured configuration first.
    fn configurations(&self, t: &Totals) -> Vec<(String, Duration, Duration)> {
        let (native, simulated) = self.times(t);
        let mut out = vec![("this run's topology".to_string(), native, simulated)];
        for (label, topo) in self.compare {
            let delay: Duration = self
                .rows
                .iter()
                .map(|r| {
                    let mut all = moat_cxlsim::model::TierWait::default();
                    for w in &r.epoch.tiers {
                        all.latency += w.latency;
                        all.stream += w.stream;
                        all.stream_bytes += w.stream_bytes;
                        all.stream_ns += w.stream_ns;
                    }
                    moat_cxlsim::model::delay(topo, self.calibration, self.period, &[all]).total()
                })
                .sum();
            out.push((label.clone(), native, native + delay));
        }
        out
    }

    fn sites(&self) -> Vec<(u64, u64, String)> {
        let mut sites: Vec<(u64, u64)> = self.sites.iter().map(|(&s, &n)| (s, n)).collect();
        sites.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut symbols = Symbolizer::default();
        sites
            .into_iter()
            .take(self.args.top)
            .map(|(site, n)| {
                if site == 0 {
                    return (
                        site,
                        n,
                        "(allocated before moat attached: --existing)".to_string(),
                    );
                }
                let f = symbols.frame(self.mappings, site, true);
                let name = match (&f.function, &f.file, f.line) {
                    (Some(func), Some(file), Some(line)) => {
                        format!("{func}+{:#x} ({file}:{line})", f.offset)
                    }
                    (Some(func), _, _) => format!("{func}+{:#x}", f.offset),
                    _ => format!("{site:#x}"),
                };
                (site, n, name)
            })
            .collect()
    }

    fn text(&self, out: &mut dyn Write) -> Result<()> {
        let t = self.totals();
        let (native, simulated) = self.times(&t);
        let secs = |d: Duration| d.as_secs_f64();
        let cxl = t.latency + t.stream;
        writeln!(
            out,
            "moat cxlsim: policy {} ({} ranges on CXL, {:.1} MiB, at the last epoch)",
            self.args.policy,
            self.placement.len(),
            self.placement.cxl_bytes() as f64 / (1u64 << 20) as f64
        )?;
        if let Some(e) = self.exact {
            let g = e.geometry;
            writeln!(
                out,
                "exact: {} accesses through a {} KiB {}-way LLC ({}-byte lines): {} misses local, {} CXL ({} latency-bound, {} streaming; memory-level parallelism {:.1}); {:.3} s under valgrind",
                e.counts.accesses,
                g.size >> 10,
                g.ways,
                g.line,
                e.counts.local_misses,
                e.counts.cxl_misses,
                t.latency,
                t.stream,
                e.parallelism,
                secs(self.wall)
            )?;
        } else {
            writeln!(
            out,
            "epochs: {} x {} ms; samples: {} ({} lost), at memory: {} local, {} CXL ({} latency-bound, {} streaming)",
            self.rows.len(),
            self.args.epoch,
            t.samples,
            t.lost,
            t.local,
            cxl,
            t.latency,
            t.stream
        )?;
        }
        writeln!(
            out,
            "delay: {:.3} s (latency {:.3} s, bandwidth {:.3} s){}",
            secs(t.delay),
            secs(t.delay_latency),
            secs(t.delay_bandwidth),
            if self.inject {
                format!(", injected {:.3} s", secs(t.injected))
            } else if self.exact.is_some() {
                " (predicted from the misses)".to_string()
            } else {
                " (predicted only, not injected)".to_string()
            }
        )?;
        writeln!(
            out,
            "run time: {:.3} s without CXL{}, {:.3} s on this topology: slowdown {:.2}x",
            secs(native),
            if self.exact.is_some() {
                " (native run)"
            } else {
                ""
            },
            secs(simulated),
            secs(simulated) / secs(native).max(1e-9)
        )?;
        if !self.compare.is_empty() {
            writeln!(out, "| configuration | run time | slowdown |")?;
            writeln!(out, "|---|--:|--:|")?;
            writeln!(out, "| local DRAM only | {:.3} s | 1.00x |", secs(native))?;
            for (label, n, s) in self.configurations(&t) {
                writeln!(
                    out,
                    "| {label} | {:.3} s | {:.2}x |",
                    secs(s),
                    secs(s) / secs(n).max(1e-9)
                )?;
            }
        }
        let sites = self.sites();
        if !sites.is_empty() && cxl > 0 {
            writeln!(
                out,
                "{} by allocation site:",
                if self.exact.is_some() {
                    "CXL misses"
                } else {
                    "CXL memory time"
                }
            )?;
            for (_, n, name) in sites {
                writeln!(out, "  {:5.1} %  {name}", 100.0 * n as f64 / cxl as f64)?;
            }
        }
        Ok(())
    }

    fn json(&self) -> serde_json::Value {
        let t = self.totals();
        let (native, simulated) = self.times(&t);
        let ns = |d: Duration| d.as_nanos() as u64;
        let cxl = t.latency + t.stream;
        let exact = self.exact.map(|e| {
            serde_json::json!({
                "llc": {
                    "size_bytes": e.geometry.size,
                    "ways": e.geometry.ways,
                    "line_bytes": e.geometry.line,
                },
                "accesses": e.counts.accesses,
                "local_misses": e.counts.local_misses,
                "cxl_misses": e.counts.cxl_misses,
                "cxl_latency_misses": t.latency,
                "cxl_stream_misses": t.stream,
                "parallelism": e.parallelism,
                "valgrind_ns": ns(self.wall),
            })
        });
        serde_json::json!({
            "mode": if exact.is_some() { "exact" } else { "sampling" },
            "exact": exact,
            "policy": self.args.policy,
            "local_dram": {
                "latency_ns": self.calibration.latency.as_secs_f64() * 1e9,
                "bandwidth_bytes_per_s": self.calibration.bandwidth,
            },
            "tiers": (1..=self.topology.tiers()).map(|k| serde_json::json!({
                "tier": k,
                "device": self.topology.device(k).map(|d| d.name.clone()),
                "extra_latency_ns": ns(self.topology.extra_latency(k)),
            })).collect::<Vec<_>>(),
            "epoch_ms": self.args.epoch,
            "period_us": self.args.period,
            "injected": self.inject,
            "samples": t.samples,
            "lost_samples": t.lost,
            "local_memory_samples": t.local,
            "cxl_latency_samples": t.latency,
            "cxl_stream_samples": t.stream,
            "delay_ns": ns(t.delay),
            "delay_latency_ns": ns(t.delay_latency),
            "delay_bandwidth_ns": ns(t.delay_bandwidth),
            "injected_ns": ns(t.injected),
            "native_ns": ns(native),
            "simulated_ns": ns(simulated),
            "slowdown": simulated.as_secs_f64() / native.as_secs_f64().max(1e-9),
            "configurations": self.configurations(&t).into_iter().map(|(label, n, s)| serde_json::json!({
                "configuration": label,
                "simulated_ns": ns(s),
                "slowdown": s.as_secs_f64() / n.as_secs_f64().max(1e-9),
            })).collect::<Vec<_>>(),
            "placed_ranges": self.placement.len(),
            "placed_bytes": self.placement.cxl_bytes(),
            "sites": self.sites().into_iter().map(|(site, n, name)| serde_json::json!({
                "site": site,
                "samples": n,
                "share": if cxl > 0 { n as f64 / cxl as f64 } else { 0.0 },
                "name": name,
            })).collect::<Vec<_>>(),
            "epochs": self.rows.iter().map(|r| serde_json::json!({
                "at_ns": ns(r.at),
                "samples": r.epoch.samples,
                "local": r.epoch.local,
                "cxl": r.epoch.tiers.iter().map(|w| serde_json::json!({
                    "latency": w.latency,
                    "stream": w.stream,
                    "stream_bytes": w.stream_bytes,
                    "stream_ns": w.stream_ns,
                })).collect::<Vec<_>>(),
                "delay_ns": ns(r.epoch.delay.total()),
                "injected_ns": ns(r.injected),
            })).collect::<Vec<_>>(),
        })
    }
}

/// The timeline: injected (or predicted) delay per epoch against time.
fn plot(path: &Path, rows: &[Row], policy: &str) -> Result<()> {
    let series: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r.at.as_secs_f64(),
                r.epoch.delay.total().as_secs_f64() * 1e3,
            )
        })
        .collect();
    crate::sched_plot::timeline(
        path,
        &format!("moat cxlsim ({policy}): delay per epoch"),
        "time (s)",
        "delay (ms)",
        &series,
    )
}
