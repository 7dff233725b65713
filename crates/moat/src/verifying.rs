//! Running the verifier on a program about to be loaded: the verifier's view of its context, maps
//! and helpers, built from the runtime's.

use crate::{Map, ProgType};
use moat_exec::HelperRegistry;
use moat_isa::Program;
use moat_verify::{Context, Env, HelperProto, MapInfo, Rejection, VerifiedProgram};
use std::collections::HashMap;

/// How strictly programs are checked before they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// Not at all: only the engines' run-time checks protect the host (`--no-verify`).
    Off,
    /// The rules of a privileged (root) loader, as real programs are written for.
    #[default]
    Privileged,
    /// The stricter rules of an unprivileged loader: no pointer leaks, no uninitialised stack reads,
    /// no pointer comparisons.
    Unprivileged,
}

/// The size of `struct pt_regs` on x86-64: the context of kprobes.
pub(crate) const PT_REGS_SIZE: u32 = moat_verify::PT_REGS_BYTES;

/// The verifier's context for a program type; buffer programs need the buffer's size, cgroup sock
/// programs the attach type their section names (`None`: the kernel's default).
pub(crate) fn context(prog_type: ProgType, buffer_size: u64, section: Option<&str>) -> Context {
    match prog_type {
        ProgType::Buffer => Context::Buffer { size: buffer_size },
        ProgType::Xdp => Context::xdp(),
        ProgType::SchedCls => Context::sk_buff(true),
        ProgType::SocketFilter | ProgType::CgroupSkb => Context::sk_buff(false),
        ProgType::Tracing => Context::tracing(PT_REGS_SIZE),
        ProgType::PerfEvent => Context::perf_event(),
        ProgType::SockOps => Context::sock_ops(),
        ProgType::CgroupSock => Context::sock(attach_type(section)),
        ProgType::CgroupSockAddr => Context::sock_addr(attach_type(section)),
        ProgType::LwtIn | ProgType::LwtOut => Context::lwt(false),
        ProgType::LwtXmit => Context::lwt(true),
        ProgType::CgroupDevice => Context::cgroup_dev(),
        ProgType::CgroupSysctl => Context::sysctl(),
        ProgType::SkMsg => Context::sk_msg(),
        ProgType::SkSkb => Context::sk_skb(),
    }
}

/// The attach type libbpf gives a program in `section`.
fn attach_type(section: Option<&str>) -> Option<moat_abi::AttachType> {
    section
        .and_then(moat_abi::section_def)
        .and_then(|d| d.attach_type)
}

/// The verifier's description of a map an object declares.
pub(crate) fn spec_info(spec: &moat_obj::MapSpec) -> MapInfo {
    MapInfo {
        name: spec.name.clone(),
        map_type: spec.map_type,
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        read_only: spec.flags & moat_abi::BPF_F_RDONLY_PROG != 0,
        atomic_in_place: false,
        inner: None,
    }
}

/// Points each map of maps among `specs` (whose descriptions are `infos`, in the same order) at
/// the map its values are like: another map of the object (a legacy inner map index), or its
/// BTF template, appended after the object's maps.
pub(crate) fn add_inner_maps(infos: &mut Vec<MapInfo>, specs: &[moat_obj::MapSpec]) {
    for (i, spec) in specs.iter().enumerate() {
        let inner = match &spec.inner_map {
            Some(moat_obj::InnerMap::Map(k)) => Some(*k),
            Some(moat_obj::InnerMap::Template(t)) => {
                infos.push(spec_info(t));
                Some(infos.len() - 1)
            }
            None => None,
        };
        if let Some(info) = infos.get_mut(i) {
            info.inner = inner;
        }
    }
}

/// The verifier's description of a map.
pub(crate) fn map_info(map: &Map) -> MapInfo {
    let def = map.def();
    MapInfo {
        name: map.name().to_string(),
        map_type: map.map_type().as_u32(),
        key_size: def.key_size,
        value_size: def.value_size,
        max_entries: def.max_entries,
        read_only: def.flags & moat_abi::BPF_F_RDONLY_PROG != 0,
        atomic_in_place: !map.atomic_windows().is_empty(),
        inner: None,
    }
}

