//! Persistent pool maps for programs: the glue between `moat-pool` and `moat-maps`.
//!
//! - **Backend.** A pool map reaches programs as a [`Map`] over a [`PoolBackend`] (a
//!   [`SharedPoolMap`]): lookups are lock-free and return the value's address in the pool's mapping,
//!   updates and deletes are logged, failure-atomic pool transactions. Its definition carries
//!   `BPF_F_RDONLY_PROG`, so the verifier rejects direct stores into its values and the engines
//!   register its slots as a read-only region (the pool is mapped read-only as well): programs change
//!   pool maps only through `bpf_map_update_elem` / `bpf_map_delete_elem`.
//! - **Placement.** With a pool set ([`Runtime::set_pool`]), an object's hash map declared with
//!   libbpf's `__uint(pinning, LIBBPF_PIN_BY_NAME)`, or named with [`Runtime::set_pool_maps`], lives in
//!   the pool under its name, with bpffs pinning semantics: a compatible map of that name is reused
//!   (that is how processes share it), an incompatible one is an error naming the field, else the map
//!   is created. Without a pool, pinning is ignored as before.
//! - **Access.** Each program uses a pool map as its own principal (its tag and the process's uid):
//!   checked when it is loaded ([`Error::Pool`] naming map and principal) and by every helper call
//!   (a lookup without read permission finds nothing, an update or delete without write permission
//!   returns `-EACCES`).
//! - **Transactions.** `moat_pool_tx_begin/commit/abort` ([`helpers::id::POOL_TX_BEGIN`] and
//!   following) group a run's updates and deletes on pool maps into one transaction, rolled back if
//!   the run ends without committing.

use crate::helpers::{id, neg_errno, EBUSY, EINVAL, ENOENT};
use crate::{Error, Runtime};
use moat_abi::BPF_F_RDONLY_PROG;
use moat_exec::HelperRegistry;
use moat_maps::{AtomicWindow, Map, MapBackend, MapDef, MapError, MapType, MemRegion};
use moat_pool::{
    InPlaceValues, Pool, PoolError, Principal, ProgramTag, SharedPoolMap, SharedTransaction,
};
use moat_verify::{Arg, Callback, HelperProto, Ret};
use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use thiserror::Error as ThisError;

/// libbpf's `LIBBPF_PIN_BY_NAME`, the `pinning` attribute value that places a map in the pool.
pub const LIBBPF_PIN_BY_NAME: u32 = 1;

/// Why a map could not be placed in, or used from, the runtime's pool.
#[derive(Debug, ThisError)]
#[non_exhaustive]
pub enum PoolMapError {
    /// No pool is configured.
    #[error("no pool is configured (Runtime::set_pool)")]
    NoPool,
    /// Only hash maps can live in a pool.
    #[error("only hash maps can be placed in a pool, not {0} maps")]
    NotHash(MapType),
    /// The pool holds a map of this name whose definition differs.
    #[error("the pool's map has {field} {pool}, the program's definition {wanted}")]
    Incompatible {
        /// `key_size`, `value_size` or `max_entries`.
        field: &'static str,
        /// The pool's value.
        pool: u32,
        /// The definition's value.
        wanted: u32,
    },
    /// The pool refused (access denied, out of space, corrupt, ...).
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The map's definition is impossible.
    #[error(transparent)]
    Map(#[from] MapError),
}

/// The pool settings of a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub(crate) struct PoolSettings {
    pool: Option<Arc<Pool>>,
    names: Vec<String>,
}

impl Runtime {
    /// Sets the pool that objects' pinned maps (`LIBBPF_PIN_BY_NAME`) and the maps named with
    /// [`Runtime::set_pool_maps`] are placed in, for objects loaded from now on. Only hash maps can be
    /// placed; placing a map of another type is an error ([`PoolMapError::NotHash`]).
    pub fn set_pool(&mut self, pool: Arc<Pool>) {
        self.pools.pool = Some(pool);
    }

    /// Opens the pool file at `path` ([`Pool::open`]) and sets it as with [`Runtime::set_pool`].
    pub fn open_pool(&mut self, path: impl AsRef<Path>) -> Result<Arc<Pool>, Error> {
        let path = path.as_ref();
        let pool = Arc::new(Pool::open(path).map_err(|source| Error::PoolOpen {
            path: path.to_path_buf(),
            source,
        })?);
        self.set_pool(pool.clone());
        Ok(pool)
    }

