//! The analysis: depth-first abstract interpretation of every path, with state pruning at branch
//! targets, infinite-loop detection and a complexity limit, as the kernel's `do_check` does. Time
//! and memory are bounded: besides the instructions processed, the work of comparing states, the
//! bytes states take (frames and stacks are shared between states until one changes them) and the
//! branches waiting to be explored each have a budget, past which the program is refused as too
//! complex.

use crate::env::{Arg, Callback, Context, Env, FieldKind, HelperProto, MapClass, Ret};
use crate::error::{Reason, VerifyError};
use crate::facts::{Facts, MemAccess};
use crate::scalar::Scalar;
use crate::state::{Byte, Frame, Reg, Region, State, STACK_SIZE};
use moat_abi::{HelperAccess, HelperId, MapType};
use moat_isa::{
    AluOp, AtomicOp, CallTarget, Endian, Insn, JmpCond, LddwKind, Operand, Program, Size, Width,
};
use std::collections::HashMap;
use std::rc::Rc;

/// Most call frames, as in the kernel.
pub const MAX_CALL_FRAMES: usize = 8;
/// Most states kept per instruction for pruning.
const MAX_STATES_PER_INSN: usize = 64;
/// Most bytes the states of one verification may take (stored for pruning, waiting on the branch
/// stack, running): past this the program is refused as too complex, long before it hurts the host.
pub const MAX_STATE_BYTES: u64 = 256 << 20;
/// Most branches waiting to be explored, as the kernel's `BPF_COMPLEXITY_LIMIT_JMP_SEQ`.
pub const MAX_PENDING_BRANCHES: usize = 8192;
/// Most work comparing states at pruning points (registers and stack slots compared; about 25 ns
/// each): the instruction limit alone does not bound time, since each instruction may be compared
/// with up to [`MAX_STATES_PER_INSN`] states of up to 8 frames. Real programs stay far below: in the
/// corpus of `kernel_verifier.rs`, 54 M for the largest that passes, 131 M for the largest that
/// exhausts the instruction limit.
pub const MAX_COMPARE_WORK: u64 = 160 << 20;
/// A stored state is evicted once it has failed to prune this many times more than three times it
/// succeeded, as in the kernel (`miss_cnt > hit_cnt * 3 + 3`)...
const EVICTION_MISSES: u32 = 3;
/// ...once the states take more than this many bytes. Below it, every state is kept (up to
/// [`MAX_STATES_PER_INSN`]) as before eviction existed: real programs stay below (Cilium's largest
/// take 32 MiB on their way to the instruction limit, 14 MiB when they pass), and eviction changes
/// which of them pass (measured on the corpus of `kernel_verifier.rs`: three Cilium programs the
/// kernel accepts as root, and refuses unprivileged for Spectre hardening only, would pass in both
/// modes).
const EVICTION_THRESHOLD: u64 = MAX_STATE_BYTES / 4;
/// The largest packet a packet program gets (moat's packet contexts hold under 64 KiB).
const MAX_PACKET_LEN: u64 = 0xffff;
/// The most iterations `bpf_loop` takes.
const MAX_LOOPS: u64 = 1 << 23;

/// Statistics of one verification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Instructions processed, over all paths.
    pub insns_processed: u64,
    /// States stored for pruning (over the whole verification).
    pub states: u64,
    /// Most states stored at once.
    pub peak_states: u64,
    /// Paths cut short because an earlier state covered them.
    pub pruned: u64,
    /// Stored states dropped because they kept failing to prune.
    pub evicted: u64,
    /// Most bytes the verification's states took at once (frames and stacks, stored, waiting and
    /// running, plus a fixed cost per stored state and waiting branch).
    pub peak_state_bytes: u64,
    /// Most branches waiting to be explored at once.
    pub peak_pending: u64,
    /// Work spent comparing states at pruning points: registers and stack slots compared.
    pub compare_work: u64,
}

/// A node of the tree of checkpoints the paths passed: a path is "inside" every checkpoint from the
/// last one it passed up to the root. `pending` counts the paths and child nodes still running
/// below a node, as the kernel's `branches`: when it drops to zero, everything after the
/// checkpoint was verified, so its state may prune later paths. Nodes outlive their states (a
/// stored state may be evicted), so they stay small.
#[derive(Clone, Copy)]
struct Node {
    parent: Option<u32>,
    pending: u32,
}

/// A state stored for pruning at one instruction.
struct Stored {
    node: u32,
    state: State,
    hits: u32,
    misses: u32,
}

struct Job {
    pc: usize,
    state: State,
    /// The last checkpoint the path passed.
    node: Option<u32>,
    /// The branch instruction the path was queued at (for the log's `from X to Y:`).
    from: Option<usize>,
}

/// Fixed bytes counted per stored state and per waiting branch, besides their frames and stacks.
const STATE_OVERHEAD: u64 = (std::mem::size_of::<Stored>() + 8 * MAX_CALL_FRAMES) as u64;

enum Step {
    Next(usize),
    Branch {
        taken: (usize, State),
        fall: Option<(usize, State)>,
    },
    Done,
}

pub(crate) struct Checker<'p, 'e> {
    prog: &'p Program,
    env: &'p Env<'e>,
    /// Whether each slot starts an instruction that can be jumped to.
    prune_point: Vec<bool>,
    /// The checkpoint tree.
    nodes: Vec<Node>,
    /// States stored for pruning, by instruction.
    stored: HashMap<usize, Vec<Stored>>,
    /// How many states are stored.
    stored_count: u64,
    /// Live state bytes (`state::memory`) when the verification started.
    memory_base: usize,
    stats: Stats,
    next_id: u32,
    pub(crate) facts: Facts,
    pub(crate) log: Vec<String>,
    pkt_ids: std::cell::Cell<u32>,
    /// Which registers can still matter at each instruction (pruning ignores the others).
    reg_use: crate::reguse::RegUse,
    /// The program array each `bpf_tail_call` site was first reached with.
    tail_call_maps: HashMap<usize, usize>,
}

type R<T> = Result<T, Box<VerifyError>>;

impl<'p, 'e> Checker<'p, 'e> {
    pub(crate) fn new(prog: &'p Program, env: &'p Env<'e>) -> Checker<'p, 'e> {
        let mut prune_point = vec![false; prog.slots()];
        for &(pc, insn) in prog.insns() {
            if let Some(t) = insn.branch_target(pc).and_then(|t| usize::try_from(t).ok()) {
                if let Some(p) = prune_point.get_mut(t) {
                    *p = true;
                }
            }
            if matches!(insn, Insn::Jmp { .. }) {
                if let Some(p) = prune_point.get_mut(pc + 1) {
                    *p = true;
                }
            }
        }
        Checker {
            prog,
            env,
            prune_point,
            nodes: Vec::new(),
            stored: HashMap::new(),
            stored_count: 0,
            memory_base: crate::state::memory::live(),
            stats: Stats::default(),
            next_id: 1,
            facts: Facts::default(),
            log: Vec::new(),
            pkt_ids: std::cell::Cell::new(0),
            reg_use: crate::reguse::analyse(
                prog,
                &crate::cfg::functions(prog),
                env.return_range.is_some(),
            ),
            tail_call_maps: HashMap::new(),
        }
    }

    fn insn_at(&self, pc: usize) -> Option<Insn> {
        self.prog
            .index_of_slot(pc)
            .and_then(|i| self.prog.insns().get(i))
            .map(|(_, insn)| *insn)
    }

    fn err(&self, pc: usize, state: &State, reason: Reason) -> Box<VerifyError> {
        Box::new(VerifyError {
            pc,
            insn: self
                .insn_at(pc)
                .map(|i| moat_isa::disasm_one(&i))
                .unwrap_or_default(),
            state: state.describe(),
            reason,
            line: None,
        })
    }

    fn fresh_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn initial_state(&self) -> State {
        let mut frame = Frame::new(0, None);
        match &self.env.context {
            Context::Buffer { size } => {
                frame.regs[1] = Reg::ptr(
                    Region::Mem {
                        size: *size,
                        writable: true,
                    },
                    0,
                );
                frame.regs[2] = Reg::Scalar(Scalar::constant(*size));
            }
            Context::Struct { .. } => frame.regs[1] = Reg::ptr(Region::Ctx, 0),
        }
        State {
            frames: vec![Rc::new(frame)],
            refs: Vec::new(),
            packet_len: 0,
            packet_ranges: Vec::new(),
            meta_len: 0,
            lock: None,
        }
    }

    pub(crate) fn run(&mut self) -> R<Stats> {
        let mut jobs = vec![Job {
            pc: 0,
            state: self.initial_state(),
            node: None,
            from: None,
        }];
        while let Some(job) = jobs.pop() {
            self.run_path(job, &mut jobs)?;
        }
        Ok(self.stats)
    }

    /// The statistics so far.
    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    /// A path below `node` ended (it finished or was pruned): nodes whose subtree is now entirely
    /// verified are released, up the tree.
    fn finish_path(&mut self, mut node: Option<u32>) {
        while let Some(n) = node {
            let Some(nd) = self.nodes.get_mut(n as usize) else {
                return;
            };
            nd.pending = nd.pending.saturating_sub(1);
            if nd.pending > 0 {
                return;
            }
            node = nd.parent;
        }
    }

    /// Bytes the verification's states take now: frames and stacks alive on this thread since the
    /// verification started, plus a fixed cost per stored state and waiting branch.
    fn state_bytes(&self, pending: usize) -> u64 {
        let live = crate::state::memory::live().saturating_sub(self.memory_base) as u64;
        live + (self.stored_count + pending as u64) * STATE_OVERHEAD
    }

    /// Refuses the program if its states take too much memory; records the peak.
    fn check_budget(&mut self, pc: usize, state: &State, pending: usize) -> R<()> {
        let bytes = self.state_bytes(pending);
        self.stats.peak_state_bytes = self.stats.peak_state_bytes.max(bytes);
        if bytes > MAX_STATE_BYTES {
            return Err(self.err(
                pc,
                state,
                Reason::TooComplex {
                    limit: MAX_STATE_BYTES,
                    what: "bytes of verifier states",
                },
            ));
        }
        Ok(())
    }

    /// At a pruning point: `Ok(true)` when an earlier, verified state covers `state` (the path ends
    /// here); otherwise stores `state` (if there is room) as the path's new checkpoint. States that
    /// keep failing to prune are evicted, as in the kernel.
    fn visit(
        &mut self,
        pc: usize,
        state: &State,
        node: &mut Option<u32>,
        pending: usize,
    ) -> R<bool> {
        let privileged = self.env.privileged;
        let u = &self.reg_use;
        let relax = self
            .prog
            .index_of_slot(pc)
            .filter(|_| !crate::testing::exact_pruning())
            .and_then(|i| {
                Some(crate::state::Relax {
                    regs_live: *u.live.get(i)?,
                    regs_precise: *u.precise.get(i)?,
                    slots_live: *u.slot_live.get(i)?,
                    slots_precise: *u.slot_precise.get(i)?,
                })
            })
            .unwrap_or(crate::state::Relax::NONE);
        let evict = self.state_bytes(pending) > EVICTION_THRESHOLD;
        let mut len = 0;
        if let Some(list) = self.stored.get_mut(&pc) {
            let mut i = 0;
            while let Some(st) = list.get_mut(i) {
                let verified = self
                    .nodes
                    .get(st.node as usize)
                    .is_none_or(|n| n.pending == 0);
                if verified
                    && st.state.covers_relaxed(
                        state,
                        privileged,
                        &mut self.stats.compare_work,
                        &relax,
                    )
                {
                    st.hits += 1;
                    self.stats.pruned += 1;
                    return Ok(true);
                }
                // A state still being explored below itself, met again unchanged: the path loops.
                // (Branches are explored depth first, so such a state is on this path.)
                if !verified && st.state == *state {
                    return Err(self.err(pc, state, Reason::InfiniteLoop));
                }
                st.misses += 1;
                if evict && verified && st.misses > st.hits * EVICTION_MISSES + EVICTION_MISSES {
                    list.swap_remove(i);
                    self.stored_count -= 1;
                    self.stats.evicted += 1;
                    continue;
                }
                i += 1;
            }
            len = list.len();
        }
        if self.stats.compare_work > MAX_COMPARE_WORK {
            return Err(self.err(
                pc,
                state,
                Reason::TooComplex {
                    limit: MAX_COMPARE_WORK,
                    what: "registers and stack slots compared while pruning",
                },
            ));
        }
        if len < MAX_STATES_PER_INSN {
            let id = u32::try_from(self.nodes.len()).map_err(|_| {
                self.err(
                    pc,
                    state,
                    Reason::TooComplex {
                        limit: u64::from(u32::MAX),
                        what: "checkpoints",
                    },
                )
            })?;
            self.nodes.push(Node {
                parent: *node,
                pending: 1,
            });
            *node = Some(id);
            self.stored.entry(pc).or_default().push(Stored {
                node: id,
                state: state.clone(),
                hits: 0,
                misses: 0,
            });
            self.stored_count += 1;
            self.stats.states += 1;
            self.stats.peak_states = self.stats.peak_states.max(self.stored_count);
            self.check_budget(pc, state, pending)?;
        }
        Ok(false)
    }

