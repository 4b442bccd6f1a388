//! Reading file chunks without stalling the event loop on a slow disk.
//!
//! The first attempt is `preadv2(RWF_NOWAIT)`: it copies from the page cache and fails with
//! EAGAIN instead of waiting for the disk. Only then does the read move to Tokio's blocking pool.
//! Hot files (the common case) cost one syscall on the worker; cold ones never block it.

use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustix::io::{Errno, ReadWriteFlags};

/// Reads up to `len` bytes at `offset`. An empty result means end of file.
pub async fn read_chunk(file: &Arc<File>, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(len);
    match rustix::io::preadv2(
        file.as_ref(),
        &mut [IoSliceMut::new(&mut buf)],
        offset,
        ReadWriteFlags::NOWAIT,
    ) {
        Ok(n) => {
            buf.truncate(n);
            return Ok(buf.freeze());
        }
        // Not in the page cache (EAGAIN), or a file system or kernel without RWF_NOWAIT.
        Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {}
        Err(e) => return Err(e.into()),
    }
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || {
        let n = file.read_at(&mut buf, offset)?;
        buf.truncate(n);
        Ok(buf.freeze())
    })
    .await
    .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_chunks_and_reports_eof() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        assert_eq!(&read_chunk(&file, 0, 4).await.unwrap()[..], b"0123");
        assert_eq!(
            &read_chunk(&file, 8, 4).await.unwrap()[..],
            b"89",
            "short at the end"
        );
        assert!(read_chunk(&file, 10, 4).await.unwrap().is_empty(), "EOF");
    }
}
