//! The gdb stub (`-s`, `-gdb tcp::PORT`, `-S`), on the `gdbstub` crate.
//!
//! The machine is single-threaded: the stub never runs beside the guest.
//! The run loop's pause hook ([`crate::monitor`]) polls the connection
//! (every ~10 ms of host time while the guest runs, continuously while it
//! is paused) and feeds the bytes to gdbstub's state machine, which calls
//! the [`Target`] methods below on the [`Machine`] itself. `c` and `s`
//! only set how the machine goes on; the run loop does the running:
//!
//! - single-step: the machine runs until one instruction retired (an
//!   interrupt delivered on the way does not stop it, as in QEMU's replay
//!   mode), paused at the next loop top;
//! - breakpoints (`break`, `hbreak`: Z0 and Z1): the engine ends its
//!   blocks before each breakpoint address and stops there
//!   (`Exit::Breakpoint`), interpreting while any is set; exact, and the
//!   guest's memory is never patched;
//! - Ctrl-C: the machine pauses at the next loop top;
//! - watchpoints (`watch`, `rwatch`, `awatch`: Z2–Z4), any number and
//!   length: the engine keeps their pages out of the soft TLB, checks
//!   every access to them on the slow path and ends its run after the
//!   instruction that hit one (`cjemu_jit::watchpoint`), so the guest runs
//!   at full speed elsewhere;
//! - reverse-stepi / reverse-continue while replaying
//!   ([`crate::time_travel`]).
//!
//! Memory is read and written by linear address through the guest's page tables, walked here read-only
//! (no accessed/dirty bits set, no fault raised in the guest).

use crate::machine::Machine;
use crate::monitor::{Exec, PauseCause};
use cjemu_jit::memory::{GuestMemory, GuestPhysAddr};
use cjemu_jit::state::{cr0, cr4, efer};
use cjemu_jit::watchpoint::{Watch, WatchKind};
use cjemu_jit::{CpuState, Gpr, Seg};
use gdbstub::arch::{Arch, Registers};
use gdbstub::common::Signal;
use gdbstub::conn::Connection;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::reverse_exec::{
    ReplayLogPosition, ReverseCont, ReverseContOps, ReverseStep, ReverseStepOps,
};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind as GdbWatchKind,
};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

/// Bytes of the core + SSE registers in the `g` packet (gdb's amd64 order).
const CORE_BYTES: usize = 0x218;

/// The registers beyond gdb's amd64 core set, in the order of the target
/// description's extra features.
const EXTRA_NAMES: [&str; 9] = [
    "fs_base",
    "gs_base",
    "k_gs_base",
    "cr0",
    "cr2",
    "cr3",
    "cr4",
    "cr8",
    "efer",
];

/// `-gdb DEV`: `tcp::PORT` or `tcp:HOST:PORT`. Returns (host, port).
pub fn parse_device(dev: &str) -> Result<(String, u16), String> {
    let Some(rest) = dev.strip_prefix("tcp:") else {
        return Err("only tcp::PORT (or tcp:HOST:PORT) is supported".into());
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| "expected tcp::PORT".to_string())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{port}' is not a port number"))?;
    // QEMU listens on every interface for an empty host; cjemu keeps the
    // debugger local unless a host is named.
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    Ok((host.to_string(), port))
}

