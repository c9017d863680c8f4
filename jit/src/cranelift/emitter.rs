//! [`ClifEmitter`]: the [`Ops`] and [`Emitter`] traits implemented on
//! Cranelift IR values, so the one set of semantic functions compiles.
//!
//! State handling inside one compiled block:
//! - Guest registers (and the raw RFLAGS word) are *slots*: a Cranelift
//!   `Variable` each, loaded from `CpuState` on first use and stored back at
//!   every exit if written. The frontend's SSA construction then merges
//!   values across `when` and memory slow paths by itself.
//! - Lazy flags: `set_cc` keeps the operation in [`CcState::Known`] (static)
//!   and the operands in variables, so `cond` runs the generic
//!   `flags::cond` on IR values (`cmp; jl` becomes one compare). When the
//!   operation is not known statically (block entry, or two paths of a
//!   `when` that set different operations) `cond` stores the lazy state and
//!   calls a runtime helper.
//! - Counting: the block adds its instruction count once at entry; every
//!   exit before the end subtracts what did not retire.
//! - Regions (several blocks in one function, see `super::emit_region`):
//!   each member block starts from the same compile-time state
//!   ([`ClifEmitter::set_entry_state`]): the region's *carried* slots in
//!   variables (general ones stored at the edges of the block that wrote
//!   them, XMM halves only at exits), the lazy flags in variables
//!   (`Dynamic`, with a guessed
//!   operation that `cond`/`rflags` test at run time before inlining its
//!   formula). An edge ([`ClifEmitter::prepare_edge`]) makes the state
//!   match it; exits return `status::LINK + k`.

use super::runtime;
use super::status;
use super::JitError;
use crate::block::Insn;
use crate::emit::{Emitter, Ops, SemResult, Stop, Width};
use crate::exception::Exception;
use crate::flags::{self, CcOp, Cond, FlagSet, Lazy, RFLAGS_FIXED, RFLAGS_WRITABLE};
use crate::interp::mask_ip;
use crate::state::{offset_of_field, CpuState, Field, Gpr, Seg};
use cranelift_codegen::ir::condcodes::{CondCode, IntCC};
use cranelift_codegen::ir::types::{I16, I32, I64, I8};
use cranelift_codegen::ir::{
    Block, BlockArg, InstBuilder, InstructionData, MemFlagsData, Opcode, SigRef, Type, Value,
    ValueDef,
};
use cranelift_frontend::{FunctionBuilder, Variable};

/// Byte offset of one 64-bit half of `CpuState::xmm[n]` (little-endian:
/// the low half first).
fn xmm_offset(n: usize, high: bool) -> i32 {
    (core::mem::offset_of!(CpuState, xmm) + 16 * (n & 15) + 8 * high as usize) as i32
}

/// Slots 0–15 are RAX…R15; this one is the raw RFLAGS word.
const RFLAGS_SLOT: usize = 16;
/// Slots 17.. are the 64-bit halves of XMM0–XMM15 (low, high, low, …).
const XMM_SLOT0: usize = 17;
pub(crate) const SLOTS: usize = XMM_SLOT0 + 32;

/// The slot of one half of XMM register `n`.
pub(crate) fn xmm_slot(n: usize, high: bool) -> usize {
    XMM_SLOT0 + 2 * (n & 15) + high as usize
}

/// Byte offset of `CpuState::intr` (a byte).
const INTR_OFFSET: usize = core::mem::offset_of!(crate::state::CpuState, intr);

/// What the compiler knows about a slot at the current point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Not read or written yet: the value is in `CpuState`.
    Untouched,
    /// Its variable is defined on every path reaching this point.
    Live,
}

/// What the compiler knows about the lazy flags at the current point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CcState {
    /// Untouched by the block: `CpuState` holds the lazy state.
    InMemory,
    /// Set by the block with this operation; operands in the variables.
    Known(CcOp),
    /// Set by the block, operation only known at run time (op variable).
    Dynamic,
}

/// Signatures of the runtime helpers, imported into the function.
#[derive(Clone, Copy)]
pub(crate) struct Sigs {
    pub load: SigRef,
    pub store: SigRef,
    pub cond: SigRef,
    pub rflags: SigRef,
    pub exec: SigRef,
}

/// Memory flags for `CpuState` fields: aligned, never trapping.
fn state_flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// Memory flags for guest RAM through the TLB: host pointers are valid,
/// alignment is whatever the guest chose.
pub(crate) fn guest_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// The IR type of a guest access width.
pub(crate) fn ty_of(w: Width) -> Type {
    match w {
        Width::B => I8,
        Width::W => I16,
        Width::D => I32,
        Width::Q => I64,
    }
}

/// Byte offset of a slot's home in `CpuState`.
fn slot_offset(s: usize) -> i32 {
    if s >= XMM_SLOT0 {
        let x = s - XMM_SLOT0;
        xmm_offset(x / 2, x % 2 == 1)
    } else if s == RFLAGS_SLOT {
        offset_of_field(Field::Rflags) as i32
    } else {
        offset_of_field(Field::Gpr(Gpr::from_index(s))) as i32
    }
}

