//! Abstract machine states: what each register and stack byte may hold at one point of one path.

use crate::scalar::Scalar;
use std::fmt;
use std::rc::Rc;

/// Bytes of stack per frame.
pub const STACK_SIZE: i64 = 512;
/// Stack slots (8 bytes each) per frame.
pub const SLOTS: usize = 64;

/// What a pointer points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    /// The context structure.
    Ctx,
    /// The stack of frame `frame` (0 = the main function).
    Stack {
        /// The frame's depth.
        frame: usize,
    },
    /// A buffer of known size (the generic context, a callback's key).
    Mem {
        /// Its size.
        size: u64,
        /// Whether stores are allowed.
        writable: bool,
    },
    /// A value of map `map`.
    MapValue {
        /// Index into the environment's maps.
        map: usize,
    },
    /// The packet data. Pointers with a variable offset get their own `id` (0: constant offsets from
    /// the packet start); bounds proven for one of them hold for every pointer with the same id.
    Packet {
        /// Which variable offset this pointer shares (0 for none).
        id: u32,
    },
    /// The end of the packet (not dereferenceable).
    PacketEnd,
    /// The packet metadata.
    PacketMeta,
    /// A map held in a map of maps (`bpf_map_lookup_elem` on one returns it, or null); a map
    /// handle once checked against null, never dereferenced.
    MapHandle {
        /// Index into the environment's maps of the map it is like.
        map: usize,
    },
    /// A ring buffer reservation.
    Ringbuf {
        /// Reserved size.
        size: u64,
        /// The reference to release.
        ref_id: u32,
    },
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Region::Ctx => write!(f, "ctx"),
            Region::Stack { frame } => write!(f, "fp{frame}"),
            Region::Mem { size, .. } => write!(f, "mem({size})"),
            Region::MapValue { map } => write!(f, "map_value(map#{map})"),
            Region::Packet { id: 0 } => write!(f, "pkt"),
            Region::Packet { id } => write!(f, "pkt#{id}"),
            Region::PacketEnd => write!(f, "pkt_end"),
            Region::PacketMeta => write!(f, "pkt_meta"),
            Region::MapHandle { map } => write!(f, "map_ptr(map#{map})"),
            Region::Ringbuf { size, ref_id } => write!(f, "ringbuf_mem({size}, ref {ref_id})"),
        }
    }
}

/// What a register holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reg {
    /// Never written on this path.
    NotInit,
    /// A number.
    Scalar(Scalar),
    /// A pointer: `region` start + `off` + a value of `var`. `null_id` is set while it may still be
    /// null (every register with the same id is the same pointer).
    Ptr {
        /// Where it points.
        region: Region,
        /// Constant offset.
        off: i64,
        /// Variable offset.
        var: Scalar,
        /// Set while the pointer may be null.
        null_id: Option<u32>,
    },
    /// A map handle (`lddw rX, map_idx(N)`).
    Map {
        /// Index into the environment's maps.
        map: usize,
    },
    /// A function's address (`lddw rX, code(OFF)`), as an instruction index.
    Func {
        /// The function's first instruction (slot index).
        pc: usize,
    },
}

impl Reg {
    /// An unknown number.
    pub fn unknown() -> Reg {
        Reg::Scalar(Scalar::UNKNOWN)
    }

    /// A pointer at `off` into `region`.
    pub fn ptr(region: Region, off: i64) -> Reg {
        Reg::Ptr {
            region,
            off,
            var: Scalar::constant(0),
            null_id: None,
        }
    }

    /// Whether the register holds a pointer of any kind (a leak if stored or returned unprivileged).
    pub fn is_pointer(&self) -> bool {
        matches!(self, Reg::Ptr { .. } | Reg::Map { .. } | Reg::Func { .. })
    }

