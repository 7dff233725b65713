//! The raw memory work of attaching: code memory near a probed address (a memfd mapped twice,
//! writable and executable, never both in one mapping), patching the process's own code while
//! other threads may run it, and fault-safe reads of the process's memory.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

/// Bytes of one code chunk.
const CHUNK: usize = 64 * 1024;
/// How far a `jmp rel32` reaches, less a margin for the chunk and the patched instructions.
const REACH: u64 = (1 << 31) - 2 * CHUNK as u64;

struct Chunk {
    rx: u64,
    rw: u64,
    used: usize,
}

static CHUNKS: Mutex<Vec<Chunk>> = Mutex::new(Vec::new());

fn distance(a: u64, b: u64) -> u64 {
    a.abs_diff(b)
}

/// Maps a fresh chunk of code memory within `jmp rel32` reach of `near`.
fn map_chunk(near: u64) -> Option<Chunk> {
    // SAFETY: memfd_create with a static NUL-terminated name and no pointers kept.
    let fd = unsafe { libc::memfd_create(c"moat-attach".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is the memfd just created and owned here.
    let ok = unsafe { libc::ftruncate(fd, CHUNK as libc::off_t) } == 0;
    let chunk = ok.then(|| map_views(fd, near)).flatten();
    // SAFETY: the mappings keep the memory alive; the descriptor is ours to close.
    unsafe { libc::close(fd) };
    chunk
}

fn map_views(fd: i32, near: u64) -> Option<Chunk> {
    // SAFETY: a new shared mapping of the memfd at an address the kernel picks.
    let rw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            CHUNK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if rw == libc::MAP_FAILED {
        return None;
    }
    // Candidate addresses: in every free gap, the page-aligned spot closest to `near`.
    let mut candidates: Vec<u64> = crate::symbols::gaps(std::process::id())
        .into_iter()
        .filter(|(s, e)| e - s >= 2 * CHUNK as u64)
        .map(|(s, e)| {
            let lo = s + CHUNK as u64;
            let hi = e - 2 * CHUNK as u64;
            near.clamp(lo, hi.max(lo)) & !0xfff
        })
        .filter(|&a| distance(a, near) < REACH)
        .collect();
    candidates.sort_by_key(|&a| distance(a, near));
    for hint in candidates {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the address is free.
        let rx = unsafe {
            libc::mmap(
                hint as *mut libc::c_void,
                CHUNK,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                fd,
                0,
            )
        };
        if rx != libc::MAP_FAILED {
            if rx as u64 == hint {
                return Some(Chunk {
                    rx: rx as u64,
                    rw: rw as u64,
                    used: 0,
                });
            }
            // SAFETY: an old kernel placed the mapping elsewhere; it is ours to unmap.
            unsafe { libc::munmap(rx, CHUNK) };
        }
    }
    // SAFETY: the writable view mapped above, unused.
    unsafe { libc::munmap(rw, CHUNK) };
    None
}

/// Places `code(at)` — machine code assembled for address `at`, at most `max` bytes — in code
/// memory within `jmp rel32` reach of `near`; returns its address. The code is never freed (a thread
/// may still be inside it after its probe is detached).
pub(crate) fn place_code(
    near: u64,
    max: usize,
    code: impl Fn(u64) -> Option<Vec<u8>>,
) -> Option<u64> {
    let mut chunks = CHUNKS.lock().unwrap_or_else(|p| p.into_inner());
    let fits = |c: &Chunk| c.used + max <= CHUNK && distance(c.rx + c.used as u64, near) < REACH;
    let index = match chunks.iter().position(fits) {
        Some(i) => i,
        None => {
            chunks.push(map_chunk(near)?);
            chunks.len() - 1
        }
    };
    let chunk = chunks.get_mut(index)?;
    let at = chunk.rx + chunk.used as u64;
    let bytes = code(at)?;
    if bytes.len() > max || chunk.used + bytes.len() > CHUNK {
        return None;
    }
    // SAFETY: [rw + used, + len) lies in the chunk's writable view, which no one else writes (the
    // lock is held) and no thread executes yet (its address has not been published).
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (chunk.rw + chunk.used as u64) as *mut u8,
            bytes.len(),
        );
    }
    // Keep 16-byte alignment for the next piece.
    chunk.used += bytes.len().div_ceil(16) * 16;
    Some(at)
}

