//! Program types and the context each gives its program.
//!
//! A program's type decides what `r1` points to at entry. The generic *buffer* context (the CLI's and
//! the conformance suite's) passes the input's address in `r1` and its length in `r2`. Packet program
//! types get the kernel's context structures, `struct xdp_md` and `struct __sk_buff`, whose packet
//! pointers are 32-bit fields: moat builds them in memory below 4 GiB ([`moat_exec::LowBuffer`]) so
//! those fields hold real addresses and clang-compiled programs run unchanged.

use crate::Exec;
use moat_exec::{Buffer, LowBuffer, RunError};
use std::cell::RefCell;
use thiserror::Error;

/// What kind of program this is, which decides its context. Names follow libbpf's section names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProgType {
    /// Generic: `r1` = input address, `r2` = input length.
    Buffer,
    /// XDP: `r1` = `struct xdp_md` over the input packet.
    Xdp,
    /// tc classifier: `r1` = `struct __sk_buff` over the input packet.
    SchedCls,
    /// Socket filter: `r1` = `struct __sk_buff` over the input packet (legacy `ldabs` reads it).
    SocketFilter,
    /// cgroup skb: `r1` = `struct __sk_buff`.
    CgroupSkb,
    /// Tracing kinds (kprobe, tracepoint, raw tracepoint): `r1` = the input as the probe's context
    /// (registers or tracepoint record).
    Tracing,
    /// `perf_event`: `r1` = `struct bpf_perf_event_data` (the sampled registers, `sample_period`,
    /// `addr`). Verify-only, as [`ProgType::SockOps`]: moat runs no perf event samples.
    PerfEvent,
    /// `sock_ops`: `r1` = `struct bpf_sock_ops`. Verify-only: moat verifies these programs as the
    /// kernel would but has no socket to build the context from, so running one fails with
    /// [`ContextError::VerifyOnly`].
    SockOps,
    /// `cgroup_sock`: `r1` = `struct bpf_sock`, with the fields the attach type its section names
    /// allows (socket creation by default). Verify-only, as [`ProgType::SockOps`].
    CgroupSock,
    /// `cgroup_sock_addr`: `r1` = `struct bpf_sock_addr`, with the fields the attach type its
    /// section names allows (`connect4`, `sendmsg6`, ...). Verify-only, as [`ProgType::SockOps`].
    CgroupSockAddr,
    /// `lwt_in`: `r1` = `struct __sk_buff` of a lightweight tunnel's input hook, packet read-only.
    /// Verify-only, as [`ProgType::SockOps`].
    LwtIn,
    /// `lwt_out`: as [`ProgType::LwtIn`], at the tunnel's output hook.
    LwtOut,
    /// `lwt_xmit`: as [`ProgType::LwtIn`], at the tunnel's transmit hook, packet writable.
    LwtXmit,
    /// `cgroup_device`: `r1` = `struct bpf_cgroup_dev_ctx` (access type, major, minor), read-only.
    /// Verify-only, as [`ProgType::SockOps`].
    CgroupDevice,
    /// `cgroup_sysctl`: `r1` = `struct bpf_sysctl` (`write`, `file_pos`). Verify-only, as
    /// [`ProgType::SockOps`].
    CgroupSysctl,
    /// `sk_msg`: `r1` = `struct sk_msg_md` over a message sent on a socket in a sockmap.
    /// Verify-only, as [`ProgType::SockOps`].
    SkMsg,
    /// `sk_skb`: `r1` = `struct __sk_buff` over a message of a socket in a sockmap (stream parser
    /// or verdict). Verify-only, as [`ProgType::SockOps`].
    SkSkb,
}

/// An unknown `--type` name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unknown program type `{0}` (known: buffer, xdp, tc, socket, cgroup_skb, kprobe, tracepoint, \
     sock_ops, cgroup_sock, cgroup_sock_addr, lwt_in, lwt_out, lwt_xmit, \
     cgroup_device, cgroup_sysctl, sk_msg)"
)]
pub struct UnknownProgType(pub String);

