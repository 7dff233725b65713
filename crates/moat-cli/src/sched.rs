//! `moat sched-bench`: the benchmark of issue 17, after LibPreemptible's and Shinjuku's. An
//! in-process server with one worker thread takes requests from an open-loop Poisson generator
//! (which also runs the scheduler's timer); each request spins for its service time, drawn from a
//! bimodal distribution (99.5 % 0.5 µs, 0.5 % 500 µs) or an exponential one (mean 5 µs). For each
//! offered load (a fraction of the worker's capacity, 1 / mean service time) and each system —
//! FCFS without preemption, tokio (cooperative: a task yields every 10 µs of work), and moat-sched
//! at quanta of 5, 10 and 50 µs and adaptive, by timer signal and by cooperative checks — it
//! records every request's latency (completion minus its *intended* arrival, so a lagging
//! generator cannot hide queueing) and prints p50/p99/p99.9 (and, bimodal, of the short requests),
//! then plots them against load (PNG).

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use moat_sched::{
    Adaptive, Clock, Config, Fcfs, Mechanism, Policy, ProgramPolicy, RoundRobin, Scheduler,
    TimerMode,
};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `moat sched-bench` options.
#[derive(clap::Args)]
pub struct SchedBenchArgs {
    /// Requests per run (one system at one load).
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Offered loads, as percentages of the worker's capacity.
    #[arg(long, value_delimiter = ',', default_value = "10,30,50,60,70,80,90")]
    loads: Vec<u32>,
    /// Workloads: bimodal, exponential.
    #[arg(long, value_delimiter = ',', default_value = "bimodal,exponential")]
    workloads: Vec<String>,
    /// Systems (default: all): fcfs, tokio, signal-5, signal-10, signal-50, signal-adaptive,
    /// signal-adaptive-ebpf, coop-5, coop-10, coop-50, coop-adaptive.
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
    /// Runs per point; each percentile is the median over them (a busy machine's stalls hit
    /// single runs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Where to write the plots (`<dir>/sched-<workload>.png`).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print one JSON object at the end instead of the tables (no progress bar): `uintr`
    /// (`available`, or why not), `requests`, `repeat`, and `workloads`, each with `workload`,
    /// `mean_service_us`, `plot` (the PNG written), and `systems`, each with `system` and
    /// `points`, one per load, with `load` (%), `p50_us`, `p99_us`, `p999_us`, `short_p99_us`
    /// (the short requests' p99 for `bimodal`, else null) and `preemptions_per_1k` (per 1 000
    /// requests). On failure `{"error": "..."}` and exit code 1.
    #[arg(long)]
    json: bool,
}

/// A service-time distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Workload {
    /// 99.5 % 0.5 µs, 0.5 % 500 µs.
    Bimodal,
    /// Exponential, mean 5 µs.
    Exponential,
}

impl Workload {
    fn parse(name: &str) -> Result<Workload> {
        match name {
            "bimodal" => Ok(Workload::Bimodal),
            "exponential" => Ok(Workload::Exponential),
            other => anyhow::bail!("unknown workload `{other}` (bimodal, exponential)"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::Bimodal => "bimodal",
            Workload::Exponential => "exponential",
        }
    }

    /// Mean service time (ns).
    fn mean(self) -> f64 {
        match self {
            Workload::Bimodal => 0.995 * 500.0 + 0.005 * 500_000.0,
            Workload::Exponential => 5_000.0,
        }
    }

    fn sample(self, rng: &mut Rng) -> u64 {
        match self {
            Workload::Bimodal if rng.unit() < 0.005 => 500_000,
            Workload::Bimodal => 500,
            Workload::Exponential => (rng.exp() * 5_000.0) as u64,
        }
    }

    /// The requests that count as short (bimodal: the 0.5 µs ones).
    fn short(self, service: u64) -> bool {
        self == Workload::Bimodal && service < 1_000
    }
}

/// xorshift64*: reproducible request schedules without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Exponential with mean 1.
    fn exp(&mut self) -> f64 {
        -(1.0 - self.unit()).ln()
    }
}

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq)]
enum System {
    Fcfs,
    Tokio,
    Sched {
        mechanism: Mechanism,
        /// Quantum in µs; `None`: adaptive (50 µs halved per doubling of the queue, ≥ 5 µs).
        quantum: Option<u64>,
        /// The policy is the bundled eBPF program rather than its Rust twin.
        ebpf: bool,
    },
}

