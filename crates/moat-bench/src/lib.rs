//! Shared programs and engine runners for moat's interpreter benchmarks (`benches/interp.rs`, a
//! criterion bench, and `src/bin/bench_table.rs`, which prints a markdown table for BENCHMARKS.md).
//!
//! # Programs
//!
//! Written in moat's assembly syntax under `programs/` and assembled once, so every engine runs the
//! very same bytecode:
//!
//! * `loop_sum` (`programs/loop_sum.asm`): `r0 = 0 + 1 + ... + 9999` in a three-instruction register
//!   loop; no memory. Returns 49 995 000.
//! * `prime` (`programs/prime.asm`): trial division of the prime 10 000 019 by every `d` with
//!   `d * d <= n` (3 161 divisors, a 64-bit `mod` each); no memory. Returns 1.
//! * `checksum` (`programs/checksum.asm`): the RFC 1071 internet checksum of the 1500-byte [`packet`]
//!   at `r1`, as 750 little-endian half-word loads. The length is baked in (rbpf does not pass it in
//!   `r2`). Returns [`internet_checksum`] of the packet.
//!
//! # Engines
//!
//! * [`MoatEngine`]: `moat::Runtime::load_bytecode` + `LoadedProgram::run` (`r1` = input address,
//!   `r2` = its length).
//! * [`RbpfEngine`]: rbpf 0.4's interpreter through `EbpfVmMbuff::execute_program(mem, &[])`, which sets
//!   `r1` = the address of `mem` (and leaves `r2` zero). It takes the memory by shared reference, so no
//!   `unsafe` is needed.
//! * [`KernelEngine`]: the Linux kernel's JIT. The program is loaded as XDP behind a short prologue that
//!   turns the XDP context into the convention above (`r1` = packet data, `r2` = length) after a
//!   `data + LEN <= data_end` check the verifier needs to accept the packet loads, and runs with
//!   `BPF_PROG_TEST_RUN` and a repeat count; the kernel reports its own average time per run.
//!
//! Every engine's result is checked against [`BenchProgram::expected`] before anything is timed.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod timing;

/// The workspace's root directory.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `moat` command built beside the running benchmark binary (with its agent library), for
/// benchmarks that run it: `cargo build --release -p moat-cli -p moat-agent` first.
pub fn moat_command() -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let moat = exe.with_file_name("moat");
    let agent = exe.with_file_name("libmoat_agent.so");
    if moat.is_file() && agent.is_file() {
        Ok(moat)
    } else {
        Err(format!(
            "{} or {} missing: cargo build --release -p moat-cli -p moat-agent",
            moat.display(),
            agent.display()
        ))
    }
}

use moat_kernel::{KernelError, LoadOptions, ProgType, TestRunResult};

/// Length of the checksum program's packet (fixed in `programs/checksum.asm`).
pub const PACKET_LEN: usize = 1500;

/// The largest budget [`executed_insns`] tries (far above what these programs need).
const MAX_BUDGET: u64 = 100_000_000;

/// XDP test runs need a packet of at least an Ethernet header; programs without input get this many
/// zero bytes.
const KERNEL_MIN_PACKET: usize = 64;

/// One benchmark program with its input and the result every engine must return.
#[derive(Debug, Clone)]
pub struct BenchProgram {
    /// Short name, used as the criterion group and table row.
    pub name: &'static str,
    /// The assembly source.
    pub source: &'static str,
    /// The assembled bytecode, identical for every engine.
    pub bytecode: Vec<u8>,
    /// The input memory (`r1`); empty when the program touches none.
    pub input: Vec<u8>,
    /// The expected `r0`.
    pub expected: u64,
}

/// The benchmark programs, assembled. Panics if a source does not assemble (they are part of this
/// crate, so that is a bug here).
pub fn programs() -> Vec<BenchProgram> {
    let program = |name, source: &'static str, input: Vec<u8>, expected| BenchProgram {
        name,
        source,
        bytecode: moat_isa::assemble_bytes(source)
            .unwrap_or_else(|e| panic!("programs/{name}.asm: {e}")),
        input,
        expected,
    };
    let packet = packet();
    let checksum = internet_checksum(&packet);
    vec![
        program(
            "loop_sum",
            include_str!("../programs/loop_sum.asm"),
            Vec::new(),
            (0..10_000u64).sum(),
        ),
        program(
            "prime",
            include_str!("../programs/prime.asm"),
            Vec::new(),
            u64::from(is_prime(10_000_019)),
        ),
        program(
            "checksum",
            include_str!("../programs/checksum.asm"),
            packet,
            checksum,
        ),
    ]
}