impl ProgType {
    /// Whether the type's context is a packet (XDP, tc, socket, cgroup skb).
    pub fn is_packet(self) -> bool {
        matches!(
            self,
            ProgType::Xdp | ProgType::SchedCls | ProgType::SocketFilter | ProgType::CgroupSkb
        )
    }

    /// The type libbpf gives a program in section `section` ([`moat_abi::section_def`], matched by
    /// prefix: `socket1`, `xdp_prog`, `kprobe/sys_write`); `None` where the name says nothing (`2/7`,
    /// `tail-3`, `.text`, ...) or names a kernel type moat has no context for.
    pub fn from_section(section: &str) -> Option<ProgType> {
        use moat_abi::{AttachType as A, ProgType as K};
        let def = moat_abi::section_def(section)?;
        Some(match (def.prog_type, def.attach_type) {
            (K::Xdp, _) => ProgType::Xdp,
            (K::SchedCls, None | Some(A::TcxIngress | A::TcxEgress)) | (K::SchedAct, _) => {
                ProgType::SchedCls
            }
            (K::SocketFilter, _) => ProgType::SocketFilter,
            (K::CgroupSkb, _) => ProgType::CgroupSkb,
            (K::SockOps, _) => ProgType::SockOps,
            (K::CgroupSock, _) => ProgType::CgroupSock,
            (K::CgroupSockAddr, _) => ProgType::CgroupSockAddr,
            (K::LwtIn, _) => ProgType::LwtIn,
            (K::LwtOut, _) => ProgType::LwtOut,
            (K::LwtXmit, _) => ProgType::LwtXmit,
            (K::CgroupDevice, _) => ProgType::CgroupDevice,
            (K::CgroupSysctl, _) => ProgType::CgroupSysctl,
            (K::SkMsg, _) => ProgType::SkMsg,
            (K::SkSkb, _) => ProgType::SkSkb,
            (K::PerfEvent, _) => ProgType::PerfEvent,
            (K::Kprobe | K::Tracepoint | K::RawTracepoint | K::RawTracepointWritable, _)
            | (K::Tracing, Some(A::TraceRawTp | A::TraceFentry | A::TraceFexit)) => {
                ProgType::Tracing
            }
            _ => return None,
        })
    }

    /// Parses a `--type` name.
    pub fn parse(name: &str) -> Result<ProgType, UnknownProgType> {
        Ok(match name {
            "buffer" => ProgType::Buffer,
            "xdp" => ProgType::Xdp,
            "tc" | "sched_cls" | "classifier" => ProgType::SchedCls,
            "socket" | "socket_filter" => ProgType::SocketFilter,
            "cgroup_skb" => ProgType::CgroupSkb,
            "sock_ops" | "sockops" => ProgType::SockOps,
            "cgroup_sock" => ProgType::CgroupSock,
            "cgroup_sock_addr" => ProgType::CgroupSockAddr,
            "lwt_in" => ProgType::LwtIn,
            "lwt_out" => ProgType::LwtOut,
            "lwt_xmit" => ProgType::LwtXmit,
            "cgroup_device" => ProgType::CgroupDevice,
            "cgroup_sysctl" => ProgType::CgroupSysctl,
            "sk_msg" => ProgType::SkMsg,
            "sk_skb" => ProgType::SkSkb,
            "kprobe" | "tracepoint" | "tracing" | "raw_tracepoint" => ProgType::Tracing,
            "perf_event" => ProgType::PerfEvent,
            other => return Err(UnknownProgType(other.to_string())),
        })
    }

