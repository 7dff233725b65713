//! moat: a userspace eBPF runtime.
//!
//! This facade is the crate embedders use. A [`Runtime`] holds the helper functions programs may call;
//! it loads bytecode or assembly into a [`LoadedProgram`], checking its structure, and runs it on a
//! context buffer with the chosen [`Engine`].
//!
//! ```
//! let rt = moat::Runtime::new();
//! let prog = rt.load_asm("mov %r0, %r2\nadd %r0, 1\nexit").unwrap();
//! assert_eq!(prog.run(&mut [0u8; 4]).unwrap(), 5);
//! ```

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod context;
pub mod helpers;
mod maphelpers;
mod object;
mod pooled;
mod trace;
mod verifying;

use moat_exec::{HelperRegistry, Linked, ProgramRunner, Region};
use moat_interp::Prepared;
use moat_isa::datafile::DataFileError;
use moat_isa::{AsmError, Program, ProgramError};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, Weak};
use thiserror::Error;

pub use context::{ContextError, ProgType, UnknownProgType, MAX_PACKET};
pub use maphelpers::{MapTable, MAP_HANDLE_TAG};
pub use moat_exec::{HelperCtx, HelperError, Locus, RunError, RunErrorKind};
pub use moat_isa::datafile::DataFile;
pub use moat_isolate::{mpk, Domain, IsolateError, Isolation, UnknownIsolation};
pub use moat_maps::{
    Map, MapDef, MapError, MapType, BPF_ANY, BPF_EXIST, BPF_F_RDONLY_PROG, BPF_NOEXIST,
};
pub use moat_obj::{ObjError, Object};
pub use moat_pool as pool;
pub use moat_verify::{Arg, Callback, HelperProto, MapClass, Rejection, Ret, VerifiedProgram};
pub use object::{LoadedObject, ObjectOptions};
pub use pooled::{program_tag, PoolBackend, PoolMapError, LIBBPF_PIN_BY_NAME};
pub use trace::TraceLog;
pub use verifying::Verification;

