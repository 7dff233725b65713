//! Abstract scalars: a tnum plus unsigned and signed 64-bit intervals, kept consistent with each other,
//! and the transfer functions of ALU operations and the refinements of conditional branches.
//!
//! 32-bit operations are modelled on the zero-extended low half: an operand whose value may exceed
//! 32 bits is first widened to "any 32-bit value", and a 32-bit result that may wrap becomes any
//! 32-bit value. This is coarser than the kernel's separate 32-bit bounds but sound.

use crate::tnum::Tnum;
use moat_isa::{AluOp, JmpCond, Width};

/// The set of values a scalar register may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scalar {
    /// Known bits.
    pub tnum: Tnum,
    /// Unsigned minimum.
    pub umin: u64,
    /// Unsigned maximum.
    pub umax: u64,
    /// Signed minimum.
    pub smin: i64,
    /// Signed maximum.
    pub smax: i64,
}

impl Scalar {
    /// Any 64-bit value.
    pub const UNKNOWN: Scalar = Scalar {
        tnum: Tnum::UNKNOWN,
        umin: 0,
        umax: u64::MAX,
        smin: i64::MIN,
        smax: i64::MAX,
    };

    /// Exactly `v`.
    pub fn constant(v: u64) -> Scalar {
        Scalar {
            tnum: Tnum::constant(v),
            umin: v,
            umax: v,
            smin: v as i64,
            smax: v as i64,
        }
    }

    /// Any value in `[lo, hi]` (unsigned).
    pub fn urange(lo: u64, hi: u64) -> Scalar {
        Scalar {
            tnum: Tnum::range(lo, hi),
            umin: lo,
            umax: hi,
            smin: i64::MIN,
            smax: i64::MAX,
        }
        .normalize()
    }

    /// Any value in `[lo, hi]` (signed).
    pub fn srange(lo: i64, hi: i64) -> Scalar {
        Scalar {
            smin: lo,
            smax: hi,
            ..Scalar::UNKNOWN
        }
        .normalize()
    }

    /// Any 32-bit value, zero-extended.
    pub fn any_u32() -> Scalar {
        Scalar::urange(0, u64::from(u32::MAX))
    }

    /// The single value, if known.
    pub fn as_const(&self) -> Option<u64> {
        (self.umin == self.umax).then_some(self.umin)
    }

    /// Whether `self` holds every value `other` may hold.
    pub fn contains(&self, other: &Scalar) -> bool {
        self.umin <= other.umin
            && self.umax >= other.umax
            && self.smin <= other.smin
            && self.smax >= other.smax
            && self.tnum.contains(other.tnum)
    }

    /// Every value either may hold.
    pub fn union(&self, o: &Scalar) -> Scalar {
        Scalar {
            tnum: self.tnum.union(o.tnum),
            umin: self.umin.min(o.umin),
            umax: self.umax.max(o.umax),
            smin: self.smin.min(o.smin),
            smax: self.smax.max(o.smax),
        }
        .normalize()
    }

    /// Makes the tnum and both intervals agree (the kernel's `reg_bounds_sync`). Returns `None` when
    /// the constraints are contradictory (an impossible branch).
    pub fn try_normalize(mut self) -> Option<Scalar> {
        for _ in 0..2 {
            // Tnum -> intervals.
            self.umin = self.umin.max(self.tnum.min());
            self.umax = self.umax.min(self.tnum.max());
            // Signed from unsigned when the unsigned range does not cross the sign boundary.
            if (self.umin as i64) <= (self.umax as i64) {
                self.smin = self.smin.max(self.umin as i64);
                self.smax = self.smax.min(self.umax as i64);
            }
            // Unsigned from signed when the signed range does not cross zero.
            if (self.smin as u64) <= (self.smax as u64) {
                self.umin = self.umin.max(self.smin as u64);
                self.umax = self.umax.min(self.smax as u64);
            }
            if self.umin > self.umax || self.smin > self.smax {
                return None;
            }
            // Intervals -> tnum.
            self.tnum = self.tnum.intersect(Tnum::range(self.umin, self.umax));
            if self.tnum.value & self.tnum.mask != 0 {
                return None;
            }
        }
        if self.tnum.min() > self.umax || self.tnum.max() < self.umin {
            return None;
        }
        Some(self)
    }

