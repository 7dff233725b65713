//! A [`LoadedProgram`] and its runs: the checks around every run (disabled programs, inputs shorter
//! than verified, violation counting) and the way into the program's protection domain.

use crate::context::{self, ContextError};
use crate::load::Exec;
use crate::maphelpers::MapTable;
use crate::{Engine, Error, ProgType};
use moat_exec::{HelperError, RunError, RunErrorKind};
use moat_isa::Program;
use moat_isolate::{Domain, Isolation};
use moat_maps::Map;
use moat_verify::VerifiedProgram;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Violations after which a program is disabled by default ([`Runtime::set_violation_limit`]).
pub const DEFAULT_VIOLATION_LIMIT: u32 = 3;

/// Whether a run error is an isolation violation: an access outside the program's memory, a bad
/// atomic, a call to something that is not the program's, or a helper argument refused by the audit
/// (a pointer outside the program's memory, a handle or value not the program's).
pub fn is_violation(e: &RunError) -> bool {
    match &e.kind {
        RunErrorKind::OutOfBounds { .. }
        | RunErrorKind::BadAtomic { .. }
        | RunErrorKind::BadCallTarget { .. }
        | RunErrorKind::MemoryFault { .. } => true,
        RunErrorKind::Helper { source, .. } => match source {
            HelperError::OutOfBounds { .. } | HelperError::BadArgument { .. } => true,
            HelperError::Callback(inner) => is_violation(inner),
            _ => false,
        },
        _ => false,
    }
}

/// The part of a JIT program's code a native instruction belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JitPart {
    /// The entry trampoline, before the program's first instruction.
    Entry,
    /// The code of the eBPF instruction at this slot (as in [`Program::insns`]).
    Insn(usize),
    /// The cold stubs (failed checks, budget exhaustion) and shared error routines.
    Stubs,
}

/// A loop of a JIT-compiled program and what raising made of it ([`LoadedProgram::jit_loops`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitLoop {
    /// Slot of the loop's header, where the raised operation is called.
    pub header: usize,
    /// Slot of its latch (the back-edge).
    pub latch: usize,
    /// The operation it was raised into, with operands and each exit's live-out values.
    pub raised: Option<String>,
    /// Why it was not raised.
    pub reason: Option<String>,
    /// The whole report: the above and the synthesis counts (candidates enumerated, pruned per
    /// stage) and time.
    pub report: String,
}

/// One native instruction of a JIT-compiled program ([`LoadedProgram::jit_code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitInsn {
    /// Where it belongs.
    pub part: JitPart,
    /// Its offset from the start of the program's code.
    pub offset: u32,
    /// Its encoding.
    pub bytes: Vec<u8>,
    /// Intel syntax; branch targets inside the code as `pc N` (the code of the eBPF instruction at
    /// slot N), `pc N+0xK`, `stub(pc N)` (the cold stub that code branches to) or `@0xOFF` (an
    /// offset into the code), not host addresses.
    pub text: String,
    /// For the first instruction of a cold stub: the slot whose code branches to it.
    pub stub_for: Option<usize>,
}

/// A loaded, structurally checked program, ready to run.
#[derive(Debug, Clone)]
pub struct LoadedProgram {
    pub(crate) program: Program,
    pub(crate) exec: Exec,
    pub(crate) prog_type: ProgType,
    pub(crate) maps: Arc<MapTable>,
    pub(crate) id: u32,
    pub(crate) verified: Option<VerifiedProgram>,
    /// For buffer programs: the input size they were verified for.
    pub(crate) verified_size: Option<u64>,
    /// The protection domain (`None` without isolation).
    pub(crate) domain: Option<Domain>,
    /// Whether runs must reach host memory too (packet contexts in the low-memory buffer, maps
    /// outside the domain): under `mpk` PKRU then allows key 0 as well as the domain's key.
    pub(crate) needs_host: bool,
    /// Name, violation count and time budget, shared by clones.
    pub(crate) guard: Arc<Guard>,
}

/// A time budget for every run of JIT-compiled programs, and the watchdog thread that enforces
/// it (one per runtime, shared by its clones and programs).
#[derive(Debug, Clone)]
pub(crate) struct TimeBudget {
    pub(crate) budget: Duration,
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    pub(crate) watchdog: Arc<moat_jit::Watchdog>,
}

/// What disables a program after too many violations.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The program's name (its function in an object, else `#id`), for errors.
    pub(crate) name: String,
    pub(crate) violations: AtomicU32,
    /// Runs stopped for overrunning their time budget (also counted as violations).
    pub(crate) overruns: AtomicU32,
    pub(crate) limit: u32,
    /// How long one run may take, and the watchdog that stops it (JIT programs only).
    pub(crate) time_budget: Option<TimeBudget>,
}

