//! Running compiled code: the per-run context generated code reads, the Rust functions it calls
//! (helpers, the complete memory check) and the entry into generated code. Together with
//! [`crate::codemem`], the only place of `moat-jit` with `unsafe`.
//!
//! A run owns a [`RunArea`]: the eBPF stack ([`STACK_SIZE`] bytes, aligned to its size) immediately
//! followed by the [`JitCtx`], so generated code finds the context from `r10` alone. Every entry into
//! generated code goes through the trampoline at offset 0 of the program's code, which records the
//! native stack pointer in the context; a failing check records the error and restores that stack
//! pointer, returning status 1 to [`enter`]. No Rust frame is ever unwound by generated code: calls
//! into Rust return normally and report errors through the context.

use crate::emit::ResolvedHelper;
use crate::JitProgram;
use moat_interp::{
    HelperCtx, MemoryMap, Region, RunError, RunErrorKind, RunState, TailCall, STACK_BYTES,
    STACK_FRAME_SIZE,
};

/// Bytes of the eBPF stack of a run (all frames); also its alignment.
pub(crate) const STACK_SIZE: u64 = STACK_BYTES;

/// Error kinds generated code raises (`ERR_CODE >> 32`).
pub(crate) const ERR_PENDING: u64 = 1;
pub(crate) const ERR_BUDGET: u64 = 2;
pub(crate) const ERR_CALL_DEPTH: u64 = 3;
pub(crate) const ERR_BAD_TARGET: u64 = 4;
pub(crate) const ERR_LDABS_ZERO: u64 = 5;

/// The per-run context right above the eBPF stack. The fields up to `call_status` are read and
/// written by generated code at the offsets of [`off`].
#[repr(C)]
pub(crate) struct JitCtx {
    budget: u64,
    saved_rsp: u64,
    frame_top: u64,
    args: [u64; 5],
    r0_start: u64,
    r0_len: u64,
    w0_start: u64,
    w0_len: u64,
    pkt_start: u64,
    pkt_len: u64,
    ret: u64,
    call_pc: u32,
    call_index: u32,
    call_target: u64,
    call_fp: u64,
    call_status: u64,
    err_code: u64,
    err_aux: u64,
    // Rust only.
    prog: *const JitProgram,
    mem: *mut MemoryMap,
    state: *mut RunState,
    pending: Option<RunError>,
}

/// Field offsets of [`JitCtx`] for generated code.
pub(crate) mod off {
    use super::JitCtx;
    use std::mem::offset_of;
    pub const BUDGET: i32 = offset_of!(JitCtx, budget) as i32;
    pub const SAVED_RSP: i32 = offset_of!(JitCtx, saved_rsp) as i32;
    pub const FRAME_TOP: i32 = offset_of!(JitCtx, frame_top) as i32;
    pub const ARGS: i32 = offset_of!(JitCtx, args) as i32;
    pub const R0_START: i32 = offset_of!(JitCtx, r0_start) as i32;
    pub const R0_LEN: i32 = offset_of!(JitCtx, r0_len) as i32;
    pub const W0_START: i32 = offset_of!(JitCtx, w0_start) as i32;
    pub const W0_LEN: i32 = offset_of!(JitCtx, w0_len) as i32;
    pub const PKT_START: i32 = offset_of!(JitCtx, pkt_start) as i32;
    pub const PKT_LEN: i32 = offset_of!(JitCtx, pkt_len) as i32;
    pub const RET: i32 = offset_of!(JitCtx, ret) as i32;
    pub const CALL_PC: i32 = offset_of!(JitCtx, call_pc) as i32;
    pub const CALL_INDEX: i32 = offset_of!(JitCtx, call_index) as i32;
    pub const CALL_TARGET: i32 = offset_of!(JitCtx, call_target) as i32;
    pub const CALL_FP: i32 = offset_of!(JitCtx, call_fp) as i32;
    pub const CALL_STATUS: i32 = offset_of!(JitCtx, call_status) as i32;
    pub const ERR_CODE: i32 = offset_of!(JitCtx, err_code) as i32;
    pub const ERR_AUX: i32 = offset_of!(JitCtx, err_aux) as i32;
}

/// The eBPF stack of one run and the context above it.
#[repr(C, align(4096))]
pub(crate) struct RunArea {
    stack: [u8; STACK_SIZE as usize],
    ctx: JitCtx,
}

const _: () = assert!(STACK_SIZE == 4096 && std::mem::align_of::<RunArea>() == 4096);

