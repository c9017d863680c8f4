//! Decoded blocks and their cache.
//!
//! A block is a run of decoded instructions starting at one RIP. It ends at
//! a control transfer, at an instruction that must end a block (device
//! access, interrupt-flag or mode change, see [`ends_block`]), before an
//! instruction that would start on the next page, or at [`MAX_BLOCK_INSNS`].
//! Block formation is a pure function of RIP, mode and guest bytes, so both
//! engines see the same block boundaries (and interrupts are only taken
//! there).
//!
//! Each instruction is decoded once, when its block is built, and carries
//! the flags that are live after it and the interpreter handler resolved
//! for it. A write to a physical page a block was decoded from drops the
//! block (see `GuestMemory::mark_code_page`).

use crate::emit::SemResult;
use crate::exception::Exception;
use crate::flags::FlagSet;
use crate::interp::Interp;
use crate::memory::GuestPhysAddr;
use crate::mmu;
use crate::semantics::{self, operand};
use iced_x86::{Decoder, FlowControl, Instruction, Mnemonic, OpKind};
use std::collections::HashMap;
use std::rc::Rc;

/// Longest block, in instructions.
pub const MAX_BLOCK_INSNS: usize = 64;

/// The interpreter's handler for one instruction.
pub type InterpFn = fn(&mut Interp, &Insn) -> SemResult;

/// One decoded instruction.
#[derive(Clone)]
pub struct Insn {
    /// The decoded form (operands, prefixes, next IP).
    pub i: Instruction,
    /// Arithmetic flags some later instruction may read before they are
    /// overwritten. Everything is live at the end of a block and at any
    /// instruction that can fault.
    pub live_out: FlagSet,
    /// How the interpreter executes it.
    pub exec: InterpFn,
    /// Operands 0–2, decoded once.
    pub ops: [operand::OpDesc; 3],
    /// The memory operand, decoded once (meaningless without one).
    pub mem: operand::MemDesc,
}

impl Insn {
    /// RIP of the instruction after this one.
    #[inline(always)]
    pub fn next_ip(&self) -> u64 {
        self.i.next_ip()
    }
}

impl std::fmt::Debug for Insn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}: {}", self.i.ip(), self.i)
    }
}

/// What identifies a translation: where it starts and how it was decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// RIP (offset in CS) of the first instruction.
    pub rip: u64,
    /// CS base, so that the same RIP under another CS is another block.
    pub cs_base: u64,
    /// 16, 32 or 64.
    pub bitness: u32,
}

/// A decoded block.
pub struct Block {
    pub key: BlockKey,
    /// Physical address of the first byte (checked on every lookup, so a
    /// remapped linear address never runs stale code).
    pub phys: u64,
    /// Physical pages the block's bytes come from (one or two).
    pub pages: [u64; 2],
    pub insns: Vec<Insn>,
    /// How many times the block has been entered.
    pub exec_count: std::cell::Cell<u64>,
    /// How many of those entries resumed in the middle of another block,
    /// where the last budget slice ended (see `Engine::run`).
    pub cut_entries: std::cell::Cell<u64>,
    /// The JIT's translation, once the engine has tried to compile the
    /// block as a region head: `Some` compiled (member 0 of its region),
    /// `None` compilation failed (not retried). It is dropped with the
    /// block (a code write drops both).
    pub compiled: std::cell::OnceCell<Option<RegionEntry>>,
    /// The newest region holding the block as a member other than its
    /// head, where the engine enters it (before its own region, if any). The members of a region all
    /// come from one physical page, so a code write there drops every
    /// block holding the region, and with the last of them the code.
    pub member: std::cell::RefCell<Option<RegionEntry>>,
    /// The blocks that last ran after this one, [0] at a jump target, [1]
    /// at the fall-through RIP: a cache in front of [`BlockCache::get`],
    /// see [`BlockCache::get_linked`].
    succ: [std::cell::Cell<Link>; 2],
    /// RIP after the last instruction (where the block falls through).
    fallthrough: u64,
    /// The last instruction is an indirect near JMP/CALL.
    indirect_end: bool,
    /// The block has been entered right after an indirect near JMP/CALL
    /// (the engine marks it): a region whose member jumps indirectly takes
    /// it in and compares the computed target with it.
    indirect_target: std::cell::Cell<bool>,
}

