//! `--json` on every verb but `jit-dump`: each verb runs on the bundled examples (and on a pool
//! made in a temporary directory), its output parses as JSON, every field the tests expect is
//! there with its type, and every field it has is named in the verb's `--help`.

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

/// Every key of `v`, at any depth.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, inner) in map {
                out.push(k.clone());
                keys(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| keys(i, out)),
        _ => {}
    }
}

/// Asserts that `moat VERB --help` names (in backquotes, or quoted in a JSON shape) every field
/// `v` has: no undocumented field.
fn documented(verb: &[&str], v: &Value) {
    let mut args = verb.to_vec();
    args.push("--help");
    let help = String::from_utf8_lossy(&moat(&args).stdout).into_owned();
    let mut all = Vec::new();
    keys(v, &mut all);
    for k in all {
        assert!(
            help.contains(&format!("`{k}`")) || help.contains(&format!("\"{k}\"")),
            "`{k}` is not documented in moat {verb:?} --help:\n{help}"
        );
    }
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
    documented(&["inspect"], &v);
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

/// `inspect --json` names map and section kinds only as its help lists them, on every bundled
/// object.
#[test]
fn inspect_kinds_are_the_documented_ones() {
    let help = String::from_utf8_lossy(&moat(&["inspect", "--help"]).stdout).into_owned();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/c");
    let mut objects = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/c").flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "o") {
            continue;
        }
        objects += 1;
        let v = json(&["inspect", &path.to_string_lossy(), "--json"], 0);
        for list in ["maps", "sections"] {
            for item in v[list].as_array().into_iter().flatten() {
                let kind = item["kind"].as_str().unwrap_or_default();
                assert!(
                    help.contains(&format!("`{kind}`")),
                    "{list} kind `{kind}` of {} is not in inspect --help",
                    path.display()
                );
            }
        }
    }
    assert!(objects > 5, "only {objects} objects in {}", dir.display());
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
    documented(&["verify"], &verify);
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
    documented(&["disasm"], &v);
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
    documented(&["asm"], &v);
    let written = std::fs::read(&out).expect("output written");
    assert_eq!(v["output"], out_s.as_ref());
    assert_eq!(v["bytes"].as_u64(), Some(written.len() as u64));
    assert_eq!(v["insns"].as_u64(), Some(written.len() as u64 / 8));
    // A path that is not UTF-8 is shown lossily, never a panic.
    let odd = dir.join(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(b"o\xff.bin".to_vec()),
    );
    let o = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["asm", &example("examples/asm/checksum.s"), "--json", "-o"])
        .arg(&odd)
        .output()
        .expect("moat runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(
        v["output"]
            .as_str()
            .is_some_and(|p| p.ends_with("o\u{fffd}.bin")),
        "{v}"
    );
    let bad = dir.join("bad.s");
    std::fs::write(&bad, "frobnicate %r0\n").expect("write");
    check_error(&["asm", &bad.to_string_lossy(), "-o", &out_s, "--json"]);
}

/// The fields of `pool inspect --json` (and `pool create --json`).
fn check_pool_info(v: &Value) {
    use Ty::*;
    check(
        v,
        &[
            ("path", Str),
            ("uuid", Str),
            ("layout_version", Uint),
            ("size", Uint),
            ("created", Str),
            ("created_unix", Uint),
            ("owner_uid", Uint),
            ("owner_tag", OptStr),
            ("log", Obj),
            ("max_maps", Uint),
            ("heap_pages", Uint),
            ("free_pages", Uint),
            ("lock", Obj),
            ("maps", Arr),
        ],
    );
    assert!(v["mode"].is_null() || v["mode"].is_object(), "{v}");
    check(
        &v["log"],
        &[("size", Uint), ("state", Str), ("records", Uint)],
    );
    check(&v["lock"], &[("takeovers", Uint)]);
    assert!(v["lock"]["holder"].is_null() || v["lock"]["holder"].is_u64());
    let uuid = v["uuid"].as_str().unwrap_or_default();
    let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
    // RFC 3339 in UTC, and the same instant as `created_unix`.
    let created = v["created"].as_str().unwrap_or_default();
    let unix = v["created_unix"].as_u64().unwrap_or_default();
    assert_eq!(created, rfc3339(unix), "{v}");
}

/// RFC 3339 by the civil-from-days algorithm (Howard Hinnant's), independent of the `time` crate
/// the CLI uses.
fn rfc3339(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).expect("days fit");
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[test]
fn the_reference_date_conversion_is_right() {
    for (unix, text) in [
        (0, "1970-01-01T00:00:00Z"),
        (951_782_400, "2000-02-29T00:00:00Z"),
        (1_796_360_970, "2026-12-04T05:09:30Z"),
        (4_107_542_399, "2100-02-28T23:59:59Z"),
    ] {
        assert_eq!(rfc3339(unix), text);
    }
}