impl Guard {
    /// A fresh guard with the same limit, for program `name`.
    pub(crate) fn renamed(&self, name: &str) -> Guard {
        Guard {
            name: name.to_string(),
            violations: AtomicU32::new(self.violations.load(Ordering::Relaxed)),
            overruns: AtomicU32::new(self.overruns.load(Ordering::Relaxed)),
            limit: self.limit,
            time_budget: self.time_budget.clone(),
        }
    }
}

impl LoadedProgram {
    /// Runs the program on `input` and returns `r0`. For the buffer type `r1` = the input's address
    /// and `r2` = its length; packet types get their kernel context over the input as the packet,
    /// which is copied back after the run. A buffer program verified for an `N`-byte input refuses
    /// shorter inputs.
    ///
    /// A run that ends with an isolation violation ([`is_violation`]) is counted; once the runtime's
    /// violation limit is reached, runs fail with [`Error::Disabled`]. A JIT run that outlives the
    /// runtime's time budget ([`crate::Runtime::set_time_budget`]) is stopped with
    /// [`Error::TimeBudget`] and counted the same way.
    pub fn run(&self, input: &mut [u8]) -> Result<u64, Error> {
        self.run_guarded(input.len(), || Ok((self.run_isolated(input)?, ())))
            .map(|(r0, ())| r0)
    }

    /// Runs a buffer or tracing program on a `len`-byte context that `fill` writes straight into
    /// the program's domain (its context area), with no copy in or out: for hosts that produce
    /// their input in place. `fill` receives the area's first `len` bytes (contents unspecified: it
    /// must write what the program reads); `inspect` sees them after the run. Returns `r0` and what
    /// `inspect` returned. Contexts larger than the area, packet programs and programs without a
    /// domain run on a copy, as [`LoadedProgram::run`] does.
    pub fn run_placed<R>(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
        inspect: impl FnOnce(&[u8]) -> R,
    ) -> Result<(u64, R), Error> {
        let placed = matches!(self.prog_type, ProgType::Buffer | ProgType::Tracing);
        // Fills the context, runs on it and inspects it.
        let go = |buf: &mut [u8]| {
            fill(buf);
            let result = match &self.domain {
                Some(domain) if placed => {
                    let lease = self.lease(domain).map_err(Box::new)?;
                    let in_domain = domain.contains(buf.as_ptr() as u64, len as u64);
                    self.run_in_domain(domain, lease.as_ref(), buf, None, in_domain)
                        .map_err(boxed_context)?
                }
                _ => self.run_isolated(buf)?,
            };
            Ok((result, inspect(buf)))
        };
        // On a copy where the domain's context area cannot serve: no domain, a packet program, or
        // the area is too small or busy.
        self.run_guarded(len, || match &self.domain {
            Some(domain) if placed => domain
                .with_context_area(len, go)
                .unwrap_or_else(|go| go(&mut vec![0u8; len])),
            _ => go(&mut vec![0u8; len]),
        })
    }

    /// Runs a buffer or tracing program on `ctx` where it lies, without copying it into the
    /// program's domain: for hosts that build a small context per run in their own memory (the
    /// probes of `moat-attach`). Under `sfi` and without isolation the engines check every access
    /// against `ctx`'s region as for any context; under `mpk`, whose confined code cannot reach
    /// host memory, and for packet programs, this is [`LoadedProgram::run`]. The program may
    /// write `ctx` (where its verifier rules allow).
    pub fn run_in_place(&self, ctx: &mut [u8]) -> Result<u64, Error> {
        let mpk = self
            .domain
            .as_ref()
            .is_some_and(|d| d.isolation() == Isolation::Mpk);
        if mpk || !matches!(self.prog_type, ProgType::Buffer | ProgType::Tracing) {
            return self.run(ctx);
        }
        let len = ctx.len();
        self.run_guarded(len, || {
            // A pool transaction the program opened and did not commit is rolled back when the
            // run ends.
            let _run = crate::pooled::RunScope::enter();
            Ok((context::run_buffer(&self.exec, ctx), ()))
        })
        .map(|(r0, ())| r0)
    }