/// Emits Cranelift IR for a block's instructions through the semantic
/// functions.
pub struct ClifEmitter<'a, 'f> {
    pub(crate) b: &'a mut FunctionBuilder<'f>,
    /// `*mut CpuState` parameter.
    pub(crate) cpu: Value,
    /// `*mut JitCtx` parameter.
    pub(crate) ctx: Value,
    pub(crate) sigs: Sigs,
    vars: [Variable; SLOTS],
    slot: [Slot; SLOTS],
    dirty: [bool; SLOTS],
    cc: CcState,
    /// cc_op, cc_dst, cc_src, cc_src2.
    cc_vars: [Variable; 4],
    rip_var: Variable,
    /// Instructions in the block.
    n: usize,
    /// Index of the instruction being compiled.
    idx: usize,
    ip: u64,
    next_ip: u64,
    live: FlagSet,
    bitness: u32,
    /// Stack size (SS.B) the block is compiled for.
    stack_bits: u32,
    /// The code has returned for good (a helper was the last instruction).
    returned: bool,
    /// The current instruction called `jump`.
    jumped: bool,
    /// The current instruction called a helper that may set `exit_req`.
    pub(crate) called_slow_path: bool,
    /// RIP of each instruction of the block.
    ips: Vec<u64>,
    /// Exit block of each instruction boundary, once needed.
    exits: Vec<Option<Block>>,
    /// An exit block created but not filled yet.
    new_exit: Option<(Block, usize)>,
    /// Exceptions raised by `raise_if` (and static faults), by exit status.
    pub(crate) statics: Vec<Exception>,
    /// First reason the block cannot be compiled.
    pub(crate) err: Option<JitError>,
    /// Slots a region keeps in variables across its internal edges: Live
    /// at each member block's entry.
    pub(crate) carried: [bool; SLOTS],
    /// The carried slots that are dirty at every member entry: stored at
    /// every exit, never at edges (see [`ClifEmitter::kept_dirty`]).
    pub(crate) kept: [bool; SLOTS],
    /// The lazy-flags operation expected when the block starts with
    /// `CcState::Dynamic`: `cond`/`rflags` test it at run time and inline
    /// its formula, calling the helper only when it is another one.
    pub(crate) guess: Option<CcOp>,
    /// Exit sites that return a link status, numbered across the region.
    pub(crate) links: u64,
    /// For each exit site: does it leave after an indirect near JMP/CALL
    /// (so the block the engine runs next is an indirect-branch target)?
    pub(crate) site_indirect: Vec<bool>,
    /// Set while ending a block whose last instruction is an indirect near
    /// JMP/CALL (the exit sites made then are indirect ones).
    pub(crate) indirect_end: bool,
    /// The region's shared dispatch for indirect JMP/CALL targets (see
    /// [`ClifEmitter::emit_shared_dispatch`]), once a block jumped to it.
    dispatch: Option<Block>,
    /// The target RIP handed to `dispatch`.
    dispatch_rip: Variable,
    /// The SSE availability check passed on every path to this point of
    /// the block since its entry or the last helper call (CR0/CR4 only
    /// change in helpers).
    sse_ok: bool,
    /// The region's function checks SSE availability at its entry (and is
    /// not entered when it fails): every member block starts with the
    /// check passed (CR0/CR4 change only in helpers, whose blocks have no
    /// successor inside a region, so the region is left after them).
    pub(crate) sse_region: bool,
}

/// Most run-time targets compared one after the other at a block end; more
/// go through a `Switch`.
const COMPARE_CHAIN_MAX: usize = 4;

impl<'a, 'f> ClifEmitter<'a, 'f> {
    /// An emitter positioned in the block body (after the entry check).
    pub(crate) fn new(
        b: &'a mut FunctionBuilder<'f>,
        cpu: Value,
        ctx: Value,
        sigs: Sigs,
        bitness: u32,
        stack_bits: u32,
    ) -> Self {
        let vars = core::array::from_fn(|_| b.declare_var(I64));
        let cc_vars = core::array::from_fn(|_| b.declare_var(I64));
        let rip_var = b.declare_var(I64);
        let dispatch_rip = b.declare_var(I64);
        ClifEmitter {
            b,
            cpu,
            ctx,
            sigs,
            vars,
            slot: [Slot::Untouched; SLOTS],
            dirty: [false; SLOTS],
            cc: CcState::InMemory,
            cc_vars,
            rip_var,
            n: 0,
            idx: 0,
            ip: 0,
            next_ip: 0,
            live: FlagSet::ARITH,
            bitness,
            stack_bits,
            returned: false,
            jumped: false,
            called_slow_path: false,
            exits: Vec::new(),
            new_exit: None,
            ips: Vec::new(),
            statics: Vec::new(),
            err: None,
            carried: [false; SLOTS],
            kept: [false; SLOTS],
            guess: None,
            links: 0,
            site_indirect: Vec::new(),
            indirect_end: false,
            dispatch: None,
            dispatch_rip,
            sse_ok: false,
            sse_region: false,
        }
    }

    /// Start compiling a block whose instructions are at `ips`.
    pub(crate) fn start_block(&mut self, ips: Vec<u64>) {
        self.n = ips.len();
        self.exits = vec![None; self.n + 1];
        self.new_exit = None;
        self.ips = ips;
        self.returned = false;
        self.jumped = false;
        self.called_slow_path = false;
        self.sse_ok = self.sse_region;
    }

    /// The compile-time state at the entry of a region's member block (and
    /// after the region's function entry): carried slots Live, the
    /// [`ClifEmitter::kept_dirty`] ones counted as dirty (stored at exits),
    /// the others in `CpuState`; the lazy flags in their variables
    /// (`Dynamic`) when `dynamic_cc`, else in `CpuState`.
    pub(crate) fn set_entry_state(&mut self, dynamic_cc: bool, guess: Option<CcOp>) {
        for s in 0..SLOTS {
            self.slot[s] = if self.carried[s] {
                Slot::Live
            } else {
                Slot::Untouched
            };
        }
        self.dirty = core::array::from_fn(|s| self.kept_dirty(s));
        self.sse_ok = self.sse_region;
        self.cc = if dynamic_cc {
            CcState::Dynamic
        } else {
            CcState::InMemory
        };
        self.guess = guess;
    }

    /// At the region's function entry: load the carried slots and, when
    /// `dynamic_cc`, the lazy flags into their variables.
    pub(crate) fn preload(&mut self, dynamic_cc: bool) {
        for s in 0..SLOTS {
            if self.carried[s] {
                let v = self.load_slot_home(s);
                self.b.def_var(self.vars[s], v);
            }
        }
        if dynamic_cc {
            self.load_cc_vars();
        }
    }

    fn load_cc_vars(&mut self) {
        let fields = [Field::CcOp, Field::CcDst, Field::CcSrc, Field::CcSrc2];
        for (var, f) in self.cc_vars.into_iter().zip(fields) {
            let v = self.load_field(f);
            self.b.def_var(var, v);
        }
    }

