//! Linking: a checked [`Program`] becomes a [`Linked`] program once, with every helper call and
//! `lddw` pseudo source resolved, its run budget and the memory every run may touch. Both engines
//! take a `&Linked`; neither resolves anything itself.

use crate::error::LinkError;
use crate::helpers::{HelperFn, HelperRegistry};
use crate::mem::{AtomicAlias, Region};
use crate::{CODE_ADDRESS_MASK, CODE_ADDRESS_TAG, DEFAULT_BUDGET};
use moat_isa::{CallTarget, Insn, LddwKind, Program};
use std::any::Any;
use std::sync::Arc;

/// Resolves `lddw` pseudo sources (map fd/index, map value) to the 64-bit value the program sees.
pub trait LddwResolver {
    /// The value of `lddw` with `kind`, `imm` and `next_imm`, or why it has none.
    fn resolve(&self, kind: LddwKind, imm: i32, next_imm: i32) -> Result<u64, String>;
}

/// A resolver that knows no maps: every pseudo source except code addresses is an error.
pub struct NoMaps;

impl LddwResolver for NoMaps {
    fn resolve(&self, kind: LddwKind, _imm: i32, _next_imm: i32) -> Result<u64, String> {
        Err(format!("no map is available for {kind:?}"))
    }
}

/// A helper a program calls, resolved at link time.
#[derive(Clone)]
pub struct LinkedHelper {
    /// Its id (`call id`).
    pub id: u32,
    /// Its name, for errors.
    pub name: String,
    /// The implementation.
    pub func: Arc<HelperFn>,
    /// Its direct form for call sites the verifier proved enough about, if any.
    pub direct: Option<Arc<crate::helpers::DirectFn>>,
}

impl std::fmt::Debug for LinkedHelper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.name, self.id)
    }
}

/// What the instruction at a slot refers to, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    /// Nothing.
    Nothing,
    /// A helper call: the index into [`Linked::helpers`].
    Helper(u32),
    /// An `lddw`: the 64-bit value the program sees.
    Value(u64),
}

/// A program with everything it refers to resolved, ready for either engine.
#[derive(Clone)]
pub struct Linked {
    program: Program,
    /// By slot.
    resolved: Vec<Resolved>,
    helpers: Vec<LinkedHelper>,
    registry: HelperRegistry,
    budget: u64,
    /// Memory every run may access (map storage), with what keeps it alive.
    static_regions: Vec<Region>,
    atomic_aliases: Option<Arc<[AtomicAlias]>>,
    keep_alive: Vec<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Linked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linked")
            .field("slots", &self.program.slots())
            .field("helpers", &self.helpers)
            .field("budget", &self.budget)
            .finish()
    }
}

impl Linked {
    /// Links `program`: helper calls against `registry`, `lddw` pseudo sources with `resolver`;
    /// code addresses (`lddw rX, code(off)`) become [`CODE_ADDRESS_TAG`] values. The budget starts
    /// at [`DEFAULT_BUDGET`] and no static region is known yet.
    pub fn new(
        program: &Program,
        registry: &HelperRegistry,
        resolver: &dyn LddwResolver,
    ) -> Result<Linked, LinkError> {
        let mut resolved = vec![Resolved::Nothing; program.slots()];
        let mut helpers: Vec<LinkedHelper> = Vec::new();
        for &(pc, insn) in program.insns() {
            let r = match insn {
                Insn::Call(CallTarget::Helper(id)) => {
                    let (id, helper) = u32::try_from(id)
                        .ok()
                        .and_then(|id| registry.get(id).map(|h| (id, h)))
                        .ok_or(LinkError::UnknownHelper { pc, id })?;
                    let index = match helpers.iter().position(|h| h.id == id) {
                        Some(i) => i,
                        None => {
                            helpers.push(LinkedHelper {
                                id,
                                name: helper.name.clone(),
                                func: helper.func.clone(),
                                direct: helper.direct.clone(),
                            });
                            helpers.len() - 1
                        }
                    };
                    // At most one helper per instruction: far below u32::MAX.
                    Resolved::Helper(u32::try_from(index).unwrap_or(u32::MAX))
                }
                Insn::Call(CallTarget::Kfunc(id)) => return Err(LinkError::Kfunc { pc, id }),
                Insn::LoadImm64 {
                    kind,
                    imm,
                    next_imm,
                    ..
                } => Resolved::Value(match kind {
                    LddwKind::Imm => {
                        (u64::from(next_imm.cast_unsigned()) << 32) | u64::from(imm.cast_unsigned())
                    }
                    LddwKind::Code => {
                        let target =
                            i64::try_from(pc).map_or(i64::MAX, |pc| pc + 1 + i64::from(imm));
                        CODE_ADDRESS_TAG | (target.cast_unsigned() & 0xffff_ffff)
                    }
                    _ => resolver.resolve(kind, imm, next_imm).map_err(|reason| {
                        LinkError::UnresolvedLddw {
                            pc,
                            kind,
                            imm,
                            reason,
                        }
                    })?,
                }),
                _ => Resolved::Nothing,
            };
            if let Some(slot) = resolved.get_mut(pc) {
                *slot = r;
            }
        }
        Ok(Linked {
            program: program.clone(),
            resolved,
            helpers,
            registry: registry.clone(),
            budget: DEFAULT_BUDGET,
            static_regions: Vec::new(),
            atomic_aliases: None,
            keep_alive: Vec::new(),
        })
    }