    /// The checks around every run: a disabled program does not run, a buffer program verified for
    /// a size refuses shorter inputs, the time budget is enforced, and violations and overruns are
    /// counted.
    fn run_guarded<T>(
        &self,
        len: usize,
        run: impl FnOnce() -> Result<(Result<u64, Box<RunError>>, T), Box<Error>>,
    ) -> Result<(u64, T), Error> {
        let seen = self.guard.violations.load(Ordering::Relaxed);
        if self.guard.limit > 0 && seen >= self.guard.limit {
            return Err(Error::Disabled {
                program: self.guard.name.clone(),
                violations: seen,
            });
        }
        // The tracing context the verifier allowed reads of: the whole of it must be there.
        let regs = u64::from(crate::verifying::PT_REGS_SIZE);
        if self.prog_type == ProgType::Tracing && (len as u64) < regs {
            return Err(Error::Context(ContextError::ContextTooSmall {
                len,
                needed: regs,
            }));
        }
        if let (ProgType::Buffer, Some(size)) = (self.prog_type, self.verified_size) {
            if (len as u64) < size {
                return Err(Error::Context(ContextError::InputTooSmall {
                    len,
                    verified: size,
                }));
            }
        }
        let (fired, outcome) = self.timed(run);
        let (result, extra) = outcome.map_err(|e| *e)?;
        if let Err(e) = &result {
            if is_violation(e) {
                self.guard.violations.fetch_add(1, Ordering::Relaxed);
            }
            // Interrupted by the watchdog rather than by the host's own interrupter.
            if let (true, RunErrorKind::Interrupted, Some(t)) =
                (fired, &e.kind, &self.guard.time_budget)
            {
                self.guard.overruns.fetch_add(1, Ordering::Relaxed);
                self.guard.violations.fetch_add(1, Ordering::Relaxed);
                return Err(Error::TimeBudget {
                    program: self.guard.name.clone(),
                    budget: t.budget,
                    pc: e.pc,
                });
            }
        }
        Ok((result.map_err(|e| Error::from(*e))?, extra))
    }

    /// `run` under the time budget, if there is one: the watchdog armed for its length. Returns
    /// whether the watchdog fired, and what `run` returned.
    fn timed<R>(&self, run: impl FnOnce() -> R) -> (bool, R) {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if let Some(t) = &self.guard.time_budget {
            let armed = t.watchdog.arm(t.budget);
            let outcome = run();
            return (armed.disarm(), outcome);
        }
        (false, run())
    }

    /// Under `mpk`, a hardware key for the domain for the length of a run.
    fn lease(&self, domain: &Domain) -> Result<Option<moat_isolate::mpk::KeyLease>, Error> {
        Ok(match domain.isolation() {
            Isolation::Mpk => Some(domain.activate()?),
            _ => None,
        })
    }

    /// Runs in the program's domain: buffer and tracing inputs are copied into its context area,
    /// packet contexts are built in its low area.
    fn run_isolated(&self, input: &mut [u8]) -> Result<Result<u64, Box<RunError>>, Box<Error>> {
        let Some(domain) = &self.domain else {
            return context::run(&self.exec, self.prog_type, input).map_err(boxed_context);
        };
        let lease = self.lease(domain).map_err(Box::new)?;
        let lease = lease.as_ref();
        if matches!(self.prog_type, ProgType::Buffer | ProgType::Tracing) {
            if let Some(result) = domain.with_context(input, |ctx| {
                self.run_in_domain(domain, lease, ctx, None, true)
            }) {
                return result.map_err(boxed_context);
            }
        } else if let Some(result) =
            domain.with_low_area(|low| self.run_in_domain(domain, lease, input, Some(low), true))
        {
            return result.map_err(boxed_context);
        }
        self.run_in_domain(domain, lease, input, None, false)
            .map_err(boxed_context)
    }

    /// One run in `domain` on `ctx` (packet contexts built in `low` when given); `in_domain` says
    /// whether the context lies in the domain. Under `mpk` JIT code runs confined to the domain's
    /// run area with PKRU allowing the leased key only (plus key 0 when the run needs host memory),
    /// the interpreter with that key and key 0.
    fn run_in_domain(
        &self,
        domain: &Domain,
        lease: Option<&moat_isolate::mpk::KeyLease>,
        ctx: &mut [u8],
        low: Option<&mut [u8]>,
        in_domain: bool,
    ) -> context::Ran {
        let Some(lease) = lease else {
            return context::run_in(&self.exec, self.prog_type, ctx, low);
        };
        let with_host = self.needs_host || !in_domain;
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if let Exec::Jit(jit) = &self.exec {
            if jit.is_confined() {
                let mut low = low;
                let mut ctx = Some(ctx);
                let confined = domain.with_run_area(|area| {
                    moat_jit::confine(area, lease.pkru(with_host), || {
                        let ctx = ctx.take().unwrap_or_default();
                        context::run_in(&self.exec, self.prog_type, ctx, low.take())
                    })
                });
                if let Some(result) = confined {
                    return result;
                }
                // The run area is in use by this thread (a run nested in a run of the same
                // domain): run on host memory, with the host's key too.
                let _pkru = lease.enter(lease.pkru(true));
                return context::run_in(&self.exec, self.prog_type, ctx.unwrap_or_default(), low);
            }
        }
        let _pkru = lease.enter(lease.pkru(true));
        context::run_in(&self.exec, self.prog_type, ctx, low)
    }

