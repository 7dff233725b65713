//! moat's loop raising: verified eBPF loops replaced by high-level operations.
//!
//! eBPF JITs translate instruction by instruction; native compilers recognise a byte loop as a
//! whole and run it vectorised. This crate recovers such operations from verified programs, after
//! MLIRSynth (CGO'23): [`ir::find_loops`] finds natural loops with one entry and expresses each
//! (induction variables, loop-carried values, memory accesses with strides and the ranges the
//! verifier proved, exits, live-out registers); [`synth::synthesize`] searches the [`dialect`]'s
//! operations bottom-up for a [`synth::Plan`] equal to the loop, pruned by types and static checks,
//! then by execution on inputs, and accepts one only after a bounded exhaustive check. The JIT
//! calls [`synth::Plan::run`] in place of an accepted loop, with the loop's own code kept as the
//! fallback for every run where the plan does not apply.
//!
//! The crate knows nothing of engines, ELF or maps: it reads a [`moat_verify::VerifiedProgram`]
//! and produces plans that run over any [`ir::Memory`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dialect;
pub mod ir;
pub mod synth;

pub use ir::Memory;
pub use synth::{Distance, Plan};

use moat_verify::VerifiedProgram;

/// A loop replaced by a plan.
#[derive(Debug, Clone)]
pub struct RaisedLoop {
    /// Slot of the header: where the plan runs instead.
    pub header: usize,
    /// Slot of the latch.
    pub latch: usize,
    /// What runs instead.
    pub plan: Plan,
}

/// What happened to one loop.
#[derive(Debug, Clone)]
pub struct LoopReport {
    /// Slot of the header.
    pub header: usize,
    /// Slot of the latch.
    pub latch: usize,
    /// The plan, as text, when raised.
    pub raised: Option<String>,
    /// Why not, otherwise.
    pub reason: Option<String>,
    /// Synthesis counts (zero when the loop IR could not express the loop).
    pub stats: synth::Stats,
}

impl std::fmt::Display for LoopReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loop {}..={}: ", self.header, self.latch)?;
        match (&self.raised, &self.reason) {
            (Some(p), _) => write!(f, "raised to {p}")?,
            (None, Some(r)) => write!(f, "not raised: {r}")?,
            (None, None) => write!(f, "not raised")?,
        }
        let s = &self.stats;
        if s.enumerated > 0 {
            write!(
                f,
                " ({} candidates; pruned: {} by types, {} statically, {} on small inputs, {} as \
                 equivalent, {} on large inputs, {} for live-outs, {} exhaustively; {} terms; {} \
                 exhaustive cases; {} µs)",
                s.enumerated,
                s.pruned_types,
                s.pruned_static,
                s.pruned_small,
                s.pruned_equivalent,
                s.pruned_large,
                s.pruned_outs,
                s.pruned_exhaustive,
                s.terms,
                s.exhaustive_cases,
                s.micros
            )?;
        }
        Ok(())
    }
}

/// The loops of one program: those raised and a report on every loop found.
#[derive(Debug, Clone, Default)]
pub struct Raising {
    /// The raised loops.
    pub loops: Vec<RaisedLoop>,
    /// Every loop found, raised or not.
    pub reports: Vec<LoopReport>,
}

/// The most loops of one program synthesis is tried on (in program order).
pub const MAX_SYNTHESIZED: usize = 32;

/// Finds, expresses and raises the loops of `verified`.
pub fn raise(verified: &VerifiedProgram) -> Raising {
    let mut out = Raising::default();
    // Facts of callbacks verified once are approximate: nothing is raised then.
    if verified.facts().approximate {
        return out;
    }
    let (loops, left) = ir::find_loops(verified);
    for l in left {
        out.reports.push(LoopReport {
            header: l.header,
            latch: l.latch,
            raised: None,
            reason: Some(l.reason),
            stats: synth::Stats::default(),
        });
    }
    for (i, ir) in loops.into_iter().enumerate() {
        // Synthesis takes a millisecond or two per loop: a program's load time stays bounded.
        if i >= MAX_SYNTHESIZED {
            out.reports.push(LoopReport {
                header: ir.header,
                latch: ir.latch,
                raised: None,
                reason: Some(format!(
                    "not tried: the program has more than {MAX_SYNTHESIZED} loops"
                )),
                stats: synth::Stats::default(),
            });
            continue;
        }
        let s = synth::synthesize(&ir);
        out.reports.push(LoopReport {
            header: ir.header,
            latch: ir.latch,
            raised: s.plan.as_ref().map(ToString::to_string),
            reason: s.reason,
            stats: s.stats,
        });
        if let Some(plan) = s.plan {
            out.loops.push(RaisedLoop {
                header: ir.header,
                latch: ir.latch,
                plan,
            });
        }
    }
    out.reports.sort_by_key(|r| r.header);
    out
}