    /// [`try_normalize`](Scalar::try_normalize), falling back to the unnormalised value (still sound).
    pub fn normalize(self) -> Scalar {
        self.try_normalize().unwrap_or(self)
    }

    /// The zero-extended low 32 bits.
    pub fn low32(&self) -> Scalar {
        if self.umax <= u64::from(u32::MAX) {
            *self
        } else {
            Scalar {
                tnum: self.tnum.cast32(),
                ..Scalar::any_u32()
            }
            .normalize()
        }
    }

    /// Sign-extends the low `bits` bits.
    pub fn sign_extend(&self, bits: u32) -> Scalar {
        let half = 1u64 << (bits - 1);
        if self.umax < half {
            return *self;
        }
        let lo = -(half as i64);
        Scalar {
            smin: lo,
            smax: half as i64 - 1,
            ..Scalar::UNKNOWN
        }
        .normalize()
    }

    /// The result of `self op src` at `width`; `None` for operations the caller must reject.
    pub fn alu(&self, op: AluOp, src: &Scalar, width: Width) -> Scalar {
        if width == Width::W32 {
            let (a, b) = (self.low32(), src.low32());
            let r = a.alu(op, &b, Width::W64);
            return match op {
                // 32-bit shifts use the low 5 bits of the count.
                AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => shift32(&a, op, &b),
                AluOp::MovSx(bits) => {
                    let ext = a_movsx(src, bits.bits());
                    ext.low32()
                }
                // Signed 32-bit division differs from 64-bit division of zero-extended values.
                AluOp::SDiv | AluOp::SMod => match (a.as_const(), b.as_const()) {
                    (Some(x), Some(y)) => {
                        let (x, y) = (x as u32 as i32, y as u32 as i32);
                        let v = match (op, y) {
                            (AluOp::SDiv, 0) => 0,
                            (AluOp::SDiv, _) => x.wrapping_div(y),
                            (_, 0) => x,
                            _ => x.wrapping_rem(y),
                        };
                        Scalar::constant(u64::from(v as u32))
                    }
                    _ => Scalar::any_u32(),
                },
                _ => r.low32_result(),
            };
        }
        let (a, b) = (self, src);
        let r = match op {
            AluOp::Mov => *b,
            AluOp::MovSx(bits) => a_movsx(b, bits.bits()),
            AluOp::Add => {
                let tnum = a.tnum.add(b.tnum);
                let (umin, o1) = a.umin.overflowing_add(b.umin);
                let (umax, o2) = a.umax.overflowing_add(b.umax);
                let (smin, o3) = a.smin.overflowing_add(b.smin);
                let (smax, o4) = a.smax.overflowing_add(b.smax);
                let mut s = Scalar {
                    tnum,
                    ..Scalar::UNKNOWN
                };
                if !o1 && !o2 {
                    s.umin = umin;
                    s.umax = umax;
                }
                if !o3 && !o4 {
                    s.smin = smin;
                    s.smax = smax;
                }
                s
            }
            AluOp::Sub => {
                let tnum = a.tnum.sub(b.tnum);
                let mut s = Scalar {
                    tnum,
                    ..Scalar::UNKNOWN
                };
                if a.umin >= b.umax {
                    s.umin = a.umin - b.umax;
                    s.umax = a.umax - b.umin;
                }
                let (smin, o1) = a.smin.overflowing_sub(b.smax);
                let (smax, o2) = a.smax.overflowing_sub(b.smin);
                if !o1 && !o2 {
                    s.smin = smin;
                    s.smax = smax;
                }
                s
            }
            AluOp::Mul => {
                let tnum = a.tnum.mul(b.tnum);
                let mut s = Scalar {
                    tnum,
                    ..Scalar::UNKNOWN
                };
                if let Some(umax) = a.umax.checked_mul(b.umax) {
                    s.umin = a.umin.saturating_mul(b.umin);
                    s.umax = umax;
                }
                s
            }
            AluOp::And => {
                let tnum = a.tnum.and(b.tnum);
                Scalar {
                    tnum,
                    umin: tnum.min(),
                    umax: a.umax.min(b.umax).min(tnum.max()),
                    ..Scalar::UNKNOWN
                }
            }
            AluOp::Or => {
                let tnum = a.tnum.or(b.tnum);
                Scalar {
                    tnum,
                    umin: a.umin.max(b.umin).max(tnum.min()),
                    umax: tnum.max(),
                    ..Scalar::UNKNOWN
                }
            }
            AluOp::Xor => Scalar {
                tnum: a.tnum.xor(b.tnum),
                ..Scalar::UNKNOWN
            },
            AluOp::Lsh => match b.as_const() {
                Some(n) => {
                    let n = (n & 63) as u32;
                    let mut s = Scalar {
                        tnum: a.tnum.lshift(n),
                        ..Scalar::UNKNOWN
                    };
                    if n == 0 || a.umax.leading_zeros() >= n {
                        s.umin = a.umin << n;
                        s.umax = a.umax << n;
                    }
                    s
                }
                None => Scalar::UNKNOWN,
            },
            AluOp::Rsh => match b.as_const() {
                Some(n) => {
                    let n = (n & 63) as u32;
                    Scalar {
                        tnum: a.tnum.rshift(n),
                        umin: a.umin >> n,
                        umax: a.umax >> n,
                        ..Scalar::UNKNOWN
                    }
                }
                None => Scalar::urange(0, a.umax),
            },
            AluOp::Arsh => match b.as_const() {
                Some(n) => {
                    let n = (n & 63) as u32;
                    Scalar {
                        tnum: a.tnum.arshift(n, 64),
                        smin: a.smin >> n,
                        smax: a.smax >> n,
                        ..Scalar::UNKNOWN
                    }
                }
                None => Scalar::UNKNOWN,
            },
            AluOp::Div => match b.as_const() {
                Some(0) => Scalar::constant(0),
                Some(d) => Scalar::urange(a.umin / d, a.umax / d),
                None => Scalar::urange(0, a.umax),
            },
            AluOp::Mod => match b.as_const() {
                Some(0) => *a,
                Some(d) if a.umax < d => *a,
                Some(d) => Scalar::urange(0, d - 1),
                None if b.umin > 0 => Scalar::urange(0, a.umax.min(b.umax - 1)),
                None => Scalar::urange(0, a.umax),
            },
            AluOp::SDiv | AluOp::SMod => match (a.as_const(), b.as_const()) {
                (Some(x), Some(y)) => Scalar::constant(signed_op(op, x, y)),
                _ => Scalar::UNKNOWN,
            },
        };
        let r = r.normalize();
        // Fold constants exactly.
        if let (Some(x), Some(y)) = (a.as_const(), b.as_const()) {
            if let Some(v) = concrete(op, x, y) {
                return Scalar::constant(v);
            }
        }
        r
    }

