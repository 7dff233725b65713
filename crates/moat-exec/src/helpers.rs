//! The helper registry: functions a program calls with `call N`, looked up by numeric id.
//!
//! Embedders extend the registry with their own helpers. A helper runs as host code with the program's
//! five argument registers and a [`HelperCtx`] through which it reads and writes program memory, checked
//! against the same [`MemoryMap`] as the program's own loads and stores.

use crate::mem::{MemoryMap, RunState};
use crate::{RunError, MAX_CALL_DEPTH, MAX_TAIL_CALLS, STACK_FRAME_SIZE};
use moat_isa::Reg;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use thiserror::Error;

/// Why a helper refused its arguments or failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HelperError {
    /// A pointer argument does not point to `len` accessible bytes.
    #[error("argument {arg} ({len} bytes at {at}) is outside the program's memory")]
    OutOfBounds {
        /// 1-based argument number.
        arg: u8,
        /// The pointer (for the host; messages show `at`).
        addr: u64,
        /// Where the pointer points relative to the program's memory.
        at: crate::Locus,
        /// The length the helper needed.
        len: u64,
    },
    /// An argument has a value the helper does not accept.
    #[error("argument {arg}: {reason}")]
    BadArgument {
        /// 1-based argument number.
        arg: u8,
        /// Why.
        reason: String,
    },
    /// The helper failed for another reason.
    #[error("{0}")]
    Failed(String),
    /// A program callback the helper ran (e.g. `bpf_loop`'s) failed.
    #[error("callback failed: {0}")]
    Callback(Box<RunError>),
}

/// A program as helpers see it, whatever engine runs it: callbacks run its functions
/// ([`HelperCtx::call_function`]) and tail calls run it whole ([`HelperCtx::tail_call`]). The
/// interpreter's [`crate::Prepared`] and the JIT's compiled programs implement it.
pub trait ProgramRunner: Send + Sync {
    /// Whether `addr` (a code address, the value of `lddw rX, code(off)`) names an instruction of the
    /// program.
    fn is_function(&self, addr: u64) -> bool;

    /// Runs the function at code address `addr` with `args` in `r1`-`r5`, in a fresh frame whose `r10`
    /// is `frame_top`, with `depth` frames already in use, and returns its `r0`.
    fn run_function(
        &self,
        mem: &mut MemoryMap,
        addr: u64,
        args: [u64; 5],
        frame_top: u64,
        depth: usize,
        state: &mut RunState,
    ) -> Result<u64, RunError>;

    /// Runs the whole program as a tail call: from its first instruction, with `r1` = `ctx`, in the
    /// frame whose `r10` is `frame_top` (the caller's), and returns its `r0`.
    fn run_tail(
        &self,
        mem: &mut MemoryMap,
        ctx: u64,
        frame_top: u64,
        depth: usize,
        state: &mut RunState,
    ) -> Result<u64, RunError>;
}

/// A pending tail call: the program to run and its `r1`.
pub type TailCall = Option<(Arc<dyn ProgramRunner>, u64)>;

/// What a helper may do to the running program: access its memory, call its functions back, tail-call.
pub struct HelperCtx<'a> {
    /// The program's memory; every access a helper makes on the program's behalf goes through it.
    pub mem: &'a mut MemoryMap,
    prog: &'a dyn ProgramRunner,
    /// `r10` of the calling frame.
    frame_top: u64,
    /// Frames in use, the caller's included.
    depth: usize,
    state: &'a mut RunState,
    tail_call: &'a mut TailCall,
}

impl<'a> HelperCtx<'a> {
    /// The context of a helper called by `prog` from the frame whose `r10` is `frame_top`, with
    /// `depth` frames in use (the caller's included). A tail call the helper requests is left in
    /// `tail_call` for the engine to run once the helper returns.
    pub fn new(
        mem: &'a mut MemoryMap,
        prog: &'a dyn ProgramRunner,
        frame_top: u64,
        depth: usize,
        state: &'a mut RunState,
        tail_call: &'a mut TailCall,
    ) -> HelperCtx<'a> {
        HelperCtx {
            mem,
            prog,
            frame_top,
            depth,
            state,
            tail_call,
        }
    }
}

