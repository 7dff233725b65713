//! The agent inside the traced process: loads, verifies and JIT-compiles the object's programs
//! (each object in its own domain), puts the maps the controller can read in its shared directory
//! ([`env::SHM_DIR`]), attaches the programs, streams the other maps' records and dumps to the
//! controller's file, and on exit writes their last dump and the probes' counters.
//!
//! It fails open: any error (a refused program, a missing symbol, a failed patch, a file that
//! cannot be written) is reported if possible and otherwise ignored; the process runs on.

use crate::protocol::Record;
use moat::{LoadedObject, MapType, ProgType, Runtime, Verification};
use moat_attach::{AttachPoint, Attachment, Choice, Hook, SyscallAttachment, SyscallHooks, Target};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The environment the controller passes the agent.
pub mod env {
    /// The object to load.
    pub const OBJECT: &str = "MOAT_TRACE_OBJ";
    /// Comma-separated program names to attach (all when unset).
    pub const PROGRAMS: &str = "MOAT_TRACE_PROGRAMS";
    /// The file records are appended to.
    pub const OUT: &str = "MOAT_TRACE_OUT";
    /// Milliseconds between map dumps (none but the last when unset or 0).
    pub const INTERVAL_MS: &str = "MOAT_TRACE_INTERVAL_MS";
    /// `trap`: attach every probe with `int3` (to measure the fallback).
    pub const METHOD: &str = "MOAT_TRACE_METHOD";
    /// `1`: load without verification (the engines' checks and `sfi` still confine).
    pub const NO_VERIFY: &str = "MOAT_TRACE_NO_VERIFY";
    /// Nanoseconds: the time budget of every run of the object's programs (none when unset).
    pub const TIME_BUDGET_NS: &str = "MOAT_TRACE_TIME_BUDGET_NS";
    /// Global variables to set before the object loads: `NAME=VALUE` entries (values as the
    /// variable's C type, as `moat run --global` takes them) separated by [`GLOBALS_SEPARATOR`].
    pub const GLOBALS: &str = "MOAT_TRACE_GLOBALS";
    /// Between two entries of [`GLOBALS`] (ASCII unit separator: never in a name or a value).
    pub const GLOBALS_SEPARATOR: char = '\u{1f}';
    /// Comma-separated names of the maps dumped (all when unset).
    pub const DUMP_MAPS: &str = "MOAT_TRACE_DUMP_MAPS";
    /// A directory (on a `tmpfs`, made by the controller) the maps that can be shared are put in,
    /// one file per allocation ([`moat::SharedMemory`]); the controller reads them there and the
    /// agent reports only the others. Unset: every map is reported through the report file.
    pub const SHM_DIR: &str = "MOAT_TRACE_SHM";
    /// Instead of an object, one program a tool loaded through `moat load`: the file of its
    /// bytecode, whose `lddw map_idx(N)` name the N-th of [`PROG_MAPS`] (`crate::interposed`).
    pub const PROG_CODE: &str = "MOAT_TRACE_PROG_CODE";
    /// The interposed program's name.
    pub const PROG_NAME: &str = "MOAT_TRACE_PROG_NAME";
    /// Comma-separated tags of the interposed program's maps in [`SHM_DIR`], made by the tool.
    pub const PROG_MAPS: &str = "MOAT_TRACE_PROG_MAPS";
    /// The file the interposed program probes (a path, or a file name of the process's mappings).
    pub const PROG_PATH: &str = "MOAT_TRACE_PROG_PATH";
    /// The probed offset in [`PROG_PATH`]'s file, in decimal (as the uprobe PMU takes it).
    pub const PROG_OFFSET: &str = "MOAT_TRACE_PROG_OFFSET";
    /// `1`: the interposed program runs at the function's return (a uretprobe).
    pub const PROG_RETURN: &str = "MOAT_TRACE_PROG_RETURN";
    /// Instead of [`PROG_PATH`] and [`PROG_OFFSET`]: the `syscalls` tracepoint the interposed
    /// program runs at (`sys_enter_openat`, `sys_exit_openat`).
    pub const PROG_SYSCALL: &str = "MOAT_TRACE_PROG_SYSCALL";
}

