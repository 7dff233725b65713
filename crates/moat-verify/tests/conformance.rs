//! Every program of the conformance suite is safe for its input memory, so the verifier must accept
//! each one with a buffer context of that memory's size.

use moat_isa::datafile::DataFile;
use moat_isa::Program;
use moat_verify::{verify, Context, Env};
use std::path::{Path, PathBuf};

fn shared() -> PathBuf {
    std::env::var_os("MOAT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

#[test]
fn safe_conformance_programs_are_accepted() {
    let dir = shared().join("conformance/tests");
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