    fn run_path(&mut self, job: Job, jobs: &mut Vec<Job>) -> R<()> {
        let Job {
            mut pc,
            mut state,
            mut node,
            from,
        } = job;
        if self.env.log {
            self.log.push(match from {
                Some(f) => format!(
                    "from {f} to {pc}: {}",
                    state.describe_kernel(&self.env.maps)
                ),
                None => format!("{pc}: {}", state.describe_kernel(&self.env.maps)),
            });
        }
        loop {
            self.stats.insns_processed += 1;
            if self.stats.insns_processed > self.env.complexity_limit {
                return Err(self.err(
                    pc,
                    &state,
                    Reason::TooComplex {
                        limit: self.env.complexity_limit,
                        what: "instructions processed (loop without a proven bound?)",
                    },
                ));
            }
            if self.prune_point.get(pc).copied().unwrap_or(false)
                && self.visit(pc, &state, &mut node, jobs.len())?
            {
                if self.env.log {
                    self.log.push(format!("{pc}: safe"));
                }
                self.finish_path(node);
                return Ok(());
            }
            let Some(insn) = self.insn_at(pc) else {
                return Err(self.err(pc, &state, Reason::FallsOffEnd));
            };
            let logged = self.env.log.then(|| {
                let name = |id: i32| {
                    u32::try_from(id)
                        .ok()
                        .and_then(moat_abi::HelperId::from_u32)
                        .map(|h| h.name())
                };
                format!(
                    "{pc}: ({:02x}) {}",
                    moat_isa::kernel_syntax::opcode(&insn),
                    moat_isa::kernel_syntax::disasm_kernel(&insn, &name)
                )
            });
            let step = self.step(pc, insn, &mut state)?;
            if let Some(line) = logged {
                // As the kernel's level-2 log: the instruction, then the state it leaves (the
                // fall-through's at a branch).
                let after = match &step {
                    Step::Next(_) => state.describe_kernel(&self.env.maps),
                    Step::Branch {
                        fall: Some((_, s)), ..
                    } => s.describe_kernel(&self.env.maps),
                    Step::Branch { taken, fall: None } => taken.1.describe_kernel(&self.env.maps),
                    Step::Done => String::new(),
                };
                self.log.push(if after.is_empty() {
                    line
                } else {
                    format!("{line:<40}; {after}")
                });
            }
            match step {
                Step::Next(next) => pc = next,
                Step::Done => {
                    self.finish_path(node);
                    return Ok(());
                }
                Step::Branch { taken, fall } => match fall {
                    None => {
                        pc = taken.0;
                        state = taken.1;
                    }
                    Some(fall) => {
                        if jobs.len() >= MAX_PENDING_BRANCHES {
                            return Err(self.err(
                                pc,
                                &state,
                                Reason::TooComplex {
                                    limit: MAX_PENDING_BRANCHES as u64,
                                    what: "branches waiting to be explored",
                                },
                            ));
                        }
                        if let Some(nd) = node.and_then(|n| self.nodes.get_mut(n as usize)) {
                            nd.pending += 1;
                        }
                        jobs.push(Job {
                            pc: taken.0,
                            state: taken.1,
                            node,
                            from: Some(pc),
                        });
                        self.stats.peak_pending = self.stats.peak_pending.max(jobs.len() as u64);
                        pc = fall.0;
                        state = fall.1;
                        self.check_budget(pc, &state, jobs.len())?;
                    }
                },
            }
        }
    }

    fn read_reg(&self, pc: usize, state: &State, r: moat_isa::Reg) -> R<Reg> {
        let v = state.reg(r.index());
        if v == Reg::NotInit {
            return Err(self.err(pc, state, Reason::UninitRegister { reg: r.num() }));
        }
        Ok(v)
    }

    fn operand(&self, pc: usize, state: &State, src: Operand) -> R<Reg> {
        match src {
            Operand::Reg(r) => self.read_reg(pc, state, r),
            Operand::Imm(i) => Ok(Reg::Scalar(Scalar::constant(i64::from(i) as u64))),
        }
    }

