//! Preemption mechanisms, behind one interface: how a worker whose task overran its quantum is
//! made to switch. The timer ([`crate::Scheduler::tick`]) finds the overrun; the mechanism only
//! delivers it, and never depends on the policy.

use std::fmt;

/// How an overrunning task is preempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// No preemption: tasks run until they end (quanta are ignored).
    None,
    /// A timer signal (`SIGURG` through `moat-signal`, sent with `tgkill`) whose handler redirects
    /// the task into a trampoline that saves its state and switches to the worker: preempts at
    /// (almost) any instruction of the executable's own code; deferred inside the C library and
    /// inside [`crate::no_preempt`] sections.
    Signal,
    /// A per-worker flag the timer sets and the task polls at its preemption points
    /// ([`crate::checkpoint`]; compiled-in checks, as Concord does): one load and a branch each.
    Cooperative,
    /// User interrupts (`senduipi`), where the CPU and kernel have them. Never emulated.
    Uintr,
}

impl Mechanism {
    /// Every mechanism.
    pub const ALL: [Mechanism; 4] = [
        Mechanism::None,
        Mechanism::Signal,
        Mechanism::Cooperative,
        Mechanism::Uintr,
    ];

    /// The name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::None => "none",
            Mechanism::Signal => "signal",
            Mechanism::Cooperative => "cooperative",
            Mechanism::Uintr => "uintr",
        }
    }

    /// The mechanism named `name`.
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether the mechanism works on this machine; the error says why not.
    pub fn availability(self) -> Result<(), String> {
        match self {
            Mechanism::None | Mechanism::Cooperative => Ok(()),
            Mechanism::Signal => crate::sys::signal_support(),
            Mechanism::Uintr => uintr_availability(),
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// User interrupts need the CPU (CPUID.(7,0):EDX[5]) and a kernel that enables them (it lists
/// `uintr` among the CPU's flags). moat has no `senduipi` path yet: where both exist it says so.
fn uintr_availability() -> Result<(), String> {
    let cpu = std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 5) != 0;
    let kernel = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.split_whitespace().any(|w| w == "uintr"))
        .unwrap_or(false);
    match (cpu, kernel) {
        (false, _) => Err("the CPU has no user interrupts (CPUID.7.0:EDX[5] clear)".into()),
        (true, false) => {
            Err("the CPU has user interrupts but the kernel does not enable them".into())
        }
        (true, true) => Err("user interrupts exist here, but moat has no senduipi path yet".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_uintr_is_reported_not_emulated() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::parse(m.name()), Some(m));
        }
        assert!(Mechanism::Uintr.availability().is_err());
        assert!(Mechanism::Cooperative.availability().is_ok());
    }
}