    /// The program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The helpers the program calls, each once.
    pub fn helpers(&self) -> &[LinkedHelper] {
        &self.helpers
    }

    /// For a helper call at `slot`: its index into [`Linked::helpers`].
    pub fn helper_index(&self, slot: usize) -> Option<u32> {
        match self.resolved.get(slot) {
            Some(Resolved::Helper(i)) => Some(*i),
            _ => None,
        }
    }

    /// For an `lddw` at `slot`: the value the program sees.
    pub fn lddw_value(&self, slot: usize) -> Option<u64> {
        match self.resolved.get(slot) {
            Some(Resolved::Value(v)) => Some(*v),
            _ => None,
        }
    }

    /// The registry helpers were resolved in (for `callx` to a helper id at run time).
    pub fn registry(&self) -> &HelperRegistry {
        &self.registry
    }

    /// The slot a code address (an `lddw rX, code(off)` value) names, if it is an instruction.
    pub fn function_at(&self, addr: u64) -> Option<usize> {
        if addr & CODE_ADDRESS_MASK != CODE_ADDRESS_TAG {
            return None;
        }
        let slot = usize::try_from(addr & 0xffff_ffff).ok()?;
        self.program.index_of_slot(slot).map(|_| slot)
    }

    /// Sets the instruction budget of each run (unverified programs; verified ones count none
    /// where the engine can prove termination).
    pub fn set_budget(&mut self, budget: u64) {
        self.budget = budget;
    }

    /// The instruction budget of each run.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// The memory every run may access besides its buffers and stack (see
    /// [`Linked::add_static_region`]).
    pub fn static_regions(&self) -> &[Region] {
        &self.static_regions
    }

    /// Adds memory every run of the program may access, such as a map's storage.
    ///
    /// # Safety
    /// `region` must stay valid for reads (and writes, when writable) while `keep_alive` lives, and
    /// may be accessed concurrently only through atomics or by code that tolerates racing program
    /// stores (map helpers copy values under their own locks; programs race on values as in the
    /// kernel).
    #[expect(
        unsafe_code,
        reason = "declares the contract under which engines may dereference the region"
    )]
    pub unsafe fn add_static_region(
        &mut self,
        region: Region,
        keep_alive: Arc<dyn Any + Send + Sync>,
    ) {
        self.static_regions.push(region);
        self.keep_alive.push(keep_alive);
    }

    /// The read-only memory in which runs' atomics apply in place (see
    /// [`Linked::add_atomic_alias`]).
    pub fn atomic_aliases(&self) -> Option<Arc<[AtomicAlias]>> {
        self.atomic_aliases.clone()
    }

    /// Lets atomics of every run act in place on `alias.value_len`-byte windows of a read-only
    /// static region (added with [`Linked::add_static_region`]), through the writable alias.
    ///
    /// # Safety
    /// `alias.alias .. alias.alias + alias.len` must stay valid for atomic reads and writes while
    /// `keep_alive` lives, and map the same memory as `alias.start ..` (a second mapping of it).
    #[expect(
        unsafe_code,
        reason = "declares the contract under which engines may write through the alias"
    )]
    pub unsafe fn add_atomic_alias(
        &mut self,
        alias: AtomicAlias,
        keep_alive: Arc<dyn Any + Send + Sync>,
    ) {
        let mut list = self.atomic_aliases.as_deref().unwrap_or(&[]).to_vec();
        list.push(alias);
        self.atomic_aliases = Some(list.into());
        self.keep_alive.push(keep_alive);
    }
}

/// A buffer a program may access during one run.
#[derive(Debug)]
pub struct Buffer<'a> {
    /// The bytes.
    pub bytes: &'a mut [u8],
    /// Whether the program may store to them.
    pub writable: bool,
}
