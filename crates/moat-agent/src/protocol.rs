//! What the agent tells the controller: one line per record, tab-separated, binary fields in hex,
//! appended to a file both know (`O_APPEND` writes of whole lines, so records never interleave).
//! A file, not a pipe: the traced process never blocks on, or dies of, a controller that is gone.

use std::fmt::Write as _;

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A program was attached: program, attach point, address, method.
    Attached {
        /// The program's name.
        program: String,
        /// What it attached to.
        point: String,
        /// The address (0 for system calls).
        address: u64,
        /// How (`rewritten (N bytes displaced)`, `int3 trap`, `syscall rewrite`, ...).
        method: String,
    },
    /// Something failed; the process goes on without it.
    Error {
        /// The program concerned, or empty.
        program: String,
        /// What went wrong.
        message: String,
    },
    /// A ring-buffer record.
    Event {
        /// The map.
        map: String,
        /// The record's bytes.
        data: Vec<u8>,
    },
    /// A map dump starts (sequence number).
    DumpBegin(u64),
    /// One map entry of the current dump.
    Entry {
        /// The map.
        map: String,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// The dump ends.
    DumpEnd(u64),
    /// An executable file mapping of the process, sent with the dumps of objects that record
    /// stacks, so that addresses can be symbolised after the process is gone.
    Mapping {
        /// First address.
        start: u64,
        /// One past the last address.
        end: u64,
        /// The file offset mapped at `start`.
        offset: u64,
        /// The file.
        path: String,
    },
    /// A probe's counters: program, runs, failed runs, skipped hits.
    Stats {
        /// The program.
        program: String,
        /// Program runs.
        hits: u64,
        /// Failed runs.
        errors: u64,
        /// Skipped hits.
        missed: u64,
        /// Runs stopped at the time budget (part of `errors`).
        overruns: u64,
    },
    /// The agent detached (the process is exiting or the controller asked).
    Detached,
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n'], " ")
}

impl Record {
    /// The record as one line, with its newline.
    pub fn to_line(&self) -> String {
        let body = match self {
            Record::Attached {
                program,
                point,
                address,
                method,
            } => format!(
                "attached\t{}\t{}\t{address:x}\t{}",
                clean(program),
                clean(point),
                clean(method)
            ),
            Record::Error { program, message } => {
                format!("error\t{}\t{}", clean(program), clean(message))
            }
            Record::Event { map, data } => format!("event\t{}\t{}", clean(map), hex(data)),
            Record::DumpBegin(n) => format!("dump-begin\t{n}"),
            Record::Entry { map, key, value } => {
                format!("entry\t{}\t{}\t{}", clean(map), hex(key), hex(value))
            }
            Record::DumpEnd(n) => format!("dump-end\t{n}"),
            Record::Mapping {
                start,
                end,
                offset,
                path,
            } => format!("mapping\t{start:x}\t{end:x}\t{offset:x}\t{}", clean(path)),
            Record::Stats {
                program,
                hits,
                errors,
                missed,
                overruns,
            } => format!(
                "stats\t{}\t{hits}\t{errors}\t{missed}\t{overruns}",
                clean(program)
            ),
            Record::Detached => "detached".to_string(),
        };
        body + "\n"
    }

    /// Parses a line (without its newline); `None` for anything malformed (a line cut short by a
    /// crash, say).
    pub fn parse(line: &str) -> Option<Record> {
        let f: Vec<&str> = line.split('\t').collect();
        let s = |i: usize| f.get(i).map(|s| s.to_string());
        let n = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
        Some(match *f.first()? {
            "attached" => Record::Attached {
                program: s(1)?,
                point: s(2)?,
                address: u64::from_str_radix(f.get(3)?, 16).ok()?,
                method: s(4)?,
            },
            "error" => Record::Error {
                program: s(1)?,
                message: s(2)?,
            },
            "event" => Record::Event {
                map: s(1)?,
                data: unhex(f.get(2)?)?,
            },
            "dump-begin" => Record::DumpBegin(n(1)?),
            "entry" => Record::Entry {
                map: s(1)?,
                key: unhex(f.get(2)?)?,
                value: unhex(f.get(3)?)?,
            },
            "dump-end" => Record::DumpEnd(n(1)?),
            "mapping" => Record::Mapping {
                start: u64::from_str_radix(f.get(1)?, 16).ok()?,
                end: u64::from_str_radix(f.get(2)?, 16).ok()?,
                offset: u64::from_str_radix(f.get(3)?, 16).ok()?,
                path: s(4)?,
            },
            "stats" => Record::Stats {
                program: s(1)?,
                hits: n(2)?,
                errors: n(3)?,
                missed: n(4)?,
                overruns: n(5)?,
            },
            "detached" => Record::Detached,
            _ => return None,
        })
    }
}

/// The executable file mappings listed in `maps` (a `/proc/PID/maps` text) as [`Record::Mapping`]s:
/// what turns the addresses of recorded stacks into symbols, also after the process is gone.
pub fn executable_mappings(maps: &str) -> Vec<Record> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (start, end) = f.next()?.split_once('-')?;
            let perms = f.next()?;
            let offset = f.next()?;
            // The path is the rest of the line (it may hold spaces).
            let path = &line[line.find(" /")? + 1..];
            if !perms.contains('x') {
                return None;
            }
            Some(Record::Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                path: path.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let records = [
            Record::Attached {
                program: "p".into(),
                point: "uprobe a:b".into(),
                address: 0x1234,
                method: "int3 trap".into(),
            },
            Record::Error {
                program: String::new(),
                message: "bad\tthing".replace('\t', " "),
            },
            Record::Event {
                map: "events".into(),
                data: vec![0, 1, 255],
            },
            Record::DumpBegin(3),
            Record::Entry {
                map: "m".into(),
                key: vec![1],
                value: vec![],
            },
            Record::DumpEnd(3),
            Record::Mapping {
                start: 0x5555_0000,
                end: 0x5556_0000,
                offset: 0x1000,
                path: "/usr/bin/a b".into(),
            },
            Record::Stats {
                program: "p".into(),
                hits: 5,
                errors: 1,
                missed: 0,
                overruns: 1,
            },
            Record::Detached,
        ];
        for r in records {
            let line = r.to_line();
            assert_eq!(Record::parse(line.trim_end_matches('\n')), Some(r));
        }
        assert_eq!(Record::parse("event\tx\t0"), None);
        let maps = "5555-5556 r-xp 00001000 08:01 42 /usr/bin/a b\n\
                    5556-5557 rw-p 00002000 08:01 42 /usr/bin/a b\n\
                    7000-7001 r-xp 00000000 00:00 0 [vdso]\n";
        assert_eq!(
            executable_mappings(maps),
            [Record::Mapping {
                start: 0x5555,
                end: 0x5556,
                offset: 0x1000,
                path: "/usr/bin/a b".into(),
            }]
        );
        assert_eq!(Record::parse("nonsense"), None);
    }
}
