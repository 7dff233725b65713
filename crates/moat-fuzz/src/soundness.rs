//! The verifier's oracles: soundness (a program the verifier accepts never makes a memory error) and
//! verified JIT = interpreter (an accepted program gives the same result and memory on the JIT, whose
//! memory checks the verifier's proofs remove or confine, as on the checking interpreter).
//!
//! [`generate`] writes random programs biased to pass the verifier while doing what its proofs are
//! about: pointer arithmetic on the stack, the buffer context and map values (from
//! `bpf_map_lookup_elem`, checked for null), with constants from the extremes of i64 and scalars
//! loaded from the input and bounded by masks, shifts or conditional jumps; spills and fills of
//! numbers and pointers, whole or partial; atomic operations of every kind on every region, whose
//! results are then used as offsets; pointer differences. Each program is verified with a
//! privileged or an unprivileged loader's rules (alternately).
//!
//! - [`soundness`]: every accepted program runs on the checking interpreter ([`Engine::Interp`],
//!   which checks every load and store against the run's memory) on several random inputs and must
//!   never end with an isolation violation ([`moat::is_violation`]: an out-of-bounds access, a bad
//!   atomic, a helper argument refused).
//! - [`jit_matches_interpreter`]: every program accepted under unprivileged rules (which keep
//!   pointer values out of `r0` and memory, where the engines' addresses would differ) also runs on
//!   the JIT, with no isolation (the verifier's proofs remove checks) and with `sfi` (proofs confine
//!   them), on the same inputs and map contents; `r0` (or the failing instruction), the buffer and
//!   the map must be identical.
//!
//! Run against the verifier before `moat-verify: refuse escapes via atomics, offsets, pointer
//! differences`, 2 000 programs give about 20 memory errors (atomics modelled as plain stores,
//! misaligned atomics); each kind found is kept, minimised, as a rule file
//! (`crates/moat-verify/tests/rules/oracle-*.asm`). Keep any new counterexample the same way.
//! Inputs are heap vectors, which the allocator aligns to 16 bytes, as the verifier assumes of
//! buffer contexts.

use crate::diff::Source;
use moat::{
    is_violation, Engine, Error, Isolation, LoadedProgram, Map, MapDef, MapType, ProgType, Runtime,
    Verification,
};
use std::fmt::Write;
use std::sync::Arc;

/// Bytes of the buffer context.
pub const BUFFER: u64 = 64;
/// Value size of the map (an array of `ENTRIES` values; lookups use keys up to `ENTRIES`, one past
/// the end, so null checks matter).
pub const VALUE: u32 = 48;
/// Entries of the map.
pub const ENTRIES: u32 = 4;
/// Inputs each accepted program runs on.
pub const INPUTS: usize = 4;

/// The generator's view of a [`Source`]: numbers, picks and chances.
struct Choices<'s>(&'s mut dyn Source);

impl Choices<'_> {
    fn next(&mut self) -> u64 {
        self.0.word()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n.max(1))
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What a register is known to hold while the program is generated (a guess: the verifier decides).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A number.
    Scalar,
    /// A pointer into the stack, the buffer or a map value, at about this offset.
    Stack(i64),
    Buffer(i64),
    Value(i64),
}

/// The scratch registers generated code uses (`r6` keeps the buffer, `r10` the frame).
const SCRATCH: [u8; 7] = [0, 2, 3, 4, 5, 8, 9];

struct Gen<'r, 's> {
    rng: &'r mut Choices<'s>,
    asm: String,
    regs: [Kind; 11],
    /// The largest variable part added to each pointer register (0: constant offset).
    vars: [i64; 11],
    /// Whether the program is verified with a privileged loader's rules.
    privileged: bool,
    labels: u32,
    /// Whether a map value pointer is live in `r7`.
    value: bool,
}

