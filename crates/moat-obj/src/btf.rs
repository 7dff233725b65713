//! A small reader for the `.BTF` section: the type table (all kinds up to `ENUM64`) and the string
//! table, with size resolution under a depth limit. It knows just enough to read libbpf's map
//! definitions in `.maps` and to give `.BTF.ext` its strings; it does not validate types the way the
//! kernel does.

use crate::elf::read_u32;
use crate::error::BtfErrorKind;

/// The BTF magic number.
pub(crate) const BTF_MAGIC: u16 = 0xeb9f;
/// How many links of typedef/modifier/array chains the resolver follows (libbpf uses 32 as well).
const MAX_DEPTH: usize = 32;

/// A BTF parse error: byte offset in the section and what is wrong.
pub(crate) type BtfError = (usize, BtfErrorKind);

/// One member of a struct or union.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// String offset of the name.
    pub name: u32,
    /// Type id.
    pub type_id: u32,
    /// Offset in bits (bitfield size stripped when the kind flag is set).
    pub bit_offset: u32,
}

/// One variable of a `DATASEC`.
#[derive(Debug, Clone)]
pub(crate) struct VarSecInfo {
    /// Type id of the `VAR`.
    pub type_id: u32,
    /// Offset in the section.
    pub offset: u32,
}

/// One BTF type, reduced to what moat needs.
#[derive(Debug, Clone)]
pub(crate) enum Type {
    /// Type id 0.
    Void,
    /// A type with a fixed byte size (INT, ENUM, ENUM64, FLOAT).
    Sized {
        /// Size in bytes.
        size: u32,
    },
    /// PTR.
    Ptr {
        /// The pointee.
        target: u32,
    },
    /// ARRAY.
    Array {
        /// Element type.
        elem: u32,
        /// Number of elements.
        nelems: u32,
    },
    /// STRUCT or UNION.
    Struct {
        /// Size in bytes.
        size: u32,
        /// Members.
        members: Vec<Member>,
    },
    /// TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG: a transparent link.
    Alias {
        /// The aliased type.
        target: u32,
    },
    /// VAR.
    Var {
        /// String offset of the name.
        name: u32,
        /// The variable's type.
        target: u32,
    },
    /// DATASEC.
    Datasec {
        /// String offset of the name.
        name: u32,
        /// Variables.
        vars: Vec<VarSecInfo>,
    },
    /// FWD, FUNC, FUNC_PROTO, DECL_TAG: no size.
    Other,
}

/// The parsed `.BTF` section.
#[derive(Debug)]
pub(crate) struct Btf<'a> {
    strings: &'a [u8],
    /// Offset of the string table in the section, for error reports.
    str_start: usize,
    types: Vec<Type>,
}

/// Reads `u32` number `i` of a record starting at `base`.
fn word(data: &[u8], base: usize, i: usize) -> Result<u32, BtfError> {
    let off = base
        .checked_add(i * 4)
        .ok_or((base, BtfErrorKind::Truncated))?;
    read_u32(data, off).ok_or((base, BtfErrorKind::Truncated))
}

