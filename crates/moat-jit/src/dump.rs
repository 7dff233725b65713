//! `moat jit-dump`: generated machine code disassembled with `iced-x86`, under the slot index of the
//! eBPF instruction each piece of code belongs to.

use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Disassembles `code` (loaded at `addr`); `slot_offsets[slot]` is the code offset of each slot's
/// instruction (`u32::MAX` for none), `body_end` where the cold stubs and shared routines begin.
pub(crate) fn disassemble(code: &[u8], addr: u64, slot_offsets: &[u32], body_end: u32) -> String {
    let mut marks: BTreeMap<u64, String> = BTreeMap::new();
    marks.insert(0, "entry trampoline:".into());
    for (slot, &off) in slot_offsets.iter().enumerate() {
        if off != u32::MAX {
            marks.insert(u64::from(off), format!("insn {slot}:"));
        }
    }
    marks
        .entry(u64::from(body_end))
        .or_insert_with(|| "cold stubs and shared routines:".into());
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut formatter = IntelFormatter::new();
    formatter.options_mut().set_first_operand_char_index(8);
    let mut insn = Instruction::default();
    let mut out = String::new();
    let mut text = String::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        let off = insn.ip() - addr;
        if let Some(mark) = marks.get(&off) {
            let _ = writeln!(out, "{mark}");
        }
        text.clear();
        formatter.format(&insn, &mut text);
        let start = off as usize;
        let bytes: String = code
            .get(start..start + insn.len())
            .unwrap_or(&[])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let _ = writeln!(out, "  {off:5x}  {bytes:<24} {text}");
    }
    out
}
