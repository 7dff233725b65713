//! Raised plans against moat's interpreter: for every loop of `tests/loops/*.asm` that is raised,
//! the loop alone (its body copied into a harness program that loads every register from memory,
//! and at each exit stores every register back) runs in `moat-interp` on many random inputs —
//! lengths, start indices, pointers, byte patterns, some past the memory's end or far past the
//! loop's bound — and the plan runs on the same registers and bytes. Where the plan applies, the
//! exit, every live-out register, every byte of memory and the instruction count (the run's
//! budget: exactly enough succeeds, one less fails) must be the interpreter's; where the
//! interpreter faults, the plan must not apply; where the plan does not apply, it must have
//! changed nothing.

mod common;

use common::{loops, Expect};
use moat_exec::{Buffer, HelperRegistry, Linked, NoMaps, RunErrorKind};
use moat_interp::Prepared;
use moat_isa::{Insn, Operand, Program, Reg, Size, Width};
use moat_raise::ir::{Bound, LoopIr, REGS};
use moat_raise::synth::{Rng, TestMem};
use moat_raise::Plan;
use std::sync::Arc;

/// Random inputs per loop.
const RUNS: usize = 400;
/// Bytes of the data buffer the loops run over.
const DATA: usize = 4096;
/// Instructions of the harness before the body.
const PROLOGUE: usize = 11;
/// Instructions of each exit's epilogue.
const EPILOGUE: usize = 15;

fn reg(n: u8) -> Reg {
    Reg::new(n).expect("register")
}

/// A loop alone in a program.
struct Harness {
    program: Program,
    /// The loop's exit slot of each epilogue.
    exits: Vec<usize>,
    /// Instructions of the harness itself on a run that leaves through each epilogue.
    around: Vec<u64>,
}

/// The harness: `r2` points at 10 words, the entry values of `r0`-`r9`; the loop's body follows;
/// the epilogue of exit `e` stores `r0`-`r9` back into those words and returns `e`.
fn harness(ir: &LoopIr) -> Harness {
    let mut insns = vec![Insn::Store {
        size: Size::DW,
        dst: reg(10),
        off: -8,
        src: Operand::Reg(reg(2)),
    }];
    for r in (0..10u8).filter(|&r| r != 2).chain([2]) {
        insns.push(Insn::Load {
            size: Size::DW,
            signed: false,
            dst: reg(r),
            src: reg(2),
            off: i16::from(r) * 8,
        });
    }
    assert_eq!(insns.len(), PROLOGUE);
    // One epilogue per target of the body's exit branches, then one for falling through the
    // latch (reached by a `ja`, one more instruction), even where both are the same slot.
    let fall = ir.latch + 1;
    let mut exits: Vec<usize> = Vec::new();
    for (k, &(pc, insn)) in ir.body.iter().enumerate() {
        if k + 1 != ir.body.len() && matches!(insn, Insn::Jmp { .. }) {
            let t = insn.branch_target(pc).expect("a jump") as usize;
            if !exits.contains(&t) {
                exits.push(t);
            }
        }
    }
    exits.push(fall);
    let body_len = ir.body.len();
    let epilogue_at = |e: usize| PROLOGUE + body_len + 1 + e * EPILOGUE;
    for (k, &(pc, insn)) in ir.body.iter().enumerate() {
        let here = PROLOGUE + k;
        let insn = match insn {
            Insn::Jmp {
                width,
                cond,
                dst,
                src,
                ..
            } if k + 1 != body_len => {
                let t = insn.branch_target(pc).expect("a jump");
                let e = exits.iter().position(|&x| x as i64 == t).expect("an exit");
                Insn::Jmp {
                    width,
                    cond,
                    dst,
                    src,
                    off: i16::try_from(epilogue_at(e) as i64 - here as i64 - 1).expect("near"),
                }
            }
            other => other,
        };
        insns.push(insn);
    }
    let e = exits.len() - 1;
    let here = insns.len();
    insns.push(Insn::Ja {
        off: (epilogue_at(e) - here - 1) as i32,
        long: false,
    });
    for e in 0..exits.len() {
        assert_eq!(insns.len(), epilogue_at(e));
        insns.push(Insn::Store {
            size: Size::DW,
            dst: reg(10),
            off: -16,
            src: Operand::Reg(reg(0)),
        });
        insns.push(Insn::Load {
            size: Size::DW,
            signed: false,
            dst: reg(0),
            src: reg(10),
            off: -8,
        });
        for r in 1..10u8 {
            insns.push(Insn::Store {
                size: Size::DW,
                dst: reg(0),
                off: i16::from(r) * 8,
                src: Operand::Reg(reg(r)),
            });
        }
        insns.push(Insn::Load {
            size: Size::DW,
            signed: false,
            dst: reg(1),
            src: reg(10),
            off: -16,
        });
        insns.push(Insn::Store {
            size: Size::DW,
            dst: reg(0),
            off: 0,
            src: Operand::Reg(reg(1)),
        });
        insns.push(Insn::Alu {
            width: Width::W64,
            op: moat_isa::AluOp::Mov,
            dst: reg(0),
            src: Operand::Imm(e as i32),
        });
        insns.push(Insn::Exit);
    }
    let program = Program::new(&moat_isa::encode(&insns)).expect("harness is well formed");
    // Instructions of the harness around the loop's own: prologue, then the `ja` when the loop
    // falls through its latch, and one epilogue.
    let latch_cond = matches!(ir.body.last(), Some((_, Insn::Jmp { .. })));
    let around = (0..exits.len())
        .map(|e| (PROLOGUE + EPILOGUE + usize::from(e + 1 == exits.len() && latch_cond)) as u64)
        .collect();
    Harness {
        program,
        exits,
        around,
    }
}