const ALL_SYSTEMS: [&str; 11] = [
    "fcfs",
    "tokio",
    "signal-5",
    "signal-10",
    "signal-50",
    "signal-adaptive",
    "signal-adaptive-ebpf",
    "coop-5",
    "coop-10",
    "coop-50",
    "coop-adaptive",
];

impl System {
    fn parse(name: &str) -> Result<System> {
        let sched = |mechanism, rest: &str| -> Result<System> {
            let (quantum, ebpf) = match rest {
                "adaptive" => (None, false),
                "adaptive-ebpf" => (None, true),
                q => (Some(q.parse().context("quantum in µs")?), false),
            };
            Ok(System::Sched {
                mechanism,
                quantum,
                ebpf,
            })
        };
        match name.split_once('-') {
            _ if name == "fcfs" => Ok(System::Fcfs),
            _ if name == "tokio" => Ok(System::Tokio),
            Some(("signal", rest)) => sched(Mechanism::Signal, rest),
            Some(("coop", rest)) => sched(Mechanism::Cooperative, rest),
            _ => anyhow::bail!("unknown system `{name}` ({})", ALL_SYSTEMS.join(", ")),
        }
    }
}

/// One request: when it should arrive and how long it runs (ns).
#[derive(Clone, Copy)]
struct Request {
    arrival: u64,
    service: u64,
}

fn schedule(workload: Workload, load: f64, n: usize, seed: u64) -> Vec<Request> {
    let mut rng = Rng(seed | 1);
    let gap = workload.mean() / load;
    let mut t = 0.0;
    (0..n)
        .map(|_| {
            t += rng.exp() * gap;
            Request {
                arrival: t as u64,
                service: workload.sample(&mut rng),
            }
        })
        .collect()
}

/// Latency percentiles (µs) of one run.
#[derive(Debug, Clone, Copy, Default)]
struct Latencies {
    p50: f64,
    p99: f64,
    p999: f64,
    /// Of the short requests (bimodal), else 0.
    short_p99: f64,
    /// Preemptions per 1 000 requests.
    preemptions: f64,
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64 / 1e3
}

/// Runs `requests` through `system`; returns each request's completion time (ns, on `clock`,
/// from the run's start) and the preemptions counted.
fn run(system: System, requests: &[Request], clock: Clock) -> Result<(Vec<u64>, u64)> {
    let done: Arc<Vec<AtomicU64>> = Arc::new(requests.iter().map(|_| AtomicU64::new(0)).collect());
    match system {
        System::Tokio => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .build()
                .context("tokio runtime")?;
            let start = clock.now();
            for (i, r) in requests.iter().enumerate() {
                pause_until(&clock, start + r.arrival, || true);
                while clock.now() - start < r.arrival {
                    std::hint::spin_loop();
                }
                let (done, service) = (done.clone(), r.service);
                rt.spawn(async move {
                    let mut left = service;
                    while left > 0 {
                        let chunk = left.min(10_000);
                        clock.spin(chunk);
                        left -= chunk;
                        if left > 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    done[i].store(clock.now() - start, Ordering::Relaxed);
                });
            }
            while done.iter().any(|d| d.load(Ordering::Relaxed) == 0) {
                std::thread::yield_now();
            }
            Ok((collect(&done), 0))
        }
        System::Fcfs | System::Sched { .. } => {
            let (mechanism, policy, quantum): (_, Box<dyn Policy>, u64) = match system {
                System::Sched {
                    mechanism,
                    quantum: Some(q),
                    ..
                } => (mechanism, Box::new(RoundRobin), q),
                System::Sched {
                    mechanism,
                    quantum: None,
                    ebpf: false,
                } => (mechanism, Box::new(Adaptive), 50),
                System::Sched {
                    mechanism,
                    quantum: None,
                    ebpf: true,
                } => (
                    mechanism,
                    Box::new(
                        ProgramPolicy::bundled("adaptive")
                            .context("bundled policy")?
                            .context("the adaptive policy program")?,
                    ),
                    50,
                ),
                _ => (Mechanism::None, Box::new(Fcfs), 0),
            };
            let sched = Scheduler::new(
                Config {
                    workers: 1,
                    mechanism,
                    base_quantum: Duration::from_micros(quantum),
                    min_quantum: Duration::from_micros(5),
                    timer: TimerMode::External,
                    stack_size: 64 * 1024,
                },
                policy,
            )?;
            let cooperative = mechanism == Mechanism::Cooperative;
            let start = clock.now();
            for (i, r) in requests.iter().enumerate() {
                let idle = || {
                    let s = sched.stats();
                    !sched.tick() && s.completed == s.spawned
                };
                pause_until(&clock, start + r.arrival, idle);
                while clock.now() - start < r.arrival {
                    sched.tick();
                }
                let (done, service) = (done.clone(), r.service);
                sched.spawn(
                    move || {
                        if cooperative {
                            clock.spin_cooperatively(service, 500);
                        } else {
                            clock.spin(service);
                        }
                        done[i].store(clock.now() - start, Ordering::Relaxed);
                    },
                    None,
                );
            }
            sched.wait_idle();
            let preemptions = sched.stats().preemptions;
            Ok((collect(&done), preemptions))
        }
    }
}

