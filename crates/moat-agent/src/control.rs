//! The controller side of `moat trace`: starts a command with the agent preloaded, follows what the
//! agent reports while the command runs, reads the maps the agent keeps in shared memory
//! ([`live`](crate::live): ring-buffer and perf records as they are committed, map dumps every
//! `--interval` and at the end), and returns the command's exit status. Works when the command
//! crashes or is killed: everything the agent wrote before is printed, and a last dump read from
//! the shared maps, which outlive the process.

use crate::agent::env;
use crate::protocol::Record;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;
use thiserror::Error;

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What to trace and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The object.
    pub object: PathBuf,
    /// Programs to attach (all when empty).
    pub programs: Vec<String>,
    /// Output format.
    pub format: Format,
    /// Dump maps every so often (besides at exit).
    pub interval: Option<Duration>,
    /// Attach every probe with `int3`.
    pub trap: bool,
    /// Load without verification.
    pub no_verify: bool,
    /// Stop every run of a program that takes longer than this (counted like a violation).
    pub time_budget: Option<Duration>,
    /// The agent library (found next to the running executable when `None`).
    pub agent: Option<PathBuf>,
    /// Capture the command's standard output into [`Outcome::stdout`] instead of passing it on.
    pub capture: bool,
    /// Global variables (`NAME`, `VALUE` as the variable's C type) set before the object loads.
    pub globals: Vec<(String, String)>,
    /// Dump only these maps (all when `None`).
    pub dump_maps: Option<Vec<String>>,
}

/// `options.globals` as the agent's [`env::GLOBALS`] order.
fn globals_order(options: &Options) -> String {
    options
        .globals
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(&env::GLOBALS_SEPARATOR.to_string())
}

/// Why tracing could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The agent library was not found.
    #[error("moat's agent library (libmoat_agent.so) not found; looked in {0}; set MOAT_AGENT or build it with `cargo build -p moat-agent`")]
    NoAgent(String),
    /// The command could not be started.
    #[error("cannot start {command}: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Injecting into (or detaching from) a running process failed.
    #[error("{0}")]
    Inject(String),
    /// The report file could not be made or read.
    #[error("report file {path}: {source}")]
    Report {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where the agent library is: `MOAT_AGENT`, else beside the running executable (or in its
/// `deps/`, where cargo puts it for a dependency), the newest of those.
pub fn find_agent() -> Result<PathBuf, ControlError> {
    if let Some(p) = std::env::var_os("MOAT_AGENT") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.join("libmoat_agent.so"),
        dir.join("deps/libmoat_agent.so"),
        dir.join("../libmoat_agent.so"),
    ];
    // The newest: `cargo test` rebuilds `deps/` without refreshing a copy an earlier
    // `cargo build` left beside the executable, which would then be a stale agent.
    candidates
        .iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .and_then(|p| p.canonicalize().ok())
        .ok_or_else(|| {
            ControlError::NoAgent(
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

/// What a finished trace saw, for callers that check it (tests, benchmarks).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Every record the agent wrote.
    pub records: Vec<Record>,
    /// The command's standard output, when captured.
    pub stdout: Vec<u8>,
}

impl Outcome {
    /// The last complete map dump: `(map, key, value)`.
    pub fn last_dump(&self) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let mut current = Vec::new();
        let mut last = Vec::new();
        for r in &self.records {
            match r {
                Record::DumpBegin(_) => current.clear(),
                Record::Entry { map, key, value } => {
                    current.push((map.clone(), key.clone(), value.clone()))
                }
                Record::DumpEnd(_) => last = std::mem::take(&mut current),
                _ => {}
            }
        }
        last
    }

    /// The value of `key` (a little-endian number of the key's size) in `map` in the last dump,
    /// read as a little-endian `u64`.
    pub fn value(&self, map: &str, key: u64) -> Option<u64> {
        self.last_dump()
            .into_iter()
            .find(|(m, k, _)| m == map && le(k) == key)
            .map(|(_, _, v)| le(&v))
    }

    /// The ring-buffer records of `map`.
    pub fn events(&self, map: &str) -> Vec<Vec<u8>> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Event { map: m, data } if m == map => Some(data.clone()),
                _ => None,
            })
            .collect()
    }
}