/// The JIT benchmark's programs (issue 6): [`programs`] plus `fnv1a`, `memcpy` and `strcmp`
/// (`programs/*.asm`), all on 1500-byte inputs where they read memory.
pub fn jit_programs() -> Vec<BenchProgram> {
    let program = |name, source: &'static str, input: Vec<u8>, expected| BenchProgram {
        name,
        source,
        bytecode: moat_isa::assemble_bytes(source)
            .unwrap_or_else(|e| panic!("programs/{name}.asm: {e}")),
        input,
        expected,
    };
    let packet = packet();
    let memcpy_result = u64::from(u32::from_le_bytes([
        packet[740],
        packet[741],
        packet[742],
        packet[743],
    ]));
    let mut all = programs();
    all.push(program(
        "fnv1a",
        include_str!("../programs/fnv1a.asm"),
        packet.clone(),
        fnv1a_folded(&packet),
    ));
    all.push(program(
        "memcpy",
        include_str!("../programs/memcpy.asm"),
        packet,
        memcpy_result,
    ));
    all.push(program(
        "strcmp",
        include_str!("../programs/strcmp.asm"),
        strings(),
        0,
    ));
    all
}

/// FNV-1a (64-bit) of `data`, folded to 32 bits (the reference for `programs/fnv1a.asm`).
pub fn fnv1a_folded(data: &[u8]) -> u64 {
    let h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h ^ (h >> 32)) & 0xffff_ffff
}

/// The input of `programs/strcmp.asm`: two equal NUL-terminated 700-character strings at 0 and 750.
pub fn strings() -> Vec<u8> {
    let mut buf = vec![0u8; PACKET_LEN];
    for i in 0..700 {
        let c = b'a' + (i % 26) as u8;
        buf[i] = c;
        buf[750 + i] = c;
    }
    buf
}

