//! The Cranelift backend: decoded blocks compiled to host code through the
//! same semantic functions the interpreter runs.
//!
//! A compiled block is `extern "C" fn(cpu: *mut CpuState, cx: *mut JitCtx)
//! -> u64` (a [`status`]). [`runtime::JitCtx`] carries the `Interp` the
//! slow-path helpers need and the slot where they report a fault.
//!
//! The engine compiles *regions*: an entry block and blocks it reaches by
//! direct branches (and observed indirect ones) on its page ([`Jit::compile_region`], DESIGN.md
//! "Regions"), one function whose internal edges are jumps. Everything
//! below holds for each member block; between members the code checks the
//! budget (the next block's count), `exit_req` and `intr`, and leaves with
//! the state complete otherwise.
//!
//! Contract with the engine (see DESIGN.md "icount"):
//! - A block whose instruction count exceeds `cpu.budget` is not entered
//!   ([`JitExit::NotEntered`]); nothing changes, the interpreter goes on.
//! - Otherwise the block retires its instructions exactly as the
//!   interpreter would: `icount`/`budget`/RIP/registers/lazy flags/memory
//!   are the same after it. A faulting instruction leaves the block with
//!   [`JitExit::Fault`], RIP at that instruction and counts that include
//!   only the instructions before it.
//! - After an instruction whose slow path set `cpu.exit_req` (device
//!   access, write to a code page) the block returns [`JitExit::Completed`]
//!   right after that instruction; `exit_req` is left for the engine.
//!
//! - Instructions with `Sem::Helper` semantics (and any the semantics
//!   table does not know) are compiled as a call to
//!   [`runtime::exec_insn`], which runs the interpreter's handler for that
//!   one instruction on the same state: registers and lazy flags held in
//!   Cranelift variables are stored before the call and reloaded after. A
//!   helper instruction that faults, asks to leave (`exit_req`) or stops a
//!   REP at the budget ([`JitExit::Restart`]) leaves the block with the
//!   state exactly as the interpreter leaves it.
//! - 16-, 32- and 64-bit code compiles (the block key has the bitness). The
//!   stack size of 16/32-bit code (SS.B) is not part of the key: a block is
//!   compiled for the SS.B of the moment and is not entered under another
//!   ([`JitExit::NotEntered`]).

mod emitter;
mod mem;
pub mod runtime;

pub use emitter::ClifEmitter;

use crate::block::{Block, Insn};
use crate::emit::{Emitter, Stop};
use crate::exception::Exception;
use crate::flags::CcOp;
use crate::interp::{mask_ip, Interp};
use crate::semantics::{self, Sem};
use crate::state::{offset_of_field, seg_attr, CpuState, Field, Seg};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlagsData, Signature};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::Module;
use iced_x86::{Instruction, Mnemonic};
use runtime::JitCtx;
use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::time::Instant;

/// What a compiled block returns.
pub mod status {
    /// The block ran (to its end, or to an instruction that set `exit_req`).
    pub const COMPLETED: u64 = 0;
    /// The budget is shorter than the block: nothing was done.
    pub const NOT_ENTERED: u64 = 1;
    /// A slow path faulted; the exception is in `JitCtx::fault`.
    pub const FAULT: u64 = 2;
    /// A helper instruction retired and asked to leave (`exit_req`);
    /// `CpuState` is complete.
    pub const LEFT: u64 = 3;
    /// A helper instruction (REP string, string I/O) stopped before its
    /// end; RIP is still on it.
    pub const RESTART: u64 = 4;
    /// A helper panicked; the payload is in `JitCtx::panic`.
    pub const PANIC: u64 = 5;
    /// `STATIC_FAULT + i`: the block's i-th compile-time exception.
    pub const STATIC_FAULT: u64 = 16;
    /// `LINK + k`: as [`COMPLETED`], left at the region's exit site k (the
    /// engine keeps a successor link per exit site).
    pub const LINK: u64 = 1 << 32;
}

/// Why a block could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JitError {
    /// The block holds something this backend does not compile (yet).
    #[error("not compiled by the JIT: {0}")]
    Unsupported(String),
    /// Cranelift refused the function (a bug in the emitter).
    #[error("cranelift: {0}")]
    Codegen(String),
    /// An inconsistency in the block or the emitter.
    #[error("internal JIT error: {0}")]
    Internal(String),
}

/// How a compiled block ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitExit {
    /// Ran to its end (or to an instruction that set `exit_req`).
    Completed,
    /// Not entered: the budget is shorter than the block (or the stack size
    /// of 16/32-bit code is not the one it was compiled for). Nothing
    /// changed; the interpreter runs the block.
    NotEntered,
    /// A REP string (or string I/O) instruction stopped before its end, as
    /// the interpreter's `Stop::Restart`: RIP is on it, the iterations done
    /// are counted.
    Restart,
    /// An instruction faulted: RIP points at it, it did not retire.
    Fault(Exception),
}