/// Where a block is entered in compiled code: member `member` of `region`.
#[derive(Clone)]
pub struct RegionEntry {
    pub region: Rc<crate::cranelift::CompiledBlock>,
    pub member: usize,
}

/// A remembered successor. It stands for "`BlockCache::get` returns
/// `block`" while the cache's generation is still `gen` (no block has left
/// the map since, so `block`, which was in it, still is and is alive) and
/// the code TLB still maps the block's linear address to `host` (so the
/// lookup would hit the TLB, with no page walk, and find the same physical
/// address).
#[derive(Clone, Copy)]
pub struct Link {
    gen: u64,
    host: u64,
    /// `block.key`, kept here so the check needs no load from the block.
    key: BlockKey,
    block: *const Block,
}

impl Default for Link {
    fn default() -> Link {
        Link {
            gen: u64::MAX, // never current
            host: 0,
            key: BlockKey {
                rip: 0,
                cs_base: 0,
                bitness: 0,
            },
            block: std::ptr::null(),
        }
    }
}

/// Most blocks in one region.
pub const MAX_REGION_BLOCKS: usize = 32;
/// Most instructions in one region (compile time grows with its size).
pub const MAX_REGION_INSNS: usize = 320;

impl Block {
    /// Where the last instruction may send control, when it is a plain
    /// direct branch (JMP/Jcc/LOOP/JRCXZ/CALL rel, with the CALL's return
    /// site) or the block was cut by its length or the page end: the blocks
    /// a region grows by; an indirect near CALL gives its return site.
    /// Block ends that change interrupt acceptability, need the machine or
    /// jump indirectly give nothing else (a near RET may still stay in the
    /// region: see `Block::return_site`; indirect targets join through
    /// `BlockCache::region`).
    pub fn static_successors(&self) -> Vec<u64> {
        let Some(last) = self.insns.last() else {
            return Vec::new();
        };
        let i = &last.i;
        let bits = self.key.bitness;
        let fall = crate::interp::mask_ip(i.next_ip(), bits);
        let near = matches!(
            i.op0_kind(),
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
        );
        if i.is_invalid() {
            return Vec::new();
        }
        let target = || crate::interp::mask_ip(i.near_branch_target(), bits);
        match i.flow_control() {
            FlowControl::Next if !ends_block(i) => vec![fall],
            FlowControl::UnconditionalBranch if near => vec![target()],
            // The return site: a near RET of the region may come back to it.
            FlowControl::Call if near => vec![target(), fall],
            FlowControl::ConditionalBranch if near => vec![target(), fall],
            // The return site of an indirect near CALL (its targets join
            // through `BlockCache::region`'s indirect targets).
            FlowControl::IndirectCall if self.indirect_end => vec![fall],
            _ => Vec::new(),
        }
    }

    /// The RIP after the last instruction when it is a near CALL, direct
    /// or indirect (where the callee's near RET normally returns).
    pub fn return_site(&self) -> Option<u64> {
        let i = &self.insns.last()?.i;
        let direct = matches!(
            i.op0_kind(),
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
        );
        let indirect_near = i.flow_control() == FlowControl::IndirectCall && self.indirect_end;
        (i.flow_control() == FlowControl::Call && direct || indirect_near)
            .then(|| crate::interp::mask_ip(i.next_ip(), self.key.bitness))
    }

    /// Is the last instruction an indirect near JMP or CALL (register or
    /// memory operand)? Far transfers are not: they change CS.
    pub fn ends_in_indirect_branch(&self) -> bool {
        self.indirect_end
    }

    /// Has the block been entered right after an indirect near JMP/CALL?
    pub fn is_indirect_target(&self) -> bool {
        self.indirect_target.get()
    }

    /// Remember that the block was entered right after an indirect near
    /// JMP/CALL (a hint for region formation only: any answer is safe).
    #[inline(always)]
    pub fn mark_indirect_target(&self) {
        self.indirect_target.set(true);
    }

