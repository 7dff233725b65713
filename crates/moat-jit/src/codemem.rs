//! Executable memory shared by many programs, like the Linux kernel's BPF "prog pack".
//!
//! Code lives in chunks of [`CHUNK_SIZE`] bytes (2 MiB). Each chunk is a `memfd` mapped twice: a
//! read-write view through which code is written and a read-execute view from which it runs, so no
//! page is ever writable and executable in one mapping. Programs take 64-byte-aligned pieces of a
//! chunk from a first-fit free list; freeing a piece coalesces it with free neighbours, and a chunk
//! whose pieces are all free is unmapped (the last one is kept for the next program). A program
//! larger than a chunk gets a chunk of its own size.
//!
//! Code bytes are written once, before the piece's address is handed out, and never changed while
//! the piece is allocated; freed space is reused only after its [`CodePiece`] is dropped, which the
//! owning program does only when no run can be executing it.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, OnceLock};

/// Bytes of one chunk of executable memory.
pub const CHUNK_SIZE: usize = 2 << 20;
/// Allocation granularity (and code alignment).
const GRAIN: usize = 64;

/// One memfd mapped read-write and read-execute.
struct Chunk {
    id: u64,
    rw: *mut u8,
    rx: *const u8,
    size: usize,
    /// Free pieces: offset -> length.
    free: BTreeMap<usize, usize>,
    used: usize,
}

// SAFETY: the chunk's pointers are to mappings it owns; all access to them goes through the pool's
// mutex (writes) or is read-only execution of immutable code.
unsafe impl Send for Chunk {}

impl Chunk {
    fn new(id: u64, size: usize) -> io::Result<Chunk> {
        // SAFETY: memfd_create with a static NUL-terminated name; the result is checked.
        let fd = unsafe { libc::memfd_create(c"moat-jit".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let close = |fd| {
            // SAFETY: `fd` is the descriptor created above, closed exactly once.
            unsafe { libc::close(fd) };
        };
        // SAFETY: `fd` is a valid memfd; ftruncate sizes it.
        if unsafe { libc::ftruncate(fd, size as libc::off_t) } != 0 {
            let e = io::Error::last_os_error();
            close(fd);
            return Err(e);
        }
        let map = |prot| {
            // SAFETY: a shared mapping of the whole memfd at a kernel-chosen address; checked below.
            unsafe { libc::mmap(std::ptr::null_mut(), size, prot, libc::MAP_SHARED, fd, 0) }
        };
        let rw = map(libc::PROT_READ | libc::PROT_WRITE);
        if rw == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            close(fd);
            return Err(e);
        }
        let rx = map(libc::PROT_READ | libc::PROT_EXEC);
        // The mappings keep the memory; the descriptor is no longer needed.
        close(fd);
        if rx == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: `rw` is the mapping of `size` bytes created above.
            unsafe { libc::munmap(rw, size) };
            return Err(e);
        }
        let mut free = BTreeMap::new();
        free.insert(0, size);
        Ok(Chunk {
            id,
            rw: rw.cast(),
            rx: rx.cast(),
            size,
            free,
            used: 0,
        })
    }

    /// First fit: the offset of a free piece of `len` bytes, taken off the free list.
    fn take(&mut self, len: usize) -> Option<usize> {
        let (&at, &free_len) = self.free.iter().find(|(_, &l)| l >= len)?;
        self.free.remove(&at);
        if free_len > len {
            self.free.insert(at + len, free_len - len);
        }
        self.used += len;
        Some(at)
    }

    /// Returns a piece to the free list, merged with free neighbours.
    fn give_back(&mut self, at: usize, len: usize) {
        self.used -= len;
        let (mut start, mut end) = (at, at + len);
        if let Some((&prev, &prev_len)) = self.free.range(..at).next_back() {
            if prev + prev_len == at {
                self.free.remove(&prev);
                start = prev;
            }
        }
        if let Some(&next_len) = self.free.get(&end) {
            self.free.remove(&end);
            end += next_len;
        }
        self.free.insert(start, end - start);
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: both views were mapped with `size` bytes in `Chunk::new` and are unmapped exactly
        // once; the chunk is dropped only when no piece of it is allocated.
        unsafe {
            libc::munmap(self.rw.cast(), self.size);
            libc::munmap(self.rx as *mut libc::c_void, self.size);
        }
    }
}

/// A pool of chunks.
#[derive(Default)]
struct Pool {
    chunks: Vec<Chunk>,
    next_id: u64,
}

/// What the pool holds, for reports and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CodeStats {
    /// Chunks mapped.
    pub chunks: usize,
    /// Mappings (two per chunk: the writable and the executable view).
    pub mappings: usize,
    /// Bytes mapped (each chunk counted once: both views share their pages).
    pub mapped_bytes: usize,
    /// Bytes allocated to programs.
    pub used_bytes: usize,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Pool::default()))
}

/// The state of the process-wide pool.
pub fn stats() -> CodeStats {
    let pool = pool().lock().unwrap_or_else(|e| e.into_inner());
    CodeStats {
        chunks: pool.chunks.len(),
        mappings: pool.chunks.len() * 2,
        mapped_bytes: pool.chunks.iter().map(|c| c.size).sum(),
        used_bytes: pool.chunks.iter().map(|c| c.used).sum(),
    }
}

