//! moat's verifier against the Linux kernel's, program by program (issue 5, item 8c).
//!
//! The corpus:
//!
//! * every rule file of `crates/moat-verify/tests/rules/*.asm` (their headers parsed as
//!   `moat-verify/tests/rules.rs` does), verified by moat with [`moat_verify::verify`];
//! * every program of the C examples `examples/c/*.o`;
//! * every program of every object under `../shared/objects` (see its README).
//!
//! Objects are verified by moat with [`Runtime::verify_object`] and loaded into the kernel with
//! `BPF_PROG_LOAD` after their maps are created with `BPF_MAP_CREATE` (global data written at key 0) and
//! their `lddw` map references rewritten from moat's map indices (`src = 5`/`6`) to the kernel maps'
//! descriptors (`src = 1`/`2`), as `kernel_examples.rs` does. Hash-like maps are created with at most
//! 1024 entries (Cilium's connection tables ask for millions; the verifier never looks at a hash
//! map's size); every other map keeps its definition.
//!
//! Program types. The section name decides, by libbpf's conventions ([`target`]): `xdp` (kernel type
//! 6), `socket` (1), `tc`/`classifier` (3), `action` (4), `cgroup_skb`/`cgroup/skb` (8), `kprobe`/`uprobe`
//! (2), `tracepoint` (5), `raw_tracepoint` (17), `perf_event` (7), `sockops` (13), `cgroup/sock*` and
//! `cgroup/post_bind*` (9) and the `cgroup/` address hooks (`connect4`, `sendmsg6`, ...: 18), both
//! loaded with the attach type libbpf gives the section, `lwt_in`/`lwt_out`/`lwt_xmit` (10-12), `cgroup/dev` (15), `cgroup/sysctl` (23), `sk_msg` (16); moat
//! checks kprobes, tracepoints, raw tracepoints and perf events with its tracing context. Where the
//! name says nothing, the project's loader decided, and so does this test (`linux/lwt_len_hist_kern.o`
//! is `lwt_out`, as its script attaches it):
//! the old Cilium objects are tc programs except in the `*xdp*` objects (XDP), as the PREVAIL verifier
//! also assumes; OVS's datapath is tc except its `xdp`/`af_xdp` sections; the tc samples of
//! `linux/` and `prototype-kernel/` whose sections are named after their function are tc; Suricata's
//! filters and load balancer are socket filters (`SO_ATTACH_BPF`); any other unknown section is a
//! socket filter, PREVAIL's default for these samples. Rule files map their `# context:` to
//! moat's context and a kernel type: `xdp` 6, `tc` 3, `socket` 1, `cgroup-skb` 8, `sock-ops` 13, `cgroup-sock` 9, `lwt-in` 10, `lwt-out` 11, `lwt-xmit` 12,
//! `cgroup-device` 15, `cgroup-sysctl` 23, `sk-msg` 16,
//! `cgroup-sock-addr HOOK` 18
//! (with the hook's attach type),
//! `tracing` 2 (kprobe,
//! whose context is `struct pt_regs`, 168 bytes, as moat's tracing context), and `buffer N` to XDP
//! with a prologue `lddw r1, map_value(mem, 0); mov r2, N` where `mem` is an extra one-element array
//! of `N`-byte values (the trick of `kernel_conformance.rs`: a map value's size is known statically).
//! A rule file's `# unprivileged` flag is ignored here: the privileged comparison verifies every file
//! as root, the unprivileged one every file unprivileged, in moat and in the kernel alike. Maps are
//! created as libbpf would: perf event arrays get 4-byte keys and values and, when unsized, one entry
//! per CPU (Falco's loader sizes its unsized scratch arrays the same way); ring buffers get no key or
//! value size.
//!
//! A program that does not reach both verifiers is *excluded* and counted by reason: moat has no
//! context for its type (sk_skb, flow dissector, sk_lookup, ...; the embedder-defined context of an
//! example), the kernel attaches its type by BTF id (fentry/fexit), one of its maps cannot be created
//! without BTF or an inner map (map-in-map), the kernel refuses it for want of BTF (function info for
//! a callback passed with `lddw BPF_PSEUDO_FUNC`; a map's BTF for `bpf_spin_lock`), it calls an
//! undefined function (Falco's `memset`) or one of moat's own helpers (ids from `0x6d6f0000`, which
//! the kernel does not have), or its object does not parse (`invalid/`). Everything else
//! is *compared*: both accept, both reject (for whatever reasons), or one rejects.
//!
//! Every disagreement must be listed in [`ROOT_DISAGREEMENTS`] (or [`UNPRIVILEGED_DISAGREEMENTS`])
//! with a one-line explanation: a kernel-specific rule moat does not copy, a moat limitation (it refuses
//! something safe), or a moat bug (it accepts something unsafe: a FIXME). The lists must be exact, so
//! a new disagreement, or one that went away, fails the test. The test prints the table of counts,
//! the agreement rate overall and on the kernel's rejections, and every disagreement with moat's
//! reason and the end of the kernel's log.
//!
//! The unprivileged comparison re-runs this test binary under `setpriv` with only `CAP_BPF` and
//! `CAP_NET_ADMIN` (uid 0 keeps no other capability: the bounding set is cut to these two), so the
//! kernel applies the rules of `bpf_capable()` without `perfmon_capable()` (no pointer leaks, no
//! uninitialised stack, Spectre v1/v4 sanitation), and moat runs with [`Verification::Unprivileged`].
//! Tracing programs need `CAP_PERFMON` and are excluded there.
//!
//! `verification_speed` (release builds only) times moat against the kernel's `BPF_PROG_LOAD` on the
//! examples, the largest Cilium programs and a generated program of over 10 000 instructions, for
//! BENCHMARKS.md.
//!
//! The lists were made on Linux 6.18 (x86_64, root, lockdown=integrity, no
//! CONFIG_BPF_KPROBE_OVERRIDE). Every test prints `skipped: <reason>` and passes where `bpf()` is
//! unusable. `MOAT_KERNEL_VERIFIER_VERBOSE=1` prints every compared program's verdicts and
//! `MOAT_KERNEL_VERIFIER_LOG_LINES=N` keeps more of the kernel's log.

mod common;
use common::{shared_dir, workspace_root as root};

