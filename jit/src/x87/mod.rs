//! x87 floating point: 80-bit extended-precision arithmetic (stub, filled in by its own change).
