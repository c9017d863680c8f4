//! The engine: `run(budget) -> Exit`.
//!
//! It owns the CPU state, guest memory, the I/O callbacks and the block
//! cache, and runs decoded blocks until the budget is spent or something
//! needs the machine's attention. Interrupts and exceptions are taken only
//! between instructions at block boundaries.

use crate::block::{Block, BlockCache, RegionEntry};
use crate::cpuid::Features;
use crate::cranelift::{CompiledBlock, Jit, JitExit};
use crate::emit::Stop;
use crate::exception::Exception;
use crate::interp::Interp;
use crate::interrupt::{self, Delivery};
use crate::memory::{GuestMemory, IoBus, NoIo};
use crate::state::{exit_req, CpuState};
use std::fmt;
use std::rc::Rc;
use std::time::Instant;

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// Why [`Engine::run`] returned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The budget is spent (exactly: `icount` advanced by the budget).
    BudgetExhausted,
    /// HLT retired; the CPU is halted until an interrupt.
    Halted,
    /// An instruction reached a device (port I/O or MMIO); it has retired
    /// and the machine may now look at timers and interrupts.
    Device,
    /// An exception was raised and `EngineConfig::exceptions_exit` is set:
    /// it was not delivered; RIP points at the faulting instruction.
    Exception(Exception),
    /// INTR is asserted ([`Engine::set_intr`]), RFLAGS.IF is set and no
    /// STI / MOV SS shadow is active: the CPU can take an external interrupt
    /// at this instruction boundary. The caller acknowledges the interrupt
    /// controller and calls [`Engine::deliver_interrupt`] (or not: the run
    /// resumes where it stopped).
    InterruptWindow,
    /// RIP is at a breakpoint ([`Engine::set_breakpoints`]); nothing of
    /// the instruction there has run.
    Breakpoint,
    /// An exception could not be delivered even as a double fault.
    TripleFault {
        /// The first exception of the cascade.
        first: Exception,
        /// RIP of the instruction that raised it.
        rip: u64,
    },
}

impl fmt::Debug for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::BudgetExhausted => write!(f, "BudgetExhausted"),
            Exit::Halted => write!(f, "Halted"),
            Exit::Device => write!(f, "Device"),
            Exit::InterruptWindow => write!(f, "InterruptWindow"),
            Exit::Breakpoint => write!(f, "Breakpoint"),
            Exit::Exception(e) => write!(f, "Exception({e:?})"),
            Exit::TripleFault { first, rip } => {
                write!(f, "TripleFault(first {first:?} at rip {rip:#x})")
            }
        }
    }
}

/// Which tier runs guest code. The choice never changes a guest-visible
/// result, the instruction count or where [`Engine::run`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Accel {
    /// Every block is interpreted.
    #[default]
    Interp,
    /// A block is compiled with Cranelift once it has been entered
    /// `threshold` times (0: at first sight) and runs compiled from then
    /// on. Blocks that do not compile, and compiled blocks the budget
    /// left does not cover, are interpreted.
    Jit {
        /// Interpreted entries before a block is compiled.
        threshold: u64,
    },
}

/// The JIT's default compile threshold.
pub const DEFAULT_JIT_THRESHOLD: u64 = 8;

/// The compile threshold of a block seen entered after an indirect branch
/// (when the configured one is not 0, "at first sight").
const INDIRECT_TARGET_THRESHOLD: u64 = 32;

/// Engine options.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineConfig {
    /// Return exceptions to the caller instead of delivering them through
    /// the guest's IDT (for embedding and instruction tests).
    pub exceptions_exit: bool,
    /// The execution tier.
    pub accel: Accel,
    /// Measure the time spent in `run` and in compiled code
    /// (`EngineStats::run_ns`, `compiled_ns`; two clock reads per entry
    /// into compiled code, so only for `--stats`).
    pub timing: bool,
}

