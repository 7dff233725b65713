//! The facade's error type: everything that can go wrong loading or running a program.

use crate::context::ContextError;
use crate::pooled::PoolMapError;
use moat_exec::RunError;
use moat_isa::datafile::DataFileError;
use moat_isa::{AsmError, ProgramError};
use moat_isolate::IsolateError;
use moat_maps::MapError;
use moat_obj::ObjError;
use moat_verify::Rejection;
use std::sync::Arc;
use thiserror::Error;

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
    /// The program ran past its time budget ([`crate::Runtime::set_time_budget`]) and was
    /// stopped at a polling point of its JIT code (a loop back-edge or a call). Counted like an
    /// isolation violation.
    #[error(
        "program `{program}` ran past its time budget of {budget:?} (stopped at instruction {pc})"
    )]
    TimeBudget {
        /// The program.
        program: String,
        /// Its budget.
        budget: std::time::Duration,
        /// The instruction where it stopped.
        pc: usize,
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
    /// The object has no map of that name.
    #[error("no map `{name}` (the object has: {})", available.join(", "))]
    NoSuchMap {
        /// The name asked for.
        name: String,
        /// The maps there are.
        available: Vec<String>,
    },
    /// The object has no global variable of that name (in its BTF).
    #[error("no global variable `{name}` (the object has: {})", if available.is_empty() { "none with BTF".to_string() } else { available.join(", ") })]
    NoSuchGlobal {
        /// The name asked for.
        name: String,
        /// The variables there are.
        available: Vec<String>,
    },
    /// A value given for a map entry or a global does not fit it.
    #[error("{what}: {reason}")]
    BadValue {
        /// What the value was for.
        what: String,
        /// Why it does not fit.
        reason: String,
    },
    /// The program calls a helper moat does not implement: it could never run.
    #[error("instruction {pc}: helper {id}{} is not implemented by moat", name.as_ref().map_or(String::new(), |n| format!(" ({n})")))]
    UnsupportedHelper {
        /// The calling instruction.
        pc: usize,
        /// The helper's id.
        id: u32,
        /// The kernel's name for it, if it has one.
        name: Option<String>,
    },
    /// A program's section name says nothing about its type (libbpf would not load it either).
    #[error("program `{program}`: section `{section}` names no program type; pass one with --type (ObjectOptions::prog_type): buffer, xdp, tc, socket, cgroup_skb, kprobe, tracepoint")]
    UnknownSection {
        /// The program.
        program: String,
        /// Its section.
        section: String,
    },
    /// A program's section names a kernel program type moat does not run.
    #[error(
        "program `{program}` (section `{section}`): program type {kind} is not supported by moat"
    )]
    UnsupportedProgType {
        /// The program.
        program: String,
        /// Its section.
        section: String,
        /// The kernel's program type (and attach type).
        kind: String,
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
