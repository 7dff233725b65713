//! What the interposer serves: the tool's `bpf(2)` commands on moat's maps and verifier, its
//! uprobe `perf_event_open(2)` events, and the `ioctl`s and `close`s on the descriptors moat
//! handed out. Every entry returns `None` for what moat does not own (the caller passes it to the
//! kernel untouched) and otherwise the system call's result or `-errno`.
//!
//! Objects are kept by descriptor together with the descriptor's inode, so a number the tool
//! closed behind moat's back (`dup2`, `close_range`) and the kernel gave to something else is
//! never taken for moat's.

use crate::attr::{self, Attr};
use crate::ring::KernelRing;
use crate::{sys, traced};
use moat::{Map, MapDef, MapError, MapType, ProgType, Runtime, SharedMap, SharedMemory};
use moat_abi::Cmd;
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Why a command moat serves failed; each maps to the errno the kernel would return.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A pointer in the attributes does not point to readable or writable memory.
    #[error("{what}: bad address {addr:#x}")]
    Fault {
        /// The field.
        what: &'static str,
        /// Its value.
        addr: u64,
    },
    /// A descriptor is not one of moat's objects of the kind the command needs.
    #[error("descriptor {fd} is not a moat {kind}")]
    BadFd {
        /// The descriptor.
        fd: i32,
        /// What it should have been.
        kind: &'static str,
    },
    /// The attributes are malformed.
    #[error("{0}")]
    Invalid(String),
    /// A map operation failed (the map's own error, with the kernel's errno).
    #[error("map `{name}`: {source}")]
    Map {
        /// The map.
        name: String,
        /// Why.
        #[source]
        source: MapError,
    },
    /// The verifier or the loader rejected a program.
    #[error("program `{name}`: {source}")]
    Load {
        /// The program.
        name: String,
        /// Why.
        #[source]
        source: Box<moat::Error>,
    },
    /// Something moat does not do (yet); the message names it.
    #[error("{0}")]
    Unsupported(String),
    /// A pin exists at the path already.
    #[error("{0}: pinned already")]
    Pinned(String),
    /// The map is frozen (`BPF_MAP_FREEZE`) and the call would write it.
    #[error("map `{0}` is frozen")]
    Frozen(String),
    /// A descriptor or shared-memory file could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being made.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ServeError {
    /// The positive errno the kernel returns for this failure.
    pub fn errno(&self) -> i32 {
        match self {
            ServeError::Fault { .. } => libc::EFAULT,
            ServeError::BadFd { .. } => libc::EBADF,
            ServeError::Invalid(_) => libc::EINVAL,
            ServeError::Map { source, .. } => source.errno().saturating_abs(),
            ServeError::Load { source, .. } => match **source {
                moat::Error::Verify(_) => libc::EACCES,
                _ => libc::EINVAL,
            },
            ServeError::Unsupported(_) => libc::EOPNOTSUPP,
            ServeError::Frozen(_) => libc::EPERM,
            ServeError::Pinned(_) => libc::EEXIST,
            ServeError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

fn fault(what: &'static str, addr: u64) -> impl FnOnce(std::io::Error) -> ServeError {
    move |_| ServeError::Fault { what, addr }
}

/// A traced process whose programs write a hash map now (or, with `pid` 0, the process that pinned
/// a hash map this one got from the pin): its index is that process's, so this one reads the
/// elements from the shared files and may not change them.
struct Owner {
    pid: i32,
    view: SharedMap,
}

/// A map moat serves.
struct MapObj {
    map: Arc<Map>,
    /// Its tag in the shared directory, where it is published (`None`: a private map).
    tag: Option<String>,
    /// Set once a traced process runs programs that write this hash map.
    owner: Option<Arc<Owner>>,
    /// The kernel's type the tool asked for (a cgroup array is kept as an array).
    kernel_type: u32,
    frozen: bool,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_id: u32,
}

impl MapObj {
    /// The elements as the tool's commands reach them ([`Owner`]).
    fn elements(&self) -> Elements {
        Elements {
            map: self.map.clone(),
            owner: self.owner.clone(),
        }
    }
}

/// A map's elements as the tool reaches them: its own map, or once a traced process owns a hash
/// map, that process's elements read from the shared files, and no changes.
struct Elements {
    map: Arc<Map>,
    owner: Option<Arc<Owner>>,
}

impl Elements {
    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        match &self.owner {
            Some(o) => o.view.lookup(key),
            None => self.map.lookup(key),
        }
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Vec<u8>, MapError> {
        match &self.owner {
            Some(o) => o.view.next_key(key),
            None => self.map.next_key(key),
        }
    }

    fn unchanged(&self) -> Result<(), MapError> {
        match &self.owner {
            Some(o) if o.pid == 0 => Err(MapError::External {
                errno: libc::EBUSY,
                message: "a hash map got from a pin is written by the process that pinned it \
                          (its index is that process's); here it may be read, not changed"
                    .into(),
            }),
            Some(o) => Err(MapError::External {
                errno: libc::EBUSY,
                message: format!(
                    "process {} runs the programs that write this map now; the tool may read \
                     it but no longer change it",
                    o.pid
                ),
            }),
            None => Ok(()),
        }
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.unchanged()?;
        self.map.update(key, value, flags)
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.unchanged()?;
        self.map.delete(key)
    }
}

/// A program moat verified.
struct ProgObj {
    name: String,
    kernel_type: u32,
    insn_cnt: u32,
    gpl: bool,
    /// What runs in the traced process: the bytecode, its map references rewritten to indices
    /// into `maps` (as verified).
    code: Vec<u8>,
    maps: Vec<Arc<Map>>,
}

/// A uprobe perf event the tool opened, or a system call's tracepoint.
struct EventObj {
    /// For a tracepoint of the `syscalls` group: its name (`sys_enter_openat`); the probe fields
    /// are then unused.
    syscall: Option<String>,
    path: String,
    offset: u64,
    retprobe: bool,
    pid: i32,
    /// The program running there, once attached through `PERF_EVENT_IOC_SET_BPF`.
    running: Option<traced::Running>,
}

/// A perf event of the tool's perf buffer (`PERF_COUNT_SW_BPF_OUTPUT`): a file in the kernel's
/// ring layout ([`KernelRing`]) that the tool maps, filled with the records the traced process's
/// programs wrote to the perf event array slot the event was stored in.
struct OutputObj {
    /// The CPU the tool opened it for (the `cpu` of `PERF_RECORD_LOST`).
    cpu: i32,
    file: std::fs::File,
    /// Made when the tool maps the file (its size is the ring's).
    ring: Option<KernelRing>,
    /// The perf event array (by tag) and slot it was stored in.
    bound: Option<(String, u32)>,
}

/// One object behind a descriptor moat handed out.
enum Object {
    Map(MapObj),
    Prog(Box<ProgObj>),
    Btf {
        size: u32,
    },
    Event(EventObj),
    /// A `BPF_LINK_CREATE` link: the program running in a traced process.
    Link(traced::Running),
    Output(OutputObj),
}

impl Object {
    fn kind(&self) -> &'static str {
        match self {
            Object::Map(_) => "map",
            Object::Prog(_) => "program",
            Object::Btf { .. } => "BTF object",
            Object::Event(_) => "perf event",
            Object::Link(_) => "link",
            Object::Output(_) => "perf buffer event",
        }
    }
}

struct Entry {
    inode: u64,
    id: u32,
    object: Object,
}

/// The interposer's state: the runtime programs are verified with and the objects by descriptor.
pub struct Server {
    rt: Runtime,
    objects: HashMap<RawFd, Entry>,
    next_id: u32,
    next_tag: u32,
    shm_dir: Option<PathBuf>,
    uprobe_type: Option<u32>,
    /// Perf buffer events registered with each epoll descriptor: `(event, events, data)`.
    epolls: HashMap<RawFd, Vec<(RawFd, u32, u64)>>,
    /// Readers of the perf event arrays the traced process writes, by tag.
    perf_readers: HashMap<String, SharedMap>,
    /// The ids of the `syscalls` tracepoints, read from tracefs at the first tracepoint event.
    tracepoints: Option<HashMap<u64, String>>,
}

// The runtime is only touched under the global lock.
static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// Runs `f` on the server, with the thread marked as inside it (its own system calls go to the
/// kernel); `None` when the thread already is inside (a `close` of the server's own files).
fn with_server<T>(f: impl FnOnce(&mut Server) -> Option<T>) -> Option<T> {
    sys::enter(|| {
        let mut guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.get_or_insert_with(Server::new))
    })
    .flatten()
}

