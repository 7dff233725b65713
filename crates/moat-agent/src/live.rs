//! The controller's side of the maps the agent keeps in shared memory.
//!
//! The controller makes a directory on a `tmpfs` (`/dev/shm/moat-trace-PID-N`) and names it to the
//! agent ([`env::SHM_DIR`](crate::agent::env::SHM_DIR)). The agent gives every map moat can share
//! (arrays, hash maps, their per-CPU and LRU kinds, ring buffers, perf event arrays) files of its
//! own there ([`moat::SharedMemory`]: one file per allocation, sized by the map's `max_entries`,
//! filled as the map fills) and describes each once loaded (`map{INDEX}.map`). The controller
//! opens them ([`moat::SharedMap`]) and, without any help from the traced process: consumes
//! ring-buffer and perf records as they are committed, reads the maps for every dump, and still
//! reads them after the process has exited or been killed (the files outlive it). It removes the
//! directory when it is done.

use crate::protocol::Record;
use moat::SharedMap;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The shared maps of one traced object, as the controller sees them.
#[derive(Debug)]
pub struct LiveMaps {
    dir: PathBuf,
    /// Opened maps by index in the object.
    maps: BTreeMap<usize, SharedMap>,
}

impl LiveMaps {
    /// Makes a fresh directory for the agent's maps: under `/dev/shm` where it exists, else the
    /// temporary directory.
    pub fn create() -> std::io::Result<LiveMaps> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "moat-trace-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&dir)?;
        Ok(LiveMaps {
            dir,
            maps: BTreeMap::new(),
        })
    }

    /// The directory the agent puts its maps in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the maps described since the last call.
    fn refresh(&mut self) {
        for tag in SharedMap::list(&self.dir) {
            let Some(index) = tag
                .strip_prefix("map")
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            if self.maps.contains_key(&index) {
                continue;
            }
            if let Ok(map) = SharedMap::open(&self.dir, &tag) {
                self.maps.insert(index, map);
            }
        }
    }

    /// The records committed to ring buffers and perf event arrays since the last call, as
    /// [`Record::Event`]s, in order per map.
    pub fn events(&mut self) -> Vec<Record> {
        self.refresh();
        let mut records = Vec::new();
        for map in self.maps.values_mut() {
            let name = map.name().to_string();
            let _ = map.consume(&mut |_, data| {
                records.push(Record::Event {
                    map: name.clone(),
                    data: data.to_vec(),
                })
            });
        }
        records
    }

    /// Every element of the shared maps (those named in `wanted`, when given) as
    /// [`Record::Entry`]s, map by map in the object's order.
    pub fn entries(&mut self, wanted: Option<&[String]>) -> Vec<Record> {
        self.refresh();
        let mut records = Vec::new();
        for map in self.maps.values() {
            if wanted.is_some_and(|w| !w.iter().any(|n| n == map.name())) {
                continue;
            }
            for (key, value) in map.entries() {
                records.push(Record::Entry {
                    map: map.name().to_string(),
                    key,
                    value,
                });
            }
        }
        records
    }
}

impl Drop for LiveMaps {
    fn drop(&mut self) {
        self.maps.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
