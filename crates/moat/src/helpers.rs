//! moat's standard helper functions that need no maps, under the Linux kernel's ids and names
//! ([`HelperId`]) and with its semantics (return values, error codes, truncation rules); and the ids
//! of moat's own helpers ([`id::MOAT_BASE`] and up: the pool transaction helpers).

use crate::trace::TraceLog;
/// The kernel's helper ids and names (`enum bpf_func_id`), from `moat-abi`.
pub use moat_abi::HelperId;
use moat_exec::{HelperCtx, HelperError, HelperRegistry};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use HelperId as H;

/// The ids of moat's own helpers. The kernel's helpers have the kernel's ids, [`HelperId`].
pub mod id {
    /// The first id of moat's own helpers (`0x6d6f_0000`, "mo" in ASCII): far above every kernel
    /// helper id, so they never collide. C programs declare them as
    /// `static long (*moat_pool_tx_begin)(void) = (void *) 0x6d6f0001;`.
    pub const MOAT_BASE: u32 = 0x6d6f_0000;
    /// `long moat_pool_tx_begin(void)`: starts a transaction on the pool of the program's pool maps;
    /// until it is committed, the run's `bpf_map_update_elem` / `bpf_map_delete_elem` on them join it,
    /// and a run that ends without committing rolls it back. 0, `-EBUSY` if one is open already,
    /// `-EINVAL` if the program uses no pool map (or maps of several pools), or the pool's errno.
    pub const POOL_TX_BEGIN: u32 = MOAT_BASE + 1;
    /// `long moat_pool_tx_commit(void)`: makes the transaction's changes durable, atomically. 0,
    /// `-ENOENT` if no transaction is open in this run, or the pool's errno (the transaction is then
    /// rolled back).
    pub const POOL_TX_COMMIT: u32 = MOAT_BASE + 2;
    /// `long moat_pool_tx_abort(void)`: rolls the transaction back. 0, or `-ENOENT` if none is open.
    pub const POOL_TX_ABORT: u32 = MOAT_BASE + 3;
}

/// Negative errno values helpers return, as `u64` two's complement.
pub(crate) fn neg_errno(errno: i32) -> u64 {
    (-i64::from(errno)) as u64
}
pub(crate) const ENOENT: i32 = 2;
pub(crate) const EFAULT: i32 = 14;
pub(crate) const EBUSY: i32 = 16;
pub(crate) const EINVAL: i32 = 22;
pub(crate) const ERANGE: i32 = 34;
pub(crate) const E2BIG: i32 = 7;

fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Ticks of the kernel's timer interrupt (`HZ`) moat's `bpf_jiffies64` counts: Debian's kernels
/// are built with `CONFIG_HZ=250`, and programs (Cilium's connection tracking) compare jiffies with
/// their own `HZ`-based timeouts, so moat ticks at that rate too.
pub const JIFFIES_HZ: u64 = 250;

/// `bpf_jiffies64`: [`JIFFIES_HZ`] ticks of the same clock as `bpf_ktime_get_ns`.
fn jiffies64() -> u64 {
    monotonic_ns() / (1_000_000_000 / JIFFIES_HZ)
}

/// A xorshift generator shared by all programs; `bpf_get_prandom_u32` is not cryptographic either.
fn prandom_u32() -> u32 {
    static STATE: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut x = STATE.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 32) as u32
}

/// The CPU the calling thread runs on, for per-CPU maps; 0 where unknown.
pub(crate) fn current_cpu() -> usize {
    rustix::thread::sched_getcpu()
}

/// Copies `size` bytes from `src` to `dst` if `src` is readable; otherwise zeroes `dst` and returns
/// `-EFAULT`, as the kernel does for a faulting `bpf_probe_read_*`.
fn probe_read(ctx: &mut HelperCtx<'_>, args: [u64; 5]) -> Result<u64, HelperError> {
    let (dst, size, src) = (args[0], args[1], args[2]);
    let size_usize = usize::try_from(size).map_err(|_| HelperError::BadArgument {
        arg: 2,
        reason: format!("size {size} too large"),
    })?;
    // Audit the destination before anything is allocated: a huge size must end the run, not make
    // the host allocate it.
    if !ctx.mem.check(dst, size, true) {
        return Err(ctx.out_of_bounds(1, dst, size));
    }
    match ctx.mem.read_bytes(src, size_usize) {
        Some(bytes) => {
            ctx.write(1, dst, &bytes)?;
            Ok(0)
        }
        None => {
            ctx.write(1, dst, &vec![0; size_usize])?;
            Ok(neg_errno(EFAULT))
        }
    }
}

