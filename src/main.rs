//! The `spillway` binary; everything but the allocator lives in `spillway::cli`.

use std::process::ExitCode;

/// mimalloc's thread-local free lists suit the request path's many short-lived allocations
/// (header maps, URLs, buffers) better than glibc malloc: measured in benches/load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    purge_freed_memory_soon();
    spillway::cli::main()
}

/// `mi_option_purge_delay`'s place in mimalloc's `mi_option_t` (the bindings name only some).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long (ms) memory a thread freed stays committed before mimalloc gives it back.
///
/// mimalloc v3's default, a second, is too long: a purge runs only when the same thread
/// allocates again, so what a burst of connections freed on a thread that then sat idle stayed
/// resident (2,000 idle keep-alive connections cost 4.2 KiB of RSS each instead of 2.6, and
/// 8 MiB stayed after they closed). Zero is too short: Pingora's HTTP/1 client takes a fresh
/// 64 KiB buffer for every upstream response body, and purging it at once made each proxied
/// request fault its pages back in (22k instead of 28k proxied requests/s, benches/load; the
/// memory figures are the same at 10 ms as at 0). `MIMALLOC_PURGE_DELAY` in the environment wins.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

fn purge_freed_memory_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: setting an option is a plain store, valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // With the environment's own setting nothing is changed: nothing to check.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // Its default in mimalloc v3 is 1000 (ms): this index is that option.
        // SAFETY: reading an option is a plain load.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            1000
        );
        purge_freed_memory_soon();
        // SAFETY: as above.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            PURGE_DELAY_MS
        );
    }
}