    /// The kernel's `BPF_PROG_TYPE_*` number for loading the same program into Linux.
    pub fn kernel_type(self) -> u32 {
        use moat_abi::ProgType as K;
        match self {
            ProgType::Buffer | ProgType::SocketFilter => K::SocketFilter,
            ProgType::Xdp => K::Xdp,
            ProgType::SchedCls => K::SchedCls,
            ProgType::CgroupSkb => K::CgroupSkb,
            ProgType::Tracing => K::Kprobe,
            ProgType::SockOps => K::SockOps,
            ProgType::CgroupSock => K::CgroupSock,
            ProgType::CgroupSockAddr => K::CgroupSockAddr,
            ProgType::LwtIn => K::LwtIn,
            ProgType::LwtOut => K::LwtOut,
            ProgType::LwtXmit => K::LwtXmit,
            ProgType::CgroupDevice => K::CgroupDevice,
            ProgType::CgroupSysctl => K::CgroupSysctl,
            ProgType::SkMsg => K::SkMsg,
            ProgType::SkSkb => K::SkSkb,
            ProgType::PerfEvent => K::PerfEvent,
        }
        .as_u32()
    }
}

/// Why a context could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The packet does not fit the context buffer.
    #[error("packet of {len} bytes exceeds the {max}-byte limit of packet contexts")]
    PacketTooLarge {
        /// The packet length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A buffer program was verified for a larger input.
    #[error(
        "input of {len} bytes is shorter than the {verified} bytes the program was verified for"
    )]
    InputTooSmall {
        /// The input's length.
        len: usize,
        /// The size it was verified for.
        verified: u64,
    },
    /// A tracing program run on less than its context (the kernel's x86-64 `struct pt_regs`).
    #[error(
        "this context needs {needed} bytes (struct pt_regs of x86-64), the input has {len}: give \
         the registers as the input (--mem-file)"
    )]
    ContextTooSmall {
        /// The input's length.
        len: usize,
        /// The context's size.
        needed: u64,
    },
    /// The program type is verified but not run by moat (no context builder for it).
    #[error("moat verifies {0} programs but cannot run them (no context to build)")]
    VerifyOnly(&'static str),
    /// Memory below 4 GiB could not be mapped.
    #[error("cannot map packet memory below 4 GiB: {0}")]
    LowMemory(String),
}

/// Size of `struct xdp_md`.
const XDP_MD_SIZE: usize = 24;
/// Size of `struct __sk_buff`.
const SK_BUFF_SIZE: usize = 192;
/// Where the packet starts in the low buffer: after the context, with headroom like the kernel's.
const PACKET_OFFSET: usize = 256;
/// Bytes of low memory per thread for packet contexts.
const LOW_BUFFER_SIZE: usize = 64 * 1024;
/// The largest packet a packet context takes.
pub const MAX_PACKET: usize = LOW_BUFFER_SIZE - PACKET_OFFSET;

thread_local! {
    static LOW: RefCell<Option<LowBuffer>> = const { RefCell::new(None) };
}

fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    if let Some(dst) = buf.get_mut(off..off + 4) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// What a run comes back with: `r0` or the run's error, or why its context could not be built.
/// Both errors are boxed, so that the whole is two words, returned in registers (a larger result
/// is copied through memory at every layer, each copy stalling on the one before).
pub(crate) type Ran = Result<Result<u64, Box<RunError>>, Box<ContextError>>;

/// Runs `prog` of type `ty` on `input`, copying a packet back after the run (programs may rewrite it).
pub(crate) fn run(prog: &Exec, ty: ProgType, input: &mut [u8]) -> Ran {
    run_in(prog, ty, input, None)
}