    /// The program's name: its function in an object, `#id` otherwise.
    pub fn name(&self) -> &str {
        &self.guard.name
    }

    /// The program's protection domain (`None` when loaded without isolation).
    pub fn domain(&self) -> Option<&Domain> {
        self.domain.as_ref()
    }

    /// Isolation violations counted so far (time-budget overruns included).
    pub fn violations(&self) -> u32 {
        self.guard.violations.load(Ordering::Relaxed)
    }

    /// Runs stopped so far for overrunning the time budget.
    pub fn overruns(&self) -> u32 {
        self.guard.overruns.load(Ordering::Relaxed)
    }

    /// The time budget of each run, if the program runs under one (JIT programs of a runtime with
    /// [`crate::Runtime::set_time_budget`]).
    pub fn time_budget(&self) -> Option<Duration> {
        self.guard.time_budget.as_ref().map(|t| t.budget)
    }

    /// The engine the program runs with.
    pub fn engine(&self) -> Engine {
        match self.exec {
            Exec::Interp(_) => Engine::Interp,
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Exec::Jit(_) => Engine::Jit,
        }
    }

    /// The JIT's machine code for the program, disassembled (`None` for the interpreter).
    pub fn jit_disassembly(&self) -> Option<String> {
        match &self.exec {
            Exec::Interp(_) => None,
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Exec::Jit(p) => Some(p.disassemble()),
        }
    }

    /// The JIT's machine code for the program, decoded (`None` for the interpreter): each native
    /// instruction with the part of the code it belongs to, its offset, bytes and Intel-syntax text,
    /// whose branch targets inside the code are labels (`pc 7`, `pc 7+0x1c`, `stub(pc 7)`,
    /// `@0x4a0`).
    pub fn jit_code(&self) -> Option<Vec<JitInsn>> {
        match &self.exec {
            Exec::Interp(_) => None,
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Exec::Jit(p) => Some(
                p.native_code()
                    .into_iter()
                    .map(|n| JitInsn {
                        part: match n.part {
                            moat_jit::CodePart::Entry => JitPart::Entry,
                            moat_jit::CodePart::Slot(slot) => JitPart::Insn(slot),
                            moat_jit::CodePart::Stubs => JitPart::Stubs,
                        },
                        offset: n.offset,
                        bytes: n.bytes,
                        text: n.text,
                        stub_for: n.stub_for,
                    })
                    .collect(),
            ),
        }
    }

    /// The loops of a JIT-compiled program and what raising made of each (`None` for the
    /// interpreter; empty when raising was off or the program not verified).
    pub fn jit_loops(&self) -> Option<Vec<JitLoop>> {
        match &self.exec {
            Exec::Interp(_) => None,
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Exec::Jit(p) => Some(
                p.loop_reports()
                    .iter()
                    .map(|r| JitLoop {
                        header: r.header,
                        latch: r.latch,
                        raised: r.raised.clone(),
                        reason: r.reason.clone(),
                        report: r.to_string(),
                    })
                    .collect(),
            ),
        }
    }

    /// What the verifier proved, unless verification was off.
    pub fn verified(&self) -> Option<&VerifiedProgram> {
        self.verified.as_ref()
    }

    /// The program's type.
    pub fn prog_type(&self) -> ProgType {
        self.prog_type
    }

    /// The program's id in its runtime: the value to store in a `prog_array` map to tail-call it.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The maps the program uses, in `map_idx` order.
    pub fn maps(&self) -> &[Arc<Map>] {
        self.maps.maps()
    }

    /// The checked program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The program's bytecode.
    pub fn bytecode(&self) -> Vec<u8> {
        self.program.to_bytes()
    }
}

/// A context error as the facade's boxed error.
#[expect(
    clippy::boxed_local,
    reason = "runs return their errors boxed (a two-word result); this only re-wraps one"
)]
fn boxed_context(e: Box<ContextError>) -> Box<Error> {
    Box::new(Error::Context(*e))
}