    /// Make the state at this point what every member block's entry
    /// expects (see [`ClifEmitter::set_entry_state`] with a dynamic lazy
    /// state): carried slots defined, written slots stored unless kept
    /// dirty, the lazy flags in their variables.
    pub(crate) fn prepare_edge(&mut self) {
        for s in 0..SLOTS {
            if self.carried[s] && self.slot[s] == Slot::Untouched {
                let v = self.load_slot_home(s);
                self.b.def_var(self.vars[s], v);
                self.slot[s] = Slot::Live;
            }
            if self.kept_dirty(s) {
                self.dirty[s] = true;
            } else if self.dirty[s] {
                let v = self.b.use_var(self.vars[s]);
                self.store_slot_home(s, v);
                self.dirty[s] = false;
            }
        }
        if self.cc == CcState::InMemory {
            self.load_cc_vars();
            self.cc = CcState::Dynamic;
        }
    }

    /// Is carried slot `s` dirty at every member entry (stored at every
    /// exit, never at edges)? The region picks these (`kept`: written XMM
    /// halves, general registers most blocks write): a loop's counters and
    /// vector accumulators are not stored at every turn. Any other carried
    /// slot a block writes is stored at its edges: member entries start
    /// with it clean, so an exit stores only what its own block wrote so
    /// far (sortsieve: ~30% less code and compile time). Correct whatever
    /// the choice: the dirty set is exact for the slots not kept.
    fn kept_dirty(&self, s: usize) -> bool {
        self.carried[s] && self.kept[s]
    }

    /// Leave the region at a member block's boundary (nothing of the block
    /// pending), with RIP `rip`, returning link status number `self.links`.
    pub(crate) fn exit_linked(&mut self, rip: Value) {
        let st = self.k(status::LINK + self.links);
        self.links += 1;
        self.site_indirect.push(self.indirect_end);
        for s in 0..SLOTS {
            if self.dirty[s] {
                let v = self.b.use_var(self.vars[s]);
                self.store_slot_home(s, v);
            }
        }
        self.store_cc();
        self.store_field(Field::Rip, rip);
        self.b.ins().return_(&[st]);
    }

    /// Leave the region when the budget does not cover the next `n`
    /// instructions (at a member block's entry, RIP `rip`); otherwise
    /// charge them.
    pub(crate) fn member_budget_check(&mut self, n: usize, rip: u64) {
        let budget = self.load_field(Field::Budget);
        let short = self
            .b
            .ins()
            .icmp_imm_u(IntCC::UnsignedLessThan, budget, n as i64);
        let out = self.b.create_block();
        let body = self.b.create_block();
        self.b.ins().brif(short, out, &[], body, &[]);
        self.b.seal_block(out);
        self.b.seal_block(body);
        self.b.set_cold_block(out);
        self.b.switch_to_block(out);
        let r = self.k(rip);
        self.exit_linked(r);
        self.b.switch_to_block(body);
        let budget = self.b.ins().iadd_imm_s(budget, -(n as i64));
        self.store_field(Field::Budget, budget);
        let ic = self.load_field(Field::Icount);
        let ic = self.b.ins().iadd_imm_s(ic, n as i64);
        self.store_field(Field::Icount, ic);
    }

    /// End the current member block of a region. `succ` maps a RIP to the
    /// entry of the member block starting there (None: not in the region).
    /// Control goes to the member the block's RIP names when it is in the
    /// region and nothing asks to leave (`exit_req`, a pending interrupt
    /// request); otherwise the region is left with a link status.
    pub(crate) fn end_block_in_region(
        &mut self,
        succ: &mut dyn FnMut(u64, Option<CcOp>) -> Option<Block>,
        candidates: &[u64],
    ) {
        if self.returned {
            return;
        }
        let rip = if self.jumped {
            self.b.use_var(self.rip_var)
        } else {
            self.k(self.next_ip)
        };
        let konst = self.konst(rip);
        let targets: Vec<u64> = match konst {
            Some(t) => vec![t],
            None => candidates.to_vec(),
        };
        // Which of the targets are members (asked before preparing, so the
        // guess passed on is the flags' state at the edge).
        let cc_known = match self.cc {
            CcState::Known(op) => Some(op),
            _ => None,
        };
        let inside: Vec<(u64, Block)> = targets
            .iter()
            .filter_map(|&t| succ(t, cc_known).map(|b| (t, b)))
            .collect();
        if inside.is_empty() {
            self.exit_linked(rip);
            return;
        }
        self.prepare_edge();
        // Leave when something needs the engine: exit_req, or INTR (taken
        // at the engine loop top at exactly this boundary).
        let req = self.load_field(Field::ExitReq);
        let intr = self
            .b
            .ins()
            .load(I8, state_flags(), self.cpu, INTR_OFFSET as i32);
        let intr = self.b.ins().uextend(I64, intr);
        let any = self.b.ins().bor(req, intr);
        let leave = self.b.create_block();
        let stay = self.b.create_block();
        self.b.ins().brif(any, leave, &[], stay, &[]);
        self.b.seal_block(leave);
        self.b.seal_block(stay);
        self.b.set_cold_block(leave);
        self.b.switch_to_block(leave);
        self.exit_linked(rip);
        self.b.switch_to_block(stay);
        // A Jcc's RIP is `select(c, target, fall-through)`: branch on `c`.
        if let Some((c, x, y)) = self.select_of_consts(rip) {
            let find = |t: u64| inside.iter().find(|p| p.0 == t).map(|p| p.1);
            let (bx, by) = (find(x), find(y));
            let ex = bx.unwrap_or_else(|| self.b.create_block());
            let ey = by.unwrap_or_else(|| self.b.create_block());
            let c = self.truthy(c);
            self.b.ins().brif(c, ex, &[], ey, &[]);
            for (b, t, new) in [(ex, x, bx.is_none()), (ey, y, by.is_none())] {
                if new {
                    self.b.seal_block(b);
                    self.b.set_cold_block(b);
                    self.b.switch_to_block(b);
                    let r = self.k(t);
                    self.exit_linked(r);
                }
            }
            return;
        }
        if konst.is_none() && inside.len() > COMPARE_CHAIN_MAX {
            if self.indirect_end {
                // One dispatch for all indirect branches of the region: far
                // fewer edges than a `Switch` at each (compile time).
                let d = *self.dispatch.get_or_insert_with(|| self.b.create_block());
                self.b.def_var(self.dispatch_rip, rip);
                self.b.ins().jump(d, &[]);
            } else {
                self.dispatch_switch(rip, &inside);
            }
            return;
        }
        for (t, entry) in inside {
            if konst.is_some() {
                self.b.ins().jump(entry, &[]);
                return;
            }
            let hit = self.b.ins().icmp_imm_u(IntCC::Equal, rip, t as i64);
            let next = self.b.create_block();
            self.b.ins().brif(hit, entry, &[], next, &[]);
            self.b.seal_block(next);
            self.b.switch_to_block(next);
        }
        self.exit_linked(rip);
    }

