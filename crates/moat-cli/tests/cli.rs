//! The `moat` command end to end: outputs, exit codes and one-line errors on malformed input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .output()
        .expect("moat runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `shared/` test data folder (the conformance suite and real-world objects; README, "Test
/// data"): `$MOAT_SHARED`, else `shared/` beside the checkout. Where it is missing, a test that
/// needs it fails with a message naming the path when `MOAT_SHARED` named it or `CI` is set, and
/// otherwise prints why it skips and gets `None`.
fn shared() -> Option<PathBuf> {
    let (dir, named) = match std::env::var_os("MOAT_SHARED") {
        Some(dir) => (PathBuf::from(dir), true),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
            false,
        ),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    let why = format!(
        "the shared test data folder {} does not exist (the conformance suite and real-world \
         objects, see README.md, \"Test data\"): {}",
        dir.display(),
        if named {
            "MOAT_SHARED points nowhere"
        } else {
            "put it beside the checkout or set MOAT_SHARED to its path"
        }
    );
    assert!(!named && std::env::var_os("CI").is_none(), "{why}");
    println!("skipped: {why}");
    None
}

/// A conformance test file, if the shared folder is there.
fn conformance(name: &str) -> Option<String> {
    shared().map(|d| {
        d.join("conformance/tests")
            .join(name)
            .to_string_lossy()
            .into_owned()
    })
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write temp file");
    path
}

/// Asserts a failed command: exit code 1 and a single `error:` line naming `what`.
fn assert_one_line_error(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(o));
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: ") && err.contains(what), "{err}");
}

#[test]
fn run_prints_r0_as_hex_on_the_last_line() {
    let Some(prime) = conformance("prime.data") else {
        return;
    };
    let o = moat(&["run", &prime]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().last(), Some("0x1"));
}

#[test]
fn run_takes_memory_from_hex_or_a_file() {
    let prog = temp_file(
        "len.s",
        b"mov %r0, %r2\nldxb %r1, [%r1]\nadd %r0, %r1\nexit\n",
    );
    let p = prog.to_str().unwrap_or_default();
    let o = moat(&["run", p, "--mem", "10 00 00"]);
    assert_eq!(stdout(&o).trim(), "0x13");
    let mem = temp_file("mem.bin", &[0xf0; 8]);
    let o = moat(&["run", p, "--mem-file", mem.to_str().unwrap_or_default()]);
    assert_eq!(stdout(&o).trim(), "0xf8");
}

