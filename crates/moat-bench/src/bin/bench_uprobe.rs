//! The cost of a uprobe hit, side by side in one run: moat's rewritten probe, moat's `int3` trap
//! fallback, the Linux kernel's uprobe (the same object loaded into the kernel and attached through
//! the uprobe PMU with `perf_event_open`), and no probe, for an empty entry program and an empty
//! entry + return pair on a function called in a tight loop; a probe doing 1 000 hash-map lookups
//! and updates per hit. Prints a markdown table for BENCHMARKS.md.
//!
//! `cargo run --release -p moat-bench --bin bench_uprobe` (as root for the kernel's columns).

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
#[expect(unsafe_code, reason = "perf_event_open and its ioctls")]
mod kernel {
    use moat_attach::Located;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// `PERF_EVENT_IOC_SET_BPF`, `PERF_EVENT_IOC_ENABLE`.
    const SET_BPF: libc::c_ulong = 0x4004_2408;
    const ENABLE: libc::c_ulong = 0x2400;

    /// The uprobe PMU's type number.
    fn pmu() -> Option<u32> {
        std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Attaches kernel program `prog_fd` to `at` (a return probe if `ret`); the probe lives as long
    /// as the returned descriptor.
    pub fn attach(at: &Located, prog_fd: i32, ret: bool) -> Result<OwnedFd, String> {
        let pmu = pmu().ok_or("no uprobe PMU")?;
        let path = std::ffi::CString::new(at.file.to_string_lossy().as_bytes())
            .map_err(|e| e.to_string())?;
        // struct perf_event_attr: type, size, config, ..., config1 (path), config2 (offset).
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&pmu.to_ne_bytes());
        attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
        attr[8..16].copy_from_slice(&u64::from(ret).to_ne_bytes());
        attr[56..64].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
        attr[64..72].copy_from_slice(&at.file_offset.to_ne_bytes());
        // SAFETY: `attr` is a complete perf_event_attr of the size it states; `path` outlives the
        // call; the kernel copies both.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                attr.as_ptr(),
                0,
                -1,
                -1,
                libc::c_ulong::from(8u8), // PERF_FLAG_FD_CLOEXEC
            )
        };
        if fd < 0 {
            return Err(format!(
                "perf_event_open: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the kernel returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        for (req, arg) in [(SET_BPF, prog_fd as libc::c_ulong), (ENABLE, 0)] {
            // SAFETY: both ioctls take an integer argument.
            if unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) } != 0 {
                return Err(format!("ioctl: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(fd)
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
    println!(
        "isolation {:?}, engine {:?}",
        rt.isolation(),
        empty.engine()
    );

    if std::env::args().any(|a| a == "--profile") {
        // For `perf record`: the rewritten empty probe, hit for a few seconds.
        let hook = Hook {
            program: empty.clone(),
            cookie: 0,
        };
        let a = moat_attach::attach(&located(), vec![hook], vec![], Choice::Auto).expect("attach");
        for i in 0..20_000_000u64 {
            black_box(moat_bench_probed(black_box(i)));
        }
        println!("{} hits", a.hits());
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
    if let Err(e) = &k_entry {
        println!("kernel: {e}");
    }
    let rewrite_entry = moat_probe(&[&empty], &[], Choice::Auto);
    let rewrite_pair = moat_probe(&[&empty], &[&empty_ret], Choice::Auto);
    let trap_entry = moat_probe(&[&empty], &[], Choice::Trap);
    let trap_pair = moat_probe(&[&empty], &[&empty_ret], Choice::Trap);
    let hash_rewrite = moat_probe(&[&hash], &[], Choice::Auto);
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
    println!(
        "hash lookup + update from a probe: {:.1} ns (moat), {} (kernel)",
        (hash_rewrite - rewrite_entry) / 1000.0,
        k_hash
            .as_ref()
            .ok()
            .zip(k_entry.as_ref().ok())
            .map_or("n/a".into(), |(h, e)| format!("{:.1} ns", (h - e) / 1000.0))
    );
}
