//! The shared-memory transport between ranks of one process (threads) and of several processes
//! (separate launches of this test binary): every size through eager and rendezvous, the MPSC
//! inbox under contention, hostile headers (property test), and a peer killed mid-stream whose rank
//! a new process takes over.

use moat_omb::{Comm, Geometry, OmbError};
use proptest::prelude::*;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A fresh region path (removed on drop).
struct TempRegion(PathBuf);

impl TempRegion {
    fn new(name: &str, g: &Geometry) -> TempRegion {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("moat-omb-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Comm::create(&path, g).unwrap();
        TempRegion(path)
    }
}

impl Drop for TempRegion {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A message whose bytes depend on its sequence number and length.
fn pattern(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect()
}

const SIZES: &[usize] = &[
    0,
    1,
    7,
    8,
    47,
    48,
    49,
    64,
    1000,
    8191,
    8192,
    8193,
    65536,
    200_000,
    1 << 20,
];

#[test]
fn every_size_goes_both_ways_between_threads() {
    let g = Geometry::default();
    let region = TempRegion::new("sizes", &g);
    let mut a = Comm::attach(&region.0, 0).unwrap();
    let path = region.0.clone();
    let echo = std::thread::spawn(move || {
        let mut b = Comm::attach(&path, 1).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..SIZES.len() * 3 {
            let n = b.recv(0, &mut buf).unwrap();
            b.send(0, &buf[..n]).unwrap();
        }
    });
    let mut buf = vec![0u8; 1 << 20];
    for round in 0..3u64 {
        for (i, &len) in SIZES.iter().enumerate() {
            let msg = pattern(round * 100 + i as u64, len);
            a.send(1, &msg).unwrap();
            let n = a.recv(1, &mut buf).unwrap();
            assert_eq!(n, len);
            assert!(buf[..n] == msg[..], "size {len} round {round}");
        }
    }
    echo.join().unwrap();
}

#[test]
fn a_stream_wraps_the_ring_many_times() {
    let g = Geometry {
        ring_slots: 64,
        eager_max: 1000,
        chunk_size: 4096,
        chunks: 2,
        ..Geometry::default()
    };
    let region = TempRegion::new("wrap", &g);
    let mut a = Comm::attach(&region.0, 0).unwrap();
    let path = region.0.clone();
    let sender = std::thread::spawn(move || {
        let mut b = Comm::attach(&path, 1).unwrap();
        for i in 0..3000u64 {
            b.send(0, &pattern(i, (i as usize * 37) % 9000)).unwrap();
        }
    });
    let mut buf = vec![0u8; 9000];
    for i in 0..3000u64 {
        let n = a.recv(1, &mut buf).unwrap();
        assert_eq!(n, (i as usize * 37) % 9000);
        assert!(buf[..n] == pattern(i, n)[..], "message {i}");
    }
    sender.join().unwrap();
}

#[test]
fn the_inbox_takes_posts_from_every_rank_in_order_per_rank() {
    let g = Geometry {
        inbox_cells: 16,
        ..Geometry::with_ranks(4)
    };
    let region = TempRegion::new("inbox", &g);
    let mut root = Comm::attach(&region.0, 0).unwrap();
    let posters: Vec<_> = (1..4)
        .map(|r| {
            let path = region.0.clone();
            std::thread::spawn(move || {
                let mut c = Comm::attach(&path, r).unwrap();
                for i in 0..500u32 {
                    c.post(0, &i.to_le_bytes()).unwrap();
                }
                c
            })
        })
        .collect();
    let mut next = [0u32; 4];
    let mut buf = [0u8; 48];
    for _ in 0..1500 {
        let (src, len) = root.take(&mut buf).unwrap();
        assert_eq!(len, 4);
        assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), next[src]);
        next[src] += 1;
    }
    assert_eq!(next, [0, 500, 500, 500]);
    let comms: Vec<Comm> = posters.into_iter().map(|p| p.join().unwrap()).collect();
    assert!(matches!(
        root.post(1, &[0; 49]),
        Err(OmbError::TooLarge { len: 49, max: 48 })
    ));
    drop(comms);
}

