//! The `spillway` binary; everything but the allocator lives in `spillway::cli`.

use std::process::ExitCode;

/// mimalloc's thread-local free lists suit the request path's many short-lived allocations
/// (header maps, URLs, buffers) better than glibc malloc: measured in benches/load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    purge_freed_memory_at_once();
    spillway::cli::main()
}

/// `mi_option_purge_delay`'s place in mimalloc's `mi_option_t` (the bindings name only some).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory freed is given back to the system at once rather than a second later (mimalloc v3's default). A delayed purge
/// runs only when the same thread allocates again, so what a burst of connections freed on a
/// thread that then sat idle stayed resident: 2,000 idle keep-alive connections cost 4.2 KiB
/// of RSS each instead of 2.6, and 8 MiB stayed after they closed. Keep-alive throughput does
/// not change; with a new connection per request it is within noise (benches/load).
fn purge_freed_memory_at_once() {
    // SAFETY: setting an option is a plain store, valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // Its default in mimalloc v3 is 1000 (ms), unless the environment overrides it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reading an option is a plain load.
            assert_eq!(
                unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
                1000
            );
        }
        purge_freed_memory_at_once();
        // SAFETY: as above.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            0
        );
    }
}
