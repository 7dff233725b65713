//! [`Map`], the one handle for every map type, offering the kernel's helper (program-side) and `bpf(2)`
//! (host-side) operations with their flags and error codes.

use crate::array::{ArrayMap, ProgArray};
use crate::backend::MapBackend;
use crate::def::{possible_cpus, MapDef, MapType};
use crate::error::MapError;
use crate::hash::HashMap;
use crate::lpm::LpmTrie;
use crate::mem::{HeapMemory, MapMemory};
use crate::perfbuf::PerfEventArray;
use crate::queue::QueueStack;
use crate::ringbuf::RingBuf;
use crate::stacktrace::StackTraceMap;
use crate::value::ValueSrc;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

/// A range of memory a program may access through pointers obtained from a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    /// Start address.
    pub addr: usize,
    /// Length in bytes.
    pub len: usize,
}

impl MemRegion {
    /// Whether `addr..addr + len` lies inside the region.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.addr
            && addr
                .checked_add(len)
                .is_some_and(|end| end <= self.addr + self.len)
    }
}

/// Read-only value memory in which atomic read-modify-writes still apply in place, through a
/// writable alias (a persistent pool's values): in each `stride`-byte slot from `region.addr`, the
/// `value_len` bytes at `value_off` may be changed by an atomic at the same offset from `alias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicWindow {
    /// The read-only memory programs' pointers point into.
    pub region: MemRegion,
    /// The address of `region.addr`'s byte in the writable alias.
    pub alias: usize,
    /// Slot size.
    pub stride: usize,
    /// Offset of the value in a slot.
    pub value_off: usize,
    /// Length of the value.
    pub value_len: usize,
}

#[derive(Debug)]
enum Kind {
    Array(ArrayMap),
    ProgArray(ProgArray),
    Hash(HashMap),
    Lpm(LpmTrie),
    Queue(QueueStack),
    RingBuf(RingBuf),
    StackTrace(StackTraceMap),
    PerfEventArray(PerfEventArray),
    External(Arc<dyn MapBackend>),
}

/// An eBPF map.
///
/// # Two sides
///
/// Methods mirror two kernel interfaces:
///
/// - **Program side** (BPF helpers): [`lookup_ptr`](Map::lookup_ptr) returns the address of the value
///   itself, and per-CPU maps address the calling CPU's copy (the `cpu` argument);
///   [`update_on_cpu`](Map::update_on_cpu) stores one CPU's copy. [`push`](Map::push),
///   [`pop_into`](Map::pop_into), [`peek_into`](Map::peek_into), [`delete`](Map::delete), the
///   `ringbuf_*` methods and [`get_prog`](Map::get_prog) serve both sides.
/// - **Host side** (`bpf(2)` commands): [`lookup`](Map::lookup), [`update`](Map::update) and
///   [`next_key`](Map::next_key) copy values; per-CPU values are all CPUs' copies concatenated, each
///   padded to 8 bytes ([`host_value_size`](Map::host_value_size) bytes in all).
///
/// # Pointers and concurrency
///
/// A `Map` is `Send + Sync`; every operation may run concurrently with every other. Values live in
/// fixed, 8-byte-aligned slots allocated at creation from the map's [`MapMemory`] and never move, so a
/// pointer from [`lookup_ptr`](Map::lookup_ptr) or [`ringbuf_reserve`](Map::ringbuf_reserve) stays
/// dereferenceable for as long as the `Map` lives (keep it in an `Arc` while programs run). The slot
/// keeps showing the same element until that element is deleted or, in LRU maps, evicted; afterwards the
/// slot may be reused for another element, as preallocated kernel maps do. Updating an existing element
/// writes the new value into the same slot.
///
/// Value bytes are not locked: as in the kernel, a program writing through a pointer races with host
/// copies and other programs, and readers may see torn values (host copies use atomic word accesses, so
/// this is never undefined behaviour on the Rust side). Index structures (hash tables, LPM prefixes,
/// queue positions) are behind per-map locks; arrays take none.
///
/// An external map ([`Map::external`]) keeps its elements in a [`MapBackend`] instead; the guarantees
/// above are then the backend's (values at stable addresses inside its
/// [`value_regions`](Map::value_regions) while it lives).
///
/// # Errors
///
/// Every fallible operation returns a [`MapError`] whose [`errno`](MapError::errno) is what the kernel
/// returns. Wrong key or value lengths give [`MapError::KeySize`] / [`MapError::ValueSize`]
/// (`-EINVAL`), never a panic.
pub struct Map {
    def: MapDef,
    cpus: usize,
    kind: Kind,
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("def", &self.def)
            .field("cpus", &self.cpus)
            .field("len", &self.len())
            .finish()
    }
}

impl Map {
    /// Creates a map on the heap ([`HeapMemory`]) with [`possible_cpus`] CPUs.
    pub fn create(def: MapDef) -> Result<Map, MapError> {
        Map::create_with(def, HeapMemory::shared(), possible_cpus())
    }

    /// Creates a map whose storage comes from `memory`, with [`possible_cpus`] CPUs.
    pub fn create_in(def: MapDef, memory: Arc<dyn MapMemory>) -> Result<Map, MapError> {
        Map::create_with(def, memory, possible_cpus())
    }

