//! The raw `bpf(2)` system call: `#[repr(C)]` layouts of the parts of `union bpf_attr` this crate uses,
//! and safe functions that build them from Rust slices. This is the crate's only `unsafe` code.
//!
//! Each attribute struct is a prefix of `union bpf_attr` for its command, ending at the last field this
//! crate sets, with any padding spelled out as explicit zeroed fields so the kernel never sees
//! uninitialised bytes; the kernel zero-fills the rest of the union beyond the size we pass.

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_MAP_GET_NEXT_KEY: u32 = 4;
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: u32 = 21;

/// `BPF_MAP_CREATE`, up to `map_flags`.
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    /// The inner map's descriptor, for map-in-map types (the kernel reads it for no other type).
    inner_map_fd: u32,
}

/// `BPF_MAP_*_ELEM` (`value` doubles as `next_key`).
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad0: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `BPF_PROG_TEST_RUN` (the `test` member), up to `ctx_out`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
}

const _: () = assert!(size_of::<MapCreateAttr>() == 24);
const _: () = assert!(size_of::<MapElemAttr>() == 32);
const _: () = assert!(size_of::<ProgLoadAttr>() == 72);
const _: () = assert!(size_of::<TestRunAttr>() == 64);

/// Marker for the attribute structs above: plain `#[repr(C)]` data without implicit padding.
trait Attr {}
impl Attr for MapCreateAttr {}
impl Attr for MapElemAttr {}
impl Attr for ProgLoadAttr {}
impl Attr for TestRunAttr {}

