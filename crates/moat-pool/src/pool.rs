//! The public API: [`Pool`] (create, open, inspect, verify), [`PoolMap`] (one persistent hash map) and
//! [`Transaction`] (several updates, all or nothing), plus the data `moat pool inspect` prints
//! ([`PoolInfo`]).

use crate::acl::{AclEntry, Principal, ProgramTag};
use crate::core::{Core, Entries, MapRef, NewMap, Recovered, TxCore};
use crate::error::PoolError;
use crate::layout::{
    self, parse_state_word, state_word, Entry, Header, RecHeader, PAGE, REC_HEADER,
    STATE_COMMITTED, VERSION,
};
use crate::media::{rd64, Durability, FileMedia, Media, Protection, ReadMedia};
use crate::sys::FlushKind;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to create a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// The file's size in bytes (a multiple of 4096; rounded down so the regions tile it exactly).
    pub size: u64,
    /// The undo log's size (a multiple of 4096, 8 KiB..=64 MiB): bounds one transaction's changes.
    pub log_size: u64,
    /// How many maps the pool can hold (1..=4096).
    pub max_maps: u32,
    /// The creating program's tag, recorded as the pool's owner with the current user.
    pub owner_tag: Option<ProgramTag>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            size: 16 << 20,
            log_size: 64 << 10,
            max_maps: 64,
            owner_tag: None,
        }
    }
}

impl CreateOptions {
    /// Default options with `size` bytes.
    pub fn with_size(size: u64) -> CreateOptions {
        CreateOptions {
            size,
            ..CreateOptions::default()
        }
    }
}

/// How to open a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// How commits reach durability.
    pub durability: Durability,
    /// Stray-write protection.
    pub protection: Protection,
}

/// How an open pool is mapped and made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolMode {
    /// `MAP_SYNC` was accepted: the file is on a DAX file system.
    pub map_sync: bool,
    /// Fences `msync` the touched pages.
    pub msync: bool,
    /// The cache-line write-back instruction used.
    pub flush: FlushKind,
    /// Stray-write protection.
    pub protection: Protection,
}

/// What opening a pool had to repair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Undo records of an interrupted transaction rolled back.
    pub rolled_back: u32,
    /// Secure frees of a committed transaction completed.
    pub completed_frees: u32,
}

impl From<Recovered> for Recovery {
    fn from(r: Recovered) -> Recovery {
        Recovery {
            rolled_back: r.rolled_back,
            completed_frees: r.completed_frees,
        }
    }
}

/// A map definition for [`Pool::create_map`]: a hash map with fixed key and value sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDef {
    /// Name, 1..=31 bytes, unique in the pool.
    pub name: String,
    /// Key size in bytes (1..=512).
    pub key_size: u32,
    /// Value size in bytes (1..=65536).
    pub value_size: u32,
    /// Capacity (1..=2^24); all slots are preallocated, like a kernel hash map.
    pub max_entries: u32,
    /// Who else may read or write it.
    pub acl: Vec<AclEntry>,
    /// The owner; `None` = [`Principal::host`].
    pub owner: Option<Principal>,
}

impl MapDef {
    /// A hash map owned by the host user, with an empty access list.
    pub fn new(name: &str, key_size: u32, value_size: u32, max_entries: u32) -> MapDef {
        MapDef {
            name: name.to_string(),
            key_size,
            value_size,
            max_entries,
            acl: Vec::new(),
            owner: None,
        }
    }

    /// With this access list.
    pub fn with_acl(mut self, acl: Vec<AclEntry>) -> MapDef {
        self.acl = acl;
        self
    }

    /// Owned by `owner`.
    pub fn with_owner(mut self, owner: Principal) -> MapDef {
        self.owner = Some(owner);
        self
    }
}

/// A pool file, open and mapped. `Send + Sync`: every write takes the pool's cross-process lock.
#[derive(Debug)]
pub struct Pool {
    pub(crate) core: Arc<Core<FileMedia>>,
    path: PathBuf,
    recovered: Recovery,
}

/// 16 random bytes shaped as a version-4 UUID.
fn new_uuid() -> Result<[u8; 16], std::io::Error> {
    let mut u = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut u)?;
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    Ok(u)
}

