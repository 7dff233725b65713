//! The bundled C examples (`examples/c/*.o`, built by `make -C examples/c`) run in moat with the
//! results their sources promise, on the sample packets of `examples/packets/`.

mod common;
use common::workspace_root as root;

use moat::{LoadedObject, ObjectOptions, Runtime, BPF_ANY};

const XDP_DROP: u64 = 1;
const XDP_PASS: u64 = 2;
const XDP_TX: u64 = 3;

fn object(rt: &Runtime, name: &str) -> LoadedObject {
    let bytes = std::fs::read(root().join("examples/c").join(name)).expect("example object");
    rt.load_object(&bytes, ObjectOptions::default())
        .expect("loads")
}

fn packet(name: &str) -> Vec<u8> {
    std::fs::read(root().join("examples/packets").join(name)).expect("sample packet")
}

fn u32_key(k: u32) -> [u8; 4] {
    k.to_ne_bytes()
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[test]
fn counter_counts_packets_and_bytes_per_protocol() {
    let rt = Runtime::new();
    let obj = object(&rt, "counter.o");
    let prog = obj.program("count_packets").expect("program");
    for name in ["tcp.bin", "tcp.bin", "udp.bin", "arp.bin"] {
        assert_eq!(prog.run(&mut packet(name)).expect("runs"), XDP_PASS);
    }
    let counters = obj.map("counters").expect("map");
    let tcp = counters.lookup(&u32_key(6)).expect("tcp");
    assert_eq!(
        (u64_at(&tcp, 0), u64_at(&tcp, 8)),
        (2, 2 * packet("tcp.bin").len() as u64)
    );
    let udp = counters.lookup(&u32_key(17)).expect("udp");
    assert_eq!(u64_at(&udp, 0), 1);
    let other = counters.lookup(&u32_key(0)).expect("non-IP");
    assert_eq!(
        (u64_at(&other, 0), u64_at(&other, 8)),
        (1, packet("arp.bin").len() as u64)
    );
}

#[test]
fn events_reach_the_host_through_the_ring_buffer() {
    let rt = Runtime::new();
    let obj = object(&rt, "events.o");
    let prog = obj.program("emit_events").expect("program");
    assert_eq!(prog.run(&mut packet("udp.bin")).expect("runs"), XDP_PASS);
    assert_eq!(prog.run(&mut packet("arp.bin")).expect("runs"), XDP_PASS);
    let mut events = Vec::new();
    obj.map("events")
        .expect("ringbuf")
        .ringbuf_consume(&mut |e| events.push(e.to_vec()))
        .expect("consume");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(&e[0..4], &[10, 0, 0, 1], "saddr");
    assert_eq!(&e[4..8], &[192, 168, 1, 7], "daddr");
    assert_eq!(
        u32::from_ne_bytes(e[8..12].try_into().expect("len")),
        40,
        "IP total length"
    );
    assert_eq!(e[12], 17, "protocol");
    assert_eq!(
        u64_at(
            &obj.map("ignored")
                .expect("map")
                .lookup(&u32_key(0))
                .expect("value"),
            0
        ),
        1
    );
}

#[test]
fn tail_calls_dispatch_per_protocol() {
    let rt = Runtime::new();
    let obj = object(&rt, "tailcall.o");
    let handlers = obj.map("handlers").expect("prog array");
    for (slot, name) in [(6u32, "handle_tcp"), (17, "handle_udp")] {
        let id = obj.program(name).expect("handler").id();
        handlers
            .update(&u32_key(slot), &id.to_ne_bytes(), BPF_ANY)
            .expect("set slot");
    }
    let dispatch = obj.program("dispatch").expect("program");
    assert_eq!(
        dispatch.run(&mut packet("tcp.bin")).expect("runs"),
        XDP_DROP
    );
    assert_eq!(dispatch.run(&mut packet("udp.bin")).expect("runs"), XDP_TX);
    assert_eq!(
        dispatch.run(&mut packet("arp.bin")).expect("runs"),
        XDP_PASS
    );
    let seen = obj.map("seen").expect("map");
    let count = |slot| u64_at(&seen.lookup(&u32_key(slot)).expect("value"), 0);
    assert_eq!((count(0), count(6), count(17)), (2, 1, 1));
}

#[test]
fn globals_live_in_data_rodata_and_bss() {
    let rt = Runtime::new();
    let obj = object(&rt, "globals.o");
    let prog = obj.program("use_globals").expect("program");
    let len = packet("udp.bin").len() as u64;
    assert_eq!(
        prog.run(&mut packet("udp.bin")).expect("runs"),
        len * 3 + 100
    );
    assert_eq!(
        prog.run(&mut packet("udp.bin")).expect("runs"),
        len * 3 + 101
    );
    let bss = obj.map(".bss").expect(".bss");
    assert_eq!(u64_at(&bss.lookup(&u32_key(0)).expect("value"), 0), len);
}

#[test]
fn bpf_loop_sums_the_packet() {
    let rt = Runtime::new();
    let obj = object(&rt, "loop.o");
    let prog = obj.program("sum_bytes").expect("program");
    let mut p = packet("tcp.bin");
    let expected = p.iter().map(|&b| u64::from(b)).sum::<u64>() & 0xffff;
    assert_eq!(prog.run(&mut p).expect("runs"), expected);
}

#[test]
fn lpm_routes_by_longest_prefix() {
    let rt = Runtime::new();
    let obj = object(&rt, "lpm.o");
    let routes = obj.map("routes").expect("trie");
    let route = |prefix: u32, addr: [u8; 4]| {
        let mut key = prefix.to_ne_bytes().to_vec();
        key.extend_from_slice(&addr);
        key
    };
    routes
        .update(&route(8, [10, 0, 0, 0]), &1u32.to_ne_bytes(), BPF_ANY)
        .expect("route");
    routes
        .update(&route(16, [10, 1, 0, 0]), &2u32.to_ne_bytes(), BPF_ANY)
        .expect("route");
    routes
        .update(&route(24, [192, 168, 1, 0]), &3u32.to_ne_bytes(), BPF_ANY)
        .expect("route");
    let prog = obj.program("route").expect("program");
    assert_eq!(prog.run(&mut packet("udp.bin")).expect("runs"), 3);
    assert_eq!(prog.run(&mut packet("udp-10.1.bin")).expect("runs"), 2);
    assert_eq!(prog.run(&mut packet("arp.bin")).expect("runs"), 0);
}

#[test]
fn request_filter_policy_allows_denies_and_counts() {
    let mut rt = Runtime::new();
    rt.set_buffer_size(76);
    let bytes = std::fs::read(root().join("examples/c/request_filter.o")).expect("object");
    let obj = rt
        .load_object(
            &bytes,
            ObjectOptions {
                prog_type: Some(moat::ProgType::Buffer),
            },
        )
        .expect("loads");
    let policy = obj.program("filter").expect("program");
    assert!(
        policy.verified().is_some(),
        "verified against the 76-byte request"
    );
    obj.map("admins")
        .expect("map")
        .update(&[10, 0, 0, 1], &[1], BPF_ANY)
        .expect("admin");
    let request = |ip: [u8; 4], path: &str| {
        let mut b = ip.to_vec();
        b.extend_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(&(path.len() as u32).to_ne_bytes());
        let mut p = [0u8; 64];
        p[..path.len()].copy_from_slice(path.as_bytes());
        b.extend_from_slice(&p);
        b
    };
    let verdicts: Vec<u64> = [
        ([10, 0, 0, 1], "/admin/users"),
        ([10, 0, 0, 2], "/index.html"),
        ([10, 0, 0, 2], "/admin/delete"),
        ([10, 0, 0, 2], "/about"),
        ([10, 0, 0, 2], "/contact"),
    ]
    .iter()
    .map(|(ip, path)| policy.run(&mut request(*ip, path)).expect("runs"))
    .collect();
    assert_eq!(
        verdicts,
        [1, 1, 0, 1, 0],
        "admin path for admins only; three requests per client"
    );
}
