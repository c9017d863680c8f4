//! Addressing corners: RIP-relative operands, FS/GS base overrides, 32-bit
//! address-size wrap-around.

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::{setup, Engine, Exit, Gpr, Seg};

fn run(code: &[u8], prep: impl FnOnce(&mut Engine)) -> Engine {
    let mut e = Engine::new(4 << 20).unwrap();
    e.mem_mut().write_phys(GuestPhysAddr(0x1000), code).unwrap();
    setup::flat_long_mode(&mut e, GuestPhysAddr(0x3000), 0x1000, 0x10_0000).unwrap();
    e.config.exceptions_exit = true;
    prep(&mut e);
    assert_eq!(e.run(100), Exit::Halted);
    e
}

#[test]
fn rip_relative_load_and_store() {
    // mov rax, [rip+8]      (7 bytes, next rip 0x1007 → reads 0x100f)
    // mov [rip+9], rax      (7 bytes, next rip 0x100e → writes 0x1017)
    // hlt                   (0x100e)
    // dq 0x1122334455667788 (0x100f)
    let mut code = vec![
        0x48, 0x8b, 0x05, 0x08, 0, 0, 0, 0x48, 0x89, 0x05, 0x09, 0, 0, 0, 0xf4,
    ];
    code.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    let e = run(&code, |_| {});
    assert_eq!(e.cpu().reg(Gpr::Rax), 0x1122_3344_5566_7788);
    let mut b = [0u8; 8];
    e.mem().read_phys(GuestPhysAddr(0x1017), &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 0x1122_3344_5566_7788);
}

#[test]
fn fs_and_gs_overrides_add_their_bases() {
    // mov rax, fs:[8]; mov rbx, gs:[rcx]; mov rdx, [8]; hlt
    let code = [
        0x64, 0x48, 0x8b, 0x04, 0x25, 0x08, 0, 0, 0, // mov rax, fs:[8]
        0x65, 0x48, 0x8b, 0x19, // mov rbx, gs:[rcx]
        0x48, 0x8b, 0x14, 0x25, 0x08, 0, 0, 0, // mov rdx, [8]
        0xf4,
    ];
    let e = run(&code, |e| {
        for (addr, v) in [(8u64, 1u64), (0x20_0008, 2), (0x30_0010, 3)] {
            e.mem_mut()
                .write_phys(GuestPhysAddr(addr), &v.to_le_bytes())
                .unwrap();
        }
        let c = e.cpu_mut();
        c.seg[Seg::Fs as usize].base = 0x20_0000;
        c.seg[Seg::Gs as usize].base = 0x30_0000;
        c.set_reg(Gpr::Rcx, 0x10);
    });
    assert_eq!(e.cpu().reg(Gpr::Rax), 2, "fs:[8]");
    assert_eq!(e.cpu().reg(Gpr::Rbx), 3, "gs:[rcx]");
    assert_eq!(
        e.cpu().reg(Gpr::Rdx),
        1,
        "no override: DS base is ignored in 64-bit mode"
    );
}

#[test]
fn address_size_prefix_wraps_at_4_gib() {
    // lea eax, [ecx+edx] (67 8d 04 11) keeps 32 bits;
    // mov rbx, [ecx+edx] (67 48 8b 1c 11) reads at (ecx+edx) mod 2^32.
    let code = [0x67, 0x8d, 0x04, 0x11, 0x67, 0x48, 0x8b, 0x1c, 0x11, 0xf4];
    let e = run(&code, |e| {
        e.mem_mut()
            .write_phys(GuestPhysAddr(0x2000), &0xabcdu64.to_le_bytes())
            .unwrap();
        let c = e.cpu_mut();
        c.set_reg(Gpr::Rcx, 0xffff_f000);
        c.set_reg(Gpr::Rdx, 0x3000);
    });
    assert_eq!(e.cpu().reg(Gpr::Rax), 0x2000);
    assert_eq!(e.cpu().reg(Gpr::Rbx), 0xabcd);
}

#[test]
fn high_byte_registers() {
    // mov ah, 0x12; mov bh, ah; add bh, 1; movzx ecx, bh; hlt
    let code = [
        0xb4, 0x12, 0x88, 0xe7, 0x80, 0xc7, 0x01, 0x0f, 0xb6, 0xcf, 0xf4,
    ];
    let e = run(&code, |e| {
        e.cpu_mut().set_reg(Gpr::Rax, 0xffff_ffff_ffff_ffff);
        e.cpu_mut().set_reg(Gpr::Rbx, 0x1111_1111_1111_1111);
    });
    assert_eq!(e.cpu().reg(Gpr::Rax), 0xffff_ffff_ffff_12ff);
    assert_eq!(e.cpu().reg(Gpr::Rbx), 0x1111_1111_1111_1311);
    assert_eq!(e.cpu().reg(Gpr::Rcx), 0x13);
}
