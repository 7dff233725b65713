//! The helper registry: functions a program calls with `call N`, looked up by numeric id.
//!
//! Embedders extend the registry with their own helpers. A helper runs as host code with the program's
//! five argument registers and a [`HelperCtx`] through which it reads and writes program memory, checked
//! against the same [`MemoryMap`] as the program's own loads and stores.

use crate::mem::MemoryMap;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use thiserror::Error;

/// Why a helper refused its arguments or failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HelperError {
    /// A pointer argument does not point to `len` accessible bytes.
    #[error("argument {arg} (0x{addr:x}, {len} bytes) is outside the program's memory")]
    OutOfBounds {
        /// 1-based argument number.
        arg: u8,
        /// The pointer.
        addr: u64,
        /// The length the helper needed.
        len: u64,
    },
    /// An argument has a value the helper does not accept.
    #[error("argument {arg}: {reason}")]
    BadArgument {
        /// 1-based argument number.
        arg: u8,
        /// Why.
        reason: String,
    },
    /// The helper failed for another reason.
    #[error("{0}")]
    Failed(String),
}

/// What a helper may do to the running program: access its memory.
pub struct HelperCtx<'a> {
    /// The program's memory; every access a helper makes on the program's behalf goes through it.
    pub mem: &'a mut MemoryMap,
}

impl HelperCtx<'_> {
    /// Copies `len` bytes from program memory at `addr` (argument `arg`, for the error).
    pub fn read(&self, arg: u8, addr: u64, len: u64) -> Result<Vec<u8>, HelperError> {
        usize::try_from(len)
            .ok()
            .and_then(|l| self.mem.read_bytes(addr, l))
            .ok_or(HelperError::OutOfBounds { arg, addr, len })
    }

    /// Writes `data` into program memory at `addr` (argument `arg`, for the error).
    pub fn write(&self, arg: u8, addr: u64, data: &[u8]) -> Result<(), HelperError> {
        self.mem
            .write_bytes(addr, data)
            .ok_or(HelperError::OutOfBounds {
                arg,
                addr,
                len: data.len() as u64,
            })
    }
}

/// A helper's implementation.
pub type HelperFn = dyn Fn(&mut HelperCtx<'_>, [u64; 5]) -> Result<u64, HelperError> + Send + Sync;

/// A registered helper: its name (for errors and disassembly) and implementation.
#[derive(Clone)]
pub struct Helper {
    /// The helper's name, e.g. `bpf_map_lookup_elem`.
    pub name: String,
    /// The implementation.
    pub func: Arc<HelperFn>,
}

impl fmt::Debug for Helper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Helper").field("name", &self.name).finish()
    }
}

/// Helpers by numeric id.
#[derive(Debug, Clone, Default)]
pub struct HelperRegistry {
    helpers: HashMap<u32, Helper>,
}

impl HelperRegistry {
    /// An empty registry.
    pub fn new() -> HelperRegistry {
        HelperRegistry::default()
    }

    /// Registers (or replaces) helper `id`.
    pub fn register(
        &mut self,
        id: u32,
        name: impl Into<String>,
        func: impl Fn(&mut HelperCtx<'_>, [u64; 5]) -> Result<u64, HelperError> + Send + Sync + 'static,
    ) {
        self.helpers.insert(
            id,
            Helper {
                name: name.into(),
                func: Arc::new(func),
            },
        );
    }

    /// The helper with id `id`.
    pub fn get(&self, id: u32) -> Option<&Helper> {
        self.helpers.get(&id)
    }

    /// Registered ids, sorted.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.helpers.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}