    /// Jump to the member whose RIP `rip` holds, among many (`inside`),
    /// through Cranelift's `Switch` (a jump table over dense RIPs, a
    /// binary search over sparse ones); other RIPs leave the region.
    fn dispatch_switch(&mut self, rip: Value, inside: &[(u64, Block)]) {
        let mut sw = cranelift_frontend::Switch::new();
        for &(t, entry) in inside {
            sw.set_entry(t as u128, entry);
        }
        let other = self.b.create_block();
        sw.emit(self.b, rip, other);
        self.b.seal_block(other);
        self.b.switch_to_block(other);
        self.exit_linked(rip);
    }

    /// Emit the region's shared indirect-branch dispatch, if some block
    /// jumped to it: the state there is a member entry's (see
    /// [`ClifEmitter::set_entry_state`]); RIPs of `inside` go to their
    /// member, others leave through an indirect exit site.
    pub(crate) fn emit_shared_dispatch(&mut self, inside: &[(u64, Block)]) {
        let Some(d) = self.dispatch.take() else {
            return;
        };
        self.b.switch_to_block(d);
        self.set_entry_state(true, None);
        let rip = self.b.use_var(self.dispatch_rip);
        self.indirect_end = true;
        self.dispatch_switch(rip, inside);
        self.indirect_end = false;
    }