    /// Whether `self` (an earlier state's register) covers every value `new` may hold, so that
    /// everything proven from `self` holds for `new`. Ids (a nullable pointer's, a packet pointer's
    /// variable offset, a reference) need not be equal, only consistently paired through `ids`.
    pub fn covers(&self, new: &Reg, ids: &mut IdMap) -> bool {
        match (self, new) {
            (Reg::NotInit, _) => true,
            (Reg::Scalar(a), Reg::Scalar(b)) => a.contains(b),
            (
                Reg::Ptr {
                    region: r1,
                    off: o1,
                    var: v1,
                    null_id: n1,
                },
                Reg::Ptr {
                    region: r2,
                    off: o2,
                    var: v2,
                    null_id: n2,
                },
            ) => {
                o1 == o2
                    && v1.contains(v2)
                    && r1.covers(r2, ids)
                    && ids.pair(IdKind::Object, n1.unwrap_or(0), n2.unwrap_or(0))
            }
            (a, b) => a == b,
        }
    }

    /// Whether the register carries an id ([`IdMap`]).
    fn has_id(&self) -> bool {
        matches!(
            self,
            Reg::Ptr {
                null_id: Some(_),
                ..
            } | Reg::Ptr {
                region: Region::Packet { id: 1.. } | Region::Ringbuf { .. },
                ..
            }
        )
    }
}

/// Which id space an id belongs to: packet pointers' variable offsets are numbered apart from the
/// other ids (nullable pointers and references share theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A nullable pointer's or an acquired reference's id.
    Object,
    /// A packet pointer's variable-offset id.
    Packet,
}

/// The pairs of ids of an earlier state and a new one found to stand for the same thing while the
/// two are compared (the kernel's `bpf_idmap` and `check_ids`). Ids are handed out in the order
/// paths reach the instructions that make them, so two paths through the same code give their
/// pointers different ids: a state covers another when its ids map one to one onto the other's.
#[derive(Debug, Default)]
pub struct IdMap {
    pairs: Vec<(IdKind, u32, u32)>,
}

impl IdMap {
    /// Pairs `old` with `new` (0 is no id and pairs only with 0): false when either is already
    /// paired with another.
    pub fn pair(&mut self, kind: IdKind, old: u32, new: u32) -> bool {
        if old == 0 || new == 0 {
            return old == new;
        }
        for &(k, o, n) in &self.pairs {
            if k != kind {
                continue;
            }
            if o == old {
                return n == new;
            }
            if n == new {
                return false;
            }
        }
        self.pairs.push((kind, old, new));
        true
    }

    /// The new id `old` was paired with.
    pub fn paired(&self, kind: IdKind, old: u32) -> Option<u32> {
        self.pairs
            .iter()
            .find(|&&(k, o, _)| k == kind && o == old)
            .map(|&(_, _, n)| n)
    }
}

impl Region {
    /// Whether pointers into `self` (an earlier state's) and into `new` are the same kind of
    /// pointer, ids paired through `ids`.
    fn covers(&self, new: &Region, ids: &mut IdMap) -> bool {
        match (self, new) {
            (Region::Packet { id: a }, Region::Packet { id: b }) => {
                ids.pair(IdKind::Packet, *a, *b)
            }
            (
                Region::Ringbuf {
                    size: s1,
                    ref_id: a,
                },
                Region::Ringbuf {
                    size: s2,
                    ref_id: b,
                },
            ) => s1 == s2 && ids.pair(IdKind::Object, *a, *b),
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reg::NotInit => write!(f, "uninit"),
            Reg::Scalar(s) => write_scalar(f, s),
            Reg::Ptr {
                region,
                off,
                var,
                null_id,
            } => {
                write!(f, "{region}")?;
                if null_id.is_some() {
                    write!(f, "_or_null")?;
                }
                write!(f, "{off:+}")?;
                if var.as_const() != Some(0) {
                    write!(f, "+var(")?;
                    write_scalar(f, var)?;
                    write!(f, ")")?;
                }
                Ok(())
            }
            Reg::Map { map } => write!(f, "map_ptr(map#{map})"),
            Reg::Func { pc } => write!(f, "func@{pc}"),
        }
    }
}

