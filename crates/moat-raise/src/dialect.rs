//! The target dialect: high-level operations over `n` elements of `w` bytes (1, 2, 4 or 8) at
//! consecutive addresses, each with precise semantics and a fast native implementation.
//!
//! Every operation reads and writes exactly the `n * w` bytes starting at each of its pointer
//! operands (all of them, whatever its result: the JIT checks these whole ranges before it runs
//! one), and ends in a *class* — 0 (`End`: every element processed) or an early exit — with an
//! index (`idx`: the element the early exit happened at, `n` for `End`) and an accumulator
//! (`acc`). Elements are read little-endian, or big-endian where the operation says so.
//!
//! | op | operands | semantics |
//! |---|---|---|
//! | `copy.w` | dst, src | `dst[k] = src[k]` for `k < n`; src and dst do not overlap (else not applicable) |
//! | `fill.w` | dst, v | `dst[k] = v` (its low `w` bytes) |
//! | `find.w` | p, v | first `k` with `p[k] == v` (class 1), else `End` |
//! | `skip.w` | p, v | first `k` with `p[k] != v` (class 1), else `End` |
//! | `first_diff.w` | a, b | first `k` with `a[k] != b[k]` (class 1), else `End` |
//! | `first_diff_nul.w` | a, b | first `k` with `a[k] != b[k]` (class 1) or then `a[k] == 0` (class 2) |
//! | `nul_first_diff.w` | a, b | first `k` with `a[k] == 0` (class 2) or then `a[k] != b[k]` (class 1) |
//! | `count.w` | p, v, init | `acc = init + #{k : p[k] == v}` |
//! | `reduce.kind.w[.be][.32]` | p, init | `acc = init ∘ p[0] ∘ … ∘ p[n-1]`, wrapping at 64 (or 32) bits |
//!
//! `kind` is one of add, xor, or, and, min, max (unsigned). Big-endian elements are byte-swapped
//! before use; `.32` reductions keep the accumulator to 32 bits after each step.

use crate::ir::Memory;

/// A reduction's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    /// Wrapping addition.
    Add,
    /// Exclusive or.
    Xor,
    /// Or.
    Or,
    /// And.
    And,
    /// Unsigned minimum.
    Min,
    /// Unsigned maximum.
    Max,
}

/// Which string check a first-difference operation makes, and in which order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nul {
    /// No zero check.
    None,
    /// Difference first, then `a[k] == 0`.
    After,
    /// `a[k] == 0` first, then the difference.
    Before,
}

/// One operation of the dialect (its operands are given apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `copy.w dst, src`.
    Copy {
        /// Element bytes.
        w: usize,
    },
    /// `fill.w dst, v`.
    Fill {
        /// Element bytes.
        w: usize,
    },
    /// `find.w p, v` (`eq`) or `skip.w p, v`.
    Find {
        /// Element bytes.
        w: usize,
        /// Find equal (true) or different (false) elements.
        eq: bool,
    },
    /// `first_diff.w a, b` and its string forms.
    FirstDiff {
        /// Element bytes.
        w: usize,
        /// The zero check.
        nul: Nul,
    },
    /// `count.w p, v, init`.
    Count {
        /// Element bytes.
        w: usize,
    },
    /// `reduce.kind.w p, init`.
    Reduce {
        /// The operation.
        kind: ReduceKind,
        /// Element bytes.
        w: usize,
        /// Big-endian elements.
        be: bool,
        /// 32-bit accumulator.
        narrow: bool,
    },
}

/// What an operand of an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A pointer the operation reads `n * w` bytes at.
    Read,
    /// A pointer the operation writes `n * w` bytes at.
    Write,
    /// A number.
    Value,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// 0: every element processed; otherwise the early exit's class.
    pub class: u8,
    /// The element of the early exit (`n` for class 0).
    pub idx: u64,
    /// The accumulator (0 where the operation has none).
    pub acc: u64,
}

