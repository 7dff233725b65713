//! The `moat` command line: run, assemble and disassemble eBPF programs.

#![forbid(unsafe_code)]

mod input;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use input::Input;
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
    /// FILE is a conformance test file (`.data`, whose `-- mem` is the input), an assembly file, or raw
    /// bytecode (`.bin`). At entry r1 holds the input memory's address and r2 its length.
    Run(RunArgs),
    /// Assemble a text file into bytecode.
    Asm {
        /// Assembly source (or a `.data` file, whose program is taken).
        file: PathBuf,
        /// Where to write the bytecode.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Disassemble bytecode (or the program of a `.data` or assembly file).
    Disasm {
        /// The file to disassemble.
        file: PathBuf,
        /// Prefix each instruction with its slot index.
        #[arg(long)]
        pc: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    /// The safe interpreter.
    Interp,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The program file.
    file: PathBuf,
    /// Input memory as hex bytes (spaces allowed), e.g. `"aa bb 01"`.
    #[arg(long, conflicts_with = "mem_file")]
    mem: Option<String>,
    /// Input memory read from a file.
    #[arg(long)]
    mem_file: Option<PathBuf>,
    /// Execution engine.
    #[arg(long, value_enum, default_value = "interp")]
    engine: EngineArg,
    /// Run N times on the same input and print the average `ns/run` before r0.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Instruction budget of one run (stops runaway loops).
    #[arg(long)]
    budget: Option<u64>,
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
    let mut rt = moat::Runtime::new();
    if let Some(budget) = args.budget {
        rt.set_budget(budget);
    }
    let EngineArg::Interp = args.engine;
    let prog = input.load(&rt)?;
    let name = input.path();
    if args.repeat > 1 {
        let start = Instant::now();
        for _ in 0..args.repeat {
            prog.run(&mut mem).with_context(|| name.to_string())?;
        }
        let per_run = start.elapsed().as_nanos() as f64 / args.repeat as f64;
        println!("{per_run:.1} ns/run");
    }
    let r0 = prog.run(&mut mem).with_context(|| name.to_string())?;
    println!("{r0:#x}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Asm { file, output } => Input::read(&file).and_then(|input| {
            let bytes = input.bytecode().with_context(|| input.path().to_string())?;
            std::fs::write(&output, &bytes)
                .with_context(|| format!("cannot write {}", output.display()))
        }),
        Command::Disasm { file, pc } => Input::read(&file).and_then(|input| {
            let bytes = input.bytecode().with_context(|| input.path().to_string())?;
            let insns = moat_isa::decode(&bytes).with_context(|| input.path().to_string())?;
            print!("{}", moat_isa::disasm(&insns, pc));
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