/// As [`with_server`], but `None` until the tool made its first `bpf(2)` or `perf_event_open(2)`
/// call: the calls that only look for moat's descriptors (`mmap`, `epoll_*`) make no server.
fn with_existing_server<T>(f: impl FnOnce(&mut Server) -> Option<T>) -> Option<T> {
    sys::enter(|| {
        let mut guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_mut().and_then(f)
    })
    .flatten()
}

/// The directory on `/dev/shm` where this process's maps keep their storage.
pub fn shm_dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/dev/shm/moat-load-{pid}"))
}

impl Server {
    fn new() -> Server {
        let dir = shm_dir(sys::pid());
        let shm_dir = std::fs::create_dir_all(&dir).ok().map(|()| dir);
        if shm_dir.is_some() {
            // A tool run without `moat load` (a bare `LD_PRELOAD`) removes its maps' files too.
            sys::at_exit(remove_shm_dir);
        }
        let uprobe_type = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let mut rt = Runtime::new();
        // Tools test a task's cgroup only when asked to (`-c`), which needs a cgroup in the cgroup
        // array; moat refuses to fill one (`elem`), so this helper only has to exist for the
        // verifier and answers that it cannot tell.
        let id = moat_abi::HelperId::CurrentTaskUnderCgroup.as_u32();
        if let Some(proto) = moat::HelperProto::kernel(id) {
            rt.register_helper_with_proto(
                id,
                proto,
                |_, _| Ok(-i64::from(libc::EOPNOTSUPP) as u64),
            );
        }
        Server {
            rt,
            objects: HashMap::new(),
            next_id: 1,
            next_tag: 0,
            shm_dir,
            uprobe_type,
            epolls: HashMap::new(),
            perf_readers: HashMap::new(),
            tracepoints: None,
        }
    }

    /// The object behind `fd`, if moat handed it out and it is still that descriptor.
    fn get(&self, fd: RawFd) -> Option<&Entry> {
        let e = self.objects.get(&fd)?;
        (sys::inode(fd) == Some(e.inode)).then_some(e)
    }

    fn owns(&self, fd: RawFd) -> bool {
        self.get(fd).is_some()
    }

    fn map(&self, fd: RawFd) -> Result<&MapObj, ServeError> {
        match self.get(fd).map(|e| &e.object) {
            Some(Object::Map(m)) => Ok(m),
            _ => Err(ServeError::BadFd { fd, kind: "map" }),
        }
    }

    fn insert(&mut self, fd: RawFd, object: Object) -> Result<i64, ServeError> {
        let inode = sys::inode(fd).ok_or_else(|| ServeError::Io {
            what: "fstat of a new descriptor",
            source: std::io::Error::last_os_error(),
        })?;
        let id = self.next_id;
        self.next_id += 1;
        self.objects.insert(fd, Entry { inode, id, object });
        Ok(i64::from(fd))
    }

    /// Serves `bpf(cmd, attr, size)`; `None` passes it to the kernel.
    fn bpf(&mut self, cmd: u32, addr: u64, size: u32) -> Option<Result<i64, ServeError>> {
        let cmd = Cmd::from_u32(cmd)?;
        let size = (size as usize).min(4096);
        let mut a = match sys::read(addr, size) {
            Ok(bytes) => Attr(bytes),
            Err(_) => return Some(Err(ServeError::Fault { what: "attr", addr })),
        };
        let ours_at = |off: usize| self.owns(a.fd(off));
        let result = match cmd {
            Cmd::MapCreate => self.map_create(&a),
            Cmd::BtfLoad => self.btf_load(&a),
            Cmd::ProgLoad => self.prog_load(&mut a, addr),
            Cmd::MapLookupElem
            | Cmd::MapUpdateElem
            | Cmd::MapDeleteElem
            | Cmd::MapGetNextKey
            | Cmd::MapLookupAndDeleteElem
            | Cmd::MapFreeze
                if ours_at(attr::elem::MAP_FD) =>
            {
                self.elem(cmd, &a)
            }
            Cmd::MapLookupBatch
            | Cmd::MapLookupAndDeleteBatch
            | Cmd::MapUpdateBatch
            | Cmd::MapDeleteBatch
                if ours_at(attr::batch::MAP_FD) =>
            {
                self.batch(cmd, &mut a, addr)
            }
            Cmd::ObjGetInfoByFd if ours_at(attr::info::FD) => self.info(&a),
            Cmd::ProgBindMap if ours_at(attr::link::PROG_FD) => {
                self.map(a.fd(attr::link::BIND_MAP_FD)).map(|_| 0)
            }
            Cmd::LinkCreate if ours_at(attr::link::PROG_FD) => self.link_create(
                a.fd(attr::link::PROG_FD),
                a.fd(attr::link::TARGET_FD),
                false,
            ),
            Cmd::ObjPin if ours_at(attr::obj::BPF_FD) => self.obj_pin(&a),
            Cmd::ObjGet => return self.obj_get(&a),
            Cmd::ProgTestRun | Cmd::ProgAttach if ours_at(0) || ours_at(attr::link::TARGET_FD) => {
                Err(ServeError::Unsupported(format!(
                    "{} on moat's objects is not served",
                    cmd.name()
                )))
            }
            _ => return None,
        };
        Some(result)
    }

