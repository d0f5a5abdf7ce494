//! Deterministic network simulator: not built yet (issue 3).