#[test]
fn pool_verbs_speak_json() {
    use Ty::*;
    let dir = temp_dir("pool");
    let pool = dir.join("p.pool").to_string_lossy().into_owned();
    let v = json(&["pool", "create", &pool, "--size", "1M", "--json"], 0);
    check_pool_info(&v);
    documented(&["pool", "inspect"], &v);
    assert_eq!(v["size"], 1 << 20);
    assert_eq!(v["log"]["state"], "clean");
    let v = json(
        &[
            "pool",
            "create-map",
            &pool,
            "m",
            "--key-size",
            "4",
            "--value-size",
            "8",
            "--max-entries",
            "16",
            "--json",
        ],
        0,
    );
    check(
        &v,
        &[
            ("path", Str),
            ("map", Str),
            ("key_size", Uint),
            ("value_size", Uint),
            ("max_entries", Uint),
        ],
    );
    documented(&["pool", "create-map"], &v);
    for key in ["01000000", "02000000"] {
        let v = json(
            &[
                "pool",
                "update",
                &pool,
                "m",
                key,
                "2a00000000000000",
                "--json",
            ],
            0,
        );
        check(
            &v,
            &[("path", Str), ("map", Str), ("key", Str), ("value", Str)],
        );
        documented(&["pool", "update"], &v);
    }
    let v = json(&["pool", "delete", &pool, "m", "02000000", "--json"], 0);
    check(&v, &[("path", Str), ("map", Str), ("key", Str)]);
    documented(&["pool", "delete"], &v);
    assert_eq!(v["key"], "02 00 00 00");
    let v = json(&["pool", "dump", &pool, "m", "--json"], 0);
    check(&v, &[("path", Str), ("map", Str), ("entries", Arr)]);
    check_each(&v["entries"], &[("key", Str), ("value", Str)]);
    documented(&["pool", "dump"], &v);
    assert_eq!(v["entries"][0]["key"], "01 00 00 00");
    assert_eq!(v["entries"][0]["value"], "2a 00 00 00 00 00 00 00");
    assert_eq!(v["entries"].as_array().map(Vec::len), Some(1));
    let v = json(&["pool", "verify", &pool, "--json"], 0);
    check(
        &v,
        &[
            ("path", Str),
            ("ok", Bool),
            ("maps", Uint),
            ("elements", Uint),
            ("free_pages", Uint),
            ("recovered", Obj),
        ],
    );
    check(
        &v["recovered"],
        &[("rolled_back", Uint), ("completed_frees", Uint)],
    );
    documented(&["pool", "verify"], &v);
    assert_eq!(
        (v["maps"].as_u64(), v["elements"].as_u64()),
        (Some(1), Some(1))
    );
    let v = json(&["pool", "inspect", &pool, "--json"], 0);
    check_pool_info(&v);
    documented(&["pool", "inspect"], &v);
    check_each(
        &v["maps"],
        &[
            ("name", Str),
            ("type", Str),
            ("key_size", Uint),
            ("value_size", Uint),
            ("max_entries", Uint),
            ("entries", Uint),
            ("owner_uid", Uint),
            ("owner_tag", OptStr),
            ("sealed", Bool),
            ("acl", Arr),
            ("extent_offset", Uint),
            ("extent_len", Uint),
        ],
    );
    assert_eq!(v["maps"][0]["entries"], 1);
    // Errors: still JSON.
    check_error(&["pool", "dump", &pool, "nomap", "--json"]);
    // Said once: no path or cause repeated.
    let v = json(&["pool", "create", &pool, "--json"], 1);
    let error = v["error"].as_str().unwrap_or_default();
    assert_eq!(error.matches(pool.as_str()).count(), 1, "{error}");
    assert_eq!(error.matches("exists").count(), 1, "{error}");
    check_error(&[
        "pool",
        "verify",
        &dir.join("none").to_string_lossy(),
        "--json",
    ]);
}