impl HelperCtx<'_> {
    /// Calls the program's function at code address `addr` (a value of `lddw rX, code(off)`) with
    /// `args` in `r1`-`r5`, in a new frame below the caller's, and returns its `r0`. This is how
    /// `bpf_loop` and `bpf_for_each_map_elem` run their callbacks.
    pub fn call_function(
        &mut self,
        arg: u8,
        addr: u64,
        args: [u64; 5],
    ) -> Result<u64, HelperError> {
        if !self.prog.is_function(addr) {
            return Err(HelperError::BadArgument {
                arg,
                reason: format!("0x{addr:x} is not a function of the program"),
            });
        }
        if self.depth + 1 > MAX_CALL_DEPTH {
            return Err(HelperError::BadArgument {
                arg,
                reason: format!("callback would exceed {MAX_CALL_DEPTH} frames"),
            });
        }
        let frame_top = self.frame_top - STACK_FRAME_SIZE as u64;
        let result = self
            .prog
            .run_function(self.mem, addr, args, frame_top, self.depth, self.state)
            .map_err(|e| HelperError::Callback(Box::new(e)));
        self.mem.enter_frame(self.frame_top, self.state);
        result
    }

    /// Requests a tail call: once the helper returns, `target` runs in place of the rest of the
    /// calling function, with `ctx` in `r1`. Fails (and the program goes on) after
    /// [`MAX_TAIL_CALLS`] tail calls in one run, as in the kernel.
    pub fn tail_call(
        &mut self,
        target: Arc<dyn ProgramRunner>,
        ctx: u64,
    ) -> Result<(), HelperError> {
        if self.state.tail_calls >= MAX_TAIL_CALLS {
            return Err(HelperError::Failed(format!(
                "more than {MAX_TAIL_CALLS} tail calls"
            )));
        }
        self.state.tail_calls += 1;
        *self.tail_call = Some((target, ctx));
        Ok(())
    }

    /// Atomically replaces the 4-aligned `u32` at `addr` with `new` if it equals `current`; returns the
    /// value found (argument `arg`, for the error). Spin locks in map values use it.
    pub fn compare_exchange_u32(
        &self,
        arg: u8,
        addr: u64,
        current: u32,
        new: u32,
    ) -> Result<u32, HelperError> {
        self.mem
            .atomic32(addr, |c| {
                match c.compare_exchange(current, new, crate::mem::ORDER, crate::mem::ORDER) {
                    Ok(v) | Err(v) => v,
                }
            })
            .ok_or_else(|| self.out_of_bounds(arg, addr, 4))
    }

    /// Tail calls taken so far in this run.
    pub fn tail_calls(&self) -> u32 {
        self.state.tail_calls
    }

    /// Runs `f` with `data` temporarily accessible to the program (e.g. a key passed to a callback);
    /// `f` receives its address.
    pub fn with_region<R>(
        &mut self,
        data: &mut [u8],
        writable: bool,
        f: impl FnOnce(&mut HelperCtx<'_>, u64) -> R,
    ) -> R {
        let addr = data.as_mut_ptr() as u64;
        self.mem.add_slice(data, writable);
        let result = f(self, addr);
        self.mem.remove(addr);
        result
    }

    /// Copies `len` bytes from program memory at `addr` (argument `arg`, for the error).
    pub fn read(&self, arg: u8, addr: u64, len: u64) -> Result<Vec<u8>, HelperError> {
        usize::try_from(len)
            .ok()
            .and_then(|l| self.mem.read_bytes(addr, l))
            .ok_or_else(|| self.out_of_bounds(arg, addr, len))
    }

    /// Copies `out.len()` bytes from program memory at `addr` into `out` (argument `arg`, for the
    /// error): [`read`](HelperCtx::read) without an allocation.
    pub fn read_into(&self, arg: u8, addr: u64, out: &mut [u8]) -> Result<(), HelperError> {
        self.mem
            .read_into(addr, out)
            .ok_or_else(|| self.out_of_bounds(arg, addr, out.len() as u64))
    }

    /// Writes `data` into program memory at `addr` (argument `arg`, for the error).
    pub fn write(&self, arg: u8, addr: u64, data: &[u8]) -> Result<(), HelperError> {
        self.mem
            .write_bytes(addr, data)
            .ok_or_else(|| self.out_of_bounds(arg, addr, data.len() as u64))
    }

    /// The error of a pointer argument `arg` whose `len` bytes at `addr` are not the program's.
    pub fn out_of_bounds(&self, arg: u8, addr: u64, len: u64) -> HelperError {
        HelperError::OutOfBounds {
            arg,
            addr,
            at: self.mem.locate(addr),
            len,
        }
    }
}

