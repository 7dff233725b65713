//! Time-proportional sampling of a process with `perf_event_open(2)`'s software CPU clock: what
//! works where the CPU's performance counters are not exposed (a VM). Every `period` of CPU time
//! a thread spends, the kernel records where it was (`ip`, user or kernel mode) and its user-space
//! registers; [`Sampler::drain`] hands the records over. Threads the process creates later are
//! sampled too (the event is inherited).
//!
//! An instruction stalled on memory is where the clock interrupt finds the thread for as long as
//! it waits (with one instruction of skid: the reported `ip` is usually the instruction after the
//! stalled one), so the samples at memory instructions measure the time spent waiting on memory.

use crate::KernelError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
/// `PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_REGS_USER`.
const SAMPLE_TYPE: u64 = 1 | 2 | 4 | (1 << 12);
/// `disabled = 0`, `inherit = 1`, `sample_id_all`.
const FLAGS: u64 = (1 << 1) | (1 << 18);
/// `PERF_REG_X86_AX` .. `IP` (0..=8) and `R8` .. `R15` (16..=23).
const REGS_MASK: u64 = 0x1ff | (0xff << 16);
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_SAMPLE: u32 = 9;
const PERF_RECORD_MISC_USER: u16 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// Data pages of the ring (a power of two).
const DATA_PAGES: usize = 256;

/// A thread's user-space registers at a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserRegs {
    /// `rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8 .. r15`: the instruction encoding's order.
    pub gprs: [u64; 16],
    /// `rip`.
    pub rip: u64,
}

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// `CLOCK_MONOTONIC`-like perf clock, ns.
    pub time: u64,
    /// Where the thread was: a user-space address when `user`, else in the kernel.
    pub ip: u64,
    /// Whether the thread was running user code.
    pub user: bool,
    /// Its user registers (none for a kernel thread).
    pub regs: Option<UserRegs>,
}

/// CPU-clock sampling of one process: an event per CPU (the kernel maps no ring of an inherited
/// per-task event), each with its ring buffer.
#[derive(Debug)]
pub struct Sampler {
    rings: Vec<Ring>,
    period: Duration,
}

/// One CPU's event and its mapped ring.
#[derive(Debug)]
struct Ring {
    /// The event (open while its ring is mapped).
    _event: OwnedFd,
    base: *mut u8,
    len: usize,
}

// SAFETY: each ring is this sampler's own mapping, read and advanced only through `&mut self`.
unsafe impl Send for Ring {}

fn error(what: &str) -> KernelError {
    KernelError::Attach {
        reason: format!("{what}: {}", std::io::Error::last_os_error()),
    }
}

/// The CPUs the kernel may run the process on (`/sys/devices/system/cpu/online`: `0-3,6`).
fn online_cpus() -> Vec<i32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            cpus.extend(a..=b);
        }
    }
    if cpus.is_empty() {
        cpus.push(0);
    }
    cpus
}

impl Sampler {
    /// Samples process `pid` (and the threads it creates from now on) every `period` of CPU time.
    pub fn open(pid: i32, period: Duration) -> Result<Sampler, KernelError> {
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&PERF_TYPE_SOFTWARE.to_ne_bytes());
        attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
        attr[8..16].copy_from_slice(&PERF_COUNT_SW_CPU_CLOCK.to_ne_bytes());
        let ns = u64::try_from(period.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1000);
        attr[16..24].copy_from_slice(&ns.to_ne_bytes());
        attr[24..32].copy_from_slice(&SAMPLE_TYPE.to_ne_bytes());
        attr[40..48].copy_from_slice(&FLAGS.to_ne_bytes());
        attr[80..88].copy_from_slice(&REGS_MASK.to_ne_bytes());
        let rings = online_cpus()
            .into_iter()
            .map(|cpu| Ring::open(&attr, pid, cpu))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sampler {
            rings,
            period: Duration::from_nanos(ns),
        })
    }

    /// The CPU time each sample stands for.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Hands every sample recorded since the last call to `f` (CPU by CPU); returns how many the
    /// kernel lost because a ring was full.
    pub fn drain(&mut self, mut f: impl FnMut(&Sample)) -> u64 {
        self.rings.iter_mut().map(|r| r.drain(&mut f)).sum()
    }
}

