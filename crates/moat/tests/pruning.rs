//! The verifier's relaxed pruning (its register-use analysis: dead registers and slots ignored,
//! scalars that decide nothing compared by type) against pruning that compares states whole, on
//! every real-world object of the shared test data and the C examples: every program accepted
//! one way must be accepted the other way, or refused as too complex by the exact one (which
//! prunes less). A difference names the program and both verdicts.

mod common;
use common::{shared_dir, workspace_root};

use moat::{ObjectOptions, Runtime, Verification};
use std::path::{Path, PathBuf};

fn objects(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            objects(&p, out);
        } else if p.extension().is_some_and(|e| e == "o") {
            out.push(p);
        }
    }
}

/// Each program's verdict: `Ok(())`, or the refusal's text.
fn verdicts(rt: &Runtime, bytes: &[u8]) -> Vec<(String, Result<(), String>)> {
    match rt.verify_object(bytes, ObjectOptions::default()) {
        Ok(list) => list
            .into_iter()
            .map(|(name, v)| (name, v.map(|_| ()).map_err(|e| e.to_string())))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn relaxed_and_exact_pruning_give_the_same_verdicts() {
    let mut files = Vec::new();
    objects(&workspace_root().join("examples/c"), &mut files);
    if let Some(shared) = shared_dir() {
        objects(&shared.join("objects"), &mut files);
    }
    let mut problems = Vec::new();
    let (mut programs, mut accepted, mut relaxed_only) = (0, 0, 0);
    for verification in [Verification::Privileged, Verification::Unprivileged] {
        let mut rt = Runtime::new();
        rt.set_verification(verification);
        for path in &files {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            let relaxed = verdicts(&rt, &bytes);
            // Only programs the relaxed pruning accepts can show a difference that matters; the
            // exact verdicts of the others are not needed (and the slowest to get).
            if relaxed.iter().all(|(_, v)| v.is_err()) {
                programs += relaxed.len();
                continue;
            }
            let exact = moat_verify::testing::with_exact_pruning(|| verdicts(&rt, &bytes));
            for ((name, r), (_, e)) in relaxed.iter().zip(&exact) {
                programs += 1;
                match (r, e) {
                    (Ok(()), Ok(())) => accepted += 1,
                    (Err(_), Err(_)) => {}
                    (Ok(()), Err(why)) if why.contains("too complex") => {
                        accepted += 1;
                        relaxed_only += 1;
                    }
                    _ => problems.push(format!(
                        "{} {name} ({verification:?}): relaxed {r:?}, exact {e:?}",
                        path.display()
                    )),
                }
            }
        }
    }
    println!(
        "{programs} programs verified both ways, {accepted} accepted, {relaxed_only} only with the \
         relaxed pruning (too complex compared whole), {} differences",
        problems.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
