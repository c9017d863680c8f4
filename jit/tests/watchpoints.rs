//! Data watchpoints in the engine: an access to a watched range ends the
//! engine's run right after the accessing instruction, with the exact
//! count, under every tier (the interpreter, and compiled code, whose
//! inlined TLB lookups miss on watched pages); accesses elsewhere on the
//! same page and a read of a write watch do not stop it.

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::watchpoint::{Watch, WatchKind};
use cjemu_jit::{setup, Accel, Engine, Exit, Gpr};

const TIERS: [Accel; 3] = [
    Accel::Interp,
    Accel::Jit { threshold: 0 },
    Accel::Jit { threshold: 2 },
];

/// A loop of 100 iterations over the data page at 0x8000:
/// `l: mov [rdi+8], ecx; mov eax, [rdi]; mov [rdi+16], ecx; dec ecx; jnz l; hlt`,
/// with rdi = 0x8000, ecx = 100 (2 setup instructions, 5 per iteration).
fn engine(accel: Accel, watches: Vec<Watch>) -> Engine {
    let code = [
        0xbf, 0x00, 0x80, 0x00, 0x00, // mov edi, 0x8000
        0xb9, 0x64, 0x00, 0x00, 0x00, // mov ecx, 100
        0x89, 0x4f, 0x08, // l: mov [rdi+8], ecx
        0x8b, 0x07, // mov eax, [rdi]
        0x89, 0x4f, 0x10, // mov [rdi+16], ecx
        0xff, 0xc9, // dec ecx
        0x75, 0xf4, // jnz l
        0xf4, // hlt
    ];
    let mut e = Engine::new(4 << 20).unwrap();
    e.config.accel = accel;
    e.mem_mut()
        .write_phys(GuestPhysAddr(0x1000), &code)
        .unwrap();
    setup::flat_long_mode(&mut e, GuestPhysAddr(0x3000), 0x1000, 0x10_0000).unwrap();
    e.set_watchpoints(watches);
    e
}

/// Run to the end, collecting (icount, ecx) at each watch stop.
fn stops(mut e: Engine) -> (Vec<(u64, u64)>, u64) {
    let mut got = Vec::new();
    loop {
        match e.run(1_000_000) {
            Exit::Halted => return (got, e.cpu().icount),
            Exit::Device => {
                if e.take_watch_hit().is_some() {
                    got.push((e.cpu().icount, e.cpu().reg(Gpr::Rcx)));
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_write_watch_stops_right_after_each_write_under_every_tier() {
    let w = Watch {
        addr: 0x8010,
        len: 4,
        kind: WatchKind::Write,
    };
    for t in TIERS {
        let (got, end) = stops(engine(t, vec![w]));
        // The third instruction of iteration k (ecx = 100 - k) retires at
        // count 2 + 5k + 3.
        let want: Vec<(u64, u64)> = (0..100).map(|k| (2 + 5 * k + 3, 100 - k)).collect();
        assert_eq!(got, want, "{t:?}");
        assert_eq!(end, 2 + 5 * 100 + 1, "{t:?}: nothing else changed");
    }
}

#[test]
fn read_and_access_watches_catch_their_accesses_only() {
    let read = Watch {
        addr: 0x8000,
        len: 1,
        kind: WatchKind::Read,
    };
    let nothing = Watch {
        addr: 0x8010,
        len: 4,
        kind: WatchKind::Read,
    };
    let access = Watch {
        addr: 0x8008,
        len: 8,
        kind: WatchKind::Access,
    };
    for t in TIERS {
        let (got, _) = stops(engine(t, vec![read]));
        assert_eq!(got.len(), 100, "{t:?}: the MOV EAX load each time");
        assert_eq!(got[0].0, 2 + 2, "{t:?}");
        let (got, _) = stops(engine(t, vec![nothing]));
        assert!(got.is_empty(), "{t:?}: only written, never read");
        let (got, _) = stops(engine(t, vec![access]));
        assert_eq!(got.len(), 100, "{t:?}");
        assert_eq!(got[1].0, 2 + 5 + 1, "{t:?}");
    }
}
