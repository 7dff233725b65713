//! `moat pool`: create, inspect and verify persistent map pools, and read and write their maps from
//! the shell (every process that opens the pool sees the same maps).

use anyhow::{Context, Result};
use clap::Subcommand;
use moat::pool::{
    AclEntry, CreateOptions, Grantee, LogState, MapDef, Pool, PoolInfo, PoolMap, ProgramTag,
    Recovery, BPF_ANY,
};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The `pool` subcommands.
#[derive(Subcommand)]
pub enum PoolCommand {
    /// Create a pool file.
    Create {
        /// The pool file (on a DAX file system it is mapped with MAP_SYNC).
        path: PathBuf,
        /// Size in bytes (suffixes K, M, G allowed).
        #[arg(long, default_value = "16M")]
        size: String,
        /// Undo-log size in bytes: bounds one transaction's changes.
        #[arg(long, default_value = "64K")]
        log_size: String,
        /// How many maps the pool can hold.
        #[arg(long, default_value_t = 64)]
        max_maps: u32,
        /// Print the new pool as one JSON object, with the fields of `pool inspect --json`.
        /// On failure `{"error": "..."}` and exit code 1.
        #[arg(long)]
        json: bool,
    },
    /// Show a pool's header, maps, owners, access lists, seals, log and lock state (read-only).
    Inspect {
        /// The pool file.
        path: PathBuf,
        /// Print one JSON object: `path`, `uuid` (`8-4-4-4-12` hex), `layout_version`, `size`
        /// (bytes), `created` (RFC 3339, UTC), `created_unix` (seconds), `owner_uid`, `owner_tag`
        /// (hex program tag, or null), `log` (`size`, `state`: `clean`, `committed` or
        /// `interrupted`, `records`), `max_maps`, `heap_pages`, `free_pages`, `lock` (`holder`:
        /// thread id or null, `takeovers`), `mode` (how this process maps the pool: `map_sync`,
        /// `msync`, `flush`, `protection`; null, as the file is only read), and `maps`, each with
        /// `name`, `type` (`hash`), `key_size`, `value_size`, `max_entries`, `entries`,
        /// `owner_uid`, `owner_tag`, `sealed`, `acl` (`grantee`: `user`, `program` or `anyone`,
        /// `uid` or `tag` where it has one, `perms`: `r-`, `-w` or `rw`), `extent_offset`,
        /// `extent_len`. On failure `{"error": "..."}` and exit code 1.
        #[arg(long)]
        json: bool,
    },
    /// Open a pool (recovering any interrupted transaction) and check its consistency.
    Verify {
        /// The pool file.
        path: PathBuf,
        /// Print one JSON object: `path`, `ok` (true), `maps`, `elements`, `free_pages`, and
        /// `recovered` (`rolled_back`: undo records of an interrupted transaction rolled back on
        /// open, `completed_frees`: secure frees of a committed one completed).
        /// On failure `{"error": "..."}` and exit code 1.
        #[arg(long)]
        json: bool,
    },
    /// Create a hash map in a pool.
    CreateMap {
        /// The pool file.
        path: PathBuf,
        /// The map's name.
        name: String,
        /// Key size in bytes.
        #[arg(long)]
        key_size: u32,
        /// Value size in bytes.
        #[arg(long)]
        value_size: u32,
        /// Capacity.
        #[arg(long)]
        max_entries: u32,
        /// Print one JSON object: `path`, `map`, `key_size`, `value_size`, `max_entries`.
        /// On failure `{"error": "..."}` and exit code 1.
        #[arg(long)]
        json: bool,
    },
    /// Insert or replace an element (key and value in hex), durably.
    Update {
        /// The pool file.
        path: PathBuf,
        /// The map.
        map: String,
        /// Key bytes in hex.
        key: String,
        /// Value bytes in hex.
        value: String,
        /// Print one JSON object: `path`, `map`, `key`, `value` (hex, as stored).
        /// On failure `{"error": "..."}` and exit code 1.
        #[arg(long)]
        json: bool,
    },
    /// Delete an element (securely: its space is zeroed before reuse).
    Delete {
        /// The pool file.
        path: PathBuf,
        /// The map.
        map: String,
        /// Key bytes in hex.
        key: String,
        /// Print one JSON object: `path`, `map`, `key` (hex).
        /// On failure `{"error": "..."}` and exit code 1.
        #[arg(long)]
        json: bool,
    },
    /// Print a map's elements.
    Dump {
        /// The pool file.
        path: PathBuf,
        /// The map.
        map: String,
        /// Print one JSON object: `path`, `map`, `entries`, each with `key` and `value` (hex,
        /// bytes separated by spaces).
        /// On failure `{"error": "..."}` and exit code 1.
        #[arg(long)]
        json: bool,
    },
}