    /// Record the first reason the block cannot be compiled.
    pub(crate) fn fail(&mut self, e: JitError) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }

    // ---- CpuState access -------------------------------------------------

    pub(crate) fn load_field(&mut self, f: Field) -> Value {
        let off = offset_of_field(f) as i32;
        self.b.ins().load(I64, state_flags(), self.cpu, off)
    }

    pub(crate) fn store_field(&mut self, f: Field, v: Value) {
        let off = offset_of_field(f) as i32;
        self.b.ins().store(state_flags(), v, self.cpu, off);
    }

    fn load_slot_home(&mut self, s: usize) -> Value {
        self.b
            .ins()
            .load(I64, state_flags(), self.cpu, slot_offset(s))
    }

    fn store_slot_home(&mut self, s: usize, v: Value) {
        self.b
            .ins()
            .store(state_flags(), v, self.cpu, slot_offset(s));
    }

    fn slot_get(&mut self, s: usize) -> Value {
        if self.slot[s] == Slot::Untouched {
            let v = self.load_slot_home(s);
            self.b.def_var(self.vars[s], v);
            self.slot[s] = Slot::Live;
            return v;
        }
        self.b.use_var(self.vars[s])
    }

    fn slot_set(&mut self, s: usize, v: Value) {
        self.b.def_var(self.vars[s], v);
        self.slot[s] = Slot::Live;
        self.dirty[s] = true;
    }

    // ---- instruction bookkeeping -----------------------------------------

    /// Start compiling instruction `idx` of the block.
    pub(crate) fn begin_insn(&mut self, idx: usize, insn: &Insn) {
        self.idx = idx;
        self.ip = insn.i.ip();
        self.next_ip = mask_ip(insn.next_ip(), self.bitness);
        self.live = insn.live_out;
        self.jumped = false;
        self.called_slow_path = false;
        if idx + 1 == self.n {
            // Only the last instruction may transfer control; give the RIP
            // variable its fall-through value so a `jump` under `when`
            // merges with it.
            let v = self.b.ins().iconst(I64, self.next_ip as i64);
            self.b.def_var(self.rip_var, v);
        }
    }

    /// Finish the current instruction. Instructions other than the last
    /// leave the block early when a slow path asked for it (`exit_req`:
    /// device access, code write), exactly after the instruction.
    pub(crate) fn end_insn(&mut self) {
        let last = self.idx + 1 == self.n;
        if self.jumped && !last {
            self.fail(JitError::Internal(
                "a control transfer that does not end its block".into(),
            ));
            return;
        }
        if !last && self.called_slow_path {
            let req = self.load_field(Field::ExitReq);
            let st = self.k(status::COMPLETED);
            // After instruction idx is before instruction idx + 1.
            self.branch_to_exit(req, self.idx + 1, st);
        }
        // Every branch to the exit before this instruction is emitted.
        if let Some(b) = self.exits[self.idx] {
            self.b.seal_block(b);
        }
    }

    /// Compile the current instruction as a call to the interpreter's
    /// handler ([`runtime::exec_insn`] with helper index `j`). Everything
    /// the block holds in variables goes to `CpuState` first, and is
    /// reloaded from there afterwards. Any answer but "continue" is
    /// returned as the block's status at once: the helper has left
    /// `CpuState` complete and exact (counts, RIP, `exit_req`).
    pub(crate) fn call_interp(&mut self, j: usize) {
        self.flush_state();
        let ctx = self.ctx;
        let j = self.k(j as u64);
        let adj = self.k(self.pending_count());
        let st = self.call_helper(
            self.sigs.exec,
            runtime::exec_insn as *const (),
            &[ctx, j, adj],
        );
        if self.idx + 1 == self.n {
            // "Continue" after the last instruction is "completed", and RIP
            // is where the interpreter put it.
            self.b.ins().return_(&[st]);
            self.returned = true;
            return;
        }
        let ret = self.b.create_block();
        let cont = self.b.create_block();
        self.b.ins().brif(st, ret, &[], cont, &[]);
        self.b.seal_block(ret);
        self.b.seal_block(cont);
        self.b.set_cold_block(ret);
        self.b.switch_to_block(ret);
        self.b.ins().return_(&[st]);
        self.b.switch_to_block(cont);
    }

    /// Store every register and the lazy flags the block changed, and
    /// forget what the block knows about them: from here on they are read
    /// from `CpuState` again (a helper may have changed them).
    fn flush_state(&mut self) {
        for s in 0..SLOTS {
            if self.dirty[s] {
                let v = self.b.use_var(self.vars[s]);
                self.store_slot_home(s, v);
            }
        }
        self.store_cc();
        self.slot = [Slot::Untouched; SLOTS];
        self.dirty = [false; SLOTS];
        self.cc = CcState::InMemory;
        self.sse_ok = false;
    }

    /// The exit status for the static exception `ex`.
    fn static_status(&mut self, ex: Exception) -> Value {
        let k = self
            .statics
            .iter()
            .position(|&e| e == ex)
            .unwrap_or_else(|| {
                self.statics.push(ex);
                self.statics.len() - 1
            });
        self.k(status::STATIC_FAULT + k as u64)
    }

    /// Leave the block because the current instruction raises `ex` (known
    /// at compile time). Terminates the current Cranelift block.
    pub(crate) fn static_fault(&mut self, ex: Exception) {
        let st = self.static_status(ex);
        let exit = self.exit_block(self.idx);
        self.b.ins().jump(exit, &[BlockArg::Value(st)]);
        self.fill_new_exit();
    }

    /// When `c` is non-zero, leave the block at boundary `k` (before
    /// instruction k) returning `status`; else continue in a new block.
    pub(crate) fn branch_to_exit(&mut self, c: Value, k: usize, status: Value) {
        let exit = self.exit_block(k);
        let cont = self.b.create_block();
        let c = self.truthy(c);
        self.b
            .ins()
            .brif(c, exit, &[BlockArg::Value(status)], cont, &[]);
        self.b.seal_block(cont);
        self.fill_new_exit();
        self.b.switch_to_block(cont);
    }

    /// Index of the current instruction (its exit boundary on a fault).
    pub(crate) fn insn_index(&self) -> usize {
        self.idx
    }

    /// The exit block of boundary `k` ("before instruction k": k
    /// instructions retired, RIP at instruction k). One per boundary, shared
    /// by every fault of instruction k and the `exit_req` check after
    /// instruction k-1: by the rule that semantic functions write nothing
    /// before their last fallible step, all of them leave the same state.
    fn exit_block(&mut self, k: usize) -> Block {
        if let Some(b) = self.exits[k] {
            return b;
        }
        let b = self.b.create_block();
        self.b.append_block_param(b, I64);
        self.b.set_cold_block(b);
        self.exits[k] = Some(b);
        self.new_exit = Some((b, k));
        b
    }

    /// Fill an exit block created by the branch just emitted (which ended
    /// the current block). The compile-time state now is the boundary's.
    fn fill_new_exit(&mut self) {
        let Some((b, k)) = self.new_exit.take() else {
            return;
        };
        self.b.switch_to_block(b);
        let st = self.b.block_params(b)[0];
        let adj = (self.n - k) as u64;
        self.emit_exit(self.ips[k], adj, st);
    }

    /// Store everything the block changed, correct the counts by the `adj`
    /// instructions that did not retire, and return `status`.
    fn emit_exit(&mut self, rip: u64, adj: u64, status: Value) {
        for s in 0..SLOTS {
            if self.dirty[s] {
                let v = self.b.use_var(self.vars[s]);
                self.store_slot_home(s, v);
            }
        }
        self.store_cc();
        let rip = self.b.ins().iconst(I64, rip as i64);
        self.store_field(Field::Rip, rip);
        if adj != 0 {
            let ic = self.load_field(Field::Icount);
            let ic = self.b.ins().iadd_imm_s(ic, -(adj as i64));
            self.store_field(Field::Icount, ic);
            let bu = self.load_field(Field::Budget);
            let bu = self.b.ins().iadd_imm_s(bu, adj as i64);
            self.store_field(Field::Budget, bu);
        }
        self.b.ins().return_(&[status]);
    }

    /// Write the block's lazy-flags state to `CpuState` (if it has one).
    fn store_cc(&mut self) {
        match self.cc {
            CcState::InMemory => {}
            CcState::Known(op) => {
                let v = self.b.ins().iconst(I64, op.raw() as i64);
                self.store_field(Field::CcOp, v);
                if op != CcOp::EFLAGS {
                    self.store_cc_operands();
                }
            }
            CcState::Dynamic => {
                let v = self.b.use_var(self.cc_vars[0]);
                self.store_field(Field::CcOp, v);
                self.store_cc_operands();
            }
        }
    }

    fn store_cc_operands(&mut self) {
        for (i, f) in [Field::CcDst, Field::CcSrc, Field::CcSrc2]
            .into_iter()
            .enumerate()
        {
            let v = self.b.use_var(self.cc_vars[i + 1]);
            self.store_field(f, v);
        }
    }

    /// Put the lazy state (and the raw RFLAGS word, which EFLAGS-kind state
    /// reads) in `CpuState` so a helper can evaluate it. Harmless for a
    /// later fault exit: reads come before writes, so what is stored is the
    /// state before the current instruction.
    fn spill_flags(&mut self) {
        self.store_cc();
        if self.dirty[RFLAGS_SLOT] {
            let v = self.b.use_var(self.vars[RFLAGS_SLOT]);
            self.store_field(Field::Rflags, v);
        }
    }

    /// The lazy state as IR values, for an operation known statically.
    fn lazy_values(&mut self, op: CcOp, with_rflags: bool) -> Lazy<Value> {
        let dst = self.b.use_var(self.cc_vars[1]);
        let src = self.b.use_var(self.cc_vars[2]);
        let src2 = self.b.use_var(self.cc_vars[3]);
        let rflags = if with_rflags || op.kind() == flags::CcKind::Eflags {
            self.slot_get(RFLAGS_SLOT)
        } else {
            dst // not read by the formulas of this kind
        };
        Lazy {
            op,
            dst,
            src,
            src2,
            rflags,
        }
    }

    /// Call a helper through a function pointer constant.
    pub(crate) fn call_helper(&mut self, sig: SigRef, f: *const (), args: &[Value]) -> Value {
        let callee = self.b.ins().iconst(I64, f as usize as i64);
        let call = self.b.ins().call_indirect(sig, callee, args);
        self.b.inst_results(call)[0]
    }

    /// Instruction count not yet retired before the current instruction
    /// (what helpers subtract to see the exact `icount`).
    pub(crate) fn pending_count(&self) -> u64 {
        (self.n - self.idx) as u64
    }

    // ---- value helpers ----------------------------------------------------

    /// The constant behind `v`, if it is an `iconst`.
    fn konst(&self, v: Value) -> Option<u64> {
        let dfg = &self.b.func.dfg;
        if let ValueDef::Result(inst, 0) = dfg.value_def(v) {
            if let InstructionData::UnaryImm {
                opcode: Opcode::Iconst,
                imm,
            } = dfg.insts[inst]
            {
                return Some(imm.bits() as u64);
            }
        }
        None
    }

    /// `(c, x, y)` when `v` is `select(c, x, y)` of two constants.
    fn select_of_consts(&self, v: Value) -> Option<(Value, u64, u64)> {
        let dfg = &self.b.func.dfg;
        let ValueDef::Result(inst, 0) = dfg.value_def(v) else {
            return None;
        };
        if dfg.insts[inst].opcode() != Opcode::Select {
            return None;
        }
        let args = dfg.inst_args(inst);
        let (c, x, y) = (args[0], args[1], args[2]);
        Some((c, self.konst(x)?, self.konst(y)?))
    }

    /// `uextend(icmp cc a b)` as `(cc, a, b)`.
    fn extended_compare(&self, v: Value) -> Option<(IntCC, Value, Value)> {
        let dfg = &self.b.func.dfg;
        let ValueDef::Result(inst, 0) = dfg.value_def(v) else {
            return None;
        };
        let InstructionData::Unary {
            opcode: Opcode::Uextend,
            arg,
        } = dfg.insts[inst]
        else {
            return None;
        };
        let ValueDef::Result(src, 0) = dfg.value_def(arg) else {
            return None;
        };
        match dfg.insts[src] {
            InstructionData::IntCompare {
                opcode: Opcode::Icmp,
                cond,
                args,
            } => Some((cond, args[0], args[1])),
            _ => None,
        }
    }

    fn k(&mut self, v: u64) -> Value {
        self.b.ins().iconst(I64, v as i64)
    }

    /// A condition value usable by `brif`/`select` (non-zero = true): a
    /// 0/1 produced by a comparison is replaced by the comparison itself.
    pub(crate) fn truthy(&self, c: Value) -> Value {
        let dfg = &self.b.func.dfg;
        if let ValueDef::Result(inst, 0) = dfg.value_def(c) {
            if let InstructionData::Unary {
                opcode: Opcode::Uextend,
                arg,
            } = dfg.insts[inst]
            {
                if let ValueDef::Result(src, 0) = dfg.value_def(arg) {
                    if dfg.insts[src].opcode() == Opcode::Icmp {
                        return arg;
                    }
                }
            }
        }
        c
    }

    fn compare(&mut self, cc: IntCC, a: Value, b: Value) -> Value {
        if let (Some(x), Some(y)) = (self.konst(a), self.konst(b)) {
            let r = match cc {
                IntCC::Equal => x == y,
                IntCC::NotEqual => x != y,
                IntCC::UnsignedLessThan => x < y,
                IntCC::UnsignedLessThanOrEqual => x <= y,
                IntCC::SignedLessThan => (x as i64) < (y as i64),
                _ => (x as i64) <= (y as i64),
            };
            return self.k(r as u64);
        }
        let c = self.b.ins().icmp(cc, a, b);
        self.b.ins().uextend(I64, c)
    }
}

