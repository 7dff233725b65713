//! The dispatcher against real signals: faults and traps reach registered handlers, which resume
//! the thread elsewhere; what they do not claim reaches the host's handlers, before and after moat's,
//! or the default action. Signal handlers are process-wide, and some of these tests end the process,
//! so each runs in a child process of its own: this test binary again, running that test only.

use moat_signal::{Disposition, Reg, Signal, SignalContext, SignalError};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

std::arch::global_asm!(
    ".text",
    ".hidden moat_signal_test_load, moat_signal_test_recover, moat_signal_test_trap",
    ".hidden moat_signal_test_after_trap, moat_signal_test_stray_trap",
    ".globl moat_signal_test_load, moat_signal_test_recover, moat_signal_test_trap",
    ".globl moat_signal_test_after_trap, moat_signal_test_stray_trap",
    // Loads [rdi]: the first instruction faults on a protected page.
    "moat_signal_test_load:",
    "mov rax, [rdi]",
    "ret",
    // Where a fault in `moat_signal_test_load` resumes: returns 0x5a5a.
    "moat_signal_test_recover:",
    "mov eax, 0x5a5a",
    "ret",
    // An int3 followed by a two-byte instruction the trap handler skips.
    "moat_signal_test_trap:",
    "xor eax, eax",
    "int3",
    "moat_signal_test_after_trap:",
    "ud2",
    "ret",
    // An int3 nobody handles.
    "moat_signal_test_stray_trap:",
    "int3",
    "ret",
);

extern "C" {
    fn moat_signal_test_load(addr: *const u64) -> u64;
    fn moat_signal_test_recover();
    fn moat_signal_test_trap() -> u64;
    fn moat_signal_test_after_trap();
    fn moat_signal_test_stray_trap();
}

/// How a child process must end.
#[derive(Debug, PartialEq)]
enum End {
    /// Its test passes.
    Passes,
    /// Killed by this signal.
    DiesOf(libc::c_int),
}

/// Runs `body` in a child process (this binary, with `name` as the only test to run) and checks
/// how the child ends.
fn check(name: &str, end: End, body: fn()) {
    if std::env::var("MOAT_SIGNAL_CHILD").as_deref() == Ok(name) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env("MOAT_SIGNAL_CHILD", name)
        .output()
        .expect("child runs");
    use std::os::unix::process::ExitStatusExt;
    let ended = match output.status.signal() {
        Some(sig) => End::DiesOf(sig),
        None if output.status.success() => End::Passes,
        None => End::DiesOf(0),
    };
    assert_eq!(
        ended,
        end,
        "{}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if end == End::Passes {
        // The child really ran this test (and not zero tests).
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("1 passed"),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

/// A fresh `PROT_NONE` page.
fn protected_page() -> *mut u64 {
    // SAFETY: an anonymous private mapping, no existing memory involved.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    page.cast()
}

/// Makes `page` readable and writable (async-signal-safe).
fn unprotect(page: u64) {
    // SAFETY: `page` is a page `protected_page` mapped.
    unsafe {
        libc::mprotect(
            page as *mut libc::c_void,
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
}

/// Makes `page` inaccessible again.
fn protect(page: *mut u64) {
    // SAFETY: `page` is a page `protected_page` mapped, holding nothing anyone refers to.
    let done = unsafe { libc::mprotect(page.cast(), 4096, libc::PROT_NONE) };
    assert_eq!(done, 0);
}

/// Installs `handler` for `sig` (with `SA_SIGINFO` if `siginfo`); returns the handler it replaced.
fn install_host_handler(sig: libc::c_int, handler: usize, siginfo: bool) -> libc::sigaction {
    // SAFETY: a zeroed `sigaction` filled in with a handler of the signature its flags say.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = if siginfo { libc::SA_SIGINFO } else { 0 };
        libc::sigemptyset(&mut sa.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, &sa, &mut old), 0);
        old
    }
}

/// The handler installed for `sig` now.
fn current_handler(sig: libc::c_int) -> usize {
    // SAFETY: queries only.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, std::ptr::null(), &mut old), 0);
        old.sa_sigaction
    }
}

/// No core file from a child that dies on purpose.
fn no_core_dump() {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: sets a resource limit of this process from a valid struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) }, 0);
}

