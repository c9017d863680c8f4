//! The catalogue of instruction forms and the random sequence generator.
//!
//! A *form* is one iced-x86 `Code` (one encoding of one instruction: `ADD
//! r/m64, imm8` and `ADD r/m64, imm32` are different forms), plus, for
//! string instructions, the REP prefix and address size. The catalogue is
//! derived from iced's opcode tables by mnemonic, so it holds every 64-bit
//! encoding of every required instruction.
//!
//! A sequence is 1..=8 forms. Most forms are one instruction with random
//! operands; some come with set-up instructions that make the result
//! well-defined or keep memory accesses inside the data region (a known
//! shift count in CL, a dividend and divisor for DIV, RSI/RDI/RCX for
//! string instructions, a call/return frame, …).
//!
//! Constraints kept while generating:
//! - Reserved registers: `B` (64-bit base, points into the data region),
//!   `I` (small index) and `A` (32-bit base for 67-prefixed addressing:
//!   low half a pointer, high half garbage) are never written; RSP only by
//!   the stack instructions themselves.
//! - Flags iced-x86 (or the special cases below) call undefined are
//!   tracked; an instruction reading one is never generated, and flags
//!   still undefined at the end are masked in the comparison. Registers
//!   whose value is undefined (BSF/BSR of zero, BSWAP r16) likewise.
//! - Branches go forward to the start of a later form (or the final UD2),
//!   except the bounded backward loop of the LOOP template; undefined-state
//!   is joined at branch targets.

use super::{fl, InitState, Rng, CODE, DATA, DATA_SIZE, MEM_CENTRE, STACK_TOP, STR_AREA};
use cjemu_jit::semantics::is_implemented;
use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Decoder, DecoderOptions, Encoder, EncodingKind,
    Instruction, InstructionBlock, InstructionInfoFactory, Mnemonic, OpAccess,
    OpCodeOperandKind as K, OpKind, Register, RepPrefixKind,
};

/// Every instruction the catalogue must cover, by iced mnemonic.
pub const MNEMONICS: &[Mnemonic] = {
    use Mnemonic::*;
    &[
        Add, Adc, Sub, Sbb, Cmp, And, Or, Xor, Test, Neg, Not, Inc, Dec, Shl, Shr, Sar, Rol, Ror,
        Rcl, Rcr, Shld, Shrd, Mul, Imul, Div, Idiv, Bt, Bts, Btr, Btc, Bsf, Bsr, Tzcnt, Lzcnt,
        Popcnt, Andn, Bextr, Blsi, Blsmsk, Blsr, Seto, Setno, Setb, Setae, Sete, Setne, Setbe,
        Seta, Sets, Setns, Setp, Setnp, Setl, Setge, Setle, Setg, Cmovo, Cmovno, Cmovb, Cmovae,
        Cmove, Cmovne, Cmovbe, Cmova, Cmovs, Cmovns, Cmovp, Cmovnp, Cmovl, Cmovge, Cmovle, Cmovg,
        Xchg, Cmpxchg, Cmpxchg8b, Cmpxchg16b, Xadd, Bswap, Movzx, Movsx, Movsxd, Lea, Mov, Push,
        Pop, Call, Ret, Jmp, Jo, Jno, Jb, Jae, Je, Jne, Jbe, Ja, Js, Jns, Jp, Jnp, Jl, Jge, Jle,
        Jg, Loop, Loope, Loopne, Jrcxz, Jecxz, Enter, Leave, Cbw, Cwde, Cdqe, Cwd, Cdq, Cqo, Lahf,
        Sahf, Pushf, Pushfq, Popf, Popfq, Clc, Stc, Cmc, Cld, Std, Nop, Endbr64, Pause, Lfence,
        Mfence, Sfence, Movsb, Movsw, Movsd, Movsq, Stosb, Stosw, Stosd, Stosq, Lodsb, Lodsw,
        Lodsd, Lodsq, Cmpsb, Cmpsw, Cmpsd, Cmpsq, Scasb, Scasw, Scasd, Scasq, Xlatb,
    ]
};

/// Legacy instructions of 16/32-bit code, added to [`MNEMONICS`] in the
/// 32-bit catalogue (plus PUSHFD/POPFD and JCXZ, which 64-bit mode lacks).
pub const LEGACY_MNEMONICS: &[Mnemonic] = {
    use Mnemonic::*;
    &[
        Pusha, Pushad, Popa, Popad, Aaa, Aas, Daa, Das, Aam, Aad, Bound, Into, Salc, Xlatb, Arpl,
        Pushfd, Popfd, Jcxz,
    ]
};

/// One catalogue entry.
#[derive(Clone, Debug)]
pub struct Form {
    pub code: Code,
    /// REP prefix of a string form.
    pub rep: RepPrefixKind,
    /// Address size of a string form (64 or 32).
    pub addr: u32,
    pub name: String,
    /// Code size the form is generated for (64 or 32).
    pub bits: u32,
}

/// Operand kinds the generator can fill.
fn fillable(k: K) -> bool {
    matches!(
        k,
        K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r64_or_mem
            | K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_opcode
            | K::r32_reg
            | K::r32_opcode
            | K::r64_reg
            | K::r64_opcode
            | K::r32_vvvv
            | K::r64_vvvv
            | K::al
            | K::cl
            | K::ax
            | K::eax
            | K::rax
            | K::imm8
            | K::imm8_const_1
            | K::imm8sex16
            | K::imm8sex32
            | K::imm8sex64
            | K::imm16
            | K::imm32
            | K::imm32sex64
            | K::imm64
            | K::br64_1
            | K::br64_4
            | K::br32_1
            | K::br32_4
            | K::seg_rBX_al
            | K::mem
            | K::mem_offs
            | K::seg_rSI
            | K::es_rDI
    )
}

fn is_string(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Movsb
            | Movsw
            | Movsd
            | Movsq
            | Stosb
            | Stosw
            | Stosd
            | Stosq
            | Lodsb
            | Lodsw
            | Lodsd
            | Lodsq
            | Cmpsb
            | Cmpsw
            | Cmpsd
            | Cmpsq
            | Scasb
            | Scasw
            | Scasd
            | Scasq
    )
}

/// Why a 64-bit encoding of a required mnemonic is left out, if it is.
fn excluded(code: Code) -> Option<&'static str> {
    let op = code.op_code();
    let name = format!("{code:?}");
    let m = op.mnemonic();
    if matches!(m, Mnemonic::Call | Mnemonic::Jmp | Mnemonic::Ret) && op.operand_size() == 16 {
        // o16 near branches truncate RIP on AMD but not on Intel.
        return Some("16-bit near branch (vendor-specific)");
    }
    if op.op_kinds().contains(&K::mem) && matches!(m, Mnemonic::Call | Mnemonic::Jmp) {
        return Some("far indirect transfer");
    }
    if name.ends_with("F6r1") || name.ends_with("F7r1") {
        return Some("undocumented TEST alias");
    }
    if matches!(m, Mnemonic::Lfence | Mnemonic::Mfence | Mnemonic::Sfence) && name.contains('_') {
        return Some("alternative fence encoding");
    }
    if matches!(m, Mnemonic::Nop) && op.op_count() == 2 {
        return Some("two-operand reserved NOP");
    }
    None
}

/// The catalogue: every 64-bit form of every mnemonic in [`MNEMONICS`].
pub fn catalogue() -> Vec<Form> {
    catalogue_for(64)
}

/// Why a 32-bit encoding is left out, if it is (beyond [`excluded`]).
fn excluded32(code: Code) -> Option<&'static str> {
    let op = code.op_code();
    let m = op.mnemonic();
    let branch = op
        .op_kinds()
        .iter()
        .any(|k| matches!(k, K::br16_1 | K::br16_2))
        || (matches!(m, Mnemonic::Call | Mnemonic::Jmp | Mnemonic::Ret) && op.operand_size() == 16);
    if branch {
        // Truncates EIP to 16 bits: far outside the code page (covered by
        // tests/legacy_modes.rs).
        return Some("o16 near branch");
    }
    if format!("{code:?}").starts_with("Cmpxchg486") {
        return Some("early-486 CMPXCHG opcode (#UD on later CPUs)");
    }
    None
}

/// The catalogue of `bits`-bit code (64, or 32 for compatibility mode:
/// [`MNEMONICS`] and [`LEGACY_MNEMONICS`], every encoding iced has for
/// 32-bit code, including 66- and 67-prefixed ones).
pub fn catalogue_for(bits: u32) -> Vec<Form> {
    let mut out = Vec::new();
    for code in Code::values() {
        let op = code.op_code();
        let mode_ok = if bits == 64 { op.mode64() } else { op.mode32() };
        let wanted = MNEMONICS.contains(&op.mnemonic())
            || (bits == 32 && LEGACY_MNEMONICS.contains(&op.mnemonic()));
        if !op.is_instruction()
            || !mode_ok
            || !matches!(op.encoding(), EncodingKind::Legacy | EncodingKind::VEX)
            || !wanted
            || !op.op_kinds().iter().all(|&k| fillable(k))
            || excluded(code).is_some()
            || (bits == 32 && excluded32(code).is_some())
        {
            continue;
        }
        let m = op.mnemonic();
        if is_string(m) {
            let reps: &[RepPrefixKind] = if matches!(
                m,
                Mnemonic::Cmpsb
                    | Mnemonic::Cmpsw
                    | Mnemonic::Cmpsd
                    | Mnemonic::Cmpsq
                    | Mnemonic::Scasb
                    | Mnemonic::Scasw
                    | Mnemonic::Scasd
                    | Mnemonic::Scasq
            ) {
                &[
                    RepPrefixKind::None,
                    RepPrefixKind::Repe,
                    RepPrefixKind::Repne,
                ]
            } else {
                &[RepPrefixKind::None, RepPrefixKind::Repe]
            };
            for &rep in reps {
                let addrs: &[u32] = if bits == 64 { &[64, 32] } else { &[32, 16] };
                for &addr in addrs {
                    let r = match rep {
                        RepPrefixKind::None => "",
                        RepPrefixKind::Repe => "rep(e) ",
                        _ => "repne ",
                    };
                    out.push(Form {
                        code,
                        rep,
                        addr,
                        name: format!("{r}{code:?} a{addr}"),
                        bits,
                    });
                }
            }
        } else {
            out.push(Form {
                code,
                rep: RepPrefixKind::None,
                addr: bits,
                name: format!("{code:?}"),
                bits,
            });
        }
    }
    out
}

