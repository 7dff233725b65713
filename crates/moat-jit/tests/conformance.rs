//! The public conformance suite (`../shared/conformance/tests`) on the JIT and the interpreter: both
//! must return the file's `-- result`, or fail with the same error at the same instruction.

use moat_exec::{HelperRegistry, Linked, NoMaps};
use moat_interp::Prepared;
use moat_isa::datafile::DataFile;
use moat_isa::Program;
use moat_jit::{CodeOptions, Confinement, JitProgram, ProvenAccesses};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn shared_dir() -> PathBuf {
    std::env::var_os("MOAT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

#[test]
fn conformance_programs_agree_with_the_interpreter() {
    let dir = shared_dir().join("conformance/tests");
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
