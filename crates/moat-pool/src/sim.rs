//! A simulated persistence domain for crash testing (test builds only), in the manner of PMTest and Yat.
//!
//! [`SimMedia`] is a pool in a `Vec<u8>` that records every store (split into aligned 8-byte words, the
//! unit x86 persists atomically), every cache-line flush and every fence the pool code makes.
//! [`Replay`] replays such a trace and, at any point, enumerates the images a power failure could leave:
//! each cache line holds its last *guaranteed* content (flushed, then fenced) or any later version of it
//! (a line may be evicted at any moment, with whatever it held then; stores to one line persist in
//! order). The tests run a random workload, crash it after every store and fence, recover every image
//! (bounded: all combinations when few, else a random sample plus the all-old and all-new extremes),
//! and require the recovered pool to be consistent and to hold exactly the state before or after the
//! transaction in flight — after it once `commit` has returned. A crash during recovery is simulated
//! the same way.

use crate::core::{Core, MapRef, NewMap};
use crate::error::PoolError;
use crate::layout::{state_word, Header, STATE_IDLE};
use crate::media::Media;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

/// One recorded persistence event.
#[derive(Debug, Clone)]
pub enum Op {
    /// An aligned store of at most 8 bytes within one word.
    Store { off: u64, data: Vec<u8> },
    /// A write-back of the lines covering the range.
    Flush { off: u64, len: u64 },
    /// `sfence`.
    Fence,
}

/// A pool image in memory that records what the pool code does to it.
#[derive(Debug)]
pub struct SimMedia {
    mem: RefCell<Vec<u8>>,
    trace: RefCell<Option<Vec<Op>>>,
    lock: AtomicU64,
}

impl SimMedia {
    /// Media holding `image`, not recording.
    pub fn new(image: Vec<u8>) -> SimMedia {
        SimMedia {
            mem: RefCell::new(image),
            trace: RefCell::new(None),
            lock: AtomicU64::new(0),
        }
    }

    /// Starts recording (dropping any earlier trace).
    pub fn record(&self) {
        *self.trace.borrow_mut() = Some(Vec::new());
    }

    /// The trace so far.
    pub fn trace(&self) -> Vec<Op> {
        self.trace.borrow().clone().unwrap_or_default()
    }

    /// The number of events recorded so far.
    pub fn trace_len(&self) -> usize {
        self.trace.borrow().as_ref().map_or(0, Vec::len)
    }

    /// A copy of the current (volatile) contents.
    pub fn image(&self) -> Vec<u8> {
        self.mem.borrow().clone()
    }

    fn push(&self, op: Op) {
        if let Some(t) = self.trace.borrow_mut().as_mut() {
            t.push(op);
        }
    }

    fn range(&self, off: u64, len: usize) -> Result<std::ops::Range<usize>, PoolError> {
        let start = usize::try_from(off).map_err(|_| PoolError::corrupt("sim", off, "range"))?;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.mem.borrow().len())
            .ok_or_else(|| PoolError::corrupt("pool range", off, "lies outside the file"))?;
        Ok(start..end)
    }
}

impl Media for SimMedia {
    fn len(&self) -> u64 {
        self.mem.borrow().len() as u64
    }

    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), PoolError> {
        let r = self.range(off, buf.len())?;
        buf.copy_from_slice(&self.mem.borrow()[r]);
        Ok(())
    }

    fn write(&self, off: u64, data: &[u8]) -> Result<(), PoolError> {
        let r = self.range(off, data.len())?;
        self.mem.borrow_mut()[r].copy_from_slice(data);
        // Record word by word.
        let mut i = 0usize;
        while i < data.len() {
            let at = off + i as u64;
            let n = ((8 - at % 8) as usize).min(data.len() - i);
            self.push(Op::Store {
                off: at,
                data: data[i..i + n].to_vec(),
            });
            i += n;
        }
        Ok(())
    }

    fn zero(&self, off: u64, len: u64) -> Result<(), PoolError> {
        self.write(off, &vec![0u8; len as usize])
    }

    fn flush(&self, off: u64, len: u64) {
        self.push(Op::Flush { off, len });
    }

    fn fence(&self) -> Result<(), PoolError> {
        self.push(Op::Fence);
        Ok(())
    }

    fn lock_word(&self) -> &AtomicU64 {
        &self.lock
    }

    fn open_window(&self) -> Result<(), PoolError> {
        Ok(())
    }

    fn close_window(&self) -> Result<(), PoolError> {
        Ok(())
    }

    fn seal(&self, _: u64, _: u64) -> Result<(), PoolError> {
        Ok(())
    }
}

