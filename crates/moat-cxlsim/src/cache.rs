//! The last-level cache of the exact reference mode: set-associative, least-recently-used
//! replacement within each set, one line size. Every data access of the simulated program goes
//! through it; only its misses reach memory (and, for CXL-placed addresses, the CXL tier).
//!
//! The model is deliberately the textbook one: no prefetchers, no inclusion with inner levels,
//! no replacement hints. It answers "which accesses would miss an LLC of this size", which is the
//! ground truth the sampling mode is compared with.

use std::path::Path;
use thiserror::Error;

/// A cache geometry that cannot be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CacheError {
    /// The line size is not a power of two of at least 8 bytes.
    #[error("cache line size {0} must be a power of two >= 8")]
    Line(u64),
    /// No ways, or more than the model keeps per set.
    #[error("associativity {0} must be 1..={MAX_WAYS}")]
    Ways(u32),
    /// The size is not a positive multiple of `line × ways`.
    #[error("cache size {size} must be a positive multiple of line ({line}) x ways ({ways})")]
    Size {
        /// Bytes asked for.
        size: u64,
        /// Line size.
        line: u64,
        /// Ways.
        ways: u32,
    },
}

/// The most ways per set the model keeps.
pub const MAX_WAYS: u32 = 64;

/// A cache's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Total bytes.
    pub size: u64,
    /// Ways per set.
    pub ways: u32,
    /// Line size in bytes.
    pub line: u64,
}

impl Geometry {
    /// This machine's last-level cache as sysfs describes it (the highest-level data or unified
    /// cache of CPU 0), or `None` where sysfs does not say.
    pub fn from_sysfs() -> Option<Geometry> {
        Geometry::from_sysfs_at(Path::new("/sys/devices/system/cpu/cpu0/cache"))
    }

    /// As [`Geometry::from_sysfs`], under `dir` (for tests).
    pub fn from_sysfs_at(dir: &Path) -> Option<Geometry> {
        let read = |d: &Path, f: &str| -> Option<String> {
            Some(std::fs::read_to_string(d.join(f)).ok()?.trim().to_string())
        };
        let mut best: Option<(u32, Geometry)> = None;
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let d = entry.path();
            if !entry.file_name().to_string_lossy().starts_with("index") {
                continue;
            }
            if read(&d, "type").is_some_and(|t| t == "Instruction") {
                continue;
            }
            let Some(level) = read(&d, "level").and_then(|l| l.parse::<u32>().ok()) else {
                continue;
            };
            let size = read(&d, "size").and_then(|s| parse_size(&s));
            let ways = read(&d, "ways_of_associativity").and_then(|w| w.parse::<u32>().ok());
            let line = read(&d, "coherency_line_size").and_then(|l| l.parse::<u64>().ok());
            if let (Some(size), Some(ways), Some(line)) = (size, ways, line) {
                if best.is_none_or(|(l, _)| level > l) {
                    best = Some((level, Geometry { size, ways, line }));
                }
            }
        }
        best.map(|(_, g)| g)
    }
}

