//! Enumerative synthesis after MLIRSynth (CGO'23): candidate programs of the dialect are built
//! bottom-up from a candidate set seeded with the loop's inputs, pruned statically (operand types,
//! element widths and strides, which memory each pointer operand may touch), then by execution
//! against the loop's reference semantics on a small and then a large set of inputs; candidates
//! that compute the same values on the small set are kept once (observational equivalence). The
//! live-out values of each exit are synthesized the same way, as terms over the inputs and the
//! operation's results. A plan is accepted only when it also agrees with the loop on every case of
//! a bounded exhaustive set: every iteration count up to [`EXHAUSTIVE_TRIPS`], each with every
//! position of a planted difference or zero element, at varying alignments.
//!
//! What this proves, and what it does not: the accepted plan equals the loop on all those cases,
//! and the dialect's operations are equal to their specifications by their own tests; equality
//! for longer inputs or other byte values rests on the operations being defined elementwise (as
//! the loop IR's accesses are) — it is tested, not proven by a solver (no SMT solver is used).

use crate::dialect::{Kind, Op, Outcome};
use crate::ir::{run_reference, Bound, LoopIr, Memory, RefEnd, REGS};
use moat_isa::{Insn, JmpCond, Size};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// Iteration counts the final check covers exhaustively (0 to this).
pub const EXHAUSTIVE_TRIPS: u64 = 24;
/// The most elements a raised operation processes in one call; longer runs keep the loop.
pub const MAX_ELEMENTS: u64 = 1 << 26;
/// Nodes of the largest live-out term, in the first pass over the candidates and then in the
/// second (most wrong candidates fail cheaply in the first).
const TERM_SIZES: [usize; 2] = [3, 7];
const SMALL_CASES: usize = 8;
const LARGE_CASES: usize = 96;
const FUEL: u64 = 1 << 20;

/// An operand of an operation or a leaf of a term: an input of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Seed {
    /// A register's value at the loop's entry.
    Entry(usize),
    /// A constant.
    Const(u64),
    /// The address an access of the loop touches in its first iteration: `base + iv + off`.
    Ptr {
        /// Invariant base register, if any.
        base: Option<usize>,
        /// Induction variable.
        iv: usize,
        /// Offset.
        off: i64,
    },
}

impl Seed {
    fn eval(&self, regs: &[u64; REGS]) -> u64 {
        match *self {
            Seed::Entry(r) => regs[r],
            Seed::Const(c) => c,
            Seed::Ptr { base, iv, off } => base
                .map_or(0, |b| regs[b])
                .wrapping_add(regs[iv])
                .wrapping_add(off as u64),
        }
    }
}

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Seed::Entry(r) => write!(f, "r{r}"),
            Seed::Const(c) => write!(f, "{}", c as i64),
            Seed::Ptr { base, iv, off } => {
                if let Some(b) = base {
                    write!(f, "r{b}+")?;
                }
                write!(f, "r{iv}")?;
                if off != 0 {
                    write!(f, "{off:+}")?;
                }
                Ok(())
            }
        }
    }
}

/// A live-out value: a term over the loop's inputs and the operation's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Term {
    /// An input.
    Seed(Seed),
    /// The outcome's index.
    Idx,
    /// The outcome's accumulator.
    Acc,
    /// Wrapping sum.
    Add(Box<Term>, Box<Term>),
    /// Wrapping product with a constant.
    Mul(Box<Term>, u64),
    /// A load from memory after the operation (size, sign-extended).
    Load(Box<Term>, Size, bool),
}

impl Term {
    fn eval(&self, regs: &[u64; REGS], out: &Outcome, mem: &dyn Memory) -> Option<u64> {
        Some(match self {
            Term::Seed(s) => s.eval(regs),
            Term::Idx => out.idx,
            Term::Acc => out.acc,
            Term::Add(a, b) => a
                .eval(regs, out, mem)?
                .wrapping_add(b.eval(regs, out, mem)?),
            Term::Mul(a, c) => a.eval(regs, out, mem)?.wrapping_mul(*c),
            Term::Load(a, size, signed) => {
                let addr = a.eval(regs, out, mem)?;
                let bytes = mem.read(addr, size.bytes() as u64)?;
                crate::ir::load_value(bytes, *size, *signed)
            }
        })
    }
}

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Term::Seed(s) => write!(f, "{s}"),
            Term::Idx => write!(f, "idx"),
            Term::Acc => write!(f, "acc"),
            Term::Add(a, b) => write!(f, "({a} + {b})"),
            Term::Mul(a, c) => write!(f, "{a}*{}", *c as i64),
            Term::Load(a, size, _) => write!(f, "*u{}({a})", size.bytes() * 8),
        }
    }
}

/// Where one class of outcome leaves the loop, and the values it leaves behind.
#[derive(Debug, Clone)]
pub struct ExitPlan {
    /// The slot the loop leaves to.
    pub slot: usize,
    /// Each live-out register's value.
    pub outs: Vec<(usize, Term)>,
    /// Instructions the loop runs when it leaves this way, beyond `idx` whole iterations: the
    /// loop's instruction count is `idx * body length + extra`.
    pub extra: u64,
}

