//! `bpf_get_stackid` and `bpf_get_stack`: where stacks come from and how the two helpers cut,
//! store and copy them, with the kernel's flags and errors (`kernel/bpf/stackmap.c`).
//!
//! moat runs no kernel code, so there is no kernel stack: asking for one (no `BPF_F_USER_STACK`)
//! gets `-EFAULT`, as the kernel answers when it has no stack. The user stack comes from a
//! [`StackSource`]: by default the one frame the context's `struct pt_regs` names (its
//! instruction pointer: the registers are not of this process, so nothing can be walked);
//! moat's attach layer installs one that walks the probed thread's frame pointers.

use crate::helpers::{neg_errno, EFAULT, EINVAL};
use moat_abi::{
    BPF_F_FAST_STACK_CMP, BPF_F_REUSE_STACKID, BPF_F_SKIP_FIELD_MASK, BPF_F_USER_BUILD_ID,
    BPF_F_USER_STACK, PERF_MAX_STACK_DEPTH,
};
use moat_exec::{HelperCtx, HelperError};
use moat_maps::Map;
use std::sync::Arc;

/// Bytes of the kernel's x86-64 `struct pt_regs` (the context of probe programs).
const PT_REGS_SIZE: u64 = 21 * 8;
/// `pt_regs.ip`'s word.
const PT_REGS_IP: usize = 16;
const EOPNOTSUPP: i32 = 95;

/// Where user stacks come from.
pub trait StackSource: Send + Sync + std::fmt::Debug {
    /// The user stack of the thread the running program looks at, innermost frame first, at most
    /// `max` addresses (`None`: there is none). `regs` is the program's context read as
    /// `struct pt_regs` when it is that large.
    fn user_stack(&self, regs: Option<&[u64; 21]>, max: usize) -> Option<Vec<u64>>;
}

/// The default source: the context's instruction pointer, one frame.
#[derive(Debug, Default)]
pub struct ContextIp;

impl StackSource for ContextIp {
    fn user_stack(&self, regs: Option<&[u64; 21]>, max: usize) -> Option<Vec<u64>> {
        let ip = regs?[PT_REGS_IP];
        (max > 0).then(|| vec![ip])
    }
}

/// The context at `addr` read as `struct pt_regs`, if it is that large.
fn regs_of(ctx: &HelperCtx<'_>, addr: u64) -> Option<[u64; 21]> {
    let mut bytes = [0u8; PT_REGS_SIZE as usize];
    ctx.read_into(1, addr, &mut bytes).ok()?;
    let mut regs = [0u64; 21];
    for (r, b) in regs.iter_mut().zip(bytes.chunks_exact(8)) {
        *r = u64::from_ne_bytes(b.try_into().ok()?);
    }
    Some(regs)
}

/// The user stack for flags `flags` with `keep` frames wanted after the skipped ones: the frames
/// past the skip, or the errno.
fn walk(
    source: &dyn StackSource,
    ctx: &HelperCtx<'_>,
    ctx_addr: u64,
    flags: u64,
    keep: usize,
) -> Result<Vec<u64>, i32> {
    if flags & BPF_F_USER_STACK == 0 {
        return Err(EFAULT);
    }
    let skip = (flags & BPF_F_SKIP_FIELD_MASK) as usize;
    let max = (keep + skip).min(PERF_MAX_STACK_DEPTH as usize);
    let regs = regs_of(ctx, ctx_addr);
    let mut ips = source.user_stack(regs.as_ref(), max).ok_or(EFAULT)?;
    ips.truncate(max);
    if ips.len() <= skip {
        return Err(EFAULT);
    }
    Ok(ips.split_off(skip))
}

/// `bpf_get_stackid(ctx, map, flags)`.
pub(crate) fn get_stackid(
    source: &dyn StackSource,
    ctx: &HelperCtx<'_>,
    map: &Map,
    args: [u64; 5],
) -> u64 {
    let flags = args[2];
    let known =
        BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP | BPF_F_REUSE_STACKID;
    if flags & !known != 0 {
        return neg_errno(EINVAL);
    }
    let ips = match walk(source, ctx, args[0], flags, map.stack_depth()) {
        Ok(ips) => ips,
        Err(e) => return neg_errno(e),
    };
    match map.store_stack(&ips, flags & BPF_F_SKIP_FIELD_MASK, flags) {
        Ok(id) => u64::from(id),
        Err(e) => e.errno() as i64 as u64,
    }
}

/// `bpf_get_stack(ctx, buf, size, flags)`: the bytes copied, the rest of `buf` zeroed.
pub(crate) fn get_stack(
    source: &dyn StackSource,
    ctx: &mut HelperCtx<'_>,
    args: [u64; 5],
) -> Result<u64, HelperError> {
    let (buf, size, flags) = (args[1], args[2], args[3]);
    let mut out = vec![0u8; usize::try_from(size).unwrap_or(0)];
    let result = if flags & !(BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_USER_BUILD_ID) != 0
        || size % 8 != 0
    {
        Err(EINVAL)
    } else if flags & BPF_F_USER_BUILD_ID != 0 {
        Err(if flags & BPF_F_USER_STACK == 0 {
            EINVAL
        } else {
            EOPNOTSUPP
        })
    } else {
        walk(source, ctx, args[0], flags, out.len() / 8)
    };
    let ret = match result {
        Ok(ips) => {
            let n = ips.len().min(out.len() / 8);
            for (dst, ip) in out.chunks_exact_mut(8).zip(&ips[..n]) {
                dst.copy_from_slice(&ip.to_ne_bytes());
            }
            (n * 8) as u64
        }
        Err(e) => neg_errno(e),
    };
    if !out.is_empty() {
        ctx.write(2, buf, &out)?;
    }
    Ok(ret)
}

/// The source a runtime starts with.
pub(crate) fn default_source() -> Arc<dyn StackSource> {
    Arc::new(ContextIp)
}