/// Where the semantics of an instruction come from. The engine uses
/// [`StandardSemantics`]; tests and embedders may substitute their own.
pub trait SemSource {
    /// The semantics of `i` for backend `E`.
    fn sem<E: Emitter>(&self, i: &Instruction) -> Option<Sem<E>>;
}

/// The engine's semantic functions (`semantics::lookup`).
#[derive(Clone, Copy, Debug, Default)]
pub struct StandardSemantics;

impl SemSource for StandardSemantics {
    fn sem<E: Emitter>(&self, i: &Instruction) -> Option<Sem<E>> {
        semantics::lookup(i)
    }
}

/// The machine code of a compiled region: `entry` 0 enters at its first
/// block (the code checks and charges the budget); `k > 0` at member block
/// k, whose budget the caller has checked and charged.
type BlockFn = unsafe extern "C" fn(*mut CpuState, *mut JitCtx, u64) -> u64;

/// A region compiled to host code: one block, or a block and the blocks it
/// reaches by direct branches on the same page (loops), one Cranelift
/// function entered at the first. The code stays valid while this value
/// lives (it holds its JIT module).
pub struct CompiledBlock {
    /// The module holding the code (freed after the last region in it).
    _arena: Rc<Arena>,
    func: BlockFn,
    /// One successor link per exit site (status `LINK + k`), for the
    /// engine's lookup of the block that runs next.
    pub(crate) links: Box<[std::cell::Cell<crate::block::Link>]>,
    /// For each exit site: is it the exit of an indirect near JMP/CALL?
    /// (The engine marks the block run next as an indirect-branch target.)
    pub(crate) site_indirect: Box<[bool]>,
    /// Blocks of the region.
    pub blocks: usize,
    /// Instructions of each member block, by member index: the count
    /// charged when the region is entered at that member.
    member_insns: Box<[u32]>,
    /// Exceptions the code raises by status `STATIC_FAULT + i`.
    statics: Vec<Exception>,
    /// The instructions the code runs through the interpreter, by the index
    /// it passes to [`runtime::exec_insn`].
    helpers: Vec<Insn>,
    /// Code size (16, 32, 64).
    bitness: u32,
    /// Stack size the code was compiled for (16/32-bit code).
    stack_bits: u32,
    /// Instructions run through the interpreter (helpers).
    pub helper_insns: usize,
    /// Guest instructions in the region.
    pub insns: usize,
    /// Bytes of host code.
    pub code_size: usize,
}

impl CompiledBlock {
    /// Run the block on `cx` (its RIP must be the block's start).
    pub fn run(&self, cx: &mut Interp) -> JitExit {
        self.run_linked(cx).0
    }

    /// [`CompiledBlock::run`], also returning the exit site (the index of
    /// its successor link) when the region completed at one.
    pub fn run_linked(&self, cx: &mut Interp) -> (JitExit, Option<usize>) {
        self.run_member(cx, 0)
    }

    /// [`CompiledBlock::run_linked`], entered at member block `k` of the
    /// region (its RIP must be that block's start): exactly as if the
    /// region's code had reached that block by one of its own edges, with
    /// the budget check of that block (`NotEntered` when it is short).
    pub fn run_member(&self, cx: &mut Interp, k: usize) -> (JitExit, Option<usize>) {
        let (st, fault) = self.call(cx, k);
        if st >= status::LINK {
            return (JitExit::Completed, Some((st - status::LINK) as usize));
        }
        (self.decode(st, fault), None)
    }

    /// Enter the code; its status and the fault a helper reported.
    fn call(&self, cx: &mut Interp, k: usize) -> (u64, Option<Exception>) {
        if self.bitness != 64 && stack_bits(&cx.cpu) != self.stack_bits {
            return (status::NOT_ENTERED, None);
        }
        if k > 0 {
            // A member entry: its budget check is done here (the code's own
            // entry check is the first block's).
            let Some(&n) = self.member_insns.get(k) else {
                log::error!("region entered at member {k} of {}", self.blocks);
                return (status::NOT_ENTERED, None);
            };
            let n = u64::from(n);
            if cx.cpu.budget < n {
                return (status::NOT_ENTERED, None);
            }
            cx.cpu.budget -= n;
            cx.cpu.icount += n;
        }
        let interp: *mut Interp = cx;
        let mut rc = JitCtx {
            value: 0,
            interp,
            fault: None,
            helpers: self.helpers.as_ptr(),
            bitness: self.bitness,
            panic: None,
        };
        // SAFETY: both pointers come from `cx`, which we hold exclusively
        // for the call. The code accesses only `CpuState` fields (through
        // `offset_of_field`) and guest RAM through TLB entries, which point
        // into RAM by the TLB's invariant; helpers get the `Interp` back
        // through the context, and `helpers` outlives the call. `rc` stays
        // in place (copying it out right after the code wrote parts of it
        // costs a store-forwarding stall on every block).
        let st = unsafe {
            let cpu: *mut CpuState = &mut *(*interp).cpu;
            (self.func)(cpu, &mut rc, k as u64)
        };
        if st == status::NOT_ENTERED && k > 0 {
            // Refused at its entry (SSE not available): not entered, so
            // the member's charge is given back.
            let n = u64::from(self.member_insns[k]);
            cx.cpu.budget += n;
            cx.cpu.icount -= n;
        }
        if st == status::PANIC {
            if let Some(p) = rc.panic.take() {
                std::panic::resume_unwind(p);
            }
        }
        (st, rc.fault)
    }