/// A representative instruction of a form, for the implementation check.
pub fn sample(f: &Form) -> Instruction {
    let mut rng = Rng::new(1);
    let mut b = Builder::new(&mut rng, &[], 1, Regs::fixed(f.bits), false);
    b.make_sample(f)
}

/// Undefined flags and registers at one point of a sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Undef {
    /// RFLAGS bits whose value is undefined.
    pub flags: u64,
    /// GPRs (bit n = register n) whose value is undefined.
    pub regs: u16,
}

impl Undef {
    fn join(self, o: Undef) -> Undef {
        Undef {
            flags: self.flags | o.flags,
            regs: self.regs | o.regs,
        }
    }
}

/// One generated test case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Seed the case was generated from (reproduces it alone).
    pub seed: u64,
    pub code: Vec<u8>,
    pub init: InitState,
    /// For each instruction (real address), what is undefined before it;
    /// the last entry is the final UD2.
    pub undef_at: Vec<(u64, Undef)>,
    /// Form name of each instruction (set-up instructions included).
    pub form_of: Vec<String>,
    /// The reserved registers (B, I, A).
    pub reserved: [usize; 3],
}

impl Case {
    /// What is undefined before the instruction at `rip` (the final state
    /// if `rip` is not an instruction start).
    pub fn undef_before(&self, rip: u64) -> Undef {
        self.undef_at
            .iter()
            .find(|(ip, _)| *ip == rip)
            .map(|(_, u)| *u)
            .unwrap_or_else(|| self.undef_at.last().map(|(_, u)| *u).unwrap_or_default())
    }
}

/// Register choices of a case.
#[derive(Clone, Copy, Debug)]
struct Regs {
    /// Base register (64-bit pointer into the memory area).
    b: usize,
    /// Index register (value 0..0x40).
    i: usize,
    /// 32-bit base register (garbage above bit 31); in 32-bit code there is
    /// none (it equals `i`).
    a: usize,
    gpr: [u64; 16],
    /// Code size (64 or 32).
    bits: u32,
}

impl Regs {
    fn fixed(bits: u32) -> Regs {
        let mut gpr = [0; 16];
        gpr[3] = MEM_CENTRE;
        gpr[5] = 0x10;
        gpr[12] = 0xdead_0000_0000_0000 | MEM_CENTRE;
        gpr[4] = STACK_TOP;
        let i = if bits == 32 { 6 } else { 5 };
        Regs {
            b: 3,
            i,
            a: if bits == 32 { i } else { 12 },
            gpr,
            bits,
        }
    }
}

/// Registers that may be reserved (not implicitly used by MUL/DIV, string
/// instructions, LOOP, shifts by CL, …).
const RESERVABLE: [usize; 10] = [3, 5, 8, 9, 10, 11, 12, 13, 14, 15];

const R64: [Register; 16] = {
    use Register::*;
    [
        RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15,
    ]
};
const R32: [Register; 16] = {
    use Register::*;
    [
        EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI, R8D, R9D, R10D, R11D, R12D, R13D, R14D, R15D,
    ]
};
const R16: [Register; 16] = {
    use Register::*;
    [
        AX, CX, DX, BX, SP, BP, SI, DI, R8W, R9W, R10W, R11W, R12W, R13W, R14W, R15W,
    ]
};
const R8: [Register; 20] = {
    use Register::*;
    [
        AL, CL, DL, BL, SPL, BPL, SIL, DIL, R8L, R9L, R10L, R11L, R12L, R13L, R14L, R15L, AH, CH,
        DH, BH,
    ]
};

/// The byte registers 32-bit code can name.
const R8_LEGACY: [Register; 8] = {
    use Register::*;
    [AL, CL, DL, BL, AH, CH, DH, BH]
};

/// A GPR of `bits` bits by encoding number.
fn gpr(n: usize, bits: u32) -> Register {
    match bits {
        8 => R8[n],
        16 => R16[n],
        32 => R32[n],
        _ => R64[n],
    }
}

/// An operand to build an instruction from.
#[derive(Clone, Copy, Debug)]
enum Op {
    R(Register),
    M(Mem),
    I(u64),
    /// Near branch target (a label).
    B(u64),
}

/// A memory operand.
#[derive(Clone, Copy, Debug)]
struct Mem {
    base: Register,
    index: Register,
    scale: u32,
    disp: i64,
    displ_size: u32,
    seg: Register,
}

impl Mem {
    fn base_disp(base: Register, disp: i64) -> Mem {
        Mem {
            base,
            index: Register::None,
            scale: 1,
            disp,
            displ_size: if disp == 0 { 0 } else { 4 },
            seg: Register::None,
        }
    }
}

/// Effects a template knows better than iced-x86.
#[derive(Clone, Copy, Debug, Default)]
struct Fx {
    /// Shift/rotate count when it comes from CL (set by the template).
    count: Option<u32>,
    /// The destination register's value is undefined afterwards.
    undef_dest: bool,
    /// The instruction changes no flag (a REP string instruction with
    /// RCX = 0).
    keeps_flags: bool,
    /// The instruction writes reserved registers, but with the values they
    /// already have (POPA right after PUSHA).
    restores: bool,
}

/// Fake instruction addresses used as labels by the block encoder: form
/// `j`'s `k`-th instruction is at `label(j, k)`.
const FAKE: u64 = 0x7000_0000;
fn label(j: usize, k: usize) -> u64 {
    FAKE + j as u64 * 0x1000 + k as u64
}

/// True for the shift and rotate family (flags depend on the count).
fn is_shift(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(m, Shl | Shr | Sar | Rol | Ror | Rcl | Rcr | Shld | Shrd)
}

/// Width in bits of operand 0.
fn op0_bits(i: &Instruction) -> u32 {
    match i.op0_kind() {
        OpKind::Register => i.op0_register().size() as u32 * 8,
        _ => i.memory_size().size() as u32 * 8,
    }
}

/// Flags an instruction modifies and leaves undefined.
fn flag_effect(i: &Instruction, count: Option<u32>) -> (u64, u64) {
    use Mnemonic::*;
    let m = i.mnemonic();
    if !is_shift(m) {
        return (
            fl::from_iced(i.rflags_modified()),
            fl::from_iced(i.rflags_undefined()),
        );
    }
    let last = i.op_count() - 1;
    let count = count.unwrap_or_else(|| match i.op_kind(last) {
        OpKind::Immediate8 => i.immediate8() as u32,
        _ => 1,
    });
    let w = op0_bits(i);
    let c = count & if w == 64 { 63 } else { 31 };
    if c == 0 {
        // A zero count leaves every flag alone.
        return (0, 0);
    }
    let of = if c == 1 { 0 } else { fl::OF };
    match m {
        Rol | Ror | Rcl | Rcr => (fl::CF | fl::OF, of),
        Shl | Shr if w <= 16 && c >= w => (fl::STATUS, fl::AF | of | fl::CF),
        _ => (fl::STATUS, fl::AF | of),
    }
}

/// Flags whose behaviour differs between Intel and AMD hosts beyond what
/// the manuals call undefined (masked on every host).
fn vendor_undefined(_m: Mnemonic) -> u64 {
    0
}

fn is_write(a: OpAccess) -> bool {
    matches!(
        a,
        OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
    )
}

fn is_read(a: OpAccess) -> bool {
    matches!(
        a,
        OpAccess::Read | OpAccess::CondRead | OpAccess::ReadWrite | OpAccess::ReadCondWrite
    )
}

/// Instructions allowed to change RSP (implicitly).
fn moves_stack(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Push | Pop
            | Pushf
            | Pushfq
            | Pushfd
            | Popf
            | Popfq
            | Popfd
            | Call
            | Ret
            | Enter
            | Leave
            | Pusha
            | Pushad
            | Popa
            | Popad
    )
}

/// Builder state that a failed form rolls back.
#[derive(Clone)]
struct Snapshot {
    len: usize,
    state: Undef,
    pending: Vec<Undef>,
    uses_seg: bool,
}

struct Builder<'r> {
    rng: &'r mut Rng,
    /// Forms allowed in template bodies.
    plain: &'r [Form],
    /// Template effects of each instruction (for re-checks).
    fxs: Vec<Fx>,
    nforms: usize,
    regs: Regs,
    /// Reserved registers (bit mask).
    reserved: u16,
    /// Extra registers a template body must not write (RCX in loops).
    extra: u16,
    ins: Vec<Instruction>,
    before: Vec<Undef>,
    form_of: Vec<String>,
    state: Undef,
    /// Joined state at the start of each form (forward branch targets).
    pending: Vec<Undef>,
    /// Current form and instruction within it.
    j: usize,
    k: usize,
    /// Set while generating a template body (no branches, no faults).
    in_body: bool,
    uses_seg: bool,
    fs_base: u64,
    gs_base: u64,
    /// Check `is_implemented` for every emitted instruction.
    only_implemented: bool,
    factory: InstructionInfoFactory,
    encoder: Encoder,
    form_name: String,
    /// Code size (64 or 32).
    bits: u32,
    /// 32-bit code: `mov r32, label` placeholders (instruction index,
    /// label) patched with the real address after encoding.
    fixups: Vec<(usize, u64)>,
}

