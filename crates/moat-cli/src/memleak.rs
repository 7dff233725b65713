//! `moat memleak`: outstanding allocations per call stack of a command or a running process, as
//! BCC's memleak reports them, from moat's own tracer (`examples/c/memleak.bpf.c`, built into
//! this binary): uprobes and uretprobes on glibc's allocator, each verified and isolated, the
//! user stack of each allocation from `bpf_get_stackid`, symbolised here after the fact.

use crate::symbolize::{Frame, Mapping, Symbolizer};
use clap::{Args, ValueEnum};
use moat_agent::control::{attach_running_observed, launch_observed, Options};
use moat_agent::protocol::Record;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The tracer: `examples/c/memleak.o` (rebuilt with `make -C examples/c memleak.o`).
const TRACER: &[u8] = include_bytes!("../../../examples/c/memleak.o");

/// How `moat memleak` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LeakFormat {
    /// Reports for people.
    Text,
    /// One JSON object per report.
    Json,
}

/// `moat memleak [-p PID | -- CMD ARGS] [--interval S] [--top N]`.
#[derive(Debug, Args)]
#[command(after_long_help = MEMLEAK_HELP)]
pub struct MemleakArgs {
    /// Trace running process PID (the agent is injected and detached again at Ctrl-C, after
    /// --duration, or when the process ends).
    #[arg(long, short = 'p', value_name = "PID", conflicts_with = "command")]
    pid: Option<i32>,
    /// With -p: stop after SECONDS.
    #[arg(long, value_name = "SECONDS", requires = "pid")]
    duration: Option<f64>,
    /// Also report every SECONDS while the process runs (always at the end).
    #[arg(long, value_name = "SECONDS")]
    interval: Option<f64>,
    /// How many stacks each report shows, most outstanding bytes first.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Output format (`json`: as --json).
    #[arg(long, value_enum, default_value = "text")]
    format: LeakFormat,
    /// One JSON object per report (same as `--format json`): `seconds` (since tracing began),
    /// `outstanding_bytes`, `stacks_with_outstanding`, and `stacks` (the --top ones, most bytes
    /// first), each with `bytes`, `allocations`, `stack_id` (negative: no stack, the error
    /// `bpf_get_stackid` returned) and `frames`, innermost first, each with `address`,
    /// `function`, `offset` (from the function's start), `file`, `line` and `object` (null where
    /// unknown). On failure `{"error": "..."}` and exit code 1.
    #[arg(long)]
    json: bool,
    /// Use this tracer object instead of the built-in one (same maps: `combined_allocs`,
    /// `stack_traces`).
    #[arg(long, value_name = "OBJ")]
    object: Option<PathBuf>,
    /// Count only allocations of at least BYTES (the tracer's `min_size`).
    #[arg(long, value_name = "BYTES")]
    min_size: Option<u64>,
    /// Count only allocations of at most BYTES (the tracer's `max_size`).
    #[arg(long, value_name = "BYTES")]
    max_size: Option<u64>,
    /// Run the same tracer on the Linux kernel's uprobes instead of moat (root; for comparing
    /// reports and overhead).
    #[arg(long)]
    kernel: bool,
    /// Write reports to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The command to run traced, after `--`.
    #[arg(last = true, required_unless_present = "pid", value_name = "CMD")]
    command: Vec<OsString>,
}

const MEMLEAK_HELP: &str = "\
Traces glibc's allocator in CMD (or process PID) with moat's agent: uprobes and uretprobes on
malloc, calloc, realloc, free, mmap, munmap, posix_memalign, aligned_alloc, valloc, memalign and
pvalloc run the programs of examples/c/memleak.bpf.c (verified, JIT-compiled, isolated), which keep
every outstanding allocation and, per user stack (bpf_get_stackid, frame pointers), the bytes and
blocks still allocated. Each report lists the stacks with the most outstanding bytes, symbolised
from the process's files (symbol tables, and DWARF lines where present).

Stacks are walked by frame pointers, as the kernel walks them: build the program with
-fno-omit-frame-pointer for full stacks (the C library's own frames stop the walk). Allocations
made before the agent attached (with -p) and frees of them are not seen.

Examples:
  moat memleak -- ./leaky
  moat memleak --interval 5 --top 5 -p 1234
  moat memleak --format json -- python3 script.py";

/// The tracer's maps a report reads (the others, such as the outstanding allocations by address,
/// are the tracer's own bookkeeping).
pub(crate) const REPORTED_MAPS: &[&str] = &["combined_allocs", "stack_traces"];

/// One stack's outstanding allocations.
#[derive(Debug, Clone)]
struct Outstanding {
    stack_id: i64,
    bytes: u64,
    blocks: u64,
    stack: Vec<u64>,
}

/// What one dump holds: outstanding allocations per stack and the process's mappings.
#[derive(Debug, Default)]
struct Dump {
    combined: Vec<(i64, u64, u64)>,
    stacks: BTreeMap<u32, Vec<u64>>,
    mappings: Vec<Mapping>,
}

fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    for (d, s) in w.iter_mut().zip(b) {
        *d = *s;
    }
    u64::from_le_bytes(w)
}