    #[allow(clippy::too_many_lines)]
    fn step(&mut self, pc: usize, insn: Insn, st: &mut State) -> R<Step> {
        let next = pc + insn.slots();
        match insn {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let s = self.operand(pc, st, src)?;
                let d = if matches!(op, AluOp::Mov | AluOp::MovSx(_)) {
                    Reg::NotInit
                } else {
                    self.read_reg(pc, st, dst)?
                };
                if matches!(src, Operand::Reg(_)) {
                    self.check_speculative_alu(pc, st, op, &d, &s)?;
                }
                // Shifts by an immediate outside 0..width are masked like any other shift (RFC 9669);
                // the kernel refuses them, moat accepts them as the safe operations they are.
                let v = self.alu(pc, st, width, op, d, s)?;
                st.set(dst.index(), v);
                Ok(Step::Next(next))
            }
            Insn::Neg { width, dst } => {
                let v = match self.read_reg(pc, st, dst)? {
                    Reg::Scalar(v) => v,
                    // A privileged loader may turn a pointer into a number, as in the kernel.
                    _ if self.env.privileged => Scalar::UNKNOWN,
                    _ => {
                        return Err(self.err(
                            pc,
                            st,
                            Reason::PointerArithmetic { what: "negation" },
                        ))
                    }
                };
                st.set(dst.index(), Reg::Scalar(v.neg(width)));
                Ok(Step::Next(next))
            }
            Insn::Endian { kind, bits, dst } => {
                let v = match self.read_reg(pc, st, dst)? {
                    Reg::Scalar(v) => v,
                    _ if self.env.privileged => Scalar::UNKNOWN,
                    _ => {
                        return Err(self.err(
                            pc,
                            st,
                            Reason::PointerArithmetic { what: "byte swap" },
                        ))
                    }
                };
                let out = match (kind, v.as_const()) {
                    (_, Some(c)) => Scalar::constant(match (kind, bits) {
                        (Endian::ToLe, 16) => u64::from(c as u16),
                        (Endian::ToLe, 32) => u64::from(c as u32),
                        (Endian::ToLe, _) => c,
                        (_, 16) => u64::from((c as u16).swap_bytes()),
                        (_, 32) => u64::from((c as u32).swap_bytes()),
                        (_, _) => c.swap_bytes(),
                    }),
                    (Endian::ToLe, None) if bits == 64 => v,
                    (_, None) if bits < 64 => Scalar::urange(0, (1u64 << bits) - 1),
                    _ => Scalar::UNKNOWN,
                };
                st.set(dst.index(), Reg::Scalar(out));
                Ok(Step::Next(next))
            }
            Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let base = self.read_reg(pc, st, src)?;
                let v = self.mem_access(pc, st, base, i64::from(off), size, Access::Read)?;
                let v = match v {
                    // A narrow fill of a spilled number comes back zero-extended.
                    Some(Reg::Scalar(v)) if signed && size.bytes() < 8 => {
                        Reg::Scalar(v.sign_extend(size.bytes() as u32 * 8))
                    }
                    Some(r) => r,
                    None => Reg::Scalar(loaded(size, signed)),
                };
                st.set(dst.index(), v);
                Ok(Step::Next(next))
            }
            Insn::Store {
                size,
                dst,
                off,
                src,
            } => {
                let base = self.read_reg(pc, st, dst)?;
                let value = self.operand(pc, st, src)?;
                self.mem_access(pc, st, base, i64::from(off), size, Access::Write(value))?;
                Ok(Step::Next(next))
            }
            Insn::Atomic {
                size,
                op,
                dst,
                off,
                src,
            } => {
                let base = self.read_reg(pc, st, dst)?;
                let value = self.read_reg(pc, st, src)?;
                if op == AtomicOp::CmpXchg {
                    self.read_reg(pc, st, moat_isa::Reg::R0)?;
                }
                if value.is_pointer() && !self.env.privileged {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::PointerLeak {
                            into: "memory (atomic)",
                        },
                    ));
                }
                if !matches!(
                    base,
                    Reg::Ptr {
                        region: Region::Stack { .. } | Region::MapValue { .. } | Region::Mem { .. },
                        ..
                    }
                ) {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::BadAtomicTarget {
                            what: base.to_string(),
                        },
                    ));
                }
                self.atomic_alignment(pc, st, base, i64::from(off), size)?;
                // As in the kernel's `check_atomic`: the old value is read, then the bytes are
                // written with no particular register's value (old op src is not tracked), so they
                // hold unknown data afterwards; a fetch yields the old value.
                let old = self.mem_access(pc, st, base, i64::from(off), size, Access::Atomic)?;
                let old = old.unwrap_or(Reg::Scalar(loaded(size, false)));
                match op {
                    AtomicOp::CmpXchg => st.set(0, old),
                    AtomicOp::Xchg
                    | AtomicOp::Add { fetch: true }
                    | AtomicOp::Or { fetch: true }
                    | AtomicOp::And { fetch: true }
                    | AtomicOp::Xor { fetch: true } => st.set(src.index(), old),
                    AtomicOp::Add { fetch: false }
                    | AtomicOp::Or { fetch: false }
                    | AtomicOp::And { fetch: false }
                    | AtomicOp::Xor { fetch: false } => {}
                }
                Ok(Step::Next(next))
            }
            Insn::LoadImm64 {
                dst,
                kind,
                imm,
                next_imm,
            } => {
                let v = match kind {
                    LddwKind::Imm => Reg::Scalar(Scalar::constant(
                        (u64::from(next_imm as u32) << 32) | u64::from(imm as u32),
                    )),
                    LddwKind::MapIdx | LddwKind::MapIdxValue => {
                        let map = usize::try_from(imm)
                            .ok()
                            .filter(|m| *m < self.env.maps.len())
                            .ok_or_else(|| {
                                self.err(
                                    pc,
                                    st,
                                    Reason::UnknownMap {
                                        index: i64::from(imm),
                                    },
                                )
                            })?;
                        if kind == LddwKind::MapIdx {
                            Reg::Map { map }
                        } else {
                            if self.env.maps[map].map_type != crate::env::map_type::ARRAY {
                                return Err(self.err(
                                    pc,
                                    st,
                                    Reason::DirectValueAccess {
                                        map: self.env.maps[map].name.clone(),
                                    },
                                ));
                            }
                            // As in the kernel, the offset must lie inside the value.
                            let size = self.env.maps[map].value_size;
                            if !(0..i64::from(size)).contains(&i64::from(next_imm)) {
                                return Err(self.err(
                                    pc,
                                    st,
                                    Reason::OutOfBounds {
                                        region: Region::MapValue { map }.to_string(),
                                        lo: i64::from(next_imm),
                                        hi: i64::from(next_imm),
                                        limit: u64::from(size),
                                    },
                                ));
                            }
                            Reg::ptr(Region::MapValue { map }, i64::from(next_imm))
                        }
                    }
                    // `Program::new` checked that the target is an instruction.
                    LddwKind::Code => {
                        let target = i64::try_from(pc)
                            .ok()
                            .and_then(|p| p.checked_add(1 + i64::from(imm)))
                            .and_then(|t| usize::try_from(t).ok());
                        let Some(pc) = target else {
                            return Err(self.err(
                                pc,
                                st,
                                Reason::Malformed("code address out of the program".into()),
                            ));
                        };
                        Reg::Func { pc }
                    }
                    other => {
                        return Err(self.err(
                            pc,
                            st,
                            Reason::UnsupportedLddw {
                                kind: format!("{other:?}"),
                            },
                        ));
                    }
                };
                st.set(dst.index(), v);
                Ok(Step::Next(next))
            }
            Insn::LoadAbs { .. } | Insn::LoadInd { .. } => {
                let allowed = matches!(
                    self.env.context,
                    Context::Struct {
                        legacy_packet_loads: true,
                        ..
                    }
                );
                if !allowed {
                    return Err(self.err(pc, st, Reason::LegacyPacketLoad));
                }
                if !matches!(
                    st.reg(6),
                    Reg::Ptr {
                        region: Region::Ctx,
                        off: 0,
                        ..
                    }
                ) {
                    return Err(self.err(pc, st, Reason::LegacyPacketLoadNeedsCtxInR6));
                }
                if let Insn::LoadInd { src, .. } = insn {
                    if !matches!(self.read_reg(pc, st, src)?, Reg::Scalar(_)) {
                        return Err(self.err(
                            pc,
                            st,
                            Reason::PointerArithmetic {
                                what: "ldind offset",
                            },
                        ));
                    }
                }
                for r in 1..=5 {
                    st.set(r, Reg::NotInit);
                }
                st.set(0, Reg::unknown());
                Ok(Step::Next(next))
            }
            Insn::Ja { .. } => Ok(Step::Next(self.target(pc, insn))),
            Insn::Jmp {
                width,
                cond,
                dst,
                src,
                ..
            } => self.branch(pc, next, insn, st, width, cond, dst, src),
            Insn::Call(CallTarget::Helper(id)) => self.call_helper(pc, next, st, id),
            Insn::Call(CallTarget::Local(_)) => {
                let t = self.target(pc, insn);
                self.call_function(pc, st, t, next, false)?;
                Ok(Step::Next(t))
            }
            Insn::Call(CallTarget::Kfunc(id)) => Err(self.err(pc, st, Reason::Kfunc { id })),
            Insn::CallX { dst } => match self.read_reg(pc, st, dst)? {
                Reg::Func { pc: target } => {
                    self.call_function(pc, st, target, next, false)?;
                    Ok(Step::Next(target))
                }
                // A helper id known at verification time: the same as `call id`.
                Reg::Scalar(s) if s.as_const().is_some_and(|v| i32::try_from(v).is_ok()) => {
                    let id = s
                        .as_const()
                        .and_then(|v| i32::try_from(v).ok())
                        .unwrap_or(-1);
                    self.call_helper(pc, next, st, id)
                }
                other => Err(self.err(
                    pc,
                    st,
                    Reason::CallxTarget {
                        what: other.to_string(),
                    },
                )),
            },
            Insn::Exit => self.exit(pc, st),
        }
    }

    fn target(&self, pc: usize, insn: Insn) -> usize {
        insn.branch_target(pc)
            .and_then(|t| usize::try_from(t).ok())
            .unwrap_or(pc)
    }

    /// The kernel's Spectre v1 hardening of pointer arithmetic with a register (`sanitize_ptr_alu`),
    /// for an unprivileged loader of a kernel program type: only stack and map value pointers may
    /// move by a register, and only by one whose sign is known. (Moat's own buffer programs keep
    /// moat's rules: their bounds are proven, speculation aside.)
    fn check_speculative_alu(&self, pc: usize, st: &State, op: AluOp, d: &Reg, s: &Reg) -> R<()> {
        if self.env.privileged
            || self.env.kernel_type.is_none()
            || !matches!(op, AluOp::Add | AluOp::Sub)
        {
            return Ok(());
        }
        let (ptr, off) = match (d, s) {
            (Reg::Ptr { region, .. }, Reg::Scalar(v))
            | (Reg::Scalar(v), Reg::Ptr { region, .. }) => (region, v),
            _ => return Ok(()),
        };
        let what = match ptr {
            Region::Stack { .. } | Region::MapValue { .. } => {
                if off.as_const().is_some() || (off.smin < 0) == (off.smax < 0) {
                    return Ok(());
                }
                "a register with mixed signed bounds".to_string()
            }
            other => format!("a register added to a {other} pointer"),
        };
        Err(self.err(pc, st, Reason::SpeculativePointerArithmetic { what }))
    }

    fn alu(&mut self, pc: usize, st: &State, width: Width, op: AluOp, d: Reg, s: Reg) -> R<Reg> {
        let priv_ = self.env.privileged;
        match (d, s) {
            (_, s) if matches!(op, AluOp::Mov) && width == Width::W64 => Ok(s),
            (_, Reg::Scalar(v)) if matches!(op, AluOp::Mov | AluOp::MovSx(_)) => {
                Ok(Reg::Scalar(Scalar::UNKNOWN.alu(op, &v, width)))
            }
            (_, s) if matches!(op, AluOp::Mov | AluOp::MovSx(_)) => {
                // A 32-bit copy (or sign extension) of a pointer: a number, and a leak for unprivileged.
                if !priv_ {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::PointerLeak {
                            into: "a 32-bit register copy",
                        },
                    ));
                }
                let _ = s;
                Ok(Reg::Scalar(if width == Width::W32 {
                    Scalar::any_u32()
                } else {
                    Scalar::UNKNOWN
                }))
            }
            (Reg::Scalar(a), Reg::Scalar(b)) => Ok(Reg::Scalar(a.alu(op, &b, width))),
            // A 32-bit subtraction with a pointer on one side and a number on the other: a
            // meaningless number the kernel lets only a privileged loader make (its
            // `adjust_ptr_min_max_vals` checks this before anything else about the pointer).
            (Reg::Ptr { .. }, Reg::Scalar(_)) | (Reg::Scalar(_), Reg::Ptr { .. })
                if width == Width::W32 && op == AluOp::Sub && priv_ =>
            {
                Ok(Reg::Scalar(Scalar::any_u32()))
            }
            (
                Reg::Ptr {
                    null_id: Some(_), ..
                },
                _,
            )
            | (
                _,
                Reg::Ptr {
                    null_id: Some(_), ..
                },
            ) => Err(self.err(pc, st, Reason::NullablePointerArithmetic)),
            (
                Reg::Ptr {
                    region,
                    off,
                    var,
                    null_id,
                },
                Reg::Scalar(b),
            ) if width == Width::W64 && matches!(op, AluOp::Add | AluOp::Sub) => {
                if matches!(region, Region::PacketEnd) {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::PointerArithmetic {
                            what: "arithmetic on pkt_end",
                        },
                    ));
                }
                self.ptr_add(pc, st, region, off, var, null_id, &b, op == AluOp::Sub)
            }
            (
                Reg::Scalar(a),
                Reg::Ptr {
                    region,
                    off,
                    var,
                    null_id,
                },
            ) if width == Width::W64 && op == AluOp::Add => {
                if matches!(region, Region::PacketEnd) {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::PointerArithmetic {
                            what: "arithmetic on pkt_end",
                        },
                    ));
                }
                self.ptr_add(pc, st, region, off, var, null_id, &a, false)
            }
            // The distance between two pointers into one region (at 32 bits, its low half, as the
            // kernel lets a privileged program compute), or between packet pointers of different
            // kinds (`data_end - data`).
            (
                Reg::Ptr {
                    region: r1,
                    off: o1,
                    var: v1,
                    ..
                },
                Reg::Ptr {
                    region: r2,
                    off: o2,
                    var: v2,
                    ..
                },
            ) if op == AluOp::Sub && (r1 == r2 || is_pkt(&d) && is_pkt(&s)) => {
                // The kernel lets only a privileged loader (`allow_ptr_leaks`) subtract pointers,
                // even `data_end - data`.
                if !priv_ {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::PointerArithmetic {
                            what: "two pointers (subtraction)",
                        },
                    ));
                }
                let diff = match base_distance(r1, r2) {
                    Some(base) => pointer_distance(base, o1, v1, o2, v2),
                    None => Scalar::UNKNOWN,
                };
                Ok(Reg::Scalar(if width == Width::W32 {
                    diff.low32()
                } else {
                    diff
                }))
            }
            _ => Err(self.err(pc, st, Reason::PointerArithmetic { what: alu_name(op) })),
        }
    }

    fn next_pkt_id(&self) -> u32 {
        let id = self.pkt_ids.get() + 1;
        self.pkt_ids.set(id);
        id
    }

    /// The pointer `region + off + var` moved by `s` (`sub`: back by `s`), or an error when the
    /// scalar, the pointer or the result is not sane (the kernel's `check_reg_sane_offset`): every
    /// offset stays within ±2^29, so no later sum of offsets can overflow.
    #[allow(clippy::too_many_arguments)]
    fn ptr_add(
        &self,
        pc: usize,
        st: &State,
        region: Region,
        off: i64,
        var: Scalar,
        null_id: Option<u32>,
        s: &Scalar,
        sub: bool,
    ) -> R<Reg> {
        let insane = |what: String| {
            self.err(
                pc,
                st,
                Reason::PointerOffset {
                    what: format!("{region} {what}"),
                },
            )
        };
        if let Some(what) = insane_offset(0, s) {
            return Err(insane(format!("moved by a scalar with {what}")));
        }
        if let Some(what) = insane_offset(off, &var) {
            return Err(insane(format!("pointer with {what}")));
        }
        let (off, var, region) = match s.as_const() {
            Some(c) => {
                let c = c as i64;
                let off = if sub {
                    off.checked_sub(c)
                } else {
                    off.checked_add(c)
                };
                let Some(off) = off else {
                    return Err(insane("offset overflows".into()));
                };
                (off, var, region)
            }
            None => {
                let op = if sub { AluOp::Sub } else { AluOp::Add };
                // A new variable offset into the packet: bounds proven so far do not carry over.
                let region = match region {
                    Region::Packet { .. } => Region::Packet {
                        id: self.next_pkt_id(),
                    },
                    other => other,
                };
                (off, var.alu(op, s, Width::W64), region)
            }
        };
        if let Some(what) = insane_offset(off, &var) {
            return Err(insane(format!("would get {what}")));
        }
        Ok(Reg::Ptr {
            region,
            off,
            var,
            null_id,
        })
    }

    /// Checks that an atomic access at `base + off` is aligned to its size, as the kernel requires
    /// (the engines refuse misaligned atomics at run time). Region starts are taken as aligned: stack
    /// frames, map values and buffers are at least 8-byte aligned.
    fn atomic_alignment(&self, pc: usize, st: &State, base: Reg, off: i64, size: Size) -> R<()> {
        let Reg::Ptr {
            region,
            off: poff,
            var,
            ..
        } = base
        else {
            return Ok(());
        };
        let n = size.bytes() as u64;
        let fixed = poff.wrapping_add(off);
        let t = var.tnum.add(crate::tnum::Tnum::constant(fixed as u64));
        if (t.value | t.mask) & (n - 1) != 0 {
            let mut at = fixed.to_string();
            if var.as_const() != Some(0) {
                at.push_str(&format!("+var({})", Reg::Scalar(var)));
            }
            return Err(self.err(
                pc,
                st,
                Reason::MisalignedAtomic {
                    region: region.to_string(),
                    off: at,
                    size: size.bytes(),
                },
            ));
        }
        Ok(())
    }

    /// Checks a memory access of `size` at `base + off`; for reads returns the loaded register when
    /// it is more than an unknown number (a filled spill, a context pointer field).
    fn mem_access(
        &mut self,
        pc: usize,
        st: &mut State,
        base: Reg,
        off: i64,
        size: Size,
        access: Access,
    ) -> R<Option<Reg>> {
        let n = size.bytes() as i64;
        let Reg::Ptr {
            region,
            off: poff,
            var,
            null_id,
        } = base
        else {
            return Err(self.err(
                pc,
                st,
                Reason::NotAPointer {
                    what: base.to_string(),
                },
            ));
        };
        if null_id.is_some() {
            return Err(self.err(
                pc,
                st,
                Reason::MaybeNull {
                    what: base.to_string(),
                },
            ));
        }
        // Every bound in checked arithmetic: a sum that overflows is refused, never saturated.
        let fixed = poff.checked_add(off);
        let lo = fixed.and_then(|f| f.checked_add(var.smin));
        let hi = fixed
            .and_then(|f| f.checked_add(var.smax))
            .and_then(|h| h.checked_add(n));
        let (Some(fixed), Some(lo), Some(hi)) = (fixed, lo, hi) else {
            return Err(self.err(
                pc,
                st,
                Reason::PointerOffset {
                    what: format!("access at {base}{off:+} overflows"),
                },
            ));
        };
        let writing = matches!(access, Access::Write(_) | Access::Atomic);
        if let Access::Write(v) = access {
            if v.is_pointer() && !self.env.privileged && !matches!(region, Region::Stack { .. }) {
                return Err(self.err(pc, st, Reason::PointerLeak { into: "memory" }));
            }
        }
        let bad = |me: &Self, st: &State, limit: u64| {
            me.err(
                pc,
                st,
                Reason::OutOfBounds {
                    region: region.to_string(),
                    lo,
                    hi,
                    limit,
                },
            )
        };
        // Whether `[lo, hi)` lies within a region of `limit` bytes.
        let inside = |limit: u64| lo >= 0 && hi <= i64::try_from(limit).unwrap_or(i64::MAX);
        let result = match region {
            Region::Stack { frame } => {
                let variable = var.as_const().is_none();
                if variable && (!self.env.privileged || matches!(access, Access::Atomic)) {
                    // The kernel refuses atomics at variable stack offsets for every loader.
                    return Err(self.err(pc, st, Reason::VariableStackAccess));
                }
                if lo < -STACK_SIZE || hi > 0 {
                    return Err(bad(self, st, STACK_SIZE as u64));
                }
                let depth = lo.unsigned_abs() as u32;
                let depth = depth.div_ceil(8) * 8;
                self.facts.record_stack(frame, depth);
                if st.frames.get(frame).is_some_and(|f| f.stack_depth < depth) {
                    if let Some(f) = st.frame_at_mut(frame) {
                        f.stack_depth = depth;
                    }
                }
                let total: u32 = st.frames.iter().map(|f| f.stack_depth).sum();
                if total > STACK_SIZE as u32 {
                    return Err(self.err(pc, st, Reason::StackTooDeep { bytes: total }));
                }
                if variable {
                    self.variable_stack_access(pc, st, frame, lo, hi, access)?
                } else {
                    self.stack_access(pc, st, frame, lo, n, access)?
                }
            }
            Region::Ctx => return self.ctx_access(pc, st, lo, hi, var, size, access).map(Some),
            Region::Mem {
                size: limit,
                writable,
            } => {
                if !inside(limit) {
                    return Err(bad(self, st, limit));
                }
                if writing && !writable {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::ReadOnly {
                            region: region.to_string(),
                        },
                    ));
                }
                None
            }
            Region::MapValue { map } => {
                let info = &self.env.maps[map];
                let limit = u64::from(info.value_size);
                if !inside(limit) {
                    return Err(bad(self, st, limit));
                }
                let in_place = matches!(access, Access::Atomic) && info.atomic_in_place;
                if writing && info.read_only && !in_place {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::ReadOnly {
                            region: format!("map `{}`", info.name),
                        },
                    ));
                }
                None
            }
            Region::PacketMeta => {
                // Only what a comparison with `data` proved exists; writable where the packet is.
                if !inside(u64::from(st.meta_len)) {
                    return Err(bad(self, st, u64::from(st.meta_len)));
                }
                if writing
                    && !matches!(
                        self.env.context,
                        Context::Struct {
                            packet_writable: true,
                            ..
                        }
                    )
                {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::ReadOnly {
                            region: "packet metadata".into(),
                        },
                    ));
                }
                None
            }
            Region::Packet { id } => {
                // Offsets relative to the pointer's variable start (the packet start when id is 0).
                let (lo, hi, known) = if id == 0 {
                    (lo, hi, st.packet_len)
                } else {
                    let (Some(lo), Some(hi)) =
                        (fixed.checked_add(var.smin.min(0)), fixed.checked_add(n))
                    else {
                        return Err(self.err(
                            pc,
                            st,
                            Reason::PointerOffset {
                                what: format!("access at {base}{off:+} overflows"),
                            },
                        ));
                    };
                    (lo, hi, st.packet_range(id))
                };
                if lo < 0 || var.smin < 0 || hi > i64::try_from(known).unwrap_or(i64::MAX) {
                    return Err(self.err(pc, st, Reason::PacketOutOfBounds { lo, hi, known }));
                }
                if writing
                    && !matches!(
                        self.env.context,
                        Context::Struct {
                            packet_writable: true,
                            ..
                        }
                    )
                {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::ReadOnly {
                            region: "packet".into(),
                        },
                    ));
                }
                None
            }
            Region::PacketEnd | Region::MapHandle { .. } => return Err(bad(self, st, 0)),
            Region::Ringbuf { size: limit, .. } => {
                if !inside(limit) {
                    return Err(bad(self, st, limit));
                }
                None
            }
        };
        self.facts.record(pc, MemAccess { region, lo, hi });
        Ok(result)
    }

    /// A privileged access at a variable stack offset, as the kernel allows: any byte of
    /// `[lo, hi)` may be touched, so a store turns them all into plain data (destroying spills) and a
    /// load yields an unknown number. `lo` and `hi` lie within the frame.
    fn variable_stack_access(
        &self,
        pc: usize,
        st: &mut State,
        frame: usize,
        lo: i64,
        hi: i64,
        access: Access,
    ) -> R<Option<Reg>> {
        let Some(f) = st.frame_at_mut(frame) else {
            let st_copy = st.clone();
            return Err(self.err(
                pc,
                &st_copy,
                Reason::OutOfBounds {
                    region: format!("fp{frame} (the stack of a returned function)"),
                    lo,
                    hi,
                    limit: 0,
                },
            ));
        };
        if let Access::Write(_) | Access::Atomic = access {
            for b in stack_byte(lo)..stack_byte(hi) {
                f.write_data(b);
            }
        }
        Ok(None)
    }

    fn stack_access(
        &self,
        pc: usize,
        st: &mut State,
        frame: usize,
        lo: i64,
        n: i64,
        access: Access,
    ) -> R<Option<Reg>> {
        let start = stack_byte(lo);
        let end = stack_byte(lo + n);
        let privileged = self.env.privileged;
        if frame >= st.frames.len() {
            // The frame belonged to a function that has returned.
            let st_copy = st.clone();
            return Err(self.err(
                pc,
                &st_copy,
                Reason::OutOfBounds {
                    region: format!("fp{frame} (the stack of a returned function)"),
                    lo,
                    hi: lo + n,
                    limit: 0,
                },
            ));
        }
        let whole_slot = n == 8 && start.is_multiple_of(8);
        if let Access::Write(v) = access {
            if v.is_pointer() && !whole_slot {
                let st_copy = st.clone();
                return Err(self.err(
                    pc,
                    &st_copy,
                    Reason::MisalignedPointerSpill { off: lo, size: n },
                ));
            }
            let Some(f) = st.frame_at_mut(frame) else {
                return Ok(None);
            };
            let stack = f.stack_mut();
            if whole_slot {
                if let Some(slot) = stack.slot_mut(start / 8) {
                    slot.bytes = [Byte::Spill; 8];
                    slot.spill = Some(v);
                }
                return Ok(None);
            }
            for b in start..end {
                let Some(slot) = stack.slot_mut(b / 8) else {
                    continue;
                };
                if let Some(spilled) = slot.spill {
                    // A partial overwrite destroys the spilled register.
                    if spilled.is_pointer() && !privileged {
                        let st_copy = st.clone();
                        return Err(self.err(pc, &st_copy, Reason::PartialPointerOverwrite));
                    }
                    slot.spill = None;
                    slot.bytes = slot
                        .bytes
                        .map(|b| if b == Byte::Spill { Byte::Data } else { b });
                }
                slot.bytes[b % 8] = Byte::Data;
            }
            return Ok(None);
        }
        // A read, or the read half of an atomic.
        let atomic = matches!(access, Access::Atomic);
        let Some(f) = st.frames.get(frame) else {
            return Ok(None);
        };
        // A fill from the start of a spill of at least as many bytes reads the spilled register
        // back: whole, or a number's low bytes (the kernel's `bpf_stack_narrow_access_ok`).
        let spill = if start.is_multiple_of(8) && n <= 8 {
            let slot = f.stack.slot(start / 8);
            let spilled = slot.bytes.iter().take_while(|b| **b == Byte::Spill).count();
            match slot.spill {
                Some(r) if whole_slot && spilled == 8 => Some(r),
                Some(Reg::Scalar(v)) if !whole_slot && n as usize <= spilled => {
                    let mask = (1u64 << (8 * n)) - 1;
                    Some(Reg::Scalar(v.alu(
                        AluOp::And,
                        &Scalar::constant(mask),
                        Width::W64,
                    )))
                }
                _ => None,
            }
        } else {
            None
        };
        let mut uninit = false;
        let mut pointer = false;
        for b in start..end {
            let slot = f.stack.slot(b / 8);
            match slot.bytes[b % 8] {
                Byte::Uninit => uninit = true,
                Byte::Spill if slot.spill.is_some_and(|r| r.is_pointer()) => pointer = true,
                _ => {}
            }
        }
        let refuse = if atomic && pointer && spill.is_none() {
            // Part of a spilled pointer as an atomic's operand: "invalid size of register fill" in
            // the kernel, for every loader.
            Some(Reason::PartialPointerRead)
        } else if atomic && pointer && !privileged {
            // A whole spilled pointer changed by arithmetic the verifier cannot follow.
            Some(Reason::PointerLeak {
                into: "an atomic operation on a spilled pointer",
            })
        } else if spill.is_some() && !atomic {
            return Ok(spill);
        } else if uninit && !privileged {
            Some(Reason::UninitStack { off: lo })
        } else if pointer && !atomic {
            // Part of a spilled pointer: "invalid size of register fill" in the kernel, for every
            // loader (atomics on a whole spilled pointer are judged above).
            Some(Reason::PartialPointerRead)
        } else {
            None
        };
        if let Some(reason) = refuse {
            return Err(self.err(pc, st, reason));
        }
        if atomic {
            // The bytes now hold what the operation computed: unknown data, so no spill survives in
            // the touched slots.
            if let Some(f) = st.frame_at_mut(frame) {
                for b in start..end {
                    f.write_data(b);
                }
            }
        }
        Ok(spill)
    }

    #[allow(clippy::too_many_arguments)]
    fn ctx_access(
        &self,
        pc: usize,
        st: &State,
        lo: i64,
        hi: i64,
        var: Scalar,
        size: Size,
        access: Access,
    ) -> R<Reg> {
        let Context::Struct {
            name,
            fields,
            size: ctx_size,
            ..
        } = &self.env.context
        else {
            return Err(self.err(
                pc,
                st,
                Reason::OutOfBounds {
                    region: "ctx".into(),
                    lo,
                    hi,
                    limit: 0,
                },
            ));
        };
        if var.as_const().is_none() {
            return Err(self.err(pc, st, Reason::VariableCtxAccess));
        }
        let field = fields
            .iter()
            .find(|f| lo >= i64::from(f.off) && hi <= i64::from(f.off) + i64::from(f.size));
        let Some(field) = field else {
            return Err(self.err(
                pc,
                st,
                Reason::BadCtxAccess {
                    ctx: name,
                    off: lo,
                    size: size.bytes(),
                    ctx_size: *ctx_size,
                },
            ));
        };
        let exact = lo == i64::from(field.off) && size.bytes() as u32 == field.size;
        // The kernel: every context access is aligned to its size, and a load narrower than its
        // field only where the field allows it.
        let misaligned = lo.rem_euclid(size.bytes() as i64) != 0;
        let narrow = !exact && matches!(access, Access::Read) && !field.narrow_loads;
        if misaligned || narrow {
            return Err(self.err(
                pc,
                st,
                Reason::BadCtxAccess {
                    ctx: name,
                    off: lo,
                    size: size.bytes(),
                    ctx_size: *ctx_size,
                },
            ));
        }
        match access {
            // Atomics on the context are refused before they get here.
            Access::Atomic => Err(self.err(pc, st, Reason::BadAtomicTarget { what: "ctx".into() })),
            Access::Write(v) => {
                if !field.writable || field.kind != FieldKind::Scalar || !exact {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::ReadOnly {
                            region: format!("{name} field at offset {lo}"),
                        },
                    ));
                }
                if v.is_pointer() && !self.env.privileged {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::PointerLeak {
                            into: "the context",
                        },
                    ));
                }
                Ok(Reg::NotInit)
            }
            Access::Read => Ok(match field.kind {
                FieldKind::Scalar => Reg::Scalar(loaded(size, false)),
                kind => {
                    if !exact {
                        return Err(self.err(
                            pc,
                            st,
                            Reason::BadCtxAccess {
                                ctx: name,
                                off: lo,
                                size: size.bytes(),
                                ctx_size: *ctx_size,
                            },
                        ));
                    }
                    Reg::ptr(
                        match kind {
                            FieldKind::PacketData => Region::Packet { id: 0 },
                            FieldKind::PacketEnd => Region::PacketEnd,
                            _ => Region::PacketMeta,
                        },
                        0,
                    )
                }
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn branch(
        &mut self,
        pc: usize,
        next: usize,
        insn: Insn,
        st: &mut State,
        width: Width,
        cond: JmpCond,
        dst: moat_isa::Reg,
        src: Operand,
    ) -> R<Step> {
        let target = self.target(pc, insn);
        let a = self.read_reg(pc, st, dst)?;
        let b = self.operand(pc, st, src)?;
        let src_reg = match src {
            Operand::Reg(r) => Some(r.index()),
            Operand::Imm(_) => None,
        };
        let both = |st: &State| {
            Ok(Step::Branch {
                taken: (target, st.clone()),
                fall: Some((next, st.clone())),
            })
        };
        match (a, b) {
            (Reg::Scalar(x), Reg::Scalar(y)) => {
                let (t, f) = x.branch(cond, &y, width);
                let mk = |v: Option<Scalar>, taken: bool| {
                    v.map(|v| {
                        let mut s = st.clone();
                        s.set(dst.index(), Reg::Scalar(v));
                        if let Some(sr) = src_reg {
                            // Refine the other side too, with the mirrored condition.
                            let c = if taken {
                                cond
                            } else {
                                crate::scalar::negate(cond)
                            };
                            if let (Some(m), true) = (mirror(c), cond != JmpCond::Set) {
                                let (yt, _) = y.branch(m, &v, width);
                                if let Some(yt) = yt {
                                    s.set(sr, Reg::Scalar(yt));
                                }
                            }
                        }
                        s
                    })
                };
                let ts = mk(t, true);
                let fs = mk(f, false);
                match (ts, fs) {
                    (Some(t), Some(f)) => Ok(Step::Branch {
                        taken: (target, t),
                        fall: Some((next, f)),
                    }),
                    (Some(t), None) => Ok(Step::Branch {
                        taken: (target, t),
                        fall: None,
                    }),
                    (None, Some(f)) => Ok(Step::Branch {
                        taken: (next, f),
                        fall: None,
                    }),
                    (None, None) => Ok(Step::Done),
                }
            }
            // Null checks.
            (
                Reg::Ptr {
                    null_id: Some(id), ..
                },
                Reg::Scalar(z),
            )
            | (
                Reg::Scalar(z),
                Reg::Ptr {
                    null_id: Some(id), ..
                },
            ) if z.as_const() == Some(0)
                && matches!(cond, JmpCond::Eq | JmpCond::Ne)
                && width == Width::W64 =>
            {
                let mut null = st.clone();
                let mut non_null = st.clone();
                null.update_regs(|r| {
                    matches!(r, Reg::Ptr { null_id: Some(i), .. } if *i == id)
                        .then_some(Reg::Scalar(Scalar::constant(0)))
                });
                if null.refs.contains(&id) {
                    // A failed reservation holds nothing to release.
                    null.refs.retain(|r| *r != id);
                }
                non_null.update_regs(|r| match *r {
                    // A map a map of maps held: a map handle from here on.
                    Reg::Ptr {
                        region: Region::MapHandle { map },
                        null_id: Some(i),
                        ..
                    } if i == id => Some(Reg::Map { map }),
                    Reg::Ptr {
                        region,
                        off,
                        var,
                        null_id: Some(i),
                    } if i == id => Some(Reg::Ptr {
                        region,
                        off,
                        var,
                        null_id: None,
                    }),
                    _ => None,
                });
                let (taken, fall) = if cond == JmpCond::Eq {
                    (null, non_null)
                } else {
                    (non_null, null)
                };
                Ok(Step::Branch {
                    taken: (target, taken),
                    fall: Some((next, fall)),
                })
            }
            // Packet bounds checks.
            (
                Reg::Ptr {
                    region: Region::Packet { id },
                    off,
                    var,
                    null_id: None,
                },
                Reg::Ptr {
                    region: Region::PacketEnd,
                    ..
                },
            )
            | (
                Reg::Ptr {
                    region: Region::PacketEnd,
                    ..
                },
                Reg::Ptr {
                    region: Region::Packet { id },
                    off,
                    var,
                    null_id: None,
                },
            ) if width == Width::W64 && is_pkt_end(&a) != is_pkt_end(&b) => {
                let ptr_first = matches!(
                    a,
                    Reg::Ptr {
                        region: Region::Packet { .. },
                        ..
                    }
                );
                // Normalise to "ptr CMP end".
                let c = if ptr_first { Some(cond) } else { mirror(cond) };
                // Bytes proven from the packet start (id 0) or from the variable start (same id).
                // The comparison cannot wrap around: the constant offset is within ±2^29, and an
                // access through the pointer needs a variable offset that is never negative.
                let reach = if id == 0 {
                    off.checked_add(var.smin)
                } else {
                    Some(off)
                };
                let reach = reach.map(|r| r.max(0).unsigned_abs());
                let mut taken = st.clone();
                let mut fall = st.clone();
                if let Some(reach) = reach {
                    match c {
                        // ptr > end: taken proves nothing; not taken: ptr <= end.
                        Some(JmpCond::Gt) => fall.prove_packet_range(id, reach),
                        Some(JmpCond::Ge) => fall.prove_packet_range(id, reach + 1),
                        Some(JmpCond::Lt) => taken.prove_packet_range(id, reach + 1),
                        Some(JmpCond::Le) => taken.prove_packet_range(id, reach),
                        _ => {}
                    }
                }
                Ok(Step::Branch {
                    taken: (target, taken),
                    fall: Some((next, fall)),
                })
            }
            // Metadata bounds checks: `data_meta + N` against `data` itself (the kernel's
            // find_good_pkt_pointers on a PTR_TO_PACKET_META compared with the initial packet
            // pointer).
            (
                Reg::Ptr {
                    region: Region::PacketMeta,
                    off,
                    var,
                    null_id: None,
                },
                Reg::Ptr {
                    region: Region::Packet { .. },
                    off: 0,
                    var: data_var,
                    null_id: None,
                },
            )
            | (
                Reg::Ptr {
                    region: Region::Packet { .. },
                    off: 0,
                    var: data_var,
                    null_id: None,
                },
                Reg::Ptr {
                    region: Region::PacketMeta,
                    off,
                    var,
                    null_id: None,
                },
            ) if width == Width::W64 && data_var.as_const() == Some(0) => {
                let meta_first = matches!(
                    a,
                    Reg::Ptr {
                        region: Region::PacketMeta,
                        ..
                    }
                );
                // Normalise to "meta CMP data".
                let c = if meta_first { Some(cond) } else { mirror(cond) };
                let reach = var
                    .as_const()
                    .and_then(|v| off.checked_add(v.cast_signed()))
                    .and_then(|r| u32::try_from(r).ok());
                let mut taken = st.clone();
                let mut fall = st.clone();
                if let Some(reach) = reach {
                    let prove = |s: &mut State, n: u32| s.meta_len = s.meta_len.max(n);
                    match c {
                        Some(JmpCond::Gt) => prove(&mut fall, reach),
                        Some(JmpCond::Ge) => prove(&mut fall, reach.saturating_add(1)),
                        Some(JmpCond::Lt) => prove(&mut taken, reach.saturating_add(1)),
                        Some(JmpCond::Le) => prove(&mut taken, reach),
                        _ => {}
                    }
                }
                Ok(Step::Branch {
                    taken: (target, taken),
                    fall: Some((next, fall)),
                })
            }
            // A pointer that cannot be null against 0: the outcome is known (the kernel's
            // `is_branch_taken` with `reg_not_null`), so only one side is followed, and comparing
            // leaks nothing even for an unprivileged loader.
            (
                Reg::Ptr {
                    region: Region::MapValue { .. } | Region::Mem { .. } | Region::Ringbuf { .. },
                    null_id: None,
                    ..
                },
                Reg::Scalar(z),
            )
            | (
                Reg::Scalar(z),
                Reg::Ptr {
                    region: Region::MapValue { .. } | Region::Mem { .. } | Region::Ringbuf { .. },
                    null_id: None,
                    ..
                },
            ) if z.as_const() == Some(0) && matches!(cond, JmpCond::Eq | JmpCond::Ne) => {
                let to = if cond == JmpCond::Ne { target } else { next };
                Ok(Step::Branch {
                    taken: (to, st.clone()),
                    fall: None,
                })
            }
            (a, b) => {
                if !(self.env.privileged || is_pkt(&a) && is_pkt(&b)) {
                    return Err(self.err(pc, st, Reason::PointerComparison));
                }
                both(st)
            }
        }
    }

    /// Pushes a frame for a call to the function at slot `target`; `return_to` is where the caller
    /// continues.
    fn call_function(
        &mut self,
        pc: usize,
        st: &mut State,
        target: usize,
        return_to: usize,
        callback: bool,
    ) -> R<()> {
        if st.frames.len() >= MAX_CALL_FRAMES {
            return Err(self.err(
                pc,
                st,
                Reason::CallDepth {
                    frames: st.frames.len() + 1,
                },
            ));
        }
        let depth = st.frames.len();
        let mut frame = Frame::new(depth, Some(return_to));
        frame.callback = callback;
        for r in 1..=5 {
            frame.regs[r] = st.reg(r);
        }
        self.facts.record_call(pc, target);
        st.frames.push(Rc::new(frame));
        Ok(())
    }

    fn exit(&mut self, pc: usize, st: &mut State) -> R<Step> {
        if st.lock.is_some() {
            return Err(self.err(pc, st, Reason::ExitWhileLocked));
        }
        let r0 = self.read_reg(pc, st, moat_isa::Reg::R0)?;
        let (return_to, callback) = (st.frame().return_to, st.frame().callback);
        match return_to {
            None => {
                if !st.refs.is_empty() {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::UnreleasedReference {
                            count: st.refs.len(),
                        },
                    ));
                }
                if r0.is_pointer() && !self.env.privileged {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::PointerLeak {
                            into: "the return value",
                        },
                    ));
                }
                if let Some((lo, hi)) = self.env.return_range {
                    let found = match r0 {
                        Reg::Scalar(v) if v.umin >= lo && v.umax <= hi => None,
                        Reg::Scalar(v) if v.umin == v.umax => Some(v.umin.to_string()),
                        Reg::Scalar(v) => Some(format!("a number in [{}, {}]", v.umin, v.umax)),
                        _ => Some("a pointer".to_string()),
                    };
                    if let Some(found) = found {
                        return Err(self.err(pc, st, Reason::ReturnOutOfRange { found, lo, hi }));
                    }
                }
                Ok(Step::Done)
            }
            Some(ret) => {
                let r0 = if callback {
                    match r0 {
                        Reg::Scalar(s) if s.umax <= 1 => Reg::unknown(),
                        _ => {
                            return Err(self.err(
                                pc,
                                st,
                                Reason::CallbackReturn {
                                    what: r0.to_string(),
                                },
                            ))
                        }
                    }
                } else {
                    r0
                };
                st.frames.pop();
                if st.frames.is_empty() {
                    return Err(self.err(pc, st, Reason::FallsOffEnd));
                }
                st.set(0, r0);
                for r in 1..=5 {
                    st.set(r, Reg::NotInit);
                }
                Ok(Step::Next(ret))
            }
        }
    }

    #[allow(clippy::too_many_lines)]
    fn call_helper(&mut self, pc: usize, next: usize, st: &mut State, id: i32) -> R<Step> {
        let proto: Option<HelperProto> = u32::try_from(id).ok().and_then(|i| (self.env.helpers)(i));
        let kernel_helper = u32::try_from(id).ok().and_then(HelperId::from_u32);
        if let (Some(helper), Some(prog_type)) = (kernel_helper, self.env.kernel_type) {
            if !self.env.privileged && helper.needs_perfmon() {
                let reason = Reason::HelperNeedsPerfmon {
                    helper: helper.name(),
                };
                return Err(self.err(pc, st, reason));
            }
            match helper.access(prog_type) {
                Some(HelperAccess::Unavailable) => {
                    let reason = Reason::HelperUnavailable {
                        helper: helper.name(),
                        prog_type: prog_type.name(),
                    };
                    return Err(self.err(pc, st, reason));
                }
                Some(HelperAccess::GplOnly) if !self.env.gpl_compatible => {
                    let reason = Reason::GplOnlyHelper {
                        helper: helper.name(),
                    };
                    return Err(self.err(pc, st, reason));
                }
                _ => {}
            }
        }
        if st.lock.is_some() && kernel_helper != Some(HelperId::SpinUnlock) {
            let helper = proto
                .as_ref()
                .map_or_else(|| format!("#{id}"), |p| p.name.clone());
            return Err(self.err(pc, st, Reason::CallWhileLocked { helper }));
        }
        if kernel_helper == Some(HelperId::TailCall) && !self.env.privileged {
            // The kernel's Spectre v1 hardening: one tail call site, one program array, for a
            // loader without CAP_PERFMON ("tail_call abusing map_ptr").
            if let Reg::Map { map } = st.reg(2) {
                if *self.tail_call_maps.entry(pc).or_insert(map) != map {
                    return Err(self.err(pc, st, Reason::TailCallMapsDiffer));
                }
            }
        }
        if kernel_helper == Some(HelperId::TailCall) && !st.refs.is_empty() {
            // A tail call never returns: a held reservation would leak.
            return Err(self.err(
                pc,
                st,
                Reason::UnreleasedReference {
                    count: st.refs.len(),
                },
            ));
        }
        let Some(proto) = proto else {
            return Err(self.err(pc, st, Reason::UnknownHelper { id }));
        };
        let mut map: Option<usize> = None;
        let mut released: Option<u32> = None;
        let mut func: Option<usize> = None;
        let mut mem_arg: Option<(usize, Reg, bool)> = None;
        let mut alloc_size: u64 = 0;
        let mut lock_arg: Option<(u32, u32)> = None;
        for (i, arg) in proto.args.iter().enumerate() {
            let r = i + 1;
            if *arg == Arg::None {
                continue;
            }
            let v = self.read_reg(
                pc,
                st,
                moat_isa::Reg::new(r as u8).unwrap_or(moat_isa::Reg::R0),
            )?;
            let bad = |me: &Self, st: &State, expected: &'static str| {
                me.err(
                    pc,
                    st,
                    Reason::HelperArg {
                        helper: proto.name.clone(),
                        arg: r as u8,
                        expected,
                        found: v.to_string(),
                    },
                )
            };
            match arg {
                Arg::None | Arg::Anything | Arg::AnyAddr => {}
                Arg::Scalar => {
                    if !matches!(v, Reg::Scalar(_)) && !self.env.privileged {
                        return Err(bad(self, st, "a number"));
                    }
                }
                Arg::Map(class) => {
                    let Reg::Map { map: m } = v else {
                        return Err(bad(self, st, "a map"));
                    };
                    let t = self.env.maps[m].map_type;
                    if is_map_of_maps(t) {
                        // Programs may only look maps up in a map of maps (the kernel's
                        // check_map_func_compatibility).
                        if kernel_helper != Some(HelperId::MapLookupElem) {
                            return Err(bad(
                                self,
                                st,
                                "a map other than a map of maps (programs only look up in those)",
                            ));
                        }
                    } else if !class.accepts(t) {
                        return Err(bad(self, st, map_class_name(*class)));
                    }
                    map = Some(m);
                }
                Arg::MapKey | Arg::MapValue | Arg::MapValueOut => {
                    let Some(m) = map else {
                        return Err(bad(self, st, "a map before this argument"));
                    };
                    let info = &self.env.maps[m];
                    let len = if *arg == Arg::MapKey {
                        info.key_size
                    } else {
                        info.value_size
                    };
                    let write = *arg == Arg::MapValueOut;
                    self.check_mem_arg(pc, st, &proto.name, r, v, u64::from(len), write)?;
                }
                Arg::MemIn | Arg::MemOut | Arg::MemInOrNull => {
                    mem_arg = Some((r, v, *arg == Arg::MemOut));
                    if *arg == Arg::MemInOrNull
                        && matches!(v, Reg::Scalar(s) if s.as_const() == Some(0))
                    {
                        mem_arg = None;
                    }
                }
                Arg::Size | Arg::SizeOrZero => {
                    let Reg::Scalar(s) = v else {
                        return Err(bad(self, st, "a size"));
                    };
                    if *arg == Arg::Size && s.umin == 0 {
                        return Err(bad(self, st, "a non-zero size"));
                    }
                    if s.umax > (1 << 29) {
                        return Err(bad(self, st, "a bounded size"));
                    }
                    if let Some((mr, mv, write)) = mem_arg.take() {
                        if s.umax > 0 {
                            self.check_mem_arg(pc, st, &proto.name, mr, mv, s.umax, write)?;
                        }
                    }
                }
                Arg::AllocSize => {
                    let Some(c) = (match v {
                        Reg::Scalar(s) => s.as_const(),
                        _ => None,
                    }) else {
                        return Err(bad(self, st, "a constant size"));
                    };
                    alloc_size = c;
                }
                Arg::Ctx => {
                    if !matches!(
                        v,
                        Reg::Ptr {
                            region: Region::Ctx,
                            off: 0,
                            ..
                        }
                    ) {
                        return Err(bad(self, st, "the context pointer"));
                    }
                }
                Arg::Func => {
                    let Reg::Func { pc: f } = v else {
                        return Err(bad(self, st, "a function"));
                    };
                    func = Some(f);
                }
                Arg::RingbufMem => {
                    let Reg::Ptr {
                        region: Region::Ringbuf { ref_id, .. },
                        off: 0,
                        null_id: None,
                        ..
                    } = v
                    else {
                        return Err(bad(self, st, "an unmodified ring buffer reservation"));
                    };
                    released = Some(ref_id);
                }
                Arg::Long => self.check_mem_arg(pc, st, &proto.name, r, v, 8, true)?,
                Arg::SpinLock => {
                    let Reg::Ptr {
                        region: Region::MapValue { map },
                        off,
                        var,
                        null_id: None,
                    } = v
                    else {
                        return Err(bad(self, st, "a lock in a map value"));
                    };
                    // The kernel: "bpf_spin_lock has to be at the constant offset".
                    self.check_mem_arg(pc, st, &proto.name, r, v, 4, true)?;
                    // In bounds (just checked), so within u32; the kernel: "bpf_spin_lock has to
                    // be at the constant offset".
                    let at = var
                        .as_const()
                        .and_then(|c| off.checked_add(c.cast_signed()))
                        .and_then(|at| u32::try_from(at).ok());
                    let (Some(at), Ok(map)) = (at, u32::try_from(map)) else {
                        return Err(bad(self, st, "a lock at a constant offset"));
                    };
                    lock_arg = Some((map, at));
                }
                Arg::ConstStr => {
                    let ok = matches!(v, Reg::Ptr { region: Region::MapValue { map }, null_id: None, .. } if self.env.maps[map].read_only);
                    if !ok {
                        return Err(bad(self, st, "a string in read-only map memory"));
                    }
                }
            }
            self.facts.record_arg(pc, r as u8, v);
        }
        if let Some(id) = released {
            if !st.refs.contains(&id) {
                return Err(self.err(pc, st, Reason::ReleasedTwice));
            }
            st.refs.retain(|r| *r != id);
            st.update_regs(|r| {
                matches!(r, Reg::Ptr { region: Region::Ringbuf { ref_id, .. }, .. } if *ref_id == id)
                    .then(Reg::unknown)
            });
        }
        // The callback runs (once, as the kernel verifies it) before the helper returns.
        if let (Some(f), cb) = (func, proto.callback) {
            let ctx_arg = match cb {
                Callback::Loop => st.reg(3),
                Callback::ForEachMapElem => st.reg(3),
                Callback::None => Reg::NotInit,
            };
            if cb == Callback::Loop {
                if let Reg::Scalar(n) = st.reg(1) {
                    if n.umin > MAX_LOOPS {
                        return Err(self.err(
                            pc,
                            st,
                            Reason::HelperArg {
                                helper: proto.name.clone(),
                                arg: 1,
                                expected: "at most 8388608 iterations",
                                found: st.reg(1).to_string(),
                            },
                        ));
                    }
                }
            }
            self.facts.approximate = true;
            let mut cb_state = st.clone();
            self.call_function(pc, &mut cb_state, f, next, true)?;
            let depth = cb_state.frames.len() - 1;
            let frame = cb_state.frame_mut();
            for r in 1..=5 {
                frame.regs[r] = Reg::NotInit;
            }
            let _ = depth;
            match cb {
                Callback::Loop => {
                    frame.regs[1] = Reg::Scalar(Scalar::any_u32());
                    frame.regs[2] = ctx_arg;
                }
                Callback::ForEachMapElem => {
                    let m = map.unwrap_or(0);
                    let info = &self.env.maps[m];
                    frame.regs[1] = Reg::Map { map: m };
                    frame.regs[2] = Reg::ptr(
                        Region::Mem {
                            size: u64::from(info.key_size),
                            writable: false,
                        },
                        0,
                    );
                    frame.regs[3] = Reg::ptr(Region::MapValue { map: m }, 0);
                    frame.regs[4] = ctx_arg;
                }
                Callback::None => {}
            }
            // The callback may also run zero times (`nr_loops` = 0, an empty map, or flags the
            // helper refuses): then the caller goes on from its own state, `r0` a number (0 or an
            // error), `r1`-`r5` clobbered.
            let mut skipped = st.clone();
            for r in 1..=5 {
                skipped.set(r, Reg::NotInit);
            }
            skipped.set(0, Reg::unknown());
            // Return value and clobbers after the callback returns to `next` are set by `exit` (r0 =
            // unknown number); continue in the callback.
            *st = cb_state;
            return Ok(Step::Branch {
                taken: (f, st.clone()),
                fall: Some((next, skipped)),
            });
        }
        match (kernel_helper, lock_arg) {
            (Some(HelperId::SpinLock), Some(lock)) => st.lock = Some(lock),
            (Some(HelperId::SpinUnlock), Some(lock)) => match st.lock {
                None => return Err(self.err(pc, st, Reason::UnlockWithoutLock)),
                Some(held) if held != lock => {
                    return Err(self.err(pc, st, Reason::UnlockOfDifferentLock))
                }
                Some(_) => st.lock = None,
            },
            _ => {}
        }
        if kernel_helper.is_some_and(HelperId::changes_packet_data) {
            st.forget_packet_pointers();
        }
        for r in 1..=5 {
            st.set(r, Reg::NotInit);
        }
        let r0 = match proto.ret {
            Ret::Integer => Reg::unknown(),
            Ret::Void => Reg::NotInit,
            Ret::MapValueOrNull
                if self
                    .env
                    .maps
                    .get(map.unwrap_or(0))
                    .is_some_and(|i| is_map_of_maps(i.map_type)) =>
            {
                let outer = &self.env.maps[map.unwrap_or(0)];
                let Some(inner) = outer.inner.filter(|&i| i < self.env.maps.len()) else {
                    let map = outer.name.clone();
                    return Err(self.err(pc, st, Reason::NoInnerMap { map }));
                };
                let id = self.fresh_id();
                Reg::Ptr {
                    region: Region::MapHandle { map: inner },
                    off: 0,
                    var: Scalar::constant(0),
                    null_id: Some(id),
                }
            }
            Ret::MapValueOrNull => {
                let m = map.unwrap_or(0);
                let id = self.fresh_id();
                Reg::Ptr {
                    region: Region::MapValue { map: m },
                    off: 0,
                    var: Scalar::constant(0),
                    null_id: Some(id),
                }
            }
            Ret::RingbufMemOrNull => {
                let id = self.fresh_id();
                st.refs.push(id);
                Reg::Ptr {
                    region: Region::Ringbuf {
                        size: alloc_size,
                        ref_id: id,
                    },
                    off: 0,
                    var: Scalar::constant(0),
                    null_id: Some(id),
                }
            }
        };
        st.set(0, r0);
        Ok(Step::Next(next))
    }

    /// Checks that `v` points to `len` accessible bytes (initialised unless `write`).
    #[allow(clippy::too_many_arguments)]
    fn check_mem_arg(
        &mut self,
        pc: usize,
        st: &mut State,
        helper: &str,
        arg: usize,
        v: Reg,
        len: u64,
        write: bool,
    ) -> R<()> {
        let Reg::Ptr {
            region,
            off,
            var,
            null_id,
        } = v
        else {
            return Err(self.err(
                pc,
                st,
                Reason::HelperArg {
                    helper: helper.to_string(),
                    arg: arg as u8,
                    expected: "a pointer to memory",
                    found: v.to_string(),
                },
            ));
        };
        if null_id.is_some() {
            return Err(self.err(
                pc,
                st,
                Reason::MaybeNull {
                    what: v.to_string(),
                },
            ));
        }
        if matches!(
            region,
            Region::Ctx | Region::PacketEnd | Region::PacketMeta | Region::MapHandle { .. }
        ) {
            return Err(self.err(
                pc,
                st,
                Reason::HelperArg {
                    helper: helper.to_string(),
                    arg: arg as u8,
                    expected: "a pointer to stack, map value, packet or buffer memory",
                    found: v.to_string(),
                },
            ));
        }
        // Check every byte as a 1-byte access: bounds per region, and initialisation on the stack.
        let len_i = i64::try_from(len).unwrap_or(i64::MAX);
        let lo = off.checked_add(var.smin);
        let hi = off.checked_add(var.smax).and_then(|h| h.checked_add(len_i));
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Err(self.err(
                pc,
                st,
                Reason::PointerOffset {
                    what: format!("{len} bytes at {v} overflow"),
                },
            ));
        };
        let limit_of = |size: u64| i64::try_from(size).unwrap_or(i64::MAX);
        let check = |me: &Self, st: &State, limit: i64, name: String| -> R<()> {
            if lo < 0 || hi > limit {
                return Err(me.err(
                    pc,
                    st,
                    Reason::HelperMemOutOfBounds {
                        helper: helper.to_string(),
                        arg: arg as u8,
                        region: name,
                        lo,
                        hi,
                        limit,
                    },
                ));
            }
            Ok(())
        };
        match region {
            Region::Stack { frame } => {
                if var.as_const().is_none() {
                    return Err(self.err(pc, st, Reason::VariableStackAccess));
                }
                if lo < -STACK_SIZE || hi > 0 {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::HelperMemOutOfBounds {
                            helper: helper.to_string(),
                            arg: arg as u8,
                            region: region.to_string(),
                            lo,
                            hi,
                            limit: 0,
                        },
                    ));
                }
                let privileged = self.env.privileged;
                self.facts.record_stack(frame, lo.unsigned_abs() as u32);
                // For an unprivileged loader the helper may read neither uninitialised bytes nor
                // the bytes of a spilled pointer (which it would copy out: a leak), as the
                // kernel's check_stack_range_initialized; spilled numbers are fine.
                let refused = st.frame_at_mut(frame).and_then(|f| {
                    f.stack_depth = f.stack_depth.max(lo.unsigned_abs() as u32);
                    for b in stack_byte(lo)..stack_byte(hi) {
                        if write {
                            f.write_data(b);
                            continue;
                        }
                        if privileged {
                            continue;
                        }
                        let slot = f.stack.slot(b / 8);
                        let off = lo + (b - stack_byte(lo)) as i64;
                        match slot.bytes[b % 8] {
                            Byte::Uninit => return Some(Reason::UninitStack { off }),
                            Byte::Spill if slot.spill.is_some_and(|r| r.is_pointer()) => {
                                return Some(Reason::PointerLeak {
                                    into: "a helper's memory argument",
                                })
                            }
                            _ => {}
                        }
                    }
                    None
                });
                if let Some(reason) = refused {
                    return Err(self.err(pc, st, reason));
                }
                let total: u32 = st.frames.iter().map(|f| f.stack_depth).sum();
                if total > STACK_SIZE as u32 {
                    return Err(self.err(pc, st, Reason::StackTooDeep { bytes: total }));
                }
            }
            Region::Mem { size, writable } => {
                check(self, st, limit_of(size), region.to_string())?;
                if write && !writable {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::ReadOnly {
                            region: region.to_string(),
                        },
                    ));
                }
            }
            Region::MapValue { map } => {
                let info = &self.env.maps[map];
                check(
                    self,
                    st,
                    i64::from(info.value_size),
                    format!("map `{}`", info.name),
                )?;
                if write && info.read_only {
                    return Err(self.err(
                        pc,
                        st,
                        Reason::ReadOnly {
                            region: format!("map `{}`", info.name),
                        },
                    ));
                }
            }
            Region::Packet { id } => {
                let known = st.packet_range(id);
                // With a variable offset, relative to the variable start (which must not be
                // negative); an overflowing end is beyond any proven range.
                let (lo, hi) = if id == 0 {
                    (lo, hi)
                } else {
                    (off, off.checked_add(len_i).unwrap_or(i64::MAX))
                };
                if lo < 0 || var.smin < 0 || hi > limit_of(known) {
                    return Err(self.err(pc, st, Reason::PacketOutOfBounds { lo, hi, known }));
                }
            }
            Region::Ringbuf { size, .. } => check(self, st, limit_of(size), region.to_string())?,
            Region::Ctx | Region::PacketEnd | Region::PacketMeta | Region::MapHandle { .. } => {}
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Access {
    Read,
    /// A store of this register's value.
    Write(Reg),
    /// An atomic read-modify-write: a read of the old value, then a store of unknown data. Returns
    /// the old value where it is known (a whole spilled register).
    Atomic,
}

