//! The `moat` command line: run, inspect, assemble and disassemble eBPF programs.

#![forbid(unsafe_code)]

/// `println!` that ends the process quietly when stdout is closed (`moat disasm … | head`) instead
/// of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(141);
        }
    }};
}

/// `print!` with the same behaviour as [`out!`].
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if write!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(141);
        }
    }};
}

mod cxlsim;
mod cxlsim_exact;
mod input;
mod jitdump;
mod load;
mod load_control;
mod memleak;
mod memleak_kernel;
mod omb;
mod pool;
mod report;
mod sched;
mod sched_plot;
mod setup;
mod symbolize;
mod trace;
mod verify;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use input::Input;
use moat::{Engine, ObjectOptions, ProgType, Runtime, Verification};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "moat", version, about = "moat: a userspace eBPF runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program and print r0 (as `0x…`) on the last line.
    ///
    /// FILE is an ELF object (`clang -target bpf`), a conformance test file (`.data`, whose `-- mem`
    /// is the input), an assembly file, or raw bytecode (`.bin`). With the generic buffer type, r1
    /// holds the input's address and r2 its length; packet types (xdp, tc, socket) get the kernel's
    /// context over the input as the packet.
    Run(RunArgs),
    /// Verify a program (or every program of an object): print OK with statistics, or the rejection
    /// with its instruction, source line and register state. While an object's programs are
    /// verified, a terminal's standard error names the one being verified (never with --json or
    /// when standard error is not a terminal).
    Verify {
        /// The program file (object, `.data`, assembly or bytecode).
        file: PathBuf,
        /// For an object: only this program (function or section name).
        #[arg(long)]
        program: Option<String>,
        /// Program type (buffer, xdp, tc, socket, cgroup_skb, kprobe, tracepoint).
        #[arg(long = "type", value_name = "TYPE")]
        prog_type: Option<String>,
        /// Apply the rules of an unprivileged loader.
        #[arg(long)]
        unprivileged: bool,
        /// Print every instruction processed as the kernel's level-2 verifier log does (`12: (2d)
        /// if r5 > r3 goto pc+5 ; R3=pkt_end() R5=pkt(off=1,r=1)`: opcode, the kernel's syntax,
        /// the state it leaves), `from X to Y:` where a queued branch is taken up and `N: safe`
        /// where a path is pruned, so the two logs can be compared line by line.
        #[arg(long)]
        log: bool,
        /// Input memory size assumed for buffer programs (default: a `.data` file's `-- mem`, else 0).
        #[arg(long)]
        mem_size: Option<u64>,
        /// Print one JSON object instead of lines: `file`, `ok`, and `programs`, each with
        /// `program`, `status` (`ok`, `rejected`, `not_loaded`, `not_verified`) and either the
        /// statistics (`insns`, `processed`, `states`, `peak_states`, `pruned`, `us`) or `pc` and
        /// `message`. Exit code 1 unless every program is ok.
        #[arg(long)]
        json: bool,
        /// Run the verifier only, as the kernel would, without creating maps or checking that moat
        /// can run every helper and map type (by default `verify` loads the object as `run` does).
        #[arg(long)]
        verifier_only: bool,
        /// Map, global and program-array setup before the object loads.
        #[command(flatten)]
        setup: setup::Setup,
    },
    /// Persistent map pools: create, inspect, verify, and read or write their maps.
    Pool {
        /// What to do.
        #[command(subcommand)]
        command: pool::PoolCommand,
    },
    /// OSU-style message-passing benchmarks: moat's shared-memory transport side by side with TCP,
    /// an emulated CXL device and Open MPI.
    Omb {
        /// Which benchmark.
        #[command(subcommand)]
        command: omb::OmbCommand,
    },
    /// The user-level scheduler's benchmark (issue 17): latency percentiles against offered load
    /// for FCFS, tokio and moat-sched's quanta and mechanisms, as tables and PNG plots.
    SchedBench(sched::SchedBenchArgs),
    /// Attach an object's uprobes and uretprobes to a command and print what they report
    /// (`moat trace OBJ.o -- CMD ARGS`; see --help).
    Trace(trace::TraceArgs),
    /// Run an unmodified libbpf tool with its bpf() calls served by moat
    /// (`moat load -- TOOL ARGS`; see --help).
    Load(load::LoadArgs),
    /// Outstanding allocations per call stack of a command or process, like BCC's memleak
    /// (`moat memleak -- CMD ARGS`, `moat memleak -p PID`; see --help).
    Memleak(memleak::MemleakArgs),
    /// Run a command (or attach to a process) as if the memory a placement policy chooses sat
    /// behind CXL devices (`moat cxlsim -- CMD ARGS`; see --help).
    Cxlsim(cxlsim::CxlsimArgs),
    /// List an object's programs, maps and sections.
    Inspect {
        /// The ELF object.
        file: PathBuf,
        /// Print one JSON object instead of text: `file`, `license` (string or null),
        /// `kernel_version` (number or null), `btf` and `btf_ext` (booleans); `programs`, each with
        /// `name`, `section`, `type` (the `--type` name libbpf's section names give, or null),
        /// `insns` (8-byte slots, as `verify` counts them), `tag` (hex), `maps` (names of the maps
        /// it uses), `core_relocations`, `unresolved` (`symbol`, `insn`, `call`); `maps`, each with
        /// `name`, `type` (e.g. `hash`, or null if unknown), `type_id` (`BPF_MAP_TYPE_*`),
        /// `key_size`, `value_size`, `max_entries`, `flags`, `kind` (`btf`, `legacy`, `data`,
        /// `rodata`, `bss`), `pinned_by_name`; `sections`, each with `index`, `name`, `size` and
        /// `kind` (`program`, `text`, `legacy_maps`, `btf_maps`, `global_data`, `license`,
        /// `version`, `btf`, `btf_ext`, `relocations`, `symbols`, `strings`, `debug`, `other`).
        /// On failure `{"error": "..."}` and exit code 1.
        #[arg(long)]
        json: bool,
    },
    /// Assemble a text file into bytecode.
    Asm {
        /// Assembly source (or a `.data` file, whose program is taken).
        file: PathBuf,
        /// Where to write the bytecode.
        #[arg(short, long)]
        output: PathBuf,
        /// Print one JSON object: `output` (the path written), `insns` (8-byte slots), `bytes`.
        /// On failure `{"error": "..."}` and exit code 1.
        #[arg(long)]
        json: bool,
    },
    /// Show the x86-64 code `moat run` executes for a program: loaded and verified as `run` does
    /// (`--no-verify` for the unverified code), each eBPF instruction's native code under a
    /// `; pc N: <instruction>` line, branch targets as `pc N` labels.
    JitDump(jitdump::JitDumpArgs),
    /// Disassemble bytecode, or the program(s) of an object, `.data` or assembly file.
    Disasm {
        /// The file to disassemble.
        file: PathBuf,
        /// Prefix each instruction with its slot index.
        #[arg(long)]
        pc: bool,
        /// For an object: only this program.
        #[arg(long)]
        program: Option<String>,
        /// Print one JSON object instead of text: `file`, and `programs`, each with `name` and
        /// `section` (null for bytecode without an object) and `insns`, each with `pc` (slot
        /// index), `text` (as the text output prints it) and, where the object's BTF line info
        /// covers it, `source`: `file`, `line`, `column`, `text` (the C line). On failure
        /// `{"error": "..."}` and exit code 1.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    /// The JIT compiler to x86-64 (where supported; the interpreter elsewhere).
    Jit,
    /// The safe interpreter.
    Interp,
}

