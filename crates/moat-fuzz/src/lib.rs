//! moat's fuzzing library: program generators and the oracles that judge what the runtime did with
//! them. The `cargo fuzz` targets in `fuzz/fuzz_targets/` and the bounded runs in this crate's tests
//! are thin glue over it.
//!
//! - [`diff`]: random well-formed programs run on the interpreter and the JIT, which must agree on
//!   `r0`, errors and memory.
//! - [`soundness`]: random pointer-heavy programs the verifier accepts must make no memory error on
//!   the checking interpreter, and must do on the JIT (checks removed or confined) what they do on
//!   the interpreter.
//! - [`rules`]: the verifier's rule files (one hand-written program per rule, with the verdict it
//!   must get), parsed for the verifier's own test and the kernel differential.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod diff;
pub mod rules;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod soundness;
