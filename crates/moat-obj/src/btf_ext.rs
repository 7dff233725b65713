//! A reader for `.BTF.ext`: per-section line info (instruction offset → file, line, column and source
//! text, with strings from `.BTF`) and CO-RE relocation records (only located and counted here; applying
//! them needs kernel BTF and is later work). Function info is skipped: symbols already name functions.

use crate::btf::{header_len, sub_range, Btf, BtfError};
use crate::elf::read_u32;
use crate::error::BtfErrorKind;
use std::collections::HashMap;
use std::sync::Arc;

/// One line-info record, strings resolved.
#[derive(Debug, Clone)]
pub(crate) struct LineRecord {
    /// Byte offset of the instruction in its section.
    pub insn_off: u32,
    /// Source file name.
    pub file: Arc<str>,
    /// Source line text.
    pub text: Arc<str>,
    /// Line number (1-based).
    pub line: u32,
    /// Column (1-based, 0 if unknown).
    pub column: u32,
}

/// The parts of `.BTF.ext` moat uses, grouped by the section name each record block names.
#[derive(Debug, Default)]
pub(crate) struct BtfExt {
    /// Line info per section name.
    pub line_info: Vec<(String, Vec<LineRecord>)>,
    /// Byte offsets of CO-RE relocated instructions per section name.
    pub core_relos: Vec<(String, Vec<u32>)>,
}

/// Interns strings from the `.BTF` string table so that records share them.
struct Strings<'b, 'a> {
    btf: &'b Btf<'a>,
    cache: HashMap<u32, Arc<str>>,
}

impl Strings<'_, '_> {
    fn get(&mut self, off: u32) -> Result<Arc<str>, BtfError> {
        if let Some(s) = self.cache.get(&off) {
            return Ok(s.clone());
        }
        let s: Arc<str> = Arc::from(self.btf.string(off)?);
        self.cache.insert(off, s.clone());
        Ok(s)
    }
}

/// Walks one `.BTF.ext` sub-section (`rec_size`, then blocks of `sec_name_off, num_info, records`),
/// calling `each(section_name, record_bytes)` per block.
fn walk_blocks<'d>(
    data: &'d [u8],
    (begin, end): (usize, usize),
    min_rec: u32,
    strings: &mut Strings<'_, '_>,
    mut each: impl FnMut(&mut Strings<'_, '_>, Arc<str>, &'d [u8], usize, usize) -> Result<(), BtfError>,
) -> Result<(), BtfError> {
    if begin == end {
        return Ok(());
    }
    let rec_size = read_u32(data, begin).ok_or((begin, BtfErrorKind::Truncated))?;
    if rec_size < min_rec {
        return Err((begin, BtfErrorKind::BadRecordSize(rec_size)));
    }
    let mut pos = begin.saturating_add(4);
    while pos < end {
        let name_off = read_u32(data, pos).ok_or((pos, BtfErrorKind::Truncated))?;
        let num = read_u32(data, pos.saturating_add(4)).ok_or((pos, BtfErrorKind::Truncated))?;
        let recs = pos.saturating_add(8);
        let len = (num as usize)
            .checked_mul(rec_size as usize)
            .and_then(|l| recs.checked_add(l))
            .filter(|&e| e <= end)
            .ok_or((pos, BtfErrorKind::Truncated))?;
        let name = strings.get(name_off).map_err(|(_, k)| (pos, k))?;
        let block = data.get(recs..len).ok_or((pos, BtfErrorKind::Truncated))?;
        each(strings, name, block, rec_size as usize, recs)?;
        pos = len;
    }
    Ok(())
}

impl BtfExt {
    /// Parses `.BTF.ext`, resolving strings against `btf`.
    pub fn parse(data: &[u8], btf: &Btf<'_>) -> Result<BtfExt, BtfError> {
        let hdr_len = header_len(data)?;
        if hdr_len < 24 {
            return Err((4, BtfErrorKind::BadHeader));
        }
        let w = |off: usize| read_u32(data, off).ok_or((off, BtfErrorKind::BadHeader));
        let line = sub_range(data, hdr_len, w(16)?, w(20)?, 16)?;
        let core = if hdr_len >= 32 {
            sub_range(data, hdr_len, w(24)?, w(28)?, 24)?
        } else {
            (0, 0)
        };
        let mut strings = Strings {
            btf,
            cache: HashMap::new(),
        };
        let mut out = BtfExt::default();
        walk_blocks(
            data,
            line,
            16,
            &mut strings,
            |strings, name, block, rec, at| {
                let mut recs = Vec::with_capacity(block.len() / rec.max(1));
                for (i, r) in block.chunks_exact(rec).enumerate() {
                    let at = at.saturating_add(i.saturating_mul(rec));
                    let f = |k: usize| read_u32(r, k * 4).ok_or((at, BtfErrorKind::Truncated));
                    let line_col = f(3)?;
                    recs.push(LineRecord {
                        insn_off: f(0)?,
                        file: strings.get(f(1)?).map_err(|(_, k)| (at, k))?,
                        text: strings.get(f(2)?).map_err(|(_, k)| (at, k))?,
                        line: line_col >> 10,
                        column: line_col & 0x3ff,
                    });
                }
                out.line_info.push((name.to_string(), recs));
                Ok(())
            },
        )?;
        walk_blocks(data, core, 16, &mut strings, |_, name, block, rec, at| {
            let mut offs = Vec::with_capacity(block.len() / rec.max(1));
            for r in block.chunks_exact(rec) {
                offs.push(read_u32(r, 0).ok_or((at, BtfErrorKind::Truncated))?);
            }
            out.core_relos.push((name.to_string(), offs));
            Ok(())
        })?;
        Ok(out)
    }
}
