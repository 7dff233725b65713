//! Running the verifier on a program about to be loaded: the verifier's view of its context, maps
//! and helpers, built from the runtime's.

use crate::{Map, ProgType};
use moat_interp::HelperRegistry;
use moat_isa::Program;
use moat_verify::{Context, Env, HelperProto, MapInfo, Rejection, VerifiedProgram};
use std::sync::Arc;

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

/// Verifies `program`; `None` when verification is off.
pub(crate) fn verify(
    program: &Program,
    mode: Verification,
    context: Context,
    maps: &[Arc<Map>],
    helpers: &HelperRegistry,
    log: bool,
) -> Result<Option<VerifiedProgram>, Box<Rejection>> {
    if mode == Verification::Off {
        return Ok(None);
    }
    let protos = |id: u32| {
        HelperProto::kernel(id).or_else(|| helpers.get(id).map(|h| HelperProto::opaque(&h.name)))
    };
    let env = Env {
        context,
        maps: maps.iter().map(|m| map_info(m)).collect(),
        helpers: &protos,
        privileged: mode == Verification::Privileged,
        complexity_limit: moat_verify::env::DEFAULT_COMPLEXITY_LIMIT,
        log,
    };
    moat_verify::verify(program, &env).map(Some)
}
