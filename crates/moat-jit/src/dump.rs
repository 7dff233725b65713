//! `moat jit-dump`: generated machine code disassembled with `iced-x86`, each native instruction
//! tagged with the part of the code it belongs to (the entry trampoline, the code of one eBPF
//! instruction, or the cold stubs and shared routines). Branch targets inside the code are shown
//! as labels tied to eBPF instructions (`pc 7`, `pc 7+0x1c`; `stub(pc 7)` for the cold stub the code
//! of slot 7 branches to) or as offsets into the code (`@0x4a0`) instead of absolute host addresses.

use iced_x86::{
    Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, SymbolResolver, SymbolResult,
};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The part of a JIT program's code a native instruction belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodePart {
    /// The entry trampoline, before the program's first instruction.
    Entry,
    /// The code of the eBPF instruction at this slot.
    Slot(usize),
    /// The cold stubs (failed checks, budget exhaustion) and shared error routines.
    Stubs,
}

/// One native instruction of a compiled program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeInsn {
    /// Where it belongs.
    pub part: CodePart,
    /// Its offset from the start of the program's code.
    pub offset: u32,
    /// Its encoding.
    pub bytes: Vec<u8>,
    /// Intel syntax; targets inside the code as `pc N`, `pc N+0xK`, `stub(pc N)` or `@0xOFF` (see
    /// the module documentation).
    pub text: String,
    /// For the first instruction of a cold stub: the slot whose code branches to it (the lowest,
    /// where several do).
    pub stub_for: Option<usize>,
}

/// The code offsets where parts begin: offset -> part.
fn part_starts(slot_offsets: &[u32], body_end: u32) -> BTreeMap<u32, CodePart> {
    let mut starts = BTreeMap::new();
    starts.insert(0, CodePart::Entry);
    for (slot, &off) in slot_offsets.iter().enumerate() {
        if off != u32::MAX && off < body_end {
            // Where slots without code share an offset with the next one, the code is the next
            // one's.
            starts.insert(off, CodePart::Slot(slot));
        }
    }
    starts.insert(body_end, CodePart::Stubs);
    starts
}

/// Names addresses inside the code after the eBPF instruction whose code they fall in, or whose
/// cold stub they begin.
struct Labels {
    addr: u64,
    len: u64,
    starts: BTreeMap<u32, CodePart>,
    /// Stub entry offset -> the slot whose code branches there.
    stubs: BTreeMap<u32, usize>,
}

impl Labels {
    fn label(&self, address: u64) -> Option<String> {
        let off = address.checked_sub(self.addr).filter(|&o| o < self.len)?;
        let off = u32::try_from(off).ok()?;
        if let Some(slot) = self.stubs.get(&off) {
            return Some(format!("stub(pc {slot})"));
        }
        let (&start, part) = self.starts.range(..=off).next_back()?;
        Some(match part {
            CodePart::Slot(slot) if start == off => format!("pc {slot}"),
            CodePart::Slot(slot) => format!("pc {slot}+{:#x}", off - start),
            CodePart::Entry | CodePart::Stubs => format!("@{off:#x}"),
        })
    }
}

impl SymbolResolver for Labels {
    fn symbol(
        &mut self,
        _instruction: &Instruction,
        _operand: u32,
        _instruction_operand: Option<u32>,
        address: u64,
        _address_size: u32,
    ) -> Option<SymbolResult<'_>> {
        self.label(address)
            .map(|text| SymbolResult::with_string(address, text))
    }
}

