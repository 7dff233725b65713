//! The init process (PID 1) of the emulated guest in which `crates/moat/tests/mpk_guest.rs` runs
//! moat's tests and benchmarks on a CPU with memory protection keys: mounts the pseudo file systems
//! (not `/tmp`: the initramfs root is writable memory already, and the host's files may live there),
//! runs every line of `/guest/plan.txt` (`NAME<TAB>PROGRAM<TAB>ARGS...`), reports each exit status
//! on the console as `moat-guest: NAME exit CODE`, then powers the guest off.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

fn main() {
    if std::process::id() != 1 {
        eprintln!(
            "guest_init: not PID 1; this is the init of the mpk test guest (see mpk_guest.rs)"
        );
        std::process::exit(2);
    }
    for (what, target, fs) in [
        ("proc", "/proc", "proc"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("sysfs", "/sys", "sysfs"),
    ] {
        if let Err(e) =
            rustix::mount::mount(what, target, fs, rustix::mount::MountFlags::empty(), None)
        {
            println!("moat-guest: cannot mount {target}: {e}");
        }
    }
    let plan = std::fs::read_to_string("/guest/plan.txt").unwrap_or_default();
    for line in plan.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split('\t');
        let (Some(name), Some(program)) = (fields.next(), fields.next()) else {
            println!("moat-guest: bad plan line `{line}`");
            continue;
        };
        println!("moat-guest: running {name}");
        let status = Command::new(program)
            .args(fields)
            .env("RUST_BACKTRACE", "1")
            .env("MOAT_IN_GUEST", "1")
            .env("TMPDIR", "/tmp")
            .status();
        match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => println!("moat-guest: {name} exit {code}"),
                (None, signal) => println!("moat-guest: {name} killed by signal {signal:?}"),
            },
            Err(e) => println!("moat-guest: {name} cannot start: {e}"),
        }
    }
    println!("moat-guest: done");
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
}
