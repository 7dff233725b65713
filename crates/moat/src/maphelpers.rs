//! The maps a program may use, how it names them, and the helpers that operate on them.
//!
//! A program refers to its maps by index into its [`MapTable`]: `lddw rX, map_idx(N)` loads the map's
//! *handle* (a tagged number, not a dereferenceable address, like the kernel's opaque map pointer) and
//! `lddw rX, map_idx_value(N, OFF)` the address of byte `OFF` of an array map's first value (global
//! data). Map helpers decode handles against the calling program's own table only, so a forged handle
//! can never reach another program's maps. Every value pointer a helper hands out lies in a region the
//! program's runs may access ([`moat_exec::Linked::add_static_region`]).

use crate::helpers::{current_cpu, neg_errno, register as register_helper, E2BIG, EINVAL};
use crate::load::{TailClass, TailRefusal};
use crate::stacks::StackSource;
use crate::ProgramTable;
use moat_abi::HelperId as H;
use moat_exec::{DirectCall, HelperCtx, HelperError, HelperRegistry, LddwResolver};
use moat_isa::{LddwKind, Reg};
use moat_maps::{Map, MapType};
use std::sync::{Arc, Weak};

/// Tag of map handles; the low 32 bits are the index into the program's [`MapTable`].
pub const MAP_HANDLE_TAG: u64 = 0x6d61_7000_0000_0000;
const MAP_HANDLE_MASK: u64 = 0xffff_ff00_0000_0000;

/// The identities of `maps` ([`Map::identity`]: their addresses, or their storage's for pool maps,
/// which each program uses through a handle of its own), sorted: what the program table compares to
/// keep tail calls inside a domain.
pub(crate) fn identities(maps: &[Arc<Map>]) -> Vec<usize> {
    let mut ids: Vec<usize> = maps.iter().map(|m| m.identity()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The maps one program uses, indexed as its `map_idx` references.
#[derive(Debug, Clone, Default)]
pub struct MapTable {
    maps: Vec<Arc<Map>>,
}

impl MapTable {
    /// A table of `maps`, in index order.
    pub fn new(maps: Vec<Arc<Map>>) -> MapTable {
        MapTable { maps }
    }

    /// The maps.
    pub fn maps(&self) -> &[Arc<Map>] {
        &self.maps
    }

    fn get(&self, arg: u8, handle: u64) -> Result<&Arc<Map>, HelperError> {
        let bad = || HelperError::BadArgument {
            arg,
            reason: format!("0x{handle:x} is not a map of this program"),
        };
        if handle & MAP_HANDLE_MASK != MAP_HANDLE_TAG {
            return Err(bad());
        }
        let index = usize::try_from(handle & 0xffff_ffff).map_err(|_| bad())?;
        self.maps.get(index).ok_or_else(bad)
    }

    fn of_type(
        &self,
        arg: u8,
        handle: u64,
        ok: &[MapType],
        helper: H,
    ) -> Result<&Arc<Map>, HelperError> {
        let map = self.get(arg, handle)?;
        if ok.contains(&map.map_type()) {
            Ok(map)
        } else {
            Err(HelperError::BadArgument {
                arg,
                reason: format!(
                    "{helper} does not work on {} map `{}`",
                    map.map_type().name(),
                    map.name()
                ),
            })
        }
    }

    /// The ring buffer map whose data area holds `addr` (a reservation).
    fn ringbuf_holding(&self, addr: u64) -> Option<&Arc<Map>> {
        self.maps.iter().find(|m| {
            m.map_type() == MapType::RingBuf
                && m.value_regions()
                    .iter()
                    .any(|r| usize::try_from(addr).is_ok_and(|a| r.contains(a, 1)))
        })
    }
}

impl LddwResolver for MapTable {
    fn resolve(&self, kind: LddwKind, imm: i32, next_imm: i32) -> Result<u64, String> {
        let index = usize::try_from(imm).map_err(|_| format!("negative map index {imm}"))?;
        let map = self
            .maps
            .get(index)
            .ok_or_else(|| format!("map index {index} out of range ({} maps)", self.maps.len()))?;
        match kind {
            LddwKind::MapIdx | LddwKind::MapFd => Ok(MAP_HANDLE_TAG | index as u64),
            LddwKind::MapIdxValue | LddwKind::MapValue => {
                if map.map_type() != MapType::Array {
                    return Err(format!(
                        "map `{}` is not an array: no direct value access",
                        map.name()
                    ));
                }
                let off = u64::try_from(next_imm)
                    .map_err(|_| format!("negative value offset {next_imm}"))?;
                if off >= u64::from(map.def().value_size) {
                    return Err(format!(
                        "offset {off} is past the value of map `{}`",
                        map.name()
                    ));
                }
                let value = map
                    .lookup_ptr(&0u32.to_ne_bytes(), 0)
                    .ok_or_else(|| format!("map `{}` has no element 0", map.name()))?;
                Ok(value.as_ptr() as u64 + off)
            }
            other => Err(format!("{other:?} is not supported")),
        }
    }
}

/// Room for bytes copied out of program memory (a key or a value): on the stack up to
/// [`INLINE`] bytes, so that the map helpers of probes that run millions of times a second
/// allocate nothing. The copy stays where it is made and is lent out as a slice: moving a
/// buffer-sized result back through the helper's `?`s reloaded each freshly written key in
/// 16-byte pieces, a store-forwarding stall per piece that was half an update's cost.
struct Scratch {
    inline: [u8; INLINE],
    heap: Vec<u8>,
}

const INLINE: usize = 64;

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            inline: [0; INLINE],
            heap: Vec::new(),
        }
    }

    /// Copies `len` bytes at `addr` (argument `arg`) out of program memory.
    fn copy(
        &mut self,
        ctx: &HelperCtx<'_>,
        arg: u8,
        addr: u64,
        len: u32,
    ) -> Result<&[u8], HelperError> {
        let len = len as usize;
        if len <= INLINE {
            let out = &mut self.inline[..len];
            ctx.read_into(arg, addr, out)?;
            return Ok(out);
        }
        self.heap = ctx.read(arg, addr, len as u64)?;
        Ok(&self.heap)
    }
}