fn write_scalar(f: &mut fmt::Formatter<'_>, s: &Scalar) -> fmt::Result {
    match s.as_const() {
        Some(v) if v as i64 >= -4096 && (v as i64) < 65536 => write!(f, "{}", v as i64),
        Some(v) => write!(f, "{v:#x}"),
        None if s.umin == 0 && s.umax == u64::MAX && s.smin == i64::MIN && s.smax == i64::MAX => {
            write!(f, "scalar")
        }
        None => {
            write!(f, "scalar(")?;
            if s.umin != 0 || s.umax != u64::MAX {
                write!(f, "u{}..={}", s.umin, s.umax)?;
            }
            if s.smin != i64::MIN || s.smax != i64::MAX {
                if s.umin != 0 || s.umax != u64::MAX {
                    write!(f, ",")?;
                }
                write!(f, "s{}..={}", s.smin, s.smax)?;
            }
            write!(f, ")")
        }
    }
}

/// What one stack byte holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Byte {
    /// Never written.
    Uninit,
    /// Written data (a number, or bytes of a pointer written partially).
    Data,
    /// Part of a spilled register (see the slot's `spill`).
    Spill,
}

/// One 8-byte stack slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    /// Each byte's state.
    pub bytes: [Byte; 8],
    /// The register spilled here by an aligned 8-byte store.
    pub spill: Option<Reg>,
}

impl Slot {
    /// A slot never written.
    pub const EMPTY: Slot = Slot {
        bytes: [Byte::Uninit; 8],
        spill: None,
    };

    /// Whether everything proven with `self` (an earlier state's slot) holds with `new`. Written data
    /// covers bytes never written only for a privileged loader, who may read them; an unprivileged
    /// read of them is refused, so an earlier state with data there proves nothing about it.
    fn covers(&self, new: &Slot, privileged: bool, ids: &mut IdMap) -> bool {
        for (o, n) in self.bytes.iter().zip(&new.bytes) {
            let ok = match (o, n) {
                (Byte::Uninit, _) | (Byte::Data, Byte::Data) => true,
                (Byte::Data, Byte::Uninit) => privileged,
                // Old data covers a spilled number, not a spilled pointer.
                (Byte::Data, Byte::Spill) => matches!(new.spill, Some(Reg::Scalar(_))),
                (Byte::Spill, Byte::Spill) => true,
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        match (&self.spill, &new.spill) {
            (Some(o), Some(n)) => o.covers(n, ids),
            _ => true,
        }
    }
}

/// The accounting of the memory states take: every frame and stack adds its size to a per-thread
/// count while it lives, so the analysis can refuse a program whose states grow too large (states
/// share frames and stacks through `Rc`, so only copies count).
pub(crate) mod memory {
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<usize> = const { Cell::new(0) };
    }

    pub(crate) fn charge(bytes: usize) {
        LIVE.with(|l| l.set(l.get().saturating_add(bytes)));
    }

    pub(crate) fn refund(bytes: usize) {
        LIVE.with(|l| l.set(l.get().saturating_sub(bytes)));
    }

    /// Bytes of frames and stacks alive on this thread.
    pub(crate) fn live() -> usize {
        LIVE.with(Cell::get)
    }
}

/// A frame's 512-byte stack: [`SLOTS`] slots, of which only those from the frame pointer down to the
/// deepest one written are stored (the others were never written).
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct Stack {
    /// The slots from the top (fp-8..fp first) down.
    top_down: Vec<Slot>,
}

impl Clone for Stack {
    fn clone(&self) -> Stack {
        let top_down = self.top_down.clone();
        memory::charge(top_down.capacity() * std::mem::size_of::<Slot>());
        Stack { top_down }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        memory::refund(self.top_down.capacity() * std::mem::size_of::<Slot>());
    }
}

impl Stack {
    /// Slot `i` (0 = the frame's lowest, at fp-512; [`SLOTS`]` - 1` at fp-8).
    pub fn slot(&self, i: usize) -> &Slot {
        SLOTS
            .checked_sub(i + 1)
            .and_then(|j| self.top_down.get(j))
            .unwrap_or(&Slot::EMPTY)
    }

