//! The interposer's contact with the C library and the kernel: the exported `syscall`, `close`
//! and `ioctl` that take the tool's calls before libc does, the raw system call that forwards
//! what moat does not serve, copies to and from the tool's memory (`process_vm_readv`, so a bad
//! pointer is `EFAULT`, never a crash), the real descriptors moat hands out (memfd, eventfd), and
//! `atexit`.

use crate::server;
use std::cell::Cell;
use std::ffi::{c_int, c_long, c_ulong, c_void, CString};
use std::io;
use std::os::fd::RawFd;

thread_local! {
    /// Set while this thread is inside the server: its own `close` and `syscall` calls (a map's
    /// files closed when it is dropped, the futexes of its lock) go straight to the kernel.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// The kernel's system call, with up to six arguments; returns the result or `-errno`.
fn raw(nr: c_long, a: [c_long; 6]) -> c_long {
    let ret: c_long;
    // SAFETY: the `syscall` instruction with the x86-64 Linux convention (number in rax, arguments
    // in rdi, rsi, rdx, r10, r8, r9; rcx and r11 clobbered). What the call does with the arguments
    // is what the caller of `syscall`/`close`/`ioctl` asked for, the contract it had with libc.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// libc's convention: `-1` with `errno` set for a failure.
fn to_libc(ret: c_long) -> c_long {
    if (-4095..0).contains(&ret) {
        // SAFETY: `__errno_location` returns this thread's `errno`, always valid.
        unsafe { *libc::__errno_location() = (-ret) as c_int };
        -1
    } else {
        ret
    }
}

/// Runs `f` with the thread marked as inside the server, or returns `None` when it already is.
pub(crate) fn enter<T>(f: impl FnOnce() -> T) -> Option<T> {
    if INSIDE.with(Cell::get) {
        return None;
    }
    INSIDE.with(|i| i.set(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    INSIDE.with(|i| i.set(false));
    out.ok()
}

/// libc's `syscall(2)`, which libbpf calls for `bpf` and `perf_event_open`.
///
/// # Safety
///
/// As libc's: the arguments must be what system call `nr` expects.
#[no_mangle]
pub unsafe extern "C" fn syscall(
    nr: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    let served = match nr {
        libc::SYS_bpf => server::bpf(a1 as u32, a2 as u64, a3 as u32),
        libc::SYS_perf_event_open => {
            server::perf_event_open(a1 as u64, a2 as i32, a3 as i32, a4 as i32, a5 as u64)
        }
        _ => None,
    };
    to_libc(served.unwrap_or_else(|| raw(nr, [a1, a2, a3, a4, a5, a6])))
}

/// libc's `close(2)`: forgets a descriptor moat handed out, then closes it.
#[no_mangle]
pub extern "C" fn close(fd: c_int) -> c_int {
    server::closed(fd);
    to_libc(raw(libc::SYS_close, [fd as c_long, 0, 0, 0, 0, 0])) as c_int
}

/// libc's `ioctl(2)`: the perf event ioctls on a uprobe event moat handed out.
///
/// # Safety
///
/// As libc's: `arg` must be what request `req` expects.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, req: c_ulong, arg: c_ulong) -> c_int {
    let served = server::ioctl(fd, req, arg);
    let ret = served.unwrap_or_else(|| {
        raw(
            libc::SYS_ioctl,
            [fd as c_long, req as c_long, arg as c_long, 0, 0, 0],
        )
    });
    to_libc(ret) as c_int
}

/// libc's `mmap(2)`: a perf buffer event of moat's gets its ring made (sized to the mapping)
/// before the kernel maps it. Anonymous mappings go straight to the kernel.
///
/// # Safety
///
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: libc::size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    if flags & libc::MAP_ANONYMOUS == 0 && fd >= 0 {
        if let Some(Err(errno)) = server::mapping(fd, len) {
            to_libc(-c_long::from(errno));
            return libc::MAP_FAILED;
        }
    }
    let args = [
        addr as c_long,
        len as c_long,
        prot as c_long,
        flags as c_long,
        fd as c_long,
        off as c_long,
    ];
    match to_libc(raw(libc::SYS_mmap, args)) {
        -1 => libc::MAP_FAILED,
        p => p as *mut c_void,
    }
}

/// libc's `mmap64`, the same call on x86-64.
///
/// # Safety
///
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: libc::size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    // SAFETY: the caller's contract, passed on.
    unsafe { mmap(addr, len, prot, flags, fd, off) }
}

/// libc's `epoll_ctl(2)`: moat's perf buffer events are files, which the kernel cannot poll; the
/// server keeps their registrations instead.
///
/// # Safety
///
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    event: *mut libc::epoll_event,
) -> c_int {
    let served = server::epoll_ctl(epfd, op, fd, event as u64);
    let ret = served.unwrap_or_else(|| {
        raw(
            libc::SYS_epoll_ctl,
            [
                epfd as c_long,
                op as c_long,
                fd as c_long,
                event as c_long,
                0,
                0,
            ],
        )
    });
    to_libc(ret) as c_int
}

/// libc's `epoll_wait(2)`.
///
/// # Safety
///
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { epoll_pwait(epfd, events, max, timeout, std::ptr::null()) }
}

