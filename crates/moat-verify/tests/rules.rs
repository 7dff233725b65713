//! The verifier's rules, one hand-written program per rule: every `tests/rules/*.asm` file is verified
//! in the environment its header describes and must get the verdict the header expects.
//!
//! A file starts with comment lines; those of the form `# key: value` (or a bare `# flag`) set it up,
//! any other comment is prose:
//!
//! * `# rule: SENTENCE` (required): which rule the program shows.
//! * `# context: buffer N | xdp | tc | socket | cgroup-skb | tracing [N]`: what `r1` points to (the
//!   generic buffer, `struct xdp_md`, `struct __sk_buff` with a writable packet for tc or a read-only
//!   one for socket filters and cgroup skb programs, or a read-only tracing context of `N` bytes,
//!   default 168, x86-64's `struct pt_regs`). Default: `buffer 64`.
//! * `# map: NAME TYPE KEY VALUE ENTRIES [ro]` (repeatable): the maps, in `map_idx` order. `TYPE` is a
//!   kernel map type number or one of `hash`, `array`, `prog_array`, `perf_event_array`, `percpu_hash`,
//!   `percpu_array`, `lru_hash`, `lpm_trie`, `queue`, `stack`, `ringbuf`; `ro` sets
//!   `BPF_F_RDONLY_PROG` (read-only for programs).
//! * `# unprivileged`: the rules of an unprivileged loader ([`Env::privileged`] = false).
//! * `# limit: N`: the complexity limit ([`Env::complexity_limit`]), for loops that must exhaust it
//!   quickly.
//! * `# reject: VARIANT at PC`: the verifier must reject the program with this [`moat_verify::Reason`]
//!   variant (matched by name) at this instruction slot. Structural errors that
//!   [`moat_isa::Program::new`] finds before the verifier runs are written `Program::VARIANT`.
//! * `# accept`: the verifier must accept the program (a safe twin of a rejected one).
//! * `# FIXME: ...`: the expectation records current behaviour that is wrong; the text says how.
//!
//! The same files are loaded into the Linux kernel by `crates/moat/tests/kernel_verifier.rs`, which
//! parses these headers too.

use moat_isa::{Program, ProgramError};
use moat_verify::{verify, Context, Env, MapInfo};
use std::path::{Path, PathBuf};

/// What a file expects.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Accept,
    Reject { variant: String, pc: usize },
}

/// A parsed rule file.
#[derive(Debug)]
struct RuleFile {
    rule: String,
    context: Context,
    maps: Vec<MapInfo>,
    privileged: bool,
    limit: Option<u64>,
    expect: Expect,
    fixme: Option<String>,
    source: String,
}

fn map_type(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    moat_abi::MapType::from_name(name)
        .map(moat_abi::MapType::as_u32)
        .ok_or_else(|| format!("unknown map type `{name}`"))
}

fn parse_context(value: &str) -> Result<Context, String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let number = |w: Option<&&str>, default: u64| -> Result<u64, String> {
        w.map_or(Ok(default), |w| {
            w.parse().map_err(|_| format!("bad size `{w}`"))
        })
    };
    Ok(match words.first().copied() {
        Some("buffer") => Context::Buffer {
            size: number(words.get(1), 64)?,
        },
        Some("xdp") => Context::xdp(),
        Some("tc") => Context::sk_buff(true),
        Some("socket" | "cgroup-skb") => Context::sk_buff(false),
        Some("tracing") => {
            let size = number(words.get(1), 168)?;
            Context::tracing(u32::try_from(size).map_err(|_| "tracing size too large")?)
        }
        _ => return Err(format!("unknown context `{value}`")),
    })
}

fn parse_map(value: &str) -> Result<MapInfo, String> {
    let w: Vec<&str> = value.split_whitespace().collect();
    let [name, ty, key, val, entries, rest @ ..] = w.as_slice() else {
        return Err(format!("map needs NAME TYPE KEY VALUE ENTRIES: `{value}`"));
    };
    let num = |s: &str| s.parse::<u32>().map_err(|_| format!("bad number `{s}`"));
    let read_only = match rest {
        [] => false,
        ["ro"] => true,
        _ => return Err(format!("unexpected map flags {rest:?}")),
    };
    Ok(MapInfo {
        name: (*name).to_string(),
        map_type: map_type(ty)?,
        key_size: num(key)?,
        value_size: num(val)?,
        max_entries: num(entries)?,
        read_only,
    })
}

fn parse_expect(value: &str) -> Result<Expect, String> {
    let (variant, pc) = value
        .split_once(" at ")
        .ok_or_else(|| format!("reject needs `VARIANT at PC`: `{value}`"))?;
    Ok(Expect::Reject {
        variant: variant.trim().to_string(),
        pc: pc.trim().parse().map_err(|_| format!("bad pc `{pc}`"))?,
    })
}