/// A piece of executable memory holding one program's code; freed when dropped.
pub(crate) struct CodePiece {
    chunk: u64,
    offset: usize,
    len: usize,
    addr: u64,
    code_len: usize,
}

impl std::fmt::Debug for CodePiece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodePiece")
            .field("addr", &format_args!("{:#x}", self.addr))
            .field("len", &self.code_len)
            .finish()
    }
}

impl CodePiece {
    /// Copies `code` into executable memory.
    pub(crate) fn new(code: &[u8]) -> io::Result<CodePiece> {
        let len = code.len().max(1).div_ceil(GRAIN) * GRAIN;
        let mut pool = pool().lock().unwrap_or_else(|e| e.into_inner());
        let found = pool
            .chunks
            .iter_mut()
            .find_map(|c| c.take(len).map(|at| (c.id, at, c.rw, c.rx)));
        let (chunk, at, rw, rx) = match found {
            Some(f) => f,
            None => {
                let id = pool.next_id;
                pool.next_id += 1;
                let mut c = Chunk::new(id, len.max(CHUNK_SIZE).div_ceil(4096) * 4096)?;
                let at = c
                    .take(len)
                    .ok_or_else(|| io::Error::other("empty chunk too small"))?;
                let found = (c.id, at, c.rw, c.rx);
                pool.chunks.push(c);
                found
            }
        };
        // SAFETY: `[at, at + len)` of the chunk's writable view was just taken off the free list, so
        // no program runs or owns it; `code.len() <= len`. The pool lock is held while writing.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), rw.add(at), code.len());
            // Fill the rest with int3 so a stray jump traps.
            std::ptr::write_bytes(rw.add(at + code.len()), 0xcc, len - code.len());
        }
        Ok(CodePiece {
            chunk,
            offset: at,
            len,
            // SAFETY: `at < size` of the chunk's executable view.
            addr: unsafe { rx.add(at) } as u64,
            code_len: code.len(),
        })
    }

    /// The address of the first byte of code in the executable view.
    pub(crate) fn addr(&self) -> u64 {
        self.addr
    }

    /// The code bytes (read through the executable view).
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the piece's `code_len` bytes are mapped readable for as long as the piece lives
        // and are never written while it is allocated.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.code_len) }
    }
}

impl Drop for CodePiece {
    fn drop(&mut self) {
        let mut pool = pool().lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = pool.chunks.iter().position(|c| c.id == self.chunk) else {
            return;
        };
        let chunk = &mut pool.chunks[i];
        chunk.give_back(self.offset, self.len);
        let empty = chunk.used == 0;
        if empty && pool.chunks.len() > 1 {
            pool.chunks.swap_remove(i);
        }
    }
}

/// The figures of one allocation strategy for [`compare_strategies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrategyFigures {
    /// Mappings created.
    pub mappings: usize,
    /// Bytes mapped.
    pub mapped_bytes: usize,
}

/// Maps `codes` one mapping per program (written, then turned read-execute with `mprotect`), the way
/// a JIT without a pack would, and reports the mappings and bytes; the mappings are released
/// before returning. For comparison with [`stats`] after packing the same code.
pub fn one_mapping_per_program(codes: &[Vec<u8>]) -> io::Result<StrategyFigures> {
    let mut maps: Vec<(*mut libc::c_void, usize)> = Vec::new();
    let mut result = Ok(());
    for code in codes {
        let len = code.len().max(1).div_ceil(4096) * 4096;
        // SAFETY: an anonymous private mapping at a kernel-chosen address; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            result = Err(io::Error::last_os_error());
            break;
        }
        // SAFETY: `p` is a fresh writable mapping of `len >= code.len()` bytes; then it is made
        // read-execute, as a per-program JIT would.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), p.cast::<u8>(), code.len());
            libc::mprotect(p, len, libc::PROT_READ | libc::PROT_EXEC);
        }
        maps.push((p, len));
    }
    let figures = StrategyFigures {
        mappings: maps.len(),
        mapped_bytes: maps.iter().map(|m| m.1).sum(),
    };
    for (p, len) in maps {
        // SAFETY: each mapping was created above with this length and is unmapped once.
        unsafe { libc::munmap(p, len) };
    }
    result.map(|()| figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_packed_reused_and_coalesced() {
        let mut c = Chunk::new(99, CHUNK_SIZE).expect("chunk");
        let a = c.take(128).expect("a");
        let b = c.take(64).expect("b");
        let d = c.take(64).expect("d");
        assert_eq!((a, b, d), (0, 128, 192));
        c.give_back(b, 64);
        assert_eq!(c.take(64), Some(128), "freed space is reused first");
        c.give_back(a, 128);
        c.give_back(128, 64);
        c.give_back(d, 64);
        assert_eq!(c.free.len(), 1, "neighbours coalesce");
        assert_eq!(c.free.get(&0), Some(&CHUNK_SIZE));
        assert_eq!(c.used, 0);
    }

    #[test]
    fn code_is_readable_through_the_executable_view() {
        let piece = CodePiece::new(&[0xc3, 0x90, 0x90]).expect("piece");
        assert_eq!(piece.bytes(), &[0xc3, 0x90, 0x90]);
        assert_eq!(piece.addr() % GRAIN as u64, 0);
    }
}