    /// Slot `i`, to change; `None` beyond the frame.
    pub fn slot_mut(&mut self, i: usize) -> Option<&mut Slot> {
        let j = SLOTS.checked_sub(i + 1)?;
        if j >= self.top_down.len() {
            let before = self.top_down.capacity();
            self.top_down.resize(j + 1, Slot::EMPTY);
            let grown = self.top_down.capacity().saturating_sub(before);
            memory::charge(grown * std::mem::size_of::<Slot>());
        }
        self.top_down.get_mut(j)
    }

    /// The slots written so far (and those between them), with their indices as in
    /// [`Stack::slot`].
    pub fn written(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.top_down
            .iter()
            .enumerate()
            .map(|(j, slot)| (SLOTS - 1 - j, slot))
    }

    /// Mutable [`Stack::written`].
    pub fn written_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.top_down.iter_mut()
    }

    /// Whether every slot of `self` (an earlier state's stack) covers `new`'s, ignoring slots outside `live` (bit `i`: [`Stack::slot`] `i`) and
    /// comparing spilled scalars outside `precise` by type only.
    fn covers_relaxed(
        &self,
        new: &Stack,
        privileged: bool,
        work: &mut u64,
        live: u64,
        precise: u64,
        ids: &mut IdMap,
    ) -> bool {
        let n = self.top_down.len().max(new.top_down.len());
        (0..n).all(|j| {
            *work += 1;
            let o = self.top_down.get(j).unwrap_or(&Slot::EMPTY);
            let nw = new.top_down.get(j).unwrap_or(&Slot::EMPTY);
            let bit = SLOTS.checked_sub(j + 1).map_or(u64::MAX, |i| 1u64 << i);
            if live & bit == 0 {
                return true;
            }
            if precise & bit == 0
                && o.bytes == [Byte::Spill; 8]
                && nw.bytes == [Byte::Spill; 8]
                && matches!(
                    (&o.spill, &nw.spill),
                    (Some(Reg::Scalar(_)), Some(Reg::Scalar(_)))
                )
            {
                return true;
            }
            o.covers(nw, privileged, ids)
        })
    }
}

/// One function's frame.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// `r0`-`r10`.
    pub regs: [Reg; 11],
    /// The 512-byte stack, shared with other states until one of them changes it.
    pub stack: Rc<Stack>,
    /// Where to continue in the caller (slot index), `None` in the main function.
    pub return_to: Option<usize>,
    /// For a callback frame: the helper's prototype index isn't needed; `true` when returning must
    /// produce the helper's result in `r0`.
    pub callback: bool,
    /// Deepest stack byte used (bytes below the frame pointer).
    pub stack_depth: u32,
}

impl Clone for Frame {
    fn clone(&self) -> Frame {
        memory::charge(std::mem::size_of::<Frame>());
        Frame {
            regs: self.regs,
            stack: Rc::clone(&self.stack),
            return_to: self.return_to,
            callback: self.callback,
            stack_depth: self.stack_depth,
        }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        memory::refund(std::mem::size_of::<Frame>());
    }
}

impl Frame {
    /// A fresh frame at depth `depth` with the frame pointer set.
    pub fn new(depth: usize, return_to: Option<usize>) -> Frame {
        let mut regs = [Reg::NotInit; 11];
        regs[10] = Reg::ptr(Region::Stack { frame: depth }, 0);
        memory::charge(std::mem::size_of::<Frame>());
        Frame {
            regs,
            stack: Rc::default(),
            return_to,
            callback: false,
            stack_depth: 0,
        }
    }

