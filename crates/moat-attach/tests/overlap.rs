//! Probes whose windows overlap (a probe at `f` and one at `f + 3`, inside the bytes a rewrite at
//! `f` displaces): the later probe must neither land inside the earlier one's patch nor
//! overwrite it. Inside another probe's window is refused by name; a probe whose own window
//! would cover another probe's patch takes an `int3`, and both count every call; detaching in
//! either order leaves the code byte-identical.

use moat::{ProgType, Runtime};
use moat_attach::{Choice, Hook, Method, Target};
use std::hint::black_box;

/// The probed function: its first instruction is shorter than the 5-byte `jmp`.
#[no_mangle]
#[inline(never)]
pub extern "C" fn moat_attach_overlap(x: u64) -> u64 {
    black_box(x).wrapping_mul(7).wrapping_add(3)
}

fn code(address: u64, len: usize) -> Vec<u8> {
    // SAFETY: the test's own function's code, mapped and readable while the test runs.
    unsafe { std::slice::from_raw_parts(address as *const u8, len).to_vec() }
}

#[test]
fn overlapping_windows_are_refused_or_trapped_never_broken() {
    let mut rt = Runtime::new();
    moat_attach::helpers::register(&mut rt);
    let prog = rt
        .load_bytecode_as(
            &[0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0],
            ProgType::Tracing,
        )
        .expect("loads");
    let hook = || Hook {
        program: prog.clone(),
        cookie: 0,
    };
    let locate = |offset: u64| {
        moat_attach::locate(
            &Target {
                path: std::env::current_exe()
                    .expect("own path")
                    .to_string_lossy()
                    .into_owned(),
                symbol: "moat_attach_overlap".into(),
                offset,
            },
            std::process::id(),
        )
        .expect("located")
    };
    let f = locate(0);
    let before = code(f.address, 16);
    let window = moat_attach::codegen::displace(f.address, &before, 5).expect("displaceable");
    assert!(
        window.instrs.len() >= 2,
        "the first instruction is the whole window"
    );
    let second = window.instrs[1].ip() - f.address;
    let call = |n: u64| {
        for x in 0..n {
            assert_eq!(moat_attach_overlap(black_box(x)), x * 7 + 3);
        }
    };

    // f first (rewritten), then f + second: inside f's window, refused by name.
    let a = moat_attach::attach(&f, vec![hook()], vec![], Choice::Auto).expect("attach f");
    assert!(
        matches!(a.method(), Method::Rewrite { .. }),
        "{:?}",
        a.method()
    );
    let err = moat_attach::attach(&locate(second), vec![hook()], vec![], Choice::Auto)
        .expect_err("inside f's window");
    assert!(
        err.to_string()
            .contains(&format!("displaced by the probe at {:#x}", f.address)),
        "{err}"
    );
    call(100);
    assert_eq!(a.hits(), 100);
    assert!(a.detach());
    assert_eq!(code(f.address, 16), before);

    // f + second first, then f: f's rewrite would overwrite it, so f takes an int3; both fire.
    let b = moat_attach::attach(&locate(second), vec![hook()], vec![], Choice::Auto)
        .expect("attach f + second");
    let a = moat_attach::attach(&f, vec![hook()], vec![], Choice::Auto).expect("attach f");
    assert_eq!(
        a.method(),
        Method::Trap,
        "f's window holds the other probe's patch"
    );
    call(100);
    assert_eq!((a.hits(), b.hits()), (100, 100));
    // Detach the inner one first: f's trampoline still reaches the (disabled) inner probe's
    // displaced instructions, and results stay right.
    assert!(b.detach());
    call(50);
    assert_eq!((a.hits(), b.hits()), (150, 100));
    assert!(a.detach());
    call(10);
    assert_eq!(code(f.address, 16), before, "byte-identical after both");
}