    fn map_create(&mut self, a: &Attr) -> Result<i64, ServeError> {
        use attr::map_create as f;
        let name = a.name(f::MAP_NAME, 16);
        let raw_type = a.u32(f::MAP_TYPE);
        // A cgroup array holds cgroup descriptors the tool puts there (`-c`): moat keeps them as
        // an array of `u32` (its programs have no cgroup helper to use them with).
        let as_type = if raw_type == moat_abi::MapType::CgroupArray.as_u32() {
            moat_abi::MapType::Array.as_u32()
        } else {
            raw_type
        };
        let map_type = moat::MapType::try_from(as_type).map_err(|_| {
            let kernel = moat_abi::MapType::from_u32(raw_type).map_or("unknown", |t| t.name());
            ServeError::Invalid(format!(
                "map `{name}`: moat has no {kernel} maps (type {raw_type})"
            ))
        })?;
        if a.u32(f::INNER_MAP_FD) != 0 || a.u64(f::MAP_EXTRA) != 0 {
            return Err(ServeError::Invalid(format!(
                "map `{name}`: inner maps and map_extra are not supported"
            )));
        }
        let def = MapDef {
            map_type,
            key_size: a.u32(f::KEY_SIZE),
            value_size: a.u32(f::VALUE_SIZE),
            max_entries: a.u32(f::MAX_ENTRIES),
            flags: a.u32(f::MAP_FLAGS),
            name: name.clone(),
        };
        let mmapable = def.flags & moat_abi::BPF_F_MMAPABLE != 0;
        let tag = format!("m{}", self.next_tag);
        self.next_tag += 1;
        let map_err = |source| ServeError::Map {
            name: name.clone(),
            source,
        };
        let (map, fd, tag) = match &self.shm_dir {
            Some(dir) => {
                let map =
                    Map::create_in(def, SharedMemory::new(dir, &tag, None)).map_err(map_err)?;
                // Described for the traced process's agent, which adopts it there; maps that
                // cannot be (perf event arrays, tries, ...) stay the tool's alone.
                let published = SharedMap::publish(&map, dir, &tag)
                    .is_ok()
                    .then(|| tag.clone());
                // An mmapable array's values are its first allocation, laid out as the kernel
                // maps them (`round_up(value_size, 8)` apart from offset 0): the tool maps that
                // file itself.
                let fd = if mmapable && map_type == moat::MapType::Array {
                    sys::open_rw(&dir.join(format!("{tag}.0")))
                } else {
                    sys::memfd(&format!("moat-map:{name}"), &[])
                };
                (map, fd, published)
            }
            None if mmapable => {
                return Err(ServeError::Unsupported(format!(
                    "map `{name}`: BPF_F_MMAPABLE needs /dev/shm"
                )))
            }
            None => (
                Map::create(def).map_err(map_err)?,
                sys::memfd(&format!("moat-map:{name}"), &[]),
                None,
            ),
        };
        let fd = fd.map_err(|source| ServeError::Io {
            what: "map descriptor",
            source,
        })?;
        let btf_fd = a.fd(f::BTF_FD);
        let btf_id = match self.get(btf_fd) {
            Some(Entry {
                id,
                object: Object::Btf { .. },
                ..
            }) if btf_fd > 0 => *id,
            _ => 0,
        };
        self.insert(
            fd,
            Object::Map(MapObj {
                map: Arc::new(map),
                tag,
                owner: None,
                kernel_type: raw_type,
                frozen: false,
                btf_key_type_id: a.u32(f::BTF_KEY_TYPE_ID),
                btf_value_type_id: a.u32(f::BTF_VALUE_TYPE_ID),
                btf_id,
            }),
        )
    }

    fn btf_load(&mut self, a: &Attr) -> Result<i64, ServeError> {
        use attr::btf_load as f;
        let size = a.u32(f::SIZE);
        if size > 16 << 20 {
            return Err(ServeError::Invalid(format!("BTF of {size} bytes")));
        }
        let btf = sys::read(a.u64(f::BTF), size as usize).map_err(fault("btf", a.u64(f::BTF)))?;
        // The header: magic 0xeB9F, version 1, and a header length within the blob.
        let ok = btf.len() >= 24
            && btf[0..2] == [0x9f, 0xeb]
            && btf[2] == 1
            && u32::from_le_bytes([btf[4], btf[5], btf[6], btf[7]]) as usize <= btf.len();
        if !ok {
            let msg = "BTF: bad header (magic, version or length)\n\0";
            let (log, log_size) = (a.u64(f::LOG_BUF), a.u32(f::LOG_SIZE) as usize);
            if log != 0 && a.u32(f::LOG_LEVEL) != 0 && log_size > 0 {
                let n = msg.len().min(log_size);
                let _ = sys::write(log, &msg.as_bytes()[..n]);
            }
            return Err(ServeError::Invalid("BTF: bad header".into()));
        }
        let fd = sys::memfd("moat-btf", &btf).map_err(|source| ServeError::Io {
            what: "BTF descriptor",
            source,
        })?;
        self.insert(fd, Object::Btf { size })
    }

    fn prog_load(&mut self, a: &mut Attr, addr: u64) -> Result<i64, ServeError> {
        use attr::prog_load as f;
        let name = a.name(f::PROG_NAME, 16);
        let kernel_type = a.u32(f::PROG_TYPE);
        let insn_cnt = a.u32(f::INSN_CNT);
        if insn_cnt == 0 || insn_cnt > 1_000_000 {
            return Err(ServeError::Invalid(format!(
                "program `{name}`: {insn_cnt} instructions"
            )));
        }
        let mut code = sys::read(a.u64(f::INSNS), insn_cnt as usize * 8)
            .map_err(fault("insns", a.u64(f::INSNS)))?;
        let license = match a.u64(f::LICENSE) {
            0 => String::new(),
            p => sys::read_cstr(p, 128).map_err(fault("license", p))?,
        };
        let prog_type = moat_type(kernel_type).ok_or_else(|| {
            let kernel = moat_abi::ProgType::from_u32(kernel_type).map_or("unknown", |t| t.name());
            ServeError::Invalid(format!(
                "program `{name}`: moat runs no {kernel} programs (type {kernel_type})"
            ))
        })?;
        if a.u32(f::ATTACH_BTF_ID) != 0 {
            return Err(ServeError::Invalid(format!(
                "program `{name}`: attaching to kernel BTF ids (fentry, fexit, LSM) is the kernel's"
            )));
        }
        let maps = self.resolve_maps(&mut code, a.u64(f::FD_ARRAY), &name)?;
        let log_level = a.u32(f::LOG_LEVEL);
        let (log_buf, log_size) = (a.u64(f::LOG_BUF), a.u32(f::LOG_SIZE) as usize);
        let want_log = log_level != 0 && log_buf != 0 && log_size > 0;
        self.rt.set_verifier_log(want_log);
        match self.rt.load_with_maps(&code, prog_type, &maps) {
            Ok(_verified) => {
                let fd = sys::memfd(&format!("moat-prog:{name}"), &code).map_err(|source| {
                    ServeError::Io {
                        what: "program descriptor",
                        source,
                    }
                })?;
                self.insert(
                    fd,
                    Object::Prog(Box::new(ProgObj {
                        name,
                        kernel_type,
                        insn_cnt,
                        gpl: moat_abi::license_is_gpl_compatible(&license),
                        code,
                        maps,
                    })),
                )
            }
            Err(e) => {
                if want_log {
                    let mut text = String::new();
                    if let moat::Error::Verify(rej) = &e {
                        for line in &rej.log {
                            text.push_str(line);
                            text.push('\n');
                        }
                    }
                    text.push_str(&format!("moat: {e}\n"));
                    let true_size = text.len() + 1;
                    let mut bytes = text.into_bytes();
                    bytes.truncate(log_size - 1);
                    bytes.push(0);
                    let _ = sys::write(log_buf, &bytes);
                    // The kernel reports the log's full size where the caller's attr has the field.
                    if a.0.len() >= f::LOG_TRUE_SIZE + 4 {
                        let _ = sys::write(
                            addr + f::LOG_TRUE_SIZE as u64,
                            &(true_size as u32).to_le_bytes(),
                        );
                    }
                }
                Err(ServeError::Load {
                    name,
                    source: Box::new(e),
                })
            }
        }
    }