#[test]
fn repeat_prints_ns_per_run_before_r0() {
    let prog = temp_file("one.s", b"mov %r0, 1\nexit\n");
    let o = moat(&["run", "--repeat", "50", prog.to_str().unwrap_or_default()]);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let ns: f64 = lines[0]
        .strip_suffix(" ns/run")
        .expect("ns/run line")
        .parse()
        .expect("float");
    assert!(ns > 0.0);
    assert_eq!(lines[1], "0x1");
    // Exactly N runs: the counter example counts 3 packets after --repeat 3, not 4.
    let o = moat(&[
        "run",
        &example("examples/c/counter.o"),
        "--mem-file",
        &example("examples/packets/tcp.bin"),
        "--dump-maps",
        "--repeat",
        "3",
    ]);
    assert!(
        stdout(&o).contains("06 00 00 00 => 03 00 00 00 00 00 00 00"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn asm_and_disasm_round_trip() {
    let Some(src) = conformance("call_local.data") else {
        return;
    };
    let out = temp_file("call_local.bin", b"");
    let o = moat(&["asm", &src, "-o", out.to_str().unwrap_or_default()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = moat(&["disasm", out.to_str().unwrap_or_default()]);
    assert!(stdout(&o).contains("call local +"), "{}", stdout(&o));
    let text = temp_file("again.s", &o.stdout);
    let again = temp_file("again.bin", b"");
    let o = moat(&[
        "asm",
        text.to_str().unwrap_or_default(),
        "-o",
        again.to_str().unwrap_or_default(),
    ]);
    assert!(o.status.success());
    assert_eq!(std::fs::read(&out).ok(), std::fs::read(&again).ok());
}

#[test]
fn malformed_input_gives_one_line_errors() {
    let truncated = temp_file("truncated.bin", &[0xb7, 0, 0, 0, 1, 0, 0, 0, 0x95, 0, 0]);
    for verb in ["run", "disasm"] {
        let o = moat(&[verb, truncated.to_str().unwrap_or_default()]);
        assert_one_line_error(&o, "instruction 1");
    }
    let unknown = temp_file("unknown.s", b"mov %r0, 1\nfrob %r0\nexit\n");
    for verb in ["run", "disasm"] {
        let o = moat(&[verb, unknown.to_str().unwrap_or_default()]);
        assert_one_line_error(&o, "line 2: unknown mnemonic `frob`");
    }
    let o = moat(&[
        "asm",
        unknown.to_str().unwrap_or_default(),
        "-o",
        "/dev/null",
    ]);
    assert_one_line_error(&o, "line 2");
    let label = temp_file("label.s", b"ja nowhere\nexit\n");
    let o = moat(&["run", label.to_str().unwrap_or_default()]);
    assert_one_line_error(&o, "line 1: unknown label `nowhere`");
    let oob = temp_file("oob.s", b"ldxdw %r0, [%r1+8]\nexit\n");
    let o = moat(&[
        "run",
        oob.to_str().unwrap_or_default(),
        "--mem",
        "00",
        "--no-verify",
    ]);
    assert_one_line_error(&o, "instruction 0: load of 8 bytes");
    let o = moat(&["run", "/nonexistent/prog.s"]);
    assert_one_line_error(&o, "cannot read /nonexistent/prog.s");
    let o = moat(&["run", label.to_str().unwrap_or_default(), "--mem", "zz"]);
    assert_one_line_error(&o, "invalid hex byte `zz`");
}

#[test]
fn every_verb_has_help() {
    for verb in [
        &["--help"][..],
        &["run", "--help"],
        &["asm", "--help"],
        &["disasm", "--help"],
    ] {
        let o = moat(verb);
        assert!(o.status.success());
        assert!(stdout(&o).contains("Usage"), "{}", stdout(&o));
    }
}

fn example(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn objects_run_with_their_maps_dumped() {
    let o = moat(&[
        "run",
        &example("examples/c/counter.o"),
        "--mem-file",
        &example("examples/packets/udp.bin"),
        "--dump-maps",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("map counters (hash, 1 entries):"), "{out}");
    assert!(
        out.contains("  11 00 00 00 => 01 00 00 00 00 00 00 00 36 00 00 00 00 00 00 00"),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("0x2"));
}

#[test]
fn objects_with_several_programs_need_a_program_name() {
    let obj = example("examples/c/tailcall.o");
    let o = moat(&[
        "run",
        &obj,
        "--mem-file",
        &example("examples/packets/udp.bin"),
    ]);
    assert_one_line_error(
        &o,
        "choose one with --program (handle_tcp, handle_udp, dispatch)",
    );
    let o = moat(&["run", &obj, "--program", "nope"]);
    assert_one_line_error(&o, "no program `nope`");
    let o = moat(&[
        "run",
        &obj,
        "--program",
        "handle_udp",
        "--mem-file",
        &example("examples/packets/udp.bin"),
    ]);
    assert_eq!(stdout(&o).lines().last(), Some("0x3"));
}

#[test]
fn trace_printk_lines_are_shown_before_r0() {
    // "n=%d\0" on the stack, then bpf_trace_printk(fmt, 5, 42).
    let src = temp_file(
        "printk.s",
        b"stw [%r10-8], 0x64253d6e\nstb [%r10-4], 0\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 6\nmov %r3, 42\ncall 6\nmov %r0, 0\nexit\n",
    );
    let o = moat(&["run", src.to_str().unwrap_or_default()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "trace: n=42\n0x0\n");
}

#[test]
fn inspect_lists_programs_maps_and_sections() {
    let o = moat(&["inspect", &example("examples/c/lpm.o")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("route") && out.contains("section xdp"),
        "{out}"
    );
    // The program's tag, as pool access lists name programs.
    let tag = out
        .split("tag ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_default();
    assert!(
        tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()),
        "{out}"
    );
    assert!(
        out.contains("routes") && out.contains("lpm_trie") && out.contains("key    8"),
        "{out}"
    );
    assert!(
        out.contains("hits") && out.contains("percpu_array"),
        "{out}"
    );
    assert!(out.contains(".BTF.ext"), "{out}");
}

/// `moat inspect` takes every real-world object apart, or refuses it with a one-line error; never a
/// crash.
#[test]
fn inspect_never_crashes_on_real_world_objects() {
    let Some(shared) = shared() else {
        return;
    };
    let dir = shared.join("objects");
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "o") {
                files.push(p);
            }
        }
    }
    // The README counts 161; the snapshot holds 159 `.o` files.
    assert!(
        files.len() >= 159,
        "objects in {}: {}",
        dir.display(),
        files.len()
    );
    let (mut ok, mut refused) = (0, Vec::new());
    for f in &files {
        let o = moat(&["inspect", f.to_str().unwrap_or_default()]);
        match o.status.code() {
            Some(0) => ok += 1,
            Some(1) => {
                assert_eq!(
                    stderr(&o).lines().count(),
                    1,
                    "{}: {}",
                    f.display(),
                    stderr(&o)
                );
                refused.push(f.clone());
            }
            other => panic!("{}: exit {other:?}: {}", f.display(), stderr(&o)),
        }
    }
    println!("inspect: {ok} objects inspected, {} refused", refused.len());
    for r in &refused {
        assert!(
            r.components().any(|c| c.as_os_str() == "invalid"),
            "refused a valid object: {}",
            r.display()
        );
    }
}

#[test]
fn verify_prints_ok_with_statistics_or_the_rejection() {
    let o = moat(&["verify", &example("examples/c/tailcall.o")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for name in ["handle_tcp", "handle_udp", "dispatch"] {
        assert!(out.contains(&format!("{name}: OK (")), "{out}");
    }
    assert!(
        out.contains("instructions processed") && out.contains("peak"),
        "{out}"
    );

    // Reading the packet without checking data_end: rejected with instruction, source and state.
    let src = temp_file(
        "unchecked.s",
        b"ldxw %r2, [%r1]\nldxb %r0, [%r2+20]\nexit\n",
    );
    let o = moat(&["verify", src.to_str().unwrap_or_default(), "--type", "xdp"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("REJECTED instruction 1 (`ldxb %r0, [%r2+20]`): invalid access to packet"),
        "{out}"
    );
    assert!(out.contains("state: r1=ctx+0 r2=pkt+0"), "{out}");
    assert_one_line_error(&o, "rejected by the verifier");

    // `run` verifies first, unless told not to; the run-time check then catches the access.
    let o = moat(&[
        "run",
        src.to_str().unwrap_or_default(),
        "--type",
        "xdp",
        "--mem",
        "00 01",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: ") && stderr(&o).contains("verifier: instruction 1"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("\n  state: r1=ctx+0"), "{}", stderr(&o));
    let o = moat(&[
        "run",
        src.to_str().unwrap_or_default(),
        "--type",
        "xdp",
        "--mem",
        "00 01",
        "--no-verify",
    ]);
    assert_one_line_error(&o, "load of 1 bytes");
}

#[test]
fn verify_names_the_c_source_line_of_a_rejection() {
    // The samples' sock_flags program reads its context as a socket (cgroup_sock).
    let Some(shared) = shared() else {
        return;
    };
    let path = shared.join("objects/new_linux/sock_flags_kern.o");
    // Typed by its section (`cgroup/sock1`): moat verifies cgroup_sock programs (verify-only).
    let o = moat(&[
        "verify",
        path.to_str().unwrap_or_default(),
        "--program",
        "bpf_prog1",
    ]);
    assert!(stdout(&o).contains("bpf_prog1: OK"), "{}", stdout(&o));
    // The verifier alone, told to take it as a buffer program, names the C line it refuses.
    let o = moat(&[
        "verify",
        "--verifier-only",
        "--type",
        "buffer",
        path.to_str().unwrap_or_default(),
        "--program",
        "bpf_prog1",
    ]);
    let out = stdout(&o);
    assert!(
        out.contains("source: ") && out.contains("sock_flags_kern.c:"),
        "{out}"
    );
}

#[test]
fn verify_log_shows_register_states() {
    let o = moat(&["verify", &example("examples/c/globals.o"), "--log"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // As the kernel's level-2 log: the opcode, the instruction in the kernel's syntax, the state
    // it leaves; `from X to Y:` where a queued branch is taken up, `N: safe` where one is pruned.
    assert!(out.contains("0: R1=ctx() R10=fp0"), "{out}");
    assert!(
        out.contains("0: (61) r2 = *(u32 *)(r1 +0)            ; R1=ctx() R2=pkt(r=0) R10=fp0"),
        "{out}"
    );
    assert!(out.contains("R3=map_value(map=.data,ks=4,vs=8)"), "{out}");
    let o = moat(&["verify", &example("examples/c/counter.o"), "--log"]);
    let out = stdout(&o);
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("from ")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.trim_end().ends_with(": safe")),
        "{out}"
    );
}

#[test]
fn pools_keep_maps_across_processes_and_report_corruption() {
    let path = temp_file("test.pool", b"");
    std::fs::remove_file(&path).ok();
    let p = path.to_str().unwrap_or_default();
    let ok = |args: &[&str]| {
        let o = moat(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    assert!(ok(&["pool", "create", p, "--size", "4M"]).contains("4194304 bytes"));
    ok(&[
        "pool",
        "create-map",
        p,
        "counters",
        "--key-size",
        "4",
        "--value-size",
        "8",
        "--max-entries",
        "16",
    ]);
    // Each command is its own process: what one writes, the next reads from the file.
    ok(&[
        "pool",
        "update",
        p,
        "counters",
        "01000000",
        "2a00000000000000",
    ]);
    ok(&[
        "pool",
        "update",
        p,
        "counters",
        "02000000",
        "0700000000000000",
    ]);
    ok(&["pool", "delete", p, "counters", "02000000"]);
    let dump = ok(&["pool", "dump", p, "counters"]);
    assert!(
        dump.contains("map counters (1 entries):\n  01 00 00 00 => 2a 00 00 00 00 00 00 00"),
        "{dump}"
    );
    assert!(ok(&["pool", "inspect", p]).contains("map counters: hash key 4 value 8 entries 1/16"));
    assert!(ok(&["pool", "verify", p]).contains(": consistent: 1 maps, 1 elements, "));
    // A damaged header is named, never silently used.
    let mut bytes = std::fs::read(&path).expect("pool");
    bytes[40] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write");
    let o = moat(&["pool", "inspect", p]);
    assert_one_line_error(&o, "header checksum at offset");
}

#[test]
fn run_with_a_pool_counts_across_processes_into_a_pinned_map() {
    let path = temp_file("run.pool", b"");
    std::fs::remove_file(&path).ok();
    let p = path.to_str().unwrap_or_default();
    let obj = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/c/pool_counter.o");
    let obj = obj.to_str().unwrap_or_default();
    let frame = "000000000000 000000000000 0800 45000024 00000000 40110000 00000000 00000000 \
                 0000000000000000 0000000000000000";
    // The first run creates the pool and the map, the second (another process, the other engine)
    // adds to it.
    for engine in ["jit", "interp"] {
        let o = moat(&[
            "run",
            obj,
            "--pool",
            p,
            "--mem",
            frame,
            "--engine",
            engine,
            "--dump-maps",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains("map pool_counts (hash in the pool, 2 entries):"),
            "{out}"
        );
        assert_eq!(out.lines().last(), Some("0x2"));
    }
    let o = moat(&["pool", "dump", p, "pool_counts"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dump = stdout(&o);
    // Key 17 (UDP) and 256 (all): 2 packets, 100 bytes.
    for key in ["11 00 00 00", "00 01 00 00"] {
        assert!(
            dump.contains(&format!(
                "{key} => 02 00 00 00 00 00 00 00 64 00 00 00 00 00 00 00"
            )),
            "{dump}"
        );
    }
    // A pool map of another shape under the same name is refused, naming the field.
    let other = temp_file("other.pool", b"");
    std::fs::remove_file(&other).ok();
    let q = other.to_str().unwrap_or_default();
    assert!(moat(&["pool", "create", q, "--size", "1M"])
        .status
        .success());
    let made = moat(&[
        "pool",
        "create-map",
        q,
        "pool_counts",
        "--key-size",
        "4",
        "--value-size",
        "8",
        "--max-entries",
        "257",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let o = moat(&["run", obj, "--pool", q, "--mem", frame]);
    assert_one_line_error(
        &o,
        "pool map `pool_counts`: the pool's map has value_size 8",
    );
}

/// The README's pool counter: `counter.o`, unchanged, counts with `__sync_fetch_and_add` into its map
/// placed in the pool (`--pool-map`); the atomics apply in place, across processes and engines.
#[test]
fn atomic_counters_run_unchanged_on_a_pool_map() {
    let path = temp_file("atomic.pool", b"");
    std::fs::remove_file(&path).ok();
    let p = path.to_str().unwrap_or_default();
    let obj = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/c/counter.o");
    let obj = obj.to_str().unwrap_or_default();
    let packet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/packets/udp.bin");
    let packet = packet.to_str().unwrap_or_default();
    for engine in ["jit", "interp"] {
        let o = moat(&[
            "run",
            obj,
            "--pool",
            p,
            "--pool-map",
            "counters",
            "--mem-file",
            packet,
            "--repeat",
            "1000",
            "--engine",
            engine,
        ]);
        assert!(o.status.success(), "{engine}: {}", stderr(&o));
        assert_eq!(stdout(&o).lines().last(), Some("0x2"));
    }
    let o = moat(&["pool", "dump", p, "counters"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Key 17 (UDP): 2 000 packets (0x7d0) of the file's length in bytes.
    let len = std::fs::metadata(packet).map(|m| m.len()).unwrap_or(0) * 2000;
    let mut want = String::from("11 00 00 00 => d0 07 00 00 00 00 00 00");
    for b in len.to_le_bytes() {
        want.push_str(&format!(" {b:02x}"));
    }
    assert!(stdout(&o).contains(&want), "{}\nwant {want}", stdout(&o));
    assert!(moat(&["pool", "verify", p]).status.success());
}

/// `--prog-array`: the dispatcher's tail call reaches the handler its source promises (TCP → the
/// TCP handler's XDP_DROP, UDP → XDP_TX); without the slots it falls through to XDP_PASS.
#[test]
fn prog_array_slots_make_the_tail_calls_happen() {
    let run = |packet: &str, slots: bool| {
        let (obj, pkt) = (
            example("examples/c/tailcall.o"),
            example(&format!("examples/{packet}")),
        );
        let mut args = vec!["run", &obj, "--program", "dispatch", "--mem-file", &pkt];
        if slots {
            args.extend([
                "--prog-array",
                "handlers:6=handle_tcp",
                "--prog-array",
                "handlers:17=handle_udp",
            ]);
        }
        let o = moat(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().last().unwrap_or_default().to_string()
    };
    assert_eq!(run("packets/tcp.bin", false), "0x2");
    assert_eq!(run("packets/tcp.bin", true), "0x1");
    assert_eq!(run("packets/udp.bin", true), "0x3");
    let bad = moat(&[
        "run",
        &example("examples/c/tailcall.o"),
        "--program",
        "dispatch",
        "--prog-array",
        "seen:1=handle_tcp",
    ]);
    assert_one_line_error(&bad, "not a prog_array");
}

/// `--map`: routes written as the trie's BTF key type; the longest prefix wins.
#[test]
fn map_entries_are_set_before_the_run() {
    let (obj, pkt) = (
        example("examples/c/lpm.o"),
        example("examples/packets/udp.bin"),
    );
    let base = ["run", obj.as_str(), "--mem-file", pkt.as_str()];
    let o = moat(&base);
    assert_eq!(stdout(&o).lines().last(), Some("0x0"), "no route yet");
    let mut args = base.to_vec();
    // 192.168.1.0/24 and 192.168.0.0/16, addresses as the packet holds them (network order).
    args.extend([
        "--map",
        "routes:{24, 0x0001a8c0}=7",
        "--map",
        "routes:{16, 0x0000a8c0}=3",
    ]);
    let o = moat(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().last(), Some("0x7"));
    let mut raw = base.to_vec();
    raw.extend(["--map", "routes:x:10000000c0a80000=x:03000000"]);
    assert_eq!(stdout(&moat(&raw)).lines().last(), Some("0x3"));
    let mut bad = base.to_vec();
    bad.extend(["--map", "routes:{24, abc}=7"]);
    assert_one_line_error(&moat(&bad), "--map routes:{24, abc}=7");
    let mut missing = base.to_vec();
    missing.extend(["--map", "nosuch:1=2"]);
    assert_one_line_error(&moat(&missing), "no map `nosuch`");
}

/// `--global`: `const volatile` configuration set before verification.
#[test]
fn globals_are_set_before_verification() {
    let obj = example("examples/c/globals.o");
    let o = moat(&[
        "run",
        &obj,
        "--mem",
        &"00".repeat(60),
        "--global",
        "multiplier=10",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plain = moat(&["run", &obj, "--mem", &"00".repeat(60)]);
    assert_ne!(stdout(&o), stdout(&plain), "the global changed the result");
    let bad = moat(&["run", &obj, "--global", "nosuch=1"]);
    assert_one_line_error(&bad, "nosuch");
}

/// `verify` loads as `run` does: a map type moat cannot create fails it, by name; `--verifier-only`
/// runs the verifier alone, as the kernel would.
#[test]
fn verify_means_the_object_loads() {
    let Some(shared) = shared() else {
        return;
    };
    let obj = shared.join("objects/linux/xdp_redirect_cpu_kern.o");
    let obj = obj.to_string_lossy().into_owned();
    let o = moat(&["verify", &obj]);
    assert_one_line_error(&o, "map `cpu_map`: unknown or unsupported map type 16");
    let o = moat(&["verify", "--verifier-only", &obj]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("xdp_redirect_cpu_prog: OK") || stdout(&o).contains(": OK"));
    // A buffer program's input size comes from its BTF without --mem-size.
    let o = moat(&["verify", &example("examples/c/request_filter.o")]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // A program needing a helper only moat trace provides is named with it.
    let o = moat(&["verify", &example("examples/c/uretprobe_latency.o")]);
    assert!(
        stdout(&o).contains("work_return: NOT LOADED")
            && stdout(&o).contains("bpf_get_func_ip")
            && stderr(&o).contains("not every program loads"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // Setup options apply to verify too.
    let o = moat(&[
        "verify",
        &example("examples/c/globals.o"),
        "--global",
        "nosuch=1",
    ]);
    assert_one_line_error(&o, "nosuch");
}

/// Errors say each thing once: asking for `mpk` where the CPU has no protection keys names the
/// reason once (on PKU hardware the run succeeds and there is nothing to check).
#[test]
fn errors_do_not_repeat_themselves() {
    let o = moat(&[
        "run",
        "--isolation",
        "mpk",
        &example("examples/c/counter.o"),
        "--mem-file",
        &example("examples/packets/tcp.bin"),
    ]);
    let err = stderr(&o);
    if o.status.success() {
        println!("skipped: this CPU has protection keys");
        return;
    }
    assert_eq!(
        err.matches("memory protection keys are unavailable")
            .count(),
        1,
        "{err}"
    );
}

/// A kprobe-style program run without its registers says what it needs; `verify` and `inspect`
/// count instructions alike (slots, as the kernel counts them: `lddw` is two).
#[test]
fn tracing_runs_need_their_registers_and_counts_agree() {
    let obj = example("examples/c/uprobe_count.o");
    let o = moat(&["run", &obj, "--program", "count_add"]);
    assert_one_line_error(&o, "this context needs 168 bytes");
    let o = moat(&[
        "run",
        &obj,
        "--program",
        "count_add",
        "--mem",
        &"00".repeat(168),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let counter = example("examples/c/counter.o");
    let inspect = stdout(&moat(&["inspect", &counter]));
    let verify = stdout(&moat(&["verify", &counter]));
    let slots = |text: &str, marker: &str| -> Option<String> {
        let at = text.find(marker)?;
        let before: String = text[..at]
            .chars()
            .rev()
            .take_while(|c| *c != ' ' && *c != '(')
            .collect();
        Some(before.chars().rev().collect())
    };
    assert_eq!(
        slots(&inspect, " insns"),
        slots(&verify, " insns,"),
        "{inspect}\n{verify}"
    );
}

/// `run --json` and `verify --json` print one JSON object with the documented fields, map values
/// decoded through BTF.
#[test]
fn run_and_verify_speak_json() {
    let parse = |o: &Output| -> serde_json::Value {
        serde_json::from_str(stdout(o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
    };
    let o = moat(&[
        "run",
        &example("examples/c/counter.o"),
        "--mem-file",
        &example("examples/packets/tcp.bin"),
        "--dump-maps",
        "--repeat",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = parse(&o);
    assert_eq!(v["r0"], 2);
    assert_eq!(v["runs"], 2);
    assert!(v["ns_per_run"].as_f64().is_some_and(|ns| ns > 0.0));
    let counters = &v["maps"][0];
    assert_eq!(counters["name"], "counters");
    assert_eq!(counters["type"], "hash");
    assert_eq!(counters["entries"][0]["key"], "06 00 00 00");
    assert_eq!(counters["entries"][0]["key_c"], "6");
    assert_eq!(
        counters["entries"][0]["value_c"],
        "{packets: 2, bytes: 144}"
    );
    // A failing run: `error`, exit code 1, still JSON.
    let o = moat(&["run", &example("examples/c/misbehave.o"), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(parse(&o)["error"].as_str().is_some_and(|e| !e.is_empty()));
    let o = moat(&[
        "verify",
        "--json",
        &example("examples/c/uretprobe_latency.o"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v = parse(&o);
    assert_eq!(v["ok"], false);
    assert_eq!(v["programs"][0]["program"], "work_entry");
    assert_eq!(v["programs"][0]["status"], "ok");
    assert!(v["programs"][0]["processed"].as_u64().is_some());
    assert_eq!(v["programs"][1]["status"], "not_loaded");
    let o = moat(&["verify", "--json", &example("examples/c/misbehave.o")]);
    let v = parse(&o);
    assert_eq!(v["programs"][0]["status"], "rejected");
    assert!(v["programs"][0]["pc"].as_u64().is_some());
}