    /// The result of a 32-bit operation computed on zero-extended operands: if it may leave the
    /// 32-bit range it wrapped, so it is any 32-bit value (with the tnum's low bits).
    fn low32_result(&self) -> Scalar {
        if self.umax <= u64::from(u32::MAX) && self.umin <= self.umax {
            *self
        } else {
            Scalar {
                tnum: self.tnum.cast32(),
                ..Scalar::any_u32()
            }
            .normalize()
        }
    }

    /// Negation.
    pub fn neg(&self, width: Width) -> Scalar {
        Scalar::constant(0).alu(AluOp::Sub, self, width)
    }

    /// Splits `self` by the branch `self cond other` into the values on the taken and not-taken
    /// paths; `None` for a path that cannot happen. Only 64-bit comparisons refine; 32-bit ones refine
    /// when both values are known to fit 31 bits.
    pub fn branch(
        &self,
        cond: JmpCond,
        other: &Scalar,
        width: Width,
    ) -> (Option<Scalar>, Option<Scalar>) {
        if width == Width::W32 {
            let fits = |s: &Scalar| s.umax <= i32::MAX as u64;
            if !(fits(self) && fits(other)) {
                // Decide the branch if both are constants; otherwise no refinement.
                if let (Some(x), Some(y)) = (self.as_const(), other.as_const()) {
                    let taken = eval_cond(cond, x as u32 as u64, y as u32 as u64, true);
                    return if taken {
                        (Some(*self), None)
                    } else {
                        (None, Some(*self))
                    };
                }
                return (Some(*self), Some(*self));
            }
        }
        let taken = refine(self, cond, other);
        let not_taken = refine(self, negate(cond), other);
        (taken, not_taken)
    }
}

