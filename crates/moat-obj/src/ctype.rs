//! C types from BTF, for people and scripts: the types of map keys and values, of global variables
//! and of a program's context argument, with a printer ([`CType::format`]) and a parser
//! ([`CType::parse`]) for values of them — what `bpftool map dump` does with BTF.
//!
//! The `.BTF` section is read a second time here, completely (names, integer encodings, enumerators,
//! bit fields), independently of the loader's reduced reader in `btf.rs`. Type chains are followed
//! under a depth limit and every description is built under a node budget, so hostile BTF never
//! loops or explodes; a type that cannot be described becomes [`CType::Opaque`] of its size.

use crate::elf::read_u32;

/// How deep type descriptions nest (struct in array in struct ...), and how many links of
/// typedef/modifier chains are followed.
const MAX_DEPTH: u32 = 32;
/// How many nodes one description may have in total.
const MAX_NODES: u32 = 4096;
/// How many elements of an array [`CType::format`] prints before `...`.
const MAX_PRINTED: usize = 256;

/// A C type, as far as moat prints and parses values of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CType {
    /// An integer type (`int`, `__u32`, `char`, `_Bool`, ...).
    Int {
        /// Its name (after typedefs: `unsigned int`, `char`).
        name: String,
        /// Size in bytes (1, 2, 4, 8 or 16).
        size: u32,
        /// Whether it is signed.
        signed: bool,
        /// Whether BTF marks it as a character type.
        is_char: bool,
        /// Whether it is `_Bool`.
        is_bool: bool,
    },
    /// An enumeration.
    Enum {
        /// Its name (may be empty).
        name: String,
        /// Size in bytes.
        size: u32,
        /// Whether values are signed.
        signed: bool,
        /// The enumerators.
        values: Vec<(String, i64)>,
    },
    /// A floating-point type.
    Float {
        /// Size in bytes (4 or 8 are printed as numbers).
        size: u32,
    },
    /// A pointer (8 bytes).
    Ptr,
    /// An array.
    Array {
        /// Element type.
        elem: Box<CType>,
        /// Number of elements.
        len: u32,
    },
    /// A struct or union.
    Struct {
        /// Its name (may be empty).
        name: String,
        /// Size in bytes.
        size: u32,
        /// Whether it is a union.
        union: bool,
        /// The members.
        members: Vec<CMember>,
    },
    /// A type moat does not describe, of this size in bytes.
    Opaque {
        /// Size in bytes.
        size: u32,
    },
}

/// A member of a struct or union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CMember {
    /// The member's name (may be empty for anonymous members).
    pub name: String,
    /// Offset in bits from the start of the struct.
    pub bit_offset: u32,
    /// Width in bits of a bit field, 0 for ordinary members.
    pub bit_size: u32,
    /// The member's type.
    pub ty: CType,
}

/// A global variable of a `.data`, `.rodata` or `.bss` section, from BTF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalVar {
    /// The variable's name.
    pub name: String,
    /// Byte offset in the section's map value.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// Its type.
    pub ty: CType,
}

/// Why a value could not be parsed as a C type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a valid {expected}")]
pub struct ParseValueError {
    /// The text that did not parse.
    pub text: String,
    /// What it should have been.
    pub expected: String,
}

impl CType {
    /// Size in bytes.
    pub fn size(&self) -> u32 {
        match self {
            CType::Int { size, .. }
            | CType::Enum { size, .. }
            | CType::Float { size }
            | CType::Struct { size, .. }
            | CType::Opaque { size } => *size,
            CType::Ptr => 8,
            CType::Array { elem, len } => elem.size().saturating_mul(*len),
        }
    }

    /// A short C spelling of the type (`__u32`-style names after typedefs: `unsigned int`,
    /// `struct counts`, `char[16]`).
    pub fn c_name(&self) -> String {
        match self {
            CType::Int { name, .. } => name.clone(),
            CType::Enum { name, .. } => format!("enum {name}"),
            CType::Float { size } => if *size == 4 { "float" } else { "double" }.to_string(),
            CType::Ptr => "void *".to_string(),
            CType::Array { elem, len } => format!("{}[{len}]", elem.c_name()),
            CType::Struct { name, union, .. } => {
                format!("{} {name}", if *union { "union" } else { "struct" })
            }
            CType::Opaque { size } => format!("opaque[{size}]"),
        }
    }