impl<'r> Builder<'r> {
    fn new(
        rng: &'r mut Rng,
        plain: &'r [Form],
        nforms: usize,
        regs: Regs,
        only_implemented: bool,
    ) -> Builder<'r> {
        let reserved = (1 << regs.b) | (1 << regs.i) | (1 << regs.a);
        Builder {
            rng,
            plain,
            fxs: Vec::new(),
            nforms,
            regs,
            reserved,
            extra: 0,
            ins: Vec::new(),
            before: Vec::new(),
            form_of: Vec::new(),
            state: Undef::default(),
            pending: vec![Undef::default(); nforms + 1],
            j: 0,
            k: 0,
            in_body: false,
            uses_seg: false,
            fs_base: 0,
            gs_base: 0,
            only_implemented,
            factory: InstructionInfoFactory::new(),
            encoder: Encoder::new(regs.bits),
            form_name: String::new(),
            bits: regs.bits,
            fixups: Vec::new(),
        }
    }

    fn snapshot(&self) -> (Snapshot, usize) {
        (
            Snapshot {
                len: self.ins.len(),
                state: self.state,
                pending: self.pending.clone(),
                uses_seg: self.uses_seg,
            },
            self.k,
        )
    }

    fn restore(&mut self, s: (Snapshot, usize)) {
        let (s, k) = s;
        self.ins.truncate(s.len);
        self.fixups.retain(|&(n, _)| n < s.len);
        self.fxs.truncate(s.len);
        self.before.truncate(s.len);
        self.form_of.truncate(s.len);
        self.state = s.state;
        self.pending = s.pending;
        self.uses_seg = s.uses_seg;
        self.k = k;
    }

    /// Check `ins` against the constraints and append it. False (nothing
    /// appended) if it breaks one.
    fn emit(&mut self, mut ins: Instruction, fx: Fx) -> bool {
        ins.set_ip(label(self.j, self.k));
        let branch = (0..ins.op_count()).any(|n| {
            matches!(
                ins.op_kind(n),
                OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16
            )
        });
        if !branch {
            let ok = self.encoder.encode(&ins, CODE).is_ok();
            // The encoder appends to its buffer: drop the bytes.
            drop(self.encoder.take_buffer());
            if !ok {
                return false;
            }
        }
        if self.only_implemented && !is_implemented(&ins) {
            return false;
        }
        if fl::from_iced(ins.rflags_read()) & self.state.flags != 0 {
            return false;
        }
        let m = ins.mnemonic();
        let info = self.factory.info(&ins);
        let mut clears = 0u16;
        for ur in info.used_registers() {
            let r = ur.register();
            if !r.is_gpr() {
                continue;
            }
            let n = r.full_register().number();
            let bit = 1u16 << n;
            let a = ur.access();
            if is_read(a) && self.state.regs & bit != 0 {
                return false;
            }
            if is_write(a) {
                if (self.reserved | self.extra) & bit != 0 && !fx.restores {
                    return false;
                }
                if n == 4 && !moves_stack(m) {
                    return false;
                }
                if a == OpAccess::Write && r.size() >= 4 {
                    clears |= bit;
                }
            }
        }
        for n in 0..ins.op_count() {
            if ins.op_kind(n) == OpKind::Register
                && ins.op_register(n).full_register() == Register::RSP
                && is_write(info.op_access(n))
            {
                return false;
            }
        }
        let (modified, undefined) = if fx.keeps_flags {
            (0, 0)
        } else {
            flag_effect(&ins, fx.count)
        };
        self.before.push(self.state);
        self.form_of.push(self.form_name.clone());
        self.state.flags = (self.state.flags & !modified) | undefined | vendor_undefined(m);
        self.state.regs &= !clears;
        if fx.undef_dest {
            self.state.regs |= 1 << ins.op0_register().full_register().number();
        }
        self.ins.push(ins);
        self.fxs.push(fx);
        self.k += 1;
        true
    }

    /// Record a forward branch just emitted to form `t`.
    fn branch_to(&mut self, t: usize) {
        self.pending[t] = self.pending[t].join(self.state);
    }

    /// A random forward target form (1..=3 forms ahead, at most the end).
    fn target(&mut self) -> usize {
        let hi = (self.j + 3).min(self.nforms);
        self.j + 1 + self.rng.below((hi - self.j) as u64) as usize
    }

    fn random_reg(&mut self, bits: u32) -> Register {
        if bits == 8 && self.bits == 32 {
            *self.rng.pick(&R8_LEGACY)
        } else if bits == 8 {
            *self.rng.pick(&R8)
        } else {
            gpr(self.rng.below(self.nregs()) as usize, bits)
        }
    }

    /// Number of GPRs the code can name.
    fn nregs(&self) -> u64 {
        if self.bits == 32 {
            8
        } else {
            16
        }
    }

    /// Register `n` at the address size of the code.
    fn areg(&self, n: usize) -> Register {
        if self.bits == 32 {
            R32[n]
        } else {
            R64[n]
        }
    }

    /// A free (not reserved, not RSP) register number.
    fn scratch(&mut self) -> usize {
        loop {
            let n = self.rng.below(self.nregs()) as usize;
            if n != 4 && (self.reserved | self.extra) & (1 << n) == 0 {
                return n;
            }
        }
    }

    /// A segment override: usually none; FS/GS (based) or a null override.
    fn seg(&mut self) -> Register {
        if self.bits == 32 {
            // Only the flat segments: ES and GS have base DATA, FS is null.
            return match self.rng.below(8) {
                // (No CS: writes through it fault, reads are covered by 64-bit.)
                0 => *self.rng.pick(&[Register::DS, Register::SS]),
                _ => Register::None,
            };
        }
        match self.rng.below(16) {
            0 => {
                self.uses_seg = true;
                Register::FS
            }
            1 => {
                self.uses_seg = true;
                Register::GS
            }
            2 => *self
                .rng
                .pick(&[Register::DS, Register::ES, Register::SS, Register::CS]),
            _ => Register::None,
        }
    }

    /// A memory operand that is accessed: it stays inside the data region.
    fn mem(&mut self) -> Mem {
        if self.bits == 32 {
            return self.mem32();
        }
        let seg = self.seg();
        let b = self.regs.b;
        let i = self.regs.i;
        let disp = |rng: &mut Rng| -> (i64, u32) {
            match rng.below(3) {
                0 => (0, 0),
                1 => (rng.range(-128, 127), 1),
                _ => (rng.range(-0x600, 0x600), 4),
            }
        };
        let target = |rng: &mut Rng| DATA + 0x800 + rng.below(0x1000);
        let scale = *self.rng.pick(&[1u32, 2, 4, 8]);
        match self.rng.below(20) {
            0..=7 => {
                let (d, s) = disp(self.rng);
                Mem {
                    base: R64[b],
                    index: Register::None,
                    scale: 1,
                    disp: d,
                    displ_size: s,
                    seg,
                }
            }
            8..=11 => {
                let (d, s) = disp(self.rng);
                Mem {
                    base: R64[b],
                    index: R64[i],
                    scale,
                    disp: d,
                    displ_size: s,
                    seg,
                }
            }
            12..=13 => Mem {
                base: Register::RSP,
                index: Register::None,
                scale: 1,
                // Inside a call body the return address is at [rsp].
                disp: self.rng.range(if self.in_body { 16 } else { 0 }, 0xff),
                displ_size: 1,
                // An FS/GS base on top would leave the data region.
                seg: if matches!(seg, Register::FS | Register::GS) {
                    Register::None
                } else {
                    seg
                },
            },
            14..=15 => Mem {
                base: if self.rng.chance(1, 8) {
                    Register::EIP
                } else {
                    Register::RIP
                },
                index: Register::None,
                scale: 1,
                disp: target(self.rng) as i64,
                displ_size: 4,
                seg,
            },
            16..=17 => {
                let (d, s) = disp(self.rng);
                let index = if self.rng.chance(1, 2) {
                    R32[i]
                } else {
                    Register::None
                };
                Mem {
                    base: R32[self.regs.a],
                    index,
                    scale,
                    disp: d,
                    displ_size: s,
                    seg,
                }
            }
            18 => Mem {
                // [disp32]: with displacement size 8 a 64-bit address (SIB,
                // no base), with 4 a 67-prefixed 32-bit one.
                base: Register::None,
                index: Register::None,
                scale: 1,
                disp: target(self.rng) as i64,
                displ_size: *self.rng.pick(&[4, 8]),
                seg,
            },
            _ => Mem {
                base: Register::None,
                index: R64[i],
                scale,
                disp: target(self.rng) as i64,
                displ_size: 4,
                seg,
            },
        }
    }

    /// 32-bit code: an accessed memory operand inside the data region,
    /// with 32-bit addressing (flat segments) or 16-bit addressing (a GS
    /// override: GS has base DATA, and BX/BP hold the low half of the
    /// base register, an offset into the data region).
    fn mem32(&mut self) -> Mem {
        let seg = self.seg();
        let (b, i) = (self.regs.b, self.regs.i);
        let disp = |rng: &mut Rng| -> (i64, u32) {
            match rng.below(3) {
                0 => (0, 0),
                1 => (rng.range(-128, 127), 1),
                _ => (rng.range(-0x600, 0x600), 4),
            }
        };
        let scale = *self.rng.pick(&[1u32, 2, 4, 8]);
        let target = |rng: &mut Rng| DATA + 0x800 + rng.below(0x1000);
        let m = |base, index, scale, (disp, displ_size): (i64, u32), seg| Mem {
            base,
            index,
            scale,
            disp,
            displ_size,
            seg,
        };
        match self.rng.below(16) {
            0..=5 => m(R32[b], Register::None, 1, disp(self.rng), seg),
            6..=8 => m(R32[b], R32[i], scale, disp(self.rng), seg),
            9..=10 => {
                let d = self.rng.range(if self.in_body { 16 } else { 0 }, 0xff);
                m(Register::ESP, Register::None, 1, (d, 1), seg)
            }
            11 => m(
                Register::None,
                Register::None,
                1,
                (target(self.rng) as i64, 4),
                seg,
            ),
            12 => m(
                Register::None,
                R32[i],
                scale,
                (target(self.rng) as i64, 4),
                seg,
            ),
            _ => {
                // 16-bit addressing: [bx|bp] + [si|di] + disp16. The
                // index register qualifies only if it is SI or DI.
                let (d, s) = disp(self.rng);
                let s = if s == 4 { 2 } else { s };
                let idx = if matches!(i, 6 | 7) && self.rng.chance(1, 2) {
                    R16[i]
                } else {
                    Register::None
                };
                m(R16[b], idx, 1, (d, s), Register::GS)
            }
        }
    }

    /// 32-bit code: an unaccessed memory operand (LEA, NOP r/m), 32- or
    /// 16-bit addressing with any registers.
    fn mem_any32(&mut self) -> Mem {
        if self.rng.chance(1, 4) {
            let bases = [Register::BX, Register::BP, Register::SI, Register::DI];
            let base = *self.rng.pick(&bases);
            let index = match base {
                Register::BX | Register::BP if self.rng.chance(1, 2) => {
                    *self.rng.pick(&[Register::SI, Register::DI])
                }
                _ => Register::None,
            };
            let (disp, s) = match self.rng.below(3) {
                0 => (0, 0),
                1 => (self.rng.range(-128, 127), 1),
                _ => (self.rng.next() as u16 as i64, 2),
            };
            return Mem {
                base,
                index,
                scale: 1,
                disp,
                displ_size: s,
                seg: Register::None,
            };
        }
        let base = if self.rng.chance(1, 8) {
            Register::None
        } else {
            R32[self.rng.below(8) as usize]
        };
        let index = if self.rng.chance(1, 3) {
            Register::None
        } else {
            loop {
                let n = self.rng.below(8) as usize;
                if n != 4 {
                    break R32[n];
                }
            }
        };
        let (disp, s) = match self.rng.below(3) {
            0 if base != Register::None => (0, 0),
            1 if base != Register::None => (self.rng.range(-128, 127), 1),
            _ => (self.rng.next() as i32 as i64, 4),
        };
        Mem {
            base,
            index,
            scale: *self.rng.pick(&[1u32, 2, 4, 8]),
            disp,
            displ_size: s,
            seg: Register::None,
        }
    }

    /// A memory operand that is never accessed (LEA, NOP r/m): anything.
    fn mem_any(&mut self) -> Mem {
        if self.bits == 32 {
            return self.mem_any32();
        }
        let addr32 = self.rng.chance(1, 4);
        let regs = if addr32 { &R32 } else { &R64 };
        if self.rng.chance(1, 8) {
            return Mem {
                base: if addr32 { Register::EIP } else { Register::RIP },
                index: Register::None,
                scale: 1,
                disp: (CODE + self.rng.below(0x1000)) as i64,
                displ_size: 4,
                seg: Register::None,
            };
        }
        let base = if self.rng.chance(1, 8) {
            Register::None
        } else {
            regs[self.rng.below(16) as usize]
        };
        let index = if self.rng.chance(1, 3) {
            Register::None
        } else {
            loop {
                let n = self.rng.below(16) as usize;
                if n != 4 {
                    break regs[n];
                }
            }
        };
        let (disp, displ_size) = match self.rng.below(3) {
            0 => (0, 0),
            1 => (self.rng.range(-128, 127), 1),
            _ => (self.rng.next() as i32 as i64, 4),
        };
        let displ_size = if base == Register::None {
            4
        } else {
            displ_size
        };
        Mem {
            base,
            index,
            scale: *self.rng.pick(&[1u32, 2, 4, 8]),
            disp,
            displ_size,
            seg: if self.rng.chance(1, 8) {
                Register::FS
            } else {
                Register::None
            },
        }
    }

    /// A random immediate for an operand kind.
    fn imm(&mut self, k: K) -> u64 {
        match k {
            K::imm8_const_1 => 1,
            K::imm8 => self.rng.interesting(8),
            K::imm8sex16 | K::imm8sex32 | K::imm8sex64 => self.rng.interesting(8) as i8 as u64,
            K::imm16 => self.rng.interesting(16),
            K::imm32 => self.rng.interesting(32),
            K::imm32sex64 => self.rng.interesting(32) as i32 as u64,
            _ => self.rng.interesting(64),
        }
    }

    /// Random operands for every operand of `code` (branches get a
    /// forward target).
    fn random_ops(&mut self, code: Code) -> Vec<Op> {
        let op = code.op_code();
        let unaccessed = matches!(op.mnemonic(), Mnemonic::Lea | Mnemonic::Nop);
        op.op_kinds()
            .iter()
            .map(|&k| match k {
                K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem => {
                    if self.rng.chance(3, 5) {
                        Op::R(self.random_reg(rm_bits(k)))
                    } else if unaccessed {
                        Op::M(self.mem_any())
                    } else {
                        Op::M(self.mem())
                    }
                }
                K::r8_reg | K::r8_opcode => Op::R(self.random_reg(8)),
                K::r16_reg | K::r16_opcode => Op::R(self.random_reg(16)),
                K::r32_reg | K::r32_opcode | K::r32_vvvv => Op::R(self.random_reg(32)),
                K::r64_reg | K::r64_opcode | K::r64_vvvv => Op::R(self.random_reg(64)),
                K::al => Op::R(Register::AL),
                K::cl => Op::R(Register::CL),
                K::ax => Op::R(Register::AX),
                K::eax => Op::R(Register::EAX),
                K::rax => Op::R(Register::RAX),
                K::mem if unaccessed => Op::M(self.mem_any()),
                K::mem => Op::M(self.mem()),
                K::mem_offs if self.bits == 32 => {
                    // A 32-bit absolute address, or (67) a 16-bit offset
                    // into the data region through GS.
                    let off = 0x800 + self.rng.below(0x1000);
                    let wide = self.rng.chance(1, 2);
                    Op::M(Mem {
                        base: Register::None,
                        index: Register::None,
                        scale: 1,
                        disp: if wide { DATA + off } else { off } as i64,
                        displ_size: if wide { 4 } else { 2 },
                        seg: if wide { Register::None } else { Register::GS },
                    })
                }
                K::mem_offs => {
                    let a = DATA + 0x800 + self.rng.below(0x1000);
                    let s = if self.rng.chance(1, 4) { 4 } else { 8 };
                    Op::M(Mem {
                        base: Register::None,
                        index: Register::None,
                        scale: 1,
                        disp: a as i64,
                        displ_size: s,
                        seg: Register::None,
                    })
                }
                K::br64_1 | K::br64_4 | K::br32_1 | K::br32_4 => Op::B(0),
                _ => Op::I(self.imm(k)),
            })
            .collect()
    }

    /// Build an instruction from explicit operands.
    fn make(&self, code: Code, ops: &[Op]) -> Option<Instruction> {
        let mut ins = Instruction::default();
        ins.set_code(code);
        let kinds = code.op_code().op_kinds();
        let mut imm_seen = false;
        for (n, op) in ops.iter().enumerate() {
            let n = n as u32;
            match *op {
                Op::R(r) => {
                    ins.set_op_kind(n, OpKind::Register);
                    ins.set_op_register(n, r);
                }
                Op::M(m) => {
                    // iced wants the displacement size of the address
                    // size: 8 for a 32-bit displacement with 64-bit
                    // registers.
                    let wide = m.base.is_gpr64() || m.index.is_gpr64() || m.base == Register::RIP;
                    let narrow = m.base.is_gpr16() || m.index.is_gpr16();
                    let m = Mem {
                        displ_size: match m.displ_size {
                            4 if wide => 8,
                            4 if narrow => 2,
                            s => s,
                        },
                        ..m
                    };
                    ins.set_op_kind(n, OpKind::Memory);
                    ins.set_memory_base(m.base);
                    ins.set_memory_index(m.index);
                    ins.set_memory_index_scale(m.scale);
                    ins.set_memory_displ_size(m.displ_size);
                    ins.set_memory_displacement64(m.disp as u64);
                    ins.set_segment_prefix(m.seg);
                }
                Op::I(v) => {
                    let kind = match kinds[n as usize] {
                        K::imm8 | K::imm8_const_1 if imm_seen => OpKind::Immediate8_2nd,
                        K::imm8 | K::imm8_const_1 => OpKind::Immediate8,
                        K::imm8sex16 => OpKind::Immediate8to16,
                        K::imm8sex32 => OpKind::Immediate8to32,
                        K::imm8sex64 => OpKind::Immediate8to64,
                        K::imm16 => OpKind::Immediate16,
                        K::imm32 => OpKind::Immediate32,
                        K::imm32sex64 => OpKind::Immediate32to64,
                        _ => OpKind::Immediate64,
                    };
                    ins.set_op_kind(n, kind);
                    ins.try_set_immediate_u64(n, v).ok()?;
                    imm_seen = true;
                }
                Op::B(t) => match self.bits {
                    64 => {
                        ins.set_op_kind(n, OpKind::NearBranch64);
                        ins.set_near_branch64(t);
                    }
                    _ => {
                        ins.set_op_kind(n, OpKind::NearBranch32);
                        ins.set_near_branch32(t as u32);
                    }
                },
            }
        }
        Some(ins)
    }

    /// `make` + `emit`.
    fn put(&mut self, code: Code, ops: &[Op], fx: Fx) -> bool {
        match self.make(code, ops) {
            Some(i) => self.emit(i, fx),
            None => false,
        }
    }

    /// `mov r64, imm64`.
    fn set_reg(&mut self, n: usize, v: u64) -> bool {
        if self.bits == 32 {
            return self.put(
                Code::Mov_r32_imm32,
                &[Op::R(R32[n]), Op::I(v & 0xffff_ffff)],
                Fx::default(),
            );
        }
        self.put(
            Code::Mov_r64_imm64,
            &[Op::R(R64[n]), Op::I(v)],
            Fx::default(),
        )
    }

    /// Store `v` (`bits` wide; 64-bit values must fit a sign-extended
    /// imm32) to memory.
    fn set_mem(&mut self, m: Mem, bits: u32, v: u64) -> bool {
        let code = match bits {
            8 => Code::Mov_rm8_imm8,
            16 => Code::Mov_rm16_imm16,
            32 => Code::Mov_rm32_imm32,
            _ => Code::Mov_rm64_imm32,
        };
        let v = if bits == 64 { v as i32 as u64 } else { v };
        self.put(code, &[Op::M(m), Op::I(v)], Fx::default())
    }

    fn lock(&mut self, ins: &mut Instruction) {
        if ins.op0_kind() == OpKind::Memory
            && ins.code().op_code().can_use_lock_prefix()
            && self.rng.chance(1, 4)
        {
            ins.set_has_lock_prefix(true);
        }
    }

    /// A sample instruction of a form (operands random, no constraints).
    fn make_sample(&mut self, f: &Form) -> Instruction {
        if is_string(f.code.op_code().mnemonic()) {
            return string_insn(f, Register::None).expect("string form");
        }
        if f.code.op_code().mnemonic() == Mnemonic::Xlatb {
            return xlat_insn(
                f.code,
                if f.bits == 64 {
                    Register::RBX
                } else {
                    Register::EBX
                },
                Register::None,
            );
        }
        for _ in 0..100 {
            let ops = self.random_ops(f.code);
            if let Some(i) = self.make(f.code, &ops) {
                return i;
            }
        }
        panic!("cannot build a sample of {}", f.name)
    }

    // ----- templates -----

    /// One instruction with random operands.
    fn t_generic(&mut self, code: Code, fx: Fx) -> bool {
        let ops = self.random_ops(code);
        let Some(mut ins) = self.make(code, &ops) else {
            return false;
        };
        self.lock(&mut ins);
        self.emit(ins, fx)
    }

    /// A shift count biased towards the edges of the operand width.
    fn count(&mut self, w: u32) -> u32 {
        let c = match self.rng.below(8) {
            0 => 0,
            1 => 1,
            2 => w - 1,
            3 => w,
            4 => w + 1,
            5 => *self.rng.pick(&[31, 32, 33, 63, 64, 65, 255]),
            _ => self.rng.below(w as u64) as u32,
        };
        c & 0xff
    }

    /// Shifts and rotates; CL counts are set just before.
    fn t_shift(&mut self, code: Code) -> bool {
        let mut ops = self.random_ops(code);
        let op = code.op_code();
        let w = rm_bits(op.op_kind(0));
        let last = ops.len() - 1;
        let double = matches!(op.mnemonic(), Mnemonic::Shld | Mnemonic::Shrd);
        let mut c = self.count(w);
        if double && w == 16 && c & 31 > 15 {
            // A 16-bit double shift by more than 16 has an undefined result.
            c = (c & 15) | (self.rng.below(8) as u32 * 32);
            c &= 0xff;
        }
        let by_cl = op.op_kind(last as u32) == K::cl;
        match op.op_kind(last as u32) {
            K::imm8 => ops[last] = Op::I(c as u64),
            K::imm8_const_1 => c = 1,
            _ => {}
        }
        if by_cl {
            if (self.reserved | self.extra) & 2 != 0 {
                return false;
            }
            if !self.put(
                Code::Mov_r8_imm8,
                &[Op::R(Register::CL), Op::I(c as u64)],
                Fx::default(),
            ) {
                return false;
            }
        }
        let Some(ins) = self.make(code, &ops) else {
            return false;
        };
        self.emit(
            ins,
            Fx {
                count: Some(c),
                ..Fx::default()
            },
        )
    }

    /// BSF/BSR: the source is set first so a zero source (undefined
    /// destination) is known.
    fn t_bsf(&mut self, code: Code) -> bool {
        let ops = self.random_ops(code);
        let w = rm_bits(code.op_code().op_kind(1));
        let mut v = self.rng.interesting(64);
        if self.rng.chance(1, 5) {
            // Zero in the operand's width, garbage above it.
            v &= !w.mask_u64();
        }
        let ok = match ops[1] {
            Op::R(r) => {
                let n = r.full_register().number();
                n != 4 && (self.reserved | self.extra) & (1 << n) == 0 && self.set_reg(n, v)
            }
            Op::M(m) => {
                if w == 64 {
                    v = v as i32 as u64;
                }
                self.set_mem(m, w, v)
            }
            _ => false,
        };
        let fx = Fx {
            undef_dest: v & w.mask_u64() == 0,
            ..Fx::default()
        };
        ok && self.put(code, &ops, fx)
    }

    /// DIV/IDIV with a chosen dividend and divisor: mostly valid, sometimes
    /// #DE (zero divisor or quotient overflow).
    fn t_div(&mut self, code: Code) -> bool {
        if self.in_body {
            return false;
        }
        let ops = self.random_ops(code);
        let w = rm_bits(code.op_code().op_kind(0));
        let signed = code.op_code().mnemonic() == Mnemonic::Idiv;
        let mask = w.mask_u64();
        let mut d = match self.rng.below(12) {
            0 => 0,
            1 if signed => mask,
            _ => self.rng.interesting(w).max(1),
        };
        if d == 0 && self.rng.chance(1, 2) {
            d = 1 + self.rng.below(mask.min(1000));
        }
        let (hi, lo) = dividend(self.rng, w, d, signed);
        // Dividend: 8-bit uses AX; wider ones rDX:rAX.
        let ok = if w == 8 {
            let ax = (self.rng.next() & !0xffff) | ((hi & 0xff) << 8) | (lo & 0xff);
            self.set_reg(0, ax)
        } else {
            let garbage = self.rng.next() & !mask;
            let garbage2 = self.rng.next() & !mask;
            self.set_reg(0, lo | garbage) && self.set_reg(2, hi | garbage2)
        };
        if !ok {
            return false;
        }
        let ok = match ops[0] {
            Op::R(r) => {
                let n = r.full_register().number();
                if n == 0 || n == 2 || n == 4 || (self.reserved | self.extra) & (1 << n) != 0 {
                    return false;
                }
                if r.is_gpr8()
                    && matches!(r, Register::AH | Register::CH | Register::DH | Register::BH)
                {
                    // AH..BH are bits 8..15 of their register.
                    let v = (self.rng.next() & !0xff00) | (d << 8);
                    self.set_reg(n, v)
                } else {
                    let v = (self.rng.next() & !mask) | d;
                    self.set_reg(n, v)
                }
            }
            Op::M(m) => {
                let d = if w == 64 { d as i32 as u64 } else { d };
                self.set_mem(m, w, d)
            }
            _ => false,
        };
        ok && self.put(code, &ops, Fx::default())
    }

    /// BT/BTS/BTR/BTC: a memory operand with a register bit offset gets a
    /// small signed offset set first.
    fn t_bt(&mut self, code: Code) -> bool {
        let ops = self.random_ops(code);
        if let (Op::M(_), Op::R(r)) = (ops[0], ops[1]) {
            let n = r.full_register().number();
            if n == self.regs.b || n == self.regs.a || n == 4 {
                return false;
            }
            if n != self.regs.i {
                let off = self.rng.range(-0x200, 0x200) as u64;
                if !self.set_reg(n, off) {
                    return false;
                }
            }
        }
        let Some(mut ins) = self.make(code, &ops) else {
            return false;
        };
        self.lock(&mut ins);
        self.emit(ins, Fx::default())
    }

    /// CMPXCHG: half the time the accumulator is made equal first.
    fn t_cmpxchg(&mut self, code: Code) -> bool {
        let ops = self.random_ops(code);
        let w = rm_bits(code.op_code().op_kind(0));
        if self.rng.chance(1, 2) {
            let acc = gpr(0, w);
            let mov = match w {
                8 => Code::Mov_r8_rm8,
                16 => Code::Mov_r16_rm16,
                32 => Code::Mov_r32_rm32,
                _ => Code::Mov_r64_rm64,
            };
            if !self.put(mov, &[Op::R(acc), ops[0]], Fx::default()) {
                return false;
            }
        }
        let Some(mut ins) = self.make(code, &ops) else {
            return false;
        };
        self.lock(&mut ins);
        self.emit(ins, Fx::default())
    }

    /// CMPXCHG8B/16B on an aligned operand (sometimes misaligned: #GP for
    /// 16B); half the time rDX:rAX are loaded from memory first.
    fn t_cmpxchg8b(&mut self, code: Code) -> bool {
        let wide = code == Code::Cmpxchg16b_m128;
        if wide && self.in_body {
            return false;
        }
        let bval = self.regs.gpr[self.regs.b] & if self.bits == 32 { 0xffff_ffff } else { !0 };
        let mut ea = (bval & !15) as i64 + self.rng.range(-32, 32) * 16;
        if wide && self.rng.chance(1, 10) {
            ea += 8;
        } else if !wide {
            ea += 8 * self.rng.below(2) as i64;
        }
        let m = Mem {
            base: self.areg(self.regs.b),
            index: Register::None,
            scale: 1,
            disp: ea - bval as i64,
            displ_size: 4,
            seg: Register::None,
        };
        if self.rng.chance(1, 2) {
            let (code_mov, half) = if wide {
                (Code::Mov_r64_rm64, 8)
            } else {
                (Code::Mov_r32_rm32, 4)
            };
            let hi = Mem {
                disp: m.disp + half,
                ..m
            };
            let w = if wide { 64 } else { 32 };
            if !self.put(code_mov, &[Op::R(gpr(0, w)), Op::M(m)], Fx::default())
                || !self.put(code_mov, &[Op::R(gpr(2, w)), Op::M(hi)], Fx::default())
            {
                return false;
            }
        }
        let Some(mut ins) = self.make(code, &[Op::M(m)]) else {
            return false;
        };
        if self.rng.chance(1, 2) {
            ins.set_has_lock_prefix(true);
        }
        self.emit(ins, Fx::default())
    }

    /// POPF: pops a value with TF, AC, IOPL and NT clear and IF set (user
    /// mode cannot change IF; the emulator at CPL 0 could).
    fn t_popf(&mut self, code: Code) -> bool {
        let v = (self.rng.next() & (fl::STATUS | fl::DF)) | fl::IF | fl::FIXED1;
        let word = code == Code::Popfw;
        let (pushf, push_imm) = match (word, self.bits) {
            (true, _) => (Code::Pushfw, Code::Push_imm16),
            (false, 32) => (Code::Pushfd, Code::Pushd_imm32),
            _ => (Code::Pushfq, Code::Pushq_imm32),
        };
        let ok = if self.rng.chance(1, 3) {
            self.put(pushf, &[], Fx::default())
        } else {
            self.put(push_imm, &[Op::I(v)], Fx::default())
        };
        ok && self.put(code, &[], Fx::default())
    }

    /// `lea rbp, [rsp + k]`: a frame pointer inside the stack.
    fn frame_pointer(&mut self) -> bool {
        let k = self.rng.range(0, 16) * 8;
        let (lea, bp, sp) = if self.bits == 32 {
            (Code::Lea_r32_m, Register::EBP, Register::ESP)
        } else {
            (Code::Lea_r64_m, Register::RBP, Register::RSP)
        };
        self.put(
            lea,
            &[Op::R(bp), Op::M(Mem::base_disp(sp, k))],
            Fx::default(),
        )
    }

    /// ENTER (levels ≥ 2 read old frame pointers: RBP is set first),
    /// sometimes followed by a body and LEAVE.
    fn t_enter(&mut self, code: Code) -> bool {
        let size = self.rng.below(0x100);
        let level = match self.rng.below(20) {
            0..=7 => 0,
            8..=13 => 1,
            14..=18 => 2 + self.rng.below(3),
            _ => 32 + self.rng.below(3),
        };
        // Levels >= 2 read old frame pointers through RBP; a 16-bit ENTER
        // writes only BP, and a later LEAVE loads RSP from all of RBP.
        let word = code == Code::Enterw_imm16_imm8;
        if (level & 31 >= 2 || word) && !self.frame_pointer() {
            return false;
        }
        if !self.put(code, &[Op::I(size), Op::I(level)], Fx::default()) {
            return false;
        }
        if !self.in_body && self.rng.chance(1, 2) {
            // The body keeps RBP: LEAVE loads RSP from it.
            let had = self.extra;
            self.extra |= 1 << 5;
            let ok = self.body(1);
            self.extra = had;
            if !ok {
                return false;
            }
            let leave = match (code, self.bits) {
                (Code::Enterw_imm16_imm8, _) => Code::Leavew,
                (_, 32) => Code::Leaved,
                _ => Code::Leaveq,
            };
            return self.put(leave, &[], Fx::default());
        }
        true
    }

    /// LEAVE with RBP pointing into the stack.
    fn t_leave(&mut self, code: Code) -> bool {
        self.frame_pointer() && self.put(code, &[], Fx::default())
    }

    /// 0..=n plain forms (no branches, no faults) inside a template.
    fn body(&mut self, n: u64) -> bool {
        let count = self.rng.below(n + 1);
        let was = self.in_body;
        self.in_body = true;
        let mut ok = true;
        for _ in 0..count {
            ok = self.plain_form();
            if !ok {
                break;
            }
        }
        self.in_body = was;
        ok
    }

    /// One random plain form, with retries.
    fn plain_form(&mut self) -> bool {
        for _ in 0..50 {
            if self.plain.is_empty() {
                return false;
            }
            let f = self.rng.pick(self.plain).clone();
            let s = self.snapshot();
            if self.form(&f) {
                return true;
            }
            self.restore(s);
        }
        false
    }

    /// Load the address of instruction `target` into a scratch register
    /// and return the register number.
    fn lea_label(&mut self, target: u64) -> Option<usize> {
        let n = self.scratch();
        if self.bits == 32 {
            // No EIP-relative LEA outside 64-bit mode: a MOV whose
            // immediate is patched once the label's address is known.
            let at = self.ins.len();
            let ok = self.put(
                Code::Mov_r32_imm32,
                &[Op::R(R32[n]), Op::I(0)],
                Fx::default(),
            );
            if ok {
                self.fixups.push((at, target));
            }
            return ok.then_some(n);
        }
        let m = Mem {
            base: Register::RIP,
            index: Register::None,
            scale: 1,
            disp: target as i64,
            displ_size: 8,
            seg: Register::None,
        };
        self.put(Code::Lea_r64_m, &[Op::R(R64[n]), Op::M(m)], Fx::default())
            .then_some(n)
    }

    /// Branch operand for an indirect transfer to `target`: a register or
    /// a memory slot holding the address.
    fn indirect(&mut self, target: u64) -> Option<Op> {
        let via_mem = self.rng.chance(1, 2);
        self.indirect_via(target, via_mem)
    }

    /// As `indirect`: one set-up instruction (LEA) for a register operand,
    /// two (LEA, MOV) for a memory operand.
    fn indirect_via(&mut self, target: u64, via_mem: bool) -> Option<Op> {
        let n = self.lea_label(target)?;
        let r = self.areg(n);
        if !via_mem {
            return Some(Op::R(r));
        }
        let m = self.mem();
        let mov = if self.bits == 32 {
            Code::Mov_rm32_r32
        } else {
            Code::Mov_rm64_r64
        };
        self.put(mov, &[Op::M(m), Op::R(r)], Fx::default())
            .then_some(Op::M(m))
    }

    /// `call L1; jmp L2; L1: body; ret; L2:` (the call direct or
    /// indirect, the return with or without an immediate).
    fn t_call(&mut self, code: Code) -> bool {
        if self.in_body {
            return false;
        }
        let m = code.op_code().mnemonic();
        let (calls, rets, call_rm) = if self.bits == 32 {
            (
                [Code::Call_rel32_32, Code::Call_rm32],
                [Code::Retnd, Code::Retnd_imm16],
                Code::Call_rm32,
            )
        } else {
            (
                [Code::Call_rel32_64, Code::Call_rm64],
                [Code::Retnq, Code::Retnq_imm16],
                Code::Call_rm64,
            )
        };
        let call = if m == Mnemonic::Call {
            code
        } else {
            *self.rng.pick(&calls)
        };
        let ret = if m == Mnemonic::Ret {
            code
        } else {
            *self.rng.pick(&rets)
        };
        // Indirect calls need their target before the call: the set-up
        // instructions come first, so the callee's label is counted after.
        let via_mem = self.rng.chance(1, 2);
        let setup = match (call == call_rm, via_mem) {
            (true, false) => 1,
            (true, true) => 2,
            _ => 0,
        };
        let l1 = label(self.j, self.k + setup + 2);
        let target = if call == call_rm {
            match self.indirect_via(l1, via_mem) {
                Some(op) => op,
                None => return false,
            }
        } else {
            Op::B(l1)
        };
        if !self.put(call, &[target], Fx::default()) {
            return false;
        }
        let skip = if self.bits == 32 {
            *self.rng.pick(&[Code::Jmp_rel8_32, Code::Jmp_rel32_32])
        } else {
            *self.rng.pick(&[Code::Jmp_rel8_64, Code::Jmp_rel32_64])
        };
        let next = label(self.j + 1, 0);
        if !self.put(skip, &[Op::B(next)], Fx::default()) {
            return false;
        }
        debug_assert_eq!(label(self.j, self.k), l1);
        if !self.body(2) {
            return false;
        }
        let ops = if matches!(ret, Code::Retnq_imm16 | Code::Retnd_imm16) {
            vec![Op::I(self.rng.range(0, 4) as u64 * 8)]
        } else {
            vec![]
        };
        if !self.put(ret, &ops, Fx::default()) {
            return false;
        }
        self.branch_to(self.j + 1);
        true
    }

    /// JMP: direct forward, or indirect through a register or memory.
    fn t_jmp(&mut self, code: Code) -> bool {
        if self.in_body {
            return false;
        }
        let t = self.target();
        let indirect = matches!(code, Code::Jmp_rm64 | Code::Jmp_rm32);
        if code == Code::Jmp_rm64 && self.rng.chance(1, 16) {
            // A non-canonical target: #GP at the JMP itself.
            let n = self.scratch();
            let bad = (self.rng.next() | (1 << 62)) & !(1 << 63) & !0xfff;
            return self.set_reg(n, bad) && self.put(code, &[Op::R(R64[n])], Fx::default());
        }
        let op = if indirect {
            match self.indirect(label(t, 0)) {
                Some(op) => op,
                None => return false,
            }
        } else {
            Op::B(label(t, 0))
        };
        if !self.put(code, &[op], Fx::default()) {
            return false;
        }
        self.branch_to(t);
        true
    }

    /// Jcc, JrCXZ and forward LOOPs: a forward conditional branch.
    fn t_cond_branch(&mut self, code: Code) -> bool {
        if self.in_body {
            return false;
        }
        let m = code.op_code().mnemonic();
        let counts = matches!(
            m,
            Mnemonic::Loop | Mnemonic::Loope | Mnemonic::Loopne | Mnemonic::Jrcxz | Mnemonic::Jecxz
        );
        if counts && self.rng.chance(1, 2) {
            let v = self.rng.below(3) | (self.rng.next() & !0xffff_ffff);
            if !self.set_reg(1, v) {
                return false;
            }
        }
        let t = self.target();
        if !self.put(code, &[Op::B(label(t, 0))], Fx::default()) {
            return false;
        }
        self.branch_to(t);
        true
    }

    /// `mov ecx, n; L: body; loop L` (n ≥ 1, the body does not write RCX).
    fn t_loop(&mut self, code: Code) -> bool {
        if self.in_body || (self.reserved | self.extra) & 2 != 0 {
            return false;
        }
        let n = 1 + self.rng.below(4);
        if !self.put(
            Code::Mov_r32_imm32,
            &[Op::R(Register::ECX), Op::I(n)],
            Fx::default(),
        ) {
            return false;
        }
        let entry = self.state;
        let first = self.ins.len();
        let l = label(self.j, self.k);
        self.extra |= 2;
        let ok = self.body(2);
        self.extra &= !2;
        if !ok {
            return false;
        }
        // Later iterations start from the state at the loop instruction:
        // the body must be valid from the joined state too.
        let joined = entry.join(self.state);
        if !self.recheck(first, joined) {
            return false;
        }
        self.put(code, &[Op::B(l)], Fx::default())
    }

    /// Re-run the constraint checks of instructions `first..` from state
    /// `start` (for loop bodies); on success the current state becomes the
    /// join of both runs.
    fn recheck(&mut self, first: usize, start: Undef) -> bool {
        let saved = (
            self.ins.clone(),
            self.fxs.clone(),
            self.before.clone(),
            self.form_of.clone(),
            self.k,
            self.state,
        );
        let body: Vec<(Instruction, Fx)> = self.ins[first..]
            .iter()
            .copied()
            .zip(self.fxs[first..].iter().copied())
            .collect();
        self.ins.truncate(first);
        self.fxs.truncate(first);
        self.before.truncate(first);
        self.form_of.truncate(first);
        self.k -= body.len();
        self.state = start;
        let ok = body.iter().all(|&(i, fx)| self.emit(i, fx));
        let again = self.state;
        (
            self.ins,
            self.fxs,
            self.before,
            self.form_of,
            self.k,
            self.state,
        ) = saved;
        if ok {
            self.state = self.state.join(again);
        }
        ok
    }

    /// 32-bit code: a string instruction with ESI/EDI (and ECX for REP)
    /// set first. ES (the destination) has base DATA, so EDI is an offset
    /// into the data region; the source is DS (flat) with 32-bit
    /// addresses, GS (base DATA) with 16-bit ones. Above the address size
    /// the registers hold garbage.
    fn t_string32(&mut self, f: &Form) -> bool {
        if (self.reserved | self.extra) & ((1 << 1) | (1 << 6) | (1 << 7)) != 0 {
            return false;
        }
        let a16 = f.addr == 16;
        let upper = |rng: &mut Rng| {
            if a16 {
                rng.next() & 0xffff_0000
            } else {
                0
            }
        };
        let src_off = STR_AREA - DATA + 0x100 + self.rng.below(0x600);
        let dst_off = STR_AREA - DATA + 0x100 + self.rng.below(0x600);
        let src = if a16 { src_off } else { DATA + src_off };
        let (u1, u2) = (upper(self.rng), upper(self.rng));
        if !self.set_reg(6, src | u1) || !self.set_reg(7, dst_off | u2) {
            return false;
        }
        let mut fx = Fx::default();
        if f.rep != RepPrefixKind::None {
            let n = if self.rng.chance(1, 8) {
                0
            } else {
                1 + self.rng.below(16)
            };
            fx.keeps_flags = n == 0;
            let u = upper(self.rng);
            if !self.set_reg(1, n | u) {
                return false;
            }
        }
        let seg = if a16 { Register::GS } else { Register::None };
        match string_insn(f, seg) {
            Some(i) => self.emit(i, fx),
            None => false,
        }
    }

    /// XLAT: AL = [rBX + AL]. EBX is the base register (or is set to a
    /// data pointer first); with a 67 prefix BX + AL is an offset into the
    /// data region through GS.
    fn t_xlat(&mut self, f: &Form) -> bool {
        let a16 = self.bits == 32 && self.rng.chance(1, 2);
        if self.regs.b != 3 {
            if (self.reserved | self.extra) & (1 << 3) != 0 {
                return false;
            }
            let v = MEM_CENTRE + self.rng.below(0x100);
            if !self.set_reg(3, v) {
                return false;
            }
        }
        let (base, seg) = match (self.bits, a16) {
            (64, _) => (Register::RBX, Register::None),
            (_, true) => (Register::BX, Register::GS),
            _ => (Register::EBX, self.seg()),
        };
        self.emit(xlat_insn(f.code, base, seg), Fx::default())
    }

    /// PUSHA/PUSHAD, sometimes a changed slot of a free register, then
    /// POPA/POPAD of the same size (which restores the reserved registers
    /// to the values they have).
    fn t_popa(&mut self, code: Code) -> bool {
        let word = code == Code::Popaw;
        let push = if word { Code::Pushaw } else { Code::Pushad };
        if !self.put(push, &[], Fx::default()) {
            return false;
        }
        if self.rng.chance(1, 2) {
            // Slot k (0 = EDI … 7 = EAX) holds register 7 - k.
            let k = self.rng.below(8);
            let r = 7 - k as usize;
            if r == 4 || (self.reserved | self.extra) & (1 << r) != 0 {
                return false;
            }
            let (code_mov, size, bits) = if word {
                (Code::Mov_rm16_imm16, 2, 16)
            } else {
                (Code::Mov_rm32_imm32, 4, 32)
            };
            let v = self.rng.interesting(bits);
            let m = Mem::base_disp(Register::ESP, k as i64 * size);
            if !self.put(code_mov, &[Op::M(m), Op::I(v)], Fx::default()) {
                return false;
            }
        }
        self.put(
            code,
            &[],
            Fx {
                restores: true,
                ..Fx::default()
            },
        )
    }

    /// A string instruction with RSI/RDI (and RCX for REP) set first.
    fn t_string(&mut self, f: &Form) -> bool {
        if self.bits == 32 {
            return self.t_string32(f);
        }
        if (self.reserved | self.extra) & ((1 << 1) | (1 << 6) | (1 << 7)) != 0 {
            return false;
        }
        let upper = |rng: &mut Rng, addr: u32| {
            if addr == 32 {
                rng.next() & !0xffff_ffff
            } else {
                0
            }
        };
        let src = STR_AREA + 0x100 + self.rng.below(0x600);
        let dst = STR_AREA + 0x100 + self.rng.below(0x600);
        let u1 = upper(self.rng, f.addr);
        let u2 = upper(self.rng, f.addr);
        if !self.set_reg(6, src | u1) || !self.set_reg(7, dst | u2) {
            return false;
        }
        let mut fx = Fx::default();
        if f.rep != RepPrefixKind::None {
            let n = if self.rng.chance(1, 8) {
                0
            } else {
                1 + self.rng.below(16)
            };
            fx.keeps_flags = n == 0;
            let u = upper(self.rng, f.addr);
            if !self.set_reg(1, n | u) {
                return false;
            }
        }
        let seg = match self.rng.below(8) {
            0 => {
                self.uses_seg = true;
                Register::FS
            }
            1 => {
                self.uses_seg = true;
                Register::GS
            }
            _ => Register::None,
        };
        match string_insn(f, seg) {
            Some(i) => self.emit(i, fx),
            None => false,
        }
    }

    /// Generate form `f` at the current position.
    fn form(&mut self, f: &Form) -> bool {
        use Mnemonic::*;
        self.form_name = f.name.clone();
        let code = f.code;
        let op = code.op_code();
        let m = op.mnemonic();
        match m {
            _ if is_string(m) => self.t_string(f),
            _ if is_shift(m) => self.t_shift(code),
            Bsf | Bsr => self.t_bsf(code),
            Div | Idiv => self.t_div(code),
            Bt | Bts | Btr | Btc => self.t_bt(code),
            Cmpxchg => self.t_cmpxchg(code),
            Cmpxchg8b | Cmpxchg16b => self.t_cmpxchg8b(code),
            Popf | Popfq | Popfd => self.t_popf(code),
            Popa | Popad => self.t_popa(code),
            Xlatb => self.t_xlat(f),
            Enter => self.t_enter(code),
            Leave => self.t_leave(code),
            Call | Ret => self.t_call(code),
            Jmp => self.t_jmp(code),
            Loop | Loope | Loopne if self.rng.chance(1, 2) => self.t_loop(code),
            Loop | Loope | Loopne | Jrcxz | Jecxz => self.t_cond_branch(code),
            _ if op
                .op_kinds()
                .iter()
                .any(|k| matches!(k, K::br64_1 | K::br64_4 | K::br32_1 | K::br32_4)) =>
            {
                self.t_cond_branch(code)
            }
            Bswap if op.op_kind(0) == K::r16_opcode => self.t_generic(
                code,
                Fx {
                    undef_dest: true,
                    ..Fx::default()
                },
            ),
            _ => self.t_generic(code, Fx::default()),
        }
    }
}

