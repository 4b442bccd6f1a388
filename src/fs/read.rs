//! Reading file chunks without stalling the event loop on a slow disk.
//!
//! The first attempt is `preadv2(RWF_NOWAIT)`: it copies from the page cache and fails with
//! EAGAIN instead of waiting for the disk. Only then does the read move to Tokio's blocking pool.
//! Hot files (the common case) cost one syscall on the worker; cold ones never block it.

use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustix::io::{Errno, ReadWriteFlags};

/// Reads into `buf` from `offset`; returns how many bytes (0 = end of file).
pub async fn read_at(file: &Arc<File>, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    match rustix::io::preadv2(
        file.as_ref(),
        &mut [IoSliceMut::new(buf)],
        offset,
        ReadWriteFlags::NOWAIT,
    ) {
        Ok(n) => return Ok(n),
        // Not in the page cache (EAGAIN), or a file system or kernel without RWF_NOWAIT.
        Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {}
        Err(e) => return Err(e.into()),
    }
    // The slow path: the disk is the cost, not the copy back.
    let file = Arc::clone(file);
    let len = buf.len();
    let read = tokio::task::spawn_blocking(move || {
        let mut owned = vec![0; len];
        let n = file.read_at(&mut owned, offset)?;
        owned.truncate(n);
        Ok::<_, io::Error>(owned)
    })
    .await
    .map_err(io::Error::other)??;
    buf[..read.len()].copy_from_slice(&read);
    Ok(read.len())
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
        let mut buf = [0; 4];
        assert_eq!(read_at(&file, 0, &mut buf).await.unwrap(), 4);
        assert_eq!(&buf, b"0123");
        assert_eq!(
            read_at(&file, 8, &mut buf).await.unwrap(),
            2,
            "short at the end"
        );
        assert_eq!(&buf[..2], b"89");
        assert_eq!(read_at(&file, 10, &mut buf).await.unwrap(), 0, "EOF");
    }
}