/// The target description: gdb's amd64 core and SSE registers, then the
/// segment bases and the control registers.
fn target_xml() -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM \"gdb-target.dtd\">\
         <target version=\"1.0\"><architecture>i386:x86-64</architecture>\
         <feature name=\"org.gnu.gdb.i386.core\">",
    );
    let reg = |x: &mut String, name: &str, bits: u32, ty: &str| {
        x.push_str(&format!(
            "<reg name=\"{name}\" bitsize=\"{bits}\" type=\"{ty}\"/>"
        ));
    };
    for r in ["rax", "rbx", "rcx", "rdx", "rsi", "rdi"] {
        reg(&mut x, r, 64, "int64");
    }
    reg(&mut x, "rbp", 64, "data_ptr");
    reg(&mut x, "rsp", 64, "data_ptr");
    for i in 8..16 {
        reg(&mut x, &format!("r{i}"), 64, "int64");
    }
    reg(&mut x, "rip", 64, "code_ptr");
    reg(&mut x, "eflags", 32, "int32");
    for s in ["cs", "ss", "ds", "es", "fs", "gs"] {
        reg(&mut x, s, 32, "int32");
    }
    for i in 0..8 {
        reg(&mut x, &format!("st{i}"), 80, "i387_ext");
    }
    for r in [
        "fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop",
    ] {
        reg(&mut x, r, 32, "int");
    }
    x.push_str("</feature><feature name=\"org.gnu.gdb.i386.sse\">");
    for i in 0..16 {
        reg(&mut x, &format!("xmm{i}"), 128, "uint128");
    }
    reg(&mut x, "mxcsr", 32, "int");
    x.push_str("</feature><feature name=\"org.gnu.gdb.i386.segments\">");
    reg(&mut x, "fs_base", 64, "int64");
    reg(&mut x, "gs_base", 64, "int64");
    x.push_str("</feature><feature name=\"org.cjemu.x86.sys\">");
    for r in &EXTRA_NAMES[2..] {
        reg(&mut x, r, 64, "int64");
    }
    x.push_str("</feature></target>");
    x
}

/// x86-64 as cjemu shows it to gdb.
pub enum CjemuX86_64 {}

impl Arch for CjemuX86_64 {
    type Usize = u64;
    type Registers = Regs;
    type RegId = ();
    type BreakpointKind = usize;

    fn target_description_xml() -> Option<&'static str> {
        static XML: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        Some(XML.get_or_init(target_xml).as_str())
    }
}

/// The `g` packet: the amd64 core (+ SSE) registers, then [`EXTRA_NAMES`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Regs {
    pub core: X86_64CoreRegs,
    pub extra: [u64; 9],
}

impl Registers for Regs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.core.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        self.core.gdb_serialize(&mut write_byte);
        for v in self.extra {
            v.to_le_bytes().iter().for_each(|&b| write_byte(Some(b)));
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if bytes.len() < CORE_BYTES {
            return Err(());
        }
        self.core.gdb_deserialize(&bytes[..CORE_BYTES])?;
        for (i, c) in bytes[CORE_BYTES..].chunks_exact(8).take(9).enumerate() {
            self.extra[i] = u64::from_le_bytes(c.try_into().map_err(|_| ())?);
        }
        Ok(())
    }
}

/// gdb's order of the general registers.
const GDB_GPRS: [Gpr; 16] = [
    Gpr::Rax,
    Gpr::Rbx,
    Gpr::Rcx,
    Gpr::Rdx,
    Gpr::Rsi,
    Gpr::Rdi,
    Gpr::Rbp,
    Gpr::Rsp,
    Gpr::R8,
    Gpr::R9,
    Gpr::R10,
    Gpr::R11,
    Gpr::R12,
    Gpr::R13,
    Gpr::R14,
    Gpr::R15,
];

/// The registers gdb sees for `cpu`.
pub fn regs_of(cpu: &CpuState) -> Regs {
    let mut r = Regs::default();
    for (i, g) in GDB_GPRS.iter().enumerate() {
        r.core.regs[i] = cpu.reg(*g);
    }
    r.core.rip = cpu.rip;
    r.core.eflags = cpu.rflags() as u32;
    let sel = |s: Seg| cpu.seg(s).selector as u32;
    r.core.segments.cs = sel(Seg::Cs);
    r.core.segments.ss = sel(Seg::Ss);
    r.core.segments.ds = sel(Seg::Ds);
    r.core.segments.es = sel(Seg::Es);
    r.core.segments.fs = sel(Seg::Fs);
    r.core.segments.gs = sel(Seg::Gs);
    for (i, st) in r.core.st.iter_mut().enumerate() {
        st.copy_from_slice(&cpu.x87.regs[i][..10]);
    }
    r.core.fpu.fctrl = cpu.x87.fcw as u32;
    r.core.fpu.fstat = cpu.x87.fsw as u32;
    r.core.fpu.ftag = cpu.x87.ftw as u32;
    r.core.fpu.fop = cpu.x87.fop as u32;
    r.core.fpu.fioff = cpu.x87.fip as u32;
    r.core.fpu.fooff = cpu.x87.fdp as u32;
    r.core.xmm = cpu.xmm;
    r.core.mxcsr = cpu.mxcsr;
    r.extra = [
        cpu.seg(Seg::Fs).base,
        cpu.seg(Seg::Gs).base,
        cpu.msr.kernel_gs_base,
        cpu.cr0,
        cpu.cr2,
        cpu.cr3,
        cpu.cr4,
        cpu.cr8,
        cpu.efer,
    ];
    r
}

