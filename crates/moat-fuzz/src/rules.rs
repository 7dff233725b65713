//! The verifier's rule files (`crates/moat-verify/tests/rules/*.asm`), parsed once for every test
//! that reads them: the verifier's own rule test and the kernel differential.
//!
//! A file starts with comment lines; those of the form `# key: value` (or a bare `# flag`) set it
//! up, any other comment is prose:
//!
//! * `# rule: SENTENCE` (required): which rule the program shows.
//! * `# context: buffer N | xdp | tc | socket | cgroup-skb | tracing [N] | …` (the other program
//!   types as [`RuleContext`] names them: `sock-ops`, `perf-event`, …): what `r1` points to (the
//!   generic buffer, `struct xdp_md`, `struct __sk_buff` with a writable packet for tc or a
//!   read-only one for socket filters and cgroup skb programs, or a read-only tracing context of `N`
//!   bytes, default 168, x86-64's `struct pt_regs`). Default: `buffer 64`.
//! * `# map: NAME TYPE KEY VALUE ENTRIES [ro] [inner=K]` (repeatable): the maps, in `map_idx` order.
//!   `TYPE` is a kernel map type number or a libbpf name without its prefix (`hash`, `array`,
//!   `prog_array`, `ringbuf`, `array_of_maps`, …); `ro` sets `BPF_F_RDONLY_PROG` (read-only for
//!   programs); `inner=K` makes a map of maps hold maps like map `K`.
//! * `# license: STRING`: the program's license (default `GPL`); GPL-only helpers need a
//!   GPL-compatible one.
//! * `# unprivileged`: the rules of an unprivileged loader ([`Env::privileged`] = false).
//! * `# limit: N`: the complexity limit ([`Env::complexity_limit`]), for loops that must exhaust it
//!   quickly.
//! * `# reject: VARIANT at PC`: the verifier must reject the program with this
//!   [`moat_verify::Reason`] variant (matched by name) at this instruction slot. Structural errors
//!   that [`moat_isa::Program::new`] finds before the verifier runs are written `Program::VARIANT`.
//! * `# accept`: the verifier must accept the program (a safe twin of a rejected one).
//! * `# FIXME: ...`: the expectation records current behaviour that is wrong; the text says how.

use moat_abi::{license_is_gpl_compatible, AttachType, MapType, ProgType};
use moat_verify::{Context, Env, MapInfo};
use std::path::{Path, PathBuf};

/// A malformed header line, named by its line number (1-based) and text.
#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    /// A header line that does not parse.
    #[error("line {line}: {what}: `{text}`")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        what: String,
        /// The line as written.
        text: String,
    },
    /// A required line is missing.
    #[error("missing `# {0}` line")]
    Missing(&'static str),
    /// The rule directory cannot be listed.
    #[error("cannot read {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What `r1` points to, as the header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleContext {
    /// `buffer N`: the generic buffer of `N` bytes.
    Buffer(u64),
    /// `xdp`: `struct xdp_md`.
    Xdp,
    /// `tc`: `struct __sk_buff`, packet writable.
    Tc,
    /// `socket`: `struct __sk_buff` of a socket filter, packet read-only.
    Socket,
    /// `cgroup-skb`: `struct __sk_buff` of a cgroup skb program, packet read-only.
    CgroupSkb,
    /// `tracing N`: a read-only tracing context of `N` bytes.
    Tracing(u32),
    /// `sock-ops`: `struct bpf_sock_ops` of a `sock_ops` program.
    SockOps,
    /// `cgroup-sock`: `struct bpf_sock` of a `cgroup_sock` program at socket creation (loaded
    /// without an expected attach type, the kernel's default).
    CgroupSock,
    /// `cgroup-sock-addr HOOK`: `struct bpf_sock_addr` of a `cgroup_sock_addr` program attached
    /// at `HOOK`, a libbpf section name after `cgroup/` (`connect4`, `sendmsg6`, ...).
    CgroupSockAddr(AttachType),
    /// `lwt-in`, `lwt-out`, `lwt-xmit`: `struct __sk_buff` of a lightweight tunnel program
    /// (its kernel type).
    Lwt(ProgType),
    /// `cgroup-device`: `struct bpf_cgroup_dev_ctx` of a `cgroup_device` program.
    CgroupDevice,
    /// `cgroup-sysctl`: `struct bpf_sysctl` of a `cgroup_sysctl` program.
    CgroupSysctl,
    /// `sk-msg`: `struct sk_msg_md` of an `sk_msg` program.
    SkMsg,
    /// `perf-event`: `struct bpf_perf_event_data` of a `perf_event` program.
    PerfEvent,
    /// `sk-skb`: `struct __sk_buff` of an `sk_skb` program.
    SkSkb,
}