/// As [`run`], with packet contexts placed in `low` (memory below 4 GiB of at least
/// `LOW_BUFFER_SIZE` bytes, e.g. the program's domain's low area) instead of the thread's buffer.
pub(crate) fn run_in(prog: &Exec, ty: ProgType, input: &mut [u8], low: Option<&mut [u8]>) -> Ran {
    // A pool transaction the program opened and did not commit is rolled back when the run ends.
    let _run = crate::pooled::RunScope::enter();
    match ty {
        ProgType::SockOps => Err(Box::new(ContextError::VerifyOnly("sock_ops"))),
        ProgType::CgroupSock => Err(Box::new(ContextError::VerifyOnly("cgroup_sock"))),
        ProgType::CgroupSockAddr => Err(Box::new(ContextError::VerifyOnly("cgroup_sock_addr"))),
        ProgType::LwtIn | ProgType::LwtOut | ProgType::LwtXmit => {
            Err(Box::new(ContextError::VerifyOnly("lwt")))
        }
        ProgType::CgroupDevice => Err(Box::new(ContextError::VerifyOnly("cgroup_device"))),
        ProgType::CgroupSysctl => Err(Box::new(ContextError::VerifyOnly("cgroup_sysctl"))),
        ProgType::SkMsg => Err(Box::new(ContextError::VerifyOnly("sk_msg"))),
        ProgType::SkSkb => Err(Box::new(ContextError::VerifyOnly("sk_skb"))),
        ProgType::PerfEvent => Err(Box::new(ContextError::VerifyOnly("perf_event"))),
        ProgType::Buffer | ProgType::Tracing => Ok(run_buffer(prog, input)),
        ProgType::Xdp | ProgType::SchedCls | ProgType::SocketFilter | ProgType::CgroupSkb => {
            if input.len() > MAX_PACKET {
                return Err(Box::new(ContextError::PacketTooLarge {
                    len: input.len(),
                    max: MAX_PACKET,
                }));
            }
            if let Some(low) = low.filter(|l| l.len() >= LOW_BUFFER_SIZE) {
                return Ok(
                    run_packet(prog, ty, &mut low[..LOW_BUFFER_SIZE], input).map_err(Box::new)
                );
            }
            LOW.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    let buffer = LowBuffer::new(LOW_BUFFER_SIZE)
                        .map_err(|e| Box::new(ContextError::LowMemory(e.to_string())))?;
                    *slot = Some(buffer);
                }
                let Some(low) = slot.as_mut() else {
                    return Err(Box::new(ContextError::LowMemory("no buffer".into())));
                };
                Ok(run_packet(prog, ty, low.as_mut_slice(), input).map_err(Box::new))
            })
        }
    }
}

/// Runs a buffer or tracing program on `input` where it lies: `r1` = its address, `r2` = its
/// length. The error is boxed, so that the result comes back in registers.
pub(crate) fn run_buffer(prog: &Exec, input: &mut [u8]) -> Result<u64, Box<RunError>> {
    let args = [input.as_mut_ptr() as u64, input.len() as u64, 0, 0, 0];
    prog.run_boxed(
        &mut [Buffer {
            bytes: input,
            writable: true,
        }],
        args,
    )
}

