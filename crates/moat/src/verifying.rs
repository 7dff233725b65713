//! Running the verifier on a program about to be loaded: the verifier's view of its context, maps
//! and helpers, built from the runtime's.

use crate::{Map, ProgType};
use moat_interp::HelperRegistry;
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
const PT_REGS_SIZE: u32 = 168;

/// The verifier's context for a program type; buffer programs need the buffer's size.
pub(crate) fn context(prog_type: ProgType, buffer_size: u64) -> Context {
    match prog_type {
        ProgType::Buffer => Context::Buffer { size: buffer_size },
        ProgType::Xdp => Context::xdp(),
        ProgType::SchedCls => Context::sk_buff(true),
        ProgType::SocketFilter | ProgType::CgroupSkb => Context::sk_buff(false),
        ProgType::Tracing => Context::tracing(PT_REGS_SIZE),
    }
}

/// The verifier's description of a map an object declares.
pub(crate) fn spec_info(spec: &moat_obj::MapSpec) -> MapInfo {
    MapInfo {
        name: spec.name.clone(),
        map_type: spec.map_type,
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        read_only: spec.flags & moat_maps::BPF_F_RDONLY_PROG != 0,
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
        read_only: def.flags & moat_maps::BPF_F_RDONLY_PROG != 0,
    }
}

/// Verifies `program` (`Off` is treated as privileged: callers skip verification themselves).
pub(crate) fn verify(
    program: &Program,
    mode: Verification,
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
        complexity_limit: moat_verify::env::DEFAULT_COMPLEXITY_LIMIT,
        log,
    };
    moat_verify::verify(program, &env)
}

/// Software fault isolation of a program's proven accesses in `domain` (`sfi`): each is checked
/// first against the part of the domain the verifier says it touches — the stack window for stack
/// accesses, the domain's low area for the context and packet of packet programs, the arena for
/// everything else (maps, buffer and tracing contexts, ring buffer records) — and completely when
/// that fails. Accesses the verifier did not record (none, unless a verifier bug is simulated)
/// try the arena first.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) fn confinement(
    program: &Program,
    prog_type: ProgType,
    verified: Option<&VerifiedProgram>,
    domain: Option<&moat_isolate::Domain>,
) -> Result<moat_jit::Sfi, crate::Error> {
    use moat_jit::{FirstCheck, Zone};
    use moat_verify::state::Region;
    let Some(domain) = domain else {
        return Ok(moat_jit::Sfi::new(Vec::new(), FirstCheck::Stack));
    };
    let arena = FirstCheck::Zone(Zone {
        start: domain.base(),
        len: domain.size(),
    });
    let low = if prog_type.is_packet() {
        let (start, len) = domain.low_area_range()?;
        FirstCheck::Zone(Zone { start, len })
    } else {
        arena
    };
    let by_slot = (0..program.slots())
        .map(|slot| {
            let accesses = verified.and_then(|v| v.facts().accesses.get(&slot));
            let regions = || accesses.into_iter().flatten().map(|a| a.region);
            if accesses.is_none_or(|a| a.is_empty()) {
                arena
            } else if regions().all(|r| matches!(r, Region::Stack { .. })) {
                FirstCheck::Stack
            } else if regions().all(|r| {
                matches!(
                    r,
                    Region::Ctx | Region::Packet { .. } | Region::PacketEnd | Region::PacketMeta
                )
            }) {
                low
            } else {
                arena
            }
        })
        .collect();
    Ok(moat_jit::Sfi::new(by_slot, arena))
}
