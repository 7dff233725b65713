//! `moat jit-dump`: the x86-64 code `moat run` executes for a program, loaded the way `run` loads
//! it (verified unless `--no-verify`, the same program type, isolation, time budget and setup), as
//! text under `; pc N: <eBPF instruction>` lines or as JSON.

use crate::input::Input;
use crate::setup::Setup;
use anyhow::{bail, Context, Result};
use moat::{Engine, JitInsn, JitPart, ObjectOptions, ProgType, Runtime};
use std::path::PathBuf;

/// Options of `moat jit-dump`.
#[derive(clap::Args)]
pub struct JitDumpArgs {
    /// The program file (as for `run`).
    file: PathBuf,
    /// For an object: the program to compile.
    #[arg(long)]
    program: Option<String>,
    /// Program type, as for `run`.
    #[arg(long = "type", value_name = "TYPE")]
    prog_type: Option<String>,
    /// Input size a buffer program is verified for (`run` takes its `--mem` length; default: a
    /// `.data` file's `-- mem`, an object's BTF, else 0).
    #[arg(long)]
    mem_size: Option<u64>,
    /// Compile without verifying, as `run --no-verify` does: the code then counts the instruction
    /// budget and checks every memory access.
    #[arg(long)]
    no_verify: bool,
    /// Verify with the rules of an unprivileged loader, as `run --unprivileged`.
    #[arg(long)]
    unprivileged: bool,
    /// Isolation of the program's domain, as for `run` (default: mpk where protection keys exist,
    /// else sfi).
    #[arg(long, value_parser = crate::parse_isolation)]
    isolation: Option<moat::Isolation>,
    /// Compile as `run --no-raise` does: no loop raised.
    #[arg(long)]
    no_raise: bool,
    /// Compile as `run --time-budget` does (polling points, no instruction budget).
    #[arg(long, value_name = "TIME", value_parser = crate::parse_duration)]
    time_budget: Option<std::time::Duration>,
    /// Print one JSON object instead of text: `file`, `program`, `verified`, `entry` (the entry
    /// trampoline), `insns` (each eBPF instruction's `pc`, `ebpf` text and `native` code) and
    /// `stubs` (cold stubs and shared routines), `loops` (each loop's `header` and `latch` slots,
    /// `raised`: the operation it runs as, or `reason`: why not, and `report` with the synthesis
    /// counts and time); native instructions are `offset` (into the code),
    /// `bytes` (hex) and `text` (Intel syntax, branch targets as `pc N` or `stub(pc N)` labels), and
    /// a stub's first instruction has `stub_for`, the pc whose code branches to it.
    #[arg(long)]
    json: bool,
    /// Map, global and program-array setup before the object loads (as for `run`).
    #[command(flatten)]
    setup: Setup,
}

impl JitDumpArgs {
    /// Whether the output is JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// The code of one eBPF instruction.
struct Insn {
    pc: usize,
    ebpf: String,
    native: Vec<JitInsn>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn native_json(n: &JitInsn) -> serde_json::Value {
    let mut v = serde_json::json!({ "offset": n.offset, "bytes": hex(&n.bytes), "text": n.text });
    if let Some(pc) = n.stub_for {
        v["stub_for"] = serde_json::json!(pc);
    }
    v
}

fn native_line(n: &JitInsn) -> String {
    format!("  {:5x}  {:<24} {}", n.offset, hex(&n.bytes), n.text)
}

/// Runs `moat jit-dump`.
pub fn run(args: &JitDumpArgs) -> Result<()> {
    if !Engine::Jit.is_supported() {
        bail!("the JIT needs x86-64 Linux");
    }
    let input = Input::read(&args.file)?;
    let prog_type = args.prog_type.as_deref().map(ProgType::parse).transpose()?;
    let mut rt = Runtime::new();
    rt.set_engine(Engine::Jit);
    crate::configure(
        &mut rt,
        args.no_verify,
        args.unprivileged,
        args.isolation,
        args.time_budget,
        args.no_raise,
    )?;
    let buffer_size = args.mem_size.or_else(|| {
        let mem = input.default_mem();
        (!mem.is_empty() || input.object_bytes().is_none()).then_some(mem.len() as u64)
    });
    if let Some(size) = buffer_size {
        rt.set_buffer_size(size);
    }
    let loaded = input.load(
        &rt,
        ObjectOptions { prog_type },
        args.program.as_deref(),
        &args.setup,
    )?;
    let prog = loaded.program().with_context(|| input.path().to_string())?;
    let Some(code) = prog.jit_code() else {
        bail!("{}: not compiled by the JIT", input.path());
    };
    let mut entry = Vec::new();
    let mut stubs = Vec::new();
    let mut insns: Vec<Insn> = prog
        .program()
        .insns()
        .iter()
        .map(|(pc, insn)| Insn {
            pc: *pc,
            ebpf: moat_isa::disasm_one(insn),
            native: Vec::new(),
        })
        .collect();
    for n in code {
        match n.part {
            JitPart::Entry => entry.push(n),
            JitPart::Stubs => stubs.push(n),
            JitPart::Insn(slot) => match insns.iter_mut().find(|i| i.pc == slot) {
                Some(insn) => insn.native.push(n),
                None => bail!(
                    "{}: JIT code for slot {slot}, which has no instruction",
                    prog.name()
                ),
            },
        }
    }
    let verified = prog.verified().is_some();
    let loops = prog.jit_loops().unwrap_or_default();
    if args.json {
        let v = serde_json::json!({
            "file": input.path(),
            "program": prog.name(),
            "verified": verified,
            "entry": entry.iter().map(native_json).collect::<Vec<_>>(),
            "insns": insns.iter().map(|i| serde_json::json!({
                "pc": i.pc,
                "ebpf": i.ebpf,
                "native": i.native.iter().map(native_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "stubs": stubs.iter().map(native_json).collect::<Vec<_>>(),
            "loops": loops.iter().map(|l| serde_json::json!({
                "header": l.header,
                "latch": l.latch,
                "raised": l.raised,
                "reason": l.reason,
                "report": l.report,
            })).collect::<Vec<_>>(),
        });
        out!("{v}");
        return Ok(());
    }
    out!(
        "; {} {} ({}; branch targets as `pc N` and `stub(pc N)` labels or `@0xOFF` code offsets)",
        input.path(),
        prog.name(),
        if verified {
            "verified: the code `moat run` executes"
        } else {
            "not verified: every check and the instruction budget kept"
        }
    );
    if loops.is_empty() {
        out!(
            "; loops: none raised ({})",
            if args.no_raise {
                "--no-raise"
            } else if !verified {
                "not verified"
            } else {
                "none found"
            }
        );
    }
    for l in &loops {
        out!("; {}", l.report);
    }
    out!("; entry trampoline");
    entry.iter().for_each(|n| out!("{}", native_line(n)));
    for insn in &insns {
        for l in loops.iter().filter(|l| l.header == insn.pc) {
            if let Some(plan) = &l.raised {
                out!(
                    "; raised loop {}..={}: the call to `{plan}` first",
                    l.header,
                    l.latch
                );
            }
        }
        out!("; pc {}: {}", insn.pc, insn.ebpf);
        insn.native.iter().for_each(|n| out!("{}", native_line(n)));
    }
    out!("; cold stubs and shared routines");
    for n in &stubs {
        if let Some(pc) = n.stub_for {
            out!("; stub(pc {pc}): the slow path of pc {pc}");
        }
        out!("{}", native_line(n));
    }
    Ok(())
}
