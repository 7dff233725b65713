//! The verifier's oracles ([`moat_fuzz::soundness`]), bounded for CI: soundness on 2 000
//! random programs, verified JIT = interpreter on 600, and the same verdicts with and without the
//! register-use analysis's relaxed pruning on 2 000 (`MOAT_SOUNDNESS_CASES`, `MOAT_JIT_CASES` and
//! `MOAT_PRUNING_CASES` change the counts, `MOAT_SOUNDNESS_SEED` the sequence,
//! `MOAT_SOUNDNESS_VERBOSE` prints why each refused program was refused). Longer runs:
//! `MOAT_SOUNDNESS_CASES=1000000 MOAT_JIT_CASES=200000 cargo test --release -p moat-fuzz --test
//! verifier -- --nocapture`. A failure prints the program; `MOAT_SOUNDNESS_REPLAY=FILE cargo test -p
//! moat-fuzz --test verifier replay -- --nocapture` runs one saved program again.

use moat::{is_violation, Engine, Error, Isolation, Verification};
use moat_fuzz::diff::{Rng, Source};
use moat_fuzz::soundness::{
    array_map, jit_matches_interpreter, load, pruning_agrees, runtime, soundness, Report, BUFFER,
};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    env_number("MOAT_SOUNDNESS_SEED", 0x005e_ed0f_5afe)
}

fn judge(report: &Report, what: &str) {
    println!("{what}: {}", report.summary());
    assert!(
        report.failures.is_empty(),
        "{what}:\n{}",
        report.failures.join("\n")
    );
    assert!(
        report.accepted * 4 >= report.generated,
        "{what}: only {} of {} programs accepted: the oracle checks too little",
        report.accepted,
        report.generated
    );
}

#[test]
fn accepted_programs_make_no_memory_errors() {
    let cases = env_number("MOAT_SOUNDNESS_CASES", 2000);
    let report = soundness(&mut Rng(seed()), cases);
    judge(&report, "soundness");
}

#[test]
fn verified_jit_matches_the_interpreter() {
    let cases = env_number("MOAT_JIT_CASES", 600);
    let report = jit_matches_interpreter(&mut Rng(seed() ^ 0x6a17), cases);
    judge(&report, "verified JIT = interpreter");
}

#[test]
fn pruning_with_the_register_use_analysis_agrees_with_exact_pruning() {
    let cases = env_number("MOAT_PRUNING_CASES", 2000);
    let report = pruning_agrees(&mut Rng(seed() ^ 0x9e1d), cases);
    judge(
        &report,
        "pruning with the register-use analysis = exact pruning",
    );
}

/// Runs a program kept from an earlier run (`MOAT_SOUNDNESS_REPLAY=FILE`): prints, for each rule
/// set, whether it is accepted and whether a run on zeroes or random inputs makes a memory error.
#[test]
fn replay() {
    let Some(path) = std::env::var_os("MOAT_SOUNDNESS_REPLAY") else {
        return;
    };
    let asm = std::fs::read_to_string(path).expect("readable");
    let map = array_map();
    let mut rng = Rng(1);
    for v in [Verification::Privileged, Verification::Unprivileged] {
        match load(&runtime(v, Engine::Interp, Isolation::None), &asm, &map) {
            Err(e) => println!("{v:?}: refused: {e:?}"),
            Ok(prog) => {
                let mut outcome = "accepted, no memory error".to_string();
                for i in 0..64 {
                    let mut input: Vec<u8> = (0..BUFFER)
                        .map(|_| if i == 0 { 0 } else { rng.word() as u8 })
                        .collect();
                    if let Err(Error::Run(e)) = prog.run(&mut input) {
                        if is_violation(&e) {
                            outcome = format!("accepted, memory error: {e}");
                            break;
                        }
                    }
                }
                println!("{v:?}: {outcome}");
            }
        }
    }
}
