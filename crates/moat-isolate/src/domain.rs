//! Protection domains: one guarded, aligned arena per loaded object or program, holding what its
//! programs may touch: the memory of its maps ([`DomainMemory`]), a context area runs copy their
//! input into, and a run area for the engines' stacks.
//!
//! Layout of the arena (offsets from [`Domain::base`], which is a multiple of [`Domain::size`]):
//!
//! ```text
//! guard (PROT_NONE) | run area (256 KiB) | context (64 KiB) | map heap ... | uncommitted | guard
//! ```
//!
//! The run area holds, for confined JIT runs (`mpk`), the eBPF stack, the run context and the native
//! stack below them, which grows towards the leading guard.
//!
//! Only the allocated prefix is readable and writable; the rest of the arena and the guards fault.

use crate::mpk::KeyLease;
use crate::sys::{ContextToken, LowMapping, Reservation};
use crate::{IsolateError, Isolation};
use moat_maps::MapError;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes of the run area of every domain: the native and eBPF stacks and run context of confined
/// JIT runs ([`Domain::with_run_area`]).
pub const RUN_AREA: usize = 256 * 1024;
/// Bytes of the context area: the largest input a run copies into its domain.
pub const CONTEXT_AREA: usize = 64 * 1024;
/// Bytes of the low area: a domain's memory below 4 GiB for packet contexts (`struct xdp_md` and
/// `struct __sk_buff` hold packet pointers in 32-bit fields), mapped when first used.
pub const LOW_AREA: usize = 128 * 1024;
/// Default arena size (virtual; only what is allocated is committed).
pub const DEFAULT_ARENA: usize = 64 << 20;
/// Bytes of guard on each side of the arena.
pub const GUARD: usize = 64 * 1024;
/// Granularity in which the arena is committed.
const COMMIT_STEP: usize = 64 * 1024;
const HEAP_START: usize = RUN_AREA + CONTEXT_AREA;
/// Offset of the run area's last page: the JIT's run anchor, read-only for programs under `mpk`.
const ANCHOR_PAGE: usize = RUN_AREA - PAGE;
/// Page size of the arena's protections.
const PAGE: usize = 4096;
/// Run areas a domain adds for runs on other threads while its first one is in use.
pub const MAX_SPARE_RUN_AREAS: usize = 8;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
struct Heap {
    /// Next unallocated offset.
    next: usize,
    /// Committed prefix of the arena.
    committed: usize,
    /// Freed ranges (offset, size), zeroed, reused for requests that fit them exactly in size.
    free: Vec<(usize, usize)>,
    /// Bytes currently allocated to maps.
    allocated: usize,
    /// The protection key the committed memory carries (`mpk` only).
    key: Option<i32>,
    /// Offsets of the spare run areas' guard pages (each followed by a run area).
    spare_runs: Vec<usize>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    id: u64,
    isolation: Isolation,
    arena: Reservation,
    heap: Mutex<Heap>,
    context: Mutex<ContextToken>,
    run: Mutex<ContextToken>,
    /// The thread holding the run area (0: none), to refuse a nested run on the same thread.
    run_holder: AtomicUsize,
    /// The low area, once a packet program ran.
    low: Mutex<Option<LowMapping>>,
    /// The anchor key (`mpk` only).
    anchor_key: Option<i32>,
    /// Spare run areas not in use.
    idle_runs: Mutex<Vec<ContextToken>>,
}

/// Re-tags the committed memory of a domain with protection key `key` (layer 2 of `mpk`), all but
/// the anchor page, which keeps the anchor key.
pub(crate) fn retag(inner: &Inner, key: i32) -> std::io::Result<()> {
    let mut heap = lock(&inner.heap);
    inner.arena.commit(0, ANCHOR_PAGE, Some(key))?;
    inner
        .arena
        .commit(RUN_AREA, heap.committed - RUN_AREA, Some(key))?;
    // The spare run areas' guard and anchor pages keep their protections.
    for &off in &heap.spare_runs {
        protect_spare(inner, off)?;
    }
    heap.key = Some(key);
    Ok(())
}

/// The guard page at `off` and the anchor page of the spare run area above it.
fn protect_spare(inner: &Inner, off: usize) -> std::io::Result<()> {
    inner.arena.guard(off, PAGE)?;
    if let Some(anchor) = inner.anchor_key {
        inner.arena.commit(off + RUN_AREA, PAGE, Some(anchor))?;
    }
    Ok(())
}

/// An address unique to the calling thread while it lives.
fn thread_tag() -> usize {
    thread_local!(static TAG: u8 = const { 0 });
    TAG.with(|t| t as *const u8 as usize)
}