    /// The pool maps are placed in, if any.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        self.pools.pool.as_ref()
    }

    /// Also places the objects' maps with these names in the pool, as if they were declared with
    /// `LIBBPF_PIN_BY_NAME` (they must be hash maps). Without a pool this has no effect.
    pub fn set_pool_maps<S: Into<String>>(&mut self, names: impl IntoIterator<Item = S>) {
        self.pools.names = names.into_iter().map(Into::into).collect();
    }

    /// Whether an object's map `spec` goes into the pool.
    pub(crate) fn in_pool(&self, spec: &moat_obj::MapSpec) -> bool {
        self.pools.pool.is_some()
            && (spec.pinning == LIBBPF_PIN_BY_NAME || self.pools.names.contains(&spec.name))
    }

    /// The hash map `def` placed in the runtime's pool under `def.name`, with pinning semantics: the
    /// pool's map of that name if its definition is compatible (key and value sizes, `max_entries`),
    /// else a new one. The [`Map`] acts as the host user; programs loaded with it use it as their own
    /// principal, checked at load.
    pub fn pool_map(&self, def: MapDef) -> Result<Arc<Map>, Error> {
        let name = def.name.clone();
        let pool = self.pools.pool.as_ref().ok_or(PoolMapError::NoPool);
        pool.and_then(|pool| place(pool, def))
            .map(Arc::new)
            .map_err(|source| Error::Pool { name, source })
    }
}

/// Opens or creates the pool map `def` (see [`Runtime::pool_map`]).
fn place(pool: &Arc<Pool>, def: MapDef) -> Result<Map, PoolMapError> {
    if def.map_type != MapType::Hash {
        return Err(PoolMapError::NotHash(def.map_type));
    }
    let shared = match pool.shared_map(&def.name) {
        Err(PoolError::NoSuchMap(_)) => {
            let want =
                moat_pool::MapDef::new(&def.name, def.key_size, def.value_size, def.max_entries);
            match pool.create_map(&want) {
                // Another process may have created it meanwhile: then it is checked like any other.
                Ok(_) | Err(PoolError::MapExists(_)) => pool.shared_map(&def.name)?,
                Err(e) => return Err(e.into()),
            }
        }
        other => other?,
    };
    for (field, have, wanted) in [
        ("key_size", shared.key_size() as u32, def.key_size),
        ("value_size", shared.value_size() as u32, def.value_size),
        ("max_entries", shared.max_entries(), def.max_entries),
    ] {
        if have != wanted {
            return Err(PoolMapError::Incompatible {
                field,
                pool: have,
                wanted,
            });
        }
    }
    let flags = def.flags | BPF_F_RDONLY_PROG;
    Ok(Map::external(
        def.with_flags(flags),
        Arc::new(PoolBackend::new(shared)),
    )?)
}

/// The tag of a program, computed the kernel's way (`bpf_prog_calc_tag`): the first 8 bytes of the
/// SHA-1 of its instructions with the immediates of map-referencing `lddw`s zeroed (map fds and
/// values, as the kernel does, and also moat's `map_idx` forms), so that it does not depend on which
/// maps a load binds. Pool access lists name programs by it ([`moat_pool::Grantee::Program`]);
/// `moat inspect` prints it.
pub fn program_tag(bytecode: &[u8]) -> ProgramTag {
    let mut insns = bytecode.to_vec();
    let mut was_map = false;
    for slot in insns.chunks_exact_mut(8) {
        let (code, regs) = (slot[0], slot[1]);
        let src = regs >> 4;
        if !was_map && code == 0x18 && matches!(src, 1 | 2 | 5 | 6) {
            // `lddw` of a map (fd, value, index, index value): its immediates name the map.
            was_map = true;
            slot[4..8].fill(0);
        } else if was_map && code == 0 && regs == 0 && slot[2..4] == [0, 0] {
            was_map = false;
            slot[4..8].fill(0);
        } else {
            was_map = false;
        }
    }
    let digest = sha1_smol::Sha1::from(&insns).digest().bytes();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    tag
}

/// The maps a program with `bytecode` uses: pool maps are replaced by handles acting as the program
/// (its tag, the process's uid), which must have access to them; other maps stay as they are.
pub(crate) fn program_maps(maps: &[Arc<Map>], bytecode: &[u8]) -> Result<Vec<Arc<Map>>, Error> {
    let mut principal = None;
    maps.iter()
        .map(|map| {
            let Some(backend) = PoolBackend::of(map) else {
                return Ok(map.clone());
            };
            let who = *principal.get_or_insert_with(|| Principal::program(program_tag(bytecode)));
            let view = backend
                .map
                .as_principal(who)
                .map_err(PoolMapError::from)
                .and_then(|view| {
                    let backend = Arc::new(PoolBackend::new(view));
                    Ok(Map::external(map.def().clone(), backend)?)
                });
            view.map(Arc::new).map_err(|source| Error::Pool {
                name: map.name().to_string(),
                source,
            })
        })
        .collect()
}