use moat::{ObjectOptions, ProgType, Runtime, Verification};
use moat_abi::{MapType, BPF_F_RDONLY_PROG};
use moat_fuzz::rules::{RuleContext, RuleFile};
use moat_isa::{CallTarget, Insn, LddwKind};
use moat_kernel::{create_map, load_program, KernelError, LoadOptions, ProgType as KernelType};
use moat_obj::{MapSpec, Object};
use moat_verify::{Context, Env, MapInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// Why moat and the kernel disagree, by category. "moat bug": moat accepts something unsafe (a FIXME,
// with a rule file showing it). "moat limitation": moat refuses something safe the kernel proves.
// "moat stricter": a rule moat applies to every loader that the kernel applies to unprivileged ones
// only. "kernel-specific rule", "prototype difference" and "kernel configuration": the kernel
// refuses for reasons that are not about memory safety in moat (helper availability, Spectre
// hardening, this kernel's build).

const LIM_STATES: &str =
    "moat limitation: too complex for moat's pruning (at most 64 states kept per \
    instruction; register liveness and a static precision analysis, no stack-slot liveness) within \
    1M processed instructions; the kernel accepts it";
const LIM_HELPER_99: &str =
    "moat limitation: no prototype for helper 99 (bpf_skc_lookup_tcp, which \
    returns a socket reference to release)";
const LIM_NARROW_SPILL: &str =
    "moat limitation (FIXME, rules/stack-narrow-spill-fill.asm): a 4-byte \
    spill of a known number reads back unknown because only 8-byte spills are tracked, so moat \
    explores an infeasible path and refuses it; the kernel keeps narrow scalar spills";
const LIM_MAP_STRUCT: &str = "moat limitation by design: a map handle is an index into the \
    program's map table, not the kernel's struct bpf_map, so a privileged program cannot read its \
    fields through BTF as in the kernel";
const POOL_MAPS: &str = "moat only: persistent pool maps (read-only values whose atomics apply in \
    place) have no kernel counterpart";
const KERNEL_LOOP_UNPRIV: &str = "kernel-specific behaviour (no CAP_PERFMON): the kernel loses the \
    loop counter's exact value, finds an equal state at the loop head and reports an infinite loop; \
    moat follows the 10 iterations";

const LIM_ATTACH_HELPER: &str = "moat limitation by design: bpf_get_func_ip (173) answers for the \
    probe that runs the program, so moat-attach registers it when it attaches; a plain Runtime has \
    no probe and refuses the helper by name";

/// Disagreements of the privileged comparison (moat privileged, the kernel as root): (origin,
/// program, why).
const ROOT_DISAGREEMENTS: &[(&str, &str, &str)] = &[
    ("uretprobe_latency.o", "work_return", LIM_ATTACH_HELPER),
    ("build/bounded_loop.o", "test_bounded_loop", LIM_STATES),
    ("cilium/bpf_lxc.o", "tail_handle_ipv6", LIM_STATES),
    ("cilium/bpf_lxc.o", "tail_handle_ipv4", LIM_STATES),
    ("cilium/bpf_lxc.o", "tail_ipv6_policy", LIM_STATES),
    (
        "cilium/bpf_xdp_dsr_linux.o",
        "tail_nodeport_nat_ipv6",
        LIM_STATES,
    ),
    (
        "cilium/bpf_xdp_snat_linux.o",
        "tail_nodeport_nat_ipv6",
        LIM_STATES,
    ),
    (
        "cilium-core/bpf_lxc.o",
        "tail_handle_ipv6_cont",
        LIM_HELPER_99,
    ),
    (
        "cilium-core/bpf_lxc.o",
        "tail_handle_ipv4_cont",
        LIM_HELPER_99,
    ),
    ("cilium-core/bpf_lxc.o", "tail_ipv6_policy", LIM_HELPER_99),
    ("cilium-core/bpf_lxc.o", "tail_ipv4_policy", LIM_HELPER_99),
    (
        "cilium-core/bpf_xdp.o",
        "tail_nodeport_rev_dnat_ingress_ipv6",
        LIM_STATES,
    ),
    (
        "cilium-core/bpf_xdp.o",
        "tail_nodeport_rev_dnat_egress_ipv6",
        LIM_STATES,
    ),
    (
        "cilium-core/bpf_xdp.o",
        "tail_nodeport_nat_ingress_ipv6",
        LIM_STATES,
    ),
    (
        "cilium-core/bpf_lxc.o",
        "tail_nodeport_nat_egress_ipv4",
        LIM_NARROW_SPILL,
    ),
    ("stack-narrow-spill-fill.asm", "-", LIM_NARROW_SPILL),
    ("cilium-core/bpf_xdp.o", "tail_lb_ipv4", LIM_STATES),
    ("cilium-core/bpf_xdp.o", "tail_lb_ipv6", LIM_STATES),
    ("map-in-map-deref.asm", "-", LIM_MAP_STRUCT),
];
/// Disagreements of the unprivileged comparison (moat unprivileged, the kernel with CAP_BPF and
/// CAP_NET_ADMIN only).
const UNPRIVILEGED_DISAGREEMENTS: &[(&str, &str, &str)] = &[
    ("loop-bounded.asm", "-", KERNEL_LOOP_UNPRIV),
    ("loop-counted-17bit.asm", "-", KERNEL_LOOP_UNPRIV),
    ("build/bounded_loop.o", "test_bounded_loop", LIM_STATES),
    ("cilium/bpf_lxc.o", "tail_handle_ipv4", LIM_STATES),
    ("cilium/bpf_lxc.o", "tail_ipv6_policy", LIM_STATES),
    (
        "cilium-core/bpf_lxc.o",
        "tail_nodeport_nat_egress_ipv4",
        LIM_NARROW_SPILL,
    ),
    ("stack-narrow-spill-fill.asm", "-", LIM_NARROW_SPILL),
];

/// Set in the child process that runs the unprivileged comparison.
const UNPRIVILEGED_CHILD: &str = "MOAT_KERNEL_VERIFIER_UNPRIVILEGED_CHILD";
/// Set in a child process that measures moat's peak memory on one object.
const MEMORY_CHILD: &str = "MOAT_KERNEL_VERIFIER_MEMORY_CHILD";

/// Hash-like maps are created with at most this many entries (see the module comment).
const MAX_HASH_ENTRIES: u32 = 1024;

/// A verdict, with a one-line reason for rejections.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Accept,
    Reject(String),
}

impl Verdict {
    fn accepted(&self) -> bool {
        matches!(self, Verdict::Accept)
    }

    fn describe(&self) -> String {
        match self {
            Verdict::Accept => "accept".to_string(),
            Verdict::Reject(why) => format!("reject: {why}"),
        }
    }
}

/// What happened to one program.
#[derive(Debug, Clone)]
enum Outcome {
    /// Both verifiers judged it.
    Compared { moat: Verdict, kernel: Verdict },
    /// It did not reach both verifiers; the category says why.
    Excluded(String),
}

/// One program of the corpus.
#[derive(Debug, Clone)]
struct Case {
    /// `rules`, `examples` or `objects`.
    corpus: &'static str,
    /// The file, relative to its corpus directory.
    origin: String,
    program: String,
    /// Instruction slots.
    insns: usize,
    outcome: Outcome,
    /// moat's verification time (accepted programs only).
    moat_time: Option<Duration>,
    /// The kernel's `BPF_PROG_LOAD` wall time (loaded programs only).
    kernel_time: Option<Duration>,
}

