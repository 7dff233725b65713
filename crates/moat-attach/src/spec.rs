//! What a program's section says it attaches to, as libbpf names it: `uprobe/PATH:SYMBOL[+OFFSET]`,
//! `uretprobe/PATH:SYMBOL`, `tracepoint/syscalls/sys_enter_NAME` (and `sys_exit_NAME`, `tp/...`),
//! `raw_tracepoint/sys_enter` (`raw_tp/...`, and `sys_exit`).

use crate::syscalls;
use std::fmt;
use thiserror::Error;

/// Where a program attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachPoint {
    /// Function entry (or an offset into it): `uprobe/PATH:SYMBOL[+OFFSET]`.
    Uprobe(Target),
    /// Function return: `uretprobe/PATH:SYMBOL`.
    Uretprobe(Target),
    /// A system call's entry (`None`: every system call, `raw_tracepoint/sys_enter`).
    SysEnter(Option<Syscall>),
    /// A system call's exit (`None`: every system call, `raw_tracepoint/sys_exit`).
    SysExit(Option<Syscall>),
}

/// A code location named by file and symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The binary or library: a path, or a file name matched against the process's mappings
    /// (`libc.so.6`).
    pub path: String,
    /// The function's symbol.
    pub symbol: String,
    /// Bytes into the function.
    pub offset: u64,
}

/// A system call of x86-64, by number and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    /// Its number (`__NR_*`).
    pub nr: u32,
    /// Its name (`openat`).
    pub name: &'static str,
}

/// Whether the program is a raw tracepoint (context `struct bpf_raw_tracepoint_args`) or a
/// tracepoint (the kernel's `trace_event_raw_sys_enter`/`_exit` record).
impl AttachPoint {
    /// Parses a section name; `Ok(None)` for sections that attach to nothing moat hooks
    /// (`xdp`, `.text`, ...).
    pub fn from_section(section: &str) -> Result<Option<AttachPoint>, SpecError> {
        let bad = |reason: &str| SpecError {
            section: section.to_string(),
            reason: reason.to_string(),
        };
        let (kind, rest) = match section.split_once('/') {
            Some(split) => split,
            None => (section, ""),
        };
        match kind {
            "uprobe" | "uretprobe" => {
                if rest.is_empty() {
                    return Err(bad("no target: write uprobe/PATH:SYMBOL[+OFFSET]"));
                }
                let (path, func) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| bad("no `:SYMBOL` after the path"))?;
                let (symbol, offset) = match func.split_once('+') {
                    Some((s, off)) => (s, parse_offset(off).ok_or_else(|| bad("bad offset"))?),
                    None => (func, 0),
                };
                if path.is_empty() || symbol.is_empty() {
                    return Err(bad("empty path or symbol"));
                }
                let target = Target {
                    path: path.to_string(),
                    symbol: symbol.to_string(),
                    offset,
                };
                if kind == "uprobe" {
                    Ok(Some(AttachPoint::Uprobe(target)))
                } else if offset != 0 {
                    Err(bad("a uretprobe attaches to a function, not an offset"))
                } else {
                    Ok(Some(AttachPoint::Uretprobe(target)))
                }
            }
            "tracepoint" | "tp" => {
                let Some(event) = rest.strip_prefix("syscalls/") else {
                    return Err(bad("only tracepoint/syscalls/... is hooked in userspace"));
                };
                let (enter, name) = if let Some(n) = event.strip_prefix("sys_enter_") {
                    (true, n)
                } else if let Some(n) = event.strip_prefix("sys_exit_") {
                    (false, n)
                } else {
                    return Err(bad("expected sys_enter_NAME or sys_exit_NAME"));
                };
                let nr = syscalls::number(name)
                    .ok_or_else(|| bad(&format!("unknown system call `{name}`")))?;
                let sc = Some(Syscall {
                    nr,
                    name: syscalls::name(nr).unwrap_or("?"),
                });
                Ok(Some(if enter {
                    AttachPoint::SysEnter(sc)
                } else {
                    AttachPoint::SysExit(sc)
                }))
            }
            "raw_tracepoint" | "raw_tp" => match rest {
                "sys_enter" => Ok(Some(AttachPoint::SysEnter(None))),
                "sys_exit" => Ok(Some(AttachPoint::SysExit(None))),
                _ => Err(bad("only raw_tracepoint/sys_enter and sys_exit are hooked")),
            },
            _ => Ok(None),
        }
    }

    /// Whether the program's context is `struct pt_regs` (probes) rather than a tracepoint record.
    pub fn is_probe(&self) -> bool {
        matches!(self, AttachPoint::Uprobe(_) | AttachPoint::Uretprobe(_))
    }
}

