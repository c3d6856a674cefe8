//! The memory allocator of every binary that links service-kit.
//!
//! The services allocate many small, short-lived objects per event (parsed
//! JSON values, strings, serialised messages). mimalloc's thread-local free
//! lists serve those faster than glibc's malloc: `cargo xtask bench pipeline`
//! measures the effect on the gateway (see BENCHMARKS.md). Declared once
//! here so that all five services, their tests and xtask use the same one.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
