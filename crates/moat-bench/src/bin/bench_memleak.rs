//! What an allocation tracer costs the program it traces (issue 15): an allocation-heavy
//! workload alone, under `moat memleak`, under the same tracer object on the kernel's uprobes
//! (`moat memleak --kernel`, as root), under heaptrack and under valgrind (memcheck,
//! `--leak-check=full`), side by side in one run, rounds interleaved so that the machine's noise
//! falls on every column alike. Workloads time their own loop (start-up and the tracers' final
//! reports are not counted): `examples/leaky/mallocbench.c` (malloc, calloc, realloc and free of
//! 16 B to 4 KiB) and `python3` building byte arrays above pymalloc's 512-byte limit.
//!
//! ```text
//! cargo build --release -p moat-cli -p moat-agent
//! cargo run --release -p moat-bench --bin bench_memleak [-- --rounds 5 --plot docs/bench/memleak.png]
//! ```
//! Prints a Markdown table (median ns per allocation, slowdown against the workload alone) and
//! writes a bar chart of the slowdowns.

use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Allocations per mallocbench run.
const MALLOCS: u64 = 100_000;
/// Byte arrays per python3 run.
const PY_ALLOCS: u64 = 100_000;

const PY_SCRIPT: &str = "\
import time
n = int(__import__('sys').argv[1])
keep = []
t = time.perf_counter()
for i in range(n):
    keep.append(bytearray(600 + i % 1000))
    if len(keep) > 256:
        keep.pop(0)
dt = time.perf_counter() - t
print('ns_per_alloc %.1f' % (dt / n * 1e9))
";

use moat_bench::{moat_command as moat, workspace};

/// The workload, built with frame pointers.
fn mallocbench() -> Result<PathBuf, String> {
    let bin = std::env::temp_dir().join(format!("moat-mallocbench-{}", std::process::id()));
    let status = Command::new("cc")
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&bin)
        .arg(workspace().join("examples/leaky/mallocbench.c"))
        .status()
        .map_err(|e| format!("cc: {e}"))?;
    status
        .success()
        .then_some(bin)
        .ok_or_else(|| "mallocbench.c did not compile".into())
}

/// A tracer: the words put before the workload's command.
struct Tracer {
    name: &'static str,
    prefix: Vec<String>,
}

