//! Loads every real-world object under `shared/objects/` (see its README): none may panic, and every
//! object outside `invalid/` must load, except the commented refusals in [`REFUSED`].
//!
//! The folder is `$MOAT_OBJECTS_DIR`, `$MOAT_SHARED/objects` or `../../../shared/objects` from this
//! crate's manifest ([`common::objects_dir`]): the objects are shared data, not part of the
//! repository.

mod common;
use common::objects_dir;
use moat_obj::Object;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Objects outside `invalid/` that the loader refuses on purpose, with the reason.
const REFUSED: &[(&str, &str)] = &[];

/// Every `*.o` below `dir`, sorted.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "o") {
            out.push(p);
        }
    }
}

#[test]
fn every_real_object_loads_or_is_refused_cleanly() {
    let Some(dir) = objects_dir() else {
        return;
    };
    let mut files = Vec::new();
    walk(&dir, &mut files);
    files.sort();
    let (mut parsed, mut refused) = (0, 0);
    let mut panics = Vec::new();
    let mut unexpected = Vec::new();
    let mut stale = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&dir)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/");
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
        let allowed = REFUSED.iter().any(|(name, _)| *name == rel);
        let invalid = rel.starts_with("invalid/");
        match catch_unwind(AssertUnwindSafe(|| Object::parse(&bytes))) {
            Err(_) => panics.push(rel),
            Ok(Ok(obj)) => {
                parsed += 1;
                if allowed {
                    stale.push(rel.clone());
                }
                println!(
                    "ok      {rel}: {} programs, {} maps",
                    obj.programs.len(),
                    obj.maps.len()
                );
            }
            Ok(Err(e)) => {
                refused += 1;
                println!("refused {rel}: {e}");
                if !invalid && !allowed {
                    unexpected.push(format!("{rel}: {e}"));
                }
            }
        }
    }
    println!(
        "{} objects: {parsed} parsed, {refused} refused, {} panics",
        files.len(),
        panics.len()
    );
    assert!(panics.is_empty(), "parse panicked on: {panics:#?}");
    assert!(
        unexpected.is_empty(),
        "unexpected refusals: {unexpected:#?}"
    );
    assert!(
        stale.is_empty(),
        "allow-listed refusals that now load: {stale:#?}"
    );
}
