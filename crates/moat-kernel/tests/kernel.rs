//! Round trips through the real kernel. Each test prints `skipped: <reason>` and passes when `bpf()`
//! is unavailable (no privileges, seccomp, no kernel support).

use moat_kernel::{
    available, create_map, load_program, possible_cpus, KernelError, LoadOptions, MapOp, MapType,
    ProgType, BPF_ANY, BPF_NOEXIST,
};

macro_rules! require_kernel {
    () => {
        if let Err(reason) = available() {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

fn asm(src: &str) -> Vec<u8> {
    moat_isa::assemble_bytes(src).expect("assembles")
}

#[test]
fn returns_constant() {
    require_kernel!();
    let prog = load_program(
        &asm("mov %r0, 42\nexit"),
        &LoadOptions::new(ProgType::SocketFilter),
    )
    .expect("loads");
    assert_eq!(prog.prog_type(), ProgType::SocketFilter);
    assert!(prog.fd() >= 0);
    assert!(prog.log().is_empty());
    let run = prog.test_run(&[0u8; 64], None, 100).expect("runs");
    assert_eq!(run.retval, 42);
    assert_eq!(run.ctx_out, None);
    assert!(!run.data_out.is_empty());
}

#[test]
fn log_on_success_when_asked() {
    require_kernel!();
    let opts = LoadOptions {
        log_level: 2,
        ..LoadOptions::new(ProgType::SocketFilter)
    };
    let prog = load_program(&asm("mov %r0, 1\nexit"), &opts).expect("loads");
    assert!(prog.log().contains("processed 2 insns"), "{}", prog.log());
    assert!(prog.load_time() > std::time::Duration::ZERO);
}

#[test]
fn xdp_reads_packet_byte() {
    require_kernel!();
    let src = "
        ldxw %r2, [%r1]
        ldxw %r3, [%r1+4]
        mov %r4, %r2
        add %r4, 4
        jgt %r4, %r3, out
        ldxb %r0, [%r2+3]
        exit
    out:
        mov %r0, 255
        exit";
    let prog = load_program(&asm(src), &LoadOptions::new(ProgType::Xdp)).expect("loads");
    let mut packet = [0u8; 64];
    packet[3] = 0x2a;
    let run = prog.test_run(&packet, None, 10).expect("runs");
    assert_eq!(run.retval, 0x2a);
    assert_eq!(run.data_out, packet);
}

#[test]
fn rejection_carries_verifier_log() {
    require_kernel!();
    let err = load_program(&asm("exit"), &LoadOptions::new(ProgType::SocketFilter))
        .expect_err("r0 is never set");
    match &err {
        KernelError::Load { errno, log } => {
            assert_eq!(*errno, libc::EACCES);
            assert!(log.contains("R0 !read_ok"), "{log}");
        }
        other => panic!("expected Load, got {other:?}"),
    }
    assert!(err.to_string().contains("R0 !read_ok"));

    let err = load_program(
        &asm("mov %r0, %r3\nexit"),
        &LoadOptions::new(ProgType::SocketFilter),
    )
    .expect_err("r3 is uninitialised");
    assert!(
        matches!(&err, KernelError::Load { log, .. } if log.contains("R3 !read_ok")),
        "{err}"
    );
}

#[test]
fn odd_length_program_is_refused_locally() {
    let err = load_program(&[0x95, 0, 0], &LoadOptions::default()).expect_err("not 8-aligned");
    assert!(matches!(
        err,
        KernelError::BadLength {
            expected: 8,
            found: 3,
            ..
        }
    ));
}

#[test]
fn hash_map_round_trip() {
    require_kernel!();
    let map = create_map(MapType::Hash, 4, 8, 16, 0).expect("creates");
    assert_eq!((map.key_size(), map.value_buf_size()), (4, 8));
    let (k1, k2) = (1u32.to_ne_bytes(), 2u32.to_ne_bytes());
    assert_eq!(map.lookup(&k1).expect("lookup"), None);
    assert_eq!(map.next_key(None).expect("empty"), None);
    map.update(&k1, &10u64.to_ne_bytes(), BPF_ANY)
        .expect("update");
    map.update(&k2, &20u64.to_ne_bytes(), BPF_NOEXIST)
        .expect("insert");
    assert_eq!(
        map.lookup(&k1).expect("lookup"),
        Some(10u64.to_ne_bytes().to_vec())
    );
    let err = map
        .update(&k2, &0u64.to_ne_bytes(), BPF_NOEXIST)
        .expect_err("exists");
    assert!(matches!(
        err,
        KernelError::Map {
            op: MapOp::Update,
            errno: libc::EEXIST
        }
    ));
    let first = map.next_key(None).expect("first").expect("some");
    let second = map.next_key(Some(&first)).expect("second").expect("some");
    assert_eq!(map.next_key(Some(&second)).expect("end"), None);
    let mut keys = map.keys().expect("keys");
    keys.sort();
    let mut want = vec![k1.to_vec(), k2.to_vec()];
    want.sort();
    assert_eq!(keys, want);
    map.delete(&k1).expect("delete");
    assert_eq!(map.lookup(&k1).expect("lookup"), None);
    let err = map.delete(&k1).expect_err("gone");
    assert!(matches!(
        err,
        KernelError::Map {
            op: MapOp::Delete,
            errno: libc::ENOENT
        }
    ));
    assert!(matches!(
        map.lookup(&[0u8; 3]),
        Err(KernelError::BadLength { what: "key", .. })
    ));
    assert_eq!(
        map.lookup_and_delete(&k2).expect("pop"),
        Some(20u64.to_ne_bytes().to_vec())
    );
    assert_eq!(map.keys().expect("keys"), Vec::<Vec<u8>>::new());
}

#[test]
fn queue_and_per_cpu_maps() {
    require_kernel!();
    let queue = create_map(MapType::Queue, 0, 4, 4, 0).expect("queue");
    for v in [7u32, 8] {
        queue.update(&[], &v.to_ne_bytes(), BPF_ANY).expect("push");
    }
    assert_eq!(
        queue.lookup_and_delete(&[]).expect("pop"),
        Some(7u32.to_ne_bytes().to_vec())
    );
    assert_eq!(
        queue.lookup(&[]).expect("peek"),
        Some(8u32.to_ne_bytes().to_vec())
    );

    let ncpus = possible_cpus().expect("cpus");
    let pcpu = create_map(MapType::PercpuArray, 4, 4, 2, 0).expect("percpu");
    assert_eq!(pcpu.value_buf_size(), 8 * ncpus);
    let value: Vec<u8> = (0..8 * ncpus).map(|i| i as u8).collect();
    pcpu.update(&0u32.to_ne_bytes(), &value, BPF_ANY)
        .expect("update");
    let got = pcpu
        .lookup(&0u32.to_ne_bytes())
        .expect("lookup")
        .expect("some");
    // Only the first 4 bytes of each 8-byte slot are the value.
    for cpu in 0..ncpus {
        assert_eq!(got[cpu * 8..cpu * 8 + 4], value[cpu * 8..cpu * 8 + 4]);
    }
    assert!(matches!(
        pcpu.update(&0u32.to_ne_bytes(), &[0u8; 4], BPF_ANY),
        Err(KernelError::BadLength { what: "value", .. })
    ));
}

#[test]
fn program_reads_map_value() {
    require_kernel!();
    let map = create_map(MapType::Hash, 4, 8, 4, 0).expect("creates");
    map.update(&7u32.to_ne_bytes(), &0xdead_beef_u64.to_ne_bytes(), BPF_ANY)
        .expect("update");
    let src = format!(
        "
        stw [%r10-4], 7
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd({})
        call 1
        jeq %r0, 0, miss
        ldxdw %r0, [%r0]
        exit
    miss:
        mov %r0, 1
        exit",
        map.fd()
    );
    let prog = load_program(&asm(&src), &LoadOptions::new(ProgType::SocketFilter)).expect("loads");
    assert_eq!(
        prog.test_run(&[0u8; 64], None, 1).expect("runs").retval,
        0xdead_beef
    );
    map.delete(&7u32.to_ne_bytes()).expect("delete");
    assert_eq!(prog.test_run(&[0u8; 64], None, 1).expect("runs").retval, 1);
}

#[test]
fn syscall_program_writes_context_back() {
    require_kernel!();
    const BPF_F_SLEEPABLE: u32 = 1 << 4;
    let opts = LoadOptions {
        prog_flags: BPF_F_SLEEPABLE,
        ..LoadOptions::new(ProgType::Syscall)
    };
    let prog = load_program(
        &asm("ldxw %r2, [%r1]\nstw [%r1+4], 99\nmov %r0, %r2\nexit"),
        &opts,
    )
    .expect("loads");
    let mut ctx = [0u8; 8];
    ctx[..4].copy_from_slice(&5u32.to_ne_bytes());
    let run = prog.test_run(&[], Some(&ctx), 0).expect("runs");
    assert_eq!(run.retval, 5);
    let out = run.ctx_out.expect("context");
    assert_eq!(out[4..], 99u32.to_ne_bytes());
    assert_eq!(ctx[4..], [0; 4], "the caller's buffer is untouched");
    // Repeating is not supported for this type: a TestRun error, not a panic.
    assert!(matches!(
        prog.test_run(&[], Some(&ctx), 5),
        Err(KernelError::TestRun {
            errno: libc::EINVAL
        })
    ));
}
