//! A host that installed its own `SIGSEGV` handler before moat keeps it: faults outside generated
//! code reach it, faults inside end the run. One the host installs over moat's later gets the faults
//! outside generated code once the next compilation has put moat's back. (A binary of its own, so
//! that the host's handler is certainly installed first.)

use moat_exec::{HelperRegistry, Linked, NoMaps, RunErrorKind};
use moat_interp::Prepared;
use moat_isa::asm::assemble_bytes;
use moat_isa::Program;
use moat_jit::{CodeOptions, Confinement, JitProgram, ProvenAccesses, ProvenMemory};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

static HOST_FAULTS: AtomicUsize = AtomicUsize::new(0);
static PAGE: AtomicUsize = AtomicUsize::new(0);

extern "C" fn host_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    HOST_FAULTS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: PAGE is a page this test mapped PROT_NONE; making it readable lets the faulting
    // access succeed when the handler returns.
    unsafe {
        libc::mprotect(
            PAGE.load(Ordering::SeqCst) as *mut libc::c_void,
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
        );
    }
}

static LATE_HOST_FAULTS: AtomicUsize = AtomicUsize::new(0);

/// A handler the host installs over moat's (a crash reporter, say).
extern "C" fn late_host_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    LATE_HOST_FAULTS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: as in `host_handler`.
    unsafe {
        libc::mprotect(
            PAGE.load(Ordering::SeqCst) as *mut libc::c_void,
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
        );
    }
}

#[test]
fn the_hosts_own_sigsegv_handler_still_gets_faults_that_are_not_in_generated_code() {
    // SAFETY: an anonymous PROT_NONE page and a SA_SIGINFO handler that only counts and unprotects
    // it; the host handler is installed before moat's (the first compilation below installs it).
    unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(page, libc::MAP_FAILED);
        PAGE.store(page as usize, Ordering::SeqCst);
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = host_handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        // Tests of this binary run in threads of one process; the handler stays for the process.
        assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, &mut old), 0);
    }
    let program =
        Program::new(&assemble_bytes("lddw r2, 0x20\nldxdw r0, [r2]\nexit").expect("asm"))
            .expect("well formed");
    let registry = HelperRegistry::new();
    let linked = Arc::new(Linked::new(&program, &registry, &NoMaps).expect("links"));
    let prepared = Prepared::lower(linked.clone()).expect("lowers");
    // SAFETY: a wrong proof on purpose: the hardware must stop the access.
    let proofs = unsafe { ProvenAccesses::assume(0..program.slots(), ProvenMemory::Other, false) };
    let jit = JitProgram::new(
        linked,
        Arc::new(prepared),
        &proofs,
        &CodeOptions::new(Confinement::Unconfined),
    )
    .expect("jit");
    moat_jit::install_fault_handler();
    let err = jit.run(&mut [0u8; 8]).expect_err("faults");
    assert!(matches!(
        err.kind,
        RunErrorKind::MemoryFault { addr: 0x20, .. }
    ));
    // A fault outside generated code reaches the host's handler, which resolves it.
    let before = HOST_FAULTS.load(Ordering::SeqCst);
    // SAFETY: the page is mapped; the read faults once (PROT_NONE) and the host handler makes it
    // readable.
    let value = unsafe { std::ptr::read_volatile(PAGE.load(Ordering::SeqCst) as *const u64) };
    assert_eq!(value, 0);
    assert_eq!(HOST_FAULTS.load(Ordering::SeqCst), before + 1);

    // A handler the host installs over moat's later gets the faults outside generated code; moat's
    // is back at the next compilation, which calls `install_fault_handler`.
    // SAFETY: a SA_SIGINFO handler that only counts and unprotects the page, which is made
    // inaccessible again.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = late_host_handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut()), 0);
        let page = PAGE.load(Ordering::SeqCst) as *mut libc::c_void;
        assert_eq!(libc::mprotect(page, 4096, libc::PROT_NONE), 0);
    }
    moat_jit::install_fault_handler();
    let err = jit.run(&mut [0u8; 8]).expect_err("faults");
    assert!(matches!(
        err.kind,
        RunErrorKind::MemoryFault { addr: 0x20, .. }
    ));
    // SAFETY: as above; now the late handler makes the page readable.
    let value = unsafe { std::ptr::read_volatile(PAGE.load(Ordering::SeqCst) as *const u64) };
    assert_eq!(value, 0);
    assert_eq!(LATE_HOST_FAULTS.load(Ordering::SeqCst), 1);
    assert_eq!(HOST_FAULTS.load(Ordering::SeqCst), before + 1);
}