impl Pool {
    /// Creates a new pool file at `path` (which must not exist). Returns the pool's layout.
    ///
    /// The file is written, synced, and only then given its header, so a crash during creation leaves a
    /// file that opening reports as "not a moat pool", never a half-made pool.
    pub fn create(path: impl AsRef<Path>, opts: &CreateOptions) -> Result<PoolInfo, PoolError> {
        let path = path.as_ref();
        let io = |op, source| PoolError::Io {
            path: path.to_path_buf(),
            op,
            source,
        };
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let owner = Principal::host();
        let h = Header::plan(
            opts.size / PAGE * PAGE,
            opts.log_size,
            opts.max_maps,
            new_uuid().map_err(|e| io("read /dev/urandom", e))?,
            created,
            owner.uid,
            opts.owner_tag.map_or(0, u64::from_le_bytes),
        )?;
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io("create", e))?;
        let write = || -> Result<(), PoolError> {
            file.set_len(h.pool_size).map_err(|e| io("set_len", e))?;
            // The lock page's boot id, so that the first open does not mistake the lock for stale.
            let boot =
                std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
            let hex: Vec<u8> = boot
                .bytes()
                .filter(u8::is_ascii_hexdigit)
                .map(|c| (c as char).to_digit(16).unwrap_or(0) as u8)
                .collect();
            let id: Vec<u8> = hex
                .chunks_exact(2)
                .take(16)
                .map(|p| p[0] << 4 | p[1])
                .collect();
            file.write_all_at(&id, h.lock_off + 16)
                .map_err(|e| io("write lock page", e))?;
            file.write_all_at(&state_word(0, layout::STATE_IDLE).to_le_bytes(), h.log_off)
                .map_err(|e| io("write log", e))?;
            file.sync_all().map_err(|e| io("fsync", e))?;
            file.write_all_at(&h.encode(), 0)
                .map_err(|e| io("write header", e))?;
            file.sync_all().map_err(|e| io("fsync", e))?;
            Ok(())
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Pool::inspect(path)
    }

    /// Opens a pool with the default options (automatic durability, `mprotect` write protection).
    pub fn open(path: impl AsRef<Path>) -> Result<Pool, PoolError> {
        Pool::open_with(path, &OpenOptions::default())
    }

    /// Opens a pool: checks the header, maps the file, recovers an interrupted transaction, checks the
    /// directory and heap bitmap and every sealed map's checksum.
    pub fn open_with(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Pool, PoolError> {
        let path = path.as_ref();
        let (m, h) = FileMedia::open(path, opts.durability, opts.protection)?;
        let core = Arc::new(Core::new(m, h));
        let (recovered, _) = core.attach()?;
        Ok(Pool {
            core,
            path: path.to_path_buf(),
            recovered: recovered.into(),
        })
    }

    /// Describes the pool at `path` without mapping, locking, recovering or writing it. An interrupted
    /// transaction shows as [`LogState::Pending`].
    pub fn inspect(path: impl AsRef<Path>) -> Result<PoolInfo, PoolError> {
        let path = path.as_ref();
        let (m, h) = ReadMedia::open(path)?;
        info_of(&Core::new(m, h), path, None)
    }

    /// Describes this pool (taking the lock, so the picture is consistent).
    pub fn info(&self) -> Result<PoolInfo, PoolError> {
        let _g = self.core.lock()?;
        info_of(&self.core, &self.path, Some(self.mode()))
    }

    /// What opening the pool repaired.
    pub fn recovered(&self) -> Recovery {
        self.recovered
    }

    /// How the pool is mapped and made durable.
    pub fn mode(&self) -> PoolMode {
        PoolMode {
            map_sync: self.core.m.is_sync(),
            msync: self.core.m.uses_msync(),
            flush: self.core.m.flush_kind(),
            protection: self.core.m.protection(),
        }
    }

    /// The address range the pool is mapped at in this process (`(start, len)`): never hand it to
    /// programs; tests use it to make stray writes on purpose.
    pub fn mapped_range(&self) -> (usize, usize) {
        self.core.m.mapped_range()
    }

    /// Creates a hash map in the pool (failure-atomic).
    pub fn create_map(&self, def: &MapDef) -> Result<PoolMap<'_>, PoolError> {
        let owner = def.owner.unwrap_or_else(Principal::host);
        let new = NewMap {
            name: def.name.clone(),
            key_size: def.key_size,
            value_size: def.value_size,
            max_entries: def.max_entries,
            acl: def.acl.clone(),
        };
        let mut tx = self.core.begin()?;
        let r = tx.create_map(&new, owner)?;
        tx.commit()?;
        Ok(PoolMap {
            pool: self,
            r,
            key_size: def.key_size,
            value_size: def.value_size,
            max_entries: def.max_entries,
        })
    }

