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

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod context;
pub mod helpers;
mod trace;

use moat_interp::{HelperRegistry, NoMaps, Prepared};
use moat_isa::datafile::DataFileError;
use moat_isa::{AsmError, Program, ProgramError};
use thiserror::Error;

pub use context::{ContextError, ProgType, UnknownProgType, MAX_PACKET};
pub use moat_interp::{HelperCtx, HelperError, RunError, RunErrorKind};
pub use moat_isa::datafile::DataFile;
pub use trace::TraceLog;

/// Everything that can go wrong loading or running a program.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// Assembly text did not assemble.
    #[error("assembly: {0}")]
    Asm(#[from] AsmError),
    /// A conformance data file is malformed.
    #[error("data file: {0}")]
    DataFile(#[from] DataFileError),
    /// Bytecode is malformed (decoding or structure).
    #[error("bytecode: {0}")]
    Program(#[from] ProgramError),
    /// The program refers to something the runtime lacks (a helper, a map).
    #[error("load: {0}")]
    Prepare(#[from] moat_interp::PrepareError),
    /// The program failed at run time.
    #[error("run: {0}")]
    Run(#[from] RunError),
    /// The program's context could not be built for this input.
    #[error("context: {0}")]
    Context(#[from] ContextError),
}

/// How a program is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Engine {
    /// The safe interpreter.
    #[default]
    Interp,
}

/// A runtime: the helpers and settings programs are loaded with.
#[derive(Debug, Clone)]
pub struct Runtime {
    helpers: HelperRegistry,
    budget: u64,
    trace: TraceLog,
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
            budget: moat_interp::DEFAULT_BUDGET,
            trace,
        }
    }

    /// Registers an embedder's helper under `id` (replacing any helper with that id).
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

    /// Loads bytecode as a program of type `prog_type`.
    pub fn load_bytecode_as(
        &self,
        bytes: &[u8],
        prog_type: ProgType,
    ) -> Result<LoadedProgram, Error> {
        let program = Program::new(bytes)?;
        let mut prepared = Prepared::new(&program, &self.helpers, &NoMaps)?;
        prepared.set_budget(self.budget);
        Ok(LoadedProgram {
            program,
            prepared,
            prog_type,
        })
    }

    /// Assembles and loads assembly text.
    pub fn load_asm(&self, source: &str) -> Result<LoadedProgram, Error> {
        self.load_bytecode(&moat_isa::assemble_bytes(source)?)
    }

    /// Loads the program of a conformance data file (`-- raw` if present, else `-- asm`).
    pub fn load_data_file(&self, file: &DataFile) -> Result<LoadedProgram, Error> {
        self.load_bytecode(&file.program()?)
    }
}

/// A loaded, structurally checked program, ready to run.
#[derive(Debug, Clone)]
pub struct LoadedProgram {
    program: Program,
    prepared: Prepared,
    prog_type: ProgType,
}

impl LoadedProgram {
    /// Runs the program on `input` and returns `r0`. For the buffer type `r1` = the input's address
    /// and `r2` = its length; packet types get their kernel context over the input as the packet,
    /// which is copied back after the run.
    pub fn run(&self, input: &mut [u8]) -> Result<u64, Error> {
        Ok(context::run(&self.prepared, self.prog_type, input)??)
    }

    /// The program's type.
    pub fn prog_type(&self) -> ProgType {
        self.prog_type
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
