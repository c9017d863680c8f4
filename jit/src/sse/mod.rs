//! SSE/SSE2 floating point and vector helpers (stub, filled in by its own change).
