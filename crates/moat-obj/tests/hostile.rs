//! Hostile input: real objects with one field corrupted must be refused with the right typed error
//! (never a panic), and a few things that look wrong but are not the loader's business (an unknown map
//! type) must still load. Errors are matched by variant, not by message.

mod common;

use moat_obj::{BtfErrorKind, MapErrorKind, ObjError, Object, RelocErrorKind};
use object::read::elf::{FileHeader, SectionHeader};
use object::LittleEndian as LE;

/// File offsets of a section: (header offset, data offset, data size).
fn section(bytes: &[u8], name: &str) -> (usize, usize, usize) {
    let header = object::elf::FileHeader64::<LE>::parse(bytes).expect("ELF header");
    let table = header.sections(LE, bytes).expect("section table");
    let shoff = header.e_shoff(LE) as usize;
    for (i, sh) in table.enumerate() {
        if table.section_name(LE, sh).expect("name") == name.as_bytes() {
            return (
                shoff + 64 * i.0,
                sh.sh_offset(LE) as usize,
                sh.sh_size(LE) as usize,
            );
        }
    }
    panic!("no section {name}");
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Loads `rel`, applies `mutate`, and parses the result (`None` if the objects are missing).
fn check(rel: &str, mutate: impl FnOnce(&mut Vec<u8>)) -> Option<Result<Object, ObjError>> {
    let mut bytes = common::real(rel)?;
    mutate(&mut bytes);
    Some(Object::parse(&bytes))
}

/// Rewrites the first relocation of `.relsocket1` in `new_linux/sockex1_kern.o` (originally: offset
/// 0x38, symbol `my_map`, type 1).
fn reloc(mutate: impl FnOnce(&mut [u8], usize)) -> Option<Result<Object, ObjError>> {
    check("new_linux/sockex1_kern.o", |b| {
        let (_, off, _) = section(b, ".relsocket1");
        mutate(b, off);
    })
}

#[test]
fn not_elf_and_truncated() {
    assert_eq!(Object::parse(b"").err(), Some(ObjError::NotElf));
    assert_eq!(Object::parse(b"\x7fELX....").err(), Some(ObjError::NotElf));
    let Some(r) = check("new_linux/sockex1_kern.o", |b| b.truncate(40)) else {
        return;
    };
    assert!(matches!(
        r,
        Err(ObjError::Truncated {
            needed: 64,
            len: 40,
            ..
        })
    ));
    // The section header table is at the end of the file.
    let r = check("new_linux/sockex1_kern.o", |b| b.truncate(b.len() / 2));
    assert!(matches!(r, Some(Err(ObjError::Truncated { .. }))));
}

#[test]
fn wrong_class_endianness_machine() {
    let r = check("new_linux/sockex1_kern.o", |b| b[4] = 1);
    assert!(matches!(r, Some(Err(ObjError::WrongClass(1)))));
    let r = check("new_linux/sockex1_kern.o", |b| b[5] = 2);
    assert!(matches!(r, Some(Err(ObjError::WrongEndian(2)))));
    let r = check("new_linux/sockex1_kern.o", |b| put_u32(b, 18, 62));
    assert!(matches!(r, Some(Err(ObjError::WrongMachine(62)))));
}

#[test]
fn section_offset_past_end() {
    let r = check("new_linux/sockex1_kern.o", |b| {
        let (hdr, _, _) = section(b, "socket1");
        put_u64(b, hdr + 24, 1 << 40);
    });
    let Some(r) = r else { return };
    match r {
        Err(ObjError::SectionOutOfBounds {
            section, offset, ..
        }) => {
            assert_eq!(
                (section.name.as_str(), section.index, offset),
                ("socket1", 3, 1 << 40)
            );
        }
        other => panic!("{other:?}"),
    }
    // Size overflowing the offset.
    let r = check("new_linux/sockex1_kern.o", |b| {
        let (hdr, _, _) = section(b, "socket1");
        put_u64(b, hdr + 32, u64::MAX);
    });
    assert!(matches!(r, Some(Err(ObjError::SectionOutOfBounds { .. }))));
}

#[test]
fn bad_relocation_type() {
    let r = reloc(|b, at| put_u32(b, at + 8, 7));
    assert!(matches!(
        r,
        Some(Err(ObjError::BadRelocation {
            reloc: 0,
            offset: 0x38,
            r_type: 7,
            kind: RelocErrorKind::UnknownType(7),
            ..
        }))
    ));
}

#[test]
fn bad_relocation_offset() {
    let r = reloc(|b, at| put_u64(b, at, 0x39));
    assert!(matches!(
        r,
        Some(Err(ObjError::BadRelocation {
            offset: 0x39,
            kind: RelocErrorKind::BadOffset { size: 0x78 },
            ..
        }))
    ));
    let r = reloc(|b, at| put_u64(b, at, 0x78));
    assert!(matches!(
        r,
        Some(Err(ObjError::BadRelocation {
            kind: RelocErrorKind::BadOffset { .. },
            ..
        }))
    ));
    // Slot 0 is `r6 = r1`: a relocation there is not on lddw or call.
    let r = reloc(|b, at| put_u64(b, at, 0));
    assert!(matches!(
        r,
        Some(Err(ObjError::BadRelocation {
            kind: RelocErrorKind::NotLddwOrCall { opcode: 0xbf },
            ..
        }))
    ));
}

#[test]
fn bad_relocation_symbol() {
    let r = reloc(|b, at| put_u32(b, at + 12, 0xffff));
    assert!(matches!(
        r,
        Some(Err(ObjError::BadRelocation {
            kind: RelocErrorKind::BadSymbolIndex { index: 0xffff, .. },
            ..
        }))
    ));
    // Symbol 1 is the FILE symbol: not code, map or data.
    let r = reloc(|b, at| put_u32(b, at + 12, 1));
    assert!(matches!(
        r,
        Some(Err(ObjError::BadRelocation {
            kind: RelocErrorKind::BadTarget { .. },
            ..
        }))
    ));
}

#[test]
fn unknown_map_type_is_not_the_loaders_business() {
    let r = check("linux/sockex1_kern.o", |b| {
        let (_, off, _) = section(b, "maps");
        put_u32(b, off, 0xdead);
    });
    let Some(r) = r else { return };
    let obj = r.expect("an unknown map type still loads");
    assert_eq!(obj.maps[0].map_type, 0xdead);
}

#[test]
fn malformed_legacy_map_record_size() {
    // Three maps in 84 bytes; 83 bytes is no whole number of records.
    let r = check("linux/sockex3_kern.o", |b| {
        let (hdr, _, _) = section(b, "maps");
        put_u64(b, hdr + 32, 83);
    });
    let Some(r) = r else { return };
    match r {
        Err(ObjError::BadMap {
            section,
            kind: MapErrorKind::BadRecordSize {
                size: 83, count: 3, ..
            },
            ..
        }) => {
            assert_eq!(section.name, "maps");
        }
        other => panic!("{other:?}"),
    }
    // 12-byte records are too small to be a bpf_map_def.
    let r = check("linux/sockex1_kern.o", |b| {
        let (hdr, _, _) = section(b, "maps");
        put_u64(b, hdr + 32, 12);
    });
    assert!(matches!(
        r,
        Some(Err(ObjError::BadMap {
            kind: MapErrorKind::BadRecordSize { .. },
            ..
        }))
    ));
}

#[test]
fn oversized_map() {
    let r = check("linux/sockex1_kern.o", |b| {
        let (_, off, _) = section(b, "maps");
        put_u32(b, off + 8, 1 << 20); // value_size
        put_u32(b, off + 12, 1 << 20); // max_entries
    });
    assert!(matches!(
        r,
        Some(Err(ObjError::OversizedMap {
            value_size: 0x100000,
            max_entries: 0x100000,
            ..
        }))
    ));
}

#[test]
fn bad_btf_string_offset() {
    // Shrink the string table to one byte: every name offset is now past its end.
    let r = check("new_linux/sockex1_kern.o", |b| {
        let (_, off, _) = section(b, ".BTF");
        put_u32(b, off + 20, 1);
    });
    let Some(r) = r else { return };
    match r {
        Err(ObjError::Btf {
            section,
            kind: BtfErrorKind::BadStringOffset(_),
            ..
        }) => {
            assert_eq!(section.name, ".BTF");
        }
        other => panic!("{other:?}"),
    }
    // A string section reaching past the section end.
    let r = check("new_linux/sockex1_kern.o", |b| {
        let (_, off, _) = section(b, ".BTF");
        put_u32(b, off + 20, 0x7fff_ffff);
    });
    assert!(matches!(
        r,
        Some(Err(ObjError::Btf {
            kind: BtfErrorKind::BadHeader,
            ..
        }))
    ));
}

#[test]
fn missing_program() {
    let Some(Ok(obj)) = check("new_linux/sockex1_kern.o", |_| {}) else {
        return;
    };
    assert!(obj.program("bpf_prog1").is_ok());
    assert!(obj.program("socket1").is_ok());
    assert_eq!(
        obj.program("nope").err(),
        Some(ObjError::MissingProgram("nope".into()))
    );
}

#[test]
fn lddw_cut_in_half_in_real_invalid_object() {
    let Some(r) = check("invalid/invalid-lddw.o", |_| {}) else {
        return;
    };
    assert!(matches!(r, Err(ObjError::LddwTruncated { offset: 8, .. })));
}
