//! A thread still inside an `int3` probe's trampoline (running its programs) when the probe is
//! detached and the same address is rewritten with a `jmp` must resume after the `jmp`'s window,
//! never inside it. More calling threads than cores, so that some are always preempted in a
//! trampoline while the code is patched.

use moat::{ProgType, Runtime};
use moat_attach::{Choice, Hook, Method, Target};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The probed function: its first instruction is shorter than the 5-byte `jmp`, so a rewrite
/// displaces several instructions.
#[no_mangle]
#[inline(never)]
pub extern "C" fn moat_attach_trap_then_rewrite(x: u64) -> u64 {
    black_box(x).wrapping_mul(5).wrapping_add(11)
}

#[test]
fn trap_and_rewrite_alternate_under_more_callers_than_cores() {
    let mut rt = Runtime::new();
    moat_attach::helpers::register(&mut rt);
    // r0 = 0: an empty probe.
    let prog = rt
        .load_bytecode_as(
            &[0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0],
            ProgType::Tracing,
        )
        .expect("loads");
    let located = moat_attach::locate(
        &Target {
            path: std::env::current_exe()
                .expect("own path")
                .to_string_lossy()
                .into_owned(),
            symbol: "moat_attach_trap_then_rewrite".into(),
            offset: 0,
        },
        std::process::id(),
    )
    .expect("located");
    let callers = 3 * std::thread::available_parallelism().map_or(2, |n| n.get());
    let stop = Arc::new(AtomicBool::new(false));
    let wrong = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let (stop, wrong) = (stop.clone(), wrong.clone());
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if moat_attach_trap_then_rewrite(black_box(x)) != x * 5 + 11 {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    x += 1;
                }
            })
        })
        .collect();
    let cycles = if cfg!(debug_assertions) { 300 } else { 3000 };
    let mut rewritten = 0;
    for i in 0..cycles {
        let choice = if i % 2 == 0 {
            Choice::Trap
        } else {
            Choice::Auto
        };
        let hook = Hook {
            program: prog.clone(),
            cookie: 0,
        };
        let a = moat_attach::attach(&located, vec![hook], vec![], choice).expect("attach");
        rewritten += u32::from(matches!(a.method(), Method::Rewrite { .. }));
        assert!(a.detach());
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("caller survives");
    }
    assert_eq!(wrong.load(Ordering::Relaxed), 0);
    assert!(rewritten > 0, "no cycle rewrote the code");
}