/// Width in bits of an r/m or register operand kind.
fn rm_bits(k: K) -> u32 {
    match k {
        K::r8_or_mem | K::r8_reg | K::r8_opcode | K::al | K::cl => 8,
        K::r16_or_mem | K::r16_reg | K::r16_opcode | K::ax => 16,
        K::r32_or_mem | K::r32_reg | K::r32_opcode | K::r32_vvvv | K::eax => 32,
        _ => 64,
    }
}

trait WidthMask {
    fn mask_u64(self) -> u64;
}
impl WidthMask for u32 {
    fn mask_u64(self) -> u64 {
        if self >= 64 {
            u64::MAX
        } else {
            (1u64 << self) - 1
        }
    }
}

/// A (high, low) dividend for a `w`-bit division by `d`: usually one whose
/// quotient fits, sometimes arbitrary (quotient overflow → #DE).
fn dividend(rng: &mut Rng, w: u32, d: u64, signed: bool) -> (u64, u64) {
    let mask = w.mask_u64();
    if d == 0 || rng.chance(1, 6) {
        return (rng.interesting(w), rng.interesting(w));
    }
    if !signed {
        let hi = rng.below(d);
        return (hi, rng.interesting(w));
    }
    // Signed: dividend = q*d + r with q and r in range (128-bit maths).
    let sx = |v: u64| -> i128 { ((v << (64 - w)) as i64 >> (64 - w)) as i128 };
    let dv = sx(d);
    let qmax = (1i128 << (w - 1)) - 1;
    let q = sx(rng.interesting(w)).clamp(-qmax, qmax);
    let rmag = dv.unsigned_abs().saturating_sub(1);
    let r = if rmag == 0 {
        0
    } else {
        (rng.next() as u128 % (rmag + 1)) as i128
    };
    let neg = q < 0 || (q == 0 && rng.chance(1, 2));
    let n = q * dv + if neg { -r } else { r };
    let lo = (n as u128 as u64) & mask;
    let hi = ((n >> w) as u128 as u64) & mask;
    (hi, lo)
}