    /// Is the last instruction a near RET?
    pub fn ends_in_near_ret(&self) -> bool {
        self.insns
            .last()
            .is_some_and(|i| i.i.mnemonic() == Mnemonic::Ret)
    }
}

/// Must this instruction be the last of its block? Control transfers,
/// device accesses, and everything that changes interrupt acceptability,
/// paging, privilege or the decoding mode.
pub fn ends_block(i: &Instruction) -> bool {
    if i.flow_control() != FlowControl::Next {
        return true;
    }
    use Mnemonic as M;
    matches!(
        i.mnemonic(),
        M::Hlt
            | M::Sti
            | M::Cli
            | M::Popf
            | M::Popfd
            | M::Popfq
            | M::Iret
            | M::Iretd
            | M::Iretq
            | M::In
            | M::Out
            | M::Insb
            | M::Insw
            | M::Insd
            | M::Outsb
            | M::Outsw
            | M::Outsd
            | M::Rdmsr
            | M::Wrmsr
            | M::Lgdt
            | M::Lidt
            | M::Lldt
            | M::Ltr
            | M::Lmsw
            | M::Clts
            | M::Invlpg
            | M::Swapgs
            | M::Wbinvd
            | M::Invd
            | M::Rsm
            | M::Cpuid
            | M::Pause
            | M::Lds
            | M::Les
            | M::Lfs
            | M::Lgs
            | M::Lss
    ) || is_mov_to_system_reg(i)
        || is_pop_sreg(i)
        || is_ss_load(i)
        || (i.has_rep_prefix() || i.has_repne_prefix()) && i.is_string_instruction()
}

/// An indirect near JMP or CALL (target in a register or memory).
fn is_near_indirect(i: &Instruction) -> bool {
    !i.is_invalid()
        && matches!(
            i.flow_control(),
            FlowControl::IndirectBranch | FlowControl::IndirectCall
        )
        && !i.is_jmp_far_indirect()
        && !i.is_call_far_indirect()
}

fn is_mov_to_system_reg(i: &Instruction) -> bool {
    use iced_x86::Register as R;
    if i.mnemonic() != Mnemonic::Mov || i.op0_kind() != OpKind::Register {
        return false;
    }
    let r = i.op0_register();
    r.is_cr() || r.is_dr() || matches!(r, R::ES | R::CS | R::DS | R::FS | R::GS)
}

/// POP DS/ES/FS/GS/SS: segment loads end the block like MOV Sreg.
fn is_pop_sreg(i: &Instruction) -> bool {
    i.mnemonic() == Mnemonic::Pop
        && i.op0_kind() == OpKind::Register
        && i.op0_register().is_segment_register()
}

fn is_ss_load(i: &Instruction) -> bool {
    use iced_x86::Register as R;
    (i.mnemonic() == Mnemonic::Mov || i.mnemonic() == Mnemonic::Pop)
        && i.op0_kind() == OpKind::Register
        && i.op0_register() == R::SS
}

/// Compute `live_out` for every instruction, backwards from an all-live end.
fn compute_liveness(insns: &mut [Insn]) {
    let mut live = FlagSet::ARITH;
    for insn in insns.iter_mut().rev() {
        insn.live_out = live;
        let i = &insn.i;
        let read = FlagSet::from_iced(i.rflags_read()) & FlagSet::ARITH;
        let may_keep_old = matches!(
            i.mnemonic(),
            Mnemonic::Shl
                | Mnemonic::Shr
                | Mnemonic::Sar
                | Mnemonic::Sal
                | Mnemonic::Rol
                | Mnemonic::Ror
                | Mnemonic::Rcl
                | Mnemonic::Rcr
                | Mnemonic::Shld
                | Mnemonic::Shrd
        );
        let may_fault = (0..i.op_count()).any(|n| {
            matches!(
                i.op_kind(n),
                OpKind::Memory
                    | OpKind::MemorySegSI
                    | OpKind::MemorySegESI
                    | OpKind::MemorySegRSI
                    | OpKind::MemorySegDI
                    | OpKind::MemorySegEDI
                    | OpKind::MemorySegRDI
                    | OpKind::MemoryESDI
                    | OpKind::MemoryESEDI
                    | OpKind::MemoryESRDI
            )
        }) || i.is_stack_instruction()
            || matches!(i.mnemonic(), Mnemonic::Div | Mnemonic::Idiv | Mnemonic::Aam);
        if may_fault {
            // A fault here shows the guest the flags as they are now.
            live = FlagSet::ARITH;
        } else if !may_keep_old {
            let written = FlagSet::from_iced(i.rflags_modified()) & FlagSet::ARITH;
            live -= written;
        }
        live |= read;
    }
}

