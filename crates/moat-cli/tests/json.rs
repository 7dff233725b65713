//! `--json` on every verb: each verb runs on the bundled examples (and on a pool made in a temporary
//! directory), its output parses as one JSON object, and every field its `--help` documents is
//! there with the documented type.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .output()
        .expect("moat runs")
}

fn example(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

/// A fresh temporary directory for one test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-json-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `moat args`, expects exit code `code` and one JSON object on standard output.
fn json(args: &[&str], code: i32) -> Value {
    let o = moat(args);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(code),
        "moat {args:?}\nstdout: {out}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out.lines().count(), 1, "one line of JSON expected: {out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("moat {args:?}: {e}: {out}"))
}

/// The JSON types the documentation names.
#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    Uint,
    Num,
    Bool,
    Arr,
    Obj,
    /// A string or null.
    OptStr,
    /// An unsigned number or null.
    OptUint,
}

impl Ty {
    fn matches(self, v: &Value) -> bool {
        match self {
            Ty::Str => v.is_string(),
            Ty::Uint => v.is_u64(),
            Ty::Num => v.is_number(),
            Ty::Bool => v.is_boolean(),
            Ty::Arr => v.is_array(),
            Ty::Obj => v.is_object(),
            Ty::OptStr => v.is_string() || v.is_null(),
            Ty::OptUint => v.is_u64() || v.is_null(),
        }
    }
}

/// Asserts that `v` has every field of `fields` with its type.
fn check(v: &Value, fields: &[(&str, Ty)]) {
    for &(name, ty) in fields {
        let field = v
            .get(name)
            .unwrap_or_else(|| panic!("field `{name}` missing in {v}"));
        assert!(ty.matches(field), "field `{name}` is not {ty:?} in {v}");
    }
}

/// Asserts `v` is a non-empty array and checks each element.
fn check_each(v: &Value, fields: &[(&str, Ty)]) {
    let items = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    assert!(!items.is_empty(), "empty array");
    items.iter().for_each(|item| check(item, fields));
}

/// The error object of a failing command under `--json`.
fn check_error(args: &[&str]) {
    let v = json(args, 1);
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "moat {args:?}: {v}"
    );
}

#[test]
fn inspect_lists_programs_maps_and_sections() {
    use Ty::*;
    let v = json(&["inspect", &example("examples/c/tailcall.o"), "--json"], 0);
    check(
        &v,
        &[
            ("file", Str),
            ("license", OptStr),
            ("kernel_version", OptUint),
            ("btf", Bool),
            ("btf_ext", Bool),
            ("programs", Arr),
            ("maps", Arr),
            ("sections", Arr),
        ],
    );
    check_each(
        &v["programs"],
        &[
            ("name", Str),
            ("section", Str),
            ("type", OptStr),
            ("insns", Uint),
            ("tag", Str),
            ("maps", Arr),
            ("core_relocations", Uint),
            ("unresolved", Arr),
        ],
    );
    check_each(
        &v["maps"],
        &[
            ("name", Str),
            ("type", OptStr),
            ("type_id", Uint),
            ("key_size", Uint),
            ("value_size", Uint),
            ("max_entries", Uint),
            ("flags", Uint),
            ("kind", Str),
            ("pinned_by_name", Bool),
        ],
    );
    check_each(
        &v["sections"],
        &[
            ("index", Uint),
            ("name", Str),
            ("kind", Str),
            ("size", Uint),
        ],
    );
    assert_eq!(v["license"], "GPL");
    assert_eq!(v["btf"], true);
    let dispatch = v["programs"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "dispatch"))
        .unwrap_or_else(|| panic!("no dispatch program: {v}"));
    assert_eq!(dispatch["type"], "xdp");
    assert!(dispatch["maps"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m == "handlers")));
    let handlers = &v["maps"][0];
    assert_eq!(handlers["name"], "handlers");
    assert_eq!(handlers["type"], "prog_array");
    assert_eq!(handlers["type_id"], 3);
    assert_eq!(handlers["key_size"], 4);
    // Global data maps say so.
    let v = json(&["inspect", &example("examples/c/globals.o"), "--json"], 0);
    let kinds: Vec<&str> = v["maps"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["kind"].as_str()).collect())
        .unwrap_or_default();
    assert!(kinds.contains(&"rodata"), "{kinds:?}");
    check_error(&["inspect", &example("examples/asm/checksum.s"), "--json"]);
    check_error(&["inspect", "/nonexistent/x.o", "--json"]);
}