/// What a raised loop did: where it left to and how many instructions the loop would have run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The slot the loop leaves to.
    pub exit: usize,
    /// Instructions the original loop runs on this input (what its run charges to the budget).
    pub insns: u64,
}

/// A raised loop: the operation, its operands, how many elements, and each exit's values.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The operation.
    pub op: Op,
    /// Its operands.
    pub args: Vec<Seed>,
    counted: crate::ir::Counted,
    step: i64,
    top_tested: bool,
    body_len: u64,
    /// The exit of each outcome class (0: every element processed).
    pub exits: [Option<ExitPlan>; 3],
}

impl Plan {
    /// The number of elements the loop processes from entry registers `regs`, if the closed form
    /// applies: the compared value does not wrap around before the exit, it leaves the loop less
    /// than one step past the bound (the domain synthesis checked the plan on: a loop entered far
    /// past its bound runs once or not at all, with live-out values of another form), and there
    /// are at most [`MAX_ELEMENTS`].
    pub fn elements(&self, regs: &[u64; REGS]) -> Option<u64> {
        let c = &self.counted;
        let s = self.step.unsigned_abs();
        let down = self.step < 0;
        let mut a = regs[c.iv].wrapping_add(c.off as u64);
        let mut b = match c.bound {
            Bound::Imm(i) => i as u64,
            Bound::Reg(r) => regs[r],
        };
        // Signed comparisons become unsigned ones with the sign bit flipped (same order; the
        // compared value then must not pass `u64::MAX`, that is `i64::MAX`); a loop counting
        // down while `a >= b` is one counting up while `!a <= !b` (`!` reverses the order).
        let (signed, cond) = match (down, c.cond) {
            (false, JmpCond::Lt) | (true, JmpCond::Gt) => (false, JmpCond::Lt),
            (false, JmpCond::Le) | (true, JmpCond::Ge) => (false, JmpCond::Le),
            (false, JmpCond::Slt) | (true, JmpCond::Sgt) => (true, JmpCond::Lt),
            (false, JmpCond::Sle) | (true, JmpCond::Sge) => (true, JmpCond::Le),
            (_, JmpCond::Ne) => (false, JmpCond::Ne),
            _ => return None,
        };
        if s == 0 {
            return None;
        }
        if signed {
            a ^= 1 << 63;
            b ^= 1 << 63;
        }
        if down {
            a = !a;
            b = !b;
        }
        // The loop goes on while cond(a + s*k, b): `k` is the first k where it does not, `fin` the
        // compared value then (no division of 128-bit numbers: this runs at every raised entry).
        let k = match cond {
            JmpCond::Lt => {
                if a >= b {
                    0
                } else {
                    div_ceil(b - a, s)
                }
            }
            JmpCond::Le => {
                if a > b {
                    0
                } else {
                    div(b - a, s) + 1
                }
            }
            JmpCond::Ne => {
                if a > b || !(b - a).is_multiple_of(s) {
                    return None;
                }
                div(b - a, s)
            }
            _ => return None,
        };
        let fin = u128::from(a) + u128::from(s) * u128::from(k);
        // How far past the bound the compared value leaves the loop.
        let past = match cond {
            JmpCond::Le => fin.checked_sub(u128::from(b) + 1)?,
            _ => fin.checked_sub(u128::from(b))?,
        };
        if past >= u128::from(s) || fin > u128::from(u64::MAX) {
            return None;
        }
        let n = if self.top_tested {
            k
        } else {
            k.checked_add(1)?
        };
        (n <= MAX_ELEMENTS).then_some(n)
    }

    /// The most instructions the loop runs from entry registers `regs` (`None` when the closed
    /// form does not apply): `n + 1` whole iterations.
    pub fn max_insns(&self, regs: &[u64; REGS]) -> Option<u64> {
        self.elements(regs)?
            .checked_add(1)?
            .checked_mul(self.body_len)
    }

    /// Runs the raised loop from its entry registers, if the loop would run at most `budget`
    /// instructions: `Some` with the live-out registers written and memory changed as the loop
    /// would, or `None` (nothing done, or only what running the loop again redoes identically: a
    /// non-overlapping copy or fill) when the operation does not apply — the loop itself must then
    /// run. Registers the loop writes but no exit reads keep their entry values.
    pub fn run(&self, regs: &mut [u64; REGS], mem: &mut dyn Memory, budget: u64) -> Option<Raised> {
        let n = self.elements(regs)?;
        if n.checked_add(1)?.checked_mul(self.body_len)? > budget {
            return None;
        }
        // At most three operands (`Op::operands`): no allocation on the way.
        let mut args = [0u64; 3];
        for (a, s) in args.iter_mut().zip(&self.args) {
            *a = s.eval(regs);
        }
        let out = self.op.run(&args[..self.args.len().min(3)], n, mem)?;
        let exit = self.exits.get(usize::from(out.class))?.as_ref()?;
        let insns = out
            .idx
            .checked_mul(self.body_len)?
            .checked_add(exit.extra)?;
        let entry = *regs;
        let mut values = [0u64; REGS];
        for (r, t) in &exit.outs {
            values[*r] = t.eval(&entry, &out, mem)?;
        }
        for (r, _) in &exit.outs {
            regs[*r] = values[*r];
        }
        Some(Raised {
            exit: exit.slot,
            insns,
        })
    }

