//! Repository conventions checked as tests: every Rust file starts with a `//!` doc, and crate
//! dependencies point only the way ARCHITECTURE.md says.

mod common;
use common::workspace_root as workspace;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && name != "regressions" {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    rust_files(&workspace().join("fuzz/fuzz_targets"), &mut files);
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! doc:\n{}",
        missing.join("\n")
    );
}

/// The moat crates each crate may use as a normal (non-dev) dependency: ARCHITECTURE.md's layers.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("moat-abi", &[][..]),
        ("moat-isa", &[][..]),
        ("moat-obj", &["moat-isa", "moat-abi"][..]),
        ("moat-exec", &["moat-isa", "moat-abi"][..]),
        ("moat-interp", &["moat-isa", "moat-exec"][..]),
        ("moat-maps", &["moat-abi"][..]),
        ("moat-verify", &["moat-isa", "moat-abi"][..]),
        ("moat-raise", &["moat-isa", "moat-verify"][..]),
        (
            "moat-jit",
            &[
                "moat-isa",
                "moat-exec",
                "moat-verify",
                "moat-raise",
                "moat-signal",
            ][..],
        ),
        ("moat-signal", &[][..]),
        ("moat-pool", &["moat-abi"][..]),
        ("moat-isolate", &["moat-maps"][..]),
        (
            "moat",
            &[
                "moat-abi",
                "moat-isa",
                "moat-obj",
                "moat-verify",
                "moat-exec",
                "moat-interp",
                "moat-jit",
                "moat-maps",
                "moat-pool",
                "moat-isolate",
            ][..],
        ),
        (
            "moat-cli",
            &[
                "moat",
                "moat-isa",
                "moat-omb",
                "moat-sched",
                "moat-agent",
                "moat-attach",
                "moat-kernel",
                "moat-cxlsim",
            ][..],
        ),
        (
            "moat-sched",
            &["moat", "moat-isa", "moat-jit", "moat-signal"][..],
        ),
        (
            "moat-fuzz",
            &[
                "moat",
                "moat-abi",
                "moat-isa",
                "moat-exec",
                "moat-interp",
                "moat-verify",
                "moat-jit",
            ][..],
        ),
        ("moat-kernel", &["moat-isa", "moat-abi"][..]),
        ("moat-omb", &["moat-pool"][..]),
        ("moat-attach", &["moat", "moat-signal"][..]),
        ("moat-agent", &["moat", "moat-attach"][..]),
        ("moat-interpose", &["moat", "moat-abi"][..]),
        ("moat-cxlsim", &["moat-kernel"][..]),
    ])
}

/// The `moat-*` names under `[dependencies]` of a manifest.
fn moat_dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps
            && (line.starts_with("moat-") || line.starts_with("moat ") || line.starts_with("moat="))
        {
            if let Some(name) = line.split(['=', ' ']).next() {
                deps.push(name.to_string());
            }
        }
    }
    deps
}

#[test]
fn dependencies_point_one_way() {
    let allowed = allowed();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(workspace().join("crates")) else {
        panic!("no crates directory");
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(manifest) = std::fs::read_to_string(entry.path().join("Cargo.toml")) else {
            continue;
        };
        if name == "moat-bench" {
            continue; // Benchmarks may use anything; nothing may use them.
        }
        let Some(ok) = allowed.get(name.as_str()) else {
            problems.push(format!(
                "{name}: not described in ARCHITECTURE.md / this test"
            ));
            continue;
        };
        for dep in moat_dependencies(&manifest) {
            if !ok.contains(&dep.as_str()) {
                problems.push(format!("{name} must not depend on {dep}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The paths named in ARCHITECTURE.md's "`unsafe` only in small, named places" rule, with
/// `dir/{a,b}.rs` expanded.
fn unsafe_inventory(architecture: &str) -> BTreeSet<String> {
    let start = architecture
        .find("- `unsafe` only in small, named places")
        .expect("ARCHITECTURE.md states where unsafe lives");
    let rest = &architecture[start..];
    let end = rest[1..].find("\n- ").map_or(rest.len(), |e| e + 1);
    let mut paths = BTreeSet::new();
    for quoted in rest[..end].split('`').skip(1).step_by(2) {
        let quoted = quoted.trim();
        if !quoted.starts_with("moat") || !quoted.ends_with(".rs") {
            continue;
        }
        match (quoted.find('{'), quoted.find('}')) {
            (Some(open), Some(close)) if open < close => {
                for name in quoted[open + 1..close].split(',') {
                    paths.insert(format!(
                        "{}{}{}",
                        &quoted[..open],
                        name,
                        &quoted[close + 1..]
                    ));
                }
            }
            _ => {
                paths.insert(quoted.to_string());
            }
        }
    }
    paths
}

#[test]
fn architecture_names_every_file_with_unsafe_code() {
    let root = workspace();
    let architecture =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let listed = unsafe_inventory(&architecture);
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    let with_unsafe: BTreeSet<String> = files
        .iter()
        .filter(|f| f.components().any(|c| c.as_os_str() == "src"))
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            ["unsafe {", "unsafe fn ", "unsafe impl "]
                .iter()
                .any(|needle| text.contains(needle))
        })
        .filter_map(|f| f.strip_prefix(root.join("crates")).ok())
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let unlisted: Vec<&String> = with_unsafe.difference(&listed).collect();
    let stale: Vec<&String> = listed.difference(&with_unsafe).collect();
    assert!(
        unlisted.is_empty() && stale.is_empty(),
        "ARCHITECTURE.md's unsafe inventory is out of date: unlisted {unlisted:?}, listed without unsafe {stale:?}"
    );
}