// ------------------------------------------------------------------------------------------------
// Program types

/// Where a program runs: moat's program type (its context) and the kernel's.
#[derive(Debug, Clone, Copy)]
struct Target {
    moat: ProgType,
    kernel: KernelType,
    /// The `expected_attach_type` the kernel is given (cgroup sock programs only: the fields they
    /// may access depend on it; other types load without one, as before).
    attach: Option<moat_abi::AttachType>,
}

fn t(moat: ProgType, kernel: KernelType) -> Result<Target, String> {
    Ok(Target {
        moat,
        kernel,
        attach: None,
    })
}

/// The program type of a program in `section` of the object `origin` (relative to its corpus
/// directory), or why it cannot be compared.
fn target(corpus: &str, origin: &str, section: &str) -> Result<Target, String> {
    use KernelType as K;
    use ProgType as M;
    // Per-object decisions where the section name says nothing.
    if origin.starts_with("cilium/") {
        return if origin.contains("xdp") {
            t(M::Xdp, K::Xdp)
        } else {
            t(M::SchedCls, K::SchedCls)
        };
    }
    if origin == "ovs/datapath.o" {
        return if section.ends_with("xdp") {
            t(M::Xdp, K::Xdp)
        } else {
            t(M::SchedCls, K::SchedCls)
        };
    }
    if [
        "linux/tc_l2_redirect_kern.o",
        "linux/tcbpf1_kern.o",
        "linux/test_cgrp2_tc_kern.o",
        "prototype-kernel/tc_bench01_redirect_kern.o",
    ]
    .contains(&origin)
    {
        return t(M::SchedCls, K::SchedCls);
    }
    // The sample's script attaches it with `ip route ... encap bpf out ... section len_hist`.
    if origin == "linux/lwt_len_hist_kern.o" {
        return t(M::LwtOut, K::LwtOut);
    }
    let prefixed = |prefixes: &[&str]| prefixes.iter().any(|p| section.starts_with(p));
    if prefixed(&["xdp"]) {
        t(M::Xdp, K::Xdp)
    } else if prefixed(&["socket"]) {
        t(M::SocketFilter, K::SocketFilter)
    } else if prefixed(&["tc", "classifier"]) {
        t(M::SchedCls, K::SchedCls)
    } else if prefixed(&["action"]) {
        t(M::SchedCls, K::SchedAct)
    } else if prefixed(&["cgroup_skb/", "cgroup/skb"]) {
        t(M::CgroupSkb, K::CgroupSkb)
    } else if prefixed(&[
        "kprobe/",
        "kretprobe/",
        "uprobe",
        "uretprobe",
        "ksyscall/",
        "kretsyscall/",
    ]) {
        t(M::Tracing, K::Kprobe)
    } else if prefixed(&["tracepoint/", "tp/"]) {
        t(M::Tracing, K::Tracepoint)
    } else if prefixed(&["raw_tracepoint/", "raw_tp/"]) {
        t(M::Tracing, K::RawTracepoint)
    } else if prefixed(&["perf_event"]) {
        t(M::PerfEvent, K::PerfEvent)
    } else if prefixed(&["sockops"]) {
        t(M::SockOps, K::SockOps)
    } else if let Some(def) = moat_abi::section_def(section)
        .filter(|d| matches!(d.prog_type, K::CgroupSock | K::CgroupSockAddr))
    {
        Ok(Target {
            moat: if def.prog_type == K::CgroupSock {
                M::CgroupSock
            } else {
                M::CgroupSockAddr
            },
            kernel: def.prog_type,
            attach: def.attach_type,
        })
    } else if prefixed(&["cgroup/dev"]) {
        t(M::CgroupDevice, K::CgroupDevice)
    } else if prefixed(&["cgroup/sysctl"]) {
        t(M::CgroupSysctl, K::CgroupSysctl)
    } else if prefixed(&["sk_msg"]) {
        t(M::SkMsg, K::SkMsg)
    } else if prefixed(&["sk_skb"]) {
        t(M::SkSkb, K::SkSkb)
    } else if prefixed(&["lwt_in"]) {
        t(M::LwtIn, K::LwtIn)
    } else if prefixed(&["lwt_out"]) {
        t(M::LwtOut, K::LwtOut)
    } else if prefixed(&["lwt_xmit"]) {
        t(M::LwtXmit, K::LwtXmit)
    } else if prefixed(&["fentry/", "fexit/", "fmod_ret/", "tp_btf/", "lsm/", "iter/"]) {
        Err("the kernel attaches the program type by BTF id".into())
    } else if prefixed(&[
        "cgroup/",
        "lwt",
        "sk_skb",
        "sk_msg",
        "flow_dissector",
        "sk_lookup",
    ]) {
        Err(format!(
            "no moat context for the program type ({})",
            section.split('/').next().unwrap_or(section)
        ))
    } else if corpus == "examples" {
        Err("embedder-defined context: no kernel program type".into())
    } else {
        // PREVAIL's default for the samples' unnamed sections.
        t(M::SocketFilter, K::SocketFilter)
    }
}

// ------------------------------------------------------------------------------------------------
// The kernel side

/// Whether a program calls one of moat's own helpers ([`moat::helpers::id::MOAT_BASE`] and up).
fn calls_moat_helpers(bytecode: &[u8]) -> bool {
    moat_isa::decode(bytecode).is_ok_and(|insns| {
        insns.iter().any(|(_, insn)| {
            matches!(insn, Insn::Call(CallTarget::Helper(id))
                if u32::try_from(*id).is_ok_and(|id| id >= moat::helpers::id::MOAT_BASE))
        })
    })
}

/// Why tracing programs are excluded from the unprivileged comparison.
const PERFMON: &str = "tracing program types need CAP_PERFMON";

/// Whether loading a program of this type needs CAP_PERFMON (tracing).
fn needs_perfmon(t: KernelType) -> bool {
    matches!(
        t,
        KernelType::Kprobe
            | KernelType::Tracepoint
            | KernelType::RawTracepoint
            | KernelType::PerfEvent
    )
}

/// Rewrites moat's `lddw` map references to kernel map descriptors (`-1` for a map the kernel lacks)
/// and prepends `prologue`.
fn kernel_insns(insns: &[Insn], fds: &[i32], prologue: &[Insn]) -> Vec<u8> {
    let fd = |index: i32| {
        usize::try_from(index)
            .ok()
            .and_then(|i| fds.get(i).copied())
            .unwrap_or(-1)
    };
    let mut out = prologue.to_vec();
    out.extend(moat_kernel::map_indices_to_fds(insns, fd));
    moat_isa::encode(&out)
}

