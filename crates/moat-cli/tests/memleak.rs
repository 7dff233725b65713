//! `moat memleak` checked four ways on `examples/leaky/leaky.c`, whose leak pattern is known by
//! construction (N blocks of known sizes from known call sites, freed ones beside them): moat's
//! report, the same tracer object on the kernel's uprobes (`moat memleak --kernel`, as root),
//! valgrind's `--leak-check=full` and heaptrack must all give the same outstanding bytes and
//! blocks per call site. valgrind, heaptrack and the C compiler come from
//! `scripts/memleak-deps.sh`, run here when one is missing.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::workspace;

const MOAT: &str = env!("CARGO_BIN_EXE_moat");

/// Call site → (outstanding bytes, blocks), as `leaky.c` says in its header.
fn expected() -> BTreeMap<String, (u64, u64)> {
    [
        ("leak_small", (2400, 100)),
        ("leak_calloc", (50000, 50)),
        ("leak_realloc", (60000, 20)),
        ("leak_aligned", (5120, 10)),
        ("leak_half", (1440, 20)),
    ]
    .into_iter()
    .map(|(f, v)| (f.to_string(), v))
    .collect()
}

/// The tools, installed when missing; `Err` says why they cannot be.
fn tools() -> Result<(), String> {
    support::ensure_tools(&["cc", "valgrind", "heaptrack_print"], "memleak-deps.sh")
}

/// `leaky`, built with frame pointers into a fresh directory named after `tag`.
fn leaky(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-memleak-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bin = dir.join("leaky");
    let status = Command::new("cc")
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-fno-inline", "-o"])
        .arg(&bin)
        .arg(workspace().join("examples/leaky/leaky.c"))
        .status()
        .expect("cc runs");
    assert!(status.success(), "leaky.c compiles");
    bin
}

/// `moat memleak --format json` (plus `extra`) on `bin`: outstanding per call site (the first
/// frame inside `bin`).
fn moat_sites(bin: &Path, extra: &[&str]) -> Result<BTreeMap<String, (u64, u64)>, String> {
    let out = Command::new(MOAT)
        .arg("memleak")
        .args(extra)
        .args(["--format", "json", "--top", "1000", "--"])
        .arg(bin)
        .output()
        .expect("moat runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no report in {text}"))?;
    let doc: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let mut sites = BTreeMap::new();
    for stack in doc["stacks"].as_array().into_iter().flatten() {
        let site = stack["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["object"].as_str() == bin.to_str())
            .and_then(|f| f["function"].as_str());
        let Some(site) = site else { continue };
        let e: &mut (u64, u64) = sites.entry(site.to_string()).or_default();
        e.0 += stack["bytes"].as_u64().unwrap_or(0);
        e.1 += stack["allocations"].as_u64().unwrap_or(0);
    }
    sites.retain(|s, _| s != "main");
    Ok(sites)
}

/// valgrind's loss records per call site: the first frame that is not valgrind's own.
fn valgrind_sites(bin: &Path) -> BTreeMap<String, (u64, u64)> {
    let out = Command::new("valgrind")
        .args(["--leak-check=full", "--show-leak-kinds=all"])
        .arg(bin)
        .output()
        .expect("valgrind runs");
    let text = String::from_utf8_lossy(&out.stderr);
    let mut sites = BTreeMap::new();
    let mut pending: Option<(u64, u64)> = None;
    for line in text.lines() {
        let body = line.split_once("== ").map_or(line, |(_, b)| b).trim();
        if let Some(rest) = body.split_once(" bytes in ") {
            if body.contains("loss record") {
                let bytes = rest.0.replace(',', "").parse().unwrap_or(0);
                let blocks = rest
                    .1
                    .split_whitespace()
                    .next()
                    .unwrap_or("0")
                    .replace(',', "")
                    .parse()
                    .unwrap_or(0);
                pending = Some((bytes, blocks));
                continue;
            }
        }
        if let (Some((bytes, blocks)), Some(frame)) = (pending, body.strip_prefix("by 0x")) {
            if frame.contains("vgpreload") {
                continue;
            }
            let func = frame
                .split_once(": ")
                .map(|(_, f)| f.split_whitespace().next().unwrap_or(""))
                .unwrap_or("");
            let e: &mut (u64, u64) = sites.entry(func.to_string()).or_default();
            e.0 += bytes;
            e.1 += blocks;
            pending = None;
        }
    }
    sites
}

