//! moat-interpose: `moat load`'s `bpf(2)` interposer.
//!
//! Built as `libmoat_interpose.so` and preloaded (`LD_PRELOAD`) into an unmodified libbpf tool, it
//! defines `syscall`, `close` and `ioctl` ahead of the C library (`sys`), so the tool's
//! `syscall(__NR_bpf, ...)` and `syscall(__NR_perf_event_open, ...)` reach moat first (`server`):
//! maps are moat's (`moat_maps`, storage in files on `/dev/shm`, an mmapable array's descriptor
//! being its value file, so the tool's `mmap` of it works natively), programs are verified and
//! compiled by moat (the verifier's log in the tool's log buffer on rejection), BTF is kept, and
//! the uprobe PMU's events are moat's. Every descriptor handed out is a real one (memfd, eventfd,
//! the map's file); what moat does not own goes to the kernel untouched. Attaching a program to a
//! uprobe of the traced process runs it there, through `moat load` and moat's agent (`traced`).

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod attr;
#[expect(
    unsafe_code,
    reason = "the shared mapping of a perf buffer event's ring"
)]
mod ring;
pub mod server;
#[expect(
    unsafe_code,
    reason = "the exported syscall/close/ioctl, raw system calls, process_vm_readv"
)]
mod sys;
pub mod traced;
