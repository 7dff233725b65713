//! The verifier's soundness oracle: a program the verifier accepts never makes a memory error.
//!
//! Random programs are generated biased to pass the verifier while doing what its proofs are about:
//! pointer arithmetic on the stack, the buffer context and map values (from `bpf_map_lookup_elem`,
//! checked for null), with constants from the extremes of i64 and scalars loaded from the input and
//! bounded by masks, shifts or conditional jumps; spills and fills of numbers and pointers, whole or
//! partial; atomic operations of every kind on every region, whose results are then used as
//! offsets; pointer differences. Each program is verified with a privileged or an unprivileged
//! loader's rules (alternately); every accepted one runs on the checking interpreter
//! ([`Engine::Interp`], which checks every load and store against the run's memory) on several
//! random inputs and must never end with an isolation violation ([`moat::is_violation`]: an
//! out-of-bounds access, a bad atomic, a helper argument refused). The test prints how many programs
//! were accepted and fails if too few were for the oracle to mean anything.
//!
//! Run against the verifier before `moat-verify: refuse escapes via atomics, offsets, pointer
//! differences`, 2 000 programs give about 20 memory errors (atomics modelled as plain stores,
//! misaligned atomics); each kind found is kept, minimised, as a rule file
//! (`crates/moat-verify/tests/rules/oracle-*.asm`). Keep any new counterexample the same way: a
//! failure prints the program; `MOAT_SOUNDNESS_REPLAY=FILE cargo test -p moat --test
//! verifier_soundness replay -- --nocapture` runs one saved program again.
//!
//! The run is bounded for CI (`MOAT_SOUNDNESS_CASES`, default 2 000 programs, about a second); for a
//! longer run, e.g. `MOAT_SOUNDNESS_CASES=1000000 cargo test --release -p moat --test
//! verifier_soundness -- --nocapture` (`MOAT_SOUNDNESS_SEED` picks another sequence,
//! `MOAT_SOUNDNESS_VERBOSE` prints why each refused program was refused). Inputs are heap vectors,
//! which the allocator aligns to 16 bytes, as the verifier assumes of buffer contexts.

use moat::{
    is_violation, Engine, Error, Isolation, Map, MapDef, MapType, ProgType, Runtime, Verification,
};
use std::fmt::Write;
use std::sync::Arc;

/// Bytes of the buffer context.
const BUFFER: u64 = 64;
/// Value size of the map (an array of `ENTRIES` values; lookups use keys up to `ENTRIES`, one past
/// the end, so null checks matter).
const VALUE: u32 = 48;
const ENTRIES: u32 = 4;
/// Inputs each accepted program runs on.
const INPUTS: usize = 4;

/// A SplitMix64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
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

struct Gen<'r> {
    rng: &'r mut Rng,
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
fn constant(rng: &mut Rng) -> i64 {
    match rng.below(10) {
        0..=4 => rng.below(80) as i64 - 16,
        5 => -(rng.below(520) as i64),
        6 => *rng.pick(&[BUFFER as i64, i64::from(VALUE), 512, -512, 4096, -4096]),
        7 => *rng.pick(&[(1 << 29) - 1, 1 << 29, -(1 << 29), 1 << 31, -(1 << 31)]),
        8 => *rng.pick(&[i64::MAX, i64::MIN, i64::MAX - 7, i64::MIN + 8, -1]),
        _ => rng.next() as i64,
    }
}

impl Gen<'_> {
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

