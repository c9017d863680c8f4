//! Self-modifying code: a write to a page holding decoded code drops those
//! translations before the next instruction runs, whatever virtual alias the
//! write used. Each program runs under every tier: the interpreter, the JIT
//! compiling every block at first sight, and the JIT after two entries.

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::{setup, Accel, Engine, Exit, Gpr};

const TIERS: [Accel; 3] = [
    Accel::Interp,
    Accel::Jit { threshold: 0 },
    Accel::Jit { threshold: 2 },
];

fn engine(code: &[u8]) -> Engine {
    engine_on(code, Accel::Interp)
}

fn engine_on(code: &[u8], accel: Accel) -> Engine {
    let mut e = Engine::new(4 << 20).unwrap();
    e.config.accel = accel;
    e.mem_mut().write_phys(GuestPhysAddr(0x1000), code).unwrap();
    setup::flat_long_mode(&mut e, GuestPhysAddr(0x3000), 0x1000, 0x10_0000).unwrap();
    e
}

#[test]
fn store_into_the_next_instruction_of_the_same_block() {
    // mov byte [rip+1], 2   ; patches the immediate of the next instruction
    // mov eax, 1            ; executes as mov eax, 2
    // hlt
    let code = [
        0xc6, 0x05, 0x01, 0x00, 0x00, 0x00, 0x02, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xf4,
    ];
    for t in TIERS {
        let mut e = engine_on(&code, t);
        assert_eq!(e.run(100), Exit::Halted, "{t:?}");
        assert_eq!(e.cpu().reg(Gpr::Rax), 2, "{t:?}");
        assert_eq!(e.cpu().icount, 3, "{t:?}");
    }
}

#[test]
fn store_through_a_second_virtual_alias() {
    // Linear 1 GiB..2 GiB also maps physical 0 (a second 1 GiB page).
    let alias = 0x4000_0000u64;
    let patch = alias + 0x1000 + 14;
    let mut code = vec![0x48, 0xbf];
    code.extend_from_slice(&patch.to_le_bytes()); // mov rdi, patch
    code.extend_from_slice(&[0xc6, 0x07, 0x02]); // mov byte [rdi], 2
    code.extend_from_slice(&[0xb8, 0x01, 0x00, 0x00, 0x00]); // mov eax, 1 (imm at +14)
    code.push(0xf4);
    for t in TIERS {
        let mut e = engine_on(&code, t);
        let pdpt = 0x4000u64;
        e.mem_mut()
            .write_phys(GuestPhysAddr(pdpt + 8), &0x87u64.to_le_bytes())
            .unwrap();
        assert_eq!(e.run(100), Exit::Halted, "{t:?}");
        assert_eq!(e.cpu().reg(Gpr::Rax), 2, "{t:?}");
    }
}