/// The cache of decoded blocks, with a per-page index for invalidation and
/// a small direct-mapped table in front of the hash map.
pub struct BlockCache {
    map: HashMap<BlockKey, Rc<Block>>,
    by_page: HashMap<u64, Vec<BlockKey>>,
    fast: Vec<Option<Rc<Block>>>,
    /// Blocks decoded since creation.
    pub decoded: u64,
    /// Blocks dropped because their code was written.
    pub invalidated: u64,
    /// Bumped whenever a block leaves the map (dropped or replaced), which
    /// voids every successor link made before.
    gen: u64,
    /// RIPs blocks end before (breakpoints: see `Engine::set_breakpoints`).
    breakpoints: std::collections::BTreeSet<u64>,
}

const FAST_ENTRIES: usize = 4096;

impl Default for BlockCache {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockCache {
    /// An empty cache.
    pub fn new() -> BlockCache {
        BlockCache {
            map: HashMap::new(),
            by_page: HashMap::new(),
            fast: vec![None; FAST_ENTRIES],
            decoded: 0,
            invalidated: 0,
            gen: 0,
            breakpoints: Default::default(),
        }
    }

    /// The RIPs blocks end before.
    pub fn breakpoints(&self) -> &std::collections::BTreeSet<u64> {
        &self.breakpoints
    }

    /// Blocks end before these RIPs from now on (every block is dropped,
    /// to be decoded again).
    pub fn set_breakpoints(&mut self, rips: std::collections::BTreeSet<u64>) {
        self.breakpoints = rips;
        self.clear();
    }

    #[inline(always)]
    fn slot(key: &BlockKey) -> usize {
        ((key.rip ^ (key.rip >> 12)) as usize) & (FAST_ENTRIES - 1)
    }

    /// The key of the block at the CPU's current RIP, and its linear
    /// address.
    #[inline(always)]
    fn key_of(cx: &Interp) -> (BlockKey, u64) {
        let cpu = &cx.cpu;
        let key = BlockKey {
            rip: cpu.rip,
            cs_base: cpu.seg[crate::state::Seg::Cs as usize].base,
            bitness: cpu.code_bitness(),
        };
        let lin = key.cs_base.wrapping_add(key.rip);
        let lin = if key.bitness == 64 {
            lin
        } else {
            lin & 0xffff_ffff
        };
        (key, lin)
    }

    /// The block at the CPU's current RIP, as [`BlockCache::get`] returns
    /// it, when `prev` (the block that ran before) remembers it as its
    /// successor and the link is still valid; otherwise `get`, and the
    /// result is remembered in `prev`. Same result and same side effects as
    /// `get` (a valid link implies `get` would hit the code TLB and return
    /// that very block), only cheaper.
    #[inline(always)]
    pub fn get_linked(&mut self, cx: &mut Interp, prev: &Block) -> Result<Rc<Block>, Exception> {
        let rip = cx.cpu.rip;
        self.get_via(cx, &prev.succ[(rip == prev.fallthrough) as usize])
    }

    /// The block at the CPU's current RIP, as [`BlockCache::get`] returns
    /// it, through the successor link `cell` (updated on a miss).
    #[inline(always)]
    pub fn get_via(
        &mut self,
        cx: &mut Interp,
        cell: &std::cell::Cell<Link>,
    ) -> Result<Rc<Block>, Exception> {
        let (key, lin) = Self::key_of(cx);
        let host = cx.cpu.tlb.host_exec(lin).map_or(0, |p| p as u64);
        let link = cell.get();
        if link.gen == self.gen && link.host == host && link.key == key {
            // SAFETY: the generation has not moved since the link was made,
            // so the block is still held by the map (see `Link`).
            unsafe {
                Rc::increment_strong_count(link.block);
                return Ok(Rc::from_raw(link.block));
            }
        }
        self.get_and_link(cx, cell, lin)
    }