    /// Creates a map whose storage comes from `memory`; per-CPU maps keep `cpus` copies of each value
    /// (`1..=`[`MAX_CPUS`](crate::MAX_CPUS), checked for every type).
    ///
    /// The definition is checked like the kernel's `map_alloc_check`: [`MapError::InvalidDef`]
    /// (`-EINVAL`) for impossible sizes or flags, [`MapError::TooBig`] (`-E2BIG`) beyond the kernel's size
    /// limits or [`MAX_MAP_BYTES`](crate::MAX_MAP_BYTES) of storage.
    pub fn create_with(
        def: MapDef,
        memory: Arc<dyn MapMemory>,
        cpus: usize,
    ) -> Result<Map, MapError> {
        def.check(cpus)?;
        let kind = match def.map_type {
            MapType::Array | MapType::PercpuArray => {
                Kind::Array(ArrayMap::new(&def, cpus, &memory)?)
            }
            MapType::ProgArray => Kind::ProgArray(ProgArray::new(&def, &memory)?),
            MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::LruPercpuHash => {
                Kind::Hash(HashMap::new(&def, cpus, &memory)?)
            }
            MapType::LpmTrie => Kind::Lpm(LpmTrie::new(&def, &memory)?),
            MapType::Queue | MapType::Stack => Kind::Queue(QueueStack::new(&def, &memory)?),
            MapType::RingBuf => Kind::RingBuf(RingBuf::new(&def, &memory)?),
            MapType::StackTrace => Kind::StackTrace(StackTraceMap::new(&def)?),
            MapType::PerfEventArray => Kind::PerfEventArray(PerfEventArray::new(&def, &memory)),
        };
        Ok(Map { def, cpus, kind })
    }

    /// A map whose elements live in `backend` ([`MapBackend`]): a persistent pool, say. Every operation
    /// below works on it as on a map of this crate, keys and values checked against `def` before the
    /// backend sees them; programs reach its values through [`lookup_ptr`](Map::lookup_ptr) and
    /// [`value_regions`](Map::value_regions) like any other map's.
    ///
    /// `def` is checked like [`create_with`](Map::create_with)'s with one CPU, and must be a hash map
    /// ([`MapType::Hash`] or [`MapType::LruHash`]): [`MapError::InvalidDef`] otherwise.
    pub fn external(def: MapDef, backend: Arc<dyn MapBackend>) -> Result<Map, MapError> {
        def.check(1)?;
        if !matches!(def.map_type, MapType::Hash | MapType::LruHash) {
            return Err(MapError::InvalidDef {
                name: def.name.clone(),
                map_type: def.map_type,
                reason: "external storage implements hash maps only",
            });
        }
        Ok(Map {
            def,
            cpus: 1,
            kind: Kind::External(backend),
        })
    }

    /// The backend of an external map ([`Map::external`]), `None` for maps of this crate.
    pub fn backend(&self) -> Option<&Arc<dyn MapBackend>> {
        match &self.kind {
            Kind::External(b) => Some(b),
            _ => None,
        }
    }

    /// What identifies the map's storage: its own address, or for an external map its backend's
    /// [`identity`](MapBackend::identity), so that two handles over the same external storage compare
    /// equal.
    pub fn identity(&self) -> usize {
        match &self.kind {
            Kind::External(b) => b.identity(),
            _ => std::ptr::from_ref(self) as usize,
        }
    }

    /// The definition the map was created from.
    pub fn def(&self) -> &MapDef {
        &self.def
    }

    /// The map's type.
    pub fn map_type(&self) -> MapType {
        self.def.map_type
    }

    /// The map's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The number of CPUs the map was created for.
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// The length of a host-side value: `value_size`, or `round_up(value_size, 8) * cpus` for per-CPU
    /// maps (0 for ring buffers).
    pub fn host_value_size(&self) -> usize {
        match &self.kind {
            Kind::Array(a) => a.slots.host_size(),
            Kind::Hash(h) => h.slots.host_size(),
            _ => self.def.value_size as usize,
        }
    }

    /// The number of elements: `max_entries` for arrays, set slots for program arrays, elements for
    /// hash maps, tries and queues, and unconsumed bytes for ring buffers.
    pub fn len(&self) -> usize {
        match &self.kind {
            Kind::Array(_) => self.def.max_entries as usize,
            Kind::ProgArray(p) => p.len(),
            Kind::Hash(h) => h.len(),
            Kind::Lpm(l) => l.len(),
            Kind::Queue(q) => q.len(),
            Kind::RingBuf(r) => r.query(crate::BPF_RB_AVAIL_DATA) as usize,
            Kind::StackTrace(s) => s.len(),
            Kind::PerfEventArray(p) => p.len(),
            Kind::External(b) => b.len(),
        }
    }