/// A binary operation that folds when both operands are constants.
macro_rules! binop {
    ($name:ident, $ins:ident, $fold:expr) => {
        #[inline]
        fn $name(&mut self, a: Value, b: Value) -> Value {
            if let (Some(x), Some(y)) = (self.konst(a), self.konst(b)) {
                let f: fn(u64, u64) -> u64 = $fold;
                return self.k(f(x, y));
            }
            self.b.ins().$ins(a, b)
        }
    };
}

/// A unary operation that folds on a constant.
macro_rules! unop {
    ($name:ident, $ins:ident, $fold:expr) => {
        #[inline]
        fn $name(&mut self, a: Value) -> Value {
            if let Some(x) = self.konst(a) {
                let f: fn(u64) -> u64 = $fold;
                return self.k(f(x));
            }
            self.b.ins().$ins(a)
        }
    };
}

impl Ops for ClifEmitter<'_, '_> {
    type V = Value;

    fn imm(&mut self, v: u64) -> Value {
        self.k(v)
    }

    /// Adding a constant 0 (a memory operand's zero displacement) is the
    /// other operand: no instruction.
    fn add(&mut self, a: Value, b: Value) -> Value {
        match (self.konst(a), self.konst(b)) {
            (Some(x), Some(y)) => self.k(x.wrapping_add(y)),
            (Some(0), _) => b,
            (_, Some(0)) => a,
            _ => self.b.ins().iadd(a, b),
        }
    }
    binop!(sub, isub, |a, b| a.wrapping_sub(b));
    binop!(mul, imul, |a, b| a.wrapping_mul(b));
    binop!(umulhi, umulhi, |a, b| ((a as u128 * b as u128) >> 64)
        as u64);
    binop!(smulhi, smulhi, |a, b| {
        ((a as i64 as i128 * b as i64 as i128) >> 64) as u64
    });
    binop!(and, band, |a, b| a & b);
    binop!(or, bor, |a, b| a | b);
    /// A 0/1 compare result XOR 1 (the odd conditions) is the inverse
    /// compare, which `truthy` then hands to the branch as it is.
    fn xor(&mut self, a: Value, b: Value) -> Value {
        if let (Some(x), Some(y)) = (self.konst(a), self.konst(b)) {
            return self.k(x ^ y);
        }
        if self.konst(b) == Some(1) {
            if let Some((cc, l, r)) = self.extended_compare(a) {
                let c = self.b.ins().icmp(cc.complement(), l, r);
                return self.b.ins().uextend(I64, c);
            }
        }
        self.b.ins().bxor(a, b)
    }
    unop!(not, bnot, |a| !a);
    unop!(neg, ineg, |a| a.wrapping_neg());
    // Cranelift masks shift and rotate amounts to the type width (63),
    // exactly the `n & 63` the trait asks for.
    binop!(shl, ishl, |a, n| a << (n & 63));
    binop!(shr, ushr, |a, n| a >> (n & 63));
    binop!(sar, sshr, |a, n| ((a as i64) >> (n & 63)) as u64);
    binop!(rotl, rotl, |a, n| a.rotate_left((n & 63) as u32));
    binop!(rotr, rotr, |a, n| a.rotate_right((n & 63) as u32));
    unop!(popcnt, popcnt, |a| a.count_ones() as u64);
    unop!(ctz, ctz, |a| a.trailing_zeros() as u64);
    unop!(clz, clz, |a| a.leading_zeros() as u64);
    unop!(bswap, bswap, |a| a.swap_bytes());