    /// `get`, remembering the result in `cell` when a later TLB hit at
    /// `lin` would find it.
    #[inline(never)]
    fn get_and_link(
        &mut self,
        cx: &mut Interp,
        cell: &std::cell::Cell<Link>,
        lin: u64,
    ) -> Result<Rc<Block>, Exception> {
        let b = self.get(cx)?;
        if let Some(h) = cx.cpu.tlb.host_exec(lin) {
            if cx.mem.phys_of_host(h).map(|a| a.0) == Some(b.phys) {
                cell.set(Link {
                    gen: self.gen,
                    host: h as u64,
                    key: b.key,
                    block: Rc::as_ptr(&b),
                });
            }
        }
        Ok(b)
    }

    /// The block at the CPU's current RIP, decoding it if needed. A fault
    /// while fetching the first instruction is returned.
    pub fn get(&mut self, cx: &mut Interp) -> Result<Rc<Block>, Exception> {
        let (key, lin) = Self::key_of(cx);
        // Physical address of the first byte, through the TLB when it hits.
        let phys = match cx.cpu.tlb.host_exec(lin) {
            Some(p) => match cx.mem.phys_of_host(p) {
                Some(a) => a.0,
                None => mmu::translate_fetch(&mut cx.cpu, &mut cx.mem, lin)?,
            },
            None => mmu::translate_fetch(&mut cx.cpu, &mut cx.mem, lin)?,
        };
        let slot = Self::slot(&key);
        if let Some(b) = &self.fast[slot] {
            if b.key == key && b.phys == phys {
                return Ok(b.clone());
            }
        }
        if let Some(b) = self.map.get(&key) {
            if b.phys == phys {
                self.fast[slot] = Some(b.clone());
                return Ok(b.clone());
            }
        }
        let block = Rc::new(decode_block(cx, key, lin, phys, &self.breakpoints)?);
        Ok(self.insert(cx, block, slot))
    }

    /// Enter a freshly decoded block in the cache (its pages marked as
    /// holding code).
    fn insert(&mut self, cx: &mut Interp, block: Rc<Block>, slot: usize) -> Rc<Block> {
        let key = block.key;
        self.decoded += 1;
        for &p in block.pages.iter() {
            if p != u64::MAX {
                if cx.mem.mark_code_page(p) {
                    if let Some(host) = cx.mem.host_page(GuestPhysAddr(p << 12)) {
                        cx.cpu.tlb.revoke_write_to_host_page(host);
                    }
                }
                let v = self.by_page.entry(p).or_default();
                if !v.contains(&key) {
                    v.push(key);
                }
            }
        }
        if self.map.insert(key, block.clone()).is_some() {
            self.gen += 1; // the old block for this key (another phys) is gone
        }
        self.fast[slot] = Some(block.clone());
        block
    }

