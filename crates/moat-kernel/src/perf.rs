//! Attaching kernel programs to probes with `perf_event_open(2)`: uprobes and uretprobes through
//! the uprobe PMU (a file and an offset, for one process or all), tracepoints by id. A probe lives
//! as long as the descriptor returned.
//!
//! And a command run under such probes ([`StoppedChild`]): started stopped before its `exec` so
//! probes can name its pid first, and stopped again as it exits, while its memory (and so its
//! mappings, which symbolise the stacks probes recorded) still exists.

use crate::KernelError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;

/// `PERF_EVENT_IOC_SET_BPF`, `PERF_EVENT_IOC_ENABLE`.
const SET_BPF: libc::c_ulong = 0x4004_2408;
const ENABLE: libc::c_ulong = 0x2400;
const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

fn attach_error(what: &str) -> KernelError {
    KernelError::Attach {
        reason: format!("{what}: {}", std::io::Error::last_os_error()),
    }
}

/// The uprobe PMU's type number (`/sys/bus/event_source/devices/uprobe/type`).
pub fn uprobe_pmu() -> Option<u32> {
    std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Opens a perf event from `attr` (a `perf_event_attr` of 128 bytes) for `pid` (-1: every
/// process, on CPU `cpu`) and runs `prog_fd` on it.
fn open_with_program(
    attr: &[u8; 128],
    pid: i32,
    cpu: i32,
    prog_fd: RawFd,
) -> Result<OwnedFd, KernelError> {
    // SAFETY: `attr` is a complete perf_event_attr of the size it states; pointers inside it
    // (a path) are the caller's and outlive the call; the kernel copies what it keeps.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            pid,
            cpu,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(attach_error("perf_event_open"));
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    for (req, arg) in [(SET_BPF, prog_fd as libc::c_ulong), (ENABLE, 0)] {
        // SAFETY: both ioctls take an integer argument.
        if unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) } != 0 {
            return Err(attach_error("perf event ioctl"));
        }
    }
    Ok(fd)
}

/// Attaches kernel program `prog_fd` (a kprobe-type program) to offset `offset` of `file` — a
/// return probe if `ret` — in process `pid` (with its threads made later), or in every process
/// when `pid` is `None` (then on CPU 0 only: the PMU takes one CPU per event for all processes,
/// so callers wanting every CPU open one per CPU).
pub fn attach_uprobe(
    file: &Path,
    offset: u64,
    pid: Option<i32>,
    prog_fd: RawFd,
    ret: bool,
) -> Result<OwnedFd, KernelError> {
    let pmu = uprobe_pmu().ok_or_else(|| KernelError::Attach {
        reason: "no uprobe PMU (/sys/bus/event_source/devices/uprobe/type)".into(),
    })?;
    let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).map_err(|_| {
        KernelError::Attach {
            reason: format!("{}: a path with a NUL byte", file.display()),
        }
    })?;
    // struct perf_event_attr: type, size, config (bit 0: retprobe), sample_period, ..., flags
    // (bit 1: inherit), ..., config1 (the path), config2 (the offset).
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&pmu.to_ne_bytes());
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&u64::from(ret).to_ne_bytes());
    attr[16..24].copy_from_slice(&1u64.to_ne_bytes());
    if pid.is_some() {
        attr[40..48].copy_from_slice(&2u64.to_ne_bytes());
    }
    attr[56..64].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
    attr[64..72].copy_from_slice(&offset.to_ne_bytes());
    match pid {
        Some(pid) => open_with_program(&attr, pid, -1, prog_fd),
        None => open_with_program(&attr, -1, 0, prog_fd),
    }
}

/// Attaches kernel program `prog_fd` to tracepoint `id` (its `id` file in tracefs) for every
/// process, on CPU 0.
pub fn attach_tracepoint(id: u64, prog_fd: RawFd) -> Result<OwnedFd, KernelError> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&PERF_TYPE_TRACEPOINT.to_ne_bytes());
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&id.to_ne_bytes());
    attr[16..24].copy_from_slice(&1u64.to_ne_bytes());
    open_with_program(&attr, -1, 0, prog_fd)
}

/// A command started under `ptrace`, stopped before its `exec` until [`StoppedChild::run`].
#[derive(Debug)]
pub struct StoppedChild {
    child: std::process::Child,
}

/// `PTRACE_EVENT_EXIT`'s stop: `status >> 8 == SIGTRAP | (PTRACE_EVENT_EXIT << 8)`.
const EVENT_EXIT: i32 = libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8);

fn waitpid(pid: i32) -> Result<i32, KernelError> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        return Err(attach_error("waitpid"));
    }
    Ok(status)
}

fn ptrace(req: libc::c_uint, pid: i32, data: u64) -> Result<(), KernelError> {
    // SAFETY: the requests used take integers only.
    if unsafe { libc::ptrace(req, pid, 0usize, data as usize) } < 0 {
        return Err(attach_error("ptrace"));
    }
    Ok(())
}

impl StoppedChild {
    /// Starts `cmd`, stopped at its `exec` (its pid is known, its program not yet run).
    pub fn spawn(mut cmd: std::process::Command) -> Result<StoppedChild, KernelError> {
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // async-signal-safe ptrace call.
        unsafe {
            cmd.pre_exec(|| {
                if libc::ptrace(libc::PTRACE_TRACEME, 0, 0usize, 0usize) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| KernelError::Attach {
            reason: format!("cannot start the command: {e}"),
        })?;
        let pid = child.id() as i32;
        let status = waitpid(pid)?;
        if !libc::WIFSTOPPED(status) {
            return Err(KernelError::Attach {
                reason: "the command ended before its exec".into(),
            });
        }
        ptrace(
            libc::PTRACE_SETOPTIONS,
            pid,
            libc::PTRACE_O_TRACEEXIT as u64,
        )?;
        Ok(StoppedChild { child })
    }

    /// The command's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Lets the command run until it exits; `at_exit(pid)` runs while it is stopped on its way
    /// out (its memory still there). Signals it gets are passed on. Returns its exit status.
    pub fn run(
        mut self,
        at_exit: impl FnOnce(i32),
    ) -> Result<std::process::ExitStatus, KernelError> {
        let pid = self.pid();
        let mut signal = 0u64;
        loop {
            ptrace(libc::PTRACE_CONT, pid, signal)?;
            let status = waitpid(pid)?;
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                use std::os::unix::process::ExitStatusExt;
                return Ok(std::process::ExitStatus::from_raw(status));
            }
            if status >> 8 == EVENT_EXIT {
                at_exit(pid);
                let _ = ptrace(libc::PTRACE_DETACH, pid, 0);
                return self.child.wait().map_err(|e| KernelError::Attach {
                    reason: format!("waiting for the command: {e}"),
                });
            }
            signal = if libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) != libc::SIGTRAP {
                libc::WSTOPSIG(status) as u64
            } else {
                0
            };
        }
    }
}
