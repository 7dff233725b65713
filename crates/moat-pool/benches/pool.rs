//! Persistent map throughput against moat-maps' in-memory hash map, the cost of each stray-write
//! protection mode and durability mode, transaction commit latency, and recovery time against the
//! length of the interrupted transaction's log.
//!
//! Run with `cargo bench -p moat-pool --bench pool` (add `-- --quick` for a short run). Pools live on
//! `/dev/shm` (tmpfs) unless `MOAT_POOL_BENCH_DIR` names another directory; the `msync` variant uses
//! `target/` (an ordinary disk file system).
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use moat_maps::{Map, MapDef as MemDef, MapType};
use moat_pool::{CreateOptions, Durability, MapDef, OpenOptions, Pool, Protection, BPF_ANY};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const KEYS: u32 = 10_000;

fn dir() -> PathBuf {
    let d = std::env::var_os("MOAT_POOL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/shm"));
    let d = d.join(format!("moat-pool-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}

fn disk_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/moat-pool-bench")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&d).expect("disk dir");
    d
}

/// A pool with map `m` (4-byte keys, 8-byte values) holding keys `0..KEYS`.
fn filled(path: &Path, opts: &OpenOptions) -> Pool {
    let _ = std::fs::remove_file(path);
    Pool::create(path, &CreateOptions::with_size(8 << 20)).expect("create");
    let pool = Pool::open_with(path, opts).expect("open");
    let m = pool.create_map(&MapDef::new("m", 4, 8, KEYS)).expect("map");
    pool.transaction(|tx| {
        for k in 0..KEYS {
            tx.update(&m, &k.to_ne_bytes(), &u64::from(k).to_ne_bytes(), BPF_ANY)?;
        }
        Ok(())
    })
    .or_else(|_| {
        // The default log is too small for one 10 000-insert transaction: insert in batches.
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(100) {
            pool.transaction(|tx| {
                for &k in chunk {
                    tx.update(&m, &k.to_ne_bytes(), &u64::from(k).to_ne_bytes(), BPF_ANY)?;
                }
                Ok(())
            })?;
        }
        Ok::<(), moat_pool::PoolError>(())
    })
    .expect("fill");
    drop(m);
    pool
}

fn mem_map() -> Map {
    let m = Map::create(MemDef::new(MapType::Hash, 4, 8, KEYS)).expect("map");
    for k in 0..KEYS {
        m.update(
            &k.to_ne_bytes(),
            &u64::from(k).to_ne_bytes(),
            moat_maps::BPF_ANY,
        )
        .expect("fits");
    }
    m
}

fn key(i: u64) -> [u8; 4] {
    ((i.wrapping_mul(2_654_435_761) % u64::from(KEYS)) as u32).to_ne_bytes()
}

fn variants() -> Vec<(&'static str, PathBuf, OpenOptions)> {
    let d = dir();
    let flush = |protection| OpenOptions {
        durability: Durability::Flush,
        protection,
    };
    vec![
        (
            "flush+mprotect",
            d.join("a.pool"),
            flush(Protection::Mprotect),
        ),
        (
            "flush+tempmap",
            d.join("b.pool"),
            flush(Protection::TempMapping),
        ),
        (
            "flush+unprotected",
            d.join("c.pool"),
            flush(Protection::None),
        ),
        (
            "msync-disk+mprotect",
            disk_dir().join("d.pool"),
            OpenOptions {
                durability: Durability::Msync,
                protection: Protection::Mprotect,
            },
        ),
    ]
}

fn update_lookup(c: &mut Criterion) {
    let mem = mem_map();
    let mut g = c.benchmark_group("update");
    g.bench_function("in-memory moat-maps", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(
                mem.update(&key(i), &i.to_ne_bytes(), moat_maps::BPF_ANY)
                    .is_ok(),
            )
        })
    });
    for (name, path, opts) in variants() {
        let pool = filled(&path, &opts);
        let m = pool.map("m").expect("map");
        g.bench_function(BenchmarkId::new("pool", name), |b| {
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                black_box(m.update(&key(i), &i.to_ne_bytes(), BPF_ANY).is_ok())
            })
        });
        drop(m);
        drop(pool);
        let _ = std::fs::remove_file(&path);
    }
    g.finish();

    let mut g = c.benchmark_group("lookup");
    g.bench_function("in-memory moat-maps", |b| {
        let mut i = 0u64;
        let mut out = [0u8; 8];
        b.iter(|| {
            i += 1;
            black_box(mem.lookup_into(&key(i), &mut out).is_ok())
        })
    });
    let (_, path, opts) = variants().swap_remove(0);
    let pool = filled(&path, &opts);
    let m = pool.map("m").expect("map");
    g.bench_function("pool", |b| {
        let mut i = 0u64;
        let mut out = [0u8; 8];
        b.iter(|| {
            i += 1;
            black_box(m.lookup_into(&key(i), &mut out).is_ok())
        })
    });
    g.finish();

    // Commit latency of a transaction of n in-place 8-byte updates.
    let mut g = c.benchmark_group("commit");
    for n in [1u64, 10, 100] {
        g.bench_with_input(BenchmarkId::new("updates", n), &n, |b, &n| {
            let mut i = 0u64;
            b.iter(|| {
                pool.transaction(|tx| {
                    for _ in 0..n {
                        i += 1;
                        tx.update(&m, &key(i), &i.to_ne_bytes(), BPF_ANY)?;
                    }
                    Ok(())
                })
                .expect("commit")
            })
        });
    }
    g.finish();
    drop(m);
    drop(pool);
    let _ = std::fs::remove_file(&path);
}