    /// The blocks of a region entered at `head`: `head`, then the blocks
    /// reached from it by static successors (breadth first), as long as
    /// they start on the linear page of `head`'s first byte and lie wholly
    /// on it. While compiled code runs, nothing changes the code TLB entry
    /// of that page without asking to leave (CR3 writes, INVLPG and mode
    /// changes end their block with `exit_req`), and a write to the page
    /// drops `head` and with it the region; so each member is what the
    /// engine's lookup would return at its RIP. Members not cached yet are
    /// decoded (from the same physical page: no page walk, no guest-visible
    /// effect).
    /// With `hot_only`, only blocks that have run (cached, entered at least
    /// once) join: paths never taken stay out of the compiled code.
    pub fn region(&mut self, cx: &mut Interp, head: &Rc<Block>, hot_only: bool) -> Vec<Rc<Block>> {
        let mut out = vec![head.clone()];
        let key0 = head.key;
        let lin_of = |rip: u64| {
            let lin = key0.cs_base.wrapping_add(rip);
            if key0.bitness == 64 {
                lin
            } else {
                lin & 0xffff_ffff
            }
        };
        let page = lin_of(key0.rip) >> 12;
        if !cx.mem.page_is_ram(GuestPhysAddr(head.phys)) {
            return out;
        }
        let mut insns = head.insns.len();
        // Candidates reached so far and not taken yet. Past a threshold the
        // hottest is taken first (a loop that ran stays whole, the cold
        // entry and exit paths around it are left out when the region is
        // full); at first sight, breadth first.
        let mut frontier: Vec<Rc<Block>> = Vec::new();
        // Blocks of the page seen entered after an indirect branch.
        let mut ind: Option<Vec<u64>> = None;
        let mut next = Some(head.clone());
        while let Some(cur) = next.take() {
            let mut succs = cur.static_successors();
            // Only a region entered at an indirect target itself (a VM's
            // handler) grows by them: a head that the end of a budget
            // slice made in mid-handler would otherwise copy all of them.
            if cur.ends_in_indirect_branch() && head.is_indirect_target() {
                let ind = ind.get_or_insert_with(|| self.indirect_targets(head));
                succs.extend_from_slice(ind);
            }
            for t in succs {
                let lin = lin_of(t);
                // A block starting in the page's last 15 bytes might need
                // the next page to decode its first instruction.
                if lin >> 12 != page
                    || lin & 0xfff > 0x1000 - 15
                    || out.iter().chain(&frontier).any(|b| b.key.rip == t)
                    || !hot_only && out.len() + frontier.len() >= MAX_REGION_BLOCKS
                {
                    continue;
                }
                let key = BlockKey { rip: t, ..key0 };
                let phys = (head.phys & !0xfff) | (lin & 0xfff);
                let b = match self.map.get(&key) {
                    Some(b) if b.phys == phys => b.clone(),
                    _ if hot_only => continue,
                    _ => match decode_block(cx, key, lin, phys, &self.breakpoints) {
                        Ok(b) => {
                            let slot = Self::slot(&key);
                            self.insert(cx, Rc::new(b), slot)
                        }
                        Err(_) => continue,
                    },
                };
                if b.pages[1] != u64::MAX || hot_only && b.exec_count.get() == 0 {
                    continue;
                }
                frontier.push(b);
            }
            while out.len() < MAX_REGION_BLOCKS && !frontier.is_empty() {
                let pick = if hot_only {
                    // The first of the hottest (ties keep the order found).
                    let best = frontier.iter().map(|b| b.exec_count.get()).max();
                    frontier
                        .iter()
                        .position(|b| Some(b.exec_count.get()) == best)
                        .unwrap_or(0)
                } else {
                    0
                };
                let b = frontier.remove(pick);
                if insns + b.insns.len() > MAX_REGION_INSNS {
                    continue;
                }
                insns += b.insns.len();
                out.push(b.clone());
                next = Some(b);
                break;
            }
        }
        out
    }

    /// The RIPs of the cached blocks on `head`'s physical page, with its
    /// key's CS base and bitness, that have run and been entered after an
    /// indirect branch, hottest first: where an indirect JMP/CALL of a
    /// region entered at `head` most likely goes.
    fn indirect_targets(&self, head: &Block) -> Vec<u64> {
        let page = head.phys >> 12;
        let Some(keys) = self.by_page.get(&page) else {
            return Vec::new();
        };
        let mut v: Vec<(u64, u64)> = keys
            .iter()
            .filter(|k| k.cs_base == head.key.cs_base && k.bitness == head.key.bitness)
            .filter_map(|k| self.map.get(k))
            .filter(|b| b.phys >> 12 == page && b.is_indirect_target())
            .map(|b| (b.exec_count.get(), b.key.rip))
            .filter(|&(n, _)| n > 0)
            .collect();
        v.sort_by_key(|&(n, rip)| (std::cmp::Reverse(n), rip));
        v.into_iter().map(|(_, rip)| rip).collect()
    }