    /// Rewrites the map references of `code` (`lddw` with a map's descriptor, or an index into
    /// `fd_array`) into indices into the returned list, as the facade loads them.
    fn resolve_maps(
        &self,
        code: &mut [u8],
        fd_array: u64,
        name: &str,
    ) -> Result<Vec<Arc<Map>>, ServeError> {
        use moat_abi::{
            BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, BPF_PSEUDO_MAP_VALUE,
        };
        let mut maps: Vec<Arc<Map>> = Vec::new();
        let mut index_of: HashMap<RawFd, u32> = HashMap::new();
        let mut at = 0;
        while at + 16 <= code.len() {
            let opcode = code[at];
            let src = code[at + 1] >> 4;
            if opcode != 0x18 {
                at += 8;
                continue;
            }
            let imm = i32::from_le_bytes([code[at + 4], code[at + 5], code[at + 6], code[at + 7]]);
            let fd = match src {
                BPF_PSEUDO_MAP_FD | BPF_PSEUDO_MAP_VALUE => imm,
                BPF_PSEUDO_MAP_IDX | BPF_PSEUDO_MAP_IDX_VALUE => {
                    if fd_array == 0 {
                        return Err(ServeError::Invalid(format!(
                            "program `{name}`: instruction {}: map index without fd_array",
                            at / 8
                        )));
                    }
                    let slot = fd_array + 4 * u64::from(imm as u32);
                    let b = sys::read(slot, 4).map_err(fault("fd_array", slot))?;
                    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
                }
                _ => {
                    at += 16;
                    continue;
                }
            };
            let map = self.map(fd).map_err(|_| {
                ServeError::Invalid(format!(
                    "program `{name}`: instruction {}: descriptor {fd} is not a map moat serves",
                    at / 8
                ))
            })?;
            let index = *index_of.entry(fd).or_insert_with(|| {
                maps.push(map.map.clone());
                (maps.len() - 1) as u32
            });
            let value = matches!(src, BPF_PSEUDO_MAP_VALUE | BPF_PSEUDO_MAP_IDX_VALUE);
            let new_src = if value {
                BPF_PSEUDO_MAP_IDX_VALUE
            } else {
                BPF_PSEUDO_MAP_IDX
            };
            code[at + 1] = (code[at + 1] & 0x0f) | (new_src << 4);
            code[at + 4..at + 8].copy_from_slice(&index.to_le_bytes());
            at += 16;
        }
        Ok(maps)
    }

    fn elem(&mut self, cmd: Cmd, a: &Attr) -> Result<i64, ServeError> {
        use attr::elem as f;
        let fd = a.fd(f::MAP_FD);
        let obj = self.map(fd)?;
        let map = &obj.map;
        let elements = obj.elements();
        let def = map.def();
        let name = map.name().to_string();
        let map_err = |source| ServeError::Map {
            name: name.clone(),
            source,
        };
        let key_at = a.u64(f::KEY);
        let val_at = a.u64(f::VALUE);
        let read_key = || sys::read(key_at, def.key_size as usize).map_err(fault("key", key_at));
        match cmd {
            Cmd::MapLookupElem => {
                let key = read_key()?;
                let value = if def.key_size == 0 {
                    map.peek().map_err(map_err)?
                } else {
                    elements.lookup(&key).map_err(map_err)?
                };
                sys::write(val_at, &value).map_err(fault("value", val_at))?;
            }
            Cmd::MapLookupAndDeleteElem => {
                let value = if def.key_size == 0 {
                    map.pop().map_err(map_err)?
                } else {
                    let key = read_key()?;
                    let v = elements.lookup(&key).map_err(map_err)?;
                    elements.delete(&key).map_err(map_err)?;
                    v
                };
                sys::write(val_at, &value).map_err(fault("value", val_at))?;
            }
            Cmd::MapUpdateElem => {
                if obj.frozen {
                    return Err(ServeError::Frozen(name));
                }
                if obj.kernel_type == moat_abi::MapType::CgroupArray.as_u32() {
                    let line = format!(
                        "map `{name}`: filtering by cgroup is not supported (moat's programs run \
                         in user space and have no cgroup to test)"
                    );
                    sys::say(&line);
                    return Err(ServeError::Unsupported(line));
                }
                let key = read_key()?;
                let value =
                    sys::read(val_at, map.host_value_size()).map_err(fault("value", val_at))?;
                elements
                    .update(&key, &value, a.u64(f::FLAGS))
                    .map_err(map_err)?;
                // A perf event array's slot given one of the tool's perf buffer events: records
                // of that slot go to the event's ring.
                if map.map_type() == MapType::PerfEventArray {
                    if let (Some(tag), Ok(k), Ok(v)) = (
                        obj.tag.clone(),
                        <[u8; 4]>::try_from(key.as_slice()),
                        <[u8; 4]>::try_from(value.as_slice()),
                    ) {
                        let (slot, event) = (u32::from_ne_bytes(k), i32::from_ne_bytes(v));
                        self.bind_output(event, tag, slot);
                    }
                }
            }
            Cmd::MapDeleteElem => {
                if obj.frozen {
                    return Err(ServeError::Frozen(name));
                }
                elements.delete(&read_key()?).map_err(map_err)?;
            }
            Cmd::MapGetNextKey => {
                let key = if key_at == 0 { None } else { Some(read_key()?) };
                let next = elements.next_key(key.as_deref()).map_err(map_err)?;
                sys::write(val_at, &next).map_err(fault("next_key", val_at))?;
            }
            Cmd::MapFreeze => {
                if let Some(Entry {
                    object: Object::Map(m),
                    ..
                }) = self.objects.get_mut(&fd)
                {
                    m.frozen = true;
                }
            }
            _ => {
                return Err(ServeError::Invalid(format!(
                    "{} is not an element command",
                    cmd
                )))
            }
        }
        Ok(0)
    }