impl Dump {
    fn add(&mut self, r: &Record) {
        if let Some(m) = Mapping::from_record(r) {
            self.mappings.push(m);
            return;
        }
        let Record::Entry { map, key, value } = r else {
            return;
        };
        match map.as_str() {
            "combined_allocs" if value.len() >= 16 => {
                self.combined
                    .push((le64(key) as i64, le64(&value[..8]), le64(&value[8..16])));
            }
            "stack_traces" => {
                let ips: Vec<u64> = value
                    .chunks_exact(8)
                    .map(le64)
                    .take_while(|&ip| ip != 0)
                    .collect();
                self.stacks.insert(le64(key) as u32, ips);
            }
            _ => {}
        }
    }

    /// The stacks with outstanding bytes, most first.
    fn outstanding(&self) -> Vec<Outstanding> {
        let mut v: Vec<Outstanding> = self
            .combined
            .iter()
            .filter(|(_, bytes, blocks)| *bytes > 0 || *blocks > 0)
            .map(|&(stack_id, bytes, blocks)| Outstanding {
                stack_id,
                bytes,
                blocks,
                stack: u32::try_from(stack_id)
                    .ok()
                    .and_then(|id| self.stacks.get(&id).cloned())
                    .unwrap_or_default(),
            })
            .collect();
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.stack_id.cmp(&b.stack_id)));
        v
    }
}

fn frame_json(f: &Frame) -> serde_json::Value {
    serde_json::json!({
        "address": f.address,
        "function": f.function,
        "offset": f.offset,
        "file": f.file,
        "line": f.line,
        "object": f.object.as_ref().map(|p| p.display().to_string()),
    })
}

/// Prints reports.
struct Reporter {
    format: LeakFormat,
    top: usize,
    symbols: Symbolizer,
    start: Instant,
}

impl Reporter {
    fn report(&mut self, dump: &Dump, out: &mut dyn Write) {
        let stacks = dump.outstanding();
        let total: u64 = stacks.iter().map(|s| s.bytes).sum();
        let elapsed = self.start.elapsed().as_secs_f64();
        let shown: Vec<(&Outstanding, Vec<Frame>)> = stacks
            .iter()
            .take(self.top)
            .map(|s| {
                let frames = s
                    .stack
                    .iter()
                    .enumerate()
                    .map(|(i, &ip)| self.symbols.frame(&dump.mappings, ip, i > 0))
                    .collect();
                (s, frames)
            })
            .collect();
        if self.format == LeakFormat::Json {
            let list: Vec<serde_json::Value> = shown
                .iter()
                .map(|(s, frames)| {
                    serde_json::json!({
                        "bytes": s.bytes,
                        "allocations": s.blocks,
                        "stack_id": s.stack_id,
                        "frames": frames.iter().map(frame_json).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "seconds": elapsed,
                "outstanding_bytes": total,
                "stacks_with_outstanding": stacks.len(),
                "stacks": list,
            });
            let _ = writeln!(out, "{doc}");
            return;
        }
        let _ = writeln!(
            out,
            "[{elapsed:.1} s] {total} bytes outstanding in {} stacks; top {}:",
            stacks.len(),
            shown.len()
        );
        for (s, frames) in &shown {
            let _ = writeln!(
                out,
                "\t{} bytes in {} allocations from stack",
                s.bytes, s.blocks
            );
            if s.stack_id < 0 {
                let _ = writeln!(
                    out,
                    "\t\t[no stack: bpf_get_stackid returned {}]",
                    s.stack_id
                );
            }
            for f in frames {
                let _ = writeln!(out, "\t\t{f}");
            }
        }
        let _ = out.flush();
    }
}

/// Runs `moat memleak`.
pub fn run(args: MemleakArgs) -> ExitCode {
    let json = args.json || args.format == LeakFormat::Json;
    let (object, _keep) = match &args.object {
        Some(p) => (p.clone(), None),
        None => {
            let path = std::env::temp_dir().join(format!("moat-memleak-{}.o", std::process::id()));
            if let Err(e) = std::fs::write(&path, TRACER) {
                return crate::fail(json, format!("{}: {e}", path.display()));
            }
            (path.clone(), Some(RemoveOnDrop(path)))
        }
    };
    let interval = args
        .interval
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64);
    let mut globals = Vec::new();
    if let Some(n) = args.min_size {
        globals.push(("min_size".to_string(), n.to_string()));
    }
    if let Some(n) = args.max_size {
        globals.push(("max_size".to_string(), n.to_string()));
    }
    let options = Options {
        object,
        interval,
        globals,
        dump_maps: Some(REPORTED_MAPS.iter().map(|m| m.to_string()).collect()),
        ..Options::default()
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                return crate::fail(json, format!("{}: {e}", path.display()));
            }
        },
        None => Box::new(std::io::stdout()),
    };
    let mut reporter = Reporter {
        format: if args.json {
            LeakFormat::Json
        } else {
            args.format
        },
        top: args.top,
        symbols: Symbolizer::default(),
        start: Instant::now(),
    };
    if args.kernel {
        let bytes = match std::fs::read(&options.object) {
            Ok(b) => b,
            Err(e) => {
                return crate::fail(json, format!("{}: {e}", options.object.display()));
            }
        };
        return run_kernel(
            &args,
            &bytes,
            &options.globals,
            interval,
            &mut reporter,
            &mut *out,
        );
    }
    let mut current = Dump::default();
    let mut last = None::<Dump>;
    let (mut runs, mut failed, mut missed) = (0u64, 0u64, 0u64);
    let mut observe = |r: &Record| match r {
        Record::DumpBegin(_) => current = Dump::default(),
        Record::DumpEnd(_) => {
            let dump = std::mem::take(&mut current);
            if interval.is_some() {
                reporter.report(&dump, &mut *out);
            }
            last = Some(dump);
        }
        Record::Error { program, message } => {
            eprintln!("moat memleak: {program}: {message}");
        }
        Record::Stats {
            hits,
            errors,
            missed: m,
            ..
        } => {
            runs += hits;
            failed += errors;
            missed += m;
        }
        other => current.add(other),
    };
    let mut sink = std::io::sink();
    let status = match args.pid {
        Some(pid) => {
            moat_agent::inject::block_interrupts();
            let start = Instant::now();
            let duration = args
                .duration
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let mut until = || {
                moat_agent::inject::interrupted() || duration.is_some_and(|d| start.elapsed() >= d)
            };
            attach_running_observed(&options, pid, &mut sink, &mut until, &mut observe)
                .map(|_| ExitCode::SUCCESS)
        }
        None => launch_observed(&options, &args.command, &mut sink, &mut observe)
            .map(|(status, _)| crate::trace::exit_code(status)),
    };
    let code = match status {
        Ok(code) => code,
        Err(e) => {
            return crate::fail(json, e);
        }
    };
    match &last {
        Some(dump) if interval.is_none() => reporter.report(dump, &mut *out),
        Some(_) => {}
        None => eprintln!("moat memleak: the process reported no maps (did the agent load?)"),
    }
    if reporter.format == LeakFormat::Text {
        eprintln!("moat memleak: {runs} probe runs, {failed} failed, {missed} missed");
    }
    code
}

