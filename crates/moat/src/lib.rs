//! moat: a userspace eBPF runtime.
//!
//! This facade is the crate embedders use. A [`Runtime`] holds the helper functions programs may
//! call and the settings they are loaded with; it verifies, links and compiles bytecode, assembly
//! or ELF objects into [`LoadedProgram`]s ([`LoadedObject`]s), which run on a context buffer with
//! the chosen [`Engine`], each in its protection domain ([`Isolation`]).
//!
//! ```
//! let rt = moat::Runtime::new();
//! let prog = rt.load_asm("mov %r0, %r2\nadd %r0, 1\nexit").unwrap();
//! assert_eq!(prog.run(&mut [0u8; 4]).unwrap(), 5);
//! ```
//!
//! The modules: `runtime` ([`Runtime`]: settings, helpers, the public `load_*` calls), `load`
//! (verification, linking, the engines' forms, the program table), `program` ([`LoadedProgram`]
//! and its runs in the program's domain), `object` (ELF objects), `context` (program types and
//! their kernel contexts), [`helpers`] and `maphelpers` (the kernel's helpers), `pooled` (maps in
//! persistent pools), `verifying` (the verifier's view of the runtime), `error`.

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod context;
mod error;
pub mod helpers;
mod load;
mod maphelpers;
mod object;
mod pooled;
mod program;
mod runtime;
pub mod stacks;
mod trace;
mod verifying;

pub use context::{ContextError, ProgType, UnknownProgType, MAX_PACKET};
pub use error::Error;
pub use maphelpers::{MapTable, MAP_HANDLE_TAG};
pub use moat_exec::{HelperCtx, HelperError, Locus, RunError, RunErrorKind};
pub use moat_isa::datafile::DataFile;
pub use moat_isolate::{mpk, Domain, IsolateError, Isolation, UnknownIsolation};
pub use moat_maps::{
    Map, MapDef, MapError, MapMemory, MapType, SharedMap, SharedMemory, BPF_ANY, BPF_EXIST,
    BPF_F_RDONLY_PROG, BPF_NOEXIST,
};
pub use moat_obj::{CMember, CType, GlobalVar, ObjError, Object, ParseValueError};
pub use moat_pool as pool;
pub use moat_verify::{Arg, Callback, HelperProto, MapClass, Rejection, Ret, VerifiedProgram};
pub use object::{LoadedObject, MapMemoryHook, ObjectOptions, OpenObject};
pub use pooled::{program_tag, PoolBackend, PoolMapError, LIBBPF_PIN_BY_NAME};
pub use program::{
    is_violation, JitInsn, JitLoop, JitPart, LoadedProgram, DEFAULT_VIOLATION_LIMIT,
};
pub use runtime::{Engine, Runtime};
pub use stacks::StackSource;
pub use trace::TraceLog;
pub use verifying::Verification;

pub(crate) use load::{Exec, ProgramTable};

/// Fault injection for moat's own isolation tests; not part of the supported API.
#[doc(hidden)]
pub mod testing {
    use crate::Runtime;

    /// Treats every memory access at `slots` as proven safe by the verifier in programs `rt`
    /// loads from now on, so the JIT drops its typed-error check — what a verifier bug would do.
    /// Under `sfi` the access stays confined to the domain; under `mpk` the hardware must stop it
    /// outside the domain.
    ///
    /// # Safety
    /// Without isolation ([`crate::Isolation::None`]) the JIT emits no check at all for these
    /// accesses: a program loaded from now on may then read and write any memory of the process.
    /// Use it only to test isolation, never with programs you do not control.
    #[expect(
        unsafe_code,
        reason = "fault injection: the caller vouches for the claimed proofs"
    )]
    pub unsafe fn simulate_verifier_bug(rt: &mut Runtime, slots: Vec<usize>) {
        rt.simulated_verifier_bug = slots;
    }
}
pub(crate) use program::Guard;