/// What the agent keeps for the life of the process.
struct State {
    out: Mutex<Option<File>>,
    object: LoadedObject,
    attachments: Vec<(String, Attachment)>,
    syscalls: Option<(String, SyscallAttachment)>,
    dumps: Mutex<u64>,
    /// The report file's path (names the object for `stop`).
    report: String,
    /// Set once the last records are written (at exit or detach): nothing is reported after.
    done: std::sync::atomic::AtomicBool,
    /// The maps dumped (`None`: all).
    dump_maps: Option<Vec<String>>,
    /// By map index: whether the map lives in the controller's shared directory (and is read
    /// there, not reported here).
    shared: Vec<bool>,
}

/// Every object the agent runs, each reporting to its own file (an injected agent may be given
/// several, one after another; they never share maps, domains or reports).
static STATES: Mutex<Vec<&'static State>> = Mutex::new(Vec::new());

fn states() -> Vec<&'static State> {
    STATES.lock().map(|s| s.clone()).unwrap_or_default()
}

impl State {
    fn send(&self, records: &[Record]) {
        let text: String = records.iter().map(Record::to_line).collect();
        if let Ok(mut out) = self.out.lock() {
            if let Some(f) = out.as_mut() {
                let _ = f.write_all(text.as_bytes());
            }
        }
    }

    /// The object's maps that are not in shared memory (reported through the file).
    fn private_maps(&self) -> impl Iterator<Item = (&str, &std::sync::Arc<moat::Map>)> {
        self.object
            .maps()
            .enumerate()
            .filter(|(i, _)| !self.shared.get(*i).copied().unwrap_or(false))
            .map(|(_, m)| m)
    }

    fn drain_events(&self) {
        let mut records = Vec::new();
        for (name, map) in self.private_maps() {
            match map.map_type() {
                MapType::RingBuf => {
                    let _ = map.ringbuf_consume(&mut |r| {
                        records.push(Record::Event {
                            map: name.to_string(),
                            data: r.to_vec(),
                        })
                    });
                }
                MapType::PerfEventArray => {
                    map.perf_consume(&mut |_, r| {
                        records.push(Record::Event {
                            map: name.to_string(),
                            data: r.to_vec(),
                        })
                    });
                }
                _ => {}
            }
        }
        if !records.is_empty() {
            self.send(&records);
        }
    }

    fn dump(&self) {
        let seq = {
            let mut d = self.dumps.lock().unwrap_or_else(|p| p.into_inner());
            *d += 1;
            *d
        };
        let mut records = vec![Record::DumpBegin(seq)];
        for (name, map) in self.private_maps() {
            let unwanted = self
                .dump_maps
                .as_ref()
                .is_some_and(|names| !names.iter().any(|n| n == name));
            if unwanted
                || matches!(
                    map.map_type(),
                    MapType::RingBuf
                        | MapType::Queue
                        | MapType::Stack
                        | MapType::ProgArray
                        | MapType::PerfEventArray
                )
            {
                continue;
            }
            for key in map.keys() {
                if let Ok(value) = map.lookup(&key) {
                    records.push(Record::Entry {
                        map: name.to_string(),
                        key,
                        value,
                    });
                }
            }
        }
        if self
            .object
            .maps()
            .any(|(_, m)| m.map_type() == MapType::StackTrace)
        {
            records.extend(crate::protocol::executable_mappings(
                &std::fs::read_to_string("/proc/self/maps").unwrap_or_default(),
            ));
        }
        records.push(Record::DumpEnd(seq));
        self.send(&records);
    }

    /// The last events, the last dump, the counters, once.
    fn finish(&self) {
        if self.done.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        self.drain_events();
        self.dump();
        self.stats();
        self.send(&[Record::Detached]);
    }

    /// Runs of `program` stopped at the time budget.
    fn overruns(&self, program: &str) -> u64 {
        self.object
            .program(program)
            .map_or(0, |p| u64::from(p.overruns()))
    }

    fn stats(&self) {
        let mut records: Vec<Record> = self
            .attachments
            .iter()
            .map(|(program, a)| Record::Stats {
                program: program.clone(),
                hits: a.hits(),
                errors: a.errors(),
                missed: a.missed(),
                overruns: self.overruns(program),
            })
            .collect();
        if let Some((program, a)) = &self.syscalls {
            records.push(Record::Stats {
                program: program.clone(),
                hits: a.hits(),
                errors: a.errors(),
                missed: 0,
                overruns: self.overruns(program),
            });
        }
        self.send(&records);
    }
}

