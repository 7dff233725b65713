//! Property tests: decoding and encoding are inverses, and so are disassembly and assembly, over random
//! instructions; the decoder and assembler never panic on arbitrary input.

use moat_isa::{assemble_bytes, decode, decode_one, disasm, encode, RawInsn};
use proptest::prelude::*;

/// Field values that make many opcodes valid (atomic operation codes, byte-swap widths, signed
/// division offsets) mixed with arbitrary ones.
fn imm() -> impl Strategy<Value = i32> {
    prop_oneof![
        prop::sample::select(vec![
            0, 1, 16, 32, 64, 0x40, 0x41, 0x50, 0x51, 0xa0, 0xa1, 0xe1, 0xf1, -1
        ]),
        any::<i32>(),
    ]
}

fn off() -> impl Strategy<Value = i16> {
    prop_oneof![
        prop::sample::select(vec![0i16, 1, 8, 16, 32, -1]),
        any::<i16>()
    ]
}

/// Opcodes that decode with some natural choice of the other fields.
fn valid_codes() -> Vec<u8> {
    (0..=255u8)
        .filter(|&code| {
            [0, 16, 0x01, 0xe1].into_iter().any(|imm| {
                let slot = RawInsn {
                    code,
                    imm,
                    ..RawInsn::default()
                };
                decode_one(slot, Some(RawInsn::default())).is_ok()
            })
        })
        .collect()
}

fn raw_slot() -> impl Strategy<Value = RawInsn> {
    let code = prop_oneof![9 => prop::sample::select(valid_codes()), 1 => any::<u8>()];
    (code, 0u8..16, 0u8..16, off(), imm()).prop_map(|(code, dst, src, off, imm)| RawInsn {
        code,
        dst: if dst > 11 { dst } else { dst % 11 },
        src: if src > 11 { src } else { src % 11 },
        off,
        imm,
    })
}

/// Turns a random slot into a valid instruction (one slot, or two for `lddw`) by clearing the fields
/// its opcode reserves, trying the least destructive repair first; falls back to `exit`.
fn repair(raw: RawInsn, next_imm: i32) -> Vec<RawInsn> {
    let next = RawInsn {
        imm: next_imm,
        ..RawInsn::default()
    };
    let candidates = [
        raw,
        RawInsn { off: 0, ..raw },
        RawInsn { imm: 0, ..raw },
        RawInsn { src: 0, ..raw },
        RawInsn {
            src: 0,
            off: 0,
            ..raw
        },
        RawInsn {
            imm: 0,
            off: 0,
            ..raw
        },
        RawInsn {
            dst: 0,
            src: 0,
            ..raw
        },
        RawInsn {
            dst: 0,
            src: 0,
            off: 0,
            ..raw
        },
        RawInsn {
            dst: 0,
            src: 0,
            imm: 0,
            ..raw
        },
        RawInsn {
            src: 0,
            off: 0,
            imm: 16,
            ..raw
        },
        RawInsn {
            dst: raw.dst % 10,
            src: raw.src % 10,
            ..raw
        },
        RawInsn {
            dst: raw.dst % 10,
            src: 0,
            off: 0,
            ..raw
        },
        RawInsn {
            dst: 0,
            src: 0,
            off: 0,
            imm: 0,
            ..raw
        },
    ];
    for c in candidates {
        if let Ok(insn) = decode_one(c, Some(next)) {
            return if insn.slots() == 2 {
                vec![c, next]
            } else {
                vec![c]
            };
        }
    }
    vec![RawInsn {
        code: 0x95,
        ..RawInsn::default()
    }]
}

fn program() -> impl Strategy<Value = Vec<RawInsn>> {
    prop::collection::vec((raw_slot(), any::<i32>()), 1..8).prop_map(|parts| {
        parts
            .into_iter()
            .flat_map(|(raw, next_imm)| repair(raw, next_imm))
            .collect()
    })
}

fn bytes_of(slots: &[RawInsn]) -> Vec<u8> {
    slots.iter().flat_map(|s| s.to_bytes()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    /// Every accepted encoding re-encodes to the same bytes and disassembles to text that assembles
    /// back to them.
    #[test]
    fn decode_encode_and_disasm_asm_are_inverse(slots in program()) {
        let bytes = bytes_of(&slots);
        let insns = decode(&bytes);
        prop_assert!(insns.is_ok(), "generator made an invalid program: {:?}", insns);
        if let Ok(insns) = insns {
            let plain: Vec<_> = insns.iter().map(|(_, i)| *i).collect();
            prop_assert_eq!(encode(&plain), bytes.clone());
            let text = disasm(&insns, false);
            let again = assemble_bytes(&text);
            prop_assert_eq!(again.as_ref().ok(), Some(&bytes), "text:\n{}", text);
            // With slot numbers the output still re-assembles (they read as labels).
            let numbered = disasm(&insns, true);
            prop_assert_eq!(assemble_bytes(&numbered).ok(), Some(bytes));
        }
    }

    /// Arbitrary slots never make the decoder panic, and whatever it accepts re-encodes exactly.
    #[test]
    fn decoder_never_panics(slots in prop::collection::vec(raw_slot(), 0..8), tail in 0usize..8) {
        let mut bytes = bytes_of(&slots);
        bytes.extend(std::iter::repeat_n(0xffu8, tail));
        if let Ok(insns) = decode(&bytes) {
            let plain: Vec<_> = insns.iter().map(|(_, i)| *i).collect();
            prop_assert_eq!(encode(&plain), bytes);
        }
    }

    /// Arbitrary text never makes the assembler panic.
    #[test]
    fn assembler_never_panics(text in "[a-z0-9%\\[\\]+\\-:, #\n]{0,80}") {
        let _ = assemble_bytes(&text);
    }
}

#[test]
fn the_generator_covers_every_opcode_class() {
    // ALU and ALU64: 12 binary opcodes (sdiv/smod share div/mod's) x 2 sources x 2 widths, 2 neg,
    // 3 byte swaps; JMP and JMP32: 11 conditions x 2 sources x 2 widths, ja, ja32, call, callx, exit;
    // 7 loads, 8 stores, 2 atomics, lddw, 6 legacy packet loads.
    let n = valid_codes().len();
    assert_eq!(
        n,
        12 * 2 * 2 + 2 + 3 + 11 * 2 * 2 + 2 + 3 + 7 + 8 + 2 + 1 + 6,
        "{n} valid opcodes"
    );
}