    /// The map named `name`, used as the host user ([`Principal::host`]).
    pub fn map(&self, name: &str) -> Result<PoolMap<'_>, PoolError> {
        self.map_as(name, Principal::host())
    }

    /// The map named `name`, used as `principal`: [`PoolError::AccessDenied`] unless its owner or
    /// access list grants `principal` something. This is the check a runtime makes when it loads a
    /// program referencing the map; every operation checks again.
    pub fn map_as(&self, name: &str, principal: Principal) -> Result<PoolMap<'_>, PoolError> {
        let (r, e) = self.core.resolve(name, principal)?;
        Ok(PoolMap {
            pool: self,
            r,
            key_size: e.key_size,
            value_size: e.value_size,
            max_entries: e.max_entries,
        })
    }

    /// Deletes a map (its owner only; not a sealed one). Its memory is zeroed before it is reused.
    pub fn delete_map(&self, map: PoolMap<'_>) -> Result<(), PoolError> {
        self.check_own(&map)?;
        let mut tx = self.core.begin()?;
        tx.delete_map(&map.r)?;
        tx.commit()
    }

    /// Runs `f` in a transaction: committed if it returns `Ok`, rolled back if it returns `Err`.
    pub fn transaction<R>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<R, PoolError>,
    ) -> Result<R, PoolError> {
        let mut tx = self.begin()?;
        match f(&mut tx) {
            Ok(r) => {
                tx.commit()?;
                Ok(r)
            }
            Err(e) => {
                tx.abort()?;
                Err(e)
            }
        }
    }

    /// Starts a transaction; it holds the pool lock until [`commit`](Transaction::commit) or
    /// [`abort`](Transaction::abort), and is rolled back if dropped.
    pub fn begin(&self) -> Result<Transaction<'_>, PoolError> {
        Ok(Transaction {
            pool: self,
            tx: self.core.begin()?,
        })
    }

    /// Checks everything: log clean, chains well formed, counts, slot and page bitmaps consistent (no
    /// leak, no double use), free slots and pages zero.
    pub fn verify(&self) -> Result<VerifyReport, PoolError> {
        let _g = self.core.lock()?;
        let v = self.core.verify_locked()?;
        Ok(VerifyReport {
            maps: v.maps,
            elements: v.elements,
            free_pages: v.free_pages,
        })
    }

    fn check_own(&self, map: &PoolMap<'_>) -> Result<(), PoolError> {
        if std::ptr::eq(map.pool, self) {
            Ok(())
        } else {
            Err(PoolError::ForeignMap(map.r.name.clone()))
        }
    }
}

/// Counts from [`Pool::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Maps in the pool.
    pub maps: u32,
    /// Elements in all maps.
    pub elements: u64,
    /// Free heap pages.
    pub free_pages: u64,
}

/// One persistent hash map of an open pool, used as one principal.
///
/// Every operation is failure-atomic and durable when it returns: it is a transaction of its own.
/// Use [`Pool::transaction`] to group several.
#[derive(Debug, Clone)]
pub struct PoolMap<'p> {
    pub(crate) pool: &'p Pool,
    pub(crate) r: MapRef,
    pub(crate) key_size: u32,
    pub(crate) value_size: u32,
    pub(crate) max_entries: u32,
}

