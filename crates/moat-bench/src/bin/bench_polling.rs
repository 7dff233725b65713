//! The cost of the JIT's polling points (issue 12): each JIT benchmark program, verified, compiled
//! with and without polling points (a load and a branch at every loop back-edge and call) and run
//! side by side in alternated batches; the table gives both times, the overhead and its geometric
//! mean. Run: `cargo run --release -p moat-bench --bin bench_polling [MILLIS]` (default 200 ms
//! batches, 9 rounds, the fastest batch of each).

use moat_bench::jit_programs;
use moat_bench::timing::{calibrate, time_batch};
use moat_exec::{HelperRegistry, Linked, NoMaps, ProgramRunner};
use moat_jit::{CodeOptions, Confinement, JitProgram};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const ROUNDS: usize = 9;

fn main() {
    let batch = Duration::from_millis(
        std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(200),
    );
    println!("| program | without polling ns/run | with polling ns/run | overhead |");
    println!("|---|--:|--:|--:|");
    let mut log_sum = 0.0;
    let mut count = 0.0;
    for p in jit_programs() {
        let mut rt = moat::Runtime::new();
        rt.set_isolation(moat::Isolation::None);
        rt.set_buffer_size(p.input.len() as u64);
        let loaded = rt.load_bytecode(&p.bytecode).expect("loads");
        let proofs = loaded.verified().expect("verified").proven_accesses();
        let linked = Arc::new(
            Linked::new(loaded.program(), &HelperRegistry::new(), &NoMaps).expect("links"),
        );
        let fallback: Arc<dyn ProgramRunner> =
            Arc::new(moat_interp::Prepared::lower(linked.clone()).expect("lowers"));
        let compile = |polling| {
            let options = CodeOptions {
                polling,
                ..CodeOptions::new(Confinement::Unconfined)
            };
            JitProgram::new(linked.clone(), fallback.clone(), &proofs, &options).expect("compiles")
        };
        let (plain, polled) = (compile(false), compile(true));
        let mut inputs = [p.input.clone(), p.input.clone()];
        for (jit, input) in [&plain, &polled].into_iter().zip(&mut inputs) {
            assert_eq!(jit.run(input).expect("runs"), p.expected, "{}", p.name);
        }
        let [a, b] = &mut inputs;
        let mut run_plain = || {
            black_box(plain.run(black_box(a)).ok());
        };
        let mut run_polled = || {
            black_box(polled.run(black_box(b)).ok());
        };
        let iters = calibrate(batch, &mut run_plain);
        let (mut best_plain, mut best_polled) = (f64::MAX, f64::MAX);
        for _ in 0..ROUNDS {
            best_plain = best_plain.min(time_batch(iters, &mut run_plain));
            best_polled = best_polled.min(time_batch(iters, &mut run_polled));
        }
        let ratio = best_polled / best_plain;
        log_sum += ratio.ln();
        count += 1.0;
        println!(
            "| {} | {best_plain:.1} | {best_polled:.1} | {:+.1} % |",
            p.name,
            (ratio - 1.0) * 100.0
        );
    }
    println!(
        "| geometric mean | | | {:+.1} % |",
        ((log_sum / count).exp() - 1.0) * 100.0
    );
}