/// Whether `t` (a `BPF_MAP_TYPE_*` number) is a map of maps.
fn is_map_of_maps(t: u32) -> bool {
    matches!(
        MapType::from_u32(t),
        Some(MapType::ArrayOfMaps | MapType::HashOfMaps)
    )
}

fn is_pkt(r: &Reg) -> bool {
    matches!(
        r,
        Reg::Ptr {
            region: Region::Packet { .. } | Region::PacketEnd | Region::PacketMeta,
            ..
        }
    )
}

/// Whether `r` is the packet end exactly as the context holds it (no offset).
fn is_pkt_end(r: &Reg) -> bool {
    matches!(
        r,
        Reg::Ptr {
            region: Region::PacketEnd,
            off: 0,
            var,
            null_id: None,
        } if var.as_const() == Some(0)
    )
}

/// `a cond b` ⇔ `b mirror(cond) a`.
fn mirror(cond: JmpCond) -> Option<JmpCond> {
    Some(match cond {
        JmpCond::Eq => JmpCond::Eq,
        JmpCond::Ne => JmpCond::Ne,
        JmpCond::Gt => JmpCond::Lt,
        JmpCond::Ge => JmpCond::Le,
        JmpCond::Lt => JmpCond::Gt,
        JmpCond::Le => JmpCond::Ge,
        JmpCond::Sgt => JmpCond::Slt,
        JmpCond::Sge => JmpCond::Sle,
        JmpCond::Slt => JmpCond::Sgt,
        JmpCond::Sle => JmpCond::Sge,
        JmpCond::Set => return None,
    })
}

