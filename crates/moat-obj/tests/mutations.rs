//! Property: flipping or truncating random bytes of real objects never makes `Object::parse` panic
//! (it may load or refuse). Skips when the shared objects folder is missing.

mod common;

use moat_obj::Object;
use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// A few small real objects covering legacy maps, BTF maps, line info, bpf-to-bpf calls, map-in-map,
/// global data and CO-RE records.
const SAMPLES: &[&str] = &[
    "new_linux/sockex1_kern.o",
    "linux/sockex3_kern.o",
    "build/bpf2bpf.o",
    "build/map_in_map.o",
    "build/global_variable.o",
    "cilium-examples/tcprtt_bpf_bpfel.o",
];

fn samples() -> &'static [Vec<u8>] {
    static CELL: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CELL.get_or_init(|| SAMPLES.iter().filter_map(|s| common::real(s)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn mutated_objects_never_panic(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        tail_flips in prop::collection::vec((0usize..1024, any::<u8>()), 0..8),
        truncate in prop::option::weighted(0.2, any::<prop::sample::Index>()),
    ) {
        let samples = samples();
        if samples.is_empty() {
            return Ok(());
        }
        let mut bytes = which.get(samples).clone();
        let len = bytes.len();
        for (at, v) in flips {
            bytes[at.index(len)] ^= v;
        }
        // The section header table sits at the end of these files: hit it more often.
        for (back, v) in tail_flips {
            if back < len {
                bytes[len - 1 - back] = v;
            }
        }
        if let Some(t) = truncate {
            bytes.truncate(t.index(len));
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| Object::parse(&bytes).map(|_| ())));
        prop_assert!(outcome.is_ok(), "parse panicked");
    }
}
