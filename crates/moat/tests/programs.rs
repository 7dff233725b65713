//! Data-driven engine tests: each `tests/data/*.asm` file is a program whose header comments give its
//! input and the expected outcome, run through one `check` helper.
//!
//! Header lines: `# mem: HEX BYTES`, `# budget: N`, and either `# result: 0xVALUE` or
//! `# error: Variant [at PC]` (the error's variant name, and for run-time errors the instruction).

use moat::{Error, Runtime};
use std::path::Path;

struct Expect {
    mem: Vec<u8>,
    budget: Option<u64>,
    result: Option<u64>,
    error: Option<(String, Option<usize>)>,
}

fn header(text: &str) -> Expect {
    let mut e = Expect {
        mem: Vec::new(),
        budget: None,
        result: None,
        error: None,
    };
    for line in text.lines().filter_map(|l| l.strip_prefix('#')) {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("mem:") {
            e.mem = v
                .split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
                .collect();
        } else if let Some(v) = line.strip_prefix("budget:") {
            e.budget = Some(v.trim().parse().expect("budget"));
        } else if let Some(v) = line.strip_prefix("result:") {
            let v = v.trim().trim_start_matches("0x");
            e.result = Some(u64::from_str_radix(v, 16).expect("result"));
        } else if let Some(v) = line.strip_prefix("error:") {
            let mut parts = v.split_whitespace();
            let name = parts.next().expect("variant").to_string();
            let pc = match (parts.next(), parts.next()) {
                (Some("at"), Some(pc)) => Some(pc.parse().expect("pc")),
                _ => None,
            };
            e.error = Some((name, pc));
        }
    }
    e
}

/// The variant name of an error, from its `Debug` form, and the instruction of run-time errors.
fn variant(e: &Error) -> (String, Option<usize>) {
    let name = |d: String| {
        d.split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("")
            .to_string()
    };
    match e {
        Error::Run(r) => (name(format!("{:?}", r.kind)), Some(r.pc)),
        Error::Program(p) => (name(format!("{p:?}")), None),
        Error::Link(p) => (name(format!("{p:?}")), None),
        Error::Asm(a) => (name(format!("{:?}", a.kind)), None),
        other => (name(format!("{other:?}")), None),
    }
}

fn check(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let expect = header(&text);
    let mut rt = Runtime::new();
    if let Some(b) = expect.budget {
        rt.set_budget(b);
    }
    let mut mem = expect.mem.clone();
    let outcome = rt.load_asm(&text).and_then(|p| p.run(&mut mem));
    match (&expect.result, &expect.error, outcome) {
        (Some(want), _, Ok(got)) if *want == got => Ok(()),
        (_, Some((want, want_pc)), Err(e)) => {
            let (got, pc) = variant(&e);
            if &got == want && (want_pc.is_none() || *want_pc == pc) {
                Ok(())
            } else {
                Err(format!("expected {want} at {want_pc:?}, got {e}"))
            }
        }
        (_, _, outcome) => Err(format!(
            "expected result {:?} / error {:?}, got {outcome:?}",
            expect.result, expect.error
        )),
    }
}

#[test]
fn data_programs_behave_as_their_headers_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/data")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "asm"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the data programs in {}",
        dir.display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| check(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    println!(
        "{} passed, {} failed",
        files.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
