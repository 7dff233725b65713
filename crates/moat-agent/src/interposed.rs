//! Programs a libbpf tool loaded through `moat load` (`moat-interpose`), run in the process the
//! tool traces: one program per order file, attached to the uprobe or uretprobe the tool asked
//! the kernel for (a file and an offset in it, as the uprobe PMU takes them), over the maps the
//! tool made in shared memory, which this process adopts ([`moat::Map::adopt`]): the programs'
//! writes land in the files the tool reads with its ordinary `bpf(2)` calls.
//!
//! Maps are adopted once per process and shared by every program that names them (a tool's entry
//! and return programs share their map of start times). Records (attached, errors, counters) go
//! to each program's report file, as the object agent's do ([`crate::protocol`]).

use crate::agent::env;
use crate::protocol::Record;
use moat::{LoadedProgram, Map, ProgType, Runtime};
use moat_attach::{Attachment, Choice, Hook, SyscallAttachment, SyscallHooks};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How a running program is attached.
enum Probe {
    /// A uprobe or uretprobe of its own.
    Function(Attachment),
    /// A `syscalls` tracepoint (`sys_enter_NAME` or `sys_exit_NAME`), one of the [`SYSCALLS`]
    /// group.
    Syscall { nr: u32, exit: bool },
}

/// One attached program, until it is stopped.
struct Running {
    report: String,
    name: String,
    /// Kept for the counters of runs stopped at the time budget.
    program: LoadedProgram,
    probe: Probe,
}

/// The system call sites rewritten for every running tracepoint program: one attachment for them
/// all (a site is rewritten once), made again when a program comes or goes.
static SYSCALLS: Mutex<Option<SyscallAttachment>> = Mutex::new(None);

/// The programs running, in the order they were attached.
static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());

/// Maps adopted so far, by directory and tag.
type Adopted = HashMap<(PathBuf, String), Arc<Map>>;
static ADOPTED: Mutex<Option<Adopted>> = Mutex::new(None);

/// Whether `orders` are for an interposed program (rather than an object).
pub(crate) fn wanted(orders: &dyn Fn(&str) -> Option<String>) -> bool {
    orders(env::PROG_CODE).is_some()
}

fn append(report: &str, records: &[Record]) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(report)
    {
        let text: String = records.iter().map(Record::to_line).collect();
        let _ = f.write_all(text.as_bytes());
    }
}

/// Loads and attaches the program `orders` describe; reports what happened to its report file.
/// `true` once it runs.
pub(crate) fn start(orders: &dyn Fn(&str) -> Option<String>) -> bool {
    let report = orders(env::OUT).unwrap_or_default();
    let name = orders(env::PROG_NAME).unwrap_or_default();
    match attach(orders, &name) {
        Ok((program, probe, record)) => {
            let Ok(mut running) = RUNNING.lock() else {
                return false;
            };
            running.push(Running {
                report: report.clone(),
                name: name.clone(),
                program,
                probe,
            });
            if matches!(
                running.last().map(|r| &r.probe),
                Some(Probe::Syscall { .. })
            ) {
                if let Err(message) = attach_syscalls(&running) {
                    running.pop();
                    let _ = attach_syscalls(&running);
                    return failed(&report, name, message);
                }
            }
            append(&report, &[record]);
            true
        }
        Err(message) => failed(&report, name, message),
    }
}

/// Reports that `program` could not be attached (and is not running): `false`.
fn failed(report: &str, program: String, message: String) -> bool {
    append(
        report,
        &[Record::Error { program, message }, Record::Detached],
    );
    false
}

/// The map `tag` of `dir`, adopted once for the process.
fn adopted(dir: &Path, tag: &str) -> Result<Arc<Map>, String> {
    let mut all = ADOPTED
        .lock()
        .map_err(|_| "map table poisoned".to_string())?;
    let all = all.get_or_insert_with(HashMap::new);
    let key = (dir.to_path_buf(), tag.to_string());
    if let Some(map) = all.get(&key) {
        return Ok(map.clone());
    }
    let map = Arc::new(
        Map::adopt(dir, tag, None).map_err(|e| format!("map {tag} in {}: {e}", dir.display()))?,
    );
    all.insert(key, map.clone());
    Ok(map)
}

/// Rewrites the system call sites again for the tracepoint programs of `running`.
fn attach_syscalls(running: &[Running]) -> Result<(), String> {
    let mut current = SYSCALLS.lock().map_err(|_| "poisoned".to_string())?;
    if let Some(old) = current.take() {
        old.detach();
    }
    let mut hooks = SyscallHooks::default();
    for r in running {
        if let Probe::Syscall { nr, exit } = r.probe {
            let hook = Hook {
                program: r.program.clone(),
                cookie: 0,
            };
            if exit {
                hooks.exit.push((nr, hook));
            } else {
                hooks.enter.push((nr, hook));
            }
        }
    }
    if hooks.enter.is_empty() && hooks.exit.is_empty() {
        return Ok(());
    }
    let attachment = crate::agent::attach_own_syscalls(hooks).map_err(|e| e.to_string())?;
    *current = Some(attachment);
    Ok(())
}

