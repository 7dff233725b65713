//! `moat trace`: attach an object's programs to a command and print what they report.

use clap::{Args, ValueEnum};
use moat_agent::control::{attach_running, launch, Format, Options};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How `moat trace` prints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TraceFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line.
    Json,
}

/// `moat trace OBJ.o [--program NAME]... -- CMD ARGS`, or `moat trace OBJ.o -p PID`.
#[derive(Debug, Args)]
#[command(after_long_help = TRACE_HELP)]
pub struct TraceArgs {
    /// The ELF object whose programs attach (clang -target bpf).
    object: PathBuf,
    /// Attach only this program (repeatable); default: every program with an attach section.
    #[arg(long = "program", value_name = "NAME")]
    programs: Vec<String>,
    /// Output format (`json`: as --json).
    #[arg(long, value_enum, default_value = "text")]
    format: TraceFormat,
    /// One JSON object per line (same as `--format json`), each with one of these shapes:
    /// `{"attached": PROGRAM, "point": WHERE, "address": N, "method": HOW}` for each probe
    /// attached; `{"event": MAP, "data": HEX}` for each ring-buffer record; `{"map": MAP, "key":
    /// HEX, "value": HEX, "dump": N}` for each element of each map dump (N counts the dumps);
    /// `{"stats": PROGRAM, "runs": N, "failed": N, "missed": N, "over_budget": N}` per program at
    /// the end; `{"error": MESSAGE, "program": PROGRAM}` (`program` empty when no program is at
    /// fault); `{"detached": true}` last. Hex without spaces, in the target's byte order. A
    /// failure to start prints `{"error": MESSAGE}` alone, exit code 1.
    #[arg(long)]
    json: bool,
    /// Also dump the maps every SECONDS while the command runs (they are always dumped at exit).
    #[arg(long, value_name = "SECONDS")]
    interval: Option<f64>,
    /// Attach every probe with an int3 trap instead of rewriting (to compare the two).
    #[arg(long)]
    trap: bool,
    /// Load the programs without verifying them (the engines' checks and sfi still confine them;
    /// a probe that misbehaves is stopped and disabled, and the command runs on).
    #[arg(long)]
    no_verify: bool,
    /// Time budget of every run of a program, e.g. `50us`, `2ms` (units ns, us, ms, s): a run
    /// past it is stopped at its next loop back-edge or call and counted like a violation, so a
    /// slow probe cannot stall the traced program.
    #[arg(long, value_name = "TIME", value_parser = crate::parse_duration)]
    time_budget: Option<Duration>,
    /// Attach to running process PID instead of starting a command: the agent is injected
    /// (ptrace, dlopen) and detached again, every patched byte restored, at Ctrl-C, after
    /// --duration, or when the process ends.
    #[arg(long, short = 'p', value_name = "PID", conflicts_with = "command")]
    pid: Option<i32>,
    /// With -p: detach after SECONDS.
    #[arg(long, value_name = "SECONDS", requires = "pid")]
    duration: Option<f64>,
    /// Set global variable NAME (`const volatile` configuration in `.rodata`, or `.data`/`.bss`)
    /// to VALUE before the object loads, VALUE written as the variable's C type (repeatable).
    #[arg(long = "global", value_name = "NAME=VALUE")]
    globals: Vec<String>,
    /// Write the report to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The command to run traced, after `--`.
    #[arg(last = true, required_unless_present = "pid", value_name = "CMD")]
    command: Vec<OsString>,
}

const TRACE_HELP: &str = "\
Runs CMD with moat's agent (libmoat_agent.so) preloaded. Before CMD's main, the agent loads the
object, verifies and JIT-compiles its programs, each object in its own protection domain (sfi, or
mpk where the CPU has protection keys), and attaches them by section name, as libbpf names them:

  uprobe/PATH:SYMBOL[+OFFSET]   function entry (PATH: a path, or a file name such as libc.so.6)
  uretprobe/PATH:SYMBOL         function return (the result in PT_REGS_RC)