/// Starts the agent if the controller asked for it (the environment names an object); called
/// once, before `main`.
pub fn start() {
    if std::env::var_os(env::OBJECT).is_none() {
        return;
    }
    let orders = |key: &str| std::env::var(key).ok();
    quiet_panics();
    moat_attach::untraced(|| start_with(&orders, true));
}

/// Starts the agent with the orders of file `config` (`KEY=VALUE` lines, the keys of [`env`]):
/// the way in for an agent injected into a running process. `false` when there are no orders or
/// an agent already runs in this process.
pub fn start_from_file(config: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(config) else {
        return false;
    };
    let map: std::collections::HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let orders = |key: &str| map.get(key).cloned();
    let interposed = crate::interposed::wanted(&orders);
    if !map.contains_key(env::OBJECT) && !interposed {
        return false;
    }
    let before = states().len();
    // Loaded with dlopen: this library's thread-local storage is allocated lazily, with malloc.
    moat_attach::tls_free_guard();
    quiet_panics();
    if interposed {
        return moat_attach::untraced(|| crate::interposed::start(&orders));
    }
    moat_attach::untraced(|| start_with(&orders, false));
    states().len() > before
}

/// Detaches the probes of the object reporting to `report` (every object when `None`): the code
/// gets its bytes back, the last records are written and reporting stops; the library stays
/// loaded. `false` if no such object runs.
pub fn stop(report: Option<&str>) -> bool {
    let mut found = moat_attach::untraced(|| crate::interposed::stop(report));
    for state in states() {
        if report.is_some_and(|r| r != state.report) {
            continue;
        }
        found = true;
        moat_attach::untraced(|| {
            for (_, a) in &state.attachments {
                a.detach();
            }
            if let Some((_, a)) = &state.syscalls {
                a.detach();
            }
            state.finish();
        });
    }
    found
}

/// Panics in moat are caught and counted; their messages must not reach the process's stderr.
/// (The hook is the agent's own: the library has its own copy of Rust's standard library.)
fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