/// Loads from `addr` with `moat_signal_test_load` (0x5a5a if `recover` resumed a fault).
fn load(addr: *const u64) -> u64 {
    // SAFETY: reads `addr`, a page of the test; a fault there is resumed by `recover` or handled by
    // a host handler that makes the page readable.
    unsafe { moat_signal_test_load(addr) }
}

/// What `recover` saw of the last fault it claimed: signal, `si_code`, address, `rdi`.
static SEEN: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Claims faults in `moat_signal_test_load` and resumes at `moat_signal_test_recover`.
fn recover(cx: &mut SignalContext<'_>) -> Disposition {
    if cx.reg(Reg::Rip) != moat_signal_test_load as *const () as u64 {
        return Disposition::NotMine;
    }
    SEEN[0].store(cx.signal().number() as u64, Ordering::SeqCst);
    SEEN[1].store(cx.code() as u64, Ordering::SeqCst);
    SEEN[2].store(cx.fault_address(), Ordering::SeqCst);
    SEEN[3].store(cx.reg(Reg::Rdi), Ordering::SeqCst);
    cx.set_reg(Reg::Rip, moat_signal_test_recover as *const () as u64);
    Disposition::Handled
}

/// Claims the int3 of `moat_signal_test_trap`: skips the `ud2` behind it and returns 42.
fn skip_trap(cx: &mut SignalContext<'_>) -> Disposition {
    let after = moat_signal_test_after_trap as *const () as u64;
    if cx.reg(Reg::Rip) != after {
        return Disposition::NotMine;
    }
    cx.set_reg(Reg::Rax, 42);
    cx.set_reg(Reg::Rip, after + 2);
    Disposition::Handled
}

fn register(signal: Signal, handler: moat_signal::Handler) {
    // SAFETY: the handlers of this file only read and write atomics and registers, and resume at
    // code written for it.
    unsafe { moat_signal::register(signal, handler) }.expect("registers");
}

/// Faults and traps host handlers saw, and the page they unprotect.
static HOST_A: AtomicUsize = AtomicUsize::new(0);
static HOST_B: AtomicUsize = AtomicUsize::new(0);
static PAGE: AtomicU64 = AtomicU64::new(0);

extern "C" fn host_a(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    HOST_A.fetch_add(1, Ordering::SeqCst);
    unprotect(PAGE.load(Ordering::SeqCst));
}

extern "C" fn host_plain(_: libc::c_int) {
    HOST_A.fetch_add(1, Ordering::SeqCst);
}

/// The handler `host_b` replaced, which it calls (a crash reporter that chains).
static B_PREVIOUS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn host_b(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    HOST_B.fetch_add(1, Ordering::SeqCst);
    // SAFETY: B_PREVIOUS is moat's dispatcher, installed with SA_SIGINFO.
    let previous = unsafe {
        std::mem::transmute::<
            usize,
            extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
        >(B_PREVIOUS.load(Ordering::SeqCst))
    };
    previous(sig, info, uctx);
}

/// `host_b` without chaining: unprotects the page.
extern "C" fn host_b_alone(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    HOST_B.fetch_add(1, Ordering::SeqCst);
    unprotect(PAGE.load(Ordering::SeqCst));
}

#[test]
fn a_registered_handler_resumes_a_fault_at_a_recovery_address() {
    check(
        "a_registered_handler_resumes_a_fault_at_a_recovery_address",
        End::Passes,
        || {
            register(Signal::Segv, recover);
            let page = protected_page();
            for _ in 0..3 {
                assert_eq!(load(page), 0x5a5a);
            }
            let seen: Vec<u64> = SEEN.iter().map(|s| s.load(Ordering::SeqCst)).collect();
            assert_eq!(
                seen,
                [
                    libc::SIGSEGV as u64,
                    2, // SEGV_ACCERR: mapped, but not readable
                    page as u64,
                    page as u64
                ]
            );
            // From another thread too.
            let page = page as usize;
            let other = std::thread::spawn(move || load(page as *const u64));
            assert_eq!(other.join().expect("joins"), 0x5a5a);
        },
    );
}

