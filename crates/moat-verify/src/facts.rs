//! Facts the verifier proved, for later layers: the JIT elides bounds checks of accesses proven in
//! bounds, and helper-argument auditing compares run-time arguments with the proven ones.

use crate::state::{Reg, Region};
use std::collections::HashMap;

/// The range of bytes a load or store may touch, relative to its region's start (or, for the stack,
/// to the frame pointer), over every path that reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemAccess {
    /// The region accessed.
    pub region: Region,
    /// Lowest byte offset touched.
    pub lo: i64,
    /// One past the highest byte offset touched.
    pub hi: i64,
}

/// Everything proven, by instruction slot.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Memory accesses, by the slot of the load, store or atomic. Each is in bounds on every path.
    pub accesses: HashMap<usize, Vec<MemAccess>>,
    /// The states of helper arguments seen at each call site, by (slot, argument number).
    pub helper_args: HashMap<(usize, u8), Vec<Reg>>,
    /// Local calls and callbacks: (call site slot, callee slot).
    pub calls: Vec<(usize, usize)>,
    /// Set when a helper callback (`bpf_loop`, `bpf_for_each_map_elem`) was verified for one
    /// invocation only: then no access counts as proven, since later invocations may see other types.
    pub approximate: bool,
    /// Bytes below the main frame's `r10` that any path may touch, through every frame (frame `k`
    /// lies `k * 512` bytes below the main one): what a run of the program can leave on its stack.
    pub stack_extent: u32,
}

impl Facts {
    pub(crate) fn record(&mut self, pc: usize, access: MemAccess) {
        let v = self.accesses.entry(pc).or_default();
        if !v.contains(&access) && v.len() < 16 {
            v.push(access);
        }
    }

    pub(crate) fn record_arg(&mut self, pc: usize, arg: u8, reg: Reg) {
        let v = self.helper_args.entry((pc, arg)).or_default();
        if !v.contains(&reg) && v.len() < 16 {
            v.push(reg);
        }
    }

    /// Notes that frame `frame` uses `depth` bytes below its frame pointer.
    pub(crate) fn record_stack(&mut self, frame: usize, depth: u32) {
        let frame = u32::try_from(frame).unwrap_or(u32::MAX);
        let extent = frame
            .saturating_mul(crate::state::STACK_SIZE as u32)
            .saturating_add(depth);
        self.stack_extent = self.stack_extent.max(extent);
    }

    pub(crate) fn record_call(&mut self, pc: usize, target: usize) {
        if !self.calls.contains(&(pc, target)) {
            self.calls.push((pc, target));
        }
    }

    /// Whether the memory access at `slot` was proven in bounds (every load/store of a verified
    /// program that can run was).
    pub fn access_proven(&self, slot: usize) -> bool {
        !self.approximate && self.accesses.contains_key(&slot)
    }
}
