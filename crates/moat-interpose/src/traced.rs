//! Running a tool's programs in the process it traces. When the tool attaches a program to a
//! uprobe or uretprobe of process `PID` (its `-p PID`), the interposer writes the program's
//! bytecode and an order file for moat's agent into the tool's map directory and asks `moat load`
//! (the controller, over the Unix socket `MOAT_LOAD_CONTROL` names) to inject the agent into `PID`
//! with those orders; the agent adopts the tool's maps there (`moat::Map::adopt`) and attaches the
//! program. The answer is one line: the probe's method, or why it failed. Detaching goes the same
//! way when the link is closed; the controller detaches a process's probes latest first.
//!
//! The protocol, one request and one answer per line, tab-separated:
//! `attach PID ORDERS` → `ok METHOD` | `error MESSAGE`; `detach PID REPORT` → `ok` | `error MESSAGE`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The environment variable naming the controller's socket.
pub const CONTROL_ENV: &str = "MOAT_LOAD_CONTROL";

/// The environment variable naming the process that events on every process run in
/// (`moat load --pid PID`): tools without a process option (bashreadline) trace it.
pub const PID_ENV: &str = "MOAT_LOAD_PID";

/// The process `moat load --pid` named, if it named one.
pub(crate) fn chosen_pid() -> Option<i32> {
    std::env::var(PID_ENV)
        .ok()?
        .parse()
        .ok()
        .filter(|&p: &i32| p > 0)
}

/// The keys of the agent's orders (`moat_agent::agent::env`; the interposer does not link the
/// agent, so they are spelt here too, and a test checks they agree).
pub mod orders {
    /// The bytecode file.
    pub const CODE: &str = "MOAT_TRACE_PROG_CODE";
    /// The program's name.
    pub const NAME: &str = "MOAT_TRACE_PROG_NAME";
    /// The maps' tags.
    pub const MAPS: &str = "MOAT_TRACE_PROG_MAPS";
    /// The probed file.
    pub const PATH: &str = "MOAT_TRACE_PROG_PATH";
    /// The probed file offset.
    pub const OFFSET: &str = "MOAT_TRACE_PROG_OFFSET";
    /// `1` for a uretprobe.
    pub const RETURN: &str = "MOAT_TRACE_PROG_RETURN";
    /// A `syscalls` tracepoint instead of a probe.
    pub const SYSCALL: &str = "MOAT_TRACE_PROG_SYSCALL";
    /// The maps' directory.
    pub const SHM_DIR: &str = "MOAT_TRACE_SHM";
    /// The report file.
    pub const OUT: &str = "MOAT_TRACE_OUT";
}

/// A program running in a traced process, until its link is closed.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub(crate) pid: i32,
    pub(crate) report: PathBuf,
}

/// What the agent needs to run one program.
pub(crate) struct Orders<'a> {
    pub(crate) name: &'a str,
    pub(crate) code: &'a [u8],
    pub(crate) map_tags: &'a [String],
    pub(crate) path: &'a str,
    pub(crate) offset: u64,
    pub(crate) retprobe: bool,
    /// A `syscalls` tracepoint (`sys_enter_openat`) instead of the probe.
    pub(crate) syscall: Option<&'a str>,
    pub(crate) pid: i32,
}

/// The connection to the controller, made at the first request.
static CONTROL: Mutex<Option<BufReader<UnixStream>>> = Mutex::new(None);

/// Sends `request` and returns the answer line.
fn ask(request: &str) -> Result<String, String> {
    let mut guard = CONTROL.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        let path = std::env::var_os(CONTROL_ENV).ok_or_else(|| {
            "running a tool's programs in the traced process needs `moat load` (no controller \
             socket in MOAT_LOAD_CONTROL)"
                .to_string()
        })?;
        let stream = UnixStream::connect(&path)
            .map_err(|e| format!("controller socket {}: {e}", Path::new(&path).display()))?;
        *guard = Some(BufReader::new(stream));
    }
    let Some(conn) = guard.as_mut() else {
        return Err("no controller".into());
    };
    let sent = conn
        .get_mut()
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| format!("controller: {e}"));
    let mut answer = String::new();
    let read = sent.and_then(|()| {
        conn.read_line(&mut answer)
            .map_err(|e| format!("controller: {e}"))
    });
    match read {
        Ok(n) if n > 0 => Ok(answer.trim_end_matches('\n').to_string()),
        Ok(_) | Err(_) => {
            *guard = None;
            Err(read
                .err()
                .unwrap_or_else(|| "the controller is gone".into()))
        }
    }
}

/// Starts `o`'s program in process `o.pid`, with its files under `dir` named after `n`; the
/// probe's method, or why not.
pub(crate) fn attach(dir: &Path, n: u32, o: &Orders<'_>) -> Result<(Running, String), String> {
    let code = dir.join(format!("p{n}.code"));
    let orders_file = dir.join(format!("p{n}.orders"));
    let report = dir.join(format!("p{n}.report"));
    std::fs::write(&code, o.code).map_err(|e| format!("{}: {e}", code.display()))?;
    let text = [
        (orders::CODE, code.display().to_string()),
        (orders::NAME, o.name.to_string()),
        (orders::MAPS, o.map_tags.join(",")),
        (orders::PATH, o.path.to_string()),
        (orders::OFFSET, o.offset.to_string()),
        (
            orders::RETURN,
            if o.retprobe { "1" } else { "0" }.to_string(),
        ),
        (orders::SYSCALL, o.syscall.unwrap_or_default().to_string()),
        (orders::SHM_DIR, dir.display().to_string()),
        (orders::OUT, report.display().to_string()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={v}\n"))
    .collect::<String>();
    std::fs::write(&orders_file, text).map_err(|e| format!("{}: {e}", orders_file.display()))?;
    let answer = ask(&format!("attach\t{}\t{}", o.pid, orders_file.display()))?;
    match answer.split_once('\t') {
        Some(("ok", method)) => Ok((Running { pid: o.pid, report }, method.to_string())),
        Some((_, why)) => Err(why.to_string()),
        None => Err(answer),
    }
}

/// Stops a program started by [`attach`].
pub(crate) fn detach(running: &Running) -> Result<(), String> {
    let answer = ask(&format!(
        "detach\t{}\t{}",
        running.pid,
        running.report.display()
    ))?;
    match answer.split_once('\t') {
        None if answer == "ok" => Ok(()),
        Some((_, why)) => Err(why.to_string()),
        None => Err(answer),
    }
}
