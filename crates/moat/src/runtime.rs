//! The [`Runtime`]: the helpers, settings and program table programs are loaded with, and the
//! [`Engine`] that runs them. Loading itself is in `load.rs`.

use crate::load::ProgramTable;
use crate::program::TimeBudget;
use crate::trace::TraceLog;
use crate::verifying::{ObjectFacts, Verification};
use crate::{helpers, pooled, Error, LoadedProgram, ProgType, DEFAULT_VIOLATION_LIMIT};
use moat_exec::{HelperCtx, HelperError, HelperRegistry};
use moat_isa::datafile::DataFile;
use moat_isolate::{Domain, Isolation};
use moat_maps::{Map, MapDef, MapError};
use moat_verify::HelperProto;
use std::sync::Arc;

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

/// A runtime: the helpers and settings programs are loaded with.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub(crate) helpers: HelperRegistry,
    pub(crate) budget: u64,
    pub(crate) trace: TraceLog,
    pub(crate) programs: Arc<ProgramTable>,
    pub(crate) verification: Verification,
    pub(crate) buffer_size: Option<u64>,
    pub(crate) verifier_log: bool,
    pub(crate) engine: Engine,
    pub(crate) protos: std::collections::HashMap<u32, HelperProto>,
    pub(crate) isolation: Isolation,
    pub(crate) violation_limit: u32,
    pub(crate) pools: pooled::PoolSettings,
    /// Slots whose memory accesses are taken as proven safe: fault injection for isolation tests.
    pub(crate) simulated_verifier_bug: Vec<usize>,
    /// How long one JIT run may take ([`Runtime::set_time_budget`]).
    pub(crate) time_budget: Option<TimeBudget>,
    /// Where `bpf_get_stackid`/`bpf_get_stack` get user stacks ([`Runtime::set_stack_source`]).
    pub(crate) stacks: Arc<dyn crate::StackSource>,
    /// Whether the JIT raises the loops of verified programs ([`Runtime::set_raise`]).
    pub(crate) raise: bool,
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
            time_budget: None,
            stacks: crate::stacks::default_source(),
            raise: true,
        }
    }

    /// Sets where `bpf_get_stackid` and `bpf_get_stack` of programs loaded from now on get user
    /// stacks (by default [`crate::stacks::ContextIp`]: the context's instruction pointer only;
    /// moat's attach layer walks the probed thread's stack).
    pub fn set_stack_source(&mut self, source: Arc<dyn crate::StackSource>) {
        self.stacks = source;
    }

    /// Sets how long one run of a JIT-compiled program loaded from now on may take (`None`: no
    /// limit, the default). A run past its budget is stopped at its next polling point (a loop
    /// back-edge or a call of its code) and fails with [`Error::TimeBudget`], counted like an
    /// isolation violation ([`LoadedProgram::overruns`]). The budget replaces the instruction
    /// budget of JIT programs the verifier could not prove to terminate; interpreted programs keep
    /// the instruction budget only. A runtime and its clones share one watchdog thread, started
    /// here on first use (the error: it could not be started).
    pub fn set_time_budget(&mut self, budget: Option<std::time::Duration>) -> std::io::Result<()> {
        self.time_budget = match (budget, self.time_budget.take()) {
            (None, _) => None,
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            (Some(budget), previous) => Some(TimeBudget {
                budget,
                watchdog: match previous {
                    Some(p) => p.watchdog,
                    None => std::sync::Arc::new(moat_jit::Watchdog::new()?),
                },
            }),
            #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
            (Some(budget), _) => Some(TimeBudget { budget }),
        };
        Ok(())
    }

    /// The time budget of JIT runs, if one is set.
    pub fn time_budget(&self) -> Option<std::time::Duration> {
        self.time_budget.as_ref().map(|t| t.budget)
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

    /// Sets whether the JIT raises the loops of verified programs loaded from now on (on by
    /// default): loops it recognises as a copy, fill, search, comparison or reduction run as one
    /// native operation, with the loop's own code wherever that does not apply at run time
    /// (`moat_jit::raise`). Results, memory and errors are the same either way.
    pub fn set_raise(&mut self, on: bool) {
        self.raise = on;
    }

    /// Whether the JIT raises the loops of verified programs.
    pub fn raise(&self) -> bool {
        self.raise
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

    /// Sets the input size the verifier assumes for buffer-context programs loaded from now on
    /// (per object: [`crate::OpenObject::set_buffer_size`]). Without it, a buffer program of an
    /// object is verified for the structure its first parameter points to (from BTF); other buffer
    /// programs are not verified and rest on the engines' run-time checks alone.
    pub fn set_buffer_size(&mut self, size: u64) {
        self.buffer_size = Some(size);
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
        self.load_in(bytes, prog_type, ObjectFacts::default(), maps, domain)
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
        self.load_in(
            bytes,
            prog_type,
            ObjectFacts::default(),
            maps,
            Some(domain.clone()),
        )
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