/// Copies a NUL-terminated string of at most `size - 1` bytes and terminates it; returns the length
/// with the NUL, or `-EFAULT` when the first byte is unreadable.
fn probe_read_str(ctx: &mut HelperCtx<'_>, args: [u64; 5]) -> Result<u64, HelperError> {
    let (dst, size, src) = (args[0], args[1], args[2]);
    if size == 0 {
        return Ok(0);
    }
    let mut out = Vec::new();
    while (out.len() as u64) < size - 1 {
        match ctx.mem.read_bytes(src.wrapping_add(out.len() as u64), 1) {
            Some(b) if b[0] == 0 => break,
            Some(b) => out.push(b[0]),
            None if out.is_empty() => {
                ctx.write(1, dst, &[0])?;
                return Ok(neg_errno(EFAULT));
            }
            None => break,
        }
    }
    out.push(0);
    ctx.write(1, dst, &out)?;
    Ok(out.len() as u64)
}

/// Reads a NUL-terminated string from program memory (at most `max` bytes).
fn read_cstr(ctx: &HelperCtx<'_>, arg: u8, addr: u64, max: usize) -> Result<Vec<u8>, HelperError> {
    let mut out = Vec::new();
    while out.len() < max {
        let b = ctx.read(arg, addr.wrapping_add(out.len() as u64), 1)?;
        if b[0] == 0 {
            return Ok(out);
        }
        out.push(b[0]);
    }
    Ok(out)
}

/// What a format reads from program memory: a zero-terminated string, or this many bytes.
pub(crate) type ReadArg<'a> = dyn FnMut(u64, Option<usize>) -> Result<Vec<u8>, HelperError> + 'a;

/// A pointer as `%p` prints it: hashed with a key of this process, as the kernel hashes pointers,
/// so that no format ever prints a host address.
fn hashed_pointer(value: u64) -> String {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let hash = KEY
        .get_or_init(std::collections::hash_map::RandomState::new)
        .hash_one(value);
    format!("{hash:016x}")
}

/// `%pI4`/`%pi4` (4 bytes, dotted quad; `i` pads each part to 3 digits) and `%pI6`/`%pi6` (16
/// bytes, eight groups of 4 hex digits, `:`-separated for `I`), as the kernel's `vsprintf` prints
/// them.
fn ip_address(bytes: &[u8], padded: bool) -> String {
    if bytes.len() == 4 {
        let parts: Vec<String> = bytes
            .iter()
            .map(|b| {
                if padded {
                    format!("{b:03}")
                } else {
                    b.to_string()
                }
            })
            .collect();
        return parts.join(".");
    }
    let groups: Vec<String> = bytes
        .chunks(2)
        .map(|g| format!("{:02x}{:02x}", g[0], g.get(1).copied().unwrap_or(0)))
        .collect();
    groups.join(if padded { "" } else { ":" })
}