#[test]
fn patching_a_hot_loop_body() {
    // A loop that adds 1 to rax ten times; then patches its own ADD
    // immediate to 5 and runs the loop again.
    //   0: mov ecx, 10
    //   5: add rax, 1            (48 83 c0 01; immediate at offset 8)
    //   9: dec ecx
    //  11: jnz 5
    //  13: cmp rbx, 0
    //  17: jne 34
    //  19: mov rbx, 1
    //  26: mov byte [rip + disp], 5   -> offset 8
    //  33: (continue) jmp 0 ... encoded below
    let mut code = vec![0xb9, 0x0a, 0x00, 0x00, 0x00]; // 0: mov ecx, 10
    code.extend_from_slice(&[0x48, 0x83, 0xc0, 0x01]); // 5: add rax, 1
    code.extend_from_slice(&[0xff, 0xc9]); // 9: dec ecx
    code.extend_from_slice(&[0x75, 0xf8]); // 11: jnz 5
    code.extend_from_slice(&[0x48, 0x83, 0xfb, 0x00]); // 13: cmp rbx, 0
    code.extend_from_slice(&[0x75, 0x10]); // 17: jne 35
    code.extend_from_slice(&[0x48, 0xc7, 0xc3, 0x01, 0x00, 0x00, 0x00]); // 19: mov rbx, 1
                                                                         // 26: mov byte [rip+disp], 5 ; next rip = 33, target 8 → disp = -25
    code.extend_from_slice(&[0xc6, 0x05]);
    code.extend_from_slice(&(-25i32).to_le_bytes());
    code.push(0x05);
    code.extend_from_slice(&[0xeb, 0xdd]); // 33: jmp 0 (35 - 35 = 0 → -35)
    code.push(0xf4); // 35: hlt
    let mut icounts = Vec::new();
    for t in TIERS {
        let mut e = engine_on(&code, t);
        assert_eq!(e.run(10_000), Exit::Halted, "{t:?}");
        assert_eq!(e.cpu().reg(Gpr::Rax), 10 + 50, "{t:?}");
        if t != Accel::Interp {
            assert!(e.stats.compiled_runs > 0, "{t:?}: the loop ran compiled");
        }
        icounts.push(e.cpu().icount);
    }
    assert!(icounts.iter().all(|&n| n == icounts[0]), "{icounts:?}");
}

/// A helper instruction (MOVSB without REP, run by the interpreter's
/// handler from compiled code) writes the immediate of the next instruction
/// of its own block: the block is left after it and the patched instruction
/// runs.
#[test]
fn helper_store_into_the_same_block() {
    // lea rsi, [rip + src] ; lea rdi, [rip + imm of the mov] ; movsb ;
    // mov eax, 1 ; hlt ; src: db 7
    //  0: 48 8d 35 disp32   (next 7)
    //  7: 48 8d 3d disp32   (next 14)
    // 14: a4                 movsb
    // 15: b8 01 00 00 00     mov eax, 1 (imm at 16)
    // 20: f4                 hlt
    // 21: 07                 the byte to copy
    let mut code = vec![0x48, 0x8d, 0x35];
    code.extend_from_slice(&(21i32 - 7).to_le_bytes());
    code.extend_from_slice(&[0x48, 0x8d, 0x3d]);
    code.extend_from_slice(&(16i32 - 14).to_le_bytes());
    code.push(0xa4);
    code.extend_from_slice(&[0xb8, 0x01, 0x00, 0x00, 0x00]);
    code.push(0xf4);
    code.push(0x07);
    for t in TIERS {
        let mut e = engine_on(&code, t);
        assert_eq!(e.run(100), Exit::Halted, "{t:?}");
        assert_eq!(e.cpu().reg(Gpr::Rax), 7, "{t:?}");
        assert_eq!(e.cpu().icount, 5, "{t:?}");
    }
}

/// `F3 0F BC` decodes as TZCNT only when BMI1 is advertised; otherwise it
/// is BSF with an ignored REP prefix.
#[test]
fn tzcnt_encoding_follows_advertised_bmi1() {
    // xor ecx, ecx; mov eax, 7; tzcnt eax, ecx (F3 0F BC C1); hlt
    let code = [
        0x31, 0xc9, 0xb8, 0x07, 0x00, 0x00, 0x00, 0xf3, 0x0f, 0xbc, 0xc1, 0xf4,
    ];
    let mut e = engine(&code);
    assert!(e.features().bmi1);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(e.cpu().reg(Gpr::Rax), 32, "TZCNT of 0 is the operand width");

    let mut e = engine(&code);
    let mut f = *e.features();
    f.bmi1 = false;
    e.set_features(f);
    assert_eq!(
        e.features().cpuid(7, 0)[1] & (1 << 3),
        0,
        "BMI1 not advertised"
    );
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(e.cpu().reg(Gpr::Rax), 7, "BSF of 0 leaves the destination");
    assert_ne!(e.cpu().rflags() & 0x40, 0, "BSF of 0 sets ZF");
}