/// heaptrack's leaks per call site (`heaptrack_print --print-leaks`: "60.00K leaked over 20
/// calls from" then the function; sizes in 1000s with two decimals, exact for these sizes).
fn heaptrack_sites(bin: &Path) -> BTreeMap<String, (u64, u64)> {
    let data = bin.with_file_name("heaptrack.leaky");
    let status = Command::new("heaptrack")
        .arg("-o")
        .arg(&data)
        .arg(bin)
        .output()
        .expect("heaptrack runs");
    assert!(status.status.success(), "heaptrack: {status:?}");
    let file = ["zst", "gz"]
        .iter()
        .map(|ext| data.with_extension(format!("leaky.{ext}")))
        .find(|p| p.exists())
        .expect("heaptrack wrote its data");
    let out = Command::new("heaptrack_print")
        .arg("-f")
        .arg(&file)
        .args([
            "--print-leaks",
            "1",
            "--print-peaks",
            "0",
            "--print-allocators",
            "0",
            "--print-temporary",
            "0",
        ])
        .output()
        .expect("heaptrack_print runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let leaks = text.split("MEMORY LEAKS").nth(1).unwrap_or("");
    let size = |s: &str| -> u64 {
        let (num, mult) = match s.chars().last() {
            Some('K') => (&s[..s.len() - 1], 1e3),
            Some('M') => (&s[..s.len() - 1], 1e6),
            Some('B') => (&s[..s.len() - 1], 1.0),
            _ => (s, 1.0),
        };
        (num.parse::<f64>().unwrap_or(0.0) * mult).round() as u64
    };
    let mut sites = BTreeMap::new();
    let mut lines = leaks.lines();
    while let Some(line) = lines.next() {
        // The merged entry: "X leaked over N calls from" at the line's start, then the function.
        let Some((amount, rest)) = line.split_once(" leaked over ") else {
            continue;
        };
        if line.starts_with(' ') || !rest.ends_with("calls from") {
            continue;
        }
        let calls = rest
            .split_whitespace()
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let func = lines.next().unwrap_or("").trim().to_string();
        let e: &mut (u64, u64) = sites.entry(func).or_default();
        e.0 += size(amount);
        e.1 += calls;
    }
    sites
}

fn only_sites(
    mut sites: BTreeMap<String, (u64, u64)>,
    keep: &BTreeMap<String, (u64, u64)>,
) -> BTreeMap<String, (u64, u64)> {
    sites.retain(|s, v| keep.contains_key(s) || (s == "churn" && v.0 > 0));
    sites
}

#[test]
fn memleak_agrees_with_kernel_valgrind_and_heaptrack() {
    if let Err(why) = tools() {
        println!("skipped: {why}");
        return;
    }
    let bin = leaky("agree");
    let want = expected();

    let moat = moat_sites(&bin, &[]).expect("moat memleak runs");
    assert_eq!(only_sites(moat.clone(), &want), want, "moat: {moat:?}");
    assert!(
        !moat.contains_key("churn"),
        "freed blocks are not outstanding: {moat:?}"
    );

    match moat_kernel::available() {
        Ok(()) => {
            let kernel = moat_sites(&bin, &["--kernel"]).expect("moat memleak --kernel runs");
            assert_eq!(
                only_sites(kernel.clone(), &want),
                want,
                "kernel: {kernel:?}"
            );
            assert_eq!(
                kernel, moat,
                "the kernel's report and moat's agree site by site"
            );
        }
        Err(why) => println!("kernel comparison skipped: {why}"),
    }

    let valgrind = valgrind_sites(&bin);
    assert_eq!(
        only_sites(valgrind.clone(), &want),
        want,
        "valgrind: {valgrind:?}"
    );
    // heaptrack counts the calls of a site (leak_half's 40), not its outstanding blocks (20):
    // bytes are compared.
    let bytes = |m: BTreeMap<String, (u64, u64)>| -> BTreeMap<String, u64> {
        m.into_iter().map(|(s, (b, _))| (s, b)).collect()
    };
    let heaptrack = heaptrack_sites(&bin);
    assert_eq!(
        bytes(only_sites(heaptrack.clone(), &want)),
        bytes(want.clone()),
        "heaptrack: {heaptrack:?}"
    );
    let _ = std::fs::remove_dir_all(bin.parent().expect("dir"));
}

#[test]
fn memleak_attaches_to_a_running_process() {
    if let Err(why) = tools() {
        println!("skipped: {why}");
        return;
    }
    let bin = leaky("running");
    let mut child = Command::new(&bin)
        .arg("--wait")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("leaky starts");
    use std::io::BufRead;
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("ready");
    assert_eq!(line.trim(), "ready");
    let pid = child.id().to_string();
    let moat = Command::new(MOAT)
        .args(["memleak", "--format", "json", "--top", "1000", "-p", &pid])
        .args(["--duration", "4"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("moat runs");
    // Let the agent attach, then let leaky allocate.
    std::thread::sleep(std::time::Duration::from_millis(2000));
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill runs")
    };
    signal("-USR1");
    line.clear();
    stdout.read_line(&mut line).expect("done");
    assert_eq!(line.trim(), "done");
    let out = moat.wait_with_output().expect("moat ends");
    signal("-TERM");
    let _ = child.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(
        text.lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("a report"),
    )
    .expect("json");
    let mut sites = BTreeMap::new();
    for stack in doc["stacks"].as_array().into_iter().flatten() {
        if let Some(f) = stack["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["object"].as_str() == bin.to_str())
            .and_then(|f| f["function"].as_str())
        {
            let e: &mut (u64, u64) = sites.entry(f.to_string()).or_default();
            e.0 += stack["bytes"].as_u64().unwrap_or(0);
            e.1 += stack["allocations"].as_u64().unwrap_or(0);
        }
    }
    assert_eq!(only_sites(sites, &expected()), expected());
    let _ = std::fs::remove_dir_all(bin.parent().expect("dir"));
}

#[test]
fn min_size_leaves_small_allocations_out() {
    if let Err(why) = tools() {
        println!("skipped: {why}");
        return;
    }
    let bin = leaky("min-size");
    // calloc(10, 100) is 1 000 bytes; realloc's 3 000; the others are smaller.
    let want: BTreeMap<String, (u64, u64)> = expected()
        .into_iter()
        .filter(|(site, _)| site == "leak_calloc" || site == "leak_realloc")
        .collect();
    let moat = moat_sites(&bin, &["--min-size", "1000"]).expect("moat memleak runs");
    assert_eq!(moat, want, "moat: {moat:?}");
    if moat_kernel::available().is_ok() {
        let kernel = moat_sites(&bin, &["--kernel", "--min-size", "1000"]).expect("kernel runs");
        assert_eq!(kernel, want, "kernel: {kernel:?}");
    }
    // A global that does not exist is an error naming it, and the command still runs.
    let out = Command::new(MOAT)
        .args(["trace", "--global", "no_such=1"])
        .arg(workspace().join("examples/c/malloc_free.o"))
        .args(["--", "/bin/true"])
        .output()
        .expect("moat runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no_such"), "{text}");
    assert_eq!(out.status.code(), Some(0));
    let _ = std::fs::remove_dir_all(bin.parent().expect("dir"));
}