    /// `bytes` as a C-like value: integers in decimal, `char` arrays as strings, enums by name,
    /// structs as `{name: value, ...}`, arrays as `[a, b]`, pointers and unknown types in hex.
    /// Bytes missing at the end print as `?`.
    pub fn format(&self, bytes: &[u8]) -> String {
        let mut out = String::new();
        self.format_into(bytes, &mut out);
        out
    }

    fn format_into(&self, bytes: &[u8], out: &mut String) {
        use std::fmt::Write;
        let Some(own) = bytes.get(..self.size() as usize) else {
            out.push('?');
            return;
        };
        match self {
            CType::Int {
                signed, is_bool, ..
            } => match (int_value(own, *signed), *is_bool) {
                (Some(v), true) => out.push_str(if v != 0 { "true" } else { "false" }),
                (Some(v), false) => {
                    let _ = write!(out, "{v}");
                }
                (None, _) => push_hex(own, out),
            },
            CType::Enum { signed, values, .. } => match int_value(own, *signed) {
                Some(v) => match values.iter().find(|(_, e)| i128::from(*e) == v) {
                    Some((name, _)) => out.push_str(name),
                    None => {
                        let _ = write!(out, "{v}");
                    }
                },
                None => push_hex(own, out),
            },
            CType::Float { size } => match (*size, own) {
                (4, b) => {
                    let v = f32::from_le_bytes(b.try_into().unwrap_or_default());
                    let _ = write!(out, "{v}");
                }
                (8, b) => {
                    let v = f64::from_le_bytes(b.try_into().unwrap_or_default());
                    let _ = write!(out, "{v}");
                }
                _ => push_hex(own, out),
            },
            CType::Ptr => match int_value(own, false) {
                Some(v) => {
                    let _ = write!(out, "{v:#x}");
                }
                None => push_hex(own, out),
            },
            CType::Array { elem, len } => {
                if elem.is_char() {
                    let end = own.iter().position(|&b| b == 0).unwrap_or(own.len());
                    let text = own.get(..end).unwrap_or_default();
                    if text.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
                        && own.get(end..).unwrap_or_default().iter().all(|&b| b == 0)
                    {
                        let _ = write!(out, "{:?}", String::from_utf8_lossy(text));
                        return;
                    }
                }
                let step = elem.size() as usize;
                out.push('[');
                for i in 0..(*len as usize) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    if i == MAX_PRINTED {
                        out.push_str("...");
                        break;
                    }
                    let start = i.saturating_mul(step);
                    elem.format_into(own.get(start..).unwrap_or_default(), out);
                }
                out.push(']');
            }
            CType::Struct { members, .. } => {
                out.push('{');
                for (i, m) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    if !m.name.is_empty() {
                        out.push_str(&m.name);
                        out.push_str(": ");
                    }
                    if m.bit_size > 0 {
                        let v = bits(own, m.bit_offset, m.bit_size);
                        let _ = write!(out, "{v}");
                    } else {
                        let start = (m.bit_offset / 8) as usize;
                        m.ty.format_into(own.get(start..).unwrap_or_default(), out);
                    }
                }
                out.push('}');
            }
            CType::Opaque { .. } => push_hex(own, out),
        }
    }

    fn is_char(&self) -> bool {
        matches!(self, CType::Int { size: 1, is_char, name, .. } if *is_char || name.contains("char"))
    }

    /// Parses a value of this type from text: integers in decimal or `0x` hex (negative for signed
    /// types), IPv4 dotted quads for 4-byte integers (network byte order, as packets hold them),
    /// enumerator names, strings (quoted or bare) for `char` arrays, `[a, b]` for other arrays and
    /// `{a, b}` or `{name: a, name: b}` for structs (members not given are zero; the outermost
    /// braces may be left out). The result has [`CType::size`] bytes, little-endian.
    pub fn parse(&self, text: &str) -> Result<Vec<u8>, ParseValueError> {
        let mut out = vec![0u8; self.size() as usize];
        self.parse_into(text.trim(), &mut out, 0)?;
        Ok(out)
    }

    fn bad(&self, text: &str) -> ParseValueError {
        ParseValueError {
            text: text.to_string(),
            expected: self.c_name(),
        }
    }

    fn parse_into(&self, text: &str, out: &mut [u8], depth: u32) -> Result<(), ParseValueError> {
        if depth > MAX_DEPTH {
            return Err(self.bad(text));
        }
        let size = self.size() as usize;
        let Some(own) = out.get_mut(..size) else {
            return Err(self.bad(text));
        };
        match self {
            CType::Int {
                signed, is_bool, ..
            } => {
                let v = match (text, *is_bool) {
                    ("true", true) => 1,
                    ("false", true) => 0,
                    _ => match (size, parse_ipv4(text)) {
                        (4, Some(quad)) => {
                            own.copy_from_slice(&quad);
                            return Ok(());
                        }
                        _ => parse_int(text).ok_or_else(|| self.bad(text))?,
                    },
                };
                store_int(v, *signed, own).ok_or_else(|| self.bad(text))
            }
            CType::Enum { signed, values, .. } => {
                let v = match values.iter().find(|(n, _)| n == text) {
                    Some((_, v)) => i128::from(*v),
                    None => parse_int(text).ok_or_else(|| self.bad(text))?,
                };
                store_int(v, *signed, own).ok_or_else(|| self.bad(text))
            }
            CType::Float { size: 4 } => {
                let v: f32 = text.parse().map_err(|_| self.bad(text))?;
                own.copy_from_slice(&v.to_le_bytes());
                Ok(())
            }
            CType::Float { size: 8 } => {
                let v: f64 = text.parse().map_err(|_| self.bad(text))?;
                own.copy_from_slice(&v.to_le_bytes());
                Ok(())
            }
            CType::Ptr => {
                let v = parse_int(text).ok_or_else(|| self.bad(text))?;
                store_int(v, false, own).ok_or_else(|| self.bad(text))
            }
            CType::Array { elem, len } => {
                if elem.is_char() && !text.starts_with('[') {
                    let s = unquote(text);
                    if s.len() > own.len() {
                        return Err(self.bad(text));
                    }
                    own.get_mut(..s.len())
                        .ok_or_else(|| self.bad(text))?
                        .copy_from_slice(s.as_bytes());
                    return Ok(());
                }
                let inner = strip_brackets(text, '[', ']');
                let items = split_top(inner);
                if items.len() > *len as usize {
                    return Err(self.bad(text));
                }
                let step = elem.size() as usize;
                for (i, item) in items.iter().enumerate() {
                    let start = i.saturating_mul(step);
                    let slot = own.get_mut(start..).ok_or_else(|| self.bad(text))?;
                    elem.parse_into(item, slot, depth + 1)?;
                }
                Ok(())
            }
            CType::Struct { members, .. } => {
                let inner = strip_brackets(text, '{', '}');
                for (i, item) in split_top(inner).iter().enumerate() {
                    let (member, value) = match item.split_once([':', '=']) {
                        Some((name, value))
                            if !name.trim().is_empty()
                                && name.trim().chars().all(|c| c.is_alphanumeric() || c == '_') =>
                        {
                            let m = members
                                .iter()
                                .find(|m| m.name == name.trim())
                                .ok_or_else(|| self.bad(text))?;
                            (m, value.trim())
                        }
                        _ => (members.get(i).ok_or_else(|| self.bad(text))?, *item),
                    };
                    if member.bit_size > 0 {
                        let v = parse_int(value).ok_or_else(|| self.bad(text))?;
                        set_bits(own, member.bit_offset, member.bit_size, v);
                        continue;
                    }
                    let start = (member.bit_offset / 8) as usize;
                    let slot = own.get_mut(start..).ok_or_else(|| self.bad(text))?;
                    member.ty.parse_into(value, slot, depth + 1)?;
                }
                Ok(())
            }
            CType::Float { .. } | CType::Opaque { .. } => {
                let bytes = parse_hex(text).ok_or_else(|| self.bad(text))?;
                if bytes.len() != size {
                    return Err(self.bad(text));
                }
                own.copy_from_slice(&bytes);
                Ok(())
            }
        }
    }
}