fn a_movsx(src: &Scalar, bits: u32) -> Scalar {
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let low = if src.umax <= mask {
        *src
    } else {
        Scalar::urange(0, mask)
    };
    low.sign_extend(bits)
}

fn shift32(a: &Scalar, op: AluOp, b: &Scalar) -> Scalar {
    match b.as_const() {
        Some(n) => {
            let n = (n & 31) as u32;
            let v = match op {
                AluOp::Lsh => a.alu(AluOp::Lsh, &Scalar::constant(u64::from(n)), Width::W64),
                AluOp::Rsh => a.alu(AluOp::Rsh, &Scalar::constant(u64::from(n)), Width::W64),
                _ => {
                    let t = a.tnum.arshift(n, 32);
                    match a.as_const() {
                        Some(x) => Scalar::constant(u64::from(((x as u32 as i32) >> n) as u32)),
                        None => Scalar {
                            tnum: t,
                            ..Scalar::any_u32()
                        }
                        .normalize(),
                    }
                }
            };
            v.low32_result()
        }
        None => Scalar::any_u32(),
    }
}

fn signed_op(op: AluOp, x: u64, y: u64) -> u64 {
    let (x, y) = (x as i64, y as i64);
    match op {
        AluOp::SDiv if y == 0 => 0,
        AluOp::SDiv => x.wrapping_div(y) as u64,
        _ if y == 0 => x as u64,
        _ => x.wrapping_rem(y) as u64,
    }
}

/// The concrete 64-bit result, for constant folding.
fn concrete(op: AluOp, x: u64, y: u64) -> Option<u64> {
    Some(match op {
        AluOp::Add => x.wrapping_add(y),
        AluOp::Sub => x.wrapping_sub(y),
        AluOp::Mul => x.wrapping_mul(y),
        AluOp::Div => x.checked_div(y).unwrap_or(0),
        AluOp::Mod => x.checked_rem(y).unwrap_or(x),
        AluOp::Or => x | y,
        AluOp::And => x & y,
        AluOp::Xor => x ^ y,
        AluOp::Lsh => x.wrapping_shl(y as u32),
        AluOp::Rsh => x.wrapping_shr(y as u32),
        AluOp::Arsh => (x as i64).wrapping_shr(y as u32) as u64,
        AluOp::Mov => y,
        AluOp::SDiv | AluOp::SMod => signed_op(op, x, y),
        AluOp::MovSx(b) => {
            let s = 64 - b.bits();
            ((y << s) as i64 >> s) as u64
        }
    })
}