impl Op {
    /// The operand kinds, in order.
    pub fn operands(&self) -> &'static [Kind] {
        match self {
            Op::Copy { .. } => &[Kind::Write, Kind::Read],
            Op::Fill { .. } => &[Kind::Write, Kind::Value],
            Op::Find { .. } => &[Kind::Read, Kind::Value],
            Op::FirstDiff { .. } => &[Kind::Read, Kind::Read],
            Op::Count { .. } => &[Kind::Read, Kind::Value, Kind::Value],
            Op::Reduce { .. } => &[Kind::Read, Kind::Value],
        }
    }

    /// Element bytes.
    pub fn width(&self) -> usize {
        match *self {
            Op::Copy { w }
            | Op::Fill { w }
            | Op::Find { w, .. }
            | Op::FirstDiff { w, .. }
            | Op::Count { w }
            | Op::Reduce { w, .. } => w,
        }
    }

    /// Every operation of the dialect.
    pub fn all() -> Vec<Op> {
        let mut v = Vec::new();
        for w in [1, 2, 4, 8] {
            v.push(Op::Copy { w });
            v.push(Op::Fill { w });
            v.push(Op::Find { w, eq: true });
            v.push(Op::Find { w, eq: false });
            for nul in [Nul::None, Nul::After, Nul::Before] {
                v.push(Op::FirstDiff { w, nul });
            }
            v.push(Op::Count { w });
            for kind in [
                ReduceKind::Add,
                ReduceKind::Xor,
                ReduceKind::Or,
                ReduceKind::And,
                ReduceKind::Min,
                ReduceKind::Max,
            ] {
                for be in [false, true] {
                    for narrow in [false, true] {
                        if w == 1 && be {
                            continue;
                        }
                        v.push(Op::Reduce {
                            kind,
                            w,
                            be,
                            narrow,
                        });
                    }
                }
            }
        }
        v
    }

    /// Runs the operation on `n` elements with `args` (pointers and values, per
    /// [`Op::operands`]). `None` when it does not apply (overlapping copy, memory not accessible):
    /// nothing was then read or written.
    pub fn run(&self, args: &[u64], n: u64, mem: &mut dyn Memory) -> Option<Outcome> {
        let w = self.width() as u64;
        let bytes = n.checked_mul(w)?;
        let end = |class, idx| Outcome { class, idx, acc: 0 };
        match *self {
            Op::Copy { .. } => {
                let (dst, src) = (*args.first()?, *args.get(1)?);
                if dst < src.checked_add(bytes)? && src < dst.checked_add(bytes)? && bytes > 0 {
                    return None;
                }
                mem.copy(dst, src, bytes)?;
                Some(end(0, n))
            }
            Op::Fill { w } => {
                let (dst, v) = (*args.first()?, *args.get(1)?);
                let out = mem.write(dst, bytes)?;
                if w == 1 {
                    out.fill(v as u8);
                } else {
                    let pat = &v.to_le_bytes()[..w];
                    for c in out.chunks_exact_mut(w) {
                        c.copy_from_slice(pat);
                    }
                }
                Some(end(0, n))
            }
            Op::Find { w, eq } => {
                let (p, v) = (*args.first()?, *args.get(1)?);
                let s = mem.read(p, bytes)?;
                let found = if w == 1 && eq {
                    memchr::memchr(v as u8, s)
                } else if w == 1 {
                    skip_byte(s, v as u8)
                } else {
                    let v = v & mask(w);
                    s.chunks_exact(w).position(|c| (elem(c) == v) == eq)
                };
                Some(match found {
                    Some(k) => end(1, k as u64),
                    None => end(0, n),
                })
            }
            Op::FirstDiff { w, nul } => {
                let (a, b) = (*args.first()?, *args.get(1)?);
                let (sa, sb) = (mem.read(a, bytes)?, mem.read(b, bytes)?);
                Some(first_diff(sa, sb, w, nul).unwrap_or(end(0, n)))
            }
            Op::Count { w } => {
                let (p, v, init) = (*args.first()?, *args.get(1)?, *args.get(2)?);
                let s = mem.read(p, bytes)?;
                let c = if w == 1 {
                    let v = v as u8;
                    s.iter().filter(|&&b| b == v).count()
                } else {
                    let v = v & mask(w);
                    s.chunks_exact(w).filter(|c| elem(c) == v).count()
                };
                Some(Outcome {
                    class: 0,
                    idx: n,
                    acc: init.wrapping_add(c as u64),
                })
            }
            Op::Reduce {
                kind,
                w,
                be,
                narrow,
            } => {
                let (p, init) = (*args.first()?, *args.get(1)?);
                let s = mem.read(p, bytes)?;
                Some(Outcome {
                    class: 0,
                    idx: n,
                    acc: reduce(s, kind, w, be, narrow, init),
                })
            }
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Op::Copy { w } => write!(f, "copy.{w}"),
            Op::Fill { w } => write!(f, "fill.{w}"),
            Op::Find { w, eq: true } => write!(f, "find.{w}"),
            Op::Find { w, eq: false } => write!(f, "skip.{w}"),
            Op::FirstDiff { w, nul } => match nul {
                Nul::None => write!(f, "first_diff.{w}"),
                Nul::After => write!(f, "first_diff_nul.{w}"),
                Nul::Before => write!(f, "nul_first_diff.{w}"),
            },
            Op::Count { w } => write!(f, "count.{w}"),
            Op::Reduce {
                kind,
                w,
                be,
                narrow,
            } => {
                let k = format!("{kind:?}").to_lowercase();
                write!(f, "reduce.{k}.{w}")?;
                if be {
                    write!(f, ".be")?;
                }
                if narrow {
                    write!(f, ".32")?;
                }
                Ok(())
            }
        }
    }
}

