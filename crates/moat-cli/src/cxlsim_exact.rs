//! `moat cxlsim --mode exact`: the reference mode. The command runs under valgrind's `lackey`
//! tool (`--trace-mem=yes`), with moat's agent and the placement policy inside it as in sampling
//! mode; lackey's trace of every load and store streams over a loopback socket
//! (`--log-socket`) into [`moat_cxlsim::exact::Exact`], which runs it through the LLC model and
//! counts the misses to CXL-placed memory.
//!
//! Why valgrind and not `qemu-x86_64` with a TCG plugin: valgrind is one Debian package whose
//! `lackey` already prints every access (no plugin to build against a QEMU plugin API that
//! changes between the Debian releases), it runs the agent's rewritten code and JIT-compiled
//! policy correctly with `--smc-check=all`, and the agent's shared maps are ordinary shared
//! memory under it. Its tool binary is run directly (`VALGRIND_LAUNCHER`/`VALGRIND_LIB` set as
//! the `valgrind` launcher would): the launcher is a dynamic executable, and the agent preloaded
//! into it would attach to the launcher and leave its maps behind for the real program's agent.
//!
//! Placement in order: the policy's `cxl_placed` and `cxl_totals` maps live in shared memory
//! (`MOAT_TRACE_SHM` in the program's environment); the placement is re-read whenever a miss
//! classifies as local and `cxl_totals` says the policy placed more bytes since the last read (see
//! [`moat_cxlsim::exact`] for why the program is never behind its trace), and once every epoch
//! (which brings frees in).
//!
//! The predicted slowdown needs the program's native run time: the command is first run once
//! natively with the agent and policy (its output discarded), then under valgrind. Latency-bound
//! misses the native run time cannot have waited for one by one overlapped: each exposes the
//! tier's extra latency divided by that parallelism
//! ([`Counts::parallelism`](moat_cxlsim::exact::Counts::parallelism)).

use crate::cxlsim::{Row, PLACED_MAP};
use anyhow::{anyhow, Context, Result};
use moat::SharedMap;
use moat_agent::control::{launch_spawned, Options};
use moat_cxlsim::cache::{Cache, Geometry};
use moat_cxlsim::exact::{Counts, Exact, PlacementSource};
use moat_cxlsim::model::Calibration;
use moat_cxlsim::placement::Placement;
use moat_cxlsim::topology::Topology;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The policy's running totals (`[1]`: bytes placed on CXL tiers).
const TOTALS_MAP: &str = "cxl_totals";

/// Where Debian (and upstream's default prefix) keep valgrind's tool binaries.
const VALGRIND_LIBS: [&str; 3] = [
    "/usr/libexec/valgrind",
    "/usr/lib/x86_64-linux-gnu/valgrind",
    "/usr/lib/valgrind",
];

/// The `lackey` tool binary and its library directory, or why there is none.
pub fn lackey() -> Result<(PathBuf, PathBuf)> {
    for dir in VALGRIND_LIBS {
        let tool = Path::new(dir).join("lackey-amd64-linux");
        if tool.is_file() {
            return Ok((tool, PathBuf::from(dir)));
        }
    }
    Err(anyhow!(
        "--mode exact needs valgrind's lackey tool (lackey-amd64-linux under {}); \
         scripts/cxlsim-deps.sh installs it",
        VALGRIND_LIBS.join(", ")
    ))
}

/// The LLC geometry from the flags, defaulting each part to this machine's LLC.
pub fn geometry(size: Option<&str>, ways: Option<u32>, line: Option<u64>) -> Result<Geometry> {
    let sys = Geometry::from_sysfs();
    let size = match size {
        Some(s) => moat_cxlsim::cache::parse_size(s)
            .ok_or_else(|| anyhow!("--llc-size {s}: expected bytes, e.g. 32M or 491520K"))?,
        None => sys.map(|g| g.size).ok_or_else(|| {
            anyhow!("sysfs does not describe this machine's LLC: give --llc-size and --llc-ways")
        })?,
    };
    let ways = match ways.or(sys.map(|g| g.ways)) {
        Some(w) => w,
        None => {
            return Err(anyhow!(
                "sysfs does not give the LLC's ways: give --llc-ways"
            ))
        }
    };
    let line = line.or(sys.map(|g| g.line)).unwrap_or(64);
    let g = Geometry { size, ways, line };
    Cache::new(g)
        .with_context(|| format!("the LLC ({size} bytes, {ways} ways, {line}-byte lines)"))?;
    Ok(g)
}

