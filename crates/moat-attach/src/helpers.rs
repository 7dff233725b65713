//! The tracing helpers with the traced process's real values: `bpf_probe_read_user(_str)` (and the
//! old `bpf_probe_read(_str)`) read the process's own memory through `process_vm_readv`, which
//! fails instead of faulting; `bpf_get_func_ip` and `bpf_get_attach_cookie` answer for the probe
//! that runs the program; `bpf_get_current_pid_tgid` and `bpf_get_current_comm` ask the kernel once
//! per thread (and again after `fork` or a rename through `prctl`); `bpf_get_stackid` and
//! `bpf_get_stack` walk the probed thread's user stack ([`crate::ThreadStacks`]).

use crate::mem::read_user;
use moat::helpers::HelperId as H;
use moat::{Arg, HelperCtx, HelperError, HelperProto, Ret, Runtime};
use std::cell::Cell;

const EFAULT: u64 = (-14i64) as u64;

/// The largest read one call makes (the kernel has no limit but the stack the result goes to).
const MAX_READ: u64 = 1 << 16;

fn proto(id: H, args: &[Arg], ret: Ret) -> HelperProto {
    let mut a = [Arg::None; 5];
    for (d, s) in a.iter_mut().zip(args) {
        *d = *s;
    }
    HelperProto {
        name: id.name().to_string(),
        args: a,
        ret,
        callback: moat::Callback::None,
    }
}

/// Bytes copied per step: reads go through a buffer on the native stack, never the heap, since a
/// probe may run inside the allocator with its lock held (a probe on `mmap`, which `malloc` calls).
const CHUNK: usize = 512;

/// Fills `len` bytes of program memory at `dst` with zeros.
fn zero(ctx: &mut HelperCtx<'_>, dst: u64, len: u64) -> Result<(), HelperError> {
    let zeros = [0u8; CHUNK];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(CHUNK as u64);
        ctx.write(1, dst + off, &zeros[..n as usize])?;
        off += n;
    }
    Ok(())
}

fn probe_read(ctx: &mut HelperCtx<'_>, args: [u64; 5]) -> Result<u64, HelperError> {
    let (dst, size, src) = (args[0], args[1].min(MAX_READ), args[2]);
    if !ctx.mem.check(dst, size, true) {
        return Err(ctx.out_of_bounds(1, dst, size));
    }
    let mut chunk = [0u8; CHUNK];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(CHUNK as u64) as usize;
        let got = read_user(src.wrapping_add(off), &mut chunk[..n]);
        if got < n {
            // As the kernel: a failed read leaves the destination zeroed.
            zero(ctx, dst, size)?;
            return Ok(EFAULT);
        }
        ctx.write(1, dst + off, &chunk[..n])?;
        off += n as u64;
    }
    Ok(0)
}

fn probe_read_str(ctx: &mut HelperCtx<'_>, args: [u64; 5]) -> Result<u64, HelperError> {
    let (dst, size, src) = (args[0], args[1].min(MAX_READ), args[2]);
    if size == 0 {
        return Ok(0);
    }
    if !ctx.mem.check(dst, size, true) {
        return Err(ctx.out_of_bounds(1, dst, size));
    }
    // Read up to `size - 1` bytes, stopping at the first NUL or unreadable page.
    let mut chunk = [0u8; CHUNK];
    let mut len = 0u64;
    while len < size - 1 {
        let n = (size - 1 - len).min(CHUNK as u64) as usize;
        let got = read_user(src.wrapping_add(len), &mut chunk[..n]);
        let end = chunk[..got].iter().position(|&b| b == 0);
        let take = end.unwrap_or(got);
        ctx.write(1, dst + len, &chunk[..take])?;
        len += take as u64;
        if end.is_some() || got < n {
            if len == 0 && end.is_none() {
                ctx.write(1, dst, &[0])?;
                return Ok(EFAULT);
            }
            break;
        }
    }
    ctx.write(1, dst + len, &[0])?;
    Ok(len + 1)
}

thread_local! {
    /// This thread's `(tgid << 32) | tid` and the fork generation it was read in.
    static PID_TGID: Cell<(u64, u64)> = const { Cell::new((0, u64::MAX)) };
}

static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn forked() {
    crate::mem::forget_pid();
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// This thread's `(tgid << 32) | tid`, asked of the kernel once per thread (and after `fork`).
pub(crate) fn pid_tgid() -> u64 {
    let generation = FORKS.load(std::sync::atomic::Ordering::Relaxed);
    PID_TGID.with(|c| {
        let (v, g) = c.get();
        if g == generation {
            return v;
        }
        let tgid = u64::from(std::process::id());
        let tid = crate::mem::gettid();
        let v = (tgid << 32) | tid;
        c.set((v, generation));
        v
    })
}

/// Registers the tracing helpers on `rt`, replacing moat's generic ones (which read program memory
/// only) for programs loaded from now on.
pub fn register(rt: &mut Runtime) {
    crate::mem::at_fork_child(forked);
    rt.set_stack_source(std::sync::Arc::new(crate::ThreadStacks));
    use Arg::{AnyAddr, Ctx, MemOut, Size, SizeOrZero};
    for id in [H::ProbeRead, H::ProbeReadUser] {
        rt.register_helper_with_proto(
            id.as_u32(),
            proto(id, &[MemOut, SizeOrZero, AnyAddr], Ret::Integer),
            probe_read,
        );
    }
    for id in [H::ProbeReadStr, H::ProbeReadUserStr] {
        rt.register_helper_with_proto(
            id.as_u32(),
            proto(id, &[MemOut, SizeOrZero, AnyAddr], Ret::Integer),
            probe_read_str,
        );
    }
    rt.register_helper_with_proto(
        H::GetCurrentPidTgid.as_u32(),
        proto(H::GetCurrentPidTgid, &[], Ret::Integer),
        |_, _| Ok(pid_tgid()),
    );
    rt.register_helper_with_proto(
        H::GetCurrentComm.as_u32(),
        proto(H::GetCurrentComm, &[MemOut, Size], Ret::Integer),
        |ctx, args| {
            let size = args[1].min(16) as usize;
            if size == 0 {
                return Ok((-22i64) as u64);
            }
            let mut comm = crate::mem::thread_name();
            comm[size - 1] = 0;
            ctx.write(1, args[0], &comm[..size])?;
            Ok(0)
        },
    );
    rt.register_helper_with_proto(
        H::GetFuncIp.as_u32(),
        proto(H::GetFuncIp, &[Ctx], Ret::Integer),
        |_, _| Ok(crate::probe::current().0),
    );
    rt.register_helper_with_proto(
        H::GetAttachCookie.as_u32(),
        proto(H::GetAttachCookie, &[Ctx], Ret::Integer),
        |_, _| Ok(crate::probe::current().1),
    );
    // libbpf tools test the task's cgroup against a cgroup array only when asked to (`-c`);
    // moat's loader refuses to fill one (`moat load`), so the helper exists for the programs that
    // carry the test and answers that it cannot tell, as the tool's loader does.
    if let Some(p) = moat::HelperProto::kernel(H::CurrentTaskUnderCgroup.as_u32()) {
        rt.register_helper_with_proto(H::CurrentTaskUnderCgroup.as_u32(), p, |_, _| {
            Ok(-i64::from(libc::EOPNOTSUPP) as u64)
        });
    }
}
