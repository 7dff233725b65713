//! The pool's cross-process lock (`docs/pool-format.md` §3): one 64-bit word in the pool holding the
//! holder thread's id and start time, taken over from a holder that died.

use crate::error::PoolError;
use crate::sys;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a waiter checks whether the holder is still alive.
const LIVENESS_EVERY: Duration = Duration::from_millis(2);

/// What `/proc/<tid>/stat` says about a thread: its state letter and start time (clock ticks since boot).
pub(crate) fn thread_stat(tid: u32) -> Option<(u8, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything; fields after it are plain.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // After the state (field 3), start time is field 22: 18 fields further.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// This thread's lock word: `tid | (start_time_low32 << 32)`, computed once per thread.
pub fn my_word() -> u64 {
    thread_local! {
        static WORD: u64 = {
            let tid = sys::gettid();
            let start = thread_stat(tid).map_or(0, |(_, s)| s);
            u64::from(tid) | ((start & 0xffff_ffff) << 32)
        };
    }
    WORD.with(|w| *w)
}

/// Whether the thread recorded in lock word `word` is certainly dead (exited, a zombie, or its thread
/// id reused by a thread that started at another time).
pub fn holder_dead(word: u64) -> bool {
    let tid = (word & 0xffff_ffff) as u32;
    match thread_stat(tid) {
        None => true,
        Some((state, start)) => matches!(state, b'Z' | b'X') || (start & 0xffff_ffff) != word >> 32,
    }
}

/// How a lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The lock was free.
    Free,
    /// The lock was taken over from a dead holder: the caller must run recovery first.
    Stolen,
}

/// Takes the lock in `word`, waiting for a live holder and taking over from a dead one.
///
/// Returns [`PoolError::Deadlock`] if this thread holds it already.
pub fn acquire(word: &AtomicU64) -> Result<Acquired, PoolError> {
    let me = my_word();
    let mut spins = 0u32;
    let mut last_check = Instant::now();
    loop {
        let cur = word.load(Ordering::Acquire);
        if cur == 0 {
            if word
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Acquired::Free);
            }
            continue;
        }
        if cur == me {
            return Err(PoolError::Deadlock);
        }
        spins = spins.saturating_add(1);
        if spins < 64 {
            std::hint::spin_loop();
        } else if spins < 256 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
        if spins >= 64 && last_check.elapsed() >= LIVENESS_EVERY {
            last_check = Instant::now();
            if holder_dead(cur)
                && word
                    .compare_exchange(cur, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(Acquired::Stolen);
            }
        }
    }
}

/// Releases the lock if this thread holds it.
pub fn release(word: &AtomicU64) {
    let _ = word.compare_exchange(my_word(), 0, Ordering::Release, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_thread_is_alive_and_made_up_holders_are_dead() {
        let me = my_word();
        assert!(!holder_dead(me));
        // Same tid, another start time: a reused id.
        assert!(holder_dead(me ^ (1 << 40)));
        // A tid above pid_max cannot exist.
        assert!(holder_dead(0x7fff_fff0));
    }

    #[test]
    fn lock_excludes_threads_and_detects_reentry() {
        let word = AtomicU64::new(0);
        assert!(matches!(acquire(&word), Ok(Acquired::Free)));
        assert!(matches!(acquire(&word), Err(PoolError::Deadlock)));
        let held = std::sync::atomic::AtomicBool::new(true);
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                // Waits until the main thread releases, then holds it itself.
                let got = acquire(&word);
                assert!(!held.load(Ordering::SeqCst), "acquired while held");
                release(&word);
                got
            });
            std::thread::sleep(Duration::from_millis(20));
            held.store(false, Ordering::SeqCst);
            release(&word);
            assert!(matches!(t.join().expect("joins"), Ok(Acquired::Free)));
        });
        assert_eq!(word.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_dead_holders_lock_is_stolen() {
        // A holder word naming a thread that cannot exist.
        let word = AtomicU64::new(0x7fff_fff0 | (5 << 32));
        assert!(matches!(acquire(&word), Ok(Acquired::Stolen)));
        assert_eq!(word.load(Ordering::SeqCst), my_word());
        release(&word);
    }
}