/// XLAT with base register `base` (its size is the address size) and a
/// segment override.
fn xlat_insn(code: Code, base: Register, seg: Register) -> Instruction {
    let mut i = Instruction::default();
    i.set_code(code);
    i.set_op0_kind(OpKind::Memory);
    i.set_memory_base(base);
    i.set_memory_index(Register::AL);
    i.set_memory_index_scale(1);
    i.set_segment_prefix(seg);
    i
}

/// Build a string instruction of form `f` with a source segment override.
fn string_insn(f: &Form, seg: Register) -> Option<Instruction> {
    use Code as C;
    let a = f.addr;
    let r = f.rep;
    let i = match f.code {
        C::Movsb_m8_m8 => Instruction::with_movsb(a, seg, r),
        C::Movsw_m16_m16 => Instruction::with_movsw(a, seg, r),
        C::Movsd_m32_m32 => Instruction::with_movsd(a, seg, r),
        C::Movsq_m64_m64 => Instruction::with_movsq(a, seg, r),
        C::Lodsb_AL_m8 => Instruction::with_lodsb(a, seg, r),
        C::Lodsw_AX_m16 => Instruction::with_lodsw(a, seg, r),
        C::Lodsd_EAX_m32 => Instruction::with_lodsd(a, seg, r),
        C::Lodsq_RAX_m64 => Instruction::with_lodsq(a, seg, r),
        C::Cmpsb_m8_m8 => Instruction::with_cmpsb(a, seg, r),
        C::Cmpsw_m16_m16 => Instruction::with_cmpsw(a, seg, r),
        C::Cmpsd_m32_m32 => Instruction::with_cmpsd(a, seg, r),
        C::Cmpsq_m64_m64 => Instruction::with_cmpsq(a, seg, r),
        C::Stosb_m8_AL => Instruction::with_stosb(a, r),
        C::Stosw_m16_AX => Instruction::with_stosw(a, r),
        C::Stosd_m32_EAX => Instruction::with_stosd(a, r),
        C::Stosq_m64_RAX => Instruction::with_stosq(a, r),
        C::Scasb_AL_m8 => Instruction::with_scasb(a, r),
        C::Scasw_AX_m16 => Instruction::with_scasw(a, r),
        C::Scasd_EAX_m32 => Instruction::with_scasd(a, r),
        C::Scasq_RAX_m64 => Instruction::with_scasq(a, r),
        _ => return None,
    };
    i.ok()
}

