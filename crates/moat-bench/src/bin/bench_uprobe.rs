//! The cost of a uprobe hit, side by side in one run: moat's rewritten probe, moat's `int3` trap
//! fallback, the Linux kernel's uprobe (the same object loaded into the kernel and attached through
//! the uprobe PMU with `perf_event_open`), and no probe, for an empty entry program and an empty
//! entry + return pair on a function called in a tight loop; a probe doing 1 000 hash-map lookups
//! and updates per hit. Prints a markdown table for BENCHMARKS.md. Then the map operations from a
//! probe with the object's maps private (the heap or the isolation domain, as before `moat trace`
//! shared them) and in shared memory (`/dev/shm` files mapped over the domain's range, as
//! `moat trace`'s agent makes them), the two loads measured in turns.
//!
//! `cargo run --release -p moat-bench --bin bench_uprobe` (as root for the kernel's columns);
//! `... --bin bench_uprobe -- --maps` for the private/shared comparison only;
//! `... -- --profile NAME [ret]` (a program of the object, or `syscall`: the empty program at
//! `getppid`'s tracepoint) hits one probe for a few seconds, for `perf record`.

use moat::{LoadedProgram, ObjectOptions, ProgType, Runtime};
use moat_attach::{Choice, Hook, Located, Target};
use moat_bench::timing::{calibrate, median_ns};
use std::hint::black_box;
use std::time::Duration;

/// The probed function.
#[no_mangle]
#[inline(never)]
pub extern "C" fn moat_bench_probed(x: u64) -> u64 {
    black_box(x).wrapping_mul(3).wrapping_add(1)
}

const BATCHES: usize = 7;

fn per_call() -> f64 {
    let mut i = 0u64;
    let mut run = || {
        i = i.wrapping_add(1);
        black_box(moat_bench_probed(black_box(i)));
    };
    let iters = calibrate(Duration::from_millis(100), &mut run);
    median_ns(iters, BATCHES, &mut run)
}

fn located() -> Located {
    let exe = std::env::current_exe().expect("own path");
    let target = Target {
        path: exe.to_string_lossy().into_owned(),
        symbol: "moat_bench_probed".into(),
        offset: 0,
    };
    moat_attach::locate(&target, std::process::id()).expect("the probed function")
}

fn moat_probe(entry: &[&LoadedProgram], ret: &[&LoadedProgram], choice: Choice) -> f64 {
    let hooks = |v: &[&LoadedProgram]| {
        v.iter()
            .map(|p| Hook {
                program: (*p).clone(),
                cookie: 0,
            })
            .collect()
    };
    let a = moat_attach::attach(&located(), hooks(entry), hooks(ret), choice).expect("attach");
    let ns = per_call();
    assert!(a.hits() > 0, "the probe fired");
    assert_eq!(a.errors(), 0, "no run failed");
    assert!(a.detach());
    ns
}

/// The kernel's side: the object's programs loaded into Linux, attached with the uprobe PMU.
#[expect(unsafe_code, reason = "getppid, malloc and free called directly")]
mod kernel {
    use moat_attach::Located;
    use std::hint::black_box;
    use std::os::fd::OwnedFd;

    /// Attaches kernel program `prog_fd` to tracepoint `id` (from tracefs); lives as long as the
    /// returned descriptor.
    pub fn attach_tracepoint(id: u64, prog_fd: i32) -> Result<OwnedFd, String> {
        moat_kernel::perf::attach_tracepoint(id, prog_fd).map_err(|e| e.to_string())
    }

    /// `getppid`, through the C library (whose wrapper is the rewritten system call site).
    pub fn getppid() -> i32 {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() }
    }

    /// One `malloc` and one `free` of what it returned.
    pub fn malloc_free(size: usize) {
        // SAFETY: the pointer (possibly null) is freed once and not used otherwise.
        unsafe { libc::free(black_box(libc::malloc(black_box(size)))) }
    }

    /// Attaches kernel program `prog_fd` to `at` in this process (a return probe if `ret`); the
    /// probe lives as long as the returned descriptor.
    pub fn attach(at: &Located, prog_fd: i32, ret: bool) -> Result<OwnedFd, String> {
        moat_kernel::perf::attach_uprobe(&at.file, at.file_offset, Some(0), prog_fd, ret)
            .map_err(|e| e.to_string())
    }
}

