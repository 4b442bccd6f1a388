//! What a local file's bytes are, in the forms S3 can confirm: a full-object CRC64NVME (S3
//! verifies it on arrival and returns it with `checksum_mode`), MD5 (`Content-MD5`, and the
//! ETag of an unencrypted single-part object), and the multipart ETag.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crc_fast::CrcAlgorithm;
use md5::Digest as _;

/// Reads of this size while hashing a whole file.
const READ: usize = 1 << 20;

/// The checksums of some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sums {
    pub crc64: u64,
    pub md5: [u8; 16],
    pub len: u64,
}

impl Sums {
    pub fn of(bytes: &[u8]) -> Sums {
        Sums {
            crc64: crc_fast::checksum(CrcAlgorithm::Crc64Nvme, bytes),
            md5: md5::Md5::digest(bytes).into(),
            len: bytes.len() as u64,
        }
    }

    /// The first `len` bytes of `file`, read at offsets (so the descriptor's position is
    /// untouched). A file shorter than `len` is an error: it changed since it was measured.
    pub fn of_file(file: &File, len: u64) -> io::Result<Sums> {
        let mut crc = crc_fast::Digest::new(CrcAlgorithm::Crc64Nvme);
        let mut md5 = md5::Md5::new();
        let mut buf = vec![0; READ.min(usize::try_from(len).unwrap_or(READ)).max(1)];
        let mut offset = 0;
        while offset < len {
            let want = buf
                .len()
                .min(usize::try_from(len - offset).unwrap_or(buf.len()));
            let n = file.read_at(&mut buf[..want], offset)?;
            if n == 0 {
                return Err(shrank());
            }
            crc.update(&buf[..n]);
            md5.update(&buf[..n]);
            offset += n as u64;
        }
        Ok(Sums {
            crc64: crc.finalize(),
            md5: md5.finalize().into(),
            len,
        })
    }

    /// `x-amz-checksum-crc64nvme`: the big-endian CRC, base64.
    pub fn crc64_base64(&self) -> String {
        crc64_base64(self.crc64)
    }

    /// `Content-MD5`: the digest, base64.
    pub fn md5_base64(&self) -> String {
        aws_smithy_types::base64::encode(self.md5)
    }

    /// The ETag S3 gives an unencrypted single-part object: the MD5 in hex.
    pub fn etag(&self) -> String {
        hex::encode(self.md5)
    }
}

pub fn crc64_base64(crc: u64) -> String {
    aws_smithy_types::base64::encode(crc.to_be_bytes())
}

pub fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the file became shorter while it was read",
    )
}

/// The CRC64NVME of a whole object from those of its consecutive parts.
pub fn combined_crc64(parts: &[Sums]) -> u64 {
    let mut parts = parts.iter();
    let Some(first) = parts.next() else {
        return crc_fast::checksum(CrcAlgorithm::Crc64Nvme, b"");
    };
    parts.fold(first.crc64, |crc, part| {
        crc_fast::checksum_combine(CrcAlgorithm::Crc64Nvme, crc, part.crc64, part.len)
    })
}

/// The ETag S3 gives a multipart object (unencrypted or SSE-S3): the MD5 of the parts' MD5s,
/// a dash, and the number of parts.
pub fn multipart_etag(parts: &[Sums]) -> String {
    let mut md5s = md5::Md5::new();
    for part in parts {
        md5s.update(part.md5);
    }
    format!("{}-{}", hex::encode(md5s.finalize()), parts.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // CRC-64/NVME check value ("123456789"), and the MD5 of "abc" (RFC 1321).
        assert_eq!(Sums::of(b"123456789").crc64, 0xae8b_1486_0a79_9888);
        assert_eq!(Sums::of(b"abc").etag(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(Sums::of(b"").md5_base64(), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn a_file_and_its_bytes_agree_and_parts_combine() {
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        let whole = Sums::of(&bytes);
        assert_eq!(Sums::of_file(&file, bytes.len() as u64).unwrap(), whole);
        let parts: Vec<Sums> = bytes.chunks(1 << 20).map(Sums::of).collect();
        assert_eq!(combined_crc64(&parts), whole.crc64);
        assert!(
            Sums::of_file(&file, bytes.len() as u64 + 1).is_err(),
            "shorter than measured"
        );
    }

    #[test]
    fn the_multipart_etag_is_the_md5_of_the_part_md5s() {
        let parts = [Sums::of(b"a"), Sums::of(b"b")];
        let mut cat = Vec::new();
        cat.extend_from_slice(&parts[0].md5);
        cat.extend_from_slice(&parts[1].md5);
        assert_eq!(
            multipart_etag(&parts),
            format!("{}-2", Sums::of(&cat).etag())
        );
    }
}