/// `bytes` as a little-endian number (the first 8 bytes).
pub fn le(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(bytes) {
        *d = *s;
    }
    u64::from_le_bytes(b)
}

/// Runs `command` (program and arguments) traced, printing what the agent reports to `out` as it
/// arrives; returns the command's exit status and everything reported.
pub fn launch(
    options: &Options,
    command: &[OsString],
    out: &mut dyn Write,
) -> Result<(ExitStatus, Outcome), ControlError> {
    launch_observed(options, command, out, &mut |_| {})
}

/// [`launch`], also handing every record to `observe` as it arrives (`moat memleak` reports
/// from each dump while the command runs).
pub fn launch_observed(
    options: &Options,
    command: &[OsString],
    out: &mut dyn Write,
    observe: &mut dyn FnMut(&Record),
) -> Result<(ExitStatus, Outcome), ControlError> {
    launch_spawned(options, command, out, observe, &mut |_| {})
}

/// [`launch_observed`], also handing the command's process id to `spawned` as soon as it runs
/// (`moat cxlsim` samples the process from then on).
pub fn launch_spawned(
    options: &Options,
    command: &[OsString],
    out: &mut dyn Write,
    observe: &mut dyn FnMut(&Record),
    spawned: &mut dyn FnMut(u32),
) -> Result<(ExitStatus, Outcome), ControlError> {
    let agent = match &options.agent {
        Some(a) => a.clone(),
        None => find_agent()?,
    };
    let report = report_path();
    let report_err = |source| ControlError::Report {
        path: report.clone(),
        source,
    };
    std::fs::write(&report, b"").map_err(report_err)?;
    let object = options
        .object
        .canonicalize()
        .unwrap_or_else(|_| options.object.clone());
    let (program, args) = command.split_first().ok_or_else(|| ControlError::Spawn {
        command: String::new(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command"),
    })?;
    let mut preload = agent.into_os_string();
    if let Some(old) = std::env::var_os("LD_PRELOAD") {
        preload.push(":");
        preload.push(old);
    }
    let live = crate::live::LiveMaps::create().ok();
    let mut cmd = Command::new(program);
    if let Some(live) = &live {
        cmd.env(env::SHM_DIR, live.dir());
    }
    cmd.args(args)
        .env("LD_PRELOAD", preload)
        .env(env::OBJECT, &object)
        .env(env::OUT, &report)
        .env(env::PROGRAMS, options.programs.join(","));
    cmd.env(env::INTERVAL_MS, dump_every(options).to_string());
    if options.trap {
        cmd.env(env::METHOD, "trap");
    }
    if options.no_verify {
        cmd.env(env::NO_VERIFY, "1");
    }
    if let Some(budget) = options.time_budget {
        cmd.env(env::TIME_BUDGET_NS, budget.as_nanos().to_string());
    }
    if !options.globals.is_empty() {
        cmd.env(env::GLOBALS, globals_order(options));
    }
    if let Some(maps) = &options.dump_maps {
        cmd.env(env::DUMP_MAPS, maps.join(","));
    }
    if options.capture {
        cmd.stdout(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|source| ControlError::Spawn {
        command: program.to_string_lossy().into_owned(),
        source,
    })?;
    spawned(child.id());
    let captured = child.stdout.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut s, &mut buf);
            buf
        })
    });
    let mut follower = Follower::new(&report, options, observe, live).map_err(report_err)?;
    // While the command runs, a `SIGTERM` to the controller is passed on to the command, and a
    // `SIGINT` too if the command has not ended a second later (`Ctrl-C` reaches it directly, from
    // the terminal); the trace then ends as when the command exits, with its last dump, and the
    // shared maps are removed. (Blocked only now: a child inherits its parent's mask.)
    let _blocked = crate::inject::block_interrupts_for_now();
    let mut sigint_at = None::<std::time::Instant>;
    let status = loop {
        follower.poll(out);
        match crate::inject::take_interrupt() {
            Some(libc::SIGINT) => {
                sigint_at.get_or_insert_with(std::time::Instant::now);
            }
            Some(sig) => crate::inject::send_signal(child.id(), sig),
            None => {}
        }
        if sigint_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(1)) {
            crate::inject::send_signal(child.id(), libc::SIGINT);
            sigint_at = None;
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(report_err(e)),
        }
    };
    follower.poll(out);
    follower.finish(out);
    let mut outcome = follower.outcome;
    if let Some(c) = captured {
        outcome.stdout = c.join().unwrap_or_default();
    }
    let _ = out.flush();
    let _ = std::fs::remove_file(&report);
    Ok((status, outcome))
}

