//! `moat verify` on a large object printed nothing for many seconds (issue 20, item 5): it now
//! names each program on standard error as it is verified (`verifying 2/3 handle_tcp ...`), but
//! only when standard error is a terminal and never with `--json`, so that pipes and scripts see
//! no progress noise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("moat runs")
}

/// `moat ARGS` with standard output and error on a pseudo-terminal (util-linux `script`), both
/// as one text; `None` where `script` is missing.
fn moat_on_terminal(args: &[&str]) -> Option<String> {
    let command = std::iter::once(env!("CARGO_BIN_EXE_moat"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(root())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

const MODES: [&[&str]; 2] = [&[], &["--verifier-only"]];

#[test]
fn piped_output_has_no_progress() {
    for mode in MODES {
        for json in [false, true] {
            let mut args = vec!["verify", "examples/c/tailcall.o"];
            args.extend_from_slice(mode);
            if json {
                args.push("--json");
            }
            let out = moat(&args);
            assert!(out.status.success(), "{args:?}: {out:?}");
            assert!(out.stderr.is_empty(), "{args:?}: stderr {out:?}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!stdout.contains("verifying"), "{args:?}: {stdout}");
            assert!(
                !stdout.contains('\r') && !stdout.contains('\x1b'),
                "{args:?}"
            );
            if json {
                serde_json::from_str::<serde_json::Value>(&stdout).expect("JSON alone");
            }
        }
    }
}

#[test]
fn a_terminal_sees_each_program_named_as_it_is_verified() {
    for mode in MODES {
        let mut args = vec!["verify", "examples/c/tailcall.o"];
        args.extend_from_slice(mode);
        let Some(text) = moat_on_terminal(&args) else {
            eprintln!("`script` (util-linux) not found: the terminal case is not checked");
            return;
        };
        for (i, name) in ["handle_tcp", "handle_udp", "dispatch"].iter().enumerate() {
            assert!(
                text.contains(&format!("verifying {}/3 {name} (xdp) ...", i + 1)),
                "{args:?}: {text:?}"
            );
        }
        // The line is cleared before the results.
        let last = text.rfind("verifying").expect("progress");
        let results = text.find("handle_tcp: OK").expect("results");
        assert!(last < results, "{text:?}");
        args.push("--json");
        let text = moat_on_terminal(&args).expect("script ran before");
        assert!(!text.contains("verifying"), "{args:?}: {text:?}");
    }
}
