//! Benchmarks for Skein; see `benches/` and docs/benchmarks.md.
