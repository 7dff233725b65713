//! Every program of the conformance suite is safe for its input memory, so the verifier must accept
//! each one with a buffer context of that memory's size.

use moat_isa::datafile::DataFile;
use moat_isa::Program;
use moat_verify::{verify, Context, Env};
use std::path::{Path, PathBuf};

/// The `shared/` test data folder (the conformance suite and real-world objects; README.md, "Test
/// data"): `$MOAT_SHARED`, else `shared/` beside the checkout. Where it is missing, a test that
/// needs it fails with a message naming the path when `MOAT_SHARED` named it or `CI` is set, and
/// otherwise prints why it skips and gets `None`.
fn shared() -> Option<PathBuf> {
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
fn safe_conformance_programs_are_accepted() {
    let Some(shared) = shared() else {
        return;
    };
    let dir = shared.join("conformance/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("conformance tests")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    let mut rejected = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable");
        let data = DataFile::parse(&text).expect("parses");
        let program = Program::new(&data.program().expect("program")).expect("well formed");
        let env = Env::new(Context::Buffer {
            size: data.mem.len() as u64,
        });
        if let Err(e) = verify(&program, &env) {
            rejected.push(format!(
                "{}: {}",
                f.file_name().unwrap_or_default().to_string_lossy(),
                e
            ));
        }
    }
    for r in &rejected {
        eprintln!("REJECTED {r}");
    }
    println!(
        "verifier on conformance: {} accepted, {} rejected",
        files.len() - rejected.len(),
        rejected.len()
    );
    assert!(rejected.is_empty(), "{}", rejected.join("\n"));
}
