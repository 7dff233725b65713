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
                    s.iter().position(|&b| b != v as u8)
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
    // Skip 64-byte blocks that are equal and (for strings) hold no zero element: memcmp and
    // memchr run vectorised.
    const BLOCK: usize = 64;
    let mut start = 0;
    if w == 1 {
        while start + BLOCK <= a.len() {
            let (x, y) = (&a[start..start + BLOCK], &b[start..start + BLOCK]);
            if x != y || (nul != Nul::None && memchr::memchr(0, x).is_some()) {
                break;
            }
            start += BLOCK;
        }
    }
    for (k, (x, y)) in a[start..]
        .chunks_exact(w)
        .zip(b[start..].chunks_exact(w))
        .enumerate()
    {
        let k = start / w + k;
        let (x, y) = (elem(x), elem(y));
        match nul {
            Nul::Before if x == 0 => return Some(hit(2, k)),
            _ => {}
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

fn reduce(s: &[u8], kind: ReduceKind, w: usize, be: bool, narrow: bool, init: u64) -> u64 {
    let step = |acc: u64, x: u64| -> u64 {
        let r = match kind {
            ReduceKind::Add => acc.wrapping_add(x),
            ReduceKind::Xor => acc ^ x,
            ReduceKind::Or => acc | x,
            ReduceKind::And => acc & x,
            ReduceKind::Min => acc.min(x),
            ReduceKind::Max => acc.max(x),
        };
        if narrow {
            r & 0xffff_ffff
        } else {
            r
        }
    };
    let init = if narrow { init & 0xffff_ffff } else { init };
    // The common cases in forms the compiler vectorises; wrapping addition is associative, so
    // the order of the sum does not matter (nor does it for the bitwise kinds, min and max).
    match (kind, w, be) {
        (ReduceKind::Add, 1, _) => {
            let sum = s.iter().fold(0u64, |a, &b| a.wrapping_add(u64::from(b)));
            step(init, sum)
        }
        (ReduceKind::Add, 2, false) => {
            let sum = s.chunks_exact(2).fold(0u64, |a, c| {
                a.wrapping_add(u64::from(u16::from_le_bytes([c[0], c[1]])))
            });
            step(init, sum)
        }
        (ReduceKind::Add, 2, true) => {
            let sum = s.chunks_exact(2).fold(0u64, |a, c| {
                a.wrapping_add(u64::from(u16::from_be_bytes([c[0], c[1]])))
            });
            step(init, sum)
        }
        _ => s.chunks_exact(w).fold(init, |acc, c| {
            let mut x = elem(c);
            if be {
                x = x.swap_bytes() >> (64 - 8 * w);
            }
            step(acc, x)
        }),
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