impl PoolMap<'_> {
    /// The map's name.
    pub fn name(&self) -> &str {
        &self.r.name
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> usize {
        self.key_size as usize
    }

    /// Value size in bytes.
    pub fn value_size(&self) -> usize {
        self.value_size as usize
    }

    /// Capacity.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// The principal this handle acts as.
    pub fn principal(&self) -> Principal {
        self.r.principal
    }

    /// The value of `key`, or [`PoolError::NotFound`].
    pub fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, PoolError> {
        let mut out = vec![0u8; self.value_size()];
        if self.lookup_into(key, &mut out)? {
            Ok(out)
        } else {
            Err(PoolError::NotFound)
        }
    }

    /// Copies the value of `key` into `out` (exactly `value_size` bytes); `Ok(false)` if absent.
    pub fn lookup_into(&self, key: &[u8], out: &mut [u8]) -> Result<bool, PoolError> {
        let tx = self.pool.core.begin()?;
        tx.lookup_into(&self.r, key, out)
    }

    /// Inserts or replaces `key` ([`BPF_ANY`](crate::BPF_ANY), [`BPF_NOEXIST`](crate::BPF_NOEXIST),
    /// [`BPF_EXIST`](crate::BPF_EXIST)), durably.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), PoolError> {
        let mut tx = self.pool.core.begin()?;
        tx.update(&self.r, key, value, flags)?;
        tx.commit()
    }

    /// Deletes `key`, durably; its slot is zeroed before it can be reused.
    pub fn delete(&self, key: &[u8]) -> Result<(), PoolError> {
        let mut tx = self.pool.core.begin()?;
        tx.delete(&self.r, key)?;
        tx.commit()
    }

    /// Every `(key, value)`, in the map's internal order.
    pub fn entries(&self) -> Result<Entries, PoolError> {
        let tx = self.pool.core.begin()?;
        tx.entries(&self.r)
    }

    /// The number of elements.
    pub fn len(&self) -> Result<u32, PoolError> {
        let tx = self.pool.core.begin()?;
        Ok(tx.entry(&self.r)?.count)
    }

    /// Whether the map has no element.
    pub fn is_empty(&self) -> Result<bool, PoolError> {
        Ok(self.len()? == 0)
    }

    /// Seals the map (owner only): read-only for good, for every process, its contents checksummed and
    /// verified on every open; its pages are made read-only (and `mseal`ed where the kernel can).
    pub fn seal(&self) -> Result<(), PoolError> {
        let mut tx = self.pool.core.begin()?;
        tx.seal(&self.r)?;
        tx.commit()
    }

    /// Whether the map is sealed.
    pub fn is_sealed(&self) -> Result<bool, PoolError> {
        let tx = self.pool.core.begin()?;
        Ok(tx.entry(&self.r)?.sealed)
    }

    /// Replaces the access list (owner only; at most 7 entries).
    pub fn set_acl(&self, acl: &[AclEntry]) -> Result<(), PoolError> {
        let mut tx = self.pool.core.begin()?;
        tx.set_acl(&self.r, acl)?;
        tx.commit()
    }

    /// This map used as another principal (who must have some access).
    pub fn as_principal(&self, principal: Principal) -> Result<PoolMap<'_>, PoolError> {
        self.pool.map_as(&self.r.name, principal)
    }
}

/// Several map operations made durable together, or not at all. Holds the pool lock; rolled back if
/// dropped without [`commit`](Transaction::commit). Operations that fail (e.g. `NotFound`) change
/// nothing and leave the transaction usable.
#[derive(Debug)]
pub struct Transaction<'p> {
    pool: &'p Pool,
    tx: TxCore<'p, FileMedia>,
}