/// Everything that can go wrong loading or running a program.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// Assembly text did not assemble.
    #[error(transparent)]
    Asm(#[from] AsmError),
    /// A conformance data file is malformed.
    #[error(transparent)]
    DataFile(#[from] DataFileError),
    /// Bytecode is malformed (decoding or structure).
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// The program refers to something the runtime lacks (a helper, a map).
    #[error(transparent)]
    Link(#[from] moat_exec::LinkError),
    /// The JIT could not compile the program.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[error(transparent)]
    Jit(#[from] moat_jit::JitError),
    /// The program failed at run time.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The program's context could not be built for this input.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// An ELF object is malformed.
    #[error(transparent)]
    Object(#[from] ObjError),
    /// A map could not be created or initialised.
    #[error("map `{name}`")]
    Map {
        /// The map's name.
        name: String,
        /// Why.
        #[source]
        source: MapError,
    },
    /// A program refers to a symbol the object does not define (e.g. an undefined `memset`).
    #[error("program `{program}`: instruction {insn} refers to undefined symbol `{symbol}`")]
    Unresolved {
        /// The program.
        program: String,
        /// The symbol.
        symbol: String,
        /// The referring instruction.
        insn: usize,
    },
    /// The object has no program of that name.
    #[error("no program `{name}` (the object has: {})", available.join(", "))]
    NoSuchProgram {
        /// The name asked for.
        name: String,
        /// The programs there are.
        available: Vec<String>,
    },
    /// The program exists but could not be loaded.
    #[error("program `{name}` could not be loaded")]
    ProgramUnavailable {
        /// The program.
        name: String,
        /// Why.
        #[source]
        source: Arc<Error>,
    },
    /// The verifier rejected the program.
    #[error("verifier: {0}")]
    Verify(Box<Rejection>),
    /// A protection domain could not be made (`mpk` without protection keys, no address space).
    #[error(transparent)]
    Isolation(#[from] IsolateError),
    /// The program ended with too many isolation violations and no longer runs.
    #[error("program `{program}` is disabled after {violations} isolation violations")]
    Disabled {
        /// The program.
        program: String,
        /// Violations counted.
        violations: u32,
    },
    /// A map could not be placed in the runtime's pool, or a program may not use a pool map.
    #[error("pool map `{name}`")]
    Pool {
        /// The map's name.
        name: String,
        /// Why.
        #[source]
        source: PoolMapError,
    },
    /// A pool file could not be opened ([`Runtime::open_pool`]).
    #[error("pool {}", path.display())]
    PoolOpen {
        /// The pool file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: moat_pool::PoolError,
    },
    /// An error in a named program.
    #[error("program `{program}`")]
    InProgram {
        /// The program.
        program: String,
        /// The error.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// This error, said of program `name`.
    pub fn in_program(self, name: &str) -> Error {
        Error::InProgram {
            program: name.to_string(),
            source: Box::new(self),
        }
    }
}

/// How a program is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Engine {
    /// The safe interpreter.
    Interp,
    /// The JIT compiler to x86-64 (`moat-jit`), with the interpreter's semantics.
    Jit,
}

impl Engine {
    /// Whether the engine runs on this machine (the JIT needs x86-64 Linux).
    pub fn is_supported(self) -> bool {
        match self {
            Engine::Interp => true,
            Engine::Jit => cfg!(all(target_arch = "x86_64", target_os = "linux")),
        }
    }
}

impl Default for Engine {
    /// The JIT where it is supported, the interpreter elsewhere.
    fn default() -> Engine {
        if Engine::Jit.is_supported() {
            Engine::Jit
        } else {
            Engine::Interp
        }
    }
}

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

/// A program of the table and the identities of its maps.
type TableEntry = (Weak<dyn ProgramRunner>, Vec<usize>);

impl std::fmt::Debug for ProgramTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let programs = self.programs.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("ProgramTable")
            .field("programs", &programs.len())
            .finish()
    }
}

impl ProgramTable {
    fn add(&self, prog: &Arc<dyn ProgramRunner>, maps: &MapTable) -> u32 {
        let mut programs = self.programs.write().unwrap_or_else(|e| e.into_inner());
        programs.push((Arc::downgrade(prog), maphelpers::identities(maps.maps())));
        (programs.len() - 1) as u32
    }

    /// Program `id` as a tail-call target of a program whose maps are `caller`: `Ok(None)` if there
    /// is no such program, an error if it may reach a map the caller may not (another domain's).
    pub(crate) fn get_within(
        &self,
        id: u32,
        caller: &[usize],
    ) -> Result<Option<Arc<dyn ProgramRunner>>, ()> {
        let programs = self.programs.read().unwrap_or_else(|e| e.into_inner());
        let Some((prog, maps)) = programs.get(id as usize) else {
            return Ok(None);
        };
        if !maps.iter().all(|m| caller.contains(m)) {
            return Err(());
        }
        Ok(prog.upgrade())
    }
}

/// A runtime: the helpers and settings programs are loaded with.
#[derive(Debug, Clone)]
pub struct Runtime {
    helpers: HelperRegistry,
    budget: u64,
    trace: TraceLog,
    programs: Arc<ProgramTable>,
    verification: Verification,
    buffer_size: Option<u64>,
    verifier_log: bool,
    engine: Engine,
    protos: std::collections::HashMap<u32, HelperProto>,
    isolation: Isolation,
    violation_limit: u32,
    pools: pooled::PoolSettings,
    /// Slots whose memory accesses are taken as proven safe: fault injection for isolation tests.
    simulated_verifier_bug: Vec<usize>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Runtime {
    /// A runtime with moat's standard helpers.
    pub fn new() -> Runtime {
        let mut helpers = HelperRegistry::new();
        let trace = TraceLog::default();
        helpers::register_standard(&mut helpers, trace.clone());
        Runtime {
            helpers,
            budget: moat_exec::DEFAULT_BUDGET,
            trace,
            programs: Arc::default(),
            verification: Verification::default(),
            buffer_size: None,
            verifier_log: false,
            engine: Engine::default(),
            protos: std::collections::HashMap::new(),
            isolation: Isolation::detect(),
            violation_limit: DEFAULT_VIOLATION_LIMIT,
            pools: pooled::PoolSettings::default(),
            simulated_verifier_bug: Vec::new(),
        }
    }

    /// Sets how programs loaded from now on are isolated (by default [`Isolation::detect`]: `Mpk`
    /// where the CPU and kernel have protection keys, else `Sfi`). Under `Sfi` and `Mpk` every object
    /// (and every program loaded on its own) gets a [`Domain`]: the object's maps are allocated in it and buffer contexts are
    /// copied into it for each run; `Mpk` also tags it with a protection key (loading fails with
    /// [`Error::Isolation`] where keys are unavailable). `None` is the behaviour before isolation:
    /// maps on the heap, contexts in place. The engines' checks stay on in every mode.
    pub fn set_isolation(&mut self, isolation: Isolation) {
        self.isolation = isolation;
    }

    /// The isolation programs are loaded with.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Sets after how many isolation violations (runs ending with an out-of-bounds access, a bad
    /// atomic, a bad call target or a refused helper argument) a program is disabled; 0: never.
    pub fn set_violation_limit(&mut self, limit: u32) {
        self.violation_limit = limit;
    }

    /// A domain for a new object or program, unless isolation is `None`.
    pub(crate) fn new_domain(&self) -> Result<Option<Domain>, Error> {
        match self.isolation {
            Isolation::None => Ok(None),
            other => Ok(Some(Domain::new(other)?)),
        }
    }

    /// Sets the engine programs loaded from now on run with ([`Engine::default`]: the JIT where
    /// supported). An unsupported engine falls back to the interpreter.
    pub fn set_engine(&mut self, engine: Engine) {
        self.engine = engine;
    }

    /// The engine programs are loaded for.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Registers an embedder's helper with its prototype, so the verifier checks its arguments (kinds,
    /// memory sizes, map classes) like a kernel helper's. Helpers registered without one get an opaque
    /// prototype: initialised arguments, checked at run time by the helper itself.
    pub fn register_helper_with_proto(
        &mut self,
        id: u32,
        proto: HelperProto,
        func: impl Fn(&mut HelperCtx<'_>, [u64; 5]) -> Result<u64, HelperError> + Send + Sync + 'static,
    ) {
        self.helpers.register(id, proto.name.clone(), func);
        self.protos.insert(id, proto);
    }

    /// Sets how programs are verified before they run (privileged rules by default).
    pub fn set_verification(&mut self, verification: Verification) {
        self.verification = verification;
    }

    /// Sets the input size the verifier assumes for buffer-context programs. Without it, buffer
    /// programs are not verified: their safety then rests on the engines' run-time checks alone.
    pub fn set_buffer_size(&mut self, size: u64) {
        self.buffer_size = Some(size);
    }

    /// Fault injection for isolation tests: treats every memory access at `slots` as proven safe by
    /// the verifier, so the JIT drops its typed-error check — what a verifier bug would do. Under
    /// `sfi` the access stays confined to the domain; under `mpk` the hardware must stop it outside
    /// the domain.
    ///
    /// # Safety
    /// Without isolation ([`Isolation::None`]) the JIT emits no check at all for these accesses: a
    /// program loaded from now on may then read and write any memory of the process. Use it only
    /// to test isolation, never with programs you do not control.
    #[doc(hidden)]
    #[expect(
        unsafe_code,
        reason = "fault injection: the caller vouches for the claimed proofs"
    )]
    pub unsafe fn simulate_verifier_bug(&mut self, slots: Vec<usize>) {
        self.simulated_verifier_bug = slots;
    }

    /// Keeps the verifier's per-instruction log (`LoadedProgram::verified`, rejections).
    pub fn set_verifier_log(&mut self, log: bool) {
        self.verifier_log = log;
    }

    /// Registers an embedder's helper under `id` (replacing any helper with that id; the map helpers,
    /// ids 1-3, 12, 87-89, 130-134, 164 and 181, and the pool transaction helpers,
    /// [`helpers::id::POOL_TX_BEGIN`] and the two after it, are bound to each program's maps and take
    /// precedence).
    pub fn register_helper(
        &mut self,
        id: u32,
        name: &str,
        func: impl Fn(&mut HelperCtx<'_>, [u64; 5]) -> Result<u64, HelperError> + Send + Sync + 'static,
    ) {
        self.helpers.register(id, name, func);
    }

    /// The log `bpf_trace_printk` writes to.
    pub fn trace_log(&self) -> &TraceLog {
        &self.trace
    }

    /// Sets how many instructions one run may execute before it is stopped.
    pub fn set_budget(&mut self, budget: u64) {
        self.budget = budget;
    }

    /// Loads bytecode (8-byte little-endian slots) with the generic buffer context.
    pub fn load_bytecode(&self, bytes: &[u8]) -> Result<LoadedProgram, Error> {
        self.load_bytecode_as(bytes, ProgType::Buffer)
    }

    /// Loads bytecode as a program of type `prog_type`, without maps.
    pub fn load_bytecode_as(
        &self,
        bytes: &[u8],
        prog_type: ProgType,
    ) -> Result<LoadedProgram, Error> {
        self.load_with_maps(bytes, prog_type, &[])
    }

    /// Creates a map (kernel semantics, storage on the heap).
    pub fn create_map(&self, def: MapDef) -> Result<Arc<Map>, MapError> {
        Map::create(def).map(Arc::new)
    }

    /// Loads bytecode whose `lddw rX, map_idx(N)` / `map_idx_value(N, OFF)` refer to `maps[N]`. The
    /// program gets a domain of its own (unless isolation is `None`), holding its context copies; maps
    /// created with [`Runtime::create_map`] stay on the heap.
    pub fn load_with_maps(
        &self,
        bytes: &[u8],
        prog_type: ProgType,
        maps: &[Arc<Map>],
    ) -> Result<LoadedProgram, Error> {
        let domain = self.new_domain()?;
        self.load_in(bytes, prog_type, maps, domain)
    }

    /// Loads a program into an existing `domain`, whose maps (created with
    /// `Map::create_in(def, domain.memory())`) it may share with the domain's other programs.
    pub fn load_in_domain(
        &self,
        bytes: &[u8],
        prog_type: ProgType,
        maps: &[Arc<Map>],
        domain: &Domain,
    ) -> Result<LoadedProgram, Error> {
        self.load_in(bytes, prog_type, maps, Some(domain.clone()))
    }

    /// Loads a program into `domain` (see [`Runtime::load_with_maps`]).
    #[expect(
        unsafe_code,
        reason = "hands map storage to the interpreter as accessible memory"
    )]
    pub(crate) fn load_in(
        &self,
        bytes: &[u8],
        prog_type: ProgType,
        maps: &[Arc<Map>],
        domain: Option<Domain>,
    ) -> Result<LoadedProgram, Error> {
        // A buffer program is verified only when the buffer's size is known (`set_buffer_size`);
        // otherwise its safety rests on the engines' run-time checks alone.
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
            let context = verifying::context(prog_type, self.buffer_size.unwrap_or(0));
            verifying::verify(
                &program,
                self.verification,
                context,
                maps.iter().map(|m| verifying::map_info(m)).collect(),
                &self.helpers,
                &self.protos,
                self.verifier_log,
            )
            .map(Some)
            .map_err(Error::Verify)?
        };
        let table = Arc::new(MapTable::new(pooled::program_maps(maps, bytes)?));
        let mut registry = self.helpers.clone();
        maphelpers::register(&mut registry, &table, Arc::downgrade(&self.programs));
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
        let id = self.programs.add(&exec.runner(), &table);
        let verified_size = match (prog_type, &verified) {
            (ProgType::Buffer, Some(_)) => self.buffer_size,
            _ => None,
        };
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
                limit: self.violation_limit,
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
            // packet programs (packet bounds are checked against `data_end` in the program itself)
            // and buffer programs, whose runs refuse inputs shorter than the size they were verified
            // for. A verified program terminates on every path (the verifier explored them all), so
            // its code counts no budget, like the kernel's; unverified programs keep the budget.
            let mut proofs = match verified {
                Some(v) if prog_type.is_packet() || prog_type == ProgType::Buffer => {
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
                // SAFETY: `simulate_verifier_bug`'s caller accepted that these accesses run as if
                // proven (its own `# Safety`); it is fault injection for isolation tests.
                proofs = unsafe {
                    ProvenAccesses::assume(claimed, ProvenMemory::Other, proofs.terminates())
                };
            }
            let confinement = match domain.map(Domain::isolation) {
                Some(Isolation::Mpk) => Confinement::Mpk,
                Some(Isolation::Sfi) => {
                    Confinement::Sfi(verifying::confinement(prog_type, domain)?)
                }
                _ => Confinement::Unconfined,
            };
            let jit = moat_jit::JitProgram::new(
                linked,
                prepared,
                &proofs,
                &moat_jit::CodeOptions::new(confinement),
            )?;
            return Ok(Exec::Jit(Arc::new(jit)));
        }
        Ok(Exec::Interp(prepared))
    }

    /// Assembles and loads assembly text.
    pub fn load_asm(&self, source: &str) -> Result<LoadedProgram, Error> {
        self.load_bytecode(&moat_isa::assemble_bytes(source)?)
    }

    /// Loads the program of a conformance data file (`-- raw` if present, else `-- asm`).
    pub fn load_data_file(&self, file: &DataFile) -> Result<LoadedProgram, Error> {
        let mut rt = self.clone();
        if rt.buffer_size.is_none() {
            // The file says what memory the program gets: verify against that.
            rt.buffer_size = Some(file.mem.len() as u64);
        }
        rt.load_bytecode(&file.program()?)
    }
}

/// Violations after which a program is disabled by default ([`Runtime::set_violation_limit`]).
pub const DEFAULT_VIOLATION_LIMIT: u32 = 3;

/// Whether a run error is an isolation violation: an access outside the program's memory, a bad
/// atomic, a call to something that is not the program's, or a helper argument refused by the audit
/// (a pointer outside the program's memory, a handle or value not the program's).
pub fn is_violation(e: &RunError) -> bool {
    match &e.kind {
        RunErrorKind::OutOfBounds { .. }
        | RunErrorKind::BadAtomic { .. }
        | RunErrorKind::BadCallTarget { .. }
        | RunErrorKind::MemoryFault { .. } => true,
        RunErrorKind::Helper { source, .. } => match source {
            HelperError::OutOfBounds { .. } | HelperError::BadArgument { .. } => true,
            HelperError::Callback(inner) => is_violation(inner),
            _ => false,
        },
        _ => false,
    }
}

/// A loaded, structurally checked program, ready to run.
#[derive(Debug, Clone)]
pub struct LoadedProgram {
    program: Program,
    exec: Exec,
    prog_type: ProgType,
    maps: Arc<MapTable>,
    id: u32,
    verified: Option<VerifiedProgram>,
    /// For buffer programs: the input size they were verified for.
    verified_size: Option<u64>,
    /// The protection domain (`None` without isolation).
    domain: Option<Domain>,
    /// Whether runs must reach host memory too (packet contexts in the low-memory buffer, maps
    /// outside the domain): under `mpk` PKRU then allows key 0 as well as the domain's key.
    needs_host: bool,
    /// Name and violation count, shared by clones.
    guard: Arc<Guard>,
}

/// What disables a program after too many violations.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The program's name (its function in an object, else `#id`), for errors.
    pub(crate) name: String,
    violations: AtomicU32,
    limit: u32,
}

