//! Resource limits that keep hostile objects from exhausting memory: a huge `.bss` (no file bytes
//! needed to claim terabytes), and many programs each linking the same big sub-program.

mod common;

use common::{call, exit, mov, Builder};
use moat_obj::{MapErrorKind, ObjError, Object};
use object::{SectionKind, SymbolKind};

#[test]
fn huge_bss_is_refused_without_allocating() {
    let mut b = Builder::new();
    b.data(".bss", &[0; 8], SectionKind::UninitializedData);
    let xdp = b.code("xdp", &[mov(0, 0), exit()]);
    b.func(xdp, "p", 0);
    let mut bytes = b.build();
    // Patch the .bss size to 1 TiB: find the NOBITS section header (sh_type 8).
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let shnum = u16::from_le_bytes(bytes[0x3c..0x3e].try_into().unwrap()) as usize;
    let hdr = (0..shnum)
        .map(|i| shoff + 64 * i)
        .find(|&h| u32::from_le_bytes(bytes[h + 4..h + 8].try_into().unwrap()) == 8)
        .expect("a NOBITS section");
    bytes[hdr + 32..hdr + 40].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        Object::parse(&bytes),
        Err(ObjError::BadMap {
            kind: MapErrorKind::DataTooLarge {
                size: 0x100_0000_0000,
                ..
            },
            ..
        })
    ));
}

#[test]
fn many_programs_sharing_a_big_subprogram_hit_the_total_limit() {
    let mut b = Builder::new();
    let mut body = vec![mov(0, 0); 1 << 16];
    body.push(exit());
    let text = b.code(".text", &body);
    let big = b.symbol(text, "big", 0, SymbolKind::Text, false);
    let n = 65;
    let mut code = Vec::new();
    for _ in 0..n {
        code.push(call(1, -1));
        code.push(exit());
    }
    let sec = b.code("xdp", &code);
    for i in 0..n {
        b.func(sec, &format!("p{i}"), 16 * i as u64);
        b.reloc(sec, 16 * i as u64, big, 10);
    }
    let err = Object::parse(&b.build()).expect_err("over the limit");
    assert!(
        matches!(
            err,
            ObjError::ProgramTooLarge {
                limit: 0x40_0000,
                ..
            }
        ),
        "{err:?}"
    );
}