/// Write back what gdb may change: the general registers, RIP, RFLAGS,
/// the FS/GS bases, XMM and MXCSR. Selectors and control registers are
/// left alone (loading them needs the guest's descriptor tables and mode
/// checks; a change is logged and ignored).
fn apply_regs(cpu: &mut CpuState, r: &Regs) {
    let now = regs_of(cpu);
    for (i, g) in GDB_GPRS.iter().enumerate() {
        cpu.set_reg(*g, r.core.regs[i]);
    }
    cpu.rip = r.core.rip;
    if r.core.eflags != now.core.eflags {
        cpu.set_rflags(r.core.eflags as u64);
    }
    cpu.seg[Seg::Fs as usize].base = r.extra[0];
    cpu.seg[Seg::Gs as usize].base = r.extra[1];
    cpu.msr.kernel_gs_base = r.extra[2];
    cpu.xmm = r.core.xmm;
    cpu.mxcsr = r.core.mxcsr;
    if r.core.segments != now.core.segments || r.extra[3..] != now.extra[3..] {
        log::warn!("gdb: writes to segment selectors and control registers are ignored");
    }
}

/// Read one page-table entry (RAM only; anything else is not present).
fn pte(mem: &GuestMemory, addr: u64, wide: bool) -> Option<u64> {
    let mut b = [0u8; 8];
    let n = if wide { 8 } else { 4 };
    mem.read_phys(GuestPhysAddr(addr), &mut b[..n]).ok()?;
    Some(u64::from_le_bytes(b))
}

/// The physical address of linear `lin`, walking the guest's page tables
/// without touching them (no A/D bits, no fault). `None`: not mapped.
pub fn linear_to_phys(cpu: &CpuState, mem: &GuestMemory, lin: u64) -> Option<u64> {
    if cpu.cr0 & cr0::PG == 0 {
        return Some(lin & 0xffff_ffff);
    }
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    let (mut table, levels, wide): (u64, &[u32], bool) = if cpu.efer & efer::LMA != 0 {
        (cpu.cr3 & ADDR, &[39, 30, 21, 12], true)
    } else if cpu.cr4 & cr4::PAE != 0 {
        (cpu.cr3 & 0xffff_ffe0, &[30, 21, 12], true)
    } else {
        (cpu.cr3 & 0xffff_f000, &[22, 12], false)
    };
    let pse = wide || cpu.cr4 & cr4::PSE != 0;
    for (i, &shift) in levels.iter().enumerate() {
        let bits = if wide { 9 } else { 10 };
        // PAE's top level has 4 entries, indexed by bits 30-31.
        let index = (lin >> shift) & ((1 << bits) - 1);
        let e = pte(mem, table + index * if wide { 8 } else { 4 }, wide)?;
        if e & 1 == 0 {
            return None;
        }
        let pae_top = levels.len() == 3 && i == 0;
        let last = i + 1 == levels.len();
        let big = !last && !pae_top && shift <= 30 && pse && e & (1 << 7) != 0;
        if last || big {
            let page = if wide { e & ADDR } else { e & 0xffff_f000 };
            let mask = (1u64 << shift) - 1;
            return Some((page & !mask) | (lin & mask));
        }
        table = if wide { e & ADDR } else { e & 0xffff_f000 };
    }
    None
}