    /// The stack, to change (copied first if another state shares it).
    pub fn stack_mut(&mut self) -> &mut Stack {
        Rc::make_mut(&mut self.stack)
    }

    /// Marks stack byte `byte` (0 = the frame's lowest) as written data; a spill in its slot no
    /// longer holds a register.
    pub fn write_data(&mut self, byte: usize) {
        if let Some(slot) = self.stack_mut().slot_mut(byte / 8) {
            if slot.spill.take().is_some() {
                slot.bytes = [Byte::Data; 8];
            }
            slot.bytes[byte % 8] = Byte::Data;
        }
    }

    fn covers(&self, new: &Frame, privileged: bool, work: &mut u64, ids: &mut IdMap) -> bool {
        self.covers_relaxed(new, privileged, work, &Relax::NONE, ids)
    }

    /// Whether a register or spilled register of the frame carries an id ([`IdMap`]).
    fn has_ids(&self) -> bool {
        self.regs.iter().any(Reg::has_id)
            || self
                .stack
                .top_down
                .iter()
                .any(|slot| slot.spill.as_ref().is_some_and(Reg::has_id))
    }

    /// [`Frame::covers`] ignoring registers and stack slots `relax` says are dead (no path reads
    /// them before writing them) and comparing scalars it says are imprecise by type only (their
    /// values decide nothing).
    fn covers_relaxed(
        &self,
        new: &Frame,
        privileged: bool,
        work: &mut u64,
        relax: &Relax,
        ids: &mut IdMap,
    ) -> bool {
        let (live, precise) = (relax.regs_live, relax.regs_precise);
        self.return_to == new.return_to
            && self.callback == new.callback
            && self
                .regs
                .iter()
                .zip(&new.regs)
                .enumerate()
                .all(|(r, (o, n))| {
                    *work += 1;
                    let bit = 1u16 << r;
                    if live & bit == 0 {
                        return true;
                    }
                    if precise & bit == 0 && matches!((o, n), (Reg::Scalar(_), Reg::Scalar(_))) {
                        return true;
                    }
                    o.covers(n, ids)
                })
            && (Rc::ptr_eq(&self.stack, &new.stack)
                || self.stack.covers_relaxed(
                    &new.stack,
                    privileged,
                    work,
                    relax.slots_live,
                    relax.slots_precise,
                    ids,
                ))
    }
}

/// What pruning may leave out of the comparison of the innermost frame, by register and stack slot
/// (from the verifier's register-use analysis at the instruction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relax {
    /// Registers some path reads before writing.
    pub regs_live: u16,
    /// Registers whose scalar value may decide safety.
    pub regs_precise: u16,
    /// Stack slots (bit `i`: [`Stack::slot`] `i`) some path reads before overwriting.
    pub slots_live: u64,
    /// Stack slots whose spilled scalar may decide safety.
    pub slots_precise: u64,
}

impl Relax {
    /// Nothing left out: the plain comparison.
    pub const NONE: Relax = Relax {
        regs_live: u16::MAX,
        regs_precise: u16::MAX,
        slots_live: u64::MAX,
        slots_precise: u64::MAX,
    };
}

/// The state of one path at one instruction. Frames are shared with the states it was copied from
/// until one of them changes (`Rc::make_mut`), so copies for branches and pruning are cheap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    /// Call frames, the main function first.
    pub frames: Vec<Rc<Frame>>,
    /// Acquired references not yet released (ring buffer reservations).
    pub refs: Vec<u32>,
    /// Bytes of packet known to exist (from comparisons with `data_end`).
    pub packet_len: u64,
    /// For packet pointers with a variable offset (by id): bytes known to exist from their
    /// variable start.
    pub packet_ranges: Vec<(u32, u64)>,
    /// Bytes of packet metadata known to exist before the packet (from comparisons of `data_meta`
    /// pointers with `data`).
    pub meta_len: u32,
    /// The `bpf_spin_lock` held: the map's index and the lock's offset in its value.
    pub lock: Option<(u32, u32)>,
}