/// The kernel program type whose helper rules (which helpers, which only for GPL-compatible
/// programs) apply to a program type; none for moat's generic buffer programs. Tracing programs
/// follow kprobes' (uprobes are kprobe programs in the kernel; tracepoints differ from them in no
/// helper moat runs).
pub(crate) fn kernel_type(prog_type: ProgType) -> Option<moat_abi::ProgType> {
    use moat_abi::ProgType as K;
    match prog_type {
        ProgType::Buffer => None,
        ProgType::Xdp => Some(K::Xdp),
        ProgType::SchedCls => Some(K::SchedCls),
        ProgType::SocketFilter => Some(K::SocketFilter),
        ProgType::CgroupSkb => Some(K::CgroupSkb),
        ProgType::Tracing => Some(K::Kprobe),
        ProgType::PerfEvent => Some(K::PerfEvent),
        // moat_abi's helper table has no column for it: no per-type helper rule applies.
        ProgType::SockOps => Some(K::SockOps),
        ProgType::CgroupSock => Some(K::CgroupSock),
        ProgType::CgroupSockAddr => Some(K::CgroupSockAddr),
        ProgType::LwtIn => Some(K::LwtIn),
        ProgType::LwtOut => Some(K::LwtOut),
        ProgType::LwtXmit => Some(K::LwtXmit),
        ProgType::CgroupDevice => Some(K::CgroupDevice),
        ProgType::CgroupSysctl => Some(K::CgroupSysctl),
        ProgType::SkMsg => Some(K::SkMsg),
        ProgType::SkSkb => Some(K::SkSkb),
    }
}

/// What an object says about one of its programs besides its bytecode and type: its license
/// (GPL-only helpers need a GPL-compatible one) and its section (which names the attach type).
/// Bytecode loaded on its own has neither: its loader would state the license to the kernel, so
/// it may call GPL-only helpers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ObjectFacts<'a> {
    /// The object's `license` section.
    pub license: Option<&'a str>,
    /// The program's section name.
    pub section: Option<&'a str>,
}

impl ObjectFacts<'_> {
    fn gpl_compatible(&self) -> bool {
        self.license.is_none_or(moat_abi::license_is_gpl_compatible)
    }

    /// What the program may return, from its kernel type and the attach type its section names.
    fn return_range(&self, prog_type: ProgType) -> Option<(u64, u64)> {
        kernel_type(prog_type)?.return_range(attach_type(self.section))
    }
}

/// Verifies `program` of `prog_type` (`Off` is treated as privileged: callers skip verification
/// themselves).
#[expect(
    clippy::too_many_arguments,
    reason = "what the verifier is told about one program, passed once"
)]
pub(crate) fn verify(
    program: &Program,
    mode: Verification,
    (prog_type, facts): (ProgType, ObjectFacts<'_>),
    context: Context,
    maps: Vec<MapInfo>,
    helpers: &HelperRegistry,
    embedder_protos: &HashMap<u32, HelperProto>,
    log: bool,
) -> Result<VerifiedProgram, Box<Rejection>> {
    let protos = |id: u32| {
        embedder_protos
            .get(&id)
            .cloned()
            .or_else(|| HelperProto::kernel(id))
            .or_else(|| crate::pooled::proto(id))
            .or_else(|| helpers.get(id).map(|h| HelperProto::opaque(&h.name)))
    };
    let env = Env {
        context,
        maps,
        helpers: &protos,
        privileged: mode != Verification::Unprivileged,
        complexity_limit: moat_abi::COMPLEXITY_LIMIT_INSNS,
        log,
        kernel_type: kernel_type(prog_type),
        gpl_compatible: facts.gpl_compatible(),
        return_range: facts.return_range(prog_type),
    };
    moat_verify::verify(program, &env)
}

/// Software fault isolation of a program's proven accesses in `domain` (`sfi`): the arena holds
/// its maps, buffer and tracing contexts and ring buffer records; packet programs' contexts and
/// packets live in the domain's low area.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) fn confinement(
    prog_type: ProgType,
    domain: Option<&moat_isolate::Domain>,
) -> Result<moat_jit::Sfi, crate::Error> {
    use moat_jit::{Sfi, Zone};
    let Some(domain) = domain else {
        // Nothing is in a domain: every proven access is checked completely.
        let nowhere = Zone {
            start: 0,
            len: 0,
            guard: 0,
        };
        return Ok(Sfi {
            arena: nowhere,
            context_and_packet: nowhere,
        });
    };
    let arena = Zone {
        start: domain.base(),
        len: domain.size(),
        guard: moat_isolate::GUARD as u64,
    };
    let context_and_packet = if prog_type.is_packet() {
        let (start, len) = domain.low_area_range()?;
        Zone {
            start,
            len,
            guard: 0,
        }
    } else {
        arena
    };
    Ok(Sfi {
        arena,
        context_and_packet,
    })
}
