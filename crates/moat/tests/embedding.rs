//! The embedding API: host-defined helpers, typed errors from helpers, sharing programs across threads.

use moat::{Error, HelperError, RunErrorKind, Runtime};

fn runtime_with_sum_helper() -> Runtime {
    let mut rt = Runtime::new();
    rt.register_helper(1000, "host_sum_bytes", |ctx, args| {
        let bytes = ctx.read(1, args[0], args[1])?;
        Ok(bytes.iter().map(|&b| u64::from(b)).sum())
    });
    rt
}

#[test]
fn embedder_helpers_read_program_memory_through_checks() {
    let rt = runtime_with_sum_helper();
    let prog = rt.load_asm("call 1000\nexit").expect("loads");
    assert_eq!(prog.run(&mut [1, 2, 3, 250]).expect("runs"), 256);
}

#[test]
fn helper_argument_outside_memory_is_a_typed_error() {
    let rt = runtime_with_sum_helper();
    // Ask for one byte more than the context holds.
    let prog = rt.load_asm("add %r2, 1\ncall 1000\nexit").expect("loads");
    let err = prog.run(&mut [1, 2, 3]).expect_err("must fail");
    let Error::Run(run) = err else {
        panic!("not a run error: {err:?}")
    };
    assert_eq!(run.pc, 1);
    assert!(matches!(
        run.kind,
        RunErrorKind::Helper {
            id: 1000,
            source: HelperError::OutOfBounds { arg: 1, len: 4, .. },
            ..
        }
    ));
}

#[test]
fn a_loaded_program_runs_on_many_threads() {
    let rt = Runtime::new();
    let prog = rt
        .load_asm("mov %r0, 0\nloop:\njeq %r2, 0, done\nldxb %r3, [%r1]\nadd %r0, %r3\nadd %r1, 1\nsub %r2, 1\nja loop\ndone:\nexit")
        .expect("loads");
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let prog = &prog;
            s.spawn(move || {
                for _ in 0..1000 {
                    let mut mem = [t; 16];
                    assert_eq!(prog.run(&mut mem).expect("runs"), 16 * u64::from(t));
                }
            });
        }
    });
}

#[test]
fn xdp_programs_see_their_packet_through_32_bit_context_fields() {
    // Unverified: the program reads the packet without a bounds check, to show the run-time check.
    let mut rt = Runtime::new();
    rt.set_verification(moat::Verification::Off);
    let src = "ldxw %r2, [%r1]\nldxw %r3, [%r1+4]\nmov %r0, %r3\nsub %r0, %r2\nldxb %r4, [%r2]\nadd %r0, %r4\nstb [%r2+1], 0x77\nexit";
    let bytes = moat_isa::assemble_bytes(src).expect("assembles");
    let prog = rt
        .load_bytecode_as(&bytes, moat::ProgType::Xdp)
        .expect("loads");
    let mut packet = [5u8, 0, 0];
    assert_eq!(prog.run(&mut packet).expect("runs"), 3 + 5);
    assert_eq!(
        packet,
        [5, 0x77, 0],
        "the program's packet writes are copied back"
    );
    // The context itself is read-only for XDP, as in the kernel.
    let bytes = moat_isa::assemble_bytes("stw [%r1], 0\nmov %r0, 0\nexit").expect("assembles");
    let prog = rt
        .load_bytecode_as(&bytes, moat::ProgType::Xdp)
        .expect("loads");
    let err = prog.run(&mut packet).expect_err("context store");
    assert!(
        matches!(err, Error::Run(ref r) if matches!(r.kind, RunErrorKind::OutOfBounds { write: true, .. }))
    );
}

#[test]
fn embedder_helpers_with_prototypes_are_checked_by_the_verifier() {
    let mut rt = Runtime::new();
    rt.set_buffer_size(8);
    let proto = moat::HelperProto {
        name: "host_checksum".into(),
        args: [
            moat::Arg::MemIn,
            moat::Arg::Size,
            moat::Arg::None,
            moat::Arg::None,
            moat::Arg::None,
        ],
        ret: moat::Ret::Integer,
        callback: moat::Callback::None,
    };
    rt.register_helper_with_proto(1001, proto, |ctx, args| {
        Ok(ctx
            .read(1, args[0], args[1])?
            .iter()
            .map(|&b| u64::from(b))
            .sum())
    });
    // 8 bytes of the 8-byte context: accepted and run.
    let prog = rt
        .load_asm("mov %r2, 8\ncall 1001\nexit")
        .expect("verified");
    assert_eq!(prog.run(&mut [1; 8]).expect("runs"), 8);
    // 16 bytes: the verifier proves the helper would read past the context.
    let err = rt
        .load_asm("mov %r2, 16\ncall 1001\nexit")
        .expect_err("rejected");
    assert!(
        matches!(err, Error::Verify(ref r) if r.error.pc == 1),
        "{err}"
    );
}

#[test]
fn hosts_can_place_the_context_in_the_domain_without_copies() {
    // The program doubles the first byte of its 4-byte context and returns the old value.
    let src = "ldxb %r2, [%r1]\nmov %r0, %r2\nlsh %r2, 1\nstxb [%r1], %r2\nexit";
    for isolation in [moat::Isolation::None, moat::Isolation::Sfi] {
        let mut rt = Runtime::new();
        rt.set_isolation(isolation);
        rt.set_buffer_size(4);
        let program = rt.load_asm(src).expect("loads");
        let mut seen_at = 0u64;
        let (r0, after) = program
            .run_placed(
                4,
                |area| {
                    seen_at = area.as_ptr() as u64;
                    area.copy_from_slice(&[21, 0, 0, 0]);
                },
                |area| area.to_vec(),
            )
            .expect("runs");
        assert_eq!((r0, after), (21, vec![42, 0, 0, 0]), "{isolation}");
        if let Some(domain) = program.domain() {
            assert!(
                domain.contains(seen_at, 4),
                "the host wrote into the domain"
            );
        }
        // Shorter than the verified size: refused, as for `run`.
        let short = program.run_placed(2, |_| (), |_| ());
        assert!(
            matches!(short, Err(Error::Context(_))),
            "{isolation}: {short:?}"
        );
    }
}