/// Copy guest memory at linear `addr` into `buf`, stopping at the first
/// unmapped or non-RAM byte. Returns the bytes copied.
pub fn read_linear(cpu: &CpuState, mem: &GuestMemory, addr: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let lin = addr.wrapping_add(done as u64);
        let n = (0x1000 - (lin & 0xfff) as usize).min(buf.len() - done);
        let Some(p) = linear_to_phys(cpu, mem, lin) else {
            break;
        };
        if mem
            .read_phys(GuestPhysAddr(p), &mut buf[done..done + n])
            .is_err()
        {
            break;
        }
        done += n;
    }
    done
}

impl Target for Machine {
    type Arch = CjemuX86_64;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, CjemuX86_64, String> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

/// gdb's `monitor CMD`: the monitor's commands (`monitor info registers`).
impl MonitorCmd for Machine {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), String> {
        let cmd = String::from_utf8_lossy(cmd).into_owned();
        // Resuming behind gdb's back would leave it waiting on a machine
        // it believes stopped.
        let answer = match cmd.trim() {
            "cont" | "c" | "stop" => "use gdb's continue / Ctrl-C\n".to_string(),
            _ => crate::monitor::command(self, &cmd),
        };
        out.write_raw(answer.as_bytes());
        Ok(())
    }
}

impl SingleThreadBase for Machine {
    fn read_registers(&mut self, regs: &mut Regs) -> TargetResult<(), Self> {
        *regs = regs_of(self.engine.cpu());
        Ok(())
    }

    fn write_registers(&mut self, regs: &Regs) -> TargetResult<(), Self> {
        apply_regs(self.engine.cpu_mut(), regs);
        Ok(())
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let n = read_linear(self.engine.cpu(), self.engine.mem(), start, data);
        if n == 0 && !data.is_empty() {
            return Err(TargetError::NonFatal);
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        // Translate every page first: all bytes are written or none.
        let mut pieces = Vec::new();
        let mut done = 0;
        while done < data.len() {
            let lin = start.wrapping_add(done as u64);
            let n = (0x1000 - (lin & 0xfff) as usize).min(data.len() - done);
            let p = linear_to_phys(self.engine.cpu(), self.engine.mem(), lin)
                .ok_or(TargetError::NonFatal)?;
            pieces.push((p, done, n));
            done += n;
        }
        for (p, off, n) in pieces {
            // write_phys invalidates translated code on the pages written.
            self.engine
                .mem_mut()
                .write_phys(GuestPhysAddr(p), &data[off..off + n])
                .map_err(|_| TargetError::NonFatal)?;
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for Machine {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), String> {
        self.control.exec = Exec::Run;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    // Reverse execution is offered only while replaying with a history
    // (gdb asks in qSupported and before each resume).
    fn support_reverse_step(&mut self) -> Option<ReverseStepOps<'_, (), Self>> {
        self.history.is_some().then_some(self as _)
    }

    fn support_reverse_cont(&mut self) -> Option<ReverseContOps<'_, (), Self>> {
        self.history.is_some().then_some(self as _)
    }
}

impl ReverseStep<()> for Machine {
    fn reverse_step(&mut self, _tid: ()) -> Result<(), String> {
        self.control.exec = Exec::ReverseStep;
        Ok(())
    }
}

impl ReverseCont<()> for Machine {
    fn reverse_cont(&mut self) -> Result<(), String> {
        self.control.exec = Exec::ReverseCont;
        Ok(())
    }
}

impl SingleThreadSingleStep for Machine {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), String> {
        self.control.exec = Exec::Step {
            from: self.engine.cpu().icount,
        };
        Ok(())
    }
}

impl Breakpoints for Machine {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

/// gdb's watchpoint kinds in the engine's terms.
fn watch_of(addr: u64, len: u64, kind: GdbWatchKind) -> Watch {
    let kind = match kind {
        GdbWatchKind::Write => WatchKind::Write,
        GdbWatchKind::Read => WatchKind::Read,
        GdbWatchKind::ReadWrite => WatchKind::Access,
    };
    Watch {
        addr,
        len: len.max(1),
        kind,
    }
}

/// `watch`, `rwatch`, `awatch`: any length and number (the engine checks
/// ranges, not the four debug registers).
impl HwWatchpoint for Machine {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        let w = watch_of(addr, len, kind);
        if !self.control.watches.contains(&w) {
            self.control.watches.push(w);
            self.apply_watchpoints();
        }
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        let w = watch_of(addr, len, kind);
        let before = self.control.watches.len();
        self.control.watches.retain(|x| *x != w);
        self.apply_watchpoints();
        Ok(self.control.watches.len() != before)
    }
}

/// Set (`on`) or clear a breakpoint among gdb's software or (`hw`) hardware
/// ones (the engine treats both alike). Returns what gdb is told: always
/// success for an addition (a second breakpoint at one address is the same
/// one), whether it existed for a removal.
fn set_breakpoint(m: &mut Machine, hw: bool, addr: u64, on: bool) -> bool {
    let set = if hw {
        &mut m.control.hw_breaks
    } else {
        &mut m.control.sw_breaks
    };
    let changed = if on {
        // Adding one that exists is still a success for gdb.
        set.insert(addr);
        true
    } else {
        set.remove(&addr)
    };
    m.apply_breakpoints();
    changed
}

impl SwBreakpoint for Machine {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(set_breakpoint(self, false, addr, true))
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(set_breakpoint(self, false, addr, false))
    }
}