/// The placement as the policy's shared maps hold it.
struct SharedPlacement {
    pid: i32,
    maps: Option<(SharedMap, SharedMap)>,
    looks: u64,
    /// Look for the maps on every `every`th call until found.
    every: u64,
    placed_bytes: u64,
    /// The buffer the totals' value is read into.
    totals_value: Vec<u8>,
}

impl SharedPlacement {
    fn new(pid: i32, every: u64) -> SharedPlacement {
        SharedPlacement {
            pid,
            maps: None,
            looks: 0,
            every: every.max(1),
            placed_bytes: 0,
            totals_value: Vec::new(),
        }
    }

    /// Opens the maps once the agent has made them (looked for on every `every`th call until
    /// then).
    fn open(&mut self) -> Option<&(SharedMap, SharedMap)> {
        if self.maps.is_none() {
            self.looks += 1;
            if !(self.looks - 1).is_multiple_of(self.every) {
                return None;
            }
            let environ = std::fs::read(format!("/proc/{}/environ", self.pid)).ok()?;
            let dir = environ.split(|&b| b == 0).find_map(|v| {
                v.strip_prefix(moat_agent::agent::env::SHM_DIR.as_bytes())
                    .and_then(|v| v.strip_prefix(b"="))
            })?;
            let dir = PathBuf::from(String::from_utf8_lossy(dir).into_owned());
            let mut placed = None;
            let mut totals = None;
            for tag in SharedMap::list(&dir) {
                if let Ok(map) = SharedMap::open(&dir, &tag) {
                    match map.name() {
                        PLACED_MAP => placed = Some(map),
                        TOTALS_MAP => totals = Some(map),
                        _ => {}
                    }
                }
            }
            self.maps = Some((placed?, totals?));
        }
        self.maps.as_ref()
    }

    fn read(&mut self) -> Option<Placement> {
        let (placed, _) = self.open()?;
        let mut p = Placement::default();
        let entries = placed.entries();
        p.replace(entries.iter().map(|(k, v)| (&k[..], &v[..])));
        Some(p)
    }
}

impl PlacementSource for SharedPlacement {
    fn changed(&mut self) -> Option<Placement> {
        // Asked on every miss: the value is read into a buffer kept for it, not a fresh one.
        let mut value = std::mem::take(&mut self.totals_value);
        let Some((_, totals)) = self.open() else {
            self.totals_value = value;
            return None;
        };
        value.resize(totals.host_value_size(), 0);
        let bytes = totals
            .lookup_into(&1u32.to_le_bytes(), &mut value)
            .ok()
            .and_then(|()| value.get(..8).and_then(|b| b.try_into().ok()))
            .map(u64::from_le_bytes);
        self.totals_value = value;
        let bytes = bytes?;
        if bytes == self.placed_bytes {
            return None;
        }
        self.placed_bytes = bytes;
        self.read()
    }
}

/// What the exact run measured.
pub struct Outcome {
    /// One row per epoch (of the controller's wall time).
    pub rows: Vec<Row>,
    /// Totals.
    pub counts: Counts,
    /// The last placement.
    pub placement: Placement,
    /// CXL misses per allocation site.
    pub sites: HashMap<u64, u64>,
    /// valgrind's own messages (its last lines).
    pub messages: Vec<String>,
    /// The program's executable mappings (for naming allocation sites).
    pub mappings: Vec<crate::symbolize::Mapping>,
    /// Whether the policy's maps were found in shared memory (without them nothing is placed).
    pub shared_maps: bool,
}