impl State {
    /// Forgets every packet pointer (in every frame's registers and stack slots: they become
    /// unknown numbers) and every packet bound proven, as the kernel's `clear_all_pkt_pointers`
    /// does after a helper that may move the packet.
    pub fn forget_packet_pointers(&mut self) {
        let is_packet = |r: &Reg| {
            matches!(
                r,
                Reg::Ptr {
                    region: Region::Packet { .. } | Region::PacketEnd | Region::PacketMeta,
                    ..
                }
            )
        };
        self.packet_len = 0;
        self.packet_ranges.clear();
        self.meta_len = 0;
        for frame in &mut self.frames {
            let spilled = (0..frame.stack.top_down.len()).any(|i| {
                frame.stack.top_down[i]
                    .spill
                    .as_ref()
                    .is_some_and(is_packet)
            });
            if !spilled && !frame.regs.iter().any(is_packet) {
                continue;
            }
            let frame = Rc::make_mut(frame);
            for r in &mut frame.regs {
                if is_packet(r) {
                    *r = Reg::unknown();
                }
            }
            if spilled {
                for slot in &mut Rc::make_mut(&mut frame.stack).top_down {
                    if slot.spill.as_ref().is_some_and(is_packet) {
                        slot.spill = Some(Reg::unknown());
                    }
                }
            }
        }
    }

    /// The current (innermost) frame.
    pub fn frame(&self) -> &Frame {
        self.frames
            .last()
            .unwrap_or_else(|| unreachable!("a state always has a frame"))
    }

    /// The current frame, mutably (copied first if another state shares it).
    pub fn frame_mut(&mut self) -> &mut Frame {
        Rc::make_mut(
            self.frames
                .last_mut()
                .unwrap_or_else(|| unreachable!("a state always has a frame")),
        )
    }

    /// Frame `depth` (0 = the main function's), mutably, if it is live.
    pub fn frame_at_mut(&mut self, depth: usize) -> Option<&mut Frame> {
        self.frames.get_mut(depth).map(Rc::make_mut)
    }

    /// Register `r` of the current frame.
    pub fn reg(&self, r: usize) -> Reg {
        self.frame().regs.get(r).copied().unwrap_or(Reg::NotInit)
    }

    /// Sets register `r` of the current frame.
    pub fn set(&mut self, r: usize, v: Reg) {
        if self.frame().regs.get(r) == Some(&v) {
            return;
        }
        if let Some(slot) = self.frame_mut().regs.get_mut(r) {
            *slot = v;
        }
    }

    /// Whether everything proven from `self` (an earlier visit) holds for `new`, for a privileged
    /// loader or not. The cheap comparisons come first, then the frames from the innermost out
    /// (shared frames are equal).
    pub fn covers(&self, new: &State, privileged: bool) -> bool {
        self.covers_counting(new, privileged, &mut 0)
    }

    /// [`State::covers`], adding to `work` the registers and stack slots it compared.
    pub fn covers_counting(&self, new: &State, privileged: bool, work: &mut u64) -> bool {
        self.covers_relaxed(new, privileged, work, &Relax::NONE)
    }