/// Constants that stress offset arithmetic: small offsets, region sizes, the 2^29 limit, the
/// extremes of i64.
fn constant(rng: &mut Choices<'_>) -> i64 {
    match rng.below(10) {
        0..=4 => rng.below(80) as i64 - 16,
        5 => -(rng.below(520) as i64),
        6 => *rng.pick(&[BUFFER as i64, i64::from(VALUE), 512, -512, 4096, -4096]),
        7 => *rng.pick(&[(1 << 29) - 1, 1 << 29, -(1 << 29), 1 << 31, -(1 << 31)]),
        8 => *rng.pick(&[i64::MAX, i64::MIN, i64::MAX - 7, i64::MIN + 8, -1]),
        _ => rng.next() as i64,
    }
}

impl Gen<'_, '_> {
    fn label(&mut self) -> String {
        self.labels += 1;
        format!("l{}", self.labels)
    }

    fn scratch(&mut self) -> u8 {
        *self.rng.pick(&SCRATCH)
    }

    fn scalar_reg(&mut self) -> Option<u8> {
        let regs: Vec<u8> = SCRATCH
            .iter()
            .copied()
            .filter(|&r| self.regs[r as usize] == Kind::Scalar)
            .collect();
        (!regs.is_empty()).then(|| *self.rng.pick(&regs))
    }

    fn pointer_reg(&mut self) -> u8 {
        let mut regs: Vec<u8> = SCRATCH
            .iter()
            .copied()
            .filter(|&r| self.regs[r as usize] != Kind::Scalar)
            .collect();
        regs.push(10);
        regs.push(6);
        if self.value {
            regs.push(7);
        }
        *self.rng.pick(&regs)
    }

    /// `mov dst, src` of a pointer base (or a copy of another pointer).
    fn take_pointer(&mut self, dst: u8) {
        let src = self.pointer_reg();
        let _ = writeln!(self.asm, "mov %r{dst}, %r{src}");
        self.regs[dst as usize] = self.regs[src as usize];
        self.vars[dst as usize] = self.vars[src as usize];
    }

    /// An offset into the region `kind` points to that is usually in bounds (the pointer's tracked
    /// offset is a guess; far out of range, any small offset will do).
    fn offset(&mut self, kind: Kind, size: i64) -> i64 {
        // Mostly the initialised top of the stack (unprivileged loaders may read no other).
        let bottom = if self.rng.chance(90) { -128 } else { -512 };
        let (lo, hi) = match kind {
            Kind::Stack(o) if o.unsigned_abs() < 1 << 20 => (bottom - o, -o),
            Kind::Buffer(o) if o.unsigned_abs() < 1 << 20 => (-o, BUFFER as i64 - o),
            Kind::Value(o) if o.unsigned_abs() < 1 << 20 => (-o, i64::from(VALUE) - o),
            _ => (-64, 64),
        };
        let span = (hi - lo - size).max(1);
        let off = if self.rng.chance(90) {
            lo + self.rng.below(span as u64) as i64
        } else {
            lo + self.rng.below(span as u64 + 32) as i64 - 16
        };
        let off = if self.rng.chance(70) {
            off & !(size - 1)
        } else {
            off
        };
        off.clamp(-32768, 32767)
    }

    fn size(&mut self) -> (&'static str, i64) {
        *self.rng.pick(&[("b", 1), ("h", 2), ("w", 4), ("dw", 8)])
    }

    /// A scalar loaded from the input, often bounded so it can move a pointer.
    fn load_input(&mut self, dst: u8) {
        let (sz, n) = self.size();
        let off = self.rng.below(BUFFER - n as u64 + 1);
        let _ = writeln!(self.asm, "ldx{sz} %r{dst}, [%r6+{off}]");
        self.regs[dst as usize] = Kind::Scalar;
        self.vars[dst as usize] = 0;
        match self.rng.below(6) {
            0 => {
                let mask = *self.rng.pick(&[7, 15, 31, 56, 63, 255, 0x1ff]);
                let _ = writeln!(self.asm, "and %r{dst}, {mask}");
            }
            1 => {
                let _ = writeln!(self.asm, "rsh %r{dst}, {}", 58 + self.rng.below(6));
            }
            2 => {
                let _ = writeln!(self.asm, "mod %r{dst}, {}", 1 + self.rng.below(64));
            }
            3 => {
                let _ = writeln!(self.asm, "arsh %r{dst}, 63");
            }
            _ => {}
        }
    }