/// Counters for `--stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineStats {
    /// Blocks entered from the engine loop (edges taken inside a compiled
    /// region are not counted).
    pub blocks_run: u64,
    /// Exceptions raised.
    pub exceptions: u64,
    /// Regions compiled by the JIT (one Cranelift function each: an entry
    /// block and the blocks of its page it reaches by direct branches).
    pub blocks_compiled: u64,
    /// Blocks inside the compiled regions (a block may be in several).
    pub region_blocks: u64,
    /// Blocks the JIT could not compile (interpreted instead).
    pub compile_failures: u64,
    /// Time spent compiling (failures included), nanoseconds; per region:
    /// `compile_ns / (blocks_compiled + compile_failures)` on average.
    pub compile_ns: u64,
    /// The longest compilation of one region, nanoseconds.
    pub compile_ns_max: u64,
    /// Entries into compiled code.
    pub compiled_runs: u64,
    /// Those of them at a member block of a region other than its first
    /// (a block compiled into another block's region).
    pub member_entries: u64,
    /// Instructions retired by compiled code (the rest of `icount` was
    /// interpreted): the share of guest work each tier did.
    pub compiled_insns: u64,
    /// With `EngineConfig::timing`: time in `run`, and the part of it
    /// spent in compiled code (helpers it calls included), nanoseconds.
    /// The rest is compiling (`compile_ns`) and interpreting (dispatch
    /// included).
    pub run_ns: u64,
    pub compiled_ns: u64,
}

/// The CPU engine.
pub struct Engine {
    cx: Interp,
    blocks: BlockCache,
    /// The compiler, created on first use; `None` after it failed to start.
    jit: Option<Option<Jit>>,
    /// Options.
    pub config: EngineConfig,
    /// Counters.
    pub stats: EngineStats,
    /// RIP where the last run ended inside an interpreted block (the
    /// budget ran out there): the next run starts a block mid-way.
    cut_at: Option<u64>,
    /// The next run does not stop at a breakpoint at this RIP first
    /// (resuming from it).
    break_skip: Option<u64>,
}

impl Engine {
    /// An engine with `ram_size` bytes of RAM, power-on CPU state and no
    /// devices.
    pub fn new(ram_size: u64) -> Result<Engine, crate::memory::MemoryError> {
        let mem = GuestMemory::new(ram_size)?;
        Ok(Engine::with_memory(mem, Box::new(NoIo)))
    }

    /// An engine over existing memory and I/O callbacks.
    pub fn with_memory(mem: GuestMemory, io: Box<dyn IoBus>) -> Engine {
        Engine {
            cx: Interp::new(Box::default(), mem, io),
            blocks: BlockCache::new(),
            jit: None,
            config: EngineConfig::default(),
            stats: EngineStats::default(),
            cut_at: None,
            break_skip: None,
        }
    }

    /// The CPU state.
    pub fn cpu(&self) -> &CpuState {
        &self.cx.cpu
    }

    /// The CPU state, for changing registers. Changing CR0/CR3/CR4/EFER or
    /// CPL here must be followed by [`Engine::flush_tlb`].
    pub fn cpu_mut(&mut self) -> &mut CpuState {
        &mut self.cx.cpu
    }

    /// Guest memory.
    pub fn mem(&self) -> &GuestMemory {
        &self.cx.mem
    }

    /// Guest memory, for loading images. Writes through
    /// `GuestMemory::write_phys` invalidate affected translations.
    pub fn mem_mut(&mut self) -> &mut GuestMemory {
        &mut self.cx.mem
    }

    /// Replace the I/O callbacks.
    pub fn set_io(&mut self, io: Box<dyn IoBus>) {
        self.cx.io = io;
    }

    /// The CPU features the guest sees.
    pub fn features(&self) -> &Features {
        &self.cx.features
    }

    /// Change the CPU features the guest sees (CPUID and decoding follow
    /// them). Drops every decoded block, since decoding may differ.
    pub fn set_features(&mut self, f: Features) {
        self.cx.features = f;
        self.blocks.clear();
    }

    /// Stop before executing the instruction at any of these RIPs
    /// ([`Exit::Breakpoint`]). Blocks then end before each breakpoint, so
    /// it is checked between blocks, and the code runs interpreted while
    /// any is set (compiled regions jump between their blocks without
    /// coming back). Changing the set drops every decoded block.
    pub fn set_breakpoints(&mut self, rips: impl IntoIterator<Item = u64>) {
        let set: std::collections::BTreeSet<u64> = rips.into_iter().collect();
        if set != *self.blocks.breakpoints() {
            self.blocks.set_breakpoints(set);
        }
    }