    /// The batch commands. A batch token is the last key a call returned (`out_batch`, `key_size`
    /// bytes), which the next call continues after (`in_batch`); `ENOENT` with the count set
    /// says the map has no more.
    fn batch(&mut self, cmd: Cmd, a: &mut Attr, addr: u64) -> Result<i64, ServeError> {
        use attr::batch as f;
        let obj = self.map(a.fd(f::MAP_FD))?;
        if obj.frozen && cmd != Cmd::MapLookupBatch {
            return Err(ServeError::Frozen(obj.map.name().to_string()));
        }
        let map = obj.map.clone();
        let elements = obj.elements();
        let ks = map.def().key_size as usize;
        let vs = map.host_value_size();
        let count = a.u32(f::COUNT) as usize;
        let (keys_at, values_at) = (a.u64(f::KEYS), a.u64(f::VALUES));
        let name = map.name().to_string();
        let map_err = |source| ServeError::Map {
            name: name.clone(),
            source,
        };
        let mut done = 0usize;
        let result = match cmd {
            Cmd::MapUpdateBatch | Cmd::MapDeleteBatch => {
                let flags = a.u64(f::ELEM_FLAGS);
                let mut r = Ok(());
                while done < count {
                    let k_at = keys_at + (done * ks) as u64;
                    let key = sys::read(k_at, ks).map_err(fault("keys", k_at))?;
                    let step = if cmd == Cmd::MapUpdateBatch {
                        let v_at = values_at + (done * vs) as u64;
                        let value = sys::read(v_at, vs).map_err(fault("values", v_at))?;
                        elements.update(&key, &value, flags)
                    } else {
                        elements.delete(&key)
                    };
                    if let Err(e) = step {
                        r = Err(map_err(e));
                        break;
                    }
                    done += 1;
                }
                r
            }
            _ => {
                let in_at = a.u64(f::IN_BATCH);
                let mut prev = if in_at == 0 {
                    None
                } else {
                    Some(sys::read(in_at, ks).map_err(fault("in_batch", in_at))?)
                };
                let mut keys = Vec::new();
                let mut r = Ok(());
                while done < count {
                    match elements.next_key(prev.as_deref()) {
                        Ok(k) => {
                            let v = elements.lookup(&k).map_err(map_err)?;
                            let k_at = keys_at + (done * ks) as u64;
                            let v_at = values_at + (done * vs) as u64;
                            sys::write(k_at, &k).map_err(fault("keys", k_at))?;
                            sys::write(v_at, &v).map_err(fault("values", v_at))?;
                            keys.push(k.clone());
                            prev = Some(k);
                            done += 1;
                        }
                        Err(MapError::NotFound) => {
                            r = Err(map_err(MapError::NotFound));
                            break;
                        }
                        Err(e) => {
                            r = Err(map_err(e));
                            break;
                        }
                    }
                }
                if let Some(last) = &prev {
                    let out_at = a.u64(f::OUT_BATCH);
                    sys::write(out_at, last).map_err(fault("out_batch", out_at))?;
                }
                if cmd == Cmd::MapLookupAndDeleteBatch {
                    for k in &keys {
                        elements.delete(k).map_err(map_err)?;
                    }
                }
                r
            }
        };
        a.set_u32(f::COUNT, done as u32);
        sys::write(addr + f::COUNT as u64, &(done as u32).to_le_bytes())
            .map_err(fault("count", addr))?;
        result.map(|()| 0)
    }

    fn info(&self, a: &Attr) -> Result<i64, ServeError> {
        use attr::info as f;
        let fd = a.fd(f::FD);
        let entry = self
            .get(fd)
            .ok_or(ServeError::BadFd { fd, kind: "object" })?;
        let mut out = match &entry.object {
            Object::Map(m) => {
                use attr::map_info as i;
                let def = m.map.def();
                let mut o = Attr(vec![0; i::SIZE]);
                o.set_u32(i::TYPE, m.kernel_type);
                o.set_u32(i::ID, entry.id);
                o.set_u32(i::KEY_SIZE, def.key_size);
                o.set_u32(i::VALUE_SIZE, def.value_size);
                o.set_u32(i::MAX_ENTRIES, def.max_entries);
                o.set_u32(i::MAP_FLAGS, def.flags);
                o.set_bytes(i::NAME, &name16(&def.name));
                o.set_u32(i::BTF_ID, m.btf_id);
                o.set_u32(i::BTF_KEY_TYPE_ID, m.btf_key_type_id);
                o.set_u32(i::BTF_VALUE_TYPE_ID, m.btf_value_type_id);
                o
            }
            Object::Prog(p) => {
                use attr::prog_info as i;
                let mut o = Attr(vec![0; i::SIZE]);
                o.set_u32(i::TYPE, p.kernel_type);
                o.set_u32(i::ID, entry.id);
                o.set_u32(i::XLATED_PROG_LEN, p.insn_cnt * 8);
                o.set_bytes(i::NAME, &name16(&p.name));
                o.set_u32(i::GPL_COMPATIBLE, u32::from(p.gpl));
                o
            }
            Object::Btf { size } => {
                use attr::btf_info as i;
                let mut o = Attr(vec![0; i::SIZE]);
                o.set_u32(i::BTF_SIZE, *size);
                o.set_u32(i::ID, entry.id);
                o
            }
            Object::Event(_) | Object::Link(_) | Object::Output(_) => {
                return Err(ServeError::BadFd {
                    fd,
                    kind: "bpf object",
                })
            }
        };
        let len = (a.u32(f::LEN) as usize).min(out.0.len());
        out.0.truncate(len);
        let at = a.u64(f::INFO);
        sys::write(at, &out.0).map_err(fault("info", at))?;
        Ok(0)
    }