impl EngineArg {
    fn engine(self) -> Engine {
        match self {
            EngineArg::Jit if Engine::Jit.is_supported() => Engine::Jit,
            EngineArg::Jit | EngineArg::Interp => Engine::Interp,
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// The program file.
    file: PathBuf,
    /// For an object: the program to run (function name, or section name where it has none).
    #[arg(long)]
    program: Option<String>,
    /// Program type (buffer, xdp, tc, socket, cgroup_skb, kprobe, tracepoint); by default from the
    /// object's section name, else buffer.
    #[arg(long = "type", value_name = "TYPE")]
    prog_type: Option<String>,
    /// Input memory as hex bytes (spaces allowed), e.g. `"aa bb 01"`.
    #[arg(long, conflicts_with = "mem_file")]
    mem: Option<String>,
    /// Input memory read from a file.
    #[arg(long)]
    mem_file: Option<PathBuf>,
    /// Execution engine.
    #[arg(long, value_enum, default_value = "jit")]
    engine: EngineArg,
    /// Run N times on the same input (maps keep their state) and print the average `ns/run`, then
    /// the last run's trace lines and r0.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Instruction budget of one run (stops runaway loops).
    #[arg(long)]
    budget: Option<u64>,
    /// Time budget of one JIT run, e.g. `50us`, `2ms` (units ns, us, ms, s): a run past it is
    /// stopped at its next loop back-edge or call. Replaces the instruction budget under the JIT.
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    time_budget: Option<std::time::Duration>,
    /// After the run, print the contents of every map the program uses.
    #[arg(long)]
    dump_maps: bool,
    /// Print one JSON object instead of text: `file`, `program`, `runs`, `ns_per_run` (with
    /// --repeat), `trace` (the last run's lines), `maps` (with --dump-maps: `name`, `type`,
    /// `pooled`, and `entries` of `key`/`value` in hex and `key_c`/`value_c` decoded through BTF
    /// where the object has it; per-CPU maps give `values` instead of `value`, one
    /// `cpu`/`value`/`value_c` per CPU; ring buffers `records`, queues and stacks `values`, in
    /// hex), `r0` (a number); on failure `error` and exit code 1.
    #[arg(long)]
    json: bool,
    /// Run without verifying first (the engines' run-time checks still apply).
    #[arg(long)]
    no_verify: bool,
    /// Do not raise loops: the JIT compiles every loop instruction by instruction instead of
    /// running loops it recognises (copy, fill, search, compare, reductions) as one native
    /// operation. Results are the same either way.
    #[arg(long)]
    no_raise: bool,
    /// Verify with the rules of an unprivileged loader.
    #[arg(long)]
    unprivileged: bool,
    /// Isolation of the program's domain: none, sfi or mpk (default: mpk where protection keys
    /// exist, else sfi).
    #[arg(long, value_parser = parse_isolation)]
    isolation: Option<moat::Isolation>,
    /// Persistent pool file (created with the defaults of `moat pool create` if missing): the
    /// object's hash maps pinned by name (`LIBBPF_PIN_BY_NAME`) live in it, shared with every process
    /// using the same pool.
    #[arg(long, value_name = "PATH")]
    pool: Option<PathBuf>,
    /// With --pool: also place this map of the object in the pool (repeatable).
    #[arg(long = "pool-map", value_name = "NAME", requires = "pool")]
    pool_maps: Vec<String>,
    /// Map, global and program-array setup before the object loads.
    #[command(flatten)]
    setup: setup::Setup,
}

fn parse_isolation(name: &str) -> Result<moat::Isolation, moat::UnknownIsolation> {
    moat::Isolation::parse(name)
}

/// A duration with a unit: `500ns`, `50us` (or `50µs`), `2ms`, `1s`; fractions allowed (`1.5ms`).
fn parse_duration(text: &str) -> Result<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        other => bail!("unknown time unit `{other}` (use ns, us, ms or s)"),
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("`{number}` is not a number"))?;
    std::time::Duration::try_from_secs_f64(value * scale)
        .with_context(|| format!("`{text}` is not a valid duration"))
}