    fn decode(&self, st: u64, fault: Option<Exception>) -> JitExit {
        match st {
            status::COMPLETED | status::LEFT => JitExit::Completed,
            status::NOT_ENTERED => JitExit::NotEntered,
            status::RESTART => JitExit::Restart,
            status::FAULT => match fault {
                Some(ex) => JitExit::Fault(ex),
                None => {
                    log::error!("compiled block reported a fault without an exception");
                    JitExit::Fault(Exception::ud())
                }
            },
            status::PANIC => panic!("compiled block reported a panic without a payload"),
            s => match s
                .checked_sub(status::STATIC_FAULT)
                .and_then(|k| self.statics.get(k as usize))
            {
                Some(&ex) => JitExit::Fault(ex),
                None => {
                    log::error!("compiled block returned unknown status {s}");
                    JitExit::Fault(Exception::ud())
                }
            },
        }
    }
}

/// The stack size of 16/32-bit code, as the interpreter's
/// `Emitter::stack_bits` decides it (SS.B).
pub fn stack_bits(cpu: &CpuState) -> u32 {
    if cpu.seg[Seg::Ss as usize].attrs & seg_attr::DB != 0 {
        32
    } else {
        16
    }
}

/// Cranelift optimisation level for compiled blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptLevel {
    /// Fastest compilation.
    None,
    /// Cranelift's optimisations (e-graph rewrites, GVN, DCE).
    Speed,
}

/// How the JIT compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitOptions {
    /// Cranelift optimisation level.
    pub opt: OptLevel,
    /// Run Cranelift's IR verifier on every function (default: in debug
    /// builds).
    pub verify: bool,
}

/// `opt: None` by measurement (`compile_time_per_block`): on the short,
/// already constant-folded blocks the emitter produces, Cranelift's
/// optimiser made the code no faster and compiled ~1.7 times slower.
impl Default for JitOptions {
    fn default() -> Self {
        JitOptions {
            opt: OptLevel::None,
            verify: cfg!(debug_assertions),
        }
    }
}

/// Counters for `--stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JitStats {
    /// Regions compiled (functions; a region is one or more blocks).
    pub blocks: u64,
    /// Total compile time, nanoseconds (IR building and code generation).
    pub compile_ns: u64,
    /// Part of `compile_ns` spent building IR from the semantics.
    pub build_ns: u64,
    /// Part of `compile_ns` spent making the code executable.
    pub finalize_ns: u64,
    /// Total host code bytes.
    pub code_bytes: u64,
    /// Blocks in the compiled regions (`blocks` counts regions).
    pub region_blocks: u64,
    /// Longest compilation of one region, nanoseconds.
    pub max_compile_ns: u64,
    /// JIT modules started after the first (see [`Jit::set_module_limit`]).
    pub modules: u64,
}

/// A Cranelift JIT module and the code compiled into it. Every region
/// compiled into it holds it (`Rc`), so its memory is freed when the last
/// of them is dropped and the compiler has moved on to a newer module
/// (cranelift-jit cannot free single functions).
struct Arena {
    module: RefCell<ManuallyDrop<JITModule>>,
    /// Modules freed so far (shared by all arenas of one compiler).
    freed: Rc<Cell<u64>>,
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: no region of this module is left (each holds the arena),
        // so none of its functions runs or is called again.
        unsafe { ManuallyDrop::take(self.module.get_mut()).free_memory() };
        self.freed.set(self.freed.get() + 1);
    }
}

/// Code bytes after which the compiler starts a new module (so the old one
/// can be freed once its regions are dropped).
pub const DEFAULT_MODULE_LIMIT: u64 = 16 << 20;

/// The compiler: a Cranelift JIT module and reusable contexts.
pub struct Jit {
    arena: Rc<Arena>,
    isa: cranelift_codegen::isa::OwnedTargetIsa,
    /// Code bytes in the current module, and the limit that starts a new one.
    arena_bytes: u64,
    module_limit: u64,
    fctx: FunctionBuilderContext,
    ctx: Context,
    sig_block: Signature,
    sig_load: Signature,
    sig_store: Signature,
    sig_cond: Signature,
    sig_rflags: Signature,
    sig_exec: Signature,
    /// Counters.
    pub stats: JitStats,
}

impl Jit {
    /// A compiler for the host with the default options.
    pub fn new() -> Result<Jit, JitError> {
        Self::with_options(JitOptions::default())
    }

