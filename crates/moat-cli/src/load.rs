//! `moat load -- TOOL ARGS`: runs an unmodified libbpf tool with moat's `bpf(2)` interposer
//! (`libmoat_interpose.so`) preloaded, so its maps, programs and BTF are moat's.

use clap::Args;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// `moat load -- TOOL ARGS`.
#[derive(Debug, Args)]
#[command(after_long_help = LOAD_HELP)]
pub struct LoadArgs {
    /// The tool to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "TOOL")]
    command: Vec<OsString>,
}

const LOAD_HELP: &str = "\
Runs TOOL, an unmodified libbpf-based tool (Debian's libbpf-tools: funclatency, bashreadline, ...),
with moat's bpf() interposer (libmoat_interpose.so) preloaded. The tool's bpf(2) calls are served by
moat: maps are moat's (storage on /dev/shm/moat-load-PID, removed when the tool exits; mmapable
arrays such as .bss and .rodata are mapped by the tool through their descriptors as on the kernel),
programs are verified by moat's verifier for their program type (a rejected program's log buffer
holds moat's verifier log, with the errno the kernel would return) and compiled, BTF is kept, and
the feature probes libbpf makes at start get moat's truthful answers. Descriptors moat hands out
are real (memfd, eventfd); everything else goes to the kernel untouched.

Attaching is not served yet: a program attached to a uprobe or uretprobe fails with one line naming
it and the probe, and one attached to a kernel event (kprobe, kernel tracepoint) fails with one line
saying moat runs programs in user space only. Running the programs in the traced process (the
tool's -p PID) is still to come.

Examples:
  moat load -- funclatency -p 1234 c:nanosleep
  moat load -- bashreadline";

/// Where the interposer is: `MOAT_INTERPOSE`, else beside the running executable (or in its
/// `deps/`, where cargo puts it for a dependency), the newest of those.
fn find_interposer() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOAT_INTERPOSE") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    [
        dir.join("libmoat_interpose.so"),
        dir.join("deps/libmoat_interpose.so"),
        dir.join("../libmoat_interpose.so"),
    ]
    .into_iter()
    .filter(|p| p.is_file())
    .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .and_then(|p| p.canonicalize().ok())
}

/// Runs `moat load`; exits with the tool's status (128 + N when signal N ended it).
pub fn run(args: LoadArgs) -> ExitCode {
    let Some(lib) = find_interposer() else {
        return crate::fail(
            false,
            "moat load: moat's interposer (libmoat_interpose.so) not found beside moat; set \
             MOAT_INTERPOSE or build it with `cargo build -p moat-interpose`",
        );
    };
    let Some((tool, rest)) = args.command.split_first() else {
        return crate::fail(false, "moat load: no tool given (moat load -- TOOL ARGS)");
    };
    let preload = match std::env::var_os("LD_PRELOAD") {
        Some(old) if !old.is_empty() => {
            let mut v = lib.clone().into_os_string();
            v.push(":");
            v.push(old);
            v
        }
        _ => lib.clone().into_os_string(),
    };
    let mut child = match Command::new(tool)
        .args(rest)
        .env("LD_PRELOAD", preload)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return crate::fail(
                false,
                format!("moat load: cannot run `{}`: {e}", tool.to_string_lossy()),
            )
        }
    };
    let status = child.wait();
    // The tool's maps kept their storage here; a tool that exits normally or dies leaves it.
    let _ = std::fs::remove_dir_all(format!("/dev/shm/moat-load-{}", child.id()));
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
            (None, Some(sig)) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
            (None, None) => ExitCode::FAILURE,
        },
        Err(e) => crate::fail(false, format!("moat load: waiting for the tool: {e}")),
    }
}