impl Ring {
    fn open(attr: &[u8; 128], pid: i32, cpu: i32) -> Result<Ring, KernelError> {
        // SAFETY: `attr` is a complete perf_event_attr of the size it states, with no pointers.
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
            return Err(error("perf_event_open (software cpu-clock)"));
        }
        // SAFETY: a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let len = (DATA_PAGES + 1) * page_size();
        // SAFETY: a fresh shared mapping of the event's ring, at an address the kernel picks.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(error("mmap of the sampling ring"));
        }
        Ok(Ring {
            _event: fd,
            base: base.cast(),
            len,
        })
    }

    fn drain(&mut self, f: &mut impl FnMut(&Sample)) -> u64 {
        let page = page_size();
        let data_len = (self.len - page) as u64;
        // SAFETY: the metadata page is the first page of our mapping; `data_head` (offset 1024) is
        // written by the kernel, `data_tail` (1032) by us, both naturally aligned u64s.
        let (head_ptr, tail_ptr) = unsafe {
            (
                &*self.base.add(1024).cast::<std::sync::atomic::AtomicU64>(),
                &*self.base.add(1032).cast::<std::sync::atomic::AtomicU64>(),
            )
        };
        let head = head_ptr.load(Ordering::Acquire);
        let mut tail = tail_ptr.load(Ordering::Relaxed);
        let mut lost = 0;
        let mut header = [0u8; 8];
        let mut record = Vec::new();
        while tail < head {
            self.copy(tail, data_len, page, &mut header);
            let kind = u32::from_ne_bytes(header[0..4].try_into().unwrap_or_default());
            let misc = u16::from_ne_bytes(header[4..6].try_into().unwrap_or_default());
            let size = u64::from(u16::from_ne_bytes(
                header[6..8].try_into().unwrap_or_default(),
            ));
            if size < 8 {
                break;
            }
            record.resize(size as usize, 0);
            self.copy(tail, data_len, page, &mut record);
            match kind {
                PERF_RECORD_SAMPLE => {
                    if let Some(s) = parse_sample(&record[8..], misc) {
                        f(&s);
                    }
                }
                PERF_RECORD_LOST => lost += word(&record, 16),
                _ => {}
            }
            tail += size;
        }
        fence(Ordering::AcqRel);
        tail_ptr.store(tail, Ordering::Release);
        lost
    }

    /// Fills `out` with the data area's bytes from ring position `at` (wrapping).
    fn copy(&self, at: u64, data_len: u64, page: usize, out: &mut [u8]) {
        for (i, byte) in out.iter_mut().enumerate() {
            let off = page + ((at + i as u64) % data_len) as usize;
            // SAFETY: `off` lies in the data area of our mapping; the kernel wrote these bytes
            // before publishing `data_head` (read with acquire ordering).
            *byte = unsafe { self.base.add(off).read_volatile() };
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Stops every thread of process `pid` for `time` (`SIGSTOP`, then `SIGCONT`): how a simulator
/// makes a process pay a delay. False if the process could not be signalled (gone).
pub fn pause(pid: i32, time: Duration) -> bool {
    // SAFETY: kill(2) has no memory effects.
    if unsafe { libc::kill(pid, libc::SIGSTOP) } != 0 {
        return false;
    }
    std::thread::sleep(time);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) == 0 }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

fn word(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

/// A `PERF_RECORD_SAMPLE` body for [`SAMPLE_TYPE`] and [`REGS_MASK`].
fn parse_sample(b: &[u8], misc: u16) -> Option<Sample> {
    if b.len() < 32 {
        return None;
    }
    let ip = word(b, 0);
    let pid = u32::from_ne_bytes(b[8..12].try_into().ok()?);
    let tid = u32::from_ne_bytes(b[12..16].try_into().ok()?);
    let time = word(b, 16);
    let abi = word(b, 24);
    let regs = (abi != 0 && b.len() >= 32 + 17 * 8).then(|| {
        // In mask order: ax bx cx dx si di bp sp ip, r8..r15.
        let r = |i: usize| word(b, 32 + 8 * i);
        let (ax, bx, cx, dx, si, di, bp, sp, ip) =
            (r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7), r(8));
        let mut gprs = [ax, cx, dx, bx, sp, bp, si, di, 0, 0, 0, 0, 0, 0, 0, 0];
        for (k, g) in gprs[8..].iter_mut().enumerate() {
            *g = r(9 + k);
        }
        UserRegs { gprs, rip: ip }
    });
    Some(Sample {
        pid,
        tid,
        time,
        ip,
        user: misc & 7 == PERF_RECORD_MISC_USER,
        regs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_a_busy_child_with_its_registers() {
        let mut child = match std::process::Command::new("sh")
            .arg("-c")
            .arg("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: no sh ({e})");
                return;
            }
        };
        let pid = child.id() as i32;
        let mut sampler = match Sampler::open(pid, Duration::from_micros(100)) {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("skipped: perf_event_open not permitted here ({e})");
                return;
            }
        };
        let mut n = 0;
        let mut user_with_regs = 0;
        while child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(5));
            sampler.drain(|s| {
                assert_eq!(s.pid, pid as u32);
                n += 1;
                if s.user && s.regs.is_some_and(|r| r.rip == s.ip && r.gprs[4] != 0) {
                    user_with_regs += 1;
                }
            });
        }
        sampler.drain(|_| n += 1);
        eprintln!("{n} samples, {user_with_regs} in user code with registers");
        assert!(n > 10, "{n} samples");
        assert!(
            user_with_regs > 0,
            "no user sample with registers among {n}"
        );
    }
}