/// True for forms that may appear in template bodies: no control flow,
/// no deliberate faults, no templates of their own.
fn is_plain(f: &Form) -> bool {
    use Mnemonic::*;
    let op = f.code.op_code();
    let m = op.mnemonic();
    !(op.op_kinds()
        .iter()
        .any(|k| matches!(k, K::br64_1 | K::br64_4 | K::br32_1 | K::br32_4))
        || moves_stack(m)
        || matches!(
            m,
            Call | Ret
                | Jmp
                | Div
                | Idiv
                | Cmpxchg16b
                | Enter
                | Leave
                | Loop
                | Loope
                | Loopne
                | Aam
                | Bound
                | Into
        ))
}

/// The sequence generator over a set of forms.
pub struct Generator {
    forms: Vec<Form>,
    plain: Vec<Form>,
    only_implemented: bool,
    /// Code size of the forms (64 or 32).
    bits: u32,
}

impl Generator {
    /// A generator drawing from `forms` (usually the implemented part of
    /// the catalogue).
    pub fn new(forms: Vec<Form>, only_implemented: bool) -> Generator {
        let plain = forms.iter().filter(|f| is_plain(f)).cloned().collect();
        let bits = forms.first().map_or(64, |f| f.bits);
        assert!(
            forms.iter().all(|f| f.bits == bits),
            "forms of one code size"
        );
        Generator {
            forms,
            plain,
            only_implemented,
            bits,
        }
    }