fn run_packet(
    prog: &Exec,
    ty: ProgType,
    low: &mut [u8],
    input: &mut [u8],
) -> Result<u64, RunError> {
    let base = low.as_ptr() as u64;
    // Below 4 GiB by construction of `LowBuffer`, so these fit the 32-bit fields.
    let data = (base + PACKET_OFFSET as u64) as u32;
    let data_end = data.wrapping_add(input.len() as u32);
    let (ctx, rest) = low.split_at_mut(PACKET_OFFSET);
    ctx.fill(0);
    let packet = &mut rest[..input.len()];
    packet.copy_from_slice(input);
    let ctx_size = if ty == ProgType::Xdp {
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }
        put_u32(ctx, 0, data);
        put_u32(ctx, 4, data_end);
        put_u32(ctx, 8, data);
        put_u32(ctx, 12, 1);
        XDP_MD_SIZE
    } else {
        // struct __sk_buff: len, pkt_type, mark, queue_mapping, protocol, ..., ifindex at 40,
        // data at 76, data_end at 80.
        put_u32(ctx, 0, input.len() as u32);
        let proto = input
            .get(12..14)
            .map_or(0, |p| u32::from(u16::from_le_bytes([p[0], p[1]])));
        put_u32(ctx, 16, proto);
        put_u32(ctx, 36, 1);
        put_u32(ctx, 40, 1);
        put_u32(ctx, 76, data);
        put_u32(ctx, 80, data_end);
        if ty == ProgType::SchedCls {
            // data_meta: no metadata in front of the packet.
            put_u32(ctx, 140, data);
        }
        SK_BUFF_SIZE
    };
    let ctx_addr = ctx.as_ptr() as u64;
    let result = {
        let (ctx_fields, _) = ctx.split_at_mut(ctx_size);
        // The packet comes first: legacy `ldabs`/`ldind` loads read it.
        let mut buffers = [
            Buffer {
                bytes: &mut *packet,
                writable: true,
            },
            Buffer {
                bytes: ctx_fields,
                writable: ty != ProgType::Xdp,
            },
        ];
        prog.run_with(&mut buffers, [ctx_addr, 0, 0, 0, 0])
    };
    input.copy_from_slice(packet);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_names_give_libbpfs_types() {
        let cases: &[(&str, Option<ProgType>)] = &[
            ("xdp", Some(ProgType::Xdp)),
            ("xdp_prog", Some(ProgType::Xdp)),
            ("xdp.frags/devmap", Some(ProgType::Xdp)),
            ("tc", Some(ProgType::SchedCls)),
            ("tcx/ingress", Some(ProgType::SchedCls)),
            ("classifier", Some(ProgType::SchedCls)),
            ("action", Some(ProgType::SchedCls)),
            ("socket1", Some(ProgType::SocketFilter)),
            ("cgroup_skb/egress", Some(ProgType::CgroupSkb)),
            ("cgroup/skb", Some(ProgType::CgroupSkb)),
            ("kprobe/sys_write", Some(ProgType::Tracing)),
            ("kretprobe/x", Some(ProgType::Tracing)),
            ("uprobe.multi/x", Some(ProgType::Tracing)),
            ("usdt/x", Some(ProgType::Tracing)),
            ("ksyscall/x", Some(ProgType::Tracing)),
            ("tracepoint/syscalls/x", Some(ProgType::Tracing)),
            ("tp/syscalls/x", Some(ProgType::Tracing)),
            ("tp_btf/sched_switch", Some(ProgType::Tracing)),
            ("raw_tracepoint/x", Some(ProgType::Tracing)),
            ("raw_tp.w/x", Some(ProgType::Tracing)),
            ("perf_event", Some(ProgType::PerfEvent)),
            ("fentry/x", Some(ProgType::Tracing)),
            ("fexit.s/x", Some(ProgType::Tracing)),
            // Verify-only types.
            ("sockops", Some(ProgType::SockOps)),
            ("cgroup/sock", Some(ProgType::CgroupSock)),
            ("cgroup/post_bind4", Some(ProgType::CgroupSock)),
            // Kernel types moat has no context for.
            ("fmod_ret/x", None),
            ("iter/task", None),
            ("lsm/x", None),
            ("netkit/primary", None),
            ("cgroup/connect4", Some(ProgType::CgroupSockAddr)),
            ("lwt_xmit", Some(ProgType::LwtXmit)),
            ("cgroup/dev", Some(ProgType::CgroupDevice)),
            ("cgroup/sysctl", Some(ProgType::CgroupSysctl)),
            ("sk_msg", Some(ProgType::SkMsg)),
            ("sk_skb/stream_parser", Some(ProgType::SkSkb)),
            ("sk_skb/stream_verdict", Some(ProgType::SkSkb)),
            // Names that say nothing.
            ("2/7", None),
            ("tail-3", None),
            (".text", None),
        ];
        for &(section, expected) in cases {
            assert_eq!(ProgType::from_section(section), expected, "{section}");
        }
    }

    #[test]
    fn kernel_types_are_the_kernels_numbers() {
        use moat_abi::ProgType as K;
        assert_eq!(ProgType::Xdp.kernel_type(), K::Xdp.as_u32());
        assert_eq!(ProgType::SchedCls.kernel_type(), K::SchedCls.as_u32());
        assert_eq!(ProgType::Tracing.kernel_type(), K::Kprobe.as_u32());
        assert_eq!(ProgType::Buffer.kernel_type(), K::SocketFilter.as_u32());
    }
}
