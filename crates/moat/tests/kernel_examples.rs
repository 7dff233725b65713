//! The Linux kernel as the reference for the bundled C examples (`examples/c/*.o`).
//!
//! Each object is loaded twice: into moat with [`Runtime::load_object`], and into the kernel by hand —
//! parsed with [`Object::parse`], every [`MapSpec`] created with `BPF_MAP_CREATE` (global data written
//! at key 0), every program's `lddw` map references rewritten from map indices to the kernel maps'
//! descriptors (`map_idx(N)` → `BPF_PSEUDO_MAP_FD`, `map_idx_value(N, OFF)` → `BPF_PSEUDO_MAP_VALUE`)
//! and loaded as XDP with the object's license. Program arrays get the same handlers in both (slot 6 =
//! `handle_tcp`, slot 17 = `handle_udp`: a kernel program descriptor, a moat program id) and LPM tries
//! the same routes. Then the same packets go through both, one at a time (`BPF_PROG_TEST_RUN` with the
//! packet as `data_in` in the kernel, [`moat::LoadedProgram::run`] in moat, once per moat engine: the
//! interpreter, and the JIT where it is supported), and after every packet the return value, the
//! packet and every map's full contents are compared:
//!
//! * Return values: the kernel reports the low 32 bits of `r0` only, so moat's `r0` is compared on its
//!   low 32 bits (XDP verdicts are 32-bit; `globals` returns an `int`).
//! * Plain maps (arrays, hash maps, LPM tries) as sets of `(key, value)`: all keys from
//!   `BPF_MAP_GET_NEXT_KEY` in the kernel and [`moat::Map::keys`] in moat, each looked up.
//! * Per-CPU maps by the sum over CPUs of each `u64` counter: the kernel hands out
//!   `round_up(value_size, 8) × possible_cpus` bytes, moat the same layout with its own CPU count, and
//!   which CPU a run lands on is up to the scheduler in both.
//! * Program arrays as slot → program name (the kernel returns its program id, moat its program-table
//!   id; both are translated back to the handler's name).
//! * Ring buffers are not compared: reading the kernel's ring needs the consumer and producer pages
//!   `mmap`ed from the map descriptor, which `moat_kernel` does not offer (and `BPF_MAP_LOOKUP_ELEM` on
//!   a ring buffer is `ENOTSUPP`). The `events` example is compared on its return values and its
//!   `ignored` array, and moat's records are checked against the packets' IPv4 headers.
//!
//! One example cannot be loaded into the kernel this way: `loop` passes its callback to `bpf_loop`
//! with a `lddw BPF_PSEUDO_FUNC`, and the verifier accepts those only with BTF function info
//! ("missing btf func_info"), which needs `BPF_BTF_LOAD` plus `prog_btf_fd`/`func_info` in
//! `BPF_PROG_LOAD` — not (yet) in `moat_kernel::LoadOptions`. [`KERNEL_REJECTS`] lists it with the
//! verifier's message, so the test fails once the kernel accepts it; until then moat's results for it
//! are checked against the C source's promise (the sum of the packet's bytes, folded to 16 bits).
//!
//! The test prints `skipped: <reason>` and passes when `bpf()` is unusable here.

mod common;
use common::workspace_root as root;

use moat::{Engine, LoadedObject, MapType, Object, ObjectOptions, Runtime, BPF_ANY};
use moat_isa::Insn;
use moat_kernel::{create_map, load_program, KernelError, LoadOptions, ProgType};
use moat_obj::MapSpec;
use std::collections::{BTreeMap, BTreeSet};

/// The packets every example runs on, in order (each example starts with fresh maps).
const PACKETS: [&str; 5] = ["tcp.bin", "tcp.bin", "udp.bin", "arp.bin", "udp-10.1.bin"];

/// The examples: object file stem and the program the packets go through.
const EXAMPLES: [(&str, &str); 6] = [
    ("counter", "count_packets"),
    ("events", "emit_events"),
    ("tailcall", "dispatch"),
    ("globals", "use_globals"),
    ("loop", "sum_bytes"),
    ("lpm", "route"),
];

