//! Running code natively in a forked child process.
//!
//! Everything is prepared before `fork` (the child must not allocate: the
//! parent may be multi-threaded and another thread could hold the allocator
//! lock). The child maps the code page and the data region at their fixed
//! addresses, then for each case copies code and memory and sends itself SIGUSR1.
//! The SIGUSR1 handler saves its own interrupted context and rewrites the
//! context with the case's registers, so the signal return "enters" the
//! code. The code ends with UD2; the SIGILL (or another fault's) handler
//! records the registers and puts the saved harness context back, so the
//! signal return resumes the child's loop after `raise`. Handlers run on an
//! alternate stack: the case's RSP points into the data region, and a
//! signal frame there would clobber the bytes being compared.
//!
//! 32-bit cases (`InitState::bits == 32`) run in compatibility mode: the
//! SIGUSR1 handler also puts the user 32-bit code selector (0x23) in the
//! context's CS, so the signal return enters a 32-bit code segment, and
//! loads DS with the flat user data selector and ES and GS with an LDT
//! data segment based at [`DATA`] (64-bit processes run with null DS/ES,
//! which 32-bit code cannot use). The fault that ends the case arrives in
//! the (64-bit) handler like any other; restoring the saved context
//! restores CS = 0x33.
//!
//! Results go to a MAP_SHARED region the parent reads after `waitpid`. An
//! endless loop is cut by an ITIMER_VIRTUAL tick counter; a child that
//! dies or hangs is reported, never waited for forever.

use super::{End, Final, InitState, CODE, CODE_SIZE, DATA, DATA_SIZE, UD2};
use libc::{c_int, c_void, siginfo_t, ucontext_t};
use std::cell::UnsafeCell;
use std::time::{Duration, Instant};

/// One case to run natively.
pub struct NativeCase<'a> {
    /// Machine code (without padding; at most [`CODE_SIZE`] bytes).
    pub code: &'a [u8],
    pub init: &'a InitState,
}

/// Result of a batch.
pub struct Batch {
    /// One entry per case (`End::NotRun` for those the child never ran).
    pub results: Vec<Final>,
    /// Why the child failed, with the index of the case it was running.
    pub failure: Option<(usize, String)>,
}

/// Per-case record in shared memory.
#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    /// 0 not run, 1 ended by a signal, 2 timed out.
    status: u64,
    signo: u64,
    trapno: u64,
    err: u64,
    cr2: u64,
    gpr: [u64; 16],
    rip: u64,
    rflags: u64,
}

/// Header of the shared region.
#[repr(C)]
struct Header {
    /// Index of the case being run + 1.
    started: u64,
    /// Number of cases finished.
    done: u64,
    /// errno of a failed set-up step, and which step (1 mmap code, 2 mmap
    /// data, 3 sigaltstack, 4 sigaction, 5 setitimer, 6 modify_ldt).
    setup_errno: u64,
    setup_step: u64,
    /// RIP of a fault in the harness itself (not in a case).
    harness_fault_rip: u64,
    harness_fault_sig: u64,
}

/// Linux's 64- and 32-bit user code selectors and user data selector.
const USER32_CS: u16 = 0x23;
const USER_DS: u16 = 0x2b;
/// LDT entry 0, RPL 3: the data segment based at [`DATA`].
const LDT_DATA_SEL: u16 = 0x7;

/// `struct user_desc` of modify_ldt(2).
#[repr(C)]
struct UserDesc {
    entry_number: u32,
    base_addr: u32,
    limit: u32,
    /// seg_32bit:1 contents:2 read_exec_only:1 limit_in_pages:1
    /// seg_not_present:1 useable:1 lm:1.
    flags: u32,
}

/// Install LDT entry 0: a writable 32-bit data segment at [`DATA`], 4 GiB
/// limit.
unsafe fn install_ldt() -> bool {
    let d = UserDesc {
        entry_number: 0,
        base_addr: DATA as u32,
        limit: 0xfffff,
        // seg_32bit | limit_in_pages | useable
        flags: 1 | (1 << 4) | (1 << 6),
    };
    libc::syscall(
        libc::SYS_modify_ldt,
        1,
        &d as *const UserDesc,
        std::mem::size_of::<UserDesc>(),
    ) == 0
}

/// Load DS, ES and GS (the handler runs in 64-bit mode, where DS and ES
/// are ignored and GS's base comes from the descriptor).
unsafe fn load_data_segs(ds: u16, es: u16, gs: u16) {
    std::arch::asm!(
        "mov ds, {0:x}",
        "mov es, {1:x}",
        "mov gs, {2:x}",
        in(reg) ds,
        in(reg) es,
        in(reg) gs,
        options(nostack, preserves_flags)
    );
}

