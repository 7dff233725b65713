//! The interposer's `bpf(2)` commands called as a libbpf tool calls them, with attributes laid
//! out as `union bpf_attr` and pointers into this process: maps (elements, batches, an mmapable
//! array read through its own descriptor), programs (accepted, and rejected with moat's verifier
//! log in the caller's buffer), BTF, object info, pinning, and descriptors moat does not own.

use moat_interpose::server::bpf;
use std::os::fd::RawFd;

const MAP_CREATE: u32 = 0;
const LOOKUP: u32 = 1;
const UPDATE: u32 = 2;
const DELETE: u32 = 3;
const NEXT_KEY: u32 = 4;
const PROG_LOAD: u32 = 5;
const INFO: u32 = 15;
const BTF_LOAD: u32 = 18;
const LOOKUP_BATCH: u32 = 24;
const UPDATE_BATCH: u32 = 26;

/// A `bpf_attr` being filled.
struct A(Vec<u8>);

impl A {
    fn new() -> A {
        A(vec![0; 160])
    }
    fn u32(mut self, off: usize, v: u32) -> A {
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, off: usize, v: u64) -> A {
        self.0[off..off + 8].copy_from_slice(&v.to_le_bytes());
        self
    }
    fn name(mut self, off: usize, name: &str) -> A {
        self.0[off..off + name.len()].copy_from_slice(name.as_bytes());
        self
    }
    fn call(&mut self, cmd: u32) -> Option<i64> {
        bpf(cmd, self.0.as_mut_ptr() as u64, self.0.len() as u32)
    }
}

fn ptr<T>(v: &[T]) -> u64 {
    v.as_ptr() as u64
}

fn create(map_type: u32, key: u32, value: u32, max: u32, flags: u32, name: &str) -> i64 {
    A::new()
        .u32(0, map_type)
        .u32(4, key)
        .u32(8, value)
        .u32(12, max)
        .u32(16, flags)
        .name(28, name)
        .call(MAP_CREATE)
        .expect("moat serves BPF_MAP_CREATE")
}

fn elem(cmd: u32, fd: i64, key: &[u8], value: &mut [u8], flags: u64) -> i64 {
    let key_at = if key.is_empty() { 0 } else { ptr(key) };
    A::new()
        .u32(0, fd as u32)
        .u64(8, key_at)
        .u64(16, value.as_mut_ptr() as u64)
        .u64(24, flags)
        .call(cmd)
        .expect("moat serves the map's commands")
}

#[test]
fn hash_map_elements_as_the_kernel_answers() {
    let fd = create(1, 4, 8, 16, 0, "counts");
    assert!(fd > 2, "a real descriptor: {fd}");
    let mut v = 7u64.to_le_bytes();
    assert_eq!(elem(UPDATE, fd, &1u32.to_le_bytes(), &mut v, 0), 0);
    let mut v = 9u64.to_le_bytes();
    assert_eq!(elem(UPDATE, fd, &2u32.to_le_bytes(), &mut v, 0), 0);
    // BPF_NOEXIST on an existing key: -EEXIST.
    assert_eq!(
        elem(UPDATE, fd, &2u32.to_le_bytes(), &mut v, 1),
        -i64::from(libc::EEXIST)
    );
    let mut out = [0u8; 8];
    assert_eq!(elem(LOOKUP, fd, &1u32.to_le_bytes(), &mut out, 0), 0);
    assert_eq!(u64::from_le_bytes(out), 7);
    assert_eq!(
        elem(LOOKUP, fd, &3u32.to_le_bytes(), &mut out, 0),
        -i64::from(libc::ENOENT)
    );
    // Iteration from no key visits both keys, then -ENOENT.
    let mut seen = Vec::new();
    let mut key = Vec::new();
    loop {
        let mut next = [0u8; 4];
        match elem(NEXT_KEY, fd, &key, &mut next, 0) {
            0 => {
                seen.push(u32::from_le_bytes(next));
                key = next.to_vec();
            }
            e => {
                assert_eq!(e, -i64::from(libc::ENOENT));
                break;
            }
        }
    }
    seen.sort();
    assert_eq!(seen, [1, 2]);
    assert_eq!(elem(DELETE, fd, &1u32.to_le_bytes(), &mut out, 0), 0);
    assert_eq!(
        elem(DELETE, fd, &1u32.to_le_bytes(), &mut out, 0),
        -i64::from(libc::ENOENT)
    );
    // Closing the descriptor forgets the map (in a tool, libc's `close` is the interposer's).
    drop(unsafe_close(fd as RawFd));
}