fn attach(
    orders: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<(LoadedProgram, Probe, Record), String> {
    let need = |key: &str| orders(key).ok_or_else(|| format!("no {key} in the orders"));
    let code_path = need(env::PROG_CODE)?;
    let code = std::fs::read(&code_path).map_err(|e| format!("{code_path}: {e}"))?;
    let dir = PathBuf::from(need(env::SHM_DIR)?);
    let maps = orders(env::PROG_MAPS)
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|tag| adopted(&dir, tag))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rt = Runtime::new();
    moat_attach::helpers::register(&mut rt);
    let program = rt
        .load_with_maps(&code, ProgType::Tracing, &maps)
        .map_err(|e| format!("not loaded: {e}"))?;
    if let Some(tracepoint) = orders(env::PROG_SYSCALL).filter(|t| !t.is_empty()) {
        let (exit, syscall) = match (
            tracepoint.strip_prefix("sys_enter_"),
            tracepoint.strip_prefix("sys_exit_"),
        ) {
            (Some(s), _) => (false, s),
            (_, Some(s)) => (true, s),
            _ => return Err(format!("{tracepoint}: not a system call's tracepoint")),
        };
        let nr = moat_attach::syscalls::number(syscall)
            .ok_or_else(|| format!("{tracepoint}: no system call `{syscall}` on x86-64"))?;
        let record = Record::Attached {
            program: name.to_string(),
            point: format!("tracepoint syscalls:{tracepoint}"),
            address: 0,
            method: "system call sites rewritten (libc and the program)".into(),
        };
        return Ok((program, Probe::Syscall { nr, exit }, record));
    }
    let path = need(env::PROG_PATH)?;
    let offset = need(env::PROG_OFFSET)?;
    let offset = offset
        .parse::<u64>()
        .map_err(|e| format!("offset `{offset}`: {e}"))?;
    let ret = orders(env::PROG_RETURN).as_deref() == Some("1");
    let located = moat_attach::locate_file_offset(&path, offset, std::process::id())
        .map_err(|e| e.to_string())?;
    let hook = Hook {
        program: program.clone(),
        cookie: 0,
    };
    let (entry, exit) = if ret {
        (Vec::new(), vec![hook])
    } else {
        (vec![hook], Vec::new())
    };
    let kind = if ret { "uretprobe" } else { "uprobe" };
    let point = format!("{kind} {path}+{offset:#x}");
    let attachment = moat_attach::attach(&located, entry, exit, Choice::Auto)
        .map_err(|e| format!("{point}: {e}"))?;
    let record = Record::Attached {
        program: name.to_string(),
        point,
        address: attachment.address(),
        method: attachment.method().to_string(),
    };
    Ok((program, Probe::Function(attachment), record))
}

/// Detaches the programs reporting to `report` (all when `None`), the latest first, and writes
/// their counters; `true` if there was one.
pub(crate) fn stop(report: Option<&str>) -> bool {
    let stopped: Vec<Running> = match RUNNING.lock() {
        Ok(mut running) => {
            let (gone, kept): (Vec<Running>, Vec<Running>) = running
                .drain(..)
                .partition(|r| report.is_none_or(|w| w == r.report));
            *running = kept;
            gone
        }
        Err(_) => return false,
    };
    // The tracepoint programs left get their sites again, without the stopped ones.
    if stopped
        .iter()
        .any(|r| matches!(r.probe, Probe::Syscall { .. }))
    {
        if let Ok(running) = RUNNING.lock() {
            let _ = attach_syscalls(&running);
        }
    }
    for r in stopped.iter().rev() {
        let (hits, errors, missed) = match &r.probe {
            Probe::Function(a) => {
                a.detach();
                (a.hits(), a.errors(), a.missed())
            }
            // Counted for the group (the sites are shared): the program's own runs are not.
            Probe::Syscall { .. } => (0, 0, 0),
        };
        append(
            &r.report,
            &[
                Record::Stats {
                    program: r.name.clone(),
                    hits,
                    errors,
                    missed,
                    overruns: u64::from(r.program.overruns()),
                },
                Record::Detached,
            ],
        );
    }
    // With no program left, the maps are the tool's alone again (their files stay its).
    if RUNNING.lock().is_ok_and(|r| r.is_empty()) {
        if let Ok(mut adopted) = ADOPTED.lock() {
            *adopted = None;
        }
    }
    !stopped.is_empty()
}