fn status(result: Result<(), moat_maps::MapError>) -> u64 {
    match result {
        Ok(()) => 0,
        Err(e) => e.errno() as i64 as u64,
    }
}

fn cpu_of(map: &Map) -> usize {
    current_cpu() % map.cpus().max(1)
}

const KEYED: &[MapType] = &[
    MapType::Hash,
    MapType::Array,
    MapType::PercpuHash,
    MapType::PercpuArray,
    MapType::LruHash,
    MapType::LruPercpuHash,
    MapType::LpmTrie,
];
const QUEUES: &[MapType] = &[MapType::Queue, MapType::Stack];

/// `bpf_map_lookup_elem`'s direct form on `map`, for call sites where the verifier proved `r1` to
/// be `map` and the key (`r2`) to be `key_size` bytes of the stack: the map's own lookup on the key
/// in place, with none of the helper's checks (map handle and type, key in the program's memory)
/// and no copy of the key. Only for maps whose elements are not per CPU.
fn direct_lookup(map: &Arc<Map>) -> Option<DirectCall> {
    let key = (Reg::R2, map.def().key_size);
    direct(map, lookup_direct, vec![key])
}

/// `bpf_map_update_elem`'s direct form on `map`, as [`direct_lookup`]: the verifier proved the key
/// (`r2`) and the value (`r3`) to be `key_size` and `value_size` bytes of the stack; the map's
/// own update reads them in place and checks the flags (`r4`) as the helper would.
fn direct_update(map: &Arc<Map>) -> Option<DirectCall> {
    let def = map.def();
    let args = vec![(Reg::R2, def.key_size), (Reg::R3, def.value_size)];
    direct(map, update_direct, args)
}