    /// Drop every block decoded from one of `pages`.
    pub fn invalidate_pages(&mut self, pages: &[u64]) {
        let mut any = false;
        for p in pages {
            if let Some(keys) = self.by_page.remove(p) {
                for k in keys {
                    if self.map.remove(&k).is_some() {
                        self.invalidated += 1;
                        any = true;
                    }
                }
            }
        }
        if any {
            self.fast.iter_mut().for_each(|e| *e = None);
            self.gen += 1;
        }
    }

    /// Drop everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.by_page.clear();
        self.fast.iter_mut().for_each(|e| *e = None);
        self.gen += 1;
    }

    /// Number of blocks cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no block is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Read up to `buf.len()` code bytes at physical `phys` (stopping at the end
/// of the page). Non-RAM code reads as 0xff bytes (an invalid opcode).
fn fetch_page_bytes(cx: &Interp, phys: u64, buf: &mut Vec<u8>) {
    let n = (0x1000 - (phys & 0xfff)) as usize;
    match cx.mem.target(GuestPhysAddr(phys)) {
        crate::memory::PhysTarget::Ram(off) if cx.mem.page_is_ram(GuestPhysAddr(phys)) => {
            buf.extend_from_slice(&cx.mem.ram()[off as usize..off as usize + n]);
        }
        _ => buf.extend(std::iter::repeat_n(0xff, n)),
    }
}

fn decode_block(
    cx: &mut Interp,
    key: BlockKey,
    lin: u64,
    phys: u64,
    breakpoints: &std::collections::BTreeSet<u64>,
) -> Result<Block, Exception> {
    let mut bytes = Vec::with_capacity(0x1000 + 16);
    fetch_page_bytes(cx, phys, &mut bytes);
    let first_page_len = bytes.len();
    let mut pages = [phys >> 12, u64::MAX];
    let options = cx.features.decoder_options();
    let mut insns: Vec<Insn> = Vec::new();
    let mut offset = 0usize;
    let mut next_page_loaded = false;
    loop {
        let mut i = Instruction::default();
        {
            let mut d = Decoder::with_ip(
                key.bitness,
                &bytes[offset..],
                key.rip + offset as u64,
                options,
            );
            d.decode_out(&mut i);
        }
        let truncated = i.is_invalid() && bytes.len() - offset < 15 && !next_page_loaded;
        if truncated || (offset + i.len() > first_page_len && !next_page_loaded) {
            // The instruction may continue on the next page.
            if !insns.is_empty() {
                break; // Let it start its own block, so a fault there is precise.
            }
            let next_lin = (lin | 0xfff).wrapping_add(1);
            let next_phys = mmu::translate_fetch(&mut cx.cpu, &mut cx.mem, next_lin)?;
            let mut more = Vec::new();
            fetch_page_bytes(cx, next_phys & !0xfff, &mut more);
            bytes.extend_from_slice(&more[..15.min(more.len())]);
            pages[1] = next_phys >> 12;
            next_page_loaded = true;
            continue;
        }
        let exec = semantics::interp_handler(&i, &cx.features);
        let ends = i.is_invalid() || ends_block(&i);
        offset += i.len();
        insns.push(Insn {
            i,
            live_out: FlagSet::ARITH,
            exec,
            ops: operand::describe(&i),
            mem: operand::MemDesc::of(&i, key.bitness),
        });
        let at_breakpoint =
            !breakpoints.is_empty() && breakpoints.contains(&key.rip.wrapping_add(offset as u64));
        if ends || offset >= first_page_len || insns.len() >= MAX_BLOCK_INSNS || at_breakpoint {
            break;
        }
    }
    compute_liveness(&mut insns);
    let fallthrough = insns.last().map_or(key.rip, |i| i.next_ip());
    let indirect_end = insns.last().is_some_and(|l| is_near_indirect(&l.i));
    Ok(Block {
        key,
        phys,
        pages,
        insns,
        exec_count: std::cell::Cell::new(0),
        cut_entries: std::cell::Cell::new(0),
        compiled: std::cell::OnceCell::new(),
        member: std::cell::RefCell::new(None),
        succ: Default::default(),
        fallthrough,
        indirect_end,
        indirect_target: std::cell::Cell::new(false),
    })
}
