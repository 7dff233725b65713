//! One semantics: the interpreter and the JIT agree on every conformance program, every data program
//! of `tests/data` (result, or error variant and instruction) and every example object on every
//! sample packet (verdicts, packets and map contents). Where the JIT is not supported this compares
//! the interpreter with itself.

mod common;
use common::{shared_dir, workspace_root as root};

use moat::{DataFile, Engine, LoadedObject, ObjectOptions, Runtime};
use std::path::{Path, PathBuf};

fn runtime(engine: Engine) -> Runtime {
    let mut rt = Runtime::new();
    rt.set_engine(engine);
    rt
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// The outcome of a run as comparable text: `r0` or the error's variant and instruction, plus memory.
fn outcome(result: Result<u64, moat::Error>, mem: &[u8]) -> String {
    let r = match result {
        Ok(v) => format!("ok {v:#x}"),
        Err(moat::Error::Run(e)) => {
            let kind = format!("{:?}", e.kind);
            let variant = kind
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("");
            format!("error {variant} at {}", e.pc)
        }
        Err(e) => format!("load error {e}"),
    };
    format!("{r} mem {mem:02x?}")
}

fn check_both(name: &str, run: impl Fn(Engine) -> String, failures: &mut Vec<String>) {
    let interp = run(Engine::Interp);
    let jit = run(Engine::Jit);
    if interp != jit {
        failures.push(format!("{name}:\n  interp {interp}\n  jit    {jit}"));
    }
}

fn report(what: &str, total: usize, failures: &[String]) {
    for f in failures {
        eprintln!("DIFF {f}");
    }
    println!(
        "{what}: {} passed, {} failed",
        total - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{} {what} differ", failures.len());
}

#[test]
fn conformance_programs_agree() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let dir = shared.join("conformance/tests");
    let files = files(&dir, "data");
    assert!(files.len() >= 300, "conformance files in {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read");
        let file = DataFile::parse(&text).expect("parses");
        check_both(
            &path.display().to_string(),
            |engine| {
                let mut mem = file.mem.clone();
                let result = runtime(engine)
                    .load_data_file(&file)
                    .and_then(|p| p.run(&mut mem));
                outcome(result, &mem)
            },
            &mut failures,
        );
    }
    report("conformance", files.len(), &failures);
}

#[test]
fn data_programs_agree() {
    let files = files(&root().join("crates/moat/tests/data"), "asm");
    assert!(files.len() >= 20);
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read");
        let mut mem: Vec<u8> = Vec::new();
        let mut budget = None;
        for line in text.lines().filter_map(|l| l.strip_prefix('#')) {
            if let Some(v) = line.trim().strip_prefix("mem:") {
                mem = v
                    .split_whitespace()
                    .filter_map(|b| u8::from_str_radix(b, 16).ok())
                    .collect();
            } else if let Some(v) = line.trim().strip_prefix("budget:") {
                budget = v.trim().parse::<u64>().ok();
            }
        }
        check_both(
            &path.display().to_string(),
            |engine| {
                let mut rt = runtime(engine);
                if let Some(b) = budget {
                    rt.set_budget(b);
                }
                let mut m = mem.clone();
                let result = rt.load_asm(&text).and_then(|p| p.run(&mut m));
                outcome(result, &m)
            },
            &mut failures,
        );
    }
    report("data programs", files.len(), &failures);
}

/// Maps whose values are clock readings (`bpf_ktime_get_ns`), so two runs never store the same
/// values: for these the engines must agree on the keys and the value sizes only.
const CLOCK_VALUED_MAPS: &[(&str, &str)] = &[("uretprobe_latency.o", "start")];

/// Every program of every example object on every sample packet, three times in a row (maps carry
/// state from run to run), then the maps' contents.
#[test]
fn example_objects_agree() {
    let objects = files(&root().join("examples/c"), "o");
    let packets = files(&root().join("examples/packets"), "bin");
    assert!(objects.len() >= 6 && packets.len() >= 3);
    let mut failures = Vec::new();
    let mut total = 0;
    for obj in &objects {
        let bytes = std::fs::read(obj).expect("object");
        total += 1;
        check_both(
            &obj.display().to_string(),
            |engine| {
                let rt = runtime(engine);
                let loaded: LoadedObject = match rt.load_object(&bytes, ObjectOptions::default()) {
                    Ok(l) => l,
                    Err(e) => return format!("load error {e}"),
                };
                let mut out = String::new();
                let names: Vec<String> = loaded.programs().map(|(n, _)| n.to_string()).collect();
                for name in names {
                    let Ok(prog) = loaded.program(&name) else {
                        out += &format!("{name}: unavailable\n");
                        continue;
                    };
                    for _ in 0..3 {
                        for p in &packets {
                            let mut packet = std::fs::read(p).expect("packet");
                            let result = prog.run(&mut packet);
                            out +=
                                &format!("{name} {}: {}\n", p.display(), outcome(result, &packet));
                        }
                    }
                }
                let file = obj.file_name().and_then(|f| f.to_str()).unwrap_or("");
                for (name, map) in loaded.maps() {
                    let clock_valued = CLOCK_VALUED_MAPS.contains(&(file, name));
                    let mut entries: Vec<(Vec<u8>, Option<Vec<u8>>)> = map
                        .keys()
                        .map(|k| {
                            let value = map.lookup(&k).ok();
                            let value = if clock_valued {
                                value.map(|v| vec![0; v.len()])
                            } else {
                                value
                            };
                            (k.clone(), value)
                        })
                        .collect();
                    entries.sort();
                    out += &format!("map {name}: {entries:02x?}\n");
                }
                out
            },
            &mut failures,
        );
    }
    report("example objects", total, &failures);
}
