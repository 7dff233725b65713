//! The Linux kernel's own eBPF as a reference implementation: a small, safe wrapper over the raw
//! `bpf(2)` system call, so moat's tests and benchmarks can load the very same bytecode into the kernel
//! and compare verifier verdicts, results and speed.
//!
//! * [`available`] probes whether `bpf()` works here (it needs privileges; tests skip when it fails).
//! * [`load_program`] runs `BPF_PROG_LOAD` and returns a [`Program`] with the verifier log and the time
//!   the load took; a rejection is a [`KernelError::Load`] carrying the verifier's log.
//! * [`Program::test_run`] runs a loaded program with `BPF_PROG_TEST_RUN`.
//! * [`perf`] attaches loaded programs to uprobes and tracepoints (`perf_event_open`);
//!   [`sampling`] samples a process's CPU time with its registers (the software CPU clock).
//! * [`create_map`] and [`Map`] wrap the map commands; [`Map::fd`] is what a `lddw` with
//!   `src = BPF_PSEUDO_MAP_FD` refers to.
//!
//! Program types, map types and flags are [`moat_abi`]'s, re-exported. All `unsafe` code lives in
//! the private `sys` module, `perf` and `sampling`.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod map;
#[expect(
    unsafe_code,
    reason = "perf_event_open(2), its ioctls and ptrace(2) for a command under probes"
)]
pub mod perf;
mod prog;
#[expect(
    unsafe_code,
    reason = "perf_event_open(2) and the sampling ring it maps"
)]
pub mod sampling;
#[expect(
    unsafe_code,
    reason = "the bpf(2) system call and the memory it reads and writes"
)]
mod sys;

use std::io;
use std::sync::OnceLock;
use thiserror::Error;

pub use map::{create_map, create_map_of_maps, Map, MapOp};
pub use moat_abi::{MapType, ProgType, BPF_ANY, BPF_EXIST, BPF_NOEXIST};
pub use prog::{load_program, LoadOptions, Program, TestRunResult};

/// What went wrong talking to the kernel. Variants carry the raw `errno`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KernelError {
    /// `bpf()` is not usable here (no such syscall, not permitted, filtered by seccomp).
    #[error("kernel eBPF unavailable: {reason}")]
    Unavailable {
        /// Why, for a test's skip message.
        reason: String,
    },
    /// `BPF_PROG_LOAD` failed: usually the verifier rejected the program, and `log` says why.
    #[error("BPF_PROG_LOAD failed: {}\n{log}", errno_str(*errno))]
    Load {
        /// The error number (`EACCES`, `EINVAL`, ...).
        errno: i32,
        /// The verifier log (possibly empty if the kernel produced none).
        log: String,
    },
    /// `BPF_PROG_TEST_RUN` failed.
    #[error("BPF_PROG_TEST_RUN failed: {}", errno_str(*errno))]
    TestRun {
        /// The error number.
        errno: i32,
    },
    /// A map command failed.
    #[error("{op} failed: {}", errno_str(*errno))]
    Map {
        /// Which command.
        op: MapOp,
        /// The error number.
        errno: i32,
    },
    /// Attaching a program to a probe (or running a command under probes) failed.
    #[error("{reason}")]
    Attach {
        /// What failed, with the system's error.
        reason: String,
    },
    /// A buffer handed to this crate has the wrong length (caught before calling the kernel).
    #[error("{what} is {found} bytes, expected {expected}")]
    BadLength {
        /// Which argument.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        found: usize,
    },
}

fn errno_str(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// `ENOSYS` and `EPERM` mean bpf() is not usable at all rather than that the request was wrong.
fn unavailable(errno: i32) -> Option<KernelError> {
    matches!(errno, libc::ENOSYS | libc::EPERM).then(|| KernelError::Unavailable {
        reason: format!("bpf() failed: {}", errno_str(errno)),
    })
}

/// Rewrites moat's map references by index (`lddw` sources 5 and 6, as the object loader emits them)
/// into the kernel's references by file descriptor (sources 1 and 2), `fd_of(index)` giving the fd of
/// each map; other instructions are unchanged.
pub fn map_indices_to_fds(
    insns: &[moat_isa::Insn],
    mut fd_of: impl FnMut(i32) -> i32,
) -> Vec<moat_isa::Insn> {
    use moat_isa::{Insn, LddwKind};
    insns
        .iter()
        .map(|insn| match *insn {
            Insn::LoadImm64 {
                dst,
                kind: kind @ (LddwKind::MapIdx | LddwKind::MapIdxValue),
                imm,
                next_imm,
            } => Insn::LoadImm64 {
                dst,
                kind: if kind == LddwKind::MapIdx {
                    LddwKind::MapFd
                } else {
                    LddwKind::MapValue
                },
                imm: fd_of(imm),
                next_imm,
            },
            other => other,
        })
        .collect()
}

/// Whether the kernel's eBPF is usable: loads a trivial socket filter (`r0 = 0; exit`) once and caches
/// the outcome. `Err` holds a human-readable reason (e.g. `EPERM` without `CAP_BPF`, `ENOSYS`, seccomp).
pub fn available() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let insns = [
                0xb7, 0, 0, 0, 0, 0, 0, 0, // mov r0, 0
                0x95, 0, 0, 0, 0, 0, 0, 0, // exit
            ];
            match load_program(&insns, &LoadOptions::new(ProgType::SocketFilter)) {
                Ok(_) => Ok(()),
                Err(KernelError::Unavailable { reason }) => Err(reason),
                Err(e) => Err(format!("probe program failed to load: {e}")),
            }
        })
        .clone()
}

/// The number of possible CPUs (parsed from `/sys/devices/system/cpu/possible`, e.g. `0-3` or `0,2-5`):
/// per-CPU map values are `round_up(value_size, 8) * possible_cpus()` bytes in user space.
pub fn possible_cpus() -> io::Result<usize> {
    static CPUS: OnceLock<Result<usize, String>> = OnceLock::new();
    let parsed = CPUS.get_or_init(|| {
        let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .map_err(|e| e.to_string())?;
        parse_cpu_list(&text).ok_or_else(|| format!("cannot parse CPU list {text:?}"))
    });
    parsed
        .clone()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Counts the CPUs in a list like `0-3,5,7-8`.
fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in text.trim().split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim().parse::<usize>().ok()?, hi.trim().parse().ok()?),
            None => {
                let c = part.trim().parse::<usize>().ok()?;
                (c, c)
            }
        };
        n += hi.checked_sub(lo)? + 1;
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0-3\n"), Some(4));
        assert_eq!(parse_cpu_list("0,2-5,7"), Some(6));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert!(possible_cpus().expect("sysfs") >= 1);
    }

    #[test]
    fn errors_display_errno() {
        let e = KernelError::Map {
            op: MapOp::Lookup,
            errno: libc::ENOENT,
        };
        assert!(e.to_string().contains("No such file"), "{e}");
    }
}