/// Examples the kernel refuses to load through `moat_kernel`, with a substring of the verifier's
/// message and why. The list must be exact: an example listed here that the kernel loads fails the
/// test.
const KERNEL_REJECTS: &[(&str, &str, &str)] = &[(
    "loop",
    "missing btf func_info",
    "the bpf_loop callback is a `lddw BPF_PSEUDO_FUNC`, which the verifier accepts only with BTF \
     function info; moat_kernel cannot load BTF",
)];

/// Program array slots: the handler program each slot holds.
const TAIL_SLOTS: [(u32, &str); 2] = [(6, "handle_tcp"), (17, "handle_udp")];

/// LPM routes: prefix length, address, next hop.
const ROUTES: [(u32, [u8; 4], u32); 3] = [
    (8, [10, 0, 0, 0], 1),
    (16, [10, 1, 0, 0], 2),
    (24, [192, 168, 1, 0], 3),
];

fn packet(name: &str) -> Vec<u8> {
    std::fs::read(root().join("examples/packets").join(name)).expect("sample packet")
}

/// An LPM trie key: prefix length in host order, then the address bytes.
fn lpm_key(prefix: u32, addr: [u8; 4]) -> Vec<u8> {
    let mut key = prefix.to_ne_bytes().to_vec();
    key.extend_from_slice(&addr);
    key
}

/// A map's contents in a form both runtimes can be compared in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// The value's bytes.
    Bytes(Vec<u8>),
    /// Per-CPU: each `u64` counter summed over the CPUs.
    Sums(Vec<u64>),
    /// Program array: the name of the program in the slot.
    Program(String),
}

type Contents = BTreeMap<Vec<u8>, Value>;

/// Sums each `u64` of a per-CPU value (`round_up(value_size, 8)` bytes per CPU) over the CPUs.
fn per_cpu_sums(bytes: &[u8], value_size: usize) -> Vec<u64> {
    assert_eq!(value_size % 8, 0, "per-CPU values compared as u64 counters");
    let mut sums = vec![0u64; value_size / 8];
    for cpu in bytes.chunks_exact(value_size) {
        for (sum, word) in sums.iter_mut().zip(cpu.chunks_exact(8)) {
            *sum += u64::from_ne_bytes(word.try_into().expect("8 bytes"));
        }
    }
    sums
}

/// What a looked-up value becomes for comparison, given the map's spec and the program id → name
/// table of its runtime.
fn value(spec: &MapSpec, bytes: Vec<u8>, programs: &BTreeMap<u32, String>) -> Value {
    let map_type = MapType::try_from(spec.map_type).expect("known map type");
    if map_type == MapType::ProgArray {
        let id = u32::from_ne_bytes(bytes.as_slice().try_into().expect("4-byte program id"));
        Value::Program(
            programs
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("unknown program id {id}")),
        )
    } else if map_type.is_percpu() {
        Value::Sums(per_cpu_sums(&bytes, spec.value_size as usize))
    } else {
        Value::Bytes(bytes)
    }
}

/// Whether the map's contents can be read through lookups (not a ring buffer).
fn comparable(spec: &MapSpec) -> bool {
    MapType::try_from(spec.map_type).is_ok_and(|t| t != MapType::RingBuf)
}

/// An example loaded into the kernel.
struct KernelObject {
    object: Object,
    maps: Vec<moat_kernel::Map>,
    programs: BTreeMap<String, moat_kernel::Program>,
    /// Kernel program id → name, for reading program arrays back.
    ids: BTreeMap<u32, String>,
}

/// A program's bytecode with its `lddw` map references pointing at the kernel maps.
fn kernel_bytecode(bytecode: &[u8], maps: &[moat_kernel::Map]) -> Vec<u8> {
    let fd = |index: i32| {
        let map = usize::try_from(index)
            .ok()
            .and_then(|i| maps.get(i))
            .unwrap_or_else(|| panic!("lddw refers to map {index}, which the object lacks"));
        map.fd()
    };
    let insns: Vec<Insn> = moat_isa::decode(bytecode)
        .expect("the object's programs decode")
        .into_iter()
        .map(|(_, insn)| insn)
        .collect();
    let insns = moat_kernel::map_indices_to_fds(&insns, fd);
    let out = moat_isa::encode(&insns);
    assert_eq!(out.len(), bytecode.len(), "rewriting keeps every slot");
    out
}

