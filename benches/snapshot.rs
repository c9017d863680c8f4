//! Snapshot size and save/load time for a 128 MiB guest (issue #8's
//! closing figures; `reload`: loading again into the machine already
//! holding that RAM, as a debugger going back does), for three RAM contents: a freshly booted guest (a few
//! pages used), every page used with compressible data, and every page
//! random (incompressible). Run: `cargo bench --bench snapshot`.

use cjemu::cli::Accel;
use cjemu::machine::Machine;
use cjemu::snapshot;
use cjemu_jit::memory::GuestPhysAddr;
use std::time::{Duration, Instant};

const RAM: u64 = 128 << 20;
const ROUNDS: u32 = 5;

/// Fill RAM: `used` of every page, with text-like or random bytes.
fn fill(m: &mut Machine, case: &str) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let ram = m.engine.mem_mut().ram_mut();
    match case {
        "booted" => ram[0x10_0000..0x10_8000].fill(0x90),
        "text" => {
            for (i, b) in ram.iter_mut().enumerate() {
                *b = b"the quick brown fox jumps over the lazy dog "[i % 44] ^ (i >> 16) as u8;
            }
        }
        _ => {
            for c in ram.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
            }
        }
    }
    // Through the engine's write path once, so code-page tracking is as in a run.
    m.engine
        .mem_mut()
        .write_phys(GuestPhysAddr(0), &[0x90])
        .unwrap();
}

fn best(f: &mut dyn FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| f()).min().unwrap()
}

fn main() {
    println!("snapshot of a {} MiB guest, best of {ROUNDS}", RAM >> 20);
    for case in ["booted", "text", "random"] {
        let mut m = Machine::new(RAM, Accel::Interp).unwrap();
        fill(&mut m, case);
        let mut bytes = Vec::new();
        let save = best(&mut || {
            bytes.clear();
            let t = Instant::now();
            snapshot::save(&m, &mut bytes).unwrap();
            t.elapsed()
        });
        // Into a fresh machine (every saved page written), and again into
        // the machine it was loaded into (nothing differs: a debugger going
        // back in time rewrites only the pages that changed since).
        let load = best(&mut || {
            let mut fresh = Machine::new(RAM, Accel::Interp).unwrap();
            let t = Instant::now();
            snapshot::load(&mut fresh, &mut bytes.as_slice()).unwrap();
            t.elapsed()
        });
        let mut target = Machine::new(RAM, Accel::Interp).unwrap();
        let reload = best(&mut || {
            let t = Instant::now();
            snapshot::load(&mut target, &mut bytes.as_slice()).unwrap();
            t.elapsed()
        });
        assert_eq!(target.state_parts(), m.state_parts());
        println!(
            "{case:>7}: {:>10} bytes ({:.2}% of RAM)  save {:>7.1} ms  load {:>7.1} ms  \
             reload {:>7.1} ms",
            bytes.len(),
            bytes.len() as f64 * 100.0 / RAM as f64,
            save.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            reload.as_secs_f64() * 1e3
        );
    }
}
