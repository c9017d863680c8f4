//! Self-modifying code: a write to a page holding decoded code drops those
//! translations before the next instruction runs, whatever virtual alias the
//! write used.

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::{setup, Engine, Exit, Gpr};

fn engine(code: &[u8]) -> Engine {
    let mut e = Engine::new(4 << 20).unwrap();
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
    let mut e = engine(&code);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(e.cpu().reg(Gpr::Rax), 2);
    assert_eq!(e.cpu().icount, 3);
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
    let mut e = engine(&code);
    let pdpt = 0x4000u64;
    e.mem_mut()
        .write_phys(GuestPhysAddr(pdpt + 8), &0x87u64.to_le_bytes())
        .unwrap();
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(e.cpu().reg(Gpr::Rax), 2);
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
    let mut e = engine(&code);
    assert_eq!(e.run(10_000), Exit::Halted);
    assert_eq!(e.cpu().reg(Gpr::Rax), 10 + 50);
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