/// Milliseconds between the agent's map dumps: `--interval`, else one a second, kept quietly so
/// that a process that crashes (and writes no dump at exit) still leaves its maps.
fn dump_every(options: &Options) -> u128 {
    options.interval.map_or(1000, |i| i.as_millis().max(1))
}

/// Reads the agent's records as they are appended and prints them; with shared maps
/// ([`LiveMaps`](crate::live::LiveMaps)), also consumes their records as they are committed and
/// dumps them (with the entries of the maps the agent still reports) every `--interval` and at the
/// end, also when the process died without a word.
struct Follower<'a> {
    reader: BufReader<std::fs::File>,
    printer: Printer,
    partial: String,
    outcome: Outcome,
    observe: &'a mut dyn FnMut(&Record),
    /// The maps in shared memory (`None`: the agent reports every map itself).
    live: Option<crate::live::LiveMaps>,
    /// The maps dumped (all when `None`).
    dump_maps: Option<Vec<String>>,
    /// Entries (and mappings) of the agent's dump being read (maps not in shared memory).
    private: Vec<Record>,
    /// Entries of the agent's last complete dump.
    private_last: Vec<Record>,
    /// Dumps made so far.
    dumps: u64,
    /// Whether the final dump was made.
    final_done: bool,
    interval: Option<Duration>,
    last_dump: std::time::Instant,
}

impl<'a> Follower<'a> {
    fn new(
        report: &Path,
        options: &Options,
        observe: &'a mut dyn FnMut(&Record),
        live: Option<crate::live::LiveMaps>,
    ) -> std::io::Result<Follower<'a>> {
        Ok(Follower {
            reader: BufReader::new(std::fs::File::open(report)?),
            printer: Printer::new(options.format, options.interval.is_some()),
            partial: String::new(),
            outcome: Outcome::default(),
            observe,
            live,
            dump_maps: options.dump_maps.clone(),
            private: Vec::new(),
            private_last: Vec::new(),
            dumps: 0,
            final_done: false,
            interval: options.interval,
            last_dump: std::time::Instant::now(),
        })
    }

    /// Prints, observes and keeps one record.
    fn emit(&mut self, r: Record, out: &mut dyn Write) {
        self.printer.print(&r, out);
        (self.observe)(&r);
        self.outcome.records.push(r);
    }

    /// The records committed to shared rings since the last call.
    fn live_events(&mut self, out: &mut dyn Write) {
        let events = self.live.as_mut().map(|l| l.events()).unwrap_or_default();
        for r in events {
            self.emit(r, out);
        }
    }

    /// A dump: the shared maps as they are now, and the agent's last report of the others.
    fn live_dump(&mut self, out: &mut dyn Write) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let mut entries = live.entries(self.dump_maps.as_deref());
        entries.extend(self.private_last.iter().cloned());
        self.dumps += 1;
        let seq = self.dumps;
        self.emit(Record::DumpBegin(seq), out);
        for r in entries {
            self.emit(r, out);
        }
        self.emit(Record::DumpEnd(seq), out);
        self.last_dump = std::time::Instant::now();
    }

    /// The last events and the last dump, once.
    fn final_dump(&mut self, out: &mut dyn Write) {
        if self.live.is_none() || self.final_done {
            return;
        }
        self.final_done = true;
        self.live_events(out);
        self.live_dump(out);
    }

    /// Prints every complete line written since the last call, the shared rings' new records, and
    /// a dump when `--interval` has passed.
    fn poll(&mut self, out: &mut dyn Write) {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            self.partial.push_str(&line);
            if !self.partial.ends_with('\n') {
                break;
            }
            let text = std::mem::take(&mut self.partial);
            let Some(r) = Record::parse(text.trim_end_matches('\n')) else {
                continue;
            };
            if self.live.is_some() {
                // The agent's dumps hold the maps it still reports; they join the controller's.
                match r {
                    Record::DumpBegin(_) => {
                        self.private.clear();
                        continue;
                    }
                    // Mappings come with the dumps of objects that record stacks.
                    Record::Entry { .. } | Record::Mapping { .. } => {
                        self.private.push(r);
                        continue;
                    }
                    Record::DumpEnd(_) => {
                        self.private_last = std::mem::take(&mut self.private);
                        continue;
                    }
                    // The agent's counters follow its final dump.
                    Record::Stats { .. } | Record::Detached => self.final_dump(out),
                    _ => {}
                }
            }
            self.emit(r, out);
        }
        if self.final_done {
            return;
        }
        self.live_events(out);
        if self.interval.is_some_and(|i| self.last_dump.elapsed() >= i) {
            self.live_dump(out);
        }
    }

    /// After the process ended: the last dump, if the agent could not write its final one.
    fn finish(&mut self, out: &mut dyn Write) {
        if !self.detached() {
            // The shared maps are still there after a crash: read one last time.
            self.final_dump(out);
            self.printer.flush_pending(out, true);
        }
    }

    fn detached(&self) -> bool {
        self.outcome.records.last() == Some(&Record::Detached)
    }
}