/// A random program: `r6` keeps the buffer, scratch registers start at 0, then a few steps.
fn generate(rng: &mut Rng, privileged: bool) -> String {
    let mut g = Gen {
        rng,
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

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A runtime running programs on the checking interpreter, verified with `verification`'s rules.
fn runtime(verification: Verification) -> Runtime {
    let mut rt = Runtime::new();
    rt.set_engine(Engine::Interp);
    rt.set_isolation(Isolation::None);
    rt.set_verification(verification);
    rt.set_buffer_size(BUFFER);
    rt.set_violation_limit(0);
    rt
}

fn array_map() -> Arc<Map> {
    Arc::new(Map::create(MapDef::new(MapType::Array, 4, VALUE, ENTRIES)).expect("array map"))
}

/// Runs a program kept from an earlier run (`MOAT_SOUNDNESS_REPLAY=FILE`): prints, for each rule
/// set, whether it is accepted and whether a run on zeroes or random inputs makes a memory error.
#[test]
fn replay() {
    let Some(path) = std::env::var_os("MOAT_SOUNDNESS_REPLAY") else {
        return;
    };
    let asm = std::fs::read_to_string(path).expect("readable");
    let bytes = moat_isa::assemble_bytes(&asm).expect("assembles");
    let map = array_map();
    let mut rng = Rng(1);
    for v in [Verification::Privileged, Verification::Unprivileged] {
        match runtime(v).load_with_maps(&bytes, ProgType::Buffer, std::slice::from_ref(&map)) {
            Err(e) => println!("{v:?}: refused: {e}"),
            Ok(prog) => {
                let mut outcome = "accepted, no memory error".to_string();
                for i in 0..64 {
                    let mut input: Vec<u8> = (0..BUFFER)
                        .map(|_| if i == 0 { 0 } else { rng.next() as u8 })
                        .collect();
                    if let Err(Error::Run(e)) = prog.run(&mut input) {
                        if is_violation(&e) {
                            outcome = format!("accepted, memory error: {e}");
                            break;
                        }
                    }
                }
                println!("{v:?}: {outcome}");
            }
        }
    }
}

#[test]
fn accepted_programs_make_no_memory_errors() {
    let cases = env_number("MOAT_SOUNDNESS_CASES", 2000);
    let seed = env_number("MOAT_SOUNDNESS_SEED", 0x005e_ed0f_5afe);
    let mut rng = Rng(seed);
    let map = array_map();
    let runtimes: Vec<(Verification, Runtime)> =
        [Verification::Privileged, Verification::Unprivileged]
            .into_iter()
            .map(|v| (v, runtime(v)))
            .collect();
    let (mut accepted, mut runs) = (0u64, 0u64);
    let mut failures = Vec::new();
    for case in 0..cases {
        let (verification, rt) = &runtimes[(case % 2) as usize];
        let asm = generate(&mut rng, *verification == Verification::Privileged);
        let bytes = moat_isa::assemble_bytes(&asm).expect("generated programs assemble");
        let prog = match rt.load_with_maps(&bytes, ProgType::Buffer, std::slice::from_ref(&map)) {
            Ok(p) => p,
            Err(Error::Verify(r)) => {
                if std::env::var_os("MOAT_SOUNDNESS_VERBOSE").is_some() {
                    println!("refused ({verification:?}): {}", r.error);
                }
                continue;
            }
            Err(Error::Program(e)) => {
                if std::env::var_os("MOAT_SOUNDNESS_VERBOSE").is_some() {
                    println!("malformed: {e}");
                }
                continue;
            }
            Err(e) => panic!("case {case}: unexpected load error {e}\n{asm}"),
        };
        accepted += 1;
        for _ in 0..INPUTS {
            let mut input: Vec<u8> = (0..BUFFER).map(|_| rng.next() as u8).collect();
            let key = (rng.below(u64::from(ENTRIES)) as u32).to_le_bytes();
            let value: Vec<u8> = (0..VALUE).map(|_| rng.next() as u8).collect();
            map.update(&key, &value, 0).expect("update");
            runs += 1;
            match prog.run(&mut input) {
                Err(Error::Run(e)) if is_violation(&e) => {
                    failures.push(format!("case {case} ({verification:?}): {e}\n{asm}"));
                    break;
                }
                _ => {}
            }
        }
    }
    println!(
        "{accepted} of {cases} generated programs accepted ({:.1} %), {runs} runs, {} memory errors",
        100.0 * accepted as f64 / cases.max(1) as f64,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "accepted programs made memory errors:\n{}",
        failures.join("\n")
    );
    assert!(
        accepted * 4 >= cases,
        "only {accepted} of {cases} programs accepted: the oracle checks too little"
    );
}