fn mask(w: usize) -> u64 {
    if w >= 8 {
        u64::MAX
    } else {
        (1u64 << (w * 8)) - 1
    }
}

/// The first byte of `s` other than `v`, eight at a time.
fn skip_byte(s: &[u8], v: u8) -> Option<usize> {
    let splat = u64::from_le_bytes([v; 8]);
    let mut start = 0;
    for c in s.chunks_exact(8) {
        let x = u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) ^ splat;
        if x != 0 {
            return Some(start + x.trailing_zeros() as usize / 8);
        }
        start += 8;
    }
    s[start..].iter().position(|&b| b != v).map(|k| start + k)
}

/// The little-endian value of a chunk of at most 8 bytes.
fn elem(c: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = c.len().min(8);
    b[..n].copy_from_slice(&c[..n]);
    u64::from_le_bytes(b)
}

fn first_diff(a: &[u8], b: &[u8], w: usize, nul: Nul) -> Option<Outcome> {
    let hit = |class, idx: usize| Outcome {
        class,
        idx: idx as u64,
        acc: 0,
    };
    let mut start = 0;
    if w == 1 {
        // Eight bytes at a time: the first differing byte is the lowest set byte of `x ^ y`, the
        // first zero byte of `x` the lowest flagged by the zero-byte test (which may also flag
        // bytes above a zero, never below one).
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
            let x = u64::from_le_bytes(x.try_into().unwrap_or([0; 8]));
            let y = u64::from_le_bytes(y.try_into().unwrap_or([0; 8]));
            let diff = x ^ y;
            let zero = if nul == Nul::None {
                0
            } else {
                x.wrapping_sub(LO) & !x & HI
            };
            if diff | zero != 0 {
                let d = if diff == 0 {
                    8
                } else {
                    diff.trailing_zeros() / 8
                };
                let z = if zero == 0 {
                    8
                } else {
                    zero.trailing_zeros() / 8
                };
                let (class, k) = match nul {
                    Nul::None => (1, d),
                    Nul::After if d <= z => (1, d),
                    Nul::Before if d < z => (1, d),
                    _ => (2, z),
                };
                return Some(hit(class, start + k as usize));
            }
            start += 8;
        }
    }
    for (k, (x, y)) in a[start..]
        .chunks_exact(w)
        .zip(b[start..].chunks_exact(w))
        .enumerate()
    {
        let k = start / w + k;
        let (x, y) = (elem(x), elem(y));
        if nul == Nul::Before && x == 0 {
            return Some(hit(2, k));
        }
        if x != y {
            return Some(hit(1, k));
        }
        if nul == Nul::After && x == 0 {
            return Some(hit(2, k));
        }
    }
    None
}

/// Element `c` (`W` bytes) as a number, in either byte order.
#[inline(always)]
fn load<const W: usize, const BE: bool>(c: &[u8]) -> u64 {
    match W {
        1 => u64::from(c[0]),
        2 => {
            let b = [c[0], c[1]];
            u64::from(if BE {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            })
        }
        4 => {
            let b = [c[0], c[1], c[2], c[3]];
            u64::from(if BE {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            })
        }
        _ => {
            let b = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
            if BE {
                u64::from_be_bytes(b)
            } else {
                u64::from_le_bytes(b)
            }
        }
    }
}

/// `e0 ∘ e1 ∘ …` over the `W`-byte elements of `s` for an associative and commutative `f` with
/// identity `id`: eight independent accumulators, which the compiler keeps in vector registers.
#[inline(always)]
fn fold_lanes<const W: usize, const BE: bool>(
    s: &[u8],
    id: u64,
    f: impl Fn(u64, u64) -> u64,
) -> u64 {
    let mut acc = [id; 8];
    let mut blocks = s.chunks_exact(8 * W);
    for block in &mut blocks {
        for (l, c) in acc.iter_mut().zip(block.chunks_exact(W)) {
            *l = f(*l, load::<W, BE>(c));
        }
    }
    let mut r = acc.into_iter().fold(id, &f);
    for c in blocks.remainder().chunks_exact(W) {
        r = f(r, load::<W, BE>(c));
    }
    r
}

