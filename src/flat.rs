//! Flat binaries: `-kernel FILE --flat ADDR [--flat-entry ENTRY]`.
//!
//! The file's bytes are copied to guest-physical ADDR and the CPU starts at
//! ENTRY (default ADDR) in 64-bit mode, ring 0, flat segments, with:
//!
//! - an identity map of the first 512 GiB (1 GiB pages, so all of RAM is
//!   mapped read/write/execute), its page tables (a PML4 and a PDPT, 8 KiB)
//!   in the top 8 KiB of RAM: `[ram - 0x2000, ram)`;
//! - RSP = `ram - 0x2000`, the first byte of the page tables: the first push
//!   writes just below them, and the stack grows down from there;
//! - RFLAGS = 0x2 (interrupts off); every other GPR 0;
//! - GDTR and IDTR base 0, limit 0: there is no IDT, so the first exception
//!   cannot be delivered and ends the run as a triple fault (the machine stops
//!   as QEMU does with `-no-reboot`; for a flat binary a triple fault always
//!   ends the run, since a reboot would have nothing to boot);
//! - exceptions are delivered the architectural way (the engine's
//!   `exceptions_exit` is off), so a binary that sets up its own IDT handles
//!   its own exceptions.
//!
//! The image must lie inside RAM and below the page tables.

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::setup::{flat_long_mode, FLAT_PAGE_TABLE_BYTES};
use cjemu_jit::state::DescriptorTable;
use cjemu_jit::Engine;

/// Where the page tables of a flat start go for a RAM of `ram_size` bytes.
pub fn page_tables(ram_size: u64) -> u64 {
    ram_size.saturating_sub(FLAT_PAGE_TABLE_BYTES)
}

/// Initial RSP of a flat start (just below the page tables).
pub fn stack_top(ram_size: u64) -> u64 {
    page_tables(ram_size)
}

/// Why an image cannot be loaded (the caller adds the file name).
#[derive(Debug, PartialEq, Eq)]
pub enum FlatError {
    /// The file is empty.
    Empty,
    /// `[load, load+len)` does not fit in RAM below the page tables.
    DoesNotFit { load: u64, len: u64, limit: u64 },
}

impl std::fmt::Display for FlatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlatError::Empty => write!(f, "the file is empty"),
            FlatError::DoesNotFit { load, len, limit } => write!(
                f,
                "{len:#x} bytes at {load:#x} do not fit in RAM below the page tables at {limit:#x} \
                 (raise -m or lower --flat)"
            ),
        }
    }
}

/// Copy `image` to `load` and set the CPU up as described in the module doc.
pub fn load_flat(e: &mut Engine, image: &[u8], load: u64, entry: u64) -> Result<(), FlatError> {
    let ram = e.mem().ram_size();
    let limit = page_tables(ram);
    let len = image.len() as u64;
    if len == 0 {
        return Err(FlatError::Empty);
    }
    let fits = load.checked_add(len).is_some_and(|end| end <= limit);
    if !fits || ram < FLAT_PAGE_TABLE_BYTES {
        return Err(FlatError::DoesNotFit { load, len, limit });
    }
    // Both writes are inside RAM: checked above.
    let inside = "range checked against RAM";
    e.mem_mut()
        .write_phys(GuestPhysAddr(load), image)
        .expect(inside);
    flat_long_mode(e, GuestPhysAddr(limit), entry, stack_top(ram)).expect(inside);
    let cpu = e.cpu_mut();
    cpu.gdtr = DescriptorTable::new(0, 0);
    cpu.idtr = DescriptorTable::new(0, 0);
    e.config.exceptions_exit = false;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cjemu_jit::{Exit, Gpr};

    #[test]
    fn loads_and_runs_with_the_documented_registers() {
        let mut e = Engine::new(2 << 20).unwrap();
        // push rax; pop rbx; hlt
        load_flat(&mut e, &[0x50, 0x5b, 0xf4], 0x1000, 0x1000).unwrap();
        let c = e.cpu();
        assert_eq!(c.rip, 0x1000);
        assert_eq!(c.reg(Gpr::Rsp), (2 << 20) - 0x2000);
        assert_eq!(c.cr3, (2 << 20) - 0x2000);
        assert_eq!(c.rflags(), 2);
        assert!(c.in_64bit_mode());
        assert_eq!(e.run(10), Exit::Halted);
        assert_eq!(e.cpu().reg(Gpr::Rsp), (2 << 20) - 0x2000);
    }

    #[test]
    fn entry_can_differ_from_load_address() {
        let mut e = Engine::new(1 << 20).unwrap();
        // At 0x2000: hlt (never run); at 0x2001: mov al, 7; hlt.
        load_flat(&mut e, &[0xf4, 0xb0, 7, 0xf4], 0x2000, 0x2001).unwrap();
        assert_eq!(e.run(10), Exit::Halted);
        assert_eq!(e.cpu().reg(Gpr::Rax), 7);
    }

    #[test]
    fn images_must_fit_below_the_page_tables() {
        let mut e = Engine::new(1 << 20).unwrap();
        let limit = (1 << 20) - 0x2000;
        assert_eq!(load_flat(&mut e, &[], 0, 0), Err(FlatError::Empty));
        assert!(load_flat(&mut e, &[0xf4; 16], limit - 16, 0).is_ok());
        assert_eq!(
            load_flat(&mut e, &[0xf4; 16], limit - 15, 0),
            Err(FlatError::DoesNotFit {
                load: limit - 15,
                len: 16,
                limit
            })
        );
        assert!(load_flat(&mut e, &[0xf4], 2 << 20, 0).is_err());
        assert!(load_flat(&mut e, &[0xf4; 2], u64::MAX, 0).is_err());
    }

    #[test]
    fn an_exception_triple_faults_because_there_is_no_idt() {
        let mut e = Engine::new(1 << 20).unwrap();
        // nop; ud2
        load_flat(&mut e, &[0x90, 0x0f, 0x0b], 0x3000, 0x3000).unwrap();
        match e.run(10) {
            Exit::TripleFault { first, rip } => {
                assert_eq!(first.vector, cjemu_jit::exception::vector::UD);
                assert_eq!(rip, 0x3001);
            }
            other => panic!("expected a triple fault, got {other:?}"),
        }
    }
}
