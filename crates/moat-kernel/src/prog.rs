//! Loading programs (`BPF_PROG_LOAD`) and running them (`BPF_PROG_TEST_RUN`).

use crate::{errno_of, sys, unavailable, KernelError, ProgType};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Log buffer for the retry that explains a rejection.
const RETRY_LOG_SIZE: usize = 16 << 20;
/// Extra room after the input for a program's output packet (e.g. grown by `bpf_xdp_adjust_tail`).
const DATA_OUT_HEADROOM: usize = 256;

/// How to load a program. [`LoadOptions::new`] gives GPL license, no log and no flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The program type.
    pub prog_type: ProgType,
    /// The license string (GPL-only helpers need a GPL-compatible one).
    pub license: String,
    /// Verifier log level: 0 none, 1 per-branch states, 2 every instruction. On failure a level-1 log
    /// is fetched anyway when this attempt produced none.
    pub log_level: u32,
    /// Log buffer size when `log_level > 0` (the kernel fails with `ENOSPC` if the log does not fit).
    pub log_size: u32,
    /// `expected_attach_type` (`BPF_*` of `enum bpf_attach_type`), needed by some program types.
    pub expected_attach_type: Option<u32>,
    /// `kern_version` (ignored by modern kernels).
    pub kern_version: u32,
    /// `prog_flags` (`BPF_F_STRICT_ALIGNMENT`, `BPF_F_ANY_ALIGNMENT`, `BPF_F_TEST_RND_HI32`, ...).
    pub prog_flags: u32,
}

impl LoadOptions {
    /// Defaults for `prog_type`: license "GPL", log level 0 (1 MiB buffer if raised), no flags.
    pub fn new(prog_type: ProgType) -> LoadOptions {
        LoadOptions {
            prog_type,
            license: "GPL".to_string(),
            log_level: 0,
            log_size: 1 << 20,
            expected_attach_type: None,
            kern_version: 0,
            prog_flags: 0,
        }
    }
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions::new(ProgType::SocketFilter)
    }
}

/// A program the kernel accepted; the descriptor is closed (and the program freed) on drop.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    prog_type: ProgType,
    log: String,
    load_time: Duration,
}

/// What one `BPF_PROG_TEST_RUN` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunResult {
    /// The program's return value (`r0`, truncated to 32 bits by the kernel).
    pub retval: u32,
    /// The kernel's average time per run in nanoseconds.
    pub duration_ns: u32,
    /// The packet after the (last) run, `data_size_out` bytes; empty when no data was given.
    pub data_out: Vec<u8>,
    /// The context after the run, when a context was given.
    pub ctx_out: Option<Vec<u8>>,
    /// Wall-clock time of the whole syscall, all repetitions included.
    pub wall_time: Duration,
}

/// Turns a NUL-terminated log buffer into text.
fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Loads `insns` (raw bytecode, 8 bytes per slot, host byte order) with `BPF_PROG_LOAD`.
///
/// On success the [`Program`] carries the verifier log (when `log_level > 0`) and the wall time of the
/// syscall (verification plus JIT). On rejection the error carries the errno and the verifier log: if
/// the first attempt produced none, the load is retried at log level 1 with a 16 MiB buffer to get one.
pub fn load_program(insns: &[u8], opts: &LoadOptions) -> Result<Program, KernelError> {
    if !insns.len().is_multiple_of(8) {
        return Err(KernelError::BadLength {
            what: "program",
            expected: insns.len().next_multiple_of(8),
            found: insns.len(),
        });
    }
    let license = CString::new(opts.license.as_str()).map_err(|_| KernelError::Load {
        errno: libc::EINVAL,
        log: "license contains a NUL byte".to_string(),
    })?;
    let args = sys::LoadArgs {
        prog_type: opts.prog_type.as_u32(),
        license: &license,
        log_level: opts.log_level,
        kern_version: opts.kern_version,
        prog_flags: opts.prog_flags,
        expected_attach_type: opts.expected_attach_type.unwrap_or(0),
    };
    let mut log = vec![
        0u8;
        if opts.log_level > 0 {
            opts.log_size as usize
        } else {
            0
        }
    ];
    let start = Instant::now();
    let result = sys::prog_load(insns, &args, &mut log);
    let load_time = start.elapsed();
    let errno = match result {
        Ok(fd) => {
            return Ok(Program {
                fd,
                prog_type: opts.prog_type,
                log: log_text(&log),
                load_time,
            })
        }
        Err(e) => errno_of(&e),
    };
    let mut log = log_text(&log);
    if log.trim().is_empty() {
        let mut big = vec![0u8; RETRY_LOG_SIZE];
        let retry = sys::LoadArgs {
            log_level: opts.log_level.max(1),
            ..args
        };
        if sys::prog_load(insns, &retry, &mut big).is_err() {
            log = log_text(&big);
        }
    }
    match unavailable(errno) {
        Some(e) if log.trim().is_empty() => Err(e),
        _ => Err(KernelError::Load { errno, log }),
    }
}

impl Program {
    /// The raw descriptor (valid while `self` lives).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The type it was loaded as.
    pub fn prog_type(&self) -> ProgType {
        self.prog_type
    }

    /// The verifier log of the successful load (empty at log level 0).
    pub fn log(&self) -> &str {
        &self.log
    }

    /// Wall time of the `BPF_PROG_LOAD` syscall that loaded it.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Runs the program `repeat` times (0 counts as 1) on `data_in` (the packet) and, optionally,
    /// `ctx_in` (e.g. a `struct __sk_buff` or `struct xdp_md`), with `BPF_PROG_TEST_RUN`.
    ///
    /// The output packet buffer is `data_in.len() + 256` bytes. Program types whose test run takes only a
    /// context (raw tracepoints, `Syscall`, tracing) want empty `data_in` and `repeat` 0; for them the
    /// context is not requested back through `ctx_out` (a `Syscall` program's written-back context is
    /// returned as `ctx_out` instead).
    pub fn test_run(
        &self,
        data_in: &[u8],
        ctx_in: Option<&[u8]>,
        repeat: u32,
    ) -> Result<TestRunResult, KernelError> {
        let out_len = if data_in.is_empty() {
            0
        } else {
            data_in.len() + DATA_OUT_HEADROOM
        };
        let mut data_out = vec![0u8; out_len];
        let ctx_only = matches!(
            self.prog_type,
            ProgType::RawTracepoint
                | ProgType::RawTracepointWritable
                | ProgType::Syscall
                | ProgType::Tracing
        );
        let ctx_out_len = if ctx_only {
            0
        } else {
            ctx_in.map_or(0, <[u8]>::len)
        };
        let mut ctx_out = vec![0u8; ctx_out_len];
        let start = Instant::now();
        let result = sys::prog_test_run(
            self.fd.as_fd(),
            data_in,
            &mut data_out,
            ctx_in.unwrap_or(&[]),
            &mut ctx_out,
            repeat,
        );
        let wall_time = start.elapsed();
        let out = result.map_err(|e| KernelError::TestRun {
            errno: errno_of(&e),
        })?;
        data_out.truncate(out.data_size_out);
        ctx_out.truncate(out.ctx_size_out);
        let ctx_out = match ctx_in {
            None => None,
            Some(_) if self.prog_type == ProgType::Syscall => Some(out.ctx_in_after),
            Some(_) => Some(ctx_out),
        };
        Ok(TestRunResult {
            retval: out.retval,
            duration_ns: out.duration,
            data_out,
            ctx_out,
            wall_time,
        })
    }
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
