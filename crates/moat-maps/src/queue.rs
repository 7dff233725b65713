//! Queues and stacks (`BPF_MAP_TYPE_QUEUE`, `BPF_MAP_TYPE_STACK`).
//!
//! Both are one ring of `max_entries` value slots behind a mutex, as in the kernel's
//! `queue_stack_maps.c`: `push` appends; a queue pops its oldest element, a stack its newest. When the
//! ring is full, `push` fails with `-E2BIG` unless `BPF_EXIST` is given, in which case the *oldest*
//! element is dropped (for stacks too, as in the kernel). Values are copied in and out: programs never
//! get pointers into a queue.

use crate::def::{MapDef, MapType};
use crate::error::MapError;
use crate::mem::MapMemory;
use crate::value::{Slots, ValueSrc};
use moat_abi::{BPF_EXIST, BPF_NOEXIST};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Ring {
    /// Slot of the oldest element.
    start: usize,
    len: usize,
}

/// A queue or stack.
#[derive(Debug)]
pub(crate) struct QueueStack {
    stack: bool,
    max_entries: usize,
    slots: Slots,
    ring: Mutex<Ring>,
}

impl QueueStack {
    pub(crate) fn new(def: &MapDef, memory: &Arc<dyn MapMemory>) -> Result<QueueStack, MapError> {
        Ok(QueueStack {
            stack: def.map_type == MapType::Stack,
            max_entries: def.max_entries as usize,
            slots: Slots::new(memory, def.max_entries, def.value_size, false, 1)?,
            ring: Mutex::new(Ring::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `queue_stack_map_push_elem`.
    pub(crate) fn push(&self, value: &[u8], flags: u64) -> Result<(), MapError> {
        if flags & BPF_NOEXIST != 0 || flags > BPF_EXIST {
            return Err(MapError::InvalidFlags { flags });
        }
        self.slots.check(ValueSrc::Host(value))?;
        let mut ring = self.lock();
        if ring.len == self.max_entries {
            if flags & BPF_EXIST == 0 {
                return Err(MapError::Full);
            }
            ring.start = (ring.start + 1) % self.max_entries;
            ring.len -= 1;
        }
        let slot = (ring.start + ring.len) % self.max_entries;
        self.slots.write(slot, ValueSrc::Host(value), true);
        ring.len += 1;
        Ok(())
    }

    /// Pops (`remove`) or peeks the next element into `out`.
    pub(crate) fn take(&self, out: &mut [u8], remove: bool) -> Result<(), MapError> {
        if out.len() != self.slots.value_size {
            return Err(MapError::ValueSize {
                expected: self.slots.value_size,
                got: out.len(),
            });
        }
        let mut ring = self.lock();
        if ring.len == 0 {
            return Err(MapError::NotFound);
        }
        let slot = if self.stack {
            (ring.start + ring.len - 1) % self.max_entries
        } else {
            ring.start
        };
        self.slots.read(slot, out);
        if remove {
            if !self.stack {
                ring.start = (ring.start + 1) % self.max_entries;
            }
            ring.len -= 1;
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }
}

#[cfg(test)]
mod tests {
    use crate::map::{test_map, u32b};
    use crate::{Map, MapDef, MapError, MapType, BPF_ANY, BPF_EXIST, BPF_NOEXIST};

    fn qs(t: MapType, max_entries: u32) -> Map {
        test_map(MapDef::new(t, 0, 4, max_entries))
    }

    fn pop(m: &Map) -> Option<u32> {
        m.pop()
            .ok()
            .map(|v| u32::from_ne_bytes(v[..].try_into().unwrap()))
    }

    #[test]
    fn queue_is_fifo_and_stack_is_lifo() {
        let q = qs(MapType::Queue, 4);
        let s = qs(MapType::Stack, 4);
        for m in [&q, &s] {
            for n in 1..=3 {
                assert_eq!(m.push(&u32b(n), BPF_ANY), Ok(()));
            }
            assert_eq!(m.len(), 3);
        }
        assert_eq!(q.peek(), Ok(u32b(1).to_vec()));
        assert_eq!(s.peek(), Ok(u32b(3).to_vec()));
        assert_eq!(
            [pop(&q), pop(&q), pop(&q), pop(&q)],
            [Some(1), Some(2), Some(3), None]
        );
        assert_eq!(
            [pop(&s), pop(&s), pop(&s), pop(&s)],
            [Some(3), Some(2), Some(1), None]
        );
        assert_eq!(q.pop(), Err(MapError::NotFound));
        assert_eq!(s.peek().map_err(|e| e.errno()), Err(-2));
    }

    #[test]
    fn full_maps_refuse_or_overwrite_the_oldest() {
        let q = qs(MapType::Queue, 3);
        let s = qs(MapType::Stack, 3);
        for m in [&q, &s] {
            for n in 1..=3 {
                m.push(&u32b(n), BPF_ANY).unwrap();
            }
            assert_eq!(m.push(&u32b(4), BPF_ANY), Err(MapError::Full));
            assert_eq!(m.push(&u32b(4), BPF_ANY).map_err(|e| e.errno()), Err(-7));
            assert_eq!(m.push(&u32b(4), BPF_EXIST), Ok(()));
            assert_eq!(m.len(), 3);
        }
        assert_eq!([pop(&q), pop(&q), pop(&q)], [Some(2), Some(3), Some(4)]);
        // Stacks drop their oldest (bottom) element too, as in the kernel.
        assert_eq!([pop(&s), pop(&s), pop(&s)], [Some(4), Some(3), Some(2)]);
    }

    #[test]
    fn wraps_around_many_times() {
        let q = qs(MapType::Queue, 3);
        for n in 0..100 {
            q.push(&u32b(n), BPF_ANY).unwrap();
            q.push(&u32b(n + 1000), BPF_ANY).unwrap();
            assert_eq!(pop(&q), Some(if n == 0 { 0 } else { n - 1 + 1000 }));
            if n > 0 {
                assert_eq!(pop(&q), Some(n));
            }
        }
    }

    #[test]
    fn flags_lengths_and_unsupported_ops() {
        let q = qs(MapType::Queue, 3);
        assert_eq!(
            q.push(&u32b(1), BPF_NOEXIST),
            Err(MapError::InvalidFlags { flags: BPF_NOEXIST })
        );
        assert_eq!(q.push(&u32b(1), 3).map_err(|e| e.errno()), Err(-22));
        assert_eq!(q.push(&u32b(1), 4).map_err(|e| e.errno()), Err(-22));
        assert_eq!(
            q.push(&[1; 8], BPF_ANY),
            Err(MapError::ValueSize {
                expected: 4,
                got: 8
            })
        );
        assert_eq!(
            q.pop_into(&mut [0; 3]),
            Err(MapError::ValueSize {
                expected: 4,
                got: 3
            })
        );
        // The syscall commands map to push and peek.
        assert_eq!(q.update(&[], &u32b(5), BPF_ANY), Ok(()));
        assert_eq!(q.lookup(&[]), Ok(u32b(5).to_vec()));
        assert_eq!(
            q.update(&u32b(0), &u32b(5), BPF_ANY),
            Err(MapError::KeySize {
                expected: 0,
                got: 4
            })
        );
        assert_eq!(
            q.delete(&[]),
            Err(MapError::InvalidOp {
                map_type: MapType::Queue,
                op: "delete"
            })
        );
        assert_eq!(q.next_key(None).map_err(|e| e.errno()), Err(-22));
        assert!(q.lookup_ptr(&[], 0).is_none());
        assert!(q.value_regions().is_empty());
        assert_eq!(q.len(), 1);
    }
}