/// A deterministic 1500-byte pseudo-random packet (xorshift32 bytes).
pub fn packet() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..PACKET_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// The reference for `programs/checksum.asm`: the complemented one's-complement sum of the
/// little-endian 16-bit words of `data` (an odd trailing byte is ignored).
pub fn internet_checksum(data: &[u8]) -> u64 {
    let mut sum: u64 = data
        .chunks_exact(2)
        .map(|w| u64::from(u16::from_le_bytes([w[0], w[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum ^ 0xffff
}

/// Whether `n` is prime, by trial division (the reference for `programs/prime.asm`).
pub fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// How many instructions moat executes for one run of `program`: the smallest instruction budget
/// under which the run succeeds (found by bisection).
pub fn executed_insns(program: &BenchProgram) -> Result<u64, moat::Error> {
    let succeeds = |budget: u64| -> Result<bool, moat::Error> {
        let mut rt = moat::Runtime::new();
        rt.set_budget(budget);
        let prog = rt.load_bytecode(&program.bytecode)?;
        Ok(prog.run(&mut program.input.clone()).is_ok())
    };
    let (mut lo, mut hi) = (0u64, MAX_BUDGET);
    if !succeeds(hi)? {
        return Ok(hi);
    }
    // Invariant: `lo` fails (or is 0), `hi` succeeds.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if succeeds(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// moat's interpreter, with the program loaded and its own copy of the input.
#[derive(Debug)]
pub struct MoatEngine {
    prog: moat::LoadedProgram,
    input: Vec<u8>,
}

impl MoatEngine {
    /// Loads `program` into a default runtime, for the interpreter.
    pub fn new(program: &BenchProgram) -> Result<MoatEngine, moat::Error> {
        MoatEngine::with_engine(program, moat::Engine::Interp)
    }

    /// Loads `program` into a default runtime, for `engine`.
    pub fn with_engine(
        program: &BenchProgram,
        engine: moat::Engine,
    ) -> Result<MoatEngine, moat::Error> {
        let mut rt = moat::Runtime::new();
        rt.set_engine(engine);
        // The engines alone: isolation's per-run cost is measured by `bench_isolation`.
        rt.set_isolation(moat::Isolation::None);
        // Verified for its input, as moat runs programs: the JIT then drops the checks of accesses
        // the verifier proved in bounds.
        rt.set_buffer_size(program.input.len() as u64);
        Ok(MoatEngine {
            prog: rt.load_bytecode(&program.bytecode)?,
            input: program.input.clone(),
        })
    }

    /// One run: `r0`.
    pub fn run(&mut self) -> Result<u64, moat::Error> {
        self.prog.run(&mut self.input)
    }
}

/// rbpf's interpreter (`EbpfVmMbuff` with an empty metadata buffer, so `r1` = the input's address).
pub struct RbpfEngine<'a> {
    vm: rbpf::EbpfVmMbuff<'a>,
    input: &'a [u8],
}

impl std::fmt::Debug for RbpfEngine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbpfEngine")
            .field("input", &self.input.len())
            .finish()
    }
}

impl<'a> RbpfEngine<'a> {
    /// Loads `program` (rbpf's own verifier checks it).
    pub fn new(program: &'a BenchProgram) -> std::io::Result<RbpfEngine<'a>> {
        Ok(RbpfEngine {
            vm: rbpf::EbpfVmMbuff::new(Some(&program.bytecode))?,
            input: &program.input,
        })
    }

    /// One run: `r0`.
    pub fn run(&self) -> std::io::Result<u64> {
        self.vm.execute_program(self.input, &[])
    }
}

/// The prologue that turns an XDP context into `r1` = packet data, `r2` = `len`, after proving to the
/// verifier that `len` bytes of packet are there (else the program returns `0xffffffff`).
fn xdp_prologue(len: usize) -> String {
    format!(
        "
        ldxw %r2, [%r1]
        ldxw %r3, [%r1+4]
        mov %r1, %r2
        mov %r4, %r2
        add %r4, {len}
        jle %r4, %r3, ok
        mov %r0, -1
        exit
    ok:
        mov %r2, {len}"
    )
}

/// The bytecode [`KernelEngine`] loads: the XDP prologue followed by the program.
pub fn kernel_bytecode(program: &BenchProgram) -> Vec<u8> {
    let mut bytes = moat_isa::assemble_bytes(&xdp_prologue(program.input.len()))
        .expect("the prologue assembles");
    bytes.extend_from_slice(&program.bytecode);
    bytes
}

/// The Linux kernel (verifier + JIT), running the program as XDP with `BPF_PROG_TEST_RUN`.
#[derive(Debug)]
pub struct KernelEngine {
    prog: moat_kernel::Program,
    packet: Vec<u8>,
}

impl KernelEngine {
    /// Loads `program` behind the XDP prologue. Fails when `bpf()` is unavailable or the verifier
    /// refuses the program.
    pub fn new(program: &BenchProgram) -> Result<KernelEngine, KernelError> {
        let prog =
            moat_kernel::load_program(&kernel_bytecode(program), &LoadOptions::new(ProgType::Xdp))?;
        let mut packet = program.input.clone();
        if packet.len() < KERNEL_MIN_PACKET {
            packet.resize(KERNEL_MIN_PACKET, 0);
        }
        Ok(KernelEngine { prog, packet })
    }

    /// Runs the program `repeat` times in the kernel; `retval` is the low 32 bits of `r0` and
    /// `duration_ns` the kernel's average time per run.
    pub fn run(&self, repeat: u32) -> Result<TestRunResult, KernelError> {
        self.prog.test_run(&self.packet, None, repeat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert!(is_prime(10_000_019));
        assert!(!is_prime(10_000_017));
        assert_eq!(internet_checksum(&[0x01, 0x00, 0xfe, 0xff]), 0);
        assert_eq!(internet_checksum(&[0xff, 0xff, 0x02, 0x00]), 0xfffd);
    }

    #[test]
    fn interpreters_return_the_expected_results() {
        for p in programs() {
            let moat = MoatEngine::new(&p).expect("moat loads").run();
            assert_eq!(moat.expect("moat runs"), p.expected, "{}: moat", p.name);
            let rbpf = RbpfEngine::new(&p).expect("rbpf loads").run();
            assert_eq!(rbpf.expect("rbpf runs"), p.expected, "{}: rbpf", p.name);
        }
    }

    #[test]
    fn kernel_returns_the_expected_results() {
        if let Err(reason) = moat_kernel::available() {
            println!("skipped: {reason}");
            return;
        }
        for p in programs() {
            let run = KernelEngine::new(&p)
                .unwrap_or_else(|e| panic!("{}: kernel load: {e}", p.name))
                .run(1)
                .expect("test run");
            assert_eq!(u64::from(run.retval), p.expected, "{}: kernel", p.name);
        }
    }

    #[test]
    fn instruction_counts() {
        let counts: Vec<u64> = programs()
            .iter()
            .map(|p| executed_insns(p).expect("loads"))
            .collect();
        // loop_sum: 2 + 3 * 10 000 + 1.
        assert_eq!(counts[0], 30_003);
    }
}
