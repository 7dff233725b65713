//! `moat verify`: run the verifier on a program (or every program of an object) and print OK with
//! statistics, or the rejection.

use crate::input::Input;
use anyhow::{bail, Result};
use moat::{Error, ObjectOptions, ProgType, Rejection, Runtime, Verification, VerifiedProgram};

/// Options of `moat verify`.
pub struct VerifyArgs<'a> {
    /// For objects: only this program.
    pub program: Option<&'a str>,
    /// Program type override.
    pub prog_type: Option<ProgType>,
    /// Unprivileged rules.
    pub unprivileged: bool,
    /// Print the per-instruction log.
    pub log: bool,
    /// Input size for buffer programs.
    pub buffer_size: u64,
}

fn ok_line(name: &str, v: &VerifiedProgram) -> String {
    let s = v.stats();
    format!(
        "{name}: OK ({} insns, {} instructions processed, {} states, peak {} states, {} pruned, {:.1} µs)",
        v.program().insns().len(),
        s.insns_processed,
        s.states,
        s.peak_states,
        s.pruned,
        v.elapsed().as_secs_f64() * 1e6
    )
}

/// Finds the rejection inside a load error, if it is one.
fn rejection(e: &Error) -> Option<&Rejection> {
    match e {
        Error::Verify(r) => Some(r),
        Error::InProgram { source, .. } => rejection(source),
        Error::ProgramUnavailable { source, .. } => rejection(source),
        _ => None,
    }
}

fn report_ok(name: &str, v: &VerifiedProgram, log: bool) -> bool {
    if log {
        v.log().iter().for_each(|l| out!("  {l}"));
    }
    out!("{}", ok_line(name, v));
    true
}

fn report_err(name: &str, e: &Error, log: bool) -> bool {
    match rejection(e) {
        Some(r) => {
            if log {
                r.log.iter().for_each(|l| out!("  {l}"));
            }
            out!("{name}: REJECTED {r}");
        }
        None => out!("{name}: NOT LOADED {e}"),
    }
    false
}

fn report(name: &str, result: Result<&moat::LoadedProgram, &Error>, log: bool) -> bool {
    match result {
        Ok(p) => match p.verified() {
            Some(v) => report_ok(name, v, log),
            None => {
                out!("{name}: not verified");
                false
            }
        },
        Err(e) => report_err(name, e, log),
    }
}

/// Verifies `input`; fails when any program is rejected.
pub fn verify(input: &Input, args: &VerifyArgs<'_>) -> Result<()> {
    let mut rt = Runtime::new();
    rt.set_verification(if args.unprivileged {
        Verification::Unprivileged
    } else {
        Verification::Privileged
    });
    rt.set_verifier_log(args.log);
    rt.set_buffer_size(args.buffer_size);
    let mut all_ok = true;
    if let Some(bytes) = input.object_bytes() {
        let obj = moat::Object::parse(bytes)?;
        let verdicts = rt.verify_object(
            bytes,
            ObjectOptions {
                prog_type: args.prog_type,
            },
        )?;
        let mut matched = false;
        for (spec, (name, verdict)) in obj.programs.iter().zip(&verdicts) {
            if args.program.is_some_and(|p| p != name && p != spec.section) {
                continue;
            }
            matched = true;
            all_ok &= match verdict {
                Ok(v) => report_ok(name, v, args.log),
                Err(e) => report_err(name, e, args.log),
            };
        }
        if !matched {
            obj.program(args.program.unwrap_or_default())?;
        }
    } else {
        let bytes = input.bytecode(None)?;
        let prog_type = args.prog_type.unwrap_or(ProgType::Buffer);
        let loaded = rt.load_bytecode_as(&bytes, prog_type);
        all_ok &= report(input.path(), loaded.as_ref(), args.log);
    }
    if !all_ok {
        bail!("{}: rejected by the verifier", input.path());
    }
    Ok(())
}
