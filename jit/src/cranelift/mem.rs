//! Guest memory access in compiled code: the soft-TLB fast path inline, a
//! call to the runtime's slow path on a miss.
//!
//! Fast path (see `soft_tlb.rs`): entry = `tlb.entries[(lin >> 12) & (TLB_ENTRIES - 1)]`;
//! hit when the entry's read (or write) tag equals the page of the access's
//! *last* byte; host address = `lin + addend`. Comparing the last byte's
//! page also rejects page-crossing accesses in the same compare: the entry
//! is chosen by the first byte's page, and a tag only ever sits in the entry
//! of its own index, so an entry picked for page P never holds tag P+1.
//!
//! The TLB entry layout is taken from `TlbEntry` here, in one place, on top
//! of `offset_of_field(Field::Tlb)`.

use super::emitter::{guest_flags, ty_of, ClifEmitter};
use super::runtime::{self, CTX_VALUE};
use crate::emit::Width;
use crate::soft_tlb::{SoftTlb, TlbEntry, PAGE_MASK, TLB_ENTRIES};
use crate::state::{offset_of_field, Field};
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{BlockArg, InstBuilder, MemFlagsData, Value};

/// Which tag an access compares.
#[derive(Clone, Copy)]
enum Kind {
    Read,
    Write,
}

/// Byte offset, inside `CpuState`, of entry 0 of the TLB.
const TLB_ENTRIES_OFFSET: usize =
    offset_of_field(Field::Tlb) + core::mem::offset_of!(SoftTlb, entries);
const ENTRY_SIZE: usize = core::mem::size_of::<TlbEntry>();
const READ_TAG: i32 = core::mem::offset_of!(TlbEntry, read_tag) as i32;
const WRITE_TAG: i32 = core::mem::offset_of!(TlbEntry, write_tag) as i32;
const ADDEND: i32 = core::mem::offset_of!(TlbEntry, addend) as i32;

// The index computation below multiplies by a shift.
const _: () = assert!(ENTRY_SIZE.is_power_of_two() && TLB_ENTRIES.is_power_of_two());

/// Emit the TLB probe for an access of `len` bytes at `lin`. Leaves the
/// builder in the fast-path block and returns `(host address, slow block,
/// merge block)`; the caller fills the slow block.
fn probe(
    e: &mut ClifEmitter,
    lin: Value,
    len: u64,
    kind: Kind,
) -> (Value, cranelift_codegen::ir::Block) {
    let b = &mut *e.b;
    let trusted = MemFlagsData::trusted();
    let page_no = b.ins().ushr_imm_u(lin, 12);
    let idx = b.ins().band_imm_u(page_no, (TLB_ENTRIES - 1) as i64);
    let off = b.ins().ishl_imm_u(idx, ENTRY_SIZE.trailing_zeros() as i64);
    let entry = b.ins().iadd(e.cpu, off);
    let tag_off = match kind {
        Kind::Read => READ_TAG,
        Kind::Write => WRITE_TAG,
    };
    let tag = b
        .ins()
        .load(I64, trusted, entry, TLB_ENTRIES_OFFSET as i32 + tag_off);
    let last = b.ins().iadd_imm_s(lin, len as i64 - 1);
    let page = b.ins().band_imm_s(last, !(PAGE_MASK as i64));
    let hit = b
        .ins()
        .icmp(cranelift_codegen::ir::condcodes::IntCC::Equal, page, tag);
    let fast = b.create_block();
    let slow = b.create_block();
    b.ins().brif(hit, fast, &[], slow, &[]);
    b.seal_block(fast);
    b.seal_block(slow);
    b.set_cold_block(slow);
    b.switch_to_block(fast);
    let addend = b
        .ins()
        .load(I64, trusted, entry, TLB_ENTRIES_OFFSET as i32 + ADDEND);
    let host = b.ins().iadd(lin, addend);
    (host, slow)
}

/// On the slow path: leave the block when the helper's status says the
/// access faulted (the status is the block's exit status).
fn fault_check(e: &mut ClifEmitter, st: Value) {
    let k = e.insn_index();
    e.branch_to_exit(st, k, st);
}

/// Load `w` bytes at linear `lin`, zero-extended to 64 bits.
pub(crate) fn emit_load(e: &mut ClifEmitter, lin: Value, w: Width) -> Value {
    let merge = e.b.create_block();
    let v = e.b.append_block_param(merge, I64);
    let (host, slow) = probe(e, lin, w.bytes() as u64, Kind::Read);
    let raw = e.b.ins().load(ty_of(w), guest_flags(), host, 0);
    let fast_v = if w == Width::Q {
        raw
    } else {
        e.b.ins().uextend(I64, raw)
    };
    e.b.ins().jump(merge, &[BlockArg::Value(fast_v)]);

    e.b.switch_to_block(slow);
    e.called_slow_path = true;
    let slow_v = load_slow(e, lin, w.bytes() as u64);
    e.b.ins().jump(merge, &[BlockArg::Value(slow_v)]);
    e.b.seal_block(merge);
    e.b.switch_to_block(merge);
    v
}