/// Reads `len` bytes of the process's code at `addr`, or `None` where any is unreadable.
pub(crate) fn read_code(addr: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    (read_user(addr, &mut buf) == len).then_some(buf)
}

/// This process's id, asked of the kernel once (and again after `fork`, [`forget_pid`]).
fn own_pid() -> libc::pid_t {
    static PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
    match PID.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() };
            PID.store(pid, Ordering::Relaxed);
            OWN_PID_GENERATION.store(1, Ordering::Relaxed);
            pid
        }
        pid if OWN_PID_GENERATION.load(Ordering::Relaxed) == 1 => pid,
        _ => {
            PID.store(0, Ordering::Relaxed);
            own_pid()
        }
    }
}

/// 1 while [`own_pid`]'s cached id is this process's; 0 after a `fork`.
static OWN_PID_GENERATION: AtomicU8 = AtomicU8::new(0);

/// Called in a forked child: the cached process id is the parent's.
pub(crate) fn forget_pid() {
    OWN_PID_GENERATION.store(0, Ordering::Relaxed);
}

/// Reads the process's own memory at `addr` into `buf` without ever faulting: returns how many
/// bytes could be read (from the start; a read stops at the first unreadable page).
pub fn read_user(addr: u64, buf: &mut [u8]) -> usize {
    let pid = own_pid();
    let mut done = 0usize;
    while done < buf.len() {
        let at = addr.wrapping_add(done as u64);
        // Page by page, so that a read stops exactly at the first unreadable page.
        let in_page = 4096 - (at & 0xfff) as usize;
        let n = in_page.min(buf.len() - done);
        let local = libc::iovec {
            iov_base: buf[done..].as_mut_ptr().cast(),
            iov_len: n,
        };
        let remote = libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: n,
        };
        // SAFETY: `local` is `n` writable bytes of `buf`; the kernel checks the remote range and
        // fails with EFAULT rather than fault.
        let got = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        if got <= 0 {
            break;
        }
        done += got.unsigned_abs();
        if got.unsigned_abs() < n {
            break;
        }
    }
    done
}

/// Serialises every thread of the process (so that none runs stale code after a patch), where the
/// kernel offers `membarrier(SYNC_CORE)`; otherwise the `int3` protocol alone keeps patching safe.
fn sync_cores() {
    const REGISTER: libc::c_long = 1 << 6; // MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE
    const SYNC: libc::c_long = 1 << 5; // MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE
    static REGISTERED: AtomicU8 = AtomicU8::new(0);
    if REGISTERED.load(Ordering::Relaxed) == 0 {
        // SAFETY: membarrier takes no pointers.
        let r = unsafe { libc::syscall(libc::SYS_membarrier, REGISTER, 0, 0) };
        REGISTERED.store(if r == 0 { 1 } else { 2 }, Ordering::Relaxed);
    }
    if REGISTERED.load(Ordering::Relaxed) == 1 {
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_membarrier, SYNC, 0, 0) };
    }
}

/// Makes the pages of `[addr, addr + len)` writable (and still executable) for `f`, then executable
/// only again.
fn with_writable_text(addr: u64, len: usize, f: impl FnOnce()) -> bool {
    let start = addr & !0xfff;
    let end = (addr + len as u64 + 0xfff) & !0xfff;
    let size = (end - start) as usize;
    // SAFETY: changes the protection of the process's own code pages, which stay executable
    // throughout, so threads running them are unaffected.
    let ok = unsafe {
        libc::mprotect(
            start as *mut libc::c_void,
            size,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        )
    } == 0;
    if !ok {
        return false;
    }
    f();
    // SAFETY: as above, back to read + execute.
    unsafe {
        libc::mprotect(
            start as *mut libc::c_void,
            size,
            libc::PROT_READ | libc::PROT_EXEC,
        )
    };
    true
}