/// A helper's implementation.
pub type HelperFn = dyn Fn(&mut HelperCtx<'_>, [u64; 5]) -> Result<u64, HelperError> + Send + Sync;

/// A registered helper: its name (for errors and disassembly) and implementation.
#[derive(Clone)]
pub struct Helper {
    /// The helper's name, e.g. `bpf_map_lookup_elem`.
    pub name: String,
    /// The implementation.
    pub func: Arc<HelperFn>,
    /// The helper's direct form for call sites the verifier proved enough about
    /// ([`DirectFn`]), if it has one.
    pub direct: Option<Arc<DirectFn>>,
}

/// A helper call that generated code makes without the helper context: `func(data, r2, r3, r4,
/// r5)` returns `r0`. Made by a helper's [`DirectFn`] for one call site; it exists only where the
/// verifier proved what the helper would check. Code without isolation trusts that proof; code
/// confined by software fault isolation checks each of `stack_args` against the stack and makes
/// the helper's own call where one is out of bounds (the verifier may be wrong).
#[derive(Clone)]
pub struct DirectCall {
    /// The function called (it must not unwind).
    pub func: extern "sysv64" fn(u64, u64, u64, u64, u64) -> u64,
    /// Its first argument.
    pub data: u64,
    /// The memory `func` reads: the argument register (`r2`-`r5`) and the number of bytes it
    /// points to, proven in bounds of the stack.
    pub stack_args: Vec<(Reg, u32)>,
    /// Keeps what `data` refers to alive as long as the code that calls `func`.
    pub keep: Arc<dyn std::any::Any + Send + Sync>,
}

impl fmt::Debug for DirectCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectCall").finish_non_exhaustive()
    }
}

/// A helper's direct form for a call site where the verifier proved `r1` to be the program's map
/// number `map` (the index of its `lddw map_idx`) on every path, and every memory argument of the
/// helper's prototype (a map key, a map value) in bounds of the stack: the [`DirectCall`] that
/// replaces the helper there, or `None` where the helper's own checks are still needed.
pub type DirectFn = dyn Fn(usize) -> Option<DirectCall> + Send + Sync;

impl fmt::Debug for Helper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Helper").field("name", &self.name).finish()
    }
}

/// Helpers by numeric id.
#[derive(Debug, Clone, Default)]
pub struct HelperRegistry {
    helpers: HashMap<u32, Helper>,
}

impl HelperRegistry {
    /// An empty registry.
    pub fn new() -> HelperRegistry {
        HelperRegistry::default()
    }

    /// Registers (or replaces) helper `id`.
    pub fn register(
        &mut self,
        id: u32,
        name: impl Into<String>,
        func: impl Fn(&mut HelperCtx<'_>, [u64; 5]) -> Result<u64, HelperError> + Send + Sync + 'static,
    ) {
        self.helpers.insert(
            id,
            Helper {
                name: name.into(),
                func: Arc::new(func),
                direct: None,
            },
        );
    }

    /// Gives helper `id` (registered, and not replaced since) its direct form for call sites
    /// the verifier proved enough about; `false` if there is no such helper.
    pub fn set_direct(
        &mut self,
        id: u32,
        direct: impl Fn(usize) -> Option<DirectCall> + Send + Sync + 'static,
    ) -> bool {
        match self.helpers.get_mut(&id) {
            Some(h) => {
                h.direct = Some(Arc::new(direct));
                true
            }
            None => false,
        }
    }

    /// The helper with id `id`.
    pub fn get(&self, id: u32) -> Option<&Helper> {
        self.helpers.get(&id)
    }

    /// Registered ids, sorted.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.helpers.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}
