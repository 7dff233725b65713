//! Programs of kernel types moat does not support (issue 20, item 8): an `fentry` program used to
//! pass for a buffer or kprobe program under `moat verify --verifier-only` and fail inside with
//! `scalar is not a pointer` (its context is the traced kernel function's arguments, described by
//! kernel BTF a userspace host does not have). Every verb now says that the program type is not
//! supported, naming the program and its section (`examples/c/fentry.bpf.c`: fentry, fexit, lsm).

use std::path::Path;
use std::process::{Command, Output};

fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("moat runs")
}

/// Standard output and error together.
fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// (program, section, what moat says of its type)
const PROGRAMS: [(&str, &str, &str); 3] = [
    (
        "on_connect",
        "fentry/tcp_connect",
        "program type tracing (trace_fentry) is not supported by moat",
    ),
    (
        "after_connect",
        "fexit/tcp_connect",
        "program type tracing (trace_fexit) is not supported by moat",
    ),
    (
        "check_connect",
        "lsm/socket_connect",
        "program type lsm (lsm_mac) is not supported by moat",
    ),
];

fn check(args: &[&str], program: &str, section: &str, message: &str) {
    let o = moat(args);
    let out = text(&o);
    assert!(!o.status.success(), "{args:?}: {out}");
    assert!(
        out.contains(&format!(
            "program `{program}` (section `{section}`): {message}"
        )),
        "{args:?}: {out}"
    );
    assert!(!out.contains("scalar is not a pointer"), "{args:?}: {out}");
    assert!(!out.contains("invalid access"), "{args:?}: {out}");
}

#[test]
fn every_verb_names_the_unsupported_program_type() {
    let file = "examples/c/fentry.o";
    for (program, section, message) in PROGRAMS {
        check(
            &["verify", file, "--program", program],
            program,
            section,
            message,
        );
        check(
            &["verify", "--verifier-only", file, "--program", program],
            program,
            section,
            message,
        );
        check(
            &["run", file, "--program", program],
            program,
            section,
            message,
        );
        check(
            &["run", "--no-verify", file, "--program", program],
            program,
            section,
            message,
        );
        if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            check(
                &["jit-dump", file, "--program", program],
                program,
                section,
                message,
            );
        }
    }
}

#[test]
fn json_verify_reports_them_as_not_loaded() {
    for extra in [None, Some("--verifier-only")] {
        let mut args = vec!["verify", "--json", "examples/c/fentry.o"];
        args.extend(extra);
        let o = moat(&args);
        assert!(!o.status.success());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
        let programs = v["programs"].as_array().expect("programs");
        assert_eq!(programs.len(), PROGRAMS.len(), "{v}");
        for (p, (program, _, message)) in programs.iter().zip(PROGRAMS) {
            assert_eq!(p["program"], program, "{extra:?}: {v}");
            assert_eq!(p["status"], "not_loaded", "{extra:?}: {v}");
            assert!(
                p["message"].as_str().is_some_and(|m| m.contains(message)),
                "{extra:?}: {v}"
            );
        }
    }
}

#[test]
fn an_explicit_type_still_verifies_them_as_that_type() {
    // `--type` is the user's word: the verifier then runs and rejects the BTF pointer read.
    let o = moat(&[
        "verify",
        "--verifier-only",
        "--type",
        "kprobe",
        "examples/c/fentry.o",
        "--program",
        "on_connect",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("on_connect: REJECTED"), "{}", text(&o));
}
