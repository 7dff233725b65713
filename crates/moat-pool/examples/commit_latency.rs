//! Commit latency of the smallest transaction — overwrite one 8-byte value, commit durably — in every
//! durability and protection mode, for BENCHMARKS.md's side-by-side with PMDK (`benches/pmdk/tx.c`).
//!
//! `cargo run --release -p moat-pool --example commit_latency [N]`

use moat_pool::{CreateOptions, Durability, MapDef, OpenOptions, Pool, Protection, BPF_ANY};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), moat_pool::PoolError> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let shm = PathBuf::from("/dev/shm");
    let disk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let modes = [
        ("tmpfs", &shm, Durability::Flush, Protection::None),
        ("tmpfs", &shm, Durability::Flush, Protection::Mprotect),
        ("tmpfs", &shm, Durability::Flush, Protection::TempMapping),
        ("tmpfs", &shm, Durability::Msync, Protection::None),
        ("disk", &disk, Durability::Msync, Protection::None),
    ];
    for (fs, dir, durability, protection) in modes {
        let path = dir.join(format!("moat-commit-{}.pool", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Pool::create(&path, &CreateOptions::with_size(8 << 20))?;
        let pool = Pool::open_with(
            &path,
            &OpenOptions {
                durability,
                protection,
            },
        )?;
        let m = pool.create_map(&MapDef::new("m", 4, 8, 16))?;
        m.update(&0u32.to_le_bytes(), &0u64.to_le_bytes(), BPF_ANY)?;
        let iters = if fs == "disk" { (n / 30).max(100) } else { n };
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for i in 0..iters {
                m.update(&0u32.to_le_bytes(), &i.to_le_bytes(), BPF_ANY)?;
            }
            best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
        }
        println!(
            "moat-pool tx (update one 8-byte value + commit), {fs}, {durability:?}, {protection:?}: {best:.0} ns/tx (best of 5 x {iters}), flush {:?}",
            pool.mode().flush
        );
        drop(m);
        drop(pool);
        std::fs::remove_file(&path).ok();
    }
    Ok(())
}