    fn alu(&mut self, dst: u8) {
        let op = *self.rng.pick(&[
            "add", "sub", "mul", "and", "or", "xor", "lsh", "rsh", "arsh", "neg",
        ]);
        if op == "neg" {
            let _ = writeln!(self.asm, "neg %r{dst}");
        } else if matches!(op, "lsh" | "rsh" | "arsh") {
            let _ = writeln!(self.asm, "{op} %r{dst}, {}", self.rng.below(64));
        } else if let (true, Some(src)) = (self.rng.chance(50), self.scalar_reg()) {
            let _ = writeln!(self.asm, "{op} %r{dst}, %r{src}");
        } else {
            let c = constant(self.rng);
            if i32::try_from(c).is_ok() {
                let _ = writeln!(self.asm, "{op} %r{dst}, {c}");
            } else {
                let t = self.scratch_other(dst);
                let _ = writeln!(self.asm, "lddw %r{t}, {c:#x}\n{op} %r{dst}, %r{t}");
                self.regs[t as usize] = Kind::Scalar;
            }
        }
        self.regs[dst as usize] = Kind::Scalar;
    }

    fn scratch_other(&mut self, not: u8) -> u8 {
        loop {
            let r = self.scratch();
            if r != not {
                return r;
            }
        }
    }

    /// Moves a pointer by a constant (usually keeping it inside its region, sometimes one of the
    /// extremes) or by a scalar loaded from the input (usually bounded first).
    fn move_pointer(&mut self, p: u8) {
        let stack = matches!(self.regs[p as usize], Kind::Stack(_));
        let by = if self
            .rng
            .chance(if stack && !self.privileged { 95 } else { 60 })
        {
            let c = if self.rng.chance(80) {
                let target = self.offset(self.regs[p as usize], 8);
                target.clamp(-600, 600)
            } else {
                constant(self.rng)
            };
            if i32::try_from(c).is_ok() {
                let _ = writeln!(self.asm, "add %r{p}, {c}");
            } else {
                let t = self.scratch_other(p);
                let _ = writeln!(self.asm, "lddw %r{t}, {c:#x}\nadd %r{p}, %r{t}");
                self.regs[t as usize] = Kind::Scalar;
            }
            c
        } else {
            let s = self.scratch_other(p);
            self.load_input(s);
            let mask = *self.rng.pick(&[7, 8, 15, 24, 31, 63]);
            if self.rng.chance(85) {
                let _ = writeln!(self.asm, "and %r{s}, {mask}");
            }
            let op = if self.rng.chance(85) { "add" } else { "sub" };
            let _ = writeln!(self.asm, "{op} %r{p}, %r{s}");
            self.vars[p as usize] += mask;
            if op == "sub" {
                // The pointer may now be up to `mask` lower: aim at its lowest value.
                self.vars[p as usize] += mask;
                0
            } else {
                0
            }
        };
        self.regs[p as usize] = match self.regs[p as usize] {
            Kind::Stack(o) => Kind::Stack(o.wrapping_add(by)),
            Kind::Buffer(o) => Kind::Buffer(o.wrapping_add(by)),
            Kind::Value(o) => Kind::Value(o.wrapping_add(by)),
            Kind::Scalar => Kind::Scalar,
        };
    }

