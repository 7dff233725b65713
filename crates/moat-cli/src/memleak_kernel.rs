//! `moat memleak --kernel`: the same tracer object loaded into the Linux kernel and attached with
//! its uprobes (through `moat-kernel`), so that moat's report can be checked against the kernel's
//! and its cost compared. Needs root (or `CAP_BPF` and `CAP_PERFMON`) and the uprobe PMU.

use moat_agent::protocol::Record;
use moat_attach::{AttachPoint, Target};
use moat_kernel::perf::{attach_uprobe, StoppedChild};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// The tracer in the kernel: its maps and every probe (kept open while it traces).
pub(crate) struct KernelTracer {
    object: moat::Object,
    maps: Vec<moat_kernel::Map>,
    programs: Vec<(moat_kernel::Program, PathBuf, u64, bool)>,
    probes: Vec<OwnedFd>,
}

fn bytecode_for_kernel(
    name: &str,
    bytecode: &[u8],
    maps: &[moat_kernel::Map],
) -> Result<Vec<u8>, String> {
    let insns: Vec<moat_isa::Insn> = moat_isa::decode(bytecode)
        .map_err(|e| format!("{name}: {e}"))?
        .into_iter()
        .map(|(_, i)| i)
        .collect();
    let fixed =
        moat_kernel::map_indices_to_fds(&insns, |i| maps.get(i as usize).map_or(-1, |m| m.fd()));
    Ok(moat_isa::encode(&fixed))
}

impl KernelTracer {
    /// Loads `bytes` into the kernel: every map (with its initial data) and every uprobe and
    /// uretprobe program, each located in this process's copy of its library (the file offset is
    /// the file's, the same in every process).
    /// `globals` (`NAME`, `VALUE`) are set in the object's data first, as moat's agent sets them.
    pub(crate) fn load(bytes: &[u8], globals: &[(String, String)]) -> Result<KernelTracer, String> {
        moat_kernel::available()?;
        let rt = moat::Runtime::new();
        let mut open = rt.open_object(bytes).map_err(|e| e.to_string())?;
        for (name, value) in globals {
            open.set_global_text(name, value)
                .map_err(|e| format!("{name}={value}: {e}"))?;
        }
        let object = open.object().clone();
        let mut maps = Vec::new();
        for spec in &object.maps {
            let map = moat_kernel::create_map(
                spec.map_type,
                spec.key_size,
                spec.value_size,
                spec.max_entries,
                spec.flags,
            )
            .map_err(|e| format!("kernel map `{}`: {e}", spec.name))?;
            if !spec.data.is_empty() {
                map.update(&0u32.to_ne_bytes(), &spec.data, moat_kernel::BPF_ANY)
                    .map_err(|e| format!("kernel map `{}` data: {e}", spec.name))?;
            }
            maps.push(map);
        }
        let mut options = moat_kernel::LoadOptions::new(moat_kernel::ProgType::Kprobe);
        options.license = object.license.clone().unwrap_or_else(|| "GPL".into());
        let mut programs = Vec::new();
        for spec in &object.programs {
            let (target, ret): (Target, bool) = match AttachPoint::from_section(&spec.section) {
                Ok(Some(AttachPoint::Uprobe(t))) => (t, false),
                Ok(Some(AttachPoint::Uretprobe(t))) => (t, true),
                _ => continue,
            };
            let at = moat_attach::locate(&target, std::process::id())
                .map_err(|e| format!("{}: {e}", spec.name))?;
            let prog = moat_kernel::load_program(
                &bytecode_for_kernel(&spec.name, &spec.bytecode, &maps)?,
                &options,
            )
            .map_err(|e| format!("kernel program `{}`: {e}", spec.name))?;
            programs.push((prog, at.file, at.file_offset, ret));
        }
        Ok(KernelTracer {
            object,
            maps,
            programs,
            probes: Vec::new(),
        })
    }

    /// Attaches every program to process `pid`.
    pub(crate) fn attach(&mut self, pid: i32) -> Result<(), String> {
        for (prog, file, offset, ret) in &self.programs {
            let fd = attach_uprobe(file, *offset, Some(pid), prog.fd(), *ret)
                .map_err(|e| format!("{}+{offset:#x}: {e}", file.display()))?;
            self.probes.push(fd);
        }
        Ok(())
    }

    /// The entries of the maps named in `names` as the agent's records: one dump's entries.
    pub(crate) fn records(&self, names: &[&str]) -> Vec<Record> {
        let mut records = Vec::new();
        for (spec, map) in self.object.maps.iter().zip(&self.maps) {
            if !names.contains(&spec.name.as_str()) {
                continue;
            }
            let Ok(keys) = map.keys() else { continue };
            for key in keys {
                if let Ok(Some(value)) = map.lookup(&key) {
                    records.push(Record::Entry {
                        map: spec.name.clone(),
                        key,
                        value,
                    });
                }
            }
        }
        records
    }
}

/// The executable file mappings of process `pid`, as records.
pub(crate) fn mappings(pid: i32) -> Vec<Record> {
    moat_agent::protocol::executable_mappings(
        &std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default(),
    )
}

/// Runs `command` under the kernel's probes; its exit status and the records of the final dump
/// (maps and mappings read as it exits).
pub(crate) fn run_command(
    tracer: &mut KernelTracer,
    command: &[OsString],
) -> Result<(std::process::ExitStatus, Vec<Record>), String> {
    let (program, args) = command.split_first().ok_or("no command")?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    let child = StoppedChild::spawn(cmd).map_err(|e| e.to_string())?;
    tracer.attach(child.pid())?;
    let mut records = Vec::new();
    let status = child
        .run(|pid| {
            records = tracer.records(crate::memleak::REPORTED_MAPS);
            records.extend(mappings(pid));
        })
        .map_err(|e| e.to_string())?;
    Ok((status, records))
}