/// Decodes `code` (loaded at `addr`); `slot_offsets[slot]` is the code offset of each slot's
/// instruction (`u32::MAX` for none), `body_end` where the cold stubs and shared routines begin.
pub(crate) fn decode(
    code: &[u8],
    addr: u64,
    slot_offsets: &[u32],
    body_end: u32,
) -> Vec<NativeInsn> {
    let starts = part_starts(slot_offsets, body_end);
    let part_at = |offset: u32| {
        starts
            .range(..=offset)
            .next_back()
            .map_or(CodePart::Entry, |(_, &p)| p)
    };
    // First pass: which slot's code branches to each stub.
    let mut stubs: BTreeMap<u32, usize> = BTreeMap::new();
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        let from = u32::try_from(insn.ip() - addr).unwrap_or(u32::MAX);
        let target = insn
            .near_branch_target()
            .checked_sub(addr)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|&t| t >= body_end && (t as usize) < code.len());
        if let (CodePart::Slot(slot), Some(target)) = (part_at(from), target) {
            let owner = stubs.entry(target).or_insert(slot);
            *owner = (*owner).min(slot);
        }
    }
    let labels = Labels {
        addr,
        len: code.len() as u64,
        starts: starts.clone(),
        stubs: stubs.clone(),
    };
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut formatter = IntelFormatter::with_options(Some(Box::new(labels)), None);
    formatter.options_mut().set_first_operand_char_index(8);
    formatter.options_mut().set_show_branch_size(false);
    let mut out = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        let offset = u32::try_from(insn.ip() - addr).unwrap_or(u32::MAX);
        let part = part_at(offset);
        let mut text = String::new();
        formatter.format(&insn, &mut text);
        let start = offset as usize;
        let bytes = code.get(start..start + insn.len()).unwrap_or(&[]).to_vec();
        out.push(NativeInsn {
            part,
            offset,
            bytes,
            text,
            stub_for: stubs.get(&offset).copied(),
        });
    }
    out
}

/// [`decode`] as text: each part under a heading, each instruction as offset, bytes and text.
pub(crate) fn disassemble(code: &[u8], addr: u64, slot_offsets: &[u32], body_end: u32) -> String {
    let mut out = String::new();
    let mut last = None;
    for insn in decode(code, addr, slot_offsets, body_end) {
        if last != Some(insn.part) {
            let _ = match insn.part {
                CodePart::Entry => writeln!(out, "entry trampoline:"),
                CodePart::Slot(slot) => writeln!(out, "pc {slot}:"),
                CodePart::Stubs => writeln!(out, "cold stubs and shared routines:"),
            };
            last = Some(insn.part);
        }
        if let Some(slot) = insn.stub_for {
            let _ = writeln!(out, "stub(pc {slot}):");
        }
        let bytes: String = insn.bytes.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(out, "  {:5x}  {bytes:<24} {}", insn.offset, insn.text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_slots_and_offsets() {
        // Entry 0..0x10, slot 0 at 0x10, slot 1 (lddw's second slot has none) at 0x20, stubs at 0x30.
        let labels = Labels {
            addr: 0x1000,
            len: 0x40,
            starts: part_starts(&[0x10, u32::MAX, 0x20], 0x30),
            stubs: BTreeMap::from([(0x38, 2)]),
        };
        assert_eq!(labels.label(0x1038).as_deref(), Some("stub(pc 2)"));
        assert_eq!(labels.label(0x1010).as_deref(), Some("pc 0"));
        assert_eq!(labels.label(0x1014).as_deref(), Some("pc 0+0x4"));
        assert_eq!(labels.label(0x1020).as_deref(), Some("pc 2"));
        assert_eq!(labels.label(0x1004).as_deref(), Some("@0x4"));
        assert_eq!(labels.label(0x1034).as_deref(), Some("@0x34"));
        assert_eq!(labels.label(0x1040), None);
        assert_eq!(labels.label(0x0fff), None);
    }

    #[test]
    fn branches_into_the_code_are_labelled() {
        // Entry: `ret`; slot 0: `jmp` to slot 1 (rel8 +0); slot 1: `jmp` back to slot 0, `jb` to
        // the stub; stubs: `ret`, `ret`.
        let code = [0xc3, 0xeb, 0x00, 0xeb, 0xfc, 0x72, 0x01, 0xc3, 0xc3];
        let insns = decode(&code, 0x7f00_0000_0000, &[1, 3], 7);
        let texts: Vec<(CodePart, &str)> =
            insns.iter().map(|i| (i.part, i.text.as_str())).collect();
        assert_eq!(
            texts,
            [
                (CodePart::Entry, "ret"),
                (CodePart::Slot(0), "jmp     pc 1"),
                (CodePart::Slot(1), "jmp     pc 0"),
                (CodePart::Slot(1), "jb      stub(pc 1)"),
                (CodePart::Stubs, "ret"),
                (CodePart::Stubs, "ret"),
            ]
        );
        let stub_for: Vec<Option<usize>> = insns.iter().map(|i| i.stub_for).collect();
        assert_eq!(stub_for, [None, None, None, None, None, Some(1)]);
    }
}