/// Whether process `pid` is alive (not gone, not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Injects the agent into running process `pid`, prints what it reports until `until()` says
/// stop or the process ends, then detaches it (every patched byte restored) and returns what was
/// reported.
pub fn attach_running(
    options: &Options,
    pid: i32,
    out: &mut dyn Write,
    until: &mut dyn FnMut() -> bool,
) -> Result<Outcome, ControlError> {
    attach_running_observed(options, pid, out, until, &mut |_| {})
}

/// [`attach_running`], also handing every record to `observe` as it arrives.
pub fn attach_running_observed(
    options: &Options,
    pid: i32,
    out: &mut dyn Write,
    until: &mut dyn FnMut() -> bool,
    observe: &mut dyn FnMut(&Record),
) -> Result<Outcome, ControlError> {
    let agent = match &options.agent {
        Some(a) => a.clone(),
        None => find_agent()?,
    };
    let agent = agent.canonicalize().unwrap_or(agent);
    let report = report_path();
    let report_err = |source| ControlError::Report {
        path: report.clone(),
        source,
    };
    std::fs::write(&report, b"").map_err(report_err)?;
    let config = report.with_extension("conf");
    let object = options
        .object
        .canonicalize()
        .unwrap_or_else(|_| options.object.clone());
    let mut orders = format!(
        "{}={}\n{}={}\n{}={}\n",
        env::OBJECT,
        object.display(),
        env::OUT,
        report.display(),
        env::PROGRAMS,
        options.programs.join(",")
    );
    orders += &format!("{}={}\n", env::INTERVAL_MS, dump_every(options));
    if options.trap {
        orders += &format!("{}=trap\n", env::METHOD);
    }
    if options.no_verify {
        orders += &format!("{}=1\n", env::NO_VERIFY);
    }
    if let Some(budget) = options.time_budget {
        orders += &format!("{}={}\n", env::TIME_BUDGET_NS, budget.as_nanos());
    }
    if !options.globals.is_empty() {
        orders += &format!("{}={}\n", env::GLOBALS, globals_order(options));
    }
    if let Some(maps) = &options.dump_maps {
        orders += &format!("{}={}\n", env::DUMP_MAPS, maps.join(","));
    }
    let live = crate::live::LiveMaps::create().ok();
    if let Some(live) = &live {
        orders += &format!("{}={}\n", env::SHM_DIR, live.dir().display());
    }
    std::fs::write(&config, orders).map_err(|source| ControlError::Report {
        path: config.clone(),
        source,
    })?;
    let mut follower = Follower::new(&report, options, observe, live).map_err(report_err)?;
    let injected = crate::inject::inject(pid, &agent, &config);
    let _ = std::fs::remove_file(&config);
    if let Err(e) = injected {
        follower.poll(out);
        let _ = std::fs::remove_file(&report);
        return Err(e);
    }
    while alive(pid) && !until() {
        follower.poll(out);
        std::thread::sleep(Duration::from_millis(10));
    }
    let ejected = if alive(pid) {
        crate::inject::eject(pid, &agent, &report)
    } else {
        Ok(())
    };
    // The agent writes its last records while detaching, or at exit.
    for _ in 0..100 {
        follower.poll(out);
        if follower.detached() || !alive(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    follower.poll(out);
    follower.finish(out);
    let _ = out.flush();
    let _ = std::fs::remove_file(&report);
    ejected.map(|()| follower.outcome)
}

fn report_path() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "moat-trace-{}-{}.log",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Prints records: events at once, a dump when it is complete.
struct Printer {
    format: Format,
    dump: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// Whether dumps are printed as they come (`--interval`), or only the last one.
    every_dump: bool,
    /// The last complete dump, not printed yet.
    pending: Option<(u64, String, String)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A key or value as people read it: a number if it is 1, 2, 4 or 8 bytes, else hex.
fn show(bytes: &[u8]) -> String {
    match bytes.len() {
        1 | 2 | 4 | 8 => le(bytes).to_string(),
        _ => hex(bytes),
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl Printer {
    fn new(format: Format, every_dump: bool) -> Printer {
        Printer {
            format,
            dump: Vec::new(),
            every_dump,
            pending: None,
        }
    }

    /// Prints the pending dump (noting, if `ended`, that the process ended without a final one).
    fn flush_pending(&mut self, out: &mut dyn Write, ended: bool) {
        if let Some((seq, text, json)) = self.pending.take() {
            let text = if self.format == Format::Json {
                json
            } else if ended {
                format!("maps (dump {seq}, the last before the process ended):\n{text}")
            } else {
                format!("maps (dump {seq}):\n{text}")
            };
            let _ = out.write_all(text.as_bytes());
        }
    }

    fn print(&mut self, r: &Record, out: &mut dyn Write) {
        let json = self.format == Format::Json;
        let line = match r {
            Record::Attached {
                program,
                point,
                address,
                method,
            } => {
                if json {
                    format!(
                        "{{\"attached\":{},\"point\":{},\"address\":{address},\"method\":{}}}",
                        json_str(program),
                        json_str(point),
                        json_str(method)
                    )
                } else {
                    format!("attached {program}: {point} at {address:#x}, {method}")
                }
            }
            Record::Error { program, message } => {
                if json {
                    format!(
                        "{{\"error\":{},\"program\":{}}}",
                        json_str(message),
                        json_str(program)
                    )
                } else if program.is_empty() {
                    format!("error: {message}")
                } else {
                    format!("error: {program}: {message}")
                }
            }
            Record::Event { map, data } => {
                if json {
                    format!("{{\"event\":{},\"data\":\"{}\"}}", json_str(map), hex(data))
                } else {
                    format!("event {map}: {}", hex(data))
                }
            }
            Record::DumpBegin(_) => {
                self.dump.clear();
                return;
            }
            Record::Mapping { .. } => return,
            Record::Entry { map, key, value } => {
                self.dump.push((map.clone(), key.clone(), value.clone()));
                return;
            }
            Record::DumpEnd(seq) => {
                let (mut text, mut json_text) = (String::new(), String::new());
                for (map, k, v) in &self.dump {
                    let _ = writeln!(
                        json_text,
                        "{{\"map\":{},\"key\":\"{}\",\"value\":\"{}\",\"dump\":{seq}}}",
                        json_str(map),
                        hex(k),
                        hex(v)
                    );
                    let _ = writeln!(text, "  {map}[{}] = {}", show(k), show(v));
                }
                self.pending = Some((*seq, text, json_text));
                if self.every_dump {
                    self.flush_pending(out, false);
                }
                return;
            }
            Record::Stats {
                program,
                hits,
                errors,
                missed,
                overruns,
            } => {
                // The final dump comes first.
                self.flush_pending(out, false);
                if json {
                    format!(
                        "{{\"stats\":{},\"runs\":{hits},\"failed\":{errors},\"missed\":{missed},\"over_budget\":{overruns}}}",
                        json_str(program)
                    )
                } else if *overruns > 0 {
                    format!(
                        "probe {program}: {hits} runs, {errors} failed ({overruns} over the time budget), {missed} missed"
                    )
                } else {
                    format!("probe {program}: {hits} runs, {errors} failed, {missed} missed")
                }
            }
            Record::Detached => {
                // The final dump, written just before.
                self.flush_pending(out, false);
                if json {
                    "{\"detached\":true}".into()
                } else {
                    "detached".into()
                }
            }
        };
        let _ = writeln!(out, "{line}");
    }
}