/// The generator sleeps until shortly before `at` when the next arrival is far and `idle()` (no
/// quantum to watch): a spinning generator would take a core the machine's other work then needs,
/// and have its own core taken for milliseconds later.
fn pause_until(clock: &Clock, at: u64, idle: impl Fn() -> bool) {
    const FAR: u64 = 250_000;
    const WAKE_EARLY: u64 = 150_000;
    let ahead = at.saturating_sub(clock.now());
    if ahead > FAR && idle() {
        std::thread::sleep(Duration::from_nanos(ahead - WAKE_EARLY));
    }
}

fn collect(done: &[AtomicU64]) -> Vec<u64> {
    done.iter().map(|d| d.load(Ordering::Relaxed)).collect()
}

fn measure(
    system: System,
    workload: Workload,
    requests: &[Request],
    clock: Clock,
) -> Result<Latencies> {
    let (done, preemptions) = run(system, requests, clock)?;
    let mut all: Vec<u64> = Vec::with_capacity(done.len());
    let mut short: Vec<u64> = Vec::new();
    // The first 5 % warm the system up.
    for (r, d) in requests.iter().zip(&done).skip(requests.len() / 20) {
        let latency = d.saturating_sub(r.arrival);
        all.push(latency);
        if workload.short(r.service) {
            short.push(latency);
        }
    }
    all.sort_unstable();
    short.sort_unstable();
    Ok(Latencies {
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        p999: percentile(&all, 0.999),
        short_p99: percentile(&short, 0.99),
        preemptions: preemptions as f64 * 1000.0 / requests.len().max(1) as f64,
    })
}

/// Each field's median over `runs`.
fn median(runs: &[Latencies]) -> Latencies {
    let mid = |get: fn(&Latencies) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(get).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    Latencies {
        p50: mid(|l| l.p50),
        p99: mid(|l| l.p99),
        p999: mid(|l| l.p999),
        short_p99: mid(|l| l.short_p99),
        preemptions: mid(|l| l.preemptions),
    }
}

/// `moat sched-bench`.
pub fn run_bench(args: SchedBenchArgs) -> Result<()> {
    let json = args.json;
    crate::json_errors(json, bench(args))
}

/// One workload's results for `--json`.
fn workload_json(
    workload: Workload,
    plot: &std::path::Path,
    results: &[(String, Vec<(f64, Latencies)>)],
) -> serde_json::Value {
    let short = workload == Workload::Bimodal;
    let systems: Vec<serde_json::Value> = results
        .iter()
        .map(|(name, curve)| {
            let points: Vec<serde_json::Value> = curve
                .iter()
                .map(|(load, l)| {
                    serde_json::json!({
                        "load": load,
                        "p50_us": l.p50,
                        "p99_us": l.p99,
                        "p999_us": l.p999,
                        "short_p99_us": short.then_some(l.short_p99),
                        "preemptions_per_1k": l.preemptions,
                    })
                })
                .collect();
            serde_json::json!({ "system": name, "points": points })
        })
        .collect();
    serde_json::json!({
        "workload": workload.name(),
        "mean_service_us": workload.mean() / 1e3,
        "plot": plot.display().to_string(),
        "systems": systems,
    })
}