/// A protection domain (cheap to clone: clones share it). The arena is unmapped when the last clone
/// and the last map allocated from it are gone.
#[derive(Debug, Clone)]
pub struct Domain {
    inner: Arc<Inner>,
}

/// What a domain uses, for reports and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainStats {
    /// Reserved virtual bytes of the arena (guards excluded).
    pub reserved: usize,
    /// Committed (readable and writable) bytes.
    pub committed: usize,
    /// Bytes allocated to maps.
    pub allocated: usize,
}

impl Domain {
    /// A domain of the default arena size for `isolation` (`Mpk` allocates and tags a key).
    pub fn new(isolation: Isolation) -> Result<Domain, IsolateError> {
        Domain::with_arena(isolation, DEFAULT_ARENA)
    }

    /// A domain whose arena is `arena` bytes (a power of two, at least 128 KiB).
    pub fn with_arena(isolation: Isolation, arena: usize) -> Result<Domain, IsolateError> {
        if !arena.is_power_of_two() || arena < 2 * HEAP_START {
            return Err(IsolateError::ArenaSize { size: arena });
        }
        let keys = match isolation {
            Isolation::Mpk => Some(crate::mpk::new_domain_keys()?),
            Isolation::None | Isolation::Sfi => None,
        };
        let key = keys.map(|(parking, _)| parking);
        let reservation = Reservation::new(arena, GUARD).map_err(IsolateError::Map)?;
        let committed = HEAP_START.next_multiple_of(COMMIT_STEP);
        reservation
            .commit(0, committed, key)
            .map_err(IsolateError::Map)?;
        if let Some((_, anchor)) = keys {
            reservation
                .commit(ANCHOR_PAGE, 4096, Some(anchor))
                .map_err(IsolateError::Map)?;
        }
        Ok(Domain {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                isolation,
                arena: reservation,
                heap: Mutex::new(Heap {
                    next: HEAP_START,
                    committed,
                    free: Vec::new(),
                    allocated: 0,
                    key,
                    spare_runs: Vec::new(),
                }),
                context: Mutex::new(ContextToken::new(RUN_AREA, CONTEXT_AREA)),
                run: Mutex::new(ContextToken::new(0, RUN_AREA)),
                run_holder: AtomicUsize::new(0),
                low: Mutex::new(None),
                anchor_key: keys.map(|(_, anchor)| anchor),
                idle_runs: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The domain's process-unique id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The isolation the domain was made for.
    pub fn isolation(&self) -> Isolation {
        self.inner.isolation
    }

    /// The arena's first address (a multiple of [`Domain::size`]).
    pub fn base(&self) -> u64 {
        self.inner.arena.base() as u64
    }

    /// The arena's size in bytes (a power of two).
    pub fn size(&self) -> u64 {
        self.inner.arena.size() as u64
    }

    /// Whether `[addr, addr + len)` lies inside the arena. Since the arena is aligned to its size, this
    /// is one mask and compare for accesses that do not straddle its end.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let Some(off) = addr.checked_sub(self.base()) else {
            return false;
        };
        off < self.size() && len <= self.size() - off
    }

    /// The run area: `(start, len)`.
    pub fn run_area(&self) -> (u64, u64) {
        (self.base(), RUN_AREA as u64)
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Gives an `mpk` domain a hardware protection key for a run (layer 2 of [`crate::mpk`]); fails
    /// with [`IsolateError::MpkUnavailable`] for domains of other isolations.
    pub fn activate(&self) -> Result<KeyLease, IsolateError> {
        if self.inner.isolation != Isolation::Mpk {
            return Err(IsolateError::MpkUnavailable(format!(
                "domain {} uses {} isolation",
                self.inner.id, self.inner.isolation
            )));
        }
        crate::mpk::activate(self)
    }

    /// The protection key the domain's memory carries now (`mpk` only): a hardware key while it
    /// holds one, else the parking key.
    pub fn current_key(&self) -> Option<i32> {
        lock(&self.inner.heap).key
    }

    /// Runs `f` on a run area of the domain ([`RUN_AREA`] bytes; its last page is the JIT's run
    /// anchor, which under `mpk` carries the anchor key). Each run area serves one run at a time:
    /// the first one, else a spare one (up to [`MAX_SPARE_RUN_AREAS`], allocated from the arena
    /// with a guard page below, for runs on other threads or nested runs), else `f` waits for the
    /// first one — or, when this thread holds it already, `None` is returned without calling `f`.
    pub fn with_run_area<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        let me = thread_tag();
        let mut first = self.inner.run.try_lock().ok();
        let mut spare = None;
        if first.is_none() {
            spare = self.spare_run_area();
            if spare.is_none() {
                if self.inner.run_holder.load(Ordering::Acquire) == me {
                    return None;
                }
                first = Some(self.inner.run.lock().unwrap_or_else(|e| e.into_inner()));
            }
        }
        if let Some(mut token) = first {
            self.inner.run_holder.store(me, Ordering::Release);
            let result = self.inner.arena.slice_mut(0, RUN_AREA, &mut token).map(f);
            self.inner.run_holder.store(0, Ordering::Release);
            return result;
        }
        let mut token = spare?;
        let (off, len) = token.range();
        let result = self.inner.arena.slice_mut(off, len, &mut token).map(f);
        lock(&self.inner.idle_runs).push(token);
        result
    }

    /// An idle spare run area, or a new one while there are fewer than [`MAX_SPARE_RUN_AREAS`].
    fn spare_run_area(&self) -> Option<ContextToken> {
        let mut idle = lock(&self.inner.idle_runs);
        if let Some(token) = idle.pop() {
            return Some(token);
        }
        if lock(&self.inner.heap).spare_runs.len() >= MAX_SPARE_RUN_AREAS {
            return None;
        }
        let addr = self.alloc_addr(PAGE + RUN_AREA, PAGE).ok()?;
        let off = addr - self.inner.arena.base();
        let mut heap = lock(&self.inner.heap);
        protect_spare(&self.inner, off).ok()?;
        heap.spare_runs.push(off);
        Some(ContextToken::new(off + PAGE, RUN_AREA))
    }

    /// Map memory allocated from this domain's arena: maps created with it
    /// (`Map::create_in`) live inside the domain.
    pub fn memory(&self) -> Arc<dyn moat_maps::MapMemory> {
        Arc::new(DomainMemory {
            domain: self.clone(),
        })
    }

    /// What the domain uses.
    pub fn stats(&self) -> DomainStats {
        let heap = lock(&self.inner.heap);
        DomainStats {
            reserved: self.inner.arena.size(),
            committed: heap.committed,
            allocated: heap.allocated,
        }
    }

    /// The domain's low area as `(start, len)`, mapped now if no packet program ran yet: where
    /// packet contexts of the domain's runs live (see [`Domain::with_low_area`]).
    pub fn low_area_range(&self) -> Result<(u64, u64), IsolateError> {
        let mut low = lock(&self.inner.low);
        if low.is_none() {
            let key = lock(&self.inner.heap).key;
            *low = Some(LowMapping::new(LOW_AREA, key).map_err(IsolateError::Map)?);
        }
        Ok(low.as_ref().map_or((0, 0), LowMapping::range))
    }

    /// Runs `f` on the domain's low area ([`LOW_AREA`] bytes below 4 GiB, in the domain: tagged with
    /// its key under `mpk`). Returns `None` (without calling `f`) when the area cannot be mapped or
    /// is in use by a concurrent run of the same domain; callers then use memory of their own.
    pub fn with_low_area<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        let mut low = self.inner.low.try_lock().ok()?;
        let key = lock(&self.inner.heap).key;
        match low.as_mut() {
            Some(mapping) => {
                // Layer 2 may have given the domain another key since the last run.
                if let Some(key) = key {
                    mapping.tag(key).ok()?;
                }
            }
            None => *low = Some(LowMapping::new(LOW_AREA, key).ok()?),
        }
        low.as_mut().map(|m| f(m.bytes()))
    }

