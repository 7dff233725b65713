//! Loading a program: verification, linking (helpers and maps resolved once), the engines' forms
//! of it, and the program table tail calls go through.

use crate::maphelpers::{self, MapTable};
use crate::verifying::Verification;
use crate::{pooled, verifying, Engine, Error, Guard, LoadedProgram, ProgType, Runtime};
use moat_exec::{AtomicAlias, Linked, ProgramRunner, Region, RunError};
use moat_interp::Prepared;
use moat_isa::Program;
use moat_isolate::{Domain, Isolation};
use moat_maps::Map;
use moat_verify::VerifiedProgram;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, RwLock, Weak};

/// A loaded program in the form its engine runs.
#[derive(Debug, Clone)]
pub(crate) enum Exec {
    Interp(Arc<Prepared>),
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    Jit(Arc<moat_jit::JitProgram>),
}

impl Exec {
    pub(crate) fn run_with(
        &self,
        buffers: &mut [moat_exec::Buffer<'_>],
        args: [u64; 5],
    ) -> Result<u64, RunError> {
        match self {
            Exec::Interp(p) => p.run_with(buffers, args),
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Exec::Jit(p) => p.run_with(buffers, args),
        }
    }

    /// As [`Exec::run_with`], the error boxed (the result comes back in registers).
    pub(crate) fn run_boxed(
        &self,
        buffers: &mut [moat_exec::Buffer<'_>],
        args: [u64; 5],
    ) -> Result<u64, Box<RunError>> {
        match self {
            Exec::Interp(p) => p.run_with(buffers, args).map_err(Box::new),
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Exec::Jit(p) => p.run_with_boxed(buffers, args),
        }
    }

    /// Whether the JIT runs the program (a time budget applies).
    fn runner_is_jit(&self) -> bool {
        match self {
            Exec::Interp(_) => false,
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Exec::Jit(_) => true,
        }
    }

    fn runner(&self) -> Arc<dyn ProgramRunner> {
        match self {
            Exec::Interp(p) => p.clone(),
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Exec::Jit(p) => p.clone(),
        }
    }
}

/// Every program a runtime loaded, by id: what `prog_array` maps hold and tail calls jump to.
#[derive(Default)]
pub(crate) struct ProgramTable {
    /// Each program with the identities of its maps (what its runs may reach).
    programs: RwLock<Vec<TableEntry>>,
}

/// A program of the table, the identities of its maps and its context.
type TableEntry = (Weak<dyn ProgramRunner>, Vec<usize>, TailClass);

/// What a program's runs guarantee of their context, and what a tail-call target needs: the
/// kernel's rule (a `prog_array` holds programs of one type) plus, for buffer programs, the input
/// size each was verified for. A target runs on its caller's context with the accesses its
/// verification proved unchecked, so it must need no more than every run of the caller has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TailClass {
    /// The program type.
    pub(crate) prog_type: ProgType,
    /// Bytes of input every run has (buffer programs verified for a size; 0 otherwise).
    pub(crate) input_bytes: u64,
}

impl TailClass {
    /// Whether a program of class `self` may run on the context of a caller of class `caller`.
    fn fits(self, caller: TailClass) -> bool {
        self.prog_type == caller.prog_type && self.input_bytes <= caller.input_bytes
    }
}

impl std::fmt::Debug for ProgramTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let programs = self.programs.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("ProgramTable")
            .field("programs", &programs.len())
            .finish()
    }
}

impl ProgramTable {
    fn add(&self, prog: &Arc<dyn ProgramRunner>, maps: &MapTable, class: TailClass) -> u32 {
        let mut programs = self.programs.write().unwrap_or_else(|e| e.into_inner());
        programs.push((
            Arc::downgrade(prog),
            maphelpers::identities(maps.maps()),
            class,
        ));
        (programs.len() - 1) as u32
    }

    /// Program `id` as a tail-call target of a program whose maps are `caller` and whose context
    /// is of class `class`: `Ok(None)` if there is no such program, an error if it may reach a map
    /// the caller may not (another domain's) or needs another context.
    pub(crate) fn get_within(
        &self,
        id: u32,
        caller: &[usize],
        class: TailClass,
    ) -> Result<Option<Arc<dyn ProgramRunner>>, TailRefusal> {
        let programs = self.programs.read().unwrap_or_else(|e| e.into_inner());
        let Some((prog, maps, target)) = programs.get(id as usize) else {
            return Ok(None);
        };
        if !maps.iter().all(|m| caller.contains(m)) {
            return Err(TailRefusal::OtherDomain);
        }
        if !target.fits(class) {
            return Err(TailRefusal::OtherContext {
                target: *target,
                caller: class,
            });
        }
        Ok(prog.upgrade())
    }
}