fn parse(source: &str) -> Result<RuleFile, String> {
    let mut rule = None;
    let mut context = Context::Buffer { size: 64 };
    let mut maps = Vec::new();
    let mut privileged = true;
    let mut limit = None;
    let mut expect = None;
    let mut fixme = None;
    for line in source.lines() {
        let Some(comment) = line.trim().strip_prefix('#') else {
            continue;
        };
        let comment = comment.trim();
        let (key, value) = match comment.split_once(':') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (comment, ""),
        };
        let mut set_expect = |e: Expect| {
            if expect.replace(e).is_some() {
                return Err("more than one `reject`/`accept` line".to_string());
            }
            Ok(())
        };
        match key {
            "rule" => rule = Some(value.to_string()),
            "context" => context = parse_context(value)?,
            "map" => maps.push(parse_map(value)?),
            "unprivileged" => privileged = false,
            "limit" => limit = Some(value.parse().map_err(|_| format!("bad limit `{value}`"))?),
            "reject" => set_expect(parse_expect(value)?)?,
            "accept" => set_expect(Expect::Accept)?,
            "FIXME" => fixme = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(RuleFile {
        rule: rule.ok_or("missing `# rule:` line")?,
        context,
        maps,
        privileged,
        limit,
        expect: expect.ok_or("missing `# reject:` or `# accept` line")?,
        fixme,
        source: source.to_string(),
    })
}

/// The name of an enum value's variant, from its `Debug` form.
fn variant_name(debug: &str) -> String {
    debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The instruction a structural error names, if any.
fn program_error_pc(e: &ProgramError) -> Option<usize> {
    match *e {
        ProgramError::JumpOutOfRange { pc, .. }
        | ProgramError::JumpIntoLddw { pc, .. }
        | ProgramError::WritesFramePointer { pc }
        | ProgramError::UninitRegister { pc, .. }
        | ProgramError::FallsOffEnd { pc }
        | ProgramError::Kfunc { pc, .. } => Some(pc),
        _ => None,
    }
}

/// What actually happened: the verdict in the same form as [`Expect`], plus the message.
fn run(file: &RuleFile) -> Result<(Expect, String), String> {
    let bytes = moat_isa::assemble_bytes(&file.source).map_err(|e| format!("assembly: {e}"))?;
    let program = match Program::new(&bytes) {
        Ok(p) => p,
        Err(e) => {
            let variant = format!("Program::{}", variant_name(&format!("{e:?}")));
            let pc = program_error_pc(&e).unwrap_or(usize::MAX);
            return Ok((Expect::Reject { variant, pc }, e.to_string()));
        }
    };
    let mut env = Env::new(file.context.clone());
    env.maps = file.maps.clone();
    env.privileged = file.privileged;
    if let Some(limit) = file.limit {
        env.complexity_limit = limit;
    }
    Ok(match verify(&program, &env) {
        Ok(v) => (
            Expect::Accept,
            format!(
                "accepted ({} instructions processed)",
                v.stats().insns_processed
            ),
        ),
        Err(r) => (
            Expect::Reject {
                variant: variant_name(&format!("{:?}", r.error.reason)),
                pc: r.error.pc,
            },
            r.error.to_string(),
        ),
    })
}

fn describe(e: &Expect) -> String {
    match e {
        Expect::Accept => "accept".to_string(),
        Expect::Reject { variant, pc } => format!("reject {variant} at {pc}"),
    }
}

/// Verifies one rule file; `Err` describes a mismatch. With `MOAT_RULES_VERBOSE` set, prints every
/// verdict's message.
fn check(path: &Path) -> Result<RuleFile, String> {
    let source = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let file = parse(&source)?;
    let (actual, message) = run(&file)?;
    if std::env::var_os("MOAT_RULES_VERBOSE").is_some() {
        println!("{}: {message}", path.display());
    }
    if actual != file.expect {
        return Err(format!(
            "expected {}, got {}: {message}",
            describe(&file.expect),
            describe(&actual)
        ));
    }
    Ok(file)
}

fn rule_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/rules exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "asm"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_rule_file_gets_its_expected_verdict() {
    let mut failed = Vec::new();
    let (mut rejecting, mut accepting, mut fixmes) = (0, 0, Vec::new());
    let files = rule_files();
    for path in &files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        match check(path) {
            Ok(file) => {
                match file.expect {
                    Expect::Accept => accepting += 1,
                    Expect::Reject { .. } => rejecting += 1,
                }
                if let Some(f) = file.fixme {
                    fixmes.push(format!("{name}: {f}"));
                }
                assert!(!file.rule.is_empty(), "{name}: empty rule");
            }
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    println!(
        "{} passed, {} failed ({rejecting} rejecting, {accepting} accepting)",
        files.len() - failed.len(),
        failed.len()
    );
    for f in &fixmes {
        println!("FIXME {f}");
    }
    assert!(failed.is_empty(), "mismatches:\n{}", failed.join("\n"));
    assert!(
        rejecting >= 60,
        "issue 5 asks for at least 60 unsafe programs, found {rejecting}"
    );
}

#[test]
fn headers_are_checked() {
    assert!(parse("mov %r0, 0\nexit").is_err(), "no rule line");
    assert!(parse("# rule: x\n# accept\n# accept\nexit").is_err());
    assert!(parse("# rule: x\n# context: nonsense\n# accept").is_err());
    let f = parse("# rule: x\n# map: m hash 4 8 16 ro\n# reject: OutOfBounds at 3").expect("ok");
    assert_eq!(
        f.expect,
        Expect::Reject {
            variant: "OutOfBounds".into(),
            pc: 3
        }
    );
    assert!(f.maps[0].read_only);
    assert_eq!(variant_name("OutOfBounds { region: \"x\" }"), "OutOfBounds");
}