impl Transaction<'_> {
    /// As [`PoolMap::update`], inside the transaction.
    pub fn update(
        &mut self,
        map: &PoolMap<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), PoolError> {
        self.pool.check_own(map)?;
        self.tx.update(&map.r, key, value, flags)
    }

    /// As [`PoolMap::delete`], inside the transaction.
    pub fn delete(&mut self, map: &PoolMap<'_>, key: &[u8]) -> Result<(), PoolError> {
        self.pool.check_own(map)?;
        self.tx.delete(&map.r, key)
    }

    /// As [`PoolMap::lookup`], seeing this transaction's own changes.
    pub fn lookup(&self, map: &PoolMap<'_>, key: &[u8]) -> Result<Vec<u8>, PoolError> {
        self.pool.check_own(map)?;
        let mut out = vec![0u8; map.value_size()];
        if self.tx.lookup_into(&map.r, key, &mut out)? {
            Ok(out)
        } else {
            Err(PoolError::NotFound)
        }
    }

    /// Makes every change durable, atomically.
    pub fn commit(self) -> Result<(), PoolError> {
        self.tx.commit()
    }

    /// Undoes every change.
    pub fn abort(self) -> Result<(), PoolError> {
        self.tx.abort()
    }
}

/// The state of a pool's undo log, as [`Pool::inspect`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogState {
    /// No transaction in progress or to recover.
    Clean,
    /// A transaction was running (or crashed): the next open rolls it back, or completes it if
    /// `committed`.
    Pending {
        /// The transaction committed; only its secure frees remain.
        committed: bool,
        /// Valid records in the log.
        records: u32,
    },
}

/// A map as [`Pool::inspect`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapInfo {
    /// Name.
    pub name: String,
    /// Key size.
    pub key_size: u32,
    /// Value size.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// Elements.
    pub len: u32,
    /// Owner's uid.
    pub owner_uid: u32,
    /// Owner program's tag (`None` = host).
    pub owner_tag: Option<ProgramTag>,
    /// Sealed read-only.
    pub sealed: bool,
    /// Access list.
    pub acl: Vec<AclEntry>,
    /// Where its storage is in the file.
    pub extent_off: u64,
    /// Its storage's length.
    pub extent_len: u64,
}

/// Everything `moat pool inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    /// The file.
    pub path: PathBuf,
    /// The pool's UUID.
    pub uuid: [u8; 16],
    /// Layout version.
    pub layout_version: u32,
    /// File size.
    pub size: u64,
    /// Creation time (Unix seconds).
    pub created: u64,
    /// Creator's uid.
    pub owner_uid: u32,
    /// Creating program's tag.
    pub owner_tag: Option<ProgramTag>,
    /// Log size.
    pub log_len: u64,
    /// Log state.
    pub log: LogState,
    /// Directory capacity.
    pub max_maps: u32,
    /// Heap pages.
    pub heap_pages: u64,
    /// Free heap pages.
    pub free_pages: u64,
    /// Thread id holding the lock, if any.
    pub lock_holder: Option<u32>,
    /// Times a dead holder's lock was taken over.
    pub lock_steals: u64,
    /// How this process maps it (`None` from [`Pool::inspect`]).
    pub mode: Option<PoolMode>,
    /// Maps.
    pub maps: Vec<MapInfo>,
}

fn tag_of(t: u64) -> Option<ProgramTag> {
    (t != 0).then(|| t.to_le_bytes())
}

fn info_of<M: Media>(
    c: &Core<M>,
    path: &Path,
    mode: Option<PoolMode>,
) -> Result<PoolInfo, PoolError> {
    let h = &c.h;
    let w = rd64(&c.m, h.log_off)?;
    let (gen, state) = parse_state_word(w)
        .ok_or_else(|| PoolError::corrupt("log state word", h.log_off, "check bits wrong"))?;
    // Count the valid records of this generation, as recovery would.
    let mut records = 0u32;
    let mut pos = h.records_off();
    while pos + REC_HEADER as u64 <= h.log_end() {
        let mut b = [0u8; REC_HEADER];
        c.m.read(pos, &mut b)?;
        let (r, stored) = RecHeader::decode(&b);
        if r.gen != gen || r.seq != records || r.kind == 0 || pos + r.size() > h.log_end() {
            break;
        }
        let mut data = vec![0u8; r.data_len as usize];
        c.m.read(pos + REC_HEADER as u64, &mut data)?;
        if crc32c::crc32c_append(layout::crc(&b[..48]), &data) != stored {
            break;
        }
        records += 1;
        pos += r.size();
    }
    let log = if state == STATE_COMMITTED || records > 0 {
        LogState::Pending {
            committed: state == STATE_COMMITTED,
            records,
        }
    } else {
        LogState::Clean
    };
    let mut maps = Vec::new();
    let mut used = 0u64;
    for (_, e) in c.directory()? {
        used += u64::from(e.extent_pages);
        maps.push(map_info(&e));
    }
    let lock = rd64(&c.m, h.lock_off)?;
    Ok(PoolInfo {
        path: path.to_path_buf(),
        uuid: h.uuid,
        layout_version: VERSION,
        size: h.pool_size,
        created: h.created,
        owner_uid: h.owner_uid,
        owner_tag: tag_of(h.owner_tag),
        log_len: h.log_len,
        log,
        max_maps: h.dir_entries,
        heap_pages: h.heap_pages,
        free_pages: h.heap_pages.saturating_sub(used),
        lock_holder: (lock != 0).then_some((lock & 0xffff_ffff) as u32),
        lock_steals: rd64(&c.m, h.lock_off + 8)?,
        mode,
        maps,
    })
}