impl HwBreakpoint for Machine {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(set_breakpoint(self, true, addr, true))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(set_breakpoint(self, true, addr, false))
    }
}

type Sm = GdbStubStateMachine<'static, Machine, TcpStream>;

/// The listening socket and the session with the gdb connected, if any.
pub struct GdbServer {
    listener: TcpListener,
    sm: Option<Sm>,
}

impl GdbServer {
    /// Listen on `-gdb DEV`.
    pub fn bind(dev: &str) -> Result<GdbServer, crate::status::Error> {
        let (host, port) = parse_device(dev).map_err(crate::status::Error::Usage)?;
        let listener = TcpListener::bind((host.as_str(), port))
            .map_err(|e| crate::status::Error::Input(format!("-gdb {dev}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| crate::status::Error::Input(format!("-gdb {dev}: {e}")))?;
        log::info!("gdb stub listening on {host}:{port}");
        Ok(GdbServer { listener, sm: None })
    }
}

/// Is `fd` readable now (data or EOF)? Never waits.
fn readable(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, timeout 0.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents != 0
}

fn conn(sm: &mut Sm) -> &mut TcpStream {
    match sm {
        GdbStubStateMachine::Idle(s) => s.borrow_conn(),
        GdbStubStateMachine::Running(s) => s.borrow_conn(),
        GdbStubStateMachine::CtrlCInterrupt(s) => s.borrow_conn(),
        GdbStubStateMachine::Disconnected(s) => s.borrow_conn(),
    }
}

/// Serve gdb once, without waiting: accept a connection (which pauses the
/// machine, as QEMU's stub does), pass on whatever gdb sent.
pub fn poll(m: &mut Machine) {
    let Some(mut g) = m.control.gdb.take() else {
        return;
    };
    if g.sm.is_none() {
        if let Ok((stream, peer)) = g.listener.accept() {
            log::info!("gdb connected from {peer}");
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_nodelay(true);
            match GdbStub::new(stream).run_state_machine(m) {
                Ok(sm) => {
                    g.sm = Some(sm);
                    m.control.request_pause(PauseCause::GdbAttach);
                }
                Err(e) => log::warn!("gdb: {e}"),
            }
        }
    }
    if let Some(sm) = g.sm.take() {
        g.sm = serve(m, sm);
    }
    m.control.gdb = Some(g);
}

/// Feed what gdb sent; `None` when the session ended.
fn serve(m: &mut Machine, mut sm: Sm) -> Option<Sm> {
    let mut buf = [0u8; 4096];
    while readable(conn(&mut sm).as_raw_fd()) {
        let n = match conn(&mut sm).read(&mut buf) {
            Ok(0) | Err(_) => return detach(m, DisconnectReason::Disconnect),
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            let next = match sm {
                GdbStubStateMachine::Idle(s) => s.incoming_data(m, b),
                GdbStubStateMachine::Running(s) => s.incoming_data(m, b),
                other => Ok(other),
            };
            sm = match next {
                Ok(s) => settle(m, s)?,
                Err(e) => {
                    log::warn!("gdb: {e}");
                    return detach(m, DisconnectReason::Disconnect);
                }
            };
        }
    }
    Some(sm)
}

/// Resolve the states that need the machine: Ctrl-C (pause at this loop
/// top) and the end of the session.
fn settle(m: &mut Machine, sm: Sm) -> Option<Sm> {
    match sm {
        GdbStubStateMachine::CtrlCInterrupt(s) => {
            m.control.request_pause(PauseCause::GdbInterrupt);
            let none: Option<SingleThreadStopReason<u64>> = None;
            match s.interrupt_handled(m, none) {
                Ok(s) => Some(s),
                Err(e) => {
                    log::warn!("gdb: {e}");
                    detach(m, DisconnectReason::Disconnect)
                }
            }
        }
        GdbStubStateMachine::Disconnected(s) => detach(m, s.get_reason()),
        s => Some(s),
    }
}

/// gdb went away: forget its breakpoints and let the guest run on (as QEMU
/// does), or end the run on `kill`.
fn detach(m: &mut Machine, why: DisconnectReason) -> Option<Sm> {
    log::info!("gdb disconnected ({why:?})");
    let c = &mut m.control;
    c.sw_breaks.clear();
    c.hw_breaks.clear();
    c.watches.clear();
    m.apply_watchpoints();
    m.apply_breakpoints();
    let c = &mut m.control;
    c.exec = Exec::Run;
    if why == DisconnectReason::Kill {
        c.quit = true;
    }
    None
}

/// Tell a gdb waiting for the machine why it paused.
pub fn report_stop(m: &mut Machine, cause: PauseCause) {
    let reason = match cause {
        PauseCause::Step | PauseCause::ReverseStep => SingleThreadStopReason::DoneStep,
        PauseCause::Watch(hit) => SingleThreadStopReason::Watch {
            tid: (),
            kind: match (hit.watch.kind, hit.write) {
                (WatchKind::Write, _) => GdbWatchKind::Write,
                (WatchKind::Read, _) => GdbWatchKind::Read,
                (WatchKind::Access, _) => GdbWatchKind::ReadWrite,
            },
            addr: hit.watch.addr,
        },
        PauseCause::HistoryStart => SingleThreadStopReason::ReplayLog {
            tid: None,
            pos: ReplayLogPosition::Begin,
        },
        PauseCause::HistoryEnd => SingleThreadStopReason::ReplayLog {
            tid: None,
            pos: ReplayLogPosition::End,
        },
        PauseCause::SwBreak => SingleThreadStopReason::SwBreak(()),
        PauseCause::HwBreak => SingleThreadStopReason::HwBreak(()),
        PauseCause::GdbInterrupt
        | PauseCause::Requested
        | PauseCause::StopAt
        | PauseCause::GdbAttach
        | PauseCause::Seek => SingleThreadStopReason::Signal(Signal::SIGINT),
    };
    report(m, reason);
}

/// The guest's run ended with exit status `status`.
pub fn report_exit(m: &mut Machine, status: u8) {
    report(m, SingleThreadStopReason::Exited(status));
}

fn report(m: &mut Machine, reason: SingleThreadStopReason<u64>) {
    let Some(mut g) = m.control.gdb.take() else {
        return;
    };
    g.sm = match g.sm.take() {
        Some(GdbStubStateMachine::Running(s)) => match s.report_stop(m, reason) {
            Ok(s) => settle(m, s),
            Err(e) => {
                log::warn!("gdb: {e}");
                detach(m, DisconnectReason::Disconnect)
            }
        },
        other => other,
    };
    if let (Some(sm), SingleThreadStopReason::Exited(_)) = (&mut g.sm, reason) {
        let _ = conn(sm).flush();
    }
    m.control.gdb = Some(g);
}

/// Is a gdb connected now?
pub fn attached(m: &Machine) -> bool {
    m.control.gdb.as_ref().is_some_and(|g| g.sm.is_some())
}

/// Does a gdb session or listener exist (someone may resume a pause)?
pub fn listening(m: &Machine) -> bool {
    m.control.gdb.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdb_devices_parse() {
        assert_eq!(parse_device("tcp::1234"), Ok(("127.0.0.1".into(), 1234)));
        assert_eq!(parse_device("tcp:0.0.0.0:9"), Ok(("0.0.0.0".into(), 9)));
        assert!(parse_device("unix:/x").is_err());
        assert!(parse_device("tcp::99999").is_err());
    }

    #[test]
    fn registers_round_trip_through_the_g_packet() {
        let mut r = Regs::default();
        r.core.rip = 0x1234;
        r.core.regs[7] = 0x7000;
        r.extra = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut bytes = Vec::new();
        r.gdb_serialize(|b| bytes.push(b.unwrap()));
        // 536 bytes of amd64 core + SSE (gdb's layout), then 9 × 8.
        assert_eq!(bytes.len(), 536 + 72);
        assert_eq!(&bytes[16 * 8..16 * 8 + 8], &0x1234u64.to_le_bytes());
        let mut back = Regs::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn the_target_description_names_every_register_once() {
        let x = target_xml();
        for name in ["rax", "rip", "eflags", "st7", "fop", "xmm15", "mxcsr"] {
            assert_eq!(x.matches(&format!("name=\"{name}\"")).count(), 1, "{name}");
        }
        for name in EXTRA_NAMES {
            assert_eq!(x.matches(&format!("name=\"{name}\"")).count(), 1, "{name}");
        }
        // 16 + rip + eflags + 6 + 8 + 8 + 16 + mxcsr + 9 extra.
        assert_eq!(x.matches("<reg ").count(), 16 + 2 + 6 + 8 + 8 + 16 + 1 + 9);
    }

    #[test]
    fn the_page_walk_reads_4k_and_2m_pages_without_setting_accessed_bits() {
        let mut mem = GuestMemory::new(4 << 20).unwrap();
        // PML4 at 0x1000 -> PDPT at 0x2000 -> PD at 0x3000; PD[0] -> PT at
        // 0x4000, PT[5] -> 0x9000; PD[1] is a 2 MiB page at 0x200000.
        let w = |mem: &mut GuestMemory, a: u64, v: u64| {
            mem.write_phys(GuestPhysAddr(a), &v.to_le_bytes()).unwrap()
        };
        w(&mut mem, 0x1000, 0x2003);
        w(&mut mem, 0x2000, 0x3003);
        w(&mut mem, 0x3000, 0x4003);
        w(&mut mem, 0x3008, 0x20_0083);
        w(&mut mem, 0x4000 + 5 * 8, 0x9003);
        let mut cpu = CpuState::power_on();
        cpu.enter_long_mode_flat(0x1000);
        cpu.cr3 = 0x1000;
        assert_eq!(linear_to_phys(&cpu, &mem, 0x5123), Some(0x9123));
        assert_eq!(linear_to_phys(&cpu, &mem, 0x20_1234), Some(0x20_1234));
        assert_eq!(
            linear_to_phys(&cpu, &mem, 0x6000),
            None,
            "PT[6] not present"
        );
        assert_eq!(
            linear_to_phys(&cpu, &mem, 1 << 39),
            None,
            "PML4[1] not present"
        );
        let mut b = [0u8; 8];
        mem.read_phys(GuestPhysAddr(0x1000), &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), 0x2003, "no accessed bit set");
    }
}