/// Loads an object into the kernel; `Err` is the verifier's log of the first program it refused.
fn kernel_load(bytes: &[u8]) -> Result<KernelObject, (String, String)> {
    let object = Object::parse(bytes).expect("the example parses");
    let mut maps = Vec::new();
    for spec in &object.maps {
        let map = create_map(
            spec.map_type,
            spec.key_size,
            spec.value_size,
            spec.max_entries,
            spec.flags,
        )
        .unwrap_or_else(|e| panic!("kernel map `{}`: {e}", spec.name));
        if !spec.data.is_empty() {
            map.update(&0u32.to_ne_bytes(), &spec.data, BPF_ANY)
                .unwrap_or_else(|e| panic!("kernel map `{}` initial data: {e}", spec.name));
        }
        maps.push(map);
    }
    let mut options = LoadOptions::new(ProgType::Xdp);
    options.license = object.license.clone().unwrap_or_else(|| "GPL".to_string());
    let mut programs = BTreeMap::new();
    for spec in &object.programs {
        match load_program(&kernel_bytecode(&spec.bytecode, &maps), &options) {
            Ok(prog) => {
                programs.insert(spec.name.clone(), prog);
            }
            Err(KernelError::Load { log, .. }) => return Err((spec.name.clone(), log)),
            Err(e) => panic!("kernel program `{}`: {e}", spec.name),
        }
    }
    Ok(KernelObject {
        object,
        maps,
        programs,
        ids: BTreeMap::new(),
    })
}

impl KernelObject {
    /// Fills program arrays and LPM tries as [`moat_setup`] does in moat.
    fn setup(&mut self) {
        for (spec, map) in self.object.maps.iter().zip(&self.maps) {
            match MapType::try_from(spec.map_type) {
                Ok(MapType::ProgArray) => {
                    for (slot, name) in TAIL_SLOTS {
                        let prog = &self.programs[name];
                        let key = slot.to_ne_bytes();
                        let fd = u32::try_from(prog.fd()).expect("descriptor");
                        map.update(&key, &fd.to_ne_bytes(), BPF_ANY)
                            .expect("kernel prog array slot");
                        // The kernel stores the descriptor's program and reads back its id.
                        let id = map
                            .lookup(&key)
                            .expect("kernel prog array lookup")
                            .expect("slot just set");
                        let id = u32::from_ne_bytes(id.try_into().expect("4-byte id"));
                        self.ids.insert(id, name.to_string());
                    }
                }
                Ok(MapType::LpmTrie) => {
                    for (prefix, addr, hop) in ROUTES {
                        map.update(&lpm_key(prefix, addr), &hop.to_ne_bytes(), BPF_ANY)
                            .expect("kernel route");
                    }
                }
                _ => {}
            }
        }
    }

    fn contents(&self, index: usize) -> Contents {
        let (spec, map) = (&self.object.maps[index], &self.maps[index]);
        let mut contents = Contents::new();
        for key in map.keys().expect("kernel next_key") {
            if let Some(bytes) = map.lookup(&key).expect("kernel lookup") {
                contents.insert(key, value(spec, bytes, &self.ids));
            }
        }
        contents
    }
}

/// Fills program arrays and LPM tries in moat; returns moat's program id → name table.
fn moat_setup(obj: &LoadedObject) -> BTreeMap<u32, String> {
    let mut ids = BTreeMap::new();
    for (spec, (_, map)) in obj.object().maps.iter().zip(obj.maps()) {
        match map.map_type() {
            MapType::ProgArray => {
                for (slot, name) in TAIL_SLOTS {
                    let id = obj.program(name).expect("handler").id();
                    map.update(&slot.to_ne_bytes(), &id.to_ne_bytes(), BPF_ANY)
                        .expect("moat prog array slot");
                    ids.insert(id, name.to_string());
                }
            }
            MapType::LpmTrie => {
                for (prefix, addr, hop) in ROUTES {
                    map.update(&lpm_key(prefix, addr), &hop.to_ne_bytes(), BPF_ANY)
                        .unwrap_or_else(|e| panic!("moat route in `{}`: {e}", spec.name));
                }
            }
            _ => {}
        }
    }
    ids
}

