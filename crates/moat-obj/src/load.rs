//! The loading pipeline behind [`crate::Object::parse`]: ELF → section kinds → BTF → maps → programs.

use crate::btf::Btf;
use crate::btf_ext::BtfExt;
use crate::elf::Elf;
use crate::error::ObjError;
use crate::spec::{Object, SectionInfo, SectionKind};
use crate::{link, maps};

/// Loads an object; see [`crate::Object::parse`].
pub(crate) fn load(bytes: &[u8]) -> Result<Object, ObjError> {
    let elf = Elf::parse(bytes)?;
    let kinds: Vec<SectionKind> = elf
        .sections
        .iter()
        .map(|s| {
            if s.index == 0 {
                SectionKind::Other
            } else {
                maps::classify(&s.name, s.sh_type, s.flags)
            }
        })
        .collect();
    let find = |kind: SectionKind| kinds.iter().position(|k| *k == kind);
    let elf_ref = &elf;
    let btf_error = |index: usize| {
        move |(offset, kind)| ObjError::Btf {
            section: elf_ref.sref(index),
            offset,
            kind,
        }
    };
    let btf = match find(SectionKind::Btf) {
        Some(i) => Some(Btf::parse(elf.data(i)?).map_err(btf_error(i))?),
        None => None,
    };
    let ext = match (btf.as_ref(), find(SectionKind::BtfExt)) {
        (Some(btf), Some(i)) => Some(BtfExt::parse(elf.data(i)?, btf).map_err(btf_error(i))?),
        _ => None,
    };
    let mut maps = maps::collect(&elf, &kinds, btf.as_ref())?;
    let mut programs = link::programs(&elf, &kinds, &maps, ext.as_ref())?;
    if let Some(i) = find(SectionKind::Btf) {
        crate::ctype::annotate(elf.data(i)?, &mut maps.specs, &mut programs);
    }
    let license = match find(SectionKind::License) {
        Some(i) => {
            let data = elf.data(i)?;
            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            Some(String::from_utf8_lossy(data.get(..end).unwrap_or_default()).into_owned())
        }
        None => None,
    };
    let kernel_version = match find(SectionKind::Version) {
        Some(i) => <[u8; 4]>::try_from(elf.data(i)?)
            .ok()
            .map(u32::from_le_bytes),
        None => None,
    };
    let sections = elf
        .sections
        .iter()
        .zip(&kinds)
        .skip(1)
        .map(|(s, k)| SectionInfo {
            index: s.index,
            name: s.name.clone(),
            kind: *k,
            size: s.size,
        })
        .collect();
    Ok(Object {
        programs,
        maps: maps.specs,
        license,
        kernel_version,
        sections,
        has_btf: btf.is_some(),
        has_btf_ext: find(SectionKind::BtfExt).is_some(),
    })
}