/// What `run` and `jit-dump` set alike: verification, isolation, the time budget and loop raising,
/// which decide the code the JIT generates.
fn configure(
    rt: &mut Runtime,
    no_verify: bool,
    unprivileged: bool,
    isolation: Option<moat::Isolation>,
    time_budget: Option<std::time::Duration>,
    no_raise: bool,
) -> Result<()> {
    rt.set_raise(!no_raise);
    rt.set_time_budget(time_budget)
        .context("cannot start the time-budget watchdog")?;
    rt.set_verification(match (no_verify, unprivileged) {
        (true, _) => Verification::Off,
        (false, true) => Verification::Unprivileged,
        (false, false) => Verification::Privileged,
    });
    rt.set_isolation(isolation.unwrap_or_else(moat::Isolation::detect));
    Ok(())
}

fn parse_hex_bytes(text: &str) -> Result<Vec<u8>> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = digits.strip_prefix("0x").unwrap_or(&digits);
    if !digits.len().is_multiple_of(2) {
        bail!("--mem: odd number of hex digits ({})", digits.len());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            let pair = digits.get(i..i + 2).unwrap_or("");
            u8::from_str_radix(pair, 16)
                .with_context(|| format!("--mem: invalid hex byte `{pair}` at digit {i}"))
        })
        .collect()
}