    /// A compiler with the given optimisation level (other options default).
    pub fn with_opt(opt: OptLevel) -> Result<Jit, JitError> {
        Self::with_options(JitOptions {
            opt,
            ..JitOptions::default()
        })
    }

    /// A compiler with the given options.
    pub fn with_options(o: JitOptions) -> Result<Jit, JitError> {
        let cg = |e: &dyn std::fmt::Display| JitError::Codegen(e.to_string());
        let mut fb = settings::builder();
        let level = match o.opt {
            OptLevel::None => "none",
            OptLevel::Speed => "speed",
        };
        let verify = if o.verify { "true" } else { "false" };
        for (k, v) in [
            ("opt_level", level),
            ("enable_verifier", verify),
            ("preserve_frame_pointers", "true"),
            ("is_pic", "false"),
            ("use_colocated_libcalls", "false"),
        ] {
            fb.set(k, v).map_err(|e| cg(&e))?;
        }
        let isa = cranelift_native::builder()
            .map_err(|e| cg(&e))?
            .finish(settings::Flags::new(fb))
            .map_err(|e| cg(&e))?;
        let module = new_module(&isa);
        let sig = |params: usize| {
            let mut s = module.make_signature();
            s.params.extend((0..params).map(|_| AbiParam::new(I64)));
            s.returns.push(AbiParam::new(I64));
            s
        };
        Ok(Jit {
            sig_block: sig(3),
            sig_load: sig(4),
            sig_store: sig(5),
            sig_cond: sig(2),
            sig_rflags: sig(1),
            sig_exec: sig(3),
            ctx: module.make_context(),
            fctx: FunctionBuilderContext::new(),
            arena: Rc::new(Arena {
                module: RefCell::new(ManuallyDrop::new(module)),
                freed: Rc::default(),
            }),
            isa,
            arena_bytes: 0,
            module_limit: DEFAULT_MODULE_LIMIT,
            stats: JitStats::default(),
        })
    }

    /// Start a new module once the current one holds `bytes` of code
    /// (tests use small limits).
    pub fn set_module_limit(&mut self, bytes: u64) {
        self.module_limit = bytes;
    }

    /// Compile into a new module from now on; the current one is freed
    /// when its last region is dropped.
    fn rotate(&mut self) {
        let freed = self.arena.freed.clone();
        self.arena = Rc::new(Arena {
            module: RefCell::new(ManuallyDrop::new(new_module(&self.isa))),
            freed,
        });
        self.arena_bytes = 0;
        self.stats.modules += 1;
    }

    /// JIT modules freed so far (their regions all dropped).
    pub fn modules_freed(&self) -> u64 {
        self.arena.freed.get()
    }

    /// Compile `block` with the engine's semantics. 16/32-bit code is
    /// compiled for a stack of its own code size (see [`Jit::compile_for`]).
    pub fn compile(&mut self, block: &Block) -> Result<CompiledBlock, JitError> {
        self.compile_with(block, &StandardSemantics)
    }

    /// Compile `block` for the CPU state it is about to run on (the stack
    /// size of 16/32-bit code is taken from SS).
    pub fn compile_for(
        &mut self,
        block: &Block,
        cpu: &CpuState,
    ) -> Result<CompiledBlock, JitError> {
        self.compile_region(&[block], cpu)
    }

    /// Compile a region: `blocks[0]` is its entry; edges between the
    /// blocks (direct branches and fall-throughs whose target starts one
    /// of them) become jumps inside the function. The caller guarantees
    /// that every block is what the engine's lookup returns at its RIP
    /// while the region runs (same page as the entry, see
    /// `BlockCache::region`). The lazy-flags operation in `cpu` is the
    /// guess for a flags read at the entry.
    pub fn compile_region(
        &mut self,
        blocks: &[&Block],
        cpu: &CpuState,
    ) -> Result<CompiledBlock, JitError> {
        let sb = if blocks.first().is_some_and(|b| b.key.bitness == 64) {
            64
        } else {
            stack_bits(cpu)
        };
        let guess = Some(CcOp::from_raw(cpu.cc_op));
        self.compile_inner(blocks, &StandardSemantics, sb, guess)
    }

    /// Compile `block` with the semantics of `src`.
    pub fn compile_with<S: SemSource>(
        &mut self,
        block: &Block,
        src: &S,
    ) -> Result<CompiledBlock, JitError> {
        let sb = match block.key.bitness {
            64 => 64,
            32 => 32,
            _ => 16,
        };
        self.compile_inner(&[block], src, sb, None)
    }