/// libc's `epoll_pwait(2)`. Where `epfd` holds perf buffer events of moat's, waits in slices of
/// at most [`POLL_SLICE_MS`] on the kernel's descriptors, moving the traced process's records into
/// the events' rings between slices, and adds the events with records to read after the
/// kernel's.
///
/// # Safety
///
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let wait = |ms: c_int| {
        raw(
            libc::SYS_epoll_pwait,
            [
                epfd as c_long,
                events as c_long,
                max as c_long,
                ms as c_long,
                sigmask as c_long,
                8,
            ],
        )
    };
    let start = std::time::Instant::now();
    loop {
        let Some(ready) = server::ready_outputs(epfd) else {
            return to_libc(wait(timeout)) as c_int;
        };
        let mut slice = POLL_SLICE_MS;
        if timeout >= 0 {
            let left = i128::from(timeout) - start.elapsed().as_millis() as i128;
            slice = slice.min(left.max(0) as c_int);
        }
        // With records already waiting, the kernel's descriptors are only looked at.
        let n = wait(if ready.is_empty() { slice } else { 0 });
        if n < 0 {
            return to_libc(n) as c_int;
        }
        let mut n = n as usize;
        for (flags, data) in ready {
            if n >= max.max(0) as usize {
                break;
            }
            let event = libc::epoll_event {
                events: flags,
                u64: data,
            };
            // SAFETY: `events` holds `max` entries (the caller's contract) and `n < max`.
            unsafe { events.add(n).write_unaligned(event) };
            n += 1;
        }
        let expired = timeout >= 0 && start.elapsed().as_millis() >= timeout as u128;
        if n > 0 || expired {
            return n as c_int;
        }
    }
}

/// The longest a wait on an epoll descriptor holding moat's perf buffer events goes without
/// looking for the traced process's records.
const POLL_SLICE_MS: c_int = 5;

/// The system's page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: `sysconf` has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096)
}

/// Copies `len` bytes of this process's memory at `addr` (`EFAULT` where not readable).
pub(crate) fn read(addr: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` is our own buffer of `len` bytes; the kernel checks `remote` and fails
    // instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n < 0 || n as usize != len {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    Ok(buf)
}

/// Reads a NUL-terminated string of at most `max` bytes at `addr`.
pub(crate) fn read_cstr(addr: u64, max: usize) -> io::Result<String> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        // Byte by byte up to the next 64-byte boundary, so a string near the end of a mapping
        // reads as far as it goes.
        let chunk = (64 - (at % 64) as usize).min(max - out.len());
        let bytes = read(at, chunk)?;
        if let Some(end) = bytes.iter().position(|&b| b == 0) {
            out.extend_from_slice(&bytes[..end]);
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&bytes);
        at += chunk as u64;
    }
    Err(io::Error::from_raw_os_error(libc::E2BIG))
}

/// Copies `bytes` into this process's memory at `addr` (`EFAULT` where not writable).
pub(crate) fn write(addr: u64, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let local = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: `local` is our own buffer, only read; the kernel checks `remote` and fails instead
    // of faulting.
    let n = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n < 0 || n as usize != bytes.len() {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    Ok(())
}

/// A new memory file named `name` holding `contents`: the descriptor of a map, program, BTF
/// object or link moat serves.
pub(crate) fn memfd(name: &str, contents: &[u8]) -> io::Result<RawFd> {
    let name = CString::new(name.replace('\0', "")).unwrap_or_default();
    // SAFETY: a valid NUL-terminated name; the call creates a descriptor we own.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut off = 0;
    while off < contents.len() {
        let rest = &contents[off..];
        // SAFETY: `rest` is a readable buffer of `rest.len()` bytes; `fd` is ours.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            let err = io::Error::last_os_error();
            raw(libc::SYS_close, [fd as c_long, 0, 0, 0, 0, 0]);
            return Err(err);
        }
        off += n as usize;
    }
    Ok(fd)
}

/// A new event descriptor: what a uprobe perf event moat serves is to the tool.
pub(crate) fn eventfd() -> io::Result<RawFd> {
    // SAFETY: no pointers; the call creates a descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Opens `path` read-write (a shared array map's value file), close-on-exec.
pub(crate) fn open_rw(path: &std::path::Path) -> io::Result<RawFd> {
    use std::os::fd::IntoRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    Ok(file.into_raw_fd())
}

/// The inode behind `fd` (`None`: not open), which tells a descriptor moat handed out from a
/// later one that reuses its number.
pub(crate) fn inode(fd: RawFd) -> Option<u64> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is writable memory of the size `fstat` fills.
    let r = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    // SAFETY: `fstat` succeeded, so it filled `st`.
    Some(unsafe { st.assume_init() }.st_ino)
}

/// Writes one line to the tool's standard error (moat's messages to the user).
pub(crate) fn say(line: &str) {
    let text = format!("moat: {line}\n");
    // SAFETY: a readable buffer of the given length; descriptor 2 may be closed, then the write
    // fails harmlessly.
    unsafe { libc::write(2, text.as_ptr().cast(), text.len()) };
}

/// Runs `f` when the process exits normally (`exit`, return from `main`).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function that catches its own panics.
    unsafe { libc::atexit(f) };
}

/// This process's id.
pub(crate) fn pid() -> u32 {
    std::process::id()
}