    /// Generate the case for `seed`.
    pub fn case(&self, seed: u64) -> Case {
        let mut rng = Rng::new(seed);
        loop {
            if let Some(c) = self.try_case(&mut rng, seed) {
                return c;
            }
        }
    }

    /// 32-bit code: the base register is EBX or EBP (so its low half
    /// serves 16-bit addressing too), the index register the other one of
    /// those or ESI/EDI; values are 32-bit, R8–R15 zero (unreachable).
    fn initial32(rng: &mut Rng) -> Regs {
        let b = *rng.pick(&[3usize, 5]);
        let i = *rng.pick(&[8 - b, 6, 7]);
        let mut gpr = [0u64; 16];
        for v in gpr.iter_mut().take(8) {
            *v = rng.interesting(32);
        }
        gpr[b] = MEM_CENTRE + rng.below(0x100);
        gpr[i] = rng.below(0x40);
        gpr[4] = STACK_TOP - 4 * rng.below(8);
        Regs {
            b,
            i,
            a: i,
            gpr,
            bits: 32,
        }
    }

    fn initial(rng: &mut Rng) -> Regs {
        let mut pool = RESERVABLE.to_vec();
        let mut take = |rng: &mut Rng| pool.remove(rng.below(pool.len() as u64) as usize);
        let (b, i, a) = (take(rng), take(rng), take(rng));
        let mut gpr = [0u64; 16];
        for v in gpr.iter_mut() {
            *v = rng.interesting(64);
        }
        gpr[b] = MEM_CENTRE + rng.below(0x100);
        gpr[i] = rng.below(0x40);
        gpr[a] = (rng.next() << 32) | (MEM_CENTRE + rng.below(0x100));
        gpr[4] = STACK_TOP - 8 * rng.below(8);
        Regs {
            b,
            i,
            a,
            gpr,
            bits: 64,
        }
    }

