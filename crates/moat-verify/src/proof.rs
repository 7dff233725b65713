//! What a verification proved, in the form the JIT consumes: which memory accesses are in bounds
//! (and in what kind of memory) and whether every path ends. Only [`crate::verify`] makes a
//! [`ProvenAccesses`] that proves anything, through [`crate::VerifiedProgram::proven_accesses`];
//! anything else that claims proofs is `unsafe` ([`ProvenAccesses::assume`]).

use crate::facts::Facts;
use crate::state::{Reg, Region};

/// The kind of memory a proven access touches, on every path that reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvenMemory {
    /// The stack (of the current function or a caller).
    Stack,
    /// The context structure, the packet or its metadata.
    ContextOrPacket,
    /// Anything else: a buffer context, map values, ring buffer records, a mix of kinds.
    Other,
}

/// Memory accesses proven in bounds and termination proven, by instruction slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvenAccesses {
    by_slot: Vec<Option<ProvenMemory>>,
    terminates: bool,
    /// Bytes below the main frame's `r10` every path stays within, through all frames (`None`:
    /// not proven; the whole stack may be touched).
    stack_extent: Option<u32>,
    /// Helper calls whose `r1` is one map on every path and whose pointer arguments all point
    /// into the stack, checked against the helper's prototype: (slot, map index), by slot.
    map_calls: Vec<(usize, usize)>,
}

impl ProvenAccesses {
    /// Proves nothing: every access keeps its check and the budget is counted.
    pub fn none() -> ProvenAccesses {
        ProvenAccesses::default()
    }

    pub(crate) fn from_facts(facts: &Facts, slots: usize) -> ProvenAccesses {
        let by_slot = (0..slots)
            .map(|slot| {
                if !facts.access_proven(slot) {
                    return None;
                }
                let regions = facts.accesses.get(&slot)?;
                let all = |f: fn(&Region) -> bool| regions.iter().all(|a| f(&a.region));
                Some(if all(|r| matches!(r, Region::Stack { .. })) {
                    ProvenMemory::Stack
                } else if all(|r| {
                    matches!(
                        r,
                        Region::Ctx
                            | Region::Packet { .. }
                            | Region::PacketEnd
                            | Region::PacketMeta
                    )
                }) {
                    ProvenMemory::ContextOrPacket
                } else {
                    ProvenMemory::Other
                })
            })
            .collect();
        ProvenAccesses {
            by_slot,
            // Callbacks verified for one invocation make every fact approximate, termination too.
            terminates: !facts.approximate,
            stack_extent: (!facts.approximate).then_some(facts.stack_extent),
            map_calls: if facts.approximate {
                Vec::new()
            } else {
                map_calls(facts)
            },
        }
    }

    /// Claims that the accesses at `slots` are in bounds (of memory of kind `memory`) and, if
    /// `terminates`, that every path ends: for fault injection in isolation tests.
    ///
    /// # Safety
    /// The claims must hold for every run, or the confinement of the engine that uses them must
    /// not depend on them: an engine without isolation runs a claimed access with no check at all,
    /// and a run of a program falsely claimed to terminate may never end.
    #[expect(
        unsafe_code,
        reason = "a claim of proof made outside the verifier has the verifier's responsibility"
    )]
    pub unsafe fn assume(
        slots: impl IntoIterator<Item = usize>,
        memory: ProvenMemory,
        terminates: bool,
    ) -> ProvenAccesses {
        let mut by_slot = Vec::new();
        for slot in slots {
            if by_slot.len() <= slot {
                by_slot.resize(slot + 1, None);
            }
            by_slot[slot] = Some(memory);
        }
        ProvenAccesses {
            by_slot,
            terminates,
            stack_extent: None,
            map_calls: Vec::new(),
        }
    }

    /// These claims, plus the claim that the helper call at each `(slot, map)` of `calls` has `r1`
    /// = the program's map number `map` and its memory arguments in bounds of the stack (what
    /// [`ProvenAccesses::map_call`] answers): for fault injection in isolation tests.
    ///
    /// # Safety
    /// As for [`ProvenAccesses::assume`]: an engine without isolation makes such a call with no
    /// check of its arguments.
    #[expect(
        unsafe_code,
        reason = "a claim of proof made outside the verifier has the verifier's responsibility"
    )]
    pub unsafe fn assume_map_calls(
        mut self,
        calls: impl IntoIterator<Item = (usize, usize)>,
    ) -> ProvenAccesses {
        self.map_calls.extend(calls);
        self.map_calls.sort_unstable();
        self.map_calls.dedup_by_key(|&mut (slot, _)| slot);
        self
    }

    /// The same termination proof, no access proven: for engines that must keep every check
    /// (memory that can shrink at run time).
    pub fn without_accesses(&self) -> ProvenAccesses {
        ProvenAccesses {
            by_slot: Vec::new(),
            terminates: self.terminates,
            stack_extent: self.stack_extent,
            map_calls: self.map_calls.clone(),
        }
    }

    /// The map of the helper call at `slot`, if the verifier proved its `r1` to be that map (the
    /// index of its `lddw map_idx`) on every path, and every pointer argument of the call to point
    /// into the stack, in bounds for the helper's prototype (a map key: the map's key size).
    pub fn map_call(&self, slot: usize) -> Option<usize> {
        self.map_calls
            .binary_search_by_key(&slot, |&(s, _)| s)
            .ok()
            .and_then(|i| self.map_calls.get(i))
            .map(|&(_, map)| map)
    }

    /// How many bytes below the main frame's `r10` the program's runs may read or write (its
    /// own code and its helpers' stack arguments, through every frame), if proven: all a run can
    /// leave on its stack.
    pub fn stack_extent(&self) -> Option<u32> {
        self.stack_extent
    }

    /// The memory the access at `slot` was proven to stay in, if it was.
    pub fn at(&self, slot: usize) -> Option<ProvenMemory> {
        self.by_slot.get(slot).copied().flatten()
    }

    /// Whether every path of the program was proven to end (no budget needs counting).
    pub fn terminates(&self) -> bool {
        self.terminates
    }
}

/// The helper calls of [`ProvenAccesses::map_call`], by slot.
fn map_calls(facts: &Facts) -> Vec<(usize, usize)> {
    let mut calls: Vec<(usize, usize)> = facts
        .helper_args
        .iter()
        .filter(|((_, arg), _)| *arg == 1)
        .filter_map(|(&(slot, _), regs)| {
            let map = match regs.first() {
                Some(Reg::Map { map }) => *map,
                _ => return None,
            };
            if !regs.iter().all(|r| *r == Reg::Map { map }) {
                return None;
            }
            let on_stack = (2..=5u8).all(|arg| {
                facts.helper_args.get(&(slot, arg)).is_none_or(|regs| {
                    regs.iter().all(|r| match r {
                        Reg::Ptr {
                            region, null_id, ..
                        } => matches!(region, Region::Stack { .. }) && null_id.is_none(),
                        _ => true,
                    })
                })
            });
            on_stack.then_some((slot, map))
        })
        .collect();
    calls.sort_unstable();
    calls
}