fn loaded(size: Size, signed: bool) -> Scalar {
    let bits = size.bytes() as u32 * 8;
    if bits == 64 {
        return Scalar::UNKNOWN;
    }
    let u = Scalar::urange(0, (1u64 << bits) - 1);
    if signed {
        u.sign_extend(bits)
    } else {
        u
    }
}

fn alu_name(op: AluOp) -> &'static str {
    moat_isa::disasm::alu_mnemonic(op)
}

fn map_class_name(c: MapClass) -> &'static str {
    match c {
        MapClass::Keyed => "a hash, array or LPM map",
        MapClass::Queue => "a queue or stack map",
        MapClass::RingBuf => "a ring buffer map",
        MapClass::ProgArray => "a program array",
        MapClass::StackTrace => "a stack trace map",
        MapClass::PerfEventArray => "a perf event array",
        MapClass::Any => "a map",
    }
}

/// The largest offset a pointer may carry (the kernel's `BPF_MAX_VAR_OFF`): constant offsets and the
/// variable offset's bounds stay strictly within ±2^29, so sums of a few offsets never overflow.
pub(crate) const MAX_VAR_OFF: i64 = 1 << 29;

/// Why a pointer at constant offset `off` with variable offset `var` is not sane, as the kernel's
/// `check_reg_sane_offset` decides: `None` when it is.
pub(crate) fn insane_offset(off: i64, var: &Scalar) -> Option<String> {
    let within = |v: i64| -MAX_VAR_OFF < v && v < MAX_VAR_OFF;
    if !within(off) {
        return Some(format!("constant offset {off}"));
    }
    if let Some(c) = var.as_const() {
        if !within(c as i64) {
            return Some(format!("offset {}", c as i64));
        }
    }
    if var.smin == i64::MIN {
        return Some("a variable offset without lower bound".into());
    }
    if !within(var.smin) {
        return Some(format!("a variable offset of at least {}", var.smin));
    }
    None
}