    /// Runs `f` on the first `len` bytes of the domain's context area, as they are (what the last
    /// run left there): for hosts that write their input in place. Gives `f` back, uncalled, when
    /// `len` exceeds the area or the area is in use by a concurrent run of the same domain.
    pub fn with_context_area<R, F: FnOnce(&mut [u8]) -> R>(
        &self,
        len: usize,
        f: F,
    ) -> Result<R, F> {
        if len > CONTEXT_AREA {
            return Err(f);
        }
        let Ok(mut token) = self.inner.context.try_lock() else {
            return Err(f);
        };
        match self.inner.arena.slice_mut(RUN_AREA, len, &mut token) {
            Some(area) => Ok(f(area)),
            None => Err(f),
        }
    }

    /// Runs `f` on a copy of `input` in the domain's context area and copies the result back. Returns
    /// `None` (without calling `f`) when `input` is larger than the area or the area is in use by a
    /// concurrent run of the same domain; callers then run on `input` itself.
    pub fn with_context<R>(&self, input: &mut [u8], f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        self.with_context_area(input.len(), |area| {
            if input.is_empty() {
                // Nothing to copy; and no zero-length copy either, whose masked vector store on a
                // never-written page costs a microcode assist (~150 ns) on every run.
                return f(area);
            }
            area.copy_from_slice(input);
            let result = f(area);
            input.copy_from_slice(area);
            // Not zeroed afterwards: what stays behind is this domain's own input, reachable by
            // no other domain, and the next run's region covers only its own input.
            result
        })
        .ok()
    }