/// A pool map as the storage of a [`Map`] ([`Map::external`]).
///
/// Updates and deletes made on the thread of a program run with an open pool transaction
/// (`moat_pool_tx_begin`) join it; otherwise each is a transaction of its own.
#[derive(Debug)]
pub struct PoolBackend {
    map: SharedPoolMap,
    /// The writable alias programs' atomics act through; none when the principal may not write
    /// the map or it is sealed (atomics on its values are then refused).
    in_place: Option<InPlaceValues>,
}

impl PoolBackend {
    fn new(map: SharedPoolMap) -> PoolBackend {
        let in_place = map.in_place_values().ok();
        PoolBackend { map, in_place }
    }

    /// The pool backend of `map`, if `map` is a pool map.
    pub fn of(map: &Map) -> Option<&PoolBackend> {
        let any: &dyn Any = &**map.backend()?;
        any.downcast_ref()
    }

    /// The pool map itself.
    pub fn pool_map(&self) -> &SharedPoolMap {
        &self.map
    }

    /// `f` on this thread's open program transaction, if there is one in this map's pool.
    fn in_tx<R>(&self, f: impl FnOnce(&mut SharedTransaction) -> R) -> Option<R> {
        RUN.with(|run| {
            let mut run = run.try_borrow_mut().ok()?;
            let open = run.open.as_mut()?;
            Arc::ptr_eq(open.tx.pool(), self.map.pool()).then(|| f(&mut open.tx))
        })
    }
}

/// A pool error as the map error a kernel-like interface returns.
fn map_error(e: PoolError) -> MapError {
    match e {
        PoolError::NotFound => MapError::NotFound,
        PoolError::Exists => MapError::Exists,
        PoolError::Full => MapError::Full,
        PoolError::KeySize { expected, got } => MapError::KeySize { expected, got },
        PoolError::ValueSize { expected, got } => MapError::ValueSize { expected, got },
        PoolError::InvalidFlags { flags } => MapError::InvalidFlags { flags },
        other => MapError::External {
            errno: -other.errno(),
            message: other.to_string(),
        },
    }
}

/// `Ok(())` if `found`, else [`MapError::NotFound`].
fn found(result: Result<bool, PoolError>) -> Result<(), MapError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(MapError::NotFound),
        Err(e) => Err(map_error(e)),
    }
}

impl MapBackend for PoolBackend {
    fn lookup_ptr(&self, key: &[u8]) -> Option<std::ptr::NonNull<u8>> {
        self.map.lookup_ptr(key).ok().flatten()
    }

    fn lookup_into(&self, key: &[u8], out: &mut [u8]) -> Result<(), MapError> {
        found(self.map.lookup_into(key, out))
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.in_tx(|tx| tx.update(&self.map, key, value, flags))
            .unwrap_or_else(|| self.map.update(key, value, flags))
            .map_err(map_error)
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.in_tx(|tx| tx.delete(&self.map, key))
            .unwrap_or_else(|| self.map.delete(key))
            .map_err(map_error)
    }

    fn next_key_into(&self, key: Option<&[u8]>, out: &mut [u8]) -> Result<(), MapError> {
        found(
            self.in_tx(|tx| tx.next_key(&self.map, key, out))
                .unwrap_or_else(|| self.map.next_key(key, out)),
        )
    }

    fn len(&self) -> usize {
        self.map.len().map_or(0, |n| n as usize)
    }

    fn value_regions(&self) -> Vec<MemRegion> {
        let (addr, len) = self.map.value_region();
        vec![MemRegion { addr, len }]
    }

    fn atomic_windows(&self) -> Vec<AtomicWindow> {
        let Some(values) = &self.in_place else {
            return Vec::new();
        };
        let w = values.value_window();
        vec![AtomicWindow {
            region: MemRegion {
                addr: w.start,
                len: w.len,
            },
            alias: w.alias,
            stride: w.stride,
            value_off: w.value_off,
            value_len: w.value_len,
        }]
    }

    /// The map's slots in this process: the same for every principal's handle on it.
    fn identity(&self) -> usize {
        self.map.value_region().0
    }
}

/// This thread's program runs and their open pool transaction.
#[derive(Default)]
struct RunState {
    /// Program runs in progress on this thread (a helper may run another program).
    depth: u32,
    open: Option<OpenTx>,
}

/// A pool transaction opened by `moat_pool_tx_begin` in the run at `depth`.
struct OpenTx {
    depth: u32,
    tx: SharedTransaction,
}

thread_local! {
    static RUN: RefCell<RunState> = RefCell::default();
}

