//! Where each allocation lives: the ranges a placement policy put on a CXL tier, as the policy's
//! tracker map reports them (`cxl_placed`: address → size, call site, tier, flags), and the
//! classification of an address into its tier.

use std::collections::BTreeMap;

/// `flags` bit of a placed range: its pages alternate between the tier and local DRAM
/// (interleaving by page), starting with the tier.
pub const INTERLEAVE: u32 = 1;
/// Page size of interleaving.
pub const PAGE: u64 = 4096;

/// One allocation placed on a CXL tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Its length in bytes.
    pub size: u64,
    /// The return address of the allocator call that made it.
    pub site: u64,
    /// Its tier (1-based device index).
    pub tier: u32,
    /// [`INTERLEAVE`] or 0.
    pub flags: u32,
}

impl Placed {
    /// Decodes a `cxl_placed` value: `u64 size, u64 site, u32 tier, u32 flags`, little-endian.
    pub fn decode(value: &[u8]) -> Option<Placed> {
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(value.get(at..at + 8)?.try_into().ok()?))
        };
        let half = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(value.get(at..at + 4)?.try_into().ok()?))
        };
        Some(Placed {
            size: word(0)?,
            site: word(8)?,
            tier: half(16)?,
            flags: half(20)?,
        })
    }
}

/// The placed ranges, by start address.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    ranges: BTreeMap<u64, Placed>,
}

impl Placement {
    /// Replaces every range with those of a map dump (`(key, value)` pairs of `cxl_placed`);
    /// entries that do not decode are skipped and counted.
    pub fn replace<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> usize {
        self.ranges.clear();
        let mut bad = 0;
        for (key, value) in entries {
            let start = key.try_into().ok().map(u64::from_le_bytes);
            match (start, Placed::decode(value)) {
                (Some(start), Some(p)) if p.tier > 0 && p.size > 0 => {
                    self.ranges.insert(start, p);
                }
                _ => bad += 1,
            }
        }
        bad
    }

    /// Adds one range (tests, and embedders that place memory themselves).
    pub fn insert(&mut self, start: u64, placed: Placed) {
        self.ranges.insert(start, placed);
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Bytes placed on CXL tiers, each byte once where ranges nest (a large `malloc` inside the
    /// `mmap` it made); interleaved ranges count half.
    pub fn cxl_bytes(&self) -> u64 {
        let mut total = 0;
        let mut covered_to = 0u64;
        for (&start, p) in &self.ranges {
            let end = start.saturating_add(p.size);
            let from = start.max(covered_to);
            if end > from {
                let fresh = end - from;
                total += if p.flags & INTERLEAVE != 0 {
                    fresh / 2
                } else {
                    fresh
                };
                covered_to = end;
            }
        }
        total
    }

    /// The tier of `address` (0: local DRAM) and, on a CXL tier, the allocation's call site.
    pub fn classify(&self, address: u64) -> (u32, Option<u64>) {
        // The innermost range holding the address: the nearest start at or below it, or, past
        // that range's end, an enclosing one (a `malloc`'d block inside the `mmap` that holds
        // it). Nesting is shallow, so a few ranges back suffice.
        let Some((start, p)) = self
            .ranges
            .range(..=address)
            .rev()
            .take(NESTING)
            .find(|(&start, p)| address - start < p.size)
        else {
            return (0, None);
        };
        let off = address - start;
        if p.flags & INTERLEAVE != 0 && (off / PAGE) % 2 == 1 {
            return (0, None);
        }
        (p.tier, Some(p.site))
    }
}

/// How many ranges below an address [`Placement::classify`] looks at for one that holds it.
const NESTING: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn value(size: u64, site: u64, tier: u32, flags: u32) -> Vec<u8> {
        let mut v = size.to_le_bytes().to_vec();
        v.extend(site.to_le_bytes());
        v.extend(tier.to_le_bytes());
        v.extend(flags.to_le_bytes());
        v
    }

    #[test]
    fn addresses_classify_by_range_and_interleaving() {
        let mut p = Placement::default();
        let a = (0x1000u64.to_le_bytes(), value(0x100, 0xaa, 1, 0));
        let b = (
            0x10000u64.to_le_bytes(),
            value(4 * PAGE, 0xbb, 2, INTERLEAVE),
        );
        let bad = (7u32.to_le_bytes(), value(1, 1, 1, 0));
        let skipped = p.replace([
            (&a.0[..], &a.1[..]),
            (&b.0[..], &b.1[..]),
            (&bad.0[..], &bad.1[..]),
        ]);
        assert_eq!(skipped, 1);
        assert_eq!(p.classify(0x1000), (1, Some(0xaa)));
        assert_eq!(p.classify(0x10ff), (1, Some(0xaa)));
        assert_eq!(p.classify(0x1100), (0, None));
        assert_eq!(p.classify(0xfff), (0, None));
        assert_eq!(p.classify(0x10000 + 10), (2, Some(0xbb)));
        assert_eq!(
            p.classify(0x10000 + PAGE + 10),
            (0, None),
            "odd page: local"
        );
        assert_eq!(p.classify(0x10000 + 2 * PAGE), (2, Some(0xbb)));
        assert_eq!(p.cxl_bytes(), 0x100 + 2 * PAGE);
        // A malloc'd block inside the mmap that holds it counts once.
        p.insert(
            0x10010,
            Placed {
                size: PAGE,
                site: 0xcc,
                tier: 2,
                flags: 0,
            },
        );
        assert_eq!(p.cxl_bytes(), 0x100 + 2 * PAGE);
        assert_eq!(
            p.classify(0x10010),
            (2, Some(0xcc)),
            "the inner range names the site"
        );
        assert_eq!(
            p.classify(0x10010 + 2 * PAGE),
            (2, Some(0xbb)),
            "past the inner range, the enclosing one holds the address"
        );
    }
}