/// The command line of the traced run: the lackey tool on the command, its log to `port`.
pub fn traced_command(tool: &Path, port: u16, command: &[OsString]) -> Vec<OsString> {
    let mut c: Vec<OsString> = vec![
        tool.into(),
        "--tool=lackey".into(),
        "--trace-mem=yes".into(),
        "--smc-check=all".into(),
        format!("--log-socket=127.0.0.1:{port}").into(),
    ];
    c.extend(command.iter().cloned());
    c
}

/// The trace reader: accepts valgrind's connection once the program started, then feeds the
/// trace to the model until valgrind closes it, closing an epoch every `epoch_len`.
#[allow(clippy::too_many_arguments)]
pub fn follow(
    listener: TcpListener,
    geometry: Geometry,
    topology: Topology,
    calibration: Calibration,
    epoch_len: Duration,
    progress: bool,
    done: &AtomicBool,
    target: &AtomicI32,
) -> Result<Outcome> {
    let cache = Cache::new(geometry)?;
    listener.set_nonblocking(true)?;
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if done.load(Ordering::SeqCst) {
                    return Err(anyhow!(
                        "valgrind never connected its trace (did the command start?)"
                    ));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(anyhow!("accepting valgrind's trace: {e}")),
        }
    };
    stream.set_nonblocking(false)?;
    let pid = target.load(Ordering::SeqCst);
    let mut exact = Exact::new(
        cache,
        topology,
        calibration,
        // Asked on local misses: look for the maps on every 4096th until the agent made them.
        Box::new(SharedPlacement::new(pid, 4096)),
    );
    let mut periodic = SharedPlacement::new(pid, 1);
    let start = Instant::now();
    let mut next = start + epoch_len;
    let mut rows = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut mappings = Vec::new();
    let mut last_maps: Option<Instant> = None;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow!("reading valgrind's trace: {e}")),
        };
        exact.feed(&buf[..n]);
        if Instant::now() >= next {
            if let Some(p) = periodic.read() {
                exact.set_placement(p);
            }
            if last_maps.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                let m = crate::cxlsim::mappings(pid);
                if !m.is_empty() {
                    mappings = m;
                }
                last_maps = Some(Instant::now());
            }
            let epoch = exact.end_epoch();
            if progress {
                let c = exact.counts();
                eprint!(
                    "\r\x1b[Kmoat cxlsim: {:.1} s, {} accesses, LLC misses {} local, {} CXL, {} placed ranges",
                    start.elapsed().as_secs_f64(),
                    c.accesses,
                    c.local_misses,
                    c.cxl_misses,
                    exact.placement().len()
                );
            }
            rows.push(Row {
                at: start.elapsed(),
                epoch,
                injected: Duration::ZERO,
            });
            next = Instant::now() + epoch_len;
        }
    }
    rows.push(Row {
        at: start.elapsed(),
        epoch: exact.end_epoch(),
        injected: Duration::ZERO,
    });
    Ok(Outcome {
        rows,
        counts: exact.counts(),
        placement: exact.placement().clone(),
        sites: exact.sites().clone(),
        messages: exact.messages().to_vec(),
        mappings,
        shared_maps: periodic.maps.is_some(),
    })
}

/// The command's native run time with the agent and policy (as the traced run has them, and as
/// the sampling mode's baseline has them); its standard output is discarded.
pub fn native_time(options: &Options, command: &[OsString]) -> Result<Duration> {
    let options = Options {
        capture: true,
        ..options.clone()
    };
    let start = Instant::now();
    let (status, _) = launch_spawned(
        &options,
        command,
        &mut std::io::sink(),
        &mut |_| {},
        &mut |_| {},
    )
    .map_err(|e| anyhow!("running the command natively: {e}"))?;
    let t = start.elapsed();
    if !status.success() {
        return Err(anyhow!(
            "the command failed natively ({status}); the exact mode predicts a run that succeeds"
        ));
    }
    Ok(t)
}
