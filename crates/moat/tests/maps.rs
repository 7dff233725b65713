//! Programs using maps through the helpers, with host-created maps: kernel semantics seen from both
//! sides, and handles and pointers that cannot be forged.

use moat::{Error, HelperError, Map, MapDef, MapType, ProgType, RunErrorKind, Runtime, BPF_ANY};
use std::sync::Arc;

fn load(rt: &Runtime, src: &str, maps: &[Arc<Map>]) -> moat::LoadedProgram {
    let bytes = moat_isa::assemble_bytes(src).expect("assembles");
    rt.load_with_maps(&bytes, ProgType::Buffer, maps)
        .expect("loads")
}

/// Increments the u64 counter stored under the u32 key at the start of the input.
const COUNT: &str = "
    mov %r6, %r1
    lddw %r1, map_idx(0)
    mov %r2, %r6
    call 1
    jeq %r0, 0, insert
    lock add [%r0], %r7
    ldxdw %r0, [%r0]
    exit
insert:
    stdw [%r10-8], 1
    lddw %r1, map_idx(0)
    mov %r2, %r6
    mov %r3, %r10
    add %r3, -8
    mov %r4, 1
    call 2
    exit
";

#[test]
fn a_hash_map_counts_across_runs_and_the_host_sees_it() {
    let rt = Runtime::new();
    let map = rt
        .create_map(MapDef::new(MapType::Hash, 4, 8, 16).with_name("counts"))
        .expect("map");
    let src = COUNT.replace("mov %r6, %r1", "mov %r6, %r1\nmov %r7, 1");
    let prog = load(&rt, &src, std::slice::from_ref(&map));
    for _ in 0..3 {
        prog.run(&mut 7u32.to_ne_bytes()).expect("runs");
    }
    prog.run(&mut 9u32.to_ne_bytes()).expect("runs");
    assert_eq!(
        map.lookup(&7u32.to_ne_bytes()).expect("present"),
        3u64.to_ne_bytes()
    );
    assert_eq!(
        map.lookup(&9u32.to_ne_bytes()).expect("present"),
        1u64.to_ne_bytes()
    );
}

#[test]
fn forged_map_handles_are_refused_by_the_helper() {
    let rt = Runtime::new();
    let map = rt
        .create_map(MapDef::new(MapType::Array, 4, 8, 1))
        .expect("map");
    // Index 1 does not exist in this program's table; a raw number is no handle at all.
    for handle in ["lddw %r1, 0x6d61700000000001", "mov %r1, 12345"] {
        let src = format!("{handle}\nstw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\nexit");
        let prog = load(&rt, &src, std::slice::from_ref(&map));
        let err = prog.run(&mut []).expect_err("forged handle");
        let Error::Run(run) = err else {
            panic!("{err:?}")
        };
        assert!(matches!(
            run.kind,
            RunErrorKind::Helper {
                id: 1,
                source: HelperError::BadArgument { arg: 1, .. },
                ..
            }
        ));
    }
}

#[test]
fn global_data_is_reached_directly_and_read_only_data_stays_read_only() {
    let rt = Runtime::new();
    let data = rt
        .create_map(MapDef::new(MapType::Array, 4, 16, 1).with_name(".data"))
        .expect("map");
    data.update(&0u32.to_ne_bytes(), &[5u8; 16], BPF_ANY)
        .expect("init");
    let rodata = rt
        .create_map(
            MapDef::new(MapType::Array, 4, 8, 1)
                .with_name(".rodata")
                .with_flags(moat::BPF_F_RDONLY_PROG),
        )
        .expect("map");
    let prog = load(
        &rt,
        "lddw %r1, map_idx_value(0, 8)\nldxb %r0, [%r1]\nstb [%r1+1], 9\nexit",
        std::slice::from_ref(&data),
    );
    assert_eq!(prog.run(&mut []).expect("runs"), 5);
    assert_eq!(data.lookup(&0u32.to_ne_bytes()).expect("value")[9], 9);
    let prog = load(
        &rt,
        "lddw %r1, map_idx_value(0, 0)\nstb [%r1], 1\nmov %r0, 0\nexit",
        &[rodata],
    );
    let err = prog.run(&mut []).expect_err("read-only");
    assert!(
        matches!(err, Error::Run(ref r) if matches!(r.kind, RunErrorKind::OutOfBounds { write: true, .. }))
    );
}