    fn alloc_addr(&self, size: usize, align: usize) -> Result<usize, MapError> {
        let oom = MapError::OutOfMemory { size };
        if size == 0 || !align.is_power_of_two() {
            return Err(oom);
        }
        let mut heap = lock(&self.inner.heap);
        if let Some(i) = heap
            .free
            .iter()
            .position(|&(off, len)| len == size && off.is_multiple_of(align))
        {
            let (off, _) = heap.free.swap_remove(i);
            heap.allocated += size;
            return Ok(self.inner.arena.base() + off);
        }
        let off = heap.next.next_multiple_of(align.max(16));
        let end = off.checked_add(size).ok_or(oom.clone())?;
        if end > self.inner.arena.size() {
            return Err(oom);
        }
        if end > heap.committed {
            let to = end
                .next_multiple_of(COMMIT_STEP)
                .min(self.inner.arena.size());
            self.inner
                .arena
                .commit(heap.committed, to - heap.committed, heap.key)
                .map_err(|_| oom)?;
            heap.committed = to;
        }
        heap.next = end;
        heap.allocated += size;
        Ok(self.inner.arena.base() + off)
    }

    fn free_addr(&self, addr: usize, size: usize) {
        let Some(off) = addr.checked_sub(self.inner.arena.base()) else {
            return;
        };
        // Secure deletion: the next owner of the range (possibly another map) sees zeroes.
        self.inner.arena.zero(off, size);
        let mut heap = lock(&self.inner.heap);
        heap.allocated = heap.allocated.saturating_sub(size);
        heap.free.push((off, size));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`moat_maps::MapMemory`] from a domain's arena (implemented in `sys`, the crate's unsafe module).
#[derive(Debug)]
pub struct DomainMemory {
    domain: Domain,
}

impl DomainMemory {
    pub(crate) fn alloc_addr(&self, size: usize, align: usize) -> Result<usize, MapError> {
        self.domain.alloc_addr(size, align)
    }

