//! Running a benchmark over one transport: the parent makes what the transport needs (a region
//! file, ports, a veth pair between two network namespaces, the Open MPI driver), starts one
//! process per rank — the `moat` binary again, in the rank's namespace for `tcp-veth`, or `mpirun`
//! with the C driver — and reads rank 0's rows as they come.

use crate::comm::{Comm, Device};
use crate::error::OmbError;
use crate::layout::Geometry;
use crate::netns::{self, VethPair};
use crate::suite::{self, Bench, Params, Row};
use crate::tcp::Tcp;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;

/// The transports the suite compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// moat's shared-memory transport in a region on tmpfs.
    Pool,
    /// The same, charging an emulated CXL miss cost per cache line.
    Cxl,
    /// TCP over loopback.
    TcpLo,
    /// TCP over a veth pair between two network namespaces.
    TcpVeth,
    /// Open MPI, shared-memory transport (`btl self,vader`).
    MpiSm,
    /// Open MPI, TCP transport over loopback (`btl self,tcp`).
    MpiTcp,
}

impl Kind {
    /// Every transport, in the suite's order.
    pub const ALL: [Kind; 6] = [
        Kind::Pool,
        Kind::Cxl,
        Kind::TcpLo,
        Kind::TcpVeth,
        Kind::MpiSm,
        Kind::MpiTcp,
    ];

    /// The name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pool => "pool",
            Kind::Cxl => "pool-cxl",
            Kind::TcpLo => "tcp-lo",
            Kind::TcpVeth => "tcp-veth",
            Kind::MpiSm => "mpi-sm",
            Kind::MpiTcp => "mpi-tcp",
        }
    }
}

impl FromStr for Kind {
    type Err = OmbError;
    fn from_str(s: &str) -> Result<Kind, OmbError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| OmbError::InvalidOptions(format!("unknown transport `{s}`")))
    }
}

/// What one rank process is told.
#[derive(Debug, Clone, PartialEq)]
pub struct RankArgs {
    /// The transport.
    pub kind: Kind,
    /// The benchmark.
    pub bench: Bench,
    /// This rank.
    pub rank: usize,
    /// Ranks in the world.
    pub ranks: usize,
    /// Sizes and counts.
    pub params: Params,
    /// Region file (pool kinds).
    pub region: PathBuf,
    /// First TCP port (TCP kinds): rank `r` listens on `port + r`.
    pub port: u16,
    /// Nanoseconds per cache-line miss (`pool-cxl`).
    pub miss_ns: u64,
}

impl RankArgs {
    /// The arguments that [`RankArgs::parse`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        let p = &self.params;
        vec![
            self.kind.name().into(),
            self.bench.name().into(),
            self.rank.to_string(),
            self.ranks.to_string(),
            p.min.to_string(),
            p.max.to_string(),
            p.iters.unwrap_or(0).to_string(),
            p.iters_large.unwrap_or(0).to_string(),
            p.window.to_string(),
            self.region.display().to_string(),
            self.port.to_string(),
            self.miss_ns.to_string(),
        ]
    }

    /// Parses what [`RankArgs::to_args`] wrote.
    pub fn parse(args: &[String]) -> Result<RankArgs, OmbError> {
        let bad = || OmbError::InvalidOptions(format!("bad rank arguments {args:?}"));
        if args.len() != 12 {
            return Err(bad());
        }
        let num = |i: usize| args[i].parse::<u64>().map_err(|_| bad());
        let opt = |v: u64| (v > 0).then_some(v as usize);
        Ok(RankArgs {
            kind: args[0].parse()?,
            bench: args[1].parse()?,
            rank: num(2)? as usize,
            ranks: num(3)? as usize,
            params: Params {
                min: num(4)? as usize,
                max: num(5)? as usize,
                iters: opt(num(6)?),
                iters_large: opt(num(7)?),
                window: num(8)? as usize,
            },
            region: PathBuf::from(&args[9]),
            port: u16::try_from(num(10)?).map_err(|_| bad())?,
            miss_ns: num(11)?,
        })
    }
}

