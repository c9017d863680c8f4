//! (family stub: filled in by its own change)

use super::Sem;
use crate::emit::Emitter;
use iced_x86::Instruction;

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(_i: &Instruction) -> Option<Sem<E>> {
    None
}