/// The distance from the start of region `b` to the start of region `a`, when both are in one object:
/// exactly 0 for one stack frame, the context, one ring buffer reservation or the packet (whatever
/// its variable-offset id); a bounded range between the packet's start, end and metadata (metadata
/// lies before the data, at most [`MAX_PACKET_LEN`] bytes of each). `None` when the two may be
/// different objects: two map value pointers may point to different elements, two buffers (a
/// callback's key, the context) may be different buffers.
pub(crate) fn base_distance(a: Region, b: Region) -> Option<Scalar> {
    // Where each packet region starts relative to the packet data, as a signed range.
    let pkt = |r: Region| match r {
        Region::PacketMeta => Some((-(MAX_PACKET_LEN as i64), 0)),
        Region::Packet { .. } => Some((0, 0)),
        Region::PacketEnd => Some((0, MAX_PACKET_LEN as i64)),
        _ => None,
    };
    match (a, b) {
        (Region::Stack { frame: f1 }, Region::Stack { frame: f2 }) if f1 == f2 => {
            Some(Scalar::constant(0))
        }
        (Region::Ctx, Region::Ctx) => Some(Scalar::constant(0)),
        (Region::Ringbuf { ref_id: r1, .. }, Region::Ringbuf { ref_id: r2, .. }) if r1 == r2 => {
            Some(Scalar::constant(0))
        }
        // Two pointers of one kind into the packet share their base.
        (Region::PacketMeta, Region::PacketMeta)
        | (Region::PacketEnd, Region::PacketEnd)
        | (Region::Packet { .. }, Region::Packet { .. }) => Some(Scalar::constant(0)),
        _ => {
            let ((alo, ahi), (blo, bhi)) = (pkt(a)?, pkt(b)?);
            Some(Scalar::srange(alo - bhi, ahi - blo))
        }
    }
}