/// Loads program `name` of the object into the kernel (as a kprobe program, which uprobes are).
fn kernel_program(
    obj: &moat::Object,
    name: &str,
    maps: &[moat_kernel::Map],
) -> Result<moat_kernel::Program, String> {
    let spec = obj.program(name).map_err(|e| e.to_string())?;
    let insns: Vec<moat_isa::Insn> = moat_isa::decode(&spec.bytecode)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(_, i)| i)
        .collect();
    let fixed =
        moat_kernel::map_indices_to_fds(&insns, |i| maps.get(i as usize).map_or(-1, |m| m.fd()));
    moat_kernel::load_program(
        &moat_isa::encode(&fixed),
        &moat_kernel::LoadOptions::new(moat_kernel::ProgType::Kprobe),
    )
    .map_err(|e| e.to_string())
}

fn kernel_maps(obj: &moat::Object) -> Result<Vec<moat_kernel::Map>, String> {
    obj.maps
        .iter()
        .map(|m| {
            moat_kernel::create_map(m.map_type, m.key_size, m.value_size, m.max_entries, 0)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// As `kernel_probe` for one entry program, with keys 0..100 in the object's first map.
fn kernel_probe_filled(obj: &moat::Object, name: &str) -> Result<f64, String> {
    moat_kernel::available()?;
    let maps = kernel_maps(obj)?;
    let table = obj
        .maps
        .iter()
        .position(|m| m.name == "table")
        .ok_or("no map `table`")?;
    for k in 0u32..100 {
        maps[table]
            .update(&k.to_ne_bytes(), &u64::from(k).to_ne_bytes(), 0)
            .map_err(|e| e.to_string())?;
    }
    let prog = kernel_program(obj, name, &maps)?;
    let _probe = kernel::attach(&located(), prog.fd(), false)?;
    Ok(per_call())
}

fn kernel_probe(obj: &moat::Object, entry: &[&str], ret: &[&str]) -> Result<f64, String> {
    moat_kernel::available()?;
    let maps = kernel_maps(obj)?;
    let at = located();
    let mut keep = Vec::new();
    for (names, is_ret) in [(entry, false), (ret, true)] {
        for name in names {
            let prog = kernel_program(obj, name, &maps)?;
            keep.push(kernel::attach(&at, prog.fd(), is_ret)?);
            keep.push(prog_fd_holder(prog));
        }
    }
    Ok(per_call())
}

/// Keeps a kernel program alive alongside its perf event.
fn prog_fd_holder(prog: moat_kernel::Program) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsFd, BorrowedFd};
    let fd: BorrowedFd<'_> = prog.as_fd();
    let owned = fd.try_clone_to_owned().expect("dup");
    drop(prog);
    owned
}

/// Nanoseconds per `getppid()` call.
fn per_syscall() -> f64 {
    let mut run = || {
        black_box(kernel::getppid());
    };
    let iters = calibrate(Duration::from_millis(100), &mut run);
    median_ns(iters, BATCHES, &mut run)
}

/// Nanoseconds per malloc + free pair.
fn per_malloc() -> f64 {
    let mut i = 0usize;
    let mut run = || {
        i = i.wrapping_add(1);
        kernel::malloc_free(black_box(16 + (i & 255)));
    };
    let iters = calibrate(Duration::from_millis(100), &mut run);
    median_ns(iters, BATCHES, &mut run)
}

/// The tracepoint id of `event` (`syscalls/sys_enter_getppid`), mounting tracefs if needed.
fn tracepoint_id(event: &str) -> Result<u64, String> {
    let path = format!("/sys/kernel/tracing/events/{event}/id");
    if std::fs::metadata(&path).is_err() {
        let _ = std::process::Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status();
    }
    std::fs::read_to_string(&path)
        .map_err(|e| format!("{path}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{path}: {e}"))
}

fn kernel_syscall(obj: &moat::Object) -> Result<f64, String> {
    moat_kernel::available()?;
    let id = tracepoint_id("syscalls/sys_enter_getppid")?;
    let spec = obj.program("empty_tp").map_err(|e| e.to_string())?;
    let prog = moat_kernel::load_program(
        &spec.bytecode,
        &moat_kernel::LoadOptions::new(moat_kernel::ProgType::Tracepoint),
    )
    .map_err(|e| e.to_string())?;
    let _event = kernel::attach_tracepoint(id, prog.fd())?;
    Ok(per_syscall())
}

/// `prog` at `getppid`'s (110) sys_enter tracepoint, on libc's system call sites.
fn getppid_probe(prog: &LoadedProgram) -> moat_attach::SyscallAttachment {
    let hooks = moat_attach::SyscallHooks {
        enter: vec![(
            110,
            Hook {
                program: prog.clone(),
                cookie: 0,
            },
        )],
        ..Default::default()
    };
    moat_attach::attach_syscalls(hooks, &["libc.so.6"]).expect("attach")
}

fn moat_syscall(prog: &LoadedProgram) -> f64 {
    let a = getppid_probe(prog);
    assert!(!a.sites().is_empty(), "getppid's site found");
    let ns = per_syscall();
    assert!(a.hits() > 0, "the syscall probe fired");
    assert!(a.detach());
    ns
}

/// malloc/free with the malloc_free.o probes: moat's (`Some(choice)`) or the kernel's (`None`).
fn malloc_probed(choice: Option<Choice>) -> Result<f64, String> {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/c/malloc_free.o"
    ))
    .map_err(|e| e.to_string())?;
    let at = |symbol: &str| {
        moat_attach::locate(
            &Target {
                path: "libc.so.6".into(),
                symbol: symbol.into(),
                offset: 0,
            },
            std::process::id(),
        )
        .map_err(|e| e.to_string())
    };
    let (malloc, free) = (at("malloc")?, at("free")?);
    match choice {
        Some(choice) => {
            let mut rt = Runtime::new();
            moat_attach::helpers::register(&mut rt);
            let loaded = rt
                .load_object(
                    &bytes,
                    ObjectOptions {
                        prog_type: Some(ProgType::Tracing),
                    },
                )
                .map_err(|e| e.to_string())?;
            let hook = |n: &str| -> Result<Vec<Hook>, String> {
                Ok(vec![Hook {
                    program: loaded.program(n).map_err(|e| e.to_string())?.clone(),
                    cookie: 0,
                }])
            };
            let a = moat_attach::attach(&malloc, hook("on_malloc")?, vec![], choice)
                .map_err(|e| e.to_string())?;
            let b = moat_attach::attach(&free, hook("on_free")?, vec![], choice)
                .map_err(|e| e.to_string())?;
            let ns = per_malloc();
            a.detach();
            b.detach();
            Ok(ns)
        }
        None => {
            moat_kernel::available()?;
            let obj = moat::Object::parse(&bytes).map_err(|e| e.to_string())?;
            let maps = kernel_maps(&obj)?;
            let pm = kernel_program(&obj, "on_malloc", &maps)?;
            let pf = kernel_program(&obj, "on_free", &maps)?;
            let _a = kernel::attach(&malloc, pm.fd(), false)?;
            let _b = kernel::attach(&free, pf.fd(), false)?;
            Ok(per_malloc())
        }
    }
}