/// A cache line's history since its last guaranteed-persistent content.
#[derive(Debug, Clone)]
struct Line {
    /// Contents after each store since then.
    versions: Vec<[u8; 64]>,
    /// How many of `versions` a flush has captured (persistent at the next fence).
    flushed: usize,
}

/// Replays a trace and enumerates crash images.
#[derive(Debug)]
pub struct Replay {
    persisted: Vec<u8>,
    cur: Vec<u8>,
    lines: BTreeMap<u64, Line>,
}

impl Replay {
    /// Starts from a fully persistent `base`.
    pub fn new(base: Vec<u8>) -> Replay {
        Replay {
            persisted: base.clone(),
            cur: base,
            lines: BTreeMap::new(),
        }
    }

    fn line_of(buf: &[u8], line: u64) -> [u8; 64] {
        let mut l = [0u8; 64];
        let s = (line * 64) as usize;
        l.copy_from_slice(&buf[s..s + 64]);
        l
    }

    /// Applies one event.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Store { off, data } => {
                let s = *off as usize;
                self.cur[s..s + data.len()].copy_from_slice(data);
                let line = off / 64;
                let v = Self::line_of(&self.cur, line);
                self.lines
                    .entry(line)
                    .or_insert(Line {
                        versions: Vec::new(),
                        flushed: 0,
                    })
                    .versions
                    .push(v);
            }
            Op::Flush { off, len } => {
                if *len == 0 {
                    return;
                }
                let (a, b) = (off / 64, (off + len - 1) / 64);
                for (_, l) in self.lines.range_mut(a..=b) {
                    l.flushed = l.versions.len();
                }
            }
            Op::Fence => {
                let mut clean = Vec::new();
                for (&n, l) in self.lines.iter_mut() {
                    if l.flushed > 0 {
                        let v = l.versions[l.flushed - 1];
                        let s = (n * 64) as usize;
                        self.persisted[s..s + 64].copy_from_slice(&v);
                        l.versions.drain(..l.flushed);
                        l.flushed = 0;
                        if l.versions.is_empty() {
                            clean.push(n);
                        }
                    }
                }
                for n in clean {
                    self.lines.remove(&n);
                }
            }
        }
    }

    /// Up to `limit` images a crash now could leave (always including all-old and all-new).
    pub fn images(&self, limit: usize, rng: &mut u64) -> Vec<Vec<u8>> {
        let lines: Vec<(&u64, &Line)> = self.lines.iter().collect();
        let radix: Vec<u64> = lines
            .iter()
            .map(|(_, l)| l.versions.len() as u64 + 1)
            .collect();
        let total = radix.iter().try_fold(1u64, |a, &r| a.checked_mul(r));
        let mut choices: Vec<Vec<u64>> = Vec::new();
        match total {
            Some(t) if t <= limit as u64 => {
                for mut x in 0..t {
                    choices.push(
                        radix
                            .iter()
                            .map(|&r| {
                                let c = x % r;
                                x /= r;
                                c
                            })
                            .collect(),
                    );
                }
            }
            _ => {
                choices.push(vec![0; radix.len()]);
                choices.push(radix.iter().map(|r| r - 1).collect());
                for _ in 2..limit {
                    choices.push(radix.iter().map(|&r| next(rng) % r).collect());
                }
            }
        }
        choices
            .into_iter()
            .map(|c| {
                let mut img = self.persisted.clone();
                for ((&n, l), &pick) in lines.iter().zip(&c) {
                    if pick > 0 {
                        let s = (n * 64) as usize;
                        img[s..s + 64].copy_from_slice(&l.versions[pick as usize - 1]);
                    }
                }
                img
            })
            .collect()
    }
}