impl RuleContext {
    /// The kernel program type the context stands for (the type the kernel differential loads the
    /// file as, and whose helper rules the verifier applies); `None` for the generic buffer.
    #[must_use]
    pub fn kernel_type(self) -> Option<ProgType> {
        match self {
            Self::Buffer(_) => None,
            Self::Xdp => Some(ProgType::Xdp),
            Self::Tc => Some(ProgType::SchedCls),
            Self::Socket => Some(ProgType::SocketFilter),
            Self::CgroupSkb => Some(ProgType::CgroupSkb),
            Self::Tracing(_) => Some(ProgType::Kprobe),
            Self::SockOps => Some(ProgType::SockOps),
            Self::CgroupSock => Some(ProgType::CgroupSock),
            Self::CgroupSockAddr(_) => Some(ProgType::CgroupSockAddr),
            Self::Lwt(t) => Some(t),
            Self::CgroupDevice => Some(ProgType::CgroupDevice),
            Self::CgroupSysctl => Some(ProgType::CgroupSysctl),
            Self::SkMsg => Some(ProgType::SkMsg),
            Self::PerfEvent => Some(ProgType::PerfEvent),
            Self::SkSkb => Some(ProgType::SkSkb),
        }
    }
}

impl RuleContext {
    /// The `expected_attach_type` a program of this context is loaded with (cgroup sock_addr
    /// hooks only).
    #[must_use]
    pub fn attach_type(self) -> Option<AttachType> {
        match self {
            Self::CgroupSockAddr(attach) => Some(attach),
            _ => None,
        }
    }

    /// The verifier's context for it.
    #[must_use]
    pub fn verifier_context(self) -> Context {
        match self {
            Self::Buffer(size) => Context::Buffer { size },
            Self::Xdp => Context::xdp(),
            Self::Tc => Context::sk_buff(true),
            Self::Socket | Self::CgroupSkb => Context::sk_buff(false),
            Self::Tracing(size) => Context::tracing(size),
            Self::SockOps => Context::sock_ops(),
            Self::CgroupSock => Context::sock(None),
            Self::CgroupSockAddr(attach) => Context::sock_addr(Some(attach)),
            Self::Lwt(t) => Context::lwt(t == ProgType::LwtXmit),
            Self::CgroupDevice => Context::cgroup_dev(),
            Self::CgroupSysctl => Context::sysctl(),
            Self::SkMsg => Context::sk_msg(),
            Self::PerfEvent => Context::perf_event(),
            Self::SkSkb => Context::sk_skb(),
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        let words: Vec<&str> = value.split_whitespace().collect();
        let size = |default: u64| -> Result<u64, String> {
            words.get(1).map_or(Ok(default), |w| {
                w.parse().map_err(|_| format!("bad size `{w}`"))
            })
        };
        Ok(match words.first().copied() {
            Some("buffer") => Self::Buffer(size(64)?),
            Some("xdp") => Self::Xdp,
            Some("tc") => Self::Tc,
            Some("socket") => Self::Socket,
            Some("cgroup-skb") => Self::CgroupSkb,
            Some("sock-ops") => Self::SockOps,
            Some("cgroup-sock") => Self::CgroupSock,
            Some("cgroup-device") => Self::CgroupDevice,
            Some("cgroup-sysctl") => Self::CgroupSysctl,
            Some("sk-msg") => Self::SkMsg,
            Some("perf-event") => Self::PerfEvent,
            Some("sk-skb") => Self::SkSkb,
            Some("lwt-in") => Self::Lwt(ProgType::LwtIn),
            Some("lwt-out") => Self::Lwt(ProgType::LwtOut),
            Some("lwt-xmit") => Self::Lwt(ProgType::LwtXmit),
            Some("cgroup-sock-addr") => {
                let hook = words.get(1).ok_or("cgroup-sock-addr needs a hook")?;
                let def = moat_abi::section_def(&format!("cgroup/{hook}"))
                    .filter(|d| d.prog_type == ProgType::CgroupSockAddr)
                    .ok_or_else(|| format!("unknown cgroup_sock_addr hook `{hook}`"))?;
                Self::CgroupSockAddr(def.attach_type.ok_or("hook without an attach type")?)
            }
            Some("tracing") => Self::Tracing(
                u32::try_from(size(168)?).map_err(|_| "tracing size too large".to_string())?,
            ),
            _ => return Err("unknown context".to_string()),
        })
    }
}

/// What a file expects of the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// `# accept`.
    Accept,
    /// `# reject: VARIANT at PC`.
    Reject {
        /// The reason's variant name (`Program::VARIANT` for structural errors).
        variant: String,
        /// The instruction slot.
        pc: usize,
    },
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Accept => write!(f, "accept"),
            Self::Reject { variant, pc } => write!(f, "reject {variant} at {pc}"),
        }
    }
}