/// Whether `x cond y` holds for concrete values (`w32`: compare the low halves).
pub fn eval_cond(cond: JmpCond, x: u64, y: u64, w32: bool) -> bool {
    let (x, y) = if w32 {
        (x & 0xffff_ffff, y & 0xffff_ffff)
    } else {
        (x, y)
    };
    let (sx, sy) = if w32 {
        (i64::from(x as u32 as i32), i64::from(y as u32 as i32))
    } else {
        (x as i64, y as i64)
    };
    match cond {
        JmpCond::Eq => x == y,
        JmpCond::Ne => x != y,
        JmpCond::Gt => x > y,
        JmpCond::Ge => x >= y,
        JmpCond::Lt => x < y,
        JmpCond::Le => x <= y,
        JmpCond::Sgt => sx > sy,
        JmpCond::Sge => sx >= sy,
        JmpCond::Slt => sx < sy,
        JmpCond::Sle => sx <= sy,
        JmpCond::Set => x & y != 0,
    }
}

/// The condition that holds on the not-taken path; `Set` has no single negation (handled in
/// `refine`).
pub fn negate(cond: JmpCond) -> JmpCond {
    match cond {
        JmpCond::Eq => JmpCond::Ne,
        JmpCond::Ne => JmpCond::Eq,
        JmpCond::Gt => JmpCond::Le,
        JmpCond::Ge => JmpCond::Lt,
        JmpCond::Lt => JmpCond::Ge,
        JmpCond::Le => JmpCond::Gt,
        JmpCond::Sgt => JmpCond::Sle,
        JmpCond::Sge => JmpCond::Slt,
        JmpCond::Slt => JmpCond::Sge,
        JmpCond::Sle => JmpCond::Sgt,
        // "not set" is represented as Set on the other path; refine treats it conservatively.
        JmpCond::Set => JmpCond::Set,
    }
}

