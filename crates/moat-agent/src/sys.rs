//! The agent's few calls into the C library: its constructor (`.init_array`), `atexit`, and
//! removing itself from the environment the process's children inherit.

use crate::agent::env;

extern "C" fn init() {
    // A panic must not unwind into the dynamic loader.
    let _ = std::panic::catch_unwind(crate::agent::start);
}

/// Runs the agent's `init` when the dynamic loader loads the library, before the program's `main`.
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

/// Runs `f` when the process exits normally (`exit`, return from `main`).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function that catches its own panics.
    unsafe { libc::atexit(f) };
}

/// Removes the agent's variables and itself from `LD_PRELOAD`, so that the process's children run
/// untraced. Called from the constructor, before `main`, while the process has one thread.
pub(crate) fn forget_environment() {
    for var in [
        env::OBJECT,
        env::PROGRAMS,
        env::OUT,
        env::INTERVAL_MS,
        env::METHOD,
        env::NO_VERIFY,
    ] {
        std::env::remove_var(var);
    }
    if let Ok(preload) = std::env::var("LD_PRELOAD") {
        let rest: Vec<&str> = preload
            .split([':', ' '])
            .filter(|p| !p.is_empty() && !p.contains("libmoat_agent"))
            .collect();
        if rest.is_empty() {
            std::env::remove_var("LD_PRELOAD");
        } else {
            std::env::set_var("LD_PRELOAD", rest.join(":"));
        }
    }
}

/// One call of the C library's `malloc` and one of `free` on what it returned (for the bundled test
/// program, which counts them).
pub fn malloc_free(size: usize) {
    // SAFETY: malloc has no preconditions; the pointer (possibly null, which free accepts) is freed
    // once and never used otherwise.
    unsafe {
        let p = libc::malloc(std::hint::black_box(size));
        libc::free(std::hint::black_box(p));
    }
}

/// The way in for `moat trace -p`: the controller calls this in the target process (through
/// `ptrace`, after `dlopen`) with the path of a file of orders. Returns 0 when the agent runs.
///
/// # Safety
/// `config` is a NUL-terminated path.
#[no_mangle]
pub unsafe extern "C" fn moat_agent_start(config: *const libc::c_char) -> i32 {
    if config.is_null() {
        return -1;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let path = unsafe { std::ffi::CStr::from_ptr(config) };
    let path = std::path::PathBuf::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path.to_bytes()),
    );
    let started = std::panic::catch_unwind(|| crate::agent::start_from_file(&path));
    if matches!(started, Ok(true)) {
        0
    } else {
        -1
    }
}

/// Detaches the probes of the object reporting to file `report` (every object when null; called
/// by `moat trace -p` at the end). Returns 0 if such an object ran.
///
/// # Safety
/// `report` is null or a NUL-terminated path.
#[no_mangle]
pub unsafe extern "C" fn moat_agent_stop(report: *const libc::c_char) -> i32 {
    let report = (!report.is_null()).then(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(report) }
            .to_string_lossy()
            .into_owned()
    });
    match std::panic::catch_unwind(|| crate::agent::stop(report.as_deref())) {
        Ok(true) => 0,
        _ => -1,
    }
}

/// Ends the process by `SIGSEGV`, as a crash would (for the bundled test program).
pub fn crash() -> ! {
    // SAFETY: raising a signal has no memory effects; SIGSEGV's default action ends the process.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    std::process::abort()
}