    /// A load or store through a pointer register.
    fn access(&mut self, p: u8) {
        let kind = self.regs[p as usize];
        let (sz, n) = self.size();
        let var = self.vars[p as usize];
        let off = self.offset(kind, n + var);
        let sign = if off < 0 { "-" } else { "+" };
        let off = off.unsigned_abs();
        match self.rng.below(3) {
            0 => {
                let d = self.scratch_other(p);
                let _ = writeln!(self.asm, "ldx{sz} %r{d}, [%r{p}{sign}{off}]");
                self.regs[d as usize] = Kind::Scalar;
            }
            1 => {
                let _ = writeln!(
                    self.asm,
                    "st{sz} [%r{p}{sign}{off}], {}",
                    constant(self.rng) as i32
                );
            }
            _ => {
                let s = self.scratch_other(p);
                if self.regs[s as usize] == Kind::Scalar || self.rng.chance(30) {
                    let _ = writeln!(self.asm, "stx{sz} [%r{p}{sign}{off}], %r{s}");
                }
            }
        }
    }

    /// An atomic operation on a stack slot, a map value or the buffer, then (often) the slot read
    /// back and used to move a pointer.
    fn atomic(&mut self) {
        let base = *self.rng.pick(&[10u8, 10, 6, 7]);
        if base == 7 && !self.value {
            return;
        }
        let (w, n) = *self.rng.pick(&[("", 8i64), ("32", 4)]);
        let kind = self.regs[base as usize];
        let off = self.offset(kind, n);
        let off = if self.rng.chance(90) {
            off & !(n - 1)
        } else {
            off
        };
        let sign = if off < 0 { "-" } else { "+" };
        let at = format!("[%r{base}{sign}{}]", off.unsigned_abs());
        if base == 10 && self.rng.chance(60) {
            // Give the slot a known value (or a pointer) first.
            if self.rng.chance(70) {
                let _ = writeln!(self.asm, "stdw {at}, {}", constant(self.rng) as i32);
            } else {
                let _ = writeln!(self.asm, "stxdw {at}, %r10");
            }
        }
        let src = self.scratch();
        if self.regs[src as usize] != Kind::Scalar {
            let _ = writeln!(self.asm, "mov %r{src}, {}", constant(self.rng) as i32);
            self.regs[src as usize] = Kind::Scalar;
        }
        let op = *self.rng.pick(&[
            "add",
            "or",
            "and",
            "xor",
            "fetch add",
            "fetch or",
            "fetch and",
            "fetch xor",
            "xchg",
            "cmpxchg",
        ]);
        let (a, b) = op.split_once(' ').unwrap_or(("", op));
        let fetch = if a.is_empty() {
            String::new()
        } else {
            format!("{a} ")
        };
        let _ = writeln!(self.asm, "lock {fetch}{b}{w} {at}, %r{src}");
        if op == "cmpxchg" {
            self.regs[0] = Kind::Scalar;
        }
        if self.rng.chance(60) {
            let d = self.scratch_other(src);
            let _ = writeln!(
                self.asm,
                "ldx{} %r{d}, {at}",
                if n == 8 { "dw" } else { "w" }
            );
            self.regs[d as usize] = Kind::Scalar;
            let mask = if self.rng.chance(70) { 31 } else { -1 };
            if mask > 0 {
                let _ = writeln!(self.asm, "and %r{d}, {mask}");
            }
            let p = self.scratch_other(d);
            self.take_pointer(p);
            if self.privileged || !matches!(self.regs[p as usize], Kind::Stack(_)) {
                let _ = writeln!(self.asm, "add %r{p}, %r{d}");
                self.vars[p as usize] += mask.max(0);
                self.access(p);
            }
        }
    }