impl RunArea {
    pub(crate) fn new() -> RunArea {
        RunArea {
            stack: [0; STACK_SIZE as usize],
            ctx: JitCtx {
                budget: 0,
                saved_rsp: 0,
                frame_top: 0,
                args: [0; 5],
                r0_start: u64::MAX,
                r0_len: 0,
                w0_start: u64::MAX,
                w0_len: 0,
                pkt_start: 0,
                pkt_len: 0,
                ret: 0,
                call_pc: 0,
                call_index: 0,
                call_target: 0,
                call_fp: 0,
                call_status: 0,
                err_code: 0,
                err_aux: 0,
                prog: std::ptr::null(),
                mem: std::ptr::null_mut(),
                state: std::ptr::null_mut(),
                pending: None,
            },
        }
    }
}

/// The addresses of the functions generated code calls.
pub(crate) fn thunks() -> crate::emit::Thunks {
    crate::emit::Thunks {
        call: jit_call as *const () as u64,
        check: jit_check as *const () as u64,
    }
}

/// Refreshes what generated code caches of the memory map: the first region (inline bounds check,
/// separately for loads and stores, and the packet of legacy loads).
///
/// # Safety
/// `ctx` must point to a live context not otherwise borrowed.
unsafe fn refresh(ctx: *mut JitCtx, mem: &MemoryMap) {
    let first = mem.regions().first().copied().unwrap_or(Region {
        start: 0,
        len: 0,
        writable: false,
    });
    let usable = first.len > 0 && first.start.checked_add(first.len).is_some();
    // SAFETY: the caller guarantees `ctx` is valid and unaliased for these writes.
    unsafe {
        (*ctx).pkt_start = first.start;
        (*ctx).pkt_len = first.len;
        (*ctx).r0_start = if usable { first.start } else { u64::MAX };
        (*ctx).r0_len = if usable { first.len } else { 0 };
        let w = usable && first.writable;
        (*ctx).w0_start = if w { first.start } else { u64::MAX };
        (*ctx).w0_len = if w { first.len } else { 0 };
    }
}

/// Frames in use below the one whose top is `fp`.
fn callers(state: &RunState, fp: u64) -> usize {
    (state.stack_top().saturating_sub(fp) / STACK_FRAME_SIZE as u64) as usize
}

/// Whether `frame_top` is the top of a frame of the run's stack with room for the frame.
pub(crate) fn valid_frame(state: &RunState, frame_top: u64) -> bool {
    let top = state.stack_top();
    frame_top <= top
        && frame_top >= top - STACK_SIZE + STACK_FRAME_SIZE as u64
        && (top - frame_top).is_multiple_of(STACK_FRAME_SIZE as u64)
}

/// Runs `prog`'s code at `native` with `args`, in the frame whose `r10` is `frame_top`, on the run
/// whose context is `ctx`; returns `r0`.
///
/// # Safety
/// `ctx` must be the context of the [`RunArea`] whose stack `state` describes (so `state`'s stack top
/// is `ctx`), `frame_top` a valid frame of it ([`valid_frame`]), `native` the address of an instruction
/// of `prog`'s code, and every region of `mem` valid for the run.
pub(crate) unsafe fn enter(
    prog: &JitProgram,
    ctx: *mut JitCtx,
    mem: &mut MemoryMap,
    state: &mut RunState,
    native: u64,
    args: [u64; 5],
    frame_top: u64,
) -> Result<u64, RunError> {
    mem.enter_frame(frame_top, state);
    // SAFETY: per the contract, `ctx` is the live context of this run; no reference to it is held
    // across the call into generated code (nested entries save and restore what they change).
    let saved = unsafe {
        let saved = ((*ctx).prog, (*ctx).mem, (*ctx).state);
        (*ctx).prog = prog;
        (*ctx).mem = mem;
        (*ctx).state = state;
        (*ctx).args = args;
        (*ctx).frame_top = frame_top;
        (*ctx).budget = state.budget();
        (*ctx).call_status = 0;
        refresh(ctx, mem);
        saved
    };
    // SAFETY: the trampoline at offset 0 of the program's code has this signature; the code stays
    // mapped while `prog` lives (borrowed for the call). Generated code only touches memory it has
    // checked against `mem` (or that the verifier proved), the stack of the run and the context,
    // and returns here, normally or through the unwind path.
    let status = unsafe {
        let trampoline: extern "sysv64" fn(*mut JitCtx, u64) -> u64 = std::mem::transmute::<
            u64,
            extern "sysv64" fn(*mut JitCtx, u64) -> u64,
        >(prog.code_addr());
        trampoline(ctx, native)
    };
    // SAFETY: generated code has returned; `ctx` is again ours alone.
    let (ret, budget, err_code, err_aux, pending) = unsafe {
        let c = &mut *ctx;
        c.prog = saved.0;
        c.mem = saved.1;
        c.state = saved.2;
        (c.ret, c.budget, c.err_code, c.err_aux, c.pending.take())
    };
    state.set_budget(budget);
    if status == 0 {
        return Ok(ret);
    }
    let pc = (err_code & 0xffff_ffff) as usize;
    let kind = match err_code >> 32 {
        ERR_BUDGET => {
            state.set_budget(0);
            let slot = prog
                .block_slots(pc)
                .and_then(|b| b.get(err_aux as usize).copied())
                .unwrap_or(usize::MAX);
            return Err(RunError {
                pc: slot,
                kind: RunErrorKind::Budget {
                    budget: prog.budget(),
                },
            });
        }
        ERR_CALL_DEPTH => RunErrorKind::CallDepth,
        ERR_BAD_TARGET => RunErrorKind::BadCallTarget { target: err_aux },
        ERR_LDABS_ZERO => return Ok(0),
        _ => {
            return Err(pending.unwrap_or(RunError {
                pc: usize::MAX,
                kind: RunErrorKind::FellOffEnd,
            }))
        }
    };
    Err(RunError { pc, kind })
}