/// `func` called with `map` and the stack arguments `stack_args`, for maps whose elements are not
/// per CPU.
fn direct(
    map: &Arc<Map>,
    func: extern "sysv64" fn(u64, u64, u64, u64, u64) -> u64,
    stack_args: Vec<(Reg, u32)>,
) -> Option<DirectCall> {
    if map.map_type().is_percpu() || !KEYED.contains(&map.map_type()) {
        return None;
    }
    Some(DirectCall {
        func,
        data: Arc::as_ptr(map) as u64,
        stack_args,
        keep: map.clone(),
    })
}

/// The function [`direct_lookup`]'s calls run: `map` is the address of the [`Map`], `key` that of
/// its key. Returns the value's address, or 0.
#[expect(
    unsafe_code,
    reason = "dereferences the map and key pointers generated code passes"
)]
extern "sysv64" fn lookup_direct(map: u64, key: u64, _: u64, _: u64, _: u64) -> u64 {
    // SAFETY: `map` is the address of a `Map` that the calling code keeps alive (its
    // `DirectCall::keep`); `key` points to `key_size` bytes of the running program's stack, in
    // bounds as the verifier proved for this call site, and nothing writes them during the call
    // (the program's thread is in it).
    let (map, key) = unsafe {
        let map = &*(map as *const Map);
        let len = map.def().key_size as usize;
        (map, std::slice::from_raw_parts(key as *const u8, len))
    };
    map.lookup_ptr(key, 0).map_or(0, |p| p.as_ptr() as u64)
}

/// The function [`direct_update`]'s calls run: `map` is the address of the [`Map`], `key` and
/// `value` those of its key and value, `flags` the update's flags. Returns 0 or `-errno`.
#[expect(
    unsafe_code,
    reason = "dereferences the map, key and value pointers generated code passes"
)]
extern "sysv64" fn update_direct(map: u64, key: u64, value: u64, flags: u64, _: u64) -> u64 {
    // SAFETY: as in `lookup_direct`; `value` points to `value_size` bytes of the running
    // program's stack, in bounds as the verifier proved for this call site. Key and value may
    // overlap (both are only read).
    let (map, key, value) = unsafe {
        let map = &*(map as *const Map);
        let def = map.def();
        (
            map,
            std::slice::from_raw_parts(key as *const u8, def.key_size as usize),
            std::slice::from_raw_parts(value as *const u8, def.value_size as usize),
        )
    };
    status(map.update_on_cpu(key, value, flags, 0))
}