fn push_hex(bytes: &[u8], out: &mut String) {
    use std::fmt::Write;
    out.push_str("0x");
    for b in bytes.iter().rev() {
        let _ = write!(out, "{b:02x}");
    }
}

/// A little-endian integer of 1 to 16 bytes.
fn int_value(bytes: &[u8], signed: bool) -> Option<i128> {
    let n = bytes.len();
    if n == 0 || n > 8 {
        return None;
    }
    let mut raw = [0u8; 8];
    raw.get_mut(..n)?.copy_from_slice(bytes);
    let v = u64::from_le_bytes(raw);
    if signed {
        let shift = 64 - 8 * u32::try_from(n).ok()?;
        Some(i128::from((v << shift).cast_signed() >> shift))
    } else {
        Some(i128::from(v))
    }
}

/// Stores `v` in `out` (little-endian) if it fits.
fn store_int(v: i128, signed: bool, out: &mut [u8]) -> Option<()> {
    let bits = u32::try_from(out.len()).ok()?.checked_mul(8)?;
    if bits == 0 || bits > 64 {
        return None;
    }
    let (min, max) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        // Unsigned values also accept their two's-complement negative spelling.
        (-(1i128 << (bits - 1)), (1i128 << bits) - 1)
    };
    if v < min || v > max {
        return None;
    }
    let bytes = v.to_le_bytes();
    out.copy_from_slice(bytes.get(..out.len())?);
    Some(())
}