    fn compile_inner<S: SemSource>(
        &mut self,
        blocks: &[&Block],
        src: &S,
        stack_bits: u32,
        guess: Option<CcOp>,
    ) -> Result<CompiledBlock, JitError> {
        let t0 = Instant::now();
        let built = self.build(blocks, src, stack_bits, guess)?;
        self.stats.build_ns += t0.elapsed().as_nanos() as u64;
        let r = self.finish();
        self.arena.module.borrow_mut().clear_context(&mut self.ctx);
        let (func, code_size) = r?;
        self.stats.blocks += 1;
        self.stats.region_blocks += blocks.len() as u64;
        let ns = t0.elapsed().as_nanos() as u64;
        self.stats.compile_ns += ns;
        self.stats.max_compile_ns = self.stats.max_compile_ns.max(ns);
        self.stats.code_bytes += code_size as u64;
        let arena = self.arena.clone();
        self.arena_bytes += code_size as u64;
        if self.arena_bytes >= self.module_limit {
            self.rotate();
        }
        Ok(CompiledBlock {
            _arena: arena,
            func,
            links: (0..built.links).map(|_| Default::default()).collect(),
            site_indirect: built.site_indirect.into(),
            blocks: blocks.len(),
            member_insns: blocks.iter().map(|b| b.insns.len() as u32).collect(),
            statics: built.statics,
            helper_insns: built.helpers.len(),
            helpers: built.helpers,
            bitness: blocks[0].key.bitness,
            stack_bits,
            insns: blocks.iter().map(|b| b.insns.len()).sum(),
            code_size,
        })
    }

    /// The Cranelift IR of `block` as built, before optimisation (for
    /// tests and `-d` logs).
    pub fn clif(&mut self, block: &Block) -> Result<String, JitError> {
        self.clif_region(&[block], None)
    }

    /// The Cranelift IR of a region (see [`Jit::compile_region`]) with the
    /// entry's flags guess `guess`.
    pub fn clif_region(
        &mut self,
        blocks: &[&Block],
        guess: Option<CcOp>,
    ) -> Result<String, JitError> {
        let sb = if blocks.first().is_some_and(|b| b.key.bitness == 64) {
            64
        } else {
            32
        };
        self.build(blocks, &StandardSemantics, sb, guess)?;
        let text = self.ctx.func.display().to_string();
        self.arena.module.borrow_mut().clear_context(&mut self.ctx);
        Ok(text)
    }

    /// Generate machine code for the function in `self.ctx`.
    fn finish(&mut self) -> Result<(BlockFn, usize), JitError> {
        let cg = |e: cranelift_module::ModuleError| JitError::Codegen(format!("{e:?}"));
        let mut module = self.arena.module.borrow_mut();
        let id = module
            .declare_anonymous_function(&self.sig_block)
            .map_err(cg)?;
        module.define_function(id, &mut self.ctx).map_err(cg)?;
        let size = self
            .ctx
            .compiled_code()
            .map_or(0, |c| c.code_buffer().len());
        let t0 = Instant::now();
        module.finalize_definitions().map_err(cg)?;
        self.stats.finalize_ns += t0.elapsed().as_nanos() as u64;
        let ptr = module.get_finalized_function(id);
        // SAFETY: the function was built with `sig_block`, which is this
        // type under the host's default (C) calling convention.
        let func = unsafe { std::mem::transmute::<*const u8, BlockFn>(ptr) };
        Ok((func, size))
    }

    /// Build the IR of `block` into `self.ctx.func`. Returns the static
    /// exceptions table and the helper instructions.
    fn build<S: SemSource>(
        &mut self,
        blocks: &[&Block],
        src: &S,
        stack_bits: u32,
        guess: Option<CcOp>,
    ) -> Result<Built, JitError> {
        if blocks.is_empty() || blocks.iter().any(|b| b.insns.is_empty()) {
            return Err(JitError::Internal("empty block".into()));
        }
        self.arena.module.borrow_mut().clear_context(&mut self.ctx);
        self.ctx.func.signature = self.sig_block.clone();
        let config = self.arena.module.borrow().target_config();
        let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
        let sigs = emitter::Sigs {
            load: b.import_signature(self.sig_load.clone()),
            store: b.import_signature(self.sig_store.clone()),
            cond: b.import_signature(self.sig_cond.clone()),
            rflags: b.import_signature(self.sig_rflags.clone()),
            exec: b.import_signature(self.sig_exec.clone()),
        };
        match emit_region(&mut b, blocks, src, sigs, stack_bits, guess) {
            Ok(built) => {
                b.finalize(config);
                Ok(built)
            }
            Err(e) => {
                // The builder was not finalized: start its context afresh.
                self.fctx = FunctionBuilderContext::new();
                self.arena.module.borrow_mut().clear_context(&mut self.ctx);
                Err(e)
            }
        }
    }
}

fn new_module(isa: &cranelift_codegen::isa::OwnedTargetIsa) -> JITModule {
    JITModule::new(JITBuilder::with_isa(
        isa.clone(),
        cranelift_module::default_libcall_names(),
    ))
}

/// Instructions that raise #UD whatever the semantics table says, as the
/// interpreter's `interp_handler` decides.
fn always_ud(i: &Instruction) -> bool {
    i.is_invalid() || semantics::bad_lock(i) || i.mnemonic() == Mnemonic::Ud2
}

