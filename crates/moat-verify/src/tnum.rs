//! Tracked numbers ("tnums"): which bits of a 64-bit value are known, and their values — the kernel
//! verifier's `tnum` domain. A tnum is `(value, mask)`: bits set in `mask` are unknown; the others
//! equal the corresponding bits of `value`.

/// A partially known 64-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tnum {
    /// Known bit values (zero where unknown).
    pub value: u64,
    /// Unknown bits.
    pub mask: u64,
}

#[expect(
    clippy::should_implement_trait,
    reason = "named like the kernel's tnum_add/tnum_sub/tnum_mul; no operator overloading wanted"
)]
impl Tnum {
    /// Nothing known.
    pub const UNKNOWN: Tnum = Tnum {
        value: 0,
        mask: u64::MAX,
    };

    /// The constant `v`.
    pub const fn constant(v: u64) -> Tnum {
        Tnum { value: v, mask: 0 }
    }

    /// The tightest tnum containing every value of `[min, max]`.
    pub fn range(min: u64, max: u64) -> Tnum {
        let chi = min ^ max;
        let bits = 64 - chi.leading_zeros();
        if bits > 63 {
            return Tnum::UNKNOWN;
        }
        let delta = (1u64 << bits) - 1;
        Tnum {
            value: min & !delta,
            mask: delta,
        }
    }

    /// Whether every bit is known.
    pub fn is_const(self) -> bool {
        self.mask == 0
    }

    /// The smallest value the tnum may hold.
    pub fn min(self) -> u64 {
        self.value
    }

    /// The largest value the tnum may hold.
    pub fn max(self) -> u64 {
        self.value | self.mask
    }

    /// Whether every value of `other` is a value of `self`.
    pub fn contains(self, other: Tnum) -> bool {
        other.mask & !self.mask == 0 && (self.value ^ other.value) & !self.mask == 0
    }

    /// Sum.
    pub fn add(self, o: Tnum) -> Tnum {
        let sm = self.mask.wrapping_add(o.mask);
        let sv = self.value.wrapping_add(o.value);
        let sigma = sm.wrapping_add(sv);
        let chi = sigma ^ sv;
        let mu = chi | self.mask | o.mask;
        Tnum {
            value: sv & !mu,
            mask: mu,
        }
    }

    /// Difference.
    pub fn sub(self, o: Tnum) -> Tnum {
        let dv = self.value.wrapping_sub(o.value);
        let alpha = dv.wrapping_add(self.mask);
        let beta = dv.wrapping_sub(o.mask);
        let chi = alpha ^ beta;
        let mu = chi | self.mask | o.mask;
        Tnum {
            value: dv & !mu,
            mask: mu,
        }
    }

    /// Bitwise and.
    pub fn and(self, o: Tnum) -> Tnum {
        let alpha = self.value | self.mask;
        let beta = o.value | o.mask;
        let v = self.value & o.value;
        Tnum {
            value: v,
            mask: alpha & beta & !v,
        }
    }

    /// Bitwise or.
    pub fn or(self, o: Tnum) -> Tnum {
        let v = self.value | o.value;
        let mu = self.mask | o.mask;
        Tnum {
            value: v,
            mask: mu & !v,
        }
    }

    /// Bitwise exclusive or.
    pub fn xor(self, o: Tnum) -> Tnum {
        let v = self.value ^ o.value;
        let mu = self.mask | o.mask;
        Tnum {
            value: v & !mu,
            mask: mu,
        }
    }

    /// Product (the kernel's half-multiply algorithm).
    pub fn mul(self, o: Tnum) -> Tnum {
        let (mut a, mut b) = (self, o);
        let acc_v = a.value.wrapping_mul(b.value);
        let mut acc_m = Tnum::constant(0);
        while a.value != 0 || a.mask != 0 {
            if a.value & 1 != 0 {
                acc_m = acc_m.add(Tnum {
                    value: 0,
                    mask: b.mask,
                });
            } else if a.mask & 1 != 0 {
                acc_m = acc_m.add(Tnum {
                    value: 0,
                    mask: b.value | b.mask,
                });
            }
            a = a.rshift(1);
            b = b.lshift(1);
        }
        Tnum::constant(acc_v).add(acc_m)
    }