/// The bit field at `offset` of `width` bits, little-endian.
fn bits(bytes: &[u8], offset: u32, width: u32) -> u64 {
    let mut v = 0u64;
    for i in 0..width.min(64) {
        let bit = offset + i;
        let byte = bytes.get((bit / 8) as usize).copied().unwrap_or(0);
        v |= u64::from((byte >> (bit % 8)) & 1) << i;
    }
    v
}

fn set_bits(bytes: &mut [u8], offset: u32, width: u32, v: i128) {
    for i in 0..width.min(64) {
        let bit = offset + i;
        if let Some(byte) = bytes.get_mut((bit / 8) as usize) {
            let mask = 1u8 << (bit % 8);
            if (v >> i) & 1 == 1 {
                *byte |= mask;
            } else {
                *byte &= !mask;
            }
        }
    }
}

/// A decimal or `0x` hexadecimal integer, possibly negative.
fn parse_int(text: &str) -> Option<i128> {
    let t = text.trim().replace('_', "");
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, t),
    };
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None => t.parse::<i128>().ok()?,
    };
    Some(if neg { -v } else { v })
}

/// `a.b.c.d` as four bytes.
fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    let addr: std::net::Ipv4Addr = text.trim().parse().ok()?;
    Some(addr.octets())
}

/// Hex bytes (spaces allowed, optional `0x`).
fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = digits.strip_prefix("0x").unwrap_or(&digits);
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect()
}

fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

fn strip_brackets(text: &str, open: char, close: char) -> &str {
    let t = text.trim();
    t.strip_prefix(open)
        .and_then(|t| t.strip_suffix(close))
        .unwrap_or(t)
}