    /// A spill of a register to the stack and a fill back, maybe partial.
    fn spill(&mut self) {
        let r = *self.rng.pick(&[0u8, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        if r == 7 && !self.value {
            return;
        }
        let slot = 8 * (1 + self.rng.below(16));
        let _ = writeln!(self.asm, "stxdw [%r10-{slot}], %r{r}");
        let d = self.scratch();
        let (sz, n) = if self.rng.chance(80) {
            ("dw", 8)
        } else {
            self.size()
        };
        let back = slot - self.rng.below((9 - n) as u64) * u64::from(n != 8);
        let _ = writeln!(self.asm, "ldx{sz} %r{d}, [%r10-{back}]");
        self.regs[d as usize] = if n == 8 && back == slot {
            self.regs[r as usize]
        } else {
            Kind::Scalar
        };
        if self.regs[d as usize] != Kind::Scalar && self.rng.chance(70) {
            self.access(d);
        }
    }

    /// `bpf_map_lookup_elem` with a key from the input or a constant, checked for null; the value
    /// pointer lives in `r7`.
    fn lookup(&mut self) {
        let key = self.rng.below(u64::from(ENTRIES) + 1);
        if self.rng.chance(50) {
            let _ = writeln!(self.asm, "stw [%r10-4], {key}");
        } else {
            let _ = writeln!(
                self.asm,
                "ldxb %r2, [%r6+{}]\nand %r2, 7\nstxw [%r10-4], %r2",
                self.rng.below(BUFFER)
            );
        }
        let skip = self.label();
        let _ = writeln!(
            self.asm,
            "mov %r2, %r10\nadd %r2, -4\nlddw %r1, map_idx(0)\ncall 1\nmov %r2, 0\nmov %r3, 0\nmov %r4, 0\nmov %r5, 0\nmov %r7, 0\njeq %r0, 0, {skip}\nmov %r7, %r0"
        );
        for r in [0u8, 2, 3, 4, 5] {
            self.regs[r as usize] = Kind::Scalar;
            self.vars[r as usize] = 0;
        }
        self.regs[7] = Kind::Value(0);
        self.value = true;
        // Use the value only where it is not null.
        for _ in 0..1 + self.rng.below(3) {
            let p = self.scratch();
            let _ = writeln!(self.asm, "mov %r{p}, %r7");
            self.regs[p as usize] = Kind::Value(0);
            self.vars[p as usize] = 0;
            if self.rng.chance(60) {
                self.move_pointer(p);
            }
            self.access(p);
        }
        if self.rng.chance(30) {
            self.atomic();
        }
        let _ = writeln!(self.asm, "{skip}:");
        // Past the join, r7 may be 0: only null-checked uses from here on.
        self.value = false;
        for r in SCRATCH {
            if matches!(self.regs[r as usize], Kind::Value(_)) {
                let _ = writeln!(self.asm, "mov %r{r}, 0");
                self.regs[r as usize] = Kind::Scalar;
            }
        }
    }

    /// The difference of two pointers (usually into one region), then used as an offset.
    fn difference(&mut self) {
        let d = self.scratch();
        let q = self.scratch_other(d);
        if self.rng.chance(70) {
            let base = *self.rng.pick(&[10u8, 6]);
            let (a, b) = (constant(self.rng) as i32, constant(self.rng) as i32);
            let (a, b) = if self.rng.chance(80) {
                (a % 64, b % 64)
            } else {
                (a, b)
            };
            let _ = writeln!(
                self.asm,
                "mov %r{d}, %r{base}\nadd %r{d}, {a}\nmov %r{q}, %r{base}\nadd %r{q}, {b}"
            );
            self.regs[q as usize] = self.regs[base as usize];
        } else {
            self.take_pointer(d);
            let src = self.pointer_reg();
            let _ = writeln!(self.asm, "mov %r{q}, %r{src}");
            self.regs[q as usize] = self.regs[src as usize];
        }
        let _ = writeln!(self.asm, "sub %r{d}, %r{q}");
        self.regs[d as usize] = Kind::Scalar;
        if self.rng.chance(50) {
            let _ = writeln!(self.asm, "arsh %r{d}, {}", *self.rng.pick(&[0, 3, 63]));
        }
        if self.rng.chance(60) {
            let p = self.scratch_other(d);
            self.take_pointer(p);
            let _ = writeln!(self.asm, "add %r{p}, %r{d}");
            self.access(p);
        }
    }

    /// A conditional jump over the next step, on a scalar (refining its bounds) or comparing two
    /// registers.
    fn branch_over(&mut self) {
        let Some(s) = self.scalar_reg() else {
            return self.step();
        };
        let cond = *self.rng.pick(&[
            "jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset",
        ]);
        let over = self.label();
        let k = constant(self.rng) as i32;
        let _ = writeln!(self.asm, "{cond} %r{s}, {k}, {over}");
        // Both paths join after the step: registers it changes are scalars or pointers on both.
        let (before, vars) = (self.regs, self.vars);
        self.step();
        let _ = writeln!(self.asm, "{over}:");
        for r in SCRATCH {
            if self.regs[r as usize] != before[r as usize]
                || self.vars[r as usize] != vars[r as usize]
            {
                let _ = writeln!(self.asm, "mov %r{r}, 0");
                self.regs[r as usize] = Kind::Scalar;
                self.vars[r as usize] = 0;
            }
        }
    }

    fn step(&mut self) {
        match self.rng.below(16) {
            0 | 1 => {
                let s = self.scratch();
                self.load_input(s);
            }
            2 => {
                let s = self.scalar_reg().unwrap_or(0);
                if self.regs[s as usize] == Kind::Scalar {
                    self.alu(s);
                }
            }
            3..=5 => {
                let p = self.scratch();
                self.take_pointer(p);
                if self.rng.chance(70) {
                    self.move_pointer(p);
                }
                self.access(p);
            }
            6 | 7 => self.atomic(),
            8 | 9 => self.spill(),
            10 => self.lookup(),
            11 if self.privileged || self.rng.chance(10) => self.difference(),
            11 => self.spill(),
            12 | 13 => self.branch_over(),
            _ => {
                let p = self.pointer_reg();
                if p != 10 || self.rng.chance(50) {
                    self.access(p);
                }
            }
        }
    }
}

/// A random program in moat's assembly: `r6` keeps the buffer, scratch registers start at 0, then
/// a few steps. `privileged` biases it towards what a privileged loader accepts (pointer
/// differences). The program uses one map, an array of [`ENTRIES`] values of [`VALUE`] bytes, as
/// map index 0.
pub fn generate(source: &mut dyn Source, privileged: bool) -> String {
    let mut rng = Choices(source);
    let mut g = Gen {
        rng: &mut rng,
        asm: String::from("mov %r6, %r1\n"),
        regs: [Kind::Scalar; 11],
        vars: [0; 11],
        privileged,
        labels: 0,
        value: false,
    };
    g.regs[6] = Kind::Buffer(0);
    g.regs[10] = Kind::Stack(0);
    for r in SCRATCH {
        let _ = writeln!(g.asm, "mov %r{r}, 0");
    }
    let _ = writeln!(g.asm, "mov %r7, 0");
    // An initialised stack (mostly), so unprivileged reads of it pass.
    if g.rng.chance(85) {
        for slot in 1..=16 {
            let _ = writeln!(g.asm, "stdw [%r10-{}], 0", slot * 8);
        }
    }
    let steps = 3 + g.rng.below(10);
    for _ in 0..steps {
        g.step();
    }
    g.asm.push_str("mov %r0, 0\nexit\n");
    g.asm
}

/// What an oracle saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Programs generated.
    pub generated: u64,
    /// Programs the verifier accepted.
    pub accepted: u64,
    /// Runs made (one per input and engine).
    pub runs: u64,
    /// Each failure: the case, what went wrong and the program.
    pub failures: Vec<String>,
}

impl Report {
    /// One line for a person: how many programs were accepted and run, how many failed.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} generated programs accepted ({:.1} %), {} runs, {} failures",
            self.accepted,
            self.generated,
            100.0 * self.accepted as f64 / self.generated.max(1) as f64,
            self.runs,
            self.failures.len()
        )
    }
}

