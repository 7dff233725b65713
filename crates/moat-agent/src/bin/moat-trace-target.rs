//! The bundled test program `moat trace` is tested against: `moat-trace-target N [threads]` calls
//! `target_add(i % 7, i)` N times and `target_work(i)` N / 10 times on each thread, prints what it
//! computed and exits with status 3, so tests can check that tracing changes neither.

use std::hint::black_box;

/// Adds; probed by the examples (`uprobe_count`).
#[no_mangle]
#[inline(never)]
pub extern "C" fn target_add(a: u64, b: u64) -> u64 {
    black_box(a).wrapping_add(black_box(b))
}

/// Does a little work; probed by the examples (`uretprobe_latency`).
#[no_mangle]
#[inline(never)]
pub extern "C" fn target_work(n: u64) -> u64 {
    let mut x = n;
    for i in 0..1000 {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

fn run(n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        sum = sum.wrapping_add(target_add(i % 7, i));
        if i % 10 == 0 {
            sum ^= target_work(i);
        }
    }
    sum
}

/// `malloc N`: N calls of the C library's `malloc` and `free`, nothing else.
fn mallocs(n: u64) {
    for i in 0..n {
        // The C library's allocator, called directly: exactly one malloc and one free per round.
        moat_agent::test_support::malloc_free(16 + (i as usize & 63));
    }
    println!("target: {n} mallocs");
}

/// `open N PATH`: N opens of PATH (each `openat`), nothing else.
fn opens(n: u64, path: &str) {
    let mut ok = 0;
    for _ in 0..n {
        ok += u64::from(std::fs::File::open(black_box(path)).is_ok());
    }
    println!("target: {ok} of {n} opens succeeded");
}

/// `serve MS`: calls `target_add` in batches of 1 000, sleeping 1 ms between batches, for MS
/// milliseconds (a process to inject into), then prints how many calls it made.
fn serve(ms: u64) {
    let start = std::time::Instant::now();
    let mut calls = 0u64;
    let mut sum = 0u64;
    while start.elapsed() < std::time::Duration::from_millis(ms) {
        for i in 0..1000 {
            sum = sum.wrapping_add(target_add(i % 7, i));
            calls += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    println!("target: served {calls} calls, sum {sum}");
    std::process::exit(3);
}

/// `churn THREADS`: THREADS threads (the main one among them) call the C library's `malloc` and
/// `free` in a tight loop until standard input ends, so that a thread interrupted at random is
/// likely inside the allocator (a process to inject into); then prints how many rounds they made
/// and exits with status 3.
fn churn(threads: u64) -> ! {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        DONE.store(true, Ordering::Relaxed);
    });
    let spin = || {
        let mut rounds = 0u64;
        while !DONE.load(Ordering::Relaxed) {
            for i in 0..256 {
                moat_agent::test_support::malloc_free(16 + (i & 1023));
            }
            rounds += 1;
        }
        rounds
    };
    let others: Vec<_> = (1..threads.max(1))
        .map(|_| std::thread::spawn(spin))
        .collect();
    let mut rounds = spin();
    for t in others {
        rounds += t.join().unwrap_or(0);
    }
    println!("target: churned {rounds} rounds");
    std::process::exit(3);
}

/// `crash N`: N calls of `target_add` and N / 10 of `target_work`, a pause of 1.5 s, then death
/// by `SIGSEGV`.
fn crash(n: u64) {
    black_box(run(n));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    moat_agent::test_support::crash();
}

/// `killed N`: N calls of `target_add` and N / 10 of `target_work`, then death by `SIGKILL`
/// (sent by `kill -9`) at once: nothing in the process gets to run after the calls.
fn killed(n: u64) {
    black_box(run(n));
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    // `kill` returned only once the signal was sent; it is delivered before this ends.
    std::thread::sleep(std::time::Duration::from_secs(10));
    std::process::exit(1);
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("crash") {
        crash(args.nth(1).and_then(|a| a.parse().ok()).unwrap_or(100));
    }
    if args.peek().map(String::as_str) == Some("killed") {
        killed(args.nth(1).and_then(|a| a.parse().ok()).unwrap_or(100));
    }
    if args.peek().map(String::as_str) == Some("serve") {
        serve(args.nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000));
    }
    if args.peek().map(String::as_str) == Some("churn") {
        churn(args.nth(1).and_then(|a| a.parse().ok()).unwrap_or(1));
    }
    if args.peek().map(String::as_str) == Some("open") {
        let n = args.nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
        let path = args.next().unwrap_or_else(|| "/".into());
        opens(n, &path);
        return;
    }
    if args.peek().map(String::as_str) == Some("malloc") {
        let n = args.nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
        mallocs(n);
        return;
    }
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let threads: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let handles: Vec<_> = (0..threads.saturating_sub(1))
        .map(|_| std::thread::spawn(move || run(n)))
        .collect();
    let mut total = run(n);
    for h in handles {
        total ^= h.join().unwrap_or(0);
    }
    println!("target: {n} calls x {threads} threads, result {total:#x}");
    std::process::exit(3);
}