/// The function's parameters: `cpu`, `ctx` and the entry member index.
struct Params {
    cpu: cranelift_codegen::ir::Value,
    ctx: cranelift_codegen::ir::Value,
    /// With member entries: the block that entries at members `k > 0` go
    /// to (the member index is still to be dispatched on).
    members: Option<(cranelift_codegen::ir::Block, cranelift_codegen::ir::Value)>,
}

/// The function entry. With `members`, an entry index other than 0 goes
/// to a block of its own (`Params::members`). Entry 0 gets the entry
/// check: leave with `NOT_ENTERED` unless the budget covers the whole
/// first block; then take the block's count off the budget and add it to
/// `icount` once.
fn emit_entry(b: &mut FunctionBuilder, n: usize, members: bool, sse_gate: bool) -> Params {
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry);
    let (cpu, ctx, idx) = (p[0], p[1], p[2]);
    if sse_gate {
        emit_sse_gate(b, cpu);
    }
    let members = members.then(|| {
        let head = b.create_block();
        let member = b.create_block();
        b.ins().brif(idx, member, &[], head, &[]);
        b.seal_block(head);
        b.seal_block(member);
        b.switch_to_block(head);
        (member, idx)
    });
    let fl = MemFlagsData::trusted();
    let budget_off = offset_of_field(Field::Budget) as i32;
    let icount_off = offset_of_field(Field::Icount) as i32;
    let budget = b.ins().load(I64, fl, cpu, budget_off);
    let short = b
        .ins()
        .icmp_imm_u(IntCC::UnsignedLessThan, budget, n as i64);
    let not_entered = b.create_block();
    let body = b.create_block();
    b.ins().brif(short, not_entered, &[], body, &[]);
    b.seal_block(not_entered);
    b.seal_block(body);
    b.set_cold_block(not_entered);
    b.switch_to_block(not_entered);
    let st = b.ins().iconst(I64, status::NOT_ENTERED as i64);
    b.ins().return_(&[st]);
    b.switch_to_block(body);
    let budget = b.ins().iadd_imm_s(budget, -(n as i64));
    b.ins().store(fl, budget, cpu, budget_off);
    let icount = b.ins().load(I64, fl, cpu, icount_off);
    let icount = b.ins().iadd_imm_s(icount, n as i64);
    b.ins().store(fl, icount, cpu, icount_off);
    Params { cpu, ctx, members }
}

/// Leave with `NOT_ENTERED` (before anything is charged or changed)
/// unless SSE instructions can run: CR0.EM and CR0.TS clear, CR4.OSFXSR
/// set. Then no SSE instruction of the region needs its own check; when
/// it fails, the interpreter runs the block and raises #UD/#NM where the
/// instruction is.
fn emit_sse_gate(b: &mut FunctionBuilder, cpu: cranelift_codegen::ir::Value) {
    use crate::state::{cr0, cr4};
    let fl = MemFlagsData::trusted();
    let c0 = b
        .ins()
        .load(I64, fl, cpu, core::mem::offset_of!(CpuState, cr0) as i32);
    let c4 = b
        .ins()
        .load(I64, fl, cpu, core::mem::offset_of!(CpuState, cr4) as i32);
    let bad0 = b.ins().band_imm_u(c0, (cr0::EM | cr0::TS) as i64);
    let fx = b.ins().band_imm_u(c4, cr4::OSFXSR as i64);
    let no_fx = b.ins().bxor_imm_u(fx, cr4::OSFXSR as i64);
    let bad = b.ins().bor(bad0, no_fx);
    let out = b.create_block();
    let ok = b.create_block();
    b.ins().brif(bad, out, &[], ok, &[]);
    b.seal_block(out);
    b.seal_block(ok);
    b.set_cold_block(out);
    b.switch_to_block(out);
    let st = b.ins().iconst(I64, status::NOT_ENTERED as i64);
    b.ins().return_(&[st]);
    b.switch_to_block(ok);
}

/// Does some instruction of the region name an XMM register (an SSE
/// instruction, which checks SSE availability)?
fn names_xmm(blocks: &[&Block]) -> bool {
    let mut f = iced_x86::InstructionInfoFactory::new();
    blocks.iter().flat_map(|b| &b.insns).any(|insn| {
        f.info(&insn.i)
            .used_registers()
            .iter()
            .any(|u| u.register().is_xmm())
    })
}

/// What building a region's IR produces.
struct Built {
    /// Exceptions raised by status `STATIC_FAULT + i`.
    statics: Vec<Exception>,
    /// The instructions run through [`runtime::exec_insn`].
    helpers: Vec<Insn>,
    /// Number of exit sites with a link status.
    links: u64,
    /// Per exit site: left after an indirect near JMP/CALL.
    site_indirect: Vec<bool>,
}