fn size(text: &str) -> Result<u64> {
    let t = text.trim();
    let (digits, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("invalid size `{text}`"))?;
    n.checked_mul(mult)
        .with_context(|| format!("size `{text}` overflows"))
}

fn hex(text: &str) -> Result<Vec<u8>> {
    crate::parse_hex_bytes(text)
}

fn show(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Opens (creating it with the `pool create` defaults if missing) the pool of `moat run --pool` and
/// sets it as `rt`'s pool, with the maps named by `--pool-map`.
pub fn open_for_run(rt: &mut moat::Runtime, path: &Path, names: Vec<String>) -> Result<()> {
    if !path.exists() {
        if let Err(e) = Pool::create(path, &CreateOptions::default()) {
            // Unless another process created it meanwhile.
            if !path.exists() {
                return Err(e).with_context(|| path.display().to_string());
            }
        }
    }
    rt.open_pool(path)?;
    rt.set_pool_maps(names);
    Ok(())
}

/// Seconds since the Unix epoch as RFC 3339 in UTC (`2026-12-04T05:04:00Z`).
fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix} seconds after 1970 (out of range)"))
}

fn uuid(u: &[u8; 16]) -> String {
    let h = |r: std::ops::Range<usize>| {
        u.get(r)
            .map(|b| show(b).replace(' ', ""))
            .unwrap_or_default()
    };
    format!(
        "{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

fn tag(t: &ProgramTag) -> String {
    show(t).replace(' ', "")
}

/// `(state, records)` of the undo log: `clean`, `committed` or `interrupted`.
fn log_state(log: &LogState) -> (&'static str, u32) {
    match *log {
        LogState::Clean => ("clean", 0),
        LogState::Pending {
            committed: true,
            records,
        } => ("committed", records),
        LogState::Pending {
            committed: false,
            records,
        } => ("interrupted", records),
    }
}

fn acl_json(a: &AclEntry) -> serde_json::Value {
    let mut v = match a.grantee {
        Grantee::User(uid) => json!({"grantee": "user", "uid": uid}),
        Grantee::Program(t) => json!({"grantee": "program", "tag": tag(&t)}),
        Grantee::Anyone => json!({"grantee": "anyone"}),
    };
    v["perms"] = json!(a.perms.to_string());
    v
}

/// `pool inspect --json` (and `pool create --json`): the fields `pool inspect --help` documents.
fn info_json(info: &PoolInfo) -> serde_json::Value {
    let (state, records) = log_state(&info.log);
    let maps: Vec<serde_json::Value> = info
        .maps
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "type": "hash",
                "key_size": m.key_size,
                "value_size": m.value_size,
                "max_entries": m.max_entries,
                "entries": m.len,
                "owner_uid": m.owner_uid,
                "owner_tag": m.owner_tag.as_ref().map(tag),
                "sealed": m.sealed,
                "acl": m.acl.iter().map(acl_json).collect::<Vec<_>>(),
                "extent_offset": m.extent_off,
                "extent_len": m.extent_len,
            })
        })
        .collect();
    json!({
        "path": info.path.display().to_string(),
        "uuid": uuid(&info.uuid),
        "layout_version": info.layout_version,
        "size": info.size,
        "created": rfc3339(info.created),
        "created_unix": info.created,
        "owner_uid": info.owner_uid,
        "owner_tag": info.owner_tag.as_ref().map(tag),
        "log": {"size": info.log_len, "state": state, "records": records},
        "max_maps": info.max_maps,
        "heap_pages": info.heap_pages,
        "free_pages": info.free_pages,
        "lock": {"holder": info.lock_holder, "takeovers": info.lock_steals},
        "mode": info.mode.map(|m| json!({
            "map_sync": m.map_sync,
            "msync": m.msync,
            "flush": format!("{:?}", m.flush).to_lowercase(),
            "protection": format!("{:?}", m.protection).to_lowercase(),
        })),
        "maps": maps,
    })
}