/// `a` restricted to values `x` with `x cond b` for some value of `b`; `None` if none.
fn refine(a: &Scalar, cond: JmpCond, b: &Scalar) -> Option<Scalar> {
    let mut r = *a;
    match cond {
        JmpCond::Eq => {
            r.umin = r.umin.max(b.umin);
            r.umax = r.umax.min(b.umax);
            r.smin = r.smin.max(b.smin);
            r.smax = r.smax.min(b.smax);
            r.tnum = r.tnum.intersect(b.tnum);
        }
        JmpCond::Ne => {
            if let Some(v) = b.as_const() {
                if a.as_const() == Some(v) {
                    return None;
                }
                if r.umin == v {
                    r.umin = v.wrapping_add(1);
                }
                if r.umax == v {
                    r.umax = v.wrapping_sub(1);
                }
                if r.smin == v as i64 {
                    r.smin = (v as i64).wrapping_add(1);
                }
                if r.smax == v as i64 {
                    r.smax = (v as i64).wrapping_sub(1);
                }
            }
        }
        JmpCond::Gt => r.umin = r.umin.max(b.umin.checked_add(1)?),
        JmpCond::Ge => r.umin = r.umin.max(b.umin),
        JmpCond::Lt => r.umax = r.umax.min(b.umax.checked_sub(1)?),
        JmpCond::Le => r.umax = r.umax.min(b.umax),
        JmpCond::Sgt => r.smin = r.smin.max(b.smin.checked_add(1)?),
        JmpCond::Sge => r.smin = r.smin.max(b.smin),
        JmpCond::Slt => r.smax = r.smax.min(b.smax.checked_sub(1)?),
        JmpCond::Sle => r.smax = r.smax.min(b.smax),
        JmpCond::Set => {
            if let Some(v) = b.as_const() {
                if a.tnum.value & v != 0 {
                    // Definitely set: both paths keep `a` (the negated path is impossible only when
                    // exact; stay conservative).
                    return Some(r);
                }
                if (a.tnum.value | a.tnum.mask) & v == 0 {
                    // Definitely clear: "set" is impossible, but this function also serves as the
                    // negation of Set, so keep `a`.
                    return Some(r);
                }
            }
        }
    }
    r.try_normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(s: &Scalar, x: u64) -> bool {
        s.umin <= x
            && x <= s.umax
            && s.smin <= x as i64
            && x as i64 <= s.smax
            && x & !s.tnum.mask == s.tnum.value
    }

    /// A scalar containing `x`: a range around it, intersected with a tnum that agrees with it.
    fn around(x: u64, below: u64, above: u64, unknown: u64) -> Scalar {
        let s = Scalar {
            tnum: Tnum {
                value: x & !unknown,
                mask: unknown,
            },
            ..Scalar::urange(
                x.saturating_sub(below % 1000),
                x.saturating_add(above % 1000),
            )
        };
        s.normalize()
    }

    const OPS: [AluOp; 13] = [
        AluOp::Add,
        AluOp::Sub,
        AluOp::Mul,
        AluOp::Div,
        AluOp::SDiv,
        AluOp::Or,
        AluOp::And,
        AluOp::Lsh,
        AluOp::Rsh,
        AluOp::Mod,
        AluOp::SMod,
        AluOp::Xor,
        AluOp::Arsh,
    ];

    fn exec(op: AluOp, x: u64, y: u64, w: Width) -> u64 {
        if w == Width::W64 {
            return concrete(op, x, y).unwrap_or(0);
        }
        let (x, y) = (x as u32, y as u32);
        u64::from(match op {
            AluOp::Add => x.wrapping_add(y),
            AluOp::Sub => x.wrapping_sub(y),
            AluOp::Mul => x.wrapping_mul(y),
            AluOp::Div => x.checked_div(y).unwrap_or(0),
            AluOp::SDiv => {
                if y == 0 {
                    0
                } else {
                    (x as i32).wrapping_div(y as i32) as u32
                }
            }
            AluOp::Or => x | y,
            AluOp::And => x & y,
            AluOp::Lsh => x.wrapping_shl(y),
            AluOp::Rsh => x.wrapping_shr(y),
            AluOp::Mod => x.checked_rem(y).unwrap_or(x),
            AluOp::SMod => {
                if y == 0 {
                    x
                } else {
                    (x as i32).wrapping_rem(y as i32) as u32
                }
            }
            AluOp::Xor => x ^ y,
            AluOp::Arsh => (x as i32).wrapping_shr(y) as u32,
            _ => y,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]
        /// Abstract ALU results contain the concrete result.
        #[test]
        fn alu_is_sound(
            x in any::<u64>(), y in prop_oneof![any::<u64>(), 0u64..70],
            r in any::<[u64; 6]>(), exact in any::<(bool, bool)>(), opi in 0usize..13, w32 in any::<bool>(),
        ) {
            let a = if exact.0 { Scalar::constant(x) } else { around(x, r[0], r[1], r[2]) };
            let b = if exact.1 { Scalar::constant(y) } else { around(y, r[3], r[4], r[5]) };
            let op = OPS[opi];
            let w = if w32 { Width::W32 } else { Width::W64 };
            prop_assume!(member(&a, x) && member(&b, y));
            let r = a.alu(op, &b, w);
            prop_assert!(member(&r, exec(op, x, y, w)), "{op:?} {w:?} {x:#x} {y:#x} -> {r:?}");
        }

        /// Branch refinement keeps every value for which the condition holds (or fails).
        #[test]
        fn branches_are_sound(x in any::<u64>(), y in any::<u64>(), lo in 0u64..100, hi in 0u64..100, c in 0usize..11) {
            let conds = [JmpCond::Eq, JmpCond::Ne, JmpCond::Gt, JmpCond::Ge, JmpCond::Lt, JmpCond::Le,
                         JmpCond::Sgt, JmpCond::Sge, JmpCond::Slt, JmpCond::Sle, JmpCond::Set];
            let a = Scalar::urange(x.saturating_sub(lo), x.saturating_add(hi));
            let b = Scalar::constant(y);
            let cond = conds[c];
            let (t, f) = a.branch(cond, &b, Width::W64);
            if eval_cond(cond, x, y, false) {
                prop_assert!(t.is_some_and(|t| member(&t, x)));
            } else {
                prop_assert!(f.is_some_and(|f| member(&f, x)));
            }
        }
    }
}