    /// [`State::covers_counting`] leaving out of the innermost frame's comparison what `relax`
    /// says cannot matter at the instruction (the verifier's register-use analysis); outer frames
    /// are compared whole. Ids are paired, not compared ([`IdMap`]).
    pub fn covers_relaxed(
        &self,
        new: &State,
        privileged: bool,
        work: &mut u64,
        relax: &Relax,
    ) -> bool {
        *work += 1;
        let mut ids = IdMap::default();
        self.frames.len() == new.frames.len()
            && self.refs.len() == new.refs.len()
            && self
                .refs
                .iter()
                .zip(&new.refs)
                .all(|(o, n)| ids.pair(IdKind::Object, *o, *n))
            && self.lock == new.lock
            && self.meta_len <= new.meta_len
            && self.packet_len <= new.packet_len
            && self
                .frames
                .iter()
                .zip(&new.frames)
                .rev()
                .enumerate()
                .all(|(depth, (o, n))| {
                    // A shared frame is equal to itself, but its ids must still pair with
                    // themselves against the other frames'.
                    if Rc::ptr_eq(o, n) && !o.has_ids() {
                        return true;
                    }
                    if depth == 0 {
                        o.covers_relaxed(n, privileged, work, relax, &mut ids)
                    } else {
                        o.covers(n, privileged, work, &mut ids)
                    }
                })
            // A bound proven for a variable packet offset matters where a compared pointer
            // carries it; an id no live pointer carries was not paired and proves nothing.
            && self.packet_ranges.iter().all(|(id, r)| {
                ids.paired(IdKind::Packet, *id)
                    .is_none_or(|n| new.packet_range(n) >= *r)
            })
    }

    /// Bytes known to exist from the variable start of packet pointers with `id`.
    pub fn packet_range(&self, id: u32) -> u64 {
        if id == 0 {
            return self.packet_len;
        }
        self.packet_ranges
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(0, |(_, r)| *r)
    }

    /// Records that `bytes` bytes exist from the variable start of packet pointers with `id`.
    pub fn prove_packet_range(&mut self, id: u32, bytes: u64) {
        if id == 0 {
            self.packet_len = self.packet_len.max(bytes);
        } else if let Some(e) = self.packet_ranges.iter_mut().find(|(i, _)| *i == id) {
            e.1 = e.1.max(bytes);
        } else {
            self.packet_ranges.push((id, bytes));
            self.packet_ranges.sort_unstable();
        }
    }

    /// Replaces every register and spilled register of every frame for which `f` returns a new
    /// value. Frames and stacks where nothing changes stay shared.
    pub fn update_regs(&mut self, f: impl Fn(&Reg) -> Option<Reg>) {
        for frame in &mut self.frames {
            if frame.regs.iter().any(|r| f(r).is_some()) {
                for r in &mut Rc::make_mut(frame).regs {
                    if let Some(v) = f(r) {
                        *r = v;
                    }
                }
            }
            let spilled = |slot: &Slot| slot.spill.as_ref().and_then(&f);
            if frame
                .stack
                .written()
                .any(|(_, slot)| spilled(slot).is_some())
            {
                for slot in Rc::make_mut(frame).stack_mut().written_mut() {
                    if let Some(v) = spilled(slot) {
                        slot.spill = Some(v);
                    }
                }
            }
        }
    }

    /// The innermost frame as the kernel's verifier log prints states (`R1=ctx() R2=0
    /// R3=pkt(r=14) R10=fp0 fp-8=mmmmmmmm`), for `--log` lines comparable with the kernel's.
    pub fn describe_kernel(&self, maps: &[crate::env::MapInfo]) -> String {
        let mut parts: Vec<String> = self
            .frame()
            .regs
            .iter()
            .enumerate()
            .filter(|(_, r)| **r != Reg::NotInit)
            .map(|(i, r)| format!("R{i}={}", kernel_reg(r, self, maps)))
            .collect();
        for (i, slot) in self.frame().stack.written() {
            if slot.bytes == [Byte::Uninit; 8] {
                continue;
            }
            let fp = (i as i64 + 1) * 8 - 512 - 8;
            let text = match (&slot.spill, slot.bytes) {
                (Some(r), b) if b == [Byte::Spill; 8] => kernel_reg(r, self, maps),
                (_, b) => b
                    .iter()
                    .rev()
                    .map(|b| match b {
                        Byte::Uninit => '?',
                        Byte::Data => 'm',
                        Byte::Spill => 'r',
                    })
                    .collect(),
            };
            parts.push(format!("fp{fp}={text}"));
        }
        parts.join(" ")
    }

