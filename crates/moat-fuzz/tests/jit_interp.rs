//! Interpreter = JIT on 10 000 randomly generated programs (set `MOAT_FUZZ_CASES` for more): same
//! `r0` or the same error at the same instruction, and the same memory, which includes every register
//! at exit (the generated epilogue stores them).

use moat_fuzz::diff::{check, Rng};

#[test]
fn random_programs_agree_with_the_interpreter() {
    let cases: u64 = std::env::var("MOAT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("MOAT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6d6f_6174);
    let (mut compared, mut skipped) = (0u64, 0u64);
    for i in 0..cases {
        let mut rng = Rng(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        match check(&mut rng) {
            Ok(true) => compared += 1,
            Ok(false) => skipped += 1,
            Err(diff) => panic!("case {i} (seed {seed}) differs:\n{diff}"),
        }
    }
    println!("differential: {compared} compared, {skipped} skipped");
    assert!(skipped * 20 < cases, "too many malformed cases: {skipped}");
}