/// Entry registers and data for one run.
fn input(ir: &LoopIr, rng: &mut Rng, data_addr: u64) -> ([u64; REGS], Vec<u8>) {
    let mut regs = [0u64; REGS];
    for r in regs.iter_mut().take(10) {
        *r = rng.next_u64();
    }
    let c = ir.counted;
    let step = ir
        .ivs
        .iter()
        .find(|v| v.reg == c.iv)
        .map_or(1, |v| v.step.unsigned_abs());
    let down = ir.ivs.iter().any(|v| v.reg == c.iv && v.step < 0);
    let palette = [0u64, 1, 0x2f, u64::from(b'a'), 0xff, 0x5a];
    for &r in &ir.live_in {
        if r < 10 {
            regs[r] = match rng.below(3) {
                0 => rng.next_u64(),
                _ => palette[rng.below(palette.len() as u64) as usize],
            };
        }
    }
    // Pointers: into the data, sometimes near or past its end.
    for a in &ir.accesses {
        if a.base < 10 {
            let off = match rng.below(16) {
                0 => rng.below(DATA as u64 * 2),
                _ => rng.below(64),
            };
            regs[a.base] = data_addr + off;
        }
    }
    // The trip count: anything from none to past the data, sometimes a start far off.
    let trips = match rng.below(4) {
        0 => rng.below(8),
        1 => rng.below(64),
        _ => rng.below(1600 / step + 2),
    };
    let jitter = rng.below(step);
    // A pointer that is its own induction variable is into the data (above); another counts.
    let pointer = ir.accesses.iter().any(|a| a.base == c.iv);
    let (sign, start) = if down {
        (step.wrapping_neg(), rng.below(32) + step * (trips + 1))
    } else {
        (step, rng.below(32))
    };
    let i0 = match c.bound {
        Bound::Imm(b) => (b as u64)
            .wrapping_sub(c.off as u64)
            .wrapping_sub(sign.wrapping_mul(trips))
            .wrapping_add(if down { jitter.wrapping_neg() } else { jitter }),
        Bound::Reg(_) if pointer => regs[c.iv],
        Bound::Reg(_) => start,
    };
    regs[c.iv] = match rng.below(12) {
        0 => rng.next_u64(),
        1 => i0.wrapping_add(sign.wrapping_mul(rng.below(3000))),
        _ => i0,
    };
    if let Bound::Reg(r) = c.bound {
        regs[r] = i0
            .wrapping_add(c.off as u64)
            .wrapping_add(sign.wrapping_mul(trips))
            .wrapping_sub(if down { jitter.wrapping_neg() } else { jitter });
    }
    // Bytes: random, or repeating with the period of two read accesses' distance (so that
    // compared elements are mostly equal), with planted differences, zeros and the loop's
    // constants.
    let mut data = vec![0u8; DATA];
    let reads: Vec<i64> = ir
        .accesses
        .iter()
        .filter(|a| !a.write)
        .map(|a| a.off)
        .collect();
    let alphabet = [b'a', b'b', b'c'];
    match rng.below(4) {
        0 => data.iter_mut().for_each(|b| *b = rng.next_u64() as u8),
        _ => {
            let period = match reads.as_slice() {
                [a, b, ..] if a != b => (a - b).unsigned_abs() as usize,
                _ => 1 + rng.below(64) as usize,
            };
            for i in 0..DATA {
                data[i] = if i < period {
                    alphabet[rng.below(3) as usize]
                } else {
                    data[i - period]
                };
            }
        }
    }
    for _ in 0..rng.below(4) {
        let at = rng.below(DATA as u64) as usize;
        data[at] = match rng.below(3) {
            0 => 0,
            1 => 0x2f,
            _ => rng.next_u64() as u8,
        };
    }
    (regs, data)
}