/// `gregs` index of each GPR in encoding order (RAX, RCX, …, R15).
const GREG: [usize; 16] = [
    libc::REG_RAX as usize,
    libc::REG_RCX as usize,
    libc::REG_RDX as usize,
    libc::REG_RBX as usize,
    libc::REG_RSP as usize,
    libc::REG_RBP as usize,
    libc::REG_RSI as usize,
    libc::REG_RDI as usize,
    libc::REG_R8 as usize,
    libc::REG_R9 as usize,
    libc::REG_R10 as usize,
    libc::REG_R11 as usize,
    libc::REG_R12 as usize,
    libc::REG_R13 as usize,
    libc::REG_R14 as usize,
    libc::REG_R15 as usize,
];

/// Virtual-timer ticks (10 ms of CPU time each) a case may run.
const TICK_LIMIT: u32 = 30;
/// Signals that end a case.
const END_SIGNALS: [c_int; 6] = [
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGTRAP,
    libc::SIGVTALRM,
];

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

/// What the signal handlers share with the child's loop. Only ever
/// touched in the (single-threaded) child.
struct HandlerState {
    in_case: bool,
    ticks: u32,
    saved: [i64; 23],
    saved_mask: libc::sigset_t,
    gpr: [u64; 16],
    rflags: u64,
    set_segs: bool,
    /// The case is 32-bit code.
    compat: bool,
    fs_base: u64,
    gs_base: u64,
    host_fs: u64,
    host_gs: u64,
    slot: *mut Slot,
    header: *mut Header,
}

struct Global(UnsafeCell<HandlerState>);
// SAFETY: used only in the forked child, which has a single thread.
unsafe impl Sync for Global {}

static G: Global = Global(UnsafeCell::new(HandlerState {
    in_case: false,
    ticks: 0,
    saved: [0; 23],
    // SAFETY: sigset_t is plain data; all-zero is the empty set.
    saved_mask: unsafe { std::mem::zeroed() },
    gpr: [0; 16],
    rflags: 0,
    set_segs: false,
    compat: false,
    fs_base: 0,
    gs_base: 0,
    host_fs: 0,
    host_gs: 0,
    slot: std::ptr::null_mut(),
    header: std::ptr::null_mut(),
}));

/// `arch_prctl` as a raw system call: it must work while FS holds a test
/// value (libc's wrapper would touch errno through FS-based TLS).
unsafe fn arch_prctl(code: u64, addr: u64) -> i64 {
    let ret: i64;
    std::arch::asm!(
        "syscall",
        inlateout("rax") libc::SYS_arch_prctl => ret,
        in("rdi") code,
        in("rsi") addr,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack)
    );
    ret
}

/// SIGUSR1: enter the case.
extern "C" fn on_enter(_sig: c_int, _info: *mut siginfo_t, ctx: *mut c_void) {
    // SAFETY: single-threaded child; ctx is the kernel's ucontext.
    unsafe {
        let st = &mut *G.0.get();
        let uc = &mut *(ctx as *mut ucontext_t);
        let g = &mut uc.uc_mcontext.gregs;
        st.saved = *g;
        st.saved_mask = uc.uc_sigmask;
        for (i, &gi) in GREG.iter().enumerate() {
            g[gi] = st.gpr[i] as i64;
        }
        g[libc::REG_RIP as usize] = CODE as i64;
        g[libc::REG_EFL as usize] = st.rflags as i64;
        // The code runs with every signal deliverable: a blocked SIGILL
        // would kill the child instead of ending the case.
        libc::sigemptyset(&mut uc.uc_sigmask);
        st.ticks = 0;
        st.in_case = true;
        if st.compat {
            let csgsfs = &mut g[libc::REG_CSGSFS as usize];
            *csgsfs = (*csgsfs & !0xffff) | i64::from(USER32_CS);
            load_data_segs(USER_DS, LDT_DATA_SEL, LDT_DATA_SEL);
        }
        if st.set_segs {
            // No TLS access may happen from here until the return.
            arch_prctl(ARCH_SET_GS, st.gs_base);
            arch_prctl(ARCH_SET_FS, st.fs_base);
        }
    }
}