    /// The next run starts at `rip` without stopping at a breakpoint there
    /// (the caller resumes from it).
    pub fn skip_breakpoint_at(&mut self, rip: u64) {
        self.break_skip = Some(rip);
    }

    /// Stop right after any instruction that accesses these linear ranges
    /// (a debugger's watchpoints; see `crate::watchpoint`). They live with
    /// the memory, so replacing the CPU state keeps them.
    pub fn set_watchpoints(&mut self, watches: Vec<crate::watchpoint::Watch>) {
        self.cx.mem.watch.set(watches);
        // Pages now watched must leave the TLB; pages no longer watched
        // may come back.
        self.cx.cpu.tlb.flush_all();
    }

    /// The watchpoint hit since the last call, if any.
    pub fn take_watch_hit(&mut self) -> Option<crate::watchpoint::WatchHit> {
        self.cx.mem.watch.take_hit()
    }

    /// Drop all cached address translations (after changing paging state
    /// from outside).
    pub fn flush_tlb(&mut self) {
        self.cx.cpu.tlb.flush_all();
    }

    /// Number of blocks decoded so far.
    pub fn blocks_decoded(&self) -> u64 {
        self.blocks.decoded
    }

    /// Handle code pages written since the last check.
    fn sync_code_writes(&mut self) {
        if self.cx.mem.has_dirty_code() {
            let pages = self.cx.mem.take_dirty_code_pages();
            self.blocks.invalidate_pages(&pages);
        }
    }

    /// Deliver `ex` (or hand it to the caller). `Some` ends the run.
    fn raise(&mut self, ex: Exception) -> Option<Exit> {
        self.stats.exceptions += 1;
        if self.config.exceptions_exit {
            return Some(Exit::Exception(ex));
        }
        let rip = self.cx.cpu.rip;
        let d = interrupt::deliver_exception(&mut self.cx, ex);
        // Delivery happens between blocks: its end-of-block request is moot,
        // but a frame pushed onto a page holding code must drop those blocks.
        self.cx.cpu.exit_req = 0;
        self.sync_code_writes();
        match d {
            Delivery::Delivered => None,
            Delivery::TripleFault => Some(Exit::TripleFault { first: ex, rip }),
        }
    }