fn start_with(orders: &dyn Fn(&str) -> Option<String>, from_env: bool) {
    let Some(object) = orders(env::OBJECT) else {
        return;
    };
    let report = orders(env::OUT).unwrap_or_default();
    let out = orders(env::OUT).and_then(|p| {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .ok()
    });
    let programs: Option<Vec<String>> = orders(env::PROGRAMS)
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_string).collect());
    let interval = orders(env::INTERVAL_MS)
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis);
    let choice = match orders(env::METHOD).as_deref() {
        Some("trap") => Choice::Trap,
        _ => Choice::Auto,
    };
    let no_verify = orders(env::NO_VERIFY).as_deref() == Some("1");
    let time_budget = orders(env::TIME_BUDGET_NS)
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&ns| ns > 0)
        .map(Duration::from_nanos);
    let dump_maps: Option<Vec<String>> = orders(env::DUMP_MAPS)
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_string).collect());
    let globals: Vec<(String, String)> = orders(env::GLOBALS)
        .unwrap_or_default()
        .split(env::GLOBALS_SEPARATOR)
        .filter_map(|e| e.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let shm_dir = orders(env::SHM_DIR).filter(|d| std::path::Path::new(d).is_dir());
    if from_env {
        crate::sys::forget_environment();
    }
    // Indices of the maps given shared memory.
    let shared: std::sync::Arc<Mutex<Vec<usize>>> = std::sync::Arc::default();
    let mut early = Vec::new();
    // `share`: the maps that can be shared get files in the shared directory.
    let load = |share: bool| -> Result<(LoadedObject, Vec<bool>), String> {
        shared.lock().map(|mut s| s.clear()).ok();
        let bytes = std::fs::read(&object)
            .map_err(|e| format!("{}: {e}", std::path::Path::new(&object).display()))?;
        let mut rt = Runtime::new();
        moat_attach::helpers::register(&mut rt);
        if no_verify {
            rt.set_verification(Verification::Off);
        }
        rt.set_time_budget(time_budget)
            .map_err(|e| format!("time budget: no watchdog thread: {e}"))?;
        let mut open = rt.open_object(&bytes).map_err(|e| e.to_string())?;
        open.set_prog_type(ProgType::Tracing);
        if let (Some(dir), true) = (&shm_dir, share) {
            // Under mpk a file mapped over the domain's range would lose its protection key, so
            // that programs could no longer reach their maps: maps stay private there.
            if rt.isolation() != moat::Isolation::Mpk {
                open.set_map_memory(share_maps(dir, &shared));
            }
        }
        for (name, value) in &globals {
            open.set_global_text(name, value)
                .map_err(|e| format!("--global {name}={value}: {e}"))?;
        }
        let loaded = open.load().map_err(|e| e.to_string())?;
        // Maps become readable once described; one that cannot be is reported here instead.
        let chosen = shared.lock().map(|s| s.clone()).unwrap_or_default();
        let dir = shm_dir.clone().unwrap_or_default();
        let published = loaded
            .maps()
            .enumerate()
            .map(|(i, (_, map))| {
                chosen.contains(&i)
                    && moat::SharedMap::publish(map, std::path::Path::new(&dir), &map_tag(i))
                        .is_ok()
            })
            .collect::<Vec<bool>>();
        Ok((loaded, published))
    };
    // Fails open: maps that cannot have shared memory (a full or missing /dev/shm) are reported
    // through the file, as before there was any.
    let loaded = match load(true) {
        Err(shared_error) if shm_dir.is_some() => load(false).inspect(|_| {
            early.push(Record::Error {
                program: String::new(),
                message: format!(
                    "maps not shared ({shared_error}); reported through the report file"
                ),
            })
        }),
        other => other,
    };
    let (object, shared) = match loaded {
        Ok(o) => o,
        Err(message) => {
            if let Some(mut f) = out {
                let rec = Record::Error {
                    program: String::new(),
                    message,
                };
                let _ = f.write_all(rec.to_line().as_bytes());
                let _ = f.write_all(Record::Detached.to_line().as_bytes());
            }
            return;
        }
    };
    let (attachments, syscalls) = attach_all(&object, programs.as_deref(), choice, &mut early);
    let state = State {
        out: Mutex::new(out),
        object,
        attachments,
        syscalls,
        dumps: Mutex::new(0),
        report,
        done: std::sync::atomic::AtomicBool::new(false),
        dump_maps,
        shared,
    };
    state.send(&early);
    let state: &'static State = Box::leak(Box::new(state));
    let first = match STATES.lock() {
        Ok(mut s) => {
            s.push(state);
            s.len() == 1
        }
        Err(_) => return,
    };
    if first {
        crate::sys::at_exit(finish);
    }
    let _ = std::thread::Builder::new()
        .name("moat-agent".into())
        .spawn(move || poll(state, interval));
}

/// The tag (file-name prefix) of map `index` in the shared directory.
pub fn map_tag(index: usize) -> String {
    format!("map{index}")
}

/// The hook giving every map the controller can read its own files in `dir`, over the range the
/// domain would have given it; notes which maps got them in `shared`.
fn share_maps(dir: &str, shared: &std::sync::Arc<Mutex<Vec<usize>>>) -> moat::MapMemoryHook {
    let dir = std::path::PathBuf::from(dir);
    let shared = std::sync::Arc::clone(shared);
    std::sync::Arc::new(move |index, def, inner| {
        if !moat::SharedMap::supports(def.map_type) {
            return None;
        }
        if let Ok(mut s) = shared.lock() {
            s.push(index);
        }
        let memory: std::sync::Arc<dyn moat::MapMemory> =
            moat::SharedMemory::new(&dir, map_tag(index), inner);
        Some(memory)
    })
}

/// Streams ring-buffer records every few milliseconds and dumps maps every `interval`.
fn poll(state: &'static State, interval: Option<Duration>) {
    let mut last = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(5));
        if state.done.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        moat_attach::untraced(|| {
            state.drain_events();
            if let Some(i) = interval {
                if last.elapsed() >= i {
                    state.dump();
                    last = Instant::now();
                }
            }
        });
    }
}

/// At exit: the last events, the last dump, the counters.
extern "C" fn finish() {
    let _ = std::panic::catch_unwind(|| {
        for state in states() {
            moat_attach::untraced(|| state.finish());
        }
    });
}

/// Something attached, under the names of its programs.
type Named<T> = (String, T);

/// The entry and return programs (with their names) of one probed function.
type Group = (Vec<(String, Hook)>, Vec<(String, Hook)>);