/// A fault, UD2 or the virtual timer: end the case.
extern "C" fn on_end(sig: c_int, _info: *mut siginfo_t, ctx: *mut c_void) {
    // SAFETY: as in `on_enter`.
    unsafe {
        let st = &mut *G.0.get();
        let uc = &mut *(ctx as *mut ucontext_t);
        if !st.in_case {
            if sig == libc::SIGVTALRM {
                return;
            }
            // The harness itself faulted: note where, then let the fault
            // repeat with the default action so the parent sees the signal.
            let h = &mut *st.header;
            h.harness_fault_rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64;
            h.harness_fault_sig = sig as u64;
            libc::signal(sig, libc::SIG_DFL);
            return;
        }
        if sig == libc::SIGVTALRM {
            st.ticks += 1;
            if st.ticks < TICK_LIMIT {
                return;
            }
        }
        if st.set_segs {
            arch_prctl(ARCH_SET_FS, st.host_fs);
            arch_prctl(ARCH_SET_GS, st.host_gs);
        }
        if st.compat {
            load_data_segs(0, 0, 0);
            arch_prctl(ARCH_SET_GS, st.host_gs);
        }
        let g = &mut uc.uc_mcontext.gregs;
        let s = &mut *st.slot;
        s.status = if sig == libc::SIGVTALRM { 2 } else { 1 };
        s.signo = sig as u64;
        s.trapno = g[libc::REG_TRAPNO as usize] as u64;
        s.err = g[libc::REG_ERR as usize] as u64;
        s.cr2 = g[libc::REG_CR2 as usize] as u64;
        for (i, &gi) in GREG.iter().enumerate() {
            s.gpr[i] = g[gi] as u64;
        }
        s.rip = g[libc::REG_RIP as usize] as u64;
        s.rflags = g[libc::REG_EFL as usize] as u64;
        *g = st.saved;
        uc.uc_sigmask = st.saved_mask;
        st.in_case = false;
    }
}

/// Layout of the shared region for `n` cases.
struct SharedLayout {
    slots: usize,
    data: usize,
    size: usize,
}

impl SharedLayout {
    fn new(n: usize) -> SharedLayout {
        let slots = std::mem::size_of::<Header>().next_multiple_of(64);
        let data = (slots + n * std::mem::size_of::<Slot>()).next_multiple_of(4096);
        let size = (data + n * DATA_SIZE).next_multiple_of(4096);
        SharedLayout { slots, data, size }
    }
}

/// Fail a set-up step in the child: record errno and exit.
unsafe fn setup_fail(h: *mut Header, step: u64) -> ! {
    (*h).setup_errno = *libc::__errno_location() as u64;
    (*h).setup_step = step;
    libc::_exit(3)
}

/// The child's body. Must not allocate, print or return.
unsafe fn child(cases: &[NativeCase], base: *mut u8, lay: &SharedLayout, alt: &mut [u8]) -> ! {
    let h = base as *mut Header;
    let st = &mut *G.0.get();
    st.header = h;

    let mut all: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut all);
    libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());

    let ss = libc::stack_t {
        ss_sp: alt.as_mut_ptr() as *mut c_void,
        ss_flags: 0,
        ss_size: alt.len(),
    };
    if libc::sigaltstack(&ss, std::ptr::null_mut()) != 0 {
        setup_fail(h, 3);
    }
    let handlers: [(c_int, usize); 7] = [
        (libc::SIGUSR1, on_enter as *const () as usize),
        (END_SIGNALS[0], on_end as *const () as usize),
        (END_SIGNALS[1], on_end as *const () as usize),
        (END_SIGNALS[2], on_end as *const () as usize),
        (END_SIGNALS[3], on_end as *const () as usize),
        (END_SIGNALS[4], on_end as *const () as usize),
        (END_SIGNALS[5], on_end as *const () as usize),
    ];
    for (sig, f) in handlers {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = f;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // Handlers never nest: the state they share is not re-entrant.
        libc::sigfillset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
            setup_fail(h, 4);
        }
    }

    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
    let code = libc::mmap(
        CODE as *mut c_void,
        CODE_SIZE,
        prot | libc::PROT_EXEC,
        flags,
        -1,
        0,
    );
    if code as u64 != CODE {
        setup_fail(h, 1);
    }
    let data = libc::mmap(DATA as *mut c_void, DATA_SIZE, prot, flags, -1, 0);
    if data as u64 != DATA {
        setup_fail(h, 2);
    }
    let code = std::slice::from_raw_parts_mut(code as *mut u8, CODE_SIZE);
    let data = std::slice::from_raw_parts_mut(data as *mut u8, DATA_SIZE);

    arch_prctl(ARCH_GET_FS, &mut st.host_fs as *mut u64 as u64);
    arch_prctl(ARCH_GET_GS, &mut st.host_gs as *mut u64 as u64);

    let tick = libc::timeval {
        tv_sec: 0,
        tv_usec: 10_000,
    };
    let it = libc::itimerval {
        it_interval: tick,
        it_value: tick,
    };
    if libc::setitimer(libc::ITIMER_VIRTUAL, &it, std::ptr::null_mut()) != 0 {
        setup_fail(h, 5);
    }
    if cases.iter().any(|c| c.init.bits == 32) && !install_ldt() {
        setup_fail(h, 6);
    }

    let pid = libc::syscall(libc::SYS_getpid);
    let tid = libc::syscall(libc::SYS_gettid);
    let slots = base.add(lay.slots) as *mut Slot;
    for (k, c) in cases.iter().enumerate() {
        std::ptr::write_volatile(&mut (*h).started, k as u64 + 1);
        for pair in code.chunks_mut(2) {
            pair.copy_from_slice(&UD2);
        }
        code[..c.code.len()].copy_from_slice(c.code);
        data.copy_from_slice(&c.init.data);
        st.gpr = c.init.gpr;
        st.rflags = c.init.rflags;
        st.fs_base = c.init.fs_base;
        st.gs_base = c.init.gs_base;
        st.set_segs = c.init.fs_base != 0 || c.init.gs_base != 0;
        st.compat = c.init.bits == 32;
        st.slot = slots.add(k);
        // A raw tgkill, not raise(): glibc's raise may take locks that
        // another thread of the parent held at fork time.
        libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1);
        let out = base.add(lay.data + k * DATA_SIZE);
        std::ptr::copy_nonoverlapping(data.as_ptr(), out, DATA_SIZE);
        std::ptr::write_volatile(&mut (*h).done, k as u64 + 1);
    }
    libc::_exit(0)
}