    fn eq(&mut self, a: Value, b: Value) -> Value {
        self.compare(IntCC::Equal, a, b)
    }
    fn ne(&mut self, a: Value, b: Value) -> Value {
        self.compare(IntCC::NotEqual, a, b)
    }
    fn ult(&mut self, a: Value, b: Value) -> Value {
        self.compare(IntCC::UnsignedLessThan, a, b)
    }
    fn ule(&mut self, a: Value, b: Value) -> Value {
        self.compare(IntCC::UnsignedLessThanOrEqual, a, b)
    }
    fn slt(&mut self, a: Value, b: Value) -> Value {
        self.compare(IntCC::SignedLessThan, a, b)
    }
    fn sle(&mut self, a: Value, b: Value) -> Value {
        self.compare(IntCC::SignedLessThanOrEqual, a, b)
    }

    fn select(&mut self, c: Value, a: Value, b: Value) -> Value {
        if let Some(k) = self.konst(c) {
            return if k != 0 { a } else { b };
        }
        let c = self.truthy(c);
        self.b.ins().select(c, a, b)
    }

    /// Narrow widths through a narrow type: folds, and reads better in CLIF
    /// than a mask.
    fn zext(&mut self, a: Value, w: Width) -> Value {
        if w == Width::Q {
            return a;
        }
        if let Some(x) = self.konst(a) {
            return self.k(x & w.mask());
        }
        let t = self.b.ins().ireduce(ty_of(w), a);
        self.b.ins().uextend(I64, t)
    }

    fn sext(&mut self, a: Value, w: Width) -> Value {
        if w == Width::Q {
            return a;
        }
        if let Some(x) = self.konst(a) {
            let s = 64 - w.bits();
            return self.k((((x << s) as i64) >> s) as u64);
        }
        let t = self.b.ins().ireduce(ty_of(w), a);
        self.b.ins().sextend(I64, t)
    }
}

impl Emitter for ClifEmitter<'_, '_> {
    fn reg(&mut self, r: Gpr) -> Value {
        self.slot_get(r as usize)
    }

    fn set_reg(&mut self, r: Gpr, v: Value) {
        self.slot_set(r as usize, v);
    }

    fn seg_base(&mut self, s: Seg) -> Value {
        // Segment loads end their block, so the base is constant within it;
        // a load per use keeps the dominance question away.
        self.load_field(Field::SegBase(s))
    }

    fn load(&mut self, lin: Value, w: Width) -> SemResult<Value> {
        Ok(super::mem::emit_load(self, lin, w))
    }

    fn store(&mut self, lin: Value, w: Width, v: Value) -> SemResult {
        super::mem::emit_store(self, lin, w, v);
        Ok(())
    }

    fn load16(&mut self, lin: Value) -> SemResult<(Value, Value)> {
        Ok(super::mem::emit_load16(self, lin))
    }

    fn store16(&mut self, lin: Value, lo: Value, hi: Value) -> SemResult {
        super::mem::emit_store16(self, lin, lo, hi);
        Ok(())
    }

    fn set_cc(&mut self, op: CcOp, dst: Value, src: Value, src2: Value) {
        let o = self.k(op.raw() as u64);
        for (var, v) in self.cc_vars.into_iter().zip([o, dst, src, src2]) {
            self.b.def_var(var, v);
        }
        self.cc = CcState::Known(op);
    }

    fn cond(&mut self, cc: Cond) -> Value {
        if let CcState::Known(op) = self.cc {
            let l = self.lazy_values(op, false);
            return flags::cond(self, cc, &l);
        }
        self.guarded(
            false,
            |e, l| flags::cond(e, cc, l),
            |e| {
                let cc = e.k(cc as u64);
                let cpu = e.cpu;
                e.call_helper(e.sigs.cond, runtime::cond as *const (), &[cpu, cc])
            },
        )
    }

    fn rflags(&mut self) -> Value {
        if let CcState::Known(op) = self.cc {
            let l = self.lazy_values(op, true);
            return flags::materialize(self, &l);
        }
        self.guarded(true, flags::materialize, |e| {
            let cpu = e.cpu;
            e.call_helper(e.sigs.rflags, runtime::rflags as *const (), &[cpu])
        })
    }

    fn set_rflags(&mut self, v: Value) {
        // As `CpuState::set_rflags`: only existing bits, bit 1 set.
        let v = self.and_imm(v, RFLAGS_WRITABLE);
        let fixed = self.k(RFLAGS_FIXED);
        let v = self.or(v, fixed);
        self.slot_set(RFLAGS_SLOT, v);
        // The operands are meaningless for EFLAGS but defined, so a later
        // merge with another operation has a value on every path.
        let z = self.k(0);
        self.set_cc(CcOp::EFLAGS, z, z, z);
    }

    fn flags_live(&self) -> FlagSet {
        self.live
    }