/// A runtime running programs on `engine` with `isolation`, verified with `verification`'s rules.
pub fn runtime(verification: Verification, engine: Engine, isolation: Isolation) -> Runtime {
    let mut rt = Runtime::new();
    rt.set_engine(engine);
    rt.set_isolation(isolation);
    rt.set_verification(verification);
    rt.set_buffer_size(BUFFER);
    rt.set_violation_limit(0);
    rt
}

/// The map generated programs use: an array of [`ENTRIES`] values of [`VALUE`] bytes.
pub fn array_map() -> Arc<Map> {
    Arc::new(Map::create(MapDef::new(MapType::Array, 4, VALUE, ENTRIES)).expect("array map"))
}

/// Why a generated program was not run.
#[derive(Debug)]
pub enum Refused {
    /// The verifier refused it (the text says why).
    Verifier(String),
    /// It is malformed (the generator's bug, rare).
    Malformed(String),
}

/// Loads `asm` with `map` on `rt`.
pub fn load(rt: &Runtime, asm: &str, map: &Arc<Map>) -> Result<LoadedProgram, Refused> {
    let bytes = moat_isa::assemble_bytes(asm).map_err(|e| Refused::Malformed(e.to_string()))?;
    match rt.load_with_maps(&bytes, ProgType::Buffer, std::slice::from_ref(map)) {
        Ok(p) => Ok(p),
        Err(Error::Verify(r)) => Err(Refused::Verifier(r.error.to_string())),
        Err(e) => Err(Refused::Malformed(e.to_string())),
    }
}