    /// Attaches program `prog_fd` to `target_fd` (`BPF_LINK_CREATE`, or with `ioctl` the perf
    /// event's `PERF_EVENT_IOC_SET_BPF`): a uprobe event of a traced process runs the program
    /// there ([`traced`]); anything else fails with one line saying why.
    fn link_create(
        &mut self,
        prog_fd: RawFd,
        target_fd: RawFd,
        via_ioctl: bool,
    ) -> Result<i64, ServeError> {
        let Some(Entry {
            object: Object::Prog(prog),
            ..
        }) = self.get(prog_fd)
        else {
            return Err(ServeError::BadFd {
                fd: prog_fd,
                kind: "program",
            });
        };
        let kind = moat_abi::ProgType::from_u32(prog.kernel_type).map_or("unknown", |t| t.name());
        let refused = |why: String| {
            let line = format!("program `{}` ({kind}) {why}", prog.name);
            sys::say(&line);
            ServeError::Unsupported(line)
        };
        let event = match self.get(target_fd).map(|e| &e.object) {
            Some(Object::Event(ev)) => ev,
            Some(other) => {
                return Err(ServeError::Invalid(format!(
                    "cannot attach a program to a {}",
                    other.kind()
                )))
            }
            // Not open at all: the kernel says EBADF too (libbpf's perf-link probe expects it).
            None if sys::inode(target_fd).is_none() => {
                return Err(ServeError::BadFd {
                    fd: target_fd,
                    kind: "perf event",
                })
            }
            None => {
                return Err(refused(
                    "on a kernel event (kprobe, kernel tracepoint or other perf event): moat \
                     runs programs in user space only, on uprobes"
                        .to_string(),
                ))
            }
        };
        let probe = match &event.syscall {
            Some(tracepoint) => format!("tracepoint syscalls:{tracepoint}"),
            None => format!(
                "{} {}+{:#x}",
                if event.retprobe {
                    "uretprobe"
                } else {
                    "uprobe"
                },
                event.path,
                event.offset
            ),
        };
        if event.running.is_some() {
            return Err(ServeError::Invalid(format!(
                "{probe}: a program is attached to this event already"
            )));
        }
        // An event on every process runs in the one `moat load --pid` names, if it names one.
        let pid = match event.pid {
            p if p > 0 => p,
            _ => traced::chosen_pid().unwrap_or(event.pid),
        };
        if pid <= 0 || pid.unsigned_abs() == sys::pid() {
            return Err(refused(format!(
                "on {probe} of {}: moat runs a tool's programs inside one traced process; give \
                 the tool its process (-p PID) or name one with `moat load --pid PID`",
                if pid <= 0 {
                    "every process".to_string()
                } else {
                    "the tool itself".to_string()
                }
            )));
        }
        let Some(dir) = self.shm_dir.clone() else {
            return Err(refused(format!(
                "on {probe}: sharing maps with process {pid} needs /dev/shm"
            )));
        };
        // Each map goes to the traced process by its tag; hash maps become that process's.
        let mut tags = Vec::new();
        let mut owned = Vec::new();
        for map in &prog.maps {
            let Some((fd, obj)) = self.objects.iter().find_map(|(fd, e)| match &e.object {
                Object::Map(m) if Arc::ptr_eq(&m.map, map) => Some((*fd, m)),
                _ => None,
            }) else {
                return Err(refused(format!(
                    "on {probe}: map `{}` was closed before the program was attached",
                    map.name()
                )));
            };
            let t = map.map_type();
            let tag = match (&obj.tag, Map::adoptable(t)) {
                (Some(tag), true) => tag.clone(),
                _ => {
                    let kernel = moat_abi::MapType::from_u32(obj.kernel_type)
                        .map_or("unknown", |t| t.name());
                    return Err(refused(format!(
                        "on {probe}: its map `{}` ({kernel}) cannot be shared with process {pid} \
                         yet (moat shares arrays, hash maps and perf event arrays)",
                        map.name()
                    )));
                }
            };
            if let Some(o) = obj.owner.as_ref().filter(|o| o.pid != pid) {
                return Err(refused(format!(
                    "on {probe}: its map `{}` is written by process {} already; moat runs a \
                     tool's programs in one process",
                    map.name(),
                    o.pid
                )));
            }
            if t.is_hash() && obj.owner.is_none() {
                owned.push((fd, tag.clone()));
            }
            tags.push(tag);
        }
        let name = prog.name.clone();
        let orders = traced::Orders {
            name: &prog.name,
            code: &prog.code,
            map_tags: &tags,
            path: &event.path,
            offset: event.offset,
            retprobe: event.retprobe,
            syscall: event.syscall.as_deref(),
            pid,
        };
        // The tool stops writing the hash maps before the traced process takes them over.
        let set_owner = |s: &mut Server, owner: Option<Arc<Owner>>, fd: RawFd| {
            if let Some(Entry {
                object: Object::Map(m),
                ..
            }) = s.objects.get_mut(&fd)
            {
                m.owner = owner;
            }
        };
        let n = self.next_id;
        let result = {
            let mut views = Vec::new();
            for (fd, tag) in &owned {
                match SharedMap::open(&dir, tag) {
                    Ok(view) => views.push((*fd, Arc::new(Owner { pid, view }))),
                    Err(e) => return Err(refused(format!("on {probe}: map {tag}: {e}"))),
                }
            }
            let attached = traced::attach(&dir, n, &orders);
            if attached.is_ok() {
                for (fd, owner) in views {
                    set_owner(self, Some(owner), fd);
                }
            }
            attached
        };
        self.next_id += 1;
        let running = match result {
            Ok((running, _method)) => running,
            Err(why) => {
                let line = format!("program `{name}` ({kind}) on {probe} of process {pid}: {why}");
                sys::say(&line);
                return Err(ServeError::Unsupported(line));
            }
        };
        if via_ioctl {
            if let Some(Entry {
                object: Object::Event(ev),
                ..
            }) = self.objects.get_mut(&target_fd)
            {
                ev.running = Some(running);
            }
            return Ok(0);
        }
        let fd = match sys::eventfd() {
            Ok(fd) => fd,
            Err(source) => {
                let _ = traced::detach(&running);
                return Err(ServeError::Io {
                    what: "link descriptor",
                    source,
                });
            }
        };
        self.insert(fd, Object::Link(running))
    }

    /// `perf_event_open` of the uprobe PMU: moat's own event (an eventfd).
    fn perf_event_open(
        &mut self,
        attr_at: u64,
        pid: i32,
        cpu: i32,
    ) -> Option<Result<i64, ServeError>> {
        use attr::perf as f;
        let head = Attr(sys::read(attr_at, 16).ok()?);
        if head.u32(f::TYPE) == PERF_TYPE_SOFTWARE
            && head.u64(f::CONFIG) == PERF_COUNT_SW_BPF_OUTPUT
            && self.shm_dir.is_some()
        {
            return Some(self.open_output(cpu));
        }
        if head.u32(f::TYPE) == PERF_TYPE_TRACEPOINT {
            let name = self.syscall_tracepoint(head.u64(f::CONFIG))?;
            return Some(self.open_tracepoint(name, pid));
        }
        let uprobe_type = self.uprobe_type?;
        if head.u32(f::TYPE) != uprobe_type || (head.u32(f::SIZE) as usize) < f::MIN_SIZE {
            return None;
        }
        Some(self.open_uprobe(attr_at, pid))
    }

    /// The name of the `syscalls` tracepoint with id `id` (`sys_enter_openat`), as tracefs lists
    /// them (read once); `None` for other tracepoints, which stay the kernel's.
    fn syscall_tracepoint(&mut self, id: u64) -> Option<String> {
        let ids = self.tracepoints.get_or_insert_with(|| {
            ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
                .iter()
                .find_map(|root| {
                    let dir = std::fs::read_dir(format!("{root}/events/syscalls")).ok()?;
                    Some(
                        dir.filter_map(Result::ok)
                            .filter_map(|e| {
                                let id = std::fs::read_to_string(e.path().join("id")).ok()?;
                                let name = e.file_name().to_string_lossy().into_owned();
                                Some((id.trim().parse().ok()?, name))
                            })
                            .collect(),
                    )
                })
                .unwrap_or_default()
        });
        ids.get(&id).cloned()
    }

    /// A system call's tracepoint: moat's own event.
    fn open_tracepoint(&mut self, name: String, pid: i32) -> Result<i64, ServeError> {
        self.new_event(EventObj {
            syscall: Some(name),
            path: String::new(),
            offset: 0,
            retprobe: false,
            pid,
            running: None,
        })
    }

    /// A descriptor (an eventfd) for `event`.
    fn new_event(&mut self, event: EventObj) -> Result<i64, ServeError> {
        let fd = sys::eventfd().map_err(|source| ServeError::Io {
            what: "perf event descriptor",
            source,
        })?;
        self.insert(fd, Object::Event(event))
    }

    /// A perf buffer event: a ring file of its own beside the maps.
    fn open_output(&mut self, cpu: i32) -> Result<i64, ServeError> {
        let io = |source| ServeError::Io {
            what: "perf buffer event",
            source,
        };
        let dir = self
            .shm_dir
            .clone()
            .ok_or_else(|| io(std::io::Error::other("no /dev/shm")))?;
        let path = dir.join(format!("pe{}.ring", self.next_id));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        let fd = sys::open_rw(&path).map_err(io)?;
        self.insert(
            fd,
            Object::Output(OutputObj {
                cpu,
                file,
                ring: None,
                bound: None,
            }),
        )
    }

    /// Records slot `slot` of perf event array `tag` as going to perf buffer event `event`.
    fn bind_output(&mut self, event: RawFd, tag: String, slot: u32) {
        let inode = sys::inode(event);
        if let Some(Entry {
            inode: known,
            object: Object::Output(o),
            ..
        }) = self.objects.get_mut(&event)
        {
            if Some(*known) == inode {
                o.bound = Some((tag, slot));
            }
        }
    }