fn map_info(e: &Entry) -> MapInfo {
    MapInfo {
        name: e.name.clone(),
        key_size: e.key_size,
        value_size: e.value_size,
        max_entries: e.max_entries,
        len: e.count,
        owner_uid: e.owner_uid,
        owner_tag: tag_of(e.owner_tag),
        sealed: e.sealed,
        acl: e.acl.clone(),
        extent_off: e.extent_off,
        extent_len: e.extent_len(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl fmt::Display for PoolInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = &self.uuid;
        writeln!(f, "pool {}", self.path.display())?;
        writeln!(
            f,
            "  uuid {}-{}-{}-{}-{}",
            hex(&u[0..4]),
            hex(&u[4..6]),
            hex(&u[6..8]),
            hex(&u[8..10]),
            hex(&u[10..16])
        )?;
        writeln!(
            f,
            "  layout version {}, {} bytes, created {} (unix)",
            self.layout_version, self.size, self.created
        )?;
        match self.owner_tag {
            Some(t) => writeln!(f, "  owner uid {} program {}", self.owner_uid, hex(&t))?,
            None => writeln!(f, "  owner uid {}", self.owner_uid)?,
        }
        let log = match self.log {
            LogState::Clean => "clean".to_string(),
            LogState::Pending {
                committed: true,
                records,
            } => {
                format!("committed transaction with {records} records to complete on open")
            }
            LogState::Pending {
                committed: false,
                records,
            } => {
                format!("interrupted transaction with {records} records to roll back on open")
            }
        };
        writeln!(f, "  log {} bytes, {log}", self.log_len)?;
        writeln!(
            f,
            "  heap {} pages, {} free; maps {}/{}",
            self.heap_pages,
            self.free_pages,
            self.maps.len(),
            self.max_maps
        )?;
        match self.lock_holder {
            Some(tid) => writeln!(
                f,
                "  lock held by thread {tid}; {} takeovers",
                self.lock_steals
            )?,
            None => writeln!(f, "  lock free; {} takeovers", self.lock_steals)?,
        }
        if let Some(m) = self.mode {
            writeln!(
                f,
                "  mapped {}, flush {:?}{}, protection {:?}",
                if m.map_sync {
                    "MAP_SYNC (DAX)"
                } else {
                    "MAP_SHARED"
                },
                m.flush,
                if m.msync { " + msync" } else { "" },
                m.protection
            )?;
        }
        for m in &self.maps {
            write!(
                f,
                "  map {}: hash key {} value {} entries {}/{} owner uid {}",
                m.name, m.key_size, m.value_size, m.len, m.max_entries, m.owner_uid
            )?;
            if let Some(t) = m.owner_tag {
                write!(f, " program {}", hex(&t))?;
            }
            if m.sealed {
                write!(f, " sealed")?;
            }
            for a in &m.acl {
                let who = match a.grantee {
                    crate::acl::Grantee::User(u) => format!("uid {u}"),
                    crate::acl::Grantee::Program(t) => format!("program {}", hex(&t)),
                    crate::acl::Grantee::Anyone => "anyone".to_string(),
                };
                write!(f, "; {who} {}", a.perms)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