/// Issues `bpf(cmd, attr, sizeof attr)`.
///
/// # Safety
/// `attr` must be the layout the kernel expects for `cmd`, and every pointer in it must be null or valid
/// for the reads and writes `cmd` performs, with the sizes given alongside it, for the whole call.
unsafe fn bpf<A: Attr>(cmd: u32, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed struct of `size_of::<A>()` bytes; the caller
    // guarantees the pointers inside it are valid for what the kernel does with them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut A,
            size_of::<A>() as libc::c_long,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// [`bpf`] for the commands that return a new file descriptor.
///
/// # Safety
/// As for [`bpf`], and `cmd` must be one that returns a new descriptor on success.
unsafe fn bpf_fd<A: Attr>(cmd: u32, attr: &mut A) -> io::Result<OwnedFd> {
    // SAFETY: forwarded from the caller.
    let ret = unsafe { bpf(cmd, attr) }?;
    // SAFETY: `cmd` returned a fresh descriptor it created for this call; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

fn ptr(bytes: &[u8]) -> u64 {
    if bytes.is_empty() {
        0
    } else {
        bytes.as_ptr() as u64
    }
}

/// What `BPF_PROG_LOAD` is given besides the instructions.
pub(crate) struct LoadArgs<'a> {
    pub prog_type: u32,
    pub license: &'a CStr,
    pub log_level: u32,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub expected_attach_type: u32,
}

/// `BPF_PROG_LOAD`. `insns.len()` must be a multiple of 8; the kernel writes at most `log.len()` bytes
/// of verifier log into `log` (which is ignored when empty).
pub(crate) fn prog_load(insns: &[u8], args: &LoadArgs, log: &mut [u8]) -> io::Result<OwnedFd> {
    if !insns.len().is_multiple_of(8)
        || insns.len() / 8 > u32::MAX as usize
        || log.len() > u32::MAX as usize
    {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut attr = ProgLoadAttr {
        prog_type: args.prog_type,
        insn_cnt: (insns.len() / 8) as u32,
        insns: ptr(insns),
        license: args.license.as_ptr() as u64,
        kern_version: args.kern_version,
        prog_flags: args.prog_flags,
        expected_attach_type: args.expected_attach_type,
        ..Default::default()
    };
    if !log.is_empty() {
        attr.log_level = args.log_level;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    // SAFETY: the kernel reads `insn_cnt * 8 == insns.len()` bytes of `insns`, the NUL-terminated
    // `license`, and writes at most `log_size == log.len()` bytes into `log`; all outlive the call.
    unsafe { bpf_fd(BPF_PROG_LOAD, &mut attr) }
}

/// What `BPF_PROG_TEST_RUN` reports.
pub(crate) struct TestRunOut {
    pub retval: u32,
    pub duration: u32,
    pub data_size_out: usize,
    pub ctx_size_out: usize,
    /// The context input buffer after the run (`BPF_PROG_TYPE_SYSCALL` writes its context back there).
    pub ctx_in_after: Vec<u8>,
}

/// `BPF_PROG_TEST_RUN`. Output buffers that are empty are passed as null (nothing is copied out).
pub(crate) fn prog_test_run(
    prog: BorrowedFd<'_>,
    data_in: &[u8],
    data_out: &mut [u8],
    ctx_in: &[u8],
    ctx_out: &mut [u8],
    repeat: u32,
) -> io::Result<TestRunOut> {
    let too_big = |b: &[u8]| b.len() > u32::MAX as usize;
    if too_big(data_in) || too_big(data_out) || too_big(ctx_in) || too_big(ctx_out) {
        return Err(io::Error::from_raw_os_error(libc::E2BIG));
    }
    let out_ptr = |b: &mut [u8]| {
        if b.is_empty() {
            0
        } else {
            b.as_mut_ptr() as u64
        }
    };
    // Some program types write the context back through `ctx_in`, so hand the kernel a private copy.
    let mut ctx_copy = ctx_in.to_vec();
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data_in.len() as u32,
        data_size_out: data_out.len() as u32,
        data_in: ptr(data_in),
        data_out: out_ptr(data_out),
        repeat,
        ctx_size_in: ctx_in.len() as u32,
        ctx_size_out: ctx_out.len() as u32,
        ctx_in: out_ptr(&mut ctx_copy),
        ctx_out: out_ptr(ctx_out),
        ..Default::default()
    };
    // SAFETY: the kernel reads (and may write back) `data_size_in`/`ctx_size_in` bytes of `data_in` and
    // the writable `ctx_copy`, and copies at most `data_size_out`/`ctx_size_out` bytes out (failing with
    // ENOSPC beyond that); an output of size 0 (which the kernel would treat as unbounded for data) is
    // passed as a null pointer.
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) }?;
    Ok(TestRunOut {
        retval: attr.retval,
        duration: attr.duration,
        data_size_out: (attr.data_size_out as usize).min(data_out.len()),
        ctx_size_out: (attr.ctx_size_out as usize).min(ctx_out.len()),
        ctx_in_after: ctx_copy,
    })
}

/// A map file descriptor together with the sizes the kernel will read and write through its element
/// commands. Only [`MapFd::create`] makes one, so the sizes are the ones the map was created with.
#[derive(Debug)]
pub(crate) struct MapFd {
    fd: OwnedFd,
    key_size: usize,
    /// Bytes of a value as user space sees it: `round_up(value_size, 8) * ncpus` for per-CPU maps.
    value_buf: usize,
}