/// Store the low `w` bytes of `v` at linear `lin`.
pub(crate) fn emit_store(e: &mut ClifEmitter, lin: Value, w: Width, v: Value) {
    let merge = e.b.create_block();
    let (host, slow) = probe(e, lin, w.bytes() as u64, Kind::Write);
    let narrow = if w == Width::Q {
        v
    } else {
        e.b.ins().ireduce(ty_of(w), v)
    };
    e.b.ins().store(guest_flags(), narrow, host, 0);
    e.b.ins().jump(merge, &[]);

    e.b.switch_to_block(slow);
    e.called_slow_path = true;
    call_slow(
        e,
        runtime::store_slow as *const (),
        lin,
        w.bytes() as u64,
        Some(v),
    );
    e.b.ins().jump(merge, &[]);
    e.b.seal_block(merge);
    e.b.switch_to_block(merge);
}

/// Check that the `len` bytes at `lin` (crossing a page) can be written:
/// a cold call that leaves the block when a page is not writable.
pub(crate) fn emit_probe_write(e: &mut ClifEmitter, lin: Value, len: u64) {
    e.called_slow_path = true;
    // Same shape as the load helper: (ctx, lin, bytes, adj) -> status.
    call_slow(e, runtime::probe_write_slow as *const (), lin, len, None);
}

/// Call a slow-path memory helper for `bytes` bytes at `lin` (`store`: the
/// value a store writes; otherwise the load-shaped signature), leaving the
/// block when its status says the access faulted.
fn call_slow(e: &mut ClifEmitter, helper: *const (), lin: Value, bytes: u64, store: Option<Value>) {
    let bytes = e.b.ins().iconst(I64, bytes as i64);
    let pending = e.pending_count() as i64;
    let adj = e.b.ins().iconst(I64, pending);
    let ctx = e.ctx;
    let st = match store {
        Some(v) => e.call_helper(e.sigs.store, helper, &[ctx, lin, bytes, v, adj]),
        None => e.call_helper(e.sigs.load, helper, &[ctx, lin, bytes, adj]),
    };
    fault_check(e, st);
}

/// The runtime's load of `bytes` bytes at `lin` (the slow path): the value
/// it leaves in the context.
fn load_slow(e: &mut ClifEmitter, lin: Value, bytes: u64) -> Value {
    call_slow(e, runtime::load_slow as *const (), lin, bytes, None);
    e.b.ins()
        .load(I64, MemFlagsData::trusted(), e.ctx, CTX_VALUE)
}

/// Load 16 bytes at `lin` as (low, high) 8-byte halves: one TLB probe for
/// the whole range (inside one page and a hit: two host loads), else the
/// two 8-byte loads one after the other through the slow path, exactly
/// as [`crate::emit::Emitter::load16`] defines them.
pub(crate) fn emit_load16(e: &mut ClifEmitter, lin: Value) -> (Value, Value) {
    let merge = e.b.create_block();
    let lo = e.b.append_block_param(merge, I64);
    let hi = e.b.append_block_param(merge, I64);
    let (host, slow) = probe(e, lin, 16, Kind::Read);
    let f_lo = e.b.ins().load(I64, guest_flags(), host, 0);
    let f_hi = e.b.ins().load(I64, guest_flags(), host, 8);
    e.b.ins()
        .jump(merge, &[BlockArg::Value(f_lo), BlockArg::Value(f_hi)]);

    e.b.switch_to_block(slow);
    e.called_slow_path = true;
    let s_lo = load_slow(e, lin, 8);
    let lin8 = e.b.ins().iadd_imm_s(lin, 8);
    let s_hi = load_slow(e, lin8, 8);
    e.b.ins()
        .jump(merge, &[BlockArg::Value(s_lo), BlockArg::Value(s_hi)]);
    e.b.seal_block(merge);
    e.b.switch_to_block(merge);
    (lo, hi)
}

/// Store 16 bytes at `lin` as two 8-byte halves, with one TLB probe for
/// the whole range; the slow path is the two stores one after the other
/// ([`crate::emit::Emitter::store16`]).
pub(crate) fn emit_store16(e: &mut ClifEmitter, lin: Value, lo: Value, hi: Value) {
    let merge = e.b.create_block();
    let (host, slow) = probe(e, lin, 16, Kind::Write);
    e.b.ins().store(guest_flags(), lo, host, 0);
    e.b.ins().store(guest_flags(), hi, host, 8);
    e.b.ins().jump(merge, &[]);

    e.b.switch_to_block(slow);
    e.called_slow_path = true;
    let store = runtime::store_slow as *const ();
    call_slow(e, store, lin, 8, Some(lo));
    let lin8 = e.b.ins().iadd_imm_s(lin, 8);
    call_slow(e, store, lin8, 8, Some(hi));
    e.b.ins().jump(merge, &[]);
    e.b.seal_block(merge);
    e.b.switch_to_block(merge);
}
