//! Message passing through shared (CXL-style) memory, and an OSU-style micro-benchmark suite that
//! measures it side by side with TCP and Open MPI (issue 18, after OMB-CXL).
//!
//! The transport ([`Comm`]) runs between processes — forked or launched separately — that map one
//! region file ([`moat_pool::Region`]: tmpfs, an ordinary file, or a DAX file on persistent or CXL
//! memory): SPSC rings of cache-line slots with sequence numbers for eager messages, rendezvous
//! chunks for large ones, MPSC inboxes, no locks on the fast path, and the pool's crash rules (a
//! rank owned by a dead process is taken over and its rings recovered). The suite ([`suite`]) runs
//! the OSU benchmarks over any [`Transport`]: the pool, TCP over loopback or a veth pair between two
//! network namespaces, and the same region with an emulated CXL latency per cache-line miss; Open
//! MPI runs them through a C driver (`c/omb_mpi.c`).
//!
//! All `unsafe` code is in the `shm` module.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod comm;
mod error;
pub mod launch;
pub mod layout;
pub mod netns;
pub mod plot;
mod shm;
pub mod suite;
mod tcp;

pub use crate::comm::{Comm, Device, MAX_MESSAGE};
pub use crate::error::OmbError;
pub use crate::layout::Geometry;
pub use crate::shm::kill;
pub use crate::suite::{Bench, Params, Row, Transport};
pub use crate::tcp::Tcp;
