//! Attaching and detaching a probe 10 000 times while two threads call the probed function in a
//! loop: no crash, every call returns the right value, and the code is byte-identical afterwards.

use moat::{ProgType, Runtime};
use moat_attach::{Choice, Hook, Target};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The probed function.
#[no_mangle]
#[inline(never)]
pub extern "C" fn moat_attach_cycled(x: u64) -> u64 {
    black_box(x).wrapping_mul(7).wrapping_add(3)
}

fn code_at(addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    assert_eq!(moat_attach::read_user(addr, &mut buf), len);
    buf
}

#[test]
fn ten_thousand_attach_detach_cycles_under_two_calling_threads() {
    let mut rt = Runtime::new();
    moat_attach::helpers::register(&mut rt);
    // r0 = 0: an empty probe.
    let prog = rt
        .load_bytecode_as(
            &[0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0],
            ProgType::Tracing,
        )
        .expect("loads");
    let exe = std::env::current_exe().expect("own path");
    let located = moat_attach::locate(
        &Target {
            path: exe.to_string_lossy().into_owned(),
            symbol: "moat_attach_cycled".into(),
            offset: 0,
        },
        std::process::id(),
    )
    .expect("located");
    let before = code_at(located.function, 64);
    // Alone first: the cost of one attach + detach with no thread running the code.
    let alone = std::time::Instant::now();
    for _ in 0..1000 {
        let hook = Hook {
            program: prog.clone(),
            cookie: 0,
        };
        let a = moat_attach::attach(&located, vec![hook], vec![], Choice::Auto).expect("attach");
        assert!(a.detach());
    }
    println!(
        "attach + detach alone: {:?} per cycle",
        alone.elapsed() / 1000
    );
    let stop = Arc::new(AtomicBool::new(false));
    let wrong = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, wrong) = (stop.clone(), wrong.clone());
            std::thread::spawn(move || {
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let x = black_box(calls);
                    if moat_attach_cycled(x) != x.wrapping_mul(7).wrapping_add(3) {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let mut hits = 0;
    let start = std::time::Instant::now();
    // 10 000 in release builds (the figure); fewer in debug builds, where stopping the
    // busy threads for each patch takes milliseconds.
    let cycles: u32 = if cfg!(debug_assertions) { 500 } else { 10_000 };
    let mut rewritten = 0;
    for i in 0..cycles {
        let choice = if i % 2 == 0 {
            Choice::Auto
        } else {
            Choice::Trap
        };
        let hook = Hook {
            program: prog.clone(),
            cookie: 0,
        };
        let rets = if i % 3 == 0 {
            vec![hook.clone()]
        } else {
            vec![]
        };
        let a = moat_attach::attach(&located, vec![hook], rets, choice).expect("attach");
        rewritten += u32::from(matches!(a.method(), moat_attach::Method::Rewrite { .. }));
        for _ in 0..10 {
            black_box(moat_attach_cycled(black_box(u64::from(i))));
        }
        hits += a.hits();
        assert!(a.detach());
    }
    let per_cycle = start.elapsed() / cycles;
    stop.store(true, Ordering::Relaxed);
    let calls: u64 = callers
        .into_iter()
        .map(|t| t.join().expect("no crash"))
        .sum();
    assert_eq!(wrong.load(Ordering::Relaxed), 0);
    assert!(calls > 0 && hits >= u64::from(cycles) * 10);
    assert_eq!(
        code_at(located.function, 64),
        before,
        "code restored byte for byte"
    );
    println!(
        "{cycles} attach/detach cycles ({rewritten} rewritten): {per_cycle:?} per cycle, \
         {calls} concurrent calls"
    );
}
