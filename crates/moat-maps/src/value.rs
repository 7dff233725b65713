//! How values are laid out in a storage block: fixed slots of `stride` bytes, one per element, each
//! holding one 8-byte-aligned copy of the value, or one per CPU for per-CPU maps.
//!
//! Slot `i` of a block starts at `i * stride`; for per-CPU maps, CPU `c`'s copy starts at
//! `i * stride + c * round_up(value_size, 8)`. This is also the host-side format of per-CPU values (all
//! CPUs' copies concatenated, each padded to 8 bytes), as in the kernel's `bpf(2)` commands.

use crate::def::round8;
use crate::error::MapError;
use crate::mem::{Block, MapMemory};
use std::ptr::NonNull;
use std::sync::Arc;

/// A value to store, as given by the host or by a program.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ValueSrc<'a> {
    /// Host side: `value_size` bytes, or every CPU's copy for per-CPU maps.
    Host(&'a [u8]),
    /// Program side: one `value_size` copy for this CPU (the same as `Host` for other maps).
    Cpu(usize, &'a [u8]),
}

/// The slot geometry of one map's value block.
#[derive(Debug)]
pub(crate) struct Slots {
    /// The map's value size.
    pub(crate) value_size: usize,
    /// `value_size` rounded up to 8.
    pub(crate) elem: usize,
    /// Bytes per slot: `elem`, times the CPU count for per-CPU maps.
    pub(crate) stride: usize,
    /// Number of CPUs for per-CPU maps, else 1.
    pub(crate) cpus: usize,
    /// Whether values exist once per CPU.
    pub(crate) percpu: bool,
    /// The storage: `count * stride` bytes.
    pub(crate) block: Block,
}

impl Slots {
    /// Allocates `count` zeroed slots. The sizes were validated by `MapDef::check`, which bounds the
    /// total below `MAX_MAP_BYTES`.
    pub(crate) fn new(
        memory: &Arc<dyn MapMemory>,
        count: u32,
        value_size: u32,
        percpu: bool,
        cpus: usize,
    ) -> Result<Slots, MapError> {
        let value_size = value_size as usize;
        let elem = round8(value_size as u64) as usize;
        let cpus = if percpu { cpus } else { 1 };
        let stride = elem * cpus;
        let len = stride
            .checked_mul(count as usize)
            .ok_or(MapError::OutOfMemory { size: usize::MAX })?;
        Ok(Slots {
            value_size,
            elem,
            stride,
            cpus,
            percpu,
            block: Block::new(memory, len, 8)?,
        })
    }

    /// The slots of `count` values in `block`, a reader's view of another process's map; `None` if
    /// the block is too short.
    pub(crate) fn from_block(
        block: Block,
        count: u32,
        value_size: u32,
        percpu: bool,
        cpus: usize,
    ) -> Option<Slots> {
        let value_size = value_size as usize;
        let elem = round8(value_size as u64) as usize;
        let cpus = if percpu { cpus } else { 1 };
        let stride = elem.checked_mul(cpus)?;
        (stride.checked_mul(count as usize)? <= block.len()).then_some(Slots {
            value_size,
            elem,
            stride,
            cpus,
            percpu,
            block,
        })
    }

    /// The length of a host-side value buffer.
    pub(crate) fn host_size(&self) -> usize {
        if self.percpu {
            self.stride
        } else {
            self.value_size
        }
    }

    /// Checks a value's length (and CPU) against the layout.
    pub(crate) fn check(&self, src: ValueSrc<'_>) -> Result<(), MapError> {
        let (expected, got) = match src {
            ValueSrc::Host(v) => (self.host_size(), v.len()),
            ValueSrc::Cpu(cpu, v) => {
                if self.percpu && cpu >= self.cpus {
                    return Err(MapError::CpuOutOfRange {
                        cpu,
                        cpus: self.cpus,
                    });
                }
                (self.value_size, v.len())
            }
        };
        if expected != got {
            return Err(MapError::ValueSize { expected, got });
        }
        Ok(())
    }

    /// The address of slot `slot`'s value for `cpu` (ignored unless per-CPU); `None` if `cpu` is out of
    /// range.
    pub(crate) fn ptr(&self, slot: usize, cpu: usize) -> Option<NonNull<u8>> {
        let cpu = if self.percpu { cpu } else { 0 };
        (cpu < self.cpus).then(|| self.block.ptr_at(slot * self.stride + cpu * self.elem))
    }

    /// Stores `src` (checked with [`Slots::check`]) into slot `slot`. A program-side store into a fresh
    /// per-CPU element zeroes the other CPUs' copies, as the kernel does.
    pub(crate) fn write(&self, slot: usize, src: ValueSrc<'_>, fresh: bool) {
        let base = slot * self.stride;
        match src {
            ValueSrc::Host(v) => self.block.write(base, v),
            ValueSrc::Cpu(cpu, v) => {
                let cpu = if self.percpu { cpu } else { 0 };
                if self.percpu && fresh {
                    self.block.zero(base, self.stride);
                }
                self.block.write(base + cpu * self.elem, v);
            }
        }
    }

    /// Copies slot `slot`'s host-side value into `out`, which has [`Slots::host_size`] bytes.
    pub(crate) fn read(&self, slot: usize, out: &mut [u8]) {
        self.block.read(slot * self.stride, out);
    }

    /// The whole block as a program-accessible region.
    pub(crate) fn region(&self) -> crate::MemRegion {
        crate::MemRegion {
            addr: self.block.addr(),
            len: self.block.len(),
        }
    }
}