/// Why a tail call may not go to a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TailRefusal {
    /// The target may reach a map the caller may not.
    OtherDomain,
    /// The target needs a context the caller's runs do not have.
    OtherContext {
        /// The target's class.
        target: TailClass,
        /// The caller's.
        caller: TailClass,
    },
}

impl Runtime {
    /// Loads a program into `domain` (see [`Runtime::load_with_maps`]), with what its object says
    /// about it (`facts`: license and section; none for bytecode loaded on its own).
    #[expect(
        unsafe_code,
        reason = "hands map storage to the interpreter as accessible memory"
    )]
    pub(crate) fn load_in(
        &self,
        bytes: &[u8],
        prog_type: ProgType,
        facts: verifying::ObjectFacts<'_>,
        maps: &[Arc<Map>],
        domain: Option<Domain>,
    ) -> Result<LoadedProgram, Error> {
        // A buffer program is verified only when the buffer's size is known (`set_buffer_size`,
        // or for objects the BTF of its context argument); otherwise its safety rests on the
        // engines' run-time checks alone.
        let skip = self.verification == Verification::Off
            || (prog_type == ProgType::Buffer && self.buffer_size.is_none());
        // The verifier checks register initialisation per path; without it, the conservative
        // whole-program analysis of `Program::new` applies.
        let program = if skip {
            Program::new(bytes)?
        } else {
            Program::new_for_verifier(bytes)?
        };
        let verified = if skip {
            None
        } else {
            let context =
                verifying::context(prog_type, self.buffer_size.unwrap_or(0), facts.section);
            verifying::verify(
                &program,
                self.verification,
                (prog_type, facts),
                context,
                maps.iter().map(|m| verifying::map_info(m)).collect(),
                &self.helpers,
                &self.protos,
                self.verifier_log,
            )
            .map(Some)
            .map_err(Error::Verify)?
        };
        let program_maps = pooled::program_maps(maps, bytes)?;
        let table = Arc::new(MapTable::new(program_maps.clone()));
        let verified_size = match (prog_type, &verified) {
            (ProgType::Buffer, Some(_)) => self.buffer_size,
            _ => None,
        };
        let class = TailClass {
            prog_type,
            input_bytes: verified_size.unwrap_or(0),
        };
        let mut registry = self.helpers.clone();
        maphelpers::register(
            &mut registry,
            &table,
            (Arc::downgrade(&self.programs), class),
            &self.stacks,
        );
        let mut linked = Linked::new(&program, &registry, &*table)?;
        linked.set_budget(self.budget);
        for map in maps {
            let writable = map.def().flags & moat_maps::BPF_F_RDONLY_PROG == 0;
            for r in map.value_regions() {
                let region = Region {
                    start: r.addr as u64,
                    len: r.len as u64,
                    writable,
                };
                // SAFETY: the region is the map's value storage, which lives as long as the map; the
                // `Arc` handed over as keep-alive keeps the map alive as long as the program.
                unsafe { linked.add_static_region(region, map.clone()) };
            }
        }
        // Pool maps' values are read-only but their atomics act in place, through each program
        // principal's writable alias.
        for map in &program_maps {
            for w in map.atomic_windows() {
                let alias = AtomicAlias {
                    start: w.region.addr as u64,
                    len: w.region.len as u64,
                    alias: w.alias as u64,
                    stride: w.stride as u64,
                    value_off: w.value_off as u64,
                    value_len: w.value_len as u64,
                };
                // SAFETY: the alias is a second mapping of the window's memory, kept mapped by
                // the map's backend, which the `Arc` handed over keeps alive with the program.
                unsafe { linked.add_atomic_alias(alias, map.clone()) };
            }
        }
        let needs_host = domain.as_ref().is_some_and(|d| {
            maps.iter()
                .flat_map(|m| m.value_regions())
                .any(|r| !d.contains(r.addr as u64, r.len as u64))
        });
        let exec = self.compile(
            Arc::new(linked),
            prog_type,
            verified.as_ref(),
            domain.as_ref(),
        )?;
        let id = self.programs.add(&exec.runner(), &table, class);
        let time_budget = self.time_budget.clone().filter(|_| exec.runner_is_jit());
        Ok(LoadedProgram {
            program,
            exec,
            prog_type,
            maps: table,
            id,
            verified,
            verified_size,
            domain,
            needs_host,
            guard: Arc::new(Guard {
                name: format!("#{id}"),
                violations: AtomicU32::new(0),
                overruns: AtomicU32::new(0),
                limit: self.violation_limit,
                time_budget,
            }),
        })
    }

    /// The program in the form the runtime's engine runs: the interpreter's, and the JIT's where
    /// the JIT is the engine, with what the verifier proved and the program's isolation.
    #[cfg_attr(
        not(all(target_arch = "x86_64", target_os = "linux")),
        expect(unused_variables, reason = "only the JIT uses them")
    )]
    #[expect(
        unsafe_code,
        reason = "the fault injection of `simulate_verifier_bug` claims proofs outside the verifier"
    )]
    fn compile(
        &self,
        linked: Arc<Linked>,
        prog_type: ProgType,
        verified: Option<&VerifiedProgram>,
        domain: Option<&Domain>,
    ) -> Result<Exec, Error> {
        let prepared = Arc::new(Prepared::lower(linked.clone())?);
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if self.engine == Engine::Jit {
            use moat_jit::{Confinement, ProvenAccesses, ProvenMemory};
            // Accesses count as proven only where the verified memory cannot shrink at run time:
            // packet programs (packet bounds are checked against `data_end` in the program itself),
            // buffer programs, whose runs refuse inputs shorter than the size they were verified
            // for, and tracing programs, whose runs refuse contexts shorter than the `pt_regs`
            // they were verified for (`LoadedProgram::run_guarded`). A verified program terminates
            // on every path (the verifier explored them all), so its code counts no budget, like
            // the kernel's; unverified programs keep the budget.
            let mut proofs = match verified {
                Some(v)
                    if prog_type.is_packet()
                        || matches!(prog_type, ProgType::Buffer | ProgType::Tracing) =>
                {
                    v.proven_accesses()
                }
                Some(v) => v.proven_accesses().without_accesses(),
                None => ProvenAccesses::none(),
            };
            if !self.simulated_verifier_bug.is_empty() {
                let slots = linked.program().slots();
                let claimed = (0..slots).filter(|&s| {
                    proofs.at(s).is_some() || self.simulated_verifier_bug.contains(&s)
                });
                let map_calls = simulated_map_calls(&linked, &self.simulated_verifier_bug)
                    .chain((0..slots).filter_map(|s| Some((s, proofs.map_call(s)?))))
                    .collect::<Vec<_>>();
                // SAFETY: `simulate_verifier_bug`'s caller accepted that these accesses and
                // helper calls run as if proven (its own `# Safety`); it is fault injection for
                // isolation tests.
                proofs = unsafe {
                    ProvenAccesses::assume(claimed, ProvenMemory::Other, proofs.terminates())
                        .assume_map_calls(map_calls)
                };
            }
            let confinement = match domain.map(Domain::isolation) {
                Some(Isolation::Mpk) => Confinement::Mpk,
                Some(Isolation::Sfi) => {
                    Confinement::Sfi(verifying::confinement(prog_type, domain)?)
                }
                _ => Confinement::Unconfined,
            };
            // Under a time budget the watchdog, not an instruction count, bounds a run.
            let options = moat_jit::CodeOptions {
                time_bounded: self.time_budget.is_some(),
                ..moat_jit::CodeOptions::new(confinement)
            };
            // Loops are raised only in verified programs: their facts are what raising reads.
            let raising = match verified {
                Some(v) if self.raise && self.simulated_verifier_bug.is_empty() => {
                    moat_jit::raise::raise_loops(v)
                }
                _ => moat_jit::raise::Raising::default(),
            };
            let jit =
                moat_jit::JitProgram::new_raised(linked, prepared, &proofs, &options, raising)?;
            return Ok(Exec::Jit(Arc::new(jit)));
        }
        Ok(Exec::Interp(prepared))
    }
}

/// The helper calls at `slots` that `simulate_verifier_bug` claims proven, with their map: each
/// call whose `r1` was last loaded, in program order, by `lddw r1, map_idx(N)` — what a verifier
/// wrong about that call's other arguments would hand the JIT.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn simulated_map_calls<'a>(
    linked: &'a Linked,
    slots: &'a [usize],
) -> impl Iterator<Item = (usize, usize)> + 'a {
    use moat_isa::{CallTarget, Insn, LddwKind, Reg};
    let mut map = None;
    linked
        .program()
        .insns()
        .iter()
        .filter_map(move |&(slot, ref insn)| match *insn {
            Insn::LoadImm64 {
                dst: Reg::R1,
                kind,
                imm,
                ..
            } => {
                map = (kind == LddwKind::MapIdx)
                    .then(|| usize::try_from(imm).ok())
                    .flatten();
                None
            }
            Insn::Call(CallTarget::Helper(_)) if slots.contains(&slot) => Some((slot, map?)),
            _ => None,
        })
}