/// Parses the 24-byte-or-longer header shared by `.BTF` and `.BTF.ext`: magic, version, flags,
/// `hdr_len`. Returns `hdr_len`.
pub(crate) fn header_len(data: &[u8]) -> Result<usize, BtfError> {
    let magic = data
        .get(0..2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(u16::from_le_bytes)
        .ok_or((0, BtfErrorKind::BadHeader))?;
    if magic != BTF_MAGIC {
        return Err((0, BtfErrorKind::BadMagic(magic)));
    }
    let hdr_len = read_u32(data, 4).ok_or((4, BtfErrorKind::BadHeader))?;
    let hdr_len = usize::try_from(hdr_len).map_err(|_| (4, BtfErrorKind::BadHeader))?;
    if hdr_len < 8 || hdr_len > data.len() {
        return Err((4, BtfErrorKind::BadHeader));
    }
    Ok(hdr_len)
}

/// The byte range `[start + off, start + off + len)` of `data`, checked.
pub(crate) fn sub_range(
    data: &[u8],
    start: usize,
    off: u32,
    len: u32,
    at: usize,
) -> Result<(usize, usize), BtfError> {
    let begin = start
        .checked_add(off as usize)
        .ok_or((at, BtfErrorKind::BadHeader))?;
    let end = begin
        .checked_add(len as usize)
        .ok_or((at, BtfErrorKind::BadHeader))?;
    if end > data.len() {
        return Err((at, BtfErrorKind::BadHeader));
    }
    Ok((begin, end))
}

impl<'a> Btf<'a> {
    /// Parses a `.BTF` section.
    pub fn parse(data: &'a [u8]) -> Result<Btf<'a>, BtfError> {
        let hdr_len = header_len(data)?;
        if hdr_len < 24 {
            return Err((4, BtfErrorKind::BadHeader));
        }
        let type_off = word(data, 8, 0)?;
        let type_len = word(data, 8, 1)?;
        let str_off = word(data, 8, 2)?;
        let str_len = word(data, 8, 3)?;
        let (t_begin, t_end) = sub_range(data, hdr_len, type_off, type_len, 8)?;
        let (s_begin, s_end) = sub_range(data, hdr_len, str_off, str_len, 16)?;
        let strings = data.get(s_begin..s_end).unwrap_or_default();
        let types_data = data.get(t_begin..t_end).unwrap_or_default();
        let mut types = vec![Type::Void];
        let mut pos = 0usize;
        while pos < types_data.len() {
            let at = t_begin.saturating_add(pos);
            let err = |k| (at, k);
            let name = word(types_data, pos, 0).map_err(|_| err(BtfErrorKind::Truncated))?;
            let info = word(types_data, pos, 1).map_err(|_| err(BtfErrorKind::Truncated))?;
            let size_or_type =
                word(types_data, pos, 2).map_err(|_| err(BtfErrorKind::Truncated))?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let body = pos + 12;
            // Bytes of kind-specific data after the 12-byte common header.
            let extra = match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => vlen * 12,
                6 | 13 => vlen * 8,
                2 | 7..=12 | 16 | 18 => 0,
                k => return Err(err(BtfErrorKind::UnknownKind(k))),
            };
            let next = body
                .checked_add(extra)
                .filter(|&n| n <= types_data.len())
                .ok_or(err(BtfErrorKind::Truncated))?;
            let w = |i: usize| word(types_data, body, i).map_err(|_| err(BtfErrorKind::Truncated));
            if name as usize >= strings.len().max(1) {
                return Err(err(BtfErrorKind::BadStringOffset(name)));
            }
            let ty = match kind {
                1 | 6 | 16 | 19 => Type::Sized { size: size_or_type },
                2 => Type::Ptr {
                    target: size_or_type,
                },
                3 => Type::Array {
                    elem: w(0)?,
                    nelems: w(2)?,
                },
                4 | 5 => {
                    let mut members = Vec::with_capacity(vlen);
                    for m in 0..vlen {
                        let raw = w(m * 3 + 2)?;
                        let name = w(m * 3)?;
                        if name as usize >= strings.len() {
                            return Err(err(BtfErrorKind::BadStringOffset(name)));
                        }
                        members.push(Member {
                            name,
                            type_id: w(m * 3 + 1)?,
                            bit_offset: if kind_flag { raw & 0x00ff_ffff } else { raw },
                        });
                    }
                    Type::Struct {
                        size: size_or_type,
                        members,
                    }
                }
                8..=11 | 18 => Type::Alias {
                    target: size_or_type,
                },
                14 => Type::Var {
                    name,
                    target: size_or_type,
                },
                15 => {
                    let mut vars = Vec::with_capacity(vlen);
                    for v in 0..vlen {
                        vars.push(VarSecInfo {
                            type_id: w(v * 3)?,
                            offset: w(v * 3 + 1)?,
                        });
                    }
                    Type::Datasec { name, vars }
                }
                _ => Type::Other,
            };
            types.push(ty);
            pos = next;
        }
        Ok(Btf {
            strings,
            str_start: s_begin,
            types,
        })
    }

    /// The string at offset `off` of the string table.
    pub fn string(&self, off: u32) -> Result<&'a str, BtfError> {
        let bad = (self.str_start, BtfErrorKind::BadStringOffset(off));
        let rest = self.strings.get(off as usize..).ok_or(bad)?;
        let end = rest.iter().position(|&b| b == 0).ok_or(bad)?;
        let bytes = rest.get(..end).ok_or(bad)?;
        std::str::from_utf8(bytes).map_err(|_| bad)
    }

    /// The type with id `id`.
    pub fn get(&self, id: u32) -> Result<&Type, BtfErrorKind> {
        self.types
            .get(id as usize)
            .ok_or(BtfErrorKind::BadTypeId(id))
    }

    /// Follows typedefs and modifiers from `id` to the first other type; returns its id.
    pub fn skip_aliases(&self, id: u32) -> Result<u32, BtfErrorKind> {
        let mut cur = id;
        for _ in 0..MAX_DEPTH {
            match self.get(cur)? {
                Type::Alias { target } => cur = *target,
                _ => return Ok(cur),
            }
        }
        Err(BtfErrorKind::TooDeep(id))
    }

    /// The size in bytes of type `id`.
    pub fn size_of(&self, id: u32) -> Result<u64, BtfErrorKind> {
        let mut cur = id;
        let mut mult: u64 = 1;
        for _ in 0..MAX_DEPTH {
            let size = match self.get(cur)? {
                Type::Sized { size } | Type::Struct { size, .. } => u64::from(*size),
                Type::Ptr { .. } => 8,
                Type::Array { elem, nelems } => {
                    mult = mult
                        .checked_mul(u64::from(*nelems))
                        .ok_or(BtfErrorKind::NoSize(id))?;
                    cur = *elem;
                    continue;
                }
                Type::Alias { target } | Type::Var { target, .. } => {
                    cur = *target;
                    continue;
                }
                Type::Void | Type::Datasec { .. } | Type::Other => {
                    return Err(BtfErrorKind::NoSize(id))
                }
            };
            return size.checked_mul(mult).ok_or(BtfErrorKind::NoSize(id));
        }
        Err(BtfErrorKind::TooDeep(id))
    }

    /// All types, indexed by id.
    pub fn types(&self) -> &[Type] {
        &self.types
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a `.BTF` section from raw type words and a string table.
    fn build(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&24u32.to_le_bytes());
        let tlen = u32::try_from(types.len() * 4).expect("small test types");
        let slen = u32::try_from(strings.len()).expect("small test strings");
        for v in [0, tlen, tlen, slen] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for t in types {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out.extend_from_slice(strings);
        out
    }

    fn info(kind: u32, vlen: u32) -> u32 {
        (kind << 24) | vlen
    }

    #[test]
    fn resolves_sizes_through_chains() {
        // 1: int (4 bytes), 2: array of 5 x int, 3: typedef -> 2, 4: ptr -> 3, 5: const -> 3.
        let types = [
            1,
            info(1, 0),
            4,
            32,
            0,
            info(3, 0),
            0,
            1,
            1,
            5,
            0,
            info(8, 0),
            2,
            0,
            info(2, 0),
            3,
            0,
            info(10, 0),
            3,
        ];
        let btf = build(&types, b"\0int\0");
        let btf = Btf::parse(&btf).expect("parses");
        assert_eq!(btf.size_of(1), Ok(4));
        assert_eq!(btf.size_of(3), Ok(20));
        assert_eq!(btf.size_of(4), Ok(8));
        assert_eq!(btf.size_of(5), Ok(20));
        assert_eq!(btf.skip_aliases(5), Ok(2));
        assert_eq!(btf.string(1), Ok("int"));
        assert!(btf.string(100).is_err());
        assert_eq!(btf.size_of(9), Err(BtfErrorKind::BadTypeId(9)));
    }

    #[test]
    fn typedef_loop_hits_depth_limit() {
        // 1: typedef -> 2, 2: typedef -> 1.
        let types = [0, info(8, 0), 2, 0, info(8, 0), 1];
        let btf = build(&types, b"\0");
        let btf = Btf::parse(&btf).expect("parses");
        assert_eq!(btf.size_of(1), Err(BtfErrorKind::TooDeep(1)));
        assert_eq!(btf.skip_aliases(1), Err(BtfErrorKind::TooDeep(1)));
    }

    #[test]
    fn refuses_unknown_kind_and_truncation() {
        let btf = build(&[0, info(25, 0), 0], b"\0");
        assert!(matches!(
            Btf::parse(&btf),
            Err((_, BtfErrorKind::UnknownKind(25)))
        ));
        // A struct claiming 1000 members in a 3-word table.
        let btf = build(&[0, info(4, 1000), 8], b"\0");
        assert!(matches!(
            Btf::parse(&btf),
            Err((_, BtfErrorKind::Truncated))
        ));
        let mut bad = build(&[], b"\0");
        bad[0] = 0;
        assert!(matches!(
            Btf::parse(&bad),
            Err((0, BtfErrorKind::BadMagic(_)))
        ));
    }
}
