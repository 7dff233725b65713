//! Persistent, shared, crash-consistent eBPF hash maps in pool files.
//!
//! A [`Pool`] is one file — on persistent memory or CXL memory behind a DAX file system, on tmpfs, or
//! an ordinary file — mapped shared by every process that opens it, each at its own address (the file
//! holds offsets only). It holds hash maps with the kernel's semantics (fixed key and value sizes,
//! `BPF_ANY`/`BPF_NOEXIST`/`BPF_EXIST`, errno-like errors) whose every update and delete is
//! failure-atomic and durable when it returns; [`Pool::transaction`] groups several.
//!
//! ```
//! use moat_pool::{MapDef, Pool, CreateOptions, BPF_ANY};
//! # let dir = std::env::temp_dir().join(format!("moat-pool-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("counters.pool");
//! # let _ = std::fs::remove_file(&path);
//! Pool::create(&path, &CreateOptions::with_size(1 << 20))?;
//! let pool = Pool::open(&path)?;
//! let map = pool.create_map(&MapDef::new("counts", 4, 8, 1024))?;
//! map.update(&1u32.to_le_bytes(), &10u64.to_le_bytes(), BPF_ANY)?;
//! let other = pool.map("counts")?;
//! pool.transaction(|tx| {
//!     tx.update(&other, &2u32.to_le_bytes(), &20u64.to_le_bytes(), BPF_ANY)?;
//!     tx.delete(&other, &1u32.to_le_bytes())
//! })?;
//! assert_eq!(map.lookup(&2u32.to_le_bytes())?, 20u64.to_le_bytes());
//! assert_eq!(map.lookup(&1u32.to_le_bytes()).map_err(|e| e.errno()), Err(-2)); // -ENOENT
//! # drop(map); drop(other); drop(pool); std::fs::remove_file(&path).unwrap();
//! # Ok::<(), moat_pool::PoolError>(())
//! ```
//!
//! How it works (specified byte by byte in `docs/pool-format.md`):
//!
//! - **Crash consistency**: an undo log; each change is logged (CRC32C per record), written back
//!   (`clwb`/`clflushopt`/`clflush`, plus `msync` for ordinary files in [`Durability::Msync`]) and fenced
//!   before the data is touched; one 8-byte store commits. Whoever takes the lock next — the next
//!   opener, or a process taking over a dead holder's lock — rolls back or completes what it finds.
//! - **Allocation** is part of the transaction (page and slot bitmaps are logged), so a crash never
//!   leaks; **secure deletion** unlinks an element, commits, zeroes its slot, and only then marks it free.
//! - **Locking**: one lock word per pool with the holder's thread id and start time; a dead holder's
//!   lock is taken over and its transaction rolled back.
//! - **Ownership and access lists** per map ([`Principal`], [`AclEntry`]); **sealing** makes a map
//!   read-only for good, checksummed and checked on every open.
//! - **Stray-write protection**: the pool is mapped read-only; only moat's write paths open short
//!   write windows ([`Protection`]).
//! - **Runtimes** use [`SharedPoolMap`], an owned handle (it keeps the pool mapped) whose lookups take
//!   no lock and return the address of the value in the mapping, confined to the map's own slots
//!   ([`SharedPoolMap::value_region`]), and [`SharedTransaction`] ([`Pool::begin_shared`]), which can
//!   stay open across calls (a program run's helper calls).
//! - **Corruption** (header fields, log records, directory entries, chains, bitmaps, sealed contents)
//!   is reported as a typed [`PoolError`] naming the structure and its offset; nothing is written to a
//!   pool found corrupt.
//!
//! This crate depends on no other moat crate but [`moat_abi`] (the kernel's update flags,
//! re-exported here). All `unsafe` code is in the `sys` module.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod acl;
mod core;
mod error;
mod inplace;
mod layout;
mod lock;
mod media;
mod pool;
mod region;
mod shared;
#[cfg(test)]
mod sim;
mod sys;

pub use crate::acl::{AclEntry, Grantee, Perms, Principal, ProgramTag, MAX_ACL};
pub use crate::core::{Entries, BPF_ANY, BPF_EXIST, BPF_NOEXIST};
pub use crate::error::{errno, PoolError};
pub use crate::inplace::{InPlaceValues, ValueWindow};
pub use crate::media::{Durability, Protection};
pub use crate::pool::{
    CreateOptions, LogState, MapDef, MapInfo, OpenOptions, Pool, PoolInfo, PoolMap, PoolMode,
    Recovery, Transaction, VerifyReport,
};
pub use crate::region::{process_dead, process_word, Region};
pub use crate::shared::{SharedPoolMap, SharedTransaction};
pub use crate::sys::FlushKind;