    /// The instructions of the loop's body (what one iteration charges to the budget).
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// How far the counted induction variable starts from its bound, as code at the header can
    /// work it out from the entry registers before deciding whether the plan is worth its call:
    /// the loop processes about `distance / |step|` elements (see [`Distance`]).
    pub fn distance(&self) -> Distance {
        let c = &self.counted;
        Distance {
            iv: c.iv,
            off: c.off,
            bound: c.bound,
            step: self.step,
        }
    }
}

/// The distance of a raised loop's counted induction variable from its bound at entry:
/// `bound - (iv + off)` when `step` is positive, `(iv + off) - bound` when negative, as a signed
/// 64-bit number. A negative or huge (past `i64::MAX`) distance means the loop runs once or not at
/// all, or wraps: its own code handles those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Distance {
    /// The induction variable's register.
    pub iv: usize,
    /// Added to it before the comparison.
    pub off: i64,
    /// What it is compared with.
    pub bound: Bound,
    /// What each iteration adds to it.
    pub step: i64,
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let args: Vec<String> = self.args.iter().map(ToString::to_string).collect();
        write!(f, "{} {}, n", self.op, args.join(", "))?;
        for (class, e) in self.exits.iter().enumerate() {
            if let Some(e) = e {
                let outs: Vec<String> = e.outs.iter().map(|(r, t)| format!("r{r}={t}")).collect();
                write!(f, "; class {class} -> {} [{}]", e.slot, outs.join(" "))?;
            }
        }
        Ok(())
    }
}

/// `x / s`, by a shift for the usual power-of-two steps (this runs at every raised entry).
fn div(x: u64, s: u64) -> u64 {
    if s.is_power_of_two() {
        x >> s.trailing_zeros()
    } else {
        x / s
    }
}

/// `x / s` rounded up, likewise.
fn div_ceil(x: u64, s: u64) -> u64 {
    if s.is_power_of_two() {
        (x >> s.trailing_zeros()) + u64::from(x & (s - 1) != 0)
    } else {
        x.div_ceil(s)
    }
}

/// Counts of one synthesis, per stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operation candidates enumerated (every operation with every operand tuple).
    pub enumerated: u64,
    /// Pruned by operand types.
    pub pruned_types: u64,
    /// Pruned by element widths, strides and memory (which accesses each operand may be).
    pub pruned_static: u64,
    /// Pruned by execution on the small input set.
    pub pruned_small: u64,
    /// Pruned as observationally equivalent to an earlier candidate.
    pub pruned_equivalent: u64,
    /// Pruned by execution on the large input set.
    pub pruned_large: u64,
    /// Pruned because no live-out term was found.
    pub pruned_outs: u64,
    /// Pruned by the bounded exhaustive check.
    pub pruned_exhaustive: u64,
    /// Live-out terms enumerated.
    pub terms: u64,
    /// Cases of the bounded exhaustive check the accepted plan passed.
    pub exhaustive_cases: u64,
    /// Microseconds spent.
    pub micros: u64,
}

/// A memory of test cases: one byte array at a fixed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestMem {
    /// Address of the first byte.
    pub base: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl TestMem {
    fn range(&self, addr: u64, len: u64) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        (end <= self.bytes.len()).then_some(start..end)
    }
}

impl Memory for TestMem {
    fn read(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let r = self.range(addr, len)?;
        self.bytes.get(r)
    }

    fn write(&mut self, addr: u64, len: u64) -> Option<&mut [u8]> {
        let r = self.range(addr, len)?;
        self.bytes.get_mut(r)
    }

    fn copy(&mut self, dst: u64, src: u64, len: u64) -> Option<()> {
        let d = self.range(dst, len)?;
        let s = self.range(src, len)?;
        self.bytes.copy_within(s, d.start);
        Some(())
    }
}

/// A deterministic generator (xorshift64*), so that synthesis is reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// A test input of a loop, with what the loop does on it.
#[derive(Debug, Clone)]
pub struct Case {
    /// Entry registers.
    pub regs: [u64; REGS],
    /// Memory at entry.
    pub mem: TestMem,
    /// Where the loop left to.
    pub exit: usize,
    /// Instructions the loop ran.
    pub insns: u64,
    /// Registers after the loop.
    pub regs_after: [u64; REGS],
    /// Memory after the loop.
    pub mem_after: TestMem,
}