/// The sum of the 1- or 2-byte elements of `s`: sixteen 32-bit accumulators over blocks of 64 KiB
/// (which cannot overflow them: 4 096 elements of at most 65 535 each), widened per block.
#[inline(always)]
fn sum_narrow<const W: usize, const BE: bool>(s: &[u8]) -> u64 {
    let mut total = 0u64;
    for chunk in s.chunks(1 << 16) {
        let mut acc = [0u32; 16];
        let mut blocks = chunk.chunks_exact(16 * W);
        for block in &mut blocks {
            for (l, c) in acc.iter_mut().zip(block.chunks_exact(W)) {
                *l = l.wrapping_add(load::<W, BE>(c) as u32);
            }
        }
        total = total.wrapping_add(acc.iter().map(|&x| u64::from(x)).sum::<u64>());
        for c in blocks.remainder().chunks_exact(W) {
            total = total.wrapping_add(load::<W, BE>(c));
        }
    }
    total
}

fn reduce_w<const W: usize, const BE: bool>(
    s: &[u8],
    kind: ReduceKind,
    narrow: bool,
    init: u64,
) -> u64 {
    let cut = |v: u64| if narrow { v & 0xffff_ffff } else { v };
    let init = cut(init);
    // Wrapping addition and the bitwise kinds are associative and commutative, and commute with
    // cutting to 32 bits at the end; minimum and maximum run in order, cut at each step.
    match kind {
        ReduceKind::Add if W <= 2 => cut(init.wrapping_add(sum_narrow::<W, BE>(s))),
        ReduceKind::Add => cut(init.wrapping_add(fold_lanes::<W, BE>(s, 0, u64::wrapping_add))),
        ReduceKind::Xor => cut(init ^ fold_lanes::<W, BE>(s, 0, |a, x| a ^ x)),
        ReduceKind::Or => cut(init | fold_lanes::<W, BE>(s, 0, |a, x| a | x)),
        ReduceKind::And => cut(init & fold_lanes::<W, BE>(s, u64::MAX, |a, x| a & x)),
        ReduceKind::Min => s
            .chunks_exact(W)
            .fold(init, |a, c| cut(a.min(load::<W, BE>(c)))),
        ReduceKind::Max => s
            .chunks_exact(W)
            .fold(init, |a, c| cut(a.max(load::<W, BE>(c)))),
    }
}

fn reduce(s: &[u8], kind: ReduceKind, w: usize, be: bool, narrow: bool, init: u64) -> u64 {
    match (w, be) {
        (1, _) => reduce_w::<1, false>(s, kind, narrow, init),
        (2, false) => reduce_w::<2, false>(s, kind, narrow, init),
        (2, true) => reduce_w::<2, true>(s, kind, narrow, init),
        (4, false) => reduce_w::<4, false>(s, kind, narrow, init),
        (4, true) => reduce_w::<4, true>(s, kind, narrow, init),
        (_, false) => reduce_w::<8, false>(s, kind, narrow, init),
        (_, true) => reduce_w::<8, true>(s, kind, narrow, init),
    }
}

#[cfg(test)]
mod tests {
    //! Every operation against a naive, element-by-element reading of its specification (the
    //! table above), on random data with planted zeros and differences, every width, lengths 0 to
    //! 200 (past the 64-byte blocks of the vectorised paths).

    use super::*;
    use crate::synth::{Rng, TestMem};

    fn el(m: &TestMem, p: u64, k: u64, w: usize, be: bool) -> u64 {
        let at = p + k * w as u64;
        let b = m.read(at, w as u64).expect("in range");
        let mut x = elem(b);
        if be {
            x = x.swap_bytes() >> (64 - 8 * w);
        }
        x
    }

