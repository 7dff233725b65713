//! moat's isolation layer: a protection domain per loaded object (or program).
//!
//! A [`Domain`] is one aligned arena with guard pages on both sides holding what its programs may
//! touch: the storage of its maps (through [`Domain::memory`], a `moat_maps::MapMemory`), a context
//! area each run copies its input into ([`Domain::with_context`]) and a run area for the engines'
//! stacks ([`Domain::with_run_area`]). How the domain's boundary is enforced is the runtime's [`Isolation`]:
//!
//! - **`sfi`**: software fault isolation. The engines' run-time checks are the enforcement: every
//!   access the verifier did not prove is bounds-checked against the run's regions (the context, the
//!   live stack frames and the storage of the program's own maps, all inside the domain or the run's
//!   own stack); helpers check every pointer argument against the same regions; map handles are
//!   indices into the program's own table; tail calls reach only programs whose maps the caller holds.
//! - **`mpk`**: additionally, the arena is tagged with a protection key and runs execute with PKRU
//!   allowing only that key ([`mpk`]): JIT code reaches nothing but its domain, whatever the software
//!   checks did; keys are virtualised (layer 2), so any number of domains can exist.
//! - **`none`**: no domain (maps on the heap, contexts not copied); the run-time checks stay on.
//!
//! All `unsafe` of the crate is in `sys`.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod domain;
pub mod mpk;
mod sys;

pub use domain::{Domain, DomainMemory, DomainStats, CONTEXT_AREA, DEFAULT_ARENA, GUARD, RUN_AREA};
use thiserror::Error;

/// Why a domain could not be made.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IsolateError {
    /// The arena could not be mapped or protected.
    #[error("cannot map a domain arena")]
    Map(#[source] std::io::Error),
    /// The arena size is not a power of two of at least 128 KiB.
    #[error("domain arena of {size} bytes: not a power of two of at least 128 KiB")]
    ArenaSize {
        /// The size asked for.
        size: usize,
    },
    /// `mpk` was asked for where protection keys are unavailable.
    #[error("memory protection keys are unavailable: {0}")]
    MpkUnavailable(String),
}

/// How programs are isolated from the host and from each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isolation {
    /// No domains; the engines' run-time checks only (as before isolation existed).
    None,
    /// Software fault isolation: domains enforced by the engines' bounds checks.
    Sfi,
    /// Memory protection keys, on top of the SFI checks.
    Mpk,
}

/// An unknown `--isolation` name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown isolation `{0}` (known: none, sfi, mpk)")]
pub struct UnknownIsolation(pub String);

impl Isolation {
    /// `Mpk` where a protection key can be allocated, else `Sfi`.
    pub fn detect() -> Isolation {
        if mpk::unavailable().is_none() {
            Isolation::Mpk
        } else {
            Isolation::Sfi
        }
    }

    /// Parses `none`, `sfi` or `mpk`.
    pub fn parse(name: &str) -> Result<Isolation, UnknownIsolation> {
        match name {
            "none" => Ok(Isolation::None),
            "sfi" => Ok(Isolation::Sfi),
            "mpk" => Ok(Isolation::Mpk),
            other => Err(UnknownIsolation(other.to_string())),
        }
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::None => "none",
            Isolation::Sfi => "sfi",
            Isolation::Mpk => "mpk",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for i in [Isolation::None, Isolation::Sfi, Isolation::Mpk] {
            assert_eq!(Isolation::parse(i.name()), Ok(i));
        }
        assert!(Isolation::parse("kpm").is_err());
    }
}