/// How to fill a case's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Bytes of a small alphabet without zero.
    Letters,
    /// Bytes of a small alphabet with zero.
    Small,
    /// Any bytes.
    Random,
    /// Every read access sees the same elements, but for a difference planted at `diff` and a
    /// zero element planted at `zero`.
    Mirror {
        /// Element whose last read access differs.
        diff: Option<u64>,
        /// Element that is zero in every read access.
        zero: Option<u64>,
    },
}

/// Groups of accesses sharing base and induction variable, with their offset span.
fn groups(ir: &LoopIr) -> Vec<(Option<usize>, usize, i64, i64, i64)> {
    let mut g: Vec<(Option<usize>, usize, i64, i64, i64)> = Vec::new();
    for a in &ir.accesses {
        let base = Some(a.base).filter(|&b| b != a.iv);
        let hi = a.off + a.size as i64;
        match g.iter_mut().find(|x| x.0 == base && x.1 == a.iv) {
            Some(x) => {
                x.2 = x.2.min(a.off);
                x.3 = x.3.max(hi);
                x.4 = x.4.max(a.stride.abs());
            }
            None => g.push((base, a.iv, a.off, hi, a.stride.abs())),
        }
    }
    g
}

/// Builds a case whose loop runs about `trips` iterations, then runs the loop on it; `None` when
/// the loop faults or does not end (the case is then of no use).
pub fn make_case(ir: &LoopIr, rng: &mut Rng, trips: u64, fill: Fill, align: u64) -> Option<Case> {
    let c = ir.counted;
    let step = ir.ivs.iter().find(|v| v.reg == c.iv)?.step;
    let s = step.unsigned_abs();
    let down = step < 0;
    let mut regs = [0u64; REGS];
    let mut set = [false; REGS];
    let groups = groups(ir);
    let span_of = |g: &(Option<usize>, usize, i64, i64, i64)| -> u64 {
        ((g.3 - g.2).unsigned_abs() + g.4.unsigned_abs() * (trips + 2) + 16).next_multiple_of(64)
    };
    let total: u64 = groups.iter().map(span_of).sum::<u64>() + 64;
    let base_addr = 0x1000_0000u64;
    let mut starts = Vec::new();
    let mut at = base_addr + 32;
    for g in &groups {
        starts.push(at + align);
        at += span_of(g);
    }
    let jitter = if rng.below(2) == 0 { 0 } else { rng.below(s) };
    let pointer_iv = groups.iter().position(|g| g.0.is_none() && g.1 == c.iv);
    let i0 = if let Some(gi) = pointer_iv {
        starts[gi].wrapping_sub(groups[gi].2 as u64)
    } else {
        match c.bound {
            Bound::Imm(b) if down => (b as u64)
                .wrapping_sub(c.off as u64)
                .wrapping_add(s * trips)
                .wrapping_sub(jitter),
            Bound::Imm(b) => (b as u64)
                .wrapping_sub(c.off as u64)
                .wrapping_sub(s * trips)
                .wrapping_add(jitter),
            Bound::Reg(_) if down => rng.below(16) + s * (trips + 1),
            Bound::Reg(_) => rng.below(16),
        }
    };
    regs[c.iv] = i0;
    set[c.iv] = true;
    if let Bound::Reg(r) = c.bound {
        regs[r] = if down {
            i0.wrapping_add(c.off as u64)
                .wrapping_sub(s * trips)
                .wrapping_add(jitter)
        } else {
            i0.wrapping_add(c.off as u64)
                .wrapping_add(s * trips)
                .wrapping_sub(jitter)
        };
        set[r] = true;
    }
    for (gi, g) in groups.iter().enumerate() {
        if !set[g.1] {
            regs[g.1] = match g.0 {
                None => starts[gi].wrapping_sub(g.2 as u64),
                Some(_) => rng.below(8),
            };
            set[g.1] = true;
        }
        if let Some(b) = g.0 {
            if !set[b] {
                regs[b] = starts[gi].wrapping_sub(regs[g.1]).wrapping_sub(g.2 as u64);
                set[b] = true;
            }
        }
    }
    let mut mem = TestMem {
        base: base_addr,
        bytes: vec![0u8; usize::try_from(total).ok()?],
    };
    let letters = [b'a', b'b', b'c'];
    let small = [0u8, b'a', b'b', 0xff];
    match fill {
        Fill::Letters => mem
            .bytes
            .iter_mut()
            .for_each(|b| *b = letters[rng.below(3) as usize]),
        Fill::Small => mem
            .bytes
            .iter_mut()
            .for_each(|b| *b = small[rng.below(4) as usize]),
        Fill::Random | Fill::Mirror { .. } => mem
            .bytes
            .iter_mut()
            .for_each(|b| *b = rng.next_u64().to_le_bytes()[0]),
    }
    if let Fill::Mirror { diff, zero } = fill {
        let reads: Vec<&crate::ir::Access> = ir.accesses.iter().filter(|a| !a.write).collect();
        for k in 0..trips + 1 {
            let v = 1 + rng.below(250);
            for (ai, a) in reads.iter().enumerate() {
                let addr = Seed::Ptr {
                    base: Some(a.base).filter(|&b| b != a.iv),
                    iv: a.iv,
                    off: a.off,
                }
                .eval(&regs)
                .wrapping_add((a.stride as u64).wrapping_mul(k));
                let mut value = if zero == Some(k) { 0 } else { v };
                if diff == Some(k) && ai + 1 == reads.len() {
                    value = value.wrapping_add(1 + rng.below(3)) & 0xff;
                }
                if let Some(bytes) = mem.write(addr, a.size as u64) {
                    bytes.fill(0);
                    bytes[0] = value as u8;
                }
            }
        }
    }
    // Other inputs: values likely to matter (zero, letters, bytes of the memory) or any.
    let palette = [
        0,
        1,
        u64::from(b'a'),
        u64::from(b'b'),
        0xff,
        u64::from(mem.bytes[rng.below(mem.bytes.len() as u64) as usize]),
    ];
    for r in &ir.live_in {
        if !set[*r] && *r != 10 {
            regs[*r] = if rng.below(4) == 0 {
                rng.next_u64()
            } else {
                palette[rng.below(palette.len() as u64) as usize]
            };
        }
    }
    let mut regs_after = regs;
    let mut mem_after = mem.clone();
    match run_reference(ir, &mut regs_after, &mut mem_after, FUEL) {
        RefEnd::Exit { slot, insns } => Some(Case {
            regs,
            mem,
            exit: slot,
            insns,
            regs_after,
            mem_after,
        }),
        _ => None,
    }
}

