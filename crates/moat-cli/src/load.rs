//! `moat load -- TOOL ARGS`: runs an unmodified libbpf tool with moat's `bpf(2)` interposer
//! (`libmoat_interpose.so`) preloaded, so its maps, programs and BTF are moat's, and serves the
//! interposer's requests to run the tool's programs in the traced process (`load_control`).

use clap::Args;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::load_control::Controller;

/// `moat load -- TOOL ARGS`.
#[derive(Debug, Args)]
#[command(after_long_help = LOAD_HELP)]
pub struct LoadArgs {
    /// The process a tool's programs run in when the tool attaches them to every process (tools
    /// without a process option of their own, such as bashreadline)
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
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

A program the tool attaches to a uprobe or uretprobe of process PID (the tool's -p PID) runs inside
that process: moat injects its agent there (as `moat trace -p` does), the agent takes over the
tool's arrays, hash maps and perf event arrays through their shared files, verifies and compiles
the program and patches the probed function; the tool reads the maps with its ordinary bpf()
calls and its perf buffer with its own epoll (a hash map the traced process writes can no longer
be changed by the tool: EBUSY). A program at a system call's tracepoint
(syscalls:sys_enter_NAME, sys_exit_NAME) runs through system call site rewriting in the traced
process. Events on every process (no -p, and those tracepoints) run in the process --pid names.
Probes are removed, latest first, when the tool closes its links or ends; Ctrl-C and SIGTERM are
passed on to the tool. What moat cannot run fails with one line naming the program and why:
kprobes, other kernel tracepoints, raw tracepoints, events on every process without --pid, and
maps moat cannot share yet (ring buffers, stack traces, tries, queues). Arrays and hash maps the
tool pins are kept in moat's own store (/dev/shm/moat-pins, one directory per path; remove one to
unpin) and got back by any tool under `moat load`; programs and links are not pinned.

Examples:
  moat load -- funclatency -p 1234 c:nanosleep
  moat load -- funclatency -p 1234 -d 5 mylib:my_function
  moat load -- gethostlatency -p 1234
  moat load --pid $(pgrep -n bash) -- bashreadline
  moat load --pid 1234 -- opensnoop -p 1234";

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
    let controller = match Controller::start() {
        Ok(c) => c,
        Err(e) => return crate::fail(false, format!("moat load: control socket: {e}")),
    };
    let mut child = match Command::new(tool)
        .args(rest)
        .env("LD_PRELOAD", preload)
        .env(crate::load_control::CONTROL_ENV, controller.socket())
        .env(
            crate::load_control::PID_ENV,
            args.pid.map(|p| p.to_string()).unwrap_or_default(),
        )
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
    // Ctrl-C and SIGTERM go to the tool, which ends its own way (printing what it gathered);
    // this process outlives it to detach what runs in the traced process.
    let _blocked = moat_agent::inject::block_interrupts_for_now();
    let status = loop {
        if let Some(sig) = moat_agent::inject::take_interrupt() {
            moat_agent::inject::send_signal(child.id(), sig);
        }
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => break Err(e),
        }
    };
    for e in controller.finish() {
        eprintln!("moat load: {e}");
    }
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