/// Closes a descriptor (the test's only system call besides `bpf`).
fn unsafe_close(fd: RawFd) -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` was handed to this test by the interposer and is closed exactly once, here.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

#[test]
fn batches_update_and_read_every_element() {
    let fd = create(1, 4, 4, 64, 0, "batch");
    let keys: Vec<u32> = (0..10).collect();
    let values: Vec<u32> = keys.iter().map(|k| k * 100).collect();
    let mut a = A::new()
        .u64(16, ptr(&keys))
        .u64(24, ptr(&values))
        .u32(32, 10)
        .u32(36, fd as u32);
    assert_eq!(a.call(UPDATE_BATCH), Some(0));
    // Read back 4 at a time until -ENOENT.
    let mut got = Vec::new();
    let mut token = [0u8; 4];
    let mut first = true;
    loop {
        let out_keys = [0u32; 4];
        let out_values = [0u32; 4];
        let out_token = [0u8; 4];
        let mut a = A::new()
            .u64(0, if first { 0 } else { ptr(&token) })
            .u64(8, ptr(&out_token))
            .u64(16, ptr(&out_keys))
            .u64(24, ptr(&out_values))
            .u32(32, 4)
            .u32(36, fd as u32);
        let r = a.call(LOOKUP_BATCH).expect("served");
        let count = u32::from_le_bytes(a.0[32..36].try_into().unwrap_or_default()) as usize;
        for i in 0..count {
            got.push((out_keys[i], out_values[i]));
        }
        if r != 0 {
            assert_eq!(r, -i64::from(libc::ENOENT));
            break;
        }
        token = out_token;
        first = false;
    }
    got.sort();
    assert_eq!(got, keys.iter().map(|&k| (k, k * 100)).collect::<Vec<_>>());
    drop(unsafe_close(fd as RawFd));
}

#[test]
fn an_mmapable_array_is_mapped_through_its_descriptor() {
    const MMAPABLE: u32 = 1 << 10;
    let fd = create(2, 4, 12, 3, MMAPABLE, "sk.bss");
    let mut v = [1u8; 12];
    assert_eq!(elem(UPDATE, fd, &2u32.to_le_bytes(), &mut v, 0), 0);
    let file = unsafe_close(fd as RawFd);
    // The kernel's layout: values 16 bytes apart (12 rounded up to 8), from offset 0.
    let mut bytes = vec![0u8; 48];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut bytes, 0).expect("read the map's file");
    assert_eq!(&bytes[32..44], &[1u8; 12]);
    assert_eq!(&bytes[0..32], &[0u8; 32]);
    // A write through the file is what a lookup sees.
    std::os::unix::fs::FileExt::write_all_at(&file, &[5u8; 12], 0).expect("write the map's file");
    let mut out = [0u8; 12];
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    assert_eq!(
        elem(LOOKUP, i64::from(fd), &0u32.to_le_bytes(), &mut out, 0),
        0
    );
    assert_eq!(out, [5u8; 12]);
}

fn load(prog_type: u32, insns: &[u64], log: &mut [u8]) -> i64 {
    let license = b"GPL\0";
    A::new()
        .u32(0, prog_type)
        .u32(4, insns.len() as u32)
        .u64(8, ptr(insns))
        .u64(16, ptr(license))
        .u32(24, u32::from(!log.is_empty()))
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as u64)
        .name(48, "test_prog")
        .call(PROG_LOAD)
        .expect("moat serves BPF_PROG_LOAD")
}

/// One instruction: opcode, registers, offset, immediate.
fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(op)
        | u64::from(dst & 0xf) << 8
        | u64::from(src & 0xf) << 12
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

#[test]
fn programs_are_verified_with_their_maps() {
    const KPROBE: u32 = 2;
    let map = create(2, 4, 8, 1, 0, "one");
    // r1 = map; r2 = fp - 4; *(u32 *)(r2) = 0; r0 = lookup(r1, r2); if r0 == 0 goto out;
    // *(u64 *)(r0) += 1 (as a load, add, store); out: r0 = 0; exit.
    let prog = [
        insn(0x18, 1, 1, 0, map as i32),
        0,
        insn(0xbf, 2, 10, 0, 0),
        insn(0x07, 2, 0, 0, -4),
        insn(0x62, 2, 0, 0, 0),
        insn(0x85, 0, 0, 0, 1),
        insn(0x15, 0, 0, 3, 0),
        insn(0x79, 1, 0, 0, 0),
        insn(0x07, 1, 0, 0, 1),
        insn(0x7b, 0, 1, 0, 0),
        insn(0xb7, 0, 0, 0, 0),
        insn(0x95, 0, 0, 0, 0),
    ];
    let fd = load(KPROBE, &prog, &mut []);
    assert!(fd > 2, "loaded: {fd}");
    // Without the null check the verifier rejects: -EACCES, and the log says why.
    let mut bad = prog;
    bad[6] = insn(0x05, 0, 0, 0, 0); // goto +0 instead of the null check
    let mut log = vec![0u8; 4096];
    assert_eq!(load(KPROBE, &bad, &mut log), -i64::from(libc::EACCES));
    let text = String::from_utf8_lossy(&log);
    let text = text.trim_end_matches('\0');
    assert!(text.contains("moat:"), "log: {text}");
    assert!(
        text.lines().count() > 1,
        "the verifier's log, not just the error: {text}"
    );
    // A descriptor that is not a map: -EINVAL.
    let mut not_map = prog;
    not_map[0] = insn(0x18, 1, 1, 0, 0);
    assert_eq!(load(KPROBE, &not_map, &mut []), -i64::from(libc::EINVAL));
    // Object info of the program and the map.
    let info = [0u8; 232];
    let mut a = A::new().u32(0, fd as u32).u32(4, 232).u64(8, ptr(&info));
    assert_eq!(a.call(INFO), Some(0));
    assert_eq!(
        u32::from_le_bytes(info[0..4].try_into().unwrap_or_default()),
        KPROBE
    );
    assert_eq!(&info[64..73], b"test_prog");
    let info = [0u8; 88];
    let mut a = A::new().u32(0, map as u32).u32(4, 88).u64(8, ptr(&info));
    assert_eq!(a.call(INFO), Some(0));
    assert_eq!(
        u32::from_le_bytes(info[0..4].try_into().unwrap_or_default()),
        2
    );
    assert_eq!(
        u32::from_le_bytes(info[12..16].try_into().unwrap_or_default()),
        8
    );
    assert_eq!(&info[24..27], b"one");
}

#[test]
fn btf_is_kept_when_its_header_is_sound() {
    let mut btf: Vec<u8> = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
    btf.resize(24, 0);
    let mut a = A::new().u64(0, ptr(&btf)).u32(16, btf.len() as u32);
    let fd = a.call(BTF_LOAD).expect("served");
    assert!(fd > 2, "{fd}");
    let bad = vec![0u8; 24];
    let mut a = A::new().u64(0, ptr(&bad)).u32(16, 24);
    assert_eq!(a.call(BTF_LOAD), Some(-i64::from(libc::EINVAL)));
}

#[test]
fn what_moat_does_not_own_goes_to_the_kernel() {
    // A map command on a descriptor moat never handed out (standard input).
    let mut v = [0u8; 8];
    let mut a = A::new()
        .u32(0, 0)
        .u64(8, ptr(&[0u8; 4]))
        .u64(16, v.as_mut_ptr() as u64);
    assert_eq!(a.call(LOOKUP), None);
    // A command moat does not serve at all.
    assert_eq!(A::new().call(11), None); // BPF_PROG_GET_NEXT_ID
}

/// `BPF_OBJ_PIN` and `BPF_OBJ_GET` with `pathname` at offset 0 and `bpf_fd` at 8.
fn pin(fd: i64, path: &std::ffi::CStr) -> i64 {
    A::new()
        .u64(0, path.as_ptr() as u64)
        .u32(8, fd as u32)
        .call(OBJ_PIN)
        .expect("moat serves BPF_OBJ_PIN of its maps")
}

fn get(path: &std::ffi::CStr) -> Option<i64> {
    A::new().u64(0, path.as_ptr() as u64).call(OBJ_GET)
}

const OBJ_PIN: u32 = 6;
const OBJ_GET: u32 = 7;

#[test]
fn pinned_maps_are_got_back_with_their_elements() {
    let tag = std::process::id();
    let array_path = std::ffi::CString::new(format!("/sys/fs/bpf/moat-test-{tag}/array")).unwrap();
    let hash_path = std::ffi::CString::new(format!("/sys/fs/bpf/moat-test-{tag}/hash")).unwrap();
    let paths = [&array_path, &hash_path];
    let pin_dirs: Vec<_> = paths
        .iter()
        .map(|p| moat_interpose::server::pin_dir(p.to_str().unwrap()))
        .collect();
    let array = create(2, 4, 8, 4, 0, "pinned_array");
    let hash = create(1, 4, 8, 16, 0, "pinned_hash");
    let mut v = 41u64.to_le_bytes();
    assert_eq!(elem(UPDATE, array, &1u32.to_le_bytes(), &mut v, 0), 0);
    assert_eq!(elem(UPDATE, hash, &7u32.to_le_bytes(), &mut v, 0), 0);
    assert_eq!(pin(array, &array_path), 0);
    assert_eq!(pin(hash, &hash_path), 0);
    // A second pin at the same path: -EEXIST, as on the kernel.
    assert_eq!(pin(array, &array_path), -i64::from(libc::EEXIST));
    // Got back (here in the same process; another tool under `moat load` does the same).
    let got_array = get(&array_path).expect("moat serves its own pin");
    let got_hash = get(&hash_path).expect("moat serves its own pin");
    assert!(got_array > 2 && got_hash > 2);
    let mut out = [0u8; 8];
    assert_eq!(elem(LOOKUP, got_array, &1u32.to_le_bytes(), &mut out, 0), 0);
    assert_eq!(u64::from_le_bytes(out), 41);
    assert_eq!(elem(LOOKUP, got_hash, &7u32.to_le_bytes(), &mut out, 0), 0);
    assert_eq!(u64::from_le_bytes(out), 41);
    // The array is one: written through either descriptor, read through the other.
    let mut v = 42u64.to_le_bytes();
    assert_eq!(elem(UPDATE, got_array, &2u32.to_le_bytes(), &mut v, 0), 0);
    assert_eq!(elem(LOOKUP, array, &2u32.to_le_bytes(), &mut out, 0), 0);
    assert_eq!(u64::from_le_bytes(out), 42);
    // The hash map's writer is the pinning side; what it adds is seen through the pin.
    let mut v = 43u64.to_le_bytes();
    assert_eq!(elem(UPDATE, hash, &8u32.to_le_bytes(), &mut v, 0), 0);
    assert_eq!(elem(LOOKUP, got_hash, &8u32.to_le_bytes(), &mut out, 0), 0);
    assert_eq!(u64::from_le_bytes(out), 43);
    assert_eq!(
        elem(UPDATE, got_hash, &9u32.to_le_bytes(), &mut v, 0),
        -i64::from(libc::EBUSY)
    );
    // The pins outlive the maps' descriptors (and the process: the files are linked).
    for fd in [array, hash, got_array, got_hash] {
        drop(unsafe_close(fd as RawFd));
    }
    let again = get(&array_path).expect("still pinned");
    assert_eq!(elem(LOOKUP, again, &1u32.to_le_bytes(), &mut out, 0), 0);
    assert_eq!(u64::from_le_bytes(out), 41);
    drop(unsafe_close(again as RawFd));
    // A path moat never pinned is the kernel's.
    let unknown = std::ffi::CString::new(format!("/sys/fs/bpf/moat-test-{tag}/none")).unwrap();
    assert_eq!(get(&unknown), None);
    for d in pin_dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}
