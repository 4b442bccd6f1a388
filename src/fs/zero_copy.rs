//! Large file bodies without copying through user space: `sendfile(2)` from the page cache
//! straight into the socket, as nginx's `sendfile on` does.
//!
//! `sendfile` has no non-blocking mode for the file side: on pages that are not cached it waits
//! for the disk, which must never happen on the event loop. So each piece is sent this way only
//! when `cachestat(2)` (Linux 6.5+) says the page cache holds all of it; otherwise, or on older
//! kernels, the caller copies the piece with `read::read_at` (never blocking) instead.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A socket to send file pieces into, registered with Tokio for write readiness.
pub struct Socket {
    fd: AsyncFd<OwnedFd>,
}

impl Socket {
    /// Wraps a duplicate of a connection's (non-blocking, plain TCP) socket: the original
    /// stays registered with its own stream, epoll tracks the duplicate separately, and
    /// dropping this unregisters and closes only the duplicate. One per connection.
    pub fn duplicate(socket: BorrowedFd<'_>) -> io::Result<Socket> {
        let owned = socket.try_clone_to_owned()?;
        // SAFETY: an `OwnedFd` keeps its descriptor open and unchanged until it is dropped,
        // which is when the `AsyncFd` holding it is dropped (tokio deprecated the safe
        // constructor for types without that guarantee: tokio-rs/tokio#8587).
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::WRITABLE) }
            .map_err(io::Error::from)?;
        Ok(Socket { fd })
    }

    /// Sends `bytes` (a response head, a part header) flagged `MSG_MORE`, so the kernel packs
    /// them with the file bytes that follow instead of sending a small segment of their own
    /// (nginx gets the same from `tcp_nopush`).
    pub async fn send_before_file(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut guard = self.fd.writable().await?;
            match rustix::net::send(self.fd.get_ref(), bytes, rustix::net::SendFlags::MORE) {
                Ok(n) => bytes = &bytes[n..],
                Err(Errno::AGAIN) => guard.clear_ready(),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Sends up to `len` bytes of `file` from `offset`, waiting while the socket buffer is full.
    /// Returns how many were sent; 0 means the file ended before `offset + len`.
    pub async fn send_file(&self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.writable().await?;
            let mut at = offset;
            match rustix::fs::sendfile(self.fd.get_ref(), file, Some(&mut at), len) {
                Ok(n) => return Ok(n),
                Err(Errno::AGAIN) => guard.clear_ready(),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Whether every page of `file` in `offset..offset + len` is in the page cache. `false` when
/// the kernel cannot tell (no `cachestat`), so the caller takes the path that never blocks.
pub fn cached(file: &File, offset: u64, len: u64) -> bool {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451; // the same number on every architecture
    let range = Range { off: offset, len };
    let mut stat = Stat::default();
    let fd: BorrowedFd = file.as_fd();
    // SAFETY: cachestat(2) reads `range` and writes `stat`, both live `repr(C)` values of the
    // kernel's layout (struct cachestat_range, struct cachestat); flags must be 0.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    if rc != 0 || len == 0 {
        return false;
    }
    let page = rustix::param::page_size() as u64;
    let pages = (offset + len).div_ceil(page) - offset / page;
    stat.nr_cache >= pages
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_file_just_written_is_cached_and_past_its_end_is_not() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; 64 * 1024]).unwrap();
        assert!(cached(&file, 0, 64 * 1024), "dirty pages are in the cache");
        assert!(cached(&file, 4000, 10_000));
        assert!(!cached(&file, 0, 1 << 30), "pages past the end are not");
        assert!(!cached(&file, 0, 0));
    }

    #[tokio::test]
    async fn sends_file_bytes_through_a_duplicate_of_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let bytes: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();

        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut client = client;
            client.read_to_end(&mut got).unwrap();
            got
        });
        let socket = Socket::duplicate(server.as_fd()).unwrap();
        socket.send_before_file(b"head:").await.unwrap();
        // More than a socket buffer holds: the send must wait for the reader.
        let mut offset = 1000u64;
        while offset < bytes.len() as u64 {
            let left = bytes.len() - offset as usize;
            let n = socket.send_file(&file, offset, left).await.unwrap();
            assert!(n > 0);
            offset += n as u64;
        }
        assert_eq!(socket.send_file(&file, offset, 10).await.unwrap(), 0, "EOF");
        drop(socket);
        drop(server);
        let got = reader.join().unwrap();
        assert_eq!(&got[..5], b"head:");
        assert_eq!(got[5..], bytes[1000..]);
    }
}