/// Creates a map of maps in the kernel: first a map like its inner one (`inner`: type, key, value,
/// entries, flags), which the kernel takes the inner maps' shape from.
fn kernel_map_of_maps(
    map_type: u32,
    key: u32,
    entries: u32,
    flags: u32,
    inner: Option<(u32, u32, u32, u32, u32)>,
) -> Result<moat_kernel::Map, String> {
    let (t, k, v, e, f) = inner.ok_or("a map of maps without an inner map")?;
    let inner = kernel_map(t, k, v, e, f, &[])?;
    moat_kernel::create_map_of_maps(map_type, key, entries, flags, &inner)
        .map_err(|e| format!("map type {map_type} cannot be created: {e}"))
}

/// Whether `map_type` is a map of maps.
fn is_map_of_maps(map_type: u32) -> bool {
    matches!(
        MapType::from_u32(map_type),
        Some(MapType::ArrayOfMaps | MapType::HashOfMaps)
    )
}

/// The kernel map of an object's map spec (a map of maps with its inner map's shape).
fn kernel_spec_map(m: &MapSpec, all: &[MapSpec]) -> Result<moat_kernel::Map, String> {
    if is_map_of_maps(m.map_type) {
        let inner = match &m.inner_map {
            Some(moat_obj::InnerMap::Map(k)) => all.get(*k),
            Some(moat_obj::InnerMap::Template(t)) => Some(&**t),
            None => None,
        };
        let shape = inner.map(|i| (i.map_type, i.key_size, i.value_size, i.max_entries, i.flags));
        return kernel_map_of_maps(m.map_type, m.key_size, m.max_entries, m.flags, shape);
    }
    kernel_map(
        m.map_type,
        m.key_size,
        m.value_size,
        m.max_entries,
        m.flags,
        &m.data,
    )
}

/// Creates a map in the kernel as the test's conventions say.
fn kernel_map(
    map_type: u32,
    key: u32,
    value: u32,
    entries: u32,
    flags: u32,
    data: &[u8],
) -> Result<moat_kernel::Map, String> {
    let kind = MapType::from_u32(map_type);
    let cpus = || {
        moat_kernel::possible_cpus()
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1)
    };
    let (key, value, entries) = match kind {
        // Hash-like maps: the size does not matter to the verifier (see the module comment).
        Some(MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::LruPercpuHash) => {
            (key, value, entries.min(MAX_HASH_ENTRIES))
        }
        // libbpf gives perf event arrays 4-byte keys and values (whatever BTF declares) and as many
        // entries as CPUs when unsized; Falco's loader sizes its unsized scratch arrays the same way.
        Some(MapType::PerfEventArray) => (4, 4, if entries == 0 { cpus() } else { entries }),
        Some(MapType::Array) if entries == 0 => (key, value, cpus()),
        // libbpf ignores the key and value types a ring buffer declares in BTF.
        Some(MapType::RingBuf) => (0, 0, entries),
        _ => (key, value, entries),
    };
    let map = create_map(map_type, key, value, entries, flags)
        .map_err(|e| format!("map type {map_type} cannot be created: {e}"))?;
    if !data.is_empty() {
        map.update(&0u32.to_ne_bytes(), data, 0)
            .map_err(|e| format!("global data: {e}"))?;
    }
    Ok(map)
}

/// Messages of kernel refusals that happen before its verifier can judge the program.
const KERNEL_EXCLUSIONS: &[(&str, &str)] = &[
    (
        "missing btf func_info",
        "the kernel needs BTF function info (a callback passed with lddw BPF_PSEUDO_FUNC)",
    ),
    (
        "has to have BTF in order to use bpf_spin_lock",
        "the kernel needs the map's BTF to find a bpf_spin_lock",
    ),
];

/// The kernel's verdict; `Err` when the program does not reach its verifier.
fn kernel_verdict(
    bytes: &[u8],
    (kernel, attach): (KernelType, Option<moat_abi::AttachType>),
    license: &str,
    kern_version: u32,
) -> Result<(Verdict, Option<Duration>), String> {
    let mut options = LoadOptions::new(kernel);
    options.expected_attach_type = attach.map(moat_abi::AttachType::as_u32);
    options.license = license.to_string();
    options.kern_version = kern_version;
    match load_program(bytes, &options) {
        Ok(p) => Ok((Verdict::Accept, Some(p.load_time()))),
        Err(KernelError::Load { errno, log }) => {
            if let Some((_, why)) = KERNEL_EXCLUSIONS.iter().find(|(m, _)| log.contains(m)) {
                return Err((*why).to_string());
            }
            let tail: Vec<&str> = log
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("processed ") && !l.starts_with(';'))
                .collect();
            let lines = std::env::var("MOAT_KERNEL_VERIFIER_LOG_LINES")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(2);
            let tail = tail[tail.len().saturating_sub(lines)..].join(" | ");
            let errno = std::io::Error::from_raw_os_error(errno);
            Ok((Verdict::Reject(format!("{errno}: {tail}")), None))
        }
        Err(KernelError::Unavailable { reason }) => Err(format!("not permitted here: {reason}")),
        Err(e) => panic!("BPF_PROG_LOAD: {e}"),
    }
}

// ------------------------------------------------------------------------------------------------
// Rule files

fn rule_files() -> Vec<PathBuf> {
    moat_fuzz::rules::rule_files(&root().join("crates/moat-verify/tests/rules"))
        .expect("rule files")
}