/// The index of the stack byte at `off` from the frame pointer (0 = the frame's lowest byte); `off`
/// lies in `[-STACK_SIZE, 0]`.
fn stack_byte(off: i64) -> usize {
    usize::try_from(STACK_SIZE + off).unwrap_or(0)
}

/// `(base + o1 + v1) - (o2 + v2)`: the distance of two pointers whose region starts are `base`
/// apart, computed so that every concrete distance is a member (overflow makes it unknown).
pub(crate) fn pointer_distance(base: Scalar, o1: i64, v1: Scalar, o2: i64, v2: Scalar) -> Scalar {
    let Some(delta) = o1.checked_sub(o2) else {
        return Scalar::UNKNOWN;
    };
    base.alu(AluOp::Add, &Scalar::constant(delta as u64), Width::W64)
        .alu(AluOp::Add, &v1.alu(AluOp::Sub, &v2, Width::W64), Width::W64)
}

#[cfg(test)]
mod tests {
    //! The abstract transfer functions of pointer offsets and stack slots against concrete execution,
    //! at the extremes of i64/u64: whatever the verifier accepts must contain what really happens.

    use super::*;
    use crate::env::MapInfo;
    use crate::state::Slot;
    use proptest::prelude::*;

    fn member(s: &Scalar, x: u64) -> bool {
        s.umin <= x
            && x <= s.umax
            && s.smin <= x as i64
            && x as i64 <= s.smax
            && x & !s.tnum.mask == s.tnum.value
    }