#[test]
fn queues_ring_buffers_and_loops_work_from_programs() {
    let rt = Runtime::new();
    let queue = rt
        .create_map(MapDef::new(MapType::Queue, 0, 8, 4))
        .expect("queue");
    let ring = rt
        .create_map(MapDef::new(MapType::RingBuf, 0, 0, 4096))
        .expect("ringbuf");
    // Push 1..=3 with bpf_loop, pop one, emit it through the ring buffer.
    let src = "
        mov %r1, 3
        lddw %r2, code(push)
        mov %r3, 0
        mov %r4, 0
        call 181
        lddw %r1, map_idx(0)
        mov %r2, %r10
        add %r2, -8
        call 88
        lddw %r1, map_idx(1)
        mov %r2, %r10
        add %r2, -8
        mov %r3, 8
        mov %r4, 0
        call 130
        exit
    push:
        add %r1, 1
        stxdw [%r10-8], %r1
        lddw %r1, map_idx(0)
        mov %r2, %r10
        add %r2, -8
        mov %r3, 0
        call 87
        mov %r0, 0
        exit";
    let prog = load(&rt, src, &[queue.clone(), ring.clone()]);
    assert_eq!(prog.run(&mut []).expect("runs"), 0);
    let mut events = Vec::new();
    ring.ringbuf_consume(&mut |rec| events.push(rec.to_vec()))
        .expect("consume");
    assert_eq!(events, vec![1u64.to_ne_bytes().to_vec()]);
    assert_eq!(queue.pop().expect("2 left"), 2u64.to_ne_bytes());
}

#[test]
fn tail_calls_go_through_a_prog_array() {
    let rt = Runtime::new();
    let progs = rt
        .create_map(MapDef::new(MapType::ProgArray, 4, 4, 4))
        .expect("prog array");
    let target = load(&rt, "mov %r0, 42\nexit", &[]);
    progs
        .update(&1u32.to_ne_bytes(), &target.id().to_ne_bytes(), BPF_ANY)
        .expect("set");
    let src = "mov %r6, %r1\nlddw %r2, map_idx(0)\nmov %r3, %r6\ncall 12\nmov %r0, 7\nexit";
    let caller = load(
        &rt,
        &src.replace("mov %r3, %r6", "mov %r3, 1"),
        std::slice::from_ref(&progs),
    );
    assert_eq!(
        caller.run(&mut []).expect("runs"),
        42,
        "slot 1 holds the target"
    );
    let caller = load(&rt, &src.replace("mov %r3, %r6", "mov %r3, 2"), &[progs]);
    assert_eq!(
        caller.run(&mut []).expect("runs"),
        7,
        "an empty slot falls through"
    );
}