    /// Whether [`len`](Map::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn not_supported(&self, op: &'static str) -> MapError {
        MapError::NotSupported {
            map_type: self.def.map_type,
            op,
        }
    }

    fn invalid_op(&self, op: &'static str) -> MapError {
        MapError::InvalidOp {
            map_type: self.def.map_type,
            op,
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        let expected = self.def.key_size as usize;
        if key.len() != expected {
            return Err(MapError::KeySize {
                expected,
                got: key.len(),
            });
        }
        Ok(())
    }

    /// The array index in a checked 4-byte key.
    fn index(key: &[u8]) -> u32 {
        key.try_into().map_or(u32::MAX, u32::from_ne_bytes)
    }

    fn check_out(&self, out: &[u8]) -> Result<(), MapError> {
        let expected = self.host_value_size();
        if out.len() != expected {
            return Err(MapError::ValueSize {
                expected,
                got: out.len(),
            });
        }
        Ok(())
    }

    /// `bpf_map_lookup_elem` from a program: the address of the value, or `None` if there is no
    /// element (or the key has the wrong length, or `cpu` is out of range for a per-CPU map).
    ///
    /// Per-CPU maps return CPU `cpu`'s copy; other maps ignore `cpu`. LPM tries return the longest
    /// matching prefix. Looking up an LRU element counts as a use. Queues, stacks, ring buffers and
    /// program arrays have no program-side lookup and return `None`.
    ///
    /// The pointer stays valid while the map lives; see [`Map`] for what it shows after a delete.
    pub fn lookup_ptr(&self, key: &[u8], cpu: usize) -> Option<NonNull<u8>> {
        self.check_key(key).ok()?;
        match &self.kind {
            Kind::Array(a) => a.lookup_ptr(Map::index(key), cpu),
            Kind::Hash(h) => h.lookup_ptr(key, cpu),
            Kind::Lpm(l) => l.lookup_ptr(key),
            Kind::External(b) => b.lookup_ptr(key),
            Kind::ProgArray(_)
            | Kind::Queue(_)
            | Kind::RingBuf(_)
            | Kind::StackTrace(_)
            | Kind::PerfEventArray(_) => None,
        }
    }

    /// `BPF_MAP_LOOKUP_ELEM`: a copy of the value ([`host_value_size`](Map::host_value_size) bytes).
    ///
    /// [`MapError::NotFound`] if there is no such element (or the array index is out of range). Queues
    /// and stacks (key size 0) peek; program arrays return the program index as 4 bytes.
    pub fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let mut out = vec![0; self.host_value_size()];
        self.lookup_into(key, &mut out)?;
        Ok(out)
    }

    /// [`lookup`](Map::lookup) into a caller's buffer of [`host_value_size`](Map::host_value_size)
    /// bytes.
    pub fn lookup_into(&self, key: &[u8], out: &mut [u8]) -> Result<(), MapError> {
        if let Kind::RingBuf(_) = self.kind {
            return Err(self.not_supported("lookup"));
        }
        self.check_key(key)?;
        self.check_out(out)?;
        match &self.kind {
            Kind::Array(a) => a.lookup_into(Map::index(key), out),
            Kind::ProgArray(p) => {
                let prog = p.get(Map::index(key)).ok_or(MapError::NotFound)?;
                out.copy_from_slice(&prog.to_ne_bytes());
                Ok(())
            }
            Kind::Hash(h) => h.lookup_into(key, out),
            Kind::Lpm(l) => l.lookup_into(key, out),
            Kind::Queue(q) => q.take(out, false),
            Kind::StackTrace(s) => s.lookup_into(Map::index(key), out),
            Kind::PerfEventArray(p) => {
                out.copy_from_slice(&p.lookup(Map::index(key))?.to_ne_bytes());
                Ok(())
            }
            Kind::External(b) => b.lookup_into(key, out),
            Kind::RingBuf(_) => Err(self.not_supported("lookup")),
        }
    }

    /// `BPF_MAP_UPDATE_ELEM` with flags `BPF_ANY`, `BPF_NOEXIST` or `BPF_EXIST`; `value` has
    /// [`host_value_size`](Map::host_value_size) bytes (every CPU's copy for per-CPU maps).
    ///
    /// Errors as in the kernel: [`MapError::InvalidFlags`] for other flags (including `BPF_F_LOCK`,
    /// since values have no spin lock), [`MapError::Exists`] / [`MapError::NotFound`] when
    /// `BPF_NOEXIST` / `BPF_EXIST` do not hold (arrays always exist), [`MapError::Full`] for a full hash
    /// map (LRU maps evict instead), [`MapError::IndexOutOfRange`] past an array's end,
    /// [`MapError::NoSpace`] for a full LPM trie and [`MapError::PrefixTooLong`]. Program arrays store a
    /// `u32` program index and take only `BPF_ANY`. Queues and stacks (key size 0) push.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.update_src(key, ValueSrc::Host(value), flags)
    }

    /// `bpf_map_update_elem` from a program running on `cpu`: `value` has `value_size` bytes. For
    /// per-CPU maps only CPU `cpu`'s copy changes (a new element's other copies are zeroed); other maps
    /// behave as [`update`](Map::update).
    pub fn update_on_cpu(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        cpu: usize,
    ) -> Result<(), MapError> {
        if let Kind::ProgArray(_) = self.kind {
            return Err(self.not_supported("program-side update"));
        }
        self.update_src(key, ValueSrc::Cpu(cpu, value), flags)
    }

    fn update_src(&self, key: &[u8], src: ValueSrc<'_>, flags: u64) -> Result<(), MapError> {
        if let Kind::RingBuf(_) = self.kind {
            return Err(self.not_supported("update"));
        }
        if let Kind::StackTrace(_) = self.kind {
            // Stacks are stored by `bpf_get_stackid` only (`stack_map_update_elem`).
            return Err(self.invalid_op("update"));
        }
        self.check_key(key)?;
        match &self.kind {
            Kind::Array(a) => a.update(Map::index(key), src, flags),
            Kind::ProgArray(p) => {
                let (ValueSrc::Host(v) | ValueSrc::Cpu(_, v)) = src;
                let prog: [u8; 4] = v.try_into().map_err(|_| MapError::ValueSize {
                    expected: 4,
                    got: v.len(),
                })?;
                p.update(Map::index(key), u32::from_ne_bytes(prog), flags)
            }
            Kind::Hash(h) => h.update(key, src, flags),
            Kind::Lpm(l) => l.update(key, src, flags),
            Kind::Queue(q) => {
                let (ValueSrc::Host(v) | ValueSrc::Cpu(_, v)) = src;
                q.push(v, flags)
            }
            Kind::External(b) => {
                let (ValueSrc::Host(v) | ValueSrc::Cpu(_, v)) = src;
                self.check_out(v)?;
                b.update(key, v, flags)
            }
            Kind::RingBuf(_) => Err(self.not_supported("update")),
            Kind::StackTrace(_) => Err(self.invalid_op("update")),
            Kind::PerfEventArray(p) => {
                let (ValueSrc::Host(v) | ValueSrc::Cpu(_, v)) = src;
                let value: [u8; 4] = v.try_into().map_err(|_| MapError::ValueSize {
                    expected: 4,
                    got: v.len(),
                })?;
                p.update(Map::index(key), u32::from_ne_bytes(value))
            }
        }
    }

    /// `BPF_MAP_DELETE_ELEM` / `bpf_map_delete_elem`.
    ///
    /// [`MapError::NotFound`] if absent; arrays, queues and stacks refuse with [`MapError::InvalidOp`]
    /// (`-EINVAL`); program arrays give [`MapError::IndexOutOfRange`] past their end.
    pub fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        match &self.kind {
            Kind::Array(_) | Kind::Queue(_) => return Err(self.invalid_op("delete")),
            Kind::RingBuf(_) => return Err(self.not_supported("delete")),
            _ => {}
        }
        self.check_key(key)?;
        match &self.kind {
            Kind::ProgArray(p) => p.delete(Map::index(key)),
            Kind::Hash(h) => h.delete(key),
            Kind::Lpm(l) => l.delete(key),
            Kind::StackTrace(s) => s.delete(Map::index(key)),
            Kind::PerfEventArray(p) => p.delete(Map::index(key)),
            Kind::External(b) => b.delete(key),
            Kind::Array(_) | Kind::Queue(_) => Err(self.invalid_op("delete")),
            Kind::RingBuf(_) => Err(self.not_supported("delete")),
        }
    }

    /// `BPF_MAP_GET_NEXT_KEY`: the key after `key`, or the first key if `key` is `None` or not in the
    /// map. [`MapError::NotFound`] after the last key.
    ///
    /// Arrays go by index. Hash maps and LPM tries go in slot order, which is stable while the map is
    /// not modified and lets a loop delete the key it just got.
    pub fn next_key(&self, key: Option<&[u8]>) -> Result<Vec<u8>, MapError> {
        let mut out = vec![0; self.def.key_size as usize];
        self.next_key_into(key, &mut out)?;
        Ok(out)
    }

    /// [`next_key`](Map::next_key) into a caller's buffer of `key_size` bytes.
    pub fn next_key_into(&self, key: Option<&[u8]>, out: &mut [u8]) -> Result<(), MapError> {
        match &self.kind {
            Kind::Queue(_) => return Err(self.invalid_op("next_key")),
            Kind::RingBuf(_) => return Err(self.not_supported("next_key")),
            _ => {}
        }
        if let Some(k) = key {
            self.check_key(k)?;
        }
        self.check_key(out)?;
        let index = |k: Option<&[u8]>| k.map(Map::index);
        match &self.kind {
            Kind::Array(a) => {
                out.copy_from_slice(&a.next_key(index(key))?.to_ne_bytes());
                Ok(())
            }
            Kind::ProgArray(p) => {
                out.copy_from_slice(&p.next_key(index(key))?.to_ne_bytes());
                Ok(())
            }
            Kind::Hash(h) => h.next_key(key, out),
            Kind::Lpm(l) => l.next_key(key, out),
            Kind::StackTrace(s) => {
                out.copy_from_slice(&s.next_key(index(key))?.to_ne_bytes());
                Ok(())
            }
            Kind::PerfEventArray(p) => {
                out.copy_from_slice(&p.next_key(index(key))?.to_ne_bytes());
                Ok(())
            }
            Kind::External(b) => b.next_key_into(key, out),
            Kind::Queue(_) => Err(self.invalid_op("next_key")),
            Kind::RingBuf(_) => Err(self.not_supported("next_key")),
        }
    }

    /// All keys, by repeated [`next_key`](Map::next_key). Stops after `max_entries` keys, so it ends
    /// even while other threads modify the map.
    pub fn keys(&self) -> Keys<'_> {
        Keys {
            map: self,
            prev: None,
            left: match &self.kind {
                Kind::StackTrace(s) => s.ids(),
                _ => self.def.max_entries as usize,
            },
        }
    }

    fn queue(&self, op: &'static str) -> Result<&QueueStack, MapError> {
        match &self.kind {
            Kind::Queue(q) => Ok(q),
            _ => Err(self.not_supported(op)),
        }
    }

    /// `bpf_map_push_elem`: appends to a queue or stack. `BPF_EXIST` overwrites the oldest element
    /// when full; otherwise a full map gives [`MapError::Full`]. `BPF_NOEXIST` is invalid.
    pub fn push(&self, value: &[u8], flags: u64) -> Result<(), MapError> {
        self.queue("push")?.push(value, flags)
    }

    /// `bpf_map_pop_elem`: removes and returns the oldest (queue) or newest (stack) element;
    /// [`MapError::NotFound`] when empty.
    pub fn pop(&self) -> Result<Vec<u8>, MapError> {
        let mut out = vec![0; self.def.value_size as usize];
        self.pop_into(&mut out)?;
        Ok(out)
    }

    /// [`pop`](Map::pop) into a buffer of `value_size` bytes.
    pub fn pop_into(&self, out: &mut [u8]) -> Result<(), MapError> {
        self.queue("pop")?.take(out, true)
    }

    /// `bpf_map_peek_elem`: [`pop`](Map::pop) without removing.
    pub fn peek(&self) -> Result<Vec<u8>, MapError> {
        let mut out = vec![0; self.def.value_size as usize];
        self.peek_into(&mut out)?;
        Ok(out)
    }

    /// [`peek`](Map::peek) into a buffer of `value_size` bytes.
    pub fn peek_into(&self, out: &mut [u8]) -> Result<(), MapError> {
        self.queue("peek")?.take(out, false)
    }

    /// The program index stored at `index` of a program array (for `bpf_tail_call`); `None` if the
    /// slot is empty, out of range, or this is not a program array.
    pub fn get_prog(&self, index: u32) -> Option<u32> {
        match &self.kind {
            Kind::ProgArray(p) => p.get(index),
            _ => None,
        }
    }

    fn ringbuf(&self, op: &'static str) -> Result<&RingBuf, MapError> {
        match &self.kind {
            Kind::RingBuf(r) => Ok(r),
            _ => Err(self.not_supported(op)),
        }
    }

    /// `bpf_ringbuf_reserve`: a pointer to `size` writable bytes in the ring, or `None` if `flags` is
    /// not 0, the ring has no room, or this is not a ring buffer. The record must be passed to
    /// [`ringbuf_submit`](Map::ringbuf_submit) or [`ringbuf_discard`](Map::ringbuf_discard); until
    /// then the consumer stops at it.
    pub fn ringbuf_reserve(&self, size: u64, flags: u64) -> Option<NonNull<u8>> {
        self.ringbuf("reserve").ok()?.reserve(size, flags)
    }

    /// `bpf_ringbuf_submit`: commits a reserved record. The wakeup flags are accepted and ignored.
    /// [`MapError::InvalidPointer`] if `ptr` is not a record currently reserved in this ring.
    pub fn ringbuf_submit(&self, ptr: *mut u8, _flags: u64) -> Result<(), MapError> {
        self.ringbuf("submit")?.commit(ptr, false)
    }

    /// `bpf_ringbuf_discard`: releases a reserved record without handing it to the consumer.
    pub fn ringbuf_discard(&self, ptr: *mut u8, _flags: u64) -> Result<(), MapError> {
        self.ringbuf("discard")?.commit(ptr, true)
    }

    /// `bpf_ringbuf_output`: copies `data` into a new record. [`MapError::RingFull`] (`-EAGAIN`) if it
    /// does not fit, [`MapError::InvalidFlags`] for flags other than the wakeup flags.
    pub fn ringbuf_output(&self, data: &[u8], flags: u64) -> Result<(), MapError> {
        self.ringbuf("output")?.output(data, flags)
    }

    /// `bpf_ringbuf_query` with `BPF_RB_AVAIL_DATA`, `BPF_RB_RING_SIZE`, `BPF_RB_CONS_POS` or
    /// `BPF_RB_PROD_POS`; 0 for other flags or maps.
    pub fn ringbuf_query(&self, flag: u64) -> u64 {
        self.ringbuf("query").map_or(0, |r| r.query(flag))
    }

    /// The host-side consumer: passes every committed record to `f`, in order, skipping discarded
    /// ones and stopping at the first record still reserved; returns how many records `f` got.
    ///
    /// [`MapError::Busy`] if another thread is consuming; [`MapError::CorruptRecord`] if a header is
    /// impossible (a program wrote outside its record).
    pub fn ringbuf_consume(&self, f: &mut impl FnMut(&[u8])) -> Result<usize, MapError> {
        self.ringbuf("consume")?.consume(f)
    }

    /// `bpf_get_stackid` after the stack walk: stores `ips` (innermost first, the `skip` frames
    /// already dropped; deeper stacks are cut to `value_size / 8` frames) in a stack trace map and
    /// returns its id. [`MapError::Exists`] (`-EEXIST`) when another stack holds the id and
    /// `flags` lacks `BPF_F_REUSE_STACKID`; [`MapError::NotSupported`] on other map types.
    pub fn store_stack(&self, ips: &[u64], skip: u64, flags: u64) -> Result<u32, MapError> {
        match &self.kind {
            Kind::StackTrace(s) => s.store(ips, skip, flags),
            _ => Err(self.not_supported("store_stack")),
        }
    }

    /// `bpf_perf_event_output` from a program running on `cpu`: appends `data` to the slot `flags`
    /// names (`BPF_F_CURRENT_CPU`: `cpu`'s). [`MapError::IndexOutOfRange`] (`-E2BIG`) past the
    /// last slot, [`MapError::NoSpace`] (`-ENOSPC`, counted in [`perf_lost`](Map::perf_lost)) when
    /// the slot is full, [`MapError::NotSupported`] on other map types.
    pub fn perf_output(&self, data: &[u8], flags: u64, cpu: usize) -> Result<(), MapError> {
        match &self.kind {
            Kind::PerfEventArray(p) => p.output(data, flags, cpu),
            _ => Err(self.not_supported("perf_event_output")),
        }
    }

    /// Drains a perf event array: every record to `f` as `(slot, bytes)`, oldest first per slot;
    /// how many (0 for other map types).
    pub fn perf_consume(&self, f: &mut dyn FnMut(u32, &[u8])) -> usize {
        match &self.kind {
            Kind::PerfEventArray(p) => p.consume(f),
            _ => 0,
        }
    }

    /// Records a perf event array dropped because their slot was full.
    pub fn perf_lost(&self) -> u64 {
        match &self.kind {
            Kind::PerfEventArray(p) => p.lost(),
            _ => 0,
        }
    }

    /// The most frames a stack trace map keeps per stack (0 for other maps).
    pub fn stack_depth(&self) -> usize {
        match &self.kind {
            Kind::StackTrace(s) => s.depth(),
            _ => 0,
        }
    }

    /// The memory programs may access through pointers from this map: the value slots of arrays, hash
    /// maps and tries, the data area of ring buffers, nothing for queues, stacks and program arrays
    /// (whose values are only copied). An interpreter checks loads and stores against these; an
    /// isolation layer maps them into a protection domain.
    ///
    /// Regions cover free slots and padding too: they bound where a pointer may go, not which
    /// elements exist.
    pub fn value_regions(&self) -> Vec<MemRegion> {
        match &self.kind {
            Kind::Array(a) => vec![a.slots.region()],
            Kind::Hash(h) => vec![h.slots.region()],
            Kind::Lpm(l) => vec![l.slots.region()],
            Kind::RingBuf(r) => vec![r.region()],
            Kind::External(b) => b.value_regions(),
            Kind::ProgArray(_) | Kind::Queue(_) | Kind::StackTrace(_) | Kind::PerfEventArray(_) => {
                Vec::new()
            }
        }
    }
}

