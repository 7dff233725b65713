//! The verifier's rules, one hand-written program per rule: every `tests/rules/*.asm` file is verified
//! in the environment its header describes and must get the verdict the header expects.
//!
//! The header format is documented, and parsed, in `moat_fuzz::rules`; the same files are loaded into
//! the Linux kernel by `crates/moat/tests/kernel_verifier.rs`.

use moat_fuzz::rules::{rule_files, Expect, RuleFile};
use moat_isa::{Program, ProgramError};
use moat_verify::verify;
use std::path::Path;

/// The name of an enum value's variant, from its `Debug` form.
fn variant_name(debug: &str) -> String {
    debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The instruction a structural error names, if any.
fn program_error_pc(e: &ProgramError) -> Option<usize> {
    match *e {
        ProgramError::JumpOutOfRange { pc, .. }
        | ProgramError::JumpIntoLddw { pc, .. }
        | ProgramError::WritesFramePointer { pc }
        | ProgramError::UninitRegister { pc, .. }
        | ProgramError::FallsOffEnd { pc }
        | ProgramError::Kfunc { pc, .. } => Some(pc),
        _ => None,
    }
}

/// What actually happened: the verdict in the same form as [`Expect`], plus the message.
fn run(file: &RuleFile) -> Result<(Expect, String), String> {
    let bytes = moat_isa::assemble_bytes(&file.source).map_err(|e| format!("assembly: {e}"))?;
    let program = match Program::new_for_verifier(&bytes) {
        Ok(p) => p,
        Err(e) => {
            let variant = format!("Program::{}", variant_name(&format!("{e:?}")));
            let pc = program_error_pc(&e).unwrap_or(usize::MAX);
            return Ok((Expect::Reject { variant, pc }, e.to_string()));
        }
    };
    Ok(match verify(&program, &file.env()) {
        Ok(v) => (
            Expect::Accept,
            format!(
                "accepted ({} instructions processed)",
                v.stats().insns_processed
            ),
        ),
        Err(r) => (
            Expect::Reject {
                variant: variant_name(&format!("{:?}", r.error.reason)),
                pc: r.error.pc,
            },
            r.error.to_string(),
        ),
    })
}

/// Verifies one rule file; `Err` describes a mismatch. With `MOAT_RULES_VERBOSE` set, prints every
/// verdict's message.
fn check(path: &Path) -> Result<RuleFile, String> {
    let source = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let file = RuleFile::parse(&source).map_err(|e| e.to_string())?;
    let (actual, message) = run(&file)?;
    if std::env::var_os("MOAT_RULES_VERBOSE").is_some() {
        println!("{}: {message}", path.display());
    }
    if actual != file.expect {
        return Err(format!("expected {}, got {actual}: {message}", file.expect));
    }
    Ok(file)
}

#[test]
fn every_rule_file_gets_its_expected_verdict() {
    let mut failed = Vec::new();
    let (mut rejecting, mut accepting, mut fixmes) = (0, 0, Vec::new());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules");
    let files = rule_files(&dir).expect("tests/rules exists");
    for path in &files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        match check(path) {
            Ok(file) => {
                match file.expect {
                    Expect::Accept => accepting += 1,
                    Expect::Reject { .. } => rejecting += 1,
                }
                if let Some(f) = file.fixme {
                    fixmes.push(format!("{name}: {f}"));
                }
                assert!(!file.rule.is_empty(), "{name}: empty rule");
            }
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    println!(
        "{} passed, {} failed ({rejecting} rejecting, {accepting} accepting)",
        files.len() - failed.len(),
        failed.len()
    );
    for f in &fixmes {
        println!("FIXME {f}");
    }
    assert!(failed.is_empty(), "mismatches:\n{}", failed.join("\n"));
    assert!(
        rejecting >= 60,
        "issue 5 asks for at least 60 unsafe programs, found {rejecting}"
    );
}

#[test]
fn variant_names_come_from_debug_forms() {
    assert_eq!(variant_name("OutOfBounds { region: \"x\" }"), "OutOfBounds");
    assert_eq!(variant_name("TooComplex"), "TooComplex");
}