/// The object loaded with its maps in shared memory under `dir`, as `moat trace`'s agent loads it.
fn load_shared(rt: &Runtime, bytes: &[u8], dir: &std::path::Path) -> moat::LoadedObject {
    let mut open = rt.open_object(bytes).expect("the object parses");
    open.set_prog_type(ProgType::Tracing);
    let dir = dir.to_path_buf();
    open.set_map_memory(std::sync::Arc::new(move |index, _, inner| {
        let memory: std::sync::Arc<dyn moat::MapMemory> =
            moat::SharedMemory::new(&dir, format!("map{index}"), inner);
        Some(memory)
    }));
    open.load().expect("the object loads with shared maps")
}

/// Map operations from a probe, private maps against shared ones: each measured `ROUNDS` times in
/// turns, the median kept.
fn maps_private_vs_shared(rt: &Runtime, bytes: &[u8], private: &moat::LoadedObject) {
    const ROUNDS: usize = 3;
    let dir = std::env::temp_dir().join(format!("moat-bench-shm-{}", std::process::id()));
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::Path::new("/dev/shm").join(dir.file_name().unwrap_or_default())
    } else {
        dir
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("a directory for the shared maps");
    let shared = load_shared(rt, bytes, &dir);
    let files = std::fs::read_dir(&dir).map_or(0, |d| d.count());
    let base = per_call();
    let measure = |obj: &moat::LoadedObject| {
        let p = |n: &str| obj.program(n).expect("program").clone();
        let entry = moat_probe(&[&p("empty")], &[], Choice::Auto);
        let update = moat_probe(&[&p("hash_update_100")], &[], Choice::Auto);
        let lookup = moat_probe(&[&p("hash_lookup_100")], &[], Choice::Auto);
        let both = moat_probe(&[&p("hash_1000")], &[], Choice::Auto);
        [
            (lookup - entry) / 100.0,
            (update - entry) / 100.0,
            (both - entry) / 1000.0,
            entry - base,
        ]
    };
    let mut runs = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        runs[0].push(measure(private));
        runs[1].push(measure(&shared));
    }
    let median = |v: &[[f64; 4]], i: usize| {
        let mut x: Vec<f64> = v.iter().map(|r| r[i]).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    println!("maps in shared memory: {files} files in {}", dir.display());
    println!("| from a probe (ns) | private maps | shared maps | shared / private |");
    println!("|---|---:|---:|---:|");
    for (i, what) in [
        "one hash lookup (100 per hit)",
        "one hash update (100 per hit)",
        "one hash lookup + update (1 000 per hit, bpf_loop)",
        "the empty probe itself (over no probe)",
    ]
    .iter()
    .enumerate()
    {
        let (a, b) = (median(&runs[0], i), median(&runs[1], i));
        println!("| {what} | {a:.1} | {b:.1} | {:.2}× |", b / a.max(0.01));
    }
    drop(shared);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/c/uprobe_bench.o"
    ))
    .expect("examples/c/uprobe_bench.o");
    let mut rt = Runtime::new();
    moat_attach::helpers::register(&mut rt);
    let loaded = rt
        .load_object(
            &bytes,
            ObjectOptions {
                prog_type: Some(ProgType::Tracing),
            },
        )
        .expect("the object loads");
    let obj = loaded.object().clone();
    let prog = |n: &str| loaded.program(n).expect("program").clone();
    let (empty, empty_ret, hash) = (prog("empty"), prog("empty_ret"), prog("hash_1000"));
    if let Err(e) = kernel_probe(&obj, &["hash_1000"], &[]) {
        println!("kernel hash_1000: {e}");
    }
    println!(
        "isolation {:?}, engine {:?}",
        rt.isolation(),
        empty.engine()
    );

    if let Some(which) = std::env::args().skip_while(|a| a != "--profile").nth(1) {
        if which == "syscall" {
            // For `perf record`: the empty program at `getppid`'s sys_enter tracepoint.
            let a = getppid_probe(&empty);
            for _ in 0..20_000_000u64 {
                black_box(kernel::getppid());
            }
            println!("{} hits", a.hits());
            return;
        }
        // For `perf record`: one rewritten probe (`ret`: and a return probe), hit for a few
        // seconds.
        let hook = Hook {
            program: prog(&which),
            cookie: 0,
        };
        // `--profile NAME ret`: the same program as a return probe too.
        let ret = std::env::args().any(|a| a == "ret");
        if which == "hash_lookup_100" {
            // The lookups find their keys, as in the table's row.
            moat_probe(&[&prog("hash_update_100")], &[], Choice::Auto);
        }
        let rets = if ret { vec![hook.clone()] } else { vec![] };
        let a = moat_attach::attach(&located(), vec![hook], rets, Choice::Auto).expect("attach");
        for i in 0..20_000_000u64 {
            black_box(moat_bench_probed(black_box(i)));
        }
        println!("{} hits", a.hits());
        return;
    }
    if std::env::args().any(|a| a == "--maps") {
        maps_private_vs_shared(&rt, &bytes, &loaded);
        return;
    }
    let base = per_call();
    let row = |what: &str, ns: f64, kernel: Option<f64>| {
        let k = kernel.map_or("n/a".to_string(), |k| format!("{:.0}", k - base));
        let ratio = kernel.map_or("n/a".to_string(), |k| {
            format!("{:.1}×", (k - base) / (ns - base).max(0.1))
        });
        println!("| {what} | {:.1} | {k} | {ratio} |", ns - base);
    };
    let k_entry = kernel_probe(&obj, &["empty"], &[]);
    let k_pair = kernel_probe(&obj, &["empty"], &["empty_ret"]);
    let k_hash = kernel_probe(&obj, &["hash_1000"], &[]);
    let k_lookup = kernel_probe_filled(&obj, "hash_lookup_100");
    if let Err(e) = &k_entry {
        println!("kernel: {e}");
    }
    let rewrite_entry = moat_probe(&[&empty], &[], Choice::Auto);
    let rewrite_pair = moat_probe(&[&empty], &[&empty_ret], Choice::Auto);
    let trap_entry = moat_probe(&[&empty], &[], Choice::Trap);
    let trap_pair = moat_probe(&[&empty], &[&empty_ret], Choice::Trap);
    let hash_rewrite = moat_probe(&[&hash], &[], Choice::Auto);
    let (lookup, update) = (prog("hash_lookup_100"), prog("hash_update_100"));
    // The updates first, so that the lookups find their keys.
    let m_update = moat_probe(&[&update], &[], Choice::Auto);
    let m_lookup = moat_probe(&[&lookup], &[], Choice::Auto);
    let k_update = kernel_probe(&obj, &["hash_update_100"], &[]);
    println!("no probe: {base:.1} ns per call");
    println!("| probe (ns per hit over no probe) | moat | kernel | kernel / moat |");
    println!("|---|---:|---:|---:|");
    row(
        "uprobe, empty, rewritten",
        rewrite_entry,
        k_entry.as_ref().ok().copied(),
    );
    row(
        "uprobe, empty, int3 trap",
        trap_entry,
        k_entry.as_ref().ok().copied(),
    );
    row(
        "uprobe + uretprobe, empty, rewritten",
        rewrite_pair,
        k_pair.as_ref().ok().copied(),
    );
    row(
        "uprobe + uretprobe, empty, int3 trap",
        trap_pair,
        k_pair.as_ref().ok().copied(),
    );
    row(
        "uprobe, 1 000 hash lookups + updates",
        hash_rewrite,
        k_hash.as_ref().ok().copied(),
    );
    let per_op = |r: f64, e: f64| (r - e) / 100.0;
    let k_per = |r: &Result<f64, String>| {
        r.as_ref().ok().zip(k_entry.as_ref().ok()).map_or_else(
            || format!("n/a ({})", r.as_ref().err().cloned().unwrap_or_default()),
            |(r, e)| format!("{:.1}", per_op(*r, *e)),
        )
    };
    println!(
        "| one hash lookup from a probe (100 per hit) | {:.1} | {} | |",
        per_op(m_lookup, rewrite_entry),
        k_per(&k_lookup)
    );
    println!(
        "| one hash update from a probe (100 per hit) | {:.1} | {} | |",
        per_op(m_update, rewrite_entry),
        k_per(&k_update)
    );
    let sys_base = per_syscall();
    let k_sys = kernel_syscall(&obj);
    let m_sys = moat_syscall(&prog("empty_tp"));
    println!(
        "| sys_enter tracepoint (getppid: {sys_base:.0} ns unprobed), empty | {:.1} | {} | {} |",
        m_sys - sys_base,
        k_sys
            .as_ref()
            .map_or_else(|e| format!("n/a ({e})"), |k| format!("{:.0}", k - sys_base)),
        k_sys.as_ref().map_or("n/a".into(), |k| format!(
            "{:.1}×",
            (k - sys_base) / (m_sys - sys_base).max(0.1)
        )),
    );
    let m_base = per_malloc();
    let m_moat = malloc_probed(Some(Choice::Auto));
    let m_kernel = malloc_probed(None);
    let slow = |r: &Result<f64, String>| {
        r.as_ref().map_or_else(
            |e| format!("n/a ({e})"),
            |ns| format!("{:.2}×", ns / m_base),
        )
    };
    println!(
        "malloc + free ({m_base:.1} ns unprobed), malloc/free counters: moat {}, kernel {}",
        slow(&m_moat),
        slow(&m_kernel)
    );
    println!(
        "hash lookup + update from a probe: {:.1} ns (moat), {} (kernel)",
        (hash_rewrite - rewrite_entry) / 1000.0,
        k_hash
            .as_ref()
            .ok()
            .zip(k_entry.as_ref().ok())
            .map_or("n/a".into(), |(h, e)| format!("{:.1} ns", (h - e) / 1000.0))
    );
    maps_private_vs_shared(&rt, &bytes, &loaded);
}