/// The result of synthesis for one loop.
#[derive(Debug, Clone)]
pub struct Synthesis {
    /// The accepted plan, if any.
    pub plan: Option<Plan>,
    /// Counts per stage.
    pub stats: Stats,
    /// Why no plan was accepted.
    pub reason: Option<String>,
}

fn random_cases(ir: &LoopIr, rng: &mut Rng, count: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut tries = 0;
    while cases.len() < count && tries < count * 4 {
        tries += 1;
        let trips = match tries % 4 {
            0 => rng.below(4),
            1 => rng.below(20),
            _ => rng.below(72),
        };
        let fill = match rng.below(5) {
            0 => Fill::Letters,
            1 => Fill::Small,
            2 => Fill::Random,
            _ => Fill::Mirror {
                diff: (rng.below(2) == 0).then(|| rng.below(trips + 1)),
                zero: (rng.below(2) == 0).then(|| rng.below(trips + 1)),
            },
        };
        let align = rng.below(8);
        if let Some(c) = make_case(ir, rng, trips, fill, align) {
            cases.push(c);
        }
    }
    cases
}

/// The bounded exhaustive set: every iteration count up to [`EXHAUSTIVE_TRIPS`], each with every
/// planted difference position and every planted zero position (and none), alignments varying.
pub fn exhaustive_cases(ir: &LoopIr) -> Vec<Case> {
    let mut rng = Rng::new(0x5eed_0e7a);
    let mut cases = Vec::new();
    for t in 0..=EXHAUSTIVE_TRIPS {
        let mut fills = vec![
            Fill::Letters,
            Fill::Small,
            Fill::Random,
            Fill::Mirror {
                diff: None,
                zero: None,
            },
        ];
        for p in 0..=t {
            fills.push(Fill::Mirror {
                diff: Some(p),
                zero: None,
            });
            fills.push(Fill::Mirror {
                diff: None,
                zero: Some(p),
            });
        }
        for (i, fill) in fills.into_iter().enumerate() {
            if let Some(c) = make_case(ir, &mut rng, t, fill, (t + i as u64) % 8) {
                cases.push(c);
            }
        }
    }
    cases
}

/// What running a candidate operation on a case gave.
fn run_op(op: &Op, args: &[Seed], plan_n: Option<u64>, case: &Case) -> Option<(Outcome, TestMem)> {
    let n = plan_n?;
    let vals: Vec<u64> = args.iter().map(|s| s.eval(&case.regs)).collect();
    let mut mem = case.mem.clone();
    let out = op.run(&vals, n, &mut mem)?;
    Some((out, mem))
}

/// What a candidate did on each case of the small set: its outcome and the memory after, if it
/// applied.
type Signature = Vec<Option<(Outcome, Vec<u8>)>>;