    fn jump(&mut self, target: Value) {
        let t = match self.bitness {
            64 => target,
            32 => self.zext(target, Width::D),
            _ => self.zext(target, Width::W),
        };
        self.b.def_var(self.rip_var, t);
        self.jumped = true;
    }

    fn when<F>(&mut self, c: Value, f: F) -> SemResult
    where
        F: FnOnce(&mut Self) -> SemResult,
    {
        if let Some(k) = self.konst(c) {
            return if k != 0 { f(self) } else { Ok(()) };
        }
        let body = self.b.create_block();
        let els = self.b.create_block();
        let merge = self.b.create_block();
        let cb = self.truthy(c);
        self.b.ins().brif(cb, body, &[], els, &[]);
        self.b.seal_block(body);
        self.b.seal_block(els);
        let before = (self.slot, self.dirty, self.cc, self.jumped);
        let sse_before = self.sse_ok;

        self.b.switch_to_block(body);
        let reached = match f(self) {
            Ok(()) => {
                self.b.ins().jump(merge, &[]);
                true
            }
            Err(Stop::Fault(ex)) => {
                self.static_fault(ex);
                false
            }
            Err(Stop::Restart) => {
                self.fail(JitError::Unsupported("restart under `when`".into()));
                self.static_fault(Exception::ud());
                false
            }
        };

        self.b.switch_to_block(els);
        if reached {
            self.merge_untaken(before.0, before.2);
        } else {
            (self.slot, self.dirty, self.cc, self.jumped) = before;
        }
        self.b.ins().jump(merge, &[]);
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
        // A check made only on the body's path does not hold after it.
        self.sse_ok = sse_before;
        Ok(())
    }

    fn raise_if(&mut self, c: Value, ex: Exception) -> SemResult {
        if let Some(k) = self.konst(c) {
            return if k != 0 { Err(Stop::Fault(ex)) } else { Ok(()) };
        }
        let st = self.static_status(ex);
        self.branch_to_exit(c, self.idx, st);
        Ok(())
    }

    fn xmm(&mut self, n: usize, high: bool) -> Value {
        self.slot_get(xmm_slot(n, high))
    }

    fn set_xmm(&mut self, n: usize, high: bool, v: Value) {
        self.slot_set(xmm_slot(n, high), v);
    }

    fn cr0(&mut self) -> Value {
        let off = core::mem::offset_of!(CpuState, cr0) as i32;
        self.b.ins().load(I64, state_flags(), self.cpu, off)
    }

    fn cr4(&mut self) -> Value {
        let off = core::mem::offset_of!(CpuState, cr4) as i32;
        self.b.ins().load(I64, state_flags(), self.cpu, off)
    }

    fn sse_checked(&mut self) -> bool {
        self.sse_ok
    }

    fn set_sse_checked(&mut self) {
        self.sse_ok = true;
    }

    fn probe_write(&mut self, lin: Value, len: u64) -> SemResult {
        // Only a range that crosses a page needs the check (the cold call).
        let in_page = self.and_imm(lin, 0xfff);
        let limit = self.k(0x1000 - len);
        let cross = self.ult(limit, in_page);
        self.when(cross, |e| {
            super::mem::emit_probe_write(e, lin, len);
            Ok(())
        })
    }

    fn bitness(&self) -> u32 {
        self.bitness
    }

    fn stack_bits(&self) -> u32 {
        // SS.B is run-time state the block key does not include: the block
        // is compiled for one value and not entered under the other.
        self.stack_bits
    }
}

impl ClifEmitter<'_, '_> {
    /// A flags read when the operation is not known at compile time: with
    /// a guess and the lazy state in variables, test the operation at run
    /// time and inline `fast` for the guessed one, else (or without a
    /// guess) spill the lazy state and call the helper (`slow`).
    fn guarded(
        &mut self,
        with_rflags: bool,
        fast: impl FnOnce(&mut Self, &Lazy<Value>) -> Value,
        slow: impl FnOnce(&mut Self) -> Value,
    ) -> Value {
        let guess = match (self.cc, self.guess) {
            (CcState::Dynamic, Some(g)) => g,
            _ => {
                self.spill_flags();
                return slow(self);
            }
        };
        // Everything both paths read is loaded here, before the branch, so
        // no variable is defined on one path only.
        let l = self.lazy_values(guess, with_rflags);
        let op = self.b.use_var(self.cc_vars[0]);
        let hit = self
            .b
            .ins()
            .icmp_imm_u(IntCC::Equal, op, guess.raw() as i64);
        let fast_b = self.b.create_block();
        let slow_b = self.b.create_block();
        let merge = self.b.create_block();
        let v = self.b.append_block_param(merge, I64);
        self.b.ins().brif(hit, fast_b, &[], slow_b, &[]);
        self.b.seal_block(fast_b);
        self.b.seal_block(slow_b);
        self.b.set_cold_block(slow_b);
        self.b.switch_to_block(fast_b);
        let fv = fast(self, &l);
        self.b.ins().jump(merge, &[BlockArg::Value(fv)]);
        self.b.switch_to_block(slow_b);
        self.spill_flags();
        let sv = slow(self);
        self.b.ins().jump(merge, &[BlockArg::Value(sv)]);
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
        v
    }

    /// On the path that skipped a `when` body (the current block), give a
    /// value to everything the body defined for the first time, so the
    /// merge sees it defined on both paths.
    fn merge_untaken(&mut self, slots_before: [Slot; SLOTS], cc_before: CcState) {
        for (s, before) in slots_before.into_iter().enumerate() {
            if before == Slot::Untouched && self.slot[s] == Slot::Live {
                let v = self.load_slot_home(s);
                self.b.def_var(self.vars[s], v);
            }
        }
        if self.cc == cc_before {
            return;
        }
        if cc_before == CcState::InMemory {
            let fields = [Field::CcOp, Field::CcDst, Field::CcSrc, Field::CcSrc2];
            for (var, f) in self.cc_vars.into_iter().zip(fields) {
                let v = self.load_field(f);
                self.b.def_var(var, v);
            }
        }
        // The two paths may hold different operations: only the op
        // variable knows (it is defined on both: `set_cc` always defines it).
        self.cc = CcState::Dynamic;
    }
}