/// Registers the map helpers of a program whose maps are `table`; `programs` resolves tail-call
/// targets, which must fit the program's context class; `stacks` gives `bpf_get_stackid` and
/// `bpf_get_stack` their stacks.
pub(crate) fn register(
    registry: &mut HelperRegistry,
    table: &Arc<MapTable>,
    (programs, class): (Weak<ProgramTable>, TailClass),
    stacks: &Arc<dyn StackSource>,
) {
    crate::pooled::register(registry, table.maps());
    let (t, source) = (table.clone(), stacks.clone());
    register_helper(registry, H::GetStackid, move |ctx, a| {
        let map = t.of_type(2, a[1], &[MapType::StackTrace], H::GetStackid)?;
        Ok(crate::stacks::get_stackid(&*source, ctx, map, a))
    });
    let t = table.clone();
    register_helper(registry, H::PerfEventOutput, move |ctx, a| {
        let map = t.of_type(2, a[1], &[MapType::PerfEventArray], H::PerfEventOutput)?;
        let mut room = Scratch::new();
        let data = room.copy(ctx, 4, a[3], u32::try_from(a[4]).unwrap_or(u32::MAX))?;
        Ok(status(map.perf_output(data, a[2], current_cpu())))
    });
    let source = stacks.clone();
    register_helper(registry, H::GetStack, move |ctx, a| {
        crate::stacks::get_stack(&*source, ctx, a)
    });
    let t = table.clone();
    register_helper(registry, H::MapLookupElem, move |ctx, a| {
        let map = t.of_type(1, a[0], KEYED, H::MapLookupElem)?;
        let mut room = Scratch::new();
        let key = room.copy(ctx, 2, a[1], map.def().key_size)?;
        Ok(map
            .lookup_ptr(key, cpu_of(map))
            .map_or(0, |p| p.as_ptr() as u64))
    });
    let t = table.clone();
    registry.set_direct(H::MapLookupElem.as_u32(), move |index| {
        t.maps().get(index).and_then(direct_lookup)
    });
    let t = table.clone();
    register_helper(registry, H::MapUpdateElem, move |ctx, a| {
        let map = t.of_type(1, a[0], KEYED, H::MapUpdateElem)?;
        let (mut key_room, mut value_room) = (Scratch::new(), Scratch::new());
        let key = key_room.copy(ctx, 2, a[1], map.def().key_size)?;
        let value = value_room.copy(ctx, 3, a[2], map.def().value_size)?;
        Ok(status(map.update_on_cpu(key, value, a[3], cpu_of(map))))
    });
    let t = table.clone();
    registry.set_direct(H::MapUpdateElem.as_u32(), move |index| {
        t.maps().get(index).and_then(direct_update)
    });
    let t = table.clone();
    register_helper(registry, H::MapDeleteElem, move |ctx, a| {
        let map = t.of_type(1, a[0], KEYED, H::MapDeleteElem)?;
        let mut room = Scratch::new();
        let key = room.copy(ctx, 2, a[1], map.def().key_size)?;
        Ok(status(map.delete(key)))
    });
    let t = table.clone();
    register_helper(registry, H::MapPushElem, move |ctx, a| {
        let map = t.of_type(1, a[0], QUEUES, H::MapPushElem)?;
        let mut room = Scratch::new();
        let value = room.copy(ctx, 2, a[1], map.def().value_size)?;
        Ok(status(map.push(value, a[2])))
    });
    for (helper, pop) in [(H::MapPopElem, true), (H::MapPeekElem, false)] {
        let t = table.clone();
        register_helper(registry, helper, move |ctx, a| {
            let map = t.of_type(1, a[0], QUEUES, helper)?;
            let mut out = vec![0; map.def().value_size as usize];
            let result = if pop {
                map.pop_into(&mut out)
            } else {
                map.peek_into(&mut out)
            };
            if result.is_ok() {
                ctx.write(2, a[1], &out)?;
            }
            Ok(status(result))
        });
    }
    let t = table.clone();
    register_helper(registry, H::RingbufOutput, move |ctx, a| {
        let map = t.of_type(1, a[0], &[MapType::RingBuf], H::RingbufOutput)?;
        let data = ctx.read(2, a[1], a[2])?;
        Ok(status(map.ringbuf_output(&data, a[3])))
    });
    let t = table.clone();
    register_helper(registry, H::RingbufReserve, move |_, a| {
        let map = t.of_type(1, a[0], &[MapType::RingBuf], H::RingbufReserve)?;
        if a[2] != 0 {
            return Ok(0);
        }
        Ok(map
            .ringbuf_reserve(a[1], a[2])
            .map_or(0, |p| p.as_ptr() as u64))
    });
    for (helper, submit) in [(H::RingbufSubmit, true), (H::RingbufDiscard, false)] {
        let t = table.clone();
        register_helper(registry, helper, move |_, a| {
            let map = t
                .ringbuf_holding(a[0])
                .ok_or_else(|| HelperError::BadArgument {
                    arg: 1,
                    reason: format!("0x{:x} is not a ring buffer reservation", a[0]),
                })?;
            let ptr = a[0] as usize as *mut u8;
            let result = if submit {
                map.ringbuf_submit(ptr, a[1])
            } else {
                map.ringbuf_discard(ptr, a[1])
            };
            result.map_err(|e| HelperError::BadArgument {
                arg: 1,
                reason: e.to_string(),
            })?;
            Ok(0)
        });
    }
    let t = table.clone();
    register_helper(registry, H::RingbufQuery, move |_, a| {
        let map = t.of_type(1, a[0], &[MapType::RingBuf], H::RingbufQuery)?;
        Ok(map.ringbuf_query(a[1]))
    });
    let t = table.clone();
    let own = identities(table.maps());
    register_helper(registry, H::TailCall, move |ctx, a| {
        let map = t.of_type(2, a[1], &[MapType::ProgArray], H::TailCall)?;
        let index = u32::try_from(a[2]).unwrap_or(u32::MAX);
        // A tail call runs the target with the caller's memory, so it may only reach a program whose
        // maps are all the caller's too (never a program of another object, another domain), and
        // on the caller's context, so only a program of the caller's type that needs no more of it.
        let target = match map.get_prog(index).map(|prog| {
            let table = programs.upgrade();
            (prog, table.map(|p| p.get_within(prog, &own, class)))
        }) {
            Some((_, Some(Ok(Some(target))))) => target,
            Some((prog, Some(Err(TailRefusal::OtherDomain)))) => {
                return Err(HelperError::BadArgument {
                    arg: 3,
                    reason: format!("program {prog} belongs to another domain"),
                })
            }
            Some((prog, Some(Err(TailRefusal::OtherContext { target, caller })))) => {
                return Err(HelperError::BadArgument {
                    arg: 3,
                    reason: format!(
                        "program {prog} is a {:?} program{}, the caller a {:?} program{}: a \
                         tail call runs its target on the caller's context",
                        target.prog_type,
                        verified_for(target.input_bytes),
                        caller.prog_type,
                        verified_for(caller.input_bytes),
                    ),
                })
            }
            _ => return Ok(neg_errno(moat_maps::errno::ENOENT)),
        };
        match ctx.tail_call(target, a[0]) {
            Ok(()) => Ok(0),
            Err(_) => Ok(neg_errno(E2BIG)),
        }
    });
    let t = table.clone();
    register_helper(registry, H::ForEachMapElem, move |ctx, a| {
        let map = t.of_type(1, a[0], KEYED, H::ForEachMapElem)?;
        if a[3] != 0 {
            return Ok(neg_errno(EINVAL));
        }
        let cpu = cpu_of(map);
        let keys: Vec<Vec<u8>> = map.keys().collect();
        let mut visited = 0u64;
        for mut key in keys {
            let Some(value) = map.lookup_ptr(&key, cpu) else {
                continue;
            };
            visited += 1;
            let stop = ctx.with_region(&mut key, false, |ctx, key_addr| {
                ctx.call_function(2, a[1], [a[0], key_addr, value.as_ptr() as u64, a[2], 0])
            })?;
            if stop != 0 {
                break;
            }
        }
        Ok(visited)
    });
    register_helper(registry, H::Loop, |ctx, a| {
        if a[3] != 0 {
            return Ok(neg_errno(EINVAL));
        }
        if a[0] > moat_abi::MAX_LOOPS {
            return Ok(neg_errno(E2BIG));
        }
        let mut i = 0;
        while i < a[0] {
            let stop = ctx.call_function(2, a[1], [i, a[2], 0, 0, 0])?;
            i += 1;
            if stop != 0 {
                break;
            }
        }
        Ok(i)
    });
    register_helper(registry, H::SpinLock, |ctx, a| {
        let mut spins: u64 = 0;
        while ctx.compare_exchange_u32(1, a[0], 0, 1)? != 0 {
            spins += 1;
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            }
            if spins > 100_000_000 {
                return Err(HelperError::Failed("spin lock never released".into()));
            }
            std::hint::spin_loop();
        }
        Ok(0)
    });
    register_helper(registry, H::SpinUnlock, |ctx, a| {
        if ctx.compare_exchange_u32(1, a[0], 1, 0)? != 1 {
            return Err(HelperError::BadArgument {
                arg: 1,
                reason: "lock is not held".into(),
            });
        }
        Ok(0)
    });
}

/// How a tail-call refusal names a buffer program's verified input size.
fn verified_for(bytes: u64) -> String {
    if bytes == 0 {
        String::new()
    } else {
        format!(" verified for {bytes}-byte inputs")
    }
}
