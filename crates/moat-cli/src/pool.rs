//! `moat pool`: create, inspect and verify persistent map pools, and read and write their maps from
//! the shell (every process that opens the pool sees the same maps).

use anyhow::{Context, Result};
use clap::Subcommand;
use moat::pool::{CreateOptions, MapDef, Pool, BPF_ANY};
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
    },
    /// Show a pool's header, maps, owners, access lists, seals, log and lock state (read-only).
    Inspect {
        /// The pool file.
        path: PathBuf,
    },
    /// Open a pool (recovering any interrupted transaction) and check its consistency.
    Verify {
        /// The pool file.
        path: PathBuf,
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
    },
    /// Delete an element (securely: its space is zeroed before reuse).
    Delete {
        /// The pool file.
        path: PathBuf,
        /// The map.
        map: String,
        /// Key bytes in hex.
        key: String,
    },
    /// Print a map's elements.
    Dump {
        /// The pool file.
        path: PathBuf,
        /// The map.
        map: String,
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

/// Runs a `pool` subcommand.
pub fn run(cmd: PoolCommand) -> Result<()> {
    match cmd {
        PoolCommand::Create {
            path,
            size: s,
            log_size,
            max_maps,
        } => {
            let opts = CreateOptions {
                size: size(&s)?,
                log_size: size(&log_size)?,
                max_maps,
                ..CreateOptions::default()
            };
            let info = Pool::create(&path, &opts).with_context(|| path.display().to_string())?;
            out!("{info}");
        }
        PoolCommand::Inspect { path } => {
            let info = Pool::inspect(&path).with_context(|| path.display().to_string())?;
            out!("{info}");
        }
        PoolCommand::Verify { path } => {
            let pool = Pool::open(&path).with_context(|| path.display().to_string())?;
            let report = pool.verify().with_context(|| path.display().to_string())?;
            out!("{report:?}");
        }
        PoolCommand::CreateMap {
            path,
            name,
            key_size,
            value_size,
            max_entries,
        } => {
            let pool = Pool::open(&path).with_context(|| path.display().to_string())?;
            pool.create_map(&MapDef {
                name,
                key_size,
                value_size,
                max_entries,
                acl: Vec::new(),
                owner: None,
            })
            .with_context(|| path.display().to_string())?;
        }
        PoolCommand::Update {
            path,
            map,
            key,
            value,
        } => {
            let pool = Pool::open(&path).with_context(|| path.display().to_string())?;
            let m = pool
                .map(&map)
                .with_context(|| format!("{}: map `{map}`", path.display()))?;
            m.update(&hex(&key)?, &hex(&value)?, BPF_ANY)
                .with_context(|| format!("{}: map `{map}`", path.display()))?;
        }
        PoolCommand::Delete { path, map, key } => {
            let pool = Pool::open(&path).with_context(|| path.display().to_string())?;
            let m = pool
                .map(&map)
                .with_context(|| format!("{}: map `{map}`", path.display()))?;
            m.delete(&hex(&key)?)
                .with_context(|| format!("{}: map `{map}`", path.display()))?;
        }
        PoolCommand::Dump { path, map } => {
            let pool = Pool::open(&path).with_context(|| path.display().to_string())?;
            let m = pool
                .map(&map)
                .with_context(|| format!("{}: map `{map}`", path.display()))?;
            let entries = m
                .entries()
                .with_context(|| format!("{}: map `{map}`", path.display()))?;
            out!("map {map} ({} entries):", entries.len());
            for (k, v) in entries {
                out!("  {} => {}", show(&k), show(&v));
            }
        }
    }
    Ok(())
}