#[test]
fn tail_calls_go_only_to_programs_the_callers_context_fits() {
    // A tail call runs its target on the caller's context, with the target's proven accesses
    // unchecked where there is no isolation: a target of another type (a tracing program reading
    // `pt_regs` from an XDP program's 24-byte `xdp_md`) is refused, as the kernel's prog_array
    // keeps one program type.
    for engine in [moat::Engine::Interp, moat::Engine::Jit] {
        let mut rt = Runtime::new();
        rt.set_engine(engine);
        rt.set_isolation(moat::Isolation::None);
        let progs = rt
            .create_map(MapDef::new(MapType::ProgArray, 4, 4, 4))
            .expect("prog array");
        let load_as = |src: &str, ty: ProgType, maps: &[Arc<Map>]| {
            let bytes = moat_isa::assemble_bytes(src).expect("assembles");
            rt.load_with_maps(&bytes, ty, maps).expect("loads")
        };
        // Reads the last register of `pt_regs`: verified, so unchecked by the JIT.
        let regs = load_as("ldxdw %r0, [%r1+160]\nexit", ProgType::Tracing, &[]);
        let xdp = load_as("mov %r0, 3\nexit", ProgType::Xdp, &[]);
        let call = "lddw %r2, map_idx(0)\nmov %r3, 0\ncall 12\nmov %r0, 7\nexit";
        let from_xdp = load_as(call, ProgType::Xdp, std::slice::from_ref(&progs));
        let from_tracing = load_as(call, ProgType::Tracing, std::slice::from_ref(&progs));
        let set = |target: &moat::LoadedProgram| {
            progs
                .update(&0u32.to_ne_bytes(), &target.id().to_ne_bytes(), BPF_ANY)
                .expect("set");
        };
        let mut packet = [0u8; 64];
        let mut pt_regs = [0u8; 168];
        pt_regs[160..].copy_from_slice(&5u64.to_le_bytes());
        set(&xdp);
        assert_eq!(from_xdp.run(&mut packet).expect("xdp to xdp"), 3);
        set(&regs);
        assert_eq!(from_tracing.run(&mut pt_regs).expect("tracing"), 5);
        match from_xdp.run(&mut packet) {
            Err(Error::Run(e)) => match &e.kind {
                RunErrorKind::Helper {
                    source: HelperError::BadArgument { arg: 3, reason },
                    ..
                } => assert!(
                    reason.contains("Tracing program") && reason.contains("Xdp program"),
                    "{engine:?}: {reason}"
                ),
                other => panic!("{engine:?}: {other:?}"),
            },
            other => panic!("{engine:?}: expected a refused tail call, got {other:?}"),
        }
    }
}

#[test]
fn proven_map_updates_keep_the_helpers_semantics_on_every_engine() {
    // A verified program's update with its map, key and value proven becomes a direct call into
    // the map under the JIT: flags, errors and the stored value must stay the helper's.
    // `bpf_map_update_elem(map, &key (fp-4), &value (fp-16), flags)`, its result kept in `save`.
    let update = |flags: u32, save: &str| {
        format!(
            "lddw %r1, map_idx(0)\nmov %r2, %r10\nadd %r2, -4\nmov %r3, %r10\nadd %r3, -16\n\
             mov %r4, {flags}\ncall 2\nmov {save}, %r0\n"
        )
    };
    let src = format!(
        "stw [%r10-4], 1\nstdw [%r10-16], 77\n{}{}stw [%r10-4], 2\n{}{}{}",
        update(1, "%r6"),
        update(1, "%r7"),
        update(2, "%r8"),
        update(9, "%r0"),
        "
        and %r0, 0xff
        and %r6, 0xff
        lsh %r6, 24
        or %r0, %r6
        and %r7, 0xff
        lsh %r7, 16
        or %r0, %r7
        and %r8, 0xff
        lsh %r8, 8
        or %r0, %r8
        exit"
    );
    let mut results = Vec::new();
    for engine in [moat::Engine::Interp, moat::Engine::Jit] {
        for isolation in [moat::Isolation::None, moat::Isolation::Sfi] {
            let mut rt = Runtime::new();
            rt.set_engine(engine);
            rt.set_isolation(isolation);
            rt.set_buffer_size(0);
            let map = rt
                .create_map(MapDef::new(MapType::Hash, 4, 8, 4))
                .expect("hash");
            let prog = load(&rt, &src, std::slice::from_ref(&map));
            let r0 = prog.run(&mut []).expect("runs");
            assert_eq!(
                map.lookup(&1u32.to_ne_bytes()).expect("key 1 stored"),
                77u64.to_ne_bytes(),
                "{engine:?} {isolation:?}"
            );
            assert!(
                map.lookup(&2u32.to_ne_bytes()).is_err(),
                "BPF_EXIST on an absent key and bad flags store nothing ({engine:?} {isolation:?})"
            );
            results.push(r0);
        }
    }
    // The low bytes of the four results: NOEXIST on a new key, 0; again, -EEXIST (0xef); EXIST on
    // an absent key, -ENOENT (0xfe); unknown flags, -EINVAL (0xea).
    let expected = (0xef << 16) | (0xfe << 8) | 0xea;
    assert_eq!(results, vec![expected; 4]);
}
