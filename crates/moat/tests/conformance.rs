//! Runs the public eBPF conformance suite (`../shared/conformance/`) through moat.
//!
//! Every program in `tests/` must return its `-- result`; every file in `negative/` must be refused
//! somewhere on the way (data file, assembler, decoder, program checks) or produce a result different
//! from the wrong one it claims. Prints `N passed, M failed` for each directory.

mod common;
use common::shared_dir;

use moat::{DataFile, Runtime};
use std::path::{Path, PathBuf};

fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    files
}

/// Runs one file: `Ok(r0)` or the error text.
fn run(path: &Path) -> Result<(DataFile, u64), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let file = DataFile::parse(&text).map_err(|e| e.to_string())?;
    let rt = Runtime::new();
    let prog = rt.load_data_file(&file).map_err(|e| e.to_string())?;
    let mut mem = file.mem.clone();
    let r0 = prog.run(&mut mem).map_err(|e| e.to_string())?;
    Ok((file, r0))
}

#[test]
fn conformance_programs_return_their_result() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let dir = shared.join("conformance/tests");
    let files = data_files(&dir);
    assert_eq!(
        files.len(),
        313,
        "expected the 313 conformance programs in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        match run(path) {
            Ok((file, r0)) => match file.result {
                Some(expected) if expected == r0 => {}
                Some(expected) => {
                    failures.push(format!("{name}: r0 = {r0:#x}, expected {expected:#x}"))
                }
                None => failures.push(format!("{name}: no `-- result` section")),
            },
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    println!(
        "conformance: {} passed, {} failed",
        files.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} conformance programs failed",
        failures.len()
    );
}

#[test]
fn negative_conformance_files_are_refused() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let dir = shared.join("conformance/negative");
    let files = data_files(&dir);
    assert_eq!(
        files.len(),
        60,
        "expected the 60 negative files in {}",
        dir.display()
    );
    let mut accepted = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        match run(path) {
            Err(e) => println!("refused {name}: {e}"),
            // A file whose claimed result is wrong must not match.
            Ok((file, r0)) if file.result.is_some_and(|x| x != r0) => {
                println!(
                    "refused {name}: r0 = {r0:#x} differs from the claimed {:#x}",
                    file.result.unwrap_or(0)
                );
            }
            Ok((_, r0)) => accepted.push(format!("{name}: accepted, r0 = {r0:#x}")),
        }
    }
    for a in &accepted {
        eprintln!("FAIL {a}");
    }
    println!(
        "negative: {} passed, {} failed",
        files.len() - accepted.len(),
        accepted.len()
    );
    assert!(
        accepted.is_empty(),
        "{} negative files were accepted",
        accepted.len()
    );
}