/// Runs the harness in the interpreter: `Ok((exit index, registers after, data after))` or the
/// error's kind.
fn interpret(
    prepared: &Prepared,
    regs: &[u64; REGS],
    data: &mut [u8],
) -> Result<(u64, [u64; REGS]), RunErrorKind> {
    let mut words = [0u8; 80];
    for (r, w) in words.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&regs[r].to_le_bytes());
    }
    let args = [data.as_ptr() as u64, words.as_ptr() as u64, 0, 0, 0];
    let exit = prepared
        .run_with(
            &mut [
                Buffer {
                    bytes: data,
                    writable: true,
                },
                Buffer {
                    bytes: &mut words,
                    writable: true,
                },
            ],
            args,
        )
        .map_err(|e| e.kind)?;
    let mut after = *regs;
    for (r, w) in words.chunks_exact(8).enumerate() {
        after[r] = u64::from_le_bytes(w.try_into().expect("8 bytes"));
    }
    Ok((exit, after))
}

fn prepare(program: &Program, budget: Option<u64>) -> Prepared {
    let mut linked = Linked::new(program, &HelperRegistry::new(), &NoMaps).expect("links");
    if let Some(b) = budget {
        linked.set_budget(b);
    }
    Prepared::lower(Arc::new(linked)).expect("lowers")
}

/// One loop on [`RUNS`] inputs; returns (runs where the plan applied, runs where the interpreter
/// faulted).
fn check_loop(name: &str, ir: &LoopIr, plan: &Plan) -> (usize, usize) {
    let Harness {
        program,
        exits,
        around,
    } = harness(ir);
    let prepared = prepare(&program, None);
    let mut rng = Rng::new(0xd1ff ^ ir.header as u64);
    let (mut applied, mut faulted) = (0, 0);
    let mut data = vec![0u8; DATA];
    let data_addr = data.as_ptr() as u64;
    for run in 0..RUNS {
        let (regs, bytes) = input(ir, &mut rng, data_addr);
        data.copy_from_slice(&bytes);
        let interp = interpret(&prepared, &regs, &mut data);
        let mut plan_regs = regs;
        let mut plan_mem = TestMem {
            base: data_addr,
            bytes: bytes.clone(),
        };
        let raised = plan.run(&mut plan_regs, &mut plan_mem, u64::MAX);
        let what = format!("{name} run {run}: entry {regs:x?}");
        match (&interp, raised) {
            (Err(_), Some(r)) => {
                panic!("{what}: the interpreter faults ({interp:?}), the plan {r:?}")
            }
            (Err(_), None) => {
                faulted += 1;
                assert_eq!(
                    plan_mem.bytes, bytes,
                    "{what}: a plan that did not apply wrote"
                );
            }
            (Ok(_), None) => {
                assert_eq!(
                    plan_mem.bytes, bytes,
                    "{what}: a plan that did not apply wrote"
                );
            }
            (Ok((e, after)), Some(r)) => {
                applied += 1;
                let e = *e as usize;
                assert_eq!(exits[e], r.exit, "{what}: exit");
                for &x in &ir.live_out {
                    assert_eq!(after[x], plan_regs[x], "{what}: r{x} after the loop");
                }
                assert!(plan_mem.bytes == data, "{what}: memory differs");
                // The instruction count: the harness's own plus the loop's; exactly that budget
                // suffices, one less runs out.
                let total = around[e] + r.insns;
                if run % 8 == 0 {
                    data.copy_from_slice(&bytes);
                    let exact = prepare(&program, Some(total));
                    assert!(
                        interpret(&exact, &regs, &mut data).is_ok(),
                        "{what}: {total} instructions do not suffice"
                    );
                    data.copy_from_slice(&bytes);
                    let short = prepare(&program, Some(total - 1));
                    assert!(
                        matches!(
                            interpret(&short, &regs, &mut data),
                            Err(RunErrorKind::Budget { .. })
                        ),
                        "{what}: {} instructions suffice",
                        total - 1
                    );
                }
            }
        }
    }
    (applied, faulted)
}

#[test]
fn raised_plans_agree_with_the_interpreter() {
    let mut raised = 0;
    for case in loops() {
        let r = moat_raise::raise(&case.verified);
        let Some(l) = r.loops.first() else {
            assert!(
                matches!(case.expect, Expect::NotRaised(_)),
                "{}: expected to be raised",
                case.name
            );
            continue;
        };
        let (irs, _) = moat_raise::ir::find_loops(&case.verified);
        let ir = irs
            .iter()
            .find(|i| i.header == l.header)
            .expect("the raised loop's IR");
        let (applied, faulted) = check_loop(&case.name, ir, &l.plan);
        println!(
            "{}: {} — applied on {applied} of {RUNS} inputs, {faulted} faulted in the interpreter",
            case.name, l.plan
        );
        assert!(
            applied * 2 >= RUNS,
            "{}: the plan applied on only {applied} of {RUNS} inputs",
            case.name
        );
        raised += 1;
    }
    assert!(raised >= 10, "only {raised} loops raised");
}