/// Removes the extracted tracer object when `moat memleak` ends.
pub(crate) struct RemoveOnDrop(pub(crate) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `moat memleak --kernel`: the tracer on the kernel's uprobes.
fn run_kernel(
    args: &MemleakArgs,
    bytes: &[u8],
    globals: &[(String, String)],
    interval: Option<Duration>,
    reporter: &mut Reporter,
    out: &mut dyn Write,
) -> ExitCode {
    let json = reporter.format == LeakFormat::Json;
    let mut tracer = match crate::memleak_kernel::KernelTracer::load(bytes, globals) {
        Ok(t) => t,
        Err(e) => {
            return crate::fail(json, format!("the kernel's tracer: {e}"));
        }
    };
    let dump_of = |records: &[Record]| {
        let mut dump = Dump::default();
        for r in records {
            dump.add(r);
        }
        dump
    };
    let Some(pid) = args.pid else {
        return match crate::memleak_kernel::run_command(&mut tracer, &args.command) {
            Ok((status, records)) => {
                reporter.report(&dump_of(&records), out);
                crate::trace::exit_code(status)
            }
            Err(e) => crate::fail(json, e),
        };
    };
    if let Err(e) = tracer.attach(pid) {
        return crate::fail(json, e);
    }
    moat_agent::inject::block_interrupts();
    let start = Instant::now();
    let duration = args
        .duration
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    let mut last_report = Instant::now();
    // The kernel's maps outlive the process (their descriptors are ours) and are read only for
    // a report; its mappings do not, so they are kept fresh while it lives.
    let mut mappings = Vec::new();
    let report = |mappings: &[Record], reporter: &mut Reporter, out: &mut dyn Write| {
        let mut records = tracer.records(REPORTED_MAPS);
        records.extend_from_slice(mappings);
        reporter.report(&dump_of(&records), out);
    };
    loop {
        let done = moat_agent::inject::interrupted()
            || duration.is_some_and(|d| start.elapsed() >= d)
            || !moat_agent::control::alive(pid);
        if moat_agent::control::alive(pid) {
            mappings = crate::memleak_kernel::mappings(pid);
        }
        if done {
            break;
        }
        if interval.is_some_and(|i| last_report.elapsed() >= i) {
            report(&mappings, reporter, out);
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    report(&mappings, reporter, out);
    ExitCode::SUCCESS
}