/// The slots a multi-block region keeps in variables across its edges
/// (`.0`): every general and XMM register some instruction of the region
/// names (read or written). And (`.1`) those of them that stay dirty
/// across edges, stored at exits only (`ClifEmitter::kept`): the XMM
/// halves some instruction writes, and the general registers written in
/// at least half of the blocks (the others are stored at the edges of the
/// blocks that write them). Only cost decisions: any sets are correct.
fn carried_slots(blocks: &[&Block]) -> ([bool; emitter::SLOTS], [bool; emitter::SLOTS]) {
    use iced_x86::OpAccess as A;
    let mut set = [false; emitter::SLOTS];
    let mut kept = [false; emitter::SLOTS];
    if blocks.len() < 2 && !self_loop(blocks[0]) {
        return (set, kept);
    }
    // Blocks writing each slot.
    let mut writers = [0usize; emitter::SLOTS];
    let mut f = iced_x86::InstructionInfoFactory::new();
    for b in blocks {
        let mut written = [false; emitter::SLOTS];
        for insn in &b.insns {
            for u in f.info(&insn.i).used_registers() {
                let w = matches!(
                    u.access(),
                    A::Write | A::CondWrite | A::ReadWrite | A::ReadCondWrite
                );
                let r = u.register().full_register();
                if r.is_gpr64() {
                    set[r.number()] = true;
                    written[r.number()] |= w;
                } else if u.register().is_xmm() {
                    // Both halves: a loop's vector accumulator stays in
                    // host registers instead of a store and a reload
                    // through `CpuState` at every turn.
                    let n = u.register().number() - iced_x86::Register::XMM0.number();
                    for high in [false, true] {
                        let s = emitter::xmm_slot(n, high);
                        set[s] = true;
                        // Any XMM write: storing them at edges cost
                        // ssemem ~15%.
                        kept[s] |= w;
                    }
                }
            }
        }
        for (n, w) in writers.iter_mut().zip(written) {
            *n += w as usize;
        }
    }
    for (k, n) in kept.iter_mut().zip(writers) {
        *k |= 2 * n >= blocks.len() && n > 0;
    }
    (set, kept)
}

/// Does `block` branch to its own start (a one-block loop)?
fn self_loop(block: &Block) -> bool {
    block.static_successors().contains(&block.key.rip)
}

/// Emit a region: the entry check, then each block; edges between blocks
/// are jumps to the target block's budget check.
fn emit_region<S: SemSource>(
    b: &mut FunctionBuilder,
    blocks: &[&Block],
    src: &S,
    sigs: emitter::Sigs,
    stack_bits: u32,
    guess: Option<CcOp>,
) -> Result<Built, JitError> {
    // A block that loops to itself is a region too (its edge a jump).
    let multi = blocks.len() > 1 || self_loop(blocks[0]);
    // A region with SSE code checks availability once, at its entry, not
    // at every member block (each turn of a loop).
    let sse_gate = multi && names_xmm(blocks);
    let Params { cpu, ctx, members } = emit_entry(b, blocks[0].insns.len(), multi, sse_gate);
    let bits = blocks[0].key.bitness;
    // Each block's entry for edges (budget check, then its body).
    let entries: Vec<_> = blocks.iter().map(|_| b.create_block()).collect();
    // Each member's body (also where an entry at that member goes).
    let bodies: Vec<_> = blocks.iter().map(|_| b.create_block()).collect();
    let head_body = bodies[0];
    let index: std::collections::HashMap<u64, usize> = blocks
        .iter()
        .enumerate()
        .map(|(k, blk)| (blk.key.rip, k))
        .collect();
    // Where a near RET of the region most likely goes: the return sites of
    // its CALLs that are members (compared at run time, first ones first).
    let ret_sites: Vec<u64> = blocks
        .iter()
        .filter_map(|b| b.return_site())
        .filter(|r| index.contains_key(r))
        .take(4)
        .collect();
    // Where an indirect near JMP/CALL of the region most likely goes: the
    // members that the engine saw entered after one, hottest first
    // (compared at run time).
    let mut ind_targets: Vec<&Block> = blocks
        .iter()
        .copied()
        .filter(|b| b.is_indirect_target())
        .collect();
    ind_targets.sort_by_key(|b| std::cmp::Reverse(b.exec_count.get()));
    let ind_targets: Vec<u64> = ind_targets.iter().map(|b| b.key.rip).collect();
    let mut guesses: Vec<Option<CcOp>> = vec![None; blocks.len()];
    guesses[0] = guess;
    let mut e = ClifEmitter::new(b, cpu, ctx, sigs, bits, stack_bits);
    (e.carried, e.kept) = carried_slots(blocks);
    e.sse_region = sse_gate;
    // The lazy flags go to variables when some read may use a guess or
    // edges carry them.
    let dynamic_cc = multi || (guess.is_some() && reads_flags_first(blocks[0]));
    e.preload(dynamic_cc);
    e.b.ins().jump(head_body, &[]);
    if let Some((member, idx)) = members {
        // Entered at member k > 0 (budget charged by the caller): the state
        // of a member entry, then that member's body.
        e.b.switch_to_block(member);
        e.preload(true);
        let mut sw = cranelift_frontend::Switch::new();
        for (k, &body) in bodies.iter().enumerate().skip(1) {
            sw.set_entry(k as u128, body);
        }
        // The caller passes a valid index; any other is the last member.
        sw.emit(e.b, idx, bodies[bodies.len() - 1]);
    }
    let mut helpers = Vec::new();
    let mut head_reached = false;
    for (k, block) in blocks.iter().enumerate() {
        let n = block.insns.len();
        if k == 0 {
            e.b.switch_to_block(head_body);
        } else {
            e.b.switch_to_block(entries[k]);
            e.set_entry_state(true, guesses[k]);
            e.member_budget_check(n, block.key.rip);
            e.b.ins().jump(bodies[k], &[]);
            e.b.switch_to_block(bodies[k]);
        }
        e.set_entry_state(dynamic_cc, guesses[k]);
        let ips = block
            .insns
            .iter()
            .map(|i| mask_ip(i.i.ip(), bits))
            .collect();
        e.start_block(ips);
        if emit_insns(&mut e, block, src, &mut helpers)? {
            let cands = if !multi {
                Vec::new()
            } else if block.ends_in_near_ret() {
                ret_sites.clone()
            } else if block.ends_in_indirect_branch() {
                ind_targets.clone()
            } else {
                block.static_successors()
            };
            e.indirect_end = block.ends_in_indirect_branch();
            let mut succ = |t: u64, cc: Option<CcOp>| {
                let &j = index.get(&t)?;
                if guesses[j].is_none() {
                    guesses[j] = cc;
                }
                head_reached |= j == 0;
                Some(entries[j])
            };
            e.end_block_in_region(&mut succ, &cands);
            e.indirect_end = false;
        }
        if let Some(err) = e.err.take() {
            return Err(err);
        }
    }
    let ind_inside: Vec<_> = ind_targets
        .iter()
        .filter_map(|t| index.get(t).map(|&j| (*t, entries[j])))
        .collect();
    e.emit_shared_dispatch(&ind_inside);
    if let Some(err) = e.err.take() {
        return Err(err);
    }
    if head_reached {
        // Edges back to the entry block come through its budget check.
        e.b.switch_to_block(entries[0]);
        e.set_entry_state(true, guesses[0]);
        e.member_budget_check(blocks[0].insns.len(), blocks[0].key.rip);
        e.b.ins().jump(head_body, &[]);
    }
    e.b.seal_all_blocks();
    Ok(Built {
        statics: std::mem::take(&mut e.statics),
        helpers,
        links: e.links,
        site_indirect: std::mem::take(&mut e.site_indirect),
    })
}