/// `pool inspect` for people: what [`info_json`] gives, with the creation time in RFC 3339.
fn info_text(info: &PoolInfo) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "pool {}", info.path.display());
    let _ = writeln!(out, "  uuid {}", uuid(&info.uuid));
    let _ = writeln!(
        out,
        "  layout version {}, {} bytes, created {}",
        info.layout_version,
        info.size,
        rfc3339(info.created)
    );
    let _ = match &info.owner_tag {
        Some(t) => writeln!(out, "  owner uid {} program {}", info.owner_uid, tag(t)),
        None => writeln!(out, "  owner uid {}", info.owner_uid),
    };
    let log = match log_state(&info.log) {
        ("clean", _) => "clean".to_string(),
        ("committed", records) => {
            format!("committed transaction with {records} records to complete on open")
        }
        (_, records) => {
            format!("interrupted transaction with {records} records to roll back on open")
        }
    };
    let _ = writeln!(out, "  log {} bytes, {log}", info.log_len);
    let _ = writeln!(
        out,
        "  heap {} pages, {} free; maps {}/{}",
        info.heap_pages,
        info.free_pages,
        info.maps.len(),
        info.max_maps
    );
    let _ = match info.lock_holder {
        Some(tid) => writeln!(
            out,
            "  lock held by thread {tid}; {} takeovers",
            info.lock_steals
        ),
        None => writeln!(out, "  lock free; {} takeovers", info.lock_steals),
    };
    if let Some(m) = info.mode {
        let _ = writeln!(
            out,
            "  mapped {}, flush {:?}{}, protection {:?}",
            if m.map_sync {
                "MAP_SYNC (DAX)"
            } else {
                "MAP_SHARED"
            },
            m.flush,
            if m.msync { " + msync" } else { "" },
            m.protection
        );
    }
    for m in &info.maps {
        let _ = write!(
            out,
            "  map {}: hash key {} value {} entries {}/{} owner uid {}",
            m.name, m.key_size, m.value_size, m.len, m.max_entries, m.owner_uid
        );
        if let Some(t) = &m.owner_tag {
            let _ = write!(out, " program {}", tag(t));
        }
        if m.sealed {
            out.push_str(" sealed");
        }
        for a in &m.acl {
            let who = match a.grantee {
                Grantee::User(u) => format!("uid {u}"),
                Grantee::Program(t) => format!("program {}", tag(&t)),
                Grantee::Anyone => "anyone".to_string(),
            };
            let _ = write!(out, "; {who} {}", a.perms);
        }
        out.push('\n');
    }
    out
}

