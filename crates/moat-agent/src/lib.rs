//! moat-agent: `moat trace`'s agent and its controller.
//!
//! The library is built twice: as `libmoat_agent.so`, the agent that `moat trace` loads into the
//! traced process (`LD_PRELOAD`), whose constructor loads, verifies and JIT-compiles the object's
//! programs and attaches them (`agent`); and as a Rust library, the controller side (`control`):
//! start a command with the agent, read what it reports (`protocol`) and the maps it shares
//! (`live`), print it.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod agent;
pub mod control;
#[expect(unsafe_code, reason = "ptrace, waitpid")]
pub mod inject;
mod interposed;
pub mod live;
pub mod protocol;
#[expect(
    unsafe_code,
    reason = "the constructor, atexit, malloc for the test program"
)]
mod sys;

/// What the bundled test program needs of the C library.
pub mod test_support {
    pub use crate::sys::{crash, malloc_free};
}