/// Opening a pool whose last transaction (of `n` updates) was interrupted: mapping, lock takeover,
/// rollback of `n` records, log scrub and directory checks. The interrupted state is made by leaking
/// a transaction and copying the file, then clearing the lock word in the copy.
fn recovery(c: &mut Criterion) {
    let d = dir();
    let mut g = c.benchmark_group("recovery");
    g.sample_size(20);
    for n in [0u64, 10, 100, 1000] {
        let src = d.join(format!("rec-src-{n}.pool"));
        let _ = std::fs::remove_file(&src);
        Pool::create(
            &src,
            &CreateOptions {
                log_size: 1 << 20,
                ..CreateOptions::with_size(8 << 20)
            },
        )
        .expect("create");
        {
            let pool = Pool::open_with(
                &src,
                &OpenOptions {
                    durability: Durability::Flush,
                    protection: Protection::None,
                },
            )
            .expect("open");
            let m = pool.create_map(&MapDef::new("m", 4, 8, KEYS)).expect("map");
            for k in 0..KEYS {
                m.update(&k.to_ne_bytes(), &[0; 8], BPF_ANY).expect("fill");
            }
            let mut tx = pool.begin().expect("begin");
            for i in 0..n {
                tx.update(&m, &key(i * 7 + 1), &i.to_ne_bytes(), BPF_ANY)
                    .expect("update");
            }
            std::mem::forget(tx); // The "crash": the lock stays held, the log pending.
            std::mem::forget(m);
            std::mem::forget(pool);
        }
        let copy = d.join(format!("rec-{n}.pool"));
        g.bench_with_input(BenchmarkId::new("records", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    std::fs::copy(&src, &copy).expect("copy");
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&copy)
                        .expect("open");
                    f.write_all_at(&[0u8; 8], 4096).expect("clear lock word");
                    drop(f);
                    let t = Instant::now();
                    let pool = Pool::open_with(
                        &copy,
                        &OpenOptions {
                            durability: Durability::Flush,
                            protection: Protection::Mprotect,
                        },
                    )
                    .expect("recovers");
                    total += t.elapsed();
                    assert!(n == 0 || pool.recovered().rolled_back as u64 >= n.min(1));
                }
                total
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&d);
}

criterion_group!(benches, update_lookup, recovery);
criterion_main!(benches);
