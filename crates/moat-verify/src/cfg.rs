//! Control-flow checks before the analysis: every instruction reachable, no recursion among
//! functions. (Jump targets, `lddw` halves and falling off the end are checked by `Program::new`.)

use crate::error::{Reason, VerifyError};
use moat_isa::{CallTarget, Insn, LddwKind, Program};

fn target_of(pc: usize, insn: &Insn) -> Option<usize> {
    let t = match *insn {
        Insn::LoadImm64 {
            kind: LddwKind::Code,
            imm,
            ..
        } => Some(pc as i64 + 1 + i64::from(imm)),
        _ => insn.branch_target(pc),
    };
    t.and_then(|t| usize::try_from(t).ok())
}

fn error(prog: &Program, pc: usize, reason: Reason) -> Box<VerifyError> {
    let insn = prog
        .index_of_slot(pc)
        .and_then(|i| prog.insns().get(i))
        .map(|(_, i)| moat_isa::disasm_one(i))
        .unwrap_or_default();
    Box::new(VerifyError {
        pc,
        insn,
        state: String::new(),
        reason,
        line: None,
    })
}

/// Function entries: slot 0 and every local call or code-address target.
pub(crate) fn functions(prog: &Program) -> Vec<usize> {
    let mut entries = vec![0];
    for (pc, insn) in prog.insns() {
        let is_fn = matches!(insn, Insn::Call(CallTarget::Local(_)))
            || matches!(
                insn,
                Insn::LoadImm64 {
                    kind: LddwKind::Code,
                    ..
                }
            );
        if let (true, Some(t)) = (is_fn, target_of(*pc, insn)) {
            if !entries.contains(&t) {
                entries.push(t);
            }
        }
    }
    entries
}

/// Checks reachability and recursion.
pub(crate) fn check(prog: &Program) -> Result<(), Box<VerifyError>> {
    let n = prog.slots();
    let entries = functions(prog);
    // Reachability from the entry, following jumps, fall-through and calls.
    let mut seen = vec![false; n];
    let mut work = vec![0usize];
    while let Some(pc) = work.pop() {
        if pc >= n || seen[pc] {
            continue;
        }
        seen[pc] = true;
        let Some(insn) = prog
            .index_of_slot(pc)
            .and_then(|i| prog.insns().get(i))
            .map(|x| x.1)
        else {
            continue;
        };
        let next = pc + insn.slots();
        match insn {
            Insn::Exit => {}
            Insn::Ja { .. } => work.extend(target_of(pc, &insn)),
            Insn::Jmp { .. }
            | Insn::Call(CallTarget::Local(_))
            | Insn::LoadImm64 {
                kind: LddwKind::Code,
                ..
            } => {
                work.push(next);
                work.extend(target_of(pc, &insn));
            }
            _ => work.push(next),
        }
    }
    for (pc, _) in prog.insns() {
        if !seen[*pc] {
            return Err(error(prog, *pc, Reason::Unreachable));
        }
    }
    // The function each instruction belongs to: the nearest entry at or before it.
    let mut sorted = entries.clone();
    sorted.sort_unstable();
    let owner = |pc: usize| {
        sorted
            .iter()
            .rev()
            .find(|e| **e <= pc)
            .copied()
            .unwrap_or(0)
    };
    // Call graph and cycle detection.
    let mut edges: Vec<(usize, usize, usize)> = Vec::new();
    for (pc, insn) in prog.insns() {
        let is_call = matches!(insn, Insn::Call(CallTarget::Local(_)))
            || matches!(
                insn,
                Insn::LoadImm64 {
                    kind: LddwKind::Code,
                    ..
                }
            );
        if let (true, Some(t)) = (is_call, target_of(*pc, insn)) {
            edges.push((owner(*pc), t, *pc));
        }
    }
    // Depth-first search with colours.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour = vec![Colour::White; n];
    fn dfs(
        f: usize,
        edges: &[(usize, usize, usize)],
        colour: &mut [Colour],
        path: &mut Vec<usize>,
    ) -> Option<(usize, Vec<usize>)> {
        colour[f] = Colour::Grey;
        path.push(f);
        for &(from, to, site) in edges.iter().filter(|e| e.0 == f) {
            let _ = from;
            match colour.get(to).copied() {
                Some(Colour::Grey) => {
                    let mut chain = path.clone();
                    chain.push(to);
                    return Some((site, chain));
                }
                Some(Colour::White) => {
                    if let Some(found) = dfs(to, edges, colour, path) {
                        return Some(found);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        colour[f] = Colour::Black;
        None
    }
    for &e in &entries {
        if e < n && colour[e] == Colour::White {
            if let Some((site, chain)) = dfs(e, &edges, &mut colour, &mut Vec::new()) {
                let chain = chain
                    .iter()
                    .map(|c| format!("func@{c}"))
                    .collect::<Vec<_>>()
                    .join(" -> ");
                return Err(error(prog, site, Reason::Recursion { chain }));
            }
        }
    }
    Ok(())
}
