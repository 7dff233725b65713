//! Fuzz target: `moat_obj::Object::parse` must return `Ok` or `Err` on any bytes, never panic, hang or
//! allocate without bound. Seed the corpus with real objects (see crates/moat-obj/FUZZING.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(obj) = moat_obj::Object::parse(data) {
        // Touch the results so that lazily wrong values would be noticed by sanitizers.
        for p in &obj.programs {
            assert_eq!(p.bytecode.len(), p.insn_count * 8);
            let _ = p.line_at(0);
        }
    }
});