/// Splits at commas outside brackets and quotes.
fn split_top(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' | '{' if !quoted => depth += 1,
            ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                items.push(text.get(start..i).unwrap_or_default().trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = text.get(start..).unwrap_or_default().trim();
    if !last.is_empty() || !items.is_empty() {
        items.push(last);
    }
    items
}

/// One raw BTF type record.
#[derive(Debug, Clone)]
struct Raw {
    kind: u32,
    name: u32,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
    /// The kind-specific words after the common header.
    extra: Vec<u32>,
}

/// A `.BTF` section's types, read completely.
#[derive(Debug, Clone)]
pub(crate) struct Types {
    strings: Vec<u8>,
    types: Vec<Raw>,
}

impl Types {
    /// Reads a `.BTF` section; `None` if it is malformed (the loader reports that itself).
    pub(crate) fn parse(data: &[u8]) -> Option<Types> {
        let hdr_len = usize::try_from(read_u32(data, 4)?).ok()?;
        let word = |off: usize| read_u32(data, off);
        let (type_off, type_len) = (word(8)? as usize, word(12)? as usize);
        let (str_off, str_len) = (word(16)? as usize, word(20)? as usize);
        let t_begin = hdr_len.checked_add(type_off)?;
        let types_data = data.get(t_begin..t_begin.checked_add(type_len)?)?;
        let s_begin = hdr_len.checked_add(str_off)?;
        let strings = data.get(s_begin..s_begin.checked_add(str_len)?)?.to_vec();
        let mut types = vec![Raw {
            kind: 0,
            name: 0,
            vlen: 0,
            kind_flag: false,
            size_or_type: 0,
            extra: Vec::new(),
        }];
        let mut pos = 0usize;
        while pos < types_data.len() {
            let w = |i: usize| read_u32(types_data, pos.checked_add(i.checked_mul(4)?)?);
            let (name, info, size_or_type) = (w(0)?, w(1)?, w(2)?);
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let extra_words = match kind {
                1 | 14 | 17 => 1,
                3 => 3,
                4 | 5 | 15 | 19 => vlen.checked_mul(3)?,
                6 | 13 => vlen.checked_mul(2)?,
                2 | 7..=12 | 16 | 18 => 0,
                _ => return None,
            };
            let extra = (0..extra_words)
                .map(|i| w(3 + i))
                .collect::<Option<Vec<u32>>>()?;
            types.push(Raw {
                kind,
                name,
                vlen,
                kind_flag: info >> 31 == 1,
                size_or_type,
                extra,
            });
            pos = pos.checked_add(12 + extra_words * 4)?;
        }
        Some(Types { strings, types })
    }

    fn string(&self, off: u32) -> String {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        String::from_utf8_lossy(rest.get(..end).unwrap_or_default()).into_owned()
    }

    fn get(&self, id: u32) -> Option<&Raw> {
        self.types.get(id as usize)
    }

    /// Follows typedefs and modifiers (and `VAR`s) from `id`.
    fn resolve(&self, id: u32) -> Option<(u32, &Raw)> {
        let mut cur = id;
        for _ in 0..MAX_DEPTH {
            let t = self.get(cur)?;
            match t.kind {
                8..=11 | 18 | 14 => cur = t.size_or_type,
                _ => return Some((cur, t)),
            }
        }
        None
    }

    /// The description of type `id`.
    pub(crate) fn describe(&self, id: u32) -> Option<CType> {
        let mut budget = MAX_NODES;
        self.build(id, 0, &mut budget)
    }

    fn build(&self, id: u32, depth: u32, budget: &mut u32) -> Option<CType> {
        if depth > MAX_DEPTH || *budget == 0 {
            return None;
        }
        *budget -= 1;
        let (_, t) = self.resolve(id)?;
        Some(match t.kind {
            1 => {
                let enc = t.extra.first().copied().unwrap_or(0) >> 24;
                let size = t.size_or_type;
                if !matches!(size, 1 | 2 | 4 | 8) {
                    return Some(CType::Opaque { size });
                }
                CType::Int {
                    name: self.string(t.name),
                    size,
                    signed: enc & 1 != 0,
                    is_char: enc & 2 != 0,
                    is_bool: enc & 4 != 0,
                }
            }
            2 => CType::Ptr,
            3 => {
                let elem = t.extra.first().copied()?;
                let len = t.extra.get(2).copied()?;
                let elem = self.build(elem, depth + 1, budget)?;
                if u64::from(elem.size()) * u64::from(len) > u64::from(u32::MAX) {
                    return None;
                }
                CType::Array {
                    elem: Box::new(elem),
                    len,
                }
            }
            4 | 5 => {
                let mut members = Vec::with_capacity(t.vlen.min(1024));
                for m in t.extra.chunks_exact(3) {
                    let (name, ty, raw) = (m[0], m[1], m[2]);
                    let (bit_offset, bit_size) = if t.kind_flag {
                        (raw & 0x00ff_ffff, raw >> 24)
                    } else {
                        (raw, 0)
                    };
                    let ty = self
                        .build(ty, depth + 1, budget)
                        .unwrap_or(CType::Opaque { size: 0 });
                    // A plain member of an integer type narrower than its BTF size is a bit field.
                    members.push(CMember {
                        name: self.string(name),
                        bit_offset,
                        bit_size,
                        ty,
                    });
                }
                CType::Struct {
                    name: self.string(t.name),
                    size: t.size_or_type,
                    union: t.kind == 5,
                    members,
                }
            }
            6 | 19 => {
                let step = if t.kind == 6 { 2 } else { 3 };
                let values = t
                    .extra
                    .chunks_exact(step)
                    .map(|e| {
                        let v = if t.kind == 6 {
                            if t.kind_flag {
                                i64::from(e[1].cast_signed())
                            } else {
                                i64::from(e[1])
                            }
                        } else {
                            (i64::from(e[2]) << 32) | i64::from(e[1])
                        };
                        (self.string(e[0]), v)
                    })
                    .collect();
                CType::Enum {
                    name: self.string(t.name),
                    size: t.size_or_type,
                    signed: t.kind_flag,
                    values,
                }
            }
            16 => CType::Float {
                size: t.size_or_type,
            },
            _ => return None,
        })
    }

    /// The type a BTF map definition's `key` or `value` member points to (`__type(key, T)`).
    pub(crate) fn map_member(&self, map_name: &str, member: &str) -> Option<CType> {
        let var = self
            .datasec_vars(".maps")?
            .into_iter()
            .find_map(|(id, _, _)| {
                let t = self.get(id)?;
                (t.kind == 14 && self.string(t.name) == map_name).then_some(t.size_or_type)
            })?;
        let (_, def) = self.resolve(var)?;
        if def.kind != 4 {
            return None;
        }
        let ty = def
            .extra
            .chunks_exact(3)
            .find(|m| self.string(m[0]) == member)?[1];
        let (_, ptr) = self.resolve(ty)?;
        if ptr.kind != 2 {
            return None;
        }
        self.describe(ptr.size_or_type)
    }

    /// The variables of the `DATASEC` named `section`: (VAR type id, offset, size).
    fn datasec_vars(&self, section: &str) -> Option<Vec<(u32, u32, u32)>> {
        let sec = self
            .types
            .iter()
            .find(|t| t.kind == 15 && self.string(t.name) == section)?;
        Some(
            sec.extra
                .chunks_exact(3)
                .map(|v| (v[0], v[1], v[2]))
                .collect(),
        )
    }

    /// The global variables of data section `section` (`.data`, `.rodata.str`, ...).
    pub(crate) fn globals(&self, section: &str) -> Vec<GlobalVar> {
        let Some(vars) = self.datasec_vars(section) else {
            return Vec::new();
        };
        vars.into_iter()
            .filter_map(|(id, offset, size)| {
                let var = self.get(id).filter(|t| t.kind == 14)?;
                let ty = self
                    .describe(var.size_or_type)
                    .filter(|t| t.size() == size)
                    .unwrap_or(CType::Opaque { size });
                Some(GlobalVar {
                    name: self.string(var.name),
                    offset,
                    size,
                    ty,
                })
            })
            .collect()
    }

    /// The type program function `name`'s first parameter points to (its context structure).
    pub(crate) fn context_type(&self, name: &str) -> Option<CType> {
        let func = self
            .types
            .iter()
            .find(|t| t.kind == 12 && self.string(t.name) == name)?;
        let proto = self.get(func.size_or_type).filter(|t| t.kind == 13)?;
        let first = proto.extra.get(1).copied()?;
        let (_, ptr) = self.resolve(first)?;
        if ptr.kind != 2 {
            return None;
        }
        self.describe(ptr.size_or_type)
    }
}

/// Fills in the BTF types of maps (keys, values, global variables) and programs (context types)
/// from the `.BTF` section `data`; leaves them unset where BTF does not say.
pub(crate) fn annotate(
    data: &[u8],
    maps: &mut [crate::MapSpec],
    programs: &mut [crate::ProgramSpec],
) {
    let Some(types) = Types::parse(data) else {
        return;
    };
    for m in maps.iter_mut() {
        match m.kind {
            crate::MapKind::Btf => {
                m.key_type = types
                    .map_member(&m.name, "key")
                    .filter(|t| t.size() == m.key_size);
                m.value_type = types
                    .map_member(&m.name, "value")
                    .filter(|t| t.size() == m.value_size);
            }
            crate::MapKind::Data | crate::MapKind::Rodata | crate::MapKind::Bss => {
                m.vars = types.globals(&m.section);
            }
            crate::MapKind::Legacy => {}
        }
    }
    for p in programs.iter_mut() {
        p.context_type = types.context_type(&p.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_type() -> CType {
        CType::Int {
            name: "unsigned int".into(),
            size: 4,
            signed: false,
            is_char: false,
            is_bool: false,
        }
    }

    fn counts() -> CType {
        let u64_type = CType::Int {
            name: "long long unsigned int".into(),
            size: 8,
            signed: false,
            is_char: false,
            is_bool: false,
        };
        CType::Struct {
            name: "counts".into(),
            size: 16,
            union: false,
            members: vec![
                CMember {
                    name: "packets".into(),
                    bit_offset: 0,
                    bit_size: 0,
                    ty: u64_type.clone(),
                },
                CMember {
                    name: "bytes".into(),
                    bit_offset: 64,
                    bit_size: 0,
                    ty: u64_type,
                },
            ],
        }
    }

    #[test]
    fn formats_and_parses_structs_both_ways() {
        let c = counts();
        let bytes = c.parse("{packets: 2, bytes: 120}").expect("parses");
        assert_eq!(c.format(&bytes), "{packets: 2, bytes: 120}");
        assert_eq!(c.parse("2, 120").expect("positional"), bytes);
        assert_eq!(c.parse("bytes=120").expect("named")[8], 120);
        assert!(c.parse("{nope: 1}").is_err());
    }

    #[test]
    fn integers_addresses_and_strings() {
        let u = u32_type();
        assert_eq!(u.parse("6").expect("decimal"), [6, 0, 0, 0]);
        assert_eq!(u.parse("0x10").expect("hex"), [16, 0, 0, 0]);
        assert_eq!(u.parse("10.1.0.7").expect("quad"), [10, 1, 0, 7]);
        assert!(u.parse("4294967296").is_err());
        assert_eq!(u.format(&[6, 0, 0, 0]), "6");
        let name = CType::Array {
            elem: Box::new(CType::Int {
                name: "char".into(),
                size: 1,
                signed: true,
                is_char: true,
                is_bool: false,
            }),
            len: 8,
        };
        let bytes = name.parse("\"moat\"").expect("string");
        assert_eq!(name.format(&bytes), "\"moat\"");
        assert!(name.parse("much too long").is_err());
        let signed = CType::Int {
            name: "int".into(),
            size: 4,
            signed: true,
            is_char: false,
            is_bool: false,
        };
        assert_eq!(signed.format(&signed.parse("-3").expect("neg")), "-3");
        assert_eq!(u.format(&[1, 2]), "?");
    }

    /// The bundled examples' BTF: map keys and values, global variables, a context type.
    #[test]
    fn reads_types_of_the_bundled_examples() {
        let counter = crate::Object::parse(include_bytes!("../../../examples/c/counter.o"))
            .expect("counter.o");
        let map = counter.map("counters").expect("counters");
        assert_eq!(
            map.key_type.as_ref().map(CType::c_name).as_deref(),
            Some("unsigned int")
        );
        assert_eq!(
            map.value_type.as_ref().map(CType::c_name).as_deref(),
            Some("struct counts")
        );
        let globals = crate::Object::parse(include_bytes!("../../../examples/c/globals.o"))
            .expect("globals.o");
        let rodata = globals.map(".rodata").expect(".rodata");
        assert_eq!(
            rodata
                .vars
                .first()
                .map(|v| (v.name.as_str(), v.offset, v.size)),
            Some(("multiplier", 0, 4))
        );
        let filter = crate::Object::parse(include_bytes!("../../../examples/c/request_filter.o"))
            .expect("request_filter.o");
        let ctx = filter
            .programs
            .first()
            .and_then(|p| p.context_type.as_ref());
        assert_eq!(ctx.map(CType::size), Some(76));
    }
}