fn verbose() -> bool {
    std::env::var_os("MOAT_SOUNDNESS_VERBOSE").is_some()
}

/// An interpreting runtime per rule set, privileged first (the oracles alternate between them).
fn interpreters_by_rules() -> Vec<(Verification, Runtime)> {
    [Verification::Privileged, Verification::Unprivileged]
        .into_iter()
        .map(|v| (v, runtime(v, Engine::Interp, Isolation::None)))
        .collect()
}

/// The soundness oracle over `cases` programs from `source`: accepted programs run on the checking
/// interpreter must make no memory error.
pub fn soundness(source: &mut dyn Source, cases: u64) -> Report {
    let map = array_map();
    let runtimes = interpreters_by_rules();
    let mut report = Report::default();
    for case in 0..cases {
        let (verification, rt) = &runtimes[(case % 2) as usize];
        let asm = generate(source, *verification == Verification::Privileged);
        report.generated += 1;
        let prog = match load(rt, &asm, &map) {
            Ok(p) => p,
            Err(why) => {
                if verbose() {
                    println!("not run ({verification:?}): {why:?}");
                }
                continue;
            }
        };
        report.accepted += 1;
        for _ in 0..INPUTS {
            let mut input: Vec<u8> = (0..BUFFER).map(|_| source.word() as u8).collect();
            let key = (source.below(u64::from(ENTRIES)) as u32).to_le_bytes();
            let value: Vec<u8> = (0..VALUE).map(|_| source.word() as u8).collect();
            map.update(&key, &value, 0).expect("array update");
            report.runs += 1;
            if let Err(Error::Run(e)) = prog.run(&mut input) {
                if is_violation(&e) {
                    report
                        .failures
                        .push(format!("case {case} ({verification:?}): {e}\n{asm}"));
                    break;
                }
            }
        }
    }
    report
}

/// The pruning oracle over `cases` programs from `source` (privileged and unprivileged rules in
/// turn): the verifier's register-use analysis only lets states prune that differ in what cannot
/// matter, so every program it accepts must also be accepted with pruning comparing states whole
/// ([`moat_verify::testing::with_exact_pruning`]) — or refused as too complex — and every program
/// accepted that way must be accepted with the analysis.
pub fn pruning_agrees(source: &mut dyn Source, cases: u64) -> Report {
    let map = array_map();
    let runtimes = interpreters_by_rules();
    let mut report = Report::default();
    for case in 0..cases {
        let (verification, rt) = &runtimes[(case % 2) as usize];
        let asm = generate(source, *verification == Verification::Privileged);
        report.generated += 1;
        let relaxed = load(rt, &asm, &map);
        let exact = moat_verify::testing::with_exact_pruning(|| load(rt, &asm, &map));
        let too_complex = |r: &Result<LoadedProgram, Refused>| matches!(r, Err(Refused::Verifier(w)) if w.contains("too complex"));
        match (&relaxed, &exact) {
            (Ok(_), Ok(_)) => report.accepted += 1,
            (Err(_), Err(_)) => {}
            (Ok(_), Err(_)) if too_complex(&exact) => report.accepted += 1,
            _ => report.failures.push(format!(
                "case {case} ({verification:?}): with the register-use analysis {}, comparing \
                 states whole {}\n{asm}",
                verdict(&relaxed),
                verdict(&exact)
            )),
        }
    }
    report
}

