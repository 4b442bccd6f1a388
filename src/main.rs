//! The `spillway` binary; everything but the allocator lives in `spillway::cli`.

use std::process::ExitCode;

/// mimalloc's thread-local free lists suit the request path's many short-lived allocations
/// (header maps, URLs, buffers) better than glibc malloc: measured in benches/load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    spillway::cli::main()
}