/// Parses a size such as `491520K`, `32M`, `1G`, `65536` (bytes; K/M/G are powers of 1024, an
/// optional trailing `B`/`iB` is allowed).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s
        .strip_suffix("iB")
        .or_else(|| s.strip_suffix('B'))
        .unwrap_or(s);
    let (digits, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// A set-associative LRU cache.
#[derive(Debug, Clone)]
pub struct Cache {
    geometry: Geometry,
    sets: u64,
    line_shift: u32,
    /// Per set, `ways` line numbers, most recently used first; `u64::MAX` is an empty way.
    lines: Vec<u64>,
    hits: u64,
    misses: u64,
}

impl Cache {
    /// An empty cache of `geometry`.
    pub fn new(geometry: Geometry) -> Result<Cache, CacheError> {
        let Geometry { size, ways, line } = geometry;
        if line < 8 || !line.is_power_of_two() {
            return Err(CacheError::Line(line));
        }
        if ways == 0 || ways > MAX_WAYS {
            return Err(CacheError::Ways(ways));
        }
        let set_bytes = line * u64::from(ways);
        if size == 0 || size % set_bytes != 0 {
            return Err(CacheError::Size { size, line, ways });
        }
        let sets = size / set_bytes;
        let slots =
            usize::try_from(size / line).map_err(|_| CacheError::Size { size, line, ways })?;
        Ok(Cache {
            geometry,
            sets,
            line_shift: line.trailing_zeros(),
            lines: vec![u64::MAX; slots],
            hits: 0,
            misses: 0,
        })
    }

    /// The geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Hits so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Misses so far.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// The line number of `address`.
    pub fn line_of(&self, address: u64) -> u64 {
        address >> self.line_shift
    }

    /// Touches the line holding `address`: whether it was cached. On a miss the set's least
    /// recently used line is evicted; either way the line becomes the most recently used.
    pub fn access(&mut self, address: u64) -> bool {
        let line = address >> self.line_shift;
        let ways = self.geometry.ways as usize;
        // `sets` fits a usize: it is at most `lines.len()`.
        let set = (line % self.sets) as usize * ways;
        let Some(slots) = self.lines.get_mut(set..set + ways) else {
            return false;
        };
        match slots.iter().position(|&l| l == line) {
            Some(way) => {
                slots[..=way].rotate_right(1);
                self.hits += 1;
                true
            }
            None => {
                slots.rotate_right(1);
                slots[0] = line;
                self.misses += 1;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(size: u64, ways: u32) -> Cache {
        Cache::new(Geometry {
            size,
            ways,
            line: 64,
        })
        .expect("valid geometry")
    }

    #[test]
    fn a_sweep_misses_once_per_line_and_hits_within_it() {
        // 8-byte loads over 64 KiB in a 32 KiB cache: 1 miss per line, 7 hits, every pass.
        let mut c = cache(32 << 10, 8);
        for _ in 0..3 {
            for a in (0..64u64 << 10).step_by(8) {
                c.access(0x10_0000 + a);
            }
        }
        assert_eq!(c.misses(), 3 * 1024);
        assert_eq!(c.hits(), 3 * 1024 * 7);
    }

    #[test]
    fn a_working_set_that_fits_misses_only_the_first_time() {
        let mut c = cache(32 << 10, 8);
        for _ in 0..5 {
            for a in (0..16u64 << 10).step_by(64) {
                c.access(a);
            }
        }
        assert_eq!(c.misses(), 256);
        assert_eq!(c.hits(), 4 * 256);
    }

    #[test]
    fn lru_evicts_the_least_recently_used_way() {
        // 2 ways, 4 sets of 64-byte lines: lines 0, 4, 8 all map to set 0.
        let mut c = cache(512, 2);
        let line = |n: u64| n * 64;
        assert!(!c.access(line(0)));
        assert!(!c.access(line(4)));
        assert!(c.access(line(0)), "both fit");
        assert!(!c.access(line(8)), "evicts line 4, the least recently used");
        assert!(c.access(line(0)));
        assert!(!c.access(line(4)), "line 4 was evicted");
        assert!(
            !c.access(line(8)),
            "and evicted 8 in turn (0 was used later)"
        );
        // Other sets are untouched by set 0's traffic.
        assert!(!c.access(line(1)));
        assert!(c.access(line(1)));
    }

    #[test]
    fn associativity_decides_conflict_misses() {
        // Three lines in one set: thrash a 2-way cache, fit a 4-way one of the same size.
        let pattern = [0u64, 1, 2];
        for (ways, misses) in [(2, 30), (4, 3)] {
            let mut c = cache(1024, ways);
            let sets = 1024 / 64 / u64::from(ways);
            for _ in 0..10 {
                for p in pattern {
                    c.access(p * sets * 64);
                }
            }
            assert_eq!(c.misses(), misses, "{ways} ways");
        }
    }

    #[test]
    fn bad_geometries_are_named() {
        let g = |size, ways, line| Cache::new(Geometry { size, ways, line }).err();
        assert_eq!(g(1024, 2, 48), Some(CacheError::Line(48)));
        assert_eq!(g(1024, 0, 64), Some(CacheError::Ways(0)));
        assert!(matches!(g(1000, 2, 64), Some(CacheError::Size { .. })));
        assert_eq!(parse_size("491520K"), Some(491520 << 10));
        assert_eq!(parse_size("32MiB"), Some(32 << 20));
        assert_eq!(parse_size("fast"), None);
    }

    #[test]
    fn sysfs_names_the_highest_level() {
        let dir = std::env::temp_dir().join(format!("moat-cache-{}", std::process::id()));
        for (i, level, kind, size, ways) in [
            (0, "1", "Data", "48K", "12"),
            (1, "1", "Instruction", "32K", "8"),
            (2, "2", "Unified", "2048K", "16"),
            (3, "3", "Unified", "32768K", "16"),
        ] {
            let d = dir.join(format!("index{i}"));
            std::fs::create_dir_all(&d).expect("mkdir");
            for (f, v) in [
                ("level", level),
                ("type", kind),
                ("size", size),
                ("ways_of_associativity", ways),
                ("coherency_line_size", "64"),
            ] {
                std::fs::write(d.join(f), v).expect("write");
            }
        }
        let g = Geometry::from_sysfs_at(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            g,
            Some(Geometry {
                size: 32 << 20,
                ways: 16,
                line: 64
            })
        );
    }
}
