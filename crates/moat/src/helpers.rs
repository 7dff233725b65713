//! moat's standard helper functions, under the Linux kernel's numeric ids and with its semantics.

use moat_interp::HelperRegistry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// `bpf_ktime_get_ns`.
pub const KTIME_GET_NS: u32 = 5;
/// `bpf_get_prandom_u32`.
pub const GET_PRANDOM_U32: u32 = 7;
/// `bpf_get_smp_processor_id`.
pub const GET_SMP_PROCESSOR_ID: u32 = 8;

fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A xorshift generator shared by all programs; `bpf_get_prandom_u32` is not cryptographic either.
fn prandom_u32() -> u32 {
    static STATE: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut x = STATE.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 32) as u32
}

/// Registers the helpers that need no maps.
pub fn register_standard(registry: &mut HelperRegistry) {
    registry.register(KTIME_GET_NS, "bpf_ktime_get_ns", |_, _| Ok(monotonic_ns()));
    registry.register(GET_PRANDOM_U32, "bpf_get_prandom_u32", |_, _| {
        Ok(u64::from(prandom_u32()))
    });
    registry.register(GET_SMP_PROCESSOR_ID, "bpf_get_smp_processor_id", |_, _| {
        Ok(0)
    });
}