    /// The tool maps `len` bytes of descriptor `fd`: for a perf buffer event, its ring is made
    /// that size first. `None` for other descriptors.
    fn mapping(&mut self, fd: RawFd, len: usize) -> Option<Result<(), i32>> {
        let Some(Entry {
            object: Object::Output(o),
            ..
        }) = self.get(fd)
        else {
            return None;
        };
        if o.ring.is_some() {
            return Some(Ok(()));
        }
        let ring = KernelRing::map(&o.file, len);
        if let Some(Entry {
            object: Object::Output(o),
            ..
        }) = self.objects.get_mut(&fd)
        {
            match ring {
                Ok(r) => o.ring = Some(r),
                Err(e) => return Some(Err(e.raw_os_error().unwrap_or(libc::EINVAL))),
            }
        }
        Some(Ok(()))
    }

    /// `BPF_OBJ_PIN` of one of moat's maps: its files are hard-linked into a directory of the pin
    /// store named after the path ([`pin_dir`]), so they outlive this process, where `BPF_OBJ_GET`
    /// finds them. Arrays and hash maps (per-CPU and LRU too); other objects are refused.
    fn obj_pin(&mut self, a: &Attr) -> Result<i64, ServeError> {
        let at = a.u64(attr::obj::PATHNAME);
        let path = sys::read_cstr(at, 4096).map_err(fault("pathname", at))?;
        let fd = a.fd(attr::obj::BPF_FD);
        let obj = match self.get(fd).map(|e| &e.object) {
            Some(Object::Map(m)) => m,
            Some(other) => {
                return Err(ServeError::Unsupported(format!(
                    "{path}: moat pins maps only, not a {}",
                    other.kind()
                )))
            }
            None => return Err(ServeError::BadFd { fd, kind: "map" }),
        };
        let t = obj.map.map_type();
        let (Some(tag), Some(dir), true) = (
            &obj.tag,
            &self.shm_dir,
            matches!(t, MapType::Array | MapType::PercpuArray) || t.is_hash(),
        ) else {
            return Err(ServeError::Unsupported(format!(
                "{path}: map `{}` cannot be pinned (moat pins arrays and hash maps kept in \
                 /dev/shm)",
                obj.map.name()
            )));
        };
        let io = |source| ServeError::Io {
            what: "pin",
            source,
        };
        let pin = pin_dir(&path);
        if let Some(root) = pin.parent() {
            std::fs::create_dir_all(root).map_err(io)?;
        }
        match std::fs::create_dir(&pin) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ServeError::Pinned(path))
            }
            Err(e) => return Err(io(e)),
        }
        let prefix = format!("{tag}.");
        let linked = std::fs::read_dir(dir).map_err(io).and_then(|entries| {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(rest) = name.strip_prefix(&prefix) {
                    std::fs::hard_link(e.path(), pin.join(format!("{PIN_TAG}.{rest}")))
                        .map_err(io)?;
                }
            }
            std::fs::write(pin.join("path"), &path).map_err(io)
        });
        if let Err(e) = linked {
            let _ = std::fs::remove_dir_all(&pin);
            return Err(e);
        }
        Ok(0)
    }

    /// `BPF_OBJ_GET` of a path moat pinned: a map over the pin's files (`Map::adopt`); a hash map
    /// is read through them and not changed here (its writer is the process that pinned it).
    /// `None` for paths moat did not pin: the kernel's.
    fn obj_get(&mut self, a: &Attr) -> Option<Result<i64, ServeError>> {
        let at = a.u64(attr::obj::PATHNAME);
        let path = sys::read_cstr(at, 4096).ok()?;
        let pin = pin_dir(&path);
        if !pin.join(format!("{PIN_TAG}.map")).is_file() {
            return None;
        }
        let map_err = |source| ServeError::Map {
            name: path.clone(),
            source,
        };
        let got = (|| {
            let map = Map::adopt(&pin, PIN_TAG, None).map_err(map_err)?;
            let def = map.def().clone();
            let owner = if def.map_type.is_hash() {
                let view = SharedMap::open(&pin, PIN_TAG).map_err(map_err)?;
                Some(Arc::new(Owner { pid: 0, view }))
            } else {
                None
            };
            let mmapable = def.flags & moat_abi::BPF_F_MMAPABLE != 0;
            let fd = if mmapable && def.map_type == MapType::Array {
                sys::open_rw(&pin.join(format!("{PIN_TAG}.0")))
            } else {
                sys::memfd(&format!("moat-map:{}", def.name), &[])
            }
            .map_err(|source| ServeError::Io {
                what: "map descriptor",
                source,
            })?;
            self.insert(
                fd,
                Object::Map(MapObj {
                    map: Arc::new(map),
                    tag: None,
                    owner,
                    kernel_type: def.map_type.as_u32(),
                    frozen: false,
                    btf_key_type_id: 0,
                    btf_value_type_id: 0,
                    btf_id: 0,
                }),
            )
        })();
        Some(got)
    }

    /// `epoll_ctl` with a perf buffer event: kept here (the kernel cannot poll a file); `None`
    /// for other descriptors.
    fn epoll_ctl(&mut self, epfd: RawFd, op: i32, fd: RawFd, event: u64) -> Option<i64> {
        if !matches!(self.get(fd).map(|e| &e.object), Some(Object::Output(_))) {
            return None;
        }
        let list = self.epolls.entry(epfd).or_default();
        let at = list.iter().position(|&(f, _, _)| f == fd);
        let read_event = || {
            let b = sys::read(event, 12).ok()?;
            let events = u32::from_ne_bytes(b[0..4].try_into().ok()?);
            let data = u64::from_ne_bytes(b[4..12].try_into().ok()?);
            Some((events, data))
        };
        Some(match (op, at) {
            (libc::EPOLL_CTL_ADD, Some(_)) => -i64::from(libc::EEXIST),
            (libc::EPOLL_CTL_ADD, None) => match read_event() {
                Some((events, data)) => {
                    list.push((fd, events, data));
                    0
                }
                None => -i64::from(libc::EFAULT),
            },
            (libc::EPOLL_CTL_MOD, Some(i)) => match read_event() {
                Some((events, data)) => {
                    list[i] = (fd, events, data);
                    0
                }
                None => -i64::from(libc::EFAULT),
            },
            (libc::EPOLL_CTL_DEL, Some(i)) => {
                list.remove(i);
                0
            }
            (libc::EPOLL_CTL_MOD | libc::EPOLL_CTL_DEL, None) => -i64::from(libc::ENOENT),
            _ => -i64::from(libc::EINVAL),
        })
    }

    /// For `epoll_wait` on `epfd`: `None` if it holds no perf buffer event; else moves the
    /// records the traced process wrote since into the events' rings and returns the events
    /// (`events`, `data`) of those with records to read.
    fn ready_outputs(&mut self, epfd: RawFd) -> Option<Vec<(u32, u64)>> {
        let list = self.epolls.get(&epfd).filter(|l| !l.is_empty())?.clone();
        self.pump();
        Some(
            list.iter()
                .filter(|&&(fd, events, _)| {
                    events & libc::EPOLLIN as u32 != 0
                        && matches!(
                            self.objects.get(&fd).map(|e| &e.object),
                            Some(Object::Output(OutputObj { ring: Some(r), .. })) if r.has_data()
                        )
                })
                .map(|&(_, _, data)| (libc::EPOLLIN as u32, data))
                .collect(),
        )
    }

    /// Copies the records of every bound perf event array into the rings of the events their
    /// slots hold.
    fn pump(&mut self) {
        let Some(dir) = self.shm_dir.clone() else {
            return;
        };
        let tags: Vec<String> = self
            .objects
            .values()
            .filter_map(|e| match &e.object {
                Object::Output(OutputObj {
                    bound: Some((tag, _)),
                    ring: Some(_),
                    ..
                }) => Some(tag.clone()),
                _ => None,
            })
            .collect();
        let Server {
            objects,
            perf_readers,
            ..
        } = self;
        for tag in tags {
            if !perf_readers.contains_key(&tag) {
                match SharedMap::open(&dir, &tag) {
                    Ok(r) => {
                        perf_readers.insert(tag.clone(), r);
                    }
                    Err(_) => continue,
                }
            }
            let Some(reader) = perf_readers.get_mut(&tag) else {
                continue;
            };
            let _ = reader.consume(&mut |slot, data| {
                let output = objects.values_mut().find_map(|e| match &mut e.object {
                    Object::Output(o) if o.bound.as_ref() == Some(&(tag.clone(), slot)) => Some(o),
                    _ => None,
                });
                if let Some(OutputObj {
                    ring: Some(ring),
                    cpu,
                    ..
                }) = output
                {
                    ring.push_sample(*cpu as u64, data);
                }
            });
        }
    }

    fn open_uprobe(&mut self, attr_at: u64, pid: i32) -> Result<i64, ServeError> {
        use attr::perf as f;
        let a = Attr(sys::read(attr_at, f::MIN_SIZE).map_err(fault("perf_event_attr", attr_at))?);
        let path_at = a.u64(f::CONFIG1);
        let path = sys::read_cstr(path_at, 4096).map_err(fault("uprobe path", path_at))?;
        self.new_event(EventObj {
            path,
            offset: a.u64(f::CONFIG2),
            retprobe: a.u64(f::CONFIG) & 1 != 0,
            pid,
            running: None,
            syscall: None,
        })
    }
}