    /// The specification, one element at a time.
    fn naive(op: Op, args: &[u64], n: u64, m: &mut TestMem) -> Outcome {
        let w = op.width();
        let end = |class, idx, acc| Outcome { class, idx, acc };
        match op {
            Op::Copy { .. } => {
                for k in 0..n {
                    let v = el(m, args[1], k, w, false);
                    let at = args[0] + k * w as u64;
                    let out = m.write(at, w as u64).expect("in range");
                    out.copy_from_slice(&v.to_le_bytes()[..w]);
                }
                end(0, n, 0)
            }
            Op::Fill { .. } => {
                for k in 0..n {
                    let at = args[0] + k * w as u64;
                    let out = m.write(at, w as u64).expect("in range");
                    out.copy_from_slice(&args[1].to_le_bytes()[..w]);
                }
                end(0, n, 0)
            }
            Op::Find { eq, .. } => (0..n)
                .find(|&k| (el(m, args[0], k, w, false) == args[1] & mask(w)) == eq)
                .map_or(end(0, n, 0), |k| end(1, k, 0)),
            Op::FirstDiff { nul, .. } => {
                for k in 0..n {
                    let (a, b) = (el(m, args[0], k, w, false), el(m, args[1], k, w, false));
                    if nul == Nul::Before && a == 0 {
                        return end(2, k, 0);
                    }
                    if a != b {
                        return end(1, k, 0);
                    }
                    if nul == Nul::After && a == 0 {
                        return end(2, k, 0);
                    }
                }
                end(0, n, 0)
            }
            Op::Count { .. } => {
                let c = (0..n)
                    .filter(|&k| el(m, args[0], k, w, false) == args[1] & mask(w))
                    .count() as u64;
                end(0, n, args[2].wrapping_add(c))
            }
            Op::Reduce {
                kind, be, narrow, ..
            } => {
                let cut = |v: u64| if narrow { v & 0xffff_ffff } else { v };
                let mut acc = cut(args[1]);
                for k in 0..n {
                    let x = el(m, args[0], k, w, be);
                    acc = cut(match kind {
                        ReduceKind::Add => acc.wrapping_add(x),
                        ReduceKind::Xor => acc ^ x,
                        ReduceKind::Or => acc | x,
                        ReduceKind::And => acc & x,
                        ReduceKind::Min => acc.min(x),
                        ReduceKind::Max => acc.max(x),
                    });
                }
                end(0, n, acc)
            }
        }
    }

    #[test]
    fn operations_match_their_specification() {
        let mut rng = Rng::new(42);
        let base = 0x4000u64;
        for op in Op::all() {
            for round in 0..60u64 {
                let n = if round < 20 { round } else { rng.below(201) };
                let mut bytes: Vec<u8> = (0..4096).map(|_| b'a' + rng.below(2) as u8).collect();
                if round % 3 == 0 {
                    bytes.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
                }
                // Two areas that are equal but for planted changes.
                let (p, q) = (base + rng.below(16), base + 2048 + rng.below(16));
                let (ps, qs) = ((p - base) as usize, (q - base) as usize);
                let copy: Vec<u8> = bytes[ps..ps + 1800].to_vec();
                bytes[qs..qs + 1800].copy_from_slice(&copy);
                for _ in 0..rng.below(3) {
                    let at = rng.below(4096) as usize;
                    bytes[at] = if rng.below(2) == 0 { 0 } else { b'z' };
                }
                let v =
                    [0, u64::from(b'a'), u64::from(b'b'), rng.next_u64()][rng.below(4) as usize];
                let args: Vec<u64> = op
                    .operands()
                    .iter()
                    .enumerate()
                    .map(|(i, k)| match (i, k) {
                        (0, Kind::Read | Kind::Write) => q,
                        (_, Kind::Read | Kind::Write) => p,
                        _ => v ^ (i as u64 - 1),
                    })
                    .collect();
                let mut fast = TestMem { base, bytes };
                let mut slow = fast.clone();
                let got = op.run(&args, n, &mut fast).expect("applies");
                let want = naive(op, &args, n, &mut slow);
                assert_eq!(got, want, "{op} n={n} args={args:x?}");
                assert!(fast == slow, "{op} n={n}: memory");
            }
        }
    }

    #[test]
    fn operations_decline_overlap_and_inaccessible_memory_untouched() {
        let mut m = TestMem {
            base: 0x1000,
            bytes: vec![7u8; 64],
        };
        let before = m.clone();
        assert_eq!(Op::Copy { w: 1 }.run(&[0x1001, 0x1000], 8, &mut m), None);
        assert_eq!(Op::Fill { w: 4 }.run(&[0x1000, 0], 17, &mut m), None);
        assert_eq!(Op::Copy { w: 8 }.run(&[0x1000, 0x1020], 5, &mut m), None);
        assert!(m == before);
    }
}