/// One program run on this thread: a transaction it opened and left open is rolled back when the
/// scope ends, whatever ended the run.
pub(crate) struct RunScope {
    /// Tied to the thread whose run state it counts.
    _thread: PhantomData<*const ()>,
}

impl RunScope {
    /// Enters a run.
    pub(crate) fn enter() -> RunScope {
        RUN.with(|run| {
            if let Ok(mut run) = run.try_borrow_mut() {
                run.depth += 1;
            }
        });
        RunScope {
            _thread: PhantomData,
        }
    }
}

impl Drop for RunScope {
    fn drop(&mut self) {
        let left_open = RUN.with(|run| {
            let mut run = run.try_borrow_mut().ok()?;
            let depth = run.depth;
            run.depth = depth.saturating_sub(1);
            if run.open.as_ref()?.depth == depth {
                run.open.take()
            } else {
                None
            }
        });
        if let Some(open) = left_open {
            // Nothing to report to: the run is over. A failed rollback leaves the log to the next
            // opener's recovery, which rolls it back.
            let _ = open.tx.abort();
        }
    }
}

/// `moat_pool_tx_begin` for a program whose pool is `pool`.
fn tx_begin(pool: Option<&Arc<Pool>>) -> Result<(), i32> {
    let pool = pool.ok_or(EINVAL)?;
    RUN.with(|run| {
        let mut run = run.try_borrow_mut().map_err(|_| EBUSY)?;
        if run.depth == 0 {
            return Err(EINVAL);
        }
        if run.open.is_some() {
            return Err(EBUSY);
        }
        let tx = pool.begin_shared().map_err(|e| -e.errno())?;
        run.open = Some(OpenTx {
            depth: run.depth,
            tx,
        });
        Ok(())
    })
}

/// `moat_pool_tx_commit` (`commit`) or `moat_pool_tx_abort`.
fn tx_end(commit: bool) -> Result<(), i32> {
    let open = RUN
        .with(|run| {
            let mut run = run.try_borrow_mut().ok()?;
            if run.open.as_ref()?.depth == run.depth {
                run.open.take()
            } else {
                None
            }
        })
        .ok_or(ENOENT)?;
    let result = if commit {
        open.tx.commit()
    } else {
        open.tx.abort()
    };
    result.map_err(|e| -e.errno())
}

fn status(result: Result<(), i32>) -> u64 {
    result.map_or_else(neg_errno, |()| 0)
}

/// Registers the transaction helpers of a program whose maps are `maps`.
pub(crate) fn register(registry: &mut HelperRegistry, maps: &[Arc<Map>]) {
    let mut pools: Vec<&Arc<Pool>> = Vec::new();
    for b in maps.iter().filter_map(|m| PoolBackend::of(m)) {
        if !pools.iter().any(|p| Arc::ptr_eq(p, b.map.pool())) {
            pools.push(b.map.pool());
        }
    }
    let pool = match pools.as_slice() {
        [one] => Some((*one).clone()),
        _ => None,
    };
    registry.register(id::POOL_TX_BEGIN, "moat_pool_tx_begin", move |_, _| {
        Ok(status(tx_begin(pool.as_ref())))
    });
    registry.register(id::POOL_TX_COMMIT, "moat_pool_tx_commit", |_, _| {
        Ok(status(tx_end(true)))
    });
    registry.register(id::POOL_TX_ABORT, "moat_pool_tx_abort", |_, _| {
        Ok(status(tx_end(false)))
    });
}

/// The verifier's prototype of moat's own helper `id`: no arguments, an integer result.
pub(crate) fn proto(helper: u32) -> Option<HelperProto> {
    let name = match helper {
        id::POOL_TX_BEGIN => "moat_pool_tx_begin",
        id::POOL_TX_COMMIT => "moat_pool_tx_commit",
        id::POOL_TX_ABORT => "moat_pool_tx_abort",
        _ => return None,
    };
    Some(HelperProto {
        name: name.to_string(),
        args: [Arg::None; 5],
        ret: Ret::Integer,
        callback: Callback::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tag ignores which map an `lddw` names and depends on everything else.
    #[test]
    fn program_tags_ignore_map_references() {
        let prog = |map: u8, imm: u8| {
            let mut b = vec![0x18, 0x11, 0, 0, map, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            b.extend([0xb7, 0x00, 0, 0, imm, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
            b
        };
        assert_eq!(program_tag(&prog(3, 1)), program_tag(&prog(4, 1)));
        assert_ne!(program_tag(&prog(3, 1)), program_tag(&prog(3, 2)));
        // SHA-1 of nothing starts da39a3ee 5e6b4b0d.
        assert_eq!(
            program_tag(&[]),
            [0xda, 0x39, 0xa3, 0xee, 0x5e, 0x6b, 0x4b, 0x0d]
        );
    }
}