fn moat_contents(obj: &LoadedObject, index: usize, ids: &BTreeMap<u32, String>) -> Contents {
    let spec = &obj.object().maps[index];
    let (_, map) = obj.maps().nth(index).expect("map");
    let mut contents = Contents::new();
    for key in map.keys() {
        match map.lookup(&key) {
            Ok(bytes) => {
                contents.insert(key, value(spec, bytes, ids));
            }
            Err(moat::MapError::NotFound) => {}
            Err(e) => panic!("moat lookup in `{}`: {e}", spec.name),
        }
    }
    contents
}

/// Every key whose value differs between the two contents, described.
fn map_differences(what: &str, map: &str, kernel: &Contents, moat: &Contents) -> Vec<String> {
    let keys: BTreeSet<&Vec<u8>> = kernel.keys().chain(moat.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (k, m) = (kernel.get(key), moat.get(key));
            (k != m)
                .then(|| format!("{what}: map `{map}` key {key:02x?}: kernel {k:?}, moat {m:?}"))
        })
        .collect()
}

/// The ring-buffer record `events.bpf.c` writes for an IPv4 packet (`None` for other frames):
/// saddr, daddr, IP total length (host order), protocol, three zero bytes.
fn expected_event(packet: &[u8]) -> Option<Vec<u8>> {
    if packet.get(12..14)? != [0x08, 0x00] || packet.len() < 34 {
        return None;
    }
    let mut e = packet[26..34].to_vec();
    let tot_len = u16::from_be_bytes([packet[16], packet[17]]);
    e.extend_from_slice(&u32::from(tot_len).to_ne_bytes());
    e.extend_from_slice(&[packet[23], 0, 0, 0]);
    Some(e)
}

/// What the C source of `loop` promises: the packet's bytes summed, folded to 16 bits.
fn loop_model(packet: &[u8]) -> u64 {
    packet.iter().map(|&b| u64::from(b)).sum::<u64>() & 0xffff
}

/// Counts of one run of the whole comparison.
#[derive(Debug, Default)]
struct Tally {
    runs: usize,
    maps: usize,
    moat_only_runs: usize,
    records: usize,
    rejected: BTreeSet<String>,
    differences: Vec<String>,
}

/// Runs one example through moat only (the kernel refused it): results against the source's model.
fn moat_only(tally: &mut Tally, stem: &str, label: &str, program: &str, obj: &LoadedObject) {
    let prog = obj.program(program).expect("moat loads the program");
    for (i, name) in PACKETS.iter().enumerate() {
        let mut p = packet(name);
        let expected = match stem {
            "loop" => loop_model(&p),
            _ => panic!("{stem}: rejected by the kernel and no model to check moat against"),
        };
        tally.moat_only_runs += 1;
        match prog.run(&mut p) {
            Ok(r0) if r0 == expected => {}
            Ok(r0) => tally.differences.push(format!(
                "{label}: packet #{i} {name}: moat r0 {r0:#x}, the source promises {expected:#x}"
            )),
            Err(e) => tally
                .differences
                .push(format!("{label}: packet #{i} {name}: moat failed: {e}")),
        }
    }
}