impl MapFd {
    /// `BPF_MAP_CREATE`. Per-CPU values are sized by [`crate::possible_cpus`], as the kernel's
    /// `num_possible_cpus()` sizes them.
    pub(crate) fn create(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        flags: u32,
        inner: Option<BorrowedFd<'_>>,
    ) -> io::Result<MapFd> {
        let value_buf = if crate::map::is_per_cpu(map_type) {
            (value_size as usize).next_multiple_of(8) * crate::possible_cpus()?
        } else {
            value_size as usize
        };
        let mut attr = MapCreateAttr {
            map_type,
            key_size,
            value_size,
            max_entries,
            map_flags: flags,
            inner_map_fd: inner.map_or(0, |fd| fd.as_raw_fd().cast_unsigned()),
        };
        // SAFETY: the attribute holds no pointers, and BPF_MAP_CREATE returns a new descriptor.
        let fd = unsafe { bpf_fd(BPF_MAP_CREATE, &mut attr) }?;
        Ok(MapFd {
            fd,
            key_size: key_size as usize,
            value_buf,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    pub(crate) fn key_size(&self) -> usize {
        self.key_size
    }

    pub(crate) fn value_buf(&self) -> usize {
        self.value_buf
    }

    /// A key pointer for [`Self::elem`]: null for `None` (the kernel fails with `EFAULT` where it needs
    /// one) or for a zero-sized key; otherwise the key, which must be exactly `key_size` bytes.
    fn key(&self, key: Option<&[u8]>) -> io::Result<u64> {
        match key {
            Some(k) if k.len() != self.key_size => Err(io::Error::from_raw_os_error(libc::EINVAL)),
            Some(k) => Ok(ptr(k)),
            None => Ok(0),
        }
    }

    /// An element command on this map.
    ///
    /// # Safety
    /// `key` must be null or point to `key_size` readable bytes, and `value` null or point to
    /// `value_buf` bytes (`key_size` for `BPF_MAP_GET_NEXT_KEY`), writable for lookups, during the call.
    unsafe fn elem(&self, cmd: u32, key: u64, value: u64, flags: u64) -> io::Result<()> {
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key,
            value,
            flags,
            ..Default::default()
        };
        // SAFETY: the caller upholds the buffer sizes, which are the ones the kernel uses for this map
        // (recorded at creation); the attribute has no other pointers.
        unsafe { bpf(cmd, &mut attr) }.map(drop)
    }

    /// `BPF_MAP_LOOKUP_ELEM` (or `_AND_DELETE_` when `delete`) into a fresh buffer.
    pub(crate) fn lookup(&self, key: Option<&[u8]>, delete: bool) -> io::Result<Vec<u8>> {
        let mut value = vec![0u8; self.value_buf.max(1)];
        let cmd = if delete {
            BPF_MAP_LOOKUP_AND_DELETE_ELEM
        } else {
            BPF_MAP_LOOKUP_ELEM
        };
        let key = self.key(key)?;
        // SAFETY: `key` comes from `Self::key`; `value` is a fresh writable `value_buf`-byte buffer.
        unsafe { self.elem(cmd, key, value.as_mut_ptr() as u64, 0) }?;
        value.truncate(self.value_buf);
        Ok(value)
    }

    /// `BPF_MAP_UPDATE_ELEM`; `value` must be `value_buf` bytes.
    pub(crate) fn update(&self, key: Option<&[u8]>, value: &[u8], flags: u64) -> io::Result<()> {
        if value.len() != self.value_buf {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let key = self.key(key)?;
        // SAFETY: `key` comes from `Self::key`; `value` is `value_buf` bytes (checked above).
        unsafe { self.elem(BPF_MAP_UPDATE_ELEM, key, ptr(value), flags) }
    }

    /// `BPF_MAP_DELETE_ELEM`.
    pub(crate) fn delete(&self, key: &[u8]) -> io::Result<()> {
        let key = self.key(Some(key))?;
        // SAFETY: `key` comes from `Self::key`; there is no value.
        unsafe { self.elem(BPF_MAP_DELETE_ELEM, key, 0, 0) }
    }

    /// `BPF_MAP_GET_NEXT_KEY`: the key after `key`, or the first key when `None`.
    pub(crate) fn next_key(&self, key: Option<&[u8]>) -> io::Result<Vec<u8>> {
        let mut next = vec![0u8; self.key_size.max(1)];
        let key = self.key(key)?;
        // SAFETY: `key` comes from `Self::key`; `next` is a fresh writable `key_size`-byte buffer.
        unsafe { self.elem(BPF_MAP_GET_NEXT_KEY, key, next.as_mut_ptr() as u64, 0) }?;
        next.truncate(self.key_size);
        Ok(next)
    }
}