    pub(crate) fn free_addr(&self, addr: usize, size: usize) {
        self.domain.free_addr(addr, size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_maps::{Map, MapDef, MapType, BPF_ANY};

    #[test]
    fn arena_is_aligned_and_maps_live_inside_it() {
        let d = Domain::new(Isolation::Sfi).expect("domain");
        assert_eq!(d.base() % d.size(), 0);
        assert!(d.size().is_power_of_two());
        let map = Map::create_in(MapDef::new(MapType::Hash, 4, 64, 100), d.memory()).expect("map");
        map.update(&1u32.to_ne_bytes(), &[7; 64], BPF_ANY)
            .expect("update");
        for r in map.value_regions() {
            assert!(d.contains(r.addr as u64, r.len as u64), "{r:?}");
        }
        let v = map.lookup_ptr(&1u32.to_ne_bytes(), 0).expect("value");
        assert!(d.contains(v.as_ptr() as u64, 64));
        assert!(d.stats().allocated > 0);
        assert!(!d.contains(d.base() + d.size() - 4, 8), "straddles the end");
        assert!(!d.contains(d.base() - 1, 1));
    }

    #[test]
    fn freed_memory_is_zeroed_and_reused() {
        let d = Domain::with_arena(Isolation::Sfi, 1 << 20).expect("domain");
        let a = Map::create_in(MapDef::new(MapType::Array, 4, 8, 4), d.memory()).expect("map");
        a.update(&0u32.to_ne_bytes(), &[0xff; 8], BPF_ANY)
            .expect("set");
        let first = a.value_regions()[0];
        let used = d.stats().allocated;
        drop(a);
        assert_eq!(d.stats().allocated, 0);
        let b = Map::create_in(MapDef::new(MapType::Array, 4, 8, 4), d.memory()).expect("map");
        assert_eq!(b.value_regions()[0].addr, first.addr, "reused");
        assert_eq!(d.stats().allocated, used);
        assert_eq!(b.lookup(&0u32.to_ne_bytes()).expect("elem"), vec![0; 8]);
    }

    #[test]
    fn a_full_arena_refuses_maps() {
        let d = Domain::with_arena(Isolation::Sfi, 1 << 20).expect("domain");
        let big = Map::create_in(MapDef::new(MapType::Array, 4, 4096, 1024), d.memory());
        assert!(matches!(big, Err(MapError::OutOfMemory { .. })), "{big:?}");
    }

    #[test]
    fn contexts_are_copied_in_and_back() {
        let d = Domain::new(Isolation::Sfi).expect("domain");
        let mut input = [1u8, 2, 3];
        let addr = d
            .with_context(&mut input, |ctx| {
                ctx[0] = 9;
                ctx.as_ptr() as u64
            })
            .expect("fits");
        assert!(d.contains(addr, 3));
        assert_eq!(input, [9, 2, 3]);
        let mut huge = vec![0u8; CONTEXT_AREA + 1];
        assert!(d.with_context(&mut huge, |_| ()).is_none());
    }

    #[test]
    fn bad_arena_sizes_are_refused() {
        assert!(matches!(
            Domain::with_arena(Isolation::Sfi, 3 << 20),
            Err(IsolateError::ArenaSize { .. })
        ));
        assert!(matches!(
            Domain::with_arena(Isolation::Sfi, 4096),
            Err(IsolateError::ArenaSize { .. })
        ));
    }

    /// The permissions `/proc/self/maps` gives the page holding `addr`.
    fn perms_at(addr: u64) -> Option<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines().find_map(|l| {
            let (range, rest) = l.split_once(' ')?;
            let (lo, hi) = range.split_once('-')?;
            let (lo, hi) = (
                u64::from_str_radix(lo, 16).ok()?,
                u64::from_str_radix(hi, 16).ok()?,
            );
            (lo <= addr && addr < hi).then(|| rest.split(' ').next().unwrap_or("").to_string())
        })
    }

    #[test]
    fn guards_and_uncommitted_arena_are_inaccessible() {
        let d = Domain::with_arena(Isolation::Sfi, 1 << 20).expect("domain");
        assert_eq!(
            perms_at(d.base() - 1).as_deref(),
            Some("---p"),
            "leading guard"
        );
        assert_eq!(
            perms_at(d.base() + d.size()).as_deref(),
            Some("---p"),
            "trailing guard"
        );
        assert_eq!(
            perms_at(d.base() + d.size() - 1).as_deref(),
            Some("---p"),
            "uncommitted"
        );
        assert_eq!(
            perms_at(d.base()).as_deref(),
            Some("rw-p"),
            "run area and context"
        );
    }

    #[test]
    fn low_areas_are_below_4_gib_and_reused() {
        let d = Domain::new(Isolation::Sfi).expect("domain");
        let first = d
            .with_low_area(|low| {
                low[0] = 7;
                (low.as_ptr() as u64, low.len())
            })
            .expect("maps");
        assert!(first.0 + first.1 as u64 <= u64::from(u32::MAX));
        assert_eq!(first.1, LOW_AREA);
        let again = d
            .with_low_area(|low| (low.as_ptr() as u64, low[0]))
            .expect("same");
        assert_eq!(again, (first.0, 7));
    }

    #[test]
    fn concurrent_and_nested_runs_get_spare_run_areas_with_guard_pages() {
        let d = Domain::new(Isolation::Sfi).expect("domain");
        let (outer, nested, other) = d
            .with_run_area(|a| {
                let outer = a.as_ptr() as u64;
                // Nested on this thread, and on another thread meanwhile: spare areas.
                let nested = d.with_run_area(|b| b.as_ptr() as u64).expect("spare");
                let other = std::thread::scope(|s| {
                    s.spawn(|| d.with_run_area(|c| (c.as_ptr() as u64, c.len())))
                        .join()
                        .expect("thread")
                })
                .expect("spare");
                (outer, nested, other)
            })
            .expect("first");
        assert_eq!(outer, d.base());
        assert_ne!(nested, outer);
        assert_eq!(other.1, RUN_AREA);
        for start in [nested, other.0] {
            assert!(d.contains(start, RUN_AREA as u64));
            assert_eq!(
                perms_at(start - 1).as_deref(),
                Some("---p"),
                "guard page below"
            );
            assert_eq!(perms_at(start).as_deref(), Some("rw-p"));
        }
        // Spare areas are reused, not allocated again.
        let used = d.stats().allocated;
        d.with_run_area(|_| d.with_run_area(|_| ())).expect("runs");
        assert_eq!(d.stats().allocated, used);
    }

    #[test]
    fn domains_are_disjoint() {
        let a = Domain::new(Isolation::Sfi).expect("a");
        let b = Domain::new(Isolation::Sfi).expect("b");
        assert_ne!(a.id(), b.id());
        assert!(!a.contains(b.base(), 1) && !b.contains(a.base(), 1));
    }
}