/// Wait for `pid` for at most `limit`; kill it after that. Returns the
/// wait status, or None on timeout.
fn wait_child(pid: libc::pid_t, limit: Duration) -> Option<c_int> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(20);
    loop {
        let mut status = 0;
        // SAFETY: plain system call on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        if start.elapsed() > limit {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

fn describe_status(status: c_int) -> String {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: strsignal returns a static string.
        let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(sig)) };
        format!("killed by signal {sig} ({})", name.to_string_lossy())
    } else if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else {
        format!("wait status {status:#x}")
    }
}

/// Run `cases` natively in one child process.
pub fn run_batch(cases: &[NativeCase]) -> Batch {
    assert!(cases.iter().all(|c| c.code.len() <= CODE_SIZE));
    assert!(cases.iter().all(|c| c.init.data.len() == DATA_SIZE));
    let lay = SharedLayout::new(cases.len());
    // SAFETY: anonymous shared mapping, unmapped below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            lay.size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(
        base != libc::MAP_FAILED,
        "mmap of the shared result region failed"
    );
    let base = base as *mut u8;
    let mut alt = vec![0u8; 256 * 1024];
    let limit = Duration::from_secs(30) + Duration::from_millis(20) * cases.len() as u32;

    // SAFETY: the child only runs `child`, which neither allocates nor
    // returns.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe { child(cases, base, &lay, &mut alt) }
    }
    let status = wait_child(pid, limit);

    // SAFETY: the child has exited; the region holds its results.
    let (header, slots) = unsafe {
        (
            &*(base as *const Header),
            std::slice::from_raw_parts(base.add(lay.slots) as *const Slot, cases.len()),
        )
    };
    let mut results = Vec::with_capacity(cases.len());
    for (k, s) in slots.iter().enumerate() {
        let end = match s.status {
            1 => End::Exception {
                vector: s.trapno as u8,
                err: s.err,
                cr2: s.cr2,
            },
            2 => End::Timeout,
            _ => End::NotRun,
        };
        let data = if (k as u64) < header.done {
            // SAFETY: inside the region, written by the child.
            unsafe { std::slice::from_raw_parts(base.add(lay.data + k * DATA_SIZE), DATA_SIZE) }
                .to_vec()
        } else {
            Vec::new()
        };
        results.push(Final {
            end,
            gpr: s.gpr,
            rip: s.rip,
            rflags: s.rflags,
            data,
        });
    }
    let failure = match status {
        Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => None,
        other => {
            let what = match other {
                None => format!("did not finish within {limit:?} and was killed"),
                Some(st) => describe_status(st),
            };
            let mut msg = format!("native child {what}");
            if header.setup_step != 0 {
                let steps = [
                    "?",
                    "mmap code page",
                    "mmap data region",
                    "sigaltstack",
                    "sigaction",
                    "setitimer",
                    "modify_ldt",
                ];
                let step = steps.get(header.setup_step as usize).unwrap_or(&"?");
                let err = std::io::Error::from_raw_os_error(header.setup_errno as i32);
                msg += &format!(" (set-up step `{step}` failed: {err})");
            }
            if header.harness_fault_sig != 0 {
                msg += &format!(
                    " (the harness itself got signal {} at rip {:#x})",
                    header.harness_fault_sig, header.harness_fault_rip
                );
            }
            let k = header.started.saturating_sub(1) as usize;
            Some((k, msg))
        }
    };
    // SAFETY: mapped above; nothing refers to it any more.
    unsafe { libc::munmap(base as *mut c_void, lay.size) };
    Batch { results, failure }
}