/// Synthesizes a plan for `ir`.
pub fn synthesize(ir: &LoopIr) -> Synthesis {
    let start = Instant::now();
    let mut stats = Stats::default();
    let fail = |stats: Stats, reason: String| Synthesis {
        plan: None,
        stats,
        reason: Some(reason),
    };
    let Some(iv) = ir.ivs.iter().find(|v| v.reg == ir.counted.iv) else {
        return fail(
            stats,
            "the counted exit's register is no induction variable".into(),
        );
    };
    let top_tested = ir.counted.at == 0 && ir.counted.at + 1 != ir.body.len();
    if ir.accesses.is_empty() {
        return fail(stats, "the loop touches no memory".into());
    }
    // Seeds: pointers (the first iteration's address of each access), inputs, constants.
    let mut ptrs: Vec<(Seed, bool, usize, i64)> = Vec::new();
    for a in &ir.accesses {
        let s = Seed::Ptr {
            base: Some(a.base).filter(|&b| b != a.iv),
            iv: a.iv,
            off: a.off,
        };
        // Accesses at one address of other sizes or strides stay apart: no operand then covers
        // them all, and the static check refuses every candidate.
        if !ptrs.contains(&(s, a.write, a.size, a.stride)) {
            ptrs.push((s, a.write, a.size, a.stride));
        }
    }
    let mut consts: Vec<u64> = vec![0, 1];
    for &(_, insn) in &ir.body {
        if let Insn::Jmp {
            src: moat_isa::Operand::Imm(i),
            ..
        }
        | Insn::Store {
            src: moat_isa::Operand::Imm(i),
            ..
        } = insn
        {
            let c = i64::from(i) as u64;
            if !consts.contains(&c) {
                consts.push(c);
            }
        }
    }
    let mut pool: Vec<Seed> = ptrs.iter().map(|p| p.0).collect();
    pool.extend(
        ir.live_in
            .iter()
            .filter(|&&r| r != 10)
            .map(|&r| Seed::Entry(r)),
    );
    pool.extend(consts.iter().map(|&c| Seed::Const(c)));
    pool.dedup();
    let mut rng = Rng::new(0x6d6f_6174 ^ ir.header as u64);
    let small = random_cases(ir, &mut rng, SMALL_CASES);
    let large = random_cases(ir, &mut rng, LARGE_CASES);
    if large.len() < LARGE_CASES / 2 {
        return fail(
            stats,
            "too few inputs on which the loop ends without fault".into(),
        );
    }
    let probe = Plan {
        op: Op::Copy { w: 1 },
        args: Vec::new(),
        counted: ir.counted,
        step: iv.step,
        top_tested,
        body_len: ir.body.len() as u64,
        exits: [None, None, None],
    };
    let ns = |cases: &[Case]| -> Vec<Option<u64>> {
        cases.iter().map(|c| probe.elements(&c.regs)).collect()
    };
    let (small_n, large_n) = (ns(&small), ns(&large));
    // Enumeration: every operation, every operand tuple from the pool.
    let mut survivors: Vec<(Op, Vec<Seed>)> = Vec::new();
    let mut seen: HashSet<Signature> = HashSet::new();
    for op in Op::all() {
        let kinds = op.operands();
        let mut idx = vec![0usize; kinds.len()];
        loop {
            stats.enumerated += 1;
            let args: Vec<Seed> = idx.iter().map(|&i| pool[i]).collect();
            match check_static(&op, kinds, &args, &ptrs) {
                Err(true) => stats.pruned_types += 1,
                Err(false) => stats.pruned_static += 1,
                Ok(()) => {
                    // Execution on the small set; then observational equivalence.
                    let mut sig = Vec::new();
                    let mut ok = true;
                    for (case, &n) in small.iter().zip(&small_n) {
                        let got = run_op(&op, &args, n, case);
                        if let Some((_, mem)) = &got {
                            if mem != &case.mem_after {
                                ok = false;
                                break;
                            }
                        }
                        sig.push(got.map(|(o, m)| (o, m.bytes)));
                    }
                    if !ok || !consistent(&small, sig.iter().map(|s| s.as_ref().map(|x| x.0))) {
                        stats.pruned_small += 1;
                    } else if !seen.insert(sig) {
                        stats.pruned_equivalent += 1;
                    } else {
                        survivors.push((op, args));
                    }
                }
            }
            // Next tuple.
            let mut k = 0;
            loop {
                if k == idx.len() {
                    break;
                }
                idx[k] += 1;
                if idx[k] < pool.len() {
                    break;
                }
                idx[k] = 0;
                k += 1;
            }
            if k == idx.len() {
                break;
            }
        }
    }
    let exhaustive = exhaustive_cases(ir);
    let mut reason = "no operation of the dialect matches the loop".to_string();
    let mut pruned = vec![false; survivors.len()];
    for (pass, max_term) in TERM_SIZES.into_iter().enumerate() {
        for (si, (op, args)) in survivors.iter().enumerate() {
            if pruned[si] {
                continue;
            }
            let (op, args) = (*op, args.clone());
            // The large set.
            let mut outs = Vec::new();
            let mut ok = true;
            let mut applicable = 0;
            for (case, &n) in large.iter().zip(&large_n) {
                let got = run_op(&op, &args, n, case);
                if let Some((o, mem)) = &got {
                    applicable += 1;
                    if mem != &case.mem_after {
                        ok = false;
                        break;
                    }
                    outs.push(Some((*o, mem.clone())));
                } else {
                    outs.push(None);
                }
            }
            if !ok
                || applicable * 4 < large.len() * 3
                || !consistent(&large, outs.iter().map(|o| o.as_ref().map(|x| x.0)))
            {
                stats.pruned_large += 1;
                pruned[si] = true;
                continue;
            }
            // Each class's exit and live-out terms.
            let mut exits: [Option<ExitPlan>; 3] = [None, None, None];
            let mut found_all = true;
            for class in 0..3u8 {
                let members: Vec<(&Case, &(Outcome, TestMem))> = large
                    .iter()
                    .zip(&outs)
                    .filter_map(|(c, o)| o.as_ref().filter(|o| o.0.class == class).map(|o| (c, o)))
                    .collect();
                let Some(first) = members.first() else {
                    continue;
                };
                let slot = first.0.exit;
                // Every member of the class ran the same instructions beyond its whole iterations.
                let body_len = ir.body.len() as u64;
                let extra = first
                    .0
                    .insns
                    .wrapping_sub(first.1 .0.idx.wrapping_mul(body_len));
                if members
                    .iter()
                    .any(|(c, o)| c.insns.wrapping_sub(o.0.idx.wrapping_mul(body_len)) != extra)
                {
                    found_all = false;
                    break;
                }
                let mut terms = Vec::new();
                // A loop-carried value (not an induction variable) that leaves the loop is the
                // operation's accumulator or nothing: checked before any term is enumerated.
                let carried_ok = ir
                    .live_out
                    .iter()
                    .filter(|r| ir.carried.contains(r))
                    .all(|&r| members.iter().all(|(c, o)| c.regs_after[r] == o.0.acc));
                if !carried_ok {
                    found_all = false;
                    break;
                }
                for &r in &ir.live_out {
                    if ir.carried.contains(&r) {
                        terms.push((r, Term::Acc));
                        continue;
                    }
                    let target: Vec<u64> = members.iter().map(|(c, _)| c.regs_after[r]).collect();
                    match find_term(
                        ir,
                        &ptrs,
                        &consts,
                        &members,
                        &target,
                        max_term,
                        &mut stats.terms,
                    ) {
                        Some(t) => terms.push((r, t)),
                        None => {
                            found_all = false;
                            break;
                        }
                    }
                }
                if !found_all {
                    break;
                }
                exits[usize::from(class)] = Some(ExitPlan {
                    slot,
                    outs: terms,
                    extra,
                });
            }
            if !found_all {
                if pass + 1 == TERM_SIZES.len() {
                    stats.pruned_outs += 1;
                }
                reason = format!("no term found for a live-out value (the last candidate: {op})");
                continue;
            }
            let plan = Plan {
                op,
                args,
                counted: ir.counted,
                step: iv.step,
                top_tested,
                body_len: ir.body.len() as u64,
                exits,
            };
            // The final check: the whole plan, on the bounded exhaustive set.
            match check_plan(ir, &plan, &exhaustive) {
                Ok(n) => {
                    stats.exhaustive_cases = n;
                    stats.micros = start.elapsed().as_micros() as u64;
                    return Synthesis {
                        plan: Some(plan),
                        stats,
                        reason: None,
                    };
                }
                Err(why) => {
                    stats.pruned_exhaustive += 1;
                    pruned[si] = true;
                    reason = format!("{op}: {why}");
                }
            }
        }
    }
    stats.micros = start.elapsed().as_micros() as u64;
    fail(stats, reason)
}