fn run(args: RunArgs) -> Result<()> {
    let input = Input::read(&args.file)?;
    let mut mem = match (&args.mem, &args.mem_file) {
        (Some(hex), _) => parse_hex_bytes(hex)?,
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        (None, None) => input.default_mem(),
    };
    let prog_type = args.prog_type.as_deref().map(ProgType::parse).transpose()?;
    let mut rt = Runtime::new();
    if let Some(budget) = args.budget {
        rt.set_budget(budget);
    }
    rt.set_buffer_size(mem.len() as u64);
    rt.set_engine(args.engine.engine());
    configure(
        &mut rt,
        args.no_verify,
        args.unprivileged,
        args.isolation,
        args.time_budget,
        args.no_raise,
    )?;
    if let Some(path) = &args.pool {
        pool::open_for_run(&mut rt, path, args.pool_maps.clone())?;
    }
    let loaded = input.load(
        &rt,
        ObjectOptions { prog_type },
        args.program.as_deref(),
        &args.setup,
    )?;
    let name = input.path();
    let prog = loaded.program().with_context(|| name.to_string())?;
    // Exactly `repeat` runs; the last one's trace lines and result are printed.
    let start = Instant::now();
    for _ in 1..args.repeat {
        prog.run(&mut mem).with_context(|| name.to_string())?;
    }
    rt.trace_log().drain();
    let last = Instant::now();
    let result = prog.run(&mut mem).with_context(|| name.to_string());
    let total = (last - start) + last.elapsed();
    let per_run = total.as_nanos() as f64 / args.repeat as f64;
    let trace = rt.trace_log().drain();
    if args.json {
        let mut v = serde_json::json!({
            "file": name,
            "program": args.program,
            "runs": args.repeat,
            "trace": trace,
        });
        if args.repeat > 1 {
            v["ns_per_run"] = serde_json::json!(per_run);
        }
        match result {
            Ok(r0) => v["r0"] = serde_json::json!(r0),
            Err(e) => {
                v["error"] = serde_json::json!(error_text(&e));
                out!("{v}");
                std::process::exit(1);
            }
        }
        if args.dump_maps {
            let maps = report::collect_maps(loaded.maps());
            v["maps"] = maps.iter().map(report::MapDump::to_json).collect();
        }
        out!("{v}");
        return Ok(());
    }
    if args.repeat > 1 {
        out!("{per_run:.1} ns/run");
    }
    for line in trace {
        out!("trace: {line}");
    }
    let r0 = result?;
    if args.dump_maps {
        report::collect_maps(loaded.maps())
            .iter()
            .for_each(report::MapDump::print);
    }
    out!("{r0:#x}");
    Ok(())
}

/// An error and its causes on one line, `context: cause: cause`, each text once: a context that the
/// next message starts with (`p.pool` before `p.pool: create: ...`) and a cause whose text the line
/// already ends with (an error that prints its source) are left out.
fn error_text(e: &anyhow::Error) -> String {
    let messages: Vec<String> = e.chain().map(ToString::to_string).collect();
    let mut text = String::new();
    for (i, m) in messages.iter().enumerate() {
        let repeated_by_next = messages
            .get(i + 1)
            .is_some_and(|next| next == m || next.starts_with(&format!("{m}: ")));
        if m.is_empty() || repeated_by_next || text.ends_with(m.as_str()) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(m);
    }
    text
}

/// A command line clap refused (or `--help`/`--version`, which clap reports the same way). With
/// `--json` (or `--format json`) on the command line, a real usage error is printed as
/// `{"error": "...", "usage": true}` on standard output, so that scripts always get JSON; either
/// way the exit code is clap's (2 for a usage error, 0 for help).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json")
        || args
            .windows(2)
            .any(|w| w[0] == "--format" && w[1] == "json")
        || args.iter().any(|a| a == "--format=json");
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if json && !informational {
        let text = e.render().to_string();
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid command line")
            .trim_start_matches("error: ")
            .to_string();
        out!("{}", serde_json::json!({ "error": first, "usage": true }));
        return ExitCode::from(2);
    }
    let _ = e.print();
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