    /// Left shift by a constant.
    pub fn lshift(self, n: u32) -> Tnum {
        Tnum {
            value: self.value.wrapping_shl(n),
            mask: self.mask.wrapping_shl(n),
        }
    }

    /// Logical right shift by a constant.
    pub fn rshift(self, n: u32) -> Tnum {
        Tnum {
            value: self.value.wrapping_shr(n),
            mask: self.mask.wrapping_shr(n),
        }
    }

    /// Arithmetic right shift of the low `width` bits (32 or 64) by a constant.
    pub fn arshift(self, n: u32, width: u32) -> Tnum {
        if width == 32 {
            Tnum {
                value: u64::from(((self.value as i32) >> (n & 31)) as u32),
                mask: u64::from(((self.mask as i32) >> (n & 31)) as u32),
            }
        } else {
            Tnum {
                value: ((self.value as i64) >> (n & 63)) as u64,
                mask: ((self.mask as i64) >> (n & 63)) as u64,
            }
        }
    }

    /// The low 32 bits, zero-extended.
    pub fn cast32(self) -> Tnum {
        Tnum {
            value: self.value & 0xffff_ffff,
            mask: self.mask & 0xffff_ffff,
        }
    }

    /// The values both tnums may hold (an over-approximation).
    pub fn intersect(self, o: Tnum) -> Tnum {
        let v = self.value | o.value;
        let mu = self.mask & o.mask;
        Tnum {
            value: v & !mu,
            mask: mu,
        }
    }

    /// Every value either tnum may hold.
    pub fn union(self, o: Tnum) -> Tnum {
        let mu = self.mask | o.mask | (self.value ^ o.value);
        Tnum {
            value: self.value & !mu,
            mask: mu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(t: Tnum, x: u64) -> bool {
        x & !t.mask == t.value
    }

    fn tnum_with(x: u64) -> impl Strategy<Value = Tnum> {
        any::<u64>().prop_map(move |m| Tnum {
            value: x & !m,
            mask: m,
        })
    }

    proptest! {
        /// Every operation on tnums containing `a` and `b` yields a tnum containing the concrete result.
        #[test]
        fn operations_are_sound(a in any::<u64>(), b in any::<u64>(), m1 in any::<u64>(), m2 in any::<u64>(), n in 0u32..64) {
            let (ta, tb) = (Tnum { value: a & !m1, mask: m1 }, Tnum { value: b & !m2, mask: m2 });
            prop_assert!(member(ta.add(tb), a.wrapping_add(b)));
            prop_assert!(member(ta.sub(tb), a.wrapping_sub(b)));
            prop_assert!(member(ta.and(tb), a & b));
            prop_assert!(member(ta.or(tb), a | b));
            prop_assert!(member(ta.xor(tb), a ^ b));
            prop_assert!(member(ta.mul(tb), a.wrapping_mul(b)));
            prop_assert!(member(ta.lshift(n), a << n));
            prop_assert!(member(ta.rshift(n), a >> n));
            prop_assert!(member(ta.arshift(n, 64), ((a as i64) >> n) as u64));
            prop_assert!(member(ta.cast32(), a & 0xffff_ffff));
            prop_assert!(member(ta.union(tb), a) && member(ta.union(tb), b));
            prop_assert!(ta.union(tb).contains(ta));
        }

        #[test]
        fn ranges_contain_their_members(lo in any::<u64>(), len in any::<u64>(), pick in any::<u64>()) {
            let hi = lo.saturating_add(len);
            let x = lo + pick % (hi - lo).saturating_add(1).max(1);
            let x = x.min(hi);
            prop_assert!(member(Tnum::range(lo, hi), x));
        }

        #[test]
        fn contains_is_sound(x in any::<u64>(), t in tnum_with(7)) {
            let c = Tnum::constant(x);
            prop_assert_eq!(t.contains(c), member(t, x));
        }
    }
}