fn parse_offset(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path, self.symbol)?;
        if self.offset != 0 {
            write!(f, "+{:#x}", self.offset)?;
        }
        Ok(())
    }
}

impl fmt::Display for AttachPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachPoint::Uprobe(t) => write!(f, "uprobe {t}"),
            AttachPoint::Uretprobe(t) => write!(f, "uretprobe {t}"),
            AttachPoint::SysEnter(Some(s)) => write!(f, "sys_enter_{}", s.name),
            AttachPoint::SysExit(Some(s)) => write!(f, "sys_exit_{}", s.name),
            AttachPoint::SysEnter(None) => write!(f, "raw sys_enter"),
            AttachPoint::SysExit(None) => write!(f, "raw sys_exit"),
        }
    }
}

/// A section name that names an attach point badly.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("section `{section}`: {reason}")]
pub struct SpecError {
    /// The section.
    pub section: String,
    /// What is wrong.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(path: &str, symbol: &str, offset: u64) -> Target {
        Target {
            path: path.into(),
            symbol: symbol.into(),
            offset,
        }
    }

    #[test]
    fn sections_name_their_attach_points() {
        let openat = Syscall {
            nr: 257,
            name: "openat",
        };
        let cases: &[(&str, Option<AttachPoint>)] = &[
            (
                "uprobe/libc.so.6:malloc",
                Some(AttachPoint::Uprobe(t("libc.so.6", "malloc", 0))),
            ),
            (
                "uprobe//bin/x:f+0x10",
                Some(AttachPoint::Uprobe(t("/bin/x", "f", 16))),
            ),
            (
                "uprobe//bin/x:f+4",
                Some(AttachPoint::Uprobe(t("/bin/x", "f", 4))),
            ),
            (
                "uretprobe//a/b:c",
                Some(AttachPoint::Uretprobe(t("/a/b", "c", 0))),
            ),
            (
                "tracepoint/syscalls/sys_enter_openat",
                Some(AttachPoint::SysEnter(Some(openat))),
            ),
            (
                "tp/syscalls/sys_exit_openat",
                Some(AttachPoint::SysExit(Some(openat))),
            ),
            (
                "raw_tracepoint/sys_enter",
                Some(AttachPoint::SysEnter(None)),
            ),
            ("raw_tp/sys_exit", Some(AttachPoint::SysExit(None))),
            ("xdp", None),
            (".text", None),
        ];
        for (section, expected) in cases {
            assert_eq!(
                &AttachPoint::from_section(section).unwrap(),
                expected,
                "{section}"
            );
        }
    }

    #[test]
    fn bad_sections_say_why() {
        for s in [
            "uprobe",
            "uprobe/nocolon",
            "uprobe/:f",
            "uprobe/x:",
            "uprobe/x:f+zz",
            "uretprobe/x:f+8",
            "tracepoint/sched/sched_switch",
            "tracepoint/syscalls/sys_enter_nosuchcall",
            "raw_tp/sched_switch",
        ] {
            let e = AttachPoint::from_section(s).unwrap_err();
            assert_eq!(e.section, s);
        }
    }
}