#[test]
fn a_registered_handler_skips_an_int3() {
    check("a_registered_handler_skips_an_int3", End::Passes, || {
        register(Signal::Trap, skip_trap);
        // SAFETY: the int3 is claimed by `skip_trap`, which resumes behind the ud2 with rax = 42.
        assert_eq!(unsafe { moat_signal_test_trap() }, 42);
        // SAFETY: as above.
        assert_eq!(unsafe { moat_signal_test_trap() }, 42);
    });
}

#[test]
fn a_fault_no_handler_claims_reaches_the_hosts_earlier_handler() {
    check(
        "a_fault_no_handler_claims_reaches_the_hosts_earlier_handler",
        End::Passes,
        || {
            let page = protected_page();
            PAGE.store(page as u64, Ordering::SeqCst);
            install_host_handler(libc::SIGSEGV, host_a as *const () as usize, true);
            register(Signal::Segv, recover);
            // SAFETY: the read faults once; the host's handler makes the page readable.
            assert_eq!(unsafe { std::ptr::read_volatile(page) }, 0);
            assert_eq!(HOST_A.load(Ordering::SeqCst), 1);
            // What the registered handler claims never reaches the host.
            protect(page);
            assert_eq!(load(page), 0x5a5a);
            assert_eq!(HOST_A.load(Ordering::SeqCst), 1);
        },
    );
}

#[test]
fn a_trap_no_handler_claims_reaches_the_hosts_plain_handler() {
    check(
        "a_trap_no_handler_claims_reaches_the_hosts_plain_handler",
        End::Passes,
        || {
            install_host_handler(libc::SIGTRAP, host_plain as *const () as usize, false);
            register(Signal::Trap, skip_trap);
            // SAFETY: raising a signal whose handler only counts.
            assert_eq!(unsafe { libc::raise(libc::SIGTRAP) }, 0);
            assert_eq!(HOST_A.load(Ordering::SeqCst), 1);
            // SAFETY: the int3 is claimed by `skip_trap`.
            assert_eq!(unsafe { moat_signal_test_trap() }, 42);
            assert_eq!(HOST_A.load(Ordering::SeqCst), 1);
        },
    );
}

#[test]
fn an_unclaimed_fault_kills_the_process_as_without_moat() {
    check(
        "an_unclaimed_fault_kills_the_process_as_without_moat",
        End::DiesOf(libc::SIGSEGV),
        || {
            no_core_dump();
            register(Signal::Segv, recover);
            let page = protected_page();
            assert_eq!(load(page), 0x5a5a);
            // Rust's own handler (for stack overflows) is the one before moat's: it restores the
            // default action, and the fault recurs.
            // SAFETY: a read of a protected page, to die of it.
            let value = unsafe { std::ptr::read_volatile(page) };
            eprintln!("survived with {value}");
        },
    );
}

#[test]
fn an_unclaimed_int3_kills_the_process_as_without_moat() {
    check(
        "an_unclaimed_int3_kills_the_process_as_without_moat",
        End::DiesOf(libc::SIGTRAP),
        || {
            no_core_dump();
            register(Signal::Trap, skip_trap);
            // SAFETY: an int3 nobody claims, to die of it.
            unsafe { moat_signal_test_stray_trap() };
            eprintln!("survived");
        },
    );
}

#[test]
fn ensure_installed_takes_a_replaced_dispatcher_back_and_chains_to_the_replacing_handler() {
    check(
        "ensure_installed_takes_a_replaced_dispatcher_back_and_chains_to_the_replacing_handler",
        End::Passes,
        || {
            let page = protected_page();
            PAGE.store(page as u64, Ordering::SeqCst);
            register(Signal::Segv, recover);
            let ours = current_handler(libc::SIGSEGV);
            let replaced =
                install_host_handler(libc::SIGSEGV, host_b_alone as *const () as usize, true);
            assert_eq!(replaced.sa_sigaction, ours);
            // The host's handler took the fault: moat's never saw it.
            assert_eq!(load(page), 0);
            assert_eq!(HOST_B.load(Ordering::SeqCst), 1);
            moat_signal::ensure_installed().expect("installs");
            assert_eq!(current_handler(libc::SIGSEGV), ours);
            moat_signal::ensure_installed().expect("installs");
            protect(page);
            assert_eq!(load(page), 0x5a5a);
            assert_eq!(HOST_B.load(Ordering::SeqCst), 1);
            // What moat's handlers do not claim goes to the replacing handler.
            // SAFETY: the read faults once; the host's handler makes the page readable.
            assert_eq!(unsafe { std::ptr::read_volatile(page) }, 0);
            assert_eq!(HOST_B.load(Ordering::SeqCst), 2);
        },
    );
}