/// Formats `fmt` with the kernel's `bpf_trace_printk`/`bpf_snprintf` conversions: `%d %i %u %x %X %c
/// %s %%` with `l`/`ll` length modifiers and a field width; `%p` (also `%pK`, `%px`) prints the
/// pointer hashed, never as an address; `%pI4 %pi4 %pI6 %pi6` print the IP address the argument
/// points to and `%pks %pus` the string. Strings and addresses are read from program memory with
/// `read` (`None`: up to a zero byte).
pub(crate) fn format_printf(
    fmt: &[u8],
    args: &[u64],
    read: &mut ReadArg<'_>,
) -> Result<Vec<u8>, HelperError> {
    let mut out = Vec::new();
    let mut next = args.iter();
    let mut i = 0;
    let bad = |reason: String| HelperError::BadArgument { arg: 1, reason };
    while let Some(&c) = fmt.get(i) {
        i += 1;
        if c != b'%' {
            out.push(c);
            continue;
        }
        if fmt.get(i) == Some(&b'%') {
            out.push(b'%');
            i += 1;
            continue;
        }
        let zero_pad = fmt.get(i) == Some(&b'0');
        let mut width = 0usize;
        while let Some(d) = fmt.get(i).filter(|d| d.is_ascii_digit()) {
            width = width
                .saturating_mul(10)
                .saturating_add(usize::from(d - b'0'));
            i += 1;
        }
        let mut longs = 0;
        while fmt.get(i) == Some(&b'l') {
            longs += 1;
            i += 1;
        }
        let conv = *fmt
            .get(i)
            .ok_or_else(|| bad("format ends inside a conversion".into()))?;
        i += 1;
        let arg = *next
            .next()
            .ok_or_else(|| bad(format!("format needs more than {} arguments", args.len())))?;
        let text: Vec<u8> = match conv {
            b'd' | b'i' => {
                let v = if longs > 0 {
                    arg as i64
                } else {
                    i64::from(arg as i32)
                };
                v.to_string().into_bytes()
            }
            b'u' => {
                let v = if longs > 0 {
                    arg
                } else {
                    u64::from(arg as u32)
                };
                v.to_string().into_bytes()
            }
            b'x' | b'X' => {
                let v = if longs > 0 {
                    arg
                } else {
                    u64::from(arg as u32)
                };
                let s = if conv == b'x' {
                    format!("{v:x}")
                } else {
                    format!("{v:X}")
                };
                s.into_bytes()
            }
            b'p' => match (fmt.get(i).copied(), fmt.get(i + 1).copied()) {
                (Some(kind @ (b'I' | b'i')), Some(version @ (b'4' | b'6'))) => {
                    i += 2;
                    let bytes = read(arg, Some(if version == b'4' { 4 } else { 16 }))?;
                    ip_address(&bytes, kind == b'i').into_bytes()
                }
                (Some(b'k' | b'u'), Some(b's')) => {
                    i += 2;
                    read(arg, None)?
                }
                (Some(b'K' | b'x'), _) => {
                    i += 1;
                    hashed_pointer(arg).into_bytes()
                }
                _ => hashed_pointer(arg).into_bytes(),
            },
            b'c' => vec![arg as u8],
            b's' => read(arg, None)?,
            other => return Err(bad(format!("unsupported conversion %{}", other as char))),
        };
        if text.len() < width {
            let pad = if zero_pad && conv != b's' { b'0' } else { b' ' };
            out.extend(std::iter::repeat_n(pad, width - text.len()));
        }
        out.extend(text);
    }
    Ok(out)
}

/// Parses like the kernel's `bpf_strtol`/`bpf_strtoul`: leading spaces, an optional sign (signed only),
/// base from the low bits of `flags` (0 = detect `0x`/`0` prefixes, 8, 10, 16). Returns the characters
/// consumed and the value, or the negative errno.
pub(crate) fn parse_integer(buf: &[u8], flags: u64, signed: bool) -> Result<(usize, i128), i32> {
    let base = flags & 0x1f;
    if !matches!(base, 0 | 8 | 10 | 16) || flags & !0x1f != 0 {
        return Err(EINVAL);
    }
    let mut i = 0;
    while buf.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    let mut negative = false;
    if buf.get(i) == Some(&b'-') {
        if !signed {
            return Err(EINVAL);
        }
        negative = true;
        i += 1;
    }
    let mut base = base as u32;
    let has_hex_prefix = buf.get(i) == Some(&b'0')
        && matches!(buf.get(i + 1), Some(b'x' | b'X'))
        && buf.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
    if (base == 0 || base == 16) && has_hex_prefix {
        base = 16;
        i += 2;
    } else if base == 0 {
        base = if buf.get(i) == Some(&b'0') { 8 } else { 10 };
    }
    let start = i;
    let mut value: i128 = 0;
    while let Some(d) = buf.get(i).and_then(|c| (*c as char).to_digit(base)) {
        value = value * i128::from(base) + i128::from(d);
        if value > i128::from(u64::MAX) {
            return Err(ERANGE);
        }
        i += 1;
    }
    if i == start {
        return Err(EINVAL);
    }
    let value = if negative { -value } else { value };
    let fits = if signed {
        i64::try_from(value).is_ok()
    } else {
        u64::try_from(value).is_ok()
    };
    if !fits {
        return Err(ERANGE);
    }
    Ok((i, value))
}