/// A parsed rule file.
#[derive(Debug, Clone)]
pub struct RuleFile {
    /// The rule the program shows.
    pub rule: String,
    /// What `r1` points to.
    pub context: RuleContext,
    /// The maps, in `map_idx` order.
    pub maps: Vec<MapInfo>,
    /// The program's license (`# license:`, default `GPL`).
    pub license: String,
    /// Whether the loader is privileged (default) or not (`# unprivileged`).
    pub privileged: bool,
    /// The complexity limit, if the header sets one.
    pub limit: Option<u64>,
    /// The expected verdict.
    pub expect: Expect,
    /// Why the expectation is known to be wrong, if it is.
    pub fixme: Option<String>,
    /// The whole file, program included.
    pub source: String,
}

impl RuleFile {
    /// Parses a file's header.
    ///
    /// # Errors
    /// A header line that does not parse, a second verdict line, or a missing `rule` or verdict.
    pub fn parse(source: &str) -> Result<Self, RuleFileError> {
        let mut rule = None;
        let mut context = RuleContext::Buffer(64);
        let mut maps = Vec::new();
        let mut privileged = true;
        let mut license = "GPL".to_string();
        let mut limit = None;
        let mut expect = None;
        let mut fixme = None;
        for (index, line) in source.lines().enumerate() {
            let Some(comment) = line.trim().strip_prefix('#') else {
                continue;
            };
            let bad = |what: String| RuleFileError::BadLine {
                line: index + 1,
                what,
                text: line.to_string(),
            };
            let comment = comment.trim();
            let (key, value) = match comment.split_once(':') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (comment, ""),
            };
            let verdict = match key {
                "rule" => {
                    rule = Some(value.to_string());
                    None
                }
                "context" => {
                    context = RuleContext::parse(value).map_err(bad)?;
                    None
                }
                "map" => {
                    maps.push(parse_map(value).map_err(bad)?);
                    None
                }
                "unprivileged" => {
                    privileged = false;
                    None
                }
                "license" => {
                    license = value.to_string();
                    None
                }
                "limit" => {
                    limit = Some(value.parse().map_err(|_| bad("bad limit".to_string()))?);
                    None
                }
                "reject" => Some(parse_reject(value).map_err(bad)?),
                "accept" => Some(Expect::Accept),
                "FIXME" => {
                    fixme = Some(value.to_string());
                    None
                }
                _ => None,
            };
            if let Some(v) = verdict {
                if expect.replace(v).is_some() {
                    return Err(bad("more than one `reject`/`accept` line".to_string()));
                }
            }
        }
        Ok(Self {
            rule: rule.ok_or(RuleFileError::Missing("rule:"))?,
            context,
            maps,
            license,
            privileged,
            limit,
            expect: expect.ok_or(RuleFileError::Missing("reject:` or `# accept"))?,
            fixme,
            source: source.to_string(),
        })
    }

    /// The verifier's environment the header describes.
    #[must_use]
    pub fn env(&self) -> Env<'_> {
        let mut env = Env::new(self.context.verifier_context());
        env.maps.clone_from(&self.maps);
        env.privileged = self.privileged;
        env.kernel_type = self.context.kernel_type();
        env.gpl_compatible = license_is_gpl_compatible(&self.license);
        // Loaded with the attach type the context names (none for most), as the kernel
        // differential loads it.
        env.return_range = env
            .kernel_type
            .and_then(|t| t.return_range(self.context.attach_type()));
        if let Some(limit) = self.limit {
            env.complexity_limit = limit;
        }
        env
    }
}