fn rule_case(path: &Path, privileged: bool) -> Case {
    let source = std::fs::read_to_string(path).expect("readable rule file");
    let origin = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let insns = moat_isa::assemble(&source).expect("rule files assemble");
    let bytes = moat_isa::encode(&insns);
    let header = RuleFile::parse(&source).unwrap_or_else(|e| panic!("{origin}: {e}"));
    // The generic buffer is loaded as XDP with the buffer in a map value (see below).
    let kernel = header.context.kernel_type().unwrap_or(KernelType::Xdp);
    let excluded = if !privileged && needs_perfmon(kernel) {
        Some(PERFMON)
    } else if header.maps.iter().any(|m| m.atomic_in_place) {
        Some(POOL_MAPS)
    } else {
        None
    };
    if let Some(why) = excluded {
        return Case {
            corpus: "rules",
            origin,
            program: "-".into(),
            insns: bytes.len() / 8,
            outcome: Outcome::Excluded(why.into()),
            moat_time: None,
            kernel_time: None,
        };
    }
    // moat.
    // The header's environment, but with the privilege this pass asks for.
    let mut env = header.env();
    env.privileged = privileged;
    let mut moat_time = None;
    let moat = match moat_isa::Program::new_for_verifier(&bytes) {
        Err(e) => Verdict::Reject(format!("Program: {e}")),
        Ok(program) => match moat_verify::verify(&program, &env) {
            Ok(v) => {
                moat_time = Some(v.elapsed());
                Verdict::Accept
            }
            Err(r) => Verdict::Reject(one_line(&r.error.to_string())),
        },
    };
    // The kernel.
    let mut maps = Vec::new();
    let flags_of = |m: &MapInfo| if m.read_only { BPF_F_RDONLY_PROG } else { 0 };
    for m in &header.maps {
        let map = if is_map_of_maps(m.map_type) {
            let inner = m.inner.and_then(|k| header.maps.get(k)).map(|i| {
                (
                    i.map_type,
                    i.key_size,
                    i.value_size,
                    i.max_entries,
                    flags_of(i),
                )
            });
            kernel_map_of_maps(m.map_type, m.key_size, m.max_entries, flags_of(m), inner)
        } else {
            kernel_map(
                m.map_type,
                m.key_size,
                m.value_size,
                m.max_entries,
                flags_of(m),
                &[],
            )
        };
        maps.push(map.expect("rule file maps"));
    }
    let fds: Vec<i32> = maps.iter().map(moat_kernel::Map::fd).collect();
    let mut prologue = Vec::new();
    if let RuleContext::Buffer(size) = header.context {
        let size = u32::try_from(size).expect("small buffer");
        let mem = kernel_map(2, 4, size, 1, 0, &[]).expect("buffer map");
        prologue = vec![
            Insn::LoadImm64 {
                dst: moat_isa::Reg::R1,
                kind: LddwKind::MapValue,
                imm: mem.fd(),
                next_imm: 0,
            },
            Insn::Alu {
                width: moat_isa::Width::W64,
                op: moat_isa::AluOp::Mov,
                dst: moat_isa::Reg::R2,
                src: moat_isa::Operand::Imm(i32::try_from(size).expect("small buffer")),
            },
        ];
        maps.push(mem);
    }
    let kbytes = kernel_insns(&insns, &fds, &prologue);
    let (outcome, kernel_time) = match kernel_verdict(
        &kbytes,
        (kernel, header.context.attach_type()),
        &header.license,
        0,
    ) {
        Ok((kernel, kernel_time)) => (Outcome::Compared { moat, kernel }, kernel_time),
        Err(why) => (Outcome::Excluded(why), None),
    };
    // The maps lived until the kernel had checked the program.
    drop(maps);
    Case {
        corpus: "rules",
        origin,
        program: "-".into(),
        insns: bytes.len() / 8,
        outcome,
        moat_time,
        kernel_time,
    }
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

// ------------------------------------------------------------------------------------------------
// Objects

/// Every program of one object.
fn object_cases(corpus: &'static str, dir: &Path, path: &Path, mode: Verification) -> Vec<Case> {
    let origin = path
        .strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned();
    let bytes = std::fs::read(path).expect("readable object");
    let object = match Object::parse(&bytes) {
        Ok(o) => o,
        Err(e) => {
            return vec![Case {
                corpus,
                origin,
                program: "-".into(),
                insns: 0,
                outcome: Outcome::Excluded(format!(
                    "the object does not parse ({})",
                    error_kind(&e)
                )),
                moat_time: None,
                kernel_time: None,
            }]
        }
    };
    let targets: Vec<Result<Target, String>> = object
        .programs
        .iter()
        .map(|p| target(corpus, &origin, &p.section))
        .map(|t| match t {
            Ok(t) if mode == Verification::Unprivileged && needs_perfmon(t.kernel) => {
                Err(PERFMON.to_string())
            }
            other => other,
        })
        .collect();
    // moat: one verify_object per program type the object needs.
    let mut rt = Runtime::new();
    rt.set_verification(mode);
    let mut moat: BTreeMap<usize, (Verdict, Option<Duration>)> = BTreeMap::new();
    let types: BTreeSet<String> = targets
        .iter()
        .flatten()
        .map(|t| format!("{:?}", t.moat))
        .collect();
    for ty in types {
        let Some(prog_type) = targets
            .iter()
            .flatten()
            .find(|t| format!("{:?}", t.moat) == ty)
            .map(|t| t.moat)
        else {
            continue;
        };
        let verdicts = rt
            .verify_object(
                &bytes,
                ObjectOptions {
                    prog_type: Some(prog_type),
                },
            )
            .expect("the object parsed once already");
        for (i, (_, verdict)) in verdicts.into_iter().enumerate() {
            let wanted = matches!(&targets[i], Ok(t) if format!("{:?}", t.moat) == ty);
            if !wanted {
                continue;
            }
            moat.insert(
                i,
                match verdict {
                    Ok(v) => (Verdict::Accept, Some(v.elapsed())),
                    Err(moat::Error::Unresolved { symbol, .. }) => {
                        (Verdict::Reject(format!("unresolved:{symbol}")), None)
                    }
                    Err(moat::Error::Verify(r)) => {
                        (Verdict::Reject(one_line(&r.error.to_string())), None)
                    }
                    Err(e) => (Verdict::Reject(one_line(&e.to_string())), None),
                },
            );
        }
    }
    // The kernel: maps once per object.
    let maps: Vec<Result<moat_kernel::Map, String>> = object
        .maps
        .iter()
        .map(|m: &MapSpec| kernel_spec_map(m, &object.maps))
        .collect();
    let fds: Vec<i32> = maps
        .iter()
        .map(|m| m.as_ref().map_or(-1, moat_kernel::Map::fd))
        .collect();
    let license = object.license.clone().unwrap_or_else(|| "GPL".into());
    let mut cases = Vec::new();
    for (i, spec) in object.programs.iter().enumerate() {
        let mut case = Case {
            corpus,
            origin: origin.clone(),
            program: spec.name.clone(),
            insns: spec.insn_count,
            outcome: Outcome::Excluded(String::new()),
            moat_time: None,
            kernel_time: None,
        };
        let excluded = |why: String| Outcome::Excluded(why);
        case.outcome = match &targets[i] {
            Err(why) => excluded(why.clone()),
            Ok(_) if !spec.unresolved.is_empty() => {
                excluded("calls or loads an undefined symbol".into())
            }
            Ok(_) if calls_moat_helpers(&spec.bytecode) => {
                excluded("calls moat's own helpers (pool transactions)".into())
            }
            Ok(target) => {
                let bad_map = spec
                    .map_indices
                    .iter()
                    .find_map(|&m| maps.get(m).and_then(|r| r.as_ref().err()));
                if let Some(why) = bad_map {
                    excluded(why.clone())
                } else {
                    let kbytes = match moat_isa::decode(&spec.bytecode) {
                        Ok(insns) => {
                            let insns: Vec<Insn> = insns.into_iter().map(|(_, i)| i).collect();
                            kernel_insns(&insns, &fds, &[])
                        }
                        Err(_) => spec.bytecode.clone(),
                    };
                    match kernel_verdict(
                        &kbytes,
                        (target.kernel, target.attach),
                        &license,
                        object.kernel_version.unwrap_or(0),
                    ) {
                        Err(why) => excluded(why),
                        Ok((kernel, kernel_time)) => {
                            let (moat, moat_time) = moat
                                .get(&i)
                                .cloned()
                                .expect("moat verified every typed program");
                            case.moat_time = moat_time;
                            case.kernel_time = kernel_time;
                            Outcome::Compared { moat, kernel }
                        }
                    }
                }
            }
        };
        cases.push(case);
    }
    cases
}

/// The variant name of a parse error, for grouping exclusions.
fn error_kind(e: &moat::ObjError) -> String {
    format!("{e:?}")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn objects_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "o") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Runs `job` over `items` on every CPU.
fn parallel<T: Sync, R: Send>(items: &[T], job: impl Fn(&T) -> Vec<R> + Sync) -> Vec<R> {
    let next = Mutex::new(0usize);
    let results = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().expect("lock");
                    *n += 1;
                    *n - 1
                };
                let Some(item) = items.get(i) else { break };
                let out = job(item);
                results.lock().expect("lock").push((i, out));
            });
        }
    });
    let mut results = results.into_inner().expect("lock");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().flat_map(|(_, r)| r).collect()
}

