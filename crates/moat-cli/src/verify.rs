//! `moat verify`: load a program (or every program of an object) as `moat run` would and print OK
//! with the verifier's statistics, or why not (the rejection, or what moat cannot run);
//! `--verifier-only` runs the verifier alone.

use crate::input::Input;
use crate::setup::Setup;
use anyhow::{bail, Context, Result};
use moat::{Error, ObjectOptions, ProgType, Rejection, Runtime, Verification, VerifiedProgram};
use std::io::{IsTerminal, Write};

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
    /// Input size for buffer programs (`None`: an object's BTF says, else 0).
    pub buffer_size: Option<u64>,
    /// Only the verifier (no maps created, no check that moat runs every helper and map type).
    pub verifier_only: bool,
    /// Map, global and program-array setup before an object loads.
    pub setup: &'a Setup,
    /// Print one JSON object instead of lines.
    pub json: bool,
}

fn ok_line(name: &str, v: &VerifiedProgram) -> String {
    let s = v.stats();
    format!(
        "{name}: OK ({} insns, {} instructions processed, {} states, peak {} states, {} pruned, {:.1} µs)",
        v.program().slots(),
        s.insns_processed,
        s.states,
        s.peak_states,
        s.pruned,
        v.elapsed().as_secs_f64() * 1e6
    )
}

thread_local! {
    /// Set when a program failed for another reason than the verifier (the final message says so).
    static NOT_LOADED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// With `--json`: the programs' results, printed together at the end instead of lines.
    static JSON: std::cell::RefCell<Option<Vec<serde_json::Value>>> =
        const { std::cell::RefCell::new(None) };
}

/// Adds a program's result to the JSON output, if `--json` is on; whether it was.
fn json_result(value: impl FnOnce() -> serde_json::Value) -> bool {
    JSON.with_borrow_mut(|j| j.as_mut().map(|j| j.push(value())).is_some())
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
    let s = v.stats();
    if json_result(|| {
        serde_json::json!({
            "program": name,
            "status": "ok",
            "insns": v.program().slots(),
            "processed": s.insns_processed,
            "states": s.states,
            "peak_states": s.peak_states,
            "pruned": s.pruned,
            "us": v.elapsed().as_secs_f64() * 1e6,
        })
    }) {
        return true;
    }
    if log {
        v.log().iter().for_each(|l| out!("  {l}"));
    }
    out!("{}", ok_line(name, v));
    true
}

fn report_err(name: &str, e: &Error, log: bool) -> bool {
    if rejection(e).is_none() {
        NOT_LOADED.set(true);
    }
    if json_result(|| match rejection(e) {
        Some(r) => serde_json::json!({
            "program": name,
            "status": "rejected",
            "pc": r.error.pc,
            "message": r.to_string(),
        }),
        None => serde_json::json!({
            "program": name,
            "status": "not_loaded",
            "message": error_chain(e),
        }),
    }) {
        return false;
    }
    match rejection(e) {
        Some(r) => {
            if log {
                r.log.iter().for_each(|l| out!("  {l}"));
            }
            out!("{name}: REJECTED {r}");
        }
        None => out!("{name}: NOT LOADED {}", error_chain(e)),
    }
    false
}

/// The whole chain: "program `p`: instruction 57: helper 173 (bpf_get_func_ip) is not implemented".
fn error_chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        text += &format!(": {inner}");
        source = inner.source();
    }
    text
}

fn report(name: &str, result: Result<&moat::LoadedProgram, &Error>, log: bool) -> bool {
    match result {
        Ok(p) => match p.verified() {
            Some(v) => report_ok(name, v, log),
            None => {
                if !json_result(|| serde_json::json!({"program": name, "status": "not_verified"})) {
                    out!("{name}: not verified");
                }
                false
            }
        },
        Err(e) => report_err(name, e, log),
    }
}

/// While an object's programs are verified, one line on standard error naming the program being
/// verified (`verifying 3/12 from-netdev ...`), rewritten in place and cleared at the end; only
/// when standard error is a terminal and the output is not JSON, so that pipes and scripts see
/// none of it.
struct Progress {
    names: Vec<String>,
    done: usize,
    on: bool,
}