fn verdict(r: &Result<LoadedProgram, Refused>) -> String {
    match r {
        Ok(_) => "accepted".into(),
        Err(why) => format!("refused ({why:?})"),
    }
}

/// What one run left behind: `r0` or the failing instruction, the buffer and the map's values.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    result: Result<u64, Option<usize>>,
    buffer: Vec<u8>,
    map: Vec<Vec<u8>>,
}

fn outcome(prog: &LoadedProgram, map: &Map, input: &[u8]) -> Outcome {
    let mut buffer = input.to_vec();
    let result = match prog.run(&mut buffer) {
        Ok(r0) => Ok(r0),
        Err(Error::Run(e)) => Err(Some(e.pc)),
        Err(_) => Err(None),
    };
    let map = (0..ENTRIES)
        .map(|k| map.lookup(&k.to_le_bytes()).unwrap_or_default())
        .collect();
    Outcome {
        result,
        buffer,
        map,
    }
}

fn fill(map: &Map, values: &[Vec<u8>]) {
    for (k, v) in (0u32..).zip(values) {
        map.update(&k.to_le_bytes(), v, 0).expect("array update");
    }
}

/// The verified-JIT oracle over `cases` programs from `source`: each accepted program runs on the
/// interpreter, on the JIT without isolation and on the JIT under `sfi`, from the same buffer and
/// map contents, and all three must leave the same [`Outcome`]. Runs where the interpreter finds a
/// memory error are counted as failures too (that is the soundness oracle's finding).
pub fn jit_matches_interpreter(source: &mut dyn Source, cases: u64) -> Report {
    let engines = [
        (Engine::Interp, Isolation::None),
        (Engine::Jit, Isolation::None),
        (Engine::Jit, Isolation::Sfi),
    ];
    let mut report = Report::default();
    for case in 0..cases {
        // Unprivileged rules only: a privileged program may store or return a pointer, whose value
        // differs between the engines (the interpreter's addresses are not the JIT's).
        let verification = Verification::Unprivileged;
        let asm = generate(source, false);
        report.generated += 1;
        let mut loaded = Vec::new();
        for (engine, isolation) in engines {
            let map = array_map();
            match load(&runtime(verification, engine, isolation), &asm, &map) {
                Ok(p) => loaded.push((engine, isolation, p, map)),
                Err(why) => {
                    if verbose() {
                        println!("not run ({verification:?}, {engine:?}): {why:?}");
                    }
                    break;
                }
            }
        }
        if loaded.len() != engines.len() {
            continue;
        }
        report.accepted += 1;
        for _ in 0..INPUTS {
            let input: Vec<u8> = (0..BUFFER).map(|_| source.word() as u8).collect();
            let values: Vec<Vec<u8>> = (0..ENTRIES)
                .map(|_| (0..VALUE).map(|_| source.word() as u8).collect())
                .collect();
            let mut outcomes = Vec::new();
            for (engine, isolation, prog, map) in &loaded {
                fill(map, &values);
                report.runs += 1;
                outcomes.push((*engine, *isolation, outcome(prog, map, &input)));
            }
            let (_, _, reference) = &outcomes[0];
            if let Some((engine, isolation, differing)) =
                outcomes[1..].iter().find(|(_, _, o)| o != reference)
            {
                report.failures.push(format!(
                    "case {case} ({verification:?}): {engine:?} under {isolation:?} differs from \
                     the interpreter:\n  interpreter: {reference:?}\n  {engine:?}: {differing:?}\n{asm}"
                ));
                break;
            }
        }
    }
    report
}
