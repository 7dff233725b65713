//! The load builder (`Runtime::open_object`, issue 20): before the load, a program array gets its
//! slots, a trie its routes and `.rodata` its configuration, so the bundled tail-call, LPM and
//! globals examples do what their sources promise; sections libbpf does not know, program types
//! and helpers moat cannot run fail the load by name.

use moat::{Error, Runtime};

fn example(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../examples/c/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("example")
}

fn packet(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../examples/packets/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("packet")
}

#[test]
fn prog_array_slots_set_before_the_load_make_tail_calls_happen() {
    let rt = Runtime::new();
    let mut open = rt.open_object(&example("tailcall.o")).expect("opens");
    open.set_prog_array_slot("handlers", 6, "handle_tcp")
        .expect("slot 6");
    open.set_prog_array_slot("handlers", 17, "handle_udp")
        .expect("slot 17");
    let obj = open.load().expect("loads");
    let dispatch = obj.program("dispatch").expect("dispatch");
    // XDP_DROP from handle_tcp, XDP_TX from handle_udp.
    assert_eq!(dispatch.run(&mut packet("tcp.bin")).expect("tcp"), 1);
    assert_eq!(dispatch.run(&mut packet("udp.bin")).expect("udp"), 3);
    assert!(matches!(
        rt.open_object(&example("tailcall.o"))
            .expect("opens")
            .set_prog_array_slot("seen", 0, "handle_tcp"),
        Err(Error::BadValue { .. })
    ));
}

#[test]
fn trie_entries_and_globals_set_before_the_load() {
    let rt = Runtime::new();
    let mut open = rt.open_object(&example("lpm.o")).expect("opens");
    let (_, key_type) = {
        let spec = open.object().map("routes").expect("routes");
        (
            spec.name.clone(),
            spec.key_type.clone().expect("BTF key type"),
        )
    };
    let key = key_type
        .parse("{prefixlen: 24, addr: 192.168.1.0}")
        .expect("key");
    open.set_map_entry("routes", &key, &7u32.to_ne_bytes())
        .expect("route");
    let obj = open.load().expect("loads");
    assert_eq!(
        obj.program("route")
            .expect("route")
            .run(&mut packet("tcp.bin"))
            .expect("runs"),
        7
    );

    let mut open = rt.open_object(&example("globals.o")).expect("opens");
    open.set_global_text("multiplier", "10")
        .expect("multiplier");
    assert!(matches!(
        open.set_global("nope", &[0]),
        Err(Error::NoSuchGlobal { .. })
    ));
    assert!(matches!(
        open.set_global("multiplier", &[0]),
        Err(Error::BadValue { .. })
    ));
    let obj = open.load().expect("loads");
    let len = packet("tcp.bin").len() as u64;
    assert_eq!(
        obj.program("use_globals")
            .expect("prog")
            .run(&mut packet("tcp.bin"))
            .expect("runs"),
        len * 10 + 100
    );
    assert!(matches!(obj.map("nope"), Err(Error::NoSuchMap { .. })));
}

#[test]
fn buffer_programs_of_objects_are_verified_for_their_btf_context() {
    let rt = Runtime::new();
    let obj = rt
        .open_object(&example("request_filter.o"))
        .expect("opens")
        .load()
        .expect("loads");
    let filter = obj
        .program("filter")
        .expect("moat/ sections are buffer programs");
    assert!(
        filter.verified().is_some(),
        "verified for the 76-byte struct request"
    );
}

#[test]
fn verify_and_load_report_each_program_as_it_comes() {
    let rt = Runtime::new();
    let bytes = example("tailcall.o");
    let mut seen = Vec::new();
    let verdicts = rt
        .verify_object_each(&bytes, moat::ObjectOptions::default(), |name, verdict| {
            seen.push((name.to_string(), verdict.is_ok()));
        })
        .expect("parses");
    let expected: Vec<(String, bool)> = verdicts
        .iter()
        .map(|(name, verdict)| (name.clone(), verdict.is_ok()))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(seen.len(), 3, "{seen:?}");
    let mut loaded = Vec::new();
    let obj = rt
        .open_object(&bytes)
        .expect("opens")
        .load_each(|name, result| loaded.push((name.to_string(), result.is_ok())))
        .expect("loads");
    let expected: Vec<(String, bool)> = obj
        .programs()
        .map(|(name, result)| (name.to_string(), result.is_ok()))
        .collect();
    assert_eq!(loaded, expected);
}

#[test]
fn verifying_alone_refuses_program_types_moat_does_not_support() {
    // fentry, fexit and lsm programs read kernel BTF-typed arguments: `verify_object` used to take
    // them for kprobe or buffer programs and reject a pointer read inside them.
    let verdicts = Runtime::new()
        .verify_object(&example("fentry.o"), moat::ObjectOptions::default())
        .expect("parses");
    let sections: Vec<(String, String)> = verdicts
        .iter()
        .map(|(name, verdict)| match verdict {
            Err(Error::UnsupportedProgType {
                program, section, ..
            }) => {
                assert_eq!(program, name);
                (name.clone(), section.clone())
            }
            other => panic!("{name}: {other:?}"),
        })
        .collect();
    assert_eq!(
        sections,
        [
            ("on_connect".into(), "fentry/tcp_connect".into()),
            ("after_connect".into(), "fexit/tcp_connect".into()),
            ("check_connect".into(), "lsm/socket_connect".into()),
        ]
    );
}

/// `set_map_memory`: the counter example's hash map in shared memory, over its domain's range, is
/// updated by the program and read by a `SharedMap` as the program's host-side view shows it.
#[test]
fn maps_in_memory_of_the_embedders_choice_are_read_from_their_files() {
    use moat::{MapMemory, SharedMap, SharedMemory};
    use std::sync::Arc;
    let dir = std::env::temp_dir().join(format!("moat-open-object-shm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("directory");
    let rt = Runtime::new();
    let mut open = rt.open_object(&example("counter.o")).expect("opens");
    let hook_dir = dir.clone();
    let hook_calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = hook_calls.clone();
    open.set_map_memory(Arc::new(move |index, def, inner| {
        calls
            .lock()
            .expect("lock")
            .push((index, def.name.clone(), inner.is_some()));
        let memory: Arc<dyn MapMemory> = SharedMemory::new(&hook_dir, format!("m{index}"), inner);
        Some(memory)
    }));
    let obj = open.load().expect("loads");
    assert_eq!(
        *hook_calls.lock().expect("lock"),
        [(
            0,
            "counters".to_string(),
            rt.isolation() != moat::Isolation::None
        )]
    );
    let prog = obj.program("count_packets").expect("program");
    for name in ["tcp.bin", "udp.bin", "tcp.bin"] {
        assert_eq!(prog.run(&mut packet(name)).expect("runs"), 2);
    }
    let map = obj.map("counters").expect("map");
    SharedMap::publish(map, &dir, "m0").expect("published");
    let reader = SharedMap::open(&dir, "m0").expect("opens");
    let want: Vec<(Vec<u8>, Vec<u8>)> = map
        .keys()
        .map(|k| {
            let v = map.lookup(&k).expect("present");
            (k, v)
        })
        .collect();
    assert_eq!(want.len(), 2, "TCP and UDP");
    assert_eq!(reader.entries(), want);
    drop(obj);
    let _ = std::fs::remove_dir_all(&dir);
}
