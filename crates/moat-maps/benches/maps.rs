//! Host-side map throughput: hash lookup and update on 1 and 2 threads, array lookup, and ring buffer
//! output with a consumer draining it.
//!
//! Run briefly with `cargo bench -p moat-maps --bench maps -- --quick`.
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use moat_maps::{Map, MapDef, MapType, BPF_ANY};
use std::hint::black_box;
use std::time::{Duration, Instant};

const KEYS: u32 = 10_000;

fn hash_map() -> Map {
    let m = Map::create(MapDef::new(MapType::Hash, 4, 8, KEYS)).expect("valid map");
    for k in 0..KEYS {
        m.update(&k.to_ne_bytes(), &u64::from(k).to_ne_bytes(), BPF_ANY)
            .expect("fits");
    }
    m
}

/// Runs `op(i)` `iters` times on each of `threads` threads and returns the wall time, so the result is
/// the time per operation as seen by one thread.
fn on_threads(threads: u64, iters: u64, op: &(dyn Fn(u64) + Sync)) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..iters {
                    op(i.wrapping_mul(2654435761).wrapping_add(t));
                }
            });
        }
    });
    start.elapsed()
}

fn hash(c: &mut Criterion) {
    let m = hash_map();
    let mut g = c.benchmark_group("hash");
    for threads in [1u64, 2] {
        g.bench_with_input(BenchmarkId::new("lookup", threads), &threads, |b, &n| {
            b.iter_custom(|iters| {
                on_threads(n, iters, &|i| {
                    let mut out = [0u8; 8];
                    let k = (i % u64::from(KEYS)) as u32;
                    black_box(m.lookup_into(&k.to_ne_bytes(), &mut out).is_ok());
                })
            })
        });
        g.bench_with_input(
            BenchmarkId::new("lookup_ptr", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|iters| {
                    on_threads(n, iters, &|i| {
                        let k = (i % u64::from(KEYS)) as u32;
                        black_box(m.lookup_ptr(&k.to_ne_bytes(), 0));
                    })
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("update", threads), &threads, |b, &n| {
            b.iter_custom(|iters| {
                on_threads(n, iters, &|i| {
                    let k = (i % u64::from(KEYS)) as u32;
                    black_box(
                        m.update(&k.to_ne_bytes(), &i.to_ne_bytes(), BPF_ANY)
                            .is_ok(),
                    );
                })
            })
        });
    }
    g.finish();
}

fn array(c: &mut Criterion) {
    let m = Map::create(MapDef::new(MapType::Array, 4, 8, KEYS)).expect("valid map");
    let mut g = c.benchmark_group("array");
    let mut i = 0u32;
    g.bench_function("lookup_ptr", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(m.lookup_ptr(&i.to_ne_bytes(), 0))
        })
    });
    g.bench_function("lookup", |b| {
        let mut out = [0u8; 8];
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(m.lookup_into(&i.to_ne_bytes(), &mut out).is_ok())
        })
    });
    g.finish();
}

fn ringbuf(c: &mut Criterion) {
    let m = Map::create(MapDef::new(MapType::RingBuf, 0, 0, 1 << 20)).expect("valid map");
    let record = [7u8; 64];
    let mut g = c.benchmark_group("ringbuf");
    g.throughput(Throughput::Bytes(record.len() as u64));
    g.bench_function("output_64B", |b| {
        b.iter(|| {
            if m.ringbuf_output(&record, 0).is_err() {
                m.ringbuf_consume(&mut |r: &[u8]| {
                    black_box(r);
                })
                .expect("single consumer");
                m.ringbuf_output(&record, 0).expect("room after draining");
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = hash, array, ringbuf
}
criterion_main!(benches);