/// Compares one example, run by moat with `engine`, with the kernel.
fn compare(tally: &mut Tally, stem: &str, program: &str, engine: Engine) {
    let bytes =
        std::fs::read(root().join("examples/c").join(format!("{stem}.o"))).expect("example object");
    let label = format!("{stem} ({engine:?})");
    let mut rt = Runtime::new();
    rt.set_engine(engine);
    let obj = rt
        .load_object(&bytes, ObjectOptions::default())
        .expect("moat loads the example");
    let moat_ids = moat_setup(&obj);
    let listed = KERNEL_REJECTS.iter().find(|(s, _, _)| *s == stem);
    let mut kernel = match (kernel_load(&bytes), listed) {
        (Ok(kernel), None) => kernel,
        (Ok(_), Some(_)) => {
            tally.differences.push(format!(
                "{stem}: listed in KERNEL_REJECTS, but the kernel now loads it: compare it"
            ));
            return;
        }
        (Err((prog, log)), Some((_, needle, _))) => {
            if !log.contains(needle) {
                tally.differences.push(format!(
                    "{stem}: the kernel refused `{prog}` without `{needle}`:\n{log}"
                ));
            }
            tally.rejected.insert(format!("{stem} ({needle})"));
            moat_only(tally, stem, &label, program, &obj);
            return;
        }
        (Err((prog, log)), None) => {
            tally
                .differences
                .push(format!("{stem}: the kernel refused `{prog}`:\n{log}"));
            return;
        }
    };
    kernel.setup();
    let kprog = &kernel.programs[program];
    let mprog = obj.program(program).expect("moat loads the program");
    assert_eq!(mprog.engine(), engine, "{label}: the engine asked for");
    let mut events = Vec::new();
    for (i, name) in PACKETS.iter().enumerate() {
        let what = format!("{label}: packet #{i} {name}");
        let input = packet(name);
        let run = kprog.test_run(&input, None, 1).expect("kernel test run");
        let mut moat_packet = input.clone();
        tally.runs += 1;
        match mprog.run(&mut moat_packet) {
            Ok(r0) if r0 as u32 == run.retval => {}
            Ok(r0) => tally
                .differences
                .push(format!("{what}: r0 kernel {:#x}, moat {r0:#x}", run.retval)),
            Err(e) => tally.differences.push(format!("{what}: moat failed: {e}")),
        }
        if run.data_out != moat_packet {
            tally.differences.push(format!(
                "{what}: packet after the run differs: kernel {:02x?}, moat {moat_packet:02x?}",
                run.data_out
            ));
        }
        events.extend(expected_event(&input));
        for (index, spec) in kernel.object.maps.iter().enumerate() {
            if !comparable(spec) {
                continue;
            }
            tally.maps += 1;
            tally.differences.extend(map_differences(
                &what,
                &spec.name,
                &kernel.contents(index),
                &moat_contents(&obj, index, &moat_ids),
            ));
        }
    }
    // The kernel's ring cannot be read here (see the module comment): moat's records are checked
    // against the packets instead, one per IPv4 packet, in order.
    for (spec, (_, map)) in kernel.object.maps.iter().zip(obj.maps()) {
        if comparable(spec) {
            continue;
        }
        let mut records = Vec::new();
        map.ringbuf_consume(&mut |r| records.push(r.to_vec()))
            .expect("moat ring consumer");
        tally.records += records.len();
        if records != events {
            tally.differences.push(format!(
                "{label}: ring buffer `{}`: moat's records {records:02x?}, expected {events:02x?}",
                spec.name
            ));
        }
    }
}

#[test]
fn kernel_and_moat_agree_on_the_c_examples() {
    if let Err(reason) = moat_kernel::available() {
        println!("skipped: {reason}");
        return;
    }
    let mut tally = Tally::default();
    let engines = [Engine::Interp, Engine::Jit];
    let engines: Vec<Engine> = engines.into_iter().filter(|e| e.is_supported()).collect();
    for (stem, program) in EXAMPLES {
        for &engine in &engines {
            compare(&mut tally, stem, program, engine);
        }
    }
    println!(
        "kernel examples: {} objects, {} runs, {} maps compared, {} differences (moat engines: {engines:?})",
        EXAMPLES.len(),
        tally.runs,
        tally.maps,
        tally.differences.len()
    );
    println!(
        "  kernel refused: {}; moat alone against the source: {} runs; moat ring records checked: {}",
        tally.rejected.iter().cloned().collect::<Vec<_>>().join(", "),
        tally.moat_only_runs,
        tally.records
    );
    assert!(
        tally.differences.is_empty(),
        "{} differences:\n{}",
        tally.differences.len(),
        tally.differences.join("\n")
    );
    assert_eq!(
        tally.rejected.len(),
        KERNEL_REJECTS.len(),
        "every listed rejection happened"
    );
}