fn parse_map(value: &str) -> Result<MapInfo, String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let [name, ty, key, val, entries, rest @ ..] = words.as_slice() else {
        return Err("map needs NAME TYPE KEY VALUE ENTRIES".to_string());
    };
    let number = |s: &str| s.parse::<u32>().map_err(|_| format!("bad number `{s}`"));
    let map_type = match ty.parse::<u32>() {
        Ok(n) => n,
        Err(_) => MapType::from_name(ty)
            .map(MapType::as_u32)
            .ok_or_else(|| format!("unknown map type `{ty}`"))?,
    };
    // `ro`: BPF_F_RDONLY_PROG; `pool`: read-only values whose atomics apply in place;
    // `inner=K`: a map of maps whose values are like map K (by `map_idx`).
    let mut info = MapInfo {
        name: (*name).to_string(),
        map_type,
        key_size: number(key)?,
        value_size: number(val)?,
        max_entries: number(entries)?,
        read_only: false,
        atomic_in_place: false,
        inner: None,
    };
    for word in rest {
        match *word {
            "ro" => info.read_only = true,
            "pool" => (info.read_only, info.atomic_in_place) = (true, true),
            w => match w.strip_prefix("inner=") {
                Some(k) => info.inner = Some(number(k)? as usize),
                None => return Err(format!("unexpected map flag `{w}`")),
            },
        }
    }
    Ok(info)
}

fn parse_reject(value: &str) -> Result<Expect, String> {
    let (variant, pc) = value
        .split_once(" at ")
        .ok_or_else(|| "reject needs `VARIANT at PC`".to_string())?;
    Ok(Expect::Reject {
        variant: variant.trim().to_string(),
        pc: pc
            .trim()
            .parse()
            .map_err(|_| format!("bad instruction `{}`", pc.trim()))?,
    })
}

/// The rule files of a directory (`*.asm`), sorted.
///
/// # Errors
/// The directory cannot be read.
pub fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, RuleFileError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RuleFileError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "asm"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        assert!(RuleFile::parse("mov %r0, 0\nexit").is_err(), "no rule line");
        assert!(RuleFile::parse("# rule: x\n# accept\n# accept\nexit").is_err());
        let e = RuleFile::parse("# rule: x\n# context: nonsense\n# accept").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: unknown context: `# context: nonsense`"
        );
        assert!(RuleFile::parse("# rule: x\n# map: m nosuch 4 8 16\n# accept").is_err());
        let f = RuleFile::parse("# rule: x\n# map: m hash 4 8 16 ro\n# reject: OutOfBounds at 3")
            .expect("parses");
        assert_eq!(
            f.expect,
            Expect::Reject {
                variant: "OutOfBounds".into(),
                pc: 3
            }
        );
        assert!(f.maps[0].read_only);
        assert_eq!(f.maps[0].map_type, MapType::Hash.as_u32());
        let t =
            RuleFile::parse("# rule: x\n# context: tracing\n# unprivileged\n# limit: 9\n# accept")
                .expect("parses");
        assert_eq!(t.context, RuleContext::Tracing(168));
        assert!(!t.privileged);
        assert_eq!(t.env().complexity_limit, 9);
        assert_eq!(t.env().kernel_type, Some(ProgType::Kprobe));
        assert!(t.env().gpl_compatible);
        let p = RuleFile::parse("# rule: x\n# license: Proprietary\n# accept").expect("parses");
        assert!(!p.env().gpl_compatible);
        assert_eq!(p.env().kernel_type, None);
    }
}