/// A failure of a verb that returns its own exit code: with `--json`, `{"error": "..."}` on
/// standard output, else `error: ...` on standard error; exit code 1.
fn fail(json: bool, message: impl std::fmt::Display) -> ExitCode {
    if json {
        out!("{}", serde_json::json!({ "error": message.to_string() }));
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::FAILURE
}

/// With `--json`, an error is printed as `{"error": "..."}` on standard output (exit code 1), so
/// that scripts always get JSON.
fn json_errors(json: bool, result: Result<()>) -> Result<()> {
    if let (true, Err(e)) = (json, &result) {
        out!("{}", serde_json::json!({ "error": error_text(e) }));
        std::process::exit(1);
    }
    result
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Run(args) => {
            let json = args.json;
            json_errors(json, run(args))
        }
        Command::Verify {
            file,
            program,
            prog_type,
            unprivileged,
            log,
            mem_size,
            verifier_only,
            setup,
            json,
        } => json_errors(
            json,
            Input::read(&file).and_then(|input| {
                let prog_type = prog_type.as_deref().map(ProgType::parse).transpose()?;
                // An object's buffer programs take their input size from BTF unless given.
                let buffer_size = mem_size.or_else(|| {
                    let mem = input.default_mem();
                    (!mem.is_empty() || input.object_bytes().is_none()).then_some(mem.len() as u64)
                });
                verify::verify(
                    &input,
                    &verify::VerifyArgs {
                        program: program.as_deref(),
                        prog_type,
                        unprivileged,
                        log,
                        buffer_size,
                        verifier_only,
                        setup: &setup,
                        json,
                    },
                )
            }),
        ),
        Command::Pool { command } => pool::run(command),
        Command::Omb { command } => omb::run(command),
        Command::SchedBench(args) => sched::run_bench(args),
        Command::Trace(args) => return trace::run(args),
        Command::Load(args) => return load::run(args),
        Command::Memleak(args) => return memleak::run(args),
        Command::Cxlsim(args) => return cxlsim::run(args),
        Command::Inspect { file, json } => json_errors(
            json,
            Input::read(&file).and_then(|input| report::inspect(&input, json)),
        ),
        Command::Asm { file, output, json } => json_errors(
            json,
            Input::read(&file).and_then(|input| {
                let bytes = input.bytecode(None)?;
                std::fs::write(&output, &bytes)
                    .with_context(|| format!("cannot write {}", output.display()))?;
                if json {
                    out!(
                        "{}",
                        serde_json::json!({
                            "output": output.display().to_string(),
                            "insns": bytes.len() / 8,
                            "bytes": bytes.len(),
                        })
                    );
                }
                Ok(())
            }),
        ),
        Command::JitDump(args) => json_errors(args.json(), jitdump::run(&args)),
        Command::Disasm {
            file,
            pc,
            program,
            json,
        } => json_errors(
            json,
            Input::read(&file)
                .and_then(|input| report::disasm(&input, pc, program.as_deref(), json)),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::error_text;
    use anyhow::Context;

    /// An error that prints its source in its own text, as some of the libraries' errors do.
    #[derive(Debug)]
    struct WithSource(std::io::Error);

    impl std::fmt::Display for WithSource {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "p.pool: create: {}", self.0)
        }
    }

    impl std::error::Error for WithSource {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn error_text_says_each_thing_once() {
        let io = || std::io::Error::other("File exists");
        let cases: [(anyhow::Error, &str); 4] = [
            (
                Err::<(), _>(WithSource(io()))
                    .context("p.pool")
                    .unwrap_err(),
                "p.pool: create: File exists",
            ),
            (
                Err::<(), _>(io()).context("cannot read x.o").unwrap_err(),
                "cannot read x.o: File exists",
            ),
            // A context that merely starts like the cause is kept.
            (
                Err::<(), _>(io()).context("File").unwrap_err(),
                "File: File exists",
            ),
            (anyhow::anyhow!("plain"), "plain"),
        ];
        for (e, want) in cases {
            assert_eq!(error_text(&e), want);
        }
    }
}
