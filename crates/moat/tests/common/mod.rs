//! Paths shared by this crate's integration tests: the workspace root and the `shared/` folder beside
//! the checkout (override with `MOAT_SHARED`).

// Each test file uses only some of these.
#![allow(
    dead_code,
    reason = "each test binary uses its own share of these helpers"
)]

use std::path::{Path, PathBuf};

/// The workspace root (where `examples/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `shared/` test data folder (the conformance suite and real-world objects; README, "Test
/// data"): `$MOAT_SHARED`, else `shared/` beside the checkout. Where it is missing, a test that
/// needs it fails with a message naming the path when `MOAT_SHARED` named it or `CI` is set, and
/// otherwise prints why it skips and gets `None`.
pub fn shared_dir() -> Option<PathBuf> {
    let (dir, named) = match std::env::var_os("MOAT_SHARED") {
        Some(dir) => (PathBuf::from(dir), true),
        None => (workspace_root().join("../shared"), false),
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