/// splitmix64.
pub fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A freshly created pool's image for header `h` (what `Pool::create` writes).
pub fn fresh_image(h: &Header) -> Vec<u8> {
    let mut img = vec![0u8; h.pool_size as usize];
    img[..256].copy_from_slice(&h.encode());
    let s = h.log_off as usize;
    img[s..s + 8].copy_from_slice(&state_word(0, STATE_IDLE).to_le_bytes());
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Principal;
    use crate::core::{BPF_ANY, BPF_EXIST, BPF_NOEXIST};
    use crate::layout::PAGE;

    /// Map name → its contents.
    type State = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

    fn small_header() -> Header {
        // 8 KiB log, 4 directory entries, a few heap pages.
        Header::plan(15 * PAGE, 2 * PAGE, 4, [9; 16], 0, 0, 0).expect("fits")
    }

    fn owner() -> Principal {
        Principal { uid: 0, tag: None }
    }

    fn mref(core: &Core<SimMedia>, name: &str) -> Option<MapRef> {
        core.directory()
            .expect("directory")
            .into_iter()
            .find(|(_, e)| e.name == name)
            .map(|(idx, e)| MapRef {
                idx,
                extent_off: e.extent_off,
                name: e.name,
                principal: owner(),
            })
    }

    /// The full logical state of a pool.
    fn state_of(core: &Core<SimMedia>) -> State {
        let mut s = State::new();
        let tx = core.begin().expect("begin");
        for (idx, e) in core.directory().expect("directory") {
            let r = MapRef {
                idx,
                extent_off: e.extent_off,
                name: e.name.clone(),
                principal: owner(),
            };
            s.insert(
                e.name,
                tx.entries(&r).expect("entries").into_iter().collect(),
            );
        }
        s
    }

    /// Opens `img` as `open` would and checks it fully; returns its state.
    fn recover(img: Vec<u8>, h: &Header) -> Result<State, PoolError> {
        let h2 = Header::decode(&img, img.len() as u64)?;
        assert_eq!(&h2, h, "the header never changes");
        let core = Core::new(SimMedia::new(img), h2);
        core.attach()?;
        {
            let _g = core.lock()?;
            core.verify_locked()?;
        }
        Ok(state_of(&core))
    }

    /// One transaction of the workload, applied to the pool and to the model.
    fn step(core: &Core<SimMedia>, model: &mut State, rng: &mut u64, i: usize) {
        let key = |rng: &mut u64| (next(rng) % 8) as u32;
        let kind = next(rng) % 10;
        let mut tx = core.begin().expect("begin");
        let mut next_model = model.clone();
        let mut ok = true;
        // A map is created first, a second one later, and deleted and recreated towards the end.
        let plan: Vec<&str> = if i == 0 {
            vec!["create m"]
        } else if i == 3 {
            vec!["create big"]
        } else if i == 14 {
            vec!["drop big"]
        } else if i == 16 {
            vec!["create big"]
        } else {
            match kind {
                0..=3 => vec!["update"],
                4..=5 => vec!["delete"],
                6..=7 => vec!["update", "update", "delete"],
                8 => vec!["update", "abort"],
                _ => vec!["update big", "update", "delete big"],
            }
        };
        for what in plan {
            let r = match what {
                "create m" => tx
                    .create_map(
                        &NewMap {
                            name: "m".into(),
                            key_size: 4,
                            value_size: 8,
                            max_entries: 6,
                            acl: vec![],
                        },
                        owner(),
                    )
                    .map(|_| {
                        next_model.insert("m".into(), BTreeMap::new());
                    }),
                "create big" => tx
                    .create_map(
                        &NewMap {
                            name: "big".into(),
                            key_size: 4,
                            value_size: 72,
                            max_entries: 3,
                            acl: vec![],
                        },
                        owner(),
                    )
                    .map(|_| {
                        next_model.insert("big".into(), BTreeMap::new());
                    }),
                "drop big" => {
                    let r = mref(core, "big").expect("big");
                    tx.delete_map(&r).map(|()| {
                        next_model.remove("big");
                    })
                }
                "update" | "update big" => {
                    let name = if what == "update" { "m" } else { "big" };
                    let Some(r) = mref(core, name) else { continue };
                    let k = key(rng).to_le_bytes().to_vec();
                    let size = if name == "m" { 8 } else { 72 };
                    let v: Vec<u8> = (0..size)
                        .map(|j| (next(rng) as u8).wrapping_add(j))
                        .collect();
                    let flags =
                        [BPF_ANY, BPF_ANY, BPF_NOEXIST, BPF_EXIST][(next(rng) % 4) as usize];
                    let m = next_model.get_mut(name).expect("map in model");
                    let expect_ok = match flags {
                        BPF_NOEXIST => !m.contains_key(&k),
                        BPF_EXIST => m.contains_key(&k),
                        _ => true,
                    } && (m.contains_key(&k)
                        || m.len() < if name == "m" { 6 } else { 3 });
                    let res = tx.update(&r, &k, &v, flags);
                    assert_eq!(
                        res.is_ok(),
                        expect_ok,
                        "{what} {k:?} flags {flags}: {res:?}"
                    );
                    if res.is_ok() {
                        m.insert(k, v);
                    }
                    Ok(())
                }
                "delete" | "delete big" => {
                    let name = if what == "delete" { "m" } else { "big" };
                    let Some(r) = mref(core, name) else { continue };
                    let k = key(rng).to_le_bytes().to_vec();
                    let m = next_model.get_mut(name).expect("map in model");
                    let res = tx.delete(&r, &k);
                    assert_eq!(res.is_ok(), m.remove(&k).is_some(), "delete {k:?}");
                    Ok(())
                }
                "abort" => {
                    ok = false;
                    Ok(())
                }
                _ => Ok(()),
            };
            r.expect("workload step");
        }
        if ok {
            tx.commit().expect("commit");
            *model = next_model;
        } else {
            tx.abort().expect("abort");
        }
    }

    /// Runs the workload with recording on; returns the base image, the trace, the states after each
    /// transaction (`states[0]` = before the first) and where each transaction ended in the trace.
    fn record(seed: u64, txs: usize) -> (Vec<u8>, Vec<Op>, Vec<State>, Vec<usize>) {
        let h = small_header();
        let core = Core::new(SimMedia::new(fresh_image(&h)), h);
        core.attach().expect("fresh pool attaches");
        let base = core.m.image();
        core.m.record();
        let mut rng = seed;
        let mut model = State::new();
        let mut states = vec![model.clone()];
        let mut ends = Vec::new();
        for i in 0..txs {
            step(&core, &mut model, &mut rng, i);
            assert_eq!(state_of(&core), model, "volatile state after tx {i}");
            states.push(model.clone());
            ends.push(core.m.trace_len());
        }
        (base, core.m.trace(), states, ends)
    }

    fn images_per_point() -> usize {
        std::env::var("MOAT_POOL_SIM_IMAGES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(6)
    }

    /// Crashes recovery itself, at every event of its own trace, and checks the end result is the same.
    fn crash_recovery(img: &[u8], h: &Header, want: &State, rng: &mut u64) {
        let core = Core::new(SimMedia::new(img.to_vec()), *h);
        core.m.record();
        core.attach().expect("recovers");
        let trace = core.m.trace();
        let mut replay = Replay::new(img.to_vec());
        for op in &trace {
            replay.apply(op);
            if matches!(op, Op::Flush { .. }) {
                continue;
            }
            for again in replay.images(2, rng) {
                let got = recover(again, h).expect("recovery after a crash in recovery");
                assert_eq!(&got, want, "crash during recovery changed the outcome");
            }
        }
    }

    fn check_all_crash_points(seed: u64, txs: usize) -> (usize, usize) {
        let h = small_header();
        let (base, trace, states, ends) = record(seed, txs);
        let limit = images_per_point();
        let mut rng = seed ^ 0xabcdef;
        let mut replay = Replay::new(base);
        let (mut points, mut images) = (0, 0);
        let mut nested = 0;
        for p in 0..=trace.len() {
            if p > 0 {
                replay.apply(&trace[p - 1]);
                if matches!(trace[p - 1], Op::Flush { .. }) {
                    continue; // A flush alone changes no crash image.
                }
            }
            let done = ends.iter().take_while(|&&e| e <= p).count();
            let at_end = p == 0 || ends.contains(&p);
            points += 1;
            for img in replay.images(limit, &mut rng) {
                images += 1;
                let got = recover(img.clone(), &h).unwrap_or_else(|e| {
                    panic!(
                        "seed {seed}: crash at event {p} (after {done} txs): recovery failed: {e}"
                    )
                });
                let before = &states[done];
                let after = states.get(done + 1);
                let ok = got == *before || (!at_end && after == Some(&got));
                assert!(
                    ok,
                    "seed {seed}: crash at event {p} (after {done} txs, at_end {at_end}): \
                     recovered {got:?}\nbefore {before:?}\nafter {after:?}"
                );
                // Crash recovery itself, for a sample of images that needed work.
                if nested < 40 && !at_end && next(&mut rng).is_multiple_of(16) {
                    nested += 1;
                    crash_recovery(&img, &h, &got, &mut rng);
                }
            }
        }
        (points, images)
    }

    #[test]
    fn every_crash_image_recovers_to_a_committed_state() {
        let seeds: u64 = std::env::var("MOAT_POOL_SIM_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let mut total = (0, 0);
        for seed in 0..seeds {
            let (p, i) = check_all_crash_points(seed * 7919 + 1, 20);
            total.0 += p;
            total.1 += i;
        }
        eprintln!(
            "sim: {} crash points, {} images recovered",
            total.0, total.1
        );
        assert!(total.1 > 10_000, "the enumeration ran");
    }

    /// The enumeration itself: unflushed and flushed-but-unfenced lines may or may not persist; fenced
    /// flushed lines always do.
    #[test]
    fn replay_models_flush_and_fence() {
        let mut r = Replay::new(vec![0u8; 256]);
        r.apply(&Op::Store {
            off: 0,
            data: vec![1; 8],
        });
        r.apply(&Op::Store {
            off: 64,
            data: vec![2; 8],
        });
        r.apply(&Op::Flush { off: 0, len: 8 });
        let imgs = r.images(100, &mut 1);
        assert_eq!(imgs.len(), 4, "two uncertain lines");
        r.apply(&Op::Fence);
        let imgs = r.images(100, &mut 1);
        assert_eq!(imgs.len(), 2, "line 0 is now certain");
        assert!(imgs.iter().all(|i| i[0] == 1));
        assert!(imgs.iter().any(|i| i[64] == 0) && imgs.iter().any(|i| i[64] == 2));
        // Two stores to one line: three possible contents, in order.
        r.apply(&Op::Store {
            off: 128,
            data: vec![3; 8],
        });
        r.apply(&Op::Store {
            off: 136,
            data: vec![4; 8],
        });
        let imgs = r.images(100, &mut 1);
        assert_eq!(imgs.len(), 6);
        assert!(
            !imgs.iter().any(|i| i[128] == 0 && i[136] == 4),
            "stores to a line persist in order"
        );
    }

    /// A torn or corrupt log is never applied blindly: a record with a bad checksum in a committed log
    /// is reported, naming the record and offset, and nothing is written.
    #[test]
    fn corrupt_committed_log_is_reported_not_applied() {
        let h = small_header();
        let core = Core::new(SimMedia::new(fresh_image(&h)), h);
        core.attach().expect("attach");
        let mut tx = core.begin().expect("begin");
        let r = tx
            .create_map(
                &NewMap {
                    name: "m".into(),
                    key_size: 4,
                    value_size: 8,
                    max_entries: 4,
                    acl: vec![],
                },
                owner(),
            )
            .expect("create");
        tx.commit().expect("commit");
        let mut tx = core.begin().expect("begin");
        tx.update(&r, &[1, 0, 0, 0], &[1; 8], BPF_ANY)
            .expect("update");
        tx.commit().expect("commit");
        let mut tx = core.begin().expect("begin");
        tx.delete(&r, &[1, 0, 0, 0]).expect("delete");
        // Simulate a crash right after the commit point: state COMMITTED, FREE record pending.
        std::mem::forget(tx);
        let mut img = core.m.image();
        let gen = crate::layout::parse_state_word(u64::from_le_bytes(
            img[h.log_off as usize..h.log_off as usize + 8]
                .try_into()
                .expect("8"),
        ))
        .expect("state")
        .0;
        img[h.log_off as usize..h.log_off as usize + 8]
            .copy_from_slice(&state_word(gen, crate::layout::STATE_COMMITTED).to_le_bytes());
        // Intact, it recovers and completes the free.
        let ok = recover(img.clone(), &h).expect("recovers");
        assert!(ok["m"].is_empty());
        // With the second record's data damaged, recovery refuses and names it.
        let rec1 = h.records_off() as usize + 56 + 8; // after record 0 (UNDO of 8 bytes)
        img[rec1 + 20] ^= 0xff;
        let before = img.clone();
        match recover(img.clone(), &h) {
            Err(PoolError::Corrupt { what, offset, .. }) => {
                assert_eq!(what, "log record 1");
                assert_eq!(offset, rec1 as u64);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        // Attach wrote nothing to the damaged image.
        let core = Core::new(SimMedia::new(img), h);
        assert!(core.attach().is_err());
        assert!(core.m.image() == before, "a corrupt pool is not made worse");
    }
}