fn bench(args: SchedBenchArgs) -> Result<()> {
    let workloads: Vec<Workload> = args
        .workloads
        .iter()
        .map(|w| Workload::parse(w))
        .collect::<Result<_>>()?;
    let names: Vec<String> = if args.systems.is_empty() {
        ALL_SYSTEMS.iter().map(|s| s.to_string()).collect()
    } else {
        args.systems.clone()
    };
    let systems: Vec<(String, System)> = names
        .iter()
        .map(|n| Ok((n.clone(), System::parse(n)?)))
        .collect::<Result<_>>()?;
    for (name, system) in &systems {
        if let System::Sched { mechanism, .. } = system {
            mechanism
                .availability()
                .map_err(|e| anyhow::anyhow!("{name}: {mechanism} is unavailable: {e}"))?;
        }
    }
    let uintr = Mechanism::Uintr
        .availability()
        .err()
        .unwrap_or_else(|| "available".into());
    let clock = Clock::new();
    let total = (workloads.len() * systems.len() * args.loads.len()) as u64;
    if !args.json {
        println!("uintr: {uintr}");
        println!(
            "{} requests per run, median of {} run(s) per point",
            args.requests, args.repeat
        );
    }
    let mut json_workloads = Vec::new();
    let bar = if args.quiet || args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for workload in workloads {
        let mut results: Vec<(String, Vec<(f64, Latencies)>)> = Vec::new();
        for (name, system) in &systems {
            let mut curve = Vec::new();
            for &load in &args.loads {
                bar.set_message(format!("{} {name} {load} %", workload.name()));
                let runs: Vec<Latencies> = (0..args.repeat)
                    .map(|k| {
                        let seed = 42 + u64::from(k);
                        let requests =
                            schedule(workload, f64::from(load) / 100.0, args.requests, seed);
                        measure(*system, workload, &requests, clock)
                    })
                    .collect::<Result<_>>()?;
                curve.push((f64::from(load), median(&runs)));
                bar.inc(1);
            }
            results.push((name.clone(), curve));
        }
        if !args.json {
            bar.suspend(|| print!("{}", table(workload, &results)));
        }
        let path = args.out.join(format!("sched-{}.png", workload.name()));
        crate::sched_plot::plot(
            &path,
            workload.name(),
            &results_for_plot(workload, &results),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
        if args.json {
            json_workloads.push(workload_json(workload, &path, &results));
        } else {
            bar.suspend(|| println!("plot: {}\n", path.display()));
        }
    }
    bar.finish_and_clear();
    if args.json {
        out!(
            "{}",
            serde_json::json!({
                "uintr": uintr,
                "requests": args.requests,
                "repeat": args.repeat,
                "workloads": json_workloads,
            })
        );
    }
    Ok(())
}

/// A metric of a run, by name.
type Metric = (&'static str, fn(&Latencies) -> f64);

/// The plotted series: per metric, per system, (load, µs).
fn results_for_plot(
    workload: Workload,
    results: &[(String, Vec<(f64, Latencies)>)],
) -> Vec<crate::sched_plot::Panel> {
    let mut metrics: Vec<Metric> = vec![
        ("p50", |l| l.p50),
        ("p99", |l| l.p99),
        ("p99.9", |l| l.p999),
    ];
    if workload == Workload::Bimodal {
        metrics.push(("p99 of short requests", |l| l.short_p99));
    }
    metrics
        .into_iter()
        .map(|(metric, get)| {
            let series = results
                .iter()
                .map(|(name, curve)| {
                    (
                        name.clone(),
                        curve.iter().map(|(load, l)| (*load, get(l))).collect(),
                    )
                })
                .collect();
            (metric.to_string(), series)
        })
        .collect()
}

/// The markdown table of one workload.
fn table(workload: Workload, results: &[(String, Vec<(f64, Latencies)>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### {} (mean service {:.2} µs; latency µs)\n",
        workload.name(),
        workload.mean() / 1e3
    );
    let short = workload == Workload::Bimodal;
    let _ = writeln!(
        out,
        "| system | load % | p50 | p99 | p99.9 |{} preemptions / 1k req |",
        if short { " short p99 |" } else { "" }
    );
    let _ = writeln!(
        out,
        "|---|--:|--:|--:|--:|{}--:|",
        if short { "--:|" } else { "" }
    );
    for (name, curve) in results {
        for (load, l) in curve {
            let _ = write!(
                out,
                "| {name} | {load:.0} | {:.1} | {:.1} | {:.1} |",
                l.p50, l.p99, l.p999
            );
            if short {
                let _ = write!(out, " {:.1} |", l.short_p99);
            }
            let _ = writeln!(out, " {:.1} |", l.preemptions);
        }
    }
    out
}