#[test]
fn a_replacing_handler_that_calls_the_dispatcher_goes_on_to_the_one_before_it() {
    check(
        "a_replacing_handler_that_calls_the_dispatcher_goes_on_to_the_one_before_it",
        End::Passes,
        || {
            let page = protected_page();
            PAGE.store(page as u64, Ordering::SeqCst);
            install_host_handler(libc::SIGSEGV, host_a as *const () as usize, true);
            register(Signal::Segv, recover);
            let ours = install_host_handler(libc::SIGSEGV, host_b as *const () as usize, true);
            B_PREVIOUS.store(ours.sa_sigaction, Ordering::SeqCst);
            // Before moat takes the signal back, the host's handler chains to it.
            assert_eq!(load(page), 0x5a5a);
            assert_eq!(HOST_B.load(Ordering::SeqCst), 1);
            moat_signal::ensure_installed().expect("installs");
            assert_eq!(load(page), 0x5a5a);
            assert_eq!(HOST_B.load(Ordering::SeqCst), 1);
            // Unclaimed: moat's dispatcher, `host_b`, moat's dispatcher again, `host_a`.
            // SAFETY: the read faults once; `host_a` makes the page readable.
            assert_eq!(unsafe { std::ptr::read_volatile(page) }, 0);
            assert_eq!(HOST_B.load(Ordering::SeqCst), 2);
            assert_eq!(HOST_A.load(Ordering::SeqCst), 1);
        },
    );
}

static TIMER_CLAIMS: AtomicBool = AtomicBool::new(true);
static TIMER_SEEN: AtomicUsize = AtomicUsize::new(0);
static TIMER_CODE: AtomicI32 = AtomicI32::new(0);

fn on_timer(cx: &mut SignalContext<'_>) -> Disposition {
    TIMER_SEEN.fetch_add(1, Ordering::SeqCst);
    TIMER_CODE.store(cx.code(), Ordering::SeqCst);
    if TIMER_CLAIMS.load(Ordering::SeqCst) {
        Disposition::Handled
    } else {
        Disposition::NotMine
    }
}

#[test]
fn the_timer_signal_reaches_its_handler_and_is_ignored_unclaimed() {
    check(
        "the_timer_signal_reaches_its_handler_and_is_ignored_unclaimed",
        End::Passes,
        || {
            register(Signal::Timer, on_timer);
            let ours = current_handler(libc::SIGURG);
            // SAFETY: raising a signal moat handles.
            assert_eq!(unsafe { libc::raise(libc::SIGURG) }, 0);
            assert_eq!(TIMER_SEEN.load(Ordering::SeqCst), 1);
            assert_eq!(TIMER_CODE.load(Ordering::SeqCst), libc::SI_TKILL);
            TIMER_CLAIMS.store(false, Ordering::SeqCst);
            // SAFETY: as above; the default action ignores it.
            assert_eq!(unsafe { libc::raise(libc::SIGURG) }, 0);
            assert_eq!(TIMER_SEEN.load(Ordering::SeqCst), 2);
            assert_eq!(current_handler(libc::SIGURG), ours);
        },
    );
}

#[test]
fn a_signal_has_a_bounded_number_of_handlers() {
    check(
        "a_signal_has_a_bounded_number_of_handlers",
        End::Passes,
        || {
            for _ in 0..moat_signal::SLOTS {
                register(Signal::Bus, recover);
            }
            // SAFETY: as in `register`.
            let full = unsafe { moat_signal::register(Signal::Bus, recover) };
            assert!(
                matches!(
                    full,
                    Err(SignalError::Full {
                        signal: Signal::Bus
                    })
                ),
                "{full:?}"
            );
        },
    );
}
