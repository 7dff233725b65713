//! Map, global and program-array setup before an object is verified and loaded (`--map`,
//! `--global`, `--prog-array`): what a libbpf skeleton's user does between `open` and `load`.
//!
//! Values are written as the C type BTF gives the map's key and value or the global (decimal or
//! `0x` numbers, `"strings"`, `{..}` structures, as `moat_obj::CType::parse` reads them), or as
//! raw bytes with `x:` and hex digits (`x:2a000000`). Without BTF a number fills a key or value of
//! 1, 2, 4 or 8 bytes in the machine's byte order.

use anyhow::{bail, Context, Result};
use moat::{CType, OpenObject};

/// What to set up, as given on the command line.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Setup {
    /// Before verification, store KEY -> VALUE in the object's map NAME (repeatable). KEY and
    /// VALUE are written as the map's BTF C types (`6`, `0x0a000001`, `"GET"`, `{1, 2}`) or as raw
    /// bytes `x:HEX`; without BTF, a number fills a 1-, 2-, 4- or 8-byte key or value.
    #[arg(long = "map", value_name = "NAME:KEY=VALUE")]
    pub map_entries: Vec<String>,
    /// Before verification, set the object's global variable NAME (`.rodata` `const volatile`
    /// configuration, `.data`, `.bss`) to VALUE, written as its BTF C type or as `x:HEX`
    /// (repeatable).
    #[arg(long = "global", value_name = "NAME=VALUE")]
    pub globals: Vec<String>,
    /// Put the object's program PROGRAM in slot INDEX of its program array NAME, for tail calls
    /// (repeatable).
    #[arg(long = "prog-array", value_name = "NAME:INDEX=PROGRAM")]
    pub prog_slots: Vec<String>,
}

impl Setup {
    /// Applies everything to `open`; the error names the option and what is wrong with it.
    pub fn apply(&self, open: &mut OpenObject) -> Result<()> {
        for arg in &self.globals {
            let (name, value) = arg
                .split_once('=')
                .with_context(|| format!("--global {arg}: expected NAME=VALUE"))?;
            match value.strip_prefix("x:") {
                Some(hex) => open.set_global(name, &hex_bytes(hex)?),
                None => open.set_global_text(name, value),
            }
            .with_context(|| format!("--global {arg}"))?;
        }
        for arg in &self.map_entries {
            let (name, entry) = arg
                .split_once(':')
                .with_context(|| format!("--map {arg}: expected NAME:KEY=VALUE"))?;
            let (key, value) = entry
                .split_once('=')
                .with_context(|| format!("--map {arg}: expected NAME:KEY=VALUE"))?;
            let spec = open
                .object()
                .maps
                .iter()
                .find(|m| m.name == name)
                .with_context(|| {
                    let names: Vec<&str> =
                        open.object().maps.iter().map(|m| m.name.as_str()).collect();
                    format!(
                        "--map {arg}: no map `{name}` (the object has {})",
                        names.join(", ")
                    )
                })?;
            let key = encode(key, spec.key_size, spec.key_type.as_ref())
                .with_context(|| format!("--map {arg}: key `{key}`"))?;
            let value = encode(value, spec.value_size, spec.value_type.as_ref())
                .with_context(|| format!("--map {arg}: value `{value}`"))?;
            open.set_map_entry(name, &key, &value)
                .with_context(|| format!("--map {arg}"))?;
        }
        for arg in &self.prog_slots {
            let parsed = arg
                .split_once(':')
                .and_then(|(name, rest)| rest.split_once('=').map(|(i, p)| (name, i, p)));
            let Some((name, index, program)) = parsed else {
                bail!("--prog-array {arg}: expected NAME:INDEX=PROGRAM");
            };
            let index: u32 = index
                .parse()
                .with_context(|| format!("--prog-array {arg}: `{index}` is not a slot number"))?;
            open.set_prog_array_slot(name, index, program)
                .with_context(|| format!("--prog-array {arg}"))?;
        }
        Ok(())
    }

    /// Whether nothing is to be set up.
    pub fn is_empty(&self) -> bool {
        self.map_entries.is_empty() && self.globals.is_empty() && self.prog_slots.is_empty()
    }
}

/// `text` as `size` bytes: raw `x:` hex, the C type `ty`, or (without BTF) a number.
fn encode(text: &str, size: u32, ty: Option<&CType>) -> Result<Vec<u8>> {
    let bytes = if let Some(hex) = text.strip_prefix("x:") {
        hex_bytes(hex)?
    } else if let Some(ty) = ty {
        ty.parse(text)
            .with_context(|| format!("not a value of type {}", ty.c_name()))?
    } else {
        let number = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse::<u64>(),
        }
        .with_context(|| format!("no BTF type here: give a number or the {size} bytes as x:HEX"))?;
        if !matches!(size, 1 | 2 | 4 | 8) || (size < 8 && number >> (8 * size) != 0) {
            bail!("{number} does not fit {size} bytes: give the bytes as x:HEX");
        }
        number.to_ne_bytes()[..size as usize].to_vec()
    };
    if bytes.len() != size as usize {
        bail!("{} bytes given, {size} expected", bytes.len());
    }
    Ok(bytes)
}

/// Hex digits (spaces allowed) as bytes.
fn hex_bytes(text: &str) -> Result<Vec<u8>> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        bail!("odd number of hex digits in `{text}`");
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            let pair = digits.get(i..i + 2).unwrap_or("");
            u8::from_str_radix(pair, 16).with_context(|| format!("`{pair}` is not a hex byte"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_without_btf_are_numbers_or_raw_bytes() {
        assert_eq!(encode("6", 4, None).unwrap(), 6u32.to_ne_bytes());
        assert_eq!(encode("0x10", 8, None).unwrap(), 16u64.to_ne_bytes());
        assert_eq!(encode("x:01020304", 4, None).unwrap(), [1, 2, 3, 4]);
        assert!(encode("256", 1, None).is_err());
        assert!(encode("x:0102", 4, None).is_err());
        assert!(encode("abc", 4, None).is_err());
        assert!(encode("1", 3, None).is_err());
        assert!(hex_bytes("0g").is_err());
    }
}