/// Static checks: `Err(true)` for a type error, `Err(false)` for widths, strides or memory.
fn check_static(
    op: &Op,
    kinds: &[Kind],
    args: &[Seed],
    ptrs: &[(Seed, bool, usize, i64)],
) -> Result<(), bool> {
    for (k, a) in kinds.iter().zip(args) {
        let is_ptr = matches!(a, Seed::Ptr { .. });
        if is_ptr != matches!(k, Kind::Read | Kind::Write) {
            return Err(true);
        }
    }
    let w = op.width();
    let mut used = Vec::new();
    for (k, a) in kinds.iter().zip(args) {
        let write = match k {
            Kind::Read => false,
            Kind::Write => true,
            Kind::Value => continue,
        };
        // The pointer must be one the loop accesses the same way, element-wide and contiguous.
        let Some(p) = ptrs.iter().find(|p| p.0 == *a && p.1 == write) else {
            return Err(false);
        };
        if p.2 != w || p.3 != w as i64 {
            return Err(false);
        }
        used.push(*p);
    }
    // Every access of the loop is one of the operation's.
    for p in ptrs {
        if !used.contains(p) {
            return Err(false);
        }
    }
    // Two operands for one access would read it twice.
    for (i, u) in used.iter().enumerate() {
        if used[..i].contains(u) {
            return Err(false);
        }
    }
    Ok(())
}

/// Whether outcomes of one class always left to the same exit.
fn consistent(cases: &[Case], outs: impl Iterator<Item = Option<Outcome>>) -> bool {
    let mut map: HashMap<u8, usize> = HashMap::new();
    for (case, o) in cases.iter().zip(outs) {
        if let Some(o) = o {
            if *map.entry(o.class).or_insert(case.exit) != case.exit {
                return false;
            }
        }
    }
    true
}