/// Opens the pool at `path` and its map `map`, then runs `f` on the map.
fn with_map<T>(path: &Path, map: &str, f: impl FnOnce(&PoolMap<'_>) -> Result<T>) -> Result<T> {
    let pool = Pool::open(path).with_context(|| path.display().to_string())?;
    let m = pool
        .map(map)
        .with_context(|| format!("{}: map `{map}`", path.display()))?;
    f(&m).with_context(|| format!("{}: map `{map}`", path.display()))
}

/// Runs a `pool` subcommand.
pub fn run(cmd: PoolCommand) -> Result<()> {
    let json = match &cmd {
        PoolCommand::Create { json, .. }
        | PoolCommand::Inspect { json, .. }
        | PoolCommand::Verify { json, .. }
        | PoolCommand::CreateMap { json, .. }
        | PoolCommand::Update { json, .. }
        | PoolCommand::Delete { json, .. }
        | PoolCommand::Dump { json, .. } => *json,
    };
    crate::json_errors(json, run_command(cmd))
}

fn run_command(cmd: PoolCommand) -> Result<()> {
    match cmd {
        PoolCommand::Create {
            path,
            size: s,
            log_size,
            max_maps,
            json,
        } => {
            let opts = CreateOptions {
                size: size(&s)?,
                log_size: size(&log_size)?,
                max_maps,
                ..CreateOptions::default()
            };
            let info = Pool::create(&path, &opts).with_context(|| path.display().to_string())?;
            if json {
                out!("{}", info_json(&info));
            } else {
                out_raw!("{}", info_text(&info));
            }
        }
        PoolCommand::Inspect { path, json } => {
            let info = Pool::inspect(&path).with_context(|| path.display().to_string())?;
            if json {
                out!("{}", info_json(&info));
            } else {
                out_raw!("{}", info_text(&info));
            }
        }
        PoolCommand::Verify { path, json } => {
            let pool = Pool::open(&path).with_context(|| path.display().to_string())?;
            let recovered = pool.recovered();
            let report = pool.verify().with_context(|| path.display().to_string())?;
            if json {
                out!(
                    "{}",
                    json!({
                        "path": path.display().to_string(),
                        "ok": true,
                        "maps": report.maps,
                        "elements": report.elements,
                        "free_pages": report.free_pages,
                        "recovered": {
                            "rolled_back": recovered.rolled_back,
                            "completed_frees": recovered.completed_frees,
                        },
                    })
                );
            } else {
                out!(
                    "pool {}: consistent: {} maps, {} elements, {} free heap pages",
                    path.display(),
                    report.maps,
                    report.elements,
                    report.free_pages
                );
                if recovered != Recovery::default() {
                    out!(
                        "  on open: rolled back {} undo records of an interrupted transaction, \
                         completed {} secure frees of a committed one",
                        recovered.rolled_back,
                        recovered.completed_frees
                    );
                }
            }
        }
        PoolCommand::CreateMap {
            path,
            name,
            key_size,
            value_size,
            max_entries,
            json,
        } => {
            let pool = Pool::open(&path).with_context(|| path.display().to_string())?;
            pool.create_map(&MapDef {
                name: name.clone(),
                key_size,
                value_size,
                max_entries,
                acl: Vec::new(),
                owner: None,
            })
            .with_context(|| path.display().to_string())?;
            if json {
                out!(
                    "{}",
                    json!({
                        "path": path.display().to_string(),
                        "map": name,
                        "key_size": key_size,
                        "value_size": value_size,
                        "max_entries": max_entries,
                    })
                );
            }
        }
        PoolCommand::Update {
            path,
            map,
            key,
            value,
            json,
        } => {
            let (key, value) = (hex(&key)?, hex(&value)?);
            with_map(&path, &map, |m| Ok(m.update(&key, &value, BPF_ANY)?))?;
            if json {
                out!(
                    "{}",
                    json!({
                        "path": path.display().to_string(),
                        "map": map,
                        "key": show(&key),
                        "value": show(&value),
                    })
                );
            }
        }
        PoolCommand::Delete {
            path,
            map,
            key,
            json,
        } => {
            let key = hex(&key)?;
            with_map(&path, &map, |m| Ok(m.delete(&key)?))?;
            if json {
                out!(
                    "{}",
                    json!({"path": path.display().to_string(), "map": map, "key": show(&key)})
                );
            }
        }
        PoolCommand::Dump { path, map, json } => {
            let entries = with_map(&path, &map, |m| Ok(m.entries()?))?;
            if json {
                let entries: Vec<_> = entries
                    .iter()
                    .map(|(k, v)| json!({"key": show(k), "value": show(v)}))
                    .collect();
                out!(
                    "{}",
                    json!({"path": path.display().to_string(), "map": map, "entries": entries})
                );
            } else {
                out!("map {map} ({} entries):", entries.len());
                for (k, v) in entries {
                    out!("  {} => {}", show(&k), show(&v));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        for (unix, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_796_360_970, "2026-12-04T05:09:30Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(unix), text);
        }
        // Past what RFC 3339 can write: said, not a panic.
        assert!(rfc3339(u64::MAX).contains("out of range"));
    }

    #[test]
    fn uuids_are_grouped_8_4_4_4_12() {
        let u: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(uuid(&u), "00010203-0405-0607-0809-0a0b0c0d0e0f");
    }
}