/// The text of `pool inspect` and `pool verify` is for people: dates in RFC 3339, no debug output.
#[test]
fn pool_text_is_readable() {
    let dir = temp_dir("pool-text");
    let pool = dir.join("p.pool").to_string_lossy().into_owned();
    let info = json(&["pool", "create", &pool, "--size", "1M", "--json"], 0);
    let o = moat(&["pool", "inspect", &pool]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    let created = info["created"].as_str().unwrap_or("?");
    assert!(text.contains(&format!("created {created}")), "{text}");
    assert!(!text.contains("(unix)"), "{text}");
    let o = moat(&["pool", "verify", &pool]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert_eq!(
        text.trim(),
        format!(
            "pool {pool}: consistent: 0 maps, 0 elements, {} free heap pages",
            info["free_pages"]
        )
    );
}

/// `run --json --dump-maps`: per-CPU values one per CPU, decoded through BTF.
#[test]
fn run_dumps_per_cpu_values_per_cpu() {
    use Ty::*;
    let v = json(
        &[
            "run",
            &example("examples/c/lpm.o"),
            "--mem-file",
            &example("examples/packets/udp.bin"),
            "--map",
            "routes:{24, 0x0001a8c0}=7",
            "--dump-maps",
            "--repeat",
            "3",
            "--json",
        ],
        0,
    );
    check(
        &v,
        &[
            ("file", Str),
            ("program", OptStr),
            ("runs", Uint),
            ("ns_per_run", Num),
            ("trace", Arr),
            ("maps", Arr),
            ("r0", Uint),
        ],
    );
    documented(&["run"], &v);
    check_each(
        &v["maps"],
        &[
            ("name", Str),
            ("type", Str),
            ("pooled", Bool),
            ("entries", Arr),
        ],
    );
    let routes = &v["maps"][0];
    assert_eq!(routes["type"], "lpm_trie");
    check_each(
        &routes["entries"],
        &[
            ("key", Str),
            ("key_c", Str),
            ("value", Str),
            ("value_c", Str),
        ],
    );
    let hits = &v["maps"][1];
    assert_eq!(hits["type"], "percpu_array");
    // Only the slot the program wrote; one value per CPU, summing to the runs.
    assert_eq!(hits["entries"].as_array().map(Vec::len), Some(1));
    let entry = &hits["entries"][0];
    check(entry, &[("key", Str), ("key_c", Str), ("values", Arr)]);
    assert!(entry.get("value").is_none(), "{entry}");
    assert_eq!(entry["key_c"], "7");
    check_each(
        &entry["values"],
        &[("cpu", Uint), ("value", Str), ("value_c", Str)],
    );
    let values = entry["values"].as_array().cloned().unwrap_or_default();
    let sum: u64 = values
        .iter()
        .filter_map(|c| c["value_c"].as_str()?.parse::<u64>().ok())
        .sum();
    assert_eq!(sum, 3, "{entry}");
    for (i, c) in values.iter().enumerate() {
        assert_eq!(c["cpu"].as_u64(), Some(i as u64));
        assert_eq!(c["value"].as_str().map(|h| h.split(' ').count()), Some(8));
    }
    check_error(&["run", "/nonexistent.o", "--json"]);
}

/// `trace --json`: one JSON object per line, each of a documented shape.
#[test]
fn trace_prints_json_lines() {
    use Ty::*;
    let o = moat(&[
        "trace",
        "--json",
        "-o",
        "/dev/stdout",
        &example("examples/c/malloc_free.o"),
        "--",
        "/bin/true",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let shapes: [(&str, &[(&str, Ty)]); 4] = [
        (
            "attached",
            &[
                ("attached", Str),
                ("point", Str),
                ("address", Uint),
                ("method", Str),
            ],
        ),
        (
            "map",
            &[("map", Str), ("key", Str), ("value", Str), ("dump", Uint)],
        ),
        (
            "stats",
            &[
                ("stats", Str),
                ("runs", Uint),
                ("failed", Uint),
                ("missed", Uint),
                ("over_budget", Uint),
            ],
        ),
        ("detached", &[("detached", Bool)]),
    ];
    for (tag, fields) in shapes {
        let of_shape: Vec<&Value> = lines.iter().filter(|l| l.get(tag).is_some()).collect();
        assert!(!of_shape.is_empty(), "no `{tag}` line in {text}");
        of_shape.iter().for_each(|l| check(l, fields));
    }
    for l in &lines {
        documented(&["trace"], l);
    }
    assert_eq!(
        lines.last().map(|l| &l["detached"]),
        Some(&Value::Bool(true))
    );
}

/// `memleak --json`: one JSON object per report.
#[test]
fn memleak_prints_json_reports() {
    use Ty::*;
    let o = moat(&["memleak", "--json", "-o", "/dev/stdout", "--", "/bin/true"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    let last = text.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {text}"));
    check(
        &v,
        &[
            ("seconds", Num),
            ("outstanding_bytes", Uint),
            ("stacks_with_outstanding", Uint),
            ("stacks", Arr),
        ],
    );
    for stack in v["stacks"].as_array().into_iter().flatten() {
        check(
            stack,
            &[
                ("bytes", Uint),
                ("allocations", Uint),
                ("stack_id", Num),
                ("frames", Arr),
            ],
        );
        for frame in stack["frames"].as_array().into_iter().flatten() {
            check(frame, &[("address", Uint), ("offset", Uint)]);
            for optional in ["function", "file", "object"] {
                assert!(
                    frame[optional].is_string() || frame[optional].is_null(),
                    "{frame}"
                );
            }
            assert!(frame["line"].is_u64() || frame["line"].is_null(), "{frame}");
        }
    }
    documented(&["memleak"], &v);
    check_error(&[
        "memleak",
        "--json",
        "-o",
        "/nonexistent/report.json",
        "--",
        "/bin/true",
    ]);
}

/// `omb --json`: one object with every benchmark's rows per transport.
#[test]
fn omb_prints_one_json_object() {
    use Ty::*;
    let small = ["-t", "pool,tcp-lo", "--max", "8", "--iters", "20"];
    let mut args = vec!["omb", "mbw_mr", "--json"];
    args.extend(small);
    let v = json(&args, 0);
    check(&v, &[("ranks", Uint), ("benchmarks", Arr)]);
    check_each(
        &v["benchmarks"],
        &[
            ("benchmark", Str),
            ("unit", Str),
            ("results", Arr),
            ("skipped", Arr),
        ],
    );
    let bench = &v["benchmarks"][0];
    assert_eq!(bench["benchmark"], "mbw_mr");
    assert_eq!(bench["unit"], "MB/s");
    let results = bench["results"].as_array().cloned().unwrap_or_default();
    let ran = results.len() + bench["skipped"].as_array().map_or(0, Vec::len);
    assert_eq!(ran, 2, "{bench}");
    for r in &results {
        check(r, &[("transport", Str), ("rows", Arr)]);
        check_each(&r["rows"], &[("size", Uint), ("value", Num), ("rate", Num)]);
    }
    documented(&["omb", "mbw_mr"], &v);
    // Latency has no message rate.
    let mut args = vec!["omb", "latency", "--json"];
    args.extend(small);
    let v = json(&args, 0);
    assert_eq!(v["benchmarks"][0]["unit"], "us");
    check_each(
        &v["benchmarks"][0]["results"][0]["rows"],
        &[("size", Uint), ("value", Num)],
    );
    assert!(v["benchmarks"][0]["results"][0]["rows"][0]["rate"].is_null());
    check_error(&["omb", "latency", "--json", "--ranks", "1"]);
}

/// `sched-bench --json`: one object with each workload's curves; the plots still written.
#[test]
fn sched_bench_prints_one_json_object() {
    use Ty::*;
    let dir = temp_dir("sched");
    let dir_s = dir.to_string_lossy();
    let v = json(
        &[
            "sched-bench",
            "--requests",
            "1000",
            "--loads",
            "30",
            "--workloads",
            "bimodal,exponential",
            "--systems",
            "fcfs,coop-10",
            "--json",
            "--out",
            &dir_s,
        ],
        0,
    );
    check(
        &v,
        &[
            ("uintr", Str),
            ("requests", Uint),
            ("repeat", Uint),
            ("workloads", Arr),
        ],
    );
    check_each(
        &v["workloads"],
        &[
            ("workload", Str),
            ("mean_service_us", Num),
            ("plot", Str),
            ("systems", Arr),
        ],
    );
    for w in v["workloads"].as_array().into_iter().flatten() {
        let png = std::fs::read(w["plot"].as_str().unwrap_or_default()).expect("plot written");
        assert_eq!(png.get(1..4), Some(&b"PNG"[..]));
        check_each(&w["systems"], &[("system", Str), ("points", Arr)]);
        for s in w["systems"].as_array().into_iter().flatten() {
            check_each(
                &s["points"],
                &[
                    ("load", Num),
                    ("p50_us", Num),
                    ("p99_us", Num),
                    ("p999_us", Num),
                    ("preemptions_per_1k", Num),
                ],
            );
            let short = &s["points"][0]["short_p99_us"];
            assert_eq!(short.is_number(), w["workload"] == "bimodal", "{w}");
        }
    }
    documented(&["sched-bench"], &v);
    check_error(&["sched-bench", "--json", "--systems", "nosuch"]);
}

#[test]
fn usage_errors_under_json_are_json() {
    for args in [
        &["verify", "--json", "--bogus", "x"][..],
        &["inspect", "--json"][..],
        &[
            "trace",
            "--format",
            "json",
            "--interval",
            "soon",
            "x.o",
            "--",
            "true",
        ][..],
    ] {
        let v = json(args, 2);
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
        assert_eq!(v["usage"], Value::Bool(true), "{v}");
    }
    // Without --json, clap's text on standard error, exit code 2.
    let o = moat(&["verify", "--bogus", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--bogus"));
    // Help is not an error, --json or not.
    assert_eq!(moat(&["verify", "--json", "--help"]).status.code(), Some(0));
}