The context is the kernel's x86-64 struct pt_regs, so BPF_KPROBE/BPF_KRETPROBE and PT_REGS_PARM*
work unchanged. Probes are made by rewriting the function's first instructions into a jump to a
trampoline (no trap, no system call per hit); where that is unsafe (a function shorter than 5
bytes, a branch into the patched bytes) an int3 trap is used. The report says which each got.
Helpers: map operations, ring buffers, perf event arrays (bpf_perf_event_output),
bpf_get_current_pid_tgid, bpf_get_current_comm, bpf_ktime_get_ns, bpf_probe_read_user(_str) (never
faults the process), bpf_get_func_ip, bpf_get_attach_cookie, bpf_get_stackid and bpf_get_stack
(the thread's user stack by frame pointers, as the kernel walks it; see moat memleak).

Printed: what each program attached to and how; ring-buffer and perf event records as they arrive
(hex); the maps at exit (and every --interval); each probe's runs, failed runs and skipped hits.
Arrays, hash maps (per-CPU, LRU), ring buffers and perf event arrays live in shared memory that
moat trace maps too (files under /dev/shm/moat-trace-PID-N, one per map allocation, sized by
max_entries and filled as the map fills; removed at the end): it reads records and map contents
there directly, while CMD runs and after it exits, crashes or is killed (kill -9 included: the last
dump is read from the shared maps). Probes still access their maps as plain memory. A SIGTERM to
moat trace is passed on to CMD (and Ctrl-C, if CMD is still running a second later): the trace ends
as when CMD exits, with the last dump, and the shared memory is removed.
Everything that goes wrong inside the traced process (a refused program, a missing symbol, a
failing probe) is reported and the command keeps its own behaviour: moat trace exits with CMD's
exit status and passes CMD's output through unchanged. CMD's children are not traced.

System call tracepoints (tracepoint/syscalls/sys_enter_NAME, sys_exit_NAME, raw_tracepoint/sys_enter,
sys_exit) get the kernel's tracepoint records; they are made by rewriting the `mov eax, NR; syscall`
sites of the C library and the program (system calls made elsewhere are not seen).

With -p PID the agent is injected into a running process (ptrace, dlopen in its main thread) and
detached at Ctrl-C, after --duration or when the process ends; detaching restores every patched
byte. Needs ptrace permission over the process (root, or the same user with ptrace_scope 0).

Examples:
  moat trace examples/c/malloc_free.o -- python3 -c 'print(1)'
  moat trace examples/c/openat.o -- ls /
  moat trace examples/c/uprobe_count.o -p 1234 --duration 5
  moat trace --time-budget 50us examples/c/slow_probe.o -- moat-trace-target 100";

/// Runs `moat trace`; exits with the traced command's status.
pub fn run(args: TraceArgs) -> ExitCode {
    let json = args.json || matches!(args.format, TraceFormat::Json);
    let options = Options {
        object: args.object,
        programs: args.programs,
        format: match (args.json, args.format) {
            (true, _) | (false, TraceFormat::Json) => Format::Json,
            (false, TraceFormat::Text) => Format::Text,
        },
        interval: args
            .interval
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64),
        trap: args.trap,
        no_verify: args.no_verify,
        time_budget: args.time_budget,
        agent: None,
        capture: false,
        dump_maps: None,
        globals: match parse_globals(&args.globals) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    if !options.object.is_file() {
        return crate::fail(
            json,
            format!("{}: no such object", options.object.display()),
        );
    }
    let mut out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                return crate::fail(json, format!("{}: {e}", path.display()));
            }
        },
        None => Box::new(std::io::stdout()),
    };
    if let Some(pid) = args.pid {
        moat_agent::inject::block_interrupts();
        let start = std::time::Instant::now();
        let duration = args
            .duration
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let mut until =
            || moat_agent::inject::interrupted() || duration.is_some_and(|d| start.elapsed() >= d);
        return match attach_running(&options, pid, &mut out, &mut until) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => crate::fail(json, e),
        };
    }
    match launch(&options, &args.command, &mut out) {
        Ok((status, _)) => exit_code(status),
        Err(e) => crate::fail(json, e),
    }
}

/// The traced command's status as ours: its exit code, or 128 + the signal that killed it.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `--global NAME=VALUE` arguments as pairs; an argument without `=` is an error naming it.
pub(crate) fn parse_globals(args: &[String]) -> Result<Vec<(String, String)>, String> {
    args.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(n, v)| (n.trim().to_string(), v.to_string()))
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| format!("--global {a}: expected NAME=VALUE"))
        })
        .collect()
}