#[test]
fn a_rank_cannot_be_taken_twice_or_outside_the_world() {
    let g = Geometry::default();
    let region = TempRegion::new("owner", &g);
    let _a = Comm::attach(&region.0, 0).unwrap();
    assert!(matches!(
        Comm::attach(&region.0, 0),
        Err(OmbError::RankInUse { rank: 0, .. })
    ));
    assert!(matches!(
        Comm::attach(&region.0, 2),
        Err(OmbError::NoSuchRank { rank: 2, size: 2 })
    ));
    let junk = region.0.with_extension("junk");
    std::fs::write(&junk, [b'x'; 8192]).unwrap();
    assert!(matches!(
        Comm::attach(&junk, 0),
        Err(OmbError::BadHeader { field: "ready", .. } | OmbError::BadHeader { field: "magic", .. })
    ));
    std::fs::remove_file(&junk).unwrap();
}

/// What a hostile sender may put in a slot.
#[derive(Debug, Clone)]
struct Forged {
    seq: u64,
    hdr: u64,
    payload: Vec<u8>,
    buf: usize,
}

fn forged() -> impl Strategy<Value = Forged> {
    let seq = prop_oneof![Just(1u64), any::<u64>()];
    let kind = prop_oneof![Just(1u64), Just(2u64), any::<u32>().prop_map(u64::from)];
    let len = prop_oneof![0u64..100, 8100u64..8300, any::<u32>().prop_map(u64::from)];
    (
        seq,
        kind,
        len,
        prop::collection::vec(any::<u8>(), 0..64),
        0usize..10_000,
    )
        .prop_map(|(seq, kind, len, payload, buf)| Forged {
            seq,
            hdr: len | (kind << 32),
            payload,
            buf,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever a sender writes into a slot, the receiver returns a message no longer than its
    /// buffer or a typed error — it never panics, hangs or reads outside the ring.
    #[test]
    fn hostile_headers_are_rejected_with_a_typed_error(f in forged()) {
        let g = Geometry::default();
        let region = TempRegion::new(&format!("hostile-{}", f.seq % 1000), &g);
        let _a = Comm::attach(&region.0, 0).unwrap();
        let mut b = Comm::attach(&region.0, 1).unwrap();
        // A request to send names epoch 7, which this pair never had: it must abort, not wait.
        let mut payload = f.payload.clone();
        if f.hdr >> 32 == 2 {
            payload.resize(16, 0);
            payload[8..16].copy_from_slice(&7u64.to_le_bytes());
        }
        b.forge_slot(0, 0, [f.seq, f.hdr], &payload).unwrap();
        if f.seq != 1 {
            let r = b.recv(0, &mut vec![0; f.buf]);
            prop_assert!(matches!(r, Err(OmbError::MalformedHeader { src: 0, pos: 0, .. })), "{:?}", r);
            return Ok(());
        }
        let mut buf = vec![0u8; f.buf];
        match b.recv(0, &mut buf) {
            Ok(n) => {
                prop_assert!(n <= f.buf && n <= 8192);
                prop_assert_eq!(f.hdr >> 32, 1);
            }
            Err(OmbError::MalformedHeader { src: 0, pos: 0, .. })
            | Err(OmbError::Truncated { src: 0, .. })
            | Err(OmbError::Aborted { rank: 0, .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}

/// The role this process plays when launched by a test as a child, if any.
fn child_role() -> Option<(String, PathBuf)> {
    let role = std::env::var("MOAT_OMB_CHILD").ok()?;
    let path = std::env::var("MOAT_OMB_REGION").ok()?;
    Some((role, PathBuf::from(path)))
}

/// Entry point of child processes (does nothing in a normal test run).
#[test]
fn child() {
    let Some((role, path)) = child_role() else {
        return;
    };
    let mut c = Comm::attach(&path, 0).expect("child attaches as rank 0");
    match role.as_str() {
        // Streams numbered messages, eager and rendezvous, until killed.
        "stream" => {
            for i in 0u64.. {
                let len = if i % 3 == 0 { 300_000 } else { 100 };
                let mut msg = pattern(i, len);
                msg[..8].copy_from_slice(&i.to_le_bytes());
                c.send(1, &msg).unwrap();
            }
        }
        // Sends ten messages after recovering the dead rank's rings.
        "restart" => {
            for i in 0..10u64 {
                let mut msg = pattern(1000 + i, 5000 + 100_000 * (i as usize % 2));
                msg[..8].copy_from_slice(&(1000 + i).to_le_bytes());
                c.send(1, &msg).unwrap();
            }
            c.post(1, b"done").unwrap();
            // Stay alive until the parent has read everything.
            let mut buf = [0u8; 8];
            c.recv(1, &mut buf).unwrap();
        }
        // Claims an inbox cell and dies before publishing it.
        "stall" => {
            c.claim_and_stall(1).unwrap();
            std::process::exit(0);
        }
        _ => panic!("unknown child role {role}"),
    }
    std::process::exit(0);
}

fn spawn_child(role: &str, region: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("MOAT_OMB_CHILD", role)
        .env("MOAT_OMB_REGION", region)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_killed_sender_leaves_the_rings_recoverable() {
    if child_role().is_some() {
        return;
    }
    let g = Geometry::default();
    let region = TempRegion::new("kill", &g);
    let mut me = Comm::attach(&region.0, 1).unwrap();
    let mut first = spawn_child("stream", &region.0);
    let mut buf = vec![0u8; 1 << 20];
    // Read a while, checking every message, then kill the sender in the middle of its stream.
    for i in 0..60u64 {
        let n = me.recv(0, &mut buf).unwrap();
        assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), i);
        assert_eq!(n, if i % 3 == 0 { 300_000 } else { 100 });
        assert!(buf[8..n] == pattern(i, n)[8..]);
    }
    assert!(moat_omb::kill(first.id()));
    first.wait().unwrap();
    // What was published before the kill is still delivered, intact and in order; then the dead
    // peer is reported (an interrupted rendezvous as aborted).
    let t = Instant::now();
    let mut next = 60u64;
    loop {
        match me.recv(0, &mut buf) {
            Ok(n) => {
                assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), next);
                assert!(buf[8..n] == pattern(next, n)[8..]);
                next += 1;
            }
            Err(OmbError::PeerDead { rank: 0 }) | Err(OmbError::Aborted { rank: 0, .. }) => break,
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(t.elapsed() < Duration::from_secs(20));
    }
    // A new process takes rank 0 over, recovers, and the stream goes on.
    let mut second = spawn_child("restart", &region.0);
    let mut got = Vec::new();
    while got.len() < 10 {
        match me.recv(0, &mut buf) {
            Ok(n) => {
                let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                if seq < 1000 {
                    // Published by the first sender after our last read: still intact.
                    assert!(buf[8..n] == pattern(seq, n)[8..]);
                    continue;
                }
                assert!(buf[8..n] == pattern(seq, n)[8..]);
                got.push(seq);
            }
            Err(OmbError::PeerDead { rank: 0 }) | Err(OmbError::Aborted { rank: 0, .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(t.elapsed() < Duration::from_secs(30), "restart stalled");
    }
    assert_eq!(got, (1000..1010).collect::<Vec<_>>());
    let mut cell = [0u8; 48];
    assert_eq!(me.take(&mut cell).unwrap(), (0, 4));
    me.send(0, b"bye").unwrap();
    assert!(second.wait().unwrap().success());
}

#[test]
fn an_inbox_cell_claimed_by_a_dead_rank_is_skipped() {
    if child_role().is_some() {
        return;
    }
    let g = Geometry::with_ranks(3);
    let region = TempRegion::new("stall", &g);
    let mut me = Comm::attach(&region.0, 1).unwrap();
    let mut other = Comm::attach(&region.0, 2).unwrap();
    assert!(spawn_child("stall", &region.0).wait().unwrap().success());
    other.post(1, b"after").unwrap();
    let mut buf = [0u8; 48];
    let t = Instant::now();
    assert_eq!(me.take(&mut buf).unwrap(), (2, 5));
    assert_eq!(&buf[..5], b"after");
    assert!(t.elapsed() < Duration::from_secs(10));
}