/// The whole corpus, verified by both.
fn corpus(privileged: bool) -> Vec<Case> {
    let mode = if privileged {
        Verification::Privileged
    } else {
        Verification::Unprivileged
    };
    let mut cases: Vec<Case> = rule_files()
        .iter()
        .map(|p| rule_case(p, privileged))
        .collect();
    let examples = root().join("examples/c");
    let objects = shared().join("objects");
    let mut jobs: Vec<(&'static str, PathBuf, PathBuf)> = objects_in(&examples)
        .into_iter()
        .map(|p| ("examples", examples.clone(), p))
        .collect();
    jobs.extend(
        objects_in(&objects)
            .into_iter()
            .map(|p| ("objects", objects.clone(), p)),
    );
    cases.extend(parallel(&jobs, |(corpus, dir, path)| {
        object_cases(corpus, dir, path, mode)
    }));
    cases
}

// ------------------------------------------------------------------------------------------------
// Report

#[derive(Default)]
struct Row {
    programs: usize,
    excluded: usize,
    accept_accept: usize,
    reject_reject: usize,
    moat_only_reject: usize,
    kernel_only_reject: usize,
}

impl Row {
    fn add(&mut self, case: &Case) {
        self.programs += 1;
        match &case.outcome {
            Outcome::Excluded(_) => self.excluded += 1,
            Outcome::Compared { moat, kernel } => match (moat.accepted(), kernel.accepted()) {
                (true, true) => self.accept_accept += 1,
                (false, false) => self.reject_reject += 1,
                (false, true) => self.moat_only_reject += 1,
                (true, false) => self.kernel_only_reject += 1,
            },
        }
    }

    fn compared(&self) -> usize {
        self.accept_accept + self.reject_reject + self.moat_only_reject + self.kernel_only_reject
    }

    fn line(&self, name: &str) -> String {
        format!(
            "| {name:<16} | {:>8} | {:>8} | {:>8} | {:>9} | {:>9} | {:>9} | {:>11} |",
            self.programs,
            self.excluded,
            self.compared(),
            self.accept_accept,
            self.reject_reject,
            self.moat_only_reject,
            self.kernel_only_reject
        )
    }
}

fn percent(a: usize, b: usize) -> String {
    if b == 0 {
        "n/a".into()
    } else {
        format!("{:.1} %", 100.0 * a as f64 / b as f64)
    }
}

/// Prints the report and checks the disagreements against `allowed`; returns the mismatches.
fn report(title: &str, cases: &[Case], allowed: &[(&str, &str, &str)]) -> Vec<String> {
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    let mut total = Row::default();
    let mut exclusions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for c in cases {
        let row = match c.corpus {
            "objects" => c.origin.split('/').next().unwrap_or("objects"),
            other => other,
        };
        rows.entry(row).or_default().add(c);
        total.add(c);
        match &c.outcome {
            Outcome::Excluded(why) => exclusions
                .entry(why.clone())
                .or_default()
                .push(format!("{}:{}", c.origin, c.program)),
            Outcome::Compared { moat, kernel } if moat.accepted() != kernel.accepted() => {
                disagreements.push(c);
            }
            Outcome::Compared { .. } => {}
        }
    }
    println!("== {title}");
    println!(
        "| corpus           | programs | excluded | compared | both acc. | both rej. | moat only | kernel only |"
    );
    println!(
        "|------------------|----------|----------|----------|-----------|-----------|-----------|-------------|"
    );
    for (name, row) in &rows {
        println!("{}", row.line(name));
    }
    println!("{}", total.line("total"));
    println!(
        "agreement: {} of {} compared programs ({}); kernel rejections moat also rejects: {} of {} ({})",
        total.accept_accept + total.reject_reject,
        total.compared(),
        percent(total.accept_accept + total.reject_reject, total.compared()),
        total.reject_reject,
        total.reject_reject + total.kernel_only_reject,
        percent(
            total.reject_reject,
            total.reject_reject + total.kernel_only_reject
        )
    );
    let moat_total: Duration = cases.iter().filter_map(|c| c.moat_time).sum();
    let kernel_total: Duration = cases.iter().filter_map(|c| c.kernel_time).sum();
    println!(
        "time on the programs each accepted: moat {} ms verifying ({} build), the kernel {} ms in \
         BPF_PROG_LOAD",
        ms(moat_total),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        ms(kernel_total)
    );
    println!("excluded, by reason:");
    for (why, list) in &exclusions {
        let shown: Vec<&String> = list.iter().take(4).collect();
        println!(
            "  {:>4}  {why}: {}{}",
            list.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if list.len() > 4 { ", ..." } else { "" }
        );
    }
    if std::env::var_os("MOAT_KERNEL_VERIFIER_VERBOSE").is_some() {
        println!("every compared program:");
        for c in cases {
            if let Outcome::Compared { moat, kernel } = &c.outcome {
                println!(
                    "  {}:{}\n    moat:   {}\n    kernel: {}",
                    c.origin,
                    c.program,
                    moat.describe(),
                    kernel.describe()
                );
            }
        }
    }
    println!("disagreements ({}):", disagreements.len());
    let allowed_map: BTreeMap<(&str, &str), &str> =
        allowed.iter().map(|(o, p, why)| ((*o, *p), *why)).collect();
    let mut mismatches = Vec::new();
    let mut seen = BTreeSet::new();
    for c in &disagreements {
        let Outcome::Compared { moat, kernel } = &c.outcome else {
            continue;
        };
        let key = (c.origin.as_str(), c.program.as_str());
        seen.insert(key);
        let why = allowed_map.get(&key).copied();
        println!(
            "  {}:{} ({} insns)\n    moat:   {}\n    kernel: {}\n    why:    {}",
            c.origin,
            c.program,
            c.insns,
            moat.describe(),
            kernel.describe(),
            why.unwrap_or("NOT EXPLAINED")
        );
        if why.is_none() {
            mismatches.push(format!(
                "unexplained disagreement {}:{} (moat {}, kernel {})",
                c.origin,
                c.program,
                moat.describe(),
                kernel.describe()
            ));
        }
    }
    for (o, p, _) in allowed {
        if !seen.contains(&(*o, *p)) {
            mismatches.push(format!("listed disagreement {o}:{p} no longer happens"));
        }
    }
    mismatches
}

fn unavailable() -> Option<String> {
    if shared_dir().is_none() {
        return Some("no shared test data (see above)".into());
    }
    moat_kernel::available().err()
}

/// The shared test data folder, which [`unavailable`] found.
fn shared() -> PathBuf {
    shared_dir().unwrap_or_else(|| panic!("the shared test data folder vanished during the test"))
}

#[test]
fn moat_and_the_kernel_agree_as_root() {
    if let Some(reason) = unavailable() {
        println!("skipped: {reason}");
        return;
    }
    let cases = corpus(true);
    let mismatches = report(
        "privileged: moat privileged, the kernel as root",
        &cases,
        ROOT_DISAGREEMENTS,
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Runs in the child process with only CAP_BPF and CAP_NET_ADMIN.
fn unprivileged_child() {
    let cases = corpus(false);
    let mismatches = report(
        "unprivileged: moat unprivileged, the kernel with CAP_BPF + CAP_NET_ADMIN only",
        &cases,
        UNPRIVILEGED_DISAGREEMENTS,
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn moat_and_the_kernel_agree_unprivileged() {
    if std::env::var_os(UNPRIVILEGED_CHILD).is_some() {
        unprivileged_child();
        return;
    }
    if let Some(reason) = unavailable() {
        println!("skipped: {reason}");
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let output = std::process::Command::new("setpriv")
        .args([
            "--inh-caps=-all,+bpf,+net_admin",
            "--bounding-set=-all,+bpf,+net_admin",
            "--",
        ])
        .arg(exe)
        .args([
            "--exact",
            "moat_and_the_kernel_agree_unprivileged",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(UNPRIVILEGED_CHILD, "1")
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            println!("skipped: cannot run setpriv to drop capabilities: {e}");
            return;
        }
    };
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the unprivileged comparison failed"
    );
}

// ------------------------------------------------------------------------------------------------
// Speed (BENCHMARKS.md)

/// A generated XDP program of `blocks` diamonds (7 instructions each) over the first 64 bytes of the
/// packet, with a helper call every 100 blocks: over 10 000 instructions for 1500 blocks.
fn generated_program(blocks: usize) -> String {
    let mut s = String::from(
        "ldxw %r6, [%r1+0]\nldxw %r7, [%r1+4]\nmov %r2, %r6\nadd %r2, 64\njgt %r2, %r7, out\n\
         ldxdw %r8, [%r6+0]\n",
    );
    for i in 0..blocks {
        s.push_str(&format!(
            "ldxb %r9, [%r6+{}]\njgt %r9, {}, +3\nadd %r8, %r9\nmov %r9, 0\nja +2\nxor %r8, {i}\n\
             mov %r9, 0\n",
            (i * 13) % 64,
            (i * 37) % 256
        ));
        if i % 100 == 99 {
            s.push_str("call 7\nadd %r8, %r0\n");
        }
    }
    s.push_str("out:\nmov %r0, 2\nexit\n");
    s
}

/// One program to time: its bytecode (moat's map indices), moat's environment and the kernel's
/// program type.
struct SpeedCase {
    name: String,
    bytes: Vec<u8>,
    context: Context,
    maps: Vec<MapSpec>,
    kernel: KernelType,
    license: String,
}

fn speed_context(t: ProgType) -> Context {
    match t {
        ProgType::Xdp => Context::xdp(),
        ProgType::SchedCls => Context::sk_buff(true),
        ProgType::Tracing => Context::tracing(168),
        _ => Context::sk_buff(false),
    }
}

/// The speed cases of one object: its programs named in `only` (all when `None`).
fn object_speed_cases(
    corpus: &str,
    dir: &Path,
    path: &Path,
    only: Option<&[String]>,
) -> Vec<SpeedCase> {
    let origin = path
        .strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned();
    let Ok(object) = Object::parse(&std::fs::read(path).expect("readable")) else {
        return Vec::new();
    };
    let mut cases = Vec::new();
    for p in &object.programs {
        let name = format!("{origin}:{}", p.name);
        // Programs that call functions the object does not define reach neither verifier.
        if only.is_some_and(|o| !o.contains(&name)) || !p.unresolved.is_empty() {
            continue;
        }
        let Ok(t) = target(corpus, &origin, &p.section) else {
            continue;
        };
        cases.push(SpeedCase {
            name,
            bytes: p.bytecode.clone(),
            context: speed_context(t.moat),
            maps: object.maps.clone(),
            kernel: t.kernel,
            license: object.license.clone().unwrap_or_else(|| "GPL".into()),
        });
    }
    cases
}

/// The programs of BENCHMARKS.md: every example, every Cilium program of `../shared/objects`, the
/// largest OVS and Falco programs, the generated program and counted loops of 10^3, 10^4 and 10^5
/// iterations.
fn speed_cases() -> Vec<SpeedCase> {
    let examples = root().join("examples/c");
    let mut cases: Vec<SpeedCase> = objects_in(&examples)
        .iter()
        .flat_map(|p| object_speed_cases("examples", &examples, p, None))
        .collect();
    let objects = shared().join("objects");
    let in_corpus = |corpus: &str| -> Vec<SpeedCase> {
        objects_in(&objects.join(corpus))
            .into_iter()
            .flat_map(|p| object_speed_cases("objects", &objects, &p, None))
            .collect()
    };
    cases.extend(in_corpus("cilium"));
    cases.extend(in_corpus("cilium-core"));
    for corpus in ["ovs", "falco"] {
        if let Some(largest) = in_corpus(corpus).into_iter().max_by_key(|c| c.bytes.len()) {
            cases.push(largest);
        }
    }
    cases.push(generated_case());
    for n in [1_000, 10_000, 100_000] {
        cases.push(loop_case(n));
    }
    cases
}

/// A counted loop of `n` iterations (a sum of `i * 3`), as a C `for` loop compiles.
fn loop_case(n: u32) -> SpeedCase {
    let source = format!(
        "mov %r0, 0\nmov %r1, 0\nloop:\nmov %r2, %r1\nmul %r2, 3\nadd %r0, %r2\nadd %r1, 1\n\
         jlt %r1, {n}, loop\nexit\n"
    );
    SpeedCase {
        name: format!("generated loop ({n} iterations)"),
        bytes: moat_isa::assemble_bytes(&source).expect("loop assembles"),
        context: Context::xdp(),
        maps: Vec::new(),
        kernel: KernelType::Xdp,
        license: "GPL".into(),
    }
}

fn generated_case() -> SpeedCase {
    SpeedCase {
        name: "generated (1500 diamonds)".into(),
        bytes: moat_isa::assemble_bytes(&generated_program(1500))
            .expect("generated program assembles"),
        context: Context::xdp(),
        maps: Vec::new(),
        kernel: KernelType::Xdp,
        license: "GPL".into(),
    }
}

/// The speed case called `name` (for the memory-measuring child process).
fn speed_case_named(name: &str) -> Option<SpeedCase> {
    speed_cases().into_iter().find(|c| c.name == name)
}

/// moat's verdict on a speed case, with its statistics.
fn moat_verify_case(case: &SpeedCase) -> (bool, moat_verify::Stats, Duration) {
    let mut env = Env::new(case.context.clone());
    env.maps = case
        .maps
        .iter()
        .map(|m| MapInfo {
            name: m.name.clone(),
            map_type: m.map_type,
            key_size: m.key_size,
            value_size: m.value_size,
            max_entries: m.max_entries,
            read_only: m.flags & BPF_F_RDONLY_PROG != 0,
            atomic_in_place: false,
            inner: None,
        })
        .collect();
    let start = Instant::now();
    let Ok(program) = moat_isa::Program::new_for_verifier(&case.bytes) else {
        return (false, moat_verify::Stats::default(), start.elapsed());
    };
    match moat_verify::verify(&program, &env) {
        Ok(v) => (true, v.stats(), start.elapsed()),
        Err(r) => (false, r.stats, start.elapsed()),
    }
}

/// `VmHWM` (peak resident memory) of this process, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The kernel's statistics line ("processed N insns ... peak_states P ...") for a program.
fn kernel_stats(bytes: &[u8], case: &SpeedCase) -> (bool, String) {
    let mut options = LoadOptions::new(case.kernel);
    options.license = case.license.clone();
    options.log_level = 1;
    options.log_size = 16 << 20;
    let (ok, log) = match load_program(bytes, &options) {
        Ok(p) => (true, p.log().to_string()),
        Err(KernelError::Load { log, .. }) => (false, log),
        Err(e) => panic!("{e}"),
    };
    let stats = log
        .lines()
        .find(|l| l.starts_with("processed "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let get = |key: &str| {
                w.iter()
                    .position(|x| *x == key)
                    .and_then(|i| w.get(i + 1))
                    .copied()
                    .unwrap_or("?")
            };
            format!("{} / {}", get("processed"), get("peak_states"))
        })
        .unwrap_or_else(|| "?".into());
    (ok, stats)
}

#[test]
fn verification_speed() {
    if let Ok(name) = std::env::var(MEMORY_CHILD) {
        // Child: verify one case and report the growth of the peak resident set.
        let case = speed_case_named(&name).expect("known case");
        let before = peak_rss_kib();
        let _ = moat_verify_case(&case);
        println!("HWM {before} {}", peak_rss_kib());
        return;
    }
    if cfg!(debug_assertions) {
        println!("skipped: timings need a release build (cargo test --release)");
        return;
    }
    if let Some(reason) = unavailable() {
        println!("skipped: {reason}");
        return;
    }
    {
        use moat_verify::state::{Frame, Reg, Slot};
        use std::mem::size_of;
        println!(
            "moat's state sizes: Reg {} B, Slot {} B, Frame {} B + {} B of stack slots",
            size_of::<Reg>(),
            size_of::<Slot>(),
            size_of::<Frame>(),
            moat_verify::state::SLOTS * size_of::<Slot>()
        );
    }
    println!(
        "| program | insns | moat verdict | moat time (ms) | moat processed / peak states | \
         moat peak RSS growth (KiB) | kernel verdict | BPF_PROG_LOAD (ms) | kernel processed / peak states |"
    );
    println!("|---|---:|---|---:|---:|---:|---|---:|---:|");
    for case in speed_cases() {
        let runs: Vec<(bool, moat_verify::Stats, Duration)> =
            (0..5).map(|_| moat_verify_case(&case)).collect();
        let (moat_ok, stats, _) = runs[0];
        let moat_time = median(runs.iter().map(|r| r.2).collect());
        // The kernel, with the same maps.
        let maps: Vec<Result<moat_kernel::Map, String>> = case
            .maps
            .iter()
            .map(|m| kernel_spec_map(m, &case.maps))
            .collect();
        let fds: Vec<i32> = maps
            .iter()
            .map(|m| m.as_ref().map_or(-1, moat_kernel::Map::fd))
            .collect();
        let insns: Vec<Insn> = moat_isa::decode(&case.bytes)
            .expect("decodes")
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        let kbytes = kernel_insns(&insns, &fds, &[]);
        let mut kernel_times = Vec::new();
        for _ in 0..5 {
            let mut options = LoadOptions::new(case.kernel);
            options.license = case.license.clone();
            if let Ok(p) = load_program(&kbytes, &options) {
                kernel_times.push(p.load_time());
            }
        }
        let (kernel_ok, kernel_stat) = kernel_stats(&kbytes, &case);
        drop(maps);
        // moat's memory, in a fresh process.
        let hwm = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "verification_speed", "--nocapture"])
            .env(MEMORY_CHILD, &case.name)
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("HWM ").map(str::to_string))
            })
            .and_then(|l| {
                let mut w = l.split_whitespace().map(|n| n.parse::<u64>().ok());
                Some(w.next()??.abs_diff(w.next()??))
            })
            .map_or("?".into(), |d| d.to_string());
        let verdict = |ok: bool| if ok { "accept" } else { "reject" };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            case.name,
            case.bytes.len() / 8,
            verdict(moat_ok),
            ms(moat_time),
            if moat_ok {
                format!("{} / {}", stats.insns_processed, stats.peak_states)
            } else {
                "-".into()
            },
            hwm,
            verdict(kernel_ok),
            if kernel_times.is_empty() {
                "-".into()
            } else {
                ms(median(kernel_times))
            },
            kernel_stat
        );
    }
}