/// Where pinned maps are kept: one directory per pinned path (see [`pin_dir`]), holding hard links
/// to the map's files, so they outlive the process that pinned them. Removing a pin is removing
/// its directory.
pub const PIN_ROOT: &str = "/dev/shm/moat-pins";

/// The tag of a pinned map's files in its pin directory.
const PIN_TAG: &str = "pin";

/// The directory of the pin at `path` (`/` and `%` escaped, so that every path is one name).
pub fn pin_dir(path: &str) -> PathBuf {
    let name = path.replace('%', "%25").replace('/', "%2F");
    Path::new(PIN_ROOT).join(name)
}

/// `PERF_TYPE_TRACEPOINT`.
const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `PERF_TYPE_SOFTWARE`.
const PERF_TYPE_SOFTWARE: u32 = 1;
/// `PERF_COUNT_SW_BPF_OUTPUT`: the event a perf buffer's slot holds.
const PERF_COUNT_SW_BPF_OUTPUT: u64 = 10;

/// Removes this process's map storage at exit (after `main`, when the maps are no longer used).
extern "C" fn remove_shm_dir() {
    let _ = std::panic::catch_unwind(|| std::fs::remove_dir_all(shm_dir(sys::pid())));
}

/// A name as the kernel's 16-byte, NUL-terminated name fields hold it.
fn name16(name: &str) -> Vec<u8> {
    let mut b: Vec<u8> = name.bytes().take(15).collect();
    b.push(0);
    b
}

/// The moat program type whose context a kernel program type's programs get, if moat has one.
fn moat_type(kernel: u32) -> Option<ProgType> {
    use moat_abi::ProgType as K;
    Some(match K::from_u32(kernel)? {
        K::SocketFilter => ProgType::SocketFilter,
        K::Kprobe | K::Tracepoint | K::RawTracepoint | K::PerfEvent => ProgType::Tracing,
        K::Xdp => ProgType::Xdp,
        K::SchedCls | K::SchedAct => ProgType::SchedCls,
        K::CgroupSkb => ProgType::CgroupSkb,
        _ => return None,
    })
}

fn finish(r: Result<i64, ServeError>) -> i64 {
    r.unwrap_or_else(|e| -i64::from(e.errno()))
}

/// `bpf(cmd, attr, size)`: `None` for the kernel, else the result or `-errno`.
pub fn bpf(cmd: u32, attr: u64, size: u32) -> Option<i64> {
    with_server(|s| s.bpf(cmd, attr, size)).map(finish)
}

/// `perf_event_open(attr, pid, cpu, group_fd, flags)`: moat serves the uprobe PMU's events.
pub fn perf_event_open(attr: u64, pid: i32, cpu: i32, _group: i32, _flags: u64) -> Option<i64> {
    with_server(|s| s.perf_event_open(attr, pid, cpu)).map(finish)
}

/// Before `mmap` of `len` bytes of `fd`: `None` unless `fd` is a perf buffer event of moat's,
/// then `Err(errno)` if its ring cannot be made.
pub fn mapping(fd: RawFd, len: usize) -> Option<Result<(), i32>> {
    with_existing_server(|s| s.mapping(fd, len))
}

/// `epoll_ctl(epfd, op, fd, event)` with one of moat's perf buffer events: the result or
/// `-errno`; `None` for the kernel.
pub fn epoll_ctl(epfd: RawFd, op: i32, fd: RawFd, event: u64) -> Option<i64> {
    with_existing_server(|s| s.epoll_ctl(epfd, op, fd, event))
}

/// For `epoll_wait(epfd, ...)`: `None` if `epfd` holds none of moat's perf buffer events, else
/// the `(events, data)` of those ready to be read.
pub fn ready_outputs(epfd: RawFd) -> Option<Vec<(u32, u64)>> {
    with_existing_server(|s| s.ready_outputs(epfd))
}

/// `ioctl(fd, req, arg)` on a perf event moat handed out.
pub fn ioctl(fd: RawFd, req: u64, arg: u64) -> Option<i64> {
    with_server(|s| {
        if !matches!(
            s.get(fd).map(|e| &e.object),
            Some(Object::Event(_) | Object::Output(_))
        ) {
            return None;
        }
        Some(match req {
            moat_abi::PERF_EVENT_IOC_ENABLE | moat_abi::PERF_EVENT_IOC_DISABLE => Ok(0),
            moat_abi::PERF_EVENT_IOC_SET_BPF => s.link_create(arg as RawFd, fd, true),
            _ => Err(ServeError::Invalid(format!(
                "ioctl {req:#x} on a perf event"
            ))),
        })
    })
    .map(finish)
}

/// `close(fd)`: forgets the object behind `fd` if it was moat's.
pub fn closed(fd: RawFd) {
    let _ = sys::enter(|| {
        let mut guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = guard.as_mut() {
            s.epolls.remove(&fd);
            if s.get(fd).is_some() {
                for list in s.epolls.values_mut() {
                    list.retain(|&(f, _, _)| f != fd);
                }
                let running = match s.objects.remove(&fd).map(|e| e.object) {
                    Some(Object::Link(r)) => Some(r),
                    Some(Object::Event(ev)) => ev.running,
                    _ => None,
                };
                if let Some(r) = running {
                    if let Err(why) = traced::detach(&r) {
                        sys::say(&format!("moat: detaching from process {}: {why}", r.pid));
                    }
                }
            }
        }
    });
}
