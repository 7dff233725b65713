//! Regression: `moat trace -p` interrupted the target's main thread wherever it was and made it
//! call `dlopen` and the agent there. A thread caught inside `malloc`/`free` (halfway through
//! its lock-free `tcache`, or holding its arena's lock) re-entered the allocator: the process
//! died with "double free detected in tcache 2" / "double free or corruption (out)", or hung.
//! One caught in the agent's own probe code could have that probe detached under it. Now the
//! thread is only used at a safe point. Here every thread of the target mallocs and frees in a
//! tight loop while the agent is injected and detached again and again (alternately an object
//! whose probes fire inside `malloc` and `free`); the target must survive every round and end
//! normally.

use moat_agent::control::{alive, attach_running, Options};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TARGET: &str = env!("CARGO_BIN_EXE_moat-trace-target");

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/c")
        .join(name)
}

#[test]
fn injecting_into_threads_busy_in_malloc_never_corrupts_the_heap() {
    let mut child = Command::new(TARGET)
        .args(["churn", "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("target starts");
    let pid = child.id() as i32;
    std::thread::sleep(Duration::from_millis(100));
    let objects = ["uprobe_count.o", "malloc_free.o"];
    for round in 0..8 {
        let object = objects[round % objects.len()];
        let start = Instant::now();
        let outcome = attach_running(
            &Options {
                object: example(object),
                ..Options::default()
            },
            pid,
            &mut Vec::new(),
            &mut || start.elapsed() > Duration::from_millis(100),
        );
        match outcome {
            Ok(o) => assert!(
                o.records.contains(&moat_agent::protocol::Record::Detached),
                "round {round} ({object}): detached"
            ),
            Err(e) if round == 0 && e.to_string().contains("Operation not permitted") => {
                println!("skipped: ptrace not permitted here ({e})");
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Err(e) => {
                let _ = child.kill();
                // The target may have been reaped already, by the injector's `waitpid`.
                let status = child.wait_with_output().map(|o| o.status);
                panic!("round {round} ({object}): {e}; target ended: {status:?}");
            }
        }
        assert!(alive(pid), "the target survived round {round} ({object})");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("target ends");
    assert_eq!(out.status.code(), Some(3), "the target ended normally");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("target: churned "));
}
