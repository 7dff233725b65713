//! `moat omb`: the OSU-style micro-benchmarks over moat's shared-memory transport and, side by side
//! in one run, TCP (loopback and a veth pair between two network namespaces), an emulated CXL
//! device and Open MPI (shared memory and TCP). Prints OSU's format per transport, a comparison
//! table, and optionally PNG plots.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use moat_omb::launch::{Kind, Launcher, RankArgs};
use moat_omb::plot::{self, Series};
use moat_omb::{Bench, OmbError, Params, Row};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Which benchmark.
#[derive(Subcommand)]
pub enum OmbCommand {
    /// osu_latency: ping-pong between 2 ranks, one-way latency.
    Latency(Common),
    /// osu_bw: windows of 64 messages one way.
    Bw(Common),
    /// osu_bibw: windows of 64 messages both ways.
    Bibw(Common),
    /// osu_mbw_mr: pairs of ranks streaming; bandwidth and message rate.
    #[command(name = "mbw_mr")]
    MbwMr(Common),
    /// osu_multi_lat: pairs of ranks ping-ponging at once.
    #[command(name = "multi_lat")]
    MultiLat(Common),
    /// osu_barrier.
    Barrier(Common),
    /// osu_bcast from rank 0.
    Bcast(Common),
    /// osu_allreduce (sum of f64).
    Allreduce(Common),
    /// Every benchmark in turn.
    All(Common),
    /// One rank process (started by the others).
    #[command(hide = true)]
    Rank {
        /// What the launcher passes.
        args: Vec<String>,
    },
}

