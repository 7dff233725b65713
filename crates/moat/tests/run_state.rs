//! What JIT runs keep across runs on one thread (issue 16, Deliver 5; issue 14's probe costs): the
//! eBPF stack is zeroed only as deep as the programs that ran last could write it, yet no run
//! sees another program's stack data; and map lookups whose map and key the verifier proved
//! take the helper's direct form, with the helper's results.

use moat::{Engine, Map, MapDef, MapType, ProgType, Runtime, Verification, BPF_ANY};
use std::sync::Arc;

/// A verified buffer program's runtime (8-byte inputs).
fn verified() -> Runtime {
    let mut rt = Runtime::new();
    rt.set_buffer_size(8);
    rt
}

fn run(prog: &moat::LoadedProgram) -> u64 {
    prog.run(&mut [0u8; 8]).expect("runs")
}

#[test]
fn no_run_sees_stack_data_another_program_left() {
    let verified = verified();
    let mut unverified = Runtime::new();
    unverified.set_verification(Verification::Off);
    // Writes a secret 8 and 512 bytes below the frame pointer: its proven extent is 512.
    let deep = verified
        .load_asm(
            "lddw %r1, 0x5ec2e7\nstxdw [%r10-8], %r1\nstxdw [%r10-512], %r1\nmov %r0, 0\nexit",
        )
        .expect("loads");
    // Writes 8 bytes deep only.
    let shallow = verified
        .load_asm("stdw [%r10-8], 7\nmov %r0, 0\nexit")
        .expect("loads");
    // Unverified: reads what lies on the stack without writing it first.
    let reader = unverified
        .load_asm(
            "ldxdw %r0, [%r10-512]\nldxdw %r1, [%r10-8]\nor %r0, %r1\nldxdw %r1, [%r10-256]\nor %r0, %r1\nexit",
        )
        .expect("loads");
    for p in [&deep, &shallow, &reader] {
        assert_eq!(p.engine(), Engine::Jit);
    }
    // The deep writer, then the reader straight after it.
    assert_eq!(run(&deep), 0);
    assert_eq!(
        run(&reader),
        0,
        "the secret was zeroed before another program ran"
    );
    // The deep writer, then a shallow one (which zeroes the 512 bytes before it runs and may
    // leave 8), then the reader.
    assert_eq!(run(&deep), 0);
    assert_eq!(run(&shallow), 0);
    assert_eq!(run(&reader), 0, "neither program's data reaches the reader");
    // The same program again sees its own stack (nothing else ran on the thread meanwhile).
    let own = verified
        .load_asm("stdw [%r10-8], 9\nldxdw %r0, [%r10-8]\nexit")
        .expect("loads");
    assert_eq!(run(&own), 9);
    assert_eq!(run(&own), 9);
    assert_eq!(run(&reader), 0);
}

/// Looks up the u32 key `key` (on the stack) in map 0: the value's first u64, or `u64::MAX`
/// where there is none.
fn lookup_source(key: u32) -> String {
    format!(
        "stw [%r10-4], {key}\nlddw %r1, map_idx(0)\nmov %r2, %r10\nadd %r2, -4\ncall 1\n\
         jeq %r0, 0, miss\nldxdw %r0, [%r0]\nexit\nmiss:\nmov %r0, -1\nexit"
    )
}

#[test]
fn proven_lookups_find_what_the_helper_finds() {
    for map_type in [MapType::Hash, MapType::LruHash, MapType::Array] {
        let mut results = Vec::new();
        for engine in [Engine::Jit, Engine::Interp] {
            let mut rt = verified();
            rt.set_engine(engine);
            let map: Arc<Map> = rt.create_map(MapDef::new(map_type, 4, 8, 16)).expect("map");
            for k in (0u32..16).step_by(3) {
                map.update(
                    &k.to_ne_bytes(),
                    &(u64::from(k) * 100 + 1).to_ne_bytes(),
                    BPF_ANY,
                )
                .expect("update");
            }
            let found: Vec<u64> = [0u32, 1, 3, 15, 16, 1000]
                .iter()
                .map(|&k| {
                    let bytes = moat_isa::assemble_bytes(&lookup_source(k)).expect("assembles");
                    let prog = rt
                        .load_with_maps(&bytes, ProgType::Buffer, std::slice::from_ref(&map))
                        .expect("loads");
                    assert_eq!(prog.engine(), engine);
                    run(&prog)
                })
                .collect();
            results.push(found);
        }
        assert_eq!(
            results[0], results[1],
            "{map_type:?}: JIT against interpreter"
        );
        let expected = if map_type == MapType::Array {
            vec![1, 0, 301, 1501, u64::MAX, u64::MAX]
        } else {
            vec![1, u64::MAX, 301, 1501, u64::MAX, u64::MAX]
        };
        assert_eq!(results[0], expected, "{map_type:?}");
    }
}