/// Does an instruction of `block` read arithmetic flags before one writes
/// them (so the flags at entry matter)?
fn reads_flags_first(block: &Block) -> bool {
    use crate::flags::FlagSet;
    for insn in &block.insns {
        let i = &insn.i;
        if !(FlagSet::from_iced(i.rflags_read()) & FlagSet::ARITH).is_empty() {
            return true;
        }
        let written = FlagSet::from_iced(i.rflags_modified()) & FlagSet::ARITH;
        if !written.is_empty() {
            // INC/DEC keep CF and shifts by 0 keep everything: the lazy
            // state reads the old flags for them.
            return written != FlagSet::ARITH || is_shift(i.mnemonic());
        }
    }
    false
}

fn is_shift(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Shl | M::Shr | M::Sar | M::Sal | M::Rol | M::Ror | M::Rcl | M::Rcr | M::Shld | M::Shrd
    )
}

/// Emit the instructions of `block`. `Ok(false)`: the block ended in a
/// static fault (the rest is dead code, nothing follows it).
fn emit_insns<S: SemSource>(
    e: &mut ClifEmitter,
    block: &Block,
    src: &S,
    helpers: &mut Vec<Insn>,
) -> Result<bool, JitError> {
    for (k, insn) in block.insns.iter().enumerate() {
        e.begin_insn(k, insn);
        let r = if always_ud(&insn.i) {
            Err(Stop::Fault(Exception::ud()))
        } else {
            match src.sem(&insn.i) {
                Some(Sem::Emit(f)) => f(e, insn),
                // Helpers, and forms the table does not know (their
                // interpreter handler raises #UD): the interpreter's
                // handler runs them.
                _ => {
                    e.call_interp(helpers.len());
                    helpers.push(insn.clone());
                    Ok(())
                }
            }
        };
        if let Some(err) = e.err.take() {
            return Err(err);
        }
        match r {
            Ok(()) => e.end_insn(),
            Err(Stop::Fault(ex)) => {
                // Raised unconditionally: the rest of the block is dead.
                e.static_fault(ex);
                return Ok(false);
            }
            Err(Stop::Restart) => {
                return Err(JitError::Unsupported(
                    "restartable instruction with generic semantics".into(),
                ))
            }
        }
        if let Some(err) = e.err.take() {
            return Err(err);
        }
    }
    Ok(true)
}