/// Runs `prog` from its first instruction on a fresh run: `buffers` as regions (the first is the
/// packet of legacy loads) plus the static ones, `r1`-`r5` = `args`.
pub(crate) fn run_fresh(
    prog: &JitProgram,
    buffers: &mut [moat_interp::Buffer<'_>],
    args: [u64; 5],
) -> Result<u64, RunError> {
    let mut mem = MemoryMap::new();
    for b in buffers.iter_mut() {
        let region = Region {
            start: b.bytes.as_mut_ptr() as u64,
            len: b.bytes.len() as u64,
            writable: b.writable,
        };
        // SAFETY: the buffer is mutably borrowed for this whole call, which outlives the run.
        unsafe { mem.add_raw(region) };
    }
    for r in prog.static_regions() {
        // SAFETY: static regions live as long as the program (its keep-alive values), which is
        // borrowed for the run.
        unsafe { mem.add_raw(*r) };
    }
    // A run area per thread is reused (a nested run, from a helper, gets its own).
    let mut area = AREA
        .with(|a| a.borrow_mut().take())
        .unwrap_or_else(|| Box::new(RunArea::new()));
    area.stack.fill(0);
    area.ctx.saved_rsp = 0;
    let ctx: *mut JitCtx = &mut area.ctx;
    let top = ctx as u64;
    // SAFETY: the stack is the STACK_BYTES below `top` inside `area`, which lives until the end of
    // this function; `mem` leaves it before.
    let mut state = unsafe { RunState::new(prog.budget(), top) };
    // SAFETY: the context sits at the stack top, as the JIT's runs require; only JIT code reads it.
    unsafe { state.set_engine_data(top) };
    let entry = prog.native(0).unwrap_or(0);
    // SAFETY: `ctx` is the context of `area`, whose stack `state` describes; `top` is its main frame;
    // `entry` is the program's first instruction; regions are valid as argued above.
    let result = unsafe { enter(prog, ctx, &mut mem, &mut state, entry, args, top) };
    mem.leave_stack();
    AREA.with(|a| *a.borrow_mut() = Some(area));
    result
}

thread_local! {
    static AREA: std::cell::RefCell<Option<Box<RunArea>>> = const { std::cell::RefCell::new(None) };
}

/// The context of a run started by the JIT, if `state` is one.
pub(crate) fn jit_ctx(state: &RunState) -> Option<*mut JitCtx> {
    let data = state.engine_data();
    (data != 0 && data == state.stack_top()).then_some(data as *mut JitCtx)
}

/// Called by generated code for helper calls: `a1`-`a5` are `r1`-`r5`, `ctx` the run context whose
/// `call_*` fields say which helper, from where. Returns `r0`; `call_status` says whether a tail call
/// ran (1) or an error is pending (2).
extern "sysv64" fn jit_call(a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, ctx: *mut JitCtx) -> u64 {
    // SAFETY: generated code passes the live context of its run; the pointers in it were set by
    // `enter` from references that outlive the call into generated code, and nothing else uses them
    // while generated code runs. No reference into the context is held across the helper, which
    // may enter generated code again (callbacks) on the same context.
    unsafe {
        let prog = &*(*ctx).prog;
        let mem = &mut *(*ctx).mem;
        let state = &mut *(*ctx).state;
        let pc = (*ctx).call_pc as usize;
        let fp = (*ctx).call_fp;
        let index = (*ctx).call_index;
        let target = (*ctx).call_target;
        state.set_budget((*ctx).budget);
        let (status, value) = call_helper(
            prog,
            mem,
            state,
            pc,
            fp,
            index,
            target,
            [a1, a2, a3, a4, a5],
        );
        (*ctx).budget = state.budget();
        (*ctx).call_status = status;
        if let Err(e) = value {
            (*ctx).pending = Some(e);
            refresh(ctx, mem);
            return 0;
        }
        refresh(ctx, mem);
        value.unwrap_or(0)
    }
}

#[allow(clippy::too_many_arguments)]
fn call_helper(
    prog: &JitProgram,
    mem: &mut MemoryMap,
    state: &mut RunState,
    pc: usize,
    fp: u64,
    index: u32,
    target: u64,
    args: [u64; 5],
) -> (u64, Result<u64, RunError>) {
    let looked_up;
    let helper: &ResolvedHelper = if index == u32::MAX {
        let found = u32::try_from(target)
            .ok()
            .and_then(|id| prog.registry().get(id).map(|h| (id, h)));
        let Some((id, h)) = found else {
            return (
                2,
                Err(RunError {
                    pc,
                    kind: RunErrorKind::BadCallTarget { target },
                }),
            );
        };
        looked_up = ResolvedHelper {
            id,
            name: h.name.clone(),
            func: h.func.clone(),
        };
        &looked_up
    } else {
        match prog.helper(index) {
            Some(h) => h,
            None => {
                return (
                    2,
                    Err(RunError {
                        pc,
                        kind: RunErrorKind::BadCallTarget {
                            target: u64::from(index),
                        },
                    }),
                )
            }
        }
    };
    let callers = callers(state, fp);
    mem.enter_frame(fp, state);
    let mut tail: TailCall = None;
    let result = {
        let mut hctx = HelperCtx::new(&mut *mem, prog, fp, callers + 1, &mut *state, &mut tail);
        (helper.func)(&mut hctx, args)
    };
    mem.enter_frame(fp, state);
    let value = match result {
        Ok(v) => v,
        Err(source) => {
            return (
                2,
                Err(RunError {
                    pc,
                    kind: RunErrorKind::Helper {
                        id: helper.id,
                        name: helper.name.clone(),
                        source,
                    },
                }),
            )
        }
    };
    let Some((next, ctx_arg)) = tail else {
        return (0, Ok(value));
    };
    let result = next.run_tail(mem, ctx_arg, fp, callers, state);
    mem.enter_frame(fp, state);
    match result {
        Ok(v) => (1, Ok(v)),
        Err(e) => (2, Err(e)),
    }
}

/// Called by generated code when a memory access fails its inline check: the complete check of
/// `len` bytes at `addr` (`info` = pc | len << 32 | write << 40 | atomic << 41) against the memory
/// map, with the stack window of the frame whose `r10` is `fp`. Returns 1 if allowed; otherwise
/// records the error and returns 0.
extern "sysv64" fn jit_check(ctx: *mut JitCtx, addr: u64, info: u64, fp: u64) -> u64 {
    let pc = (info & 0xffff_ffff) as usize;
    let len = (info >> 32) & 0xff;
    let write = info & (1 << 40) != 0;
    let atomic = info & (1 << 41) != 0;
    // SAFETY: as in `jit_call`: the context and the map and state it points to are live and unused
    // by anything else while this runs.
    unsafe {
        let mem = &mut *(*ctx).mem;
        let state = &*(*ctx).state;
        mem.enter_frame(fp, state);
        let ok = if atomic {
            addr.is_multiple_of(len) && mem.check(addr, len, true)
        } else {
            mem.check(addr, len, write)
        };
        if ok {
            return 1;
        }
        let kind = if atomic {
            RunErrorKind::BadAtomic { addr, len }
        } else {
            RunErrorKind::OutOfBounds { addr, len, write }
        };
        (*ctx).pending = Some(RunError { pc, kind });
        0
    }
}
