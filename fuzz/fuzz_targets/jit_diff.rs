//! Differential fuzzing: a random well-formed program (built from the fuzzer's bytes by
//! `moat_fuzz::diff`) runs on the interpreter and the JIT; `r0` (or the error and its instruction)
//! and memory, which holds every register at exit, must be the same.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut source = moat_fuzz::diff::Bytes(data);
    if let Err(diff) = moat_fuzz::diff::check(&mut source) {
        panic!("interpreter and JIT differ:\n{diff}");
    }
});