    /// The compiled form of `block`, compiling it now if it has been
    /// entered `threshold` times before this entry: as the entry of a
    /// region (see `BlockCache::region`), or alone when the region does not
    /// compile. The region's other members are entered there from then on
    /// (`Block::member`). `None`: interpret it.
    fn compiled<'b>(&mut self, block: &'b Rc<Block>, threshold: u64) -> Option<&'b RegionEntry> {
        if let Some(c) = block.compiled.get() {
            return c.as_ref();
        }
        // `exec_count` already includes this entry. A target of indirect
        // branches waits longer: its region takes in the other targets seen
        // by then, and an early region (few targets known, left often)
        // would make every other target a region head holding them all.
        let threshold = if threshold > 0 && block.is_indirect_target() {
            threshold.max(INDIRECT_TARGET_THRESHOLD)
        } else {
            threshold
        };
        if block.exec_count.get() <= threshold {
            return None;
        }
        // A block only ever entered where a budget slice cut another one
        // runs once per such slice at most: compiling it (and a region
        // copying the code around it) costs more than it can save.
        if threshold > 0 && block.cut_entries.get() == block.exec_count.get() {
            return None;
        }
        let r = self.compile_head(block, threshold > 0);
        block
            .compiled
            .get_or_init(|| r.map(|region| RegionEntry { region, member: 0 }))
            .as_ref()
    }

    /// Compile a region headed by `block`. Past a threshold (`hot_only`),
    /// the region keeps to blocks that ran; at 0 (first sight) nothing has
    /// run yet. Its members other than the head are entered in it from
    /// then on. `None`: it did not compile.
    fn compile_head(&mut self, block: &Rc<Block>, hot_only: bool) -> Option<Rc<CompiledBlock>> {
        let t0 = Instant::now();
        let members = self.blocks.region(&mut self.cx, block, hot_only);
        self.jit_mut();
        let r = match &mut self.jit {
            Some(Some(j)) => {
                let refs: Vec<&Block> = members.iter().map(|b| &**b).collect();
                let mut r = j.compile_region(&refs, &self.cx.cpu);
                if r.is_err() && refs.len() > 1 {
                    log::debug!(
                        "region at {:#x} not compiled; trying the block alone",
                        block.key.rip
                    );
                    r = j.compile_region(&refs[..1], &self.cx.cpu);
                }
                r.map_err(|e| log::debug!("block {:#x} not compiled: {e}", block.key.rip))
                    .ok()
            }
            _ => None,
        };
        let ns = t0.elapsed().as_nanos() as u64;
        log::debug!(
            "region at {:#x}: {} blocks, {} insns, {} code bytes, {} us; members {:x?}",
            block.key.rip,
            r.as_ref().map_or(0, |c| c.blocks),
            r.as_ref().map_or(0, |c| c.insns),
            r.as_ref().map_or(0, |c| c.code_size),
            ns / 1000,
            members.iter().map(|b| b.key.rip).collect::<Vec<_>>()
        );
        self.stats.compile_ns += ns;
        self.stats.compile_ns_max = self.stats.compile_ns_max.max(ns);
        match &r {
            Some(c) => {
                self.stats.blocks_compiled += 1;
                self.stats.region_blocks += c.blocks as u64;
            }
            None => self.stats.compile_failures += 1,
        }
        let r = r.map(Rc::new);
        if let Some(c) = r.as_ref().filter(|c| c.blocks == members.len()) {
            // Members not compiled yet are entered in this region from now
            // on (a side exit of another region, or a slice start, lands
            // in compiled code instead of growing yet another copy). Only
            // when the head lies on one page: then every member shares its
            // page, and a write there drops them all.
            // The newest region wins, even over a member's own region: it
            // was formed when more of the code had run, so it holds more of
            // the loop around each member.
            if block.pages[1] == u64::MAX {
                for (k, m) in members.iter().enumerate().skip(1) {
                    *m.member.borrow_mut() = Some(RegionEntry {
                        region: c.clone(),
                        member: k,
                    });
                }
            }
        }
        r
    }

    /// After a block (or instruction) retired with `exit_req` set, or a
    /// REP stopped: drop written code, and say whether the run ends.
    fn leave_block(&mut self) -> Option<Exit> {
        let req = std::mem::take(&mut self.cx.cpu.exit_req);
        self.sync_code_writes();
        if req & exit_req::HALT != 0 {
            return Some(Exit::Halted);
        }
        if req & exit_req::DEVICE != 0 {
            return Some(Exit::Device);
        }
        None
    }

    /// `ex` stopped the current instruction: drop written code and
    /// deliver it. `Some` ends the run.
    fn fault(&mut self, ex: Exception) -> Option<Exit> {
        self.cx.cpu.exit_req = 0;
        self.sync_code_writes();
        self.raise(ex)
    }

    /// Run `block` compiled. `Ok(None)`: it ran and the loop goes on with
    /// the next block, looked up through `link` (the exit site's successor
    /// link) when set; `Ok(Some(exit))`: the run ends; `Err(())`: not
    /// entered, the interpreter runs it.
    fn run_compiled(
        &mut self,
        e: &RegionEntry,
        link: &mut Option<(Rc<CompiledBlock>, usize)>,
    ) -> Result<Option<Exit>, ()> {
        let before = self.cx.cpu.icount;
        let t0 = self.config.timing.then(Instant::now);
        let (exit, l) = e.region.run_member(&mut self.cx, e.member);
        if let Some(t0) = t0 {
            self.stats.compiled_ns += t0.elapsed().as_nanos() as u64;
        }
        if exit != JitExit::NotEntered {
            self.stats.compiled_runs += 1;
            self.stats.member_entries += (e.member > 0) as u64;
            self.stats.compiled_insns += self.cx.cpu.icount.wrapping_sub(before);
        }
        match exit {
            JitExit::NotEntered => Err(()),
            JitExit::Completed => {
                *link = l.map(|k| (e.region.clone(), k));
                if self.cx.cpu.exit_req != 0 {
                    return Ok(self.leave_block());
                }
                Ok(None)
            }
            JitExit::Restart => Ok(self.leave_block()),
            JitExit::Fault(ex) => Ok(self.fault(ex)),
        }
    }

    /// Is RIP at a breakpoint (other than `skip`)?
    fn at_breakpoint(&self, skip: Option<u64>) -> bool {
        let rip = self.cx.cpu.rip;
        skip != Some(rip) && self.blocks.breakpoints().contains(&rip)
    }

    /// Run at most `budget` instructions.
    pub fn run(&mut self, budget: u64) -> Exit {
        if !self.config.timing {
            return self.run_untimed(budget);
        }
        let t0 = Instant::now();
        let exit = self.run_untimed(budget);
        self.stats.run_ns += t0.elapsed().as_nanos() as u64;
        exit
    }

    fn run_untimed(&mut self, budget: u64) -> Exit {
        self.cx.cpu.budget = budget;
        self.cx.exceptions_exit = self.config.exceptions_exit;
        // Code pages written from outside since the last run (loading with
        // `write_phys`) must not run stale translations.
        self.sync_code_writes();
        // The block that ran last: its successor links save most of the
        // lookup (`BlockCache::get_linked` returns what `get` would).
        let mut prev: Option<Rc<Block>> = None;
        // The compiled region that ran `prev` and the exit site it left
        // by, if any: that site's own successor link stands in for `prev`'s.
        let mut link: Option<(Rc<CompiledBlock>, usize)> = None;
        let mut cut = self.cut_at.take() == Some(self.cx.cpu.rip);
        let mut break_skip = self.break_skip.take();
        let breakpoints = !self.blocks.breakpoints().is_empty();
        loop {
            // Between blocks: the only place an external interrupt is taken.
            let mut one_insn = false;
            if self.cx.cpu.intr != 0 && self.cx.cpu.rflags & RFLAGS_IF != 0 {
                if self.cx.cpu.interrupt_shadow == 0 {
                    return Exit::InterruptWindow;
                }
                // The instruction under the shadow runs alone; the interrupt
                // is taken right after it (as QEMU ends its block there).
                one_insn = true;
            }
            if self.cx.cpu.budget == 0 {
                return Exit::BudgetExhausted;
            }
            if breakpoints && self.at_breakpoint(break_skip.take()) {
                return Exit::Breakpoint;
            }
            // Did the last block end in an indirect near JMP/CALL? (A hint
            // for region formation: see `Block::mark_indirect_target`.)
            let after_indirect = match &link {
                Some((c, k)) => c.site_indirect.get(*k).is_some_and(|&b| b),
                None => prev.as_ref().is_some_and(|p| p.ends_in_indirect_branch()),
            };
            let site = link.take();
            let got = match (&prev, site.as_ref().and_then(|(c, k)| c.links.get(*k))) {
                (_, Some(cell)) => self.blocks.get_via(&mut self.cx, cell),
                (Some(p), None) => self.blocks.get_linked(&mut self.cx, p),
                (None, None) => self.blocks.get(&mut self.cx),
            };
            let block: &Rc<Block> = match got {
                Ok(b) => prev.insert(b),
                Err(ex) => match self.raise(ex) {
                    Some(exit) => return exit,
                    None => continue,
                },
            };
            self.stats.blocks_run += 1;
            if after_indirect {
                block.mark_indirect_target();
            }
            block.exec_count.set(block.exec_count.get() + 1);
            if std::mem::take(&mut cut) {
                block.cut_entries.set(block.cut_entries.get() + 1);
            }
            // The STI / MOV SS shadow covers one instruction: the one after
            // the instruction that set it, which always starts a block (those
            // instructions end theirs). It is cleared as that instruction
            // begins, so one that sets it again (MOV SS; STI) keeps its own.
            self.cx.cpu.interrupt_shadow = 0;
            if one_insn {
                match self.step_one(block) {
                    Some(exit) => return exit,
                    None => continue,
                }
            }
            if let (Accel::Jit { threshold }, false) = (self.config.accel, breakpoints) {
                // Already compiled: the common case, without the call.
                let member = block.member.borrow().clone();
                let c = match member {
                    Some(m) => Some(m),
                    None => self.compiled(block, threshold).cloned(),
                };
                if let Some(c) = c {
                    match self.run_compiled(&c, &mut link) {
                        Ok(Some(exit)) => return exit,
                        Ok(None) => continue,
                        Err(()) => {} // the budget ends inside: interpret
                    }
                }
            }
            let bitness = block.key.bitness;
            let whole_block = self.cx.cpu.budget >= block.insns.len() as u64;
            for insn in &block.insns {
                if self.cx.cpu.budget == 0 {
                    // Mid-block: the loop top returns before a block starts.
                    self.cut_at = Some(self.cx.cpu.rip);
                    return Exit::BudgetExhausted;
                }
                match self.cx.step(insn, bitness, whole_block) {
                    Ok(()) if self.cx.cpu.exit_req == 0 => {}
                    r => match self.stopped(r) {
                        Some(exit) => return exit,
                        None => break,
                    },
                }
            }
        }
    }

    /// An interpreted instruction left its block (`exit_req`, a REP
    /// restart, or a fault, which is delivered here). `Some` ends the run.
    #[cold]
    fn stopped(&mut self, r: Result<(), Stop>) -> Option<Exit> {
        match r {
            Ok(()) | Err(Stop::Restart) => self.leave_block(),
            Err(Stop::Fault(ex)) => self.fault(ex),
        }
    }

    /// Interpret only the first instruction of `block` (the rest of it is
    /// looked up again as a block starting at the next RIP). `Some` ends
    /// the run.
    fn step_one(&mut self, block: &Block) -> Option<Exit> {
        let insn = block.insns.first()?;
        match self.cx.step(insn, block.key.bitness, false) {
            Ok(()) if self.cx.cpu.exit_req == 0 => None,
            r => self.stopped(r),
        }
    }

    /// Assert or release the CPU's INTR input (the interrupt controller's
    /// output). While it is asserted, [`Engine::run`] returns
    /// [`Exit::InterruptWindow`] at the first block boundary where the CPU
    /// can take an interrupt.
    pub fn set_intr(&mut self, asserted: bool) {
        self.cx.cpu.intr = asserted as u8;
    }

    /// Deliver external interrupt `vector` now (after
    /// [`Exit::InterruptWindow`], or to wake a CPU halted with IF set).
    /// A fault while delivering it is delivered in its place; `Err` is a
    /// triple fault. Delivering counts no instruction.
    pub fn deliver_interrupt(&mut self, vector: u8) -> Result<(), Exit> {
        let rip = self.cx.cpu.rip;
        let r = interrupt::deliver_external(&mut self.cx, vector);
        self.cx.cpu.exit_req = 0;
        self.sync_code_writes();
        r.map_err(|first| Exit::TripleFault { first, rip })
    }

    /// Make the JIT start a new code module once the current one holds
    /// `bytes` of code (default `cranelift::DEFAULT_MODULE_LIMIT`); a module
    /// is freed when every region compiled into it has been dropped (code
    /// writes, `set_features`). Starts the compiler if needed.
    pub fn set_jit_module_limit(&mut self, bytes: u64) {
        if let Some(j) = self.jit_mut() {
            j.set_module_limit(bytes);
        }
    }

    /// JIT code modules freed so far.
    pub fn jit_modules_freed(&self) -> u64 {
        self.jit
            .as_ref()
            .and_then(|j| j.as_ref())
            .map_or(0, |j| j.modules_freed())
    }

    /// The compiler, started on first use (`None` if it cannot start).
    fn jit_mut(&mut self) -> Option<&mut Jit> {
        self.jit
            .get_or_insert_with(|| {
                Jit::new()
                    .map_err(|e| log::error!("the JIT cannot start ({e}); interpreting"))
                    .ok()
            })
            .as_mut()
    }

    /// Counters of the JIT compiler, if it has been started.
    pub fn jit_stats(&self) -> Option<crate::cranelift::JitStats> {
        self.jit.as_ref()?.as_ref().map(|j| j.stats)
    }
}