/// How the progress line names a program: its name and, if different, its section.
fn progress_name(name: &str, section: &str) -> String {
    if name == section {
        name.to_string()
    } else {
        format!("{name} ({section})")
    }
}

impl Progress {
    fn new(names: Vec<String>, json: bool) -> Progress {
        let on = !json && !names.is_empty() && std::io::stderr().is_terminal();
        let progress = Progress { names, done: 0, on };
        progress.show();
        progress
    }

    fn show(&self) {
        if let (true, Some(name)) = (self.on, self.names.get(self.done)) {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[Kverifying {}/{} {name} ...",
                self.done + 1,
                self.names.len()
            );
            let _ = err.flush();
        }
    }

    /// One more program verified: names the next one.
    fn advance(&mut self) {
        self.done += 1;
        self.show();
    }

    /// Clears the line before the results are printed.
    fn finish(&self) {
        if self.on {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// Verifies `input`; fails when any program is rejected.
pub fn verify(input: &Input, args: &VerifyArgs<'_>) -> Result<()> {
    if args.json {
        JSON.set(Some(Vec::new()));
    }
    let mut rt = Runtime::new();
    rt.set_verification(if args.unprivileged {
        Verification::Unprivileged
    } else {
        Verification::Privileged
    });
    rt.set_verifier_log(args.log);
    if let Some(size) = args.buffer_size {
        rt.set_buffer_size(size);
    } else if input.object_bytes().is_none() {
        rt.set_buffer_size(0);
    }
    let mut all_ok = true;
    if let (Some(bytes), false) = (input.object_bytes(), args.verifier_only) {
        // What `run` does: maps created (set up first), every program verified and loaded, so a
        // helper or map type moat cannot run fails here too, by name.
        let mut open = rt
            .open_object(bytes)
            .with_context(|| input.path().to_string())?;
        if let Some(prog_type) = args.prog_type {
            open.set_prog_type(prog_type);
        }
        args.setup
            .apply(&mut open)
            .with_context(|| input.path().to_string())?;
        let mut progress = Progress::new(
            open.object()
                .programs
                .iter()
                .map(|p| progress_name(&p.name, &p.section))
                .collect(),
            args.json,
        );
        let loaded = open.load_each(|_, _| progress.advance());
        progress.finish();
        let loaded = loaded.with_context(|| input.path().to_string())?;
        let mut matched = false;
        for (spec, (name, result)) in loaded.object().programs.iter().zip(loaded.programs()) {
            if args.program.is_some_and(|p| p != name && p != spec.section) {
                continue;
            }
            matched = true;
            all_ok &= report(name, result, args.log);
        }
        if !matched {
            loaded.object().program(args.program.unwrap_or_default())?;
        }
    } else if let Some(bytes) = input.object_bytes() {
        let obj = moat::Object::parse(bytes)?;
        let mut progress = Progress::new(
            obj.programs
                .iter()
                .map(|p| progress_name(&p.name, &p.section))
                .collect(),
            args.json,
        );
        let verdicts = rt.verify_object_each(
            bytes,
            ObjectOptions {
                prog_type: args.prog_type,
            },
            |_, _| progress.advance(),
        );
        progress.finish();
        let verdicts = verdicts?;
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
        if !args.setup.is_empty() {
            bail!(
                "{}: --map, --global and --prog-array need an ELF object",
                input.path()
            );
        }
        let bytes = input.bytecode(None)?;
        let prog_type = args.prog_type.unwrap_or(ProgType::Buffer);
        let loaded = rt.load_bytecode_as(&bytes, prog_type);
        all_ok &= report(input.path(), loaded.as_ref(), args.log);
    }
    if let Some(programs) = JSON.take() {
        let v = serde_json::json!({
            "file": input.path(),
            "ok": all_ok,
            "programs": programs,
        });
        out!("{v}");
        if !all_ok {
            std::process::exit(1);
        }
        return Ok(());
    }
    if !all_ok {
        if NOT_LOADED.get() {
            bail!("{}: not every program loads", input.path());
        }
        bail!("{}: rejected by the verifier", input.path());
    }
    Ok(())
}
