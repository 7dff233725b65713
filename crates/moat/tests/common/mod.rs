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

/// The `shared/` folder: `$MOAT_SHARED`, else beside the checkout.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("MOAT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"))
}