/// Bottom-up enumeration of terms, smallest first, with observational equivalence: the first term
/// whose values on `members` are `target`.
fn find_term(
    ir: &LoopIr,
    ptrs: &[(Seed, bool, usize, i64)],
    consts: &[u64],
    members: &[(&Case, &(Outcome, TestMem))],
    target: &[u64],
    max_term: usize,
    count: &mut u64,
) -> Option<Term> {
    let eval = |t: &Term| -> Option<Vec<u64>> {
        members
            .iter()
            .map(|(c, (o, m))| t.eval(&c.regs, o, m))
            .collect()
    };
    let mut leaves: Vec<Term> = vec![Term::Idx, Term::Acc];
    leaves.extend(ptrs.iter().map(|p| Term::Seed(p.0)));
    leaves.extend(ir.live_in.iter().map(|&r| Term::Seed(Seed::Entry(r))));
    leaves.extend(consts.iter().map(|&c| Term::Seed(Seed::Const(c))));
    let mut muls: Vec<u64> = ir
        .ivs
        .iter()
        .map(|v| v.step as u64)
        .chain(ir.accesses.iter().map(|a| a.size as u64))
        .filter(|&m| m > 1)
        .collect();
    muls.sort_unstable();
    muls.dedup();
    let mut loads: Vec<(Size, bool)> = ir
        .body
        .iter()
        .filter_map(|&(_, i)| match i {
            Insn::Load { size, signed, .. } => Some((size, signed)),
            _ => None,
        })
        .collect();
    loads.dedup();
    let mut seen: HashSet<Vec<u64>> = HashSet::new();
    let mut by_size: Vec<Vec<(Term, Vec<u64>)>> = vec![Vec::new()];
    let mut admit = |t: Term, level: &mut Vec<(Term, Vec<u64>)>, count: &mut u64| -> Option<Term> {
        *count += 1;
        let v = eval(&t)?;
        if v == target {
            return Some(t);
        }
        if seen.insert(v.clone()) {
            level.push((t, v));
        }
        None
    };
    let mut level = Vec::new();
    for t in leaves {
        if let Some(t) = admit(t, &mut level, count) {
            return Some(t);
        }
    }
    by_size.push(level);
    for size in 2..=max_term {
        let mut level = Vec::new();
        for (t, _) in by_size[size - 1].clone() {
            if !matches!(t, Term::Seed(Seed::Const(_))) {
                for &m in &muls {
                    if let Some(t) = admit(Term::Mul(Box::new(t.clone()), m), &mut level, count) {
                        return Some(t);
                    }
                }
            }
            for &(sz, sg) in &loads {
                if let Some(t) = admit(Term::Load(Box::new(t.clone()), sz, sg), &mut level, count) {
                    return Some(t);
                }
            }
        }
        for i in 1..size - 1 {
            let j = size - 1 - i;
            if i > j {
                break;
            }
            let (a, b) = (by_size[i].clone(), by_size[j].clone());
            for (x, (ta, _)) in a.iter().enumerate() {
                for (y, (tb, _)) in b.iter().enumerate() {
                    if i == j && y < x {
                        continue;
                    }
                    let t = Term::Add(Box::new(ta.clone()), Box::new(tb.clone()));
                    if let Some(t) = admit(t, &mut level, count) {
                        return Some(t);
                    }
                }
            }
        }
        by_size.push(level);
    }
    None
}

/// Runs the whole plan against the loop on `cases`: same exit, same live-out registers, same
/// memory; where the plan does not apply, the loop runs (correct by construction) and the case is
/// not counted. Returns the number of cases where it applied.
pub fn check_plan(ir: &LoopIr, plan: &Plan, cases: &[Case]) -> Result<u64, String> {
    let mut applied = 0;
    for case in cases {
        let mut regs = case.regs;
        let mut mem = case.mem.clone();
        let Some(raised) = plan.run(&mut regs, &mut mem, u64::MAX) else {
            continue;
        };
        applied += 1;
        if raised.exit != case.exit {
            return Err(format!(
                "left to {}, the loop to {}",
                raised.exit, case.exit
            ));
        }
        if raised.insns != case.insns {
            return Err(format!(
                "counts {} instructions, the loop runs {}",
                raised.insns, case.insns
            ));
        }
        if mem != case.mem_after {
            return Err("memory differs".into());
        }
        for &r in &ir.live_out {
            if regs[r] != case.regs_after[r] {
                return Err(format!(
                    "r{r} = {:#x}, the loop's {:#x}",
                    regs[r], case.regs_after[r]
                ));
            }
        }
    }
    if applied * 2 < cases.len() as u64 {
        return Err(format!(
            "applies to only {applied} of {} exhaustive cases",
            cases.len()
        ));
    }
    Ok(applied)
}