/// Options of every benchmark.
#[derive(Args, Clone)]
pub struct Common {
    /// Transports, comma-separated: pool, pool-cxl, tcp-lo, tcp-veth, mpi-sm, mpi-tcp, or `all`.
    #[arg(long, short, default_value = "pool,tcp-lo")]
    transports: String,
    /// Rank processes (OSU's point-to-point tests use 2).
    #[arg(long, default_value_t = 2)]
    ranks: usize,
    /// Smallest message size (bytes; K and M suffixes).
    #[arg(long, default_value = "1", value_parser = parse_size)]
    min: usize,
    /// Largest message size.
    #[arg(long, default_value = "4M", value_parser = parse_size)]
    max: usize,
    /// Iterations per size up to 8 KiB (default: OSU's).
    #[arg(long)]
    iters: Option<usize>,
    /// Iterations per size above 8 KiB (default: OSU's).
    #[arg(long)]
    iters_large: Option<usize>,
    /// Window of the bandwidth tests.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Emulated CXL cost per cache-line miss for `pool-cxl`, in ns (published: 70–90).
    #[arg(long, default_value_t = 80)]
    cxl_ns: u64,
    /// Write a PNG plot per benchmark into this directory.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// Also write the comparison tables as Markdown to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Print one JSON object at the end instead of OSU's lines and the tables: `ranks`, and
    /// `benchmarks`, each with `benchmark` (the subcommand's name, e.g. `latency`), `unit` (`us` or
    /// `MB/s`), `results`, one per transport that ran (and `memcpy`, one core's copy, for `bw` and
    /// `bibw`), each with `transport` and `rows` (`size` in bytes, `value` in `unit`, `rate`:
    /// messages per second where the benchmark measures it, else null), and `skipped`, one per
    /// transport that could not run, with `transport` and `reason`. On failure `{"error": "..."}`
    /// and exit code 1.
    #[arg(long)]
    json: bool,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let (num, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .map(|n| n * mul)
        .map_err(|e| format!("{s}: {e}"))
}

/// Runs `moat omb …`.
pub fn run(cmd: OmbCommand) -> Result<()> {
    let json = match &cmd {
        OmbCommand::Rank { .. } => false,
        OmbCommand::Latency(c)
        | OmbCommand::Bw(c)
        | OmbCommand::Bibw(c)
        | OmbCommand::MbwMr(c)
        | OmbCommand::MultiLat(c)
        | OmbCommand::Barrier(c)
        | OmbCommand::Bcast(c)
        | OmbCommand::Allreduce(c)
        | OmbCommand::All(c) => c.json,
    };
    crate::json_errors(json, run_benchmarks(cmd))
}

fn run_benchmarks(cmd: OmbCommand) -> Result<()> {
    let (benches, common): (Vec<Bench>, Common) = match cmd {
        OmbCommand::Rank { args } => {
            let a = RankArgs::parse(&args)?;
            return moat_omb::launch::rank_main(&a).context("rank");
        }
        OmbCommand::Latency(c) => (vec![Bench::Latency], c),
        OmbCommand::Bw(c) => (vec![Bench::Bw], c),
        OmbCommand::Bibw(c) => (vec![Bench::Bibw], c),
        OmbCommand::MbwMr(c) => (vec![Bench::MbwMr], c),
        OmbCommand::MultiLat(c) => (vec![Bench::MultiLat], c),
        OmbCommand::Barrier(c) => (vec![Bench::Barrier], c),
        OmbCommand::Bcast(c) => (vec![Bench::Bcast], c),
        OmbCommand::Allreduce(c) => (vec![Bench::Allreduce], c),
        OmbCommand::All(c) => (Bench::ALL.to_vec(), c),
    };
    let kinds: Vec<Kind> = if common.transports == "all" {
        Kind::ALL.to_vec()
    } else {
        common
            .transports
            .split(',')
            .map(|t| t.trim().parse::<Kind>())
            .collect::<Result<_, _>>()?
    };
    if common.ranks < 2 || common.ranks > 64 {
        bail!("--ranks must be 2..=64");
    }
    if kinds
        .iter()
        .any(|k| matches!(k, Kind::MpiSm | Kind::MpiTcp))
    {
        ensure_mpi();
    }
    let params = Params {
        min: common.min,
        max: common.max,
        iters: common.iters,
        iters_large: common.iters_large,
        window: common.window,
    };
    let launcher = Launcher {
        exe: std::env::current_exe().context("locate the moat binary")?,
        prefix: vec!["omb".into(), "rank".into()],
        scratch: std::env::temp_dir().join("moat-omb"),
    };
    let mut markdown = String::new();
    let mut json_benches = Vec::new();
    let text = !common.json;
    for bench in benches {
        let mut results: Vec<(Kind, Vec<Row>)> = Vec::new();
        let mut skipped = Vec::new();
        for &kind in &kinds {
            let total = params.sizes(bench).len();
            let mut done = 0;
            let bar = Progress::new(bench, kind, total);
            if text {
                out!(
                    "# {} (moat omb, transport: {}, {} ranks)",
                    bench.title(),
                    kind.name(),
                    common.ranks
                );
                out!("# Size{:>20}", bench.columns());
            }
            let r = launcher.run(
                kind,
                bench,
                common.ranks,
                &params,
                common.cxl_ns,
                &mut |row| {
                    done += 1;
                    bar.clear();
                    if text {
                        out!("{}", row.osu_line());
                    }
                    bar.update(done, row.size);
                },
            );
            bar.clear();
            match r {
                Ok(rows) => results.push((kind, rows)),
                Err(e @ OmbError::Unavailable { .. }) => {
                    if text {
                        out!("# skipped: {e}");
                    }
                    skipped.push(serde_json::json!({
                        "transport": kind.name(),
                        "reason": e.to_string(),
                    }));
                }
                Err(e) => return Err(e).context(format!("{bench} over {}", kind.name())),
            }
            if text {
                out!("");
            }
        }
        let mut named: Vec<(String, Vec<Row>)> = results
            .into_iter()
            .map(|(k, rows)| (k.name().to_string(), rows))
            .collect();
        if matches!(bench, Bench::Bw | Bench::Bibw) {
            // The yardstick: one core copying between two of its own buffers.
            let rows = params
                .sizes(bench)
                .into_iter()
                .map(|size| Row {
                    size,
                    value: moat_omb::suite::memcpy_bw(size, &params),
                    rate: None,
                })
                .collect();
            named.push(("memcpy".to_string(), rows));
        }
        let table = comparison(bench, &named);
        if text {
            out!("{table}");
        }
        json_benches.push(bench_json(bench, &named, skipped));
        markdown.push_str(&table);
        markdown.push('\n');
        if let Some(dir) = &common.plot {
            write_plot(dir, bench, &named)?;
        }
    }
    if let Some(path) = &common.markdown {
        std::fs::write(path, markdown).with_context(|| format!("write {}", path.display()))?;
    }
    if common.json {
        out!(
            "{}",
            serde_json::json!({ "ranks": common.ranks, "benchmarks": json_benches })
        );
    }
    Ok(())
}

/// Installs Open MPI with `scripts/omb-deps.sh` (found from the current directory up) when `mpicc`
/// or `mpirun` is missing; what it cannot do shows later as a skipped transport.
fn ensure_mpi() {
    let have = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if have("mpicc") && have("mpirun") {
        return;
    }
    let mut dir = std::env::current_dir().ok();
    while let Some(d) = dir {
        let script = d.join("scripts/omb-deps.sh");
        if script.is_file() {
            eprintln!("installing Open MPI with {}", script.display());
            let _ = std::process::Command::new("bash").arg(&script).status();
            return;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
}

/// A Markdown table: one row per size, one column per transport.
/// One benchmark's results for `--json`.
fn bench_json(
    bench: Bench,
    results: &[(String, Vec<Row>)],
    skipped: Vec<serde_json::Value>,
) -> serde_json::Value {
    let results: Vec<serde_json::Value> = results
        .iter()
        .map(|(transport, rows)| {
            let rows: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| serde_json::json!({ "size": r.size, "value": r.value, "rate": r.rate }))
                .collect();
            serde_json::json!({ "transport": transport, "rows": rows })
        })
        .collect();
    serde_json::json!({
        "benchmark": bench.name(),
        "unit": if bench.is_bandwidth() { "MB/s" } else { "us" },
        "results": results,
        "skipped": skipped,
    })
}

fn comparison(bench: Bench, results: &[(String, Vec<Row>)]) -> String {
    let unit = if bench.is_bandwidth() { "MB/s" } else { "µs" };
    let mut s = format!("### {} ({unit})\n\n| size |", bench.name());
    for (k, _) in results {
        s.push_str(&format!(" {k} |"));
    }
    s.push_str("\n|--:|");
    for _ in results {
        s.push_str("--:|");
    }
    s.push('\n');
    let sizes: Vec<usize> = results
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| r.size))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for size in sizes {
        s.push_str(&format!("| {} |", human(size)));
        for (_, rows) in results {
            match rows.iter().find(|r| r.size == size) {
                Some(r) if r.value >= 100.0 => s.push_str(&format!(" {:.0} |", r.value)),
                Some(r) => s.push_str(&format!(" {:.2} |", r.value)),
                None => s.push_str(" – |"),
            }
        }
        s.push('\n');
    }
    s
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s.is_multiple_of(1 << 20) => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s.is_multiple_of(1 << 10) => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn write_plot(dir: &Path, bench: Bench, results: &[(String, Vec<Row>)]) -> Result<()> {
    if bench == Bench::Barrier {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let series: Vec<Series> = results
        .iter()
        .map(|(k, rows)| Series {
            name: k.clone(),
            points: rows
                .iter()
                .filter(|r| r.size > 0)
                .map(|r| (r.size as f64, r.value))
                .collect(),
        })
        .collect();
    let ylabel = if bench.is_bandwidth() { "MB/S" } else { "US" };
    let path = dir.join(format!("omb-{}.png", bench.name()));
    plot::plot(
        &path,
        &format!("MOAT OMB {}", bench.name()),
        "MESSAGE SIZE (BYTES)",
        ylabel,
        &series,
    )
    .with_context(|| format!("write {}", path.display()))?;
    eprintln!("plot: {}", path.display());
    Ok(())
}

/// A progress bar on stderr while it is a terminal.
struct Progress {
    tty: bool,
    label: String,
    total: usize,
}

impl Progress {
    fn new(bench: Bench, kind: Kind, total: usize) -> Progress {
        let p = Progress {
            tty: std::io::stderr().is_terminal(),
            label: format!("{} {}", bench.name(), kind.name()),
            total,
        };
        p.update(0, 0);
        p
    }

    fn update(&self, done: usize, size: usize) {
        if !self.tty {
            return;
        }
        let width = 30;
        let filled = done * width / self.total.max(1);
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r[{}{}] {} {done}/{} (last {size} B)",
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.label,
            self.total
        );
        let _ = e.flush();
    }

    fn clear(&self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r{:80}\r", "");
        }
    }
}