impl Map {
    /// The read-only value memory of this map in which programs' atomics apply in place
    /// ([`MapBackend::atomic_windows`]); empty for maps whose values are writable or immutable.
    pub fn atomic_windows(&self) -> Vec<AtomicWindow> {
        match &self.kind {
            Kind::External(b) => b.atomic_windows(),
            _ => Vec::new(),
        }
    }
}

/// The iterator of [`Map::keys`].
#[derive(Debug)]
pub struct Keys<'a> {
    map: &'a Map,
    prev: Option<Vec<u8>>,
    left: usize,
}

impl Iterator for Keys<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        self.left = self.left.checked_sub(1)?;
        let next = self.map.next_key(self.prev.as_deref()).ok()?;
        self.prev = Some(next.clone());
        Some(next)
    }
}

#[cfg(test)]
impl Map {
    /// The ring buffer inside, for tests that write records as a program would.
    pub(crate) fn kind_for_tests(&self) -> Option<&RingBuf> {
        match &self.kind {
            Kind::RingBuf(r) => Some(r),
            _ => None,
        }
    }
}

/// Creates a map with 4 CPUs on the heap, for tests.
#[cfg(test)]
pub(crate) fn test_map(def: MapDef) -> Map {
    Map::create_with(def, HeapMemory::shared(), 4).expect("valid test map")
}