    /// A one-line dump of the current frame's initialised registers.
    pub fn describe(&self) -> String {
        let regs: Vec<String> = self
            .frame()
            .regs
            .iter()
            .enumerate()
            .filter(|(_, r)| **r != Reg::NotInit)
            .map(|(i, r)| format!("r{i}={r}"))
            .collect();
        let mut s = regs.join(" ");
        if self.packet_len > 0 {
            s.push_str(&format!(" pkt_len>={}", self.packet_len));
        }
        s
    }
}

/// A scalar as the kernel's log prints it: the constant, or `scalar(...)` with the bounds that
/// say something.
fn kernel_scalar(s: &Scalar) -> String {
    if let Some(v) = s.as_const() {
        return if (v as i64).unsigned_abs() < 1 << 32 {
            format!("{}", v as i64)
        } else {
            format!("{v:#x}")
        };
    }
    let mut parts = Vec::new();
    if s.smin != i64::MIN {
        parts.push(format!("smin={}", s.smin));
    }
    if s.smax != i64::MAX {
        parts.push(format!("smax={}", s.smax));
    }
    if s.umin != 0 {
        parts.push(format!("umin={}", s.umin));
    }
    if s.umax != u64::MAX {
        parts.push(format!("umax={}", s.umax));
    }
    if s.tnum.mask != u64::MAX {
        parts.push(format!("var_off=({:#x}; {:#x})", s.tnum.value, s.tnum.mask));
    }
    format!("scalar({})", parts.join(","))
}

/// A register as the kernel's log prints it.
fn kernel_reg(r: &Reg, state: &State, maps: &[crate::env::MapInfo]) -> String {
    // `map=NAME,ks=K,vs=V`, the name cut to the kernel's 15 characters.
    let map = |i: usize| {
        maps.get(i).map_or(format!("map=#{i}"), |m| {
            let name: String = m.name.chars().take(15).collect();
            format!("map={name},ks={},vs={}", m.key_size, m.value_size)
        })
    };
    match r {
        Reg::NotInit => "?".into(),
        Reg::Scalar(s) => kernel_scalar(s),
        Reg::Map { map: m } => format!("map_ptr({})", map(*m)),
        Reg::Func { pc } => format!("func(pc={pc})"),
        Reg::Ptr {
            region,
            off,
            var,
            null_id,
        } => {
            let null = if null_id.is_some() { "_or_null" } else { "" };
            let mut args = Vec::new();
            if *off != 0 {
                args.push(format!("off={off}"));
            }
            if let Region::Packet { id } = region {
                args.push(format!("r={}", state.packet_range(*id)));
            }
            if var.as_const() != Some(0) {
                let v = kernel_scalar(var);
                args.push(
                    v.strip_prefix("scalar(")
                        .map_or(v.clone(), |x| x.strip_suffix(')').unwrap_or(x).to_string()),
                );
            }
            let a = args.join(",");
            match region {
                Region::Stack { .. } if var.as_const() == Some(0) => format!("fp{off}"),
                Region::Ctx => format!("ctx{null}({a})"),
                Region::Stack { .. } => format!("fp({a})"),
                Region::Mem { size, .. } => format!("mem{null}(sz={size}{}{a})", sep(&a)),
                Region::MapValue { map: m } => {
                    format!("map_value{null}({}{}{a})", map(*m), sep(&a))
                }
                Region::Packet { .. } => format!("pkt{null}({a})"),
                Region::PacketEnd => format!("pkt_end({a})"),
                Region::PacketMeta => format!("pkt_meta({a})"),
                Region::MapHandle { map: m } => format!("map_ptr{null}({}{}{a})", map(*m), sep(&a)),
                Region::Ringbuf { size, ref_id } => {
                    format!(
                        "ringbuf_mem{null}(ref_obj_id={ref_id},sz={size}{}{a})",
                        sep(&a)
                    )
                }
            }
        }
    }
}

fn sep(a: &str) -> &'static str {
    if a.is_empty() {
        ""
    } else {
        ","
    }
}