/// The body of a rank process: makes the transport, runs the benchmark, prints rank 0's rows as
/// `ROW size value [rate]` lines on stdout.
pub fn rank_main(a: &RankArgs) -> Result<(), OmbError> {
    let mut print = |r: Row| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = match r.rate {
            Some(rate) => writeln!(out, "ROW {} {} {}", r.size, r.value, rate),
            None => writeln!(out, "ROW {} {}", r.size, r.value),
        };
        let _ = out.flush();
    };
    match a.kind {
        Kind::Pool | Kind::Cxl => {
            let device = Device {
                miss_ns: if a.kind == Kind::Cxl { a.miss_ns } else { 0 },
            };
            let mut c = Comm::attach_on(&a.region, a.rank, device)?;
            suite::run(a.bench, &mut c, &a.params, &mut print)
        }
        Kind::TcpLo | Kind::TcpVeth => {
            let addrs: Vec<SocketAddr> = (0..a.ranks)
                .map(|r| {
                    let ip = if a.kind == Kind::TcpVeth {
                        netns::ADDRS[r.min(1)]
                    } else {
                        IpAddr::V4(Ipv4Addr::LOCALHOST)
                    };
                    SocketAddr::new(ip, a.port + r as u16)
                })
                .collect();
            let mut t = Tcp::connect(a.rank, &addrs)?;
            suite::run(a.bench, &mut t, &a.params, &mut print)
        }
        Kind::MpiSm | Kind::MpiTcp => Err(OmbError::InvalidOptions(
            "MPI ranks are started by mpirun".into(),
        )),
    }
}

/// Where to find things: the `moat` binary and the arguments before the rank's own, a scratch
/// directory (for the MPI driver), the repository's scripts.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The binary rank processes run.
    pub exe: PathBuf,
    /// Arguments before [`RankArgs::to_args`] (e.g. `omb rank`).
    pub prefix: Vec<String>,
    /// Scratch directory for the compiled MPI driver.
    pub scratch: PathBuf,
}

/// Kills and reaps the started processes on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                crate::shm::kill(c.id());
            }
            let _ = c.wait();
        }
    }
}

/// Deletes a file on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The C driver's source.
const MPI_DRIVER: &str = include_str!("../c/omb_mpi.c");