fn strto(ctx: &mut HelperCtx<'_>, args: [u64; 5], signed: bool) -> Result<u64, HelperError> {
    let len = usize::try_from(args[1])
        .unwrap_or(usize::MAX)
        .min(64 * 1024);
    let buf = ctx.read(1, args[0], len as u64)?;
    match parse_integer(&buf, args[2], signed) {
        Ok((consumed, value)) => {
            ctx.write(4, args[3], &(value as i64).to_le_bytes())?;
            Ok(consumed as u64)
        }
        Err(errno) => Ok(neg_errno(errno)),
    }
}

/// Registers kernel helper `h` under the kernel's id and name.
pub(crate) fn register(
    registry: &mut HelperRegistry,
    h: HelperId,
    func: impl Fn(&mut HelperCtx<'_>, [u64; 5]) -> Result<u64, HelperError> + Send + Sync + 'static,
) {
    registry.register(h.as_u32(), h.name(), func);
}

/// Registers the helpers that need no maps. `trace_printk` writes to `trace`.
pub(crate) fn register_standard(registry: &mut HelperRegistry, trace: TraceLog) {
    register(registry, H::KtimeGetNs, |_, _| Ok(monotonic_ns()));
    register(registry, H::KtimeGetBootNs, |_, _| Ok(monotonic_ns()));
    register(registry, H::Jiffies64, |_, _| Ok(jiffies64()));
    register(registry, H::GetPrandomU32, |_, _| {
        Ok(u64::from(prandom_u32()))
    });
    register(registry, H::GetSmpProcessorId, |_, _| {
        Ok(current_cpu() as u64)
    });
    register(registry, H::GetCurrentPidTgid, |_, _| {
        let tgid = u64::from(std::process::id());
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u64;
        Ok((tgid << 32) | (tid & 0xffff_ffff))
    });
    register(registry, H::GetCurrentUidGid, |_, _| {
        let uid = u64::from(rustix::process::getuid().as_raw());
        let gid = u64::from(rustix::process::getgid().as_raw());
        Ok((gid << 32) | uid)
    });
    register(registry, H::GetCurrentComm, |ctx, args| {
        let mut comm = std::fs::read("/proc/thread-self/comm").unwrap_or_default();
        if comm.last() == Some(&b'\n') {
            comm.pop();
        }
        let size = usize::try_from(args[1]).unwrap_or(0);
        if size == 0 {
            return Ok(neg_errno(EINVAL));
        }
        comm.truncate(size.saturating_sub(1).min(15));
        comm.resize(size.min(16), 0);
        ctx.write(1, args[0], &comm)?;
        Ok(0)
    });
    for h in [H::ProbeRead, H::ProbeReadUser, H::ProbeReadKernel] {
        register(registry, h, probe_read);
    }
    for h in [H::ProbeReadUserStr, H::ProbeReadKernelStr] {
        register(registry, h, probe_read_str);
    }
    register(registry, H::Strtol, |ctx, args| strto(ctx, args, true));
    register(registry, H::Strtoul, |ctx, args| strto(ctx, args, false));
    register(registry, H::TracePrintk, move |ctx, args| {
        let size = usize::try_from(args[1]).unwrap_or(0).min(1024);
        let fmt = ctx.read(1, args[0], size as u64)?;
        let fmt = fmt.split(|&b| b == 0).next().unwrap_or(&[]).to_vec();
        let line = format_printf(&fmt, &args[2..5], &mut |addr, len| match len {
            None => read_cstr(ctx, 3, addr, 256),
            Some(n) => ctx.read(3, addr, n as u64),
        })?;
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches('\n')
            .to_string();
        let len = line.len() as u64;
        trace.push(text);
        Ok(len)
    });
    register(registry, H::Snprintf, |ctx, args| {
        let (out, out_size, fmt_addr, data, data_len) =
            (args[0], args[1], args[2], args[3], args[4]);
        if !data_len.is_multiple_of(8) || data_len > 8 * 12 {
            return Ok(neg_errno(EINVAL));
        }
        let fmt = read_cstr(ctx, 3, fmt_addr, 1024)?;
        let raw = ctx.read(4, data, data_len)?;
        let values: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let mut read = |addr, len: Option<usize>| match len {
            None => read_cstr(ctx, 4, addr, 256),
            Some(n) => ctx.read(4, addr, n as u64),
        };
        let mut text = match format_printf(&fmt, &values, &mut read) {
            Ok(t) => t,
            Err(_) => return Ok(neg_errno(EINVAL)),
        };
        let needed = text.len() as u64 + 1;
        if out_size > 0 {
            let keep = usize::try_from(out_size - 1).unwrap_or(0).min(text.len());
            text.truncate(keep);
            text.push(0);
            ctx.write(1, out, &text)?;
        }
        Ok(needed)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(f: &str, args: &[u64]) -> String {
        let mut read = |addr: u64, len: Option<usize>| {
            Ok(match len {
                None => b"str".to_vec(),
                // Addresses: the bytes 192, 168, 1, 7, ... at any address.
                Some(n) => (0..n)
                    .map(|k| [192u8, 168, 1, 7][k % 4] ^ (addr as u8))
                    .collect(),
            })
        };
        let out = format_printf(f.as_bytes(), args, &mut read).expect("formats");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn printf_conversions_follow_the_kernel() {
        assert_eq!(
            fmt("a=%d b=%u c=%x", &[u64::MAX, u64::MAX, 255]),
            "a=-1 b=4294967295 c=ff"
        );
        assert_eq!(
            fmt("%lld %llu %lx %s %%", &[u64::MAX, u64::MAX, 255, 0]),
            "-1 18446744073709551615 ff str %"
        );
        assert_eq!(fmt("%08x|%4d", &[0xab, 7]), "000000ab|   7");
        assert!(format_printf(b"%d %d", &[1], &mut |_, _| Ok(vec![])).is_err());
    }

    #[test]
    fn pointers_are_never_printed_as_addresses() {
        assert_eq!(fmt("%pI4", &[0]), "192.168.1.7");
        assert_eq!(fmt("%pi4", &[0]), "192.168.001.007");
        assert_eq!(fmt("%pI6", &[0]), "c0a8:0107:c0a8:0107:c0a8:0107:c0a8:0107");
        assert_eq!(fmt("%pks|%pus", &[1, 2]), "str|str");
        let address = 0x7ffd_1234_5678u64;
        for f in ["%p", "%pK", "%px"] {
            let text = fmt(f, &[address]);
            assert!(
                !text.contains("12345678") && !text.contains("7ffd"),
                "{f}: {text}"
            );
            assert_eq!(text, fmt(f, &[address]), "stable within a process");
        }
        assert_ne!(fmt("%p", &[1]), fmt("%p", &[2]));
    }

    #[test]
    fn strtol_follows_the_kernel() {
        assert_eq!(parse_integer(b"  -42abc", 0, true), Ok((5, -42)));
        assert_eq!(parse_integer(b"0x1f", 0, true), Ok((4, 31)));
        assert_eq!(parse_integer(b"017", 0, false), Ok((3, 15)));
        assert_eq!(parse_integer(b"ff", 16, false), Ok((2, 255)));
        assert_eq!(parse_integer(b"-1", 10, false), Err(EINVAL));
        assert_eq!(parse_integer(b"xyz", 10, true), Err(EINVAL));
        assert_eq!(
            parse_integer(b"99999999999999999999", 10, false),
            Err(ERANGE)
        );
        assert_eq!(parse_integer(b"9223372036854775808", 10, true), Err(ERANGE));
        assert_eq!(parse_integer(b"1", 3, true), Err(EINVAL));
    }
}