/// A host-order `u32` key or value, for tests.
#[cfg(test)]
pub(crate) fn u32b(n: u32) -> [u8; 4] {
    n.to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BPF_ANY, BPF_EXIST, BPF_NOEXIST};
    use proptest::prelude::*;
    use std::collections::HashMap as Model;

    #[test]
    fn maps_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Map>();
        check::<HeapMemory>();
    }

    #[test]
    fn create_checks_the_definition() {
        let bad = MapDef::new(MapType::Array, 8, 4, 1).with_name("cfg");
        let err = Map::create(bad).unwrap_err();
        assert!(
            matches!(&err, MapError::InvalidDef { name, map_type: MapType::Array, .. } if name == "cfg")
        );
        assert_eq!(err.errno(), -22);
        let huge = MapDef::new(MapType::Hash, 8, 1 << 20, 2048);
        assert!(matches!(Map::create(huge), Err(MapError::TooBig { .. })));
        let m = Map::create(MapDef::new(MapType::PercpuArray, 4, 8, 1).with_name("pc")).unwrap();
        assert_eq!(m.cpus(), possible_cpus());
        assert_eq!(m.name(), "pc");
        assert_eq!(m.map_type(), MapType::PercpuArray);
        assert_eq!(m.def().max_entries, 1);
        assert!(format!("{m:?}").contains("pc"));
        assert_eq!(
            Map::create_with(
                MapDef::new(MapType::Array, 4, 8, 1),
                HeapMemory::shared(),
                0
            )
            .unwrap_err(),
            MapError::InvalidCpuCount(0)
        );
    }

    #[test]
    fn operations_of_other_map_types_are_refused() {
        let h = test_map(MapDef::new(MapType::Hash, 4, 4, 4));
        let ns = |op| MapError::NotSupported {
            map_type: MapType::Hash,
            op,
        };
        assert_eq!(h.push(&u32b(1), BPF_ANY), Err(ns("push")));
        assert_eq!(h.pop(), Err(ns("pop")));
        assert_eq!(h.peek().map_err(|e| e.errno()), Err(-524));
        assert_eq!(h.ringbuf_output(&[1], 0), Err(ns("output")));
        assert_eq!(h.ringbuf_submit(std::ptr::null_mut(), 0), Err(ns("submit")));
        assert_eq!(
            h.ringbuf_discard(std::ptr::null_mut(), 0),
            Err(ns("discard"))
        );
        assert_eq!(h.ringbuf_consume(&mut |_: &[u8]| {}), Err(ns("consume")));
        assert!(h.ringbuf_reserve(8, 0).is_none());
        assert_eq!(h.ringbuf_query(crate::BPF_RB_RING_SIZE), 0);
        assert_eq!(h.get_prog(0), None);
    }

    /// Two threads per map: each owns its keys, inserting, overwriting, looking up and deleting them,
    /// and checking that its own keys always hold what it wrote last.
    fn stress(map_type: MapType, max_entries: u32) {
        let m = test_map(MapDef::new(map_type, 8, 16, max_entries));
        let lru = map_type == MapType::LruHash;
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let m = &m;
                s.spawn(move || {
                    let mut mine: Model<u64, u64> = Model::new();
                    let mut x = t + 1;
                    for i in 0..20_000u64 {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let k = (x >> 33) % 64 * 3 + t; // Disjoint key sets.
                        let key = k.to_ne_bytes();
                        let mut value = [0u8; 16];
                        value[..8].copy_from_slice(&k.to_ne_bytes());
                        value[8..].copy_from_slice(&i.to_ne_bytes());
                        match (x >> 20) % 4 {
                            0 | 1 => match m.update(&key, &value, BPF_ANY) {
                                Ok(()) => {
                                    mine.insert(k, i);
                                }
                                Err(e) => {
                                    assert!(!lru, "LRU updates never fail: {e}");
                                    assert_eq!(e, MapError::Full);
                                    assert!(!mine.contains_key(&k));
                                }
                            },
                            2 => match m.lookup(&key) {
                                Ok(v) => {
                                    assert_eq!(v[..8], k.to_ne_bytes());
                                    let stamp = u64::from_ne_bytes(v[8..].try_into().unwrap());
                                    assert_eq!(mine.get(&k), Some(&stamp), "thread {t} key {k}");
                                }
                                Err(e) => {
                                    assert_eq!(e, MapError::NotFound);
                                    // LRU maps may have evicted it.
                                    assert!(lru || !mine.contains_key(&k));
                                    mine.remove(&k);
                                }
                            },
                            _ => {
                                let got = m.delete(&key);
                                let had = mine.remove(&k).is_some();
                                if !lru {
                                    assert_eq!(got.is_ok(), had);
                                }
                            }
                        }
                        if let Some(p) = m.lookup_ptr(&key, 0) {
                            assert!(m.value_regions()[0].contains(p.as_ptr() as usize, 16));
                        }
                        assert!(m.len() <= max_entries as usize);
                    }
                });
            }
        });
        assert!(m.len() <= max_entries as usize);
        assert_eq!(m.keys().count(), m.len());
    }

    #[test]
    fn concurrent_hash_stress() {
        stress(MapType::Hash, 100);
    }

    #[test]
    fn concurrent_lru_stress() {
        stress(MapType::LruHash, 50);
    }

    /// Programs' lookups take no lock (`ReadIndex`): while two threads insert, overwrite and
    /// delete their own keys (sharing buckets with everyone's), two readers look up keys nobody
    /// writes and must find every one, every time; each writer's own lookups see its last insert
    /// or delete; and no lookup returns a pointer outside the values.
    fn lookups_racing_writers(map_type: MapType) {
        let m = test_map(MapDef::new(map_type, 4, 8, 256));
        let stable: Vec<u32> = (0..32).map(|k| k * 7 + 1000).collect();
        for &k in &stable {
            m.update(&k.to_ne_bytes(), &u64::from(k).to_ne_bytes(), BPF_ANY)
                .unwrap();
        }
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let m = &m;
                s.spawn(move || {
                    let mut x = u64::from(t) + 7;
                    for i in 0..40_000u64 {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        // At most 2 * 96 churned keys: the map never fills, nothing is evicted.
                        let k = ((x >> 33) % 96) as u32 * 2 + t;
                        let key = k.to_ne_bytes();
                        if (x >> 20) % 3 == 0 {
                            let _ = m.delete(&key);
                            assert!(m.lookup_ptr(&key, 0).is_none(), "{k} deleted");
                        } else {
                            m.update(&key, &i.to_ne_bytes(), BPF_ANY).unwrap();
                            let p = m.lookup_ptr(&key, 0).expect("own insert found");
                            assert!(m.value_regions()[0].contains(p.as_ptr() as usize, 8));
                        }
                    }
                });
            }
            for _ in 0..2 {
                let (m, stable, done) = (&m, &stable, &done);
                s.spawn(move || {
                    let mut rounds = 0u64;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) || rounds < 100 {
                        for &k in stable {
                            let p = m.lookup_ptr(&k.to_ne_bytes(), 0);
                            assert!(p.is_some(), "stable key {k} missed");
                        }
                        rounds += 1;
                    }
                });
            }
            // The writers end first (their threads are joined by the scope after this closure);
            // readers keep going until told.
            std::thread::sleep(std::time::Duration::from_millis(300));
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        for &k in &stable {
            assert_eq!(
                m.lookup(&k.to_ne_bytes()),
                Ok(u64::from(k).to_ne_bytes().to_vec())
            );
        }
        assert_eq!(m.keys().count(), m.len());
    }

    #[test]
    fn lock_free_hash_lookups_race_updates_and_deletes() {
        lookups_racing_writers(MapType::Hash);
    }

    #[test]
    fn lock_free_lru_lookups_race_updates_and_deletes() {
        lookups_racing_writers(MapType::LruHash);
    }

    /// One hash map operation for the model test.
    #[derive(Debug, Clone)]
    enum Op {
        Update(u8, u8, u64),
        Lookup(u8),
        Delete(u8),
        NextKey(Option<u8>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..12u8, any::<u8>(), prop_oneof![Just(BPF_ANY), Just(BPF_NOEXIST), Just(BPF_EXIST), 3..6u64])
                .prop_map(|(k, v, f)| Op::Update(k, v, f)),
            2 => (0..12u8).prop_map(Op::Lookup),
            2 => (0..12u8).prop_map(Op::Delete),
            1 => proptest::option::of(0..12u8).prop_map(Op::NextKey),
        ]
    }

    proptest! {
        /// A hash map of 6 elements behaves like a `std` map with the kernel's flag and capacity rules.
        #[test]
        fn hash_matches_a_model(ops in proptest::collection::vec(op(), 1..200)) {
            const MAX: usize = 6;
            let m = test_map(MapDef::new(MapType::Hash, 1, 2, MAX as u32));
            let mut model: Model<u8, [u8; 2]> = Model::new();
            for op in ops {
                match op {
                    Op::Update(k, v, flags) => {
                        let value = [v, k];
                        let exists = model.contains_key(&k);
                        let want = if flags > BPF_EXIST {
                            Err(MapError::InvalidFlags { flags })
                        } else if exists && flags == BPF_NOEXIST {
                            Err(MapError::Exists)
                        } else if !exists && flags == BPF_EXIST {
                            Err(MapError::NotFound)
                        } else if !exists && model.len() == MAX {
                            Err(MapError::Full)
                        } else {
                            model.insert(k, value);
                            Ok(())
                        };
                        prop_assert_eq!(m.update(&[k], &value, flags), want);
                    }
                    Op::Lookup(k) => {
                        let want = model.get(&k).map(|v| v.to_vec()).ok_or(MapError::NotFound);
                        prop_assert_eq!(m.lookup(&[k]), want);
                        prop_assert_eq!(m.lookup_ptr(&[k], 0).is_some(), model.contains_key(&k));
                    }
                    Op::Delete(k) => {
                        let want = model.remove(&k).map(|_| ()).ok_or(MapError::NotFound);
                        prop_assert_eq!(m.delete(&[k]), want);
                    }
                    Op::NextKey(k) => {
                        let got = m.next_key(k.as_ref().map(std::slice::from_ref));
                        match got {
                            Ok(next) => prop_assert!(model.contains_key(&next[0])),
                            Err(e) => {
                                prop_assert_eq!(e, MapError::NotFound);
                                // The end: the map is empty or `k` is its last key (an absent
                                // `k` restarts from the first key).
                                prop_assert!(
                                    model.is_empty() || k.is_some_and(|k| model.contains_key(&k))
                                );
                            }
                        }
                    }
                }
                prop_assert_eq!(m.len(), model.len());
            }
            let mut keys: Vec<u8> = m.keys().map(|k| k[0]).collect();
            keys.sort_unstable();
            let mut want: Vec<u8> = model.keys().copied().collect();
            want.sort_unstable();
            prop_assert_eq!(keys, want);
        }
    }
}