/// `inspect --json` counts instructions as `verify --json` does.
#[test]
fn inspect_counts_insns_as_verify_does() {
    let file = example("examples/c/counter.o");
    let inspect = json(&["inspect", &file, "--json"], 0);
    let verify = json(&["verify", &file, "--json"], 0);
    check(
        &verify,
        &[("file", Ty::Str), ("ok", Ty::Bool), ("programs", Ty::Arr)],
    );
    check_each(
        &verify["programs"],
        &[
            ("program", Ty::Str),
            ("status", Ty::Str),
            ("insns", Ty::Uint),
            ("processed", Ty::Uint),
            ("states", Ty::Uint),
            ("peak_states", Ty::Uint),
            ("pruned", Ty::Uint),
            ("us", Ty::Num),
        ],
    );
    assert_eq!(
        inspect["programs"][0]["insns"],
        verify["programs"][0]["insns"]
    );
    assert!(inspect["programs"][0]["insns"]
        .as_u64()
        .is_some_and(|n| n > 0));
}

#[test]
fn disasm_gives_instructions_with_source_lines() {
    use Ty::*;
    let v = json(&["disasm", &example("examples/c/counter.o"), "--json"], 0);
    check(&v, &[("file", Str), ("programs", Arr)]);
    check_each(
        &v["programs"],
        &[("name", OptStr), ("section", OptStr), ("insns", Arr)],
    );
    let insns = &v["programs"][0]["insns"];
    check_each(insns, &[("pc", Uint), ("text", Str)]);
    let with_source: Vec<&Value> = insns
        .as_array()
        .map(|i| i.iter().filter(|i| i.get("source").is_some()).collect())
        .unwrap_or_default();
    assert!(!with_source.is_empty(), "no source lines: {v}");
    for i in with_source {
        check(i, &[("source", Obj)]);
        check(
            &i["source"],
            &[
                ("file", Str),
                ("line", Uint),
                ("column", Uint),
                ("text", Str),
            ],
        );
    }
    assert_eq!(insns[0]["pc"], 0);
    // One program of several; pcs count slots (an `lddw` takes two).
    let v = json(
        &[
            "disasm",
            &example("examples/c/tailcall.o"),
            "--program",
            "dispatch",
            "--json",
        ],
        0,
    );
    assert_eq!(v["programs"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["programs"][0]["name"], "dispatch");
    let has_lddw = v["programs"][0]["insns"].as_array().is_some_and(|i| {
        i.windows(2).any(|w| {
            w[0]["text"].as_str().is_some_and(|t| t.starts_with("lddw"))
                && w[1]["pc"].as_u64() == w[0]["pc"].as_u64().map(|pc| pc + 2)
        })
    });
    assert!(has_lddw, "{v}");
    // Bytecode without an object: one program without name or section.
    let v = json(
        &["disasm", &example("examples/asm/checksum.s"), "--json"],
        0,
    );
    assert_eq!(v["programs"][0]["name"], Value::Null);
    check_each(&v["programs"][0]["insns"], &[("pc", Uint), ("text", Str)]);
    check_error(&[
        "disasm",
        &example("examples/c/tailcall.o"),
        "--program",
        "nope",
        "--json",
    ]);
}

#[test]
fn asm_reports_what_it_wrote() {
    use Ty::*;
    let dir = temp_dir("asm");
    let out = dir.join("checksum.bin");
    let out_s = out.to_string_lossy();
    let v = json(
        &[
            "asm",
            &example("examples/asm/checksum.s"),
            "-o",
            &out_s,
            "--json",
        ],
        0,
    );
    check(&v, &[("output", Str), ("insns", Uint), ("bytes", Uint)]);
    let written = std::fs::read(&out).expect("output written");
    assert_eq!(v["output"], out_s.as_ref());
    assert_eq!(v["bytes"].as_u64(), Some(written.len() as u64));
    assert_eq!(v["insns"].as_u64(), Some(written.len() as u64 / 8));
    let bad = dir.join("bad.s");
    std::fs::write(&bad, "frobnicate %r0\n").expect("write");
    check_error(&["asm", &bad.to_string_lossy(), "-o", &out_s, "--json"]);
}
