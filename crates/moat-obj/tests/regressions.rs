//! Regression inputs: every file in `tests/regressions/` (minimised fuzzer crashes, see FUZZING.md)
//! must parse or be refused, never panic. The folder is empty while the fuzzer has found nothing.

use moat_obj::Object;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[test]
fn regression_inputs_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("no regression inputs yet ({} is missing)", dir.display());
        return;
    };
    let mut panics = Vec::new();
    let mut count = 0;
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_some_and(|x| x == "bin") {
            count += 1;
            let bytes = std::fs::read(&path).expect("readable");
            if catch_unwind(AssertUnwindSafe(|| Object::parse(&bytes))).is_err() {
                panics.push(path.display().to_string());
            }
        }
    }
    println!("{count} regression inputs");
    assert!(panics.is_empty(), "parse panicked on: {panics:#?}");
}