impl Guard {
    /// A fresh guard with the same limit, for program `name`.
    pub(crate) fn renamed(&self, name: &str) -> Guard {
        Guard {
            name: name.to_string(),
            violations: AtomicU32::new(self.violations.load(Ordering::Relaxed)),
            limit: self.limit,
        }
    }
}

impl LoadedProgram {
    /// Runs the program on `input` and returns `r0`. For the buffer type `r1` = the input's address
    /// and `r2` = its length; packet types get their kernel context over the input as the packet,
    /// which is copied back after the run. A buffer program verified for an `N`-byte input refuses
    /// shorter inputs.
    ///
    /// A run that ends with an isolation violation ([`is_violation`]) is counted; once the runtime's
    /// violation limit is reached, runs fail with [`Error::Disabled`].
    pub fn run(&self, input: &mut [u8]) -> Result<u64, Error> {
        self.run_guarded(input.len(), || Ok((self.run_isolated(input)?, ())))
            .map(|(r0, ())| r0)
    }

    /// Runs a buffer or tracing program on a `len`-byte context that `fill` writes straight into
    /// the program's domain (its context area), with no copy in or out: for hosts that produce
    /// their input in place. `fill` receives the area's first `len` bytes (contents unspecified: it
    /// must write what the program reads); `inspect` sees them after the run. Returns `r0` and what
    /// `inspect` returned. Contexts larger than the area, packet programs and programs without a
    /// domain run on a copy, as [`LoadedProgram::run`] does.
    pub fn run_placed<R>(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
        inspect: impl FnOnce(&[u8]) -> R,
    ) -> Result<(u64, R), Error> {
        let placed = matches!(self.prog_type, ProgType::Buffer | ProgType::Tracing);
        // Fills the context, runs on it and inspects it.
        let go = |buf: &mut [u8]| {
            fill(buf);
            let result = match &self.domain {
                Some(domain) if placed => {
                    let lease = self.lease(domain)?;
                    let in_domain = domain.contains(buf.as_ptr() as u64, len as u64);
                    self.run_in_domain(domain, lease.as_ref(), buf, None, in_domain)?
                }
                _ => self.run_isolated(buf)?,
            };
            Ok((result, inspect(buf)))
        };
        // On a copy where the domain's context area cannot serve: no domain, a packet program, or
        // the area is too small or busy.
        self.run_guarded(len, || match &self.domain {
            Some(domain) if placed => domain
                .with_context_area(len, go)
                .unwrap_or_else(|go| go(&mut vec![0u8; len])),
            _ => go(&mut vec![0u8; len]),
        })
    }