/// Writes one byte of code.
///
/// # Safety
/// `addr` must be in a page made writable by `with_writable_text`.
unsafe fn poke(addr: u64, byte: u8) {
    // SAFETY: the caller made the page writable; a byte store is atomic, and threads that execute
    // the byte see either the old or the new value.
    unsafe { (*(addr as *const AtomicU8)).store(byte, Ordering::SeqCst) };
}

/// Replaces the code at `addr` with `new` (which must be as long as the instructions it covers),
/// safely while other threads may execute it: first `int3` on the first byte (the trap handler
/// sends a thread that meets it to the probe's code), then every other byte, then the first byte;
/// every thread is serialised between the steps. `old` must be the bytes there now.
///
/// The caller guarantees that `[addr, addr + new.len())` is whole instructions of the process's
/// code that no branch enters past `addr`, and that the trap handler knows `addr` before the call.
pub(crate) fn patch_code(addr: u64, new: &[u8]) -> bool {
    let Some((&first, rest)) = new.split_first() else {
        return true;
    };
    with_writable_text(addr, new.len(), || {
        // SAFETY: the pages are writable for this closure; see the protocol above.
        unsafe {
            poke(addr, 0xcc);
            sync_cores();
            for (i, &b) in rest.iter().enumerate() {
                poke(addr + 1 + i as u64, b);
            }
            sync_cores();
            poke(addr, first);
        }
        sync_cores();
    })
}

/// This thread's id.
pub(crate) fn gettid() -> u64 {
    // SAFETY: gettid takes no arguments and cannot fail.
    u64::try_from(unsafe { libc::gettid() }).unwrap_or(0)
}

/// This thread's name (`comm`), NUL-padded.
pub(crate) fn thread_name() -> [u8; 16] {
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer given.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    name
}

/// Runs `f` in the child after every `fork` of the process.
pub(crate) fn at_fork_child(f: extern "C" fn()) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `f` is a plain function that only touches atomics.
        unsafe { libc::pthread_atfork(None, None, Some(f)) };
    });
}

/// Sends `signal` to thread `tid` of this process; `false` if it no longer exists.
pub(crate) fn signal_thread(tid: i32, signal: i32) -> bool {
    // SAFETY: tgkill takes no pointers; the thread id is checked by the kernel against this process.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal) == 0 }
}

/// The calling thread's thread pointer (`fs:0`, the C library's thread control block, which
/// points to itself): a name for the thread that needs no thread-local storage.
pub(crate) fn thread_pointer() -> u64 {
    let tp: u64;
    // SAFETY: on x86-64 Linux every thread's `fs` base is its TCB, whose first word points to
    // itself (the TLS ABI); reading it has no side effect.
    unsafe {
        std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}

/// The calling thread's stack, `[lowest, top)`, as the C library knows it.
pub(crate) fn thread_stack() -> Option<(u64, u64)> {
    // SAFETY: a zeroed `pthread_attr_t` is what pthread_getattr_np initialises; it is destroyed
    // after use, and the out-pointers are locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then(|| (addr as u64, addr as u64 + size as u64))
    }
}

/// The two words at `addr`, which the caller has checked lie between the calling thread's stack
/// pointer and the top of its stack ([`thread_stack`]): memory mapped for as long as the thread
/// runs, which nothing frees while it is in a probe.
pub(crate) fn read_own_stack(addr: u64) -> [u64; 2] {
    // SAFETY: the caller's check: [addr, addr + 16) is mapped stack above the live stack pointer
    // of this thread; an unaligned address is read unaligned.
    unsafe { (addr as *const [u64; 2]).read_unaligned() }
}