/// Runs `prefix + command`, returns the workload's `ns_per_alloc`.
fn measure(prefix: &[String], command: &[String]) -> Result<f64, String> {
    let all: Vec<&String> = prefix.iter().chain(command).collect();
    let out = Command::new(all[0])
        .args(&all[1..])
        .output()
        .map_err(|e| format!("{}: {e}", all[0]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("ns_per_alloc "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "{}: no ns_per_alloc in its output: {}{}",
                all.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
                text,
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn plot(path: &Path, rows: &[(String, Vec<(String, f64)>)]) -> Result<(), String> {
    let font = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ]
    .iter()
    .any(|p| {
        std::fs::read(p).ok().is_some_and(|b| {
            let b: &'static [u8] = Box::leak(b.into_boxed_slice());
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, b)
                .is_ok()
        })
    });
    let tracers: Vec<String> = rows
        .first()
        .map(|(_, cols)| cols.iter().map(|(t, _)| t.clone()).collect())
        .unwrap_or_default();
    let max = rows
        .iter()
        .flat_map(|(_, c)| c.iter().map(|(_, v)| *v))
        .fold(1.0f64, f64::max);
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let n = (rows.len() * (tracers.len() + 1)) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            if font {
                "slowdown of the traced workload (log scale; lower is better)"
            } else {
                ""
            },
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(if font { 40 } else { 0 })
        .y_label_area_size(if font { 60 } else { 0 })
        .build_cartesian_2d(0f64..n, (1f64..max * 1.5).log_scale())
        .map_err(|e| e.to_string())?;
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh().y_desc("× slower than alone");
    let per = tracers.len() as f64 + 1.0;
    mesh.disable_x_axis();
    mesh.draw().map_err(|e| e.to_string())?;
    let colours = [
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
    ];
    for (t, tracer) in tracers.iter().enumerate() {
        let colour = colours[t % colours.len()];
        let bars: Vec<Rectangle<(f64, f64)>> = rows
            .iter()
            .enumerate()
            .filter_map(|(w, (_, cols))| {
                let v = cols.get(t)?.1;
                let x = w as f64 * per + t as f64 + 0.5;
                Some(Rectangle::new(
                    [(x, 1.0), (x + 0.9, v.max(1.0))],
                    colour.filled(),
                ))
            })
            .collect();
        let series = chart.draw_series(bars).map_err(|e| e.to_string())?;
        if font {
            series.label(tracer.clone()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled())
            });
        }
    }
    if font {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    if font {
        // The workloads' names under their groups of bars.
        for (w, (name, _)) in rows.iter().enumerate() {
            let centre = w as f64 * per + per / 2.0;
            let (x, y) = chart.backend_coord(&(centre, 1.0));
            let style = ("sans-serif", 16).into_font().color(&BLACK);
            root.draw_text(name, &style, (x - 4 * name.len() as i32, y + 10))
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let rounds: usize = opt("--rounds").and_then(|r| r.parse().ok()).unwrap_or(5);
    let plot_path = opt("--plot").map(PathBuf::from);
    let moat = match moat() {
        Ok(m) => m.display().to_string(),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    if !(have("cc") && have("valgrind") && have("heaptrack")) {
        let _ = Command::new("bash")
            .arg(workspace().join("scripts/memleak-deps.sh"))
            .status();
    }
    let bench = match mallocbench() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let heaptrack_out = std::env::temp_dir().join(format!("moat-ht-{}", std::process::id()));
    let mut tracers = vec![
        Tracer {
            name: "alone",
            prefix: vec![],
        },
        Tracer {
            name: "moat memleak",
            prefix: vec![
                moat.clone(),
                "memleak".into(),
                "--top".into(),
                "1".into(),
                "--".into(),
            ],
        },
    ];
    match moat_kernel::available() {
        Ok(()) => tracers.push(Tracer {
            name: "kernel uprobes",
            prefix: vec![
                moat.clone(),
                "memleak".into(),
                "--kernel".into(),
                "--top".into(),
                "1".into(),
                "--".into(),
            ],
        }),
        Err(why) => eprintln!("kernel column skipped: {why}"),
    }
    if have("heaptrack") {
        tracers.push(Tracer {
            name: "heaptrack",
            prefix: vec![
                "heaptrack".into(),
                "-o".into(),
                heaptrack_out.display().to_string(),
            ],
        });
    }
    if have("valgrind") {
        tracers.push(Tracer {
            name: "valgrind",
            prefix: vec!["valgrind".into(), "-q".into(), "--leak-check=full".into()],
        });
    }
    let workloads: Vec<(String, Vec<String>)> = vec![
        (
            "mallocbench".into(),
            vec![bench.display().to_string(), MALLOCS.to_string()],
        ),
        (
            "python3".into(),
            vec![
                // Debian's interpreter, not a wrapper script on the PATH (children are not traced).
                "/usr/bin/python3".into(),
                "-c".into(),
                PY_SCRIPT.into(),
                PY_ALLOCS.to_string(),
            ],
        ),
    ];
    let mut samples = vec![vec![Vec::new(); tracers.len()]; workloads.len()];
    for round in 0..rounds {
        for (w, (name, cmd)) in workloads.iter().enumerate() {
            for (t, tracer) in tracers.iter().enumerate() {
                eprint!(
                    "\rround {}/{rounds}: {name} under {:<16}",
                    round + 1,
                    tracer.name
                );
                match measure(&tracer.prefix, cmd) {
                    Ok(ns) => samples[w][t].push(ns),
                    Err(e) => eprintln!("\n{e}"),
                }
            }
        }
    }
    eprintln!();
    println!("| workload | tracer | ns per allocation (median of {rounds}) | slowdown |");
    println!("|---|---|---:|---:|");
    let mut rows = Vec::new();
    for (w, (name, _)) in workloads.iter().enumerate() {
        let alone = median(&mut samples[w][0].clone());
        let mut cols = Vec::new();
        for (t, tracer) in tracers.iter().enumerate() {
            if samples[w][t].is_empty() {
                continue;
            }
            let m = median(&mut samples[w][t]);
            println!("| {name} | {} | {m:.0} | {:.1}× |", tracer.name, m / alone);
            if t > 0 {
                cols.push((tracer.name.to_string(), m / alone));
            }
        }
        let slow = |n: &str| cols.iter().find(|(t, _)| t == n).map(|(_, v)| *v);
        if let (Some(m), Some(k)) = (slow("moat memleak"), slow("kernel uprobes")) {
            println!(
                "| {name} | moat's slowdown / the kernel's | | {:.2} |",
                (m - 1.0) / (k - 1.0)
            );
        }
        rows.push((name.clone(), cols));
    }
    if let Some(path) = plot_path {
        match plot(&path, &rows) {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => eprintln!("plot: {e}"),
        }
    }
    let _ = std::fs::remove_file(&bench);
    for ext in ["zst", "gz"] {
        let _ = std::fs::remove_file(heaptrack_out.with_extension(ext));
    }
}