    /// The checks around every run: a disabled program does not run, a buffer program verified for
    /// a size refuses shorter inputs, and violations are counted.
    fn run_guarded<T>(
        &self,
        len: usize,
        run: impl FnOnce() -> Result<(Result<u64, RunError>, T), Error>,
    ) -> Result<(u64, T), Error> {
        let seen = self.guard.violations.load(Ordering::Relaxed);
        if self.guard.limit > 0 && seen >= self.guard.limit {
            return Err(Error::Disabled {
                program: self.guard.name.clone(),
                violations: seen,
            });
        }
        if let (ProgType::Buffer, Some(size)) = (self.prog_type, self.verified_size) {
            if (len as u64) < size {
                return Err(Error::Context(ContextError::InputTooSmall {
                    len,
                    verified: size,
                }));
            }
        }
        let (result, extra) = run()?;
        if let Err(e) = &result {
            if is_violation(e) {
                self.guard.violations.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok((result?, extra))
    }

    /// Under `mpk`, a hardware key for the domain for the length of a run.
    fn lease(&self, domain: &Domain) -> Result<Option<moat_isolate::mpk::KeyLease>, Error> {
        Ok(match domain.isolation() {
            Isolation::Mpk => Some(domain.activate()?),
            _ => None,
        })
    }

    /// Runs in the program's domain: buffer and tracing inputs are copied into its context area,
    /// packet contexts are built in its low area.
    fn run_isolated(&self, input: &mut [u8]) -> Result<Result<u64, RunError>, Error> {
        let Some(domain) = &self.domain else {
            return Ok(context::run(&self.exec, self.prog_type, input)?);
        };
        let lease = self.lease(domain)?;
        let lease = lease.as_ref();
        if matches!(self.prog_type, ProgType::Buffer | ProgType::Tracing) {
            if let Some(result) = domain.with_context(input, |ctx| {
                self.run_in_domain(domain, lease, ctx, None, true)
            }) {
                return Ok(result?);
            }
        } else if let Some(result) =
            domain.with_low_area(|low| self.run_in_domain(domain, lease, input, Some(low), true))
        {
            return Ok(result?);
        }
        Ok(self.run_in_domain(domain, lease, input, None, false)?)
    }

    /// One run in `domain` on `ctx` (packet contexts built in `low` when given); `in_domain` says
    /// whether the context lies in the domain. Under `mpk` JIT code runs confined to the domain's
    /// run area with PKRU allowing the leased key only (plus key 0 when the run needs host memory),
    /// the interpreter with that key and key 0.
    fn run_in_domain(
        &self,
        domain: &Domain,
        lease: Option<&moat_isolate::mpk::KeyLease>,
        ctx: &mut [u8],
        low: Option<&mut [u8]>,
        in_domain: bool,
    ) -> Result<Result<u64, RunError>, ContextError> {
        let Some(lease) = lease else {
            return context::run_in(&self.exec, self.prog_type, ctx, low);
        };
        let with_host = self.needs_host || !in_domain;
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if let Exec::Jit(jit) = &self.exec {
            if jit.is_confined() {
                let mut low = low;
                let mut ctx = Some(ctx);
                let confined = domain.with_run_area(|area| {
                    moat_jit::confine(area, lease.pkru(with_host), || {
                        let ctx = ctx.take().unwrap_or_default();
                        context::run_in(&self.exec, self.prog_type, ctx, low.take())
                    })
                });
                if let Some(result) = confined {
                    return result;
                }
                // The run area is in use by this thread (a run nested in a run of the same
                // domain): run on host memory, with the host's key too.
                let _pkru = lease.enter(lease.pkru(true));
                return context::run_in(&self.exec, self.prog_type, ctx.unwrap_or_default(), low);
            }
        }
        let _pkru = lease.enter(lease.pkru(true));
        context::run_in(&self.exec, self.prog_type, ctx, low)
    }

    /// The program's name: its function in an object, `#id` otherwise.
    pub fn name(&self) -> &str {
        &self.guard.name
    }

    /// The program's protection domain (`None` when loaded without isolation).
    pub fn domain(&self) -> Option<&Domain> {
        self.domain.as_ref()
    }

    /// Isolation violations counted so far.
    pub fn violations(&self) -> u32 {
        self.guard.violations.load(Ordering::Relaxed)
    }

    /// The engine the program runs with.
    pub fn engine(&self) -> Engine {
        match self.exec {
            Exec::Interp(_) => Engine::Interp,
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Exec::Jit(_) => Engine::Jit,
        }
    }

    /// The JIT's machine code for the program, disassembled (`None` for the interpreter).
    pub fn jit_disassembly(&self) -> Option<String> {
        match &self.exec {
            Exec::Interp(_) => None,
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Exec::Jit(p) => Some(p.disassemble()),
        }
    }

    /// What the verifier proved, unless verification was off.
    pub fn verified(&self) -> Option<&VerifiedProgram> {
        self.verified.as_ref()
    }

    /// The program's type.
    pub fn prog_type(&self) -> ProgType {
        self.prog_type
    }

    /// The program's id in its runtime: the value to store in a `prog_array` map to tail-call it.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The maps the program uses, in `map_idx` order.
    pub fn maps(&self) -> &[Arc<Map>] {
        self.maps.maps()
    }

    /// The checked program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The program's bytecode.
    pub fn bytecode(&self) -> Vec<u8> {
        self.program.to_bytes()
    }
}
