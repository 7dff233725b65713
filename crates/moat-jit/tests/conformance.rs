//! The public conformance suite (`../shared/conformance/tests`) on the JIT and the interpreter: both
//! must return the file's `-- result`, or fail with the same error at the same instruction.

use moat_exec::{HelperRegistry, Linked, NoMaps};
use moat_interp::Prepared;
use moat_isa::datafile::DataFile;
use moat_isa::Program;
use moat_jit::{CodeOptions, Confinement, JitProgram, ProvenAccesses};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `shared/` test data folder (the conformance suite and real-world objects; README.md, "Test
/// data"): `$MOAT_SHARED`, else `shared/` beside the checkout. Where it is missing, a test that
/// needs it fails with a message naming the path when `MOAT_SHARED` named it or `CI` is set, and
/// otherwise prints why it skips and gets `None`.
fn shared_dir() -> Option<PathBuf> {
    let (dir, named) = match std::env::var_os("MOAT_SHARED") {
        Some(dir) => (PathBuf::from(dir), true),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
            false,
        ),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    let why = format!(
        "the shared test data folder {} does not exist (the conformance suite and real-world \
         objects, see README.md, \"Test data\"): {}",
        dir.display(),
        if named {
            "MOAT_SHARED points nowhere"
        } else {
            "put it beside the checkout or set MOAT_SHARED to its path"
        }
    );
    assert!(!named && std::env::var_os("CI").is_none(), "{why}");
    println!("skipped: {why}");
    None
}

#[test]
fn conformance_programs_agree_with_the_interpreter() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let dir = shared.join("conformance/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("conformance dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    let registry = HelperRegistry::new();
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(path).expect("read");
        let file = DataFile::parse(&text).expect("parses");
        let program = Program::new(&file.program().expect("program")).expect("well formed");
        // Files calling helpers run through the facade's differential tests, which have them.
        let Ok(linked) = Linked::new(&program, &registry, &NoMaps) else {
            continue;
        };
        let linked = Arc::new(linked);
        let prepared = Prepared::lower(linked.clone()).expect("lowers");
        let jit = JitProgram::new(
            linked,
            Arc::new(prepared.clone()),
            &ProvenAccesses::none(),
            &CodeOptions::new(Confinement::Unconfined),
        )
        .expect("compiles");
        let mut m1 = file.mem.clone();
        let mut m2 = file.mem.clone();
        let a = prepared.run(&mut m1);
        let b = jit.run(&mut m2);
        if a != b || m1 != m2 {
            failures.push(format!("{name}: interp {a:x?}, jit {b:x?}"));
        } else if let (Ok(r), Some(want)) = (&b, file.result) {
            if *r != want {
                failures.push(format!("{name}: {r:#x} != {want:#x}"));
            }
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    println!(
        "jit conformance: {} passed, {} failed",
        files.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty());
}