/// Attaches system call programs at the sites of this process's C library and program.
pub(crate) fn attach_own_syscalls(
    hooks: SyscallHooks,
) -> Result<SyscallAttachment, moat_attach::AttachError> {
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    moat_attach::attach_syscalls(hooks, &["libc.so.6", &exe])
}

/// Attaches every (chosen) program; records what each got.
fn attach_all(
    object: &LoadedObject,
    chosen: Option<&[String]>,
    choice: Choice,
    records: &mut Vec<Record>,
) -> (Vec<Named<Attachment>>, Option<Named<SyscallAttachment>>) {
    let mut sys = SyscallHooks::default();
    let mut sys_names: Vec<(String, String)> = Vec::new();
    // Programs grouped by probed target: entry and return programs of one function share a probe.
    let mut groups: BTreeMap<(String, String, u64), Group> = BTreeMap::new();
    fn error(records: &mut Vec<Record>, program: &str, message: String) {
        records.push(Record::Error {
            program: program.to_string(),
            message,
        })
    }
    for (spec, (name, result)) in object.object().programs.iter().zip(object.programs()) {
        if chosen.is_some_and(|c| !c.iter().any(|n| n == name)) {
            continue;
        }
        let point = match AttachPoint::from_section(&spec.section) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                error(records, name, e.to_string());
                continue;
            }
        };
        let program = match result {
            Ok(p) => p.clone(),
            Err(e) => {
                error(records, name, format!("not loaded: {e}"));
                continue;
            }
        };
        let hook = Hook { program, cookie: 0 };
        match point {
            AttachPoint::Uprobe(Target {
                path,
                symbol,
                offset,
            }) => groups
                .entry((path, symbol, offset))
                .or_default()
                .0
                .push((name.to_string(), hook)),
            AttachPoint::Uretprobe(Target {
                path,
                symbol,
                offset,
            }) => groups
                .entry((path, symbol, offset))
                .or_default()
                .1
                .push((name.to_string(), hook)),
            other => {
                sys_names.push((name.to_string(), other.to_string()));
                match other {
                    AttachPoint::SysEnter(Some(sc)) => sys.enter.push((sc.nr, hook)),
                    AttachPoint::SysExit(Some(sc)) => sys.exit.push((sc.nr, hook)),
                    AttachPoint::SysEnter(None) => sys.raw_enter.push(hook),
                    _ => sys.raw_exit.push(hook),
                }
            }
        }
    }
    let syscalls = (!sys_names.is_empty()).then(|| match attach_own_syscalls(sys) {
        Ok(a) => {
            let sites = a.sites().len();
            for (n, point) in &sys_names {
                records.push(Record::Attached {
                    program: n.clone(),
                    point: point.clone(),
                    address: 0,
                    method: format!(
                        "system call sites rewritten ({sites} sites in libc and the program)"
                    ),
                });
            }
            let label = sys_names
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join("+");
            Some((label, a))
        }
        Err(e) => {
            for (n, _) in &sys_names {
                error(records, n, e.to_string());
            }
            None
        }
    });
    let mut out = Vec::new();
    for ((path, symbol, offset), (entry, ret)) in groups {
        let target = Target {
            path,
            symbol,
            offset,
        };
        let names: Vec<(String, &str)> = entry
            .iter()
            .map(|(n, _)| (n.clone(), "uprobe"))
            .chain(ret.iter().map(|(n, _)| (n.clone(), "uretprobe")))
            .collect();
        let located = match moat_attach::locate(&target, std::process::id()) {
            Ok(l) => l,
            Err(e) => {
                for (n, _) in &names {
                    error(records, n, e.to_string());
                }
                continue;
            }
        };
        let hooks = |v: Vec<(String, Hook)>| v.into_iter().map(|(_, h)| h).collect();
        match moat_attach::attach(&located, hooks(entry), hooks(ret), choice) {
            Ok(a) => {
                for (n, kind) in &names {
                    records.push(Record::Attached {
                        program: n.clone(),
                        point: format!("{kind} {target}"),
                        address: a.address(),
                        method: a.method().to_string(),
                    });
                }
                let label = names
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join("+");
                out.push((label, a));
            }
            Err(e) => {
                for (n, _) in &names {
                    error(records, n, format!("{target}: {e}"));
                }
            }
        }
    }
    (out, syscalls.flatten())
}