    fn try_case(&self, rng: &mut Rng, seed: u64) -> Option<Case> {
        let regs = if self.bits == 32 {
            Self::initial32(rng)
        } else {
            Self::initial(rng)
        };
        let nforms = 1 + rng.below(8) as usize;
        let mut b = Builder::new(rng, &self.plain, nforms, regs, self.only_implemented);
        // Never 0: natively a zero base would not be distinguishable from
        // "leave the host's FS (TLS) alone".
        b.fs_base = 1 + b.rng.below(0x3ff);
        b.gs_base = 1 + b.rng.below(0x3ff);
        for j in 0..nforms {
            b.j = j;
            b.k = 0;
            b.state = b.state.join(b.pending[j]);
            let mut done = false;
            for _ in 0..50 {
                let f = b.rng.pick(&self.forms).clone();
                let s = b.snapshot();
                if b.form(&f) {
                    done = true;
                    break;
                }
                b.restore(s);
            }
            if !done {
                b.form_name = "nop".into();
                b.emit(Instruction::with(Code::Nopd), Fx::default());
            }
        }
        b.j = nforms;
        b.k = 0;
        b.state = b.state.join(b.pending[nforms]);
        b.form_name = "end".into();
        let mut ud2 = Instruction::with(Code::Ud2);
        ud2.set_ip(label(nforms, 0));
        b.before.push(b.state);
        b.form_of.push("end".into());
        b.ins.push(ud2);

        // The block encoder turns EIP-relative operands into RIP-relative
        // ones: those instructions go in as placeholder bytes of the right
        // length and are encoded at their final address afterwards.
        let mut enc64 = Encoder::new(self.bits);
        let mut raw = Vec::new();
        let mut block_ins = b.ins.clone();
        for (n, i) in block_ins.iter_mut().enumerate() {
            if i.is_ip_rel_memory_operand() && i.memory_base() == Register::EIP {
                let len = enc64.encode(i, CODE).ok()?;
                drop(enc64.take_buffer());
                let mut db = Instruction::with_declare_byte(&vec![0x90; len]).ok()?;
                db.set_ip(i.ip());
                raw.push((n, *i));
                *i = db;
            }
        }
        let block = InstructionBlock::new(&block_ins, CODE);
        let opts = BlockEncoderOptions::DONT_FIX_BRANCHES
            | BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS;
        let mut enc = BlockEncoder::encode(self.bits, block, opts).ok()?;
        if enc.code_buffer.len() > super::CODE_SIZE - 16 {
            return None;
        }
        for (n, i) in raw {
            let off = enc.new_instruction_offsets[n] as usize;
            let len = enc64.encode(&i, CODE + off as u64).ok()?;
            let bytes = enc64.take_buffer();
            enc.code_buffer[off..off + len].copy_from_slice(&bytes[..len]);
        }
        // `mov r32, label` placeholders (5 bytes: B8+r imm32).
        for &(n, target) in &b.fixups {
            let t = b.ins.iter().position(|i| i.ip() == target)?;
            let addr = CODE + enc.new_instruction_offsets[t] as u64;
            let off = enc.new_instruction_offsets[n] as usize;
            enc.code_buffer[off + 1..off + 5].copy_from_slice(&(addr as u32).to_le_bytes());
        }
        let undef_at = enc
            .new_instruction_offsets
            .iter()
            .zip(&b.before)
            .map(|(&off, &u)| (CODE + off as u64, u))
            .collect();
        let mut data = vec![0u8; DATA_SIZE];
        b.rng.fill(&mut data);
        let rflags = (b.rng.next() & (fl::STATUS | fl::DF)) | fl::IF | fl::FIXED1;
        let (fs_base, gs_base) = if b.uses_seg && self.bits == 64 {
            (b.fs_base, b.gs_base)
        } else {
            (0, 0)
        };
        Some(Case {
            seed,
            code: enc.code_buffer,
            init: InitState {
                gpr: regs.gpr,
                rflags,
                fs_base,
                gs_base,
                data,
                bits: self.bits,
            },
            undef_at,
            form_of: b.form_of,
            reserved: [regs.b, regs.i, regs.a],
        })
    }
}

/// Decode 64-bit `code` at [`CODE`] (for messages and the implementation
/// check).
pub fn decode(code: &[u8]) -> Vec<Instruction> {
    decode_bits(code, 64)
}

/// Decode `bits`-bit `code` at [`CODE`].
pub fn decode_bits(code: &[u8], bits: u32) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(bits, code, CODE, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        out.push(d.decode());
    }
    out
}