impl Launcher {
    /// Runs `bench` over `kind` with `ranks` processes; `row` sees each of rank 0's rows as it
    /// arrives. [`OmbError::Unavailable`] when the transport cannot run here.
    pub fn run(
        &self,
        kind: Kind,
        bench: Bench,
        ranks: usize,
        params: &Params,
        miss_ns: u64,
        row: &mut dyn FnMut(Row),
    ) -> Result<Vec<Row>, OmbError> {
        let id = std::process::id();
        let mut args = RankArgs {
            kind,
            bench,
            rank: 0,
            ranks,
            params: *params,
            region: PathBuf::new(),
            port: 20_000 + (id % 20_000) as u16,
            miss_ns,
        };
        let mut _region = None;
        let mut veth = None;
        let mut cmds: Vec<Command> = Vec::new();
        match kind {
            Kind::MpiSm | Kind::MpiTcp => cmds.push(self.mpirun(kind, bench, ranks, params)?),
            _ => {
                if matches!(kind, Kind::Pool | Kind::Cxl) {
                    let dir = if Path::new("/dev/shm").is_dir() {
                        PathBuf::from("/dev/shm")
                    } else {
                        std::env::temp_dir()
                    };
                    let path = dir.join(format!("moat-omb-{id}-{}", kind.name()));
                    let _ = std::fs::remove_file(&path);
                    Comm::create(&path, &Geometry::with_ranks(ranks as u32))?;
                    args.region = path.clone();
                    _region = Some(TempFile(path));
                }
                if kind == Kind::TcpVeth {
                    if ranks != 2 {
                        return Err(OmbError::Unavailable {
                            transport: kind.name().into(),
                            reason: "the veth pair joins exactly 2 ranks".into(),
                        });
                    }
                    veth = Some(VethPair::create()?);
                }
                for r in 0..ranks {
                    args.rank = r;
                    let mut c = match &veth {
                        Some(v) => {
                            let mut c = Command::new("ip");
                            c.args(["netns", "exec", v.namespace(r)]).arg(&self.exe);
                            c
                        }
                        None => Command::new(&self.exe),
                    };
                    c.args(&self.prefix).args(args.to_args());
                    cmds.push(c);
                }
            }
        }
        let mut procs = Procs(Vec::new());
        for (i, mut c) in cmds.into_iter().enumerate() {
            c.stdin(Stdio::null())
                .stdout(if i == 0 {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stderr(Stdio::piped());
            procs
                .0
                .push(c.spawn().map_err(|e| OmbError::io("start a rank", e))?);
        }
        let stdout = procs.0[0].stdout.take();
        let mut rows = Vec::new();
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines() {
                let line = line.map_err(|e| OmbError::io("read rank 0", e))?;
                if let Some(r) = parse_row(&line) {
                    row(r);
                    rows.push(r);
                }
            }
        }
        let mut failure = None;
        for c in &mut procs.0 {
            let status = c.wait().map_err(|e| OmbError::io("wait for a rank", e))?;
            if !status.success() && failure.is_none() {
                let mut err = String::new();
                if let Some(mut e) = c.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                failure = Some(format!("{status}: {}", err.trim()));
            }
        }
        drop(veth);
        match failure {
            Some(reason) if rows.len() < params.sizes(bench).len() => Err(OmbError::Unavailable {
                transport: kind.name().into(),
                reason,
            }),
            _ => Ok(rows),
        }
    }

    /// The `mpirun` command for the C driver, building it first if needed.
    fn mpirun(
        &self,
        kind: Kind,
        bench: Bench,
        ranks: usize,
        params: &Params,
    ) -> Result<Command, OmbError> {
        let unavailable = |reason: String| OmbError::Unavailable {
            transport: kind.name().into(),
            reason,
        };
        let driver = self.mpi_driver().map_err(unavailable)?;
        let mut c = Command::new("mpirun");
        c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
            .arg(ranks.to_string())
            .args(["--mca", "pml", "ob1", "--mca", "btl"]);
        match kind {
            Kind::MpiSm => c.arg("self,vader"),
            _ => c.args(["self,tcp", "--mca", "btl_tcp_if_include", "lo"]),
        };
        c.arg(driver)
            .arg(bench.index().to_string())
            .arg(params.min.to_string())
            .arg(params.max.to_string())
            .arg(params.iters.unwrap_or(0).to_string())
            .arg(params.iters_large.unwrap_or(0).to_string())
            .arg(params.window.to_string());
        Ok(c)
    }

    /// Compiles `c/omb_mpi.c` with `mpicc` into the scratch directory (once per source).
    fn mpi_driver(&self) -> Result<PathBuf, String> {
        let hash = MPI_DRIVER.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let bin = self.scratch.join(format!("omb_mpi-{hash:016x}"));
        if bin.is_file() {
            return Ok(bin);
        }
        std::fs::create_dir_all(&self.scratch).map_err(|e| e.to_string())?;
        let src = self.scratch.join("omb_mpi.c");
        std::fs::write(&src, MPI_DRIVER).map_err(|e| e.to_string())?;
        let out = Command::new("mpicc")
            .arg("-O2")
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .output()
            .map_err(|e| format!("mpicc: {e} (scripts/omb-deps.sh installs Open MPI)"))?;
        if !out.status.success() {
            return Err(format!(
                "mpicc failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(bin)
    }
}

/// Parses a `ROW size value [rate]` line.
pub fn parse_row(line: &str) -> Option<Row> {
    let mut it = line.strip_prefix("ROW ")?.split_ascii_whitespace();
    let size = it.next()?.parse().ok()?;
    let value = it.next()?.parse().ok()?;
    let rate = it.next().and_then(|r| r.parse().ok());
    Some(Row { size, value, rate })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_arguments_round_trip() {
        let a = RankArgs {
            kind: Kind::Cxl,
            bench: Bench::Bibw,
            rank: 1,
            ranks: 2,
            params: Params {
                iters: Some(5),
                ..Params::default()
            },
            region: PathBuf::from("/dev/shm/x"),
            port: 20_001,
            miss_ns: 80,
        };
        assert_eq!(RankArgs::parse(&a.to_args()).unwrap(), a);
        assert_eq!(
            parse_row("ROW 8 0.25 1.5"),
            Some(Row {
                size: 8,
                value: 0.25,
                rate: Some(1.5)
            })
        );
        assert_eq!(parse_row("noise"), None);
    }
}