    /// A scalar containing `x`: exactly `x`, a signed or unsigned range around it, or unknown.
    fn around(x: u64, kind: u8, below: u64, above: u64) -> Scalar {
        match kind % 4 {
            0 => Scalar::constant(x),
            1 => Scalar::srange(
                (x as i64).saturating_sub(below as i64 & 0xffff_ffff),
                (x as i64).saturating_add(above as i64 & 0xffff_ffff),
            ),
            2 => Scalar::urange(x.saturating_sub(below), x.saturating_add(above)),
            _ => Scalar::UNKNOWN,
        }
    }

    /// Interesting 64-bit values: the extremes of i64 and u64, values around the 2^29 limit, small
    /// offsets, anything.
    fn value() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(i64::MAX),
            Just(i64::MIN),
            (i64::MAX - 1024..=i64::MAX),
            (i64::MIN..i64::MIN + 1024),
            (MAX_VAR_OFF - 1024..MAX_VAR_OFF + 1024),
            (-MAX_VAR_OFF - 1024..-MAX_VAR_OFF + 1024),
            (-1024i64..1024),
            any::<i64>(),
        ]
    }

    const VALUE_SIZE: u32 = 48;
    const BUFFER: u64 = 64;

    fn program() -> Program {
        Program::new(&moat_isa::assemble_bytes("mov %r0, 0\nexit").expect("assembles"))
            .expect("valid")
    }

    fn env(privileged: bool) -> Env<'static> {
        let mut env = Env::new(Context::Buffer { size: BUFFER });
        env.maps = vec![MapInfo {
            name: "values".into(),
            map_type: crate::env::map_type::ARRAY,
            key_size: 4,
            value_size: VALUE_SIZE,
            max_entries: 1,
            read_only: false,
            atomic_in_place: false,
            inner: None,
        }];
        env.privileged = privileged;
        env
    }

    fn size_of(bytes: u8) -> Size {
        match bytes % 4 {
            0 => Size::B,
            1 => Size::H,
            2 => Size::W,
            _ => Size::DW,
        }
    }

    fn region_of(i: u8) -> (Region, i64, i64) {
        match i % 3 {
            0 => (Region::Stack { frame: 0 }, -STACK_SIZE, 0),
            1 => (
                Region::Mem {
                    size: BUFFER,
                    writable: true,
                },
                0,
                BUFFER as i64,
            ),
            _ => (Region::MapValue { map: 0 }, 0, i64::from(VALUE_SIZE)),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// Adding a scalar to a pointer (or subtracting it) yields a pointer whose offsets contain the
        /// concrete offset modulo 2^64, or is refused; every pointer it yields is sane.
        #[test]
        fn pointer_arithmetic_is_sound(
            off in value(), v in value(), x in value(),
            kinds in any::<(u8, u8)>(), spread in any::<[u64; 4]>(), sub in any::<bool>(), ri in any::<u8>(),
        ) {
            let prog = program();
            let env = env(true);
            let checker = Checker::new(&prog, &env);
            let st = checker.initial_state();
            let var = around(v as u64, kinds.0, spread[0], spread[1]);
            let s = around(x as u64, kinds.1, spread[2], spread[3]);
            prop_assume!(member(&var, v as u64) && member(&s, x as u64));
            let (region, _, _) = region_of(ri);
            let Ok(r) = checker.ptr_add(0, &st, region, off, var, None, &s, sub) else {
                return Ok(());
            };
            let Reg::Ptr { off: o2, var: var2, region: r2, .. } = r else {
                return Err(TestCaseError::fail(format!("not a pointer: {r}")));
            };
            prop_assert_eq!(r2, region);
            prop_assert!(insane_offset(o2, &var2).is_none(), "insane result {}", r);
            // The concrete offset, modulo 2^64.
            let concrete = if sub {
                off.wrapping_add(v).wrapping_sub(x)
            } else {
                off.wrapping_add(v).wrapping_add(x)
            };
            let rest = concrete.wrapping_sub(o2) as u64;
            prop_assert!(member(&var2, rest), "{off}+{v}{}{x} = {concrete} not in {r}", if sub { "-" } else { "+" });
        }

        /// An access the verifier accepts is in bounds for every concrete offset its pointer may have.
        #[test]
        fn accepted_accesses_are_in_bounds(
            off in value(), v in value(), insn_off in any::<i16>(), kind in any::<u8>(),
            spread in any::<[u64; 2]>(), ri in any::<u8>(), bytes in any::<u8>(), write in any::<bool>(),
        ) {
            let prog = program();
            let env = env(true);
            let mut checker = Checker::new(&prog, &env);
            let mut st = checker.initial_state();
            let var = around(v as u64, kind, spread[0], spread[1]);
            prop_assume!(member(&var, v as u64));
            let (region, lo, hi) = region_of(ri);
            let base = Reg::Ptr { region, off, var, null_id: None };
            let size = size_of(bytes);
            let access = if write { Access::Write(Reg::unknown()) } else { Access::Read };
            if checker.mem_access(0, &mut st, base, i64::from(insn_off), size, access).is_ok() {
                let at = off.wrapping_add(v).wrapping_add(i64::from(insn_off));
                let n = size.bytes() as i64;
                prop_assert!(lo <= at && at + n <= hi, "{base}{insn_off:+} accepted, concrete offset {at}");
            }
        }

        /// Every atomic operation on a stack slot, against concrete execution: the slot reads back a
        /// number containing its new value (or an unknown number, never a pointer), and the fetched
        /// register contains the old value.
        #[test]
        fn atomics_on_stack_slots_are_sound(
            a in any::<u64>(), b in any::<u64>(), r0 in any::<u64>(), opi in 0usize..10,
            w32 in any::<bool>(), kinds in any::<(u8, u8)>(), spread in any::<[u64; 4]>(),
            priv_ in any::<bool>(),
        ) {
            let ops = [
                AtomicOp::Add { fetch: false }, AtomicOp::Or { fetch: false },
                AtomicOp::And { fetch: false }, AtomicOp::Xor { fetch: false },
                AtomicOp::Add { fetch: true }, AtomicOp::Or { fetch: true },
                AtomicOp::And { fetch: true }, AtomicOp::Xor { fetch: true },
                AtomicOp::Xchg, AtomicOp::CmpXchg,
            ];
            let op = ops[opi];
            let prog = program();
            let env = env(priv_);
            let mut checker = Checker::new(&prog, &env);
            let mut st = checker.initial_state();
            let sa = around(a, kinds.0, spread[0], spread[1]);
            let sb = around(b, kinds.1, spread[2], spread[3]);
            prop_assume!(member(&sa, a) && member(&sb, b));
            if let Some(slot) = st.frame_mut().stack_mut().slot_mut(crate::state::SLOTS - 1) {
                *slot = Slot { bytes: [Byte::Spill; 8], spill: Some(Reg::Scalar(sa)) };
            }
            st.set(2, Reg::Scalar(sb));
            st.set(0, Reg::Scalar(Scalar::constant(r0)));
            let size = if w32 { Size::W } else { Size::DW };
            let insn = Insn::Atomic { size, op, dst: moat_isa::Reg::R10, off: -8, src: moat_isa::Reg::R2 };
            checker.step(0, insn, &mut st).map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Concretely.
            let mask = if w32 { u64::from(u32::MAX) } else { u64::MAX };
            let old = a & mask;
            let new = match op {
                AtomicOp::Add { .. } => old.wrapping_add(b),
                AtomicOp::Or { .. } => old | b,
                AtomicOp::And { .. } => old & b,
                AtomicOp::Xor { .. } => old ^ b,
                AtomicOp::Xchg => b,
                AtomicOp::CmpXchg => if old == r0 & mask { b } else { old },
            } & mask;
            let slot = (a & !mask) | new;
            let fetched = match op {
                AtomicOp::CmpXchg => Some((0, old)),
                AtomicOp::Xchg | AtomicOp::Add { fetch: true } | AtomicOp::Or { fetch: true }
                | AtomicOp::And { fetch: true } | AtomicOp::Xor { fetch: true } => Some((2, old)),
                _ => None,
            };
            if let Some((r, v)) = fetched {
                let Reg::Scalar(s) = st.reg(r) else {
                    return Err(TestCaseError::fail(format!("r{r} = {}", st.reg(r))));
                };
                prop_assert!(member(&s, v), "r{r} = {s:?} lacks the old value {v:#x}");
            }
            let fp = st.reg(10);
            let read = checker
                .mem_access(1, &mut st, fp, -8, Size::DW, Access::Read)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            match read {
                None => {}
                Some(Reg::Scalar(s)) => prop_assert!(member(&s, slot), "slot reads {s:?}, holds {slot:#x}"),
                Some(other) => return Err(TestCaseError::fail(format!("slot reads {other}"))),
            }
        }

        /// The distance of two pointers into one packet contains the concrete distance, whatever the
        /// packet's length and metadata.
        #[test]
        fn packet_distances_are_sound(
            len in 0..=MAX_PACKET_LEN, meta in 0..=MAX_PACKET_LEN, kinds in any::<(u8, u8)>(),
            o1 in -1024i64..1024, o2 in -1024i64..1024, v1 in 0u64..1024, v2 in 0u64..1024,
            spread in any::<[u64; 4]>(), k in any::<(u8, u8)>(),
        ) {
            // Concrete starts of each kind, relative to the data.
            let region = |i: u8| match i % 3 {
                0 => (Region::PacketMeta, -(meta as i64)),
                1 => (Region::Packet { id: u32::from(i % 5) }, 0),
                _ => (Region::PacketEnd, len as i64),
            };
            let ((r1, b1), (r2, b2)) = (region(kinds.0), region(kinds.1));
            let (s1, s2) = (around(v1, k.0, spread[0], spread[1]), around(v2, k.1, spread[2], spread[3]));
            prop_assume!(member(&s1, v1) && member(&s2, v2));
            let base = base_distance(r1, r2);
            prop_assert!(base.is_some(), "{r1} - {r2}");
            let d = pointer_distance(base.unwrap_or(Scalar::UNKNOWN), o1, s1, o2, s2);
            let concrete = (b1 + o1 + v1 as i64) - (b2 + o2 + v2 as i64);
            prop_assert!(member(&d, concrete as u64), "{r1}{o1:+}+{v1} - {r2}{o2:+}+{v2} = {concrete}, not in {d:?}");
        }
    }

    #[test]
    fn map_values_and_buffers_have_no_known_distance() {
        let m = Region::MapValue { map: 0 };
        assert!(base_distance(m, m).is_none());
        let b = Region::Mem {
            size: 8,
            writable: false,
        };
        assert!(base_distance(b, b).is_none());
        assert!(base_distance(Region::Stack { frame: 0 }, Region::Stack { frame: 1 }).is_none());
        assert_eq!(
            base_distance(Region::Stack { frame: 1 }, Region::Stack { frame: 1 }),
            Some(Scalar::constant(0))
        );
    }
}
