//! `moat load`'s side of running a tool's programs in the process the tool traces: the interposer
//! inside the tool asks, over a Unix socket (`moat_interpose::traced`), for a program to be
//! attached in process `PID` with an order file it wrote; this controller injects moat's agent
//! there (`moat_agent::inject`, the way `moat trace -p` does) and answers with the probe's method
//! or the agent's error. A process's programs are detached latest first (a later probe of the same
//! function displaced the earlier one's patch), when their links are closed or the tool ends.

use moat_agent::protocol::Record;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The environment variable that gives the tool's interposer the controller's socket (the
/// interposer's `traced::CONTROL_ENV`; `moat` does not link the interposer, and the tests check
/// the two agree).
pub const CONTROL_ENV: &str = "MOAT_LOAD_CONTROL";

/// The environment variable naming the process events on every process run in (the
/// interposer's `traced::PID_ENV`).
pub const PID_ENV: &str = "MOAT_LOAD_PID";

/// A program attached in a traced process: its report file, and whether its link was closed.
struct Attached {
    report: PathBuf,
    closed: bool,
}

/// The controller: the agent library and, per traced process, what runs there in attach order.
pub struct Controller {
    agent: Result<PathBuf, String>,
    socket: PathBuf,
    attached: Mutex<HashMap<i32, Vec<Attached>>>,
}

impl Controller {
    /// Listens on a socket of its own (its path is what `MOAT_LOAD_CONTROL` gives the tool) and
    /// serves every connection on a thread of its own.
    pub fn start() -> std::io::Result<Arc<Controller>> {
        let socket = std::env::temp_dir().join(format!("moat-load-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        let controller = Arc::new(Controller {
            agent: moat_agent::control::find_agent().map_err(|e| e.to_string()),
            socket,
            attached: Mutex::new(HashMap::new()),
        });
        let serving = controller.clone();
        std::thread::Builder::new()
            .name("moat-load-control".into())
            .spawn(move || {
                // Ctrl-C is for the tool (the main thread passes it on): a signal delivered here
                // would end `moat load` with probes left in the traced process. Connections'
                // threads inherit the mask.
                moat_agent::inject::block_interrupts();
                for conn in listener.incoming().flatten() {
                    let c = serving.clone();
                    let _ = std::thread::Builder::new()
                        .name("moat-load-conn".into())
                        .spawn(move || c.serve(conn));
                }
            })?;
        Ok(controller)
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn serve(&self, conn: UnixStream) {
        let Ok(mut out) = conn.try_clone() else {
            return;
        };
        for line in BufReader::new(conn).lines() {
            let Ok(line) = line else { return };
            let fields: Vec<&str> = line.split('\t').collect();
            let answer = match fields.as_slice() {
                ["attach", pid, orders] => self.attach(pid, Path::new(orders)),
                ["detach", pid, report] => self.detach(pid, Path::new(report)).map(|()| None),
                _ => Err(format!("unknown request `{line}`")),
            };
            let text = match answer {
                Ok(Some(method)) => format!("ok\t{method}\n"),
                Ok(None) => "ok\n".to_string(),
                Err(why) => format!("error\t{}\n", why.replace(['\t', '\n'], " ")),
            };
            if out.write_all(text.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn attach(&self, pid: &str, orders: &Path) -> Result<Option<String>, String> {
        let pid: i32 = pid.parse().map_err(|_| format!("bad process id `{pid}`"))?;
        let agent = self.agent.clone()?;
        let text = std::fs::read_to_string(orders)
            .map_err(|e| format!("orders {}: {e}", orders.display()))?;
        let report = text
            .lines()
            .find_map(|l| l.strip_prefix("MOAT_TRACE_OUT="))
            .map(PathBuf::from)
            .ok_or_else(|| format!("orders {}: no report file", orders.display()))?;
        // One injection at a time: each stops the process's main thread.
        let mut attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        let injected = moat_agent::inject::inject(pid, &agent, orders);
        // The agent's own records say best what happened (an attach error, or how it attached).
        let records: Vec<Record> = std::fs::read_to_string(&report)
            .unwrap_or_default()
            .lines()
            .filter_map(Record::parse)
            .collect();
        let method = records.iter().find_map(|r| match r {
            Record::Attached { method, .. } => Some(method.clone()),
            _ => None,
        });
        let error = records.iter().find_map(|r| match r {
            Record::Error { message, .. } => Some(message.clone()),
            _ => None,
        });
        match (injected, method, error) {
            (Ok(()), Some(method), _) => {
                attached.entry(pid).or_default().push(Attached {
                    report,
                    closed: false,
                });
                Ok(Some(method))
            }
            (_, _, Some(error)) => Err(error),
            (Err(e), _, None) => Err(e.to_string()),
            (Ok(()), None, None) => Err("the agent reported nothing".into()),
        }
    }

    /// Marks `report`'s program closed, then detaches the latest programs of process `pid` while
    /// they are closed.
    fn detach(&self, pid: &str, report: &Path) -> Result<(), String> {
        let pid: i32 = pid.parse().map_err(|_| format!("bad process id `{pid}`"))?;
        let mut attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = attached.get_mut(&pid) else {
            return Err(format!("nothing attached in process {pid}"));
        };
        if let Some(a) = list.iter_mut().find(|a| a.report == report) {
            a.closed = true;
        }
        let mut result = Ok(());
        while list.last().is_some_and(|a| a.closed) {
            if let Some(a) = list.pop() {
                result = result.and(self.eject(pid, &a.report));
            }
        }
        result
    }

    fn eject(&self, pid: i32, report: &Path) -> Result<(), String> {
        if !moat_agent::control::alive(pid) {
            return Ok(());
        }
        let agent = self.agent.clone()?;
        moat_agent::inject::eject(pid, &agent, report).map_err(|e| e.to_string())
    }

    /// Detaches everything still attached, latest first (the tool ended); returns the errors.
    pub fn finish(&self) -> Vec<String> {
        let mut attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        let mut errors = Vec::new();
        for (pid, list) in attached.iter_mut() {
            while let Some(a) = list.pop() {
                if let Err(e) = self.eject(*pid, &a.report) {
                    errors.push(format!("detaching from process {pid}: {e}"));
                }
            }
        }
        let _ = std::fs::remove_file(&self.socket);
        errors
    }
}
